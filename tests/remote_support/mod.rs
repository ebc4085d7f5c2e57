//! Real SSH servers for the ssh:// tests: the `sshd` of a real fixture, run in a copy of
//! that fixture's root (chroot), inside a network namespace the test makes. The client
//! (`rehost`) runs in a second namespace joined to the first by a veth pair; the two
//! private addresses exist only inside those namespaces, so nothing else is ever a
//! target. The client's ssh reads only the test's own configuration, keys and
//! known_hosts (a wrapper `ssh` first on PATH passes `-F`).

#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command that must succeed; gives its standard output.
pub use crate::common::run as sh;

/// A fixture's root filesystem: `debian-sysvinit` (bookworm) or `debian-bullseye`.
pub fn fixture_root(name: &str) -> PathBuf {
    let script = match name {
        "debian-bullseye" => repo().join("fixtures/build-bullseye"),
        _ => repo().join("fixtures/build-debian"),
    };
    let args: &[&str] = if name == "debian-bullseye" {
        &[]
    } else {
        &[name]
    };
    PathBuf::from(sh(script.to_str().unwrap(), args).trim()).join("rootfs")
}

/// The static rehost (scripts/build-static), the one a user copies to a server.
pub fn static_rehost() -> PathBuf {
    static_binary("rehost")
}

/// The static helper (scripts/build-static), which the ssh:// runs send to the server.
pub fn static_helper() -> PathBuf {
    static_binary("rehost-helper")
}

fn static_binary(name: &str) -> PathBuf {
    let path = repo().join("target/static").join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it with scripts/build-static",
        path.display()
    );
    path
}

static NEXT: AtomicU32 = AtomicU32::new(1);

/// A copy of a fixture's root, with what a server needs to be reached: a host key,
/// authorized keys for root and three users (when the fixture has sudo: `tester`, with
/// passwordless sudo; `asker`, whose sudo wants a password; `ttyer`, whose passwordless
/// sudo wants a terminal and whose home is /tmp).
pub struct Prepared {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub client: PathBuf,
    pub address: String,
    number: u32,
}

pub struct Server {
    pub prepared: Prepared,
    sshd: Child,
    mounts: Vec<PathBuf>,
    netns: [String; 2],
}

impl Prepared {
    pub fn new(fixture: &str) -> Prepared {
        let number = NEXT.fetch_add(1, Ordering::SeqCst);
        let source = fixture_root(fixture);
        let dir = tempfile::Builder::new()
            .prefix("rehost-remote-")
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        sh(
            "cp",
            &["-a", source.to_str().unwrap(), root.to_str().unwrap()],
        );
        let client = dir.path().join("client");
        std::fs::create_dir_all(client.join("bin")).unwrap();
        // Private addresses, different for each server of this run.
        let address = format!("10.{}.{}.2", 200 + std::process::id() % 50, number);

        let r = |p: &str| root.join(p);
        let keygen = |path: &Path| {
            sh(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-f",
                    path.to_str().unwrap(),
                ],
            )
        };
        keygen(&r("etc/ssh/test_host_key"));
        keygen(&client.join("id"));
        keygen(&client.join("other"));
        // A key for an agent to hold (see [`Agent`]).
        keygen(&client.join("agent"));
        std::fs::create_dir_all(r("etc/ssh/authorized")).unwrap();
        std::fs::create_dir_all(r("run/sshd")).unwrap();
        let key = std::fs::read_to_string(client.join("id.pub")).unwrap()
            + &std::fs::read_to_string(client.join("agent.pub")).unwrap();
        for user in ["root", "tester", "asker", "ttyer"] {
            std::fs::write(r(&format!("etc/ssh/authorized/{user}")), &key).unwrap();
        }
        std::fs::write(
            r("etc/ssh/sshd_test_config"),
            format!(
                "ListenAddress {address}\nListenAddress 127.0.0.1\nHostKey /etc/ssh/test_host_key\n\
                 PermitRootLogin prohibit-password\nAuthorizedKeysFile /etc/ssh/authorized/%u\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\n"
            ),
        )
        .unwrap();
        // Two users; `*` (no password, not locked) so sshd lets keys in without PAM.
        let append = |file: &str, text: &str| {
            let mut body = std::fs::read_to_string(r(file)).unwrap();
            body.push_str(text);
            std::fs::write(r(file), body).unwrap();
        };
        append(
            "etc/passwd",
            "tester:x:1000:1000::/home/tester:/bin/sh\nasker:x:1001:1001::/home/asker:/bin/sh\n\
             ttyer:x:1002:1002::/tmp:/bin/sh\n",
        );
        append(
            "etc/shadow",
            "tester:*:19000:0:99999:7:::\nasker:*:19000:0:99999:7:::\nttyer:*:19000:0:99999:7:::\n",
        );
        append(
            "etc/group",
            "tester:x:1000:\nasker:x:1001:\nttyer:x:1002:\n",
        );
        for (user, uid) in [("tester", 1000), ("asker", 1001)] {
            let home = r(&format!("home/{user}"));
            std::fs::create_dir_all(&home).unwrap();
            std::os::unix::fs::chown(&home, Some(uid), Some(uid)).unwrap();
        }
        if r("etc/sudoers.d").is_dir() {
            let rules = r("etc/sudoers.d/rehost-test");
            std::fs::write(
                &rules,
                "tester ALL=(ALL) NOPASSWD: ALL\nasker ALL=(ALL) ALL\n\
                 ttyer ALL=(ALL) NOPASSWD: ALL\nDefaults:ttyer requiretty\n",
            )
            .unwrap();
            std::fs::set_permissions(&rules, std::fs::Permissions::from_mode(0o440)).unwrap();
        }

        // The client: its own key, known_hosts and configuration, nothing of the user's.
        let host_key = std::fs::read_to_string(r("etc/ssh/test_host_key.pub")).unwrap();
        let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        std::fs::write(
            client.join("known_hosts"),
            // Its loopback too, where a jump host reaches it.
            format!("{address},127.0.0.1 {}\n", host_key.join(" ")),
        )
        .unwrap();
        std::fs::write(client.join("no_known_hosts"), "").unwrap();
        for (name, identity, known) in [
            ("config", "id", "known_hosts"),
            ("config-unknown-host", "id", "no_known_hosts"),
            ("config-refused-key", "other", "known_hosts"),
        ] {
            std::fs::write(
                client.join(name),
                format!(
                    "Host *\n  IdentityFile {c}/{identity}\n  IdentitiesOnly yes\n  \
                     UserKnownHostsFile {c}/{known}\n  GlobalKnownHostsFile /dev/null\n  \
                     StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 10\n  \
                     LogLevel ERROR\n",
                    c = client.display()
                ),
            )
            .unwrap();
        }
        let wrapper = client.join("bin/ssh");
        std::fs::write(
            &wrapper,
            "#!/bin/sh\nexec /usr/bin/ssh -F \"$REHOST_TEST_SSH_CONFIG\" \"$@\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        Prepared {
            dir,
            root,
            client,
            address,
            number,
        }
    }

    /// Starts the fixture's sshd in its root, in a new network namespace; with
    /// `noexec_tmp`, the server's /tmp is a noexec tmpfs.
    pub fn start(self, noexec_tmp: bool) -> Server {
        let tag = format!("rh{}x{}", std::process::id() % 100_000, self.number);
        let netns = [format!("{tag}s"), format!("{tag}c")];
        let mut server = Server {
            sshd: Command::new("true").spawn().unwrap(),
            prepared: self,
            mounts: Vec::new(),
            netns: netns.clone(),
        };
        let _ = server.sshd.wait();
        let client_address = match server.prepared.address.rsplit_once('.') {
            Some((net, _)) => format!("{net}.1"),
            None => unreachable!("an IPv4 address"),
        };
        for ns in &netns {
            sh("ip", &["netns", "add", ns]);
        }
        sh(
            "ip",
            &[
                "link",
                "add",
                &format!("{tag}a"),
                "netns",
                &netns[0],
                "type",
                "veth",
                "peer",
                "name",
                &format!("{tag}b"),
                "netns",
                &netns[1],
            ],
        );
        for (ns, dev, addr) in [
            (
                &netns[0],
                format!("{tag}a"),
                server.prepared.address.clone(),
            ),
            (&netns[1], format!("{tag}b"), client_address),
        ] {
            sh(
                "ip",
                &["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", &dev],
            );
            sh("ip", &["-n", ns, "link", "set", &dev, "up"]);
            sh("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        let root = server.prepared.root.clone();
        let mut mount = |fstype: &str, options: &str, dir: PathBuf| {
            let target = dir.to_str().unwrap();
            sh("mount", &["-t", fstype, "-o", options, fstype, target]);
            server.mounts.push(dir);
        };
        // The live socket table (ports) and sudo read /proc.
        mount("proc", "defaults", root.join("proc"));
        // Terminals, for a session that asks for one (`ssh -tt`): a devpts of its own.
        let terminals = "newinstance,ptmxmode=0666,mode=620";
        mount("devpts", terminals, root.join("dev/pts"));
        if noexec_tmp {
            mount("tmpfs", "noexec,mode=1777", root.join("tmp"));
        }
        let mut sshd = Command::new("ip")
            .args(["netns", "exec", &netns[0], "chroot", root.to_str().unwrap()])
            .args([
                "/usr/sbin/sshd",
                "-D",
                "-e",
                "-f",
                "/etc/ssh/sshd_test_config",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sshd");
        let mut lines = BufReader::new(sshd.stderr.take().unwrap()).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("Server listening") => break,
                Some(Ok(_)) => continue,
                _ => panic!("sshd did not start: {:?}", sshd.try_wait()),
            }
        }
        // Keep draining its messages so it never blocks on them.
        std::thread::spawn(move || for _ in lines {});
        server.sshd = sshd;
        server
    }
}

impl Server {
    pub fn root(&self) -> &Path {
        &self.prepared.root
    }

    /// The client's network namespace (`ip netns` name): where `rehost` runs.
    #[allow(dead_code)] // tests/fleet.rs only
    pub fn client_netns(&self) -> &str {
        &self.netns[1]
    }

    pub fn url(&self, user: &str, path: &str) -> String {
        format!("ssh://{user}@{}{path}", self.prepared.address)
    }

    /// Runs the dynamic `rehost` (the one under test) in the client's namespace with one of
    /// the client configurations; it sends the static one to the server.
    pub fn rehost(&self, config: &str, args: &[&str]) -> Output {
        self.rehost_command(config, args)
            .output()
            .expect("run rehost")
    }

    /// The client's own `ssh` running `command` on the server as `user`.
    #[allow(dead_code)] // tests/remote.rs only
    pub fn ssh(&self, user: &str, command: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.netns[1]])
            .arg("env")
            .arg("-u")
            .arg("SSH_AUTH_SOCK")
            .arg(format!(
                "REHOST_TEST_SSH_CONFIG={}",
                self.prepared.client.join("config").display()
            ))
            .arg(self.prepared.client.join("bin/ssh"))
            .arg(format!("{user}@{}", self.prepared.address))
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh")
    }

    /// `rehost` sending `helper` instead of the static helper (a hostile server's).
    #[allow(dead_code)] // tests/remote.rs only
    pub fn rehost_sending(&self, helper: &Path, config: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns[1]]);
        self.client_env_sending(cmd, helper, config, args)
            .output()
            .expect("run rehost")
    }

    /// The command `rehost` above runs (`ip netns exec` and `env` exec it: its pid is
    /// rehost's).
    pub fn rehost_command(&self, config: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns[1]]);
        self.client_env(cmd, config, args)
    }

    /// The same in the client's network namespace only: `ip netns exec` also gives its
    /// command a mount namespace with a new /sys, where the cgroup filesystems are gone,
    /// and `rehost verify` needs them.
    #[allow(dead_code)] // tests/fleet.rs only
    pub fn rehost_command_with_host_mounts(&self, config: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/var/run/netns/{}", self.netns[1]));
        self.client_env(cmd, config, args)
    }

    fn client_env(&self, cmd: Command, config: &str, args: &[&str]) -> Command {
        self.client_env_sending(cmd, &static_helper(), config, args)
    }

    fn client_env_sending(
        &self,
        mut cmd: Command,
        helper: &Path,
        config: &str,
        args: &[&str],
    ) -> Command {
        let path = format!(
            "{}:{}",
            self.prepared.client.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.arg("env")
            .arg("-u")
            .arg("SSH_AUTH_SOCK")
            .arg(format!("PATH={path}"))
            .arg(format!(
                "REHOST_TEST_SSH_CONFIG={}",
                self.prepared.client.join(config).display()
            ))
            .arg(format!("REHOST_HELPER={}", helper.display()))
            // The chunks a cut run keeps, this server's own.
            .arg(format!("XDG_CACHE_HOME={}", self.cache().display()))
            // Its session directories too: a run sweeps the dead ones it finds, and a
            // test that looks at a killed run's directory must not race another test.
            .arg(format!("TMPDIR={}", self.tmp().display()))
            .arg(env!("CARGO_BIN_EXE_rehost"))
            .args(args);
        cmd
    }

    /// The client's temporary directory, where its runs keep their session directories.
    pub fn tmp(&self) -> PathBuf {
        let tmp = self.prepared.dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).expect("create the client's TMPDIR");
        tmp
    }

    /// The client's cache directory, where a cut capture keeps its chunks.
    pub fn cache(&self) -> PathBuf {
        self.prepared.dir.path().join("cache")
    }

    /// Bytes of the chunks kept to resume (not those still arriving).
    pub fn kept_bytes(&self) -> u64 {
        let mut total = 0;
        let Ok(servers) = std::fs::read_dir(self.cache().join("rehost/resume")) else {
            return 0;
        };
        for dir in servers.flatten() {
            for chunk in std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if chunk.file_name().to_string_lossy().ends_with(".zst") {
                    total += chunk.metadata().map(|m| m.len()).unwrap_or(0);
                }
            }
        }
        total
    }

    /// Processes running in the server's root, other than the listening sshd.
    pub fn processes(&self) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(pid) = name.parse::<u32>() else {
                continue;
            };
            // The listener: `ip netns exec` execs chroot, which execs sshd, in one pid.
            if pid == self.sshd.id() {
                continue;
            }
            let Ok(root) = std::fs::read_link(entry.path().join("root")) else {
                continue;
            };
            if root == self.prepared.root {
                let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                found.push(format!("{pid} {cmd}"));
            }
        }
        found
    }

    /// What rehost left on the server: files under /tmp and processes, after giving the
    /// server a few seconds to see the connection close.
    pub fn leftovers(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut left = self.processes();
            for entry in std::fs::read_dir(self.root().join("tmp"))
                .unwrap()
                .flatten()
            {
                left.push(format!("file {}", entry.path().display()));
            }
            for home in ["root", "home/tester", "home/asker"] {
                if let Ok(dir) = std::fs::read_dir(self.root().join(home)) {
                    for entry in dir.flatten() {
                        let name = entry.file_name().to_string_lossy().into_owned();
                        if name.contains("rehost") {
                            left.push(format!("file {}", entry.path().display()));
                        }
                    }
                }
            }
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether a process in the server's root has a file open whose path ends so.
    pub fn has_open(&self, suffix: &str) -> bool {
        self.processes().iter().any(|p| {
            let pid = p.split(' ').next().unwrap_or_default();
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|t| t.to_string_lossy().ends_with(suffix))
                })
        })
    }

    pub fn assert_nothing_left(&self, after: &str) {
        let left = self.leftovers();
        assert!(
            left.is_empty(),
            "after {after}, left on the server: {left:?}"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
        // Whatever still runs in the root (a failed test's sessions) goes too.
        for p in self.processes() {
            if let Some(pid) = p.split(' ').next().and_then(|p| p.parse::<i32>().ok()) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        for ns in &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// An `ssh-agent` of the operator's, the only holder of a key: its file is removed
/// once the agent has it. Dropping it stops the agent.
pub struct Agent {
    child: Child,
}

impl Agent {
    pub fn holding(key: &Path, socket: &Path) -> Agent {
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent");
        let agent = Agent { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent made no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        sh(
            "env",
            &[
                &format!("SSH_AUTH_SOCK={}", socket.display()),
                "ssh-add",
                "-q",
                key.to_str().unwrap(),
            ],
        );
        std::fs::remove_file(key).unwrap();
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The children of a process whose command line holds `needle`.
pub fn children_with(parent: u32, needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid …: the command may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if ppid == Some(parent)
            && String::from_utf8_lossy(&cmd)
                .replace('\0', " ")
                .contains(needle)
        {
            found.push(pid);
        }
    }
    found
}

/// The first layer of an image converted with `--compression none`, as a listing: per
/// entry its type, mode, owner, size, time, link, PAX records (xattrs, sparse map names)
/// and a hash of its data.
pub fn layer_listing(image: &Path) -> BTreeMap<String, String> {
    let blob = |digest: &str| {
        image
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let json = |path: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let index = json(image.join("index.json"));
    let manifest = json(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    // The server's tree: the first layer of a one-layer image, or every layer but
    // rehost's of one cut by package, an upper layer's entry replacing a lower one's.
    let layers = manifest["layers"].as_array().unwrap();
    let annotated = layers
        .iter()
        .any(|l| l["annotations"]["io.rehost.layer"].is_string());
    let tree: Vec<&serde_json::Value> = if annotated {
        layers
            .iter()
            .filter(|l| l["annotations"]["io.rehost.layer"] != "rehost")
            .collect()
    } else {
        vec![&layers[0]]
    };
    let mut out = BTreeMap::new();
    for layer in tree {
        let layer = blob(layer["digest"].as_str().unwrap());
        let mut archive = tar::Archive::new(std::fs::File::open(layer).unwrap());
        list_layer(&mut archive, &mut out);
    }
    out
}

fn list_layer(archive: &mut tar::Archive<std::fs::File>, out: &mut BTreeMap<String, String>) {
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut pax: Vec<String> = entry
            .pax_extensions()
            .unwrap()
            .into_iter()
            .flatten()
            .map(|ext| {
                let ext = ext.unwrap();
                format!(
                    "{}={}",
                    String::from_utf8_lossy(ext.key_bytes()),
                    hex::encode(ext.value_bytes())
                )
            })
            .collect();
        pax.sort();
        let h = entry.header().clone();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.insert(
            path,
            format!(
                "{:?} {:o} {}:{} {} {} {link} {} {}",
                h.entry_type(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.size().unwrap(),
                h.mtime().unwrap(),
                pax.join(","),
                hex::encode(Sha256::digest(&data)),
            ),
        );
    }
}

/// Where two listings differ, for a message.
pub fn differences(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            Some(w) if w == v => {}
            Some(w) => out.push(format!("{k}: {v} / {w}")),
            None => out.push(format!("{k}: only in the first")),
        }
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        out.push(format!("{k}: only in the second"));
    }
    out
}
