//! Sparse maps: PAX 1.0 sparse files, the format [`super::TarWriter`] writes and GNU tar
//! `--sparse --format=posix` too (the reader takes the real name and size from the PAX
//! records, [`super::read`]), have data that
//! starts with a map (the count of extents, then each one's offset and length, decimal,
//! one per line, padded to a block) followed by the extents' bytes one after another.
//! Every number is checked against the real size and the bytes the entry really holds,
//! so a hostile map can neither write past the file nor make a reader wait for data.

use crate::entry::Extent;
use std::io::{self, Read};

/// The most extents one file's map may list.
pub const MAX_EXTENTS: u64 = 1 << 20;

/// What is wrong with a sparse entry.
#[derive(Debug, thiserror::Error)]
pub enum SparseError {
    #[error("the sparse map is cut short")]
    Short,
    #[error("the sparse map holds something other than numbers")]
    NotANumber,
    #[error("a sparse map of {0} extents (at most {MAX_EXTENTS})")]
    TooMany(u64),
    #[error("sparse extents out of order or past the file's end")]
    OutOfBounds,
    #[error("the sparse data is longer than the entry ({need} bytes, the entry holds {have})")]
    LongerThanEntry { need: u64, have: u64 },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads the map at the start of an entry's data of `entry_len` bytes: the data extents
/// (empty ones left out), after which `data` is at the first extent's bytes. Fails unless
/// the extents are in order, inside `real_size`, and fit in what the entry holds.
pub fn read_map(
    data: &mut impl Read,
    real_size: u64,
    entry_len: u64,
) -> Result<Vec<Extent>, SparseError> {
    let mut consumed = 0u64;
    let mut number = |data: &mut dyn Read| -> Result<u64, SparseError> {
        let mut digits = Vec::new();
        loop {
            let mut byte = [0u8; 1];
            if data.read(&mut byte)? == 0 {
                return Err(SparseError::Short);
            }
            consumed += 1;
            match byte[0] {
                b'\n' if !digits.is_empty() => break,
                b @ b'0'..=b'9' if digits.len() < 20 => digits.push(b),
                _ => return Err(SparseError::NotANumber),
            }
        }
        String::from_utf8_lossy(&digits)
            .parse()
            .map_err(|_| SparseError::NotANumber)
    };
    let count = number(data)?;
    if count > MAX_EXTENTS {
        return Err(SparseError::TooMany(count));
    }
    let mut extents = Vec::new();
    let mut end = 0u64;
    for _ in 0..count {
        let offset = number(data)?;
        let len = number(data)?;
        if offset < end || offset.checked_add(len).is_none_or(|e| e > real_size) {
            return Err(SparseError::OutOfBounds);
        }
        end = offset + len;
        // A zero-length extent only marks where the file ends.
        if len > 0 {
            extents.push(Extent { offset, len });
        }
    }
    let padding = (512 - consumed % 512) % 512;
    let skipped = io::copy(&mut data.take(padding), &mut io::sink())?;
    if skipped < padding {
        return Err(SparseError::Short);
    }
    let need = consumed + padding + extents.iter().map(|e| e.len).sum::<u64>();
    if need > entry_len {
        return Err(SparseError::LongerThanEntry {
            need,
            have: entry_len,
        });
    }
    Ok(extents)
}

/// Writes a sparse file's data extents, read one after another from `data`, at `base`
/// plus each extent's offset in `file`, and makes the file at least `base + real_size`
/// long: the holes stay holes, whatever their size.
pub fn expand(
    data: &mut impl Read,
    extents: &[Extent],
    real_size: u64,
    file: &std::fs::File,
    base: u64,
) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 16];
    for x in extents {
        let mut left = x.len;
        let mut at = base + x.offset;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = data.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the sparse data is cut short",
                ));
            }
            file.write_all_at(&buf[..n], at)?;
            at += n as u64;
            left -= n as u64;
        }
    }
    let end = base
        .checked_add(real_size)
        .ok_or_else(|| io::Error::other("sparse file size out of range"))?;
    if file.metadata()?.len() < end {
        file.set_len(end)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Entry, Kind};
    use crate::tar::TarWriter;

    #[test]
    fn the_writers_map_reads_back() {
        let mut file = Entry::new(b"var/disk.img".to_vec(), Kind::File);
        file.mode = 0o644;
        file.size = 3 * 4096;
        let extents = vec![
            Extent {
                offset: 0,
                len: 100,
            },
            Extent {
                offset: 8192,
                len: 4096,
            },
        ];
        file.sparse = Some(extents.clone());
        let data: Vec<u8> = (0..4196u32).map(|i| (i % 251) as u8 + 1).collect();
        let mut w = TarWriter::new(Vec::new());
        w.append(&file, Some(&mut &data[..])).unwrap();
        let tar = w.finish().unwrap();
        let mut archive = crate::tar::Reader::new(&tar[..]);
        let entry = archive.next_entry().unwrap().unwrap();
        let sparse = entry.sparse.clone().unwrap();
        assert_eq!(entry.path, b"var/disk.img");
        assert_eq!(sparse.real_size, 3 * 4096);
        let got = read_map(&mut archive.data(), sparse.real_size, entry.size).unwrap();
        assert_eq!(got, extents);
        let mut rest = Vec::new();
        archive.data().read_to_end(&mut rest).unwrap();
        assert_eq!(rest, data);
    }

    #[test]
    fn hostile_maps_are_refused() {
        let map = |text: &str, real: u64, len: u64| {
            let mut block = text.as_bytes().to_vec();
            block.resize(512, 0);
            read_map(&mut &block[..], real, len).map(|_| ())
        };
        assert!(map("1\n0\n10\n", 100, 1024).is_ok());
        // 1 EiB of data in a 1 KiB entry.
        assert!(map("1\n0\n1152921504606846976\n", u64::MAX, 1024).is_err());
        assert!(map("2\n50\n10\n0\n10\n", 100, 1024).is_err());
        assert!(map("1\n95\n10\n", 100, 1024).is_err());
        assert!(map("9999999\n", 100, 1024).is_err());
        assert!(map("x\n", 100, 1024).is_err());
        assert!(map("1\n0\n", 100, 1024).is_err());
    }
}
