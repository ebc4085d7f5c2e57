//! Which package owns each file, from the package manager's own database files: dpkg's
//! `status`, `info/*.list` and `info/*.md5sums`; apk's `installed`. What a migration must
//! review is the rest: files no package installed (the application, hand-made files) and
//! package files changed since installation (hand edits, drift, conffiles).
//!
//! rpm's databases (Berkeley DB and SQLite) are read by [`super::rpmdb`]; its ndb is not
//! read yet, and said so as a finding.

use super::fs::Root;
use crate::entry::{Entry, Kind};
use crate::source::Source;
use serde::Serialize;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::io::Read;

/// How many of the unowned directories and files, and of the changed files, are listed
/// (all are counted).
const LISTED: usize = 20;
/// Unowned bytes are summed per directory up to this depth (`/opt/app/lib`).
const DIR_DEPTH: usize = 3;

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The package's own idea of its size (dpkg's Installed-Size, apk's `I:`), in bytes:
    /// the same on every server, so layers by package can be cut by it.
    #[serde(skip)]
    pub installed_size: u64,
}

/// The digest the package database gives for a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digest {
    Md5([u8; 16]),
    Sha1([u8; 20]),
    Sha256([u8; 32]),
}

#[derive(Debug, Clone, Copy)]
struct Owned {
    /// Index into [`PackageDb::packages`].
    package: u32,
    digest: Option<Digest>,
    conffile: bool,
}

/// The package database: packages and the files each installed.
#[derive(Debug, Default)]
pub struct PackageDb {
    pub manager: String,
    pub packages: Vec<Package>,
    /// Path without the leading `/` → its owner.
    files: HashMap<Vec<u8>, Owned>,
}

/// A package file that is not as the package installed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    pub path: String,
    pub package: String,
    /// A configuration file (dpkg's conffiles): changed by the operator, as intended.
    pub conffile: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Place {
    pub path: String,
    pub bytes: u64,
}

/// What is not from a package.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Unowned {
    /// Files and symlinks no package owns.
    pub files: u64,
    pub bytes: u64,
    pub largest_directories: Vec<Place>,
    pub largest_files: Vec<Place>,
}

/// The inventory's package ownership report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ownership {
    pub manager: String,
    pub packages: usize,
    /// Files of the source that a package owns.
    pub owned_files: u64,
    pub unowned: Unowned,
    /// Package files whose content differs from the database's digest (the first
    /// [`LISTED`]; `changed_files` counts them all).
    pub changed: Vec<Changed>,
    pub changed_files: u64,
    /// The installed packages (for SBOMs; the report only counts them).
    #[serde(skip)]
    pub installed: Vec<Package>,
}

impl PackageDb {
    /// The source's package database, when it is one this reads.
    pub fn read(root: &Root) -> Option<PackageDb> {
        if root.is_file("var/lib/dpkg/status") {
            return Some(read_dpkg(root));
        }
        if root.is_file("lib/apk/db/installed") {
            return Some(read_apk(root));
        }
        if super::rpmdb::present(root) {
            return read_rpm(root);
        }
        None
    }

    /// The package that owns `path` (no leading `/`).
    pub fn owner(&self, path: &[u8]) -> Option<&Package> {
        self.files
            .get(path)
            .map(|o| &self.packages[o.package as usize])
    }

    /// What the database says `path` (no leading `/`) must hold, when a package owns it
    /// and gives its digest: the check that lets the file go into its package's layer.
    pub fn check_of(&self, path: &[u8]) -> Option<FileCheck> {
        let o = self.files.get(path)?;
        Some(FileCheck {
            package: o.package as usize,
            want: o.digest?,
        })
    }

    /// Every path the database gives a digest for, with its package's index in
    /// [`PackageDb::packages`].
    pub fn checked_paths(&self) -> impl Iterator<Item = (&[u8], usize)> {
        self.files
            .iter()
            .filter(|(_, o)| o.digest.is_some())
            .map(|(path, o)| (path.as_slice(), o.package as usize))
    }

    /// Whether a package owns `path` (no leading `/`).
    pub fn owns(&self, path: &[u8]) -> bool {
        self.files.contains_key(path)
    }

    /// How many files the database lists.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }
}

fn read_dpkg(root: &Root) -> PackageDb {
    let mut db = PackageDb {
        manager: "dpkg".into(),
        ..Default::default()
    };
    // Stanzas of installed packages: name, version, architecture, conffiles.
    let mut stanza: HashMap<&'static str, String> = HashMap::new();
    let mut conffiles: Vec<(String, String)> = Vec::new();
    let mut in_conffiles = false;
    let mut installed: Vec<(Package, Vec<(String, String)>)> = Vec::new();
    let mut finish = |stanza: &mut HashMap<&'static str, String>,
                      conffiles: &mut Vec<(String, String)>| {
        let ok = stanza
            .get("Status")
            .is_some_and(|s| s.split_whitespace().last() == Some("installed"));
        if ok {
            if let Some(name) = stanza.get("Package") {
                installed.push((
                    Package {
                        name: name.clone(),
                        version: stanza.get("Version").cloned().unwrap_or_default(),
                        architecture: stanza.get("Architecture").cloned().unwrap_or_default(),
                        installed_size: stanza
                            .get("Installed-Size")
                            .and_then(|k| k.parse::<u64>().ok())
                            .map_or(0, |k| k.saturating_mul(1024)),
                    },
                    std::mem::take(conffiles),
                ));
            }
        }
        stanza.clear();
        conffiles.clear();
    };
    root.for_each_line("var/lib/dpkg/status", |line| {
        if line.is_empty() {
            finish(&mut stanza, &mut conffiles);
            in_conffiles = false;
            return;
        }
        if let Some(rest) = line.strip_prefix(' ') {
            if in_conffiles {
                let mut f = rest.split_whitespace();
                if let (Some(path), Some(md5)) = (f.next(), f.next()) {
                    conffiles.push((path.to_string(), md5.to_string()));
                }
            }
            return;
        }
        in_conffiles = false;
        if let Some((key, value)) = line.split_once(':') {
            let key = match key {
                "Package" => "Package",
                "Status" => "Status",
                "Version" => "Version",
                "Architecture" => "Architecture",
                "Installed-Size" => "Installed-Size",
                "Conffiles" => {
                    in_conffiles = true;
                    return;
                }
                _ => return,
            };
            stanza.insert(key, value.trim().to_string());
        }
    });
    finish(&mut stanza, &mut conffiles);

    // The info directory is listed once, and its files read by their listed names.
    let info = root.resolve("var/lib/dpkg/info", true).unwrap_or_default();
    let listed: HashSet<Vec<u8>> = match info.is_empty() {
        true => HashSet::new(),
        false => root.list(&info).into_iter().collect(),
    };
    for (pkg, conf) in installed {
        let index = db.packages.len() as u32;
        // Multi-arch packages name their files NAME:ARCH.*.
        let qualified = format!("{}:{}", pkg.name, pkg.architecture);
        let stem = [qualified.as_str(), pkg.name.as_str()]
            .into_iter()
            .find(|s| listed.contains(format!("{s}.list").as_bytes()));
        if let Some(stem) = stem {
            root.for_each_line_listed(&info, format!("{stem}.list").as_bytes(), |line| {
                let path = line.trim_start_matches('/');
                if !path.is_empty() && path != "." {
                    db.files.insert(
                        path.as_bytes().to_vec(),
                        Owned {
                            package: index,
                            digest: None,
                            conffile: false,
                        },
                    );
                }
            });
            let md5sums = format!("{stem}.md5sums");
            if listed.contains(md5sums.as_bytes()) {
                root.for_each_line_listed(&info, md5sums.as_bytes(), |line| {
                    let Some((md5, path)) = line.split_once("  ") else {
                        return;
                    };
                    let path = path.trim_start_matches('/');
                    if let (Some(d), Some(o)) = (hex::<16>(md5), db.files.get_mut(path.as_bytes()))
                    {
                        o.digest = Some(Digest::Md5(d));
                    }
                });
            }
        }
        for (path, md5) in conf {
            let path = path.trim_start_matches('/');
            let digest = hex::<16>(&md5).map(Digest::Md5);
            let o = db.files.entry(path.as_bytes().to_vec()).or_insert(Owned {
                package: index,
                digest: None,
                conffile: true,
            });
            o.conffile = true;
            if digest.is_some() {
                o.digest = digest;
            }
        }
        db.packages.push(pkg);
    }
    canonical_paths(root, &mut db);
    db
}

/// The database names files by the paths the packages were built with (`/bin/bash`);
/// on a merged-/usr system the file is at `usr/bin/bash`, `bin` being a symlink. Each
/// listed path's directory is resolved inside the source, so the walk finds its owner.
fn canonical_paths(root: &Root, db: &mut PackageDb) {
    let mut dirs: HashMap<&[u8], Option<Vec<u8>>> = HashMap::new();
    for path in db.files.keys() {
        if let Some(slash) = path.iter().rposition(|&b| b == b'/') {
            let dir = &path[..slash];
            if !dirs.contains_key(dir) {
                let resolved = root.resolve(dir, true).filter(|d| d.as_slice() != dir);
                dirs.insert(dir, resolved);
            }
        }
    }
    let moved: Vec<(Vec<u8>, Vec<u8>)> = db
        .files
        .keys()
        .filter_map(|path| {
            let slash = path.iter().rposition(|&b| b == b'/')?;
            let canonical = dirs.get(&path[..slash])?.as_ref()?;
            Some((
                path.clone(),
                [canonical.as_slice(), &path[slash..]].concat(),
            ))
        })
        .collect();
    for (path, canonical) in moved {
        if let Some(owned) = db.files.remove(&path) {
            db.files.entry(canonical).or_insert(owned);
        }
    }
}

fn read_apk(root: &Root) -> PackageDb {
    let mut db = PackageDb {
        manager: "apk".into(),
        ..Default::default()
    };
    let mut pkg: Option<Package> = None;
    let mut dir = String::new();
    let mut last_file: Option<Vec<u8>> = None;
    root.for_each_line("lib/apk/db/installed", |line| {
        let Some((key, value)) = line.split_once(':') else {
            return;
        };
        match key {
            "P" => {
                if let Some(p) = pkg.take() {
                    db.packages.push(p);
                }
                pkg = Some(Package {
                    name: value.to_string(),
                    version: String::new(),
                    architecture: String::new(),
                    installed_size: 0,
                });
                dir.clear();
            }
            "V" => {
                if let Some(p) = &mut pkg {
                    p.version = value.to_string();
                }
            }
            "A" => {
                if let Some(p) = &mut pkg {
                    p.architecture = value.to_string();
                }
            }
            "I" => {
                if let Some(p) = &mut pkg {
                    p.installed_size = value.trim().parse().unwrap_or(0);
                }
            }
            "F" => dir = value.trim_matches('/').to_string(),
            "R" if pkg.is_some() => {
                let path = if dir.is_empty() {
                    value.to_string()
                } else {
                    format!("{dir}/{value}")
                };
                let path = path.into_bytes();
                db.files.insert(
                    path.clone(),
                    Owned {
                        package: db.packages.len() as u32,
                        digest: None,
                        conffile: false,
                    },
                );
                last_file = Some(path);
            }
            // `Q1` and base64 of the SHA-1 of the file's content.
            "Z" => {
                if let (Some(path), Some(b64)) = (&last_file, value.strip_prefix("Q1")) {
                    use base64::Engine;
                    let bytes = base64::engine::general_purpose::STANDARD.decode(b64);
                    if let (Ok(bytes), Some(o)) = (bytes, db.files.get_mut(path)) {
                        if let Ok(d) = <[u8; 20]>::try_from(bytes.as_slice()) {
                            o.digest = Some(Digest::Sha1(d));
                        }
                    }
                }
            }
            _ => {}
        }
    });
    if let Some(p) = pkg {
        db.packages.push(p);
    }
    canonical_paths(root, &mut db);
    db
}

/// rpm's database; `None` (and a finding) when it cannot be read, rather than a report
/// that would call every file unowned.
fn read_rpm(root: &Root) -> Option<PackageDb> {
    use super::rpmdb::{self, Algo};
    let (packages, bad) = match rpmdb::read(root) {
        Ok(found) => found,
        Err((path, e)) => {
            root.finding(path, format!("rpm database not read: {e}"));
            return None;
        }
    };
    if bad > 0 {
        root.finding(
            "/var/lib/rpm",
            format!("{bad} package headers of the rpm database are corrupt; their files count as unowned"),
        );
    }
    let mut db = PackageDb {
        manager: "rpm".into(),
        ..Default::default()
    };
    for p in packages {
        let index = db.packages.len() as u32;
        for f in p.files {
            let digest = match p.algo {
                Algo::Md5 => hex::<16>(&f.digest).map(Digest::Md5),
                Algo::Sha1 => hex::<20>(&f.digest).map(Digest::Sha1),
                Algo::Sha256 => hex::<32>(&f.digest).map(Digest::Sha256),
                Algo::Other => None,
            };
            let path = f.path.trim_start_matches('/');
            if path.is_empty() {
                continue;
            }
            db.files.insert(
                path.as_bytes().to_vec(),
                Owned {
                    package: index,
                    digest,
                    conffile: f.config,
                },
            );
        }
        db.packages.push(Package {
            name: p.name,
            version: p.version,
            architecture: p.arch,
            installed_size: p.installed_size,
        });
    }
    canonical_paths(root, &mut db);
    Some(db)
}

fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim();
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A package file's expected content.
#[derive(Debug, Clone, Copy)]
pub struct FileCheck {
    package: usize,
    want: Digest,
}

impl FileCheck {
    /// The owner's index in [`PackageDb::packages`].
    pub fn package(&self) -> usize {
        self.package
    }

    /// The MD5 the package gives, when its database gives MD5s (dpkg's): such files can
    /// be checked many at once ([`super::md5_lanes`]).
    pub fn md5(&self) -> Option<[u8; 16]> {
        match self.want {
            Digest::Md5(d) => Some(d),
            _ => None,
        }
    }

    /// Whether `content` is what the package installed; `None` when it cannot be read.
    pub fn matches(&self, content: &mut dyn Read) -> Option<bool> {
        same_digest(content, self.want)
    }

    /// `inner`, hashed as it is read, to say at the end whether it was what the package
    /// installed ([`Checking::matches`]): a file is read once to check and copy it.
    pub fn checking<R: Read>(&self, inner: R) -> Checking<R> {
        Checking {
            inner,
            hasher: Hasher::like(self.want),
            want: self.want,
        }
    }
}

/// A reader that checks what passes through it: [`FileCheck::checking`].
pub struct Checking<R> {
    inner: R,
    hasher: Hasher,
    want: Digest,
}

impl<R> Checking<R> {
    /// Whether the bytes read were what the package installed.
    pub fn matches(self) -> bool {
        self.hasher.finish() == self.want
    }
}

impl<R: Read> Read for Checking<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A digest being computed, of the database's kind.
enum Hasher {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Hasher {
    fn like(digest: Digest) -> Hasher {
        use md5::Digest as _;
        match digest {
            Digest::Md5(_) => Hasher::Md5(md5::Md5::new()),
            Digest::Sha1(_) => Hasher::Sha1(sha1::Sha1::new()),
            Digest::Sha256(_) => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        use md5::Digest as _;
        match self {
            Hasher::Md5(h) => h.update(bytes),
            Hasher::Sha1(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Digest {
        use md5::Digest as _;
        match self {
            Hasher::Md5(h) => Digest::Md5(h.finalize().into()),
            Hasher::Sha1(h) => Digest::Sha1(h.finalize().into()),
            Hasher::Sha256(h) => Digest::Sha256(h.finalize().into()),
        }
    }
}

/// Builds the report as the inventory's walk goes: [`Tally::visit`] each entry, then
/// [`Tally::finish`] (which reads the owned files with a digest, to find the changed).
pub struct Tally<'a> {
    db: &'a PackageDb,
    report: Ownership,
    dirs: HashMap<Vec<u8>, u64>,
    largest: BinaryHeap<std::cmp::Reverse<(u64, Vec<u8>)>>,
    /// Owned regular files with a digest, to read at the end.
    to_check: Vec<Vec<u8>>,
}

impl<'a> Tally<'a> {
    pub fn new(db: &'a PackageDb) -> Self {
        Tally {
            db,
            report: Ownership {
                manager: db.manager.clone(),
                packages: db.packages.len(),
                installed: db.packages.clone(),
                ..Default::default()
            },
            dirs: HashMap::new(),
            largest: BinaryHeap::new(),
            to_check: Vec::new(),
        }
    }

    /// One entry of the walk; `data` is the bytes it holds (0 for a further name of a
    /// file already counted).
    pub fn visit(&mut self, entry: &Entry, data: u64) {
        if !matches!(entry.kind, Kind::File | Kind::Hardlink | Kind::Symlink) {
            return;
        }
        if let Some(o) = self.db.files.get(&entry.path) {
            self.report.owned_files += 1;
            if o.digest.is_some() && entry.kind == Kind::File {
                self.to_check.push(entry.path.clone());
            }
            return;
        }
        // The package database itself is the manager's, not the server's own.
        if [
            &b"var/lib/dpkg/"[..],
            b"lib/apk/db/",
            b"var/lib/rpm/",
            b"usr/lib/sysimage/rpm/",
        ]
        .iter()
        .any(|db| entry.path.starts_with(db))
        {
            return;
        }
        let u = &mut self.report.unowned;
        u.files += 1;
        u.bytes += data;
        self.largest
            .push(std::cmp::Reverse((data, entry.path.clone())));
        if self.largest.len() > LISTED {
            self.largest.pop();
        }
        super::size::add_to_dirs(&mut self.dirs, &entry.path, DIR_DEPTH, data);
    }

    /// The report: the owned files read and compared with their digests.
    pub fn finish(mut self, source: &dyn Source) -> Ownership {
        let show = |p: &[u8]| crate::entry::DisplayPath(p).to_string();
        for path in std::mem::take(&mut self.to_check) {
            let o = self.db.files[&path];
            let same = match (o.digest, source.open(&path)) {
                (Some(expected), Ok(mut r)) => same_digest(&mut r, expected),
                _ => None,
            };
            // Unreadable (vanished, a device): not said to be changed.
            if same == Some(false) {
                self.report.changed_files += 1;
                if self.report.changed.len() < LISTED {
                    self.report.changed.push(Changed {
                        path: show(&path),
                        package: self.db.packages[o.package as usize].name.clone(),
                        conffile: o.conffile,
                    });
                }
            }
        }
        let mut files: Vec<(u64, Vec<u8>)> = self
            .largest
            .into_iter()
            .map(|std::cmp::Reverse(x)| x)
            .collect();
        files.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        self.report.unowned.largest_files = files
            .into_iter()
            .map(|(bytes, p)| Place {
                path: show(&p),
                bytes,
            })
            .collect();
        let mut dirs: Vec<(Vec<u8>, u64)> = self.dirs.into_iter().collect();
        dirs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        self.report.unowned.largest_directories = dirs
            .into_iter()
            .take(LISTED)
            .map(|(p, bytes)| Place {
                path: show(&p),
                bytes,
            })
            .collect();
        self.report
    }
}

/// The digest of the kind `like` of what `r` gives; `None` when it cannot be read.
/// Whether `r` holds the content `want` is the digest of; `None` when it cannot be read.
fn same_digest(r: &mut dyn Read, want: Digest) -> Option<bool> {
    let mut checking = FileCheck { package: 0, want }.checking(r);
    let mut buf = vec![0u8; 1 << 16];
    while checking.read(&mut buf).ok()? > 0 {}
    Some(checking.matches())
}

#[cfg(test)]
mod tests {
    use super::super::fs::testing::MemSource;
    use super::*;

    const STATUS: &str = "Package: nginx\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.22\nConffiles:\n /etc/nginx/nginx.conf 0cc175b9c0f1b6a831c399e269772661\n /etc/nginx/old.conf 0cc175b9c0f1b6a831c399e269772661 obsolete\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: libc6\nStatus: install ok installed\nArchitecture: amd64\nMulti-Arch: same\nVersion: 2.36\n";

    fn dpkg() -> MemSource {
        MemSource::new()
            .file("var/lib/dpkg/status", STATUS)
            .file(
                "var/lib/dpkg/info/nginx.list",
                "/.\n/usr\n/usr/sbin/nginx\n/etc/nginx/nginx.conf\n",
            )
            // md5("a") and md5("b").
            .file(
                "var/lib/dpkg/info/nginx.md5sums",
                "0cc175b9c0f1b6a831c399e269772661  usr/sbin/nginx\n",
            )
            .file("var/lib/dpkg/info/libc6:amd64.list", "/lib/libc.so.6\n")
            .file(
                "var/lib/dpkg/info/libc6:amd64.md5sums",
                "92eb5ffee6ae2fec3ad71c777531578f  lib/libc.so.6\n",
            )
            .file("usr/sbin/nginx", "a")
            .file("etc/nginx/nginx.conf", "edited")
            .file("usr/lib/libc.so.6", "b")
            .link("lib", "usr/lib")
            .file("opt/app/run.sh", "#!/bin/sh\n")
    }

    /// dpkg's info files are opened by their listed names, without asking their
    /// metadata first: a FIFO put where one was is refused by the open itself (it must
    /// not block the read) and named in a finding; the other packages are read.
    #[test]
    fn a_fifo_among_dpkg_info_files_is_a_finding_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let info = dir.path().join("var/lib/dpkg/info");
        std::fs::create_dir_all(&info).unwrap();
        std::fs::write(dir.path().join("var/lib/dpkg/status"), STATUS).unwrap();
        std::fs::write(info.join("libc6:amd64.list"), "/usr/lib/libc.so.6\n").unwrap();
        let fifo = std::ffi::CString::new(
            info.join("nginx.list")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let src = crate::source::DirSource::new(dir.path(), Default::default()).unwrap();
        let root = Root::new(&src);
        let db = PackageDb::read(&root).unwrap();
        assert_eq!(db.owner(b"usr/lib/libc.so.6").unwrap().name, "libc6");
        assert!(db.owner(b"usr/sbin/nginx").is_none());
        let findings = root.take_findings();
        assert!(
            findings
                .iter()
                .any(|f| f.path == "/var/lib/dpkg/info/nginx.list" && f.problem.contains("regular")),
            "{findings:?}"
        );
    }

    #[test]
    fn dpkg_owners_and_versions() {
        let src = dpkg();
        let db = PackageDb::read(&Root::new(&src)).unwrap();
        assert_eq!(db.packages.len(), 2);
        assert_eq!(db.owner(b"usr/sbin/nginx").unwrap().version, "1.22");
        // Listed as /lib/libc.so.6, found where /lib leads (merged /usr).
        assert_eq!(db.owner(b"usr/lib/libc.so.6").unwrap().name, "libc6");
        assert_eq!(db.owner(b"etc/nginx/old.conf").unwrap().name, "nginx");
        assert!(db.owner(b"opt/app/run.sh").is_none());
    }

    #[test]
    fn the_report_names_unowned_and_changed_files() {
        let src = dpkg();
        let db = PackageDb::read(&Root::new(&src)).unwrap();
        let mut tally = Tally::new(&db);
        src.walk(&mut |e: Entry| {
            let data = e.size;
            tally.visit(&e, data);
            Ok(())
        })
        .unwrap();
        let r = tally.finish(&src);
        assert_eq!(r.owned_files, 3);
        // /opt/app/run.sh and the /lib link (usrmerge makes it, no package lists it).
        assert_eq!(r.unowned.files, 2);
        assert_eq!(r.unowned.largest_files[0].path, "/opt/app/run.sh");
        assert_eq!(r.unowned.largest_directories[0].path, "/opt");
        assert_eq!(
            r.changed,
            [Changed {
                path: "/etc/nginx/nginx.conf".into(),
                package: "nginx".into(),
                conffile: true
            }]
        );
    }

    #[test]
    fn apk_owners_and_their_sha1() {
        // sha1("a") = 86f7e437faa5a7fce15d1ddcb9eaeaea377667b8
        let installed = "P:busybox\nV:1.36\nA:x86_64\nF:bin\nR:busybox\nZ:Q1hvfkN/qlp/zhXR3cuerq6jd2Z7g=\n\nP:app\nV:2\nF:usr/bin\nR:tool\n";
        let src = MemSource::new()
            .file("lib/apk/db/installed", installed)
            .file("bin/busybox", "changed")
            .file("usr/bin/tool", "x");
        let db = PackageDb::read(&Root::new(&src)).unwrap();
        assert_eq!(db.owner(b"bin/busybox").unwrap().name, "busybox");
        assert_eq!(db.owner(b"usr/bin/tool").unwrap().version, "2");
        let mut tally = Tally::new(&db);
        src.walk(&mut |e: Entry| {
            tally.visit(&e, 0);
            Ok(())
        })
        .unwrap();
        let r = tally.finish(&src);
        assert_eq!(r.changed_files, 1, "{r:?}");
        assert_eq!(r.changed[0].path, "/bin/busybox");
    }

    #[test]
    fn hostile_lines_are_ignored() {
        let src = MemSource::new()
            .file(
                "var/lib/dpkg/status",
                "Package: x\nStatus: install ok installed\nConffiles:\n /etc/a zz\n \n:\n",
            )
            .file("var/lib/dpkg/info/x.list", "\n/\n/../../etc\n")
            .file("var/lib/dpkg/info/x.md5sums", "nothex  a\n  \n");
        let db = PackageDb::read(&Root::new(&src)).unwrap();
        assert_eq!(db.packages.len(), 1);
        assert!(db.owner(b"etc/a").is_some());
    }
}
