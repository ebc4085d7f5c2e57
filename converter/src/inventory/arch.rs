//! The architecture of a server, from the ELF header of one of its own system binaries
//! (never from the machine rehost runs on).

use super::fs::Root;
use crate::source::Source;

/// Binaries every Linux system has one of, in the order they are tried.
const CANDIDATES: &[&str] = &[
    "usr/bin/env",
    "bin/sh",
    "usr/bin/sh",
    "bin/busybox",
    "bin/ls",
    "usr/bin/ls",
    "sbin/init",
];

/// The OCI name of the source's architecture (`amd64`, `arm64`, …), if a binary tells.
pub fn detect(source: &dyn Source) -> Option<String> {
    // Symlinks are followed inside the source (a merged /usr makes /bin a link).
    let root = Root::new(source);
    for candidate in CANDIDATES {
        let Some(path) = root.resolve(candidate, true) else {
            continue;
        };
        let Ok(mut file) = source.open(&path) else {
            continue;
        };
        let mut head = [0u8; 20];
        if std::io::Read::read_exact(&mut file, &mut head).is_ok() {
            if let Some(arch) = from_elf_header(&head) {
                return Some(arch.to_string());
            }
        }
    }
    None
}

/// e_machine (and the class, for the 32/64-bit pairs) to OCI architecture names.
pub fn from_elf_header(h: &[u8; 20]) -> Option<&'static str> {
    if &h[..4] != b"\x7fELF" {
        return None;
    }
    let little = h[5] == 1;
    let machine = if little {
        u16::from_le_bytes([h[18], h[19]])
    } else {
        u16::from_be_bytes([h[18], h[19]])
    };
    Some(match (machine, h[4]) {
        (0x3e, _) => "amd64",
        (0x03, _) => "386",
        (0xb7, _) => "arm64",
        (0x28, _) => "arm",
        (0x15, 2) if little => "ppc64le",
        (0x15, 2) => "ppc64",
        (0x16, _) => "s390x",
        (0xf3, _) => "riscv64",
        (0x08, _) => "mips",
        _ => return None,
    })
}
