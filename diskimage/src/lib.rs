//! rehost's disk-image reader: VM disk images read in place as an ordinary user, with no
//! mount, no loop device and no kernel module.
//!
//! Three layers, each knowing nothing of the others' formats:
//! - image formats ([`raw`](device::FileDevice), qcow2, vmdk, vhd, OVA) each give a
//!   random-access [`BlockDevice`] of the virtual disk ([`open`], told apart by [`sniff`]);
//! - the disk's [`volume`]s: partitions (MBR, GPT, or none) and LVM logical volumes, and
//!   what each holds;
//! - our own reader of the ext2/3/4 filesystems on them ([`ext4`]).
//!
//! It may depend on no other rehost crate: it speaks of blocks, volumes, inodes and byte
//! ranges. The converter puts the volumes together as the guest mounts them and turns
//! inodes into its tree entries.

mod confine;
pub mod device;
pub mod ext4;
pub mod lvm;
mod ova;
pub mod partition;
mod qcow2;
mod readahead;
mod vhd;
mod vmdk;
pub mod volume;

pub use confine::OpenOptions;
pub use device::{BlockDevice, Device, MemDevice};
pub use volume::Volume;

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
/// archive, say). Only content decides. Anything but a regular file is an error, given
/// without blocking (a FIFO would wait for a writer forever).
pub fn sniff(path: &Path) -> std::io::Result<Option<Format>> {
    let mut file = confine::open_regular(path, true)?;
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

/// Opens a disk image as the random-access device of its virtual disk, its format
/// already found by [`sniff`]. The image opens no other file but the backing files and
/// extents it names inside its own directory or one `options` allows.
pub fn open(path: &Path, format: Format, options: &OpenOptions) -> std::io::Result<Device> {
    let file = || -> std::io::Result<Device> { Ok(Arc::new(FileDevice::open(path)?)) };
    let confined = || confine::Confinement::new(path, options);
    Ok(match format {
        Format::Raw => file()?,
        Format::Qcow2 => qcow2::open(path, &confined()?)?,
        Format::Vmdk => Arc::new(vmdk::Vmdk::open(file()?)?),
        Format::VmdkDescriptor => vmdk::open_descriptor(path, &confined()?)?,
        Format::Vhd => vhd::open(file()?)?,
        Format::Ova => ova::open(path, file()?)?,
    })
}

/// Opens a disk image held by a device (one in memory, say) as the device of its
/// virtual disk. Nothing else is opened: an image that names a backing file is refused.
pub fn open_device(format: Format, dev: Device) -> std::io::Result<Device> {
    match format {
        Format::Raw => Ok(dev),
        Format::Qcow2 => qcow2::open_device(dev),
        Format::Vmdk => Ok(Arc::new(vmdk::Vmdk::open(dev)?)),
        Format::Vhd => vhd::open(dev),
        Format::VmdkDescriptor | Format::Ova => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("a {} is opened from its file", format.name()),
        )),
    }
}

/// A VMDK text descriptor's disk, its one extent read from `extent` whatever file the
/// descriptor names.
pub fn open_vmdk_descriptor(text: &[u8], extent: Device) -> std::io::Result<Device> {
    vmdk::parse_descriptor(text, |_| Ok(extent))
}

#[cfg(test)]
mod tests;
