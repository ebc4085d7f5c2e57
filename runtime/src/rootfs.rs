//! A container's root filesystem: the cached layers mounted as overlayfs lower layers with
//! a per-container upper layer, so starting is fast and the cache stays pristine; or,
//! where overlayfs is unavailable, the layers applied one by one into a private copy.

use crate::error::{Error, IoContext, Result};
use crate::image::Image;
use crate::layers::{self, LayerCache};
use crate::unpack::Whiteouts;
use rustix::mount::{MountFlags, UnmountFlags};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RootfsKind {
    Overlay,
    Copy,
}

/// Where a container's rootfs lives inside its directory.
pub fn rootfs_path(container_dir: &Path) -> PathBuf {
    container_dir.join("rootfs")
}

/// Builds the rootfs of `image` in `container_dir` (which exists). `overlay` false forces
/// the copy.
pub fn prepare(
    image: &Image,
    cache: &LayerCache,
    container_dir: &Path,
    overlay: bool,
) -> Result<RootfsKind> {
    let rootfs = rootfs_path(container_dir);
    fs::create_dir_all(&rootfs).at(&rootfs)?;
    if overlay {
        let lowers = cache.ensure(image)?;
        match mount_overlay(&lowers, container_dir) {
            Ok(()) => return Ok(RootfsKind::Overlay),
            Err(e) => tracing::warn!("overlayfs unavailable ({e}); copying the layers instead"),
        }
    }
    for (desc, diff_id) in image
        .manifest
        .layers
        .iter()
        .zip(&image.config.rootfs.diff_ids)
    {
        layers::unpack_checked(image, desc, diff_id, &rootfs, Whiteouts::Apply)?;
    }
    Ok(RootfsKind::Copy)
}

fn mount_overlay(lowers: &[PathBuf], container_dir: &Path) -> Result<()> {
    let upper = container_dir.join("upper");
    let work = container_dir.join("work");
    let empty = container_dir.join("empty");
    for d in [&upper, &work, &empty] {
        fs::create_dir_all(d).at(d)?;
    }
    // overlayfs lists the top layer first.
    let mut lower: Vec<&Path> = lowers.iter().rev().map(PathBuf::as_path).collect();
    if lower.is_empty() {
        lower.push(&empty);
    }
    let all: Vec<&Path> = lower
        .iter()
        .copied()
        .chain([upper.as_path(), &work])
        .collect();
    if let Some(p) = all
        .iter()
        .find(|p| p.to_string_lossy().contains([':', ',', '\\']))
    {
        return Err(Error::BadImage {
            path: p.to_path_buf(),
            reason: "overlayfs option paths cannot hold `:`, `,` or `\\`".into(),
        });
    }
    // The kernel takes one page of mount options: an image cut by package has dozens of
    // layers, whose full paths do not fit. Each lower is then named by a descriptor held
    // open across the mount (`/proc/self/fd/N`, a few bytes each).
    let full: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
    let mut held = Vec::new();
    let lower: Vec<String> = if full.iter().map(|p| p.len() + 1).sum::<usize>() > 3000 {
        let mut short = Vec::with_capacity(lower.len());
        for p in &lower {
            let fd = rustix::fs::open(
                *p,
                rustix::fs::OFlags::PATH
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(std::io::Error::from)
            .at(p)?;
            short.push(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&fd)
            ));
            held.push(fd);
        }
        short
    } else {
        full
    };
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    let target = rootfs_path(container_dir);
    let data = std::ffi::CString::new(data).expect("paths hold no NUL");
    let mounted = rustix::mount::mount(
        "overlay",
        &target,
        "overlay",
        MountFlags::NOATIME,
        Some(data.as_c_str()),
    );
    drop(held);
    mounted.at(&target)
}

/// True when `path` is a mount point.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m.replace("\\040", " ") == want)
}

/// Unmounts the rootfs if mounted and removes the container's directory.
pub fn teardown(container_dir: &Path) -> Result<()> {
    let rootfs = rootfs_path(container_dir);
    while is_mounted(&rootfs) {
        if let Err(e) = rustix::mount::unmount(&rootfs, UnmountFlags::DETACH) {
            return Err(Error::io(&rootfs, e.into()));
        }
    }
    match fs::remove_dir_all(container_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(container_dir, e)),
    }
}
