//! The embedded engine: youki's `libcontainer` run inside rehost itself, so nothing needs
//! installing. libcontainer changes process-wide state (the dumpable flag, the working
//! directory, signal dispositions), so it never runs in the command's own process: rehost
//! re-executes itself as `rehost __engine --root DIR COMMAND…`, a child that does nothing
//! else. That child speaks the subset of runc's command line the runtime uses (`run`,
//! `exec`, `kill`, `delete`, `state`), so one code path drives both engines.
//!
//! What the runtime adds around libcontainer on hosts with hybrid cgroups:
//! - the engine places the container in its cgroups itself, `name=systemd` included, so
//!   the container's cgroup namespace (and the systemd inside it) is rooted at its own
//!   cgroup and not the host's; the way it moves costs no RCU grace period (`cgroups.rs`);
//! - delete removes the cgroups depth-first (systemd inside makes child cgroups
//!   libcontainer does not know), runs the poststop hooks and removes the state;
//! - the loopback interface of the new network namespace is brought up;
//! - on hosts with cgroup v2 alone, an exec joins pid 1's cgroup when the container's own
//!   may hold no process (systemd delegates its controllers), as runc does.

mod cgroups;
mod error;

use crate::console::CallerSocket;
pub use error::EngineError;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::syscall::syscall::SyscallType;
use std::ffi::OsString;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

/// The hidden subcommand rehost re-executes itself with.
pub const SUBCOMMAND: &str = "__engine";

/// What the embedded engine says of a container, read in the caller's process: loading
/// the state changes nothing process-wide.
pub fn state(root: &Path, id: &str) -> Option<(String, i32)> {
    // Only what exists: libcontainer logs an error for a missing state.
    let dir = root.join(id);
    if !dir.join("state.json").is_file() {
        return None;
    }
    let c = Container::load(dir).ok()?;
    let status = match c.status() {
        ContainerStatus::Creating => "creating",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Stopped => "stopped",
        ContainerStatus::Paused => "paused",
    };
    Some((status.to_string(), c.pid().map(|p| p.as_raw()).unwrap_or(0)))
}

/// The entry point of `rehost __engine ARGS…` (ARGS without the subcommand); gives the
/// process's exit code. Errors go to stderr as one line.
pub fn main(args: Vec<OsString>) -> i32 {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match dispatch(&args) {
        Ok(code) => code,
        // Attached (run without --detach, exec), our stderr is the user's: the line names
        // itself, as rehost's own errors do. Otherwise the caller keeps the line and names
        // the engine and the action around it.
        Err(e) => {
            let command = match args.first().map(String::as_str) {
                Some("--root") => args.get(2..).unwrap_or_default(),
                _ => &args[..],
            };
            let detached = command.iter().any(|a| a == "--detach" || a == "-d");
            match command.first().map(String::as_str) {
                Some("exec") => eprintln!("rehost: error: embedded exec: {e}"),
                Some("run") if !detached => eprintln!("rehost: error: embedded run: {e}"),
                _ => eprintln!("{e}"),
            }
            1
        }
    }
}

fn dispatch(args: &[String]) -> Result<i32, EngineError> {
    let mut it = args.iter().peekable();
    let mut root = None;
    while let Some(a) = it.peek() {
        if *a == "--root" {
            it.next();
            root = it.next().map(PathBuf::from);
        } else {
            break;
        }
    }
    let root = root.ok_or(EngineError::Usage("--root DIR is required"))?;
    fs::create_dir_all(&root).map_err(|e| EngineError::io(&root, e))?;
    let cmd = it.next().ok_or(EngineError::Usage(
        "no command (run, exec, kill, delete, state)",
    ))?;
    let rest: Vec<String> = it.cloned().collect();
    match cmd.as_str() {
        "run" => run(&root, &rest),
        "exec" => exec(&root, &rest),
        "kill" => match rest.as_slice() {
            [id, sig] => kill(&root, id, sig),
            _ => Err(EngineError::Usage("usage: kill ID SIGNAL")),
        },
        "delete" => match rest.as_slice() {
            [force, id] if force == "--force" => delete(&root, id).map(|_| 0),
            [id] => delete(&root, id).map(|_| 0),
            _ => Err(EngineError::Usage("usage: delete [--force] ID")),
        },
        "state" => match rest.as_slice() {
            [id] => {
                let (status, pid) =
                    state(&root, id).ok_or_else(|| EngineError::NoSuchContainer(id.clone()))?;
                println!(
                    "{}",
                    serde_json::json!({"id": id, "status": status, "pid": pid})
                );
                Ok(0)
            }
            _ => Err(EngineError::Usage("usage: state ID")),
        },
        other => Err(EngineError::UnknownCommand(other.to_string())),
    }
}

/// `run [--detach] [--console-socket S] [--pid-file P] --bundle B ID`.
fn run(root: &Path, args: &[String]) -> Result<i32, EngineError> {
    let (mut detach, mut console, mut pid_file, mut bundle, mut id) =
        (false, None, None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--detach" | "-d" => detach = true,
            "--console-socket" => console = it.next().map(PathBuf::from),
            "--pid-file" => pid_file = it.next().map(PathBuf::from),
            "--bundle" | "-b" => bundle = it.next().map(PathBuf::from),
            s if !s.starts_with('-') && id.is_none() => id = Some(s.to_string()),
            s => return Err(EngineError::UnexpectedArgument(s.to_string()).during("run")),
        }
    }
    let bundle = bundle.ok_or(EngineError::Usage("run: --bundle is required"))?;
    let id = id.ok_or(EngineError::Usage("run: no container id"))?;
    let config = bundle.join("config.json");
    let spec = oci_spec::runtime::Spec::load(&config).map_err(|source| EngineError::Config {
        path: config.clone(),
        source,
    })?;
    let cgroup = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .ok_or(EngineError::NoCgroupsPath { config })?;
    // Attached on a terminal (the config asks for one, the caller gave no console
    // socket): a terminal of the container's own devpts, joined to the caller's, as
    // runc does. Never the caller's own, which a process inside could type into.
    let attached_terminal = crate::spec::attached_terminal(&spec);
    let own_terminal = (!detach && console.is_none() && attached_terminal.is_some())
        .then(|| CallerSocket::bind("run"))
        .transpose()?;
    let console = console.or_else(|| own_terminal.as_ref().map(|s| s.path.clone()));

    // The engine is in the container's cgroups while libcontainer makes it: the container's
    // processes inherit them and its cgroup namespace is rooted there.
    let placement = cgroups::Placement::join(&cgroup)?;
    let built = placement.masked(|| {
        ContainerBuilder::new(id.clone(), SyscallType::default())
            .with_root_path(root)
            .and_then(|b| b.with_pid_file(pid_file))
            .map(|b| b.with_console_socket(console))
            .and_then(|b| {
                b.as_init(&bundle)
                    .with_systemd(false)
                    // libcontainer takes a console socket only with "detach", which
                    // changes nothing else: pid 1 is our child either way.
                    .with_detach(detach || own_terminal.is_some())
                    .build()
            })
    });
    if !detach {
        // We wait for the container and delete it: out of its cgroups, or they stay busy.
        // (Detached, we exit at once, which leaves them as well.)
        placement.leave();
    }
    let mut container = match built {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Err(discard(
                root,
                &id,
                &cgroup,
                &placement,
                EngineError::Libcontainer(e),
            ))
        }
        Err(e) => return Err(discard(root, &id, &cgroup, &placement, e)),
    };
    let pid = container.pid().map(|p| p.as_raw()).unwrap_or(0);
    // Made means the master was sent: sized now, before pid 1 starts and asks.
    let master = match &own_terminal {
        Some(s) => match crate::console::receive_master(&s.listener, || true, &s.path) {
            Ok(Some(master)) => {
                crate::console::size_as_caller(&master);
                Some(master)
            }
            failed => {
                let _ = delete(root, &id);
                return Err(match failed {
                    Err(e) => e.into(),
                    _ => EngineError::NoTerminal,
                });
            }
        },
        None => None,
    };
    let started =
        loopback_up(pid).and_then(|_| container.start().map_err(EngineError::Libcontainer));
    if let Err(e) = started {
        let _ = delete(root, &id);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    // Attached: pass the signals meant for the container on to it, wait, clean up.
    let status = match master {
        Some(master) => {
            crate::console::join_terminal(master, attached_terminal == Some(true), || {
                wait_forwarding(pid)
            })
        }
        None => wait_forwarding(pid),
    };
    let _ = delete(root, &id);
    Ok(status)
}

/// After a failed make: what libcontainer left (its state, a process) and the cgroups go.
fn discard(
    root: &Path,
    id: &str,
    cgroup: &Path,
    placement: &cgroups::Placement,
    e: EngineError,
) -> EngineError {
    placement.leave();
    if root.join(id).join("state.json").is_file() {
        let _ = delete(root, id);
    }
    cgroups::remove(cgroup);
    e
}

static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Waits for `pid` (our child), forwarding SIGINT, SIGTERM, SIGHUP and SIGQUIT to it;
/// gives its exit code (128 + signal when killed).
fn wait_forwarding(pid: i32) -> i32 {
    FORWARD_TO.store(pid, Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: the handler only reads an atomic and calls kill.
        unsafe {
            libc::signal(
                sig,
                forward as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
    let mut status = 0;
    loop {
        // SAFETY: plain waitpid on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 255;
        }
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

/// `exec [--tty] ID CMD…`: runs CMD in the container with our stdio, waits for it.
fn exec(root: &Path, args: &[String]) -> Result<i32, EngineError> {
    let tty = args.first().is_some_and(|a| a == "--tty" || a == "-t");
    let args = if tty { &args[1..] } else { args };
    let (id, cmd) = args
        .split_first()
        .ok_or(EngineError::Usage("usage: exec [--tty] ID CMD…"))?;
    if cmd.is_empty() {
        return Err(EngineError::Usage("exec: no command"));
    }
    // With a terminal: the command gets one of the container's own (a pty of its devpts,
    // never the caller's), which libcontainer makes for a detached process described by
    // a process file, handing us its master on a socket.
    let container = Container::load(root.join(id)).ok();
    let terminal = tty
        .then(|| {
            let c = container
                .as_ref()
                .ok_or_else(|| EngineError::NoSuchContainer(id.clone()).during("exec"))?;
            TerminalExec::prepare(c, cmd)
        })
        .transpose()?;
    let expected = terminal
        .as_ref()
        .map(|t| crate::console::ExecMaster::expect(&t.socket.listener, &t.socket.path))
        .transpose()?;
    let build = || {
        ContainerBuilder::new(id.clone(), SyscallType::default())
            .with_root_path(root)
            .map(|b| b.with_console_socket(terminal.as_ref().map(|t| t.socket.path.clone())))
            .and_then(|b| {
                let b = b.as_tenant();
                match &terminal {
                    Some(t) => b.with_process(Some(&t.process)).with_detach(true),
                    None => b.with_container_args(cmd.to_vec()).with_detach(false),
                }
                .build()
            })
    };
    // In the container's cgroups, placed as `run` places pid 1. Not for a container that
    // is not running: libcontainer says why it cannot exec.
    let running = container
        .as_ref()
        .filter(|c| c.status() == ContainerStatus::Running);
    let cgroup = running
        .and_then(|c| c.spec().ok())
        .map(|cfg| cfg.cgroup_path)
        .filter(|p| !p.as_os_str().is_empty());
    let init = running.and_then(|c| c.pid()).map_or(0, |p| p.as_raw());
    let pid = match cgroup {
        Some(cgroup) => {
            let placement = cgroups::Placement::join_exec(&cgroup, init)?;
            let built = placement.masked(build);
            placement.leave();
            built?
        }
        None => build(),
    }
    .map_err(EngineError::Libcontainer)?
    .as_raw();
    match (terminal, expected) {
        (Some(t), Some(expected)) => {
            let master = expected.receive(&t.socket.path)?;
            Ok(crate::console::join_terminal(master, false, || {
                wait_forwarding(pid)
            }))
        }
        _ => Ok(wait_forwarding(pid)),
    }
}

/// The process file and console socket of an `exec --tty`, removed when dropped.
struct TerminalExec {
    process: PathBuf,
    socket: CallerSocket,
}

impl TerminalExec {
    /// The container's own process, with `cmd`, a terminal, as root in `/` (as an exec
    /// without one).
    fn prepare(c: &Container, cmd: &[String]) -> Result<TerminalExec, EngineError> {
        let config = c.bundle().join("config.json");
        let spec =
            oci_spec::runtime::Spec::load(&config).map_err(|source| EngineError::Config {
                path: config.clone(),
                source,
            })?;
        let mut process = spec.process().clone().unwrap_or_default();
        process.set_args(Some(cmd.to_vec()));
        process.set_terminal(Some(true));
        process.set_cwd("/".into());
        process.set_user(Default::default());
        let path = std::env::temp_dir().join(format!("rehost-exec-{}.json", std::process::id()));
        let text = serde_json::to_vec(&process).map_err(|source| EngineError::ProcessFile {
            path: path.clone(),
            source,
        })?;
        fs::write(&path, text).map_err(|e| EngineError::io(&path, e))?;
        let socket = CallerSocket::bind("exec");
        let exec = TerminalExec {
            process: path,
            socket: socket?,
        };
        Ok(exec)
    }
}

impl Drop for TerminalExec {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.process);
    }
}

/// `kill ID SIGNAL`: the signal to the container's pid 1. Done directly, as libcontainer
/// names no real-time signal (systemd stops on SIGRTMIN+3).
fn kill(root: &Path, id: &str, sig: &str) -> Result<i32, EngineError> {
    let sig: i32 = sig
        .parse()
        .map_err(|_| EngineError::NotASignal(sig.to_string()).during("kill"))?;
    let (status, pid) = state(root, id)
        .ok_or_else(|| EngineError::NoSuchContainer(id.to_string()).during("kill"))?;
    if pid <= 0 || status == "stopped" {
        return Err(EngineError::NotRunning(id.to_string()).during("kill"));
    }
    // SAFETY: sending a signal.
    if unsafe { libc::kill(pid, sig) } != 0 {
        let source = std::io::Error::last_os_error();
        return Err(EngineError::Signal { pid, source }.during("kill"));
    }
    Ok(0)
}

/// Deletes the container whatever its state: pid 1 (and with it the whole pid namespace)
/// killed, its cgroups removed depth-first, the poststop hooks run (as libcontainer's
/// delete runs them), then its state removed.
fn delete(root: &Path, id: &str) -> Result<(), EngineError> {
    let mut c = Container::load(root.join(id)).map_err(|source| {
        EngineError::Load {
            id: id.to_string(),
            source,
        }
        .during("delete")
    })?;
    let config = c.spec().ok();
    let cgroup = config
        .as_ref()
        .map(|cfg| cfg.cgroup_path.clone())
        .filter(|p| !p.as_os_str().is_empty());
    if let Some(pid) = c.pid().map(|p| p.as_raw()).filter(|&p| p > 0) {
        if c.status() != ContainerStatus::Stopped {
            // SAFETY: sending a signal.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Some(cg) = &cgroup {
            cgroups::wait_empty(cg);
        }
    }
    if let Some(cg) = &cgroup {
        cgroups::remove(cg);
    }
    if let Some(hooks) = config.as_ref().and_then(|cfg| cfg.hooks.as_ref()) {
        c.set_status(ContainerStatus::Stopped);
        libcontainer::hooks::run_hooks(hooks.poststop().as_ref(), Some(&c.state), None, None, None)
            .map_err(|e| EngineError::PoststopHook(e).during("delete"))?;
    }
    fs::remove_dir_all(&c.root).map_err(|e| EngineError::io(&c.root, e).during("delete"))
}

/// Brings up `lo` in the network namespace of `pid` (made, not yet started).
fn loopback_up(pid: i32) -> Result<(), EngineError> {
    let err = |step: &'static str| EngineError::Loopback {
        step,
        source: std::io::Error::last_os_error(),
    };
    let own =
        fs::File::open("/proc/self/ns/net").map_err(|e| EngineError::io("/proc/self/ns/net", e))?;
    let path = format!("/proc/{pid}/ns/net");
    let theirs = fs::File::open(&path).map_err(|e| EngineError::io(&path, e))?;
    // SAFETY: this process is single-threaded and does nothing else meanwhile; it goes
    // back to its own namespace before returning.
    unsafe {
        if libc::setns(theirs.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
            return Err(err("setns"));
        }
        let result = (|| {
            let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if sock < 0 {
                return Err(err("socket"));
            }
            // struct ifreq: the name in 16 bytes, then the flags (a short).
            let mut req = [0u8; 40];
            req[..2].copy_from_slice(b"lo");
            let mut r = libc::ioctl(sock, libc::SIOCGIFFLAGS, req.as_mut_ptr());
            if r == 0 {
                let flags = i16::from_ne_bytes([req[16], req[17]]) | libc::IFF_UP as i16;
                req[16..18].copy_from_slice(&flags.to_ne_bytes());
                r = libc::ioctl(sock, libc::SIOCSIFFLAGS, req.as_mut_ptr());
            }
            let e = (r != 0).then(|| err("SIOCSIFFLAGS"));
            libc::close(sock);
            e.map_or(Ok(()), Err)
        })();
        if libc::setns(own.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
            return Err(err("setns back"));
        }
        result
    }
}
