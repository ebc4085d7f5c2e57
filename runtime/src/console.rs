//! Terminals the engine makes inside a container, whose master it hands us over a unix
//! socket (`--console-socket`):
//! - a console for inits that log only to a terminal (systemd writes its boot messages
//!   to /dev/console and nowhere else): a small process of ours, detached from the
//!   command, copies the master into the container's log for the container's life;
//! - the terminal of `exec --tty`, joined to the caller's for the command's life.

use crate::error::{Error, IoContext, Result};
use std::fs::File;
use std::io::{IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// The console pump's pid, beside the log.
pub const PUMP_PID_FILE: &str = "console.pid";

/// Waits up to a few seconds for the console pump of the container in `dir` to copy the
/// last output and exit (it does once pid 1 is gone), then ends it.
pub fn stop_pump(dir: &Path) {
    crate::sidecar::end(&dir.join(PUMP_PID_FILE), false, Duration::from_secs(5));
}

/// Waits for the engine to send the pty master on `listener`; gives up (None) when
/// `gone` says the sender exited without sending one.
pub fn receive_master(
    listener: &UnixListener,
    mut gone: impl FnMut() -> bool,
    sock: &Path,
) -> Result<Option<OwnedFd>> {
    listener.set_nonblocking(true).at(sock)?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).at(sock)?;
                return received_fd(&stream, sock).map(Some);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if gone() {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(Error::io(sock, e)),
        }
    }
}

/// The descriptor the engine sent on `stream`.
fn received_fd(stream: &UnixStream, sock: &Path) -> Result<OwnedFd> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 4096];
    rustix::net::recvmsg(
        stream,
        &mut [IoSliceMut::new(&mut name)],
        &mut control,
        rustix::net::RecvFlags::empty(),
    )
    .at(sock)?;
    for msg in control.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(Error::io(
        sock,
        std::io::Error::other("the engine sent no terminal"),
    ))
}

/// Gives the container's terminal `master` the window size of the caller's (our stdin).
pub fn size_as_caller(master: &impl AsRawFd) {
    // SAFETY: two ioctls on descriptors we hold.
    unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut size) == 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size);
        }
    }
}

/// A console socket of our own, for a terminal joined to the caller's, in the temp
/// directory (a socket's path may not exceed 107 bytes); removed when dropped.
pub struct CallerSocket {
    pub path: std::path::PathBuf,
    pub listener: UnixListener,
}

impl CallerSocket {
    /// `rehost-KIND-PID.sock` in the temp directory.
    pub fn bind(kind: &str) -> Result<CallerSocket> {
        let path = std::env::temp_dir().join(format!("rehost-{kind}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).at(&path)?;
        Ok(CallerSocket { path, listener })
    }
}

impl Drop for CallerSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The master of an `exec --tty` terminal, received while the engine makes the process
/// by a child of ours, which gives it the caller's window size at once. The engine sends
/// the master before it starts the command and does not wait for us: sized only once
/// the engine returns, it is too late for a command that asks at start (`stty size`
/// read 0 0). A child, not a thread: the engine must stay single-threaded to change its
/// mount namespace (the cgroup placement) and for libcontainer.
pub struct ExecMaster {
    child: i32,
    from_child: UnixStream,
}

impl ExecMaster {
    /// Forks the child that waits on `listener` for the engine's connection.
    pub fn expect(listener: &UnixListener, sock: &Path) -> Result<ExecMaster> {
        let (ours, theirs) = UnixStream::pair().at(sock)?;
        // SAFETY: the engine is single-threaded here; the child only makes syscalls on
        // descriptors it holds, then exits.
        match unsafe { libc::fork() } {
            -1 => Err(Error::io(sock, std::io::Error::last_os_error())),
            0 => unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                let passed = listener
                    .accept()
                    .at(sock)
                    .and_then(|(stream, _)| received_fd(&stream, sock))
                    .map(|master| {
                        size_as_caller(&master);
                        let fds = [master.as_fd()];
                        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
                        let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
                        control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds));
                        rustix::net::sendmsg(
                            &theirs,
                            &[std::io::IoSlice::new(b"m")],
                            &mut control,
                            rustix::net::SendFlags::empty(),
                        )
                        .is_ok()
                    });
                libc::_exit(if matches!(passed, Ok(true)) { 0 } else { 1 })
            },
            child => {
                // Woken by the engine's connection, the child races the command's own
                // setup: a real-time class runs it ahead, even on a busy machine. Set by
                // us, at once: a child left to set it itself may not yet have run when
                // the connection comes. It only blocks, then sizes and passes one
                // descriptor. A cgroup with no real-time budget refuses the class: then
                // the highest nice. With 4 busy loops on 2 cores, `stty size` read 0 0 in
                // 0 runs of 300 (3 in 30 without either); in such a cgroup, shared with
                // the loops, 14 in 100 (31 without the nice).
                let first = libc::sched_param { sched_priority: 1 };
                let policy = libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK;
                // SAFETY: scheduling calls on our own child.
                unsafe {
                    if libc::sched_setscheduler(child, policy, &first) != 0 {
                        libc::setpriority(libc::PRIO_PROCESS, child as libc::id_t, -20);
                    }
                }
                Ok(ExecMaster {
                    child,
                    from_child: ours,
                })
            }
        }
    }

    /// The master, once the engine has made the process (it has sent it by then; the
    /// bound is for an engine that did not).
    pub fn receive(self, sock: &Path) -> Result<OwnedFd> {
        self.from_child
            .set_read_timeout(Some(Duration::from_secs(10)))
            .at(sock)?;
        received_fd(&self.from_child, sock)
    }
}

impl Drop for ExecMaster {
    fn drop(&mut self) {
        // SAFETY: our own child; it is done, or waits for a connection that will not come.
        unsafe {
            libc::kill(self.child, libc::SIGKILL);
            libc::waitpid(self.child, std::ptr::null_mut(), 0);
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

/// The pty master of `exec --tty`, for the window-size handler.
static EXEC_MASTER: AtomicI32 = AtomicI32::new(-1);

extern "C" fn pass_window_size(_: libc::c_int) {
    let master = EXEC_MASTER.load(Ordering::SeqCst);
    // SAFETY: two ioctls on descriptors that outlive the handler's installation.
    unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        if master >= 0 && libc::ioctl(0, libc::TIOCGWINSZ, &mut size) == 0 {
            libc::ioctl(master, libc::TIOCSWINSZ, &size);
        }
    }
}

/// Joins the caller's terminal (stdin, stdout) to `master` while `wait` waits for the
/// command: the caller's terminal in raw mode (keys, Ctrl-C included, go to the
/// container's terminal, which makes the signals), its window size passed on now and on
/// every SIGWINCH. With `signal_keys`, Ctrl-C and Ctrl-\ stay with the caller's terminal
/// and signal us (a console, whose init `wait` passes the signal to). Gives what `wait`
/// gives, once the output is drained and the caller's terminal restored.
pub fn join_terminal(master: OwnedFd, signal_keys: bool, wait: impl FnOnce() -> i32) -> i32 {
    let master = File::from(master);
    let fd = master.as_raw_fd();
    // SAFETY: termios calls on our stdin, restored below; the handler only does ioctls.
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        let saved = (libc::tcgetattr(0, &mut t) == 0).then_some(t);
        if let Some(mut raw) = saved {
            libc::cfmakeraw(&mut raw);
            if signal_keys {
                raw.c_lflag |= libc::ISIG;
            }
            libc::tcsetattr(0, libc::TCSANOW, &raw);
        }
        EXEC_MASTER.store(fd, Ordering::SeqCst);
        libc::signal(
            libc::SIGWINCH,
            pass_window_size as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
        saved
    };
    pass_window_size(libc::SIGWINCH);
    let mut to_master = master.try_clone().ok();
    std::thread::spawn(move || {
        let (mut stdin, mut buf) = (std::io::stdin().lock(), [0u8; 4096]);
        while let (Some(m), Ok(n @ 1..)) = (to_master.as_mut(), stdin.read(&mut buf)) {
            if m.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let (drained, done) = std::sync::mpsc::channel();
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut from_master = master;
    let command_done = finished.clone();
    std::thread::spawn(move || {
        let (mut stdout, mut buf) = (std::io::stdout(), [0u8; 16 * 1024]);
        loop {
            match from_master.read(&mut buf) {
                Ok(n @ 1..) => {
                    let _ = stdout.write_all(&buf[..n]).and_then(|_| stdout.flush());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // EIO: no one has the terminal open. For good once the command is done;
                // before, for a moment (an init that reopens its console, as systemd
                // does for every message).
                _ if !command_done.load(Ordering::SeqCst) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => break,
            }
        }
        let _ = drained.send(());
    });
    let code = wait();
    finished.store(true, Ordering::SeqCst);
    // What the command wrote last; a process it left in the background may keep the
    // terminal open, so not forever.
    let _ = done.recv_timeout(Duration::from_millis(500));
    // SAFETY: restoring what tcgetattr gave.
    unsafe {
        libc::signal(libc::SIGWINCH, libc::SIG_DFL);
        EXEC_MASTER.store(-1, Ordering::SeqCst);
        if let Some(t) = saved {
            libc::tcsetattr(0, libc::TCSANOW, &t);
        }
    }
    code
}
