//! A VHD (fixed or dynamic) may be crafted: opening it and reading its disk must give
//! bytes or an error, never a panic.
#![no_main]
use diskimage::{open_device, Device, Format, MemDevice};
use libfuzzer_sys::fuzz_target;

#[path = "../common/disk.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let dev: Device = std::sync::Arc::new(MemDevice(data.to_vec()));
    if let Ok(disk) = open_device(Format::Vhd, dev) {
        common::read_some(disk.as_ref());
    }
});
