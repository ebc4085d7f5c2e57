//! Helpers of the runtime tests: a private runtime root per test, unique container names
//! (cgroups are machine-wide), and a guard that removes every container, mount and cgroup
//! the test made, even when it fails.

use super::{fixture, scratch};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A runtime root of its own; dropping it removes all it made.
pub struct Rt {
    pub dir: tempfile::TempDir,
    names: Vec<String>,
}

impl Rt {
    pub fn new() -> Rt {
        Rt {
            dir: scratch(),
            names: Vec::new(),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A container name no other test uses; removed when the Rt drops.
    pub fn name(&mut self, what: &str) -> String {
        let n = format!(
            "t{}-{}-{what}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        self.names.push(n.clone());
        n
    }

    pub fn rehost(&self, args: &[&str]) -> Output {
        super::rehost_cmd()
            .args(args)
            .env("REHOST_ROOT", self.root())
            .output()
            .expect("rehost runs")
    }

    /// `rehost ARGS` on a terminal of its own, under `script`, after the shell commands
    /// `setup` (e.g. `stty rows 40 cols 100;`). `exec`: rehost must be what has the
    /// terminal. dash (`script`'s shell when SHELL is unset or /bin/sh) otherwise stays
    /// as its parent, and a Ctrl-C kills it: 130.
    pub fn on_a_terminal(&self, setup: &str, args: &str) -> Command {
        let inner = format!("{setup} exec {} {args}", crate::common::rehost_bin());
        let mut c = Command::new("script");
        c.args(["-qec", &inner, "/dev/null"])
            .env("REHOST_ROOT", self.root());
        c
    }

    pub fn rehost_ok(&self, args: &[&str]) -> String {
        let out = self.rehost(args);
        assert!(
            out.status.success(),
            "rehost {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `rehost run -d --name NAME FLAGS… IMAGE CMD…`, which must succeed.
    pub fn run_detached(&self, name: &str, image: &Path, flags: &[&str], cmd: &[&str]) {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(flags);
        args.push(image.to_str().unwrap());
        args.extend_from_slice(cmd);
        self.rehost_ok(&args);
    }

    /// Waits (up to a generous bound, a hang guard and not a timing check) until `path`
    /// exists inside `name`: a mark its command leaves when it got somewhere.
    pub fn wait_for_file(&self, name: &str, path: &str) {
        let start = Instant::now();
        while self.exec(name, &["test", "-e", path]).1 != 0 {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{path} never appeared in {name}: {}",
                String::from_utf8_lossy(&self.rehost(&["logs", name]).stdout)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `rehost exec NAME CMD…`'s standard output and exit code.
    pub fn exec(&self, name: &str, cmd: &[&str]) -> (String, i32) {
        let mut args = vec!["exec", name];
        args.extend_from_slice(cmd);
        let out = self.rehost(&args);
        (
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            out.status.code().unwrap_or(-1),
        )
    }

    /// Waits (up to a generous bound, a hang guard and not a timing check) until
    /// systemd inside `name` is done booting; gives `is-system-running`'s answer.
    pub fn wait_booted(&self, name: &str) -> String {
        let start = Instant::now();
        loop {
            let (state, _) = self.exec(name, &["systemctl", "is-system-running"]);
            if !["starting", "initializing", "offline", ""].contains(&state.as_str())
                || start.elapsed() > Duration::from_secs(120)
            {
                return state;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Mount points under this root still mounted.
    pub fn mounts(&self) -> Vec<String> {
        let root = self.dir.path().to_string_lossy().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&root))
            .map(String::from)
            .collect()
    }

    /// Cgroup directories left for the containers of this test.
    pub fn cgroups(&self) -> Vec<PathBuf> {
        let mut left = Vec::new();
        for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            for n in &self.names {
                let p = h.path().join("rehost").join(n);
                if p.exists() {
                    left.push(p);
                }
            }
        }
        left
    }
}

impl Rt {
    /// Everything a container of this root may leave behind, named: mounts under the
    /// root, cgroups under /rehost in every hierarchy (v1 controllers, name=systemd,
    /// unified), engine state, and processes (the containers' own, found by their cgroup,
    /// and ours: engine, console pump, port forwarder, found by this root in their
    /// environment).
    pub fn leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> = self
            .mounts()
            .into_iter()
            .map(|m| format!("mount {m}"))
            .collect();
        left.extend(
            self.cgroups()
                .iter()
                .map(|c| format!("cgroup {}", c.display())),
        );
        if let Ok(rd) = std::fs::read_dir(self.root().join("engine")) {
            left.extend(
                rd.flatten()
                    .map(|e| format!("engine state {}", e.path().display())),
            );
        }
        let marker = format!("REHOST_ROOT={}", self.root().display());
        let me = std::process::id().to_string();
        for p in std::fs::read_dir("/proc").unwrap().flatten() {
            let pid = p.file_name().to_string_lossy().to_string();
            if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
                continue;
            }
            let cgroup = std::fs::read_to_string(p.path().join("cgroup")).unwrap_or_default();
            let environ = std::fs::read(p.path().join("environ")).unwrap_or_default();
            let ours = environ.split(|&b| b == 0).any(|v| v == marker.as_bytes());
            let contained = self
                .names
                .iter()
                .any(|n| cgroup.contains(&format!("/rehost/{n}")));
            let zombie = std::fs::read_to_string(p.path().join("stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, r)| r.trim_start().starts_with('Z'))
                })
                .unwrap_or(true);
            if (ours || contained) && !zombie {
                let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                left.push(format!("process {pid}: {cmd}"));
            }
        }
        left
    }

    /// Asserts nothing is left (see `leftovers`).
    pub fn assert_clean(&self, after: &str) {
        let left = self.leftovers();
        assert!(
            left.is_empty(),
            "after {after}, left behind:\n{}",
            left.join("\n")
        );
    }
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Drop for Rt {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = self.rehost(&["rm", "--force", n]);
        }
        for m in self.mounts().into_iter().rev() {
            let _ = Command::new("umount").args(["-l", &m]).status();
        }
    }
}

/// A fixture converted to an OCI layout in `dir`, in rehost mode (rehost-init supervises
/// the services; any other mode still boots it with `run --init`).
pub fn converted(fixture_name: &str, dir: &Path) -> PathBuf {
    converted_with(fixture_name, dir, &["--init", "rehost"])
}

/// A fixture converted to an OCI layout in `dir`, with more `convert` arguments.
pub fn converted_with(fixture_name: &str, dir: &Path, extra: &[&str]) -> PathBuf {
    let rootfs = fixture(fixture_name).join("rootfs");
    let image = dir.join(format!("{fixture_name}.oci"));
    let mut args = vec![
        "convert",
        rootfs.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
        "--compression",
        "zstd",
        "-q",
        "--force",
    ];
    args.extend_from_slice(extra);
    super::rehost_ok(&args);
    image
}

/// Listening TCP ports in a container, from its /proc/net/tcp and tcp6.
pub fn listening_ports(rt: &Rt, name: &str) -> Vec<u16> {
    let (text, _) = rt.exec(name, &["cat", "/proc/net/tcp", "/proc/net/tcp6"]);
    let mut ports: Vec<u16> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(3) == Some(&"0A"))
                .then(|| u16::from_str_radix(f[1].rsplit(':').next()?, 16).ok())
                .flatten()
        })
        .collect();
    ports.sort();
    ports.dedup();
    ports
}

/// Adds `tar` (uncompressed) as a new top layer of the only image in the layout `dir`.
pub fn add_layer(dir: &Path, tar: &[u8]) {
    use sha2::{Digest, Sha256};
    let sha = |b: &[u8]| format!("sha256:{}", hex::encode(Sha256::digest(b)));
    let blob = |d: &str| dir.join("blobs/sha256").join(&d[7..]);
    let put = |b: &[u8]| {
        let d = sha(b);
        std::fs::write(blob(&d), b).unwrap();
        (d, b.len())
    };
    let read = |d: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(blob(d)).unwrap()).unwrap()
    };
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let mut manifest = read(index["manifests"][0]["digest"].as_str().unwrap());
    let mut config = read(manifest["config"]["digest"].as_str().unwrap());
    let (layer, size) = put(tar);
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(layer.clone().into());
    let (cfg, csize) = put(config.to_string().as_bytes());
    manifest["config"]["digest"] = cfg.into();
    manifest["config"]["size"] = csize.into();
    manifest["layers"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": size}));
    let (man, msize) = put(manifest.to_string().as_bytes());
    index["manifests"][0]["digest"] = man.into();
    index["manifests"][0]["size"] = msize.into();
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
}
