//! Layers by package: one walk of the tree, each entry dispatched to its layer's writer.
//!
//! A package file whose content is what its package installed (the database's digest)
//! goes into the layer of its package's group ([`super::cut`]); everything else stays in
//! the server's own layer on top: files no package owns, changed package files and
//! conffiles, symlinks (the database gives no digest for them), files owned by another
//! user or group than root (ids differ from server to server), sparse files, and the
//! names of a hardlink group that would be split across layers (the group goes to the
//! server's layer whole).
//!
//! A package layer's bytes depend only on the packages of its group and their files, so
//! that servers with the same packages share it: its directories are written with the
//! same metadata everywhere (0755, root, mtime 0), and the server's layer writes every
//! directory again with its real metadata, which an upper layer's directory entry sets.
//!
//! The server's layer is compressed as the walk goes, as one layer is; each package layer
//! is written as a plain tar into a temporary file (hashed on the way: its diff_id) and
//! compressed after the walk, one at a time on every core. So memory is the package
//! database plus a write buffer per layer, never the tree, and never a compressor per
//! layer (sixty of them would hold hundreds of MiB).

use super::cut::Cut;
use super::layer::{
    append_error, open_content, vanished, write_error, Builder, BuiltLayer, LayerBlob,
    LayerOptions, LayerStats, Progress, Tagged,
};
use crate::entry::{Entry, Kind};
use crate::error::{Error, IoContext, Result};
use crate::inventory::ownership::{FileCheck, PackageDb};
use crate::profile::Excludes;
use crate::source::{Skipped, Source};
use oci::digest::HashingWriter;
use oci::layout::LayoutWriter;
use oci::tar::TarWriter;
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::Read;
use std::io::{self, BufWriter, Seek};

/// Files up to this size are read once, into memory, to check and write them; larger
/// ones are read twice (checked, then written).
const READ_ONCE: u64 = 1 << 20;

/// One package layer, built.
#[derive(Debug, Clone)]
pub struct PackageLayer {
    pub layer: BuiltLayer,
    /// The group's name: a package's, or `bin N`.
    pub group: String,
    /// The packages with files in it, as `NAME=VERSION`, sorted.
    pub packages: Vec<String>,
}

/// Package files written into the server's own layer, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OwnedInServer {
    /// Their content differs from the package's digest (hand edits, conffiles changed).
    pub changed: u64,
    /// The database gives no digest to check them by (symlinks, files dpkg lists
    /// without an md5sum).
    pub unchecked: u64,
    /// Owned by a user or group other than root: their ids are given out on each server
    /// (a system group made by a package's script), so they would make the package's
    /// layer differ from server to server.
    pub not_root: u64,
    /// Files with several names in different layers, sparse files, files unreadable for
    /// the check, devices.
    pub other: u64,
}

/// What [`build_layers`] made.
pub struct Layers {
    /// In the order of the cut's groups; empty groups give none.
    pub packages: Vec<PackageLayer>,
    pub server: BuiltLayer,
    pub owned_in_server: OwnedInServer,
    /// The whole tree, as one layer would count it.
    pub stats: LayerStats,
}

/// A package layer's tar, written into an unnamed temporary file.
type PackageTar = TarWriter<HashingWriter<BufWriter<File>>>;

/// A package layer being written.
struct Open {
    tar: PackageTar,
    /// The directories written so far on the path to the last entry, root first.
    dirs: Vec<Vec<u8>>,
    packages: BTreeSet<usize>,
    stats: LayerStats,
}

/// Streams the tree into the package layers of `cut` and the server's layer, in one walk.
pub fn build_layers(
    source: &dyn Source,
    excludes: &Excludes,
    options: &LayerOptions,
    db: &PackageDb,
    cut: &Cut,
    out: &LayoutWriter,
    progress: &mut dyn FnMut(Progress),
) -> Result<Layers> {
    let mut d = Dispatch {
        source,
        db,
        cut,
        out,
        server: LayerBlob::create(out, options.compression, options.threads)?,
        open: cut.groups.iter().map(|_| None).collect(),
        stats: LayerStats::default(),
        owned: OwnedInServer::default(),
        builder: Builder::new(source, excludes, options.source_date_epoch),
        in_packages: HashMap::new(),
    };
    let skipped = source.walk(&mut |entry| d.dispatch(entry, progress))?;
    let Dispatch {
        open,
        server,
        mut stats,
        owned,
        ..
    } = d;
    stats.skipped.append(skipped);
    // Its compressor's threads and blocks go before the package layers' come.
    let server = server.finish(LayerStats::default())?;
    stats.tar_bytes += server.stats.tar_bytes;

    let mut packages = Vec::new();
    for (group, layer) in cut.groups.iter().zip(open) {
        let Some(layer) = layer else { continue };
        let names = layer
            .packages
            .iter()
            .map(|&i| {
                let p = &db.packages[i];
                format!("{}={}", p.name, p.version)
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (diff_id, tar_bytes, file) = layer
            .tar
            .finish()
            .map_err(|e| Error::io("a package layer's temporary file", e))?
            .finish();
        let mut file = file
            .into_inner()
            .map_err(|e| Error::io("a package layer's temporary file", e.into_error()))?;
        file.rewind()
            .map_err(|e| Error::io("a package layer's temporary file", e))?;
        let mut layer_stats = layer.stats;
        layer_stats.tar_bytes = tar_bytes;
        let built = LayerBlob::from_tar(
            out,
            options.compression,
            options.threads,
            &mut io::BufReader::with_capacity(1 << 20, file),
            diff_id,
            layer_stats,
        )?;
        stats.tar_bytes += built.stats.tar_bytes;
        packages.push(PackageLayer {
            layer: built,
            group: group.name.clone(),
            packages: names,
        });
    }
    Ok(Layers {
        packages,
        server,
        owned_in_server: owned,
        stats,
    })
}

/// The state of the one walk: every layer being written.
struct Dispatch<'a> {
    source: &'a dyn Source,
    db: &'a PackageDb,
    cut: &'a Cut,
    out: &'a LayoutWriter,
    server: LayerBlob,
    open: Vec<Option<Open>>,
    /// The whole tree's.
    stats: LayerStats,
    owned: OwnedInServer,
    /// Writes the server's layer: exclusions, hardlinks, vanished files.
    builder: Builder<'a>,
    /// (device, inode) of a file with several names written into a package layer →
    /// that name and the layer's group: a further name of the same package joins it
    /// there as a hardlink; any other sends the group to the server's layer.
    in_packages: HashMap<(u64, u64), (Vec<u8>, usize)>,
}

impl Dispatch<'_> {
    fn dispatch(&mut self, entry: Entry, progress: &mut dyn FnMut(Progress)) -> Result<()> {
        let Some(entry) = self.builder.admit(entry, &mut self.stats) else {
            return Ok(());
        };
        // A further name of a group already in the server's layer links to it there.
        if entry.inode.is_some_and(|k| self.builder.has_group(k)) {
            if self.db.owns(&entry.path) {
                self.owned.other += 1;
            }
            return self.server_keeps(entry, progress);
        }
        let plain = matches!(entry.kind, Kind::File) && entry.sparse.is_none();
        let check = self.db.check_of(&entry.path);
        let Some(check) = check.filter(|_| plain) else {
            if self.db.owns(&entry.path) {
                match entry.kind {
                    Kind::Dir => {}
                    Kind::Symlink => self.owned.unchecked += 1,
                    Kind::File if plain => self.owned.unchecked += 1,
                    _ => self.owned.other += 1,
                }
            }
            return self.split_group(entry, progress);
        };
        if entry.uid != 0 || entry.gid != 0 {
            self.owned.not_root += 1;
            return self.split_group(entry, progress);
        }
        let group = self.cut.group_of(check.package());
        let content = match checked(self.source, &entry, check) {
            Checked::Same(content) => content,
            Checked::Differs => {
                self.owned.changed += 1;
                return self.split_group(entry, progress);
            }
            Checked::Unreadable => {
                self.owned.other += 1;
                return self.split_group(entry, progress);
            }
        };
        if let Some(key) = entry.inode {
            match self.in_packages.get(&key) {
                Some((first, g)) if *g == group => {
                    let first = first.clone();
                    let layer = self.layer(group)?;
                    layer.packages.insert(check.package());
                    write_hardlink(layer, entry, first)?;
                    self.stats.hardlinks += 1;
                    return Ok(());
                }
                Some(_) => {
                    self.owned.other += 1;
                    return self.split_group(entry, progress);
                }
                None => {
                    self.in_packages.insert(key, (entry.path.clone(), group));
                }
            }
        }
        let (source, size) = (self.source, entry.size);
        let mut stats = std::mem::take(&mut self.stats);
        let layer = self.layer(group)?;
        layer.packages.insert(check.package());
        let written = write_package_file(source, layer, &entry, content, &mut stats);
        self.stats = stats;
        written?;
        self.builder.written_elsewhere(size, progress);
        Ok(())
    }

    /// The layer of `group`, opened when its first file comes.
    fn layer(&mut self, group: usize) -> Result<&mut Open> {
        let slot = &mut self.open[group];
        if slot.is_none() {
            let file = tempfile::tempfile_in(self.out.work_dir()).at(self.out.work_dir())?;
            *slot = Some(Open {
                tar: TarWriter::new(HashingWriter::new(BufWriter::with_capacity(64 << 10, file))),
                dirs: Vec::new(),
                packages: BTreeSet::new(),
                stats: LayerStats::default(),
            });
        }
        Ok(slot.as_mut().expect("opened above"))
    }

    /// Sends an entry to the server's layer; when it is a further name of a file written
    /// into a package layer, that first name is written into the server's layer again
    /// (over the package layer's copy), so the group stays whole in one layer.
    fn split_group(&mut self, entry: Entry, progress: &mut dyn FnMut(Progress)) -> Result<()> {
        if let Some((first, _)) = entry.inode.and_then(|k| self.in_packages.remove(&k)) {
            let mut again = self.source.metadata(&first)?;
            again.inode = entry.inode;
            self.builder.clamp(&mut again);
            // Counted once already, in its package layer.
            let mut scratch = LayerStats::default();
            self.builder
                .keep(again, &mut self.server.tar, &mut scratch, progress)?;
            self.stats.skipped.append(scratch.skipped);
            self.owned.other += 1;
        }
        self.server_keeps(entry, progress)
    }

    fn server_keeps(&mut self, entry: Entry, progress: &mut dyn FnMut(Progress)) -> Result<()> {
        self.builder
            .keep(entry, &mut self.server.tar, &mut self.stats, progress)
    }
}

/// A further name of a file in the same package layer.
fn write_hardlink(layer: &mut Open, mut entry: Entry, first: Vec<u8>) -> Result<()> {
    entry.kind = Kind::Hardlink;
    entry.link = first;
    entry.size = 0;
    ancestors(layer, &entry.path)?;
    layer
        .tar
        .append(&entry, None)
        .map_err(|e| write_error(&entry, e))?;
    layer.stats.hardlinks += 1;
    Ok(())
}

enum Checked {
    /// As the package installed it: the content when it was small enough to keep.
    Same(Option<Vec<u8>>),
    Differs,
    Unreadable,
}

/// Reads `entry` and compares it with the package's digest.
fn checked(source: &dyn Source, entry: &Entry, check: FileCheck) -> Checked {
    let Ok(mut reader) = source.open(&entry.path) else {
        return Checked::Unreadable;
    };
    let verdict = |same: Option<bool>, content| match same {
        Some(true) => Checked::Same(content),
        Some(false) => Checked::Differs,
        None => Checked::Unreadable,
    };
    if entry.size > READ_ONCE {
        return verdict(check.matches(&mut reader), None);
    }
    let mut content = Vec::with_capacity(entry.size as usize);
    match reader.take(READ_ONCE + 1).read_to_end(&mut content) {
        // A file that changed size since the walk saw it is the server's to report.
        Ok(n) if n as u64 == entry.size => {
            verdict(check.matches(&mut content.as_slice()), Some(content))
        }
        _ => Checked::Unreadable,
    }
}

/// Writes a checked package file into its layer, after the directories that lead to it.
fn write_package_file(
    source: &dyn Source,
    layer: &mut Open,
    entry: &Entry,
    content: Option<Vec<u8>>,
    total: &mut LayerStats,
) -> Result<()> {
    ancestors(layer, &entry.path)?;
    let short = match content {
        Some(bytes) => layer
            .tar
            .append(entry, Some(&mut bytes.as_slice()))
            .map_err(|e| append_error(entry, e))?,
        None => {
            let reader = open_content(source, entry)?;
            layer
                .tar
                .append(entry, Some(&mut Tagged(reader)))
                .map_err(|e| append_error(entry, e))?
        }
    };
    if short {
        total.skipped.push(Skipped {
            reason: "shrank while reading (padded with zeros)".into(),
            ..vanished(entry)
        });
    }
    for stats in [&mut layer.stats, total] {
        stats.files += 1;
        stats.content_bytes += entry.size;
    }
    Ok(())
}

/// Writes the directories on the way to `path` that the layer has not written yet, all
/// with the same metadata (0755, root, mtime 0): the server's layer gives them their own.
fn ancestors(layer: &mut Open, path: &[u8]) -> Result<()> {
    let ancestors: Vec<&[u8]> = path
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'/')
        .map(|(i, _)| &path[..i])
        .collect();
    let common = layer
        .dirs
        .iter()
        .zip(&ancestors)
        .take_while(|(a, b)| a.as_slice() == **b)
        .count();
    layer.dirs.truncate(common);
    for dir in &ancestors[common..] {
        let mut d = Entry::new(dir.to_vec(), Kind::Dir);
        d.mode = 0o755;
        layer.tar.append(&d, None).map_err(|e| write_error(&d, e))?;
        layer.stats.dirs += 1;
        layer.dirs.push(dir.to_vec());
    }
    Ok(())
}
