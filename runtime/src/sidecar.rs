//! The host-side processes of ours that serve a container (the port forwarder, the
//! console pump): each is recorded in the container's directory by its pid and start
//! time, which name one process for good even once the pid is reused, and ended through
//! a pidfd, which turns readable only when the process is gone with its files closed.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

/// Records process `pid` in `file`.
pub fn record(file: &Path, pid: i32) -> std::io::Result<()> {
    let started = start_time(pid).unwrap_or_default();
    std::fs::write(file, format!("{pid} {started}\n"))
}

/// Ends the process recorded in `file`, if it still runs: first waits up to `grace` for
/// it to exit by itself (with `term`, SIGTERM is sent first), then SIGKILL. When this
/// returns it is gone. The record is removed.
pub fn end(file: &Path, term: bool, grace: Duration) {
    let recorded = std::fs::read_to_string(file).unwrap_or_default();
    let mut fields = recorded.split_whitespace();
    if let (Some(Ok(pid)), Some(started)) = (fields.next().map(str::parse::<i32>), fields.next()) {
        let pidfd = rustix::process::Pid::from_raw(pid).and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        });
        // Checked after the pidfd is open: the pidfd then holds this very process.
        if let Some(pidfd) = pidfd.filter(|_| start_time(pid).as_deref() == Some(started)) {
            use rustix::process::{pidfd_send_signal, Signal};
            if term {
                let _ = pidfd_send_signal(&pidfd, Signal::TERM);
            }
            if !wait_gone(&pidfd, grace) {
                let _ = pidfd_send_signal(&pidfd, Signal::KILL);
                wait_gone(&pidfd, Duration::from_secs(10));
            }
            // Our own child (an attached run) is reaped here; another's is not ours.
            // SAFETY: waitpid with WNOHANG on a specific pid has no other effect.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
    }
    let _ = std::fs::remove_file(file);
}

/// Waits up to `grace` (zero: not at all) for the process of `pidfd` to exit; whether it
/// has.
pub fn wait_gone(pidfd: &OwnedFd, grace: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = grace.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut p, 1, ms) } {
            n if n > 0 => return true,
            0 => return false,
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => return false,
        }
    }
}

/// When `pid` started (clock ticks since boot, /proc/PID/stat field 22).
fn start_time(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19).map(String::from)
}
