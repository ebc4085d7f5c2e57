//! Starting one process of a service: its own session, its user and groups, umask, nice,
//! file limit, working directory, a clean environment, and stdout/stderr either piped to the
//! init (which prefixes each line with the service name) or sent where the unit says.

use crate::users::Credentials;
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// Where a stream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stream {
    /// To the init, which prefixes lines with the service name.
    Pipe,
    /// Shared with the init itself (hooks, the main command in dumb-init mode).
    Inherit,
    /// To /dev/null.
    Null,
    /// To a file: (path, append).
    File(String, bool),
    /// A connection of a socket unit (`StandardInput=socket`).
    Fd(RawFd),
}

impl Stream {
    /// From `StandardOutput=`/`StandardError=`: `null`, `file:PATH`, `append:PATH`,
    /// `truncate:PATH`; everything else (journal, syslog, inherit, tty) goes to the pipe.
    pub fn from_setting(s: Option<&str>) -> Stream {
        match s {
            Some("null") => Stream::Null,
            Some(v) if v.starts_with("file:") || v.starts_with("truncate:") => {
                Stream::File(v.split_once(':').unwrap().1.to_string(), false)
            }
            Some(v) if v.starts_with("append:") => {
                Stream::File(v["append:".len()..].to_string(), true)
            }
            _ => Stream::Pipe,
        }
    }

    fn stdio(&self) -> io::Result<Stdio> {
        Ok(match self {
            Stream::Pipe => Stdio::piped(),
            Stream::Inherit => Stdio::inherit(),
            Stream::Null => Stdio::null(),
            Stream::Fd(fd) => Stdio::from(dup(*fd)?),
            Stream::File(p, append) => {
                let f = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(*append)
                    .truncate(!*append)
                    .open(p)?;
                Stdio::from(f)
            }
        })
    }
}

/// What to run and how.
/// A copy of `fd` the child's stdio may take.
fn dup(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: the caller owns `fd` for the duration of the spawn.
    unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()
}

/// At most this many sockets are passed to one service.
pub const MAX_PASSED: usize = 16;

#[derive(Debug, Clone)]
pub struct SpawnSpec<'a> {
    /// The program (absolute, or looked up in the `PATH` of `env`).
    pub path: &'a str,
    /// The arguments, argv\[0\] included.
    pub argv: &'a [String],
    /// The whole environment.
    pub env: &'a BTreeMap<String, String>,
    /// Who to run as; `None` keeps root.
    pub creds: Option<&'a Credentials>,
    /// Working directory.
    pub cwd: Option<&'a str>,
    /// umask.
    pub umask: Option<u32>,
    /// nice level.
    pub nice: Option<i32>,
    /// RLIMIT_NOFILE (soft, hard).
    pub nofile: Option<(u64, u64)>,
    /// stdout.
    pub stdout: Stream,
    /// stderr.
    pub stderr: Stream,
    /// Start a new session (services); hooks and the dumb-init command keep the terminal.
    pub new_session: bool,
    /// stdin: a socket unit's connection (`StandardInput=socket`); else /dev/null.
    pub stdin: Option<RawFd>,
    /// Sockets the process gets as fds 3… (`LISTEN_FDS`): they are kept open across exec
    /// for `rehost-init __listen`, which moves them to 3… and sets `LISTEN_PID`.
    pub pass_fds: &'a [RawFd],
}

/// A started process.
#[derive(Debug)]
pub struct Spawned {
    /// Its pid.
    pub pid: i32,
    /// The read end of its stdout pipe.
    pub stdout: Option<OwnedFd>,
    /// The read end of its stderr pipe.
    pub stderr: Option<OwnedFd>,
}

/// Finds `prog` in the `PATH` of `env` when it has no slash.
pub fn resolve_program(prog: &str, env: &BTreeMap<String, String>) -> Option<String> {
    if prog.contains('/') {
        return Some(prog.to_string());
    }
    let path = env
        .get("PATH")
        .map(String::as_str)
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':')
        .map(|d| format!("{d}/{prog}"))
        .find(|p| std::fs::metadata(p).map(|m| m.is_file()).unwrap_or(false))
}

/// Starts the process. The caller reaps it (rehost-init reaps every child with waitpid).
pub fn spawn(spec: &SpawnSpec<'_>) -> io::Result<Spawned> {
    let program = resolve_program(spec.path, spec.env).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{}: command not found", spec.path),
        )
    })?;
    let mut cmd = Command::new(&program);
    if let Some(a0) = spec.argv.first() {
        cmd.arg0(a0);
    }
    cmd.args(spec.argv.iter().skip(1));
    cmd.env_clear().envs(spec.env);
    match spec.stdin {
        Some(fd) => cmd.stdin(Stdio::from(dup(fd)?)),
        None => cmd.stdin(Stdio::null()),
    };
    let mut pass = [-1 as RawFd; MAX_PASSED];
    for (k, fd) in spec.pass_fds.iter().take(MAX_PASSED).enumerate() {
        pass[k] = *fd;
    }
    cmd.stdout(spec.stdout.stdio()?);
    cmd.stderr(spec.stderr.stdio()?);
    if let Some(d) = spec.cwd {
        cmd.current_dir(d);
    }
    let creds = spec.creds.cloned();
    let (umask, nice, nofile, new_session) = (spec.umask, spec.nice, spec.nofile, spec.new_session);
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // async-signal-safe libc functions on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            if new_session {
                libc::setsid();
            }
            for fd in pass.iter().copied().filter(|fd| *fd >= 0) {
                libc::fcntl(fd, libc::F_SETFD, 0);
            }
            if let Some(m) = umask {
                libc::umask(m as libc::mode_t);
            }
            if let Some(n) = nice {
                libc::setpriority(libc::PRIO_PROCESS, 0, n);
            }
            if let Some((soft, hard)) = nofile {
                let conv = |v: u64| {
                    if v == u64::MAX {
                        libc::RLIM_INFINITY
                    } else {
                        v as libc::rlim_t
                    }
                };
                let lim = libc::rlimit {
                    rlim_cur: conv(soft),
                    rlim_max: conv(hard),
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    // Raising the hard limit needs a privilege the container may not
                    // have: then as much as the hard limit allows.
                    let mut cur: libc::rlimit = std::mem::zeroed();
                    if libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) == 0 {
                        let (soft, hard) = within_hard(lim.rlim_cur, lim.rlim_max, cur.rlim_max);
                        let lim = libc::rlimit {
                            rlim_cur: soft,
                            rlim_max: hard,
                        };
                        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
                    }
                }
            }
            if let Some(c) = &creds {
                if libc::setgroups(c.groups.len(), c.groups.as_ptr()) != 0 && c.uid != 0 {
                    // In a user namespace without setgroups permission, keep going with
                    // the primary group only rather than refusing to start.
                }
                if libc::setgid(c.gid) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::setuid(c.uid) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{program}: {e}")))?;
    let pid = child.id() as i32;
    let stdout = child.stdout.take().map(|s| unsafe_owned(s.into_raw_fd()));
    let stderr = child.stderr.take().map(|s| unsafe_owned(s.into_raw_fd()));
    // The Child is dropped without waiting: the init's reaper collects every exit status.
    drop(child);
    Ok(Spawned {
        pid,
        stdout,
        stderr,
    })
}

/// A (soft, hard) limit lowered to fit under the `current_hard` limit.
pub fn within_hard(
    soft: libc::rlim_t,
    hard: libc::rlim_t,
    current_hard: libc::rlim_t,
) -> (libc::rlim_t, libc::rlim_t) {
    let hard = hard.min(current_hard);
    (soft.min(hard), hard)
}

fn unsafe_owned(fd: i32) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` was just released by into_raw_fd and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_limit_above_the_hard_limit_is_lowered_to_it() {
        assert_eq!(within_hard(65535, 65535, 4096), (4096, 4096));
        assert_eq!(within_hard(1024, 524288, 4096), (1024, 4096));
        assert_eq!(within_hard(1024, 2048, 4096), (1024, 2048));
    }
}
