//! The rehost layer's content, path by path, and how it is written as a layer blob.

use crate::entry::{Entry, Kind};
use crate::error::{Error, IoContext, Result};
use crate::image::compress::{Compression, Compressors};
use crate::image::layer::{BuiltLayer, LayerBlob, LayerStats};
use crate::source::Source;
use oci::layout::LayoutWriter;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum Content {
    Bytes(Vec<u8>),
    HostFile(PathBuf),
}

/// One path of the layer.
#[derive(Debug, Clone)]
pub enum Item {
    Dir(u32),
    File(u32, Content),
    Symlink(String),
    Whiteout,
}

/// The layer's paths (absolute, as the image sees them).
pub type Items = BTreeMap<String, Item>;

impl Item {
    /// A file made of these bytes.
    pub fn bytes(mode: u32, bytes: impl Into<Vec<u8>>) -> Item {
        Item::File(mode, Content::Bytes(bytes.into()))
    }
}

/// The whiteout that removes `path` from the layers below.
pub fn whiteout_of(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/.wh.{name}"),
        None => format!(".wh.{path}"),
    }
}

/// Writes the planned layer as a blob of `out`. Parent directories that exist in the
/// source get entries with the source's metadata, so the layer changes nothing else.
/// New files get `mtime`; the parents copied from the source get their own times, clamped
/// to `clamp` as the main layer did.
pub fn write(
    items: &Items,
    source: &dyn Source,
    out: &LayoutWriter,
    compression: Compression,
    threads: usize,
    mtime: i64,
    clamp: Option<i64>,
) -> Result<BuiltLayer> {
    // Every parent directory of every item, in order.
    let mut all: BTreeMap<Vec<u8>, (String, Option<&Item>)> = BTreeMap::new();
    for (path, item) in items {
        let rel = path.trim_start_matches('/');
        let mut parent = String::new();
        let parts: Vec<&str> = rel.split('/').collect();
        for p in &parts[..parts.len() - 1] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(p);
            all.entry(crate::entry::walk_order_key(parent.as_bytes()))
                .or_insert_with(|| (parent.clone(), None));
        }
        all.insert(
            crate::entry::walk_order_key(rel.as_bytes()),
            (rel.to_string(), Some(item)),
        );
    }
    let mut blob = LayerBlob::create(out, &Compressors::new(compression, threads))?;
    let blob_path = blob.path().to_path_buf();
    let tar = &mut blob.tar;
    let mut stats = LayerStats::default();
    for (rel, item) in all.values() {
        let mut entry = Entry::new(rel.as_bytes().to_vec(), Kind::Dir);
        entry.mtime = mtime;
        match item {
            None => {
                match source.metadata(rel.as_bytes()) {
                    Ok(m) if m.kind == Kind::Dir => {
                        entry.mode = m.mode;
                        entry.uid = m.uid;
                        entry.gid = m.gid;
                        entry.mtime = match clamp {
                            Some(c) if m.mtime > c => c,
                            _ => m.mtime,
                        };
                        entry.xattrs = m.xattrs;
                    }
                    _ => entry.mode = 0o755,
                }
                tar.append(&entry, None).at(&blob_path)?;
                stats.dirs += 1;
            }
            Some(Item::Dir(mode)) => {
                entry.mode = *mode;
                tar.append(&entry, None).at(&blob_path)?;
                stats.dirs += 1;
            }
            Some(Item::Symlink(target)) => {
                entry.kind = Kind::Symlink;
                entry.mode = 0o777;
                entry.link = target.as_bytes().to_vec();
                tar.append(&entry, None).at(&blob_path)?;
                stats.symlinks += 1;
            }
            Some(Item::Whiteout) => {
                entry.kind = Kind::File;
                entry.mode = 0o644;
                tar.append(&entry, Some(&mut std::io::empty()))
                    .at(&blob_path)?;
                stats.files += 1;
            }
            Some(Item::File(mode, content)) => {
                entry.kind = Kind::File;
                entry.mode = *mode;
                match content {
                    Content::Bytes(b) => {
                        entry.size = b.len() as u64;
                        tar.append(&entry, Some(&mut &b[..])).at(&blob_path)?;
                    }
                    Content::HostFile(p) => {
                        let f = std::fs::File::open(p).at(p)?;
                        entry.size = f.metadata().at(p)?.len();
                        let mut r: Box<dyn Read> = Box::new(f);
                        let short = tar.append(&entry, Some(&mut r)).at(p)?;
                        if short {
                            return Err(Error::io(
                                p,
                                std::io::Error::other("changed while being read"),
                            ));
                        }
                    }
                }
                stats.files += 1;
                stats.content_bytes += entry.size;
            }
        }
    }
    blob.finish(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_sit_beside_what_they_hide() {
        assert_eq!(
            whiteout_of("/etc/ssh/ssh_host_rsa_key"),
            "/etc/ssh/.wh.ssh_host_rsa_key"
        );
    }
}
