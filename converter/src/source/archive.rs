//! A root filesystem archive as a source: tar, tar.gz or tar.zst, from a file or a pipe.
//!
//! The archive is read once, as a stream, into an index of its entries (metadata and
//! where the data lies). A plain tar file is then read in place; a compressed or piped
//! one is spooled, decompressed, to an unnamed temporary file on the way, so the walk
//! can be sorted and files can be read in any order without decompressing twice.
//! Memory holds only the index.
//!
//! Hostile archives are refused: an entry that climbs out of the root with `..`, a
//! hardlink to a path outside it or to nothing, or an entry under a symlink. Absolute
//! names are confined to the root. Nothing is ever extracted, so nothing is written
//! outside the output.

use super::{Skipped, Source, Visit};
use crate::entry::{normalize, walk_order_key, Entry, Kind};
use crate::error::{Error, IoContext, Result};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Where an entry's data lies in the (decompressed) archive.
#[derive(Debug, Clone, Copy)]
struct DataAt {
    offset: u64,
    /// In the side file (expanded GNU sparse entries) instead of the archive data.
    side: bool,
}

struct Indexed {
    entry: Entry,
    data: DataAt,
}

pub struct ArchiveSource {
    name: PathBuf,
    /// The plain tar data: the archive itself, or the spool of its decompressed stream.
    data: File,
    /// Content of GNU sparse entries, expanded.
    side: Option<File>,
    /// Every entry by walk-order key.
    index: BTreeMap<Vec<u8>, Indexed>,
    skipped: Vec<Skipped>,
}

impl ArchiveSource {
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).at(path)?;
        let mut magic = [0u8; 512];
        let n = read_full(&mut file, &mut magic).at(path)?;
        file.rewind().at(path)?;
        let compression = detect(path, &magic[..n])?;
        if compression == Compression::None {
            let reader = file.try_clone().at(path)?;
            Self::index(path, reader, None, file)
        } else {
            Self::from_reader(path, Box::new(file), compression)
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
        Self::from_reader(path, rest, compression)
    }

    /// Reads an archive from any stream (a remote server's), its compression found from
    /// its first bytes; `name` names it in messages.
    pub(crate) fn from_stream(name: &Path, mut raw: Box<dyn Read + '_>) -> Result<Self> {
        let mut magic = [0u8; 512];
        let n = read_full(&mut raw, &mut magic).at(name)?;
        let compression = detect(name, &magic[..n])?;
        let head = io::Cursor::new(magic[..n].to_vec());
        Self::from_reader(name, Box::new(head.chain(raw)), compression)
    }

    fn from_reader(path: &Path, raw: Box<dyn Read + '_>, compression: Compression) -> Result<Self> {
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
        Self::index(path, tee, Some(()), spool)
    }

    fn index<R: Read>(path: &Path, reader: R, _spooled: Option<()>, data: File) -> Result<Self> {
        let bad = |reason: String| Error::Archive {
            archive: path.to_path_buf(),
            reason,
        };
        let mut archive = tar::Archive::new(reader);
        let mut index = BTreeMap::new();
        let mut skipped = Vec::new();
        let mut side: Option<File> = None;
        let mut side_len = 0u64;
        let mut acls = Vec::new();
        let entries = archive
            .entries()
            .map_err(|e| bad(format!("not a readable tar archive: {e}")))?
            // Raw: PAX and GNU long-name headers come to us as entries, so their records
            // are parsed by their length (values may hold newlines: ACL text, binary xattrs).
            .raw(true);
        let mut pax: Vec<PaxRecord> = Vec::new();
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        for (number, item) in entries.enumerate() {
            let mut item = item
                .map_err(|e| bad(format!("corrupt or truncated at entry {}: {e}", number + 1)))?;
            let header = item.header().clone();
            let extension = matches!(
                header.entry_type(),
                tar::EntryType::XHeader | tar::EntryType::GNULongName | tar::EntryType::GNULongLink
            );
            if extension {
                let mut data = Vec::new();
                (&mut item)
                    .take(MAX_EXTENSION)
                    .read_to_end(&mut data)
                    .map_err(|e| {
                        bad(format!("corrupt or truncated at entry {}: {e}", number + 1))
                    })?;
                if data.len() as u64 >= MAX_EXTENSION {
                    return Err(bad(format!(
                        "entry {}: extended header larger than {MAX_EXTENSION} bytes (refused)",
                        number + 1
                    )));
                }
                match header.entry_type() {
                    tar::EntryType::XHeader => {
                        pax.extend(parse_pax_records(&data).map_err(|why| {
                            bad(format!("entry {}: malformed PAX header: {why}", number + 1))
                        })?)
                    }
                    tar::EntryType::GNULongName => long_name = Some(trim_nul(data)),
                    _ => long_link = Some(trim_nul(data)),
                }
                continue;
            }
            let records = std::mem::take(&mut pax);
            let record = |key: &[u8]| {
                records
                    .iter()
                    .rev()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            };
            // A PAX 1.0 sparse file (GNU tar's, and rehost's own layers): its real name
            // and size are in records, its data starts with the map of its extents.
            let sparse = oci::tar::sparse::pax10(&record).map_err(|e| {
                bad(format!(
                    "entry `{}`: {e}",
                    String::from_utf8_lossy(&item.path_bytes())
                ))
            })?;
            let raw_path = sparse
                .as_ref()
                .map(|s| s.name.clone())
                .or(record(b"path"))
                .or(long_name.take())
                .unwrap_or_else(|| item.path_bytes().into_owned());
            let raw_link = record(b"linkpath")
                .or(long_link.take())
                .or_else(|| item.link_name_bytes().map(|l| l.into_owned()));
            let shown = String::from_utf8_lossy(&raw_path).into_owned();
            let at = |what: &str| bad(format!("entry `{shown}`: {what}"));
            let Some(path) = normalize(&raw_path) else {
                return Err(at("climbs out of the root with `..` (refused)"));
            };
            let kind = match header.entry_type() {
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => Kind::File,
                tar::EntryType::Directory => Kind::Dir,
                tar::EntryType::Symlink => Kind::Symlink,
                tar::EntryType::Link => Kind::Hardlink,
                tar::EntryType::Char => Kind::Char,
                tar::EntryType::Block => Kind::Block,
                tar::EntryType::Fifo => Kind::Fifo,
                tar::EntryType::XGlobalHeader => continue,
                other => {
                    skipped.push(Skipped {
                        path: format!("/{shown}"),
                        reason: format!("unsupported tar entry type {:?}", other.as_byte() as char),
                    });
                    continue;
                }
            };
            if path.is_empty() {
                continue; // the root directory itself
            }
            let mut e = Entry::new(path.clone(), kind);
            e.mode = header.mode().map_err(|err| at(&err.to_string()))? & 0o7777;
            e.uid = header.uid().map_err(|err| at(&err.to_string()))? as u32;
            e.gid = header.gid().map_err(|err| at(&err.to_string()))? as u32;
            e.mtime = header.mtime().map_err(|err| at(&err.to_string()))? as i64;
            if matches!(kind, Kind::Char | Kind::Block) {
                e.major = header.device_major().ok().flatten().unwrap_or(0);
                e.minor = header.device_minor().ok().flatten().unwrap_or(0);
            }
            for (key, value) in &records {
                let number = |v: &[u8]| String::from_utf8_lossy(v).trim().parse::<u32>().ok();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    e.xattrs.push((name.to_vec(), value.clone()));
                } else if key == b"SCHILY.acl.access" || key == b"SCHILY.acl.default" {
                    let name: &[u8] = if key.ends_with(b"access") {
                        b"system.posix_acl_access"
                    } else {
                        b"system.posix_acl_default"
                    };
                    acls.push((path.clone(), name.to_vec(), value.clone()));
                } else if key == b"mtime" {
                    let (secs, nsec) = parse_pax_time(value);
                    e.mtime = secs;
                    e.mtime_nsec = nsec;
                } else if key == b"uid" {
                    e.uid = number(value).ok_or_else(|| at("bad PAX uid"))?;
                } else if key == b"gid" {
                    e.gid = number(value).ok_or_else(|| at("bad PAX gid"))?;
                }
            }
            e.xattrs.sort();
            let mut data = DataAt {
                offset: item.raw_file_position(),
                side: false,
            };
            match kind {
                Kind::Symlink | Kind::Hardlink => {
                    let target = raw_link
                        .clone()
                        .ok_or_else(|| at("link without a target"))?;
                    if kind == Kind::Hardlink {
                        let Some(target) = normalize(&target) else {
                            return Err(at("hardlink climbs out of the root with `..` (refused)"));
                        };
                        match index.get(&walk_order_key(&target)) {
                            Some(Indexed { entry: t, .. })
                                if matches!(t.kind, Kind::File | Kind::Hardlink) =>
                            {
                                // Point straight at the first name, as the walk will have it.
                                e.link = if t.kind == Kind::Hardlink {
                                    t.link.clone()
                                } else {
                                    target
                                };
                            }
                            _ => {
                                return Err(at(
                                    "hardlink to a file not earlier in the archive (refused)",
                                ))
                            }
                        }
                    } else {
                        e.link = target;
                    }
                }
                Kind::File => {
                    e.size = item.size();
                    if let Some(real) = sparse.as_ref().map(|s| s.real_size) {
                        let entry_len = item.size();
                        let file = match &mut side {
                            Some(f) => f,
                            None => side.insert(tempfile::tempfile().at(std::env::temp_dir())?),
                        };
                        let extents = expand_sparse(&mut item, real, entry_len, file, side_len)
                            .map_err(|why| at(&format!("corrupt sparse file: {why}")))?;
                        data = DataAt {
                            offset: side_len,
                            side: true,
                        };
                        side_len += real;
                        e.size = real;
                        e.sparse = Some(extents);
                    } else if header.entry_type() == tar::EntryType::GNUSparse {
                        let file = match &mut side {
                            Some(f) => f,
                            None => side.insert(tempfile::tempfile().at(std::env::temp_dir())?),
                        };
                        let copied = io::copy(&mut item, file)
                            .map_err(|err| at(&format!("corrupt sparse data: {err}")))?;
                        data = DataAt {
                            offset: side_len,
                            side: true,
                        };
                        side_len += copied;
                        e.size = copied;
                    }
                }
                _ => {}
            }
            index.insert(walk_order_key(&path), Indexed { entry: e, data });
        }
        // The spool must hold the whole stream: read what the tar reader left (padding).
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink())
            .map_err(|e| bad(format!("corrupt or truncated at its end: {e}")))?;
        drop(rest);

        // An entry under a symlink or a file would be written through it by an unpacker.
        for (key, item) in &index {
            if let Some(cut) = key.iter().rposition(|&b| b == 0) {
                if let Some(parent) = index.get(&key[..cut]) {
                    if parent.entry.kind != Kind::Dir {
                        return Err(bad(format!(
                            "entry `{}` lies under `{}`, which is not a directory (refused)",
                            String::from_utf8_lossy(&item.entry.path),
                            String::from_utf8_lossy(&parent.entry.path)
                        )));
                    }
                }
            }
        }
        regroup_hardlinks(&mut index);
        let mut source = ArchiveSource {
            name: path.to_path_buf(),
            data,
            side,
            index,
            skipped,
        };
        source.apply_acls(acls);
        Ok(source)
    }

    /// GNU tar stores POSIX ACLs as text; the filesystem (and OCI layers) keep them as
    /// the binary `system.posix_acl_*` xattrs.
    fn apply_acls(&mut self, acls: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>) {
        if acls.is_empty() {
            return;
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
            if let Some(item) = self.index.get_mut(&walk_order_key(&path)) {
                if !item.entry.xattrs.iter().any(|(n, _)| *n == name) {
                    item.entry.xattrs.push((name, value));
                    item.entry.xattrs.sort();
                }
            }
        }
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

    fn get(&self, path: &[u8]) -> Result<&Indexed> {
        let path =
            normalize(path).ok_or_else(|| Error::NotFound(String::from_utf8_lossy(path).into()))?;
        self.index
            .get(&walk_order_key(&path))
            .ok_or_else(|| Error::NotFound(format!("/{}", String::from_utf8_lossy(&path))))
    }
}

impl Source for ArchiveSource {
    fn describe(&self) -> String {
        format!("archive {}", self.name.display())
    }

    fn walk(&self, visit: &mut Visit<'_>) -> Result<Vec<Skipped>> {
        for item in self.index.values() {
            visit(item.entry.clone())?;
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
        Ok(self.get(&path)?.entry.clone())
    }

    fn read_dir(&self, path: &[u8]) -> Result<Vec<Vec<u8>>> {
        let path =
            normalize(path).ok_or_else(|| Error::NotFound(String::from_utf8_lossy(path).into()))?;
        let mut prefix = walk_order_key(&path);
        if !prefix.is_empty() {
            prefix.push(0);
        }
        let mut names = Vec::new();
        for (key, item) in self.index.range(prefix.clone()..) {
            let Some(rest) = key.strip_prefix(prefix.as_slice()) else {
                break;
            };
            if !rest.contains(&0) {
                names.push(item.entry.path[item.entry.path.len() - rest.len()..].to_vec());
            }
        }
        Ok(names)
    }

    fn open(&self, path: &[u8]) -> Result<Box<dyn Read + Send + '_>> {
        let mut item = self.get(path)?;
        if item.entry.kind == Kind::Hardlink {
            item = self.get(&item.entry.link)?;
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

/// Makes the first name of each hardlinked file in walk order the one that holds the
/// data, and the others links to it, as a walk of the directory would give them: an
/// archive may list a later name first.
fn regroup_hardlinks(index: &mut BTreeMap<Vec<u8>, Indexed>) {
    let mut groups: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
    for (key, item) in index.iter() {
        if item.entry.kind == Kind::Hardlink {
            groups
                .entry(walk_order_key(&item.entry.link))
                .or_default()
                .push(key.clone());
        }
    }
    for (target_key, links) in groups {
        let first = links.iter().min().expect("a group has links");
        if *first > target_key {
            continue; // the data already comes first
        }
        let first = first.clone();
        let Some(mut data) = index.remove(&target_key) else {
            continue;
        };
        let link_entry = index.remove(&first).expect("link is indexed");
        let first_path = link_entry.entry.path.clone();
        // The old holder of the data becomes a link with its own name.
        let mut old = link_entry;
        old.entry.path = data.entry.path.clone();
        old.entry.link = first_path.clone();
        data.entry.path = first_path.clone();
        index.insert(first.clone(), data);
        index.insert(target_key, old);
        for key in links.iter().filter(|k| **k != first) {
            if let Some(item) = index.get_mut(key) {
                item.entry.link = first_path.clone();
            }
        }
    }
}

/// Reads a byte range of a file with positioned reads, so readers can share the file.
struct RangeReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for RangeReader<'_> {
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
        self.copy.write_all(&buf[..n])?;
        if n == 0 {
            self.copy.flush()?;
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
    if head.len() == 512 && (&head[257..262] == b"ustar" || tar_checksum_ok(head)) {
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

/// An old (v7) tar header has no magic; its checksum tells it apart from other data.
fn tar_checksum_ok(h: &[u8]) -> bool {
    let field = String::from_utf8_lossy(&h[148..156]);
    let Ok(want) = u32::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
    else {
        return false;
    };
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as u32
            }
        })
        .sum();
    sum == want
}

/// One PAX record: key and value, as bytes.
type PaxRecord = (Vec<u8>, Vec<u8>);

/// The most an extended header (PAX records, a GNU long name) may hold.
const MAX_EXTENSION: u64 = 1 << 20;

/// Reads a PAX 1.0 sparse file's data (its map, then its data extents one after
/// another) and writes the content at `base` of `side`, holes left as holes; gives the
/// data extents. Everything is checked against the real size and the entry's length.
fn expand_sparse(
    item: &mut impl Read,
    real_size: u64,
    entry_len: u64,
    side: &File,
    base: u64,
) -> std::result::Result<Vec<crate::entry::Extent>, String> {
    let extents =
        oci::tar::sparse::read_map(item, real_size, entry_len).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1 << 16];
    for x in &extents {
        let mut left = x.len;
        let mut at = base + x.offset;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = item.read(&mut buf[..want]).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the data is cut short".into());
            }
            side.write_all_at(&buf[..n], at)
                .map_err(|e| e.to_string())?;
            at += n as u64;
            left -= n as u64;
        }
    }
    side.set_len(
        side.metadata()
            .map_err(|e| e.to_string())?
            .len()
            .max(base + real_size),
    )
    .map_err(|e| e.to_string())?;
    // The next expanded entry is appended after this one.
    let mut cursor = side;
    cursor
        .seek(io::SeekFrom::Start(base + real_size))
        .map_err(|e| e.to_string())?;
    Ok(extents)
}

/// PAX records: "LEN key=value\n", where LEN counts the whole record, so a value may
/// hold any byte, newlines included.
fn parse_pax_records(mut data: &[u8]) -> std::result::Result<Vec<PaxRecord>, String> {
    let mut out = Vec::new();
    while !data.is_empty() && data[0] != 0 {
        let space = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or("record without a length")?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("record length is not a number")?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(format!("record length {len} does not fit"));
        }
        let body = &data[space + 1..len - 1];
        let eq = body
            .iter()
            .position(|&b| b == b'=')
            .ok_or("record without `=`")?;
        out.push((body[..eq].to_vec(), body[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Ok(out)
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// A PAX time: seconds with an optional decimal fraction.
fn parse_pax_time(v: &[u8]) -> (i64, u32) {
    let s = String::from_utf8_lossy(v);
    let (secs, frac) = s.split_once('.').unwrap_or((&s, ""));
    let secs = secs.parse().unwrap_or(0);
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    (secs, digits.parse().unwrap_or(0))
}

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
}
