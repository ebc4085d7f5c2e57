//! Unpacking one layer tar into a directory, safe against hostile layers.
//!
//! Every entry is created relative to a directory file descriptor whose path was resolved
//! with `openat2(RESOLVE_IN_ROOT)`: the kernel resolves `..` and symlinks (absolute or
//! relative) as if the target directory were `/`, so no entry, symlink or hardlink can
//! reach a file outside it, whatever the earlier entries of the layer made. The last
//! component is always created with `*at` calls that do not follow it. `..` in an entry
//! name is refused outright.
//!
//! Whiteouts are written in one of two forms: as overlayfs expects them in a lower layer
//! (a 0/0 character device, an opaque-directory xattr), or applied to a merged tree (the
//! copy fallback), where they delete what the earlier layers put there.

use crate::error::{Error, Result};
use oci::entry::Extent;
use oci::tar::{sparse, EntryType, Header, Reader};
use rustix::fs::{
    AtFlags, Dev, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, XattrFlags,
};
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// How whiteout entries are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// As an overlayfs lower layer: `.wh.NAME` becomes a 0/0 character device NAME and
    /// `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory.
    Overlay,
    /// Applied onto the layers below, already in the same directory: NAME is removed,
    /// an opaque directory loses what earlier layers put in it.
    Apply,
}

/// What one layer held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    pub whiteouts: u64,
    pub skipped: u64,
}

/// Unpacks the tar stream `tar` into the existing directory `root`. `layer` names the
/// layer in errors.
pub fn unpack<R: Read>(tar: R, root: &Path, whiteouts: Whiteouts, layer: &str) -> Result<Stats> {
    let root_fd = rustix::fs::open(
        root,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(root, e.into()))?;
    let mut u = Unpacker {
        root: root_fd,
        whiteouts,
        layer,
        written: HashSet::new(),
        dir_times: Vec::new(),
        stats: Stats::default(),
        last_parent: None,
    };
    let mut archive = oci::tar::Reader::new(tar);
    while let Some(header) = archive.next_entry().map_err(|e| u.bad("(archive)", e))? {
        u.entry(&header, &mut archive)?;
    }
    // Directory times last, deepest first, as writing children changed them.
    for (parts, time) in std::mem::take(&mut u.dir_times).into_iter().rev() {
        if let Ok(fd) = u.open_dir(&parts, false) {
            let _ = rustix::fs::futimens(&fd, &times(time));
        }
    }
    Ok(u.stats)
}

struct Unpacker<'a> {
    root: OwnedFd,
    whiteouts: Whiteouts,
    layer: &'a str,
    /// Paths this layer wrote, so an opaque whiteout spares them (Apply mode).
    written: HashSet<Vec<OsString>>,
    dir_times: Vec<(Vec<OsString>, u64)>,
    stats: Stats,
    /// The directory the previous entry went into, still open: a layer lists a
    /// directory's entries one after another, and an entry can change no directory
    /// above its own (one that does has a shorter parent, and is resolved again).
    last_parent: Option<(Vec<OsString>, OwnedFd)>,
}

/// An entry name (or link target) with a `..` component.
#[derive(Debug, thiserror::Error)]
#[error("`..` would leave the root")]
struct LeavesRoot;

/// An entry name as components, without `.` and empty ones; `..` is refused.
fn components(raw: &[u8]) -> std::result::Result<Vec<OsString>, LeavesRoot> {
    let mut out = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(LeavesRoot),
            p => out.push(OsStr::from_bytes(p).to_os_string()),
        }
    }
    Ok(out)
}

fn join(parts: &[OsString]) -> PathBuf {
    parts.iter().collect()
}

fn times(mtime: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime as i64,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// `/proc/self/fd/N/NAME`: a path for calls that have no `*at` form (lsetxattr, the
/// recursive removal). The kernel resolves the fd link itself, NAME is not followed.
fn fd_path(dir: &impl AsRawFd, name: &OsStr) -> PathBuf {
    Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name)
}

impl Unpacker<'_> {
    fn bad(&self, entry: &str, reason: impl std::fmt::Display) -> Error {
        Error::Entry {
            layer: self.layer.to_string(),
            entry: entry.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Opens the directory `parts` inside the root, the kernel keeping every step of the
    /// resolution inside it; with `create`, missing directories are made (0755), also
    /// where a symlink points (inside the root) to a directory that does not exist yet.
    fn open_dir(&self, parts: &[OsString], create: bool) -> io::Result<OwnedFd> {
        self.open_dir_depth(parts, create, 0)
    }

    fn open_dir_depth(&self, parts: &[OsString], create: bool, depth: u32) -> io::Result<OwnedFd> {
        let path = if parts.is_empty() {
            PathBuf::from(".")
        } else {
            join(parts)
        };
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let open = || rustix::fs::openat2(&self.root, &path, flags, Mode::empty(), resolve);
        match open() {
            Ok(fd) => Ok(fd),
            Err(rustix::io::Errno::NOENT) if create && !parts.is_empty() && depth < 40 => {
                let (name, parent_parts) = parts.split_last().expect("not empty");
                let parent = self.open_dir_depth(parent_parts, true, depth + 1)?;
                match rustix::fs::mkdirat(&parent, name.as_os_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) => {}
                    Err(rustix::io::Errno::EXIST) => {
                        // A symlink to a missing directory: make its target, read as the
                        // kernel would inside the root (`..` stops at the root).
                        if let Ok(target) =
                            rustix::fs::readlinkat(&parent, name.as_os_str(), Vec::new())
                        {
                            let target = target.as_bytes();
                            let mut dest: Vec<OsString> = if target.starts_with(b"/") {
                                Vec::new()
                            } else {
                                parent_parts.to_vec()
                            };
                            for part in target.split(|&b| b == b'/') {
                                match part {
                                    b"" | b"." => {}
                                    b".." => {
                                        dest.pop();
                                    }
                                    p => dest.push(OsStr::from_bytes(p).to_os_string()),
                                }
                            }
                            self.open_dir_depth(&dest, true, depth + 1)?;
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
                Ok(open()?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes NAME from `dir` (recursively for a directory) without following it.
    fn remove(&self, dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                // std's remove_dir_all works with openat and never follows symlinks.
                std::fs::remove_dir_all(fd_path(dir, name))
            }
            Ok(_) => Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?),
        }
    }

    fn entry<R: Read>(&mut self, header: &Header, archive: &mut Reader<R>) -> Result<()> {
        let raw = &header.path;
        let shown = String::from_utf8_lossy(raw).into_owned();
        let parts = components(raw).map_err(|r| self.bad(&shown, r))?;
        let Some((name, parent_parts)) = parts.split_last() else {
            return Ok(()); // the root itself: its directory already exists
        };
        let name = name.clone();
        let parent = match self.last_parent.take() {
            Some((parts, fd)) if parts == parent_parts => fd,
            _ => self
                .open_dir(parent_parts, true)
                .map_err(|e| self.bad(&shown, format!("parent directory: {e}")))?,
        };
        let result = self.entry_in(header, archive, &parts, &parent, &name, &shown);
        self.last_parent = Some((parent_parts.to_vec(), parent));
        result
    }

    /// The entry `name` of `header`, in its directory `parent`.
    fn entry_in<R: Read>(
        &mut self,
        header: &Header,
        archive: &mut Reader<R>,
        parts: &[OsString],
        parent: &OwnedFd,
        name: &OsStr,
        shown: &str,
    ) -> Result<()> {
        let parent_parts = &parts[..parts.len() - 1];
        let name_bytes = name.as_bytes();

        if name_bytes == OPAQUE {
            self.stats.whiteouts += 1;
            return match self.whiteouts {
                Whiteouts::Overlay => {
                    rustix::fs::fsetxattr(parent, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
                        .map_err(|e| self.bad(shown, format!("opaque xattr: {e}")))
                }
                Whiteouts::Apply => self
                    .clear_earlier(parent, parent_parts)
                    .map_err(|e| self.bad(shown, format!("opaque directory: {e}"))),
            };
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX) {
            self.stats.whiteouts += 1;
            let hidden = OsStr::from_bytes(hidden);
            if hidden.is_empty() || hidden == ".." || hidden == "." {
                return Err(self.bad(shown, "whiteout of nothing"));
            }
            return match self.whiteouts {
                Whiteouts::Overlay => self
                    .remove(parent, hidden)
                    .and_then(|_| {
                        Ok(rustix::fs::mknodat(
                            parent,
                            hidden,
                            FileType::CharacterDevice,
                            Mode::empty(),
                            0,
                        )?)
                    })
                    .map_err(|e| self.bad(shown, format!("whiteout: {e}"))),
                Whiteouts::Apply => self
                    .remove(parent, hidden)
                    .map_err(|e| self.bad(shown, format!("whiteout: {e}"))),
            };
        }

        self.stats.entries += 1;
        let xattrs = xattrs(header);
        let mode = Mode::from_raw_mode(header.mode & 0o7777);
        let (Ok(uid), Ok(gid)) = (u32::try_from(header.uid), u32::try_from(header.gid)) else {
            return Err(self.bad(shown, "uid or gid out of range"));
        };
        let mtime = header.mtime.max(0) as u64;

        let result = match header.kind {
            EntryType::Dir => self
                .make_dir(parent, name, mode, uid, gid, &xattrs)
                .map(|_| self.dir_times.push((parts.to_vec(), mtime))),
            EntryType::File => {
                let meta = FileMeta {
                    mode,
                    uid,
                    gid,
                    mtime,
                    xattrs: &xattrs,
                };
                match &header.sparse {
                    Some(s) => {
                        let extents = archive
                            .sparse_extents(header)
                            .map_err(|e| self.bad(shown, e))?;
                        self.make_sparse_file(
                            parent,
                            name,
                            &mut archive.data(),
                            &extents,
                            s.real_size,
                            &meta,
                        )
                    }
                    None => self.make_file(parent, name, &mut archive.data(), &meta),
                }
            }
            EntryType::Symlink => {
                let target = header.link.clone().unwrap_or_default();
                self.remove(parent, name)
                    .and_then(|_| {
                        Ok(rustix::fs::symlinkat(
                            OsStr::from_bytes(&target),
                            parent,
                            name,
                        )?)
                    })
                    .and_then(|_| self.finish_link(parent, name, uid, gid, mtime, &xattrs))
            }
            EntryType::Hardlink => {
                let target = header.link.clone().unwrap_or_default();
                let tparts = components(&target).map_err(|r| self.bad(shown, r))?;
                let Some((tname, tparent)) = tparts.split_last() else {
                    return Err(self.bad(shown, "hardlink to the root"));
                };
                if tparts == parts {
                    return Ok(());
                }
                // The target's directory is resolved inside the root like any other, and
                // linkat without AT_SYMLINK_FOLLOW links a symlink itself, never its target.
                let tdir = self
                    .open_dir(tparent, false)
                    .map_err(|e| self.bad(shown, format!("hardlink target: {e}")))?;
                self.remove(parent, name).and_then(|_| {
                    Ok(rustix::fs::linkat(
                        &tdir,
                        tname,
                        parent,
                        name,
                        AtFlags::empty(),
                    )?)
                })
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let ftype = match header.kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let dev: Dev = rustix::fs::makedev(header.major, header.minor);
                self.remove(parent, name)
                    .and_then(|_| Ok(rustix::fs::mknodat(parent, name, ftype, mode, dev)?))
                    .and_then(|_| {
                        rustix::fs::chownat(
                            parent,
                            name,
                            Some(rustix::fs::Uid::from_raw(uid)),
                            Some(rustix::fs::Gid::from_raw(gid)),
                            AtFlags::SYMLINK_NOFOLLOW,
                        )?;
                        rustix::fs::chmodat(parent, name, mode, AtFlags::empty())?;
                        let _ = rustix::fs::utimensat(
                            parent,
                            name,
                            &times(mtime),
                            AtFlags::SYMLINK_NOFOLLOW,
                        );
                        Ok(())
                    })
            }
            EntryType::Other(byte) => {
                tracing::warn!(
                    "layer {}: skipping `{shown}` of type {:?}",
                    self.layer,
                    byte as char
                );
                self.stats.skipped += 1;
                return Ok(());
            }
        };
        result.map_err(|e| self.bad(shown, e))?;
        if self.whiteouts == Whiteouts::Apply {
            self.written.insert(parts.to_vec());
        }
        Ok(())
    }

    fn make_dir(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        mode: Mode,
        uid: u32,
        gid: u32,
        xattrs: &[(String, Vec<u8>)],
    ) -> io::Result<()> {
        match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
            Ok(_) => {
                self.remove(parent, name)?;
                rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))?;
            }
            Err(rustix::io::Errno::NOENT) => {
                rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))?
            }
            Err(e) => return Err(e.into()),
        }
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        set_owner_mode_xattrs(&fd, uid, gid, mode, xattrs)
    }

    /// A new, empty regular file `name` in `parent` (an earlier entry of that name goes).
    fn new_file(&self, parent: &OwnedFd, name: &OsStr) -> io::Result<File> {
        let create = || {
            rustix::fs::openat(
                parent,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        };
        // Most names are new: the removal is tried only when one is taken.
        let fd = match create() {
            Err(rustix::io::Errno::EXIST) => {
                self.remove(parent, name)?;
                create()?
            }
            other => other?,
        };
        Ok(File::from(fd))
    }

    fn make_file<R: Read>(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        data: &mut R,
        meta: &FileMeta<'_>,
    ) -> io::Result<()> {
        let mut file = self.new_file(parent, name)?;
        io::copy(data, &mut file)?;
        meta.apply(&file)
    }

    /// A sparse file: its extents written where they belong, the holes left unallocated.
    fn make_sparse_file<R: Read>(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        data: &mut R,
        extents: &[Extent],
        real_size: u64,
        meta: &FileMeta<'_>,
    ) -> io::Result<()> {
        let file = self.new_file(parent, name)?;
        sparse::expand(data, extents, real_size, &file, 0)?;
        meta.apply(&file)
    }

    fn finish_link(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        uid: u32,
        gid: u32,
        mtime: u64,
        xattrs: &[(String, Vec<u8>)],
    ) -> io::Result<()> {
        rustix::fs::chownat(
            parent,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        let path = fd_path(parent, name);
        for (key, value) in xattrs {
            // Only trusted.* and security.* can go on a symlink; others are refused by
            // the kernel, and the link works without them.
            let _ = rustix::fs::lsetxattr(&path, key.as_str(), value, XattrFlags::empty());
        }
        let _ = rustix::fs::utimensat(parent, name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW);
        Ok(())
    }

    /// The opaque whiteout in Apply mode: everything in the directory that this layer did
    /// not write came from an earlier layer and goes.
    fn clear_earlier(&self, dir: &OwnedFd, dir_parts: &[OsString]) -> io::Result<()> {
        let names: Vec<OsString> = std::fs::read_dir(fd_path(dir, OsStr::new(".")))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        for name in names {
            let mut full = dir_parts.to_vec();
            full.push(name.clone());
            if !self.written.contains(&full) {
                self.remove(dir, &name)?;
            }
        }
        Ok(())
    }
}

/// A file's owner, mode, time and extended attributes, set once its content is written.
struct FileMeta<'a> {
    mode: Mode,
    uid: u32,
    gid: u32,
    mtime: u64,
    xattrs: &'a [(String, Vec<u8>)],
}

impl FileMeta<'_> {
    fn apply(&self, file: &File) -> io::Result<()> {
        set_owner_mode_xattrs(file, self.uid, self.gid, self.mode, self.xattrs)?;
        rustix::fs::futimens(file, &times(self.mtime))?;
        Ok(())
    }
}

fn set_owner_mode_xattrs(
    fd: &impl AsFd,
    uid: u32,
    gid: u32,
    mode: Mode,
    xattrs: &[(String, Vec<u8>)],
) -> io::Result<()> {
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )?;
    // After chown, which clears the set-id bits.
    rustix::fs::fchmod(fd, mode)?;
    for (key, value) in xattrs {
        if let Err(e) = rustix::fs::fsetxattr(fd, key.as_str(), value, XattrFlags::empty()) {
            if e == rustix::io::Errno::NOTSUP {
                tracing::debug!("xattr {key} not supported here");
            } else {
                return Err(io::Error::new(e.kind(), format!("xattr {key}: {e}")));
            }
        }
    }
    Ok(())
}

/// The entry's extended attributes (PAX `SCHILY.xattr.*`), without overlayfs' own, which
/// a layer must not be able to forge.
fn xattrs(header: &Header) -> Vec<(String, Vec<u8>)> {
    header
        .xattrs()
        .filter_map(|(name, value)| {
            let key = std::str::from_utf8(name).ok()?.to_string();
            (!key.starts_with("trusted.overlay.")).then(|| (key, value.to_vec()))
        })
        .collect()
}

#[cfg(test)]
mod tests;
