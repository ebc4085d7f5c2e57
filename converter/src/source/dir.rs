//! A directory as a source: a mounted disk, an extracted root, or the live `/`.

use super::{Skipped, Skips, Source, Visit};
use crate::entry::{Entry, Extent, Kind};
use crate::error::{Error, IoContext, Result};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct DirOptions {
    /// Stay on the root's filesystem (and the included mounts): a mount point of any
    /// other filesystem is kept as an empty directory.
    pub one_filesystem: bool,
    /// Never descend into the kernel's and runtime's virtual trees (/proc, /sys, /dev, /run).
    pub skip_virtual: bool,
    /// Mount points (tree paths) whose filesystems are included all the same.
    pub include_mounts: Vec<Vec<u8>>,
    /// Tree paths rehost itself made (the ssh helper's directory on the server): left out
    /// as if absent, so a capture neither carries nor reports its own tool.
    pub hidden: Vec<Vec<u8>>,
}

pub(crate) const VIRTUAL: [&[u8]; 4] = [b"proc", b"sys", b"dev", b"run"];

pub struct DirSource {
    root: PathBuf,
    /// The root, opened once: every path of the tree is resolved from it, inside it.
    root_fd: OwnedFd,
    options: DirOptions,
    allowed_devs: HashSet<u64>,
    /// Whether `/proc/self/fd` can name a descriptor (not in a chroot without /proc).
    proc_fds: bool,
}

/// A directory of the tree, found inside the root. Calls that take a path reach its
/// entries as `/proc/self/fd/N/NAME`: the kernel goes straight to the directory the
/// descriptor holds, and NAME is one component, so no symlink of the tree (absolute,
/// or with `..`) can lead a read onto the host's files. A mounted disk of server A
/// converted on machine B never reads B's /etc. Without /proc (a chroot) or openat2
/// (kernels before 5.6), the directory is the root joined with the path that the
/// user-space resolver gave: confined as well, though not against a tree that changes
/// meanwhile.
struct DirAt {
    path: PathBuf,
    /// Holds the directory that `path` names through /proc.
    _fd: Option<OwnedFd>,
}

impl DirAt {
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    fn child(&self, name: &[u8]) -> PathBuf {
        self.path.join(OsStr::from_bytes(name))
    }
}

impl DirSource {
    pub fn new(root: &Path, options: DirOptions) -> Result<Self> {
        let meta = std::fs::metadata(root).at(root)?;
        let mut allowed_devs = HashSet::from([meta.dev()]);
        for mount in &options.include_mounts {
            let path = root.join(OsStr::from_bytes(mount));
            let m = std::fs::metadata(&path).map_err(|e| Error::BadSource {
                path: path.clone(),
                reason: format!("--include-mount: {e}"),
            })?;
            allowed_devs.insert(m.dev());
        }
        let root_fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(root, e.into()))?;
        let proc_fds = Path::new(&format!("/proc/self/fd/{}", root_fd.as_raw_fd())).is_dir();
        Ok(DirSource {
            root: root.to_path_buf(),
            root_fd,
            options,
            allowed_devs,
            proc_fds,
        })
    }

    /// The path as messages show it (never opened).
    fn full(&self, path: &[u8]) -> PathBuf {
        if path.is_empty() {
            self.root.clone()
        } else {
            self.root.join(OsStr::from_bytes(path))
        }
    }

    /// The directory `dir` of the tree, every symlink on the way resolved inside the
    /// root (`openat2(RESOLVE_IN_ROOT)`), as a chroot would.
    fn open_dir(&self, dir: &[u8]) -> io::Result<DirAt> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let rel: &[u8] = if dir.is_empty() { b"." } else { dir };
        let slowly = || -> io::Result<DirAt> {
            let resolved = self.resolve_slowly(rel)?;
            let path = self.full(&resolved);
            if !std::fs::symlink_metadata(&path)?.is_dir() {
                return Err(io::Error::from(io::ErrorKind::NotADirectory));
            }
            Ok(DirAt { path, _fd: None })
        };
        if !self.proc_fds {
            return slowly();
        }
        match rustix::fs::openat2(
            &self.root_fd,
            OsStr::from_bytes(rel),
            flags,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => Ok(DirAt {
                path: PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
                _fd: Some(fd),
            }),
            // Kernels before 5.6 (the legacy servers rehost runs on) have no openat2.
            Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM) => slowly(),
            Err(e) => Err(e.into()),
        }
    }

    /// `path` resolved inside the root one component at a time (see [`Self::open_dir`]).
    fn resolve_slowly(&self, path: &[u8]) -> io::Result<Vec<u8>> {
        use rehost_init::model::fs::{resolve_in_root, Node};
        let root = &self.root;
        let mut node = |p: &[u8]| -> io::Result<Option<Node>> {
            let full = root.join(OsStr::from_bytes(p));
            match std::fs::symlink_metadata(&full) {
                Ok(m) if m.is_dir() => Ok(Some(Node::Dir)),
                Ok(m) if m.file_type().is_symlink() => Ok(Some(Node::Link(
                    std::fs::read_link(&full)?.into_os_string().into_vec(),
                ))),
                Ok(_) => Ok(Some(Node::Other)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        };
        resolve_in_root(path, true, &mut node)
            .map_err(|e| e.into_io(&String::from_utf8_lossy(path)))
    }

    /// The directory that holds `path`, opened inside the root, and `path`'s last name.
    fn parent_of<'p>(&self, path: &'p [u8]) -> io::Result<(DirAt, &'p [u8])> {
        match path.iter().rposition(|&b| b == b'/') {
            Some(cut) => Ok((self.open_dir(&path[..cut])?, &path[cut + 1..])),
            None => Ok((self.open_dir(b"")?, path)),
        }
    }

    /// `path` as a path the kernel resolves inside the root: its directory held open,
    /// its last component not followed by the calls that use it.
    fn confined(&self, path: &[u8]) -> io::Result<(DirAt, PathBuf)> {
        if path.is_empty() {
            let dir = self.open_dir(b"")?;
            let p = dir.path();
            return Ok((dir, p));
        }
        let (dir, name) = self.parent_of(path)?;
        let p = dir.child(name);
        Ok((dir, p))
    }

    /// The file `path` for reading, resolved inside the root, its last component not
    /// followed: one `openat2` call, no dearer than the plain open it replaces.
    fn open_file(&self, path: &[u8]) -> io::Result<std::fs::File> {
        let open = |noatime: bool| {
            // O_NONBLOCK: a FIFO put where a file was must not hang the read (it is
            // refused below); on a regular file the flag changes nothing.
            let mut flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
            if noatime {
                flags |= OFlags::NOATIME;
            }
            rustix::fs::openat2(
                &self.root_fd,
                OsStr::from_bytes(path),
                flags,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            )
        };
        // O_NOATIME is refused (EPERM) on files we do not own when not root.
        let file: std::fs::File = match open(true).or_else(|e| {
            if e == rustix::io::Errno::PERM {
                open(false)
            } else {
                Err(e)
            }
        }) {
            Ok(fd) => fd.into(),
            Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM) => {
                let (_dir, full) = self.confined(path)?;
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(full)?
            }
            Err(e) => return Err(e.into()),
        };
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file (changed while reading?)",
            ));
        }
        Ok(file)
    }

    /// `full` is where `path` is reached (inside its directory's descriptor).
    fn entry(
        &self,
        path: &[u8],
        full: &Path,
        meta: &std::fs::Metadata,
    ) -> io::Result<Option<Entry>> {
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            Kind::File
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_char_device() {
            Kind::Char
        } else if ft.is_block_device() {
            Kind::Block
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_socket() {
            Kind::Socket
        } else {
            return Ok(None);
        };
        let mut e = Entry::new(path.to_vec(), kind);
        e.mode = meta.mode() & 0o7777;
        e.uid = meta.uid();
        e.gid = meta.gid();
        e.mtime = meta.mtime();
        e.mtime_nsec = meta.mtime_nsec() as u32;
        match kind {
            Kind::File => {
                e.size = meta.len();
                if meta.nlink() > 1 {
                    e.inode = Some((meta.dev(), meta.ino()));
                }
                // Fewer blocks than the size needs: there may be holes worth keeping as
                // holes. The block count is only a hint (a file being appended to while
                // its blocks are allocated, a compressing file system); the file is
                // sparse only if it really has a hole. Else it is read as a plain file,
                // whose growth during the capture is then seen.
                if meta.blocks() * 512 < meta.len() {
                    let extents = data_extents(full, meta.len())?;
                    let whole = [Extent {
                        offset: 0,
                        len: meta.len(),
                    }];
                    if extents != whole {
                        e.sparse = Some(extents);
                    }
                }
            }
            Kind::Symlink => {
                e.link = std::fs::read_link(full)?.into_os_string().into_vec();
            }
            Kind::Char | Kind::Block => {
                let rdev = meta.rdev();
                e.major = libc::major(rdev);
                e.minor = libc::minor(rdev);
            }
            _ => {}
        }
        if kind != Kind::Socket {
            e.xattrs = read_xattrs(full)?;
        }
        Ok(Some(e))
    }

    fn descend(
        &self,
        dir: &[u8],
        dev: u64,
        visit: &mut Visit<'_>,
        skipped: &mut Skips,
    ) -> Result<()> {
        let listed = self.open_dir(dir).and_then(|at| Ok((list(&at)?, at)));
        let (names, at) = match listed {
            Ok(found) => found,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                skipped.push(skip(dir, "vanished while reading"));
                return Ok(());
            }
            Err(e) => return Err(Error::io(self.full(dir), e)),
        };
        for name in names.iter() {
            let full = at.child(name);
            let path = if dir.is_empty() {
                name.to_vec()
            } else {
                [dir, b"/", name].concat()
            };
            if self.options.hidden.contains(&path) {
                continue;
            }
            let meta = match std::fs::symlink_metadata(&full) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    skipped.push(skip(&path, "vanished while reading"));
                    continue;
                }
                Err(e) => return Err(Error::io(self.full(&path), e)),
            };
            let entry = match self.entry(&path, &full, &meta) {
                Ok(Some(e)) => e,
                Ok(None) => {
                    skipped.push(skip(&path, "unsupported file type"));
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    skipped.push(skip(&path, "vanished while reading"));
                    continue;
                }
                Err(e) => return Err(Error::io(self.full(&path), e)),
            };
            if entry.kind == Kind::Socket {
                skipped.push(skip(&path, "socket (recreated by its service)"));
                continue;
            }
            let is_dir = entry.kind == Kind::Dir;
            let other_fs = self.options.one_filesystem
                && meta.dev() != dev
                && !self.allowed_devs.contains(&meta.dev());
            if other_fs && !is_dir {
                skipped.push(skip(&path, "on another filesystem"));
                continue;
            }
            visit(entry)?;
            if !is_dir {
                continue;
            }
            if self.options.skip_virtual && dir.is_empty() && VIRTUAL.contains(&path.as_slice()) {
                skipped.push(skip(&path, "virtual filesystem (kept empty)"));
                continue;
            }
            if other_fs {
                skipped.push(skip(
                    &path,
                    "mount point of another filesystem (kept empty; --include-mount to keep it)",
                ));
                continue;
            }
            self.descend(&path, meta.dev(), visit, skipped)?;
        }
        Ok(())
    }
}

/// The names in one directory, sorted by bytes: what the walk holds for each level of
/// the path it is in. The names lie end to end in one buffer, so a directory of a
/// million files costs its names' bytes and 8 bytes each, not an allocation each.
#[derive(Default)]
struct Names {
    bytes: Vec<u8>,
    /// (start, length) of each name in `bytes`, in sorted order.
    spans: Vec<(u32, u32)>,
}

impl Names {
    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.spans
            .iter()
            .map(|&(start, len)| &self.bytes[start as usize..(start + len) as usize])
    }
}

/// The sorted names in a directory.
fn list(dir: &DirAt) -> io::Result<Names> {
    let mut names = Names::default();
    for item in std::fs::read_dir(dir.path())? {
        let name = item?.file_name();
        let name = name.as_bytes();
        let start = u32::try_from(names.bytes.len())
            .map_err(|_| io::Error::other("more than 4 GiB of names in one directory"))?;
        names.bytes.extend_from_slice(name);
        names.spans.push((start, name.len() as u32));
    }
    let bytes = &names.bytes;
    names.spans.sort_unstable_by(|a, b| {
        bytes[a.0 as usize..(a.0 + a.1) as usize].cmp(&bytes[b.0 as usize..(b.0 + b.1) as usize])
    });
    names.bytes.shrink_to_fit();
    names.spans.shrink_to_fit();
    Ok(names)
}

fn skip(path: &[u8], reason: &str) -> Skipped {
    Skipped {
        path: format!("/{}", String::from_utf8_lossy(path)),
        reason: reason.into(),
    }
}

impl Source for DirSource {
    fn describe(&self) -> String {
        if self.options.one_filesystem {
            format!("live root {}", self.root.display())
        } else {
            format!("directory {}", self.root.display())
        }
    }

    fn walk(&self, visit: &mut Visit<'_>) -> Result<Skips> {
        let mut skipped = Skips::default();
        let dev = std::fs::metadata(&self.root).at(&self.root)?.dev();
        self.descend(b"", dev, visit, &mut skipped)?;
        Ok(skipped)
    }

    fn metadata(&self, path: &[u8]) -> Result<Entry> {
        let shown = self.full(path);
        let (_dir, full) = self.confined(path).at(&shown)?;
        let meta = std::fs::symlink_metadata(&full).at(&shown)?;
        self.entry(path, &full, &meta)
            .at(&shown)?
            .ok_or_else(|| Error::NotFound(shown.display().to_string()))
    }

    fn read_dir(&self, path: &[u8]) -> Result<Vec<Vec<u8>>> {
        let hidden = |name: &[u8]| {
            let child = if path.is_empty() {
                name.to_vec()
            } else {
                [path, b"/", name].concat()
            };
            self.options.hidden.contains(&child)
        };
        self.open_dir(path)
            .and_then(|dir| list(&dir))
            .map(|names| {
                names
                    .iter()
                    .filter(|n| !hidden(n))
                    .map(<[u8]>::to_vec)
                    .collect()
            })
            .at(self.full(path))
    }

    fn open(&self, path: &[u8]) -> Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(self.open_file(path).at(self.full(path))?))
    }

    fn open_extents(&self, path: &[u8], extents: &[Extent]) -> Result<Box<dyn Read + Send + '_>> {
        let file = self.open_file(path).at(self.full(path))?;
        Ok(Box::new(oci::tar::ExtentReader::new(file, extents)))
    }
}

/// The data extents of a file with holes, from SEEK_DATA / SEEK_HOLE.
fn data_extents(path: &Path, size: u64) -> io::Result<Vec<Extent>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let fd = file.as_raw_fd();
    let mut extents = Vec::new();
    let mut pos: i64 = 0;
    while (pos as u64) < size {
        // SAFETY: lseek on a descriptor we own.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole up to the end
            }
            return Err(err);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let end = (hole as u64).min(size);
        if end > data as u64 {
            extents.push(Extent {
                offset: data as u64,
                len: end - data as u64,
            });
        }
        pos = hole;
    }
    Ok(extents)
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::other("path contains NUL"))
}

/// All extended attributes of a path (not following symlinks), sorted by name.
pub(crate) fn read_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let c = cpath(path)?;
    let mut names = vec![0u8; 1024];
    let len = loop {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ERANGE) => names.resize(names.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(err),
        }
    };
    let mut out = Vec::new();
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name).map_err(|_| io::Error::other("xattr name"))?;
        let mut value = vec![0u8; 256];
        loop {
            // SAFETY: the buffer is valid for its length.
            let n = unsafe {
                libc::lgetxattr(
                    c.as_ptr(),
                    cname.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            if n >= 0 {
                value.truncate(n as usize);
                break;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::ERANGE) => value.resize(value.len() * 16, 0),
                Some(libc::ENODATA) => break, // removed meanwhile; kept empty
                _ => return Err(err),
            }
        }
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO where a file is read (put there after the walk, or asked for by name) is
    /// an error at once, not a read that waits forever; a symlink out of the root is
    /// followed inside it.
    #[test]
    fn reads_are_confined_and_never_block() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let fifo = std::ffi::CString::new(root.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        std::fs::create_dir(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), "guest\n").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("up")).unwrap();
        let source = DirSource::new(root, DirOptions::default()).unwrap();
        let e = source
            .open(b"fifo")
            .err()
            .expect("a FIFO is refused")
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let mut got = String::new();
        source
            .open(b"up/hostname")
            .unwrap()
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(got, "guest\n");
        assert_eq!(source.read_dir(b"up").unwrap(), vec![b"hostname".to_vec()]);
    }
}
