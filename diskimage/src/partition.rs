//! Partition tables (MBR with extended partitions, and GPT), and what a volume holds,
//! told from its content.

use crate::device::{corrupt, le16, le32, le64, read_head, read_vec, BlockDevice, Device, Slice};
use std::io;
use std::sync::Arc;

/// One partition of a disk: its number as the OS names it (sda2 is 2) and its bytes.
pub struct Partition {
    pub number: u32,
    pub start: u64,
    pub len: u64,
    /// GPT partition GUID, lower case, for PARTUUID= in fstab.
    pub part_uuid: Option<String>,
    pub dev: Device,
}

const SECTOR: u64 = 512;
/// Bound on the chain of extended boot records, so a looping chain ends.
const MAX_LOGICAL: u32 = 128;
const MAX_GPT_ENTRIES: u32 = 1024;

/// The partitions of a disk; `None` when it has no partition table (a bare filesystem).
pub fn read_table(disk: &Device) -> io::Result<Option<Vec<Partition>>> {
    let mbr = read_head(disk.as_ref(), 0, 512)?;
    if mbr.len() < 512 || mbr[510] != 0x55 || mbr[511] != 0xAA {
        return Ok(None);
    }
    // A FAT or NTFS boot sector ends with the same signature; a filesystem there is
    // not a partition table.
    if probe(disk.as_ref())? != Content::Unknown {
        return Ok(None);
    }
    let entries: Vec<&[u8]> = (0..4).map(|i| &mbr[446 + i * 16..462 + i * 16]).collect();
    if entries.iter().any(|e| e[4] == 0xEE) {
        return read_gpt(disk).map(Some);
    }
    // Status bytes other than 0 and 0x80 mean this is not a partition table.
    if entries.iter().any(|e| e[0] != 0 && e[0] != 0x80) {
        return Ok(None);
    }
    let mut parts = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let kind = e[4];
        let start = le32(e, 8) as u64 * SECTOR;
        let len = le32(e, 12) as u64 * SECTOR;
        if kind == 0 || len == 0 {
            continue;
        }
        if matches!(kind, 0x05 | 0x0F | 0x85) {
            read_logical(disk, start, len, &mut parts)?;
            continue;
        }
        parts.push(partition(disk, i as u32 + 1, start, len, None)?);
    }
    Ok(Some(parts))
}

fn partition(
    disk: &Device,
    number: u32,
    start: u64,
    len: u64,
    part_uuid: Option<String>,
) -> io::Result<Partition> {
    let end = start.saturating_add(len);
    if end > disk.len() {
        return Err(corrupt(format!(
            "partition {number} lies beyond the end of the disk (it ends at byte {end}, the disk has {}; truncated image?)",
            disk.len()
        )));
    }
    Ok(Partition {
        number,
        start,
        len,
        part_uuid,
        dev: Arc::new(Slice::new(disk.clone(), start, len)),
    })
}

/// Logical partitions: a chain of extended boot records, each pointing to the next
/// relative to the extended partition's start.
fn read_logical(
    disk: &Device,
    ext_start: u64,
    ext_len: u64,
    parts: &mut Vec<Partition>,
) -> io::Result<()> {
    let mut ebr_at = ext_start;
    for number in 5..5 + MAX_LOGICAL {
        let ebr = read_vec(disk.as_ref(), ebr_at, 512)?;
        if ebr[510] != 0x55 || ebr[511] != 0xAA {
            return Err(corrupt(format!(
                "extended boot record at byte {ebr_at} has no signature"
            )));
        }
        let (this, next) = (&ebr[446..462], &ebr[462..478]);
        if this[4] != 0 && le32(this, 12) != 0 {
            let start = ebr_at + le32(this, 8) as u64 * SECTOR;
            parts.push(partition(
                disk,
                number,
                start,
                le32(this, 12) as u64 * SECTOR,
                None,
            )?);
        }
        if next[4] == 0 || le32(next, 12) == 0 {
            return Ok(());
        }
        let next_at = ext_start + le32(next, 8) as u64 * SECTOR;
        if next_at <= ebr_at || next_at >= ext_start + ext_len {
            return Err(corrupt(format!(
                "extended partition chain loops or leaves the extended partition at byte {next_at}"
            )));
        }
        ebr_at = next_at;
    }
    Err(corrupt(format!(
        "more than {MAX_LOGICAL} logical partitions (a looping chain?)"
    )))
}

fn read_gpt(disk: &Device) -> io::Result<Vec<Partition>> {
    // The header is in the second logical block: 512-byte sectors, or 4096 on 4Kn disks.
    for lba in [512u64, 4096] {
        let header = read_head(disk.as_ref(), lba, 92)?;
        if header.len() < 92 || &header[..8] != b"EFI PART" {
            continue;
        }
        let entries_lba = le64(&header, 72);
        let count = le32(&header, 80);
        let size = le32(&header, 84) as u64;
        if count > MAX_GPT_ENTRIES || !(128..=4096).contains(&size) {
            return Err(corrupt(format!(
                "GPT header has an implausible partition array ({count} entries of {size} bytes)"
            )));
        }
        let array_at = entries_lba
            .checked_mul(lba)
            .filter(|at| {
                at.checked_add(count as u64 * size)
                    .is_some_and(|end| end <= disk.len())
            })
            .ok_or_else(|| corrupt("GPT partition array lies beyond the end of the disk"))?;
        let array = read_vec(disk.as_ref(), array_at, (count as u64 * size) as usize)?;
        let mut parts = Vec::new();
        for i in 0..count as usize {
            let e = &array[i * size as usize..(i + 1) * size as usize];
            if e[..16].iter().all(|&b| b == 0) {
                continue;
            }
            let first = le64(e, 32);
            let last = le64(e, 40);
            if last < first {
                return Err(corrupt(format!(
                    "GPT partition {} ends before it starts",
                    i + 1
                )));
            }
            let start = first.saturating_mul(lba);
            let len = (last - first).saturating_add(1).saturating_mul(lba);
            parts.push(partition(
                disk,
                i as u32 + 1,
                start,
                len,
                Some(guid(&e[16..32])),
            )?);
        }
        return Ok(parts);
    }
    Err(corrupt(
        "protective MBR says GPT, but there is no GPT header",
    ))
}

/// A GUID in its text form (mixed-endian, as GPT stores it).
pub fn guid(b: &[u8]) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
        le32(b, 0),
        le16(b, 4),
        le16(b, 6),
        b[8],
        b[9],
        hex::encode(&b[10..16])
    )
}

/// What a volume holds, from the magic numbers at the places each kind keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Ext,
    Xfs,
    Btrfs,
    Swap,
    Luks,
    LvmPv,
    Fat,
    Ntfs,
    Unknown,
}

impl Content {
    pub fn name(self) -> &'static str {
        match self {
            Content::Ext => "ext2/3/4",
            Content::Xfs => "XFS",
            Content::Btrfs => "btrfs",
            Content::Swap => "swap",
            Content::Luks => "LUKS (encrypted)",
            Content::LvmPv => "LVM physical volume",
            Content::Fat => "FAT",
            Content::Ntfs => "NTFS",
            Content::Unknown => "unknown content",
        }
    }
}

pub fn probe(dev: &dyn BlockDevice) -> io::Result<Content> {
    let head = read_head(dev, 0, 4096)?;
    let at = |off: usize, magic: &[u8]| {
        head.len() >= off + magic.len() && &head[off..off + magic.len()] == magic
    };
    if at(1080, &[0x53, 0xEF]) {
        return Ok(Content::Ext);
    }
    if at(0, b"XFSB") {
        return Ok(Content::Xfs);
    }
    if at(0, b"LUKS\xba\xbe") {
        return Ok(Content::Luks);
    }
    if at(4086, b"SWAPSPACE2") || at(4086, b"SWAP-SPACE") {
        return Ok(Content::Swap);
    }
    for sector in 0..4 {
        if at(sector * 512, b"LABELONE") && at(sector * 512 + 24, b"LVM2 001") {
            return Ok(Content::LvmPv);
        }
    }
    if at(3, b"NTFS    ") {
        return Ok(Content::Ntfs);
    }
    if at(54, b"FAT") || at(82, b"FAT32   ") {
        return Ok(Content::Fat);
    }
    let btrfs = read_head(dev, 0x10040, 8)?;
    if btrfs == b"_BHRfS_M" {
        return Ok(Content::Btrfs);
    }
    Ok(Content::Unknown)
}
