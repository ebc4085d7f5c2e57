//! Helpers for the rehost-init end-to-end tests: build the static init, convert a fixture,
//! unpack it with umoci, and boot it under rehost-init in fresh namespaces (no container
//! runtime: `unshare` + `chroot`, `lo` up), then look inside with `nsenter`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A directory removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("rehost-init-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The static rehost-init, built by scripts/build-init (a no-op when up to date).
pub fn init_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = run_ok(&mut Command::new(repo().join("scripts/build-init")));
            PathBuf::from(out.trim())
        })
        .clone()
}

/// The cached fixture root filesystem.
pub use crate::common::fixture_rootfs as fixture;

/// A writable copy of a fixture's root filesystem, to add test services to.
pub fn copy_tree(from: &Path, to: &Path) {
    run_ok(Command::new("cp").arg("-a").arg(from).arg(to));
}

pub fn write(root: &Path, path: &str, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `rehost convert SOURCE -o IMAGE ARGS…` then `umoci unpack`; returns the rootfs.
pub fn convert_and_unpack(source: &Path, work: &Path, args: &[&str]) -> PathBuf {
    let image = work.join("image");
    let mut cmd = crate::common::rehost_cmd();
    cmd.arg("convert")
        .arg(source)
        .arg("-o")
        .arg(&image)
        .arg("--tag")
        .arg("t")
        .args(args)
        .env("REHOST_INIT", init_binary())
        .env("SOURCE_DATE_EPOCH", "1700000000");
    run_ok(&mut cmd);
    let bundle = work.join("bundle");
    run_ok(
        Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:t", image.display()))
            .arg(&bundle),
    );
    bundle.join("rootfs")
}

/// A container: rehost-init as pid 1 of fresh pid, mount, uts, ipc and net namespaces,
/// chrooted into `rootfs`, with /proc, /run, /tmp, /dev and `lo`.
pub struct Booted {
    child: Child,
    pub rootfs: PathBuf,
    pub log: PathBuf,
    status: Option<i32>,
    /// Whether it runs in its own user namespace (commands enter it too).
    userns: bool,
}

pub fn boot(rootfs: &Path, work: &Path) -> Booted {
    boot_with(rootfs, work, None)
}

/// The host ids a user namespace maps the container's 0..65536 to.
pub const USERNS_BASE: u32 = 200_000;

/// Like [`boot`], inside a user namespace that maps the container's root to host uid and
/// gid [`USERNS_BASE`], as an unprivileged runtime (rootless podman, Kubernetes user
/// namespaces) runs it. The rootfs must be owned by the shifted ids ([`shift_ids`]).
pub fn boot_in_user_namespace(rootfs: &Path, work: &Path) -> Booted {
    boot_with(rootfs, work, Some(USERNS_BASE))
}

fn boot_with(rootfs: &Path, work: &Path, userns: Option<u32>) -> Booted {
    let log = work.join("console.log");
    let out = std::fs::File::create(&log).unwrap();
    let r = rootfs.display();
    let script = format!(
        "set -e; ip link set lo up; mount -t proc proc {r}/proc; mount -t tmpfs tmpfs {r}/run; \
         mount -t tmpfs tmpfs {r}/tmp; mount --rbind /dev {r}/dev; exec chroot {r} /usr/sbin/rehost-init"
    );
    let mut cmd = Command::new("unshare");
    // In a user namespace the maps are written from outside, as a runtime does: the child
    // makes the namespace, waits for its maps, and becomes the namespace's root (host id
    // `base`) before it execs, so it keeps its capabilities there.
    let mut sync = None;
    if userns.is_some() {
        let (mut made, mut mapped) = ([0i32; 2], [0i32; 2]);
        // SAFETY: plain pipe(2) calls on local arrays.
        unsafe {
            assert_eq!(libc::pipe(made.as_mut_ptr()), 0);
            assert_eq!(libc::pipe(mapped.as_mut_ptr()), 0);
        }
        sync = Some((made, mapped));
        // SAFETY: only async-signal-safe system calls between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Our pid: spawn() returns only after exec, so the maps are written by a
                // thread that learns the pid from here.
                let pid = libc::getpid().to_ne_bytes();
                libc::write(made[1], pid.as_ptr().cast(), pid.len());
                let mut b = 0u8;
                libc::read(mapped[0], (&mut b as *mut u8).cast(), 1);
                if libc::setresgid(0, 0, 0) != 0
                    || libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setresuid(0, 0, 0) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    if let (Some(base), Some((made, mapped))) = (userns, sync) {
        std::thread::spawn(move || {
            let mut pid = [0u8; 4];
            // SAFETY: reads and writes on the pipes made above, closed once done.
            let n = unsafe { libc::read(made[0], pid.as_mut_ptr().cast(), 4) };
            if n == 4 {
                let pid = i32::from_ne_bytes(pid);
                for map in ["uid_map", "gid_map"] {
                    let path = format!("/proc/{pid}/{map}");
                    if let Err(e) = std::fs::write(&path, format!("0 {base} 65536\n")) {
                        eprintln!("{path}: {e}");
                    }
                }
            }
            unsafe {
                libc::write(mapped[1], b"m".as_ptr().cast(), 1);
                for fd in made.into_iter().chain(mapped) {
                    libc::close(fd);
                }
            }
        });
    }
    let child = cmd
        .args([
            "--pid",
            "--fork",
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("unshare");
    Booted {
        child,
        rootfs: rootfs.to_path_buf(),
        log,
        status: None,
        userns: userns.is_some(),
    }
}

/// Shifts every owner in `root` by `base` (0 becomes `base`), keeping modes (a chown
/// clears set-id bits) — what a runtime's id-mapped rootfs gives a user namespace.
pub fn shift_ids(root: &Path, base: u32) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        std::os::unix::fs::lchown(&p, Some(m.uid() + base), Some(m.gid() + base)).unwrap();
        if !m.file_type().is_symlink() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m.mode() & 0o7777))
                .unwrap();
        }
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
}

impl Booted {
    /// The host pid of rehost-init (pid 1 inside).
    pub fn init_pid(&self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let p = self.child.id();
            if let Ok(c) = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")) {
                if let Some(pid) = c.split_whitespace().next().and_then(|s| s.parse().ok()) {
                    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
                    if exe.to_string_lossy().ends_with("rehost-init") {
                        return pid;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "rehost-init did not start:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs a command inside the container (its namespaces and root).
    pub fn exec(&self, args: &[&str]) -> std::process::Output {
        let pid = self.init_pid().to_string();
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &pid]);
        if self.userns {
            cmd.arg("-U");
        }
        cmd.args(["-p", "-m", "-n", "-u", "-i", "-r", "-w", "--"])
            .args(args)
            .output()
            .unwrap()
    }

    /// Polls `rehost-init status` until it succeeds; returns its output.
    pub fn wait_healthy(&self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let out = self.exec(&["/usr/sbin/rehost-init", "status"]);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "never healthy: {}\n{}\nconsole:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.console()
            );
            if let Some(code) = self.exited() {
                panic!("the container ended with {code}:\n{}", self.console());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The TCP ports listening inside.
    pub fn listening(&self) -> Vec<u16> {
        let pid = self.init_pid().to_string();
        let out = run_ok(Command::new("nsenter").args(["-t", &pid, "-n", "ss", "-Hltn"]));
        let mut ports: Vec<u16> = out
            .lines()
            .filter_map(|l| {
                l.split_whitespace()
                    .nth(3)?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        ports.sort();
        ports.dedup();
        ports
    }

    /// Zombie processes left under rehost-init.
    pub fn zombies(&self) -> Vec<String> {
        let init = self.init_pid();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.first() == Some(&"Z") && f.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(init)
            {
                out.push(stat.clone());
            }
        }
        out
    }

    pub fn signal(&self, sig: i32) {
        unsafe_kill(self.init_pid(), sig);
    }

    /// The exit code, if the container has ended.
    pub fn exited(&self) -> Option<i32> {
        self.status
    }

    /// Waits for the end (at most `within`); returns the exit code.
    pub fn wait(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                let code = s.code().unwrap_or(-1);
                self.status = Some(code);
                return code;
            }
            assert!(
                Instant::now() < deadline,
                "the container did not end in {within:?}:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // Ending pid 1 of the namespace ends everything in it.
            if let Ok(c) =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.child.id()))
            {
                for p in c.split_whitespace().filter_map(|s| s.parse().ok()) {
                    unsafe_kill(p, 9);
                }
            }
            let _ = self.child.wait();
        }
    }
}

fn unsafe_kill(pid: i32, sig: i32) {
    run_ok(
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string()),
    );
}

pub fn is_root() -> bool {
    run_ok(Command::new("id").arg("-u")).trim() == "0"
}
