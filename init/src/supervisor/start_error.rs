//! Why a service could not be started: each names the user, group, path or command at
//! fault. The text becomes the service's `result` in the status table, so it is written
//! for people.

use crate::users::UnknownId;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `User=`, `Group=` or `SupplementaryGroups=` names no one in the image.
    #[error(transparent)]
    Credentials(#[from] UnknownId),
    /// A `RuntimeDirectory=` (or state, logs, cache, configuration) directory.
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A directory name with a NUL byte in it.
    #[error("bad path {0}")]
    BadPath(String),
    #[error("EnvironmentFile={path}: {source}")]
    EnvironmentFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("WorkingDirectory={0} does not exist")]
    NoWorkingDirectory(String),
    /// A command line whose variables expand to no words at all.
    #[error("{0} expands to nothing")]
    EmptyCommand(String),
    /// The process could not be started; the I/O error already names the program when
    /// it is not found.
    #[error("{source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
}
