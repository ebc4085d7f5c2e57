//! Signal names and numbers, and the signal file descriptor pid 1 reads every signal from
//! (all signals are blocked, so none is lost between two polls and no handler runs).

use std::io;

const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Parses `SIGTERM`, `TERM`, `15`, `SIGRTMIN+3`.
pub fn parse(s: &str) -> Option<i32> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let bare = s.strip_prefix("SIG").unwrap_or(s);
    if let Some(rest) = bare.strip_prefix("RTMIN") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix('+')?.parse().ok()?
        };
        let n = libc::SIGRTMIN() + off;
        return (n <= libc::SIGRTMAX()).then_some(n);
    }
    NAMES.iter().find(|(n, _)| *n == bare).map(|(_, v)| *v)
}

/// The name of signal `n` (`SIGTERM`, `SIGRTMIN+3`).
pub fn name(n: i32) -> String {
    if let Some((s, _)) = NAMES.iter().find(|(_, v)| *v == n) {
        return format!("SIG{s}");
    }
    if n >= libc::SIGRTMIN() && n <= libc::SIGRTMAX() {
        return format!("SIGRTMIN+{}", n - libc::SIGRTMIN());
    }
    format!("signal {n}")
}

/// Blocks every signal in this thread and returns a non-blocking signalfd that reads them.
pub fn block_all() -> io::Result<i32> {
    // SAFETY: plain libc calls on a local sigset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(fd)
    }
}

/// Reads the pending signals from a signalfd.
pub fn read_pending(fd: i32) -> Vec<i32> {
    let mut out = Vec::new();
    loop {
        // SAFETY: reading into a properly sized, zeroed signalfd_siginfo.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        let n = unsafe { libc::read(fd, &mut info as *mut _ as *mut libc::c_void, size) };
        if n != size as isize {
            break;
        }
        out.push(info.ssi_signo as i32);
    }
    out
}

/// Sends `sig` to `pid` (a negative pid is a process group); errors are ignored because
/// the target may be gone already.
pub fn send(pid: i32, sig: i32) {
    if pid != 0 && pid != -1 {
        // SAFETY: kill(2) has no memory-safety requirements.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X"),
        // Without /proc, fall back to kill(pid, 0).
        Err(_) => unsafe { libc::kill(pid, 0) == 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("SIGTERM"), Some(libc::SIGTERM));
        assert_eq!(parse("QUIT"), Some(libc::SIGQUIT));
        assert_eq!(parse("9"), Some(9));
        assert_eq!(parse("SIGRTMIN+3"), Some(libc::SIGRTMIN() + 3));
        assert_eq!(parse("SIGBOGUS"), None);
        assert_eq!(name(libc::SIGKILL), "SIGKILL");
        assert_eq!(name(libc::SIGRTMIN() + 3), "SIGRTMIN+3");
    }
}
