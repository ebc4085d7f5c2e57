//! The rehost-init binary the image ships: found beside the command (or where
//! scripts/build-init leaves it), and checked to be static, so it runs in any image.

use crate::error::{Error, IoContext, Result};
use std::path::{Path, PathBuf};

/// Checks that `path` is a static rehost-init, or says what to do.
pub fn check(path: &Path) -> Result<()> {
    if !path.is_file() {
        return Err(Error::InitBinary(format!(
            "the rehost-init binary is not at {} (build it with scripts/build-init, pass --init-binary FILE or set REHOST_INIT, or use --init none)",
            path.display()
        )));
    }
    if !is_static(path)? {
        return Err(Error::InitBinary(format!(
            "{} is dynamically linked and would not run in every image; build the static one with scripts/build-init",
            path.display()
        )));
    }
    Ok(())
}

/// The rehost-init to ship when none is named: a static one next to this program, or the
/// one scripts/build-init leaves in `target/static/` of a source tree.
pub fn find() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| Error::io("the rehost executable", e))?;
    let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    let candidates = [dir.join("rehost-init"), dir.join("../static/rehost-init")];
    for c in &candidates {
        if c.is_file() && is_static(c).unwrap_or(false) {
            return Ok(c.clone());
        }
    }
    Err(Error::InitBinary(format!(
        "no static rehost-init found (looked at {}); build it with scripts/build-init, pass --init-binary FILE or set REHOST_INIT, or use --init none",
        candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", ")
    )))
}

/// Whether an ELF file has no program interpreter (is statically linked); an error for
/// a file that is no 64-bit little-endian ELF executable.
pub fn is_static(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
        .at(path)?;
    let bad = || Error::BadSource {
        path: path.into(),
        reason: "not a 64-bit little-endian ELF executable".into(),
    };
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return Err(bad());
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(head[32..40].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > head.len() {
            return Err(bad());
        }
        // PT_INTERP: the file asks for a dynamic loader.
        if u32::from_le_bytes(head[o..o + 4].try_into().expect("4 bytes")) == 3 {
            return Ok(false);
        }
    }
    Ok(true)
}
