//! The registry module's errors. Each names what was being sent or fetched (a blob by its
//! digest, a manifest by its reference), the registry, and what the registry answered.

use std::path::PathBuf;

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A reference that cannot be parsed (`registry/repo:tag`).
    #[error("`{reference}`: not an image reference ({reason})")]
    BadReference { reference: String, reason: String },
    /// The registry cannot be reached at all (DNS, refused connection, TLS).
    #[error("{registry}: cannot connect: {reason}")]
    Connect { registry: String, reason: String },
    /// The registry wants credentials it was not given, or refused the ones it got.
    #[error("{registry}: {reason}")]
    Unauthorized { registry: String, reason: String },
    /// A blob transfer failed: which blob, and what the registry said.
    #[error("blob {digest} on {registry}: {status}{message}")]
    Blob {
        digest: String,
        registry: String,
        status: String,
        message: String,
    },
    /// A manifest transfer failed.
    #[error("manifest {reference}: {status}{message}")]
    Manifest {
        reference: String,
        status: String,
        message: String,
    },
    /// What the registry sent is not what it should be (digest mismatch, unknown type).
    #[error("{reference}: {reason}")]
    BadContent { reference: String, reason: String },
    /// The local image (layout or archive) cannot be read.
    #[error("{path}: {reason}")]
    Image { path: PathBuf, reason: String },
    /// Credentials from a config file or helper that cannot be used.
    #[error("{source_name}: {reason}")]
    Credentials { source_name: String, reason: String },
    /// An I/O error on a local file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing the pulled image failed.
    #[error(transparent)]
    Layout(#[from] crate::Error),
}

impl RegistryError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RegistryError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn image(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        RegistryError::Image {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
