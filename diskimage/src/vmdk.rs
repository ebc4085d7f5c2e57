//! VMDK sparse extents: monolithicSparse (grain directory and tables, plain grains)
//! and streamOptimized (the kind inside an OVA: deflated grains each behind a marker,
//! the real header in a footer at the end).
//!
//! The image is read through any [`BlockDevice`], so a disk inside an OVA is read in
//! place from the archive. Grain tables and inflated grains go through fixed-size caches;
//! the compressed grains after the one being read are inflated ahead by worker threads.

use crate::confine::{open_regular, Confinement};
use crate::device::{
    corrupt, le16, le32, le64, read_vec, BlockDevice, BufferCache, Device, FileDevice, Slice,
};
use crate::readahead::{self, ClusterCache};
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};

pub const MAGIC: &[u8] = b"KDMV";
const SECTOR: u64 = 512;
const GD_AT_END: u64 = u64::MAX;
const FLAG_COMPRESSED: u32 = 1 << 16;
const GRAIN_CACHE_BYTES: u64 = 64 << 20;
const GT_CACHE_BYTES: u64 = 16 << 20;
/// A descriptor is a few lines of text; a larger "descriptor" is not one.
const MAX_DESCRIPTOR: u64 = 1 << 20;

pub struct Vmdk {
    file: Device,
    capacity: u64,
    grain: u64,
    gtes_per_gt: u64,
    gd: Vec<u32>,
    compressed: bool,
    gt_cache: Mutex<BufferCache>,
    /// Inflated grains by sector, filled ahead of the reader.
    grains: ClusterCache,
}

impl Vmdk {
    pub fn open(file: Device) -> io::Result<Self> {
        let mut h = read_vec(file.as_ref(), 0, 512)?;
        if &h[..4] != MAGIC {
            return Err(corrupt("not a VMDK sparse extent"));
        }
        if le64(&h, 56) == GD_AT_END {
            // streamOptimized: the header with the grain directory's place is a footer,
            // the second-to-last sector (the last is the end-of-stream marker).
            if file.len() < 3 * SECTOR {
                return Err(corrupt("VMDK stream is truncated (no footer)"));
            }
            h = read_vec(file.as_ref(), file.len() - 2 * SECTOR, 512)?;
            if &h[..4] != MAGIC || le64(&h, 56) == GD_AT_END {
                return Err(corrupt(
                    "VMDK stream footer is missing or corrupt (truncated image?)",
                ));
            }
        }
        let version = le32(&h, 4);
        if !(1..=3).contains(&version) {
            return Err(corrupt(format!("VMDK version {version} is not supported")));
        }
        let flags = le32(&h, 8);
        // Sector counts from the header: one whose bytes overflow is impossible.
        let sectors = |at: usize| {
            le64(&h, at)
                .checked_mul(SECTOR)
                .ok_or_else(|| corrupt("VMDK header has an impossible size"))
        };
        let capacity = sectors(12)?;
        let grain = sectors(20)?;
        let gtes_per_gt = le32(&h, 44) as u64;
        let gd_offset = sectors(56)?;
        let compressed = flags & FLAG_COMPRESSED != 0;
        if compressed && le16(&h, 77) != 1 {
            return Err(corrupt(format!(
                "VMDK compression {} is not supported",
                le16(&h, 77)
            )));
        }
        if !grain.is_power_of_two()
            || !(4096..=(16 << 20)).contains(&grain)
            || gtes_per_gt == 0
            || gtes_per_gt > 1 << 16
        {
            return Err(corrupt("VMDK header has an impossible grain geometry"));
        }
        let gd_entries = capacity.div_ceil(grain).div_ceil(gtes_per_gt);
        if gd_entries > 1 << 24
            || gd_offset
                .checked_add(gd_entries * 4)
                .is_none_or(|end| end > file.len())
        {
            return Err(corrupt(
                "VMDK grain directory lies outside the image (truncated?)",
            ));
        }
        let raw = read_vec(file.as_ref(), gd_offset, (gd_entries * 4) as usize)?;
        let gd = (0..gd_entries as usize)
            .map(|i| le32(&raw, i * 4))
            .collect();
        let gt_bytes = (gtes_per_gt * 4) as usize;
        let grains = {
            let file = file.clone();
            ClusterCache::new(
                (GRAIN_CACHE_BYTES / grain) as usize,
                Box::new(move |sector, _| inflate(file.as_ref(), grain, sector)),
            )
        };
        Ok(Vmdk {
            file,
            capacity,
            grain,
            gtes_per_gt,
            gd,
            compressed,
            gt_cache: Mutex::new(BufferCache::new(GT_CACHE_BYTES as usize / gt_bytes)),
            grains,
        })
    }

    fn grain_table(&self, sector: u64) -> io::Result<Arc<Vec<u8>>> {
        if let Some(t) = self.gt_cache.lock().unwrap().get(sector) {
            return Ok(t);
        }
        let t = Arc::new(
            read_vec(
                self.file.as_ref(),
                sector * SECTOR,
                (self.gtes_per_gt * 4) as usize,
            )
            .map_err(|e| corrupt(format!("VMDK grain table at sector {sector}: {e}")))?,
        );
        self.gt_cache.lock().unwrap().put(sector, t.clone());
        Ok(t)
    }

    /// The sector a grain starts at, 0 when it is not allocated (reads as zeros), 1
    /// for an explicit zero grain.
    fn grain_sector(&self, index: u64) -> io::Result<u64> {
        let gt = self.gd[(index / self.gtes_per_gt) as usize] as u64;
        if gt == 0 {
            return Ok(0);
        }
        let table = self.grain_table(gt)?;
        Ok(le32(&table, ((index % self.gtes_per_gt) * 4) as usize) as u64)
    }

    /// Where the compressed grains after `index` are, for the read-ahead workers.
    fn read_ahead(&self, index: u64) {
        let ahead = self.grains.ahead_of(index);
        if ahead.is_empty() {
            return;
        }
        let last = self.capacity.div_ceil(self.grain);
        let jobs = ahead
            .take_while(|&g| g < last)
            .map_while(|g| self.grain_sector(g).ok())
            .filter(|&sector| sector > 1)
            .map(|sector| (sector, 0));
        self.grains.prefetch(jobs);
    }
}

/// Reads and inflates the compressed grain (behind its marker) at `sector`.
fn inflate(file: &dyn BlockDevice, grain: u64, sector: u64) -> io::Result<Vec<u8>> {
    let at = sector * SECTOR;
    let marker = read_vec(file, at, 12)?;
    let size = le32(&marker, 8) as u64;
    if size == 0 || size > grain * 2 + 4096 {
        return Err(corrupt(format!(
            "VMDK compressed grain at sector {sector} has an impossible size"
        )));
    }
    let data = read_vec(file, at + 12, size as usize)?;
    let mut out = readahead::inflate(&data, true, grain as usize)
        .map_err(|e| corrupt(format!("VMDK compressed grain at sector {sector}: {e}")))?;
    // The last grain of a disk may be short; the rest of it reads as zeros.
    out.resize(grain as usize, 0);
    Ok(out)
}

impl BlockDevice for Vmdk {
    fn len(&self) -> u64 {
        self.capacity
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.capacity)
        {
            return Err(corrupt(format!(
                "VMDK: read at {offset} past the end of the disk"
            )));
        }
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let within = pos % self.grain;
            let n = (buf.len() - done).min((self.grain - within) as usize);
            let out = &mut buf[done..done + n];
            match self.grain_sector(pos / self.grain)? {
                0 | 1 => out.fill(0),
                sector if self.compressed => {
                    self.read_ahead(pos / self.grain);
                    let g = self.grains.get(sector, 0)?;
                    out.copy_from_slice(&g[within as usize..within as usize + n]);
                }
                sector => self.file.read_at(out, sector * SECTOR + within)?,
            }
            done += n;
        }
        Ok(())
    }
}

/// A VMDK text descriptor with one extent in another file: a flat (raw) extent, or a
/// sparse one, confined as backing files are. Split disks (several extents) are not read.
pub fn open_descriptor(path: &Path, confine: &Confinement) -> io::Result<Device> {
    let mut text = Vec::new();
    open_regular(path, true)?
        .take(MAX_DESCRIPTOR + 1)
        .read_to_end(&mut text)?;
    if text.len() as u64 > MAX_DESCRIPTOR {
        return Err(corrupt("VMDK descriptor is implausibly large"));
    }
    parse_descriptor(&text, |file| {
        let (_, file) = confine.open(path, Path::new(file), "VMDK extent")?;
        Ok(Arc::new(FileDevice::from_file(file)?))
    })
}

/// Reads a descriptor's one extent line and opens the extent through `open_extent`,
/// given the file name the line holds.
pub fn parse_descriptor(
    text: &[u8],
    open_extent: impl FnOnce(&str) -> io::Result<Device>,
) -> io::Result<Device> {
    let text = String::from_utf8_lossy(text);
    let extents: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("RW ") || l.starts_with("RDONLY "))
        .collect();
    let [line] = extents.as_slice() else {
        return Err(corrupt(format!(
            "VMDK descriptor names {} extents; rehost reads single-extent disks (qemu-img convert it first)",
            extents.len()
        )));
    };
    // Quoted in messages, cut short: the line is the input's, of any length.
    let shown: String = line.chars().take(80).collect();
    let quoted: Vec<&str> = line.split('"').collect();
    let (Some(kind), Some(file)) = (quoted[0].split_whitespace().nth(2), quoted.get(1)) else {
        return Err(corrupt(format!(
            "VMDK extent line `{shown}` cannot be read"
        )));
    };
    let sectors: u64 = quoted[0]
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| corrupt(format!("VMDK extent line `{shown}` has no size")))?;
    if !matches!(kind, "FLAT" | "SPARSE") {
        return Err(corrupt(format!("VMDK extent type {kind} is not supported")));
    }
    let dev = open_extent(file)?;
    match kind {
        "FLAT" => {
            let offset = quoted
                .get(2)
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(0)
                .checked_mul(SECTOR);
            let len = sectors.checked_mul(SECTOR);
            let (Some(offset), Some(len)) = (offset, len) else {
                return Err(corrupt(format!(
                    "VMDK extent line `{shown}` has an impossible size"
                )));
            };
            if offset.checked_add(len).is_none_or(|end| end > dev.len()) {
                return Err(corrupt(format!(
                    "VMDK extent {file} is shorter than the disk (truncated?)"
                )));
            }
            Ok(Arc::new(Slice::new(dev, offset, len)))
        }
        _ => Ok(Arc::new(Vmdk::open(dev)?)),
    }
}
