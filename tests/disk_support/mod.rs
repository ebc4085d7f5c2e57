//! Helpers of the disk image tests: the fixtures, running `rehost convert`, and comparing
//! two unpacked trees the way a user would (type, mode, owner, size, content, xattrs,
//! link targets).

#![allow(dead_code)]

use converter::image::digest::HashingWriter;
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cached disk fixtures (fixtures/build-disks), built on first use.
pub fn disks() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Command::new(repo().join("fixtures/build-disks"))
            .output()
            .expect("run fixtures/build-disks");
        assert!(
            out.status.success(),
            "fixtures/build-disks failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("disk")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn rehost(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rehost"))
        .args(args)
        .output()
        .expect("run rehost")
}

/// What `rehost convert --json` reported.
pub struct Converted {
    pub image: PathBuf,
    pub diff_id: String,
    pub summary: serde_json::Value,
}

/// Converts SOURCE with every entry kept (no profile excludes), so trees compare whole.
pub fn convert(source: &Path, out: &Path) -> Converted {
    let image = out.join("image.oci");
    let o = rehost(&[
        "convert".as_ref(),
        source.as_os_str(),
        "-o".as_ref(),
        image.as_os_str(),
        "--no-default-excludes".as_ref(),
        "--json".as_ref(),
        "--force".as_ref(),
    ]);
    assert!(
        o.status.success(),
        "rehost convert {} failed: {}",
        source.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    Converted {
        image,
        diff_id: summary["layers"][0]["diff_id"]
            .as_str()
            .unwrap()
            .to_string(),
        summary,
    }
}

/// `rehost convert` that must fail: its error output.
pub fn convert_fails(source: &Path, out: &Path) -> String {
    let o = rehost(&[
        "convert".as_ref(),
        source.as_os_str(),
        "-o".as_ref(),
        out.join("image.oci").as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success(),
        "converting {} should fail",
        source.display()
    );
    assert!(!err.contains("panicked"), "rehost panicked: {err}");
    assert!(
        !out.join("image.oci").exists(),
        "a failed convert left an image"
    );
    err
}

/// Unpacks an image with umoci, as a user would look at it; gives the rootfs.
pub fn unpack(image: &Path, into: &Path) -> PathBuf {
    let o = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", image.display()))
        .arg(into)
        .output()
        .expect("run umoci");
    assert!(
        o.status.success(),
        "umoci unpack: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    into.join("rootfs")
}

/// One entry of an unpacked tree, as compared.
#[derive(Debug, PartialEq, Eq)]
pub struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    content: String,
    link: Vec<u8>,
    rdev: u64,
    xattrs: BTreeMap<String, String>,
}

/// Every entry below `root` by path; hardlinked files show the same content as their
/// first name, and their link count.
pub fn tree(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    for (path, attrs) in all_xattrs(root) {
        if let Some(node) = out.get_mut(&path) {
            node.xattrs = attrs;
        }
    }
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<Vec<u8>, Node>) {
    for item in std::fs::read_dir(dir).unwrap() {
        let path = item.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            "file"
        } else if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "other"
        };
        let content = if ft.is_file() {
            let mut h = HashingWriter::new(std::io::sink());
            std::io::copy(&mut std::fs::File::open(&path).unwrap(), &mut h).unwrap();
            format!("{} nlink {}", h.finish().0, meta.nlink())
        } else {
            String::new()
        };
        let link = if ft.is_symlink() {
            std::fs::read_link(&path)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec()
        } else {
            Vec::new()
        };
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        out.insert(
            rel,
            Node {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                size: if ft.is_file() { meta.len() } else { 0 },
                content,
                link,
                rdev: meta.rdev(),
                xattrs: BTreeMap::new(),
            },
        );
        if ft.is_dir() {
            walk(root, &path, out);
        }
    }
}

/// Every xattr below `root`, from one `getfattr -R` run, by path relative to `root`.
fn all_xattrs(root: &Path) -> BTreeMap<Vec<u8>, BTreeMap<String, String>> {
    let o = Command::new("getfattr")
        .args(["-R", "-h", "-d", "-m", "-", "-e", "hex", "--absolute-names"])
        .arg(root)
        .output()
        .expect("run getfattr");
    let prefix = [root.as_os_str().as_bytes(), b"/"].concat();
    let mut out = BTreeMap::new();
    let mut current: Option<Vec<u8>> = None;
    for line in o.stdout.split(|&b| b == b'\n') {
        if let Some(name) = line.strip_prefix(b"# file: ") {
            let full = unescape(name);
            current = full.strip_prefix(prefix.as_slice()).map(|p| p.to_vec());
        } else if let (Some(path), Some(eq)) = (&current, line.iter().position(|&b| b == b'=')) {
            out.entry(path.clone())
                .or_insert_with(BTreeMap::new)
                .insert(
                    String::from_utf8_lossy(&line[..eq]).into_owned(),
                    String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
                );
        }
    }
    out
}

/// getfattr writes unusual bytes of names as `\ooo`.
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\'
            && i + 4 <= s.len()
            && s[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push(((s[i + 1] - b'0') << 6) | ((s[i + 2] - b'0') << 3) | (s[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// The first differences between two trees, for a failure message.
pub fn differences(a: &BTreeMap<Vec<u8>, Node>, b: &BTreeMap<Vec<u8>, Node>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, node) in a {
        match b.get(path) {
            None => out.push(format!(
                "only in the first: {}",
                String::from_utf8_lossy(path)
            )),
            Some(other) if other != node => out.push(format!(
                "{}: {node:?} != {other:?}",
                String::from_utf8_lossy(path)
            )),
            _ => {}
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        out.push(format!(
            "only in the second: {}",
            String::from_utf8_lossy(path)
        ));
    }
    out.truncate(20);
    out
}
