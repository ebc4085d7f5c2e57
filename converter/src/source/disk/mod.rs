//! VM disk images as a source: the adapter over the `diskimage` crate, which reads the
//! image formats, volumes and ext filesystems. Here the filesystems are put together as
//! the running system would mount them: the root (the one with /etc/os-release), and the
//! others its own /etc/fstab names, grafted at their mount points ([`DiskSource`]); their
//! inodes become tree entries.

mod fstab;
mod mount;
mod source;

pub use diskimage::{sniff, Format};
pub use source::DiskSource;

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Opens a disk image as a source, its format already found by [`sniff`].
///
/// With no ext root on the disk, a raw image's XFS or btrfs root is mounted read-only
/// through a loop device when running as root (see [`mount`]); otherwise the error
/// says what is needed.
/// Backing files and extents are opened only inside the image's directory or one of
/// `allow_backing`.
pub fn open(
    path: &Path,
    format: Format,
    allow_backing: &[PathBuf],
) -> Result<Box<dyn crate::source::Source>> {
    let bad = |reason: String| Error::Disk {
        image: path.to_path_buf(),
        reason,
    };
    let options = diskimage::OpenOptions {
        allow_backing: allow_backing.to_vec(),
    };
    let device = diskimage::open(path, format, &options).map_err(|e| bad(e.to_string()))?;
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
        diskimage::volume::foreign_filesystems(&device).map_err(|e| bad(e.to_string()))?
    {
        match mount::MountedSource::mount(path, &volume, content, start, len) {
            Ok(m) => return Ok(Box::new(m)),
            Err(e) => tracing::warn!("{e}"),
        }
    }
    Err(err)
}
