//! VHD (Virtual PC / Hyper-V / Azure): fixed disks are the raw data followed by a
//! 512-byte footer; dynamic disks map 2 MiB (usually) blocks through a block allocation
//! table, each block led by a sector bitmap. Only the table is held in memory.

use crate::device::{be32, be64, corrupt, read_vec, BlockDevice, Device, Slice};
use std::io;
use std::sync::Arc;

pub const COOKIE: &[u8] = b"conectix";
const SECTOR: u64 = 512;
const UNALLOCATED: u32 = u32::MAX;

/// The footer: at the end of every VHD, and copied at the start of a dynamic one.
pub fn footer(file: &Device) -> io::Result<Option<Vec<u8>>> {
    if file.len() < SECTOR {
        return Ok(None);
    }
    let end = read_vec(file.as_ref(), file.len() - SECTOR, 512)?;
    if &end[..8] == COOKIE {
        return Ok(Some(end));
    }
    // Older tools wrote a 511-byte footer.
    let start = read_vec(file.as_ref(), 0, 512)?;
    Ok((&start[..8] == COOKIE).then_some(start))
}

pub fn open(file: Device) -> io::Result<Device> {
    let f = footer(&file)?.ok_or_else(|| corrupt("no VHD footer"))?;
    let size = be64(&f, 48);
    match be32(&f, 60) {
        2 => {
            if size > file.len() {
                return Err(corrupt("fixed VHD is shorter than its disk size (truncated?)"));
            }
            Ok(Arc::new(Slice::new(file, 0, size)))
        }
        3 => Ok(Arc::new(Dynamic::open(file, size, be64(&f, 16))?)),
        4 => Err(corrupt(
            "differencing VHD: rehost reads it only merged with its parent (qemu-img convert -O vpc first)",
        )),
        t => Err(corrupt(format!("unknown VHD disk type {t}"))),
    }
}

pub struct Dynamic {
    file: Device,
    size: u64,
    block: u64,
    bitmap: u64,
    bat: Vec<u32>,
}

impl Dynamic {
    fn open(file: Device, size: u64, header_at: u64) -> io::Result<Self> {
        if header_at.checked_add(1024).is_none_or(|e| e > file.len()) {
            return Err(corrupt(
                "VHD dynamic header lies outside the file (truncated?)",
            ));
        }
        let h = read_vec(file.as_ref(), header_at, 1024)?;
        if &h[..8] != b"cxsparse" {
            return Err(corrupt("VHD dynamic header has no cookie"));
        }
        let bat_at = be64(&h, 16);
        let entries = be32(&h, 28) as u64;
        let block = be32(&h, 32) as u64;
        if !block.is_power_of_two() || !(SECTOR..=(256 << 20)).contains(&block) {
            return Err(corrupt(format!("VHD block size {block} is impossible")));
        }
        if entries < size.div_ceil(block)
            || entries > 1 << 24
            || bat_at
                .checked_add(entries * 4)
                .is_none_or(|end| end > file.len())
        {
            return Err(corrupt(
                "VHD block allocation table does not fit the disk or the file",
            ));
        }
        let raw = read_vec(file.as_ref(), bat_at, (entries * 4) as usize)?;
        let bitmap = (block / SECTOR).div_ceil(8).div_ceil(SECTOR) * SECTOR;
        Ok(Dynamic {
            file,
            size,
            block,
            bitmap,
            bat: (0..entries as usize).map(|i| be32(&raw, i * 4)).collect(),
        })
    }
}

impl BlockDevice for Dynamic {
    fn len(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.size)
        {
            return Err(corrupt(format!(
                "VHD: read at {offset} past the end of the disk"
            )));
        }
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let within = pos % self.block;
            let n = (buf.len() - done).min((self.block - within) as usize);
            let out = &mut buf[done..done + n];
            match self.bat[(pos / self.block) as usize] {
                UNALLOCATED => out.fill(0),
                sector => self
                    .file
                    .read_at(out, sector as u64 * SECTOR + self.bitmap + within)
                    .map_err(|e| corrupt(format!("VHD block at sector {sector}: {e}")))?,
            }
            done += n;
        }
        Ok(())
    }
}
