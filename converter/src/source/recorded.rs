//! What one pass over a source read, kept so the same pass can run again elsewhere.
//!
//! A remote capture uses it to prepare a conversion before the tree has arrived: the
//! helper runs [`crate::convert::prepare`]'s reads on the server through a
//! [`Recorder`], and sends what they read (metadata, listings, the bytes read of each
//! file, and the failures, with their text) ahead of the tree. Here the same reads run
//! on a [`Replay`] of it. Both sides run the same code on the same answers, so they make
//! the same reads; a read the record does not hold (a helper of other code, a record
//! cut at its cap) is a miss, and the caller reads the source itself instead.
//!
//! The record crosses the network: [`Reads::decode`] checks every length against the
//! bytes it has, and the whole is capped ([`Reads::MAX`]).

use super::codec::{In, Out, Parsed};
use super::{Skips, Source, Visit};
use crate::entry::{Entry, Extent};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// A failed read as the reader saw it: enough to fail the same way again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The file was not there ([`Error::is_vanished`]).
    pub vanished: bool,
    /// The error's text.
    pub text: String,
    /// Its text without the path ([`crate::inventory::fs`]'s findings show it).
    pub inner: String,
}

impl Failure {
    fn of(e: &Error) -> Self {
        Failure {
            vanished: e.is_vanished(),
            text: e.to_string(),
            inner: crate::inventory::fs::without_path(e),
        }
    }

    fn error(&self) -> Error {
        Error::Replayed(self.clone())
    }
}

type Answer<T> = std::result::Result<T, Failure>;

/// A file's bytes as far as they were read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Content {
    pub bytes: Vec<u8>,
    /// Read to its end: a longer read finds the end too.
    pub whole: bool,
}

/// Every answer a pass got, by path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reads {
    metadata: BTreeMap<Vec<u8>, Answer<Entry>>,
    listings: BTreeMap<Vec<u8>, Answer<Vec<Vec<u8>>>>,
    contents: BTreeMap<Vec<u8>, Answer<Content>>,
}

impl Reads {
    /// The largest record kept and read (encoded): a prepare reads a few MiB (the
    /// package database is most of it); a server whose reads pass this is prepared
    /// after its tree has arrived, as any other source.
    pub const MAX: usize = 64 << 20;

    /// The recorded metadata of `path`, if it was read.
    pub fn metadata(&self, path: &[u8]) -> Option<Result<Entry>> {
        let answer = self.metadata.get(path)?;
        Some(answer.clone().map_err(|f| f.error()))
    }

    /// The recorded listing of `path`, if it was read.
    pub fn read_dir(&self, path: &[u8]) -> Option<Result<Vec<Vec<u8>>>> {
        let answer = self.listings.get(path)?;
        Some(answer.clone().map_err(|f| f.error()))
    }

    /// The recorded content of `path` (as far as it was read), if it was opened.
    pub fn content(&self, path: &[u8]) -> Option<Result<Content>> {
        let answer = self.contents.get(path)?;
        Some(answer.clone().map_err(|f| f.error()))
    }

    /// Bytes of file content held.
    pub fn content_bytes(&self) -> u64 {
        self.contents
            .values()
            .map(|c| c.as_ref().map_or(0, |c| c.bytes.len() as u64))
            .sum()
    }
}

/// A source whose reads are recorded (not its walk: a pass that walks is not kept).
pub struct Recorder<'a> {
    inner: &'a dyn Source,
    reads: Mutex<Reads>,
    /// Bytes recorded so far, about: past [`Reads::MAX`] the record is dropped.
    size: std::sync::atomic::AtomicUsize,
    spoiled: AtomicBool,
}

impl<'a> Recorder<'a> {
    pub fn new(inner: &'a dyn Source) -> Self {
        Recorder {
            inner,
            reads: Mutex::new(Reads::default()),
            size: Default::default(),
            spoiled: AtomicBool::new(false),
        }
    }

    /// What was read; none when the pass walked the tree or read more than the cap.
    pub fn finish(self) -> Option<Reads> {
        if self.spoiled.load(Ordering::Relaxed) {
            return None;
        }
        self.reads.into_inner().ok()
    }

    fn grow(&self, by: usize) {
        let total = self.size.fetch_add(by + 64, Ordering::Relaxed) + by + 64;
        if total > Reads::MAX {
            self.spoiled.store(true, Ordering::Relaxed);
        }
    }

    fn with(&self, f: impl FnOnce(&mut Reads)) {
        if let Ok(mut reads) = self.reads.lock() {
            f(&mut reads);
        }
    }

    fn keep_content(&self, path: &[u8], bytes: Vec<u8>, whole: bool) {
        self.grow(bytes.len() + path.len());
        self.with(|r| {
            // A file read twice keeps its longest read: the replay serves both.
            let longer = match r.contents.get(path) {
                Some(Ok(c)) => c.whole || c.bytes.len() >= bytes.len(),
                _ => false,
            };
            if !longer {
                r.contents
                    .insert(path.to_vec(), Ok(Content { bytes, whole }));
            }
        });
    }
}

impl Source for Recorder<'_> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn walk(&self, visit: &mut Visit<'_>) -> Result<Skips> {
        self.spoiled.store(true, Ordering::Relaxed);
        self.inner.walk(visit)
    }

    fn metadata(&self, path: &[u8]) -> Result<Entry> {
        let answer = self.inner.metadata(path);
        let kept = answer.as_ref().map(Entry::clone).map_err(Failure::of);
        self.grow(path.len() * 2 + 64);
        self.with(|r| {
            r.metadata.insert(path.to_vec(), kept);
        });
        answer
    }

    fn read_dir(&self, path: &[u8]) -> Result<Vec<Vec<u8>>> {
        let answer = self.inner.read_dir(path);
        let kept = answer.as_ref().map(Vec::clone).map_err(Failure::of);
        let size = kept
            .as_ref()
            .map_or(0, |n| n.iter().map(|n| n.len() + 4).sum());
        self.grow(size + path.len());
        self.with(|r| {
            r.listings.insert(path.to_vec(), kept);
        });
        answer
    }

    fn open(&self, path: &[u8]) -> Result<Box<dyn Read + Send + '_>> {
        match self.inner.open(path) {
            Ok(inner) => Ok(Box::new(Taping {
                inner,
                path: path.to_vec(),
                bytes: Vec::new(),
                whole: false,
                recorder: self,
            })),
            Err(e) => {
                self.grow(path.len() + 64);
                self.with(|r| {
                    r.contents.insert(path.to_vec(), Err(Failure::of(&e)));
                });
                Err(e)
            }
        }
    }

    fn open_extents(&self, path: &[u8], _: &[Extent]) -> Result<Box<dyn Read + Send + '_>> {
        // A prepare does not read sparse files' extents: not kept.
        self.spoiled.store(true, Ordering::Relaxed);
        self.inner.open(path)
    }
}

/// A file read through a [`Recorder`]: its bytes are kept when it is dropped.
struct Taping<'r, 'a> {
    inner: Box<dyn Read + Send + 'r>,
    path: Vec<u8>,
    bytes: Vec<u8>,
    whole: bool,
    recorder: &'r Recorder<'a>,
}

impl Read for Taping<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.whole = true;
        } else if self.bytes.len() + n > Reads::MAX {
            self.recorder.spoiled.store(true, Ordering::Relaxed);
        } else {
            self.bytes.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

impl Drop for Taping<'_, '_> {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.bytes);
        self.recorder.keep_content(&self.path, bytes, self.whole);
    }
}

/// A record read again as a source. A read it does not hold fails, and is noted:
/// [`Replay::missed`] says the pass did not run as it did where it was recorded.
pub struct Replay<'a> {
    reads: &'a Reads,
    /// The source the record stands for, as messages name it.
    name: String,
    missed: AtomicBool,
}

impl<'a> Replay<'a> {
    pub fn new(reads: &'a Reads, name: String) -> Self {
        Replay {
            reads,
            name,
            missed: AtomicBool::new(false),
        }
    }

    /// Whether a read found nothing recorded: the pass's results are not the source's.
    pub fn missed(&self) -> bool {
        self.missed.load(Ordering::Relaxed)
    }

    fn miss(&self, what: &str, path: &[u8]) -> Error {
        self.missed.store(true, Ordering::Relaxed);
        Error::Replayed(Failure {
            vanished: false,
            text: format!(
                "{} of /{} was not recorded",
                what,
                String::from_utf8_lossy(path)
            ),
            inner: "not recorded".into(),
        })
    }
}

impl Source for Replay<'_> {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn walk(&self, _: &mut Visit<'_>) -> Result<Skips> {
        Err(self.miss("a walk", b""))
    }

    fn metadata(&self, path: &[u8]) -> Result<Entry> {
        match self.reads.metadata.get(path) {
            Some(Ok(entry)) => Ok(entry.clone()),
            Some(Err(failure)) => Err(failure.error()),
            None => Err(self.miss("the metadata", path)),
        }
    }

    fn read_dir(&self, path: &[u8]) -> Result<Vec<Vec<u8>>> {
        match self.reads.listings.get(path) {
            Some(Ok(names)) => Ok(names.clone()),
            Some(Err(failure)) => Err(failure.error()),
            None => Err(self.miss("the listing", path)),
        }
    }

    fn open(&self, path: &[u8]) -> Result<Box<dyn Read + Send + '_>> {
        match self.reads.contents.get(path) {
            Some(Ok(content)) => Ok(Box::new(Played {
                content,
                at: 0,
                replay: self,
                path: path.to_vec(),
            })),
            Some(Err(failure)) => Err(failure.error()),
            None => Err(self.miss("the content", path)),
        }
    }

    fn open_extents(&self, path: &[u8], _: &[Extent]) -> Result<Box<dyn Read + Send + '_>> {
        Err(self.miss("the extents", path))
    }
}

/// A recorded file read again: past its recorded bytes, a file not read whole is a miss.
struct Played<'r> {
    content: &'r Content,
    at: usize,
    replay: &'r Replay<'r>,
    path: Vec<u8>,
}

impl Read for Played<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = &self.content.bytes[self.at..];
        if left.is_empty() && !buf.is_empty() && !self.content.whole {
            let e = self.replay.miss("more content", &self.path);
            return Err(io::Error::other(e.to_string()));
        }
        let n = left.len().min(buf.len());
        buf[..n].copy_from_slice(&left[..n]);
        self.at += n;
        Ok(n)
    }
}

// The encoding: for each of the three maps, a count then its items; each item a path,
// then 0 and the answer, or 1 and the failure. Integers are little-endian, byte strings
// a 32-bit length and the bytes.

const MAGIC: &[u8] = b"rehost-reads 1\n";

impl Reads {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Out(MAGIC.to_vec());
        out.u32(self.metadata.len() as u32);
        for (path, answer) in &self.metadata {
            put_answer(&mut out, path, answer, |o, e| o.entry(e));
        }
        out.u32(self.listings.len() as u32);
        for (path, answer) in &self.listings {
            put_answer(&mut out, path, answer, |o, names| {
                o.u32(names.len() as u32);
                for n in names {
                    o.bytes(n);
                }
            });
        }
        out.u32(self.contents.len() as u32);
        for (path, answer) in &self.contents {
            put_answer(&mut out, path, answer, |o, c| {
                o.0.push(c.whole as u8);
                o.bytes(&c.bytes);
            });
        }
        out.0
    }

    /// Reads a record back; `what` names it in the error.
    pub fn decode(data: &[u8]) -> std::result::Result<Reads, String> {
        let mut c = In(data);
        if c.take(MAGIC.len())? != MAGIC {
            return Err("not a record of reads of this rehost version".into());
        }
        let mut reads = Reads::default();
        for _ in 0..c.count()? {
            let (path, answer) = get_answer(&mut c, |c| c.entry())?;
            reads.metadata.insert(path, answer);
        }
        for _ in 0..c.count()? {
            let (path, answer) = get_answer(&mut c, |c| {
                let n = c.count()?;
                (0..n)
                    .map(|_| c.bytes())
                    .collect::<std::result::Result<Vec<_>, _>>()
            })?;
            reads.listings.insert(path, answer);
        }
        for _ in 0..c.count()? {
            let (path, answer) = get_answer(&mut c, |c| {
                let whole = c.flag()?;
                Ok(Content {
                    whole,
                    bytes: c.bytes()?,
                })
            })?;
            reads.contents.insert(path, answer);
        }
        if !c.0.is_empty() {
            return Err(format!("{} bytes past its end", c.0.len()));
        }
        Ok(reads)
    }
}

fn put_answer<T>(o: &mut Out, path: &[u8], answer: &Answer<T>, ok: impl FnOnce(&mut Out, &T)) {
    o.bytes(path);
    match answer {
        Ok(v) => {
            o.0.push(0);
            ok(o, v);
        }
        Err(f) => {
            o.0.push(1);
            o.0.push(f.vanished as u8);
            o.bytes(f.text.as_bytes());
            o.bytes(f.inner.as_bytes());
        }
    }
}

fn get_answer<'a, T>(
    c: &mut In<'a>,
    ok: impl FnOnce(&mut In<'a>) -> Parsed<T>,
) -> Parsed<(Vec<u8>, Answer<T>)> {
    let path = c.bytes()?;
    let answer = match c.flag()? {
        false => Ok(ok(c)?),
        true => Err(Failure {
            vanished: c.flag()?,
            text: c.text()?,
            inner: c.text()?,
        }),
    };
    Ok((path, answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{DirOptions, DirSource};
    use std::io::Read;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/apt")).unwrap();
        std::fs::write(root.join("etc/hostname"), b"web1\n").unwrap();
        std::fs::write(root.join("etc/big"), vec![7u8; 100_000]).unwrap();
        std::os::unix::fs::symlink("hostname", root.join("etc/name")).unwrap();
        let fifo =
            std::ffi::CString::new(root.join("etc/fifo").into_os_string().into_encoded_bytes())
                .unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        dir
    }

    /// The reads a pass makes, and what it got, as text to compare.
    fn pass(source: &dyn Source) -> Vec<String> {
        let mut seen = Vec::new();
        for path in ["etc", "etc/hostname", "etc/name", "etc/missing", "etc/fifo"] {
            seen.push(format!(
                "{:?}",
                source.metadata(path.as_bytes()).map_err(|e| e.to_string())
            ));
        }
        seen.push(format!(
            "{:?}",
            source.read_dir(b"etc").map_err(|e| e.to_string())
        ));
        seen.push(format!(
            "{:?}",
            source.read_dir(b"nope").map_err(|e| e.is_vanished())
        ));
        seen.push(format!(
            "{:?}",
            source
                .read_to_vec(b"etc/hostname", 100)
                .map_err(|e| e.to_string())
        ));
        seen.push(format!(
            "{:?}",
            source.read_link(b"etc/name").map_err(|e| e.to_string())
        ));
        seen.push(format!(
            "{:?}",
            source
                .open(b"etc/fifo")
                .map(|_| ())
                .map_err(|e| e.to_string())
        ));
        // Only the first bytes of a big file.
        let mut head = [0u8; 10];
        source
            .open(b"etc/big")
            .unwrap()
            .read_exact(&mut head)
            .unwrap();
        seen.push(format!("{head:?}"));
        seen
    }

    #[test]
    fn a_replay_answers_a_pass_as_the_source_did_and_notes_a_read_it_does_not_hold() {
        let dir = tree();
        let source = DirSource::new(dir.path(), DirOptions::default()).unwrap();
        let recorder = Recorder::new(&source);
        let live = pass(&recorder);
        let reads = recorder
            .finish()
            .expect("a pass that does not walk is kept");
        assert_eq!(
            reads.content_bytes(),
            5 + 10,
            "the bytes read, not the files' sizes"
        );

        let decoded = Reads::decode(&reads.encode()).unwrap();
        assert_eq!(decoded, reads);
        let replay = Replay::new(&decoded, source.describe());
        assert_eq!(pass(&replay), live);
        assert!(!replay.missed());
        assert!(replay.metadata(b"etc/missing").unwrap_err().is_vanished());

        // Anything the pass did not read is a miss, and so is reading further into a
        // file than the pass did.
        assert!(replay.metadata(b"etc/apt").is_err());
        assert!(replay.missed());
        let again = Replay::new(&decoded, String::new());
        let mut all = Vec::new();
        assert!(again
            .open(b"etc/big")
            .unwrap()
            .read_to_end(&mut all)
            .is_err());
        assert!(again.missed());
    }

    #[test]
    fn a_pass_that_walks_or_outgrows_the_cap_is_not_kept() {
        let dir = tree();
        let source = DirSource::new(dir.path(), DirOptions::default()).unwrap();
        let recorder = Recorder::new(&source);
        recorder.walk(&mut |_| Ok(())).unwrap();
        assert!(recorder.finish().is_none());

        let recorder = Recorder::new(&source);
        recorder.grow(Reads::MAX);
        assert!(recorder.finish().is_none());
    }

    #[test]
    fn the_fuzzers_seed_is_a_record() {
        let seed = include_bytes!("../../../fuzz/seeds/recorded_reads/small");
        let reads = Reads::decode(seed).unwrap();
        let replay = Replay::new(&reads, String::new());
        assert!(replay.metadata(b"etc/missing").unwrap_err().is_vanished());
        assert_eq!(replay.read_to_vec(b"etc/hostname", 100).unwrap(), b"web1\n");
        assert_eq!(
            replay.metadata(b"etc/hostname").unwrap().inode,
            Some((1, 2))
        );
        assert_eq!(Reads::decode(&reads.encode()).unwrap(), reads);
    }

    #[test]
    fn a_damaged_record_is_refused_in_one_line_without_a_panic() {
        let dir = tree();
        let source = DirSource::new(dir.path(), DirOptions::default()).unwrap();
        let recorder = Recorder::new(&source);
        pass(&recorder);
        let data = recorder.finish().unwrap().encode();
        for cut in 0..data.len() {
            assert!(Reads::decode(&data[..cut]).is_err(), "cut at {cut}");
        }
        let mut forged = data.clone();
        // The metadata count, past what the record holds.
        forged[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Reads::decode(&forged).unwrap_err().contains("count"));
        let mut longer = data;
        longer.push(0);
        assert!(Reads::decode(&longer).unwrap_err().contains("past its end"));
    }
}
