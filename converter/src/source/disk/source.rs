//! The guest's filesystems put together as its running system mounts them: the root
//! filesystem, with the others its /etc/fstab names grafted at their mount points.

use super::fstab::{self, Spec};
use crate::entry::{normalize, Entry, Extent, Kind};
use crate::error::{Error, Result};
use crate::source::{Skipped, Skips, Source, Visit};
use diskimage::ext4::{DirEntry, Ext4, Inode, ROOT_INO};
use diskimage::partition::Content;
use diskimage::volume::{volumes, Volume};
use diskimage::{Device, Format};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Files whose presence marks a root filesystem.
const ROOT_MARKERS: &[&[u8]] = &[
    b"etc/os-release",
    b"usr/lib/os-release",
    b"etc/redhat-release",
    b"etc/debian_version",
    b"etc/alpine-release",
    b"etc/SuSE-release",
];
/// Deeper directories than this are taken for a corrupt (looping) tree.
const MAX_DEPTH: usize = 512;
const DIR_CACHE: usize = 64;

/// A directory: (filesystem, inode).
type DirKey = (usize, u32);

/// The directories of a walk: those above the current one, and every one entered.
struct Walked {
    above: Vec<DirKey>,
    seen: HashSet<DirKey>,
}

/// A filesystem in use, with the name of its volume.
struct Mounted {
    fs: Ext4,
    volume: String,
}

pub struct DiskSource {
    image: PathBuf,
    format: Format,
    filesystems: Vec<Mounted>,
    /// Tree path of a mount point → the filesystem mounted there (the root is index 0).
    mounts: BTreeMap<Vec<u8>, usize>,
    skipped: Skips,
    /// Recently listed directories, (filesystem, inode) → entries: the image builder
    /// opens files in walk order, so this spares re-reading their directory each time.
    dirs: Mutex<VecDeque<(DirKey, Arc<Vec<DirEntry>>)>>,
}

impl DiskSource {
    pub fn new(image: &Path, format: Format, disk: Device) -> Result<Self> {
        let bad = |reason: String| Error::Disk {
            image: image.to_path_buf(),
            reason,
        };
        let (volumes, notes) = volumes(&disk).map_err(|e| bad(e.to_string()))?;
        for note in &notes {
            tracing::warn!("{}: {note}", image.display());
        }
        if volumes.is_empty() && notes.is_empty() {
            return Err(bad("the partition table lists no partitions".into()));
        }
        let mut source = DiskSource {
            image: image.to_path_buf(),
            format,
            filesystems: Vec::new(),
            mounts: BTreeMap::new(),
            skipped: Skips::default(),
            dirs: Mutex::new(VecDeque::new()),
        };
        // Open every ext filesystem; the first with an OS release file is the root.
        let mut opened: Vec<Option<usize>> = Vec::new();
        let mut findings = notes.clone();
        let mut root = None;
        for v in &volumes {
            if v.content != Content::Ext {
                findings.push(format!("{}: {}", v.name, what_to_do(v.content)));
                opened.push(None);
                continue;
            }
            match Ext4::open(v.dev.clone()) {
                Ok(fs) => {
                    if fs.needs_recovery {
                        tracing::warn!(
                            "{}: {}: the journal was not replayed (the VM was not shut down cleanly); recent changes may be missing",
                            image.display(),
                            v.name
                        );
                    }
                    source.filesystems.push(Mounted {
                        fs,
                        volume: v.name.clone(),
                    });
                    let idx = source.filesystems.len() - 1;
                    opened.push(Some(idx));
                    if root.is_none()
                        && source
                            .has_root_marker(idx)
                            .map_err(|e| source.err(idx, e))?
                    {
                        root = Some(idx);
                    } else {
                        findings.push(format!(
                            "{}: ext filesystem without /etc/os-release",
                            v.name
                        ));
                    }
                }
                Err(e) => {
                    findings.push(format!("{}: {e}", v.name));
                    opened.push(None);
                }
            }
        }
        let Some(root) = root else {
            return Err(bad(format!(
                "no root filesystem found ({})",
                findings.join("; ")
            )));
        };
        // The root goes first, so index 0 is always the root.
        source.filesystems.swap(0, root);
        for o in opened.iter_mut().flatten() {
            if *o == root {
                *o = 0;
            } else if *o == 0 {
                *o = root;
            }
        }
        source.mounts.insert(Vec::new(), 0);
        source.graft_fstab(&volumes, &opened)?;
        Ok(source)
    }

    fn err(&self, fs: usize, e: io::Error) -> Error {
        Error::Disk {
            image: self.image.clone(),
            reason: format!("{}: {e}", self.filesystems[fs].volume),
        }
    }

    fn has_root_marker(&self, fs: usize) -> io::Result<bool> {
        for marker in ROOT_MARKERS {
            if self.lookup_in(fs, marker)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Looks a path up inside one filesystem, ignoring mounts.
    fn lookup_in(&self, fs: usize, path: &[u8]) -> io::Result<Option<u32>> {
        let mut ino = ROOT_INO;
        for part in path.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
            let inode = self.filesystems[fs].fs.inode(ino)?;
            if Kind::from_mode(inode.mode.into()) != Some(Kind::Dir) {
                return Ok(None);
            }
            let entries = self.list(fs, &inode)?;
            match entries.binary_search_by(|e| e.name.as_slice().cmp(part)) {
                Ok(i) => ino = entries[i].ino,
                Err(_) => return Ok(None),
            }
        }
        Ok(Some(ino))
    }

    /// Mounts what the root's /etc/fstab names, where it names it.
    fn graft_fstab(&mut self, volumes: &[Volume], opened: &[Option<usize>]) -> Result<()> {
        let text = match self
            .lookup_in(0, b"etc/fstab")
            .map_err(|e| self.err(0, e))?
        {
            Some(ino) => {
                let fs = &self.filesystems[0].fs;
                let inode = fs.inode(ino).map_err(|e| self.err(0, e))?;
                if Kind::from_mode(inode.mode.into()) != Some(Kind::File) {
                    return Ok(());
                }
                fs.read_all(&inode, 1 << 20).map_err(|e| self.err(0, e))?
            }
            None => return Ok(()),
        };
        let mut mounts = fstab::parse(&String::from_utf8_lossy(&text));
        // Parents before children, so /var is in place before /var/log is looked up.
        mounts.sort_by_key(|m| m.mount_point.matches('/').count());
        for m in mounts {
            let Some(point) = normalize(m.mount_point.as_bytes()) else {
                continue;
            };
            if point.is_empty() || !m.mount_point.starts_with('/') {
                continue; // the root itself, swap ("none"), or nonsense
            }
            if matches!(
                m.fstype.as_str(),
                "swap"
                    | "proc"
                    | "sysfs"
                    | "tmpfs"
                    | "devpts"
                    | "devtmpfs"
                    | "nfs"
                    | "nfs4"
                    | "cifs"
                    | "smbfs"
                    | "fuse"
                    | "securityfs"
                    | "cgroup"
                    | "cgroup2"
                    | "bind"
                    | "none"
            ) || m.options.iter().any(|o| o == "bind")
            {
                continue;
            }
            let shown = format!("/{}", String::from_utf8_lossy(&point));
            let skip = |this: &mut Self, reason: String| {
                this.skipped.push(Skipped {
                    path: shown.clone(),
                    reason,
                });
            };
            if m.options.iter().any(|o| o == "noauto") {
                skip(
                    self,
                    format!(
                        "fstab: {} is not mounted at boot (noauto); kept empty",
                        m.spec
                    ),
                );
                continue;
            }
            let ext = |i: usize| opened[i].map(|f| &self.filesystems[f].fs);
            let found = (0..volumes.len()).find(|&i| match fstab::spec(&m.spec) {
                Spec::Uuid(u) => ext(i).is_some_and(|fs| fs.uuid == u),
                Spec::Label(l) => ext(i).is_some_and(|fs| fs.label == l),
                Spec::PartUuid(u) => volumes[i].part_uuid.as_deref() == Some(u.as_str()),
                Spec::PartitionNumber(n) => volumes[i].number == Some(n),
                Spec::Lvm { vg, lv } => volumes[i].lvm.as_ref() == Some(&(vg, lv)),
                Spec::Other => false,
            });
            let Some(vi) = found else {
                skip(
                    self,
                    format!(
                        "fstab names {} for it, which is not on this disk; the directory is taken as it is on the root filesystem",
                        m.spec
                    ),
                );
                continue;
            };
            let Some(fs) = opened[vi] else {
                skip(
                    self,
                    format!(
                        "{} ({}): {}; kept empty",
                        volumes[vi].name,
                        m.spec,
                        what_to_do(volumes[vi].content)
                    ),
                );
                continue;
            };
            if fs == 0 {
                continue;
            }
            // Grafted twice, its directories would each have two parents.
            if let Some((other, _)) = self.mounts.iter().find(|(_, &m)| m == fs) {
                let other = format!("/{}", String::from_utf8_lossy(other));
                skip(
                    self,
                    format!(
                        "fstab mounts {} here too; it is taken once, at {other}",
                        volumes[vi].name
                    ),
                );
                continue;
            }
            // The mount point must be a directory of the tree as mounted so far.
            match self.resolve(&point) {
                Ok((_, _, inode)) if Kind::from_mode(inode.mode.into()) == Some(Kind::Dir) => {
                    self.mounts.insert(point, fs);
                }
                _ => skip(
                    self,
                    format!(
                        "fstab mounts {} here, but there is no such directory; not mounted",
                        volumes[vi].name
                    ),
                ),
            }
        }
        Ok(())
    }

    /// The entries of a directory, through the small cache.
    fn list(&self, fs: usize, dir: &Inode) -> io::Result<Arc<Vec<DirEntry>>> {
        let key = (fs, dir.ino);
        if let Some((_, hit)) = self.dirs.lock().unwrap().iter().find(|(k, _)| *k == key) {
            return Ok(hit.clone());
        }
        let entries = Arc::new(self.filesystems[fs].fs.list(dir)?);
        let mut cache = self.dirs.lock().unwrap();
        cache.push_front((key, entries.clone()));
        cache.truncate(DIR_CACHE);
        Ok(entries)
    }

    /// Finds a tree path across mounts: its filesystem, inode number and inode.
    fn resolve(&self, path: &[u8]) -> io::Result<(usize, u32, Inode)> {
        let mut fs = 0;
        let mut ino = ROOT_INO;
        let mut prefix: Vec<u8> = Vec::new();
        for part in path.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
            let inode = self.filesystems[fs].fs.inode(ino)?;
            if Kind::from_mode(inode.mode.into()) != Some(Kind::Dir) {
                return Err(io::Error::new(io::ErrorKind::NotFound, "not a directory"));
            }
            let entries = self.list(fs, &inode)?;
            let i = entries
                .binary_search_by(|e| e.name.as_slice().cmp(part))
                .map_err(|_| io::Error::new(io::ErrorKind::NotFound, "no such file"))?;
            ino = entries[i].ino;
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(part);
            if let Some(&m) = self.mounts.get(&prefix) {
                fs = m;
                ino = ROOT_INO;
            }
        }
        let inode = self.filesystems[fs].fs.inode(ino)?;
        Ok((fs, ino, inode))
    }

    fn entry(&self, fs: usize, path: &[u8], inode: &Inode) -> io::Result<Option<Entry>> {
        let ext = &self.filesystems[fs].fs;
        let Some(kind) = Kind::from_mode(inode.mode.into()) else {
            return Ok(None);
        };
        let mut e = Entry::new(path.to_vec(), kind);
        e.mode = inode.perm();
        e.uid = inode.uid;
        e.gid = inode.gid;
        e.mtime = inode.mtime;
        e.mtime_nsec = inode.mtime_nsec;
        match kind {
            Kind::File => {
                e.size = inode.size;
                if inode.links > 1 {
                    e.inode = Some((fs as u64, inode.ino as u64));
                }
                // As for a directory source: fewer blocks than the size needs means holes.
                if inode.allocated_bytes(ext.block_size) < inode.size && !inode.is_inline() {
                    let runs = ext.runs(inode)?;
                    e.sparse = Some(
                        ext.data_extents(inode, &runs)
                            .into_iter()
                            .map(|r| Extent {
                                offset: r.start,
                                len: r.end - r.start,
                            })
                            .collect(),
                    );
                }
            }
            Kind::Symlink => e.link = self.link_target(fs, inode)?,
            Kind::Char | Kind::Block => (e.major, e.minor) = inode.device(),
            _ => {}
        }
        if kind != Kind::Socket {
            e.xattrs = ext.xattrs(inode)?;
        }
        Ok(Some(e))
    }

    fn link_target(&self, fs: usize, inode: &Inode) -> io::Result<Vec<u8>> {
        if inode.is_fast_symlink() {
            return Ok(inode.block[..inode.size as usize].to_vec());
        }
        self.filesystems[fs].fs.read_all(inode, 65536)
    }

    fn descend(
        &self,
        fs: usize,
        dir: &Inode,
        path: &mut Vec<u8>,
        stack: &mut Walked,
        visit: &mut Visit<'_>,
        skipped: &mut Skips,
    ) -> Result<()> {
        let entries = self.list(fs, dir).map_err(|e| self.at(fs, path, e))?;
        for child in entries.iter() {
            let len = path.len();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&child.name);
            let (cfs, cino) = match self.mounts.get(path.as_slice()) {
                Some(&m) => (m, ROOT_INO),
                None => (fs, child.ino),
            };
            let inode = self.filesystems[cfs]
                .fs
                .inode(cino)
                .map_err(|e| self.at(cfs, path, e))?;
            let lost_found = dir.ino == ROOT_INO && cfs == fs && child.name == b"lost+found";
            let result = self.visit_child(cfs, &inode, lost_found, path, stack, visit, skipped);
            path.truncate(len);
            result?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn visit_child(
        &self,
        fs: usize,
        inode: &Inode,
        lost_found: bool,
        path: &mut Vec<u8>,
        stack: &mut Walked,
        visit: &mut Visit<'_>,
        skipped: &mut Skips,
    ) -> Result<()> {
        let shown = || format!("/{}", String::from_utf8_lossy(path));
        let Some(entry) = self
            .entry(fs, path, inode)
            .map_err(|e| self.at(fs, path, e))?
        else {
            skipped.push(Skipped {
                path: shown(),
                reason: format!("inode {} has an unknown file type", inode.ino),
            });
            return Ok(());
        };
        if entry.kind == Kind::Socket {
            skipped.push(Skipped {
                path: shown(),
                reason: "socket (recreated by its service)".into(),
            });
            return Ok(());
        }
        let is_dir = entry.kind == Kind::Dir;
        // mkfs makes lost+found; it is the filesystem's, not the server's, when empty.
        if is_dir && lost_found {
            let empty = self
                .list(fs, inode)
                .map_err(|e| self.at(fs, path, e))?
                .is_empty();
            if empty {
                return Ok(());
            }
        }
        visit(entry)?;
        if !is_dir {
            return Ok(());
        }
        let key = (fs, inode.ino);
        if stack.above.contains(&key) || stack.above.len() >= MAX_DEPTH {
            return Err(self.at(
                fs,
                path,
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "directory cycle: an entry leads back to a directory above it",
                ),
            ));
        }
        // A directory has one parent. Reached again from another, its whole subtree
        // would be walked again, and hardlinked directories fanning out make that
        // exponential: the filesystem is corrupt.
        if !stack.seen.insert(key) {
            return Err(self.at(
                fs,
                path,
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "directory inode {} is reached a second time (a hardlinked directory: the filesystem is corrupt)",
                        inode.ino
                    ),
                ),
            ));
        }
        stack.above.push(key);
        let result = self.descend(fs, inode, path, stack, visit, skipped);
        stack.above.pop();
        result
    }

    fn at(&self, fs: usize, path: &[u8], e: io::Error) -> Error {
        Error::Disk {
            image: self.image.clone(),
            reason: format!(
                "{}: /{}: {e}",
                self.filesystems[fs].volume,
                String::from_utf8_lossy(path)
            ),
        }
    }

    fn find(&self, path: &[u8]) -> Result<(usize, u32, Inode)> {
        let norm =
            normalize(path).ok_or_else(|| Error::NotFound(String::from_utf8_lossy(path).into()))?;
        self.resolve(&norm).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::NotFound(format!("/{}", String::from_utf8_lossy(&norm)))
            } else {
                self.at(0, &norm, e)
            }
        })
    }

    fn file(&self, path: &[u8]) -> Result<(usize, Inode)> {
        let (fs, _, inode) = self.find(path)?;
        if Kind::from_mode(inode.mode.into()) != Some(Kind::File) {
            return Err(Error::NotFound(format!(
                "/{} (not a regular file)",
                String::from_utf8_lossy(path)
            )));
        }
        Ok((fs, inode))
    }

    fn reader(
        &self,
        fs: usize,
        path: &[u8],
        inode: &Inode,
    ) -> Result<Named<diskimage::ext4::FileReader<'_>>> {
        let reader = self.filesystems[fs]
            .fs
            .reader(inode)
            .map_err(|e| self.at(fs, path, e))?;
        Ok(Named {
            inner: reader,
            name: format!("{}: {}", self.image.display(), self.filesystems[fs].volume),
        })
    }
}

impl Source for DiskSource {
    fn describe(&self) -> String {
        format!("{} {}", self.format.name(), self.image.display())
    }

    fn walk(&self, visit: &mut Visit<'_>) -> Result<Skips> {
        let mut skipped = self.skipped.clone();
        let root = self.filesystems[0]
            .fs
            .inode(ROOT_INO)
            .map_err(|e| self.at(0, b"", e))?;
        let mut path = Vec::new();
        let mut stack = Walked {
            above: vec![(0, ROOT_INO)],
            seen: HashSet::from([(0, ROOT_INO)]),
        };
        self.descend(0, &root, &mut path, &mut stack, visit, &mut skipped)?;
        Ok(skipped)
    }

    fn metadata(&self, path: &[u8]) -> Result<Entry> {
        let (fs, _, inode) = self.find(path)?;
        let norm = normalize(path).unwrap_or_default();
        self.entry(fs, &norm, &inode)
            .map_err(|e| self.at(fs, &norm, e))?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "/{} (unknown file type)",
                    String::from_utf8_lossy(&norm)
                ))
            })
    }

    fn read_dir(&self, path: &[u8]) -> Result<Vec<Vec<u8>>> {
        let (fs, _, inode) = self.find(path)?;
        if Kind::from_mode(inode.mode.into()) != Some(Kind::Dir) {
            return Err(Error::NotFound(format!(
                "/{} (not a directory)",
                String::from_utf8_lossy(path)
            )));
        }
        let entries = self.list(fs, &inode).map_err(|e| self.at(fs, path, e))?;
        Ok(entries.iter().map(|e| e.name.clone()).collect())
    }

    fn open(&self, path: &[u8]) -> Result<Box<dyn Read + Send + '_>> {
        let (fs, inode) = self.file(path)?;
        Ok(Box::new(self.reader(fs, path, &inode)?))
    }

    fn open_extents(&self, path: &[u8], extents: &[Extent]) -> Result<Box<dyn Read + Send + '_>> {
        let (fs, inode) = self.file(path)?;
        let reader = self.reader(fs, path, &inode)?;
        Ok(Box::new(oci::tar::ExtentReader::new(reader, extents)))
    }

    fn read_link(&self, path: &[u8]) -> Result<Vec<u8>> {
        let (fs, _, inode) = self.find(path)?;
        if Kind::from_mode(inode.mode.into()) != Some(Kind::Symlink) {
            return Err(Error::NotFound(format!(
                "/{} (not a symlink)",
                String::from_utf8_lossy(path)
            )));
        }
        self.link_target(fs, &inode)
            .map_err(|e| self.at(fs, path, e))
    }
}

/// A file reader whose errors name the image and volume.
struct Named<R> {
    inner: R,
    name: String,
}

impl<R: Read> Read for Named<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.name)))
    }
}

impl<R: io::Seek> io::Seek for Named<R> {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// What rehost can say about a volume it does not read.
fn what_to_do(content: Content) -> String {
    match content {
        Content::Luks => "LUKS-encrypted volume: rehost cannot read it; unlock it with `cryptsetup open` and convert the mapped device".into(),
        Content::Xfs | Content::Btrfs => format!(
            "{}: rehost reads ext2/3/4 itself; run it as root on a raw image to have it mount the partition read-only through a loop device, or mount it yourself (`mount -o ro,loop`) and convert the directory",
            content.name()
        ),
        Content::LvmPv => "LVM physical volume whose logical volumes could not be read".into(),
        Content::Swap => "swap".into(),
        other => format!("{} (no filesystem rehost reads)", other.name()),
    }
}
