//! A VMDK text descriptor may be crafted. The input is the descriptor, then a NUL, then
//! the bytes of its extent (whatever file the descriptor names).
#![no_main]
use diskimage::{open_vmdk_descriptor, Device, MemDevice};
use libfuzzer_sys::fuzz_target;

#[path = "../common/disk.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (text, extent) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    let extent: Device = std::sync::Arc::new(MemDevice(extent.to_vec()));
    if let Ok(disk) = open_vmdk_descriptor(text, extent) {
        common::read_some(disk.as_ref());
    }
});
