//! One inode, decoded: type and mode, owners, size, times, link count, flags, the
//! 60-byte `i_block` area (extent root, block map, fast symlink, device number or
//! inline data) and the in-inode extended attribute area.

use crate::device::{corrupt, le16, le32};
use std::io;

pub const FL_HUGE_FILE: u32 = 0x40000;
pub const FL_EXTENTS: u32 = 0x80000;
pub const FL_INLINE_DATA: u32 = 0x1000_0000;

#[derive(Debug, Clone)]
pub struct Inode {
    pub ino: u32,
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub links: u16,
    pub flags: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Allocated space in bytes (data, and metadata such as extent and xattr blocks).
    pub allocated: u64,
    pub block: [u8; 60],
    pub file_acl: u64,
    /// The in-inode xattr area (after the extra fields), possibly empty.
    pub xattr_area: Vec<u8>,
}

impl Inode {
    pub fn parse(ino: u32, raw: &[u8], huge_file_fs: bool) -> io::Result<Self> {
        let mode = le16(raw, 0);
        let uid = le16(raw, 2) as u32 | (le16(raw, 0x78) as u32) << 16;
        let gid = le16(raw, 0x18) as u32 | (le16(raw, 0x7A) as u32) << 16;
        let size = le32(raw, 4) as u64 | (le32(raw, 0x6C) as u64) << 32;
        let flags = le32(raw, 0x20);
        let mut blocks = le32(raw, 0x1C) as u64;
        if huge_file_fs {
            blocks |= (le16(raw, 0x74) as u64) << 32;
        }
        // With huge_file, a flagged inode counts in filesystem blocks; the caller scales.
        let allocated = blocks * 512;
        let mut block = [0u8; 60];
        block.copy_from_slice(&raw[0x28..0x64]);
        let file_acl = le32(raw, 0x68) as u64 | (le16(raw, 0x76) as u64) << 32;
        let mut mtime = le32(raw, 0x10) as i32 as i64;
        let mut mtime_nsec = 0;
        let mut xattr_area = Vec::new();
        if raw.len() > 128 {
            let extra = le16(raw, 0x80) as usize;
            if 128 + extra > raw.len() || !extra.is_multiple_of(4) {
                return Err(corrupt(format!(
                    "inode {ino}: impossible extra size {extra}"
                )));
            }
            if extra >= 12 {
                let x = le32(raw, 0x88);
                mtime += ((x & 3) as i64) << 32;
                mtime_nsec = x >> 2;
            }
            xattr_area = raw[128 + extra..].to_vec();
        }
        Ok(Inode {
            ino,
            mode,
            uid,
            gid,
            size,
            links: le16(raw, 0x1A),
            flags,
            mtime,
            mtime_nsec,
            allocated,
            block,
            file_acl,
            xattr_area,
        })
    }

    pub fn perm(&self) -> u32 {
        self.mode as u32 & 0o7777
    }

    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// Device numbers, in the old (one byte each) or the new encoding.
    pub fn device(&self) -> (u32, u32) {
        let old = le32(&self.block, 0);
        if old != 0 {
            return ((old >> 8) & 0xff, old & 0xff);
        }
        let dev = le32(&self.block, 4);
        ((dev & 0xfff00) >> 8, (dev & 0xff) | ((dev >> 12) & 0xfff00))
    }

    /// Bytes allocated to the inode (data and its metadata blocks).
    pub fn allocated_bytes(&self, block_size: u64) -> u64 {
        if self.has(FL_HUGE_FILE) {
            self.allocated / 512 * block_size
        } else {
            self.allocated
        }
    }

    pub fn is_inline(&self) -> bool {
        self.has(FL_INLINE_DATA)
    }

    /// A symlink whose target lives in `i_block` itself.
    pub fn is_fast_symlink(&self) -> bool {
        self.size < 60 && !self.has(FL_EXTENTS) && !self.has(FL_INLINE_DATA)
    }
}
