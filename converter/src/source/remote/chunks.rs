//! A capture in chunks, so that a run cut by a dropped connection resumes: what was
//! fully received is not sent again.
//!
//! On the server the walk is cut at entry boundaries into chunks: one per top-level
//! directory, and a big one further. Where is decided by the paths, not by the bytes
//! before: past [`MIN_ENTRIES`] entries a chunk ends before the next path whose hash
//! makes it an anchor (one path in [`ANCHOR_ONE_IN`]), and past [`WEAK_BYTES`] of
//! content before the next weak anchor (one in [`WEAK_ONE_IN`], anchors included), so
//! that a directory of big files is cut too. So a file that grew or shrank between a cut
//! run and its rerun changes its own chunk, and the chunks after it soon start where
//! they started before and are reused, as content-defined chunking does; cutting every
//! N bytes would shift every later boundary of its directory. The minimum is small
//! next to the anchors' spacing, or two runs cut from different places would rarely
//! meet on the same anchor. [`MAX_BYTES`] and [`MAX_ENTRIES`] bound a chunk that meets
//! none. Each chunk is named by a signature of the walk's metadata of the entries it
//! holds (paths, kinds, sizes, modes, owners, times, inode and change time, link
//! targets, extended attributes), of the names earlier chunks give its hardlinks, and of
//! the filter: cheap next to the bytes, and different whenever the chunk's bytes could
//! be. Each chunk is one zstd frame of tar entries, sent in length-prefixed blocks. Its
//! compression level follows the link ([`Pace`]): more where the network is the
//! bottleneck, less where the CPU is.
//!
//! Here every chunk fully received is kept in a cache (per server and path, under the
//! user's cache directory; none without one) by its signature. A rerun lists the
//! signatures it holds in its request, and the helper answers "reuse" for a chunk whose
//! signature still matches instead of sending it. The chunks, sent or reused, make the
//! same tar an uninterrupted run gives. A chunk during which a file vanished, shrank,
//! grew or could not be read is sent but not kept. A kept chunk is named by the digest
//! of its bytes too, checked as it is replayed (so it needs no fsync). The cache goes
//! once the image is written.
//!
//! The stream: [`MAGIC`], then per chunk either `D`, the signature, blocks (a 32-bit
//! big-endian length and that many bytes, until a length of 0) and a byte saying whether
//! the chunk may be kept, or `R` and the signature; then `Z`. Before the first chunk
//! may come `H`, a 32-bit big-endian length and that many bytes: the reads a prepare
//! made on the server ([`crate::source::recorded`]), zstd-compressed. The server makes
//! them beside the start of its walk; here they come first, so the conversion is
//! prepared before the tree arrives and builds the image as it does.

use crate::entry::Entry;
use crate::error::{IoContext, Result};
use crate::image::layer::{Progress, TreeParts};
use oci::tar::TarWriter;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The first bytes of the stream (its format, for a helper of another version).
pub const MAGIC: &[u8] = b"rehost-chunks 1\n";
/// A chunk of content bytes, at most (a single larger file is a chunk of its own).
pub const MAX_BYTES: u64 = 32 << 20;
/// A chunk of entries, at most: the metadata of one chunk is held in memory.
pub const MAX_ENTRIES: usize = 4096;
/// Past this many entries, a chunk ends before the next anchor.
pub const MIN_ENTRIES: usize = 32;
/// One path in this many is an anchor.
pub const ANCHOR_ONE_IN: u64 = 128;
/// Past this much content, a chunk ends before the next weak anchor.
pub const WEAK_BYTES: u64 = 8 << 20;
/// One path in this many is a weak anchor (every anchor is one).
pub const WEAK_ONE_IN: u64 = 16;

const DATA: u8 = b'D';
const REUSE: u8 = b'R';
const END: u8 = b'Z';
const RECORD: u8 = b'H';
const BLOCK: usize = 128 << 10;

pub type Signature = [u8; 32];

/// What a capture took from the network and what it reused from an interrupted run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Received {
    /// Bytes read from the connection (compressed).
    pub bytes: u64,
    /// Bytes of chunks kept by an earlier, interrupted run and not sent again
    /// (compressed, as they would have crossed the network).
    pub reused_bytes: u64,
    pub chunks: u64,
    pub reused_chunks: u64,
    /// Bytes of the record of the server's reads for the prepare (compressed), part of
    /// `bytes`.
    pub record_bytes: u64,
    /// The image was built as the tree arrived (no read needed the whole tree first).
    pub built_while_arriving: bool,
}

/// On the server: cuts the walk into chunks and writes each one, or a reuse of it.
pub(crate) struct Chunker<'a, W: Write> {
    parts: TreeParts<'a>,
    root: PathBuf,
    /// What every signature starts from: the format, the filter.
    context: Signature,
    have: HashSet<Signature>,
    out: Timed<W>,
    pace: Pace,
    pending: Vec<Entry>,
    pending_bytes: u64,
    workers: u32,
    /// How many files grew while read so far (they do not reach the tree's stats).
    grown: &'a dyn Fn() -> u64,
    progress: &'a mut dyn FnMut(Progress),
    /// The recorded reads to send, once they are made ([`Chunker::send_record`]).
    record: Option<std::sync::mpsc::Receiver<Vec<u8>>>,
}

impl<'a, W: Write> Chunker<'a, W> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        parts: TreeParts<'a>,
        root: &Path,
        context: &[u8],
        have: &[String],
        mut out: W,
        grown: &'a dyn Fn() -> u64,
        progress: &'a mut dyn FnMut(Progress),
    ) -> Result<Self> {
        out.write_all(MAGIC).at("the stream")?;
        let workers = std::thread::available_parallelism()
            .map(|n| n.get().min(4) as u32)
            .unwrap_or(1);
        Ok(Chunker {
            parts,
            root: root.to_path_buf(),
            context: Sha256::digest(context).into(),
            have: have.iter().filter_map(|h| parse_signature(h)).collect(),
            out: Timed {
                inner: out,
                blocked: Duration::ZERO,
                written: 0,
            },
            pace: Pace::new(),
            pending: Vec::new(),
            pending_bytes: 0,
            workers,
            grown,
            progress,
            record: None,
        })
    }

    /// Sends the (compressed) record that `ready` gives before the first chunk. A sender
    /// dropped without giving one sends none.
    pub fn send_record(&mut self, ready: std::sync::mpsc::Receiver<Vec<u8>>) {
        self.record = Some(ready);
    }

    fn send_record_first(&mut self) -> Result<()> {
        let Some(ready) = self.record.take() else {
            return Ok(());
        };
        let got = ready.recv().ok();
        if let Some(bytes) = got {
            self.out.write_all(&[RECORD]).at("the stream")?;
            self.out
                .write_all(&(bytes.len() as u32).to_be_bytes())
                .at("the stream")?;
            self.out.write_all(&bytes).at("the stream")?;
        }
        Ok(())
    }

    /// Takes the next entry of the walk.
    pub fn push(&mut self, entry: Entry) -> Result<()> {
        if let Some(first) = self.pending.first() {
            let anchor = anchor_hash(&entry.path);
            if top(&first.path) != top(&entry.path)
                || (self.pending.len() >= MIN_ENTRIES && anchor.is_multiple_of(ANCHOR_ONE_IN))
                || (self.pending_bytes >= WEAK_BYTES && anchor.is_multiple_of(WEAK_ONE_IN))
                || self.pending_bytes >= MAX_BYTES
                || self.pending.len() >= MAX_ENTRIES
            {
                self.flush()?;
            }
        }
        self.pending_bytes += entry.size;
        self.pending.push(entry);
        Ok(())
    }

    /// Sends the last chunk and the end; gives the tree's stats back.
    pub fn finish(mut self) -> Result<(W, TreeParts<'a>)> {
        self.flush()?;
        self.send_record_first()?;
        self.out.write_all(&[END]).at("the stream")?;
        self.out.flush().at("the stream")?;
        Ok((self.out.inner, self.parts))
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.send_record_first()?;
        let entries = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let signature = self.signature(&entries);
        if self.have.contains(&signature) {
            self.out.write_all(&[REUSE]).at("the stream")?;
            self.out.write_all(&signature).at("the stream")?;
            for e in &entries {
                self.parts.pass(e, self.progress);
            }
            return Ok(());
        }
        self.out.write_all(&[DATA]).at("the stream")?;
        self.out.write_all(&signature).at("the stream")?;
        let troubles = self.parts.troubles + (self.grown)();
        let (started, blocked, written) = (Instant::now(), self.out.blocked, self.out.written);
        let blocks = Blocks {
            out: &mut self.out,
            buf: Vec::with_capacity(BLOCK),
        };
        let mut encoder =
            zstd::stream::write::Encoder::new(blocks, self.pace.level()).at("the stream")?;
        if self.workers > 1 {
            let _ = encoder.multithread(self.workers);
        }
        let mut tar = TarWriter::marking_linked(encoder);
        for e in entries {
            self.parts.add(e, &mut tar, self.progress)?;
        }
        let blocks = tar.into_inner().and_then(|e| e.finish()).at("the stream")?;
        blocks.finish().at("the stream")?;
        self.pace.chunk_sent(
            self.out.written - written,
            started.elapsed(),
            self.out.blocked - blocked,
        );
        let clean = self.parts.troubles + (self.grown)() == troubles;
        self.out.write_all(&[clean as u8]).at("the stream")?;
        Ok(())
    }

    fn signature(&self, entries: &[Entry]) -> Signature {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::MetadataExt;
        let mut h = Sha256::new();
        h.update(self.context);
        for e in entries {
            feed(&mut h, &e.path);
            feed(&mut h, format!("{:?}", e.kind).as_bytes());
            for n in [
                e.size,
                e.mode as u64,
                e.uid as u64,
                e.gid as u64,
                e.mtime as u64,
                e.mtime_nsec as u64,
                e.major as u64,
                e.minor as u64,
            ] {
                h.update(n.to_be_bytes());
            }
            feed(&mut h, &e.link);
            for (k, v) in &e.xattrs {
                feed(&mut h, k);
                feed(&mut h, v);
            }
            for x in e.sparse.iter().flatten() {
                h.update(x.offset.to_be_bytes());
                h.update(x.len.to_be_bytes());
            }
            let (dev, ino) = e.inode.unwrap_or_default();
            h.update(dev.to_be_bytes());
            h.update(ino.to_be_bytes());
            // The change time catches a rewrite that kept the size and the mtime.
            let full = self.root.join(std::ffi::OsStr::from_bytes(&e.path));
            match std::fs::symlink_metadata(full) {
                Ok(m) => {
                    for n in [m.ctime() as u64, m.ctime_nsec() as u64, m.ino(), m.dev()] {
                        h.update(n.to_be_bytes());
                    }
                }
                Err(_) => h.update(b"gone"),
            }
            feed(&mut h, self.parts.link_target(e).unwrap_or_default());
        }
        h.finalize().into()
    }
}

/// What makes a path an anchor: FNV-1a of the path, so the same paths are anchors on
/// every run and every machine.
fn anchor_hash(path: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in path {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The top-level name a path is under (the root is its own).
fn top(path: &[u8]) -> &[u8] {
    path.split(|&b| b == b'/').next().unwrap_or_default()
}

fn feed(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn parse_signature(text: &str) -> Option<Signature> {
    hex::decode(text).ok()?.try_into().ok()
}

/// The compression level of the next chunk, from how the chunks before it went out.
/// Compressing more only pays where the network is slow: from level 3 to 6 saves about
/// 5% of the bytes for three times the CPU, which is worth it below some 30 Mbit/s when
/// the CPU is the limit, and at any rate when the CPU would only wait for the network.
/// Compressing less pays on a fast link: level 1 sends some 20% more bytes for 30% less
/// CPU, and zstd's fast level -1 some 14% more again for half the CPU (measured on a Debian
/// root's tar), which is what a link as fast as the two ends' CPUs wants. So a chunk that went out slowly (under [`Pace::SLOW`]) while its writes waited
/// on the network most of its time moves the level up; one that went out fast (over
/// [`Pace::FAST`]), or whose writes hardly waited (compression held it back), moves it
/// down. A slow chunk whose writes waited may also mean a busy receiver: the rate keeps
/// that from raising the level on a fast link. The receiver reads any level alike and
/// the tar in the frames is the same, so the image does not change.
struct Pace {
    /// An index into [`Pace::LEVELS`].
    step: usize,
}

impl Pace {
    const LEVELS: [i32; 5] = [-1, 1, 3, 6, 9];
    /// Chunks smaller than this say too little about the link to change the level.
    const SAYS_ENOUGH: u64 = 1 << 20;
    /// Compressed bytes a second: 160 Mbit/s and 240 Mbit/s.
    const SLOW: f64 = 20e6;
    const FAST: f64 = 30e6;

    fn new() -> Self {
        Pace { step: 2 }
    }

    fn level(&self) -> i32 {
        Self::LEVELS[self.step]
    }

    fn chunk_sent(&mut self, bytes: u64, took: Duration, waited: Duration) {
        if bytes < Self::SAYS_ENOUGH || took.is_zero() {
            return;
        }
        let rate = bytes as f64 / took.as_secs_f64();
        let waiting = waited.as_secs_f64() / took.as_secs_f64();
        if rate < Self::SLOW && waiting > 0.5 {
            self.step = (self.step + 1).min(Self::LEVELS.len() - 1);
        } else if rate > Self::FAST || waiting < 0.1 {
            self.step = self.step.saturating_sub(1);
        }
    }
}

/// The stream's writer, timed: how long its writes waited (on a full pipe, for the
/// network), and how many bytes went through.
struct Timed<W> {
    inner: W,
    blocked: Duration,
    written: u64,
}

impl<W: Write> Write for Timed<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let started = Instant::now();
        let n = self.inner.write(data)?;
        self.blocked += started.elapsed();
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        let started = Instant::now();
        self.inner.flush()?;
        self.blocked += started.elapsed();
        Ok(())
    }
}

/// Length-prefixed blocks: the reader knows where a chunk ends without the chunk's
/// size ahead.
struct Blocks<'w, W: Write> {
    out: &'w mut W,
    buf: Vec<u8>,
}

impl<W: Write> Blocks<'_, W> {
    fn send(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.out.write_all(&(self.buf.len() as u32).to_be_bytes())?;
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        self.send()?;
        self.out.write_all(&0u32.to_be_bytes())
    }
}

impl<W: Write> Write for Blocks<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(BLOCK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == BLOCK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Here: the chunks an interrupted capture of one server's path left, by signature.
/// Each file is named by its signature and the digest of its bytes, checked when it is
/// replayed: a damaged one is removed and named, never read into an image.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    /// Signature → the kept file's name.
    kept: HashMap<Signature, String>,
}

/// Caches of captures not touched for this long are removed by the next capture.
const STALE: std::time::Duration = std::time::Duration::from_secs(14 * 24 * 3600);

impl Cache {
    /// The cache of `key` (the server and the path) under `$XDG_CACHE_HOME` or
    /// `~/.cache`; none when there is neither or it cannot be made.
    pub fn open(key: &str) -> Option<Cache> {
        let all = cache_home()?.join("resume");
        sweep(&all);
        let name = hex::encode(&Sha256::digest(key.as_bytes())[..12]);
        let dir = all.join(name);
        std::fs::create_dir_all(&dir).ok()?;
        Some(Cache::in_dir(dir))
    }

    /// The chunks kept in `dir`; parts of chunks a killed run was receiving go.
    pub fn in_dir(dir: PathBuf) -> Cache {
        let mut kept = HashMap::new();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if name.ends_with(".part") {
                let _ = std::fs::remove_file(e.path());
            } else if let Some((sig, _)) = split_name(&name) {
                kept.insert(sig, name);
            }
        }
        Cache { dir, kept }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The signatures held, as the request lists them.
    pub fn signatures(&self) -> Vec<String> {
        self.kept.keys().map(hex::encode).collect()
    }

    /// The image is written: nothing is left to resume.
    pub fn clear(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// rehost's directory under `$XDG_CACHE_HOME` or `~/.cache`; none without either.
pub(crate) fn cache_home() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".cache"),
    };
    Some(base.join("rehost"))
}

/// `SIGNATURE.DIGEST.zst`: the chunk's signature and the digest of its bytes.
fn split_name(name: &str) -> Option<(Signature, Digest16)> {
    let (sig, rest) = name.strip_suffix(".zst")?.split_once('.')?;
    Some((
        parse_signature(sig)?,
        hex::decode(rest).ok()?.try_into().ok()?,
    ))
}

type Digest16 = [u8; 16];

fn digest16(h: Sha256) -> Digest16 {
    let full: [u8; 32] = h.finalize().into();
    full[..16].try_into().expect("16 of 32 bytes")
}

fn sweep(all: &Path) {
    let Ok(entries) = std::fs::read_dir(all) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE);
        if old {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Here: reads the chunked stream and gives the tar it holds, as zstd frames: the
/// chunks sent (kept in the cache as they arrive) and the chunks reused from it.
pub struct Receiver<R> {
    inner: R,
    cache: Option<Cache>,
    state: State,
    counts: Arc<Mutex<Received>>,
    started: bool,
    /// The record of the server's reads, when it comes (compressed).
    record: Arc<Mutex<Option<Vec<u8>>>>,
    /// A record came: a stream has one at most.
    recorded: bool,
}

enum State {
    Tag,
    Data {
        signature: Signature,
        left: u32,
        part: Option<Part>,
    },
    Reuse {
        file: File,
        path: PathBuf,
        hasher: Sha256,
        want: Digest16,
    },
    Trailer(io::Cursor<Vec<u8>>),
    Done,
}

/// A chunk being received into the cache.
struct Part {
    path: PathBuf,
    file: io::BufWriter<File>,
    hasher: Sha256,
}

impl<R: Read> Receiver<R> {
    pub fn new(inner: R, cache: Option<Cache>, counts: Arc<Mutex<Received>>) -> Self {
        Receiver {
            inner,
            cache,
            state: State::Tag,
            counts,
            started: false,
            record: Arc::default(),
            recorded: false,
        }
    }

    /// Where the record of the server's reads is left when it comes.
    pub fn record(&self) -> Arc<Mutex<Option<Vec<u8>>>> {
        self.record.clone()
    }

    fn count(&self, f: impl FnOnce(&mut Received)) {
        if let Ok(mut c) = self.counts.lock() {
            f(&mut c);
        }
    }

    fn exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact(buf)?;
        let n = buf.len() as u64;
        self.count(|c| c.bytes += n);
        Ok(())
    }

    /// The next chunk: its first state.
    fn next_chunk(&mut self) -> io::Result<State> {
        if !self.started {
            let mut magic = [0u8; MAGIC.len()];
            self.exact(&mut magic)?;
            if magic != MAGIC {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the helper speaks another stream format (of another rehost version)",
                ));
            }
            self.started = true;
        }
        let mut tag = [0u8; 1];
        self.exact(&mut tag)?;
        while tag[0] == RECORD {
            let mut len = [0u8; 4];
            self.exact(&mut len)?;
            let len = u32::from_be_bytes(len) as usize;
            if len > crate::source::recorded::Reads::MAX || self.recorded {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a second record, or one past its cap, in the stream",
                ));
            }
            // Grown as the bytes come, not as the length says.
            let mut bytes = Vec::new();
            (&mut self.inner).take(len as u64).read_to_end(&mut bytes)?;
            if bytes.len() < len {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.count(|c| c.bytes += len as u64);
            if let Ok(mut r) = self.record.lock() {
                *r = Some(bytes);
            }
            self.recorded = true;
            self.count(|c| c.record_bytes += len as u64);
            self.exact(&mut tag)?;
        }
        if tag[0] == END {
            let trailer = zstd::bulk::compress(&[0u8; 1024], 1)?;
            return Ok(State::Trailer(io::Cursor::new(trailer)));
        }
        let mut signature = [0u8; 32];
        self.exact(&mut signature)?;
        match tag[0] {
            DATA => {
                self.count(|c| c.chunks += 1);
                let part = self.cache.as_ref().and_then(|c| {
                    let path = c.dir.join(format!("{}.part", hex::encode(signature)));
                    let file = File::create(&path).ok()?;
                    Some(Part {
                        path,
                        file: io::BufWriter::new(file),
                        hasher: Sha256::new(),
                    })
                });
                Ok(State::Data {
                    signature,
                    left: 0,
                    part,
                })
            }
            REUSE => {
                let kept = self.cache.as_ref().and_then(|c| {
                    let name = c.kept.get(&signature)?;
                    let path = c.dir.join(name);
                    let file = File::open(&path).ok()?;
                    Some((file, path, split_name(name)?.1))
                });
                let (file, path, want) = kept.ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "the kept chunk {} is gone from the cache: run again",
                            hex::encode(signature)
                        ),
                    )
                })?;
                self.count(|c| c.reused_chunks += 1);
                Ok(State::Reuse {
                    file,
                    path,
                    hasher: Sha256::new(),
                    want,
                })
            }
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("an unknown chunk tag {other:#x} in the stream"),
            )),
        }
    }
}

impl<R: Read> Read for Receiver<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match &mut self.state {
                State::Tag => self.state = self.next_chunk()?,
                State::Data { left: 0, .. } => {
                    let mut len = [0u8; 4];
                    self.exact(&mut len)?;
                    let len = u32::from_be_bytes(len);
                    if len > 0 {
                        if let State::Data { left, .. } = &mut self.state {
                            *left = len;
                        }
                        continue;
                    }
                    let mut clean = [0u8; 1];
                    self.exact(&mut clean)?;
                    if let State::Data {
                        signature, part, ..
                    } = std::mem::replace(&mut self.state, State::Tag)
                    {
                        if let (Some(part), Some(cache)) = (part, &self.cache) {
                            // Not synced: a file a crash damages fails its digest.
                            let name = format!(
                                "{}.{}.zst",
                                hex::encode(signature),
                                hex::encode(digest16(part.hasher))
                            );
                            let kept = clean[0] == 1
                                && part.file.into_inner().is_ok()
                                && std::fs::rename(&part.path, cache.dir.join(name)).is_ok();
                            if !kept {
                                let _ = std::fs::remove_file(&part.path);
                            }
                        }
                    }
                }
                State::Data { left, part, .. } => {
                    let want = buf.len().min(*left as usize);
                    let n = self.inner.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    *left -= n as u32;
                    // A cache that cannot be written only loses the resume.
                    if let Some(p) = part {
                        p.hasher.update(&buf[..n]);
                        if p.file.write_all(&buf[..n]).is_err() {
                            let _ = std::fs::remove_file(&p.path);
                            *part = None;
                        }
                    }
                    self.count(|c| c.bytes += n as u64);
                    return Ok(n);
                }
                State::Reuse {
                    file,
                    path,
                    hasher,
                    want,
                } => {
                    let n = file.read(buf)?;
                    if n > 0 {
                        hasher.update(&buf[..n]);
                        self.count(|c| c.reused_bytes += n as u64);
                        return Ok(n);
                    }
                    if digest16(std::mem::take(hasher)) != *want {
                        let _ = std::fs::remove_file(&*path);
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "the kept chunk {} was damaged (now removed): run again",
                                path.display()
                            ),
                        ));
                    }
                    self.state = State::Tag;
                }
                State::Trailer(cursor) => {
                    let n = cursor.read(buf)?;
                    if n == 0 {
                        self.state = State::Done;
                    }
                    return Ok(n);
                }
                State::Done => return Ok(0),
            }
        }
    }
}

impl<R> Drop for Receiver<R> {
    fn drop(&mut self) {
        if let State::Data { part: Some(p), .. } = &self.state {
            let _ = std::fs::remove_file(&p.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Excludes;
    use crate::source::{DirOptions, DirSource, Source};

    #[test]
    fn the_level_rises_on_a_slow_link_and_falls_on_a_fast_one_or_a_busy_cpu() {
        let s = Duration::from_secs(1);
        let mut pace = Pace::new();
        assert_eq!(pace.level(), 3);
        // 10 MB/s, writes waiting on the network 80% of the time.
        pace.chunk_sent(10_000_000, s, s * 8 / 10);
        assert_eq!(pace.level(), 6);
        // Too small to say anything.
        pace.chunk_sent(1000, s, s);
        assert_eq!(pace.level(), 6);
        // The same rate, but compression held it back.
        pace.chunk_sent(10_000_000, s, s / 20);
        assert_eq!(pace.level(), 3);
        // 100 MB/s: the link is fast whatever waited.
        pace.chunk_sent(100_000_000, s, s * 9 / 10);
        assert_eq!(pace.level(), 1);
        pace.chunk_sent(100_000_000, s, s * 9 / 10);
        assert_eq!(pace.level(), -1);
        pace.chunk_sent(100_000_000, s, s * 9 / 10);
        assert_eq!(pace.level(), -1);
    }

    fn tree(root: &Path) {
        for d in ["a/x", "b", "c"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("a/x/one"), vec![1u8; 5000]).unwrap();
        std::fs::write(root.join("b/two"), b"two").unwrap();
        std::fs::hard_link(root.join("a/x/one"), root.join("c/one-again")).unwrap();
    }

    /// The chunked stream of `root`, given the signatures the other side holds.
    fn stream(root: &Path, have: &[String]) -> Vec<u8> {
        let source = DirSource::new(root, DirOptions::default()).unwrap();
        let excludes = Excludes::new(&[], &[]).unwrap();
        let parts = TreeParts::new(&source, &excludes);
        let grown = || 0;
        let mut progress = |_| {};
        let mut chunker = Chunker::new(
            parts,
            root,
            b"test",
            have,
            Vec::new(),
            &grown,
            &mut progress,
        )
        .unwrap();
        source.walk(&mut |e| chunker.push(e)).unwrap();
        chunker.finish().unwrap().0
    }

    fn receive(bytes: &[u8], cache: &Cache) -> (Vec<u8>, Received) {
        let counts = Arc::new(Mutex::new(Received::default()));
        let mut rx = Receiver::new(bytes, Some(cache.clone()), counts.clone());
        let mut frames = Vec::new();
        rx.read_to_end(&mut frames).unwrap();
        let tar = zstd::stream::decode_all(&frames[..]).unwrap();
        let c = *counts.lock().unwrap();
        (tar, c)
    }

    /// The record of the server's reads goes before the first chunk, comes out of the
    /// stream beside the tar (which it leaves as it is), and once only; the further
    /// name of a file is marked in the stream's tar.
    #[test]
    fn the_record_comes_first_and_once_and_the_tar_is_unchanged() {
        let root = tempfile::tempdir().unwrap();
        tree(root.path());
        let plain = stream(root.path(), &[]);
        let source = DirSource::new(root.path(), DirOptions::default()).unwrap();
        let excludes = Excludes::new(&[], &[]).unwrap();
        let grown = || 0;
        let mut progress = |_| {};
        let mut chunker = Chunker::new(
            TreeParts::new(&source, &excludes),
            root.path(),
            b"test",
            &[],
            Vec::new(),
            &grown,
            &mut progress,
        )
        .unwrap();
        let (ready, record) = std::sync::mpsc::channel();
        chunker.send_record(record);
        ready.send(b"the record".to_vec()).unwrap();
        source.walk(&mut |e| chunker.push(e)).unwrap();
        let with = chunker.finish().unwrap().0;
        assert_eq!(with[MAGIC.len()], RECORD);

        let cache_dir = tempfile::tempdir().unwrap();
        let cache = Cache::in_dir(cache_dir.path().to_path_buf());
        let counts = Arc::new(Mutex::new(Received::default()));
        let mut rx = Receiver::new(&with[..], Some(cache.clone()), counts.clone());
        let slot = rx.record();
        let mut frames = Vec::new();
        rx.read_to_end(&mut frames).unwrap();
        assert_eq!(slot.lock().unwrap().as_deref(), Some(&b"the record"[..]));
        assert_eq!(counts.lock().unwrap().record_bytes, 10);
        let tar = zstd::stream::decode_all(&frames[..]).unwrap();
        let (without, _) = receive(&plain, &cache);
        assert_eq!(tar, without);
        let linked = String::from_utf8_lossy(oci::tar::LINKED);
        assert!(String::from_utf8_lossy(&tar).contains(&*linked));

        // A second record is refused.
        let mut twice = with[..MAGIC.len()].to_vec();
        for _ in 0..2 {
            twice.push(RECORD);
            twice.extend_from_slice(&1u32.to_be_bytes());
            twice.push(b'x');
        }
        twice.push(END);
        let mut rx = Receiver::new(&twice[..], None, counts);
        let err = rx.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("a second record"), "{err}");
    }

    /// A file that grew between two runs changes its own chunk, not the ones after it.
    #[test]
    fn a_file_that_grew_shifts_no_later_chunk() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("var/log");
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..800 {
            std::fs::write(dir.join(format!("f{i:04}")), vec![i as u8; 32 << 10]).unwrap();
        }
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = Cache::in_dir(cache_dir.path().to_path_buf());
        let (_, first) = receive(&stream(root.path(), &[]), &cache);
        assert!(first.chunks >= 4, "{first:?}");
        // An early file grows by 3 MiB, most of a chunk's minimum.
        std::fs::write(dir.join("f0003"), vec![7u8; 3 << 20]).unwrap();
        let cache = Cache::in_dir(cache_dir.path().to_path_buf());
        let (_, again) = receive(&stream(root.path(), &cache.signatures()), &cache);
        // `chunks` counts those sent.
        assert!(again.chunks <= 2, "{again:?} after {first:?}");
        assert!(
            again.reused_chunks + 2 >= first.chunks,
            "{again:?} after {first:?}"
        );
    }

    #[test]
    fn a_rerun_reuses_what_a_cut_run_received_and_gives_the_same_tar() {
        let root = tempfile::tempdir().unwrap();
        tree(root.path());
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = Cache::in_dir(cache_dir.path().to_path_buf());
        let full = stream(root.path(), &[]);
        // The uninterrupted run, with no cache.
        let counts = Arc::new(Mutex::new(Received::default()));
        let mut frames = Vec::new();
        Receiver::new(&full[..], None, counts)
            .read_to_end(&mut frames)
            .unwrap();
        let want = zstd::stream::decode_all(&frames[..]).unwrap();

        // Cut two thirds in: the chunks received before it are kept, the one cut is not.
        let cut = &full[..full.len() * 2 / 3];
        let counts = Arc::new(Mutex::new(Received::default()));
        let mut rx = Receiver::new(cut, Some(cache.clone()), counts);
        let mut sink = Vec::new();
        assert!(
            rx.read_to_end(&mut sink).is_err(),
            "a cut stream reads to its end"
        );
        drop(rx);
        let cache = Cache::in_dir(cache_dir.path().to_path_buf());
        let kept = cache.signatures();
        assert!(!kept.is_empty(), "nothing kept");
        assert!(std::fs::read_dir(&cache.dir)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".part")));

        let again = stream(root.path(), &kept);
        assert!(again.len() < full.len());
        let (got, counts) = receive(&again, &cache);
        assert_eq!(got, want, "the resumed tar differs");
        assert_eq!(counts.reused_chunks as usize, kept.len());
        assert!(counts.reused_bytes > 0);

        // A changed file is sent again.
        std::fs::write(root.path().join("b/two"), b"TWO").unwrap();
        let cache = Cache::in_dir(cache_dir.path().to_path_buf());
        let changed = stream(root.path(), &cache.signatures());
        let (got, counts) = receive(&changed, &cache);
        assert_ne!(got, want);
        assert!(counts.reused_chunks > 0 && counts.chunks > 0, "{counts:?}");

        // A kept chunk damaged on disk is named and removed, never read into a tree.
        let cache = Cache::in_dir(cache_dir.path().to_path_buf());
        let paths: Vec<PathBuf> = cache.kept.values().map(|n| cache.dir.join(n)).collect();
        for path in &paths {
            let mut bytes = std::fs::read(path).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            std::fs::write(path, bytes).unwrap();
        }
        let again = stream(root.path(), &cache.signatures());
        let counts = Arc::new(Mutex::new(Received::default()));
        let mut rx = Receiver::new(&again[..], Some(cache.clone()), counts);
        let err = rx.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
        assert!(
            paths.iter().any(|p| !p.exists()),
            "the damaged chunk is still kept"
        );
    }

    /// The fuzzer's seed (`fuzz/seeds/chunk_stream`) is a resumed run's stream: its
    /// record, a reuse of the chunk kept in `fuzz/common/kept-chunk`, and a chunk sent.
    #[test]
    fn the_fuzzers_seed_reuses_its_kept_chunk_and_receives_the_rest() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let seed = std::fs::read(fuzz.join("seeds/chunk_stream/resumed")).unwrap();
        let cache_dir = tempfile::tempdir().unwrap();
        for kept in std::fs::read_dir(fuzz.join("common/kept-chunk")).unwrap() {
            let kept = kept.unwrap();
            std::fs::copy(kept.path(), cache_dir.path().join(kept.file_name())).unwrap();
        }
        let cache = Cache::in_dir(cache_dir.path().to_path_buf());
        let counts = Arc::new(Mutex::new(Received::default()));
        let mut rx = Receiver::new(&seed[..], Some(cache), counts.clone());
        let record = rx.record();
        let mut frames = Vec::new();
        rx.read_to_end(&mut frames).unwrap();
        assert_eq!(record.lock().unwrap().as_deref(), Some(&b"a record"[..]));
        let counts = *counts.lock().unwrap();
        assert_eq!((counts.reused_chunks, counts.chunks), (1, 1), "{counts:?}");
        let tar = zstd::stream::decode_all(&frames[..]).unwrap();
        let mut paths = Vec::new();
        let mut reader = oci::tar::Reader::new(&tar[..]);
        while let Some(header) = reader.next_entry().unwrap() {
            paths.push(String::from_utf8_lossy(&header.path).into_owned());
        }
        for want in [
            "etc/hostname",
            "etc/app/app.conf",
            "srv/data/one",
            "srv/data/two",
        ] {
            assert!(
                paths.iter().any(|p| p.ends_with(want)),
                "{want} in {paths:?}"
            );
        }
    }
}
