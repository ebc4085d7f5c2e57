//! Where a file's data lies: its extent tree or (ext2/3) its block map, flattened to a
//! sorted list of runs, and a reader that gives the file's logical content from them,
//! holes as zeros, reading whole runs at a time.

use super::inode::{Inode, FL_EXTENTS, FL_INLINE_DATA};
use super::Ext4;
use crate::device::{corrupt, le16, le32};
use std::collections::HashSet;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;

/// Logical blocks `logical..logical+len` of a file live at `physical..`; an unwritten
/// (preallocated) run reads as zeros.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub logical: u64,
    pub physical: u64,
    pub len: u64,
    pub unwritten: bool,
}

/// The runs being collected, bounded as they grow.
struct Runs {
    runs: Vec<Run>,
    /// The most runs the file can have.
    cap: u64,
    /// Extent tree nodes visited, by block.
    nodes: HashSet<u64>,
}

impl Runs {
    /// Adds a run, which must come after the previous one (a tree's leaves, and a block
    /// map, give them in order), refusing more runs than the file can have.
    fn push(&mut self, inode: &Inode, run: Run) -> io::Result<()> {
        if let Some(last) = self.runs.last() {
            if run.logical < last.logical + last.len {
                return Err(corrupt(format!(
                    "inode {}: extents overlap or are out of order at logical block {}",
                    inode.ino, run.logical
                )));
            }
        }
        if self.runs.len() as u64 >= self.cap {
            return Err(corrupt(format!(
                "inode {}: more extents than the file has blocks",
                inode.ino
            )));
        }
        self.runs.push(run);
        Ok(())
    }
}

const EXTENT_MAGIC: u16 = 0xF30A;
const MAX_DEPTH: u16 = 5;

impl Ext4 {
    /// The runs of a file's data, sorted and checked not to overlap.
    pub fn runs(&self, inode: &Inode) -> io::Result<Vec<Run>> {
        let blocks_in_file = inode.size.div_ceil(self.block_size);
        // Each run maps at least one block, of the file's size or of what it has
        // allocated (preallocation may reach past the size), and no more than the
        // filesystem holds: a tree of shared or looping nodes cannot pile up more.
        let allocated = inode.allocated_bytes(self.block_size) / self.block_size;
        let mut runs = Runs {
            runs: Vec::new(),
            cap: blocks_in_file.max(allocated).min(self.blocks_count),
            nodes: HashSet::new(),
        };
        if inode.has(FL_EXTENTS) {
            self.extent_node(inode, &inode.block, MAX_DEPTH + 1, &mut runs)?;
        } else {
            self.block_map(inode, blocks_in_file, &mut runs)?;
        }
        let mut runs = runs.runs;
        runs.sort_by_key(|r| r.logical);
        for pair in runs.windows(2) {
            if pair[0].logical + pair[0].len > pair[1].logical {
                return Err(corrupt(format!(
                    "inode {}: extents overlap at logical block {}",
                    inode.ino, pair[1].logical
                )));
            }
        }
        Ok(runs)
    }

    fn extent_node(
        &self,
        inode: &Inode,
        node: &[u8],
        parent_depth: u16,
        runs: &mut Runs,
    ) -> io::Result<()> {
        let bad = |what: &str| corrupt(format!("inode {}: extent tree {what}", inode.ino));
        if node.len() < 12 || le16(node, 0) != EXTENT_MAGIC {
            return Err(bad("node has no magic"));
        }
        let entries = le16(node, 2) as usize;
        let depth = le16(node, 6);
        // Depth must fall by one at each level: a loop in the tree cannot.
        if depth >= parent_depth || depth > MAX_DEPTH || 12 + entries * 12 > node.len() {
            return Err(bad("node is malformed (depth or entry count)"));
        }
        for i in 0..entries {
            let e = &node[12 + i * 12..24 + i * 12];
            let logical = le32(e, 0) as u64;
            if depth == 0 {
                let raw_len = le16(e, 4) as u64;
                let (len, unwritten) = if raw_len > 32768 {
                    (raw_len - 32768, true)
                } else {
                    (raw_len, false)
                };
                let physical = (le16(e, 6) as u64) << 32 | le32(e, 8) as u64;
                if len == 0 {
                    continue;
                }
                if physical + len > self.blocks_count {
                    return Err(bad(&format!(
                        "points at block {physical} outside the filesystem"
                    )));
                }
                runs.push(
                    inode,
                    Run {
                        logical,
                        physical,
                        len,
                        unwritten,
                    },
                )?;
            } else {
                let child = le32(e, 4) as u64 | (le16(e, 8) as u64) << 32;
                // A node reached twice (index entries sharing a block) would be walked
                // again and again: a valid tree is a tree.
                if !runs.nodes.insert(child) {
                    return Err(bad(&format!("reaches block {child} twice")));
                }
                let block = self.block(child)?;
                self.extent_node(inode, &block, depth, runs)?;
            }
        }
        Ok(())
    }

    /// ext2/3 block maps: 12 direct pointers, then single, double and triple indirect.
    fn block_map(&self, inode: &Inode, blocks_in_file: u64, runs: &mut Runs) -> io::Result<()> {
        let per = self.block_size / 4;
        let mut push = |logical: u64, physical: u64| -> io::Result<()> {
            if physical == 0 || logical >= blocks_in_file {
                return Ok(());
            }
            if physical >= self.blocks_count {
                return Err(corrupt(format!(
                    "inode {}: block map points at block {physical} outside the filesystem",
                    inode.ino
                )));
            }
            match runs.runs.last_mut() {
                Some(r) if r.logical + r.len == logical && r.physical + r.len == physical => {
                    r.len += 1;
                    Ok(())
                }
                _ => runs.push(
                    inode,
                    Run {
                        logical,
                        physical,
                        len: 1,
                        unwritten: false,
                    },
                ),
            }
        };
        let mut seen = HashSet::new();
        for i in 0..12u64 {
            push(i, le32(&inode.block, i as usize * 4) as u64)?;
        }
        let mut start = 12u64;
        for level in 1..=3u32 {
            let ptr = le32(&inode.block, (11 + level as usize) * 4) as u64;
            let span = per.pow(level);
            if ptr != 0 && start < blocks_in_file {
                self.indirect(
                    inode,
                    ptr,
                    level,
                    start,
                    blocks_in_file,
                    &mut seen,
                    &mut push,
                )?;
            }
            start += span;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn indirect(
        &self,
        inode: &Inode,
        ptr: u64,
        level: u32,
        start: u64,
        limit: u64,
        seen: &mut HashSet<u64>,
        push: &mut dyn FnMut(u64, u64) -> io::Result<()>,
    ) -> io::Result<()> {
        // As for extent trees: an indirect block used twice is walked once.
        if !seen.insert(ptr) {
            return Err(corrupt(format!(
                "inode {}: block map reaches indirect block {ptr} twice",
                inode.ino
            )));
        }
        let block = self.block(ptr)?;
        let per = self.block_size / 4;
        let span = per.pow(level - 1);
        for i in 0..per {
            let logical = start + i * span;
            if logical >= limit {
                break;
            }
            let p = le32(&block, i as usize * 4) as u64;
            if p == 0 {
                continue;
            }
            if level == 1 {
                push(logical, p)?;
            } else {
                self.indirect(inode, p, level - 1, logical, limit, seen, push)?;
            }
        }
        Ok(())
    }

    /// The byte ranges of a file that hold data (written runs), clipped to its size.
    pub fn data_extents(&self, inode: &Inode, runs: &[Run]) -> Vec<Range<u64>> {
        let mut out: Vec<Range<u64>> = Vec::new();
        for r in runs.iter().filter(|r| !r.unwritten) {
            let offset = r.logical * self.block_size;
            if offset >= inode.size {
                break;
            }
            let len = (r.len * self.block_size).min(inode.size - offset);
            match out.last_mut() {
                Some(last) if last.end == offset => last.end += len,
                _ => out.push(offset..offset + len),
            }
        }
        out
    }

    /// A reader of a file's whole logical content.
    pub fn reader(&self, inode: &Inode) -> io::Result<FileReader<'_>> {
        let inline = if inode.has(FL_INLINE_DATA) {
            Some(self.inline_data(inode)?)
        } else {
            None
        };
        let runs = if inline.is_some() {
            Vec::new()
        } else {
            self.runs(inode)?
        };
        Ok(FileReader {
            fs: self,
            ino: inode.ino,
            size: inode.size,
            runs,
            inline,
            pos: 0,
        })
    }

    /// Inline data: the first 60 bytes in `i_block`, the rest in the `system.data` xattr.
    pub fn inline_data(&self, inode: &Inode) -> io::Result<Vec<u8>> {
        let mut data = inode.block.to_vec();
        if let Some(more) = self.xattr_value(inode, 7, b"data")? {
            data.extend_from_slice(&more);
        }
        if (data.len() as u64) < inode.size {
            return Err(corrupt(format!(
                "inode {}: inline data shorter than the file",
                inode.ino
            )));
        }
        data.truncate(inode.size as usize);
        Ok(data)
    }

    /// A file's whole content, for directories and symlinks (bounded by `limit`).
    pub fn read_all(&self, inode: &Inode, limit: u64) -> io::Result<Vec<u8>> {
        if inode.size > limit {
            return Err(corrupt(format!(
                "inode {}: {} bytes is implausibly large here",
                inode.ino, inode.size
            )));
        }
        // The size is the image's word: memory grows with what is really read.
        let mut out = Vec::with_capacity(inode.size.min(1 << 20) as usize);
        self.reader(inode)?.read_to_end(&mut out)?;
        Ok(out)
    }
}

/// Reads a file's content by logical position; seekable, so a sparse file's data
/// extents can be read one after another.
pub struct FileReader<'a> {
    fs: &'a Ext4,
    ino: u32,
    size: u64,
    runs: Vec<Run>,
    inline: Option<Vec<u8>>,
    pos: u64,
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min((self.size - self.pos).min(1 << 22) as usize);
        if let Some(data) = &self.inline {
            let n = want.min(data.len() - self.pos as usize);
            buf[..n].copy_from_slice(&data[self.pos as usize..self.pos as usize + n]);
            self.pos += n as u64;
            return Ok(n);
        }
        let bs = self.fs.block_size;
        let lblk = self.pos / bs;
        let idx = self.runs.partition_point(|r| r.logical + r.len <= lblk);
        let n = match self.runs.get(idx) {
            Some(r) if r.logical <= lblk => {
                let run_end = (r.logical + r.len) * bs;
                let n = want.min((run_end - self.pos) as usize);
                if r.unwritten {
                    buf[..n].fill(0);
                } else {
                    let block = r.physical + (lblk - r.logical);
                    self.fs
                        .read_blocks(&mut buf[..n], block, self.pos % bs)
                        .map_err(|e| {
                            io::Error::new(e.kind(), format!("inode {}: {e}", self.ino))
                        })?;
                }
                n
            }
            next => {
                // A hole up to the next run (or the end of the file).
                let hole_end = next.map_or(self.size, |r| r.logical * bs);
                let n = want.min((hole_end - self.pos) as usize);
                buf[..n].fill(0);
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for FileReader<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start"))?;
        Ok(self.pos)
    }
}
