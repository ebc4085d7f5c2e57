//! Extended attributes: in the inode after its extra fields, in one xattr block, or a
//! value in its own EA inode. POSIX ACLs are stored by ext4 in a compact form and are
//! given back in the xattr form the kernel's getxattr returns, as a mounted filesystem
//! would show them.

use super::inode::{Inode, FL_INLINE_DATA};
use super::Ext4;
use crate::device::{corrupt, le16, le32};
use std::io;

const XATTR_MAGIC: u32 = 0xEA02_0000;
/// ext4's own value of an EA inode's size limit; anything larger is corrupt.
const MAX_VALUE: u64 = 64 << 20;

struct Raw {
    index: u8,
    name: Vec<u8>,
    value: Vec<u8>,
}

impl Ext4 {
    /// Every extended attribute of an inode, by full name, sorted. `system.data` (the
    /// tail of inline data) is the filesystem's own and not given.
    pub fn xattrs(&self, inode: &Inode) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for raw in self.raw_xattrs(inode)? {
            let Some(prefix) = prefix(raw.index) else {
                continue;
            };
            let mut name = prefix.to_vec();
            name.extend_from_slice(&raw.name);
            let value = match raw.index {
                2 | 3 => acl_to_xattr(&raw.value)
                    .ok_or_else(|| corrupt(format!("inode {}: corrupt POSIX ACL", inode.ino)))?,
                _ => raw.value,
            };
            if name == b"system.data" {
                continue;
            }
            out.push((name, value));
        }
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        Ok(out)
    }

    /// One attribute's value by name index and name.
    pub fn xattr_value(
        &self,
        inode: &Inode,
        index: u8,
        name: &[u8],
    ) -> io::Result<Option<Vec<u8>>> {
        Ok(self
            .raw_xattrs(inode)?
            .into_iter()
            .find(|r| r.index == index && r.name == name)
            .map(|r| r.value))
    }

    fn raw_xattrs(&self, inode: &Inode) -> io::Result<Vec<Raw>> {
        let mut out = Vec::new();
        let area = &inode.xattr_area;
        if area.len() >= 4 && le32(area, 0) == XATTR_MAGIC {
            // In-inode values are offset from the first entry.
            self.entries(inode, &area[4..], 0, &area[4..], &mut out)?;
        }
        if inode.file_acl != 0 {
            let block = self.block(inode.file_acl)?;
            if le32(&block, 0) != XATTR_MAGIC {
                return Err(corrupt(format!(
                    "inode {}: xattr block {} has no magic",
                    inode.ino, inode.file_acl
                )));
            }
            self.entries(inode, &block, 32, &block, &mut out)?;
        }
        Ok(out)
    }

    fn entries(
        &self,
        inode: &Inode,
        region: &[u8],
        mut pos: usize,
        values: &[u8],
        out: &mut Vec<Raw>,
    ) -> io::Result<()> {
        let bad =
            |what: &str| corrupt(format!("inode {}: corrupt xattr entry ({what})", inode.ino));
        while pos + 4 <= region.len() && le32(region, pos) != 0 {
            if pos + 16 > region.len() {
                return Err(bad("runs past its area"));
            }
            let name_len = region[pos] as usize;
            let index = region[pos + 1];
            let value_offs = le16(region, pos + 2) as usize;
            let value_inum = le32(region, pos + 4);
            let value_size = le32(region, pos + 8) as u64;
            let name_end = pos + 16 + name_len;
            if name_end > region.len() {
                return Err(bad("name runs past its area"));
            }
            let name = region[pos + 16..name_end].to_vec();
            let value = if value_inum != 0 {
                let ea = self.inode(value_inum)?;
                if ea.size != value_size || value_size > MAX_VALUE || ea.has(FL_INLINE_DATA) {
                    return Err(bad("EA inode size does not match"));
                }
                self.read_all(&ea, MAX_VALUE)?
            } else {
                let end = value_offs
                    .checked_add(value_size as usize)
                    .ok_or_else(|| bad("value size"))?;
                if end > values.len() {
                    return Err(bad("value runs past its area"));
                }
                values[value_offs..end].to_vec()
            };
            out.push(Raw { index, name, value });
            pos = (name_end + 3) & !3;
        }
        Ok(())
    }
}

fn prefix(index: u8) -> Option<&'static [u8]> {
    Some(match index {
        1 => b"user.",
        2 => b"system.posix_acl_access",
        3 => b"system.posix_acl_default",
        4 => b"trusted.",
        6 => b"security.",
        7 => b"system.",
        8 => b"system.richacl",
        _ => return None,
    })
}

/// ext4's ACL (version 1: short entries for the owner, group, mask and other; long ones
/// with an id for named users and groups) to the kernel's xattr form (version 2, every
/// entry with an id, -1 where none applies).
fn acl_to_xattr(v: &[u8]) -> Option<Vec<u8>> {
    if v.len() < 4 || le32(v, 0) != 1 {
        return None;
    }
    // The kernel's form: version 2, then tag, permission bits and id, little-endian.
    let mut out = 2u32.to_le_bytes().to_vec();
    let mut pos = 4;
    while pos < v.len() {
        if pos + 4 > v.len() {
            return None;
        }
        let tag = le16(v, pos);
        let perm = le16(v, pos + 2);
        let id = match tag {
            0x02 | 0x08 => {
                if pos + 8 > v.len() {
                    return None;
                }
                let id = le32(v, pos + 4);
                pos += 8;
                id
            }
            0x01 | 0x04 | 0x10 | 0x20 => {
                pos += 4;
                u32::MAX
            }
            _ => return None,
        };
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_becomes_the_kernel_xattr_form() {
        // user::rw-, user:1000:r--, group::r--, mask::r--, other::---
        let mut v = 1u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, None),
            (2, 4, Some(1000u32)),
            (4, 4, None),
            (0x10, 4, None),
            (0x20, 0, None),
        ] {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            if let Some(id) = id {
                v.extend_from_slice(&id.to_le_bytes());
            }
        }
        let x = acl_to_xattr(&v).unwrap();
        assert_eq!(le32(&x, 0), 2);
        assert_eq!(x.len(), 4 + 5 * 8);
        assert_eq!(le32(&x, 4 + 8 + 4), 1000);
        assert_eq!(le32(&x, 4 + 4), u32::MAX);
        assert!(acl_to_xattr(&[1, 0, 0, 0, 9]).is_none());
    }
}
