//! VM disk images as a source, read in place as an ordinary user: no mount, no loop
//! device, no kernel module.
//!
//! Three layers, each knowing nothing of the others' formats:
//! - image formats ([`raw`](device::FileDevice), qcow2, vmdk, vhd, OVA) each give a
//!   random-access [`BlockDevice`] of the virtual disk;
//! - the disk's partitions (MBR, GPT, or none) and what each volume holds;
//! - filesystems on the volumes ([`crate::source::ext4`]), put together as the running
//!   system would mount them: the root (the one with /etc/os-release), and the others
//!   its own /etc/fstab names, grafted at their mount points ([`DiskSource`]).

pub mod device;
mod fstab;
pub mod partition;
mod qcow2;
mod source;

pub use device::{BlockDevice, Device};
pub use source::DiskSource;

use crate::error::{Error, Result};
use device::FileDevice;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// The image formats, told apart by content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Raw,
    Qcow2,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw disk image",
            Format::Qcow2 => "qcow2 image",
        }
    }
}

/// Whether a file is a disk image, and which format; `None` for anything else (an
/// archive, say). Only content decides.
pub fn sniff(path: &Path) -> std::io::Result<Option<Format>> {
    let mut file = std::fs::File::open(path)?;
    let mut head = vec![0u8; 4096];
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    head.truncate(n);
    let at = |off: usize, magic: &[u8]| {
        head.len() >= off + magic.len() && &head[off..off + magic.len()] == magic
    };
    if at(0, qcow2::MAGIC) {
        return Ok(Some(Format::Qcow2));
    }
    // A tar archive's header has "ustar" here; its data can hold anything after.
    if at(257, b"ustar") {
        return Ok(None);
    }
    let raw = (at(510, &[0x55, 0xAA]) && !at(0, b"\x1f\x8b"))
        || at(1080, &[0x53, 0xEF])
        || at(0, b"LUKS\xba\xbe")
        || at(0, b"XFSB")
        || at(512, b"LABELONE");
    Ok(raw.then_some(Format::Raw))
}

/// Opens a disk image as a source, its format already found by [`sniff`].
pub fn open(path: &Path, format: Format) -> Result<DiskSource> {
    let bad = |reason: String| Error::Disk {
        image: path.to_path_buf(),
        reason,
    };
    let device: Device = match format {
        Format::Raw => Arc::new(FileDevice::open(path).map_err(|e| bad(e.to_string()))?),
        Format::Qcow2 => {
            Arc::new(qcow2::Qcow2::open(path, &mut Vec::new()).map_err(|e| bad(e.to_string()))?)
        }
    };
    DiskSource::new(path, format, device)
}
