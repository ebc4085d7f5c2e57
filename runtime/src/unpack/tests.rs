use super::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// A tar built entry by entry with raw names, so hostile names (`..`, absolute, through
/// symlinks) go in exactly as an attacker would write them.
struct RawTar(tar::Builder<Vec<u8>>);

impl RawTar {
    fn new() -> Self {
        RawTar(tar::Builder::new(Vec::new()))
    }
    fn add(&mut self, kind: tar::EntryType, name: &str, link: &str, data: &[u8]) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(data.len() as u64);
        h.set_mtime(1_000_000);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    fn file(&mut self, name: &str, data: &str) -> &mut Self {
        self.add(tar::EntryType::Regular, name, "", data.as_bytes())
    }
    fn dir(&mut self, name: &str) -> &mut Self {
        self.add(tar::EntryType::Directory, name, "", b"")
    }
    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.add(tar::EntryType::Symlink, name, target, b"")
    }
    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.add(tar::EntryType::Link, name, target, b"")
    }
    fn bytes(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()))
            .into_inner()
            .unwrap()
    }
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

use std::fs;

#[test]
fn symlinks_and_hardlinks_cannot_reach_outside_the_root() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let outside = work.path().join("outside");
    fs::create_dir_all(&root).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), "host data").unwrap();
    let outside_s = outside.display().to_string();
    let tar = RawTar::new()
        // An absolute symlink to a host directory, then a file through it.
        .symlink("abs", &outside_s)
        .file("abs/pwned", "x")
        // A relative symlink climbing out, then a directory and a file through it.
        .symlink("up", "../../../../../../..")
        .file(&format!("up{outside_s}/pwned2"), "x")
        // A hardlink to a host file through the symlink, and one overwriting through it.
        .hardlink("stolen", "abs/secret")
        .bytes();
    let result = unpack(&tar[..], &root, Whiteouts::Overlay, "test");
    // Whatever the outcome (contained or refused), nothing outside changed.
    assert_eq!(files_under(&outside), vec!["secret"]);
    assert_eq!(
        fs::read_to_string(outside.join("secret")).unwrap(),
        "host data"
    );
    match result {
        // Contained: the writes landed inside the root, under the link's target path.
        Ok(_) => {
            assert!(root
                .join(outside.strip_prefix("/").unwrap())
                .join("pwned")
                .is_file());
        }
        Err(e) => assert!(e.to_string().contains("layer test"), "{e}"),
    }
    assert!(fs::symlink_metadata(root.join("abs"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_hardlink_to_a_host_file_is_refused_or_contained() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let tar = RawTar::new().hardlink("passwd", "/etc/passwd").bytes();
    let err = unpack(&tar[..], &root, Whiteouts::Overlay, "test").unwrap_err();
    // /etc/passwd means <root>/etc/passwd, which does not exist: never the host's.
    assert!(err.to_string().contains("passwd"), "{err}");
    assert!(!root.join("passwd").exists());
}

#[test]
fn dot_dot_entries_are_refused_naming_the_entry() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("a/b/root");
    fs::create_dir_all(&root).unwrap();
    let tar = RawTar::new().file("../../escaped", "x").bytes();
    let err = unpack(&tar[..], &root, Whiteouts::Overlay, "sha256:abc").unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer sha256:abc: entry `../../escaped`: `..` would leave the root"
    );
    assert!(!work.path().join("a/escaped").exists());
}

#[test]
fn overlay_whiteouts_become_devices_and_opaque_xattrs() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let tar = RawTar::new()
        .dir("etc")
        .file("etc/.wh.gone", "")
        .dir("var")
        .file("var/.wh..wh..opq", "")
        .file("var/kept", "k")
        .bytes();
    let stats = unpack(&tar[..], &root, Whiteouts::Overlay, "t").unwrap();
    assert_eq!(stats.whiteouts, 2);
    let gone = fs::symlink_metadata(root.join("etc/gone")).unwrap();
    assert!(gone.file_type().is_char_device());
    assert_eq!(gone.rdev(), 0);
    let opaque = rustix::fs::getxattr(
        root.join("var").as_path(),
        OVERLAY_OPAQUE_XATTR,
        &mut [0u8; 4],
    );
    assert_eq!(opaque.unwrap(), 1);
    assert_eq!(fs::read_to_string(root.join("var/kept")).unwrap(), "k");
    assert!(!root.join("etc/.wh.gone").exists());
}

#[test]
fn applied_whiteouts_remove_what_earlier_layers_wrote() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let lower = RawTar::new()
        .dir("a")
        .file("a/old1", "1")
        .file("a/old2", "2")
        .file("d", "d")
        .symlink("l", "/a")
        .bytes();
    unpack(&lower[..], &root, Whiteouts::Apply, "lower").unwrap();
    let upper = RawTar::new()
        .file(".wh.d", "")
        .dir("a")
        .file("a/new", "n")
        .file("a/.wh..wh..opq", "")
        .bytes();
    unpack(&upper[..], &root, Whiteouts::Apply, "upper").unwrap();
    assert_eq!(files_under(&root), vec!["a", "a/new", "l"]);
}

#[test]
fn owners_modes_and_times_are_kept() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path("bin/su").unwrap();
    h.set_mode(0o4755);
    h.set_uid(0);
    h.set_gid(42);
    h.set_mtime(1234);
    h.set_size(2);
    h.set_cksum();
    b.append(&h, &b"hi"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    unpack(&tar[..], &root, Whiteouts::Overlay, "t").unwrap();
    let m = fs::metadata(root.join("bin/su")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o4755);
    assert_eq!(m.gid(), 42);
    assert_eq!(m.mtime(), 1234);
}

/// An old GNU sparse header (`S`) declaring a huge file with no data: the unpacker
/// makes the file with its hole and writes no zeros (the tar crate's expansion wrote
/// zeros until the disk was full).
#[test]
fn a_huge_sparse_entry_costs_no_disk() {
    let mut h = tar::Header::new_gnu();
    h.set_path("var/log/lastlog").unwrap();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_size(0);
    let real = 1u64 << 32; // as much as 11 octal digits hold
    h.as_gnu_mut().unwrap().realsize = *format!("{real:011o}\0").as_bytes().first_chunk().unwrap();
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.extend_from_slice(&[0u8; 1024]);
    let work = tempfile::tempdir().unwrap();
    unpack(&tar[..], work.path(), Whiteouts::Overlay, "test").unwrap();
    let meta = fs::metadata(work.path().join("var/log/lastlog")).unwrap();
    assert_eq!(meta.len(), real);
    assert!(meta.blocks() <= 8, "{} blocks allocated", meta.blocks());
}

/// PAX headers of any size used to be held whole: now more than 1 MiB is refused.
#[test]
fn a_huge_extension_header_is_refused() {
    let mut h = tar::Header::new_ustar();
    h.set_path("././@PaxHeader").unwrap();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_size(64 << 20);
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.resize(512 + (2 << 20), b'1');
    let work = tempfile::tempdir().unwrap();
    let e = unpack(&tar[..], work.path(), Whiteouts::Overlay, "test")
        .unwrap_err()
        .to_string();
    assert!(e.contains("larger than 1048576 bytes"), "{e}");
}
