//! The index of an archive's entries, kept in a temporary file in walk order, so memory
//! stays bounded whatever the number of entries: an archive of ten million files costs
//! disk, not RAM.
//!
//! Entries are read in archive order into sorted runs of a few MiB, spilled to a
//! temporary file when there are more; the runs are merged into one file in walk order,
//! where a later entry of the same path replaces an earlier one (as an unpacker would
//! leave it). Memory holds one run and a mark every [`MARK_EVERY`] entries (its key and
//! place), by which a lookup reads a few KiB of the file.

use crate::entry::Entry;
use crate::source::codec::{In, Out};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};

/// Bytes of encoded entries sorted in memory before a run is spilled.
const RUN_BYTES: usize = 8 << 20;
/// One entry in this many is marked in memory.
pub(super) const MARK_EVERY: u64 = 64;
/// The largest record read back (a path and link of 64 KiB each, xattrs and a sparse
/// map of a few MiB): a corrupt temporary file cannot make a read allocate more.
const MAX_RECORD: u32 = 64 << 20;

/// Where an entry's data lies in the (decompressed) archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DataAt {
    pub offset: u64,
    /// In the side file (expanded GNU sparse entries) instead of the archive data.
    pub side: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Indexed {
    pub entry: Entry,
    pub data: DataAt,
}

/// One record: the walk-order key, the entry's place in the archive (a later one wins),
/// and the entry.
#[derive(Debug, Clone)]
pub(super) struct Record {
    pub key: Vec<u8>,
    pub seq: u64,
    pub item: Indexed,
}

/// Collects records in archive order; [`Runs::merge`] gives them in walk order.
#[derive(Default)]
pub(super) struct Runs {
    buffer: Vec<Record>,
    buffered: usize,
    spilled: Vec<File>,
}

impl Runs {
    pub fn push(&mut self, record: Record) -> io::Result<()> {
        self.buffered += record.key.len() * 2 + 128 + record.item.entry.link.len();
        self.buffer.push(record);
        if self.buffered >= RUN_BYTES {
            self.spill()?;
        }
        Ok(())
    }

    fn sort(&mut self) {
        self.buffer
            .sort_unstable_by(|a, b| (&a.key, a.seq).cmp(&(&b.key, b.seq)));
    }

    fn spill(&mut self) -> io::Result<()> {
        self.sort();
        let mut out = BufWriter::with_capacity(1 << 16, tempfile::tempfile()?);
        for r in self.buffer.drain(..) {
            write_record(&mut out, &r)?;
        }
        let mut file = out.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        self.spilled.push(file);
        self.buffered = 0;
        self.buffer.shrink_to(0);
        Ok(())
    }

    /// Every record in walk order, the last of each key only; `seen` also gets each
    /// dropped (replaced) record, before the one that replaced it.
    pub fn merge(
        mut self,
        mut each: impl FnMut(Record, &[u64]) -> io::Result<()>,
    ) -> io::Result<()> {
        self.sort();
        let mut sources: Vec<Box<dyn Iterator<Item = io::Result<Record>>>> = Vec::new();
        for file in self.spilled {
            // Small buffers: an archive of millions of entries merges a hundred runs and more.
            let mut reader = BufReader::with_capacity(16 << 10, file);
            sources.push(Box::new(std::iter::from_fn(move || {
                read_record(&mut reader).transpose()
            })));
        }
        sources.push(Box::new(self.buffer.into_iter().map(Ok)));
        let mut heap = BinaryHeap::new();
        for (i, source) in sources.iter_mut().enumerate() {
            if let Some(r) = source.next().transpose()? {
                heap.push(Reverse(Pending(r, i)));
            }
        }
        // Records of one key arrive together, by their place in the archive.
        let mut current: Option<Record> = None;
        let mut earlier: Vec<u64> = Vec::new();
        while let Some(Reverse(Pending(r, i))) = heap.pop() {
            if let Some(next) = sources[i].next().transpose()? {
                heap.push(Reverse(Pending(next, i)));
            }
            match current.take() {
                Some(c) if c.key == r.key => earlier.push(c.seq),
                Some(c) => {
                    each(c, &earlier)?;
                    earlier.clear();
                }
                None => {}
            }
            current = Some(r);
        }
        if let Some(c) = current {
            each(c, &earlier)?;
        }
        Ok(())
    }
}

/// A record waiting in the merge, ordered by key then archive place.
struct Pending(Record, usize);

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.0.key, self.0.seq).cmp(&(&other.0.key, other.0.seq))
    }
}

/// The entries in walk order, in a temporary file, with marks in memory.
pub(super) struct Index {
    file: File,
    /// The key and file offset of every [`MARK_EVERY`]th record, from the first.
    marks: Vec<(Vec<u8>, u64)>,
}

/// Writes records, in walk order, into an [`Index`].
pub(super) struct IndexWriter {
    out: BufWriter<File>,
    marks: Vec<(Vec<u8>, u64)>,
    pos: u64,
    count: u64,
}

impl IndexWriter {
    pub fn new() -> io::Result<Self> {
        Ok(IndexWriter {
            out: BufWriter::with_capacity(1 << 16, tempfile::tempfile()?),
            marks: Vec::new(),
            pos: 0,
            count: 0,
        })
    }

    pub fn push(&mut self, record: &Record) -> io::Result<()> {
        if self.count.is_multiple_of(MARK_EVERY) {
            self.marks.push((record.key.clone(), self.pos));
        }
        self.pos += write_record(&mut self.out, record)?;
        self.count += 1;
        Ok(())
    }

    pub fn finish(self) -> io::Result<Index> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        Ok(Index {
            file,
            marks: self.marks,
        })
    }
}

impl Index {
    /// Every record from the first whose key is at least `from`, in walk order.
    pub fn iter_from(&self, from: &[u8]) -> Iter<'_> {
        // The last mark at or before `from`: the records between it and `from` are read
        // and passed over.
        let at = self.marks.partition_point(|(k, _)| k.as_slice() <= from);
        let offset = at.checked_sub(1).map_or(0, |i| self.marks[i].1);
        Iter {
            reader: BufReader::with_capacity(
                8 << 10,
                PositionedReader {
                    file: &self.file,
                    pos: offset,
                },
            ),
            from: from.to_vec(),
        }
    }

    /// Every record, in walk order.
    pub fn iter(&self) -> Iter<'_> {
        self.iter_from(b"")
    }

    /// The record of one key.
    pub fn get(&self, key: &[u8]) -> io::Result<Option<Record>> {
        match self.iter_from(key).next().transpose()? {
            Some(r) if r.key == key => Ok(Some(r)),
            _ => Ok(None),
        }
    }
}

/// Records read from an [`Index`] with positioned reads, so lookups can share the file.
pub(super) struct Iter<'a> {
    reader: BufReader<PositionedReader<'a>>,
    from: Vec<u8>,
}

impl Iterator for Iter<'_> {
    type Item = io::Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match read_record(&mut self.reader) {
                Ok(Some(r)) if r.key < self.from => continue,
                Ok(Some(r)) => {
                    self.from.clear();
                    return Some(Ok(r));
                }
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

struct PositionedReader<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for PositionedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

// A record: its key, its place, the entry ([`Out::entry`]) and where its data lies.

fn write_record(out: &mut impl Write, r: &Record) -> io::Result<u64> {
    let mut b = Out(Vec::with_capacity(128 + r.key.len() * 2));
    b.bytes(&r.key);
    b.u64(r.seq);
    b.entry(&r.item.entry);
    b.u64(r.item.data.offset);
    b.0.push(r.item.data.side as u8);
    let b = b.0;
    let len = u32::try_from(b.len()).map_err(|_| io::Error::other("index record too large"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&b)?;
    Ok(4 + b.len() as u64)
}

/// The next record, or `None` at the end.
fn read_record(r: &mut impl Read) -> io::Result<Option<Record>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_RECORD {
        return Err(corrupt());
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)?;
    decode(&buf).ok_or_else(corrupt).map(Some)
}

fn corrupt() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the archive's temporary index is corrupt",
    )
}

fn decode(buf: &[u8]) -> Option<Record> {
    let mut c = In(buf);
    let key = c.bytes().ok()?;
    let seq = c.u64().ok()?;
    let entry = c.entry().ok()?;
    let data = DataAt {
        offset: c.u64().ok()?,
        side: c.flag().ok()?,
    };
    Some(Record {
        key,
        seq,
        item: Indexed { entry, data },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Extent, Kind};

    fn record(path: &str, seq: u64) -> Record {
        let mut e = Entry::new(path.as_bytes().to_vec(), Kind::File);
        e.size = seq;
        e.xattrs = vec![(b"user.a".to_vec(), b"1".to_vec())];
        e.sparse = Some(vec![Extent { offset: 0, len: 3 }]);
        e.inode = Some((u64::MAX, seq));
        Record {
            key: crate::entry::walk_order_key(path.as_bytes()),
            seq,
            item: Indexed {
                entry: e,
                data: DataAt {
                    offset: seq * 512,
                    side: seq.is_multiple_of(2),
                },
            },
        }
    }

    /// Runs spilled to disk merge into walk order, the last of each path winning, and
    /// every record reads back as written; a lookup finds any key.
    #[test]
    fn spilled_runs_merge_in_walk_order_and_read_back() {
        let mut runs = Runs::default();
        let names: Vec<String> = (0..20_000u64)
            .map(|i| format!("d{}/f{}", i % 7, i))
            .collect();
        let mut seq = 0;
        for name in names.iter().chain(names.iter().take(10)) {
            runs.push(record(name, seq)).unwrap();
            seq += 1;
            if seq.is_multiple_of(5000) {
                runs.spill().unwrap();
            }
        }
        assert!(runs.spilled.len() >= 4);
        let mut writer = IndexWriter::new().unwrap();
        let mut replaced = 0;
        runs.merge(|r, earlier| {
            replaced += earlier.len();
            writer.push(&r)
        })
        .unwrap();
        assert_eq!(replaced, 10);
        let index = writer.finish().unwrap();
        let all: Vec<Record> = index.iter().map(|r| r.unwrap()).collect();
        assert_eq!(all.len(), 20_000);
        assert!(all.windows(2).all(|w| w[0].key < w[1].key));
        // The later record of a path replaced the first.
        let first = index.get(b"d0\0f0").unwrap().unwrap();
        assert_eq!(first.seq, 20_000);
        assert_eq!(first.item, record("d0/f0", 20_000).item);
        let mid = index.get(b"d4\0f10000").unwrap().unwrap();
        assert_eq!(mid.item, record("d4/f10000", 10_000).item);
        assert!(index.get(b"d4\0f10000x").unwrap().is_none());
        assert!(index.get(b"").unwrap().is_none());
    }
}
