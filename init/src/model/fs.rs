//! How the model reads a root filesystem: the [`FileSystem`] trait, the one resolver of
//! paths inside a root ([`resolve_in_root`]), and [`HostRoot`], a root that is a directory
//! on this machine.
//!
//! A backend only answers for paths already resolved (no symlink in them but maybe the
//! last component): what is there ([`FileSystem::entry`]), a file's bytes, a directory's
//! names. Everything else (following links, `..`, loops) is done once, here, so an absolute
//! link in a captured tree points into that tree and never at the machine rehost runs on.

use std::io;
use std::path::PathBuf;

/// Symlinks followed for one path before it counts as a loop (Linux allows 40).
pub const MAX_LINKS: usize = 40;

/// The largest file the model reads whole: service definitions, passwd, inittab are small;
/// anything larger is not one of them.
pub const READ_LIMIT: u64 = 4 << 20;

/// What kind of entry a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file (or a hard link to one).
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed by [`FileSystem::entry`]).
    Symlink,
    /// A device, FIFO or socket: never read.
    Other,
}

/// The metadata the model needs of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// What it is.
    pub kind: FileKind,
    /// Size in bytes (files).
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// A symlink's target, as written.
    pub link: Option<String>,
}

/// One component as the resolver sees it: a directory (walk into it), a symlink (follow it)
/// or anything else (only valid as the last component).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A symlink and its target, as written.
    Link(Vec<u8>),
    /// A file or anything else that is not walked into.
    Other,
}

fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

fn not_found(path: &[u8]) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "/{}: not found",
            String::from_utf8_lossy(path).trim_start_matches('/')
        ),
    )
}

/// Why a path could not be resolved inside its root.
#[derive(Debug)]
pub enum Unresolved {
    /// A component is missing, or is not a directory.
    Missing,
    /// More than [`MAX_LINKS`] symlinks: a loop.
    Loop,
    /// What tells the resolver about a component failed.
    Failed(io::Error),
}

impl Unresolved {
    /// As an I/O error about `path`.
    pub fn into_io(self, path: &str) -> io::Error {
        match self {
            Unresolved::Missing => not_found(path.as_bytes()),
            Unresolved::Loop => io::Error::other(format!(
                "{path}: too many levels of symbolic links (a symlink loop)"
            )),
            Unresolved::Failed(e) => e,
        }
    }
}

/// Resolves `path` inside a root: every symlink (absolute or relative) is followed inside
/// the root, the last one too when `follow_last`, and `..` never climbs above it. `node`
/// tells what a resolved path names (`Ok(None)`: nothing). Returns the resolved path
/// relative to the root, without a leading `/` (empty for the root itself).
///
/// A missing component, one that is not a directory, a loop and a failing `node` are
/// told apart ([`Unresolved`]).
pub fn resolve_in_root(
    path: &[u8],
    follow_last: bool,
    node: &mut dyn FnMut(&[u8]) -> io::Result<Option<Node>>,
) -> Result<Vec<u8>, Unresolved> {
    let mut todo: Vec<Vec<u8>> = components(path).map(<[u8]>::to_vec).collect();
    todo.reverse();
    let mut done: Vec<Vec<u8>> = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        if part == b".." {
            done.pop();
            continue;
        }
        done.push(part);
        let here = done.join(&b'/');
        let last = todo.is_empty();
        match node(&here).map_err(Unresolved::Failed)? {
            None => return Err(Unresolved::Missing),
            Some(Node::Link(target)) if !last || follow_last => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Unresolved::Loop);
                }
                done.pop();
                if target.starts_with(b"/") {
                    done.clear();
                }
                let mut more: Vec<Vec<u8>> = components(&target).map(<[u8]>::to_vec).collect();
                more.reverse();
                todo.extend(more);
            }
            Some(Node::Dir) => {}
            Some(_) if last => {}
            Some(_) => return Err(Unresolved::Missing),
        }
    }
    Ok(done.join(&b'/'))
}

/// Read-only access to a root filesystem, with absolute paths (`/etc/systemd/system`)
/// interpreted inside that root.
///
/// A backend implements [`entry`](Self::entry), [`read_file`](Self::read_file) and
/// [`list`](Self::list) for resolved paths; the other methods resolve first, through
/// [`resolve`](Self::resolve) (a backend may override it to cache or to record what it met).
pub trait FileSystem {
    /// What is at the resolved path `path` itself (a final symlink is not followed);
    /// `Ok(None)` when nothing is.
    fn entry(&self, path: &str) -> io::Result<Option<Stat>>;
    /// The contents of the regular file at the resolved path `path`.
    fn read_file(&self, path: &str) -> io::Result<Vec<u8>>;
    /// The names (not paths) in the directory at the resolved path `path`, in any order.
    fn list(&self, path: &str) -> io::Result<Vec<String>>;

    /// `path` with every symlink resolved inside the root (the last one too when
    /// `follow_last`), as an absolute path.
    fn resolve(&self, path: &str, follow_last: bool) -> io::Result<String> {
        let mut node = |p: &[u8]| -> io::Result<Option<Node>> {
            let p = format!("/{}", String::from_utf8_lossy(p));
            Ok(self.entry(&p)?.map(|s| match s.kind {
                FileKind::Dir => Node::Dir,
                FileKind::Symlink => Node::Link(s.link.unwrap_or_default().into_bytes()),
                _ => Node::Other,
            }))
        };
        let resolved = resolve_in_root(path.as_bytes(), follow_last, &mut node)
            .map_err(|e| e.into_io(path))?;
        Ok(format!("/{}", String::from_utf8_lossy(&resolved)))
    }

    /// Metadata of what `path` names, symlinks followed; `Ok(None)` when nothing is there.
    fn stat(&self, path: &str) -> io::Result<Option<Stat>> {
        match self.resolve(path, true) {
            Ok(p) => self.entry(&p),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Metadata of `path` itself (a final symlink is not followed).
    fn lstat(&self, path: &str) -> io::Result<Option<Stat>> {
        match self.resolve(path, false) {
            Ok(p) => self.entry(&p),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The whole contents of the regular file at `path`, symlinks followed inside the root.
    /// Anything else (a FIFO would block the reader for ever) is an error.
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        let p = self.resolve(path, true)?;
        match self.entry(&p)? {
            Some(s) if s.kind == FileKind::File => self.read_file(&p),
            Some(_) => Err(io::Error::other(format!("{path}: not a regular file"))),
            None => Err(not_found(path.as_bytes())),
        }
    }

    /// The names (not paths) of the entries of directory `path`, in any order.
    fn read_dir(&self, path: &str) -> io::Result<Vec<String>> {
        self.list(&self.resolve(path, true)?)
    }

    /// The target of the symlink at `path`, or `None` when `path` is not a symlink.
    fn read_link(&self, path: &str) -> io::Result<Option<String>> {
        match self.lstat(path)? {
            Some(s) => Ok(s.link.filter(|_| s.kind == FileKind::Symlink)),
            None => Err(not_found(path.as_bytes())),
        }
    }

    /// Whether anything (file, directory, link, even a dangling one) exists at `path`.
    fn exists(&self, path: &str) -> bool {
        matches!(self.lstat(path), Ok(Some(_)))
    }

    /// Whether `path` names a directory (symlinks followed).
    fn is_dir(&self, path: &str) -> bool {
        matches!(self.stat(path), Ok(Some(s)) if s.kind == FileKind::Dir)
    }

    /// Whether `path` names a regular file (symlinks followed).
    fn is_file(&self, path: &str) -> bool {
        matches!(self.stat(path), Ok(Some(s)) if s.kind == FileKind::File)
    }

    /// The text of a small file, invalid UTF-8 replaced; `None` when it cannot be read.
    fn read_text(&self, path: &str) -> Option<String> {
        self.read(path)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }
}

/// A root filesystem that is a directory on this machine (`/` for the live system).
#[derive(Debug, Clone)]
pub struct HostRoot {
    root: PathBuf,
}

impl HostRoot {
    /// A view of the directory `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HostRoot { root: root.into() }
    }

    /// The directory this view reads.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// The host path of a resolved path inside the root.
    pub fn host_path(&self, resolved: &str) -> PathBuf {
        self.root.join(resolved.trim_start_matches('/'))
    }
}

impl FileSystem for HostRoot {
    fn entry(&self, path: &str) -> io::Result<Option<Stat>> {
        use std::os::unix::fs::PermissionsExt;
        let host = self.host_path(path);
        let meta = match std::fs::symlink_metadata(&host) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            // A component that is a file: nothing below it.
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(None),
            Err(e) => return Err(e),
        };
        let t = meta.file_type();
        let kind = if t.is_symlink() {
            FileKind::Symlink
        } else if t.is_dir() {
            FileKind::Dir
        } else if t.is_file() {
            FileKind::File
        } else {
            FileKind::Other
        };
        let link = if kind == FileKind::Symlink {
            Some(std::fs::read_link(&host)?.to_string_lossy().into_owned())
        } else {
            None
        };
        Ok(Some(Stat {
            kind,
            size: meta.len(),
            mode: meta.permissions().mode() & 0o7777,
            link,
        }))
    }

    fn read_file(&self, path: &str) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let mut out = Vec::new();
        std::fs::File::open(self.host_path(path))?
            .take(READ_LIMIT)
            .read_to_end(&mut out)?;
        Ok(out)
    }

    fn list(&self, path: &str) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(self.host_path(path))? {
            names.push(e?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn tree() -> BTreeMap<&'static [u8], Node> {
        BTreeMap::from([
            (&b"etc"[..], Node::Dir),
            (b"lib", Node::Link(b"usr/lib".to_vec())),
            (b"usr", Node::Dir),
            (b"usr/lib", Node::Dir),
            (b"usr/lib/x", Node::Other),
            (b"etc/abs", Node::Link(b"/usr/lib/x".to_vec())),
            (b"etc/up", Node::Link(b"../../../../lib/x".to_vec())),
            (b"etc/loop", Node::Link(b"loop".to_vec())),
        ])
    }

    fn resolve(path: &str, follow: bool) -> Result<String, Unresolved> {
        let t = tree();
        let mut node = |p: &[u8]| Ok(t.get(p).cloned());
        resolve_in_root(path.as_bytes(), follow, &mut node).map(|p| String::from_utf8(p).unwrap())
    }

    #[test]
    fn links_stay_inside_the_root() {
        assert_eq!(resolve("/lib/x", true).unwrap(), "usr/lib/x");
        assert_eq!(resolve("/etc/abs", true).unwrap(), "usr/lib/x");
        assert_eq!(resolve("/etc/abs", false).unwrap(), "etc/abs");
        assert_eq!(resolve("etc/up", true).unwrap(), "usr/lib/x");
        assert_eq!(resolve("/", true).unwrap(), "");
        assert!(matches!(resolve("/nope/x", true), Err(Unresolved::Missing)));
        assert!(matches!(
            resolve("/usr/lib/x/y", true),
            Err(Unresolved::Missing)
        ));
        assert!(matches!(resolve("/etc/loop", true), Err(Unresolved::Loop)));
    }
}
