//! The OCI crate's errors. Each names the layout, archive or file at fault.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a file of a layout or archive.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An OCI image layout or archive that cannot be read or written: not a layout, a
    /// missing or corrupt blob, an index naming no such image.
    #[error("{path}: {reason}")]
    Layout { path: PathBuf, reason: String },
    /// The output already exists and would be overwritten.
    #[error("{0}: already exists (remove it, or pass --force)")]
    OutputExists(PathBuf),
    /// An image reference that cannot be parsed (`registry/repo:tag`).
    #[error("`{reference}`: not an image reference ({reason})")]
    BadReference { reference: String, reason: String },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn layout(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Layout {
            path: path.into(),
            reason: reason.into(),
        }
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
