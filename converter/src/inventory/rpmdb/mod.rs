//! rpm's package database, read without rpm: the header blobs from the Berkeley DB hash
//! file (`Packages`: CentOS and RHEL 7 and 8) or the SQLite file (`rpmdb.sqlite`: RHEL 9,
//! Fedora), each parsed for the package's name, version and files. SUSE's ndb
//! (`Packages.db`) is not read yet, and said so.
//!
//! The database file is copied to a private temporary file first (a source is a stream)
//! and read a page at a time from there: memory stays one page plus one header.

mod bdb;
mod header;
mod sqlite;

pub use header::{Algo, RpmFile, RpmPackage};

use super::fs::Root;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

/// Larger than the rpm database of any server; a larger file is not one.
const MAX_DB_BYTES: u64 = 4 << 30;

#[derive(Debug, Clone, thiserror::Error)]
pub enum RpmError {
    #[error("{0}")]
    Format(&'static str),
    #[error("a package header: {0}")]
    Header(&'static str),
    #[error("{0}")]
    Io(String),
}

/// Where each format lies, in the order they are looked for (a server converted from
/// Berkeley DB to SQLite may keep the old file).
const DATABASES: [(&str, Kind); 3] = [
    ("var/lib/rpm/rpmdb.sqlite", Kind::Sqlite),
    ("usr/lib/sysimage/rpm/rpmdb.sqlite", Kind::Sqlite),
    ("var/lib/rpm/Packages", Kind::Bdb),
];

#[derive(Clone, Copy)]
enum Kind {
    Sqlite,
    Bdb,
}

/// Whether the source has an rpm database (of any format).
pub fn present(root: &Root) -> bool {
    DATABASES.iter().any(|(p, _)| root.exists(p)) || root.exists("var/lib/rpm/Packages.db")
}

/// The installed packages. Headers that do not parse are skipped and counted; a database
/// that cannot be read at all is an error saying which file and why.
pub fn read(root: &Root) -> Result<(Vec<RpmPackage>, usize), (String, RpmError)> {
    let Some((path, kind)) = DATABASES.iter().find(|(p, _)| root.exists(p)) else {
        return Err((
            "/var/lib/rpm/Packages.db".into(),
            RpmError::Format("rpm's ndb format is not read yet"),
        ));
    };
    let shown = format!("/{path}");
    let pages = Pages::spool(root, path).map_err(|e| (shown.clone(), e))?;
    let mut packages = Vec::new();
    let mut bad = 0;
    let mut each = |blob: &[u8]| {
        // Berkeley DB's Packages also holds a 4-byte counter: not a header.
        if blob.len() >= 16 {
            match header::parse(blob) {
                Ok(p) => packages.push(p),
                Err(_) => bad += 1,
            }
        }
        Ok(())
    };
    match kind {
        Kind::Sqlite => sqlite::blobs(&pages, "Packages", 1, &mut each),
        Kind::Bdb => bdb::values(&pages, &mut each),
    }
    .map_err(|e| (shown, e))?;
    Ok((packages, bad))
}

/// The database's bytes, in a private temporary file, read by position.
pub(crate) struct Pages {
    file: File,
    len: u64,
}

impl Pages {
    fn spool(root: &Root, path: &str) -> Result<Pages, RpmError> {
        let io = |e: std::io::Error| RpmError::Io(e.to_string());
        let resolved = root
            .regular(path.as_bytes())
            .ok_or(RpmError::Format("not a regular file"))?;
        let mut reader = root
            .source()
            .open(&resolved)
            .map_err(|e| RpmError::Io(e.to_string()))?;
        let mut file = tempfile::tempfile().map_err(io)?;
        let len =
            std::io::copy(&mut (&mut reader).take(MAX_DB_BYTES + 1), &mut file).map_err(io)?;
        if len > MAX_DB_BYTES {
            return Err(RpmError::Format("larger than any rpm database"));
        }
        Ok(Pages { file, len })
    }

    /// From bytes in memory (tests and fuzzing).
    pub fn from_bytes(bytes: &[u8]) -> std::io::Result<Pages> {
        let mut file = tempfile::tempfile()?;
        std::io::Write::write_all(&mut file, bytes)?;
        Ok(Pages {
            file,
            len: bytes.len() as u64,
        })
    }

    pub fn size(&self) -> u64 {
        self.len
    }

    /// Exactly `n` bytes at `offset`; past the end is an error, not a short read.
    pub fn read_at(&self, offset: u64, n: usize) -> Result<Vec<u8>, RpmError> {
        if offset
            .checked_add(n as u64)
            .is_none_or(|end| end > self.len)
        {
            return Err(RpmError::Format("a page past the end of the file"));
        }
        let mut buf = vec![0u8; n];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| RpmError::Io(e.to_string()))?;
        Ok(buf)
    }
}

/// Parses a whole database image (either format) for the fuzzer: every header found.
pub fn parse_database(bytes: &[u8]) -> Result<Vec<RpmPackage>, RpmError> {
    let pages = Pages::from_bytes(bytes).map_err(|e| RpmError::Io(e.to_string()))?;
    let mut packages = Vec::new();
    let mut each = |blob: &[u8]| {
        if let Ok(p) = header::parse(blob) {
            packages.push(p);
        }
        Ok(())
    };
    if bytes.starts_with(b"SQLite format 3\0") {
        sqlite::blobs(&pages, "Packages", 1, &mut each)?;
    } else {
        bdb::values(&pages, &mut each)?;
    }
    Ok(packages)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two real headers (rpmbuild's packages, installed by rpm) in each format, 1 KiB
    /// pages so that both overflow (the fuzzer's seeds).
    const BDB: &[u8] = include_bytes!("../../../../fuzz/seeds/rpmdb/two-packages.bdb");
    const SQLITE: &[u8] = include_bytes!("../../../../fuzz/seeds/rpmdb/two-packages.sqlite");

    #[test]
    fn both_formats_give_the_same_packages() {
        let names = |db: &[u8]| {
            let mut found: Vec<(String, String, usize)> = parse_database(db)
                .unwrap()
                .into_iter()
                .map(|p| (p.name, p.version, p.files.len()))
                .collect();
            found.sort();
            found
        };
        let want = vec![
            ("tool".to_string(), "1.0-1".to_string(), 2),
            ("webapp".to_string(), "2.4.1-3.el7".to_string(), 4),
        ];
        assert_eq!(names(BDB), want);
        assert_eq!(names(SQLITE), want);
    }

    #[test]
    fn corrupt_databases_are_errors_or_fewer_packages_never_a_panic() {
        for db in [BDB, SQLITE] {
            for n in (0..db.len()).step_by(97) {
                let _ = parse_database(&db[..n]);
            }
            for i in (0..db.len()).step_by(7) {
                let mut bad = db.to_vec();
                bad[i] = bad[i].wrapping_add(0x5b);
                let _ = parse_database(&bad);
            }
        }
        assert!(parse_database(b"neither format").is_err());
    }
}
