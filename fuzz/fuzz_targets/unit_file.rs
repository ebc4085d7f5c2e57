//! systemd unit files come from the server: every parser applied to them must end in a
//! value or an error.
#![no_main]
use rehost_init::units::{calendar, systemd, timespan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(unit) = systemd::UnitFile::parse("fuzz.service", text) {
        let _ = unit;
    }
    for line in text.lines().take(64) {
        let _ = systemd::ExecCommand::parse_line(line);
        let _ = calendar::CalendarSpec::parse(line);
        let _ = timespan::parse_sec(line);
        let _ = systemd::UnitName::parse(line);
        let _ = rehost_init::service::parse_listen(line, false);
        let _ = rehost_init::service::parse_listen(line, true);
    }
    let _ = systemd::parse_environment_file(text);
});
