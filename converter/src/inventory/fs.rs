//! Reading a source for the inventory: every path is resolved inside the source's own
//! root (an absolute symlink in a server's tree points into that tree, never at the
//! machine rehost runs on), and everything that cannot be read becomes a finding
//! instead of an error, so one bad file never hides the rest of the inventory.

use crate::entry::{Entry, Kind};
use crate::error::Error;
use crate::source::Source;
use rehost_init::model::fs::{self as model_fs, resolve_in_root, FileKind, FileSystem, Node, Stat};
use serde::Serialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};

/// The largest configuration file the inventory reads whole.
pub const TEXT_LIMIT: u64 = 4 << 20;

/// Something the inventory could not read or understand, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub path: String,
    pub problem: String,
}

/// The source, seen through the resolver, with the findings met so far.
pub struct Root<'a> {
    pub source: &'a dyn Source,
    findings: RefCell<Vec<Finding>>,
    /// Metadata already asked for: resolving paths asks for the same directories over
    /// and over (`etc`, `etc/systemd`, …), and each ask costs system calls.
    metadata: RefCell<HashMap<Vec<u8>, Meta>>,
}

#[derive(Clone)]
enum Meta {
    Found(Entry),
    Missing,
    Problem(String),
}

/// Why a path could not be resolved.
enum Unresolved {
    Missing,
    Problem(String),
}

impl<'a> Root<'a> {
    pub fn new(source: &'a dyn Source) -> Self {
        Root {
            source,
            findings: RefCell::new(Vec::new()),
            metadata: RefCell::new(HashMap::new()),
        }
    }

    /// The source this root reads.
    pub fn source(&self) -> &'a dyn Source {
        self.source
    }

    /// Records a finding about `path` (an absolute path for people).
    pub fn finding(&self, path: impl Into<String>, problem: impl Into<String>) {
        let finding = Finding {
            path: path.into(),
            problem: problem.into(),
        };
        let mut all = self.findings.borrow_mut();
        if !all.contains(&finding) {
            all.push(finding);
        }
    }

    pub fn take_findings(&self) -> Vec<Finding> {
        std::mem::take(&mut self.findings.borrow_mut())
    }

    /// The tree path `path` names, every symlink followed inside the source (the final
    /// one too when `follow_last`). `None` when it does not exist; a loop or an
    /// unreadable component is recorded as a finding and also gives `None`.
    pub fn resolve(&self, path: impl AsRef<[u8]>, follow_last: bool) -> Option<Vec<u8>> {
        let path = path.as_ref();
        match self.try_resolve(path, follow_last) {
            Ok(p) => Some(p),
            Err(Unresolved::Missing) => None,
            Err(Unresolved::Problem(p)) => {
                self.finding(show(path), p);
                None
            }
        }
    }

    fn try_resolve(&self, path: &[u8], follow_last: bool) -> Result<Vec<u8>, Unresolved> {
        let mut node = |p: &[u8]| -> std::io::Result<Option<Node>> {
            match self.meta(p) {
                Meta::Found(e) => Ok(Some(match e.kind {
                    Kind::Dir => Node::Dir,
                    Kind::Symlink => Node::Link(e.link),
                    _ => Node::Other,
                })),
                Meta::Missing => Ok(None),
                Meta::Problem(p) => Err(std::io::Error::other(p)),
            }
        };
        resolve_in_root(path, follow_last, &mut node).map_err(|e| match e {
            model_fs::Unresolved::Missing => Unresolved::Missing,
            model_fs::Unresolved::Loop => {
                Unresolved::Problem("too many levels of symbolic links (a symlink loop)".into())
            }
            model_fs::Unresolved::Failed(e) => Unresolved::Problem(e.to_string()),
        })
    }

    /// Metadata of a tree path (no symlink followed), asked of the source once.
    fn meta(&self, path: &[u8]) -> Meta {
        if let Some(m) = self.metadata.borrow().get(path) {
            return m.clone();
        }
        let m = match self.source.metadata(path) {
            Ok(e) => Meta::Found(e),
            Err(e) if e.is_vanished() => Meta::Missing,
            Err(e) => Meta::Problem(e.to_string()),
        };
        self.metadata.borrow_mut().insert(path.to_vec(), m.clone());
        m
    }

    fn found(&self, resolved: &[u8]) -> Option<Entry> {
        match self.meta(resolved) {
            Meta::Found(e) => Some(e),
            _ => None,
        }
    }

    /// Metadata of what `path` names, symlinks followed.
    pub fn stat(&self, path: impl AsRef<[u8]>) -> Option<Entry> {
        let resolved = self.resolve(path, true)?;
        self.found(&resolved)
    }

    /// Metadata of `path` itself (a final symlink is not followed).
    pub fn lstat(&self, path: impl AsRef<[u8]>) -> Option<Entry> {
        let resolved = self.resolve(path, false)?;
        self.found(&resolved)
    }

    pub fn exists(&self, path: impl AsRef<[u8]>) -> bool {
        self.stat(path).is_some()
    }

    pub fn is_dir(&self, path: impl AsRef<[u8]>) -> bool {
        self.stat(path).is_some_and(|e| e.kind == Kind::Dir)
    }

    pub fn is_file(&self, path: impl AsRef<[u8]>) -> bool {
        self.stat(path)
            .is_some_and(|e| matches!(e.kind, Kind::File | Kind::Hardlink))
    }

    /// The target of the symlink `path`, as written.
    pub fn read_link(&self, path: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        self.lstat(path)
            .filter(|e| e.kind == Kind::Symlink)
            .map(|e| e.link)
    }

    /// The names in a directory, sorted; nothing when it does not exist.
    pub fn list(&self, dir: impl AsRef<[u8]>) -> Vec<Vec<u8>> {
        let dir = dir.as_ref();
        let Some(resolved) = self.resolve(dir, true) else {
            return Vec::new();
        };
        match self.source.read_dir(&resolved) {
            Ok(names) => names,
            Err(e) if e.is_vanished() => Vec::new(),
            Err(e) => {
                self.finding(show(dir), format!("cannot list: {}", without_path(&e)));
                Vec::new()
            }
        }
    }

    /// Like [`Root::list`], names as text (names that are not UTF-8 are lossily shown).
    pub fn list_names(&self, dir: impl AsRef<[u8]>) -> Vec<String> {
        self.list(dir)
            .into_iter()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .collect()
    }

    /// The resolved path of a regular file; anything else where a file was expected (a
    /// directory, a fifo that would block a reader, a device) is a finding.
    pub fn regular(&self, path: &[u8]) -> Option<Vec<u8>> {
        let resolved = self.resolve(path, true)?;
        let entry = self.found(&resolved)?;
        match entry.kind {
            Kind::File | Kind::Hardlink => Some(resolved),
            Kind::Dir => {
                self.finding(show(path), "a directory where a file was expected");
                None
            }
            other => {
                self.finding(
                    show(path),
                    format!("not a regular file ({other:?}), not read").to_lowercase(),
                );
                None
            }
        }
    }

    /// A small text file whole; `None` when missing, unreadable or too large (the last
    /// two are findings).
    pub fn read_text(&self, path: impl AsRef<[u8]>) -> Option<String> {
        let path = path.as_ref();
        let resolved = self.regular(path)?;
        match self.source.read_to_vec(&resolved, TEXT_LIMIT) {
            Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) if e.is_vanished() => None,
            Err(e) => {
                self.finding(show(path), format!("cannot read: {}", without_path(&e)));
                None
            }
        }
    }

    /// The first `n` bytes of a file (to recognise a key or an ELF header).
    pub fn head(&self, path: impl AsRef<[u8]>, n: usize) -> Option<Vec<u8>> {
        use std::io::Read;
        let path = path.as_ref();
        let resolved = self.regular(path)?;
        let mut out = Vec::new();
        match self.source.open(&resolved) {
            Ok(r) => {
                if let Err(e) = r.take(n as u64).read_to_end(&mut out) {
                    self.finding(show(path), format!("cannot read: {e}"));
                    return None;
                }
                Some(out)
            }
            Err(e) if e.is_vanished() => None,
            Err(e) => {
                self.finding(show(path), format!("cannot read: {}", without_path(&e)));
                None
            }
        }
    }

    /// Calls `line` for each line of a file of any size, streamed; false when the file
    /// could not be read (a finding says why, unless it is simply missing).
    pub fn for_each_line(&self, path: impl AsRef<[u8]>, line: impl FnMut(&str)) -> bool {
        let path = path.as_ref();
        let Some(resolved) = self.regular(path) else {
            return false;
        };
        self.lines_of(path, &resolved, line)
    }

    /// Like [`Root::for_each_line`], for the file `name` that the listing of the resolved
    /// directory `dir` gave ([`Root::list`]). The file is opened without asking its
    /// metadata first: every source's `open` refuses what is not a regular file, and a
    /// package database is hundreds of such files, read before the walk can start.
    pub fn for_each_line_listed(&self, dir: &[u8], name: &[u8], line: impl FnMut(&str)) -> bool {
        if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
            return false;
        }
        let path = [dir, b"/", name].concat();
        self.lines_of(&path, &path, line)
    }

    fn lines_of(&self, path: &[u8], resolved: &[u8], mut line: impl FnMut(&str)) -> bool {
        let reader = match self.source.open(resolved) {
            Ok(r) => r,
            Err(e) if e.is_vanished() => return false,
            Err(e) => {
                self.finding(show(path), format!("cannot read: {}", without_path(&e)));
                return false;
            }
        };
        let mut reader = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) => return true,
                Ok(_) => line(String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r'])),
                Err(e) => {
                    self.finding(show(path), format!("cannot read: {e}"));
                    return false;
                }
            }
        }
    }
}

/// The one adapter from a [`Source`] to the service model's [`FileSystem`]: the model,
/// the unit parsers and the image builder read a source through its `Root`, with the
/// same resolver, cache and findings as the rest of the inventory.
impl FileSystem for Root<'_> {
    fn entry(&self, path: &str) -> std::io::Result<Option<Stat>> {
        let rel = path.trim_start_matches('/').as_bytes();
        let e = match self.meta(rel) {
            Meta::Found(e) => e,
            Meta::Missing => return Ok(None),
            Meta::Problem(p) => return Err(std::io::Error::other(format!("{path}: {p}"))),
        };
        let kind = match e.kind {
            Kind::File | Kind::Hardlink => FileKind::File,
            Kind::Dir => FileKind::Dir,
            Kind::Symlink => FileKind::Symlink,
            _ => FileKind::Other,
        };
        Ok(Some(Stat {
            kind,
            size: e.size,
            mode: e.mode,
            link: (kind == FileKind::Symlink)
                .then(|| String::from_utf8_lossy(&e.link).into_owned()),
        }))
    }

    fn read_file(&self, path: &str) -> std::io::Result<Vec<u8>> {
        self.source
            .read_to_vec(path.trim_start_matches('/').as_bytes(), TEXT_LIMIT)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    fn list(&self, path: &str) -> std::io::Result<Vec<String>> {
        let names = self
            .source
            .read_dir(path.trim_start_matches('/').as_bytes())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(names
            .into_iter()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .collect())
    }

    /// Resolves through the inventory's cache; a loop or unreadable component is a finding.
    fn resolve(&self, path: &str, follow_last: bool) -> std::io::Result<String> {
        match Root::resolve(self, path, follow_last) {
            Some(p) => Ok(format!("/{}", String::from_utf8_lossy(&p))),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{path}: not found"),
            )),
        }
    }
}

/// An absolute path for people.
pub fn show(path: &[u8]) -> String {
    let text = String::from_utf8_lossy(path);
    if text.starts_with('/') {
        text.into_owned()
    } else {
        format!("/{text}")
    }
}

/// The error without the path the finding already names.
pub fn without_path(e: &Error) -> String {
    match e {
        Error::Io { source, .. } => source.to_string(),
        Error::BadSource { reason, .. } => reason.clone(),
        Error::Replayed(failure) => failure.inner.clone(),
        other => other.to_string(),
    }
}

/// The last component of a path.
pub fn base_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

/// Lines of a configuration file without comments (`#` to the end) and blank lines.
pub use rehost_init::model::init_system::config_lines;

#[cfg(test)]
pub(crate) mod testing {
    //! A source built in memory, for the inventory's unit tests.
    use crate::entry::{Entry, Kind};
    use crate::error::{Error, Result};
    use crate::source::{Skips, Source, Visit};
    use std::collections::BTreeMap;
    use std::io::Read;

    #[derive(Default)]
    pub struct MemSource {
        pub entries: BTreeMap<Vec<u8>, (Entry, Vec<u8>)>,
    }

    impl MemSource {
        pub fn new() -> Self {
            Self::default()
        }
        fn parents(&mut self, path: &str) {
            let parts: Vec<&str> = path.split('/').collect();
            for i in 1..parts.len() {
                let dir = parts[..i].join("/");
                self.entries
                    .entry(dir.clone().into_bytes())
                    .or_insert_with(|| (Entry::new(dir.into_bytes(), Kind::Dir), Vec::new()));
            }
        }
        pub fn file(mut self, path: &str, content: &str) -> Self {
            self.parents(path);
            let mut e = Entry::new(path.into(), Kind::File);
            e.size = content.len() as u64;
            self.entries
                .insert(path.into(), (e, content.as_bytes().to_vec()));
            self
        }
        pub fn dir(mut self, path: &str) -> Self {
            self.parents(path);
            self.entries.insert(
                path.into(),
                (Entry::new(path.into(), Kind::Dir), Vec::new()),
            );
            self
        }
        pub fn link(mut self, path: &str, target: &str) -> Self {
            self.parents(path);
            let mut e = Entry::new(path.into(), Kind::Symlink);
            e.link = target.into();
            self.entries.insert(path.into(), (e, Vec::new()));
            self
        }
    }

    impl Source for MemSource {
        fn describe(&self) -> String {
            "memory".into()
        }
        fn walk(&self, visit: &mut Visit<'_>) -> Result<Skips> {
            let mut all: Vec<&Entry> = self.entries.values().map(|(e, _)| e).collect();
            all.sort_by_key(|e| crate::entry::walk_order_key(&e.path));
            for e in all {
                visit(e.clone())?;
            }
            Ok(Skips::default())
        }
        fn metadata(&self, path: &[u8]) -> Result<Entry> {
            if path.is_empty() {
                return Ok(Entry::new(Vec::new(), Kind::Dir));
            }
            self.entries
                .get(path)
                .map(|(e, _)| e.clone())
                .ok_or_else(|| Error::NotFound(String::from_utf8_lossy(path).into()))
        }
        fn read_dir(&self, path: &[u8]) -> Result<Vec<Vec<u8>>> {
            let mut out = Vec::new();
            for key in self.entries.keys() {
                let rest = if path.is_empty() {
                    Some(key.as_slice())
                } else {
                    key.strip_prefix(path).and_then(|r| r.strip_prefix(b"/"))
                };
                if let Some(rest) = rest {
                    if !rest.is_empty() && !rest.contains(&b'/') {
                        out.push(rest.to_vec());
                    }
                }
            }
            Ok(out)
        }
        fn open(&self, path: &[u8]) -> Result<Box<dyn Read + Send + '_>> {
            match self.entries.get(path) {
                Some((e, data)) if e.kind == Kind::File => Ok(Box::new(&data[..])),
                _ => Err(Error::NotFound(String::from_utf8_lossy(path).into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::MemSource;
    use super::*;

    #[test]
    fn absolute_links_stay_inside_the_source() {
        let src = MemSource::new()
            .file("usr/lib/x", "hello")
            .link("lib", "usr/lib")
            .link("etc/y", "/lib/x");
        let root = Root::new(&src);
        assert_eq!(root.resolve("etc/y", true).unwrap(), b"usr/lib/x");
        assert_eq!(root.read_text("/etc/y").unwrap(), "hello");
        assert_eq!(root.resolve("etc/y", false).unwrap(), b"etc/y");
        assert!(root.resolve("etc/missing", true).is_none());
        assert!(root.take_findings().is_empty());
    }

    #[test]
    fn a_symlink_loop_is_a_finding_not_a_hang() {
        let src = MemSource::new().link("a", "b").link("b", "/a");
        let root = Root::new(&src);
        assert!(root.read_text("a").is_none());
        let findings = root.take_findings();
        assert_eq!(findings.len(), 1);
        assert!(findings[0].problem.contains("loop"), "{findings:?}");
    }

    #[test]
    fn dotdot_cannot_climb_above_the_root() {
        let src = MemSource::new()
            .file("etc/passwd", "root")
            .link("x", "../../../etc");
        let root = Root::new(&src);
        assert_eq!(root.read_text("x/passwd").unwrap(), "root");
    }
}
