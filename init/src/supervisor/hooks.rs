//! Hook scripts: every executable file of a hook directory, run one after the other in
//! file-name order, with the phase, mode and container (and, after stop, the exit status)
//! in their environment. Their output goes straight to the container's stdout/stderr.

use super::spawn::{spawn, SpawnSpec, Stream};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

/// The outcome of one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookResult {
    /// The hook file.
    pub path: String,
    /// Its exit code (128+signal when killed), or `None` if it could not be started.
    pub code: Option<i32>,
}

/// The hooks of `dir` in the order they run: regular executable files, sorted by name,
/// skipping dot-files and editor backups. Non-executable files are returned separately
/// so they can be reported.
pub fn list(dir: &str) -> (Vec<String>, Vec<String>) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let (mut run, mut skipped) = (Vec::new(), Vec::new());
    for n in names {
        if n.starts_with('.') || n.ends_with('~') || n.ends_with(".dpkg-old") {
            continue;
        }
        let p = format!("{dir}/{n}");
        match std::fs::metadata(&p) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => run.push(p),
            Ok(m) if m.is_file() => skipped.push(p),
            _ => {}
        }
    }
    (run, skipped)
}

/// Runs the hooks of `dir` with `env`, waiting for each; stops at the first failure when
/// `stop_on_failure`. Returns each hook's result in order.
pub fn run(dir: &str, env: &BTreeMap<String, String>, stop_on_failure: bool) -> Vec<HookResult> {
    let (hooks, skipped) = list(dir);
    for s in skipped {
        crate::log(&format!("hook {s} is not executable; skipped"));
    }
    let mut results = Vec::new();
    for h in hooks {
        let argv = vec![h.clone()];
        let spec = SpawnSpec {
            path: &h,
            argv: &argv,
            env,
            creds: None,
            cwd: Some("/"),
            umask: None,
            nice: None,
            nofile: None,
            stdout: Stream::Inherit,
            stderr: Stream::Inherit,
            new_session: false,
            stdin: None,
            pass_fds: &[],
        };
        let code = match spawn(&spec) {
            Ok(s) => Some(wait_for(s.pid)),
            Err(e) => {
                crate::log(&format!("hook {h}: cannot start: {e}"));
                None
            }
        };
        let failed = code != Some(0);
        if failed {
            crate::log(&format!(
                "hook {h} failed ({})",
                code.map(|c| format!("exit {c}"))
                    .unwrap_or_else(|| "not started".into())
            ));
        }
        results.push(HookResult { path: h, code });
        if failed && stop_on_failure {
            break;
        }
    }
    results
}

/// Waits for one child and returns its exit code (128+signal when killed). Other children
/// exiting meanwhile stay zombies until the main loop reaps them.
pub fn wait_for(pid: i32) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: waitpid with a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return exit_code(status);
        }
        if r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return 255;
        }
    }
}

/// A wait status as a shell-style exit code.
pub fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}
