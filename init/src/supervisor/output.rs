//! Service output to the container's stdout/stderr, one line at a time, each prefixed with
//! the service name, so `docker logs` / `kubectl logs` show who said what. Each line is also
//! kept per unit in [`JOURNAL_DIR`] (capped, one older file kept), for `journalctl -u`.
//!
//! A journal line is `MICROSECONDS-SINCE-EPOCH IDENTIFIER: TEXT`.

use crate::control::JOURNAL_DIR;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

const MAX_LINE: usize = 16 * 1024;
/// A unit's journal file is moved to `NAME.log.1` beyond this.
pub const MAX_JOURNAL: u64 = 1 << 20;

struct Source {
    fd: OwnedFd,
    name: String,
    unit: String,
    to_stderr: bool,
    partial: Vec<u8>,
}

/// One unit's journal file.
struct Journal {
    file: std::fs::File,
    size: u64,
}

/// The open output pipes of every service.
#[derive(Default)]
pub struct Pump {
    sources: BTreeMap<i32, Source>,
    journals: BTreeMap<String, Journal>,
    /// The journal directory could not be made: keep only the container's output.
    no_journal: bool,
}

/// The journal file of `unit`.
pub fn journal_path(unit: &str) -> String {
    format!("{JOURNAL_DIR}/{}.log", unit.replace('/', "_"))
}

impl Pump {
    /// Adds the read end of a pipe whose lines are written prefixed with `name`, and kept in
    /// the journal of `unit`.
    pub fn add(&mut self, fd: OwnedFd, name: &str, unit: &str, to_stderr: bool) {
        let raw = fd.as_raw_fd();
        // SAFETY: fcntl on an fd we own.
        unsafe {
            let flags = libc::fcntl(raw, libc::F_GETFL);
            libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK);
            libc::fcntl(raw, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        self.sources.insert(
            raw,
            Source {
                fd,
                name: name.to_string(),
                unit: unit.to_string(),
                to_stderr,
                partial: Vec::new(),
            },
        );
    }

    /// The fds to poll.
    pub fn fds(&self) -> Vec<i32> {
        self.sources.keys().copied().collect()
    }

    /// Reads what is available on `fd`, writes complete lines, and closes it at end of file.
    pub fn read(&mut self, fd: i32) {
        let Some(src) = self.sources.get_mut(&fd) else {
            return;
        };
        let mut buf = [0u8; 8192];
        let mut lines = Vec::new();
        let eof;
        loop {
            // SAFETY: reading into a stack buffer of the given size.
            let n = unsafe {
                libc::read(
                    src.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                )
            };
            if n > 0 {
                src.partial.extend_from_slice(&buf[..n as usize]);
                lines.extend(emit(src, false));
                continue;
            }
            if n == 0 {
                eof = true;
            } else {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                eof = err.kind() != std::io::ErrorKind::WouldBlock;
            }
            break;
        }
        if eof {
            lines.extend(emit(src, true));
        }
        let (unit, name) = (src.unit.clone(), src.name.clone());
        if eof {
            self.sources.remove(&fd);
        }
        self.keep(&unit, &name, &lines);
    }

    /// Adds a line of the init's own about `unit` to its journal (`Started`, `Stopped`).
    pub fn note(&mut self, unit: &str, text: &str) {
        self.keep(unit, "rehost-init", &[text.as_bytes().to_vec()]);
    }

    fn keep(&mut self, unit: &str, name: &str, lines: &[Vec<u8>]) {
        if lines.is_empty() || self.no_journal {
            return;
        }
        if !self.journals.contains_key(unit) {
            match open_journal(unit) {
                Ok(j) => {
                    self.journals.insert(unit.to_string(), j);
                }
                Err(e) => {
                    crate::log(&format!(
                        "cannot keep service output in {JOURNAL_DIR}: {e} (journalctl will show nothing)"
                    ));
                    self.no_journal = true;
                    return;
                }
            }
        }
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        let mut out = Vec::new();
        for line in lines {
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            out.extend_from_slice(format!("{micros} {name}: ").as_bytes());
            out.extend_from_slice(text);
            out.push(b'\n');
        }
        let j = self.journals.get_mut(unit).expect("opened above");
        if j.file.write_all(&out).is_ok() {
            j.size += out.len() as u64;
        }
        if j.size > MAX_JOURNAL {
            let path = journal_path(unit);
            let _ = std::fs::rename(&path, format!("{path}.1"));
            self.journals.remove(unit);
        }
    }

    /// Reads and writes everything still buffered (at shutdown).
    pub fn drain(&mut self) {
        for fd in self.fds() {
            self.read(fd);
        }
    }
}

fn open_journal(unit: &str) -> std::io::Result<Journal> {
    std::fs::create_dir_all(JOURNAL_DIR)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        // Service output may hold secrets: root reads it, as the systemd journal's owner.
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(journal_path(unit))?;
    let size = file.metadata()?.len();
    Ok(Journal { file, size })
}

/// Writes the complete lines (all of them when `flush`) to the container's output, and
/// returns them.
fn emit(src: &mut Source, flush: bool) -> Vec<Vec<u8>> {
    let mut out: Vec<u8> = Vec::new();
    let mut lines = Vec::new();
    while let Some(pos) = src
        .partial
        .iter()
        .position(|b| *b == b'\n')
        .or_else(|| (src.partial.len() >= MAX_LINE).then_some(MAX_LINE - 1))
    {
        let line: Vec<u8> = src.partial.drain(..=pos).collect();
        prefixed(&mut out, &src.name, &line);
        lines.push(line);
    }
    if flush && !src.partial.is_empty() {
        let line = std::mem::take(&mut src.partial);
        prefixed(&mut out, &src.name, &line);
        lines.push(line);
    }
    if out.is_empty() {
        return lines;
    }
    let _ = if src.to_stderr {
        std::io::stderr().lock().write_all(&out)
    } else {
        std::io::stdout().lock().write_all(&out)
    };
    lines
}

fn prefixed(out: &mut Vec<u8>, name: &str, line: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(line);
    if !line.ends_with(b"\n") {
        out.push(b'\n');
    }
}
