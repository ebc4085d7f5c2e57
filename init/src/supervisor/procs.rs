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

/// Reads a pid file: the first number in it, if that process is alive.
pub fn read_pid_file(path: &str) -> Option<i32> {
    let text = std::fs::read_to_string(path).ok()?;
    let pid: i32 = text.split_whitespace().next()?.parse().ok()?;
    (pid > 0 && super::signals::alive(pid)).then_some(pid)
}
