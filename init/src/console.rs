//! A console for the image's own init when the engine gives none.
//!
//! systemd and SysV init write their boot, and journald the services' lines (rehost's
//! drop-in asks it to), to /dev/console only. An engine makes /dev/console only for a
//! container with a terminal (`docker run -t`); without one (`docker run -d`, Kubernetes,
//! `ctr run`, a `rehost run` not on a terminal) all of it is lost, and `docker logs` or
//! `kubectl logs` stay empty. Then, before exec'ing that init, rehost-init makes the
//! console reach pid 1's standard output: a pty whose slave /dev/console names, and a
//! process that copies the master to standard output for the container's life (it is
//! pid 1's child: the init it becomes reaps it). /dev/console is a symlink to the slave:
//! mounting over it needs CAP_SYS_ADMIN, which engines do not give, and a device node
//! made outside the container's devpts would not reach its pty. The init and journald
//! open it as a terminal (they refuse anything else), which it is.

use std::io::{Error, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const CONSOLE: &str = "/dev/console";

/// Gives the container a console copied to standard output when the engine made none;
/// says what it did (for the init's log), or None when there was a console already.
pub fn to_stdout() -> Option<String> {
    match std::fs::symlink_metadata(CONSOLE) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        _ => return None,
    }
    Some(match make() {
        Ok(n) => format!(
            "no console from the engine: /dev/console is /dev/pts/{n}, copied to standard output"
        ),
        Err(e) => format!("no console from the engine, and none made ({e}): the boot is not shown"),
    })
}

/// Opens a pty, names its slave /dev/console and forks the copier; gives the pty number.
fn make() -> std::io::Result<u32> {
    let open = |path: &std::ffi::CStr| {
        // SAFETY: open with a NUL-terminated path; the descriptor is owned below.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(Error::last_os_error());
        }
        // SAFETY: a descriptor we just opened.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let master = open(c"/dev/ptmx")?;
    let mut n: libc::c_uint = 0;
    let mut unlock: libc::c_int = 0;
    // SAFETY: the pty ioctls on our master, with pointers to locals of the right types.
    unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &mut unlock) != 0
            || libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) != 0
        {
            return Err(Error::last_os_error());
        }
    }
    let slave_path = std::ffi::CString::new(format!("/dev/pts/{n}")).expect("no NUL");
    // Held open by the copier, so that the master never reads EIO while no one else has
    // the console open (systemd opens it anew for every message).
    let slave = open(&slave_path)?;
    // Output as written (no "\r\n" for "\n"); an init that sets its console's modes
    // again gets its carriage returns before line feeds dropped by the copy.
    // SAFETY: termios calls on our slave, with a zeroed struct filled by tcgetattr.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(slave.as_raw_fd(), &mut t) == 0 {
            t.c_oflag &= !libc::OPOST;
            libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t);
        }
    }
    std::os::unix::fs::symlink(format!("pts/{n}"), CONSOLE)?;
    // SAFETY: rehost-init is single-threaded here; the child only copies between
    // descriptors it holds and never returns into the caller.
    match unsafe { libc::fork() } {
        -1 => {
            let e = Error::last_os_error();
            let _ = std::fs::remove_file(CONSOLE);
            Err(e)
        }
        0 => copy(master, slave),
        _ => Ok(n),
    }
}

/// The copier: the console's output to standard output, until the container ends.
fn copy(master: OwnedFd, slave: OwnedFd) -> ! {
    // SAFETY: the child's own signal dispositions and session. A closed standard output
    // must not kill it: the init would then block on a full console.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::setsid();
        libc::prctl(libc::PR_SET_NAME, c"rehost-console".as_ptr());
    }
    let _slave = slave;
    let mut out = std::io::stdout().lock();
    let mut buf = [0u8; 16 * 1024];
    let mut lines = LineEnds::default();
    loop {
        // SAFETY: read into our buffer from our descriptor.
        let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            let text = lines.filter(&buf[..n as usize]);
            // Nobody reading is no reason to stop: the output is dropped instead.
            let _ = out.write_all(&text).and_then(|_| out.flush());
        } else if n < 0 && Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        } else {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// Drops the carriage returns before each line feed of a terminal's output (systemd
/// writes "\r\n", which the terminal makes "\r\r\n"), across reads; others stay.
#[derive(Default)]
pub struct LineEnds {
    pending_cr: usize,
}

impl LineEnds {
    pub fn filter(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            match b {
                b'\r' => self.pending_cr += 1,
                b'\n' => {
                    self.pending_cr = 0;
                    out.push(b);
                }
                _ => {
                    out.extend(std::iter::repeat_n(
                        b'\r',
                        std::mem::take(&mut self.pending_cr),
                    ));
                    out.push(b);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carriage_returns_go_only_before_line_feeds_even_across_reads() {
        let mut u = LineEnds::default();
        assert_eq!(u.filter(b"a\r\nb\r"), b"a\nb");
        assert_eq!(u.filter(b"\nc\rd\r\r"), b"\nc\rd");
        assert_eq!(u.filter(b"\n\r\r\ne\r"), b"\n\ne");
        assert_eq!(u.filter(b"\x1b[K"), b"\r\x1b[K");
    }
}
