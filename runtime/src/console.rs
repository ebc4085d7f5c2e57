//! A console for inits that log only to a terminal (systemd writes its boot messages to
//! /dev/console and nowhere else). The engine makes the pty and hands us its master over
//! a unix socket (`--console-socket`); a small process of ours, detached from the
//! command, copies the master into the container's log for the container's life.

use crate::error::{Error, IoContext, Result};
use std::fs::File;
use std::io::{IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

/// The console pump's pid, beside the log.
pub const PUMP_PID_FILE: &str = "console.pid";

/// Waits up to a few seconds for the console pump of the container in `dir` to copy the
/// last output and exit (it does once pid 1 is gone), then ends it.
pub fn stop_pump(dir: &Path) {
    crate::sidecar::end(&dir.join(PUMP_PID_FILE), false, Duration::from_secs(5));
}

/// Waits for the engine (`child`) to send the pty master on `listener`; gives up when
/// the engine exits without sending one.
pub fn receive_master(
    listener: &UnixListener,
    child: &mut Child,
    sock: &Path,
) -> Result<Option<OwnedFd>> {
    listener.set_nonblocking(true).at(sock)?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).at(sock)?;
                let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
                let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
                let mut name = [0u8; 4096];
                rustix::net::recvmsg(
                    &stream,
                    &mut [IoSliceMut::new(&mut name)],
                    &mut control,
                    rustix::net::RecvFlags::empty(),
                )
                .at(sock)?;
                for msg in control.drain() {
                    if let rustix::net::RecvAncillaryMessage::ScmRights(mut fds) = msg {
                        if let Some(fd) = fds.next() {
                            return Ok(Some(fd));
                        }
                    }
                }
                return Err(Error::io(
                    sock,
                    std::io::Error::other("the engine sent no terminal"),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if child.try_wait().at(sock)?.is_some() {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(Error::io(sock, e)),
        }
    }
}

/// Forks the process that copies `master` into `log` until pid `init` is gone. The pty
/// master is kept open through EIO (no one has the console open for a moment, as when
/// systemd reopens it), or the container's console would vanish.
pub fn spawn_pump(master: OwnedFd, log: &Path, init: i32) -> Result<()> {
    let mut out = File::options()
        .append(true)
        .create(true)
        .open(log)
        .at(log)?;
    // SAFETY: rehost is single-threaded here; the child only uses the fds it owns and
    // async-signal-safe calls, then exits without returning into the caller.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::io(log, std::io::Error::last_os_error()));
    }
    if pid > 0 {
        // Recorded, so that stop waits for it: it exits once it sees pid 1 gone.
        let record = log.with_file_name(PUMP_PID_FILE);
        return crate::sidecar::record(&record, pid).at(&record);
    }
    unsafe {
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
    }
    let mut master = File::from(master);
    let mut buf = [0u8; 16 * 1024];
    loop {
        match master.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => {
                let _ = out.write_all(&buf[..n]);
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {}
        }
        // EIO or EOF: the console is closed for now. Stop when the container is gone.
        if unsafe { libc::kill(init, 0) } != 0 {
            unsafe { libc::_exit(0) };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
