//! A Docker daemon of a test's own (Debian's docker.io, with a containerd of its own):
//! its data, state and sockets in the test's scratch directory, no bridge and no
//! iptables rules, so nothing of the host's network or of another Docker is touched.
//!
//! With [`Cgroups::V2`] both daemons run in a private mount namespace whose
//! /sys/fs/cgroup is a cgroup2 mount only: Docker then works as on a cgroup v2 host
//! (private cgroup namespaces, the unified tree). The v1 controllers stay bound where the
//! host has them, so memory and pids limits cannot be checked that way.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The cgroup view the daemons get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cgroups {
    /// The host's own (hybrid here).
    Host,
    /// cgroup2 only, in a private mount namespace.
    V2,
}

/// A running dockerd (and its containerd), stopped when dropped.
pub struct Docker {
    child: Child,
    pub socket: PathBuf,
    pub dir: PathBuf,
    /// A directory whose `docker` is Debian's client, to put first in PATH: a newer
    /// client-only `docker` elsewhere in PATH may not talk to Docker 20.10.
    pub bin: PathBuf,
}

impl Docker {
    /// Starts containerd and dockerd in `dir`; `Err` says why they cannot run here.
    pub fn start(dir: &Path, cgroups: Cgroups) -> Result<Docker, String> {
        for tool in ["dockerd", "containerd", "/usr/bin/docker"] {
            if Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
            {
                return Err(format!(
                    "{tool} is not installed (scripts/install-deps installs docker.io)"
                ));
            }
        }
        let socket = dir.join("docker.sock");
        let v2 = if cgroups == Cgroups::V2 {
            "mount --make-rprivate / && umount -l /sys/fs/cgroup && \
             mount -t cgroup2 none /sys/fs/cgroup && "
        } else {
            ""
        };
        let d = dir.display();
        let script = format!(
            "{v2}containerd --root {d}/ctd-root --state {d}/ctd-state --address {d}/ctd.sock \
             >{d}/containerd.log 2>&1 & \
             for i in $(seq 100); do [ -S {d}/ctd.sock ] && break; sleep 0.1; done; \
             exec dockerd --containerd={d}/ctd.sock --iptables=false --ip-masq=false \
             --bridge=none --data-root {d}/data --exec-root {d}/exec -H unix://{d}/docker.sock \
             --pidfile {d}/docker.pid"
        );
        // Its own process group: dropping the daemon takes its containerd too.
        use std::os::unix::process::CommandExt;
        let child = Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("dockerd.log")).unwrap())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("unshare: {e}"))?;
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink("/usr/bin/docker", bin.join("docker")).unwrap();
        let mut docker = Docker {
            child,
            socket,
            dir: dir.to_path_buf(),
            bin,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if docker.try_docker(&["version"]).is_ok() {
                return Ok(docker);
            }
            if let Ok(Some(status)) = docker.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default();
                return Err(format!("dockerd exited ({status}): {log}"));
            }
            if Instant::now() > deadline {
                return Err("dockerd did not answer in 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The environment a `docker` command line needs to reach this daemon.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        let path = std::env::var("PATH").unwrap_or_default();
        c.env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.dir.join("config"))
            .env("PATH", format!("{}:{path}", self.bin.display()));
        c
    }

    pub fn try_docker(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .command("/usr/bin/docker")
            .args(args)
            .output()
            .map_err(|e| format!("docker: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "docker {args:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ))
        }
    }

    /// `docker ARGS` against this daemon; insists it succeeds.
    pub fn docker(&self, args: &[&str]) -> String {
        self.try_docker(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs a shell line (what `rehost deploy` printed) with this daemon's environment.
    pub fn sh(&self, line: &str) -> String {
        let out = self.command("sh").args(["-c", line]).output().unwrap();
        assert!(
            out.status.success(),
            "{line}\nfailed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let ids = self.try_docker(&["ps", "-aq"]).unwrap_or_default();
        for id in ids.split_whitespace() {
            let _ = self.try_docker(&["rm", "-f", id]);
        }
        // dockerd first (it stops its containers), then the rest of the group.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ = Command::new("kill")
            .args(["-9", "--", &format!("-{}", self.child.id())])
            .status();
        // The parent cgroup Docker makes for its containers, once it is empty.
        super::remove_empty_cgroups("docker");
        // containerd's mounts under the scratch directory, if any were left.
        let _ = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "grep -o ' {}/[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
                    self.dir.display()
                ),
            ])
            .status();
    }
}
