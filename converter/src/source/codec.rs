//! The binary form of what rehost writes and reads back itself: the archive index's
//! temporary file and the record of a prepare's reads a server sends. Integers are
//! little-endian, byte strings a 32-bit length and the bytes. Reading checks every
//! length and count against the bytes left, so a corrupt or forged input cannot make a
//! loop or an allocation outgrow it.

use crate::entry::{Entry, Extent, Kind};

pub(crate) struct Out(pub Vec<u8>);

impl Out {
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    pub(crate) fn entry(&mut self, e: &Entry) {
        self.bytes(&e.path);
        self.0
            .push(KINDS.iter().position(|k| *k == e.kind).unwrap_or(0) as u8);
        self.u64(e.size);
        self.u32(e.mode);
        self.u32(e.uid);
        self.u32(e.gid);
        self.u64(e.mtime as u64);
        self.u32(e.mtime_nsec);
        self.bytes(&e.link);
        self.u32(e.major);
        self.u32(e.minor);
        self.u32(e.xattrs.len() as u32);
        for (k, v) in &e.xattrs {
            self.bytes(k);
            self.bytes(v);
        }
        match &e.sparse {
            None => self.0.push(0),
            Some(extents) => {
                self.0.push(1);
                self.u32(extents.len() as u32);
                for x in extents {
                    self.u64(x.offset);
                    self.u64(x.len);
                }
            }
        }
        match e.inode {
            None => self.0.push(0),
            Some((dev, ino)) => {
                self.0.push(1);
                self.u64(dev);
                self.u64(ino);
            }
        }
    }
}

pub(crate) const KINDS: [Kind; 8] = [
    Kind::File,
    Kind::Dir,
    Kind::Symlink,
    Kind::Hardlink,
    Kind::Char,
    Kind::Block,
    Kind::Fifo,
    Kind::Socket,
];

pub(crate) type Parsed<T> = std::result::Result<T, String>;

pub(crate) struct In<'a>(pub &'a [u8]);

impl<'a> In<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Parsed<&'a [u8]> {
        if n > self.0.len() {
            return Err("cut short".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    pub(crate) fn u8(&mut self) -> Parsed<u8> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn flag(&mut self) -> Parsed<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("a flag of {other}")),
        }
    }
    pub(crate) fn u32(&mut self) -> Parsed<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    pub(crate) fn u64(&mut self) -> Parsed<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    /// A count of items, each at least a byte: never more than the bytes left, so a
    /// forged count cannot make a loop or an allocation outgrow the record.
    pub(crate) fn count(&mut self) -> Parsed<usize> {
        let n = self.u32()? as usize;
        if n > self.0.len() {
            return Err(format!("a count of {n} past its end"));
        }
        Ok(n)
    }
    pub(crate) fn bytes(&mut self) -> Parsed<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    pub(crate) fn text(&mut self) -> Parsed<String> {
        String::from_utf8(self.bytes()?).map_err(|_| "a text not in UTF-8".into())
    }
    pub(crate) fn entry(&mut self) -> Parsed<Entry> {
        let path = self.bytes()?;
        let kind = *KINDS
            .get(self.u8()? as usize)
            .ok_or("an unknown kind of entry")?;
        let mut e = Entry::new(path, kind);
        e.size = self.u64()?;
        e.mode = self.u32()?;
        e.uid = self.u32()?;
        e.gid = self.u32()?;
        e.mtime = self.u64()? as i64;
        e.mtime_nsec = self.u32()?;
        e.link = self.bytes()?;
        e.major = self.u32()?;
        e.minor = self.u32()?;
        for _ in 0..self.count()? {
            e.xattrs.push((self.bytes()?, self.bytes()?));
        }
        if self.flag()? {
            let n = self.count()?;
            let mut extents = Vec::with_capacity(n.min(self.0.len() / 16));
            for _ in 0..n {
                extents.push(Extent {
                    offset: self.u64()?,
                    len: self.u64()?,
                });
            }
            e.sparse = Some(extents);
        }
        if self.flag()? {
            e.inode = Some((self.u64()?, self.u64()?));
        }
        Ok(e)
    }
}
