//! The fallback for root filesystems rehost does not read itself (XFS, btrfs): when
//! running as root on a raw image, the partition is exposed through a read-only loop
//! device, mounted read-only (no log replay) on a temporary directory and read as a
//! directory. Both are undone when the source is dropped.

use crate::entry::{Entry, Extent};
use crate::error::{Error, Result};
use crate::source::{DirOptions, DirSource, Skipped, Source, Visit};
use diskimage::partition::Content;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct MountedSource {
    inner: Option<DirSource>,
    what: String,
    dir: PathBuf,
    loop_dev: String,
}

impl MountedSource {
    pub fn mount(
        image: &Path,
        volume: &str,
        content: Content,
        start: u64,
        len: u64,
    ) -> Result<Self> {
        let bad = |reason: String| Error::Disk {
            image: image.to_path_buf(),
            reason: format!("{volume}: {reason}"),
        };
        let out = Command::new("losetup")
            .args([
                "--find",
                "--show",
                "--read-only",
                "--offset",
                &start.to_string(),
                "--sizelimit",
                &len.to_string(),
            ])
            .arg(image)
            .output()
            .map_err(|e| bad(format!("cannot run losetup: {e}")))?;
        if !out.status.success() {
            return Err(bad(format!(
                "losetup failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let loop_dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let dir = tempfile::Builder::new()
            .prefix("rehost-mount-")
            .tempdir()
            .map_err(|e| bad(e.to_string()))?
            .keep();
        let (fstype, options) = match content {
            Content::Xfs => ("xfs", "ro,norecovery"),
            _ => ("btrfs", "ro"),
        };
        let mounted = Command::new("mount")
            .args(["-t", fstype, "-o", options, &loop_dev])
            .arg(&dir)
            .output();
        let mut source = MountedSource {
            inner: None,
            what: format!("{volume} ({fstype}), mounted read-only"),
            dir: dir.clone(),
            loop_dev,
        };
        match mounted {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return Err(bad(format!(
                    "mount failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )))
            }
            Err(e) => return Err(bad(format!("cannot run mount: {e}"))),
        }
        source.inner = Some(DirSource::new(&dir, DirOptions::default())?);
        if !dir.join("etc/os-release").exists() && !dir.join("usr/lib/os-release").exists() {
            return Err(bad(format!("{fstype} filesystem without /etc/os-release")));
        }
        Ok(source)
    }

    fn dir(&self) -> &DirSource {
        self.inner.as_ref().expect("mounted")
    }
}

impl Drop for MountedSource {
    fn drop(&mut self) {
        self.inner = None;
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
        let _ = Command::new("losetup")
            .args(["-d", &self.loop_dev])
            .status();
    }
}

impl Source for MountedSource {
    fn describe(&self) -> String {
        format!("{}: {}", self.dir().describe(), self.what)
    }
    fn walk(&self, visit: &mut Visit<'_>) -> Result<Vec<Skipped>> {
        self.dir().walk(&mut |mut e| {
            drop_own_xattrs(&mut e);
            visit(e)
        })
    }
    fn metadata(&self, path: &[u8]) -> Result<Entry> {
        let mut e = self.dir().metadata(path)?;
        drop_own_xattrs(&mut e);
        Ok(e)
    }
    fn read_dir(&self, path: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.dir().read_dir(path)
    }
    fn open(&self, path: &[u8]) -> Result<Box<dyn Read + Send + '_>> {
        self.dir().open(path)
    }
    fn open_extents(&self, path: &[u8], extents: &[Extent]) -> Result<Box<dyn Read + Send + '_>> {
        self.dir().open_extents(path, extents)
    }
    fn read_link(&self, path: &[u8]) -> Result<Vec<u8>> {
        self.dir().read_link(path)
    }
}

/// XFS keeps POSIX ACLs in `trusted.SGI_ACL_*` attributes, which root also sees; they
/// are the filesystem's storage of the `system.posix_acl_*` ones, not attributes of
/// their own, and would not mean anything on another filesystem.
fn drop_own_xattrs(e: &mut Entry) {
    e.xattrs
        .retain(|(name, _)| name != b"trusted.SGI_ACL_FILE" && name != b"trusted.SGI_ACL_DEFAULT");
}
