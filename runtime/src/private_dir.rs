//! The runtime's own directory. It holds every image's unpacked layers (setuid programs,
//! device nodes, the server's secrets) and every container's state, so only its owner may
//! reach into it: it is made 0700, and tightened back when found looser. A directory
//! above it that another user can change would let them swap the whole tree: that is
//! refused, with the directory named.

use crate::error::{Error, IoContext, Result};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The mode of the runtime's directory.
pub const MODE: u32 = 0o700;

/// Makes `dir` (and what is missing above it) and leaves it private: owned by us, mode
/// 0700; every directory above it owned by root or by us and writable by no one else
/// (a sticky one, as /tmp, is fine: others cannot rename what is ours in it).
pub fn ensure(dir: &Path) -> Result<()> {
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().at(dir)?.join(dir)
    };
    let me = rustix::process::geteuid().as_raw();
    // The nearest part of the path that exists, as the kernel resolves it: that is the
    // chain of directories that must be safe.
    let existing = dir
        .ancestors()
        .find(|a| a.symlink_metadata().is_ok())
        .unwrap_or(Path::new("/"));
    let real = fs::canonicalize(existing).at(existing)?;
    let below = dir.strip_prefix(existing).unwrap_or(Path::new(""));
    for a in real.ancestors() {
        if a == real && below.as_os_str().is_empty() {
            continue; // the directory itself: checked and tightened below
        }
        check_parent(a, me, &dir)?;
    }
    let target: PathBuf = real.join(below);
    if let Some(parent) = target.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .at(parent)?;
    }
    match fs::DirBuilder::new().mode(MODE).create(&target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(&target, e)),
    }
    tighten(&target, me)
}

fn check_parent(a: &Path, me: u32, dir: &Path) -> Result<()> {
    let meta = fs::metadata(a).at(a)?;
    let refuse = |why: String| {
        Err(Error::Insecure {
            path: a.to_path_buf(),
            reason: format!(
                "{why}: the runtime's directory {} cannot be kept private below it \
                 (choose another --root)",
                dir.display()
            ),
        })
    };
    if meta.uid() != 0 && meta.uid() != me {
        return refuse(format!("owned by uid {}", meta.uid()));
    }
    let sticky = meta.mode() & 0o1000 != 0;
    if meta.mode() & 0o022 != 0 && !sticky {
        return refuse(format!(
            "writable by other users (mode {:04o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Opens the directory itself (never through a symlink) and sets its mode to 0700.
fn tighten(dir: &Path, me: u32) -> Result<()> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .at(dir)?;
    let st = rustix::fs::fstat(&fd).at(dir)?;
    if st.st_uid != me {
        return Err(Error::Insecure {
            path: dir.to_path_buf(),
            reason: format!(
                "owned by uid {}, not by this user: the runtime's directory must be its own",
                st.st_uid
            ),
        });
    }
    if st.st_mode & 0o7777 != MODE {
        tracing::warn!(
            "{}: mode {:04o}, tightened to {MODE:04o}",
            dir.display(),
            st.st_mode & 0o7777
        );
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(MODE)).at(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn made_0700_and_tightened_when_looser() {
        let t = tempfile::tempdir().unwrap();
        let fresh = t.path().join("a/b/root");
        ensure(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        let loose = t.path().join("loose");
        fs::create_dir(&loose).unwrap();
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o4777)).unwrap();
        ensure(&loose).unwrap();
        assert_eq!(mode(&loose), 0o700);
    }

    #[test]
    fn a_parent_others_can_write_is_refused_by_name() {
        let t = tempfile::tempdir().unwrap();
        let open = t.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let e = ensure(&open.join("root")).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{}: writable by other users (mode 0777)",
                open.display()
            )),
            "{e}"
        );
        assert!(!open.join("root").exists());
        // Sticky, as /tmp: fine.
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        ensure(&open.join("root")).unwrap();
    }
}
