//! tmpfiles.d files come from the server and rehost-init applies them at boot: their parser
//! must end in lines or skipped types, whatever the text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rehost_init::tmpfiles;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (lines, _skipped) = tmpfiles::parse(text);
    for l in lines {
        assert!(!l.path.is_empty());
    }
});
