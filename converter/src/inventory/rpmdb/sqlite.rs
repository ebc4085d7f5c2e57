//! The rows of one table of an SQLite database file (rpm's `rpmdb.sqlite`, RHEL 9 and
//! Fedora): the schema on page 1 gives the table's root page, its b-tree leads to the
//! rows, a long row continues in overflow pages. Only what rpm's `Packages` table needs is
//! read (a rowid table whose second column is a blob), one page at a time; every count,
//! offset and page number is checked.

use super::{Pages, RpmError};

const MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// No rpm header is bigger (rpm's HEADER_DATA_MAX is 256 MiB).
const MAX_PAYLOAD: u64 = 256 << 20;
/// Deeper than any b-tree of a real database: a cycle of interior pages ends here.
const MAX_DEPTH: usize = 40;

struct Db<'a> {
    pages: &'a Pages,
    page_size: usize,
    usable: usize,
    count: u64,
}

/// Calls `each` with column `column` of every row of table `table`, when it is a blob.
pub fn blobs(
    pages: &Pages,
    table: &str,
    column: usize,
    mut each: impl FnMut(&[u8]) -> Result<(), RpmError>,
) -> Result<(), RpmError> {
    let head = pages.read_at(0, 100)?;
    if &head[..16] != MAGIC {
        return Err(RpmError::Format("not an SQLite database"));
    }
    let page_size = match u16::from_be_bytes([head[16], head[17]]) {
        1 => 65536,
        n => n as usize,
    };
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(RpmError::Format("an impossible page size"));
    }
    let usable = page_size - head[20] as usize;
    if usable < 480 {
        return Err(RpmError::Format("an impossible reserved size"));
    }
    let db = Db {
        pages,
        page_size,
        usable,
        count: pages.size() / page_size as u64,
    };
    // The schema: rows of (type, name, tbl_name, rootpage, sql).
    let mut root = None;
    db.rows(1, 0, &mut |record| {
        let fields = record_fields(record)?;
        let text = |i: usize| match fields.get(i) {
            Some(Field::Text(t)) => Some(*t),
            _ => None,
        };
        if text(0) == Some(b"table".as_slice()) && text(1) == Some(table.as_bytes()) {
            if let Some(Field::Int(n)) = fields.get(3) {
                root = Some(*n as u64);
            }
        }
        Ok(())
    })?;
    let root = root.ok_or(RpmError::Format("no such table in the database"))?;
    db.rows(root, 0, &mut |record| {
        let fields = record_fields(record)?;
        if let Some(Field::Blob(b)) = fields.get(column) {
            each(b)?;
        }
        Ok(())
    })
}

impl Db<'_> {
    fn page(&self, n: u64) -> Result<Vec<u8>, RpmError> {
        if n == 0 || n > self.count {
            return Err(RpmError::Format("a page number past the end"));
        }
        self.pages
            .read_at((n - 1) * self.page_size as u64, self.page_size)
    }

    /// Every row's record in the table b-tree rooted at page `n`, in rowid order.
    fn rows(
        &self,
        n: u64,
        depth: usize,
        each: &mut dyn FnMut(&[u8]) -> Result<(), RpmError>,
    ) -> Result<(), RpmError> {
        if depth > MAX_DEPTH {
            return Err(RpmError::Format("a b-tree deeper than any real one"));
        }
        let page = self.page(n)?;
        // Page 1 starts with the 100-byte file header.
        let h = if n == 1 { 100 } else { 0 };
        let bad = || RpmError::Format("a b-tree page of impossible layout");
        let kind = *page.get(h).ok_or_else(bad)?;
        let cells = u16::from_be_bytes([page[h + 3], page[h + 4]]) as usize;
        let (header_len, interior) = match kind {
            0x0d => (8, false),
            0x05 => (12, true),
            _ => return Err(RpmError::Format("not a table b-tree page")),
        };
        let pointers = h + header_len;
        if pointers + cells * 2 > self.usable {
            return Err(bad());
        }
        for i in 0..cells {
            let at =
                u16::from_be_bytes([page[pointers + i * 2], page[pointers + i * 2 + 1]]) as usize;
            if at >= self.usable {
                return Err(bad());
            }
            if interior {
                let child = page.get(at..at + 4).ok_or_else(bad)?;
                let child = u32::from_be_bytes(child.try_into().map_err(|_| bad())?) as u64;
                self.rows(child, depth + 1, each)?;
            } else {
                let record = self.payload(&page, at)?;
                each(&record)?;
            }
        }
        if interior {
            let right = u32::from_be_bytes(page[h + 8..h + 12].try_into().map_err(|_| bad())?);
            self.rows(right as u64, depth + 1, each)?;
        }
        Ok(())
    }

    /// A leaf cell's payload, its overflow pages followed.
    fn payload(&self, page: &[u8], at: usize) -> Result<Vec<u8>, RpmError> {
        let bad = || RpmError::Format("a cell of impossible layout");
        let (total, n1) = varint(&page[at..self.usable]).ok_or_else(bad)?;
        let (_rowid, n2) = varint(&page[at + n1..self.usable]).ok_or_else(bad)?;
        if total > MAX_PAYLOAD {
            return Err(RpmError::Format("a row larger than any rpm header"));
        }
        let start = at + n1 + n2;
        // How much of the payload lies in the cell (the file format's rule).
        let u = self.usable as u64;
        let x = u - 35;
        let local = if total <= x {
            total
        } else {
            let m = ((u - 12) * 32 / 255) - 23;
            let k = m + (total - m) % (u - 4);
            if k <= x {
                k
            } else {
                m
            }
        } as usize;
        let mut out = page
            .get(start..start + local)
            .filter(|_| start + local <= self.usable)
            .ok_or_else(bad)?
            .to_vec();
        if local as u64 == total {
            return Ok(out);
        }
        let next = page.get(start + local..start + local + 4).ok_or_else(bad)?;
        let mut next = u32::from_be_bytes(next.try_into().map_err(|_| bad())?) as u64;
        // At most every page once: a chain that loops ends here.
        for _ in 0..self.count {
            if next == 0 || out.len() as u64 >= total {
                break;
            }
            let over = self.page(next)?;
            let want = ((total - out.len() as u64) as usize).min(self.usable - 4);
            out.extend_from_slice(&over[4..4 + want]);
            next = u32::from_be_bytes([over[0], over[1], over[2], over[3]]) as u64;
        }
        if out.len() as u64 != total {
            return Err(RpmError::Format("an overflow chain of the wrong length"));
        }
        Ok(out)
    }
}

enum Field<'a> {
    Null,
    Int(i64),
    Text(&'a [u8]),
    Blob(&'a [u8]),
    Other,
}

/// A record's fields: a header of serial types, then their bodies.
fn record_fields(record: &[u8]) -> Result<Vec<Field<'_>>, RpmError> {
    let bad = || RpmError::Format("a record of impossible layout");
    let (header_len, mut at) = varint(record).ok_or_else(bad)?;
    let header_len = usize::try_from(header_len).map_err(|_| bad())?;
    if header_len > record.len() {
        return Err(bad());
    }
    let mut body = header_len;
    let mut fields = Vec::new();
    while at < header_len {
        let (serial, n) = varint(&record[at..header_len]).ok_or_else(bad)?;
        at += n;
        let size = match serial {
            0 | 8 | 9 => 0,
            1..=4 => serial as usize,
            5 => 6,
            6 | 7 => 8,
            10 | 11 => return Err(bad()),
            s => ((s - 12) / 2) as usize,
        };
        let bytes = record.get(body..body + size).ok_or_else(bad)?;
        body += size;
        fields.push(match serial {
            0 => Field::Null,
            1..=6 => {
                // Big-endian two's complement of 1 to 8 bytes.
                let mut v: i64 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
                for b in bytes {
                    v = (v << 8) | *b as i64;
                }
                Field::Int(v)
            }
            8 => Field::Int(0),
            9 => Field::Int(1),
            s if s >= 12 && s % 2 == 0 => Field::Blob(bytes),
            s if s >= 13 => Field::Text(bytes),
            _ => Field::Other,
        });
    }
    Ok(fields)
}

/// SQLite's varint: 1 to 9 bytes, big-endian, 7 bits each but the ninth's 8.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for i in 0..9 {
        let byte = *b.get(i)?;
        if i == 8 {
            return Some(((v << 8) | byte as u64, 9));
        }
        v = (v << 7) | (byte & 0x7f) as u64;
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        assert_eq!(varint(&[0x05]), Some((5, 1)));
        assert_eq!(varint(&[0x81, 0x00]), Some((128, 2)));
        assert_eq!(varint(&[0xff; 9]), Some((u64::MAX, 9)));
        assert_eq!(varint(&[0x81]), None);
    }
}
