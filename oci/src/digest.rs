//! sha256 digests of whatever streams through a writer or reader.

use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};

/// Passes writes through to `inner`, hashing and counting them.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The digest (`sha256:…`), the byte count, and the inner writer.
    pub fn finish(self) -> (String, u64, W) {
        (
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.count,
            self.inner,
        )
    }
}

/// A point of a [`HashingWriter`]'s stream to come back to.
#[derive(Clone)]
pub struct Mark {
    hasher: Sha256,
    count: u64,
}

impl Mark {
    /// The bytes written before it.
    pub fn position(&self) -> u64 {
        self.count
    }
}

impl<W> HashingWriter<W> {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.count
    }

    /// The point reached, to take back what comes after it ([`HashingWriter::rewind`]).
    pub fn mark(&self) -> Mark {
        Mark {
            hasher: self.hasher.clone(),
            count: self.count,
        }
    }

    /// Forgets the bytes written since `mark`: the digest and the count are as they were
    /// then. The caller takes them back from the inner writer itself ([`Self::get_mut`]).
    pub fn rewind(&mut self, mark: Mark) {
        self.hasher = mark.hasher;
        self.count = mark.count;
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Passes reads through from `inner`, hashing them.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The digest (`sha256:…`) of what was read so far.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The digest of some bytes.
pub fn of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Checks a digest's form before it is used as a file name.
pub fn is_valid(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}
