//! The one tar reader: every archive rehost reads (a server archive, a layer it unpacks,
//! an oci-archive, an OVA) goes through it, so each rule holds everywhere:
//!
//! - a header's checksum must match, and its numbers must be numbers;
//! - extension headers (PAX `x`/`g`, GNU long names `L`/`K`) are read up to
//!   [`MAX_EXTENSION`] bytes in all for one entry, so no header makes the reader hold
//!   more than that;
//! - the PAX `size`, `path`, `linkpath`, `uid`, `gid` and `mtime` records override the
//!   header, as POSIX says (GNU tar writes files of 8 GiB and more as size 0 plus a PAX
//!   size: a reader that ignores it reads their content as further entries);
//! - sparse files in every format GNU tar writes (old GNU `S` headers, PAX 0.0, 0.1 and
//!   1.0) are described by one [`Sparse`], whose map is checked against the real size and
//!   the bytes the entry really holds;
//! - an entry's data is read through [`Reader::data`], which ends at the entry's size.

use super::sparse::{self, SparseError};
use crate::entry::Extent;
use std::io::{self, Read};

/// The most the extension headers of one entry may hold, all together.
pub const MAX_EXTENSION: u64 = 1 << 20;

const BLOCK: u64 = 512;

/// One PAX record: key and value, as bytes.
pub type Record = (Vec<u8>, Vec<u8>);

/// What is wrong with an archive.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("header at byte {at}: checksum mismatch (not a tar archive, or corrupt)")]
    Checksum { at: u64 },
    #[error("header at byte {at}: field `{field}` is not a number")]
    Number { at: u64, field: &'static str },
    #[error("entry at byte {at}: extension headers larger than {MAX_EXTENSION} bytes (refused)")]
    ExtensionTooLarge { at: u64 },
    #[error("entry at byte {at}: malformed PAX record: {why}")]
    Pax { at: u64, why: &'static str },
    #[error("entry at byte {at}: {source}")]
    Sparse {
        at: u64,
        #[source]
        source: SparseError,
    },
    #[error("cut short at byte {at}")]
    Truncated { at: u64 },
    #[error("extension headers at byte {at} describe no entry")]
    Dangling { at: u64 },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What kind of entry a header describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    File,
    Hardlink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
    /// A type this reader does not know, by its type byte (the entry's data is skipped).
    Other(u8),
}

/// A sparse file: its logical size, and where its data lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sparse {
    pub real_size: u64,
    /// The data extents when the headers list them (GNU `S`, PAX 0.x); `None` for PAX
    /// 1.0, whose map opens the entry's data (read it with [`Reader::sparse_extents`]).
    pub map: Option<Vec<Extent>>,
}

/// One entry, with its extension headers applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub path: Vec<u8>,
    /// The target of a symlink or hardlink.
    pub link: Option<Vec<u8>>,
    pub kind: EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub major: u32,
    pub minor: u32,
    /// The bytes of data the archive holds for this entry (for a sparse file, its map
    /// and data extents, not its logical size).
    pub size: u64,
    /// Where the data starts, in bytes from the start of the stream.
    pub data_offset: u64,
    pub sparse: Option<Sparse>,
    /// The PAX records of this entry other than those applied above, in order
    /// (`SCHILY.xattr.*`, `SCHILY.acl.*`, `uname`, …).
    pub records: Vec<Record>,
}

impl Header {
    /// The entry's extended attributes (`SCHILY.xattr.NAME`), as name and value.
    pub fn xattrs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.records.iter().filter_map(|(k, v)| {
            k.strip_prefix(b"SCHILY.xattr.")
                .map(|name| (name, v.as_slice()))
        })
    }
}

/// Reads a tar stream entry by entry.
pub struct Reader<R> {
    inner: R,
    /// Bytes read from `inner` so far.
    pos: u64,
    /// Data bytes of the current entry not yet read, then its padding.
    left: u64,
    padding: u64,
    done: bool,
    /// Skips data by seeking, for a stream that can (see [`Reader::seekable`]).
    seek: Option<fn(&mut R, u64) -> io::Result<()>>,
    /// Reads on past zero blocks to the stream's end (see [`Reader::concatenated`]).
    concatenated: bool,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader {
            inner,
            pos: 0,
            left: 0,
            padding: 0,
            done: false,
            seek: None,
            concatenated: false,
        }
    }

    /// A reader of archives one after another in one stream (the layers of an image
    /// whose layers add to each other, never remove), as `tar --ignore-zeros` reads
    /// them: the end-of-archive blocks between them are passed over.
    pub fn concatenated(inner: R) -> Self {
        let mut reader = Reader::new(inner);
        reader.concatenated = true;
        reader
    }

    /// Bytes of the stream read so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The stream, to flush what it copies on the way (a spool) between entries.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The next entry, after skipping what is left of the current one; `None` at the
    /// end of the archive.
    pub fn next_entry(&mut self) -> Result<Option<Header>, TarError> {
        if self.done {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut pax: Vec<Record> = Vec::new();
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut extension_bytes = 0u64;
        let start = self.pos;
        loop {
            let at = self.pos;
            let Some(block) = self.header_block()? else {
                if extension_bytes > 0 {
                    return Err(TarError::Dangling { at: start });
                }
                self.done = true;
                return Ok(None);
            };
            let typeflag = block[156];
            let size = number(&block[124..136]).ok_or(TarError::Number { at, field: "size" })?;
            if matches!(typeflag, b'x' | b'g' | b'L' | b'K') {
                extension_bytes = extension_bytes.saturating_add(size);
                if extension_bytes > MAX_EXTENSION {
                    return Err(TarError::ExtensionTooLarge { at });
                }
                let data = self.read_small(size)?;
                match typeflag {
                    b'x' => pax.extend(parse_pax(&data).map_err(|why| TarError::Pax { at, why })?),
                    // Global records: rehost writes none, and what they could say (a
                    // default owner or time) is not worth trusting; they are read past.
                    b'g' => {
                        parse_pax(&data).map_err(|why| TarError::Pax { at, why })?;
                    }
                    b'L' => long_name = Some(trim_nul(data)),
                    _ => long_link = Some(trim_nul(data)),
                }
                continue;
            }
            return self
                .entry(at, &block, size, pax, long_name, long_link)
                .map(Some);
        }
    }

    /// The current entry's data: reads end at its size.
    pub fn data(&mut self) -> Data<'_, R> {
        Data { reader: self }
    }

    /// For a sparse entry: its data extents, after which [`Reader::data`] gives their
    /// bytes one after another. PAX 1.0 maps are read from the start of the data.
    pub fn sparse_extents(&mut self, header: &Header) -> Result<Vec<Extent>, TarError> {
        let Some(s) = &header.sparse else {
            return Ok(Vec::new());
        };
        match &s.map {
            Some(map) => Ok(map.clone()),
            None => {
                let len = header.size;
                sparse::read_map(&mut self.data(), s.real_size, len).map_err(|source| {
                    TarError::Sparse {
                        at: header.data_offset,
                        source,
                    }
                })
            }
        }
    }

    fn entry(
        &mut self,
        at: u64,
        block: &[u8; 512],
        mut size: u64,
        pax: Vec<Record>,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
    ) -> Result<Header, TarError> {
        let field = |range: std::ops::Range<usize>, name: &'static str| {
            number(&block[range]).ok_or(TarError::Number { at, field: name })
        };
        let typeflag = block[156];
        let ustar = &block[257..263] == b"ustar\0";
        let mut path = cstr(&block[0..100]).to_vec();
        if ustar && block[345] != 0 {
            // POSIX ustar: a prefix (GNU headers use these bytes for times instead).
            let mut full = cstr(&block[345..500]).to_vec();
            full.push(b'/');
            full.extend_from_slice(&path);
            path = full;
        }
        let mut link = cstr(&block[157..257]).to_vec();
        let mut header = Header {
            path: Vec::new(),
            link: None,
            kind: EntryType::Other(typeflag),
            mode: field(100..108, "mode")? as u32 & 0o7777,
            uid: field(108..116, "uid")?,
            gid: field(116..124, "gid")?,
            mtime: field(136..148, "mtime")? as i64,
            mtime_nsec: 0,
            major: 0,
            minor: 0,
            size: 0,
            data_offset: 0,
            sparse: None,
            records: Vec::new(),
        };
        if matches!(typeflag, b'3' | b'4') {
            header.major = number(&block[329..337]).unwrap_or(0) as u32;
            header.minor = number(&block[337..345]).unwrap_or(0) as u32;
        }
        if let Some(n) = long_name {
            path = n;
        }
        if let Some(l) = long_link {
            link = l;
        }
        // PAX records win over everything else; a later record of a key wins.
        let mut sparse_v0 = SparseV0::default();
        let bad = |why| TarError::Pax { at, why };
        for (key, value) in pax {
            let text = || String::from_utf8_lossy(&value).trim().to_string();
            match key.as_slice() {
                b"path" => path = value,
                b"linkpath" => link = value,
                b"size" => size = text().parse().map_err(|_| bad("bad size"))?,
                b"uid" => header.uid = text().parse().map_err(|_| bad("bad uid"))?,
                b"gid" => header.gid = text().parse().map_err(|_| bad("bad gid"))?,
                b"mtime" => {
                    (header.mtime, header.mtime_nsec) = pax_time(&text()).ok_or(bad("bad mtime"))?
                }
                b"atime" | b"ctime" => {}
                b"GNU.sparse.major" => sparse_v0.major = Some(text()),
                b"GNU.sparse.minor" => sparse_v0.minor = Some(text()),
                b"GNU.sparse.name" => sparse_v0.name = Some(value),
                b"GNU.sparse.realsize" | b"GNU.sparse.size" => {
                    sparse_v0.real_size = Some(text().parse().map_err(|_| bad("bad sparse size"))?)
                }
                b"GNU.sparse.numblocks" => {}
                b"GNU.sparse.offset" => sparse_v0
                    .numbers
                    .push(text().parse().map_err(|_| bad("bad sparse offset"))?),
                b"GNU.sparse.numbytes" => sparse_v0
                    .numbers
                    .push(text().parse().map_err(|_| bad("bad sparse length"))?),
                b"GNU.sparse.map" => {
                    for n in text().split(',').filter(|n| !n.is_empty()) {
                        sparse_v0
                            .numbers
                            .push(n.parse().map_err(|_| bad("bad sparse map"))?);
                    }
                }
                _ => header.records.push((key, value)),
            }
        }
        let data_offset = self.pos;
        header.kind = match typeflag {
            b'0' | b'\0' | b'7' => EntryType::File,
            b'1' => EntryType::Hardlink,
            b'2' => EntryType::Symlink,
            b'3' => EntryType::Char,
            b'4' => EntryType::Block,
            b'5' => EntryType::Dir,
            b'6' => EntryType::Fifo,
            b'S' => EntryType::File,
            other => EntryType::Other(other),
        };
        // The old GNU sparse header: up to four extents in the header, more in
        // extension blocks that follow it, then the data.
        if typeflag == b'S' {
            let real_size = number(&block[483..495]).ok_or(TarError::Number {
                at,
                field: "realsize",
            })?;
            let mut numbers = Vec::new();
            gnu_sparse_pairs(&block[386..482], &mut numbers, at)?;
            let mut extended = block[482] != 0;
            while extended {
                let ext_at = self.pos;
                let ext = self.read_small(BLOCK)?;
                if numbers.len() as u64 / 2 > sparse::MAX_EXTENTS {
                    return Err(TarError::Sparse {
                        at,
                        source: SparseError::TooMany(numbers.len() as u64 / 2),
                    });
                }
                gnu_sparse_pairs(&ext[..504], &mut numbers, ext_at)?;
                extended = ext[504] != 0;
            }
            header.sparse = Some(checked_map(&numbers, real_size, size, at)?);
        } else if let Some(real_size) = sparse_v0.real_size {
            if sparse_v0.major.as_deref() == Some("1") {
                if let Some(name) = sparse_v0.name.take() {
                    path = name;
                }
                header.sparse = Some(Sparse {
                    real_size,
                    map: None,
                });
            } else {
                if let Some(name) = sparse_v0.name.take() {
                    path = name;
                }
                header.sparse = Some(checked_map(&sparse_v0.numbers, real_size, size, at)?);
            }
        }
        header.path = path;
        header.link =
            matches!(header.kind, EntryType::Symlink | EntryType::Hardlink).then_some(link);
        // Entries of these types hold no data, whatever their size field says: the next
        // header follows at once. (Go's archive/tar, and so Docker and containerd, read
        // them so; two readers that disagree on where entries start see two archives.)
        let stored = match header.kind {
            EntryType::Hardlink
            | EntryType::Symlink
            | EntryType::Char
            | EntryType::Block
            | EntryType::Dir
            | EntryType::Fifo => 0,
            _ => size,
        };
        header.size = stored;
        header.data_offset = data_offset;
        self.left = stored;
        self.padding = (BLOCK - stored % BLOCK) % BLOCK;
        Ok(header)
    }

    /// The next header block; `None` at the end (a zero block, or the stream's end).
    fn header_block(&mut self) -> Result<Option<[u8; 512]>, TarError> {
        let mut block = [0u8; 512];
        let mut at = self.pos;
        loop {
            let got = read_full(&mut self.inner, &mut block)?;
            self.pos += got as u64;
            if got == 0 {
                return Ok(None);
            }
            if got < block.len() {
                return Err(TarError::Truncated { at: self.pos });
            }
            if !block.iter().all(|&b| b == 0) {
                break;
            }
            if !self.concatenated {
                return Ok(None);
            }
            at = self.pos;
        }
        if !checksum_ok(&block) {
            return Err(TarError::Checksum { at });
        }
        Ok(Some(block))
    }

    /// Reads `len` bytes and their padding (extension headers; callers cap `len`).
    fn read_small(&mut self, len: u64) -> Result<Vec<u8>, TarError> {
        let mut data = Vec::with_capacity(len as usize);
        let got = (&mut self.inner).take(len).read_to_end(&mut data)?;
        self.pos += got as u64;
        if (got as u64) < len {
            return Err(TarError::Truncated { at: self.pos });
        }
        let padding = (BLOCK - len % BLOCK) % BLOCK;
        self.skip(padding)?;
        Ok(data)
    }

    fn skip_rest(&mut self) -> Result<(), TarError> {
        let n = self.left + self.padding;
        self.left = 0;
        self.padding = 0;
        self.skip(n)
    }

    fn skip(&mut self, n: u64) -> Result<(), TarError> {
        if let Some(seek) = self.seek {
            // What lies past the end shows as a missing header or short data later.
            seek(&mut self.inner, n)?;
            self.pos += n;
            return Ok(());
        }
        let got = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
        self.pos += got;
        if got < n {
            return Err(TarError::Truncated { at: self.pos });
        }
        Ok(())
    }
}

impl<R: Read + io::Seek> Reader<R> {
    /// A reader that skips the data it is not asked for by seeking (an archive file
    /// indexed without reading its blobs).
    pub fn seekable(inner: R) -> Self {
        let mut reader = Reader::new(inner);
        reader.seek = Some(|r, n| {
            let n = i64::try_from(n).map_err(io::Error::other)?;
            r.seek(io::SeekFrom::Current(n)).map(|_| ())
        });
        reader
    }
}

/// The data of the current entry (see [`Reader::data`]).
pub struct Data<'a, R> {
    reader: &'a mut Reader<R>,
}

impl<R: Read> Read for Data<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = &mut *self.reader;
        if r.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(r.left.min(usize::MAX as u64) as usize);
        let n = r.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the archive is cut short at byte {}", r.pos),
            ));
        }
        r.pos += n as u64;
        r.left -= n as u64;
        Ok(n)
    }
}

#[derive(Default)]
struct SparseV0 {
    major: Option<String>,
    minor: Option<String>,
    name: Option<Vec<u8>>,
    real_size: Option<u64>,
    /// Offset, length, offset, length, …
    numbers: Vec<u64>,
}

/// Whether a 512-byte block is a tar header: its checksum field matches the sum of its
/// bytes (the field itself counted as spaces), unsigned as POSIX says, or signed as some
/// old writers summed. A v7 header has no magic: this is how it is told from other data.
pub fn checksum_ok(block: &[u8]) -> bool {
    if block.len() != 512 {
        return false;
    }
    let Some(want) = number(&block[148..156]) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let (u, s) = if (148..156).contains(&i) {
            (32, 32)
        } else {
            (b as u64, b as i8 as i64)
        };
        unsigned += u;
        signed += s;
    }
    want == unsigned || want as i64 == signed
}

/// Reads (offset, length) pairs of 12-byte numbers until an empty one.
fn gnu_sparse_pairs(bytes: &[u8], out: &mut Vec<u64>, at: u64) -> Result<(), TarError> {
    for pair in bytes.chunks_exact(24) {
        if pair[0] == 0 {
            break;
        }
        for half in pair.chunks_exact(12) {
            out.push(number(half).ok_or(TarError::Number {
                at,
                field: "sparse map",
            })?);
        }
    }
    Ok(())
}

/// A map listed in headers, checked as a PAX 1.0 map is: in order, inside the real
/// size, and no more data than the entry holds.
fn checked_map(numbers: &[u64], real_size: u64, stored: u64, at: u64) -> Result<Sparse, TarError> {
    let fail = |source| TarError::Sparse { at, source };
    if !numbers.len().is_multiple_of(2) {
        return Err(fail(SparseError::Short));
    }
    if numbers.len() as u64 / 2 > sparse::MAX_EXTENTS {
        return Err(fail(SparseError::TooMany(numbers.len() as u64 / 2)));
    }
    let mut map = Vec::new();
    let mut end = 0u64;
    let mut data = 0u64;
    for pair in numbers.chunks_exact(2) {
        let (offset, len) = (pair[0], pair[1]);
        if offset < end || offset.checked_add(len).is_none_or(|e| e > real_size) {
            return Err(fail(SparseError::OutOfBounds));
        }
        end = offset + len;
        data += len;
        if len > 0 {
            map.push(Extent { offset, len });
        }
    }
    if data > stored {
        return Err(fail(SparseError::LongerThanEntry {
            need: data,
            have: stored,
        }));
    }
    Ok(Sparse {
        real_size,
        map: Some(map),
    })
}

/// A numeric header field: octal digits (spaces and NULs around them), or GNU's
/// base-256 form (high bit of the first byte set). `None` when it is neither.
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut n: u64 = (field[0] & 0x3f) as u64;
        for &b in &field[1..] {
            n = n.checked_mul(256)?.checked_add(b as u64)?;
        }
        return Some(n);
    }
    let text = field
        .iter()
        .skip_while(|&&b| b == b' ' || b == 0)
        .take_while(|&&b| b != b' ' && b != 0);
    let mut n: u64 = 0;
    for &b in text {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        n = n.checked_mul(8)?.checked_add((b - b'0') as u64)?;
    }
    Some(n)
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// PAX records: "LEN key=value\n", where LEN counts the whole record, so a value may
/// hold any byte, newlines included.
fn parse_pax(mut data: &[u8]) -> Result<Vec<Record>, &'static str> {
    let mut out = Vec::new();
    while !data.is_empty() && data[0] != 0 {
        let space = data
            .iter()
            .take(20)
            .position(|&b| b == b' ')
            .ok_or("record without a length")?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("record length is not a number")?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("record length does not fit");
        }
        let body = &data[space + 1..len - 1];
        let eq = body
            .iter()
            .position(|&b| b == b'=')
            .ok_or("record without `=`")?;
        out.push((body[..eq].to_vec(), body[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Ok(out)
}

/// A PAX time: seconds (maybe negative) with an optional decimal fraction.
fn pax_time(text: &str) -> Option<(i64, u32)> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    Some((secs, digits.parse().ok()?))
}

#[cfg(test)]
mod tests;
