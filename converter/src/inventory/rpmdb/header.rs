//! An rpm header as the database stores it: a count of index entries and of data bytes,
//! the entries (tag, type, offset, count, all big-endian) and the data they point into.
//! Every offset and count is checked against the data before it is read.

use super::RpmError;

/// No header has more entries than rpm's own limit (HEADER_TAGS_MAX).
const MAX_ENTRIES: u32 = 0xffff;
/// More files than any package has: a count beyond it is a corrupt header.
const MAX_FILES: u32 = 1 << 21;

const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_SIZE: u32 = 1009;
const TAG_ARCH: u32 = 1022;
const TAG_OLDFILENAMES: u32 = 1027;
const TAG_FILEDIGESTS: u32 = 1035;
const TAG_FILEFLAGS: u32 = 1037;
const TAG_DIRINDEXES: u32 = 1116;
const TAG_BASENAMES: u32 = 1117;
const TAG_DIRNAMES: u32 = 1118;
const TAG_FILEDIGESTALGO: u32 = 5011;
const TAG_LONGSIZE: u32 = 5009;

const TYPE_INT32: u32 = 4;
const TYPE_INT64: u32 = 5;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// %config files: the operator's to change.
const FILE_CONFIG: u32 = 1 << 0;
/// %ghost files: owned, but not in the payload, so there is nothing to compare.
const FILE_GHOST: u32 = 1 << 6;

/// The digest algorithms rpm names (its PGPHASHALGO numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    Md5,
    Sha1,
    Sha256,
    /// One this reader does not compute: the file is owned, not checked.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmFile {
    /// Absolute, as the package names it.
    pub path: String,
    /// Hex, as the database holds it; empty for what has no content (directories,
    /// symlinks, ghosts).
    pub digest: String,
    pub config: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmPackage {
    pub name: String,
    /// `[EPOCH:]VERSION-RELEASE`.
    pub version: String,
    pub arch: String,
    /// The bytes its files take once installed (rpm's SIZE, or LONGSIZE past 4 GiB).
    pub installed_size: u64,
    pub algo: Algo,
    pub files: Vec<RpmFile>,
}

struct Entry {
    tag: u32,
    kind: u32,
    offset: u32,
    count: u32,
}

struct Header<'a> {
    entries: Vec<Entry>,
    data: &'a [u8],
}

pub fn parse(blob: &[u8]) -> Result<RpmPackage, RpmError> {
    let header = Header::parse(blob)?;
    let name = header
        .string(TAG_NAME)?
        .ok_or(RpmError::Header("no package name"))?;
    let version = header.string(TAG_VERSION)?.unwrap_or_default();
    let release = header.string(TAG_RELEASE)?.unwrap_or_default();
    let epoch = header.int32s(TAG_EPOCH)?.and_then(|e| e.first().copied());
    let version = match (epoch, release.is_empty()) {
        (Some(e), false) => format!("{e}:{version}-{release}"),
        (Some(e), true) => format!("{e}:{version}"),
        (None, false) => format!("{version}-{release}"),
        (None, true) => version,
    };
    let arch = header.string(TAG_ARCH)?.unwrap_or_default();
    let installed_size = match header.int64(TAG_LONGSIZE)? {
        Some(n) => n,
        None => header
            .int32s(TAG_SIZE)?
            .and_then(|s| s.first().copied())
            .unwrap_or(0) as u64,
    };
    let algo = match header
        .int32s(TAG_FILEDIGESTALGO)?
        .and_then(|a| a.first().copied())
    {
        None | Some(1) => Algo::Md5,
        Some(2) => Algo::Sha1,
        Some(8) => Algo::Sha256,
        Some(_) => Algo::Other,
    };

    // Paths: basenames joined to their directory by index, or (rpm before 4.0) whole.
    let paths: Vec<String> = match header.strings(TAG_BASENAMES)? {
        Some(bases) => {
            let dirs = header.strings(TAG_DIRNAMES)?.unwrap_or_default();
            let index = header.int32s(TAG_DIRINDEXES)?.unwrap_or_default();
            if index.len() != bases.len() {
                return Err(RpmError::Header(
                    "base names and directory indexes differ in count",
                ));
            }
            bases
                .iter()
                .zip(index)
                .map(|(base, i)| {
                    dirs.get(i as usize)
                        .map(|d| format!("{d}{base}"))
                        .ok_or(RpmError::Header("a directory index out of range"))
                })
                .collect::<Result<_, _>>()?
        }
        None => header.strings(TAG_OLDFILENAMES)?.unwrap_or_default(),
    };
    let digests = header.strings(TAG_FILEDIGESTS)?.unwrap_or_default();
    let flags = header.int32s(TAG_FILEFLAGS)?.unwrap_or_default();
    let files = paths
        .into_iter()
        .enumerate()
        .map(|(i, path)| {
            let flag = flags.get(i).copied().unwrap_or(0);
            let digest = if flag & FILE_GHOST != 0 {
                String::new()
            } else {
                digests.get(i).cloned().unwrap_or_default()
            };
            RpmFile {
                path,
                digest,
                config: flag & FILE_CONFIG != 0,
            }
        })
        .collect();
    Ok(RpmPackage {
        name,
        version,
        arch,
        installed_size,
        algo,
        files,
    })
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> Header<'a> {
    fn parse(blob: &'a [u8]) -> Result<Header<'a>, RpmError> {
        let short = RpmError::Header("shorter than its counts say");
        let il = be32(blob, 0).ok_or(short.clone())?;
        let dl = be32(blob, 4).ok_or(short.clone())?;
        if il == 0 || il > MAX_ENTRIES {
            return Err(RpmError::Header("an impossible number of index entries"));
        }
        let start = 8 + il as usize * 16;
        let end = start
            .checked_add(dl as usize)
            .filter(|&e| e <= blob.len())
            .ok_or(short)?;
        let entries = (0..il as usize)
            .map(|i| {
                let at = 8 + i * 16;
                Entry {
                    tag: be32(blob, at).unwrap_or(0),
                    kind: be32(blob, at + 4).unwrap_or(0),
                    offset: be32(blob, at + 8).unwrap_or(u32::MAX),
                    count: be32(blob, at + 12).unwrap_or(0),
                }
            })
            .collect();
        Ok(Header {
            entries,
            data: &blob[start..end],
        })
    }

    fn find(&self, tag: u32) -> Option<&Entry> {
        self.entries.iter().find(|e| e.tag == tag)
    }

    /// The data from the entry's offset on.
    fn at(&self, e: &Entry) -> Result<&'a [u8], RpmError> {
        self.data
            .get(e.offset as usize..)
            .ok_or(RpmError::Header("an offset past the data"))
    }

    fn strings(&self, tag: u32) -> Result<Option<Vec<String>>, RpmError> {
        let Some(e) = self.find(tag) else {
            return Ok(None);
        };
        if !matches!(e.kind, TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING) {
            return Err(RpmError::Header("a string tag of another type"));
        }
        if e.count > MAX_FILES {
            return Err(RpmError::Header("an impossible count"));
        }
        let mut rest = self.at(e)?;
        let mut out = Vec::with_capacity(e.count.min(4096) as usize);
        for _ in 0..e.count {
            let nul = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or(RpmError::Header("a string runs past the data"))?;
            out.push(String::from_utf8_lossy(&rest[..nul]).into_owned());
            rest = &rest[nul + 1..];
        }
        Ok(Some(out))
    }

    fn string(&self, tag: u32) -> Result<Option<String>, RpmError> {
        Ok(self.strings(tag)?.and_then(|s| s.into_iter().next()))
    }

    fn int64(&self, tag: u32) -> Result<Option<u64>, RpmError> {
        let Some(e) = self.find(tag) else {
            return Ok(None);
        };
        if e.kind != TYPE_INT64 {
            return Err(RpmError::Header("an integer tag of another type"));
        }
        let bytes = self
            .at(e)?
            .get(..8)
            .ok_or(RpmError::Header("an integer runs past the data"))?;
        let mut v = [0u8; 8];
        v.copy_from_slice(bytes);
        Ok(Some(u64::from_be_bytes(v)))
    }

    fn int32s(&self, tag: u32) -> Result<Option<Vec<u32>>, RpmError> {
        let Some(e) = self.find(tag) else {
            return Ok(None);
        };
        if e.kind != TYPE_INT32 {
            return Err(RpmError::Header("an integer tag of another type"));
        }
        if e.count > MAX_FILES {
            return Err(RpmError::Header("an impossible count"));
        }
        let bytes = self
            .at(e)?
            .get(..e.count as usize * 4)
            .ok_or(RpmError::Header("integers run past the data"))?;
        Ok(Some(
            bytes
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A header blob from (tag, type, data) entries, as rpm lays it out.
    pub fn blob(entries: &[(u32, u32, u32, Vec<u8>)]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, kind, count, bytes) in entries {
            if *kind == TYPE_INT32 {
                while data.len() % 4 != 0 {
                    data.push(0);
                }
            }
            for v in [*tag, *kind, data.len() as u32, *count] {
                index.extend_from_slice(&v.to_be_bytes());
            }
            data.extend_from_slice(bytes);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend(index);
        out.extend(data);
        out
    }

    pub fn strs(s: &[&str]) -> Vec<u8> {
        s.iter().flat_map(|s| s.bytes().chain([0])).collect()
    }

    pub fn ints(v: &[u32]) -> Vec<u8> {
        v.iter().flat_map(|i| i.to_be_bytes()).collect()
    }

    pub fn package() -> Vec<u8> {
        blob(&[
            (TAG_NAME, TYPE_STRING, 1, strs(&["webapp"])),
            (TAG_VERSION, TYPE_STRING, 1, strs(&["2.4"])),
            (TAG_RELEASE, TYPE_STRING, 1, strs(&["3.el7"])),
            (TAG_EPOCH, TYPE_INT32, 1, ints(&[1])),
            (TAG_ARCH, TYPE_STRING, 1, strs(&["noarch"])),
            (TAG_SIZE, TYPE_INT32, 1, ints(&[123_456])),
            (
                TAG_DIRNAMES,
                TYPE_STRING_ARRAY,
                2,
                strs(&["/etc/webapp/", "/usr/bin/"]),
            ),
            (
                TAG_BASENAMES,
                TYPE_STRING_ARRAY,
                3,
                strs(&["webapp.conf", "webapp", "ghost"]),
            ),
            (TAG_DIRINDEXES, TYPE_INT32, 3, ints(&[0, 1, 1])),
            (
                TAG_FILEFLAGS,
                TYPE_INT32,
                3,
                ints(&[FILE_CONFIG, 0, FILE_GHOST]),
            ),
            (
                TAG_FILEDIGESTS,
                TYPE_STRING_ARRAY,
                3,
                strs(&["0cc175b9c0f1b6a831c399e269772661", "", "ab"]),
            ),
        ])
    }

    #[test]
    fn a_header_gives_name_version_and_files() {
        let p = parse(&package()).unwrap();
        assert_eq!(
            (p.name.as_str(), p.version.as_str(), p.arch.as_str()),
            ("webapp", "1:2.4-3.el7", "noarch")
        );
        assert_eq!(p.algo, Algo::Md5);
        assert_eq!(p.installed_size, 123_456);
        let paths: Vec<&str> = p.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/etc/webapp/webapp.conf",
                "/usr/bin/webapp",
                "/usr/bin/ghost"
            ]
        );
        assert!(p.files[0].config && !p.files[1].config);
        assert_eq!(p.files[2].digest, "", "a ghost has nothing to compare");
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_never_a_panic() {
        let good = package();
        for n in 0..good.len() {
            let _ = parse(&good[..n]);
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            let _ = parse(&bad);
        }
        assert!(parse(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
