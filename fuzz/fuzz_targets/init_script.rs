//! SysV, OpenRC and upstart scripts come from the server: their parsers (and the shell
//! assignment reader under them, and the pid-file finder) must end in a value or an error.
#![no_main]
use rehost_init::units::{openrc, sysv, upstart};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = sysv::parse_lsb("/etc/init.d/fuzz", text);
    for p in sysv::pid_files(text) {
        assert!(p.starts_with('/'), "{p}");
    }
    let _ = openrc::parse("fuzz", "/etc/init.d/fuzz", text, Some(text));
    let _ = upstart::parse("fuzz", "/etc/init/fuzz.conf", text);
    for line in text.lines().take(64) {
        let _ = sysv::parse_rc_link("2", line);
    }
});
