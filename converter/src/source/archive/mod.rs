//! A root filesystem archive as a source: tar, tar.gz or tar.zst, from a file or a pipe.
//!
//! The archive is read once, as a stream, into an index of its entries (metadata and
//! where the data lies), kept in walk order in a temporary file ([`index`]). A plain tar
//! file is then read in place; a compressed or piped one is spooled, decompressed, to an
//! unnamed temporary file on the way, so the walk can be sorted and files can be read in
//! any order without decompressing twice. Memory holds a few MiB of the index and the
//! hardlinked files' names, whatever the number of entries.
//!
//! Hostile archives are refused: an entry that climbs out of the root with `..`, a
//! hardlink to a path outside it or to nothing, or an entry under a symlink. Absolute
//! names are confined to the root. Nothing is ever extracted, so nothing is written
//! outside the output.

mod index;
mod stream;

pub use stream::{ArchiveStream, Window};

use super::{Skipped, Skips, Source, Visit};
use crate::entry::{normalize, walk_order_key, Entry, Kind};
use crate::error::{Error, IoContext, Result};
use index::{DataAt, Index, IndexWriter, Indexed, Record, Runs};
use oci::tar::EntryType;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A hardlink as the archive gives it, checked and resolved once every entry is indexed.
struct Link {
    /// Its place in the archive.
    seq: u64,
    key: Vec<u8>,
    path: Vec<u8>,
    /// The walk-order key of the path it names, and that path.
    target: Vec<u8>,
    target_path: Vec<u8>,
}

/// What the merge saw of a path that a hardlink names or is: its last record's place
/// and kind, and the places of the records it replaced.
#[derive(Default)]
struct Seen {
    last: Option<(u64, Kind)>,
    earlier: Vec<u64>,
}

/// A change to one indexed entry, made while the index is written again.
#[derive(Default)]
struct Patch {
    /// The whole entry in its place (a hardlink group regrouped).
    replace: Option<Indexed>,
    link: Option<Vec<u8>>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

pub struct ArchiveSource {
    name: PathBuf,
    /// The plain tar data: the archive itself, or the spool of its decompressed stream.
    data: File,
    /// Content of GNU sparse entries, expanded.
    side: Option<File>,
    /// Every entry in walk order.
    index: Index,
    skipped: Skips,
    /// Walk-order key of each file that hardlinks name → its group's number: the file
    /// and its hardlinks carry it as their (device, inode).
    groups: HashMap<Vec<u8>, u64>,
    /// The entry the walk gave last: the image builder opens each file as it gets it.
    recent: Mutex<Option<Record>>,
}

impl ArchiveSource {
    /// The entries the archive holds and does not give (unsupported kinds, ACLs that
    /// cannot be read).
    pub fn skipped(&self) -> Skips {
        self.skipped.clone()
    }

    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).at(path)?;
        let mut magic = [0u8; 512];
        let n = read_full(&mut file, &mut magic).at(path)?;
        file.rewind().at(path)?;
        let compression = detect(path, &magic[..n])?;
        if compression == Compression::None {
            let reader = file.try_clone().at(path)?;
            Self::index(path, reader, false, file)
        } else {
            Self::from_reader(path, Box::new(file), compression, false)
        }
    }

    /// Reads an archive from standard input (`-`).
    pub fn from_stdin() -> Result<Self> {
        let path = Path::new("<stdin>");
        let mut stdin = io::stdin().lock();
        let mut magic = [0u8; 512];
        let n = read_full(&mut stdin, &mut magic).at(path)?;
        let compression = detect(path, &magic[..n])?;
        let head = io::Cursor::new(magic[..n].to_vec());
        // Keep reading through the same lock: taking a second one would wait forever.
        let rest: Box<dyn Read> = Box::new(head.chain(stdin));
        Self::from_reader(path, rest, compression, false)
    }

    /// Reads an archive from any stream (a remote server's), its compression found from
    /// its first bytes; `name` names it in messages.
    pub fn from_stream(name: &Path, mut raw: Box<dyn Read + '_>) -> Result<Self> {
        let mut magic = [0u8; 512];
        let n = read_full(&mut raw, &mut magic).at(name)?;
        let compression = detect(name, &magic[..n])?;
        let head = io::Cursor::new(magic[..n].to_vec());
        Self::from_reader(name, Box::new(head.chain(raw)), compression, false)
    }

    /// Reads the layers of an image as one tree, their blobs given one after another in
    /// one stream (of one compression): a later entry of a path replaces an earlier one.
    /// For images whose layers only add (rehost's layers by package), not for whiteouts.
    pub fn from_layers(name: &Path, mut raw: Box<dyn Read + '_>) -> Result<Self> {
        let mut magic = [0u8; 512];
        let n = read_full(&mut raw, &mut magic).at(name)?;
        let compression = detect(name, &magic[..n])?;
        let head = io::Cursor::new(magic[..n].to_vec());
        Self::from_reader(name, Box::new(head.chain(raw)), compression, true)
    }

    fn from_reader(
        path: &Path,
        raw: Box<dyn Read + '_>,
        compression: Compression,
        concatenated: bool,
    ) -> Result<Self> {
        let decoded: Box<dyn Read> = match compression {
            Compression::Gzip => {
                Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(raw)))
            }
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(raw).at(path)?),
            Compression::None => raw,
        };
        let spool = tempfile::tempfile().at(std::env::temp_dir())?;
        let writer = spool.try_clone().at(std::env::temp_dir())?;
        let tee = Tee {
            inner: decoded,
            copy: io::BufWriter::with_capacity(1 << 20, writer),
        };
        Self::index(path, tee, concatenated, spool)
    }

    fn index<R: Read>(path: &Path, reader: R, concatenated: bool, data: File) -> Result<Self> {
        let mut archive = match concatenated {
            true => oci::tar::Reader::concatenated(reader),
            false => oci::tar::Reader::new(reader),
        };
        let mut indexer = Indexer::new(path);
        while let Some(header) = archive.next_entry().map_err(|e| read_error(path, e))? {
            indexer.add(header, &mut archive)?;
        }
        drain(path, archive)?;
        indexer.finish(data)
    }

    /// Checks every hardlink against the sorted index as the archive gave them (its
    /// target earlier in the archive, a file, not replaced later), points each straight
    /// at its group's first name, makes the first name in walk order the one that holds
    /// the data, and numbers the groups.
    fn resolve_links(
        &mut self,
        links: &[Link],
        seen: &HashMap<Vec<u8>, Seen>,
    ) -> Result<BTreeMap<Vec<u8>, Patch>> {
        let bad = |l: &Link, what: &str| Error::Archive {
            archive: self.name.clone(),
            reason: format!("entry `{}`: {what}", String::from_utf8_lossy(&l.path)),
        };
        // Each kept hardlink's key → the file it names in the end: its key and path.
        let mut resolved: HashMap<Vec<u8>, (Vec<u8>, Vec<u8>)> = HashMap::new();
        let mut patches: BTreeMap<Vec<u8>, Patch> = BTreeMap::new();
        // Data holder's key → the hardlinks (keys) that name it.
        let mut groups: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
        for l in links {
            let target = &seen[&l.target];
            let before = |seq: u64| seq < l.seq;
            let (first, first_path) = match target.last {
                Some((seq, Kind::File)) if before(seq) => (l.target.clone(), l.target_path.clone()),
                Some((seq, Kind::Hardlink)) if before(seq) => match resolved.get(&l.target) {
                    Some(found) => found.clone(),
                    None => {
                        return Err(bad(
                            l,
                            "hardlink to a file not earlier in the archive (refused)",
                        ))
                    }
                },
                Some((seq, _)) if !before(seq) && target.earlier.iter().any(|&s| before(s)) => {
                    return Err(bad(
                        l,
                        "replaces a file that an earlier hardlink names (refused)",
                    ))
                }
                _ => {
                    return Err(bad(
                        l,
                        "hardlink to a file not earlier in the archive (refused)",
                    ))
                }
            };
            // A later entry of the same path replaced this hardlink: nothing to keep.
            if seen[&l.key].last.map(|(seq, _)| seq) != Some(l.seq) {
                continue;
            }
            if first != l.target {
                patches.entry(l.key.clone()).or_default().link = Some(first_path.clone());
            }
            resolved.insert(l.key.clone(), (first.clone(), first_path));
            groups.entry(first).or_default().push(l.key.clone());
        }
        // A file replaced after its hardlinks were checked cannot happen: refused above.
        let mut numbers = HashMap::new();
        for (n, (data_key, mut members)) in groups.into_iter().enumerate() {
            members.sort();
            let first = members[0].clone();
            let holder = if first < data_key {
                // An archive may list a later name first: the first name in walk order
                // holds the data, as a walk of the directory would give them, and the
                // old holder becomes a link to it with its own name.
                let get = |key: &[u8]| -> Result<Indexed> {
                    self.index
                        .get(key)
                        .at(std::env::temp_dir())?
                        .map(|r| r.item)
                        .ok_or_else(|| Error::NotFound(String::from_utf8_lossy(key).into()))
                };
                let mut data = get(&data_key)?;
                let mut old = get(&first)?;
                let first_path = old.entry.path.clone();
                old.entry.path = data.entry.path.clone();
                old.entry.link = first_path.clone();
                data.entry.path = first_path.clone();
                patches.entry(first.clone()).or_default().replace = Some(data);
                patches.entry(data_key.clone()).or_default().replace = Some(old);
                for key in members.iter().skip(1) {
                    patches.entry(key.clone()).or_default().link = Some(first_path.clone());
                }
                first
            } else {
                data_key
            };
            numbers.insert(holder, n as u64);
        }
        self.groups = numbers;
        Ok(patches)
    }

    /// GNU tar stores POSIX ACLs as text; the filesystem (and OCI layers) keep them as
    /// the binary `system.posix_acl_*` xattrs.
    fn apply_acls(
        &mut self,
        acls: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
        patches: &mut BTreeMap<Vec<u8>, Patch>,
    ) -> Result<()> {
        if acls.is_empty() {
            return Ok(());
        }
        let users = self.id_table(b"etc/passwd");
        let groups = self.id_table(b"etc/group");
        for (path, name, text) in acls {
            let Some(value) = crate::image::acl::from_text(&text, &users, &groups) else {
                self.skipped.push(Skipped {
                    path: format!("/{}", String::from_utf8_lossy(&path)),
                    reason: "ACL text that cannot be read (ACL dropped)".into(),
                });
                continue;
            };
            patches
                .entry(walk_order_key(&path))
                .or_default()
                .xattrs
                .push((name, value));
        }
        Ok(())
    }

    /// The index written again with its patches.
    fn rewrite(&self, mut patches: BTreeMap<Vec<u8>, Patch>) -> Result<Index> {
        let tmp = std::env::temp_dir();
        let mut writer = IndexWriter::new().at(&tmp)?;
        for r in self.index.iter() {
            let mut r = r.at(&tmp)?;
            if let Some(p) = patches.remove(&r.key) {
                if let Some(item) = p.replace {
                    r.item = item;
                }
                if let Some(link) = p.link {
                    r.item.entry.link = link;
                }
                let xattrs = &mut r.item.entry.xattrs;
                for (name, value) in p.xattrs {
                    if !xattrs.iter().any(|(n, _)| *n == name) {
                        xattrs.push((name, value));
                    }
                }
                xattrs.sort();
            }
            writer.push(&r).at(&tmp)?;
        }
        writer.finish().at(&tmp)
    }

    /// name → id from the archive's own passwd or group file.
    fn id_table(&self, path: &[u8]) -> Vec<(String, u32)> {
        let Ok(text) = self.read_to_vec(path, 16 << 20) else {
            return Vec::new();
        };
        let text = String::from_utf8_lossy(&text);
        if path.ends_with(b"group") {
            rehost_init::users::parse_group(&text)
                .into_iter()
                .map(|g| (g.name, g.gid))
                .collect()
        } else {
            rehost_init::users::parse_passwd(&text)
                .into_iter()
                .map(|p| (p.name, p.uid))
                .collect()
        }
    }

    /// The entry of `path`, numbered as its hardlink group, and where its data lies.
    fn get(&self, path: &[u8]) -> Result<Indexed> {
        let path =
            normalize(path).ok_or_else(|| Error::NotFound(String::from_utf8_lossy(path).into()))?;
        let key = walk_order_key(&path);
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let found = match recent.as_ref().filter(|r| r.key == key) {
            Some(r) => Some(r.clone()),
            None => {
                drop(recent);
                self.index.get(&key).at(std::env::temp_dir())?
            }
        };
        let mut item = found
            .map(|r| r.item)
            .ok_or_else(|| Error::NotFound(format!("/{}", String::from_utf8_lossy(&path))))?;
        self.number(&key, &mut item.entry);
        Ok(item)
    }

    /// Gives a file that hardlinks name, and those hardlinks, their group's number as
    /// their (device, inode), as a directory walk gives a file with several links: the
    /// image builder keeps only these files' names, not every file's.
    fn number(&self, key: &[u8], entry: &mut Entry) {
        let group = match entry.kind {
            Kind::File => self.groups.get(key),
            Kind::Hardlink => self.groups.get(&walk_order_key(&entry.link)),
            _ => None,
        };
        entry.inode = group.map(|&n| (ARCHIVE_DEV, n));
    }
}

/// An entry as [`Indexer::add`] read it.
pub(crate) struct Added {
    pub entry: Entry,
    data: DataAt,
    /// A file the stream marks as having further names ([`oci::tar::LINKED`]).
    pub linked: bool,
}

/// Reads an archive's entries, one at a time, into its index: [`ArchiveSource::index`]
/// reads them all at once; a remote capture's walk gives each as it arrives
/// ([`ArchiveStream`]).
pub(crate) struct Indexer {
    name: PathBuf,
    runs: Runs,
    links: Vec<Link>,
    seq: u64,
    skipped: Skips,
    /// Content of GNU sparse entries, expanded.
    side: Option<File>,
    side_len: u64,
    /// ACLs as tar's text: they become xattrs once the archive's users are known.
    acls: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
}

impl Indexer {
    fn new(name: &Path) -> Self {
        Indexer {
            name: name.to_path_buf(),
            runs: Runs::default(),
            links: Vec::new(),
            seq: 0,
            skipped: Skips::default(),
            side: None,
            side_len: 0,
            acls: Vec::new(),
        }
    }

    /// Indexes the entry of `header`; none for one that is not given (the root, a kind
    /// rehost does not keep). A sparse file's data is read, expanded, here; any other
    /// entry's data is left for the reader to pass over.
    fn add<R: Read>(
        &mut self,
        header: oci::tar::Header,
        archive: &mut oci::tar::Reader<R>,
    ) -> Result<Option<Added>> {
        let name = self.name.clone();
        let bad = |reason: String| Error::Archive {
            archive: name.clone(),
            reason,
        };
        let shown = String::from_utf8_lossy(&header.path).into_owned();
        let at = |what: &str| bad(format!("entry `{shown}`: {what}"));
        let Some(path) = normalize(&header.path) else {
            return Err(at("climbs out of the root with `..` (refused)"));
        };
        let kind = match header.kind {
            EntryType::File => Kind::File,
            EntryType::Dir => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Hardlink => Kind::Hardlink,
            EntryType::Char => Kind::Char,
            EntryType::Block => Kind::Block,
            EntryType::Fifo => Kind::Fifo,
            EntryType::Other(byte) => {
                self.skipped.push(Skipped {
                    path: format!("/{shown}"),
                    reason: format!("unsupported tar entry type {:?}", byte as char),
                });
                return Ok(None);
            }
        };
        if path.is_empty() {
            return Ok(None); // the root directory itself
        }
        let key = walk_order_key(&path);
        let mut e = Entry::new(path.clone(), kind);
        e.mode = header.mode;
        e.uid = id(header.uid).ok_or_else(|| at("uid out of range"))?;
        e.gid = id(header.gid).ok_or_else(|| at("gid out of range"))?;
        e.mtime = header.mtime;
        e.mtime_nsec = header.mtime_nsec;
        if matches!(kind, Kind::Char | Kind::Block) {
            e.major = header.major;
            e.minor = header.minor;
        }
        let mut linked = false;
        for (key, value) in &header.records {
            if key == oci::tar::LINKED {
                linked = kind == Kind::File;
            } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                e.xattrs.push((name.to_vec(), value.clone()));
            } else if key == b"SCHILY.acl.access" || key == b"SCHILY.acl.default" {
                let name: &[u8] = if key.ends_with(b"access") {
                    b"system.posix_acl_access"
                } else {
                    b"system.posix_acl_default"
                };
                self.acls.push((path.clone(), name.to_vec(), value.clone()));
            }
        }
        e.xattrs.sort();
        let mut data = DataAt {
            offset: header.data_offset,
            side: false,
        };
        match kind {
            Kind::Symlink => e.link = header.link.clone().unwrap_or_default(),
            Kind::Hardlink => {
                let target = header.link.clone().unwrap_or_default();
                let Some(target) = normalize(&target) else {
                    return Err(at("hardlink climbs out of the root with `..` (refused)"));
                };
                if target == path {
                    return Err(at("hardlink to itself (refused)"));
                }
                // Checked against the whole index once it is sorted.
                self.links.push(Link {
                    seq: self.seq,
                    key: key.clone(),
                    path: path.clone(),
                    target: walk_order_key(&target),
                    target_path: target.clone(),
                });
                e.link = target;
            }
            Kind::File => {
                e.size = header.size;
                if let Some(sparse) = &header.sparse {
                    let extents = archive
                        .sparse_extents(&header)
                        .map_err(|err| at(&format!("corrupt sparse file: {err}")))?;
                    let file = match &mut self.side {
                        Some(f) => f,
                        None => self
                            .side
                            .insert(tempfile::tempfile().at(std::env::temp_dir())?),
                    };
                    oci::tar::sparse::expand(
                        &mut archive.data(),
                        &extents,
                        sparse.real_size,
                        file,
                        self.side_len,
                    )
                    .map_err(|err| at(&format!("corrupt sparse file: {err}")))?;
                    data = DataAt {
                        offset: self.side_len,
                        side: true,
                    };
                    self.side_len += sparse.real_size;
                    e.size = sparse.real_size;
                    e.sparse = Some(extents);
                }
            }
            _ => {}
        }
        let added = Added {
            entry: e.clone(),
            data,
            linked,
        };
        let item = Indexed { entry: e, data };
        self.runs
            .push(Record {
                key,
                seq: self.seq,
                item,
            })
            .at(std::env::temp_dir())?;
        self.seq += 1;
        Ok(Some(added))
    }

    /// Sorts and checks the whole index once every entry is read; `data` holds the tar.
    fn finish(self, data: File) -> Result<ArchiveSource> {
        let Indexer {
            name,
            runs,
            links,
            skipped,
            side,
            acls,
            ..
        } = self;
        let path = name.as_path();
        let bad = |reason: String| Error::Archive {
            archive: path.to_path_buf(),
            reason,
        };
        // What the hardlinks need from the merge: the records of the paths they are and
        // they name.
        let mut seen: HashMap<Vec<u8>, Seen> = HashMap::new();
        for l in &links {
            seen.entry(l.key.clone()).or_default();
            seen.entry(l.target.clone()).or_default();
        }
        // An entry under a symlink or a file, at any depth, would be written through it
        // by an unpacker. In walk order an entry's descendants follow it at once, so the
        // last entry that is no directory is the only one to check against.
        let mut last_leaf: Option<(Vec<u8>, Vec<u8>)> = None;
        let mut writer = IndexWriter::new().at(std::env::temp_dir())?;
        let mut under: Option<String> = None;
        runs.merge(|r, earlier| {
            if under.is_some() {
                return Ok(());
            }
            if let Some((leaf, leaf_path)) = &last_leaf {
                if r.key.len() > leaf.len() && r.key.starts_with(leaf) && r.key[leaf.len()] == 0 {
                    under = Some(format!(
                        "entry `{}` lies under `{}`, which is not a directory (refused)",
                        String::from_utf8_lossy(&r.item.entry.path),
                        String::from_utf8_lossy(leaf_path)
                    ));
                    return Ok(());
                }
            }
            if r.item.entry.kind != Kind::Dir {
                last_leaf = Some((r.key.clone(), r.item.entry.path.clone()));
            }
            if let Some(s) = seen.get_mut(&r.key) {
                s.last = Some((r.seq, r.item.entry.kind));
                s.earlier = earlier.to_vec();
            }
            writer.push(&r)
        })
        .at(std::env::temp_dir())?;
        if let Some(reason) = under {
            return Err(bad(reason));
        }
        let mut source = ArchiveSource {
            name: path.to_path_buf(),
            data,
            side,
            index: writer.finish().at(std::env::temp_dir())?,
            skipped,
            groups: HashMap::new(),
            recent: Mutex::new(None),
        };
        let mut patches = source.resolve_links(&links, &seen)?;
        drop(links);
        drop(seen);
        source.apply_acls(acls, &mut patches)?;
        if !patches.is_empty() {
            source.index = source.rewrite(patches)?;
        }
        Ok(source)
    }
}

/// Reads what a tar reader left of its stream (the end's padding), so that the spool
/// holds the whole stream.
fn drain<R: Read>(path: &Path, archive: oci::tar::Reader<R>) -> Result<()> {
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink())
        .map_err(|e| read_error(path, oci::tar::TarError::Io(e)))?;
    Ok(())
}

impl Source for ArchiveSource {
    fn describe(&self) -> String {
        format!("archive {}", self.name.display())
    }

    fn walk(&self, visit: &mut Visit<'_>) -> Result<Skips> {
        for record in self.index.iter() {
            let record = record.at(std::env::temp_dir())?;
            let mut entry = record.item.entry.clone();
            self.number(&record.key, &mut entry);
            *self.recent.lock().unwrap_or_else(|e| e.into_inner()) = Some(record);
            visit(entry)?;
        }
        Ok(self.skipped.clone())
    }

    fn metadata(&self, path: &[u8]) -> Result<Entry> {
        let path =
            normalize(path).ok_or_else(|| Error::NotFound(String::from_utf8_lossy(path).into()))?;
        if path.is_empty() {
            let mut root = Entry::new(Vec::new(), Kind::Dir);
            root.mode = 0o755;
            return Ok(root);
        }
        Ok(self.get(&path)?.entry)
    }

    fn read_dir(&self, path: &[u8]) -> Result<Vec<Vec<u8>>> {
        let path =
            normalize(path).ok_or_else(|| Error::NotFound(String::from_utf8_lossy(path).into()))?;
        let mut prefix = walk_order_key(&path);
        if !prefix.is_empty() {
            prefix.push(0);
        }
        let mut names = Vec::new();
        for record in self.index.iter_from(&prefix) {
            let record = record.at(std::env::temp_dir())?;
            let Some(rest) = record.key.strip_prefix(prefix.as_slice()) else {
                break;
            };
            if !rest.is_empty() && !rest.contains(&0) {
                let path = &record.item.entry.path;
                names.push(path[path.len() - rest.len()..].to_vec());
            }
        }
        Ok(names)
    }

    fn open(&self, path: &[u8]) -> Result<Box<dyn Read + Send + '_>> {
        let mut item = self.get(path)?;
        if item.entry.kind == Kind::Hardlink {
            item = self.get(&item.entry.link.clone())?;
        }
        if item.entry.kind != Kind::File {
            return Err(Error::NotFound(format!(
                "{} (not a regular file)",
                item.entry.display()
            )));
        }
        let file = match (item.data.side, &self.side) {
            (true, Some(side)) => side,
            _ => &self.data,
        };
        Ok(Box::new(RangeReader {
            file,
            pos: item.data.offset,
            end: item.data.offset + item.entry.size,
        }))
    }
}

/// The device number the hardlink groups of an archive are given: no filesystem's.
const ARCHIVE_DEV: u64 = u64::MAX;

/// Reads a byte range of a file with positioned reads, so readers can share the file
/// (borrowed, or shared by an `Arc`).
struct RangeReader<F> {
    file: F,
    pos: u64,
    end: u64,
}

impl<F: std::ops::Deref<Target = File>> Read for RangeReader<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive data ends early",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Copies everything read through it to a file: the spool of a compressed archive.
struct Tee<R, W: Write> {
    inner: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let spool = |e: io::Error| io::Error::new(e.kind(), SpoolError(e));
        self.copy.write_all(&buf[..n]).map_err(spool)?;
        if n == 0 {
            self.copy.flush().map_err(spool)?;
        }
        Ok(n)
    }
}

impl<R, W: Write> Drop for Tee<R, W> {
    fn drop(&mut self) {
        let _ = self.copy.flush();
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn detect(path: &Path, head: &[u8]) -> Result<Compression> {
    let unknown = |reason: &str| Error::BadSource {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(Compression::Gzip);
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Ok(Compression::Zstd);
    }
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) || head.starts_with(b"BZh") {
        return Err(unknown("xz and bzip2 archives are not supported: decompress it first, or use tar.gz or tar.zst"));
    }
    if head.len() == 512 && (&head[257..262] == b"ustar" || oci::tar::read::checksum_ok(head)) {
        return Ok(Compression::None);
    }
    if head.is_empty() {
        return Err(unknown(
            "empty file: not a directory or a root filesystem archive",
        ));
    }
    Err(unknown(
        "not a directory or a root filesystem archive (tar, tar.gz, tar.zst)",
    ))
}

/// A uid or gid as the image keeps it (32 bits).
fn id(n: u64) -> Option<u32> {
    u32::try_from(n).ok()
}

/// An error while reading the archive, said for what it is: the archive's fault, the
/// spool's (a full disk), or a compression the decoder refuses.
fn read_error(archive: &Path, e: oci::tar::TarError) -> Error {
    if let oci::tar::TarError::Io(io) = &e {
        if let Some(spool) = io.get_ref().and_then(|i| i.downcast_ref::<SpoolError>()) {
            return Error::BadSource {
                path: archive.to_path_buf(),
                reason: format!(
                    "cannot spool the decompressed archive to {}: {} (set TMPDIR to a \
                     directory with more space, or give an uncompressed tar file)",
                    std::env::temp_dir().display(),
                    spool.0
                ),
            };
        }
        let text = io.to_string();
        if text.contains("too much memory") || text.contains("Frame requires") {
            return Error::Archive {
                archive: archive.to_path_buf(),
                reason: "zstd window larger than 128 MiB (made with `zstd --long=28` or \
                         more): recompress with `--long=27` or less, or decompress it first"
                    .into(),
            };
        }
    }
    Error::Archive {
        archive: archive.to_path_buf(),
        reason: format!("corrupt or truncated: {e}"),
    }
}

/// A failed write to the spool of a compressed archive.
#[derive(Debug)]
struct SpoolError(io::Error);

impl std::fmt::Display for SpoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SpoolError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Extent;
    use oci::tar::TarWriter;

    #[test]
    fn a_pax_sparse_file_reads_back_with_its_holes() {
        let mut dir = Entry::new(b"var".to_vec(), Kind::Dir);
        dir.mode = 0o755;
        let mut file = Entry::new(b"var/disk.img".to_vec(), Kind::File);
        file.mode = 0o644;
        file.size = 3 * 4096;
        let extents = vec![
            Extent {
                offset: 0,
                len: 100,
            },
            Extent {
                offset: 8192,
                len: 4096,
            },
        ];
        file.sparse = Some(extents.clone());
        let data: Vec<u8> = (0..4196u32).map(|i| (i % 251) as u8 + 1).collect();
        let mut w = TarWriter::new(Vec::new());
        w.append(&dir, None).unwrap();
        w.append(&file, Some(&mut &data[..])).unwrap();
        let tar = w.finish().unwrap();
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), &tar).unwrap();

        let source = ArchiveSource::open(tmp.path()).unwrap();
        let got = source.metadata(b"var/disk.img").unwrap();
        assert_eq!(got.size, 3 * 4096);
        assert_eq!(got.sparse, Some(extents));
        let mut content = Vec::new();
        source
            .open(b"var/disk.img")
            .unwrap()
            .read_to_end(&mut content)
            .unwrap();
        let mut want = vec![0u8; 3 * 4096];
        want[..100].copy_from_slice(&data[..100]);
        want[8192..].copy_from_slice(&data[100..]);
        assert!(content == want, "the content differs");
    }

    /// Raw tar entries, exactly as a hostile archive writes them.
    fn raw(entries: &[(&str, u8, &str, &[u8])]) -> tempfile::NamedTempFile {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_entry_type(tar::EntryType::new(*kind));
            h.set_mode(0o755);
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), b.into_inner().unwrap()).unwrap();
        tmp
    }

    fn refused(tmp: &tempfile::NamedTempFile) -> String {
        match ArchiveSource::open(tmp.path()) {
            Ok(_) => panic!("the archive was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn an_entry_two_levels_under_a_symlink_is_refused() {
        let tmp = raw(&[
            ("l", b'2', "/etc", b""),
            ("l/cron.d/evil", b'0', "", b"* * * * * root sh"),
        ]);
        let e = refused(&tmp);
        assert!(e.contains("`l/cron.d/evil` lies under `l`"), "{e}");
        // A directory of the same name elsewhere is fine.
        let tmp = raw(&[("l", b'2', "/etc", b""), ("l2/cron.d/ok", b'0', "", b"x")]);
        ArchiveSource::open(tmp.path()).unwrap();
    }

    #[test]
    fn a_hardlink_to_itself_is_refused_without_a_panic() {
        let tmp = raw(&[("a", b'0', "", b"data"), ("a", b'1', "a", b"")]);
        assert!(refused(&tmp).contains("hardlink to itself"));
        // A later entry that replaces a hardlink's target.
        let tmp = raw(&[
            ("a", b'0', "", b"data"),
            ("b", b'1', "a", b""),
            ("a", b'2', "/etc/shadow", b""),
        ]);
        assert!(refused(&tmp).contains("earlier hardlink"));
    }

    /// GNU tar writes files of 8 GiB and more as ustar size 0 plus a PAX size: the
    /// content must stay the file's, not become entries (here a setuid file).
    #[test]
    fn the_pax_size_record_gives_the_files_content() {
        let mut inner = tar::Header::new_gnu();
        inner.set_path("etc/injected").unwrap();
        inner.set_mode(0o4755);
        inner.set_size(0);
        inner.set_cksum();
        let mut content = inner.as_bytes().to_vec();
        content.extend_from_slice(&[0u8; 1024]);
        let record = format!("size={}\n", content.len());
        let record = format!("{} {record}", record.len() + 3);
        let mut x = tar::Header::new_ustar();
        x.set_path("PaxHeaders/big").unwrap();
        x.set_entry_type(tar::EntryType::XHeader);
        x.set_size(record.len() as u64);
        x.set_cksum();
        let mut bytes = x.as_bytes().to_vec();
        bytes.extend_from_slice(record.as_bytes());
        bytes.resize(1024, 0);
        let mut h = tar::Header::new_ustar();
        h.set_path("big").unwrap();
        h.set_size(0);
        h.set_mode(0o644);
        h.set_cksum();
        bytes.extend_from_slice(h.as_bytes());
        bytes.extend_from_slice(&content);
        bytes.extend_from_slice(&[0u8; 1024]);
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), &bytes).unwrap();

        let source = ArchiveSource::open(tmp.path()).unwrap();
        assert!(source.metadata(b"etc/injected").is_err());
        let mut got = Vec::new();
        source.open(b"big").unwrap().read_to_end(&mut got).unwrap();
        assert!(got == content);
    }
}
