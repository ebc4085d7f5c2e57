//! Parsers of service definitions: systemd unit files ([`systemd`]) and timers
//! ([`calendar`]), SysV init scripts with LSB headers ([`sysv`]), OpenRC scripts
//! ([`openrc`]) and upstart jobs ([`upstart`]).
//!
//! Every parser works on file contents; the loaders that need several files (a systemd unit
//! with its drop-ins, an OpenRC script with its `/etc/conf.d` file, SysV rc links) read them
//! through [`FileSystem`] (the service model's view of a root), so the same code runs over a
//! directory on the host ([`HostRoot`]), over an image being converted, or over the live
//! root inside a container.
//! Nothing here changes a file or runs a program.

pub mod calendar;
pub mod openrc;
pub mod shell;
pub mod systemd;
pub mod sysv;
pub mod timespan;
pub mod upstart;

use std::fmt;

/// Service definitions are read through the model's filesystem view.
pub use crate::model::fs::{FileSystem, HostRoot};

/// A problem with one service definition: which file, which line (when known), and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The file at fault (a path inside the root, or a unit name).
    pub path: String,
    /// 1-based line number, 0 when the problem is not tied to one line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(path: &str, line: usize, message: impl Into<String>) -> Self {
        ParseError {
            path: path.to_string(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.path, self.line, self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

/// Decodes file contents as text, replacing invalid UTF-8 (old configuration files are
/// often Latin-1 in comments; the keys we read are ASCII).
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Helpers for the tests of this crate.
#[cfg(test)]
pub(crate) mod tests_support {
    use std::fs;

    /// A fresh directory under the target dir's temp, removed when dropped.
    pub(crate) struct TempDir(std::path::PathBuf);
    impl TempDir {
        pub(crate) fn as_path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    /// A root holding `files` (path, contents), and its directory (kept while in use).
    pub(crate) fn root_with(files: &[(&str, &str)]) -> (TempDir, crate::units::HostRoot) {
        let d = tempdir();
        for (p, c) in files {
            let full = d.as_path().join(p.trim_start_matches('/'));
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, c).unwrap();
        }
        let r = crate::units::HostRoot::new(d.as_path());
        (d, r)
    }

    pub(crate) fn tempdir() -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "rehost-init-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
