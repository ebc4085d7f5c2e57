//! A server tree of real size, made fast: empty files mostly, with what large servers
//! hold and what broke before (hardlink groups across directories, a sparse file with
//! several names as a linker leaves a binary, 255-byte names, a deep chain of
//! directories, sparse files of GiBs, a few big files of real data, symlinks, FIFOs).

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Entries in each generated directory.
const PER_DIR: u64 = 1000;
/// Sparse files and the apparent size of each: 16 × 256 MiB = 4 GiB of holes and data.
const SPARSE: u64 = 16;
const SPARSE_SIZE: u64 = 256 << 20;
/// Big files of real (incompressible) data.
const BIG: u64 = 2;
const BIG_SIZE: usize = 32 << 20;
/// Levels of the deep chain, each name 30 bytes: paths of about 3 KiB.
const DEPTH: usize = 100;

/// What was made, for the test's own checks.
#[derive(Debug, Default)]
pub struct Made {
    pub entries: u64,
    pub hardlinks: u64,
    pub sparse: u64,
    pub apparent_bytes: u64,
}

/// Makes about `entries` entries under `root` (which must not exist).
pub fn generate(root: &Path, entries: u64) -> Made {
    fs::create_dir_all(root).unwrap();
    let mut made = Made::default();
    let add_dir = |p: &Path, made: &mut Made| {
        fs::create_dir(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        made.entries += 1;
    };

    // The special files first, so they exist whatever the size.
    let special = root.join("special");
    add_dir(&special, &mut made);
    let mut chain = special.join("deep");
    add_dir(&chain, &mut made);
    for level in 0..DEPTH {
        chain = chain.join(format!("level-{level:03}-of-a-deep-tree-x"));
        add_dir(&chain, &mut made);
        fs::write(chain.join("f"), level.to_string()).unwrap();
        made.entries += 1;
    }
    let sparse_dir = special.join("sparse");
    add_dir(&sparse_dir, &mut made);
    for i in 0..SPARSE {
        let path = sparse_dir.join(format!("disk-{i:02}.img"));
        let mut f = File::create(&path).unwrap();
        f.set_len(SPARSE_SIZE).unwrap();
        // Data at the start, in the middle and at the very end, as a linker or a
        // database leaves it; the rest are holes.
        for (at, len) in [
            (0, 4096),
            (SPARSE_SIZE / 2 + 12345, 70_000),
            (SPARSE_SIZE - 100, 100),
        ] {
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&pattern(i * 7 + at, len as usize)).unwrap();
        }
        made.entries += 1;
        made.sparse += 1;
        made.apparent_bytes += SPARSE_SIZE;
    }
    // A sparse binary with a second name (a build's hard-linked output): the case that
    // broke the unpack of a real root.
    let build = special.join("build");
    add_dir(&build, &mut made);
    fs::hard_link(
        sparse_dir.join("disk-00.img"),
        build.join("build_script_main"),
    )
    .unwrap();
    fs::hard_link(
        sparse_dir.join("disk-00.img"),
        build.join("build-script-build"),
    )
    .unwrap();
    made.entries += 2;
    made.hardlinks += 2;
    let big = special.join("big");
    add_dir(&big, &mut made);
    for i in 0..BIG {
        fs::write(big.join(format!("blob-{i}")), pattern(1000 + i, BIG_SIZE)).unwrap();
        made.entries += 1;
        made.apparent_bytes += BIG_SIZE as u64;
    }
    let fifo = CString::new(special.join("fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
    made.entries += 1;

    // The bulk: directories of PER_DIR entries each.
    let bulk = root.join("bulk");
    add_dir(&bulk, &mut made);
    let mut d = 0u64;
    while made.entries < entries {
        let dir = bulk.join(format!("d{d:05}"));
        add_dir(&dir, &mut made);
        let previous = (d > 0).then(|| bulk.join(format!("d{:05}", d - 1)));
        for i in 0..PER_DIR.min(entries.saturating_sub(made.entries)) {
            let name = if i % 50 == 7 {
                // 255 bytes, the longest a name may be.
                format!("{i:06}-{}", "n".repeat(248))
            } else {
                format!("file-{i:06}.dat")
            };
            let path = dir.join(&name);
            match (i % 200, &previous) {
                (13, Some(prev)) => {
                    // A second name for a file of the directory before.
                    fs::hard_link(prev.join(format!("file-{:06}.dat", i + 1)), &path).unwrap();
                    made.hardlinks += 1;
                }
                (_, _) if i % 100 == 42 => {
                    std::os::unix::fs::symlink(format!("../d{d:05}/file-{:06}.dat", i + 1), &path)
                        .unwrap();
                }
                (_, _) if i % 97 == 5 => fs::write(&path, format!("{d}/{i}\n")).unwrap(),
                _ => drop(File::create(&path).unwrap()),
            }
            made.entries += 1;
        }
        d += 1;
    }
    made
}

/// Bytes that do not compress and differ with `seed`.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
