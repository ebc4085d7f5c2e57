//! Finding a service's processes without cgroups: every process rehost-init starts carries
//! `REHOST_SERVICE=<name>` in its environment, which its children inherit, so scanning
//! `/proc/*/environ` finds them all (daemons that double-fork included).

/// The environment variable that marks a service's processes.
pub const MARKER: &str = "REHOST_SERVICE";

/// The pids of live processes marked as belonging to `service`, ascending.
pub fn marked(service: &str) -> Vec<i32> {
    let needle = format!("{MARKER}={service}");
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    let me = std::process::id() as i32;
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) && super::signals::alive(pid) {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// The parent pid of `pid`.
pub fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Guesses the main process of a forking service whose start command has exited: the
/// oldest marked process whose parent is rehost-init (the daemon, re-parented to us).
pub fn guess_main(service: &str) -> Option<i32> {
    let me = std::process::id() as i32;
    marked(service).into_iter().find(|&p| parent(p) == Some(me))
}

/// Reads a pid file: the first number in it, if that process is alive. Only a regular
/// file is read, and only its first bytes: pid 1 reads these files again and again, and a
/// FIFO or a device put where a pid file is expected must never block or flood it.
pub fn read_pid_file(path: &str) -> Option<i32> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut head = [0u8; 64];
    let n = f.take(head.len() as u64).read(&mut head).ok()?;
    let text = std::str::from_utf8(&head[..n]).ok()?;
    let pid: i32 = text.split_whitespace().next()?.parse().ok()?;
    (pid > 0 && super::signals::alive(pid)).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_names_a_live_process_or_nothing() {
        let d = crate::units::tests_support::tempdir();
        let path = |n: &str| d.as_path().join(n).display().to_string();
        let me = std::process::id() as i32;
        std::fs::write(path("live.pid"), format!("{me}\n")).unwrap();
        assert_eq!(read_pid_file(&path("live.pid")), Some(me));
        // A pid that is not alive (beyond any pid_max), garbage, nothing.
        std::fs::write(path("dead.pid"), "99999999\n").unwrap();
        assert_eq!(read_pid_file(&path("dead.pid")), None);
        std::fs::write(path("junk.pid"), "nginx\n").unwrap();
        assert_eq!(read_pid_file(&path("junk.pid")), None);
        assert_eq!(read_pid_file(&path("missing.pid")), None);
        // A FIFO where the pid file should be: refused at once, never a read that waits.
        let fifo = std::ffi::CString::new(path("fifo.pid")).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert_eq!(read_pid_file(&path("fifo.pid")), None);
        // A directory neither.
        std::fs::create_dir(path("dir.pid")).unwrap();
        assert_eq!(read_pid_file(&path("dir.pid")), None);
    }
}
