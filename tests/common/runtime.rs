//! Helpers of the runtime tests: a private runtime root per test, unique container names
//! (cgroups are machine-wide), and a guard that removes every container, mount and cgroup
//! the test made, even when it fails. `Rt::cgroup2` runs every command in a mount
//! namespace that shows only cgroup v2, as a v2-only host does.

use super::{fixture, scratch};
use std::io::BufRead;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A runtime root of its own; dropping it removes all it made.
pub struct Rt {
    pub dir: tempfile::TempDir,
    names: Vec<String>,
    view: Option<Cgroup2View>,
}

/// A mount namespace whose /sys/fs/cgroup is one cgroup2 mount of the whole hierarchy,
/// and nothing else: what a host with cgroup v2 alone shows. On a hybrid host the v1
/// hierarchies stay bound to their controllers (memory, pids, cpu…), mounted or not, so
/// those controllers are not available there. A process of ours holds the namespace
/// (`cat` on a pipe: it ends with the test, however the test ends).
struct Cgroup2View {
    holder: Child,
    ns: std::fs::File,
}

impl Cgroup2View {
    fn new() -> Cgroup2View {
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                "umount -l /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup \
                 && echo ready && exec cat",
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare runs");
        let mut line = String::new();
        let _ = std::io::BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line);
        assert_eq!(
            line.trim(),
            "ready",
            "no mount namespace with cgroup2 alone at /sys/fs/cgroup"
        );
        let ns = std::fs::File::open(format!("/proc/{}/ns/mnt", holder.id())).unwrap();
        Cgroup2View { holder, ns }
    }
}

impl Drop for Cgroup2View {
    fn drop(&mut self) {
        drop(self.holder.stdin.take());
        let _ = self.holder.wait();
    }
}

impl Rt {
    pub fn new() -> Rt {
        Rt {
            dir: scratch(),
            names: Vec::new(),
            view: None,
        }
    }

    /// A runtime root whose commands (`rehost`, and the clean-up's `umount`) all run in
    /// one mount namespace where /sys/fs/cgroup shows cgroup v2 alone.
    pub fn cgroup2() -> Rt {
        Rt {
            dir: scratch(),
            names: Vec::new(),
            view: Some(Cgroup2View::new()),
        }
    }

    /// `program`, in this root's mount namespace (see [`Rt::cgroup2`]) if it has one.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        if let Some(view) = &self.view {
            let ns = view.ns.as_raw_fd();
            let cwd = std::ffi::CString::new(
                std::env::current_dir()
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            )
            .unwrap();
            // SAFETY: only async-signal-safe calls between fork and exec. Entering a mount
            // namespace moves to its root: back to our directory, which both show.
            unsafe {
                c.pre_exec(move || {
                    if libc::setns(ns, libc::CLONE_NEWNS) != 0 || libc::chdir(cwd.as_ptr()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        c
    }

    /// The cgroup v2 hierarchy as the host mounts it (hybrid: /sys/fs/cgroup/unified;
    /// v2 alone: /sys/fs/cgroup), seen from the test.
    pub fn host_cgroup2() -> PathBuf {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .find(|l| {
                l.split_once(" - ")
                    .is_some_and(|(_, t)| t.starts_with("cgroup2 "))
            })
            .and_then(|l| l.split(' ').nth(4))
            .map(PathBuf::from)
            .expect("the host mounts the cgroup v2 hierarchy")
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
        self.command(super::rehost_bin())
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
        let mut c = self.command("script");
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

    /// Mount points under this root still mounted (in this root's mount namespace).
    pub fn mounts(&self) -> Vec<String> {
        let root = self.dir.path().to_string_lossy().to_string();
        let mountinfo = match &self.view {
            Some(v) => format!("/proc/{}/mountinfo", v.holder.id()),
            None => "/proc/self/mountinfo".into(),
        };
        std::fs::read_to_string(mountinfo)
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&root))
            .map(String::from)
            .collect()
    }

    /// Cgroup directories left for the containers of this test, in every hierarchy the
    /// host mounts (v1, unified, or the v2 root of a v2-only host).
    pub fn cgroups(&self) -> Vec<PathBuf> {
        let mut left = Vec::new();
        let hierarchies = std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten();
        for h in
            std::iter::once(PathBuf::from("/sys/fs/cgroup")).chain(hierarchies.map(|h| h.path()))
        {
            for n in &self.names {
                let p = h.join("rehost").join(n);
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
            let _ = self.command("umount").args(["-l", &m]).status();
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
