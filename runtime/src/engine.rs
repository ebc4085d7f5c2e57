//! The engines that run a bundle, behind one interface ([`Engine`]): the embedded one
//! (youki's `libcontainer` inside rehost, see `embedded.rs`; the default, nothing to
//! install) or an external OCI runtime (`runc` or any program with its command line),
//! handed the same bundle, which shows our bundles are standard.
//!
//! Both are driven through the same runc-like command line ([`OciRuntime`]): the embedded
//! engine is rehost re-executing itself as `rehost __engine`, because libcontainer changes
//! process-wide state and must not run in the command's own process. Only reading the
//! embedded engine's state (and the signal to pid 1) happen in the caller, as they change
//! nothing. scripts/bench-runtime compares the two on one bundle: a `/bin/true` container
//! takes a median 10.5 ms embedded against 21.9 ms for `runc run` here, most of the
//! difference being the RCU grace period runc waits for when it moves a process into its
//! cgroups (see `embedded/cgroups.rs`).

use crate::error::{Error, Result};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// The container log opened for appending, as stdout and stderr of the engine.
fn log_streams(log: &Path) -> Result<(File, File)> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Error::io(log, e))?;
    let err = out.try_clone().map_err(|e| Error::io(log, e))?;
    Ok((out, err))
}

/// An external OCI runtime with its own state directory.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    pub program: PathBuf,
    /// Arguments before runc's own (the embedded engine's hidden subcommand).
    pub prefix: Vec<String>,
    pub state_root: PathBuf,
    /// What errors and `ps` call it.
    pub label: String,
}

/// What the runtime says of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineState {
    /// creating, created, running, paused, stopped.
    pub status: String,
    pub pid: i32,
}

impl OciRuntime {
    pub fn new(program: impl Into<PathBuf>, state_root: &Path) -> Self {
        let program = program.into();
        OciRuntime {
            label: program.display().to_string(),
            program,
            prefix: Vec::new(),
            state_root: state_root.to_path_buf(),
        }
    }

    pub fn name(&self) -> String {
        self.label.clone()
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.prefix).arg("--root").arg(&self.state_root);
        c
    }

    fn err(&self, action: &str, reason: impl Into<String>) -> Error {
        Error::Engine {
            runtime: self.name(),
            action: action.into(),
            reason: reason.into(),
        }
    }

    /// Runs `cmd` to completion, its stderr kept for the error.
    fn checked(&self, action: &str, mut cmd: Command) -> Result<String> {
        let out = crate::tail::output(cmd.stdin(Stdio::null()))
            .map_err(|e| self.err(action, e.to_string()))?;
        if !out.status.success() {
            return Err(self.err(action, why_failed(out.status, &out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts the container in the background; its output goes to `log`.
    pub fn run_detached(&self, id: &str, bundle: &Path, log: &Path) -> Result<()> {
        let (out, err) = log_streams(log)?;
        let status = self
            .command()
            .args(["run", "--detach", "--bundle"])
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file(bundle))
            .arg(id)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| self.err("run", e.to_string()))?;
        if !status.success() {
            return Err(self.err("run", last_line(&log_tail(log))));
        }
        Ok(())
    }

    /// Starts the container in the background on a terminal: the engine hands us the
    /// pty master, and a process of ours copies the console into `log`.
    pub fn run_detached_console(&self, id: &str, bundle: &Path, log: &Path) -> Result<()> {
        let (out, err) = log_streams(log)?;
        let sock = bundle.join("console.sock");
        let _ = std::fs::remove_file(&sock);
        let listener =
            std::os::unix::net::UnixListener::bind(&sock).map_err(|e| Error::io(&sock, e))?;
        let mut child = self
            .command()
            .args(["run", "--detach", "--console-socket"])
            .arg(&sock)
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file(bundle))
            .arg(id)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| self.err("run", e.to_string()))?;
        let master = crate::console::receive_master(
            &listener,
            || child.try_wait().map_or(true, |s| s.is_some()),
            &sock,
        );
        let _ = std::fs::remove_file(&sock);
        let status = child.wait().map_err(|e| self.err("run", e.to_string()))?;
        if !status.success() {
            return Err(self.err("run", last_line(&log_tail(log))));
        }
        let Some(master) = master? else {
            return Err(self.err("run", "exited without sending the console"));
        };
        let pid = read_pid(&pid_file(bundle)).ok_or_else(|| self.err("run", "no pid file"))?;
        crate::console::spawn_pump(master, log, pid)
    }

    /// Runs the container attached to our stdio until it exits.
    pub fn run_foreground(&self, id: &str, bundle: &Path) -> Result<ExitStatus> {
        self.command()
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file(bundle))
            .arg(id)
            .status()
            .map_err(|e| self.err("run", e.to_string()))
    }

    /// Runs the container attached on the caller's terminal, as the embedded engine does
    /// (`runc run` would size the terminal only once the command runs, and keep Ctrl-C
    /// from a console's caller): made with a console socket, its terminal sized as the
    /// caller's before pid 1 starts, joined to the caller's. pid 1 is then our child, as
    /// we are its subreaper once `create` exits. With `signal_keys`, Ctrl-C and Ctrl-\
    /// signal us, for the caller to pass on (see `Runtime::run_attached`).
    pub fn run_on_terminal(
        &self,
        id: &str,
        bundle: &Path,
        signal_keys: bool,
    ) -> Result<ExitStatus> {
        let socket = crate::console::CallerSocket::bind("run")?;
        let _reaper = Subreaper::become_one().map_err(|e| self.err("run", e.to_string()))?;
        let pid_file = pid_file(bundle);
        let mut create = self
            .command()
            .args(["create", "--console-socket"])
            .arg(&socket.path)
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.err("create", e.to_string()))?;
        let master = crate::console::receive_master(
            &socket.listener,
            || create.try_wait().map_or(true, |s| s.is_some()),
            &socket.path,
        );
        let created = create
            .wait_with_output()
            .map_err(|e| self.err("create", e.to_string()))?;
        if !created.status.success() {
            return Err(self.err("create", why_failed(created.status, &created.stderr)));
        }
        let master = master?.ok_or_else(|| self.err("create", "it sent no terminal"))?;
        crate::console::size_as_caller(&master);
        let pid = read_pid(&pid_file).ok_or_else(|| self.err("create", "it wrote no pid file"))?;
        let mut start = self.command();
        start.args(["start", id]);
        self.checked("start", start)?;
        let status = crate::console::join_terminal(master, signal_keys, || {
            let mut status = 0;
            // SAFETY: waiting for our own child (re-parented to us, the subreaper).
            while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
                if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    // Not our child after all: 255, as a runtime that lost its
                    // container.
                    return 255 << 8;
                }
            }
            status
        });
        Ok(std::os::unix::process::ExitStatusExt::from_raw(status))
    }

    /// The container's state, None when the runtime does not know it.
    pub fn state(&self, id: &str) -> Option<EngineState> {
        let out = self.command().args(["state", id]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(EngineState {
            status: v["status"].as_str()?.to_string(),
            pid: v["pid"].as_i64().unwrap_or(0) as i32,
        })
    }

    pub fn kill(&self, id: &str, signal: i32) -> Result<()> {
        let mut c = self.command();
        c.args(["kill", id, &signal.to_string()]);
        self.checked("kill", c).map(|_| ())
    }

    /// Deletes the container (forcibly, killing what is left); runs the poststop hooks.
    pub fn delete(&self, id: &str) -> Result<()> {
        let mut c = self.command();
        c.args(["delete", "--force", id]);
        self.checked("delete", c).map(|_| ())
    }

    /// Runs `args` in the container with our stdio, a terminal if `tty`.
    pub fn exec(&self, id: &str, args: &[String], tty: bool) -> Result<ExitStatus> {
        let mut c = self.command();
        c.arg("exec");
        if tty {
            c.arg("--tty");
        }
        c.arg(id)
            .args(args)
            .status()
            .map_err(|e| self.err("exec", e.to_string()))
    }

    /// Runs `args` in the container, capturing the last [`crate::tail::TAIL`] bytes of
    /// its output (a command inside may write without end).
    pub fn exec_output(&self, id: &str, args: &[String]) -> Result<std::process::Output> {
        crate::tail::output(
            self.command()
                .arg("exec")
                .arg(id)
                .args(args)
                .stdin(Stdio::null()),
        )
        .map_err(|e| self.err("exec", e.to_string()))
    }
}

/// The end of the container's log, as text.
fn log_tail(log: &Path) -> String {
    let tail = crate::tail::file_tail(log, crate::tail::TAIL).unwrap_or_default();
    String::from_utf8_lossy(&tail).into_owned()
}

/// Where the engine writes pid 1's pid: in the bundle, the container's directory.
pub fn pid_file(bundle: &Path) -> PathBuf {
    bundle.join("pid")
}

/// pid 1's pid from the engine's pid file, once it is written.
pub fn read_pid(pid_file: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
}

/// This process as the child subreaper: orphans of its descendants (a container's pid 1
/// once the runtime that made it exits) become its children, to wait for. Until dropped.
struct Subreaper(());

impl Subreaper {
    fn become_one() -> std::io::Result<Subreaper> {
        // SAFETY: a prctl on this process only.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Subreaper(()))
    }
}

impl Drop for Subreaper {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0) };
    }
}

/// Why a runtime command failed: its last line on stderr, or the signal that killed it
/// (Ctrl-C during a start kills runc with us, silently).
fn why_failed(status: ExitStatus, stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    match std::os::unix::process::ExitStatusExt::signal(&status) {
        Some(sig) if text.trim().is_empty() => format!("killed by signal {sig}"),
        _ => last_line(&text),
    }
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("failed without a message")
        .trim()
        .to_string()
}

/// The engine that runs a runtime's containers.
#[derive(Debug, Clone)]
pub enum Engine {
    /// youki's libcontainer, inside rehost.
    Embedded(OciRuntime),
    /// runc or a compatible program.
    External(OciRuntime),
}

/// The name `--oci-runtime` and the container state give the embedded engine.
pub const EMBEDDED: &str = "embedded";

impl Engine {
    /// `name`: `embedded` (or empty) or an OCI runtime program (`runc`, a path). Each
    /// keeps its state in its own directory under the runtime `root`.
    pub fn new(name: &str, root: &Path) -> Engine {
        if name.is_empty() || name == EMBEDDED {
            let exe = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
            Engine::Embedded(OciRuntime {
                program: exe,
                prefix: vec![crate::embedded::SUBCOMMAND.into()],
                state_root: root.join(EMBEDDED),
                label: EMBEDDED.into(),
            })
        } else {
            Engine::External(OciRuntime::new(name, &root.join("engine")))
        }
    }

    fn cli(&self) -> &OciRuntime {
        match self {
            Engine::Embedded(c) | Engine::External(c) => c,
        }
    }

    /// `embedded`, or the external runtime's program.
    pub fn name(&self) -> String {
        self.cli().name()
    }

    /// Starts the container in the background; its output goes to `log`.
    pub fn run_detached(&self, id: &str, bundle: &Path, log: &Path) -> Result<()> {
        self.cli().run_detached(id, bundle, log)
    }

    /// Starts the container in the background on a terminal copied into `log`.
    pub fn run_detached_console(&self, id: &str, bundle: &Path, log: &Path) -> Result<()> {
        self.cli().run_detached_console(id, bundle, log)
    }

    /// Runs the container attached to our stdio until it exits. `terminal`: how pid 1 is
    /// on the caller's terminal (`spec::attached_terminal`). The embedded engine joins
    /// the terminals in its own process; an external one's terminal is joined by us.
    pub fn run_foreground(
        &self,
        id: &str,
        bundle: &Path,
        terminal: Option<bool>,
    ) -> Result<ExitStatus> {
        match (self, terminal) {
            (Engine::External(c), Some(signal_keys)) => c.run_on_terminal(id, bundle, signal_keys),
            _ => self.cli().run_foreground(id, bundle),
        }
    }

    /// Ctrl-C and Ctrl-\ on the caller's terminal signal us alone, not the engine, and
    /// are ours to pass on to pid 1: an external engine's console, which we join.
    pub fn caller_passes_keys(&self, terminal: Option<bool>) -> bool {
        matches!(self, Engine::External(_)) && terminal == Some(true)
    }

    /// The container's state, None when the engine does not know it.
    pub fn state(&self, id: &str) -> Option<EngineState> {
        match self {
            Engine::Embedded(c) => crate::embedded::state(&c.state_root, id)
                .map(|(status, pid)| EngineState { status, pid }),
            Engine::External(c) => c.state(id),
        }
    }

    pub fn kill(&self, id: &str, signal: i32) -> Result<()> {
        self.cli().kill(id, signal)
    }

    /// Deletes the container (forcibly, killing what is left); runs the poststop hooks.
    pub fn delete(&self, id: &str) -> Result<()> {
        self.cli().delete(id)
    }

    /// Runs `args` in the container with our stdio, a terminal if `tty`.
    pub fn exec(&self, id: &str, args: &[String], tty: bool) -> Result<ExitStatus> {
        self.cli().exec(id, args, tty)
    }

    /// Runs `args` in the container, capturing its output.
    pub fn exec_output(&self, id: &str, args: &[String]) -> Result<std::process::Output> {
        self.cli().exec_output(id, args)
    }
}
