//! The volumes of a disk: its partitions (or the whole disk when it has no partition
//! table), with LVM physical volumes replaced by the logical volumes they hold, and what
//! each volume contains.

use crate::device::Device;
use crate::lvm;
use crate::partition::{self, Content};
use std::io;

/// One volume of the disk: a partition, the whole disk, or a logical volume.
pub struct Volume {
    /// How messages name it: "partition 2", "the disk".
    pub name: String,
    pub number: Option<u32>,
    pub part_uuid: Option<String>,
    pub lvm: Option<(String, String)>,
    pub dev: Device,
    pub content: Content,
    /// Its byte range on the disk (none for a logical volume).
    pub range: Option<(u64, u64)>,
}

/// Partitions smaller than this hold no filesystem rehost could read (a BIOS boot
/// partition, a reserved gap): they are skipped, not probed.
const MIN_VOLUME: u64 = 64 << 10;

/// The volumes of a disk: its partitions, or the disk itself with no partition table.
pub fn volumes(disk: &Device) -> io::Result<(Vec<Volume>, Vec<String>)> {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    match partition::read_table(disk)? {
        None => out.push(Volume {
            name: "the disk (no partition table)".into(),
            number: None,
            part_uuid: None,
            lvm: None,
            dev: disk.clone(),
            content: partition::probe(disk.as_ref())?,
            range: Some((0, disk.len())),
        }),
        Some(parts) => {
            for p in parts {
                if p.len < MIN_VOLUME {
                    notes.push(format!(
                        "partition {}: {} bytes, too small to hold a filesystem; skipped",
                        p.number, p.len
                    ));
                    continue;
                }
                let content = partition::probe(p.dev.as_ref())?;
                out.push(Volume {
                    name: format!("partition {}", p.number),
                    number: Some(p.number),
                    part_uuid: p.part_uuid,
                    lvm: None,
                    range: Some((p.start, p.len)),
                    dev: p.dev,
                    content,
                });
            }
        }
    }
    // Logical volumes on the LVM physical volumes found, in place of those.
    let mut pvs = Vec::new();
    let mut kept = Vec::new();
    for v in out {
        if v.content != Content::LvmPv {
            kept.push(v);
            continue;
        }
        match lvm::read_pv(v.dev.clone()) {
            Ok(pv) => pvs.push(pv),
            Err(e) => notes.push(format!("{}: LVM physical volume: {e}", v.name)),
        }
    }
    let mut out = kept;
    for lv in lvm::logical_volumes(&pvs)? {
        match lv.dev {
            Ok(dev) => out.push(Volume {
                name: format!("LV {}/{}", lv.vg, lv.name),
                number: None,
                part_uuid: None,
                content: partition::probe(dev.as_ref())?,
                lvm: Some((lv.vg, lv.name)),
                range: None,
                dev,
            }),
            Err(why) => notes.push(why.to_string()),
        }
    }
    Ok((out, notes))
}

/// Volumes holding a filesystem rehost does not read itself (XFS, btrfs), with their
/// byte range on the disk: for the fallback that mounts one read-only.
pub fn foreign_filesystems(disk: &Device) -> io::Result<Vec<(String, Content, u64, u64)>> {
    let (volumes, _) = volumes(disk)?;
    Ok(volumes
        .into_iter()
        .filter(|v| matches!(v.content, Content::Xfs | Content::Btrfs))
        .filter_map(|v| v.range.map(|(start, len)| (v.name, v.content, start, len)))
        .collect())
}
