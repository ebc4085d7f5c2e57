//! How big the server is: one metadata walk (no content is read) gives the total, the
//! largest files and directories, the sparse files, and the sizes of data directories.
//! The same walk notes the files worth checking for private keys.

use super::fs::base_name;
use super::secrets::may_hold_key;
use super::volumes::DATA_DIRS;
use crate::entry::{Entry, Kind};
use crate::source::Source;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

/// How many of the largest files and directories the report lists.
const TOP: usize = 10;
/// Directories are summed up to this depth (`/usr/lib/x86_64-linux-gnu`).
const DIR_DEPTH: usize = 3;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sized {
    pub path: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SparseFile {
    pub path: String,
    /// The size it claims.
    pub size: u64,
    /// The bytes it actually holds.
    pub data: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Size {
    /// Bytes of content (data extents for sparse files): the image's size before compression.
    pub total_bytes: u64,
    /// Bytes as the files claim them (holes counted).
    pub apparent_bytes: u64,
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub other: u64,
    pub largest_files: Vec<Sized>,
    pub largest_directories: Vec<Sized>,
    pub sparse_files: Vec<SparseFile>,
    /// Entries the source could not give (sockets, other filesystems).
    pub skipped: usize,
}

/// What the walk gathers for the rest of the inventory.
#[derive(Default)]
pub struct WalkFacts {
    pub size: Size,
    /// (bytes, entries) under each data directory of [`DATA_DIRS`] present.
    pub data_dirs: HashMap<&'static str, (u64, u64)>,
    /// Files whose names suggest a private key.
    pub key_candidates: Vec<Vec<u8>>,
}

/// Adds `bytes` to each directory above `path`, down to `depth` levels.
pub(crate) fn add_to_dirs(dirs: &mut HashMap<Vec<u8>, u64>, path: &[u8], depth: usize, bytes: u64) {
    let mut end = 0;
    for _ in 0..depth {
        match path[end..].iter().position(|&b| b == b'/') {
            Some(i) => {
                end += i;
                *dirs.entry(path[..end].to_vec()).or_default() += bytes;
                end += 1;
            }
            None => break,
        }
    }
}

/// The walk; `owners`, when given, is told each entry too (package ownership).
pub fn walk(
    source: &dyn Source,
    mut owners: Option<&mut super::ownership::Tally<'_>>,
) -> crate::error::Result<WalkFacts> {
    let mut facts = WalkFacts::default();
    let mut largest: BinaryHeap<Reverse<(u64, Vec<u8>)>> = BinaryHeap::new();
    let mut dirs: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut inodes: HashSet<(u64, u64)> = HashSet::new();
    let mut visit = |entry: Entry| {
        let s = &mut facts.size;
        match entry.kind {
            Kind::File | Kind::Hardlink => s.files += 1,
            Kind::Dir => s.directories += 1,
            Kind::Symlink => s.symlinks += 1,
            _ => s.other += 1,
        }
        // A file with several names holds its bytes once (an archive gives the later
        // names as hardlinks, a directory gives the same inode again).
        let first_name = match entry.inode {
            Some(inode) => inodes.insert(inode),
            None => true,
        };
        let data = if entry.kind == Kind::File && first_name {
            entry.data_len()
        } else {
            0
        };
        if let Some(t) = owners.as_deref_mut() {
            t.visit(&entry, data);
        }
        for (dir, _) in DATA_DIRS {
            if entry.path.starts_with(dir.as_bytes()) && entry.path.get(dir.len()) == Some(&b'/') {
                let e = facts.data_dirs.entry(dir).or_default();
                e.0 += data;
                e.1 += 1;
            }
        }
        if entry.kind != Kind::File || !first_name {
            return Ok(());
        }
        s.total_bytes += data;
        s.apparent_bytes += entry.size;
        if entry.sparse.is_some() {
            s.sparse_files.push(SparseFile {
                path: entry.display().to_string(),
                size: entry.size,
                data,
            });
        }
        largest.push(Reverse((data, entry.path.clone())));
        if largest.len() > TOP {
            largest.pop();
        }
        add_to_dirs(&mut dirs, &entry.path, DIR_DEPTH, data);
        // Keys of the system's own packages (test keys, examples) live under /usr.
        if entry.size < (1 << 20)
            && !entry.path.starts_with(b"usr/")
            && may_hold_key(base_name(&entry.path))
        {
            facts.key_candidates.push(entry.path.clone());
        }
        Ok(())
    };
    let skipped = source.walk(&mut visit)?;
    let size = &mut facts.size;
    size.skipped = skipped.total() as usize;
    let mut files: Vec<(u64, Vec<u8>)> = largest.into_iter().map(|Reverse(x)| x).collect();
    files.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    size.largest_files = files
        .into_iter()
        .map(|(bytes, path)| Sized {
            path: crate::entry::DisplayPath(&path).to_string(),
            bytes,
        })
        .collect();
    let mut dirs: Vec<(Vec<u8>, u64)> = dirs.into_iter().collect();
    dirs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    size.largest_directories = dirs
        .into_iter()
        .take(TOP)
        .map(|(path, bytes)| Sized {
            path: crate::entry::DisplayPath(&path).to_string(),
            bytes,
        })
        .collect();
    size.sparse_files
        .sort_by(|a, b| b.size.cmp(&a.size).then(a.path.cmp(&b.path)));
    Ok(facts)
}
