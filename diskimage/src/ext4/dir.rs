//! Directories: every block read as a linear list of entries. An htree directory is
//! built so this works: its index blocks look like one empty entry spanning the block,
//! and metadata_csum's tail is an entry with inode 0, so both are passed over. Inline
//! directories hold the parent in their first 4 bytes and entries after it.

use super::inode::{Inode, FL_INLINE_DATA};
use super::Ext4;
use crate::device::{corrupt, le16, le32};
use std::io::{self, Read};

/// Directories larger than this are refused as corrupt (a 1 GiB directory holds tens
/// of millions of names).
const MAX_DIR_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub ino: u32,
}

impl Ext4 {
    /// The entries of a directory, without `.` and `..`, sorted by name.
    pub fn list(&self, dir: &Inode) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        if dir.has(FL_INLINE_DATA) {
            let data = self.inline_data(dir)?;
            if data.len() >= 4 {
                // i_block after the parent pointer, then the system.data tail, are each a
                // run of entries of their own.
                let split = 60.min(data.len());
                self.parse_block(dir, &data[4..split], &mut out)?;
                if data.len() > 60 {
                    self.parse_block(dir, &data[60..], &mut out)?;
                }
            }
        } else {
            // No larger than the filesystem either: a run may map the same blocks
            // again, and a small image would otherwise give a huge listing.
            if dir.size > MAX_DIR_BYTES.min(self.blocks_count * self.block_size) {
                return Err(corrupt(format!(
                    "directory inode {}: {} bytes is implausibly large",
                    dir.ino, dir.size
                )));
            }
            // Block by block: the size is the image's word, and a corrupt directory
            // fails at its first bad block, before the rest is read.
            let mut reader = self.reader(dir)?;
            let mut block = vec![0u8; self.block_size as usize];
            let mut left = dir.size;
            while left > 0 {
                let n = left.min(self.block_size) as usize;
                reader.read_exact(&mut block[..n])?;
                self.parse_block(dir, &block[..n], &mut out)?;
                left -= n as u64;
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(pair) = out.windows(2).find(|p| p[0].name == p[1].name) {
            return Err(corrupt(format!(
                "directory inode {}: the name `{}` appears twice",
                dir.ino,
                String::from_utf8_lossy(&pair[0].name)
            )));
        }
        Ok(out)
    }

    fn parse_block(&self, dir: &Inode, block: &[u8], out: &mut Vec<DirEntry>) -> io::Result<()> {
        let mut pos = 0usize;
        while pos + 8 <= block.len() {
            let ino = le32(block, pos);
            let mut rec_len = le16(block, pos + 4) as usize;
            if rec_len == 0 || rec_len == 65535 {
                rec_len = 65536; // how 64 KiB blocks encode a whole-block entry
            }
            let name_len = if self.filetype {
                block[pos + 6] as usize
            } else {
                le16(block, pos + 6) as usize
            };
            if rec_len < 8 || pos + rec_len > block.len() || 8 + name_len > rec_len {
                return Err(corrupt(format!(
                    "directory inode {}: corrupt entry at byte {pos} of a block",
                    dir.ino
                )));
            }
            let name = &block[pos + 8..pos + 8 + name_len];
            if ino != 0 && name_len > 0 && name != b"." && name != b".." {
                if name.contains(&b'/') || name.contains(&0) {
                    return Err(corrupt(format!(
                        "directory inode {}: a name contains `/` or NUL",
                        dir.ino
                    )));
                }
                out.push(DirEntry {
                    name: name.to_vec(),
                    ino,
                });
            }
            pos += rec_len;
        }
        Ok(())
    }
}
