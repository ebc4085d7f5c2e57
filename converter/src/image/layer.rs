//! One layer from a whole tree: the walk, the exclusions, hardlinks, the tar stream,
//! its diff_id, the compression and the blob's digest, all in one pass.
//!
//! The walk and the tar encoding run on the calling thread; compression runs on worker
//! threads and the compressed bytes are hashed and written on another, so both cores
//! work and memory stays at a few blocks whatever the tree's size.

use super::compress::{self, Compression, Compressors};
use crate::entry::{Entry, Kind};
use crate::error::{Error, IoContext, Result};
use crate::profile::Excludes;
use crate::source::{Skipped, Skips, Source};
use oci::digest::HashingWriter;
use oci::layout::{BlobWriter, LayoutWriter};
use oci::tar::TarWriter;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};

#[derive(Debug, Clone)]
pub struct LayerOptions {
    pub compression: Compression,
    /// Compression threads.
    pub threads: usize,
    /// Newer mtimes are clamped to this (SOURCE_DATE_EPOCH).
    pub source_date_epoch: Option<i64>,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            compression: Compression::Gzip,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            source_date_epoch: None,
        }
    }
}

/// What went into a layer, and what did not.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LayerStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub devices: u64,
    pub fifos: u64,
    pub sparse_files: u64,
    /// Bytes of file content (logical size).
    pub content_bytes: u64,
    /// Bytes of the uncompressed tar stream.
    pub tar_bytes: u64,
    /// Excluded entries and bytes, by reason.
    pub excluded: BTreeMap<String, Excluded>,
    /// Entries the walk could not or would not take (sockets, vanished files, …):
    /// `skipped` lists the first of them, `skipped_total` counts them all.
    #[serde(flatten)]
    pub skipped: Skips,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Excluded {
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BuiltLayer {
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    pub media_type: String,
    pub stats: LayerStats,
}

/// Progress of a running build, for a progress bar.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub entries: u64,
    pub bytes: u64,
}

/// The tar stream of a layer being written: hashed (its diff_id), compressed, hashed
/// again and written into a blob of the layout, in one pass.
pub type LayerTar = TarWriter<HashingWriter<Box<dyn compress::FinishWrite<BlobFile>>>>;
type BlobFile = HashingWriter<std::io::BufWriter<std::fs::File>>;

/// A layer blob being written; [`LayerBlob::finish`] commits it by its digest.
pub struct LayerBlob {
    pub tar: LayerTar,
    blob_path: std::path::PathBuf,
    dir: std::path::PathBuf,
    tmp: std::path::PathBuf,
    compression: Compression,
}

impl LayerBlob {
    pub fn create(out: &LayoutWriter, compressors: &Compressors) -> Result<Self> {
        let blob = out.blob()?;
        let blob_path = blob.path().to_path_buf();
        let (dir, path, writer) = blob.into_writer();
        let compressed = compressors.writer(writer).at(&blob_path)?;
        Ok(LayerBlob {
            tar: TarWriter::new(HashingWriter::new(compressed)),
            blob_path,
            dir,
            tmp: path,
            compression: compressors.compression(),
        })
    }

    /// Compresses a whole tar stream already written (a package layer's, kept in a
    /// temporary file while the walk went on) into a blob; `diff_id` and `stats.tar_bytes`
    /// are the stream's, hashed as it was written.
    pub fn from_tar(
        out: &LayoutWriter,
        compressors: &Compressors,
        tar: &mut dyn Read,
        diff_id: String,
        stats: LayerStats,
    ) -> Result<BuiltLayer> {
        let blob = out.blob()?;
        let blob_path = blob.path().to_path_buf();
        let (dir, tmp, writer) = blob.into_writer();
        let mut compressed = compressors.writer(writer).at(&blob_path)?;
        io::copy(tar, &mut compressed).at(&blob_path)?;
        let writer = compressed
            .finish_into()
            .map_err(|e| Error::io(&blob_path, e))?;
        let (digest, size) = BlobWriter::commit_parts(&dir, &tmp, writer)?;
        Ok(BuiltLayer {
            digest,
            diff_id,
            size,
            media_type: compressors.compression().layer_media_type().into(),
            stats,
        })
    }

    /// Where the blob is written, for messages.
    pub fn path(&self) -> &std::path::Path {
        &self.blob_path
    }

    /// Ends the tar, the compression and the blob; gives the layer.
    pub fn finish(self, mut stats: LayerStats) -> Result<BuiltLayer> {
        let hashed = self.tar.finish().at(&self.blob_path)?;
        let (diff_id, tar_bytes, compressed) = hashed.finish();
        stats.tar_bytes = tar_bytes;
        let writer = compressed
            .finish_into()
            .map_err(|e| Error::io(&self.blob_path, e))?;
        let (digest, size) = BlobWriter::commit_parts(&self.dir, &self.tmp, writer)?;
        Ok(BuiltLayer {
            digest,
            diff_id,
            size,
            media_type: self.compression.layer_media_type().into(),
            stats,
        })
    }
}

/// Streams every entry of `source` that `excludes` keeps into one layer blob.
pub fn build_layer(
    source: &dyn Source,
    excludes: &Excludes,
    options: &LayerOptions,
    out: &LayoutWriter,
    progress: &mut dyn FnMut(Progress),
) -> Result<BuiltLayer> {
    let compressors = Compressors::new(options.compression, options.threads);
    let mut blob = LayerBlob::create(out, &compressors)?;

    let mut stats = LayerStats::default();
    let mut builder = Builder::new(source, excludes, options.source_date_epoch);
    let skipped =
        source.walk(&mut |entry| builder.add(entry, &mut blob.tar, &mut stats, progress))?;
    stats.skipped.append(skipped);
    blob.finish(stats)
}

/// Streams every entry of `source` that `excludes` keeps as one plain tar into `out`,
/// with the same walk and encoding as a layer (the tar a remote capture's chunks make).
pub fn write_tree<W: io::Write>(
    source: &dyn Source,
    excludes: &Excludes,
    out: W,
    progress: &mut dyn FnMut(Progress),
) -> Result<(W, LayerStats)> {
    let mut tar = TarWriter::new(out);
    let mut parts = TreeParts::new(source, excludes);
    let skipped = source.walk(&mut |entry| parts.add(entry, &mut tar, progress))?;
    let mut stats = parts.stats;
    stats.skipped.append(skipped);
    stats.tar_bytes = tar.written();
    let out = tar.finish().map_err(|e| Error::io("tar stream", e))?;
    Ok((out, stats))
}

/// A tree written in parts, in the walk's order (a remote capture's chunks): what runs
/// across parts (exclusions, the first names of hardlinked files, the stats) is kept
/// here, so a part the other side already holds can be passed over without reading it
/// and the parts after it are written as they would be in one piece.
pub struct TreeParts<'a> {
    builder: Builder<'a>,
    pub stats: LayerStats,
    /// Entries left out or cut short while written (vanished, shrank, unreadable).
    pub troubles: u64,
}

impl<'a> TreeParts<'a> {
    pub fn new(source: &'a dyn Source, excludes: &'a Excludes) -> Self {
        TreeParts {
            builder: Builder::new(source, excludes, None),
            stats: LayerStats::default(),
            troubles: 0,
        }
    }

    /// Writes one entry into the current part.
    pub fn add<W: io::Write>(
        &mut self,
        entry: Entry,
        tar: &mut TarWriter<W>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        // A socket is skipped every time, as it should be: no trouble.
        let expected = (entry.kind == Kind::Socket) as u64;
        let before = self.stats.skipped.total();
        self.builder.add(entry, tar, &mut self.stats, progress)?;
        if self.stats.skipped.total() - before > expected {
            self.troubles += 1;
        }
        Ok(())
    }

    /// Accounts for an entry of a part that is not written (the other side holds it),
    /// as [`TreeParts::add`] would, without reading the file.
    pub fn pass(&mut self, entry: &Entry, progress: &mut dyn FnMut(Progress)) {
        let b = &mut self.builder;
        let stats = &mut self.stats;
        if let Some(reason) = b.exclusion(&entry.path) {
            let e = stats.excluded.entry(reason).or_default();
            e.entries += 1;
            e.bytes += entry.size;
            return;
        }
        match entry.kind {
            Kind::File | Kind::Hardlink => {
                let known = entry.inode.is_some_and(|k| b.first_name.contains_key(&k));
                if known {
                    stats.hardlinks += 1;
                } else {
                    if let Some(key) = entry.inode {
                        b.first_name.insert(key, entry.path.clone());
                    }
                    stats.files += 1;
                    stats.content_bytes += entry.size;
                    stats.sparse_files += entry.sparse.is_some() as u64;
                    b.progress.bytes += entry.size;
                }
            }
            Kind::Socket => {
                stats.skipped.push(Skipped {
                    path: entry_path(entry),
                    reason: SOCKET.into(),
                });
                return;
            }
            Kind::Dir => stats.dirs += 1,
            Kind::Symlink => stats.symlinks += 1,
            Kind::Char | Kind::Block => stats.devices += 1,
            Kind::Fifo => stats.fifos += 1,
        }
        b.progress.entries += 1;
        progress(b.progress);
    }

    /// The name `entry` would be written as a hardlink to, if it were added now
    /// because an earlier part holds its group's first name: a part's bytes depend on it.
    pub fn link_target(&self, entry: &Entry) -> Option<&[u8]> {
        let key = entry.inode?;
        self.builder.first_name.get(&key).map(Vec::as_slice)
    }
}

const SOCKET: &str = "socket (recreated by its service)";

/// Writes the entries of a walk into one tar stream: exclusions, hardlinks, vanished
/// files. Layers by package hand it what stays in the server's own layer.
pub(super) struct Builder<'a> {
    source: &'a dyn Source,
    excludes: &'a Excludes,
    epoch: Option<i64>,
    /// The excluded directory whose contents the walk is in, with its reason.
    excluded_dir: Option<(Vec<u8>, String)>,
    /// (device, inode) of a file with several names → the name written with its data,
    /// to keep the other names as hardlinks to it. Only such files are kept (sources
    /// give an inode only to them): memory grows with the hardlinked files, never with
    /// the tree.
    first_name: HashMap<(u64, u64), Vec<u8>>,
    progress: Progress,
}

impl<'a> Builder<'a> {
    pub(super) fn new(source: &'a dyn Source, excludes: &'a Excludes, epoch: Option<i64>) -> Self {
        Builder {
            source,
            excludes,
            epoch,
            excluded_dir: None,
            first_name: HashMap::new(),
            progress: Progress::default(),
        }
    }

    fn add<W: io::Write>(
        &mut self,
        entry: Entry,
        tar: &mut TarWriter<W>,
        stats: &mut LayerStats,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        match self.admit(entry, stats) {
            Some(entry) => self.keep(entry, tar, stats, progress),
            None => Ok(()),
        }
    }

    /// The entry as it goes into the image (its mtime clamped), or `None` when it is
    /// left out (counted by reason).
    pub(super) fn admit(&mut self, mut entry: Entry, stats: &mut LayerStats) -> Option<Entry> {
        if let Some(reason) = self.exclusion(&entry.path) {
            let e = stats.excluded.entry(reason).or_default();
            e.entries += 1;
            e.bytes += entry.size;
            return None;
        }
        if let Some(epoch) = self.epoch {
            if entry.mtime > epoch {
                entry.mtime = epoch;
                entry.mtime_nsec = 0;
            }
        }
        Some(entry)
    }

    /// Clamps the mtime as [`Builder::admit`] does, for an entry written again.
    pub(super) fn clamp(&self, entry: &mut Entry) {
        if let Some(epoch) = self.epoch {
            if entry.mtime > epoch {
                entry.mtime = epoch;
                entry.mtime_nsec = 0;
            }
        }
    }

    /// Whether a name of the hardlink group `key` is written already.
    pub(super) fn has_group(&self, key: (u64, u64)) -> bool {
        self.first_name.contains_key(&key)
    }

    /// Counts a file written elsewhere (into a package's layer) in the progress.
    pub(super) fn written_elsewhere(&mut self, bytes: u64, progress: &mut dyn FnMut(Progress)) {
        self.progress.bytes += bytes;
        self.progress.entries += 1;
        progress(self.progress);
    }

    /// Writes an admitted entry.
    pub(super) fn keep<W: io::Write>(
        &mut self,
        entry: Entry,
        tar: &mut TarWriter<W>,
        stats: &mut LayerStats,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        let shown = || entry_path(&entry);
        match entry.kind {
            Kind::File => {
                if let Some(key) = entry.inode {
                    if let Some(first) = self.first_name.get(&key) {
                        return self.write_hardlink(entry, first.clone(), tar, stats);
                    }
                }
                let reader = match open_content(self.source, &entry) {
                    Ok(r) => r,
                    Err(e) if e.is_vanished() => {
                        stats.skipped.push(vanished(&entry));
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                };
                let mut reader = Tagged(reader);
                let short = tar
                    .append(&entry, Some(&mut reader))
                    .map_err(|e| append_error(&entry, e))?;
                if short {
                    stats.skipped.push(Skipped {
                        path: shown(),
                        reason: "shrank while reading (padded with zeros)".into(),
                    });
                }
                if let Some(key) = entry.inode {
                    self.first_name.insert(key, entry.path.clone());
                }
                stats.files += 1;
                stats.content_bytes += entry.size;
                stats.sparse_files += entry.sparse.is_some() as u64;
                self.progress.bytes += entry.size;
            }
            Kind::Hardlink => {
                // A hardlink names its group's first name, which carries the group's
                // (device, inode) as a directory walk's file with several names does.
                if let Some(written) = entry.inode.and_then(|key| self.first_name.get(&key)) {
                    return self.write_hardlink(entry, written.clone(), tar, stats);
                }
                // The first name was excluded: this name carries the content itself,
                // and the names after it link to this one.
                let mut file = self.source.metadata(&entry.link)?;
                file.path = entry.path.clone();
                file.inode = entry.inode;
                return self.add(file, tar, stats, progress);
            }
            Kind::Socket => {
                stats.skipped.push(Skipped {
                    path: shown(),
                    reason: SOCKET.into(),
                });
                return Ok(());
            }
            kind => {
                tar.append(&entry, None)
                    .map_err(|e| write_error(&entry, e))?;
                match kind {
                    Kind::Dir => stats.dirs += 1,
                    Kind::Symlink => stats.symlinks += 1,
                    Kind::Char | Kind::Block => stats.devices += 1,
                    _ => stats.fifos += 1,
                }
            }
        }
        self.progress.entries += 1;
        progress(self.progress);
        Ok(())
    }

    /// Why the entry is left out: its own rule, or its excluded parent's.
    fn exclusion(&mut self, path: &[u8]) -> Option<String> {
        if let Some((dir, reason)) = &self.excluded_dir {
            if path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/' {
                return Some(reason.clone());
            }
            self.excluded_dir = None;
        }
        let reason = self.excludes.reason(path)?.to_string();
        self.excluded_dir = Some((path.to_vec(), reason.clone()));
        Some(reason)
    }

    fn write_hardlink<W: io::Write>(
        &mut self,
        mut entry: Entry,
        target: Vec<u8>,
        tar: &mut TarWriter<W>,
        stats: &mut LayerStats,
    ) -> Result<()> {
        entry.kind = Kind::Hardlink;
        entry.link = target;
        entry.size = 0;
        entry.sparse = None;
        tar.append(&entry, None)
            .map_err(|e| write_error(&entry, e))?;
        stats.hardlinks += 1;
        self.progress.entries += 1;
        Ok(())
    }
}

pub(super) fn open_content<'s>(
    source: &'s dyn Source,
    entry: &Entry,
) -> Result<Box<dyn Read + Send + 's>> {
    match &entry.sparse {
        Some(extents) => source.open_extents(&entry.path, extents),
        None => source.open(&entry.path),
    }
}

fn entry_path(entry: &Entry) -> String {
    entry.display().to_string()
}

pub(super) fn vanished(entry: &Entry) -> Skipped {
    Skipped {
        path: entry_path(entry),
        reason: "vanished while reading".into(),
    }
}

/// A source reader whose errors say they are the source's, not the output's.
pub(super) struct Tagged<R>(pub R);

#[derive(Debug)]
struct SourceRead(io::Error);

impl std::fmt::Display for SourceRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SourceRead {}

impl<R: Read> Read for Tagged<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), SourceRead(e)))
    }
}

/// Whether a failure while copying a file through [`Tagged`] was the source's.
pub(super) fn from_source(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<SourceRead>())
}

/// A failure while copying a file: reading the source names the file, writing the
/// layer names the layer.
pub(super) fn append_error(entry: &Entry, e: io::Error) -> Error {
    if from_source(&e) {
        let inner = e.into_inner().and_then(|b| b.downcast::<SourceRead>().ok());
        return Error::io(
            entry_path(entry),
            inner
                .map(|s| s.0)
                .unwrap_or_else(|| io::Error::other("read failed")),
        );
    }
    write_error(entry, e)
}

pub(super) fn write_error(entry: &Entry, e: io::Error) -> Error {
    Error::io(format!("layer (at {})", entry_path(entry)), e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ExcludeRule;
    use crate::source::{ArchiveSource, DirOptions, DirSource};
    use oci::layout::OutputFormat;
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    /// A tree with hardlink groups (one of them a sparse file, as a linker leaves a
    /// binary), a long name and a directory deeper than a tar name field.
    fn tree(root: &Path) {
        let deep = root.join("a/".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("leaf"), b"deep").unwrap();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("srv")).unwrap();
        std::fs::write(root.join("bin/tool"), b"tool").unwrap();
        std::fs::hard_link(root.join("bin/tool"), root.join("srv/tool")).unwrap();
        std::fs::hard_link(root.join("bin/tool"), root.join("srv/tool2")).unwrap();
        let mut sparse = std::fs::File::create(root.join("bin/build-script")).unwrap();
        sparse.set_len(8 << 20).unwrap();
        sparse.seek(SeekFrom::Start(4 << 20)).unwrap();
        sparse.write_all(b"linked").unwrap();
        drop(sparse);
        std::fs::hard_link(root.join("bin/build-script"), root.join("srv/build")).unwrap();
        std::fs::write(root.join("srv").join("n".repeat(255)), b"long").unwrap();
        std::os::unix::fs::symlink("../bin/tool", root.join("srv/link")).unwrap();
    }

    fn diff_id(source: &dyn Source, excludes: &Excludes, out: &Path) -> BuiltLayer {
        let layout = LayoutWriter::create(out, OutputFormat::Oci, true).unwrap();
        let options = LayerOptions {
            compression: crate::image::Compression::None,
            threads: 1,
            source_date_epoch: Some(1),
        };
        build_layer(source, excludes, &options, &layout, &mut |_| {}).unwrap()
    }

    /// A tree gives the same layer read as a directory (hardlinks found by inode) and as
    /// the tar of it (hardlinks given by name), whichever name of a group is left out.
    #[test]
    fn a_directory_and_its_archive_give_the_same_layer() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        tree(&root);
        assert!(
            std::fs::metadata(root.join("bin/build-script"))
                .unwrap()
                .blocks()
                * 512
                < 8 << 20,
            "this filesystem keeps no holes"
        );
        for excluded in [&[][..], &["/bin/tool", "/bin/build-script"][..]] {
            let excludes = Excludes::new(
                &[ExcludeRule {
                    reason: "test".into(),
                    paths: excluded.iter().map(|p| p.to_string()).collect(),
                }],
                &[],
            )
            .unwrap();
            let dir = DirSource::new(&root, DirOptions::default()).unwrap();
            let from_dir = diff_id(&dir, &excludes, &work.path().join("a.oci"));
            let (tar, _) = write_tree(
                &dir,
                &Excludes::new(&[], &[]).unwrap(),
                Vec::new(),
                &mut |_| {},
            )
            .unwrap();
            let tar_path = work.path().join("tree.tar");
            std::fs::write(&tar_path, tar).unwrap();
            let archive = ArchiveSource::open(&tar_path).unwrap();
            let from_tar = diff_id(&archive, &excludes, &work.path().join("b.oci"));
            assert_eq!(from_dir.diff_id, from_tar.diff_id, "excluding {excluded:?}");
            let stats = &from_dir.stats;
            assert_eq!(stats.hardlinks, 3 - excluded.len() as u64);
            assert_eq!(stats.sparse_files, 1);
            assert_eq!(from_tar.stats.hardlinks, stats.hardlinks);
            assert_eq!(from_tar.stats.files, stats.files);
        }
    }
}
