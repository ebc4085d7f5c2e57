//! The runtime's errors. Each names the path, layer or container at fault, so the command
//! prints one line that says what and where.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The image cannot be read (not a layout, no such tag, bad manifest).
    #[error(transparent)]
    Image(#[from] oci::Error),
    #[error("{path}: {reason}")]
    BadImage { path: PathBuf, reason: String },
    /// A directory of the runtime that others could read or change.
    #[error("{path}: {reason}")]
    Insecure { path: PathBuf, reason: String },
    /// A layer whose bytes do not match the digest that names them.
    #[error("layer {digest}: {what} is {actual}, expected {expected}")]
    Digest {
        digest: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    /// A layer entry that is malformed or tries to leave the root.
    #[error("layer {layer}: entry `{entry}`: {reason}")]
    Entry {
        layer: String,
        entry: String,
        reason: String,
    },
    #[error("container `{0}`: no such container")]
    NoSuchContainer(String),
    #[error("container `{name}`: {reason}")]
    Container { name: String, reason: String },
    /// The OCI runtime (runc or another) failed.
    #[error("{runtime} {action}: {reason}")]
    Engine {
        runtime: String,
        action: String,
        reason: String,
    },
    /// A host port that cannot be published (in use, no such address, no permission).
    #[error("cannot publish {mapping}: {reason}")]
    Port { mapping: String, reason: String },
    #[error("OCI runtime config: {0}")]
    Spec(String),
    /// A mode (`--init`) the image cannot run in.
    #[error("OCI runtime config: {0}")]
    Mode(#[from] crate::modes::ModeError),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Attaches a path to an I/O result.
pub trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e.into()))
    }
}
