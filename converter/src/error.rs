//! The converter's errors. Each names the path or object at fault, so the command can
//! print one line that says what and where.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a file of the source or of the output.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The source is not something rehost can read (unknown format, not found).
    #[error("{path}: {reason}")]
    BadSource { path: PathBuf, reason: String },
    /// An archive that is corrupt, truncated or hostile.
    #[error("{archive}: {reason}")]
    Archive { archive: PathBuf, reason: String },
    /// A disk image that cannot be read: its format, partition table, volume or
    /// filesystem is corrupt, truncated, encrypted or of a kind rehost does not read.
    #[error("{image}: {reason}")]
    Disk { image: PathBuf, reason: String },
    /// A path inside the source that does not exist.
    #[error("{0}: no such file in the source")]
    NotFound(String),
    /// A profile or plan file that cannot be used.
    #[error("{path}: {reason}")]
    Profile { path: String, reason: String },
    /// An OCI image layout that cannot be read or written.
    #[error(transparent)]
    Oci(#[from] oci::Error),
    /// The rehost-init binary to ship is missing or would not run in every image.
    #[error("{0}")]
    InitBinary(String),
    /// A remote server that cannot be reached or captured (ssh://).
    #[error("{host}: {reason}")]
    Remote { host: String, reason: String },
    /// A read failure recorded where a pass first ran (a server), given again by its
    /// replay here ([`crate::source::recorded`]).
    #[error("{}", .0.text)]
    Replayed(crate::source::recorded::Failure),
    /// The output already exists and would be overwritten.
    #[error("{0}: already exists (remove it, or pass --force)")]
    OutputExists(PathBuf),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// True when the error means the file went away (a live system changing under us).
    pub fn is_vanished(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
            || matches!(self, Error::NotFound(_))
            || matches!(self, Error::Replayed(f) if f.vanished)
    }
}

/// Attaches a path to an `io::Result`.
pub trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
