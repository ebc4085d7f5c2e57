//! OVA: an OVF package in one tar file. The disk is read in place, as a byte range of
//! the archive: no extraction, no temporary copy.

use crate::device::{corrupt, Device, Slice};
use crate::vmdk::{self, Vmdk};
use oci::tar::{EntryType, Reader};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

/// The package's first disk (VMDK, as OVF packages hold), as a device.
pub fn open(path: &Path, file: Device) -> io::Result<Device> {
    // The one tar reader (bounded headers), over the file already opened and checked.
    let mut archive = Reader::seekable(DeviceReader {
        device: file.clone(),
        pos: 0,
    });
    let mut disks = Vec::new();
    while let Some(entry) = archive
        .next_entry()
        .map_err(|e| corrupt(format!("OVA archive is corrupt: {e}")))?
    {
        let name = String::from_utf8_lossy(&entry.path).into_owned();
        if entry.kind == EntryType::File
            && entry.sparse.is_none()
            && name.to_ascii_lowercase().ends_with(".vmdk")
        {
            disks.push((name, entry.data_offset, entry.size));
        }
    }
    let Some((name, start, len)) = disks.first().cloned() else {
        return Err(corrupt("the OVA package holds no .vmdk disk"));
    };
    if disks.len() > 1 {
        tracing::warn!(
            "{}: the package holds {} disks; reading the first, {name}",
            path.display(),
            disks.len()
        );
    }
    if start.saturating_add(len) > file.len() {
        return Err(corrupt(format!(
            "{name} runs past the end of the OVA (truncated?)"
        )));
    }
    let member: Device = Arc::new(Slice::new(file, start, len));
    let mut head = [0u8; 4];
    member.read_at(&mut head, 0)?;
    if head != vmdk::MAGIC {
        return Err(corrupt(format!("{name} in the OVA is not a sparse VMDK")));
    }
    Ok(Arc::new(
        Vmdk::open(member).map_err(|e| corrupt(format!("{name}: {e}")))?,
    ))
}

/// A device read as a stream (for the tar reader).
struct DeviceReader {
    device: Device,
    pos: u64,
}

impl Read for DeviceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.device.len().saturating_sub(self.pos);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        self.device.read_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for DeviceReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.device.len().checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::other("seek out of range"))?;
        Ok(self.pos)
    }
}
