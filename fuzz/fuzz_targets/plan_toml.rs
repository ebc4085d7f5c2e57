//! A plan is a file the operator edits, and may come from anyone: parsing it must give
//! a plan or one error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(plan) = converter::plan::Plan::parse("fuzz", text) {
            // What was read must also be writable and read back.
            let again = plan.to_toml();
            converter::plan::Plan::parse("fuzz", &again).expect("a parsed plan reads back");
        }
    }
});
