//! POSIX ACLs: GNU tar's text form to the binary `system.posix_acl_*` xattr value that
//! the filesystem and OCI layers carry.

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;

/// Parses `user::rwx,user:alice:r--,group::r-x,mask::r-x,other::r--` (commas or
/// newlines between entries; names or numeric ids), naming users and groups through
/// the given tables. `None` if any part cannot be read.
pub fn from_text(
    text: &[u8],
    users: &[(String, u32)],
    groups: &[(String, u32)],
) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(text).ok()?;
    let mut entries: Vec<(u16, u32, u16)> = Vec::new();
    for item in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let item = item.split('#').next()?.trim();
        let mut parts = item.split(':');
        let (tag, qualifier, perms) = (parts.next()?, parts.next()?, parts.next()?);
        let lookup = |table: &[(String, u32)]| -> Option<u32> {
            qualifier.parse().ok().or_else(|| {
                table
                    .iter()
                    .find(|(n, _)| n == qualifier)
                    .map(|(_, id)| *id)
            })
        };
        let (tag, id) = match (tag, qualifier.is_empty()) {
            ("user" | "u", true) => (USER_OBJ, UNDEFINED_ID),
            ("user" | "u", false) => (USER, lookup(users)?),
            ("group" | "g", true) => (GROUP_OBJ, UNDEFINED_ID),
            ("group" | "g", false) => (GROUP, lookup(groups)?),
            ("mask" | "m", _) => (MASK, UNDEFINED_ID),
            ("other" | "o", _) => (OTHER, UNDEFINED_ID),
            _ => return None,
        };
        let mut bits = 0u16;
        for (i, c) in perms.chars().enumerate() {
            match (i, c) {
                (0, 'r') => bits |= 4,
                (1, 'w') => bits |= 2,
                (2, 'x') => bits |= 1,
                (_, '-') => {}
                _ => return None,
            }
        }
        entries.push((tag, id, bits));
    }
    if entries.is_empty() {
        return None;
    }
    entries.sort();
    Some(to_xattr(
        entries.into_iter().map(|(tag, id, perm)| (tag, perm, id)),
    ))
}

/// ACL entries (tag, permission bits, id; `u32::MAX` where no id applies) in the
/// kernel's `system.posix_acl_*` xattr form, version 2. Entries go in the order given:
/// the kernel's is by tag, then id.
fn to_xattr(entries: impl IntoIterator<Item = (u16, u16, u32)>) -> Vec<u8> {
    let mut out = VERSION.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_entries_resolve_through_the_tables() {
        let users = vec![("alice".to_string(), 1000)];
        let v = from_text(
            b"user::rw-,user:alice:r--,group::r--,mask::r--,other::---",
            &users,
            &[],
        )
        .unwrap();
        assert_eq!(v.len(), 4 + 5 * 8);
        // user:alice comes second, with id 1000 and read permission.
        assert_eq!(&v[12..20], &[2, 0, 4, 0, 0xe8, 3, 0, 0]);
        assert!(from_text(b"user:bob:r--", &users, &[]).is_none());
    }
}
