//! A disk's partition table (MBR with logical partitions, GPT) and the LVM physical
//! volumes on it may be crafted: finding the volumes and probing each must give volumes
//! or an error, never a panic.
#![no_main]
use diskimage::{volume, Device, MemDevice};
use libfuzzer_sys::fuzz_target;

#[path = "../common/disk.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let disk: Device = std::sync::Arc::new(MemDevice(data.to_vec()));
    let _ = diskimage::partition::read_table(&disk);
    if let Ok((volumes, _notes)) = volume::volumes(&disk) {
        for v in volumes {
            common::read_some(v.dev.as_ref());
        }
    }
});
