//! LVM metadata text (from a physical volume's metadata area) may be crafted: mapping
//! its logical volumes must give volumes or an error, never a panic or an overflow.
#![no_main]
use diskimage::{lvm, Device, MemDevice};
use libfuzzer_sys::fuzz_target;

#[path = "../common/disk.rs"]
mod common;

/// The physical volume the seeds' metadata names (its UUID without dashes).
const PV_UUID: &str = "rehostfuzzpv0000000000000000000a";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let pv: Device = std::sync::Arc::new(MemDevice(vec![0; 1 << 20]));
    if let Ok(lvs) = lvm::from_metadata(text, PV_UUID, pv) {
        for lv in lvs {
            if let Ok(dev) = lv.dev {
                common::read_some(dev.as_ref());
            }
        }
    }
});
