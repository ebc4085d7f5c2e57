//! The registry module's errors. Each names what was being sent or fetched (a blob by its
//! digest, a manifest by its reference), the registry, and what the registry answered.

use std::path::PathBuf;

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
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
    /// A reference that cannot be parsed, or the local image (layout or archive) that
    /// cannot be read, or the pulled one written.
    #[error(transparent)]
    Oci(#[from] oci::Error),
}

impl RegistryError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RegistryError::Io {
            path: path.into(),
            source,
        }
    }
}
