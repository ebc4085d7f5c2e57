//! Two trees of a million entries compared as a user checking a migration would, entry by
//! entry, walking both at once in name order: kind, permission bits, owner, size, mtime,
//! link target, content (holes and all: a sparse file must stay sparse), and which names
//! are hardlinks of each other. Memory holds one directory's names per level and the
//! hardlinked files, as the converter does.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::Path;

/// Content is compared in chunks of this size; all-zero chunks (holes) are skipped.
const CHUNK: u64 = 64 << 10;

#[derive(Default)]
struct Groups {
    /// (device, inode) → the first name of its group met in the walk.
    first: HashMap<(u64, u64), Vec<u8>>,
}

impl Groups {
    fn first_name(&mut self, meta: &fs::Metadata, name: &[u8]) -> Vec<u8> {
        self.first
            .entry((meta.dev(), meta.ino()))
            .or_insert_with(|| name.to_vec())
            .clone()
    }
}

/// Compares the tree under `want` with the one under `got`; gives the number of entries
/// compared, or the first difference.
pub fn same_tree(want: &Path, got: &Path) -> Result<u64, String> {
    let mut groups = (Groups::default(), Groups::default());
    let mut count = 0;
    walk(want, got, b"", &mut groups, &mut count)?;
    Ok(count)
}

fn names(dir: &Path) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for item in fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        out.push(
            item.map_err(|e| e.to_string())?
                .file_name()
                .as_bytes()
                .to_vec(),
        );
    }
    out.sort();
    Ok(out)
}

fn walk(
    want: &Path,
    got: &Path,
    rel: &[u8],
    groups: &mut (Groups, Groups),
    count: &mut u64,
) -> Result<(), String> {
    let (a, b) = (names(want)?, names(got)?);
    if a != b {
        let missing = a.iter().find(|n| !b.contains(n));
        let extra = b.iter().find(|n| !a.contains(n));
        return Err(format!(
            "/{}: names differ: missing {:?}, extra {:?}",
            String::from_utf8_lossy(rel),
            missing.map(|n| String::from_utf8_lossy(n).into_owned()),
            extra.map(|n| String::from_utf8_lossy(n).into_owned()),
        ));
    }
    for name in a {
        let child: Vec<u8> = if rel.is_empty() {
            name.clone()
        } else {
            [rel, b"/", &name].concat()
        };
        let shown = || format!("/{}", String::from_utf8_lossy(&child));
        let name = std::ffi::OsStr::from_bytes(&name);
        let (wp, gp) = (want.join(name), got.join(name));
        let w = fs::symlink_metadata(&wp).map_err(|e| format!("{}: {e}", shown()))?;
        let g = fs::symlink_metadata(&gp).map_err(|e| format!("{}: {e}", shown()))?;
        let differ = |what: &str, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
            Err(format!("{}: {what} {a:?} became {b:?}", shown()))
        };
        if kind(&w) != kind(&g) {
            return differ("kind", &kind(&w), &kind(&g));
        }
        if w.mode() & 0o7777 != g.mode() & 0o7777 {
            return differ("mode", &(w.mode() & 0o7777), &(g.mode() & 0o7777));
        }
        if (w.uid(), w.gid()) != (g.uid(), g.gid()) {
            return differ("owner", &(w.uid(), w.gid()), &(g.uid(), g.gid()));
        }
        let ft = w.file_type();
        // Whole seconds: a layer's tar keeps no fractions.
        if !ft.is_dir() && w.mtime() != g.mtime() {
            return differ("mtime", &w.mtime(), &g.mtime());
        }
        if ft.is_symlink() {
            let (a, b) = (fs::read_link(&wp).unwrap(), fs::read_link(&gp).unwrap());
            if a != b {
                return differ("link target", &a, &b);
            }
        }
        if ft.is_file() {
            if w.len() != g.len() {
                return differ("size", &w.len(), &g.len());
            }
            if w.len() > 0 {
                let (a, b) = (content(&wp, w.len())?, content(&gp, g.len())?);
                if a != b {
                    return differ("content", &a, &b);
                }
            }
            // Holes stay holes: a sparse file written out whole fills the disk.
            let (used, now) = (w.blocks() * 512, g.blocks() * 512);
            if used < w.len() && now > used.max(1 << 20) * 2 {
                return differ("allocated bytes of a sparse file", &used, &now);
            }
            if w.nlink() > 1 || g.nlink() > 1 {
                let a = groups.0.first_name(&w, &child);
                let b = groups.1.first_name(&g, &child);
                if a != b {
                    let s = |n: &[u8]| String::from_utf8_lossy(n).into_owned();
                    return differ("hardlink group (first name)", &s(&a), &s(&b));
                }
            }
        }
        *count += 1;
        if ft.is_dir() {
            walk(&wp, &gp, &child, groups, count)?;
        }
    }
    Ok(())
}

fn kind(m: &fs::Metadata) -> &'static str {
    let ft = m.file_type();
    if ft.is_file() {
        "file"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_char_device() || ft.is_block_device() {
        "device"
    } else {
        "socket"
    }
}

/// A digest of a file's logical content that reads only its data (SEEK_DATA), so a
/// file of GiBs of holes is hashed in a moment: each non-zero chunk with its index.
fn content(path: &Path, size: u64) -> Result<String, String> {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let fd = f.as_raw_fd();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK as usize];
    let mut next_chunk = 0u64;
    let mut pos = 0i64;
    while (pos as u64) < size {
        // SAFETY: lseek on a descriptor we own.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            break; // holes to the end
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let end = if hole < 0 { size } else { hole as u64 };
        let mut chunk = (data as u64 / CHUNK).max(next_chunk);
        while chunk * CHUNK < end {
            let len = CHUNK.min(size - chunk * CHUNK) as usize;
            f.read_exact_at(&mut buf[..len], chunk * CHUNK)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if buf[..len].iter().any(|&b| b != 0) {
                h.update(chunk.to_le_bytes());
                h.update(&buf[..len]);
            }
            chunk += 1;
        }
        next_chunk = chunk;
        pos = end as i64;
    }
    Ok(hex::encode(h.finalize()))
}
