//! OVA: an OVF package in one tar file. The disk is read in place, as a byte range of
//! the archive: no extraction, no temporary copy.

use crate::device::{corrupt, Device, Slice};
use crate::vmdk::{self, Vmdk};
use std::io;
use std::path::Path;
use std::sync::Arc;

/// The package's first disk (VMDK, as OVF packages hold), as a device.
pub fn open(path: &Path, file: Device) -> io::Result<Device> {
    let mut archive = tar::Archive::new(std::fs::File::open(path)?);
    let mut disks = Vec::new();
    for entry in archive.entries_with_seek()? {
        let entry = entry.map_err(|e| corrupt(format!("OVA archive is corrupt: {e}")))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if name.to_ascii_lowercase().ends_with(".vmdk") {
            disks.push((name, entry.raw_file_position(), entry.size()));
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
