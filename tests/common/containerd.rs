//! A containerd of a test's own: its root, state and socket in the test's scratch
//! directory, so nothing of the host's containerd (if any) is read or changed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running containerd, stopped when dropped.
pub struct Containerd {
    child: Child,
    socket: PathBuf,
}

impl Containerd {
    /// Starts containerd in `dir`; `Err` says why it cannot run here.
    pub fn start(dir: &Path) -> Result<Containerd, String> {
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
                 [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n\
                 [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                sock = socket.display(),
            ),
        )
        .unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("containerd.log")).unwrap())
            .spawn()
            .map_err(|e| format!("containerd: {e} (scripts/install-deps installs it)"))?;
        let mut containerd = Containerd { child, socket };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if containerd.try_ctr(&["version"]).is_ok() {
                return Ok(containerd);
            }
            if let Ok(Some(status)) = containerd.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default();
                return Err(format!("containerd exited ({status}): {log}"));
            }
            if Instant::now() > deadline {
                return Err("containerd did not answer in 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `program` with the environment by which `ctr` reaches this containerd, in the
    /// tests' namespace (to run a command line `rehost deploy` printed).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("CONTAINERD_ADDRESS", &self.socket)
            .env("CONTAINERD_NAMESPACE", "rehost-test");
        c
    }

    pub fn try_ctr(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "rehost-test"])
            .args(args)
            .output()
            .map_err(|e| format!("ctr: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "ctr {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Runs `ctr ARGS` against this containerd, in a namespace of the tests; insists it
    /// succeeds.
    pub fn ctr(&self, args: &[&str]) -> String {
        self.try_ctr(args).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        super::remove_empty_cgroups("rehost-test");
    }
}
