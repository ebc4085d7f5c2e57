//! Reading a small file of an image on the host: its /etc/passwd, a record a hook wrote,
//! a file of a cached layer. The path is the image's to shape, so the kernel resolves it
//! inside the image's root (`openat2` with `RESOLVE_IN_ROOT`: `..` and every symlink,
//! absolute ones too, stay in that root); only a regular file is read (a FIFO would block,
//! opened without O_NONBLOCK), and at most [`READ_LIMIT`] bytes of it.

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::Path;

/// The largest such file read: passwd files, records and keys are far smaller.
pub const READ_LIMIT: u64 = 4 << 20;

/// Whether anything (a dangling link too) is at `path` inside `root`, its last component
/// not followed.
pub fn exists(root: &Path, path: &str) -> bool {
    let Ok(dir) = open_root(root) else {
        return false;
    };
    rustix::fs::openat2(
        &dir,
        relative(path),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .is_ok()
}

fn open_root(root: &Path) -> rustix::io::Result<OwnedFd> {
    rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn relative(path: &str) -> &str {
    match path.trim_start_matches('/') {
        "" => ".",
        rel => rel,
    }
}

/// The bytes of the regular file `path` inside `root`; `Ok(None)` when nothing is there.
/// Anything else (a directory, a FIFO, a device, a file over [`READ_LIMIT`]) is an error
/// that names `path`.
pub fn read(root: &Path, path: &str) -> io::Result<Option<Vec<u8>>> {
    let named = |what: &str| io::Error::other(format!("{path}: {what}"));
    let dir = match open_root(root) {
        Ok(d) => d,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let fd = match rustix::fs::openat2(
        &dir,
        relative(path),
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(None),
        Err(e) => return Err(named(&io::Error::from(e).to_string())),
    };
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(named("not a regular file"));
    }
    let mut out = Vec::new();
    std::fs::File::from(fd)
        .take(READ_LIMIT + 1)
        .read_to_end(&mut out)
        .map_err(|e| named(&e.to_string()))?;
    if out.len() as u64 > READ_LIMIT {
        return Err(named(&format!("larger than {} MiB", READ_LIMIT >> 20)));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_stay_inside_and_only_regular_files_are_read() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/group"), "adm:x:4:\n").unwrap();
        symlink("/etc/group", root.join("etc/abs")).unwrap();
        symlink("../../../../../../etc/shadow", root.join("etc/passwd")).unwrap();
        symlink("/dev/zero", root.join("etc/zero")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("etc/fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        assert_eq!(read(root, "/etc/abs").unwrap().unwrap(), b"adm:x:4:\n");
        assert!(exists(root, "/etc/zero") && !exists(root, "/etc/zero/x"));
        // The host's /etc/shadow is not what a link inside names.
        assert_eq!(read(root, "/etc/passwd").unwrap(), None);
        assert_eq!(read(root, "/etc/zero").unwrap(), None);
        let e = read(root, "/etc/fifo").unwrap_err().to_string();
        assert_eq!(e, "/etc/fifo: not a regular file");
        let e = read(root, "/etc").unwrap_err().to_string();
        assert_eq!(e, "/etc: not a regular file");
        let big = std::fs::File::create(root.join("big")).unwrap();
        big.set_len(READ_LIMIT + 1).unwrap();
        let e = read(root, "/big").unwrap_err().to_string();
        assert_eq!(e, "/big: larger than 4 MiB");
    }
}
