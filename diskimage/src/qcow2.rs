//! qcow2 (versions 2 and 3): two-level cluster tables, zero clusters, compressed
//! clusters (deflate or zstd) and a backing file chain.
//!
//! Memory stays bounded whatever the disk's size: the L1 table is held (8 bytes per
//! 512 MiB of disk at 64 KiB clusters), L2 tables and decompressed clusters go through
//! fixed-size caches. The decompressed-cluster cache is what makes a compressed image
//! fast: the files of one cluster are read one after another, and each would otherwise
//! decompress the whole cluster again. Compressed clusters after the one being read are
//! decompressed ahead by worker threads ([`ClusterCache`]).

use crate::confine::Confinement;
use crate::device::{
    be32, be64, corrupt, read_vec, BlockDevice, BufferCache as Cache, Device, FileDevice,
};
use crate::readahead::{inflate, ClusterCache};
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const MAGIC: &[u8] = b"QFI\xfb";
/// Decompressed clusters kept, in bytes.
const CLUSTER_CACHE_BYTES: usize = 64 << 20;
/// L2 tables kept, in bytes.
const L2_CACHE_BYTES: usize = 32 << 20;
/// Longest backing chain followed, the image itself included; qemu's own chains are
/// rarely more than a few deep.
const MAX_CHAIN: usize = 16;

const L2_COMPRESSED: u64 = 1 << 62;
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;

pub struct Qcow2 {
    file: Device,
    name: String,
    cluster_bits: u32,
    size: u64,
    l1: Vec<u64>,
    /// The disk below this one, where clusters this one does not hold are read from.
    backing: Option<Device>,
    l2_cache: Mutex<Cache>,
    /// Decompressed clusters by host offset, filled ahead of the reader.
    clusters: ClusterCache,
}

/// Where one guest cluster's data is.
enum Mapping {
    /// Not in this image: the backing disk's, or zeros without one.
    Unallocated,
    Zero,
    Data(u64),
    Compressed {
        offset: u64,
        len: usize,
    },
}

/// Opens a qcow2 image and its backing chain, each backing file confined.
pub fn open(path: &Path, confine: &Confinement) -> io::Result<Device> {
    let file: Device = Arc::new(FileDevice::open(path)?);
    let mut chain = Chain {
        confine: Some(confine),
        seen: vec![path.canonicalize()?],
    };
    Ok(Arc::new(Qcow2::open(
        file,
        path,
        "qcow2".into(),
        &mut chain,
    )?))
}

/// Opens a qcow2 image held by a device (in memory, say), which may name no backing file.
pub fn open_device(file: Device) -> io::Result<Device> {
    let mut chain = Chain {
        confine: None,
        seen: Vec::new(),
    };
    Ok(Arc::new(Qcow2::open(
        file,
        Path::new(""),
        "qcow2".into(),
        &mut chain,
    )?))
}

/// The backing chain opened so far: where its files may lie, and the images already in
/// it (resolved), to refuse a loop.
struct Chain<'a> {
    /// Where backing files may lie; none may be opened without it.
    confine: Option<&'a Confinement>,
    seen: Vec<PathBuf>,
}

impl Qcow2 {
    /// Opens one image of a chain from its file at `path`; `name` is how messages call
    /// it (the top image is named by the caller).
    fn open(file: Device, path: &Path, name: String, chain: &mut Chain) -> io::Result<Self> {
        let bad = |what: String| corrupt(format!("{name}: {what}"));
        let h = read_vec(file.as_ref(), 0, 104.min(file.len()) as usize)?;
        if h.len() < 72 || &h[..4] != MAGIC {
            return Err(bad("header is truncated".into()));
        }
        let version = be32(&h, 4);
        if !(2..=3).contains(&version) {
            return Err(bad(format!("version {version} is not supported")));
        }
        let cluster_bits = be32(&h, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(bad(format!("impossible cluster size 2^{cluster_bits}")));
        }
        let size = be64(&h, 24);
        if be32(&h, 32) != 0 {
            return Err(bad("the image is encrypted; rehost cannot read it (decrypt it with qemu-img convert first)".into()));
        }
        let l1_size = be32(&h, 36) as u64;
        let l1_offset = be64(&h, 40);
        let mut zstd = false;
        if version == 3 {
            if h.len() < 104 {
                return Err(bad("version 3 header is truncated".into()));
            }
            let incompat = be64(&h, 72);
            if incompat & 0x2 != 0 {
                return Err(bad(
                    "qemu marked the image corrupt; run `qemu-img check -r all` on a copy".into(),
                ));
            }
            if incompat & 0x4 != 0 {
                return Err(bad(
                    "the data lives in an external data file, which rehost does not read".into(),
                ));
            }
            if incompat & 0x10 != 0 {
                return Err(bad("extended L2 entries (subclusters) are not supported; qemu-img convert it first".into()));
            }
            if incompat & !0x1f != 0 {
                return Err(bad(format!("unknown incompatible features {incompat:#x}")));
            }
            let header_len = be32(&h, 100) as usize;
            if incompat & 0x8 != 0 && header_len > 104 {
                let t = read_vec(file.as_ref(), 104, 1)?;
                zstd = match t[0] {
                    0 => false,
                    1 => true,
                    other => return Err(bad(format!("unknown compression type {other}"))),
                };
            }
        }
        let cluster = 1u64 << cluster_bits;
        let l2_entries = cluster / 8;
        let needed = size.div_ceil(cluster).div_ceil(l2_entries);
        if l1_size < needed || l1_size > (1 << 26) {
            return Err(bad(format!(
                "L1 table of {l1_size} entries does not fit the disk size {size}"
            )));
        }
        if !l1_offset.is_multiple_of(cluster)
            || l1_offset
                .checked_add(l1_size * 8)
                .is_none_or(|end| end > file.len())
        {
            return Err(bad("L1 table lies outside the image (truncated?)".into()));
        }
        let raw = read_vec(file.as_ref(), l1_offset, (l1_size * 8) as usize)?;
        let l1 = (0..l1_size as usize).map(|i| be64(&raw, i * 8)).collect();

        let backing_offset = be64(&h, 8);
        let backing_len = be32(&h, 16) as usize;
        let backing = if backing_offset != 0 && backing_len != 0 {
            if backing_len > 1023 {
                return Err(bad("backing file name is too long".into()));
            }
            let raw = read_vec(file.as_ref(), backing_offset, backing_len)?;
            let named = PathBuf::from(std::ffi::OsString::from_vec(raw));
            // Errors below name the file at fault themselves; wrapping them here would
            // repeat every name of a long chain on one line.
            Some(open_backing(path, &named, chain)?)
        } else {
            None
        };
        let clusters = {
            let (file, name) = (file.clone(), name.clone());
            let size = 1usize << cluster_bits;
            ClusterCache::new(
                CLUSTER_CACHE_BYTES >> cluster_bits,
                Box::new(move |offset, len| decompress(&file, &name, zstd, size, offset, len)),
            )
        };
        Ok(Qcow2 {
            file,
            name,
            cluster_bits,
            size,
            l1,
            backing,
            l2_cache: Mutex::new(Cache::new(L2_CACHE_BYTES >> cluster_bits)),
            clusters,
        })
    }

    fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    fn bad(&self, what: String) -> io::Error {
        corrupt(format!("{}: {what}", self.name))
    }

    fn l2_table(&self, offset: u64) -> io::Result<Arc<Vec<u8>>> {
        if let Some(t) = self.l2_cache.lock().unwrap().get(offset) {
            return Ok(t);
        }
        if !offset.is_multiple_of(self.cluster_size())
            || offset
                .checked_add(self.cluster_size())
                .is_none_or(|end| end > self.file.len())
        {
            return Err(self.bad(format!(
                "L2 table at {offset} lies outside the image (truncated or corrupt)"
            )));
        }
        let t = Arc::new(read_vec(
            self.file.as_ref(),
            offset,
            self.cluster_size() as usize,
        )?);
        self.l2_cache.lock().unwrap().put(offset, t.clone());
        Ok(t)
    }

    fn map(&self, guest_cluster: u64) -> io::Result<Mapping> {
        let l2_entries = self.cluster_size() / 8;
        let l1_index = (guest_cluster / l2_entries) as usize;
        let l1e = *self
            .l1
            .get(l1_index)
            .ok_or_else(|| self.bad("read past the L1 table".into()))?;
        let l2_offset = l1e & OFFSET_MASK;
        if l2_offset == 0 {
            return Ok(Mapping::Unallocated);
        }
        let table = self.l2_table(l2_offset)?;
        let e = be64(&table, ((guest_cluster % l2_entries) * 8) as usize);
        if e & L2_COMPRESSED != 0 {
            let x = 62 - (self.cluster_bits - 8);
            let offset = e & ((1u64 << x) - 1);
            let sectors = ((e >> x) & ((1u64 << (self.cluster_bits - 8)) - 1)) + 1;
            let len = (sectors * 512 - (offset & 511)).min(self.file.len().saturating_sub(offset));
            if offset >= self.file.len() {
                return Err(self.bad(format!(
                    "compressed cluster at {offset} lies outside the image (truncated?)"
                )));
            }
            return Ok(Mapping::Compressed {
                offset,
                len: len as usize,
            });
        }
        let offset = e & OFFSET_MASK;
        if e & 1 != 0 {
            return Ok(Mapping::Zero);
        }
        if offset == 0 {
            return Ok(Mapping::Unallocated);
        }
        if !offset.is_multiple_of(self.cluster_size()) {
            return Err(self.bad(format!("data cluster at {offset} is not aligned")));
        }
        Ok(Mapping::Data(offset))
    }

    /// Where the compressed clusters after `guest` are, for the read-ahead workers.
    fn read_ahead(&self, guest: u64) {
        let ahead = self.clusters.ahead_of(guest);
        if ahead.is_empty() {
            return;
        }
        let jobs = ahead
            .map_while(|g| self.map(g).ok())
            .filter_map(|m| match m {
                Mapping::Compressed { offset, len } => Some((offset, len)),
                _ => None,
            });
        self.clusters.prefetch(jobs);
    }
}

/// Reads and decompresses the compressed cluster at `offset` (`len` bytes there).
fn decompress(
    file: &Device,
    name: &str,
    zstd: bool,
    size: usize,
    offset: u64,
    len: usize,
) -> io::Result<Vec<u8>> {
    let input = read_vec(file.as_ref(), offset, len)?;
    let out = if zstd {
        // The cluster's sectors hold its one frame and then whatever follows it (the
        // next cluster's data): only the frame is decompressed.
        let frame = zstd::zstd_safe::find_frame_compressed_size(&input).unwrap_or(input.len());
        let mut out = vec![0u8; size];
        let mut d = zstd::bulk::Decompressor::new()?;
        let n = d
            .decompress_to_buffer(&input[..frame.min(input.len())], &mut out)
            .unwrap_or(0);
        out.truncate(n);
        out
    } else {
        inflate(&input, false, size).unwrap_or_default()
    };
    let ok = out.len() == size;
    if !ok {
        return Err(corrupt(format!(
            "{name}: compressed cluster at {offset} does not decompress to a whole cluster"
        )));
    }
    Ok(out)
}

impl BlockDevice for Qcow2 {
    fn len(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.size)
        {
            return Err(self.bad(format!("read at {offset} past the end of the disk")));
        }
        let cs = self.cluster_size();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let within = pos % cs;
            let n = (buf.len() - done).min((cs - within) as usize);
            let out = &mut buf[done..done + n];
            match self.map(pos / cs)? {
                Mapping::Unallocated => match &self.backing {
                    // A backing disk smaller than this one reads as zeros past its end.
                    Some(b) if pos < b.len() => {
                        let k = n.min((b.len() - pos) as usize);
                        b.read_at(&mut out[..k], pos)?;
                        out[k..].fill(0);
                    }
                    _ => out.fill(0),
                },
                Mapping::Zero => out.fill(0),
                Mapping::Data(host) => {
                    if (host + within)
                        .checked_add(n as u64)
                        .is_none_or(|end| end > self.file.len())
                    {
                        return Err(self.bad(format!(
                            "data cluster at {host} lies beyond the end of the image (truncated?)"
                        )));
                    }
                    self.file.read_at(out, host + within)?;
                }
                Mapping::Compressed { offset, len } => {
                    self.read_ahead(pos / cs);
                    let c = self.clusters.get(offset, len)?;
                    out.copy_from_slice(&c[within as usize..within as usize + n]);
                }
            }
            done += n;
        }
        Ok(())
    }
}

/// A backing file: qcow2 again, or a raw image. `by` is the image naming it.
fn open_backing(by: &Path, named: &Path, chain: &mut Chain) -> io::Result<Device> {
    if chain.seen.len() >= MAX_CHAIN {
        return Err(corrupt(format!(
            "the backing file chain is more than {MAX_CHAIN} images deep: refused"
        )));
    }
    let Some(confine) = chain.confine else {
        return Err(corrupt(format!(
            "names a backing file, {}, which is not opened here",
            named.display()
        )));
    };
    let (resolved, file) = confine.open(by, named, "backing file")?;
    if chain.seen.contains(&resolved) {
        return Err(corrupt(format!(
            "the backing file chain loops back to {}",
            named.display()
        )));
    }
    chain.seen.push(resolved.clone());
    let file: Device = Arc::new(FileDevice::from_file(file)?);
    let mut head = [0u8; 4];
    if file.len() >= 4 {
        file.read_at(&mut head, 0)?;
    }
    if head == MAGIC {
        let name = format!("qcow2 backing file {}", named.display());
        // Its own backing file is named relative to where it was found, as qemu does.
        let path = match by.parent() {
            Some(dir) if named.is_relative() => dir.join(named),
            _ => named.to_path_buf(),
        };
        Ok(Arc::new(Qcow2::open(file, &path, name, chain)?))
    } else {
        Ok(file)
    }
}
