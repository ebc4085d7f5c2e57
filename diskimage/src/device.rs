//! Random-access block devices: what every image format gives and every filesystem
//! reader takes. A device is read with positioned reads through `&self`, so one image
//! can be shared by the readers of many files at once.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

pub trait BlockDevice: Send + Sync {
    /// The size in bytes the device presents (a disk's virtual size).
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` from `offset`. Reading past the end is an error, never zeros: a
    /// structure pointing there is corrupt or the image is truncated.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

pub type Device = Arc<dyn BlockDevice>;

pub(crate) fn corrupt(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn check_range(len: u64, buf: usize, offset: u64, what: &str) -> io::Result<()> {
    match offset.checked_add(buf as u64) {
        Some(end) if end <= len => Ok(()),
        _ => Err(corrupt(format!(
            "read of {buf} bytes at offset {offset} lies beyond the end of the {what} ({len} bytes)"
        ))),
    }
}

/// A file read as it is: a raw image, or the file underneath another format.
pub struct FileDevice {
    file: File,
    len: u64,
}

impl FileDevice {
    /// Opens the image the user named (a symlink to it is followed); only a regular
    /// file is opened.
    pub fn open(path: &Path) -> io::Result<Self> {
        Self::from_file(crate::confine::open_regular(path, true)?)
    }

    pub fn from_file(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(FileDevice { file, len })
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

impl BlockDevice for FileDevice {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(self.len, buf.len(), offset, "image file (truncated?)")?;
        self.file.read_exact_at(buf, offset)
    }
}

/// A byte range of another device: a partition, or a file inside an OVA archive.
pub struct Slice {
    inner: Device,
    start: u64,
    len: u64,
}

impl Slice {
    pub fn new(inner: Device, start: u64, len: u64) -> Self {
        Slice { inner, start, len }
    }
}

impl BlockDevice for Slice {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(self.len, buf.len(), offset, "partition")?;
        self.inner.read_at(buf, self.start + offset)
    }
}

/// Reads `len` bytes at `offset` into a new buffer.
pub fn read_vec(dev: &dyn BlockDevice, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    dev.read_at(&mut buf, offset)?;
    Ok(buf)
}

/// Reads up to `len` bytes at `offset`, fewer when the device ends first.
pub fn read_head(dev: &dyn BlockDevice, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let avail = dev.len().saturating_sub(offset).min(len as u64) as usize;
    if avail == 0 {
        // Nothing there (a probe past the end of a small partition): not an error.
        return Ok(Vec::new());
    }
    read_vec(dev, offset, avail)
}

pub fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

pub fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

pub fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// A fixed number of buffers by key, evicting the oldest.
pub struct BufferCache {
    cap: usize,
    map: HashMap<u64, Arc<Vec<u8>>>,
    order: VecDeque<u64>,
}

impl BufferCache {
    pub fn new(cap: usize) -> Self {
        BufferCache {
            cap: cap.max(4),
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&self, key: u64) -> Option<Arc<Vec<u8>>> {
        self.map.get(&key).cloned()
    }

    pub fn put(&mut self, key: u64, value: Arc<Vec<u8>>) {
        if self.map.insert(key, value).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

/// A device over bytes in memory: an image read by the fuzz targets and the tests.
pub struct MemDevice(pub Vec<u8>);

impl BlockDevice for MemDevice {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(self.len(), buf.len(), offset, "image")?;
        let start = offset as usize;
        buf.copy_from_slice(&self.0[start..start + buf.len()]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_read_past_the_end_of_a_small_device_is_empty() {
        let small = MemDevice(vec![0; 8192]);
        assert!(read_head(&small, 0x10040, 8).unwrap().is_empty());
        assert_eq!(read_head(&small, 8190, 8).unwrap().len(), 2);
    }
}
