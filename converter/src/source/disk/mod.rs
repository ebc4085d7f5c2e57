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
mod lvm;
mod mount;
mod ova;
pub mod partition;
mod qcow2;
mod readahead;
mod source;
mod vhd;
mod vmdk;

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
    Vmdk,
    /// A VMDK text descriptor naming its extents in other files.
    VmdkDescriptor,
    Vhd,
    /// An OVF package: a tar holding the descriptor and the disks.
    Ova,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw disk image",
            Format::Qcow2 => "qcow2 image",
            Format::Vmdk | Format::VmdkDescriptor => "VMDK image",
            Format::Vhd => "VHD image",
            Format::Ova => "OVA package",
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
    if at(0, vmdk::MAGIC) {
        return Ok(Some(Format::Vmdk));
    }
    if at(0, b"# Disk DescriptorFile") {
        return Ok(Some(Format::VmdkDescriptor));
    }
    // A tar archive's header has "ustar" here; its data can hold anything after. An
    // OVF package is a tar whose first member is the .ovf descriptor.
    if at(257, b"ustar") {
        let name_end = head[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let ova = head[..name_end].to_ascii_lowercase().ends_with(b".ovf");
        return Ok(ova.then_some(Format::Ova));
    }
    let file_dev: Device = Arc::new(FileDevice::open(path)?);
    if vhd::footer(&file_dev)?.is_some() {
        return Ok(Some(Format::Vhd));
    }
    let raw = (at(510, &[0x55, 0xAA]) && !at(0, b"\x1f\x8b"))
        || at(1080, &[0x53, 0xEF])
        || at(0, b"LUKS\xba\xbe")
        || at(0, b"XFSB")
        || at(512, b"LABELONE");
    Ok(raw.then_some(Format::Raw))
}

/// Opens a disk image as a source, its format already found by [`sniff`].
///
/// With no ext root on the disk, a raw image's XFS or btrfs root is mounted read-only
/// through a loop device when running as root (see [`mount`]); otherwise the error
/// says what is needed.
pub fn open(path: &Path, format: Format) -> Result<Box<dyn crate::source::Source>> {
    let bad = |reason: String| Error::Disk {
        image: path.to_path_buf(),
        reason,
    };
    let device = open_device(path, format).map_err(|e| bad(e.to_string()))?;
    let err = match DiskSource::new(path, format, device.clone()) {
        Ok(source) => return Ok(Box::new(source)),
        Err(e) => e,
    };
    // SAFETY: geteuid has no preconditions.
    let is_root = unsafe { libc::geteuid() } == 0;
    if format != Format::Raw || !is_root || !err.to_string().contains("no root filesystem found") {
        return Err(err);
    }
    for (volume, content, start, len) in
        source::foreign_filesystems(&device).map_err(|e| bad(e.to_string()))?
    {
        match mount::MountedSource::mount(path, &volume, content, start, len) {
            Ok(m) => return Ok(Box::new(m)),
            Err(e) => tracing::warn!("{e}"),
        }
    }
    Err(err)
}

fn open_device(path: &Path, format: Format) -> std::io::Result<Device> {
    let file = || -> std::io::Result<Device> { Ok(Arc::new(FileDevice::open(path)?)) };
    Ok(match format {
        Format::Raw => file()?,
        Format::Qcow2 => Arc::new(qcow2::Qcow2::open(path, &mut Vec::new())?),
        Format::Vmdk => Arc::new(vmdk::Vmdk::open(file()?)?),
        Format::VmdkDescriptor => vmdk::open_descriptor(path)?,
        Format::Vhd => vhd::open(file()?)?,
        Format::Ova => ova::open(path, file()?)?,
    })
}
