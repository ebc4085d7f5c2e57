//! Parsers of service definitions: systemd unit files ([`systemd`]) and timers
//! ([`calendar`]), SysV init scripts with LSB headers ([`sysv`]), OpenRC scripts
//! ([`openrc`]) and upstart jobs ([`upstart`]).
//!
//! Every parser works on file contents; the loaders that need several files (a systemd unit
//! with its drop-ins, an OpenRC script with its `/etc/conf.d` file, SysV rc links) read them
//! through [`FileSystem`], so the same code runs over a directory on the host
//! ([`HostRoot`]), over an image being converted, or over the live root inside a container.
//! Nothing here changes a file or runs a program.

pub mod calendar;
pub mod openrc;
pub mod shell;
pub mod systemd;
pub mod sysv;
pub mod timespan;
pub mod upstart;

use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Read-only access to a root filesystem, with absolute paths (`/etc/systemd/system`)
/// interpreted inside that root.
pub trait FileSystem {
    /// The whole contents of the file at `path`; symlinks are followed inside the root.
    fn read(&self, path: &str) -> io::Result<Vec<u8>>;
    /// The names (not paths) of the entries of directory `path`, in any order.
    fn read_dir(&self, path: &str) -> io::Result<Vec<String>>;
    /// The target of the symlink at `path`, or `None` when `path` is not a symlink.
    fn read_link(&self, path: &str) -> io::Result<Option<String>>;
    /// Whether anything (file, directory, link) exists at `path`.
    fn exists(&self, path: &str) -> bool {
        self.read_link(path).map(|l| l.is_some()).unwrap_or(false)
            || self.read(path).is_ok()
            || self.read_dir(path).is_ok()
    }
}

/// A root filesystem that is a directory on this machine (`/` for the live system).
///
/// Symlinks, absolute or relative, are resolved inside the root: a link to `/lib/x`
/// in a root at `/tmp/rootfs` means `/tmp/rootfs/lib/x`, and `..` never climbs above the root.
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
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host path of `path` inside the root, with every symlink resolved inside the root.
    pub fn resolve(&self, path: &str) -> io::Result<PathBuf> {
        self.resolve_inner(path, true)
    }

    fn resolve_inner(&self, path: &str, follow_last: bool) -> io::Result<PathBuf> {
        // `done` holds the resolved components below the root; `todo` the ones still to walk.
        let mut done: Vec<String> = Vec::new();
        let mut todo: Vec<String> = components(path);
        todo.reverse();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                done.pop();
                continue;
            }
            done.push(c);
            let last = todo.is_empty();
            if last && !follow_last {
                break;
            }
            let host = self.host(&done);
            if let Ok(target) = std::fs::read_link(&host) {
                links += 1;
                if links > 40 {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links in {path}"
                    )));
                }
                done.pop();
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    done.clear();
                }
                let mut more = components(&target);
                more.reverse();
                todo.extend(more);
            }
        }
        Ok(self.host(&done))
    }

    fn host(&self, parts: &[String]) -> PathBuf {
        let mut p = self.root.clone();
        for c in parts {
            p.push(c);
        }
        p
    }
}

fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_string()),
            _ => None,
        })
        .collect()
}

impl FileSystem for HostRoot {
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.resolve(path)?)
    }

    fn read_dir(&self, path: &str) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(self.resolve(path)?)? {
            names.push(e?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn read_link(&self, path: &str) -> io::Result<Option<String>> {
        let host = self.resolve_inner(path, false)?;
        match std::fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => Ok(Some(
                std::fs::read_link(&host)?.to_string_lossy().into_owned(),
            )),
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn exists(&self, path: &str) -> bool {
        match self.resolve_inner(path, false) {
            Ok(p) => std::fs::symlink_metadata(p).is_ok(),
            Err(_) => false,
        }
    }
}

/// A problem with one service definition: which file, which line (when known), and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The file at fault (a path inside the root, or a unit name).
    pub path: String,
    /// 1-based line number, 0 when the problem is not tied to one line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(path: &str, line: usize, message: impl Into<String>) -> Self {
        ParseError {
            path: path.to_string(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.path, self.line, self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

/// Decodes file contents as text, replacing invalid UTF-8 (old configuration files are
/// often Latin-1 in comments; the keys we read are ASCII).
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
