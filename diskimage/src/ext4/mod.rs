//! Our own reader of ext2, ext3 and ext4, on any [`BlockDevice`]: superblock, group
//! descriptors (32 and 64 bit, meta_bg), inodes, extent trees and the old block maps,
//! linear and htree directories, inline data, fast symlinks, and extended attributes in
//! the inode, in a block or in an EA inode. Only what a snapshot needs, all of it.
//!
//! Every structure read from the disk is checked before it is used: numbers out of
//! range, trees too deep, chains that loop — each is an error naming the inode or
//! block, never a panic or an endless loop.

mod dir;
mod inode;
mod map;
mod xattr;

pub use dir::DirEntry;
pub use inode::Inode;
pub use map::FileReader;

use crate::device::{corrupt, le16, le32, read_vec, Device};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};

pub const ROOT_INO: u32 = 2;

const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_ENCRYPT: u32 = 0x10000;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
const RO_COMPAT_HUGE_FILE: u32 = 0x8;
/// Features this reader understands; anything else in incompat is refused.
const INCOMPAT_KNOWN: u32 =
    0x2 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x2000 | 0x4000 | 0x8000 | 0x20000;

/// Metadata blocks kept in memory (inode tables, directory and xattr blocks): 16 MiB at 4 KiB.
const CACHE_BLOCKS: usize = 4096;

pub struct Ext4 {
    dev: Device,
    pub block_size: u64,
    blocks_count: u64,
    inode_size: u64,
    inodes_per_group: u32,
    inodes_count: u32,
    /// Inode table's first block, per group.
    inode_tables: Vec<u64>,
    filetype: bool,
    huge_file: bool,
    pub uuid: String,
    pub label: String,
    /// The journal holds transactions not yet replayed (the VM was not shut down cleanly).
    pub needs_recovery: bool,
    cache: Mutex<BlockCache>,
}

impl Ext4 {
    pub fn open(dev: Device) -> io::Result<Self> {
        let sb = read_vec(dev.as_ref(), 1024, 1024)?;
        if le16(&sb, 0x38) != 0xEF53 {
            return Err(corrupt("no ext2/3/4 superblock"));
        }
        let log = le32(&sb, 0x18);
        if log > 6 {
            return Err(corrupt(format!(
                "superblock: block size 2^{} KiB is impossible",
                log
            )));
        }
        let block_size = 1024u64 << log;
        let incompat = le32(&sb, 0x60);
        let ro_compat = le32(&sb, 0x64);
        if incompat & INCOMPAT_JOURNAL_DEV != 0 {
            return Err(corrupt(
                "this is an external journal device, not a filesystem",
            ));
        }
        if incompat & INCOMPAT_ENCRYPT != 0 {
            tracing::warn!(
                "filesystem has encrypted directories; their names and content are unreadable"
            );
        }
        if incompat & !INCOMPAT_KNOWN != 0 {
            return Err(corrupt(format!(
                "filesystem uses features this reader does not know (incompat {:#x})",
                incompat & !INCOMPAT_KNOWN
            )));
        }
        let is64 = incompat & INCOMPAT_64BIT != 0;
        let mut blocks_count = le32(&sb, 0x4) as u64;
        if is64 {
            blocks_count |= (le32(&sb, 0x150) as u64) << 32;
        }
        let first_data_block = le32(&sb, 0x14) as u64;
        let blocks_per_group = le32(&sb, 0x20) as u64;
        let inodes_per_group = le32(&sb, 0x28);
        let inodes_count = le32(&sb, 0x0);
        let rev = le32(&sb, 0x4C);
        let inode_size = if rev >= 1 {
            le16(&sb, 0x58) as u64
        } else {
            128
        };
        if blocks_per_group == 0 || inodes_per_group == 0 || blocks_per_group > block_size * 8 {
            return Err(corrupt("superblock: impossible group geometry"));
        }
        if !(128..=block_size).contains(&inode_size) || !inode_size.is_power_of_two() {
            return Err(corrupt(format!(
                "superblock: impossible inode size {inode_size}"
            )));
        }
        let fs_bytes = blocks_count.saturating_mul(block_size);
        if fs_bytes > dev.len() {
            return Err(corrupt(format!(
                "the filesystem ({fs_bytes} bytes) is larger than its volume ({} bytes): truncated image?",
                dev.len()
            )));
        }
        let groups = (blocks_count.saturating_sub(first_data_block)).div_ceil(blocks_per_group);
        if groups == 0 || (groups as u128) * (inodes_per_group as u128) < inodes_count as u128 {
            return Err(corrupt("superblock: inode count does not fit the groups"));
        }
        let desc_size = if is64 {
            (le16(&sb, 0xFE) as u64).max(32)
        } else {
            32
        };
        if desc_size > block_size || (is64 && desc_size < 64) {
            return Err(corrupt(format!(
                "superblock: impossible group descriptor size {desc_size}"
            )));
        }
        let per_block = block_size / desc_size;
        let first_meta_bg = le32(&sb, 0x104) as u64;
        let meta_bg = incompat & INCOMPAT_META_BG != 0;
        let sparse_super = ro_compat & RO_COMPAT_SPARSE_SUPER != 0;

        let mut inode_tables = Vec::with_capacity(groups as usize);
        let mut desc_block_cache: Option<(u64, Vec<u8>)> = None;
        for g in 0..groups {
            let desc_block_index = g / per_block;
            let block = if meta_bg && desc_block_index >= first_meta_bg {
                // meta_bg: each meta group keeps its descriptors in its own first group.
                let first_group = desc_block_index * per_block;
                let group_start = first_data_block + first_group * blocks_per_group;
                group_start + has_super(first_group, sparse_super) as u64
            } else {
                first_data_block + 1 + desc_block_index
            };
            if block >= blocks_count {
                return Err(corrupt(format!(
                    "group descriptor block {block} lies outside the filesystem"
                )));
            }
            if desc_block_cache.as_ref().map(|c| c.0) != Some(block) {
                desc_block_cache = Some((
                    block,
                    read_vec(dev.as_ref(), block * block_size, block_size as usize)?,
                ));
            }
            let buf = &desc_block_cache.as_ref().unwrap().1;
            let off = ((g % per_block) * desc_size) as usize;
            let mut table = le32(buf, off + 8) as u64;
            if is64 {
                table |= (le32(buf, off + 0x28) as u64) << 32;
            }
            let table_blocks = (inodes_per_group as u64 * inode_size).div_ceil(block_size);
            if table == 0
                || table
                    .checked_add(table_blocks)
                    .is_none_or(|end| end > blocks_count)
            {
                return Err(corrupt(format!(
                    "group {g}: inode table at block {table} lies outside the filesystem"
                )));
            }
            inode_tables.push(table);
        }
        let label_raw = &sb[0x78..0x88];
        let label_end = label_raw.iter().position(|&b| b == 0).unwrap_or(16);
        Ok(Ext4 {
            dev,
            block_size,
            blocks_count,
            inode_size,
            inodes_per_group,
            inodes_count,
            inode_tables,
            filetype: incompat & INCOMPAT_FILETYPE != 0,
            huge_file: ro_compat & RO_COMPAT_HUGE_FILE != 0,
            uuid: uuid(&sb[0x68..0x78]),
            label: String::from_utf8_lossy(&label_raw[..label_end]).into_owned(),
            needs_recovery: incompat & INCOMPAT_RECOVER != 0,
            cache: Mutex::new(BlockCache::default()),
        })
    }

    /// One metadata block, through the cache.
    fn block(&self, block: u64) -> io::Result<Arc<Vec<u8>>> {
        if block >= self.blocks_count {
            return Err(corrupt(format!(
                "block {block} lies outside the filesystem"
            )));
        }
        if let Some(b) = self.cache.lock().unwrap().get(block) {
            return Ok(b);
        }
        let data = Arc::new(read_vec(
            self.dev.as_ref(),
            block * self.block_size,
            self.block_size as usize,
        )?);
        self.cache.lock().unwrap().put(block, data.clone());
        Ok(data)
    }

    /// Reads data blocks straight from the device (file content, not cached).
    fn read_blocks(&self, buf: &mut [u8], block: u64, offset_in: u64) -> io::Result<()> {
        let end_block = block + (offset_in + buf.len() as u64).div_ceil(self.block_size);
        if end_block > self.blocks_count {
            return Err(corrupt(format!(
                "data block {block} lies outside the filesystem"
            )));
        }
        self.dev.read_at(buf, block * self.block_size + offset_in)
    }

    pub fn inode(&self, ino: u32) -> io::Result<Inode> {
        if ino == 0 || ino > self.inodes_count {
            return Err(corrupt(format!("inode number {ino} is out of range")));
        }
        let index = (ino - 1) as u64;
        let group = (index / self.inodes_per_group as u64) as usize;
        let offset = (index % self.inodes_per_group as u64) * self.inode_size;
        let block = self.inode_tables[group] + offset / self.block_size;
        let data = self.block(block)?;
        let at = (offset % self.block_size) as usize;
        Inode::parse(
            ino,
            &data[at..at + self.inode_size as usize],
            self.huge_file,
        )
    }
}

fn has_super(group: u64, sparse_super: bool) -> bool {
    if !sparse_super || group <= 1 {
        return true;
    }
    [3u64, 5, 7].iter().any(|&base| {
        let mut n = base;
        while n < group {
            n *= base;
        }
        n == group
    })
}

fn uuid(b: &[u8]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A bounded cache of metadata blocks, evicting the oldest.
#[derive(Default)]
struct BlockCache {
    map: HashMap<u64, Arc<Vec<u8>>>,
    order: VecDeque<u64>,
}

impl BlockCache {
    fn get(&self, block: u64) -> Option<Arc<Vec<u8>>> {
        self.map.get(&block).cloned()
    }

    fn put(&mut self, block: u64, data: Arc<Vec<u8>>) {
        if self.map.insert(block, data).is_none() {
            self.order.push_back(block);
        }
        while self.order.len() > CACHE_BLOCKS {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}
