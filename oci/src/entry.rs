//! One entry of a filesystem tree, as every source describes it and a tar layer
//! carries it.

use std::fmt;

/// What kind of filesystem object an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A second name for a file seen earlier in the walk ([`Entry::link`] names it).
    Hardlink,
    Char,
    Block,
    Fifo,
    Socket,
}

impl Kind {
    /// The kind the file-type bits of a POSIX mode (`S_IFMT`) give; `None` for bits
    /// that name no kind.
    pub fn from_mode(mode: u32) -> Option<Kind> {
        Some(match mode & 0o170000 {
            0o100000 => Kind::File,
            0o040000 => Kind::Dir,
            0o120000 => Kind::Symlink,
            0o020000 => Kind::Char,
            0o060000 => Kind::Block,
            0o010000 => Kind::Fifo,
            0o140000 => Kind::Socket,
            _ => return None,
        })
    }
}

/// A byte range of a sparse file that holds data; everything else reads as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
}

/// Metadata of one entry. Paths are raw bytes (names need not be UTF-8), relative to
/// the root, without a leading `/` or `./`; the root itself is the empty path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Size in bytes of a regular file's content (0 for everything else).
    pub size: u64,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Symlink target, or the path a hardlink points to.
    pub link: Vec<u8>,
    /// Device numbers of a char or block device.
    pub major: u32,
    pub minor: u32,
    /// Extended attributes (including `security.capability` and POSIX ACLs), sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// For a file with holes: the extents that hold data.
    pub sparse: Option<Vec<Extent>>,
    /// (device, inode) of a file with more than one link, so the image builder can keep
    /// hardlinks as hardlinks.
    pub inode: Option<(u64, u64)>,
}

impl Entry {
    pub fn new(path: Vec<u8>, kind: Kind) -> Self {
        Entry {
            path,
            kind,
            size: 0,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            link: Vec::new(),
            major: 0,
            minor: 0,
            xattrs: Vec::new(),
            sparse: None,
            inode: None,
        }
    }

    /// The path for people: `/etc/passwd`, lossily decoded where it is not UTF-8.
    pub fn display(&self) -> DisplayPath<'_> {
        DisplayPath(&self.path)
    }

    /// Bytes of content the file holds (its data extents for a sparse file).
    pub fn data_len(&self) -> u64 {
        match &self.sparse {
            Some(extents) => extents.iter().map(|e| e.len).sum(),
            None => self.size,
        }
    }
}

/// Shows a tree path as an absolute path.
pub struct DisplayPath<'a>(pub &'a [u8]);

impl fmt::Display for DisplayPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", String::from_utf8_lossy(self.0))
    }
}

/// The order of a sorted walk: component by component, bytewise, so a directory comes
/// right before its own contents (`a`, `a/b`, `a.b`), as a depth-first walk with sorted
/// children gives. Mapping `/` to a byte below every other makes a plain comparison do it.
pub fn walk_order_key(path: &[u8]) -> Vec<u8> {
    path.iter().map(|&b| walk_byte(b)).collect()
}

/// Compares two paths in the order of a sorted walk, as their [`walk_order_key`]s compare.
pub fn walk_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.iter()
        .map(|&b| walk_byte(b))
        .cmp(b.iter().map(|&b| walk_byte(b)))
}

fn walk_byte(b: u8) -> u8 {
    if b == b'/' {
        0
    } else {
        b
    }
}

/// Normalises a path found in an archive or given by a user to the tree form:
/// strips leading `/` and `./`, drops `.` components and trailing slashes.
/// Returns `None` for a path that climbs out of the root with `..`.
pub fn normalize(path: &[u8]) -> Option<Vec<u8>> {
    let mut out: Vec<&[u8]> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return None,
            name => out.push(name),
        }
    }
    Some(out.join(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_order_puts_children_right_after_their_directory() {
        let mut paths: Vec<&[u8]> = vec![b"a.b", b"a/b", b"a", b"a/b/c", b"a-"];
        paths.sort_by_key(|p| walk_order_key(p));
        assert_eq!(paths, vec![&b"a"[..], b"a/b", b"a/b/c", b"a-", b"a.b"]);
        let mut compared = paths.clone();
        compared.reverse();
        compared.sort_by(|a, b| walk_order(a, b));
        assert_eq!(compared, paths);
    }

    #[test]
    fn normalize_confines_and_refuses() {
        assert_eq!(normalize(b"./etc//passwd/").unwrap(), b"etc/passwd");
        assert_eq!(normalize(b"/abs/path").unwrap(), b"abs/path");
        assert_eq!(normalize(b"./").unwrap(), b"");
        assert!(normalize(b"../etc/passwd").is_none());
        assert!(normalize(b"a/../../b").is_none());
    }
}
