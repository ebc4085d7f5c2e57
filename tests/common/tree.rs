//! Compares two trees the way a user checking a migration would: every entry's type,
//! permission bits, owner, size, content hash, link target, device numbers, extended
//! attributes, and which names are hardlinks of each other.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: Option<i64>,
    pub content: String,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The smallest path of its hardlink group, for files with several names.
    pub link_group: Option<Vec<u8>>,
}

/// Every entry below `root` (not `root` itself), by relative path.
pub fn facts(root: &Path, skip: &dyn Fn(&[u8]) -> bool) -> BTreeMap<Vec<u8>, Facts> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
    walk(root, root, skip, &mut out, &mut inodes);
    for names in inodes.values().filter(|n| n.len() > 1) {
        let first = names.iter().min().unwrap().clone();
        for n in names {
            out.get_mut(n).unwrap().link_group = Some(first.clone());
        }
    }
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    skip: &dyn Fn(&[u8]) -> bool,
    out: &mut BTreeMap<Vec<u8>, Facts>,
    inodes: &mut HashMap<u64, Vec<Vec<u8>>>,
) {
    for item in fs::read_dir(dir).unwrap() {
        let path = item.unwrap().path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        if skip(&rel) {
            continue;
        }
        let m = fs::symlink_metadata(&path).unwrap();
        let ft = m.file_type();
        let (kind, content) = if ft.is_file() {
            ("file", hash(&path))
        } else if ft.is_dir() {
            ("dir", String::new())
        } else if ft.is_symlink() {
            (
                "symlink",
                fs::read_link(&path).unwrap().display().to_string(),
            )
        } else if ft.is_char_device() {
            (
                "char",
                format!("{}:{}", libc::major(m.rdev()), libc::minor(m.rdev())),
            )
        } else if ft.is_block_device() {
            (
                "block",
                format!("{}:{}", libc::major(m.rdev()), libc::minor(m.rdev())),
            )
        } else if ft.is_fifo() {
            ("fifo", String::new())
        } else {
            ("socket", String::new())
        };
        if ft.is_file() && m.nlink() > 1 {
            inodes.entry(m.ino()).or_default().push(rel.clone());
        }
        out.insert(
            rel,
            Facts {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                size: if ft.is_file() { m.len() } else { 0 },
                mtime: (!ft.is_dir()).then_some(m.mtime()),
                content,
                xattrs: xattrs(&path),
                link_group: None,
            },
        );
        if ft.is_dir() {
            walk(root, &path, skip, out, inodes);
        }
    }
}

fn hash(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

fn xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 65536];
    // SAFETY: buffers are valid for their lengths.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    let mut out = BTreeMap::new();
    if n <= 0 {
        return out;
    }
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let cn = CString::new(name).unwrap();
        let mut value = vec![0u8; 65536];
        // SAFETY: as above.
        let k = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cn.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if k >= 0 {
            value.truncate(k as usize);
            out.insert(name.to_vec(), value);
        }
    }
    out
}

/// Asserts two trees hold the same entries with the same facts; lists the first
/// differences when they do not.
pub fn assert_same(expected: &BTreeMap<Vec<u8>, Facts>, actual: &BTreeMap<Vec<u8>, Facts>) {
    let mut problems = Vec::new();
    for (path, want) in expected {
        let shown = String::from_utf8_lossy(path);
        match actual.get(path) {
            None => problems.push(format!("missing: /{shown}")),
            Some(got) if got != want => problems.push(format!(
                "differs: /{shown}\n  want {want:?}\n  got  {got:?}"
            )),
            _ => {}
        }
    }
    for path in actual.keys().filter(|p| !expected.contains_key(*p)) {
        problems.push(format!("extra: /{}", String::from_utf8_lossy(path)));
    }
    assert!(
        problems.is_empty(),
        "{} differences, first ones:\n{}",
        problems.len(),
        problems
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
