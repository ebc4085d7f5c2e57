//! One read-only view of a filesystem, whatever holds it.
//!
//! Every backend implements [`Source`]: metadata, read a file, list a directory, read
//! a link, and a sorted walk of every entry. The inventory and the image builder never
//! know where the bytes came from.

mod archive;
mod codec;
mod dir;
pub mod disk;
pub mod recorded;
pub mod remote;

pub use archive::{ArchiveSource, ArchiveStream, Window};
pub use dir::{DirOptions, DirSource};

use crate::entry::{normalize, Entry, Extent, Kind};
use crate::error::{Error, IoContext, Result};
use std::io::Read;
use std::path::Path;

/// Something the walk met but did not give as an entry, for the summary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// What a walk or a build left out: every entry counted, the first [`Skips::LISTED`]
/// listed with their reasons. A live root where a million files vanish, or an archive of
/// a million sockets, must not hold a million messages: memory stays bounded whatever
/// the tree. The report shows the list as `skipped` and the count as `skipped_total`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Skips {
    #[serde(rename = "skipped")]
    listed: Vec<Skipped>,
    #[serde(rename = "skipped_total")]
    total: u64,
}

impl Skips {
    /// How many entries are listed; the rest are only counted.
    pub const LISTED: usize = 1000;

    pub fn push(&mut self, item: Skipped) {
        self.total += 1;
        if self.listed.len() < Self::LISTED {
            self.listed.push(item);
        }
    }

    /// Adds another list's entries after this one's.
    pub fn append(&mut self, other: Skips) {
        let unlisted = other.total - other.listed.len() as u64;
        for item in other.listed {
            self.push(item);
        }
        self.total += unlisted;
    }

    /// Counts entries left out that another list (a remote helper's) did not list.
    pub fn add_unlisted(&mut self, count: u64) {
        self.total += count;
    }

    /// Every entry left out, listed or not.
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The first [`Skips::LISTED`] entries left out.
    pub fn listed(&self) -> &[Skipped] {
        &self.listed
    }
}

impl Extend<Skipped> for Skips {
    fn extend<I: IntoIterator<Item = Skipped>>(&mut self, items: I) {
        for item in items {
            self.push(item);
        }
    }
}

impl FromIterator<Skipped> for Skips {
    fn from_iter<I: IntoIterator<Item = Skipped>>(items: I) -> Self {
        let mut skips = Skips::default();
        skips.extend(items);
        skips
    }
}

/// The callback of a walk: takes each entry in walk order.
pub type Visit<'a> = dyn FnMut(Entry) -> Result<()> + 'a;

pub trait Source: Send + Sync {
    /// What this source is, for messages: a path and a kind.
    fn describe(&self) -> String;

    /// Calls `visit` for every entry below the root, in walk order (see
    /// [`crate::entry::walk_order_key`]), parents before children. Entries the source
    /// cannot give (sockets, other filesystems, files that vanished) are returned as
    /// skipped instead.
    ///
    /// Memory stays bounded whatever the tree's size: a walk holds one directory's
    /// sorted names per level of the path it is in, never the whole tree.
    fn walk(&self, visit: &mut Visit<'_>) -> Result<Skips>;

    /// Metadata of one path (not following a final symlink).
    fn metadata(&self, path: &[u8]) -> Result<Entry>;

    /// The names in a directory, sorted.
    fn read_dir(&self, path: &[u8]) -> Result<Vec<Vec<u8>>>;

    /// Opens a regular file's content. For a sparse file the reader gives the whole
    /// logical content, holes as zeros.
    fn open(&self, path: &[u8]) -> Result<Box<dyn Read + Send + '_>>;

    /// What a capture over the network received and reused; none for other sources.
    fn received(&self) -> Option<remote::chunks::Received> {
        None
    }

    /// What a pass of [`crate::convert::prepare`]'s reads got where the source is (a
    /// server), sent ahead of the tree: the prepare can run on it before the tree has
    /// all arrived. None for other sources.
    fn recorded(&self) -> Option<&recorded::Reads> {
        None
    }

    /// The image is written: what the source kept to resume an interrupted capture
    /// can go.
    fn image_written(&self) {}

    /// Opens only the data extents of a sparse file, one after another, as the image
    /// builder writes them. The default reads the whole content and drops the holes.
    fn open_extents(&self, path: &[u8], extents: &[Extent]) -> Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(ExtentsOf {
            inner: self.open(path)?,
            extents: extents.to_vec(),
            pos: 0,
            next: 0,
        }))
    }

    /// The target of a symlink.
    fn read_link(&self, path: &[u8]) -> Result<Vec<u8>> {
        let entry = self.metadata(path)?;
        match entry.kind {
            Kind::Symlink => Ok(entry.link),
            _ => Err(Error::NotFound(format!(
                "{} (not a symlink)",
                entry.display()
            ))),
        }
    }

    /// Reads a small file whole, refusing one larger than `limit` bytes.
    fn read_to_vec(&self, path: &[u8], limit: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let display = format!("/{}", String::from_utf8_lossy(path));
        self.open(path)?
            .take(limit + 1)
            .read_to_end(&mut out)
            .at(&display)?;
        if out.len() as u64 > limit {
            return Err(Error::BadSource {
                path: display.into(),
                reason: format!("larger than {limit} bytes"),
            });
        }
        Ok(out)
    }
}

/// Options that apply to whichever source is opened.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// For a live root: other filesystems to include (their mount points).
    pub include_mounts: Vec<std::path::PathBuf>,
    /// For a disk image: directories its backing files and extents may lie in, besides
    /// the image's own.
    pub allow_backing: Vec<std::path::PathBuf>,
    /// For a remote server: the excludes it applies before sending anything.
    pub filter: remote::Filter,
    /// For a remote server: the prepare to make there and send ahead
    /// ([`Source::recorded`]).
    pub prepare: Option<crate::convert::PrepareOptions>,
    /// For a directory: absolute paths left out as if absent (rehost's own, see
    /// [`DirOptions::hidden`]).
    pub hide: Vec<std::path::PathBuf>,
}

/// What kind of source a SOURCE argument names, for the image's `io.rehost.source` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// A directory holding a root filesystem.
    Directory,
    /// The running system's own `/`.
    LiveRoot,
    /// A root filesystem archive (tar, tar.gz, tar.zst, or one on standard input).
    Archive,
    /// A VM disk image.
    DiskImage,
    /// A remote server captured over ssh.
    Ssh,
}

impl SourceKind {
    /// The name in labels and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Directory => "directory",
            SourceKind::LiveRoot => "live-root",
            SourceKind::Archive => "archive",
            SourceKind::DiskImage => "disk-image",
            SourceKind::Ssh => "ssh",
        }
    }
}

/// The kind of source SOURCE names, found as [`open`] finds it: from the content, not the
/// name.
pub fn kind_of(path: &Path) -> Result<SourceKind> {
    Ok(find(path)?.0)
}

/// The kind of SOURCE and, for a disk image, its format.
fn find(path: &Path) -> Result<(SourceKind, Option<disk::Format>)> {
    if remote::is_remote(path) {
        return Ok((SourceKind::Ssh, None));
    }
    if path == Path::new("-") {
        return Ok((SourceKind::Archive, None));
    }
    let meta = std::fs::metadata(path).map_err(|e| Error::BadSource {
        path: path.into(),
        reason: match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".into(),
            _ => e.to_string(),
        },
    })?;
    if meta.is_dir() {
        return Ok(if path.canonicalize().at(path)? == Path::new("/") {
            (SourceKind::LiveRoot, None)
        } else {
            (SourceKind::Directory, None)
        });
    }
    if let Some(format) = disk::sniff(path).at(path)? {
        return Ok((SourceKind::DiskImage, Some(format)));
    }
    Ok((SourceKind::Archive, None))
}

/// Opens SOURCE: a directory (the live root `/` included), a root filesystem archive
/// (tar, tar.gz, tar.zst; `-` reads one from standard input), a VM disk image or a
/// remote server (`ssh://`). The kind is found from the
/// content, not the name.
pub fn open(path: &Path, options: &OpenOptions) -> Result<Box<dyn Source>> {
    match find(path)? {
        (SourceKind::Ssh, _) => remote::open(&path.to_string_lossy(), options),
        (SourceKind::Archive, _) if path == Path::new("-") => {
            Ok(Box::new(ArchiveSource::from_stdin()?))
        }
        (kind @ (SourceKind::Directory | SourceKind::LiveRoot), _) => {
            let live = kind == SourceKind::LiveRoot;
            let opts = DirOptions {
                one_filesystem: live,
                skip_virtual: live,
                include_mounts: options
                    .include_mounts
                    .iter()
                    .map(|m| normalize(m.as_os_str().as_encoded_bytes()).unwrap_or_default())
                    .collect(),
                hidden: options
                    .hide
                    .iter()
                    .filter_map(|h| h.strip_prefix(path).ok())
                    .filter_map(|h| normalize(h.as_os_str().as_encoded_bytes()))
                    .filter(|h| !h.is_empty())
                    .collect(),
            };
            Ok(Box::new(DirSource::new(path, opts)?))
        }
        (SourceKind::DiskImage, Some(format)) => disk::open(path, format, &options.allow_backing),
        (SourceKind::Archive | SourceKind::DiskImage, _) => {
            Ok(Box::new(ArchiveSource::open(path)?))
        }
    }
}

/// Keeps the bytes of some extents from a reader of the whole content.
struct ExtentsOf<R> {
    inner: R,
    extents: Vec<Extent>,
    pos: u64,
    next: usize,
}

impl<R> ExtentsOf<R> {
    /// The data extents of the whole content `inner` gives, one after another.
    pub(crate) fn new(inner: R, extents: &[Extent]) -> Self {
        ExtentsOf {
            inner,
            extents: extents.to_vec(),
            pos: 0,
            next: 0,
        }
    }
}

impl<R: Read> Read for ExtentsOf<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let Some(e) = self.extents.get(self.next) else {
                return Ok(0);
            };
            if self.pos < e.offset {
                let skip = e.offset - self.pos;
                let skipped =
                    std::io::copy(&mut (&mut self.inner).take(skip), &mut std::io::sink())?;
                if skipped < skip {
                    return Ok(0);
                }
                self.pos = e.offset;
            }
            let end = e.offset + e.len;
            if self.pos >= end {
                self.next += 1;
                continue;
            }
            let want = buf.len().min((end - self.pos) as usize);
            let n = self.inner.read(&mut buf[..want])?;
            self.pos += n as u64;
            return Ok(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u64) -> Skipped {
        Skipped {
            path: format!("/f{n}"),
            reason: "vanished while reading".into(),
        }
    }

    /// Past the cap entries are counted, not kept; lists joined keep the first ones.
    #[test]
    fn skips_list_the_first_and_count_them_all() {
        let mut a: Skips = (0..Skips::LISTED as u64 + 5).map(item).collect();
        assert_eq!(a.total(), Skips::LISTED as u64 + 5);
        assert_eq!(a.listed().len(), Skips::LISTED);
        assert_eq!(a.listed()[0], item(0));
        let b: Skips = (0..3).map(item).collect();
        a.append(b);
        assert_eq!(a.total(), Skips::LISTED as u64 + 8);
        assert_eq!(a.listed().len(), Skips::LISTED);
        let mut c: Skips = (0..2).map(item).collect();
        c.append(a);
        assert_eq!(c.total(), Skips::LISTED as u64 + 10);
        assert_eq!(c.listed()[2], item(0));
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["skipped_total"], Skips::LISTED as u64 + 10);
        assert_eq!(json["skipped"].as_array().unwrap().len(), Skips::LISTED);
    }
}
