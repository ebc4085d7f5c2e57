//! An archive walked while it arrives: a remote capture's stream, which the helper
//! writes in walk order. Each entry is given to the walk as soon as its data is in the
//! spool, so the image is built while the rest of the tree is still on its way; the
//! index is made on the way too, and once the stream ends it is the [`ArchiveSource`]
//! that every later read (the rehost layer's) uses.
//!
//! The walk's own reads of entries other than the one it is given (a layer by package
//! reads ahead a few thousand entries; a hardlink names its group's first name) are
//! served by a [`Window`]: the entries given lately, and the files the stream marks as
//! having further names ([`oci::tar::LINKED`]), whose groups the walk numbers as they
//! come. Memory holds the window, not the tree.
//!
//! The stream is checked as it arrives, as a whole archive is: every path strictly after
//! the one before it in walk order (so no path twice, and parents first), nothing under
//! a non-directory, a hardlink only to a marked file given earlier. What breaks that
//! ends the walk with one line; the index's own checks run again at the end.

use super::index::Indexed;
use super::{
    detect, drain, read_error, read_full, ArchiveSource, Indexer, RangeReader, Tee, ARCHIVE_DEV,
};
use crate::entry::{normalize, walk_order_key, Entry, Kind};
use crate::error::{Error, IoContext, Result};
use crate::source::Visit;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

type Decoded<'r> = Box<dyn Read + Send + 'r>;

pub struct ArchiveStream<'r> {
    name: PathBuf,
    archive: oci::tar::Reader<Tee<Decoded<'r>, io::BufWriter<File>>>,
    spool: File,
    indexer: Indexer,
}

impl<'r> ArchiveStream<'r> {
    /// The stream `raw`, its compression found from its first bytes; nothing of the
    /// tree is read yet.
    pub fn new(name: &Path, mut raw: Box<dyn Read + Send + 'r>) -> Result<Self> {
        let mut magic = [0u8; 512];
        let n = read_full(&mut raw, &mut magic).at(name)?;
        let head = io::Cursor::new(magic[..n].to_vec());
        let raw: Decoded<'r> = Box::new(head.chain(raw));
        let decoded: Decoded<'r> = match detect(name, &magic[..n])? {
            super::Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(raw).at(name)?),
            super::Compression::Gzip => {
                Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(raw)))
            }
            super::Compression::None => raw,
        };
        let spool = tempfile::tempfile().at(std::env::temp_dir())?;
        let writer = spool.try_clone().at(std::env::temp_dir())?;
        let tee = Tee {
            inner: decoded,
            copy: io::BufWriter::with_capacity(1 << 20, writer),
        };
        Ok(ArchiveStream {
            name: name.to_path_buf(),
            archive: oci::tar::Reader::new(tee),
            spool,
            indexer: Indexer::new(name),
        })
    }

    /// Reads the whole stream without a walk: the archive, as [`ArchiveSource`] reads
    /// any stream.
    pub fn finish(mut self) -> Result<ArchiveSource> {
        while let Some(header) = self.next()? {
            self.indexer.add(header, &mut self.archive)?;
        }
        drain(&self.name, self.archive)?;
        self.indexer.finish(self.spool)
    }

    fn next(&mut self) -> Result<Option<oci::tar::Header>> {
        self.archive
            .next_entry()
            .map_err(|e| read_error(&self.name, e))
    }

    /// Gives each entry to `visit` as it arrives, in walk order, with what it may read
    /// meanwhile in `window`; then the whole archive.
    pub fn walk(mut self, window: &Window, visit: &mut Visit<'_>) -> Result<ArchiveSource> {
        let name = self.name.clone();
        let bad = |reason: String| Error::Archive {
            archive: name.clone(),
            reason,
        };
        window.set_spool(&self.spool)?;
        let mut previous: Option<Vec<u8>> = None;
        // The last entry that is no directory: nothing may lie under it.
        let mut leaf: Option<Vec<u8>> = None;
        let mut groups = 0u64;
        while let Some(header) = self.next()? {
            let Some(added) = self.indexer.add(header, &mut self.archive)? else {
                continue;
            };
            let mut entry = added.entry;
            let shown = entry.display().to_string();
            let key = walk_order_key(&entry.path);
            if previous.as_ref().is_some_and(|p| *p >= key) {
                return Err(bad(format!(
                    "`{shown}` comes out of walk order in a capture's stream (refused)"
                )));
            }
            if let Some(l) = &leaf {
                if key.len() > l.len() && key.starts_with(l) && key[l.len()] == 0 {
                    return Err(bad(format!(
                        "`{shown}` lies under an entry that is not a directory (refused)"
                    )));
                }
            }
            if !self.indexer.acls.is_empty() {
                return Err(bad(format!(
                    "`{shown}` carries an ACL as tar's text, which a capture's stream never \
                     does (refused)"
                )));
            }
            // Its data, into the spool, before anyone reads it.
            io::copy(&mut self.archive.data(), &mut io::sink())
                .map_err(|e| read_error(&self.name, oci::tar::TarError::Io(e)))?;
            if entry.kind == Kind::File {
                self.archive
                    .get_mut()
                    .copy
                    .flush()
                    .at(std::env::temp_dir())?;
                if let Some(side) = &self.indexer.side {
                    window.open_side(side)?;
                }
            }
            match entry.kind {
                Kind::File if added.linked => {
                    groups += 1;
                    entry.inode = Some((ARCHIVE_DEV, groups));
                }
                Kind::Hardlink => {
                    let group = window.group_of(&entry.link).ok_or_else(|| {
                        bad(format!(
                            "`{shown}` is a hardlink to `/{}`, which is not a file marked \
                             earlier in the stream (refused)",
                            String::from_utf8_lossy(&entry.link)
                        ))
                    })?;
                    entry.inode = Some((ARCHIVE_DEV, group));
                }
                _ => {}
            }
            if entry.kind != Kind::Dir {
                leaf = Some(key.clone());
            }
            previous = Some(key);
            window.remember(
                Indexed {
                    entry: entry.clone(),
                    data: added.data,
                },
                added.linked.then_some(groups),
            );
            visit(entry)?;
        }
        drain(&self.name, self.archive)?;
        window.close();
        self.indexer.finish(self.spool)
    }
}

/// What a walk over an arriving archive may read besides the entry it is given.
#[derive(Default)]
pub struct Window(Mutex<Held>);

#[derive(Default)]
struct Held {
    spool: Option<Arc<File>>,
    side: Option<Arc<File>>,
    /// The entries given lately, by path, and their order.
    recent: HashMap<Vec<u8>, Indexed>,
    order: VecDeque<Vec<u8>>,
    /// The marked files by path: their entries and groups.
    linked: HashMap<Vec<u8>, (Indexed, u64)>,
}

impl Window {
    /// Entries given lately that stay readable: more than a layer by package reads
    /// ahead ([`crate::image::packages`]).
    const RECENT: usize = 8192;

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_spool(&self, spool: &File) -> Result<()> {
        self.lock().spool = Some(Arc::new(spool.try_clone().at(std::env::temp_dir())?));
        Ok(())
    }

    fn open_side(&self, side: &File) -> Result<()> {
        let mut held = self.lock();
        if held.side.is_none() {
            held.side = Some(Arc::new(side.try_clone().at(std::env::temp_dir())?));
        }
        Ok(())
    }

    fn remember(&self, item: Indexed, group: Option<u64>) {
        let mut held = self.lock();
        let path = item.entry.path.clone();
        if let Some(group) = group {
            held.linked.insert(path.clone(), (item.clone(), group));
        }
        held.recent.insert(path.clone(), item);
        held.order.push_back(path);
        if held.order.len() > Self::RECENT {
            if let Some(old) = held.order.pop_front() {
                held.recent.remove(&old);
            }
        }
    }

    fn group_of(&self, path: &[u8]) -> Option<u64> {
        let path = normalize(path)?;
        self.lock().linked.get(&path).map(|(_, g)| *g)
    }

    /// The walk is over: nothing is held any more.
    fn close(&self) {
        *self.lock() = Held::default();
    }

    fn get(&self, path: &[u8]) -> Option<Indexed> {
        let path = normalize(path)?;
        let held = self.lock();
        held.recent
            .get(&path)
            .or_else(|| held.linked.get(&path).map(|(item, _)| item))
            .cloned()
    }

    /// The metadata of an entry the window holds.
    pub fn metadata(&self, path: &[u8]) -> Option<Entry> {
        self.get(path).map(|i| i.entry)
    }

    /// The content of a file (or a hardlink's file) the window holds.
    pub fn open(&self, path: &[u8]) -> Option<Result<Box<dyn Read + Send>>> {
        let mut item = self.get(path)?;
        if item.entry.kind == Kind::Hardlink {
            item = self.get(&item.entry.link)?;
        }
        if item.entry.kind != Kind::File {
            return Some(Err(Error::NotFound(format!(
                "{} (not a regular file)",
                item.entry.display()
            ))));
        }
        let held = self.lock();
        let file = match item.data.side {
            true => held.side.clone(),
            false => held.spool.clone(),
        }?;
        Some(Ok(Box::new(RangeReader {
            file,
            pos: item.data.offset,
            end: item.data.offset + item.entry.size,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Extent;
    use crate::source::Source;
    use oci::tar::TarWriter;

    fn file(path: &str, size: u64) -> Entry {
        let mut e = Entry::new(path.as_bytes().to_vec(), Kind::File);
        e.size = size;
        e
    }

    /// A capture's stream: a directory, a file with a further name (marked), a plain
    /// file, a sparse file and the further name, in walk order.
    fn stream(entries: &[(Entry, &[u8])]) -> Vec<u8> {
        let mut w = TarWriter::marking_linked(Vec::new());
        for (e, data) in entries {
            let mut data = *data;
            let body: Option<&mut dyn Read> = match e.kind {
                Kind::File => Some(&mut data),
                _ => None,
            };
            w.append(e, body).unwrap();
        }
        w.finish().unwrap()
    }

    fn tree() -> Vec<(Entry, &'static [u8])> {
        let mut dir = Entry::new(b"a".to_vec(), Kind::Dir);
        dir.mode = 0o755;
        let mut first = file("a/first", 5);
        first.inode = Some((1, 2));
        let mut sparse = file("a/sparse", 8192);
        sparse.sparse = Some(vec![Extent {
            offset: 4096,
            len: 3,
        }]);
        let mut link = Entry::new(b"b".to_vec(), Kind::Hardlink);
        link.link = b"a/first".to_vec();
        vec![
            (dir, b""),
            (first, b"hello"),
            (file("a/plain", 3), b"abc"),
            (sparse, b"xyz"),
            (link, b""),
        ]
    }

    fn read(r: Result<Box<dyn Read + Send + '_>>) -> Vec<u8> {
        let mut out = Vec::new();
        r.unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn each_entry_is_given_and_readable_as_it_arrives_and_the_archive_follows() {
        let bytes = stream(&tree());
        let window = Window::default();
        let stream =
            ArchiveStream::new(Path::new("s"), Box::new(io::Cursor::new(bytes.clone()))).unwrap();
        let mut seen = Vec::new();
        let archive = stream
            .walk(&window, &mut |e| {
                // What the image builder reads: the entry's content, and for a
                // hardlink its group's first name; earlier entries stay readable.
                let content = match e.kind {
                    Kind::File | Kind::Hardlink => read(window.open(&e.path).unwrap()),
                    _ => Vec::new(),
                };
                assert!(window.metadata(b"a").is_some());
                seen.push((
                    String::from_utf8_lossy(&e.path).into_owned(),
                    e.kind,
                    e.inode,
                    content,
                ));
                Ok(())
            })
            .unwrap();
        let mut sparse = vec![0u8; 8192];
        sparse[4096..4099].copy_from_slice(b"xyz");
        let group = Some((ARCHIVE_DEV, 1));
        assert_eq!(
            seen,
            vec![
                ("a".into(), Kind::Dir, None, vec![]),
                ("a/first".into(), Kind::File, group, b"hello".to_vec()),
                ("a/plain".into(), Kind::File, None, b"abc".to_vec()),
                ("a/sparse".into(), Kind::File, None, sparse.clone()),
                ("b".into(), Kind::Hardlink, group, b"hello".to_vec()),
            ]
        );
        // The walk is over: the window holds nothing, the archive holds everything.
        assert!(window.metadata(b"a/first").is_none());
        assert_eq!(read(archive.open(b"a/sparse")), sparse);
        assert_eq!(read(archive.open(b"b")), b"hello");

        // Read whole without a walk, the same archive.
        let whole = ArchiveStream::new(Path::new("s"), Box::new(io::Cursor::new(bytes)))
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(read(whole.open(b"a/plain")), b"abc");
    }

    fn refused(entries: &[(Entry, &[u8])]) -> String {
        let stream =
            ArchiveStream::new(Path::new("s"), Box::new(io::Cursor::new(stream(entries)))).unwrap();
        match stream.walk(&Window::default(), &mut |_| Ok(())) {
            Ok(_) => panic!("a stream the walk should refuse"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_stream_out_of_order_or_with_an_unmarked_hardlink_is_refused_in_one_line() {
        let t = tree();
        // Out of walk order, and a path twice.
        let swapped = [t[0].clone(), t[2].clone(), t[1].clone()];
        assert!(
            refused(&swapped).contains("out of walk order"),
            "{}",
            refused(&swapped)
        );
        let twice = [t[0].clone(), t[2].clone(), t[2].clone()];
        assert!(refused(&twice).contains("out of walk order"));
        // A hardlink to a file the stream did not mark, and to one that comes later.
        let unmarked = [t[0].clone(), t[2].clone(), {
            let mut l = t[4].clone();
            l.0.link = b"a/plain".to_vec();
            l
        }];
        assert!(
            refused(&unmarked).contains("not a file marked"),
            "{}",
            refused(&unmarked)
        );
        // Under a file.
        let under = [
            t[0].clone(),
            t[2].clone(),
            (file("a/plain/x", 1), &b"x"[..]),
        ];
        assert!(
            refused(&under).contains("not a directory"),
            "{}",
            refused(&under)
        );
        // Every refusal is one line.
        for r in [refused(&swapped), refused(&unmarked), refused(&under)] {
            assert!(!r.contains('\n'), "{r}");
        }
    }
}
