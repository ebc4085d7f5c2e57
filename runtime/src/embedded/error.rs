//! The embedded engine's errors. The engine prints one of them as its one line on stderr,
//! which the caller shows or wraps: each names the container, file or setting at fault.

use libcontainer::error::LibcontainerError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine's own command line is incomplete or malformed.
    #[error("{0}")]
    Usage(&'static str),
    #[error("unknown command `{0}`")]
    UnknownCommand(String),
    #[error("unexpected argument `{0}`")]
    UnexpectedArgument(String),
    #[error("`{0}` is not a signal number")]
    NotASignal(String),
    #[error("container `{0}` does not exist")]
    NoSuchContainer(String),
    #[error("container `{0}` is not running")]
    NotRunning(String),
    /// The container's state cannot be loaded.
    #[error("container `{id}`: {source}")]
    Load {
        id: String,
        #[source]
        source: LibcontainerError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A bundle's `config.json` that cannot be loaded.
    #[error("{path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error("run: the config has no linux.cgroupsPath")]
    NoCgroupsPath { config: PathBuf },
    /// The process file of an `exec --tty`, which cannot be serialized.
    #[error("{source}")]
    ProcessFile {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The terminal's socket or master (made by the runtime's console module).
    #[error(transparent)]
    Terminal(#[from] crate::Error),
    #[error("run: the engine sent no terminal")]
    NoTerminal,
    /// libcontainer failed to make, start or exec in the container. Its own cleanup after
    /// a failed start cannot remove the cgroup the engine is in; the engine removes it
    /// right after, so that part of the message would only mislead and is left out.
    #[error("{}", without_cleanup(.0))]
    Libcontainer(LibcontainerError),
    #[error("poststop hook: {0}")]
    PoststopHook(#[source] libcontainer::hooks::HookError),
    /// Signalling the container's pid 1.
    #[error("{source}")]
    Signal {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    /// Bringing up `lo` in the container's network namespace: the step that failed.
    #[error("loopback: {step}: {source}")]
    Loopback {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("back to the engine's mount namespace: {0}")]
    MountNamespace(#[source] std::io::Error),
    /// What went wrong, in the command (`run`, `exec`, `kill`, `delete`) that names it.
    #[error("{action}: {source}")]
    In {
        action: &'static str,
        #[source]
        source: Box<EngineError>,
    },
}

impl EngineError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.into(),
            source,
        }
    }

    /// This error as part of `action`.
    pub fn during(self, action: &'static str) -> Self {
        EngineError::In {
            action,
            source: Box::new(self),
        }
    }
}

fn without_cleanup(e: &LibcontainerError) -> String {
    let text = e.to_string();
    match text.split_once(". error during cleanup:") {
        Some((cause, _)) => cause.to_string(),
        None => text,
    }
}
