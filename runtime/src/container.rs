//! Containers and their state. Each container is a directory under the runtime root:
//! the bundle (`config.json`, `rootfs/`, the overlay `upper/` and `work/`), `state.json`
//! (what `ps` shows) and `log` (pid 1's output).

use crate::engine::Engine;
use crate::error::{Error, IoContext, Result};
use crate::image::Image;
use crate::layers::LayerCache;
use crate::modes::{ImageInit, InitMode, ModeProfiles};
use crate::ports::{self, PortMapping};
use crate::rootfs::{self, RootfsKind};
use crate::spec::{self, Options};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The runtime: a root directory for the layer cache and the containers, and an engine.
pub struct Runtime {
    pub root: PathBuf,
    /// The engine new containers run on; a container keeps the one it was made with.
    pub engine: Engine,
}

/// What `run` needs.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub image: String,
    pub name: Option<String>,
    /// pid 1's mode; `None`: the one the image was converted for.
    pub mode: Option<InitMode>,
    /// Replaces the image's command (modes that run one).
    pub command: Vec<String>,
    pub options: Options,
    /// False forces the copy fallback instead of overlayfs.
    pub overlay: bool,
}

/// What is recorded about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub name: String,
    pub image: String,
    pub image_digest: String,
    pub mode: InitMode,
    pub stop_signal: i32,
    pub rootfs: RootfsKind,
    /// Unix seconds.
    pub created: u64,
    pub engine: String,
    /// Host ports published into the container (`-p`).
    #[serde(default)]
    pub ports: Vec<PortMapping>,
}

/// A container as `ps` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerInfo {
    #[serde(flatten)]
    pub state: ContainerState,
    /// running, created, stopped or exited (the engine no longer has it).
    pub status: String,
    pub pid: Option<i32>,
}

/// How a stop went.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct StopOutcome {
    /// pid 1 exited on the stop signal within the timeout.
    pub clean: bool,
    pub seconds: f64,
    pub was_running: bool,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !name.starts_with('.')
}

/// Default root: `$REHOST_ROOT`, else /var/lib/rehost for root, else
/// `~/.local/share/rehost`.
pub fn default_root() -> PathBuf {
    if let Some(r) = std::env::var_os("REHOST_ROOT").filter(|r| !r.is_empty()) {
        return r.into();
    }
    if rustix::process::geteuid().is_root() {
        return "/var/lib/rehost".into();
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    Path::new(&home).join(".local/share/rehost")
}

/// Removes a half-made container (mounts, engine state, directory) unless disarmed.
struct CreateGuard<'a> {
    rt: &'a Runtime,
    name: String,
    armed: bool,
}

impl Drop for CreateGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let dir = self.rt.container_dir(&self.name);
            ports::stop(&dir);
            let _ = self.rt.engine.delete(&self.name);
            crate::console::stop_pump(&dir);
            remove_cgroups(&self.name);
            let _ = rootfs::teardown(&self.rt.container_dir(&self.name));
        }
    }
}

impl Runtime {
    /// `oci_runtime`: `embedded` (youki's libcontainer inside rehost), `runc` or a path to
    /// a compatible program.
    pub fn new(root: PathBuf, oci_runtime: &str) -> Self {
        let engine = Engine::new(oci_runtime, &root);
        Runtime { root, engine }
    }

    /// The engine the container `name` was made with (recorded in its state), so that
    /// `stop`, `exec` or `rm` reach it whichever engine the command was given.
    pub fn engine_for(&self, name: &str) -> Engine {
        match self.state(name) {
            Ok(s) if s.engine != self.engine.name() => Engine::new(&s.engine, &self.root),
            _ => self.engine.clone(),
        }
    }

    pub fn container_dir(&self, name: &str) -> PathBuf {
        self.root.join("containers").join(name)
    }

    /// Makes the runtime's directory, or checks it: private to its owner (see
    /// [`crate::private_dir`]). Everything that writes under it calls this first.
    pub fn prepare_root(&self) -> Result<()> {
        crate::private_dir::ensure(&self.root)
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.container_dir(name).join("log")
    }

    /// Prepares the bundle (rootfs + config) and records the container; nothing runs yet.
    pub fn create(&self, req: &RunRequest, detached: bool) -> Result<ContainerState> {
        self.prepare_root()?;
        let image = Image::open(&req.image)?;
        // Before anything is made: a bad entry would fail inside the engine.
        spec::check_env(&image.config.config.env, &req.options.env)?;
        let name = match &req.name {
            Some(n) if !valid_name(n) => {
                return Err(Error::Container {
                    name: n.clone(),
                    reason: "a name is letters, digits, `-`, `_` and `.`".into(),
                })
            }
            Some(n) => n.clone(),
            None => format!("rehost-{}", &image.manifest_digest[7..19]),
        };
        let dir = self.container_dir(&name);
        fs::create_dir_all(self.root.join("containers")).at(self.root.join("containers"))?;
        if let Err(e) = fs::create_dir(&dir) {
            return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Container {
                    name,
                    reason: "already exists (rehost rm it, or choose another --name)".into(),
                }
            } else {
                Error::io(&dir, e)
            });
        }
        let mut guard = CreateGuard {
            rt: self,
            name: name.clone(),
            armed: true,
        };
        let cache = LayerCache::new(&self.root);
        let kind = rootfs::prepare(&image, &cache, &dir, req.overlay)?;

        let image_init = ImageInit::of(&image.config.config);
        let mode = req
            .mode
            .unwrap_or_else(|| InitMode::default_for(&image_init));
        let profile = mode.profile(&image_init, &req.command)?;
        let mut opts = req.options.clone();
        if opts.hostname.is_empty() {
            opts.hostname = name.clone();
        }
        if opts.cgroups_path.is_empty() {
            opts.cgroups_path = format!("/rehost/{name}");
        }
        // systemd logs only to a terminal console: give it one in the background; an
        // attached run on a terminal gets that terminal (an interactive shell, a boot).
        use std::io::IsTerminal;
        opts.terminal = if detached {
            mode == InitMode::Systemd
        } else {
            std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
        };
        let spec = spec::generate(&image.config, &profile, &opts, &rootfs::rootfs_path(&dir))?;
        let config = dir.join("config.json");
        spec.save(&config)
            .map_err(|e| Error::Spec(format!("{}: {e}", config.display())))?;

        let state = ContainerState {
            name: name.clone(),
            image: req.image.clone(),
            image_digest: image.manifest_digest.clone(),
            mode,
            stop_signal: profile.stop_signal,
            rootfs: kind,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            engine: self.engine.name(),
            ports: req.options.ports.clone(),
        };
        let path = dir.join("state.json");
        fs::write(
            &path,
            serde_json::to_vec_pretty(&state).expect("state serializes"),
        )
        .at(&path)?;
        guard.armed = false;
        Ok(state)
    }

    /// Creates and starts a container in the background.
    pub fn run_detached(&self, req: &RunRequest) -> Result<ContainerState> {
        // Ctrl-C while the layers unpack must not leave half a container: finish the
        // step, then undo it.
        let _signals = crate::signals::Deferred::install();
        // The host ports first: one in use fails before anything is made.
        let listeners = ports::bind(&req.options.ports)?;
        let state = self.create(req, true)?;
        let mut guard = CreateGuard {
            rt: self,
            name: state.name.clone(),
            armed: true,
        };
        if crate::signals::Deferred::received() != 0 {
            return Err(Error::Container {
                name: state.name,
                reason: "interrupted before it started; removed".into(),
            });
        }
        let dir = self.container_dir(&state.name);
        // The forwarder starts first and waits for pid 1: the host sockets then live in
        // it alone, not in the console pump we fork below, so they close with it.
        if !state.ports.is_empty() {
            ports::spawn(&state.name, &dir, listeners, &state.ports)?;
        }
        if state.mode == InitMode::Systemd {
            self.engine
                .run_detached_console(&state.name, &dir, &dir.join("log"))?;
        } else {
            self.engine
                .run_detached(&state.name, &dir, &dir.join("log"))?;
        }
        guard.armed = false;
        Ok(state)
    }

    /// Creates a container and runs it attached until pid 1 exits; then releases its
    /// mounts and engine state (and with `remove`, everything). Returns pid 1's exit code.
    pub fn run_attached(&self, req: &RunRequest, remove: bool) -> Result<i32> {
        let listeners = ports::bind(&req.options.ports)?;
        let state = self.create(req, false)?;
        let dir = self.container_dir(&state.name);
        // Ctrl-C goes to the whole foreground group: the engine forwards it to the
        // container; we must outlive it to clean up.
        let _signals = crate::signals::Deferred::install();
        // The forwarder waits for the engine's pid file, then serves until pid 1 exits.
        let forwarder = if state.ports.is_empty() {
            Ok(None)
        } else {
            ports::spawn(&state.name, &dir, listeners, &state.ports).map(Some)
        };
        let config = dir.join("config.json");
        let terminal = oci_spec::runtime::Spec::load(&config)
            .map_err(|e| Error::Spec(format!("{}: {e}", config.display())))
            .map(|spec| spec::attached_terminal(&spec))?;
        let passes_keys = self.engine.caller_passes_keys(terminal);
        let done = std::sync::atomic::AtomicBool::new(false);
        let status = std::thread::scope(|scope| {
            // SIGTERM or SIGHUP to rehost alone (a supervisor, a closed session) stops
            // the container with its own stop signal. SIGINT and SIGQUIT are left to the
            // engine, which gets Ctrl-C with us and passes it on (sending it again could
            // make systemd see two ctrl-alt-del presses, a forced reboot), unless the
            // keys signal us alone.
            let watcher = scope.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let sig = crate::signals::Deferred::take();
                    if sig == libc::SIGTERM || sig == libc::SIGHUP {
                        let _ = self.engine.kill(&state.name, state.stop_signal);
                        return;
                    }
                    if passes_keys && (sig == libc::SIGINT || sig == libc::SIGQUIT) {
                        let _ = self.engine.kill(&state.name, sig);
                    }
                    // Woken at once when the run ends, so the command does not linger.
                    std::thread::park_timeout(Duration::from_millis(50));
                }
            });
            let status = match forwarder {
                Ok(_) => self.engine.run_foreground(&state.name, &dir, terminal),
                Err(e) => Err(e),
            };
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            watcher.thread().unpark();
            status
        });
        ports::stop(&dir);
        // The engine deletes what it ran; this is for one that did not get to.
        if self.engine.state(&state.name).is_some() {
            let _ = self.engine.delete(&state.name);
        }
        remove_cgroups(&state.name);
        if remove {
            rootfs::teardown(&dir)?;
        } else {
            release_mounts(&dir)?;
        }
        let status = status?;
        Ok(status.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        }))
    }

    pub fn state(&self, name: &str) -> Result<ContainerState> {
        let path = self.container_dir(name).join("state.json");
        let bytes = fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NoSuchContainer(name.into())
            } else {
                Error::io(&path, e)
            }
        })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Container {
            name: name.into(),
            reason: format!("{}: {e}", path.display()),
        })
    }

    pub fn info(&self, name: &str) -> Result<ContainerInfo> {
        let state = self.state(name)?;
        let engine = self.engine_for(name).state(name);
        Ok(ContainerInfo {
            state,
            status: engine
                .as_ref()
                .map(|e| e.status.clone())
                .unwrap_or_else(|| "exited".into()),
            pid: engine.map(|e| e.pid).filter(|&p| p > 0),
        })
    }

    pub fn list(&self) -> Result<Vec<ContainerInfo>> {
        let dir = self.root.join("containers");
        let mut names: Vec<String> = match fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| valid_name(n))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        names.sort();
        Ok(names.iter().filter_map(|n| self.info(n).ok()).collect())
    }

    /// Whether the engine has the container created or running.
    pub fn running(&self, name: &str) -> bool {
        self.engine_for(name)
            .state(name)
            .is_some_and(|s| s.status == "running" || s.status == "created")
    }

    /// Waits up to `timeout` until the container is no longer running; whether it
    /// stopped. `pid` (pid 1 on the host) is watched through a pidfd, which wakes us the
    /// moment it exits; the engine's own state is then what says it stopped.
    fn wait_stopped(&self, name: &str, pid: Option<i32>, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let pidfd = pid
            .and_then(rustix::process::Pid::from_raw)
            .and_then(|pid| {
                rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
            });
        if let Some(fd) = pidfd {
            crate::sidecar::wait_gone(&fd, timeout);
        }
        while self.running(name) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// The stop signal, up to `timeout` for pid 1 to exit, then SIGKILL; then the engine
    /// deletes the container (running the poststop hooks) and the rootfs is unmounted.
    pub fn stop(&self, name: &str, timeout: Duration) -> Result<StopOutcome> {
        let state = self.state(name)?;
        let engine = self.engine_for(name);
        let start = Instant::now();
        let was_running = self.running(name);
        let mut clean = true;
        if was_running {
            let pid = engine.state(name).map(|s| s.pid).filter(|&p| p > 0);
            engine.kill(name, state.stop_signal)?;
            if !self.wait_stopped(name, pid, timeout) {
                clean = false;
                let _ = engine.kill(name, libc::SIGKILL);
                self.wait_stopped(name, pid, Duration::from_secs(10));
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        ports::stop(&self.container_dir(name));
        delete_unless_gone(&engine, name)?;
        crate::console::stop_pump(&self.container_dir(name));
        release_mounts(&self.container_dir(name))?;
        remove_cgroups(name);
        Ok(StopOutcome {
            clean,
            seconds,
            was_running,
        })
    }

    /// Removes a container; a running one only with `force` (stopped first).
    pub fn remove(&self, name: &str, force: bool) -> Result<()> {
        self.state(name)?;
        if self.running(name) {
            if !force {
                return Err(Error::Container {
                    name: name.into(),
                    reason: "is running (rehost stop it first, or rm --force)".into(),
                });
            }
            self.stop(name, Duration::from_secs(0))?;
        }
        ports::stop(&self.container_dir(name));
        let engine = self.engine_for(name);
        delete_unless_gone(&engine, name)?;
        crate::console::stop_pump(&self.container_dir(name));
        remove_cgroups(name);
        rootfs::teardown(&self.container_dir(name))
    }

    pub fn require_running(&self, name: &str) -> Result<()> {
        self.state(name)?;
        if !self.running(name) {
            return Err(Error::Container {
                name: name.into(),
                reason: "is not running".into(),
            });
        }
        Ok(())
    }
}

/// Deletes the engine's container `name` if the engine still has it. An attached `rehost
/// run` deletes its container itself once pid 1 exits, maybe while we do: a delete that
/// fails because the container is gone by then has done what was asked.
fn delete_unless_gone(engine: &Engine, name: &str) -> Result<()> {
    if engine.state(name).is_none() {
        return Ok(());
    }
    match engine.delete(name) {
        Err(_) if engine.state(name).is_none() => Ok(()),
        done => done,
    }
}

/// Removes a cgroup and every cgroup below it, deepest first (a cgroup directory goes
/// only once it has no children).
pub(crate) fn depth_first(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                depth_first(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Removes what is left of the container's cgroups in every hierarchy, deepest first
/// (systemd inside makes child cgroups the engine may not know), then the shared
/// `rehost` parent when no other container uses it.
fn remove_cgroups(name: &str) {
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut roots: Vec<PathBuf> = vec![PathBuf::from("/sys/fs/cgroup")];
    roots.extend(hierarchies.flatten().map(|e| e.path()));
    for root in roots {
        let parent = root.join("rehost");
        if parent.is_dir() {
            depth_first(&parent.join(name));
            let _ = fs::remove_dir(&parent);
        }
    }
}

/// Unmounts the rootfs, keeping the container's directory (its upper layer and log).
fn release_mounts(dir: &Path) -> Result<()> {
    let rootfs = rootfs::rootfs_path(dir);
    while rootfs::is_mounted(&rootfs) {
        rustix::mount::unmount(&rootfs, rustix::mount::UnmountFlags::DETACH).at(&rootfs)?;
    }
    Ok(())
}
