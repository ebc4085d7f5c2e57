//! Package generators, run at boot as systemd runs them. Packages use them to decide at
//! boot which units a unit pulls in: postgresql's makes `postgresql.service` want one
//! `postgresql@VERSION-CLUSTER.service` per cluster, postfix's one `postfix@INSTANCE.service`
//! per instance. Their output (links in `.wants/` directories) goes where systemd puts it,
//! [`GENERATOR_DIRS`](crate::model::systemd::GENERATOR_DIRS), and the service model reads
//! it from there.
//!
//! systemd's own generators (`systemd-*`: fstab, getty, gpt-auto, the SysV one, …) are not
//! run: they make units for the machine's disks and consoles, and rehost-init reads SysV
//! scripts itself.

use crate::model::systemd::GENERATOR_DIRS;
use crate::supervisor::spawn::{spawn, SpawnSpec, Stream};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Where generators are installed, highest priority first (a name higher up hides the
/// same name lower down; a link to /dev/null disables it).
pub const GENERATOR_SEARCH: &[&str] = &[
    "/etc/systemd/system-generators",
    "/run/systemd/system-generators",
    "/usr/local/lib/systemd/system-generators",
    "/usr/lib/systemd/system-generators",
    "/lib/systemd/system-generators",
];

/// How long one generator may run before it is killed.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The generators to run under `root` (a host path; "/" in the container): path inside
/// the root, by name, the ones of systemd itself left out.
pub fn find(root: &std::path::Path) -> Vec<String> {
    let mut by_name: BTreeMap<String, Option<String>> = BTreeMap::new();
    for dir in GENERATOR_SEARCH {
        let host = root.join(dir.trim_start_matches('/'));
        let Ok(rd) = std::fs::read_dir(&host) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if by_name.contains_key(&name) {
                continue;
            }
            let masked = std::fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == "/dev/null")
                || std::fs::metadata(e.path()).map_or(true, |m| !m.is_file() || m.len() == 0);
            let path = format!("{dir}/{name}");
            by_name.insert(name, (!masked).then_some(path));
        }
    }
    by_name
        .into_iter()
        .filter(|(name, _)| !name.starts_with("systemd-"))
        .filter_map(|(_, path)| path)
        .collect()
}

/// Runs every package generator of the running root, each with the three output
/// directories (made fresh) and a bound on its time. Gives what went wrong, for the log.
pub fn run_all(env: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for d in GENERATOR_DIRS {
        let _ = std::fs::remove_dir_all(d);
        if let Err(e) = std::fs::create_dir_all(d) {
            problems.push(format!("generators: cannot create {d}: {e}"));
            return problems;
        }
    }
    let args: Vec<String> = GENERATOR_DIRS.iter().map(|d| d.to_string()).collect();
    for path in find(std::path::Path::new("/")) {
        let mut argv = vec![path.clone()];
        argv.extend(args.iter().cloned());
        let spec = SpawnSpec {
            path: &path,
            argv: &argv,
            env,
            creds: None,
            cwd: Some("/"),
            umask: Some(0o022),
            nice: None,
            nofile: None,
            stdout: Stream::Null,
            stderr: Stream::Inherit,
            new_session: true,
            stdin: None,
            pass_fds: &[],
        };
        let pid = match spawn(&spec) {
            Ok(s) => s.pid,
            Err(e) => {
                problems.push(format!("generator {path}: {e}"));
                continue;
            }
        };
        if let Some(p) = wait_bounded(pid, TIMEOUT, &path) {
            problems.push(p);
        }
    }
    problems
}

/// Waits for `pid`, killing it after `limit`; gives a problem when it did not exit 0.
fn wait_bounded(pid: i32, limit: Duration, what: &str) -> Option<String> {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
            return (!ok).then(|| format!("generator {what} failed (wait status {status})"));
        }
        if r < 0 {
            return None;
        }
        if start.elapsed() > limit {
            // SAFETY: kill and waitpid on our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Some(format!("generator {what} killed after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::tests_support::tempdir;
    use std::os::unix::fs::symlink;

    #[test]
    fn finds_package_generators_not_systemds_own() {
        let d = tempdir();
        let r = d.as_path();
        let file = |p: &str| {
            let p = r.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "#!/bin/sh\n").unwrap();
        };
        file("lib/systemd/system-generators/postgresql-generator");
        file("lib/systemd/system-generators/postfix-instance-generator");
        file("lib/systemd/system-generators/systemd-fstab-generator");
        file("lib/systemd/system-generators/hidden-generator");
        std::fs::create_dir_all(r.join("etc/systemd/system-generators")).unwrap();
        symlink(
            "/dev/null",
            r.join("etc/systemd/system-generators/hidden-generator"),
        )
        .unwrap();
        file("usr/local/lib/systemd/system-generators/postgresql-generator");
        assert_eq!(
            find(r),
            [
                "/lib/systemd/system-generators/postfix-instance-generator",
                "/usr/local/lib/systemd/system-generators/postgresql-generator",
            ]
        );
    }
}
