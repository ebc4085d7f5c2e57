//! Layers by package: one walk of the tree, each entry dispatched to its layer's writer.
//!
//! A package file whose content is what its package installed (the database's digest)
//! goes into the layer of its package's group ([`super::cut`]); everything else stays in
//! the server's own layer on top: files no package owns, changed package files and
//! conffiles, symlinks (the database gives no digest for them), files owned by another
//! user or group than root (ids differ from server to server), sparse files, and the
//! names of a hardlink group that would be split across layers (the group goes to the
//! server's layer whole).
//!
//! A package layer's bytes depend only on the packages of its group and their files, so
//! that servers with the same packages share it: its directories are written with the
//! same metadata everywhere (0755, root, mtime 0), and the server's layer writes every
//! directory again with its real metadata, which an upper layer's directory entry sets.
//!
//! Every layer is compressed as the walk goes, on one pool of workers they share. The
//! server's layer is compressed from memory, as one layer is; each package layer is
//! spooled into a temporary file ([`super::spool`]): a package file is read once, and
//! only what stays is handed to the compressors. Small files of dpkg's are read ahead
//! and checked many at once (`Dispatch::visit`), so a changed one is never written
//! into its package's layer; any other is checked while it is written and taken back
//! when it turns out changed. A layer is ended as soon as the walk is past the last
//! file of its group (the database lists them, and the walk's order is known), so the
//! compression of its last block and its commit (a sync to disk) overlap the rest of the
//! walk instead of following it.
//! Memory is the package database, a write buffer per layer, the blocks in flight and
//! the files read ahead (16 MiB), never the tree, and never a compressor per layer
//! (sixty of them would hold hundreds of MiB).

use super::compress::{Compression, Compressors};
use super::cut::Cut;
use super::layer::{
    from_source, write_error, Builder, BuiltLayer, LayerBlob, LayerOptions, LayerStats, Progress,
    Tagged,
};
use super::spool::{self, Spool};
use crate::entry::{walk_order, Entry, Kind};
use crate::error::Result;
use crate::inventory::md5_lanes::md5_many;
use crate::inventory::ownership::{FileCheck, PackageDb};
use crate::profile::Excludes;
use crate::source::Source;
use oci::layout::LayoutWriter;
use oci::tar::TarWriter;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// One package layer, built.
#[derive(Debug, Clone)]
pub struct PackageLayer {
    pub layer: BuiltLayer,
    /// The group's name: a package's, or `bin N`.
    pub group: String,
    /// The packages with files in it, as `NAME=VERSION`, sorted.
    pub packages: Vec<String>,
}

/// Package files written into the server's own layer, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OwnedInServer {
    /// Their content differs from the package's digest (hand edits, conffiles changed).
    pub changed: u64,
    /// The database gives no digest to check them by (symlinks, files dpkg lists
    /// without an md5sum).
    pub unchecked: u64,
    /// Owned by a user or group other than root: their ids are given out on each server
    /// (a system group made by a package's script), so they would make the package's
    /// layer differ from server to server.
    pub not_root: u64,
    /// Files with several names in different layers, sparse files, files unreadable for
    /// the check, devices.
    pub other: u64,
}

/// What [`build_layers`] made.
pub struct Layers {
    /// In the order of the cut's groups; empty groups give none.
    pub packages: Vec<PackageLayer>,
    pub server: BuiltLayer,
    pub owned_in_server: OwnedInServer,
    /// The whole tree, as one layer would count it.
    pub stats: LayerStats,
}

/// A package layer being written.
struct Open<'a> {
    spool: Spool<'a>,
    /// The directories written so far on the path to the last entry, root first.
    dirs: Vec<Vec<u8>>,
    packages: BTreeSet<usize>,
    stats: LayerStats,
}

/// A package layer before an entry: [`Open::take_back`].
struct Mark {
    spool: spool::Mark,
    dirs: Vec<Vec<u8>>,
    dir_count: u64,
}

impl Open<'_> {
    fn mark(&self) -> Mark {
        Mark {
            spool: self.spool.mark(),
            dirs: self.dirs.clone(),
            dir_count: self.stats.dirs,
        }
    }

    /// Takes back what was written since `mark` (a file and the directories before it).
    fn take_back(&mut self, mark: Mark) -> Result<()> {
        self.dirs = mark.dirs;
        self.stats.dirs = mark.dir_count;
        self.spool.take_back(mark.spool)
    }
}

/// A package layer's place in the walk.
enum Slot<'a> {
    /// No file of its group written yet.
    Waiting,
    Open(Box<Open<'a>>),
    /// The walk is past its group's last file: its tar is ended, and handed to the
    /// committers when it holds anything.
    Ended,
}

/// A package layer's tar, ended, being compressed.
struct Ended<'a> {
    layer: spool::Closed<'a>,
    group: String,
    /// As `NAME=VERSION`, sorted.
    packages: Vec<String>,
    stats: LayerStats,
}

impl Ended<'_> {
    /// The layer, once compressed and committed.
    fn finish(self) -> Result<PackageLayer> {
        Ok(PackageLayer {
            layer: self.layer.finish(self.stats)?,
            group: self.group,
            packages: self.packages,
        })
    }
}

impl<'a> Open<'a> {
    fn end(self, db: &PackageDb, group: &str) -> Result<Option<Ended<'a>>> {
        // A layer whose every file was taken back is no layer.
        if self.spool.is_empty() {
            return Ok(None);
        }
        let packages = self
            .packages
            .iter()
            .map(|&i| {
                let p = &db.packages[i];
                format!("{}={}", p.name, p.version)
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Ok(Some(Ended {
            layer: self.spool.close()?,
            group: group.to_string(),
            packages,
            stats: self.stats,
        }))
    }
}

/// Streams the tree into the package layers of `cut` and the server's layer, in one walk.
pub fn build_layers(
    source: &dyn Source,
    excludes: &Excludes,
    options: &LayerOptions,
    db: &PackageDb,
    cut: &Cut,
    out: &LayoutWriter,
    progress: &mut dyn FnMut(Progress),
) -> Result<Layers> {
    let compressors = Compressors::new(options.compression, options.threads);
    // Each layer is committed as soon as the walk ends it, while the walk goes on: its
    // blob's sync then waits on the disk beside the walk, not after it.
    let (ended, to_commit) = crossbeam_channel::unbounded::<(usize, Ended)>();
    let committed = Mutex::new(Vec::new());
    let (walked, server) = std::thread::scope(|s| {
        for _ in 0..committers(options.compression).min(cut.groups.len()) {
            s.spawn(|| {
                for (group, layer) in &to_commit {
                    let built = layer.finish();
                    lock(&committed).push((group, built));
                }
            });
        }
        let mut d = Dispatch {
            source,
            db,
            cut,
            out,
            compressors: &compressors,
            server: LayerBlob::create(out, &compressors)?,
            layers: cut.groups.iter().map(|_| Slot::Waiting).collect(),
            committers: ended,
            ends: last_files(db, cut),
            ended: 0,
            stats: LayerStats::default(),
            owned: OwnedInServer::default(),
            builder: Builder::new(source, excludes, options.source_date_epoch),
            in_packages: HashMap::new(),
            ahead: Vec::new(),
            ahead_bytes: 0,
        };
        let skipped = source.walk(&mut |entry| d.visit(entry, progress))?;
        d.flush(progress)?;
        for group in 0..cut.groups.len() {
            d.end(group)?;
        }
        let Dispatch {
            server,
            mut stats,
            owned,
            ..
        } = d;
        stats.skipped.append(skipped);
        let server = server.finish(LayerStats::default());
        Ok::<_, crate::Error>(((stats, owned), server))
    })?;
    let (mut stats, owned) = walked;
    let server = server?;
    stats.tar_bytes += server.stats.tar_bytes;

    let mut committed = committed
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    // In the order of the cut's groups, whatever order they were committed in.
    committed.sort_by_key(|(group, _)| *group);
    let mut packages = Vec::new();
    for (_, built) in committed {
        let built = built?;
        stats.tar_bytes += built.layer.stats.tar_bytes;
        packages.push(built);
    }
    Ok(Layers {
        packages,
        server,
        owned_in_server: owned,
        stats,
    })
}

/// Each group's last file in walk order (of those the database gives a digest for),
/// with the group, in walk order. Once the walk is past it, no file of the group can
/// come: its layer is ended then, and its last blocks are compressed while the walk
/// goes on, not after it.
fn last_files<'d>(db: &'d PackageDb, cut: &Cut) -> Vec<(&'d [u8], usize)> {
    let mut last: Vec<Option<&[u8]>> = vec![None; cut.groups.len()];
    for (path, package) in db.checked_paths() {
        let slot = &mut last[cut.group_of(package)];
        if slot.is_none_or(|l| walk_order(l, path) == Ordering::Less) {
            *slot = Some(path);
        }
    }
    let mut ends: Vec<(&[u8], usize)> = last
        .into_iter()
        .enumerate()
        .filter_map(|(group, path)| Some((path?, group)))
        .collect();
    ends.sort_by(|a, b| walk_order(a.0, b.0));
    ends
}

/// Threads that wait for the package layers ended by the walk and commit them, while the
/// walk goes on. A commit syncs its blob to disk: sixty syncs one after another took
/// 0.2 s here, while syncs made at once are written by the filesystem's journal together;
/// made after the walk, they were most of the time between its end and the image's.
const COMMITTERS: usize = 8;

/// With zstd a commit also compresses its layer, read whole from its spool, and each
/// encoder already uses every thread: one committer, so one encoder at a time, in one
/// thread. Encoders made in eight threads at once held some 20 MiB each, and freed in
/// those threads their memory stayed with the threads' allocator arenas.
fn committers(compression: Compression) -> usize {
    match compression {
        Compression::Zstd => 1,
        Compression::Gzip | Compression::None => COMMITTERS,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The state of the one walk: every layer being written.
struct Dispatch<'a> {
    source: &'a dyn Source,
    db: &'a PackageDb,
    cut: &'a Cut,
    out: &'a LayoutWriter,
    compressors: &'a Compressors,
    server: LayerBlob,
    /// By group.
    layers: Vec<Slot<'a>>,
    /// Where ended layers go to be committed, with their group.
    committers: crossbeam_channel::Sender<(usize, Ended<'a>)>,
    /// Where the walk ends each group's layer ([`last_files`]), and how many it did.
    ends: Vec<(&'a [u8], usize)>,
    ended: usize,
    /// The whole tree's.
    stats: LayerStats,
    owned: OwnedInServer,
    /// Writes the server's layer: exclusions, hardlinks, vanished files.
    builder: Builder<'a>,
    /// (device, inode) of a file with several names written into a package layer →
    /// that name and the layer's group: a further name of the same package joins it
    /// there as a hardlink; any other sends the group to the server's layer.
    in_packages: HashMap<(u64, u64), (Vec<u8>, usize)>,
    /// The entries read ahead, in walk order, not dispatched yet ([`Dispatch::visit`]),
    /// and the bytes of content they hold.
    ahead: Vec<(Entry, Option<Vec<u8>>)>,
    ahead_bytes: usize,
}

/// The largest package file read ahead, to be checked with others ([`Dispatch::visit`]).
const AHEAD_FILE: u64 = 2 << 20;
/// At most this much content read ahead, and this many entries waiting.
const AHEAD_BYTES: usize = 16 << 20;
const AHEAD_ENTRIES: usize = 4096;

/// A package file read ahead: its content and that content's MD5.
struct ReadAhead {
    content: Vec<u8>,
    md5: [u8; 16],
}

impl<'a> Dispatch<'a> {
    /// Takes an entry from the walk. Checking dpkg's MD5s was a tenth of the CPU time of
    /// a conversion; MD5 is fast only over many files at once, a file per SIMD lane
    /// ([`md5_many`]). So the small package files that would be checked are read into
    /// memory as they come, and every entry waits in walk order until enough content
    /// is read (or the walk ends); then all of them are hashed at once and the entries
    /// dispatched in the same order as without reading ahead, each such file written
    /// from the very bytes that were checked. Larger files, and files of databases
    /// without MD5s, are checked while they are written, as they always were.
    fn visit(&mut self, entry: Entry, progress: &mut dyn FnMut(Progress)) -> Result<()> {
        let content = self.read_ahead(&entry);
        if content.is_none() && self.ahead.is_empty() {
            return self.dispatch(entry, None, progress);
        }
        self.ahead_bytes += content.as_ref().map_or(0, Vec::len);
        self.ahead.push((entry, content));
        if self.ahead_bytes >= AHEAD_BYTES || self.ahead.len() >= AHEAD_ENTRIES {
            self.flush(progress)?;
        }
        Ok(())
    }

    /// The content of a package file worth checking with others: a small plain file of
    /// root's with an MD5 to check, and one name only (a further name is checked on its
    /// own path, [`Dispatch::dispatch`]). `None` also when it cannot be read whole now:
    /// then it is read when dispatched, as any other file.
    fn read_ahead(&self, entry: &Entry) -> Option<Vec<u8>> {
        let plain = matches!(entry.kind, Kind::File) && entry.sparse.is_none();
        if !plain || entry.inode.is_some() || entry.uid != 0 || entry.gid != 0 {
            return None;
        }
        if entry.size > AHEAD_FILE {
            return None;
        }
        self.db.check_of(&entry.path)?.md5()?;
        let reader = self.source.open(&entry.path).ok()?;
        let mut content = Vec::with_capacity(entry.size as usize);
        reader.take(entry.size).read_to_end(&mut content).ok()?;
        (content.len() as u64 == entry.size).then_some(content)
    }

    /// Hashes the content read ahead and dispatches the entries that waited, in order.
    fn flush(&mut self, progress: &mut dyn FnMut(Progress)) -> Result<()> {
        let ahead = std::mem::take(&mut self.ahead);
        self.ahead_bytes = 0;
        let contents: Vec<&[u8]> = ahead.iter().filter_map(|(_, c)| c.as_deref()).collect();
        let mut md5s = md5_many(&contents).into_iter();
        for (entry, content) in ahead {
            let read = content.map(|content| ReadAhead {
                content,
                md5: md5s.next().expect("one MD5 per content"),
            });
            self.dispatch(entry, read, progress)?;
        }
        Ok(())
    }

    fn dispatch(
        &mut self,
        entry: Entry,
        read: Option<ReadAhead>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        self.end_before(&entry.path)?;
        let Some(entry) = self.builder.admit(entry, &mut self.stats) else {
            return Ok(());
        };
        // A further name of a group already in the server's layer links to it there.
        if entry.inode.is_some_and(|k| self.builder.has_group(k)) {
            if self.db.owns(&entry.path) {
                self.owned.other += 1;
            }
            return self.server_keeps(entry, progress);
        }
        let plain = matches!(entry.kind, Kind::File) && entry.sparse.is_none();
        let check = self.db.check_of(&entry.path);
        let Some(check) = check.filter(|_| plain) else {
            if self.db.owns(&entry.path) {
                match entry.kind {
                    Kind::Dir => {}
                    Kind::Symlink => self.owned.unchecked += 1,
                    Kind::File if plain => self.owned.unchecked += 1,
                    _ => self.owned.other += 1,
                }
            }
            return self.split_group(entry, progress);
        };
        if entry.uid != 0 || entry.gid != 0 {
            self.owned.not_root += 1;
            return self.split_group(entry, progress);
        }
        let group = self.cut.group_of(check.package());
        if let Slot::Ended = self.layers[group] {
            // Only a source that breaks walk order gives a file after its group's last.
            self.owned.other += 1;
            return self.split_group(entry, progress);
        }
        if let Some(key) = entry.inode {
            if let Some((first, g)) = self.in_packages.get(&key) {
                // A further name of a file written into a package layer: checked as its
                // own path, and linked to the first name when that is in the same layer.
                let (first, g) = (first.clone(), *g);
                match self
                    .source
                    .open(&entry.path)
                    .ok()
                    .and_then(|mut r| check.matches(&mut r))
                {
                    Some(true) if g == group => {
                        let layer = self.layer(group)?;
                        layer.packages.insert(check.package());
                        write_hardlink(layer, entry, first)?;
                        self.stats.hardlinks += 1;
                        return Ok(());
                    }
                    Some(true) => self.owned.other += 1,
                    Some(false) => self.owned.changed += 1,
                    None => self.owned.other += 1,
                }
                return self.split_group(entry, progress);
            }
        }
        let checked = match read {
            // Checked already: a changed file is not written into the package's layer
            // at all, which is what writing it and taking it back leaves.
            Some(read) if check.md5() != Some(read.md5) => Checked::Differs,
            Some(read) => write_read(self.layer(group)?, &entry, &read.content)?,
            None => {
                let Ok(reader) = self.source.open(&entry.path) else {
                    self.owned.other += 1;
                    return self.split_group(entry, progress);
                };
                write_checked(self.layer(group)?, &entry, check, reader)?
            }
        };
        let layer = self.layer(group)?;
        match checked {
            Checked::Same => {}
            Checked::Differs => {
                self.owned.changed += 1;
                return self.split_group(entry, progress);
            }
            Checked::Unreadable => {
                self.owned.other += 1;
                return self.split_group(entry, progress);
            }
        }
        layer.packages.insert(check.package());
        layer.stats.files += 1;
        layer.stats.content_bytes += entry.size;
        self.stats.files += 1;
        self.stats.content_bytes += entry.size;
        if let Some(key) = entry.inode {
            self.in_packages.insert(key, (entry.path.clone(), group));
        }
        self.builder.written_elsewhere(entry.size, progress);
        Ok(())
    }

    /// The layer of `group`, opened when its first file comes.
    fn layer(&mut self, group: usize) -> Result<&mut Open<'a>> {
        let slot = &mut self.layers[group];
        if let Slot::Waiting = slot {
            *slot = Slot::Open(Box::new(Open {
                spool: Spool::create(self.out, self.compressors)?,
                dirs: Vec::new(),
                packages: BTreeSet::new(),
                stats: LayerStats::default(),
            }));
        }
        match slot {
            Slot::Open(open) => Ok(open),
            _ => unreachable!("dispatch sends the files of an ended layer to the server's"),
        }
    }

    /// Ends the layers of the groups whose last file comes before `path` in the walk.
    fn end_before(&mut self, path: &[u8]) -> Result<()> {
        while let Some(&(last, group)) = self.ends.get(self.ended) {
            if walk_order(last, path) != Ordering::Less {
                break;
            }
            self.ended += 1;
            self.end(group)?;
        }
        Ok(())
    }

    fn end(&mut self, group: usize) -> Result<()> {
        let slot = std::mem::replace(&mut self.layers[group], Slot::Ended);
        if let Slot::Open(open) = slot {
            if let Some(ended) = (*open).end(self.db, &self.cut.groups[group].name)? {
                // The committers stop only once this sender is dropped.
                let _ = self.committers.send((group, ended));
            }
        }
        Ok(())
    }

    /// Sends an entry to the server's layer; when it is a further name of a file written
    /// into a package layer, that first name is written into the server's layer again
    /// (over the package layer's copy), so the group stays whole in one layer.
    fn split_group(&mut self, entry: Entry, progress: &mut dyn FnMut(Progress)) -> Result<()> {
        if let Some((first, _)) = entry.inode.and_then(|k| self.in_packages.remove(&k)) {
            let mut again = self.source.metadata(&first)?;
            again.inode = entry.inode;
            self.builder.clamp(&mut again);
            // Counted once already, in its package layer.
            let mut scratch = LayerStats::default();
            self.builder
                .keep(again, &mut self.server.tar, &mut scratch, progress)?;
            self.stats.skipped.append(scratch.skipped);
            self.owned.other += 1;
        }
        self.server_keeps(entry, progress)
    }

    fn server_keeps(&mut self, entry: Entry, progress: &mut dyn FnMut(Progress)) -> Result<()> {
        self.builder
            .keep(entry, &mut self.server.tar, &mut self.stats, progress)
    }
}

/// A further name of a file in the same package layer.
fn write_hardlink(layer: &mut Open, mut entry: Entry, first: Vec<u8>) -> Result<()> {
    entry.kind = Kind::Hardlink;
    entry.link = first;
    entry.size = 0;
    ancestors(layer, &entry.path)?;
    TarWriter::new(layer.spool.tar())
        .append(&entry, None)
        .map_err(|e| write_error(&entry, e))?;
    layer.stats.hardlinks += 1;
    Ok(())
}

enum Checked {
    /// As the package installed it: written into its layer.
    Same,
    Differs,
    /// Unreadable, or of another size than the walk saw.
    Unreadable,
}

/// Writes a package file into its layer, after the directories that lead to it, checking
/// its content against the package's digest on the way; when it is not the package's,
/// the layer is taken back to what it was.
fn write_checked(
    layer: &mut Open,
    entry: &Entry,
    check: FileCheck,
    reader: Box<dyn std::io::Read + Send + '_>,
) -> Result<Checked> {
    let mark = layer.mark();
    ancestors(layer, &entry.path)?;
    let mut content = check.checking(Tagged(reader));
    let verdict = match TarWriter::new(layer.spool.tar()).append(entry, Some(&mut content)) {
        Ok(false) if content.matches() => {
            layer.spool.settle()?;
            return Ok(Checked::Same);
        }
        Ok(false) => Checked::Differs,
        // Shorter than the walk saw.
        Ok(true) => Checked::Unreadable,
        Err(e) if from_source(&e) => Checked::Unreadable,
        Err(e) => return Err(write_error(entry, e)),
    };
    layer.take_back(mark)?;
    Ok(verdict)
}

/// Writes a package file read and checked already into its layer, after the
/// directories that lead to it.
fn write_read(layer: &mut Open, entry: &Entry, content: &[u8]) -> Result<Checked> {
    ancestors(layer, &entry.path)?;
    let mut content = content;
    // `content` holds exactly the entry's size: it is not short.
    TarWriter::new(layer.spool.tar())
        .append(entry, Some(&mut content))
        .map_err(|e| write_error(entry, e))?;
    layer.spool.settle()?;
    Ok(Checked::Same)
}

/// Writes the directories on the way to `path` that the layer has not written yet, all
/// with the same metadata (0755, root, mtime 0): the server's layer gives them their own.
fn ancestors(layer: &mut Open, path: &[u8]) -> Result<()> {
    let ancestors: Vec<&[u8]> = path
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'/')
        .map(|(i, _)| &path[..i])
        .collect();
    let common = layer
        .dirs
        .iter()
        .zip(&ancestors)
        .take_while(|(a, b)| a.as_slice() == **b)
        .count();
    layer.dirs.truncate(common);
    for dir in &ancestors[common..] {
        let mut d = Entry::new(dir.to_vec(), Kind::Dir);
        d.mode = 0o755;
        TarWriter::new(layer.spool.tar())
            .append(&d, None)
            .map_err(|e| write_error(&d, e))?;
        layer.stats.dirs += 1;
        layer.dirs.push(dir.to_vec());
    }
    Ok(())
}
