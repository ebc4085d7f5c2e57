//! A deterministic tar writer for OCI layers: ustar headers, with PAX records for what
//! ustar cannot hold (long or non-UTF-8 names, large ids and sizes, extended
//! attributes) and the PAX 1.0 sparse format for files with holes.
//!
//! Nothing in the output depends on the clock or the machine: user and group names are
//! left empty (owners are numeric), PAX headers get fixed names.

use crate::entry::{Entry, Extent, Kind};
use std::io::{self, Read, Write};

const BLOCK: usize = 512;
const USTAR_MAX_OCTAL_8: u64 = 0o7777777;
const USTAR_MAX_OCTAL_12: u64 = 0o77777777777;

pub struct TarWriter<W: Write> {
    out: W,
    written: u64,
    /// Marks files with further names ([`LINKED`]).
    mark_linked: bool,
}

/// The PAX record that marks, in a remote capture's stream (never in a layer), a file
/// whose further names follow as hardlinks, so that the receiver, which builds the image
/// as the stream arrives, knows the file's group when it gets it.
pub const LINKED: &[u8] = b"REHOST.linked";

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter {
            out,
            written: 0,
            mark_linked: false,
        }
    }

    /// A writer that marks files with further names ([`LINKED`]): a capture's stream.
    pub fn marking_linked(out: W) -> Self {
        TarWriter {
            mark_linked: true,
            ..TarWriter::new(out)
        }
    }

    /// Bytes of tar written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes one entry. `data` must give the file's content (for a sparse file: its
    /// data extents one after another) and is read for exactly that many bytes; a
    /// source that ends early is padded with zeros and reported by the returned flag.
    pub fn append(&mut self, entry: &Entry, data: Option<&mut dyn Read>) -> io::Result<bool> {
        let mut name = entry.path.clone();
        if entry.kind == Kind::Dir {
            name.push(b'/');
        }
        let mut pax = Vec::new();
        let mut header_name = name.clone();
        let data_len = match entry.kind {
            Kind::File => entry.data_len(),
            _ => 0,
        };
        let mut body_prefix = Vec::new();
        if let (Kind::File, Some(extents)) = (entry.kind, &entry.sparse) {
            record(&mut pax, b"GNU.sparse.major", b"1");
            record(&mut pax, b"GNU.sparse.minor", b"0");
            record(&mut pax, b"GNU.sparse.name", &name);
            record(
                &mut pax,
                b"GNU.sparse.realsize",
                entry.size.to_string().as_bytes(),
            );
            header_name = sparse_header_name(&name);
            body_prefix = sparse_map(extents);
        } else if name.len() > 100 {
            record(&mut pax, b"path", &name);
        }
        if std::str::from_utf8(&name).is_err() && name.len() > 100 {
            record(&mut pax, b"hdrcharset", b"BINARY");
        }
        if matches!(entry.kind, Kind::Symlink | Kind::Hardlink) && entry.link.len() > 100 {
            record(&mut pax, b"linkpath", &entry.link);
        }
        if entry.uid as u64 > USTAR_MAX_OCTAL_8 {
            record(&mut pax, b"uid", entry.uid.to_string().as_bytes());
        }
        if entry.gid as u64 > USTAR_MAX_OCTAL_8 {
            record(&mut pax, b"gid", entry.gid.to_string().as_bytes());
        }
        let size = body_prefix.len() as u64 + data_len;
        if size > USTAR_MAX_OCTAL_12 {
            record(&mut pax, b"size", size.to_string().as_bytes());
        }
        if entry.mtime < 0 || entry.mtime as u64 > USTAR_MAX_OCTAL_12 {
            record(&mut pax, b"mtime", entry.mtime.to_string().as_bytes());
        }
        if self.mark_linked && entry.kind == Kind::File && entry.inode.is_some() {
            record(&mut pax, LINKED, b"1");
        }
        for (key, value) in &entry.xattrs {
            let mut k = b"SCHILY.xattr.".to_vec();
            k.extend_from_slice(key);
            record(&mut pax, &k, value);
        }
        if !pax.is_empty() {
            let mut h = header(b"PaxHeaders/entry", b'x', pax.len() as u64, entry.mtime);
            finish(&mut h);
            self.write(&h)?;
            self.write(&pax)?;
            self.pad(pax.len() as u64)?;
        }

        let flag = match entry.kind {
            Kind::File => b'0',
            Kind::Hardlink => b'1',
            Kind::Symlink => b'2',
            Kind::Char => b'3',
            Kind::Block => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
            Kind::Socket => return Ok(false),
        };
        let mut h = header(&header_name, flag, size, entry.mtime);
        octal(&mut h[100..108], entry.mode as u64 & 0o7777);
        octal(&mut h[108..116], (entry.uid as u64).min(USTAR_MAX_OCTAL_8));
        octal(&mut h[116..124], (entry.gid as u64).min(USTAR_MAX_OCTAL_8));
        if matches!(entry.kind, Kind::Symlink | Kind::Hardlink) {
            let n = entry.link.len().min(100);
            h[157..157 + n].copy_from_slice(&entry.link[..n]);
        }
        if matches!(entry.kind, Kind::Char | Kind::Block) {
            octal(&mut h[329..337], entry.major as u64);
            octal(&mut h[337..345], entry.minor as u64);
        }
        finish(&mut h);
        self.write(&h)?;
        self.write(&body_prefix)?;

        let mut short = false;
        if data_len > 0 {
            let reader = data.ok_or_else(|| io::Error::other("file entry without data"))?;
            let copied = self.copy_exact(reader, data_len)?;
            if copied < data_len {
                short = true;
                self.zeros(data_len - copied)?;
            }
        }
        self.pad(size)?;
        Ok(short)
    }

    /// Gives back the writer without ending the archive: one part of a tar sent in
    /// parts (a remote capture's chunks), which the parts after it continue.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }

    /// Ends the archive with its two zero blocks and gives back the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.write(&[0u8; BLOCK * 2])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn copy_exact(&mut self, reader: &mut dyn Read, len: u64) -> io::Result<u64> {
        // As large as the content, up to 256 KiB: most files are small, and a buffer is
        // zeroed whole when it is made, once per file.
        let mut buf = vec![0u8; len.min(256 * 1024) as usize];
        let mut left = len;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = match reader.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.write(&buf[..n])?;
            left -= n as u64;
        }
        Ok(len - left)
    }

    fn zeros(&mut self, mut n: u64) -> io::Result<()> {
        let z = [0u8; 8192];
        while n > 0 {
            let k = n.min(z.len() as u64) as usize;
            self.write(&z[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.write(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// Where a sparse file's data extents are read from by [`TarWriter::append`]: the
/// reader must give only the bytes of the extents, in order.
pub struct ExtentReader<R: Read + io::Seek> {
    inner: R,
    extents: Vec<Extent>,
    current: usize,
    left: u64,
}

impl<R: Read + io::Seek> ExtentReader<R> {
    pub fn new(inner: R, extents: &[Extent]) -> Self {
        ExtentReader {
            inner,
            extents: extents.to_vec(),
            current: 0,
            left: 0,
        }
    }
}

impl<R: Read + io::Seek> Read for ExtentReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.left == 0 {
            let Some(e) = self.extents.get(self.current) else {
                return Ok(0);
            };
            self.inner.seek(io::SeekFrom::Start(e.offset))?;
            self.left = e.len;
            self.current += 1;
        }
        let want = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        if n == 0 {
            self.left = 0;
            self.current = self.extents.len();
        }
        Ok(n)
    }
}

fn header(name: &[u8], flag: u8, size: u64, mtime: i64) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size.min(USTAR_MAX_OCTAL_12));
    octal(
        &mut h[136..148],
        (mtime.max(0) as u64).min(USTAR_MAX_OCTAL_12),
    );
    h[156] = flag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h
}

fn finish(h: &mut [u8; BLOCK]) {
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
}

fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let s = format!("{value:0width$o}");
    field[..width].copy_from_slice(&s.as_bytes()[s.len() - width..]);
    field[width] = 0;
}

/// One PAX record: "LEN key=value\n", where LEN counts the whole record.
fn record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// The conventional name of a PAX 1.0 sparse entry's own header: `dir/GNUSparseFile.0/base`.
fn sparse_header_name(name: &[u8]) -> Vec<u8> {
    let (dir, base) = match name.iter().rposition(|&b| b == b'/') {
        Some(i) => (&name[..=i], &name[i + 1..]),
        None => (&b""[..], name),
    };
    [dir, b"GNUSparseFile.0/", base].concat()
}

/// The PAX 1.0 sparse map that starts the data: the count, then offset and length of
/// each extent, one decimal number a line, padded to a block.
fn sparse_map(extents: &[Extent]) -> Vec<u8> {
    let mut map = format!("{}\n", extents.len()).into_bytes();
    for e in extents {
        map.extend_from_slice(format!("{}\n{}\n", e.offset, e.len).as_bytes());
    }
    let rem = map.len() % BLOCK;
    if rem != 0 {
        map.resize(map.len() + BLOCK - rem, 0);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(Entry, &[u8])]) -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new());
        for (e, data) in entries {
            let mut r: &[u8] = data;
            w.append(e, Some(&mut r)).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn pax_records_count_their_own_length() {
        let mut out = Vec::new();
        for n in [0, 1, 90, 92, 93, 94, 995, 996, 997] {
            out.clear();
            record(&mut out, b"path", &vec![b'a'; n]);
            let text = String::from_utf8_lossy(&out);
            let len: usize = text.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(len, out.len(), "{text}");
        }
    }

    #[test]
    fn long_and_binary_names_and_xattrs_read_back_with_the_tar_crate() {
        let long: Vec<u8> = [&b"dir/"[..], &[b'x'; 150], &[0xff, 0xfe]].concat();
        let mut f = Entry::new(long.clone(), Kind::File);
        f.size = 5;
        f.uid = 3_000_000;
        f.xattrs = vec![(
            b"security.capability".to_vec(),
            vec![1, 0, 0, 2, 0x20, 0, 0, 0],
        )];
        let mut l = Entry::new(b"link".to_vec(), Kind::Symlink);
        l.link = long.clone();
        let bytes = archive(&[(f, b"hello"), (l, b"")]);
        assert_eq!(bytes.len() % 512, 0);
        let mut a = tar::Archive::new(&bytes[..]);
        let mut it = a.entries().unwrap();
        let mut first = it.next().unwrap().unwrap();
        assert_eq!(first.path_bytes().as_ref(), long.as_slice());
        assert_eq!(first.header().uid().unwrap(), 3_000_000);
        let exts: Vec<_> = first
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|e| e.unwrap().key_bytes().to_vec())
            .collect();
        assert!(exts.contains(&b"uid".to_vec()));
        assert!(exts.contains(&b"SCHILY.xattr.security.capability".to_vec()));
        let mut s = String::new();
        first.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        let second = it.next().unwrap().unwrap();
        assert_eq!(second.link_name_bytes().unwrap().as_ref(), long.as_slice());
    }

    #[test]
    fn same_entries_give_the_same_bytes() {
        let mut d = Entry::new(b"etc".to_vec(), Kind::Dir);
        d.mode = 0o755;
        d.mtime = 1_700_000_000;
        let a = archive(&[(d.clone(), b"")]);
        let b = archive(&[(d, b"")]);
        assert_eq!(a, b);
        assert_eq!(&a[..4], b"etc/");
    }
}
