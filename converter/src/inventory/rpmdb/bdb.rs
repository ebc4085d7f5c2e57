//! The values of a Berkeley DB hash database (rpm's `Packages` up to RHEL 8): its hash
//! pages hold key/data pairs, a large value lies in a chain of overflow pages. Read with
//! positioned reads of one page at a time, so neither memory nor a loop in the chain
//! depends on what the file claims.

use super::{Pages, RpmError};

const HASH_MAGIC: u32 = 0x0006_1561;
const P_HASH_UNSORTED: u8 = 2;
const P_OVERFLOW: u8 = 7;
const P_HASH: u8 = 13;
const H_KEYDATA: u8 = 1;
const H_OFFPAGE: u8 = 3;
/// The page header: lsn, pgno, prev, next, entries, hf_offset, level, type.
const PAGE_HEADER: usize = 26;
/// No rpm header is bigger (rpm's HEADER_DATA_MAX is 256 MiB).
const MAX_VALUE: u32 = 256 << 20;

/// Calls `each` with every data item of the database (keys are skipped).
pub fn values(
    pages: &Pages,
    mut each: impl FnMut(&[u8]) -> Result<(), RpmError>,
) -> Result<(), RpmError> {
    let meta = pages.read_at(0, 512)?;
    let little = u32::from_le_bytes(meta[12..16].try_into().unwrap_or_default());
    let big = u32::from_be_bytes(meta[12..16].try_into().unwrap_or_default());
    let le = match (little, big) {
        (HASH_MAGIC, _) => true,
        (_, HASH_MAGIC) => false,
        _ => return Err(RpmError::Format("not a Berkeley DB hash database")),
    };
    let u16_at = |b: &[u8], at: usize| -> u16 {
        let v = [b[at], b[at + 1]];
        if le {
            u16::from_le_bytes(v)
        } else {
            u16::from_be_bytes(v)
        }
    };
    let u32_at = |b: &[u8], at: usize| -> u32 {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if le {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        }
    };
    let page_size = u32_at(&meta, 20) as usize;
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(RpmError::Format("an impossible page size"));
    }
    let count = pages.size() / page_size as u64;
    let mut value = Vec::new();
    for pgno in 1..count {
        let page = pages.read_at(pgno * page_size as u64, page_size)?;
        if !matches!(page[25], P_HASH | P_HASH_UNSORTED) {
            continue;
        }
        let entries = u16_at(&page, 20) as usize;
        if PAGE_HEADER + entries * 2 > page_size {
            return Err(RpmError::Format("a hash page with more entries than fit"));
        }
        let offset = |i: usize| u16_at(&page, PAGE_HEADER + i * 2) as usize;
        // Items pair up: key, data. Each lies from its offset up to the previous one's.
        for i in (1..entries).step_by(2) {
            let (start, end) = (offset(i), offset(i - 1));
            if start < PAGE_HEADER + entries * 2 || start >= end || end > page_size {
                return Err(RpmError::Format("an item outside its page"));
            }
            let item = &page[start..end];
            match item[0] {
                H_KEYDATA => each(&item[1..])?,
                H_OFFPAGE if item.len() >= 12 => {
                    let first = u32_at(item, 4) as u64;
                    let total = u32_at(item, 8);
                    if total > MAX_VALUE {
                        return Err(RpmError::Format("a value larger than any rpm header"));
                    }
                    value.clear();
                    let mut next = first;
                    // At most every page once: a chain that loops ends here.
                    for _ in 0..count {
                        if next == 0 || value.len() >= total as usize {
                            break;
                        }
                        if next >= count {
                            return Err(RpmError::Format("an overflow page past the end"));
                        }
                        let over = pages.read_at(next * page_size as u64, page_size)?;
                        if over[25] != P_OVERFLOW {
                            return Err(RpmError::Format("an overflow chain into another page"));
                        }
                        let len = (u16_at(&over, 22) as usize).min(page_size - PAGE_HEADER);
                        value.extend_from_slice(&over[PAGE_HEADER..PAGE_HEADER + len]);
                        next = u32_at(&over, 16) as u64;
                    }
                    if value.len() != total as usize {
                        return Err(RpmError::Format("an overflow chain of the wrong length"));
                    }
                    each(&value)?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}
