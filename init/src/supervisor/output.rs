//! Service output to the container's stdout/stderr, one line at a time, each prefixed with
//! the service name, so `docker logs` / `kubectl logs` show who said what.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};

const MAX_LINE: usize = 16 * 1024;

struct Source {
    fd: OwnedFd,
    name: String,
    to_stderr: bool,
    partial: Vec<u8>,
}

/// The open output pipes of every service.
#[derive(Default)]
pub struct Pump {
    sources: BTreeMap<i32, Source>,
}

impl Pump {
    /// Adds the read end of a pipe whose lines are written prefixed with `name`.
    pub fn add(&mut self, fd: OwnedFd, name: &str, to_stderr: bool) {
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
                emit(src, false);
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
            emit(src, true);
            self.sources.remove(&fd);
        }
    }

    /// Reads and writes everything still buffered (at shutdown).
    pub fn drain(&mut self) {
        for fd in self.fds() {
            self.read(fd);
        }
    }
}

fn emit(src: &mut Source, flush: bool) {
    let mut out: Vec<u8> = Vec::new();
    while let Some(pos) = src
        .partial
        .iter()
        .position(|b| *b == b'\n')
        .or_else(|| (src.partial.len() >= MAX_LINE).then_some(MAX_LINE - 1))
    {
        let line: Vec<u8> = src.partial.drain(..=pos).collect();
        prefixed(&mut out, &src.name, &line);
    }
    if flush && !src.partial.is_empty() {
        let line = std::mem::take(&mut src.partial);
        prefixed(&mut out, &src.name, &line);
    }
    if out.is_empty() {
        return;
    }
    let _ = if src.to_stderr {
        std::io::stderr().lock().write_all(&out)
    } else {
        std::io::stdout().lock().write_all(&out)
    };
}

fn prefixed(out: &mut Vec<u8>, name: &str, line: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(line);
    if !line.ends_with(b"\n") {
        out.push(b'\n');
    }
}
