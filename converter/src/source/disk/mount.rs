//! The fallback for root filesystems rehost does not read itself (XFS, btrfs): when
//! running as root on a raw image, the partition is exposed through a read-only loop
//! device, mounted read-only (no log replay, and `nosuid,nodev,noexec`: nothing on it
//! may act on the host) on a temporary directory and read as a directory.
//!
//! The mount, the loop device and the directory are undone when the source is dropped,
//! when setting them up fails half-way, and when rehost is interrupted (SIGINT, SIGTERM)
//! while they exist ([`oci::cleanup`]).
//!
//! Paths are read as the guest's own: the directory source resolves every path inside
//! the mount, so a guest's `etc/x -> /etc` never leads onto the host's files.

use crate::entry::{Entry, Extent, Kind};
use crate::error::{Error, Result};
use crate::source::{DirOptions, DirSource, Skips, Source, Visit};
use diskimage::partition::Content;
use oci::cleanup::{self as interrupt, Registration};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

pub struct MountedSource {
    inner: Option<DirSource>,
    what: String,
    dir: PathBuf,
    setup: Arc<Mutex<Setup>>,
    _on_interrupt: Registration,
}

/// What exists on the host for the mount, to be undone in reverse order.
#[derive(Default)]
struct Setup {
    dir: Option<PathBuf>,
    loop_dev: Option<String>,
    mounted: bool,
}

impl Setup {
    /// Undoes whatever exists; safe to call twice. A mount still in use (files open on
    /// it when interrupted) is detached lazily, and the loop device is then freed by
    /// the kernel once the last file closes.
    fn undo(&mut self) {
        if let Some(dir) = &self.dir {
            if self.mounted {
                let plain = Command::new("umount").arg(dir).output();
                if !plain.is_ok_and(|o| o.status.success()) {
                    let _ = Command::new("umount").arg("--lazy").arg(dir).output();
                }
                self.mounted = false;
            }
        }
        if let Some(dev) = self.loop_dev.take() {
            let _ = Command::new("losetup").args(["-d", &dev]).output();
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir(&dir);
        }
    }
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
        let setup = Arc::new(Mutex::new(Setup::default()));
        // Registered before anything exists; each step below runs with the setup
        // locked, so an interrupt waits for it and then undoes it too.
        let on_interrupt = {
            let setup = setup.clone();
            interrupt::on_interrupt(move || lock(&setup).undo())
        };
        let (fstype, options) = match content {
            Content::Xfs => ("xfs", "ro,norecovery,nosuid,nodev,noexec"),
            _ => ("btrfs", "ro,nosuid,nodev,noexec"),
        };
        let mut source = MountedSource {
            inner: None,
            what: format!("{volume} ({fstype}), mounted read-only"),
            dir: PathBuf::new(),
            setup,
            _on_interrupt: on_interrupt,
        };
        // From here on an error drops `source`, which undoes what was set up.
        {
            let mut s = lock(&source.setup);
            let dir = tempfile::Builder::new()
                .prefix("rehost-mount-")
                .tempdir()
                .map_err(|e| bad(e.to_string()))?
                .keep();
            s.dir = Some(dir.clone());
            source.dir = dir;
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
            s.loop_dev = Some(loop_dev.clone());
            let mounted = Command::new("mount")
                .args(["-t", fstype, "-o", options, &loop_dev])
                .arg(&source.dir)
                .output()
                .map_err(|e| bad(format!("cannot run mount: {e}")))?;
            if !mounted.status.success() {
                return Err(bad(format!(
                    "mount failed: {}",
                    String::from_utf8_lossy(&mounted.stderr).trim()
                )));
            }
            s.mounted = true;
        }
        source.inner = Some(DirSource::new(&source.dir, DirOptions::default())?);
        let has = |p: &[u8]| source.dir().metadata(p).is_ok_and(|e| e.kind == Kind::File);
        if !has(b"etc/os-release") && !has(b"usr/lib/os-release") {
            return Err(bad(format!("{fstype} filesystem without /etc/os-release")));
        }
        Ok(source)
    }

    fn dir(&self) -> &DirSource {
        self.inner.as_ref().expect("mounted")
    }
}

fn lock(setup: &Mutex<Setup>) -> std::sync::MutexGuard<'_, Setup> {
    setup.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for MountedSource {
    fn drop(&mut self) {
        self.inner = None;
        lock(&self.setup).undo();
    }
}

impl Source for MountedSource {
    fn describe(&self) -> String {
        format!("{}: {}", self.dir().describe(), self.what)
    }
    fn walk(&self, visit: &mut Visit<'_>) -> Result<Skips> {
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
