//! The supervisor: pid 1's event loop. It reaps every child, reads signals from a signalfd,
//! pumps service output, listens on notify sockets, and drives each service through
//! start (conditions, `ExecStartPre`, main process, readiness, `ExecStartPost`), supervision
//! (restart policy and budget) and stop (`ExecStop`, kill signal, timeout, SIGKILL,
//! `ExecStopPost`), in dependency order, plus timers and the main command.

pub mod budget;
pub mod conditions;
pub mod control;
mod deps;
pub mod dirs;
pub mod hooks;
pub mod output;
pub mod pidfiles;
pub mod procs;
pub mod signals;
pub mod sockets;
pub mod spawn;
pub mod start_error;
pub mod status;
pub mod timers;

use crate::config::{InitConfig, Mode, ServiceKind, RUN_DIR, STATUS_PATH};
use crate::order::{self, Order};
use crate::service::ServiceDef;
use crate::units::systemd::{ExecCommand, KillMode, RestartPolicy, ServiceType};
use crate::users::{Credentials, Database};
use budget::Budget;
use spawn::{spawn, SpawnSpec, Stream};
use start_error::StartError;
use status::{ServiceStatus, Status};
use std::collections::{BTreeMap, VecDeque};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// A service's state (see [`status::ServiceStatus::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started (yet).
    Inactive,
    /// Starting.
    Starting,
    /// Running.
    Active,
    /// Ran to completion successfully.
    Exited,
    /// A timer, or a service only a timer starts, between runs.
    Waiting,
    /// Waiting `RestartSec=` before a restart.
    AutoRestart,
    /// Stopping.
    Stopping,
    /// Failed.
    Failed,
    /// Skipped: a condition was not met.
    Skipped,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Starting => "starting",
            State::Active => "active",
            State::Exited => "exited",
            State::Waiting => "waiting",
            State::AutoRestart => "auto-restart",
            State::Stopping => "stopping",
            State::Failed => "failed",
            State::Skipped => "skipped",
        }
    }

    fn running(self) -> bool {
        matches!(self, State::Starting | State::Active | State::Stopping)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Pre,
    Start,
    Post,
    Stop,
    Kill,
    StopPost,
    Reload,
}

struct Svc {
    def: ServiceDef,
    state: State,
    phase: Phase,
    queue: VecDeque<ExecCommand>,
    control: Option<(i32, ExecCommand)>,
    main_pid: Option<i32>,
    deadline: Option<Instant>,
    kill_escalated: bool,
    restart_at: Option<Instant>,
    budget: Budget,
    restarts: u32,
    attempted: bool,
    result: String,
    /// Whether the current run ended badly (decides restarts).
    failure: Option<Outcome>,
    stop_requested: bool,
    env: BTreeMap<String, String>,
    creds: Option<Credentials>,
    notify: Option<UnixDatagram>,
    last_active: Option<Instant>,
    last_inactive: Option<Instant>,
    timer_next: Option<Instant>,
    timer_last: Option<Instant>,
    kill_signal: i32,
    /// Why the last reload failed (for the job that asked for it).
    reload_failed: Option<String>,
    /// A socket unit's listening sockets, while it is active.
    listeners: Vec<std::os::fd::OwnedFd>,
    /// Sockets handed to this service by its socket unit at its next start (`Accept=no`).
    socket_fds: Vec<std::os::fd::OwnedFd>,
    /// Their names (`LISTEN_FDNAMES`).
    socket_names: Vec<String>,
    /// The connection an `Accept=yes` instance serves.
    socket_conn: Option<std::os::fd::OwnedFd>,
    /// The socket unit that made this instance.
    spawned_by: Option<String>,
    /// Its main process followed through pid files and /proc (see [`pidfiles`]).
    watch: pidfiles::Watch,
}

impl Svc {
    fn new(def: ServiceDef) -> Svc {
        let kill_signal = signals::parse(&def.service.kill_signal).unwrap_or_else(|| {
            log(&format!(
                "{}: unknown KillSignal={}, using SIGTERM",
                def.name, def.service.kill_signal
            ));
            libc::SIGTERM
        });
        let watch =
            pidfiles::Watch::new(pidfiles::discover(&crate::units::HostRoot::new("/"), &def));
        let state = if (def.timer.is_some() && def.socket.is_none()) || !def.autostart {
            State::Waiting
        } else {
            State::Inactive
        };
        Svc {
            budget: Budget::new(def.start_limit_burst, def.start_limit_interval),
            def,
            state,
            phase: Phase::Idle,
            queue: VecDeque::new(),
            control: None,
            main_pid: None,
            deadline: None,
            kill_escalated: false,
            restart_at: None,
            restarts: 0,
            attempted: false,
            result: String::new(),
            failure: None,
            stop_requested: false,
            env: BTreeMap::new(),
            creds: None,
            notify: None,
            last_active: None,
            last_inactive: None,
            timer_next: None,
            timer_last: None,
            kill_signal,
            reload_failed: None,
            listeners: Vec::new(),
            socket_fds: Vec::new(),
            socket_names: Vec::new(),
            socket_conn: None,
            spawned_by: None,
            watch,
        }
    }
}

/// How a run of a service ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code 0 (or a success status / clean signal).
    Clean,
    /// A non-zero exit code.
    ExitCode(i32),
    /// Killed by a signal.
    Signal(i32),
    /// A start or stop timeout.
    Timeout,
    /// Could not be started at all (bad settings, missing program).
    Resources,
    /// The main process is gone and none took its place (a daemon that died, found
    /// through its pid file or /proc).
    Vanished,
}

/// Whether a service with `policy` should be restarted after a run that ended with `outcome`.
pub fn should_restart(policy: RestartPolicy, outcome: Outcome, prevent: &[i32]) -> bool {
    if let Outcome::ExitCode(c) = outcome {
        if prevent.contains(&c) {
            return false;
        }
    }
    match policy {
        RestartPolicy::No => false,
        RestartPolicy::Always => true,
        RestartPolicy::OnSuccess => outcome == Outcome::Clean,
        RestartPolicy::OnFailure => outcome != Outcome::Clean,
        RestartPolicy::OnAbnormal => matches!(outcome, Outcome::Signal(_) | Outcome::Timeout),
        RestartPolicy::OnAbort => matches!(outcome, Outcome::Signal(_)),
        RestartPolicy::OnWatchdog => false,
    }
}

fn describe(o: Outcome) -> String {
    match o {
        Outcome::Clean => String::new(),
        Outcome::ExitCode(c) => format!("exit-code {c}"),
        Outcome::Signal(s) => format!("signal {}", signals::name(s)),
        Outcome::Timeout => "timeout".into(),
        Outcome::Resources => "resources".into(),
        Outcome::Vanished => "main process gone".into(),
    }
}

struct MainCmd {
    pid: i32,
    code: Option<i32>,
}

/// What the supervisor needs besides the service definitions.
pub struct Options {
    /// The init mode (for the status file and hooks).
    pub mode: Mode,
    /// The main command, if any.
    pub cmd: Vec<String>,
    /// Total shutdown budget.
    pub stop_timeout: Duration,
    /// Forward every signal but SIGCHLD to the main command (dumb-init mode).
    pub forward_all: bool,
    /// Where to publish the status (None: don't).
    pub status_path: Option<String>,
}

impl Options {
    /// From the configuration file.
    pub fn from_config(cfg: &InitConfig) -> Options {
        Options {
            mode: cfg.mode,
            cmd: cfg.cmd.clone(),
            stop_timeout: Duration::from_secs(cfg.stop_timeout_sec),
            forward_all: cfg.mode == Mode::DumbInit,
            status_path: Some(STATUS_PATH.to_string()),
        }
    }
}

/// The running supervisor.
pub struct Supervisor {
    svcs: Vec<Svc>,
    order: Order,
    pump: output::Pump,
    sigfd: i32,
    boot: Instant,
    users: Database,
    base_env: BTreeMap<String, String>,
    opts: Options,
    main: Option<MainCmd>,
    shutdown_started: Option<Instant>,
    forced: bool,
    exit_code: i32,
    dirty: bool,
    /// The control socket (`systemctl`, `service` inside the container).
    ctl: control::Control,
    /// This program, to hand sockets to services through `rehost-init __listen`.
    init_exe: String,
}

/// Logs one line from the init itself to stderr.
pub fn log_line(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "rehost-init: {msg}");
}

fn log(msg: &str) {
    log_line(msg);
}

/// Signals that stop the container: SIGTERM (runtimes), SIGINT (a terminal), SIGPWR, and
/// SIGRTMIN+3 (systemd's, which images converted for systemd carry as StopSignal).
fn is_stop_signal(sig: i32) -> bool {
    sig == libc::SIGTERM
        || sig == libc::SIGINT
        || sig == libc::SIGPWR
        || sig == libc::SIGRTMIN() + 3
        || sig == libc::SIGQUIT
}

impl Supervisor {
    /// Builds a supervisor for `defs` (logging unsupported settings and ordering problems
    /// once). `sigfd` is a signalfd with every signal blocked.
    pub fn new(mut defs: Vec<ServiceDef>, opts: Options, sigfd: i32) -> Supervisor {
        // Timers need their services, which are started only by them.
        let mut extra = Vec::new();
        for d in &defs {
            if let Some(t) = &d.timer {
                if !defs
                    .iter()
                    .any(|x| x.name == t.unit || x.provides.contains(&t.unit))
                    && !extra.iter().any(|x: &ServiceDef| x.name == t.unit)
                {
                    let entry = crate::config::ServiceEntry {
                        name: t.unit.clone(),
                        kind: ServiceKind::Systemd,
                        critical: false,
                        optional: false,
                    };
                    match crate::service::load(&crate::units::HostRoot::new("/"), &entry) {
                        Ok(mut s) => {
                            s.autostart = false;
                            extra.push(s);
                        }
                        Err(e) => log(&format!(
                            "{}: cannot load the service it triggers: {e}",
                            d.name
                        )),
                    }
                }
            }
        }
        defs.extend(extra);
        for d in &defs {
            if !d.unsupported.is_empty() {
                log(&format!(
                    "{}: not supported, ignored: {}",
                    d.name,
                    d.unsupported.join(", ")
                ));
            }
        }
        let order = order::resolve(&defs);
        for w in &order.warnings {
            log(w);
        }
        let svcs = defs.into_iter().map(Svc::new).collect();
        let mut base_env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k != "NOTIFY_SOCKET" && k != "LISTEN_FDS" && k != "LISTEN_PID")
            .collect();
        base_env.entry("PATH".into()).or_insert_with(|| {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
        });
        Supervisor {
            svcs,
            order,
            pump: output::Pump::default(),
            sigfd,
            boot: Instant::now(),
            users: Database::load(),
            base_env,
            opts,
            main: None,
            shutdown_started: None,
            forced: false,
            exit_code: 0,
            dirty: true,
            ctl: control::Control::default(),
            init_exe: std::env::current_exe()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "/usr/sbin/rehost-init".to_string()),
        }
    }

    /// Runs until everything has stopped; returns the container's exit code: the main
    /// command's when there is one, 1 when a critical service failed for good, 0 otherwise.
    pub fn run(&mut self) -> i32 {
        let _ = std::fs::create_dir_all(format!("{RUN_DIR}/notify"));
        if self.opts.mode == Mode::Rehost {
            self.ctl.listen();
        }
        if !self.opts.cmd.is_empty() {
            self.start_main();
        }
        let now = Instant::now();
        for i in 0..self.svcs.len() {
            if self.svcs[i].def.timer.is_some() {
                self.schedule_timer(i, now);
            }
        }
        loop {
            // A pass can enable another (a service up lets its dependents start; shutdown
            // lets the last services stop): repeat until nothing changes, then wait.
            for _ in 0..1000 {
                let before = self.snapshot();
                self.step();
                if self.snapshot() == before {
                    break;
                }
            }
            self.advance_jobs();
            if self.finished() {
                break;
            }
            self.wait_for_events();
        }
        self.pump.drain();
        self.ctl.close();
        self.publish("stopped");
        let main_code = self.main.as_ref().and_then(|m| m.code);
        match main_code {
            Some(c) if c != 0 => c,
            _ => self.exit_code,
        }
    }

    fn snapshot(&self) -> (Vec<(State, Phase, bool)>, bool) {
        (
            self.svcs
                .iter()
                .map(|s| (s.state, s.phase, s.stop_requested))
                .collect(),
            self.shutdown_started.is_some(),
        )
    }

    fn finished(&self) -> bool {
        if self.shutdown_started.is_none() {
            return false;
        }
        if self.forced {
            return true;
        }
        let main_done = self.main.as_ref().is_none_or(|m| m.code.is_some());
        main_done
            && self
                .svcs
                .iter()
                .all(|s| !s.state.running() && s.control.is_none())
    }

    fn start_main(&mut self) {
        let argv = self.opts.cmd.clone();
        let env = self.base_env.clone();
        let spec = SpawnSpec {
            path: &argv[0],
            argv: &argv,
            env: &env,
            creds: None,
            cwd: None,
            umask: None,
            nice: None,
            nofile: None,
            stdout: Stream::Inherit,
            stderr: Stream::Inherit,
            new_session: true,
            stdin: None,
            pass_fds: &[],
        };
        match spawn(&spec) {
            Ok(s) => {
                self.main = Some(MainCmd {
                    pid: s.pid,
                    code: None,
                })
            }
            Err(e) => {
                log(&format!("main command: {e}"));
                self.main = Some(MainCmd {
                    pid: 0,
                    code: Some(127),
                });
                self.begin_shutdown("the main command could not start");
            }
        }
    }

    /// One pass of everything that does not wait: starts, timers, restarts, deadlines, stops.
    fn step(&mut self) {
        let now = Instant::now();
        for i in 0..self.svcs.len() {
            self.check_deadline(i, now);
            if self.svcs[i].phase == Phase::Kill {
                self.check_killed(i);
            }
            if self.svcs[i].watch.next.is_some_and(|t| now >= t) {
                self.follow(i, now);
            }
        }
        if self.shutdown_started.is_none() {
            self.start_ready(now);
            for i in 0..self.svcs.len() {
                if let Some(at) = self.svcs[i].restart_at {
                    if now >= at {
                        self.svcs[i].restart_at = None;
                        self.svcs[i].restarts += 1;
                        self.start(i);
                    }
                }
                if let Some(at) = self.svcs[i].timer_next {
                    if now >= at {
                        self.fire_timer(i, now);
                    }
                }
            }
        } else {
            self.stop_ready();
            let started = self.shutdown_started.expect("checked");
            if !self.forced && now.duration_since(started) >= self.opts.stop_timeout {
                log("stop timeout reached: killing everything left");
                self.kill_everything();
                self.forced = true;
            }
        }
        if self.dirty {
            let phase = if self.shutdown_started.is_some() {
                "stopping"
            } else {
                "running"
            };
            self.publish(phase);
        }
    }

    fn kill_everything(&mut self) {
        if let Some(m) = &self.main {
            if m.code.is_none() {
                signals::send(-m.pid, libc::SIGKILL);
                signals::send(m.pid, libc::SIGKILL);
            }
        }
        for s in &self.svcs {
            for p in procs::marked(&s.def.name) {
                signals::send(p, libc::SIGKILL);
            }
            if let Some((p, _)) = &s.control {
                signals::send(*p, libc::SIGKILL);
            }
        }
        self.reap();
    }

    fn dep_settled(&self, j: usize) -> bool {
        let s = &self.svcs[j];
        if !s.def.autostart || s.def.timer.is_some() {
            return true;
        }
        s.attempted && s.state != State::Starting
    }

    fn start_ready(&mut self, _now: Instant) {
        for k in 0..self.order.start_order.len() {
            let i = self.order.start_order[k];
            let s = &self.svcs[i];
            if s.attempted || s.state != State::Inactive || !s.def.autostart {
                continue;
            }
            if !self.order.after[i].iter().all(|&j| self.dep_settled(j)) {
                continue;
            }
            let failed_dep = self.order.requires[i].iter().copied().find(|&j| {
                self.dep_settled(j)
                    && matches!(
                        self.svcs[j].state,
                        State::Failed | State::Skipped | State::Inactive
                    )
                    && self.svcs[j].def.autostart
            });
            if let Some(j) = failed_dep {
                if self.order.requires[i].iter().all(|&j| self.dep_settled(j)) {
                    let name = self.svcs[j].def.name.clone();
                    let s = &mut self.svcs[i];
                    s.attempted = true;
                    s.state = State::Failed;
                    s.result = format!("dependency {name} failed");
                    log(&format!("{}: not started: {}", s.def.name, s.result));
                    self.dirty = true;
                    continue;
                }
            }
            self.start(i);
        }
    }

    /// Services that started after `i` (wait for it) must stop before it.
    fn stop_ready(&mut self) {
        for k in (0..self.order.start_order.len()).rev() {
            let i = self.order.start_order[k];
            let s = &self.svcs[i];
            if s.stop_requested {
                continue;
            }
            let dependents_down = (0..self.svcs.len())
                .filter(|&j| self.order.after[j].contains(&i))
                .all(|j| {
                    !self.svcs[j].state.running()
                        || self.svcs[j].state == State::Stopping
                            && self.svcs[j].phase == Phase::StopPost
                });
            if dependents_down {
                self.stop(i);
            }
        }
    }

    fn begin_shutdown(&mut self, why: &str) {
        if self.shutdown_started.is_some() {
            return;
        }
        log(&format!("shutting down: {why}"));
        self.shutdown_started = Some(Instant::now());
        for s in &mut self.svcs {
            s.restart_at = None;
            s.timer_next = None;
        }
        if let Some(m) = &self.main {
            if m.code.is_none() && !self.opts.forward_all {
                signals::send(-m.pid, libc::SIGTERM);
            }
        }
        self.dirty = true;
    }

    // ----- starting -----

    fn start(&mut self, i: usize) {
        let now = Instant::now();
        self.dirty = true;
        let name = self.svcs[i].def.name.clone();
        {
            let s = &mut self.svcs[i];
            s.attempted = true;
            s.failure = None;
            s.stop_requested = false;
            s.kill_escalated = false;
            s.result.clear();
        }
        if !self.svcs[i].budget.try_start(now) {
            let s = &mut self.svcs[i];
            s.state = State::Failed;
            s.result = "start-limit-hit".into();
            log(&format!(
                "{name}: restarted too often ({} starts within {:?}); giving up",
                s.def.start_limit_burst, s.def.start_limit_interval
            ));
            if s.def.critical {
                self.exit_code = 1;
                self.begin_shutdown(&format!("critical service {name} failed for good"));
            }
            return;
        }
        let (verdict, unsupported) = conditions::evaluate(&self.svcs[i].def.conditions);
        for u in unsupported {
            log(&format!("{name}: not supported, treated as met: {u}"));
        }
        match verdict {
            conditions::Verdict::Go => {}
            conditions::Verdict::Skip(why) => {
                log(&format!("{name}: skipped, {why}"));
                let s = &mut self.svcs[i];
                s.state = State::Skipped;
                s.result = why;
                return;
            }
            conditions::Verdict::Fail(why) => {
                self.fail_now(i, why, Outcome::Resources);
                return;
            }
        }
        if let Err(e) = self.prepare(i) {
            self.fail_now(i, e.to_string(), Outcome::Resources);
            return;
        }
        let s = &mut self.svcs[i];
        s.state = State::Starting;
        s.phase = Phase::Pre;
        s.deadline = s.def.service.timeout_start.finite().map(|d| now + d);
        s.queue = s
            .def
            .service
            .exec_condition
            .iter()
            .chain(&s.def.service.exec_start_pre)
            .cloned()
            .collect();
        self.next_control(i);
    }

    fn fail_now(&mut self, i: usize, why: String, outcome: Outcome) {
        let name = self.svcs[i].def.name.clone();
        log(&format!("{name}: failed to start: {why}"));
        let s = &mut self.svcs[i];
        s.result = why;
        s.failure = Some(outcome);
        s.phase = Phase::Idle;
        self.finish_stop(i);
    }

    /// Resolves the user, builds the environment, and creates the service's directories.
    fn prepare(&mut self, i: usize) -> Result<(), StartError> {
        let def = &self.svcs[i].def;
        let svc = &def.service;
        let creds = self.users.credentials(
            svc.user.as_deref(),
            svc.group.as_deref(),
            &svc.supplementary_groups,
        )?;
        // The unit's own variables; the manager's (which `systemctl set-environment` changes)
        // are added under them at each spawn.
        let mut env = BTreeMap::new();
        env.insert("HOME".into(), creds.home.clone());
        env.insert("USER".into(), creds.user.clone());
        env.insert("LOGNAME".into(), creds.user.clone());
        env.insert("SHELL".into(), creds.shell.clone());
        env.insert(procs::MARKER.into(), def.name.clone());
        for (var, paths) in dirs::create(std::path::Path::new("/"), svc, &creds)? {
            env.insert(var.into(), paths);
        }
        for (k, v) in &svc.environment {
            env.insert(k.clone(), v.clone());
        }
        for (path, optional) in &svc.environment_files {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    for (k, v) in crate::units::systemd::parse_environment_file(&text) {
                        env.insert(k, v);
                    }
                }
                Err(_) if *optional => {}
                Err(source) => {
                    return Err(StartError::EnvironmentFile {
                        path: path.clone(),
                        source,
                    })
                }
            }
        }
        if let Some((dir, optional)) = &svc.working_directory {
            let d = if dir == "~" {
                creds.home.clone()
            } else {
                dir.clone()
            };
            if !std::path::Path::new(&d).is_dir() && !optional {
                return Err(StartError::NoWorkingDirectory(d));
            }
        }
        let s = &mut self.svcs[i];
        s.env = env;
        s.creds = Some(creds);
        Ok(())
    }

    fn cwd(&self, i: usize) -> Option<String> {
        let s = &self.svcs[i];
        match &s.def.service.working_directory {
            Some((d, optional)) => {
                let d = if d == "~" {
                    s.creds
                        .as_ref()
                        .map(|c| c.home.clone())
                        .unwrap_or_else(|| "/".into())
                } else {
                    d.clone()
                };
                if *optional && !std::path::Path::new(&d).is_dir() {
                    Some("/".into())
                } else {
                    Some(d)
                }
            }
            None => Some("/".into()),
        }
    }

    /// Starts one process of service `i`; `main` selects the main-process settings.
    fn spawn_for(&mut self, i: usize, cmd: &ExecCommand, main: bool) -> Result<i32, StartError> {
        let cwd = self.cwd(i);
        let s = &self.svcs[i];
        let svc = &s.def.service;
        let mut env = self.base_env.clone();
        env.extend(s.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(p) = s.main_pid {
            env.insert("MAINPID".into(), p.to_string());
        }
        if main
            && matches!(
                svc.service_type,
                ServiceType::Notify | ServiceType::NotifyReload
            )
        {
            env.insert("NOTIFY_SOCKET".into(), notify_path(i));
        }
        // `+` and `!` both run as root (`!` keeps the sandboxing, which rehost-init has none of).
        let privileged =
            cmd.flags.privileged || cmd.flags.ambient || (!main && svc.permissions_start_only);
        let creds = if privileged {
            None
        } else {
            s.creds.as_ref().filter(|c| c.uid != 0 || c.gid != 0)
        };
        let mut argv = cmd.expand_argv(&env);
        if argv.is_empty() {
            return Err(StartError::EmptyCommand(cmd.path.clone()));
        }
        let mut path = if cmd.flags.argv0 {
            cmd.path.clone()
        } else {
            argv[0].clone()
        };
        // A connection on stdin (and, unless the unit says otherwise, stdout and stderr).
        let conn = s
            .socket_conn
            .as_ref()
            .filter(|_| main && svc.standard_input.as_deref() == Some("socket"))
            .map(|c| c.as_raw_fd());
        let stdout = match (conn, svc.standard_output.as_deref()) {
            (Some(c), None | Some("inherit" | "socket")) => Stream::Fd(c),
            (_, setting) => Stream::from_setting(setting),
        };
        let stderr = match svc.standard_error.as_deref() {
            None | Some("inherit") => stdout.clone(),
            Some("socket") if conn.is_some() => stdout.clone(),
            other => Stream::from_setting(other),
        };
        // Sockets as fds 3…: the listening ones (Accept=no), or the connection of an
        // instance that does not take it on stdin.
        let mut pass: Vec<i32> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        if main {
            if !s.socket_fds.is_empty() {
                pass.extend(s.socket_fds.iter().map(|f| f.as_raw_fd()));
                names.extend(s.socket_names.iter().cloned());
            } else if let (Some(c), None) = (&s.socket_conn, conn) {
                pass.push(c.as_raw_fd());
                names.push("connection".into());
            }
            pass.truncate(spawn::MAX_PASSED);
            names.truncate(pass.len());
        }
        if !pass.is_empty() {
            env.insert("LISTEN_FDS".into(), pass.len().to_string());
            env.insert("LISTEN_FDNAMES".into(), names.join(":"));
            // `LISTEN_PID` must be the service's own pid: rehost-init sets it, moves the
            // sockets to 3… and execs the program (see `rehost-init __listen`).
            let program = spawn::resolve_program(&path, &env).unwrap_or(path.clone());
            let fds = pass
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let mut wrapped = vec!["rehost-init".to_string(), "__listen".into(), fds, program];
            wrapped.append(&mut argv);
            argv = wrapped;
            path = self.init_exe.clone();
        }
        let spec = SpawnSpec {
            path: &path,
            argv: &argv,
            env: &env,
            creds,
            cwd: cwd.as_deref(),
            umask: svc.umask,
            nice: svc.nice,
            nofile: svc.limit_nofile,
            stdout,
            stderr,
            new_session: true,
            stdin: conn,
            pass_fds: &pass,
        };
        let spawned = spawn(&spec).map_err(|source| StartError::Spawn {
            command: path.clone(),
            source,
        })?;
        let name = s.def.syslog_name();
        let unit = s.def.name.clone();
        if let Some(fd) = spawned.stdout {
            self.pump.add(fd, &name, &unit, false);
        }
        if let Some(fd) = spawned.stderr {
            self.pump.add(fd, &name, &unit, true);
        }
        Ok(spawned.pid)
    }

    fn next_control(&mut self, i: usize) {
        loop {
            let Some(cmd) = self.svcs[i].queue.pop_front() else {
                self.phase_done(i);
                return;
            };
            match self.spawn_for(i, &cmd, false) {
                Ok(pid) => {
                    self.svcs[i].control = Some((pid, cmd));
                    return;
                }
                Err(e) => {
                    let name = self.svcs[i].def.name.clone();
                    log(&format!("{name}: {e}"));
                    if cmd.flags.ignore_failure
                        || matches!(self.svcs[i].phase, Phase::Stop | Phase::StopPost)
                    {
                        continue;
                    }
                    self.phase_failed(i, e.to_string(), Outcome::Resources);
                    return;
                }
            }
        }
    }

    fn phase_done(&mut self, i: usize) {
        self.dirty = true;
        match self.svcs[i].phase {
            Phase::Pre => self.begin_main(i),
            Phase::Start => {
                // Oneshot commands or the forking start command have finished.
                if self.svcs[i].def.service.service_type == ServiceType::Forking {
                    let s = &self.svcs[i];
                    let pid = s.watch.named(&procs::read_pid_file).or_else(|| {
                        if s.def.service.pid_file.is_none() {
                            procs::guess_main(&s.def.name)
                        } else {
                            None
                        }
                    });
                    if pid.is_none()
                        && s.def.service.pid_file.is_some()
                        && !s.def.service.remain_after_exit
                    {
                        let why = format!(
                            "PIDFile={} not readable after start",
                            s.def.service.pid_file.clone().unwrap_or_default()
                        );
                        log(&format!("{}: {why}", s.def.name));
                    }
                    self.svcs[i].main_pid = pid;
                }
                self.begin_post(i);
            }
            Phase::Post => self.become_active(i),
            Phase::Stop => self.begin_kill(i),
            Phase::Kill => self.begin_stop_post(i),
            Phase::StopPost => self.finish_stop(i),
            Phase::Reload => {
                self.svcs[i].phase = Phase::Idle;
            }
            Phase::Idle => {}
        }
    }

    fn begin_main(&mut self, i: usize) {
        let s = &mut self.svcs[i];
        s.phase = Phase::Start;
        let svc = &s.def.service;
        let ty = svc.service_type;
        if let Some(sock) = &s.def.socket {
            match sockets::open_with_fallback(sock) {
                Ok(fds) => s.listeners = fds,
                Err(e) => {
                    self.phase_failed(i, format!("cannot listen: {e}"), Outcome::Resources);
                    return;
                }
            }
        }
        if svc.exec_start.is_empty() {
            self.begin_post(i);
            return;
        }
        match ty {
            ServiceType::Oneshot => {
                s.queue = svc.exec_start.iter().cloned().collect();
                self.next_control(i);
            }
            ServiceType::Forking => {
                s.queue = svc.exec_start.iter().take(1).cloned().collect();
                self.next_control(i);
            }
            _ => {
                let cmd = svc.exec_start[0].clone();
                let notify = matches!(ty, ServiceType::Notify | ServiceType::NotifyReload);
                if notify {
                    match bind_notify(i) {
                        Ok(sock) => self.svcs[i].notify = Some(sock),
                        Err(e) => {
                            self.phase_failed(i, format!("notify socket: {e}"), Outcome::Resources);
                            return;
                        }
                    }
                }
                match self.spawn_for(i, &cmd, true) {
                    Ok(pid) => {
                        self.svcs[i].main_pid = Some(pid);
                        if !notify {
                            self.begin_post(i);
                        }
                    }
                    Err(e) => {
                        log(&format!("{}: {e}", self.svcs[i].def.name));
                        self.phase_failed(i, e.to_string(), Outcome::Resources);
                    }
                }
            }
        }
    }

    fn begin_post(&mut self, i: usize) {
        let s = &mut self.svcs[i];
        s.phase = Phase::Post;
        s.queue = s.def.service.exec_start_post.iter().cloned().collect();
        self.next_control(i);
    }

    fn become_active(&mut self, i: usize) {
        let now = Instant::now();
        let s = &mut self.svcs[i];
        s.phase = Phase::Idle;
        s.deadline = None;
        s.last_active = Some(now);
        let oneshot_done =
            s.def.service.service_type == ServiceType::Oneshot && !s.def.service.remain_after_exit;
        if oneshot_done {
            s.state = if s.def.autostart {
                State::Exited
            } else {
                State::Waiting
            };
            s.last_inactive = Some(now);
            if !s.def.autostart {
                log(&format!("{}: finished", s.def.name));
            }
        } else {
            s.state = State::Active;
            s.watch.arm(now);
            log(&format!(
                "{}: started{}",
                s.def.name,
                s.main_pid
                    .map(|p| format!(" (pid {p})"))
                    .unwrap_or_default()
            ));
        }
        let note = format!("Started {}.", s.def.name);
        let unit = s.def.name.clone();
        self.pump.note(&unit, &note);
        self.dirty = true;
        self.reschedule_timers_for(i);
    }

    // ----- exits -----

    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid out pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            self.on_exit(pid, status);
        }
    }

    fn on_exit(&mut self, pid: i32, status: i32) {
        if let Some(m) = &mut self.main {
            if m.pid == pid {
                let code = hooks::exit_code(status);
                m.code = Some(code);
                log(&format!("main command exited with code {code}"));
                self.begin_shutdown("the main command exited");
                return;
            }
        }
        let outcome = |svc: &crate::units::systemd::Service, main: bool| -> Outcome {
            if libc::WIFEXITED(status) {
                let c = libc::WEXITSTATUS(status);
                if c == 0 || svc.success_exit_status.contains(&c) {
                    Outcome::Clean
                } else {
                    Outcome::ExitCode(c)
                }
            } else {
                let sig = libc::WTERMSIG(status);
                // Like systemd, a main process ended by one of the usual stop signals exited cleanly.
                if main
                    && matches!(
                        sig,
                        libc::SIGHUP | libc::SIGINT | libc::SIGTERM | libc::SIGPIPE
                    )
                {
                    Outcome::Clean
                } else {
                    Outcome::Signal(sig)
                }
            }
        };
        for i in 0..self.svcs.len() {
            if self.svcs[i]
                .control
                .as_ref()
                .is_some_and(|(p, _)| *p == pid)
            {
                let (_, cmd) = self.svcs[i].control.take().expect("checked");
                let o = outcome(&self.svcs[i].def.service, false);
                self.dirty = true;
                if o != Outcome::Clean && !cmd.flags.ignore_failure {
                    match self.svcs[i].phase {
                        Phase::Stop | Phase::StopPost | Phase::Kill => {
                            log(&format!(
                                "{}: {} failed ({})",
                                self.svcs[i].def.name,
                                cmd.argv.join(" "),
                                describe(o)
                            ));
                        }
                        Phase::Reload => {
                            log(&format!(
                                "{}: reload failed ({})",
                                self.svcs[i].def.name,
                                describe(o)
                            ));
                            self.svcs[i].reload_failed = Some(describe(o));
                            self.svcs[i].phase = Phase::Idle;
                            return;
                        }
                        _ => {
                            self.phase_failed(
                                i,
                                format!("{} failed with {}", cmd.argv.join(" "), describe(o)),
                                o,
                            );
                            return;
                        }
                    }
                }
                if self.svcs[i].phase != Phase::Kill {
                    self.next_control(i);
                }
                return;
            }
            if self.svcs[i].main_pid == Some(pid) {
                self.svcs[i].main_pid = None;
                let o = outcome(&self.svcs[i].def.service, true);
                if self.follows_pid_file(i) {
                    // Its script may be restarting it: the pid file decides (see `follow`).
                    let s = &mut self.svcs[i];
                    log(&format!(
                        "{}: main process {pid} ended{}; looking for its successor in its pid file",
                        s.def.name,
                        match describe(o) {
                            d if d.is_empty() => String::new(),
                            d => format!(" ({d})"),
                        }
                    ));
                    s.watch.lose(Instant::now(), o);
                    self.dirty = true;
                } else {
                    self.main_exited(i, o);
                }
                return;
            }
        }
        // An orphan re-parented to us: reaped, nothing else to do.
    }

    fn main_exited(&mut self, i: usize, o: Outcome) {
        self.dirty = true;
        let s = &mut self.svcs[i];
        match s.phase {
            Phase::Stop | Phase::Kill | Phase::StopPost => {}
            Phase::Start | Phase::Pre => {
                let why = if o == Outcome::Clean {
                    "exited before it was ready".to_string()
                } else {
                    format!("main process exited during start ({})", describe(o))
                };
                let fo = if o == Outcome::Clean {
                    Outcome::ExitCode(0)
                } else {
                    o
                };
                self.phase_failed(i, why, fo);
            }
            _ => {
                // Running (or in ExecStartPost): the service is over.
                if let (Some((c, _)), Phase::Post) = (&s.control, s.phase) {
                    signals::send(*c, libc::SIGTERM);
                }
                let name = s.def.name.clone();
                if o == Outcome::Clean {
                    log(&format!("{name}: main process exited"));
                } else {
                    log(&format!("{name}: main process failed ({})", describe(o)));
                }
                s.failure = Some(o);
                // A clean end still says why the service is no longer running.
                s.result = match o {
                    Outcome::Clean => "main process exited".into(),
                    _ => describe(o),
                };
                s.state = State::Stopping;
                // The rest of its processes go too, then ExecStopPost.
                self.begin_kill(i);
            }
        }
    }

    fn phase_failed(&mut self, i: usize, why: String, o: Outcome) {
        let name = self.svcs[i].def.name.clone();
        log(&format!("{name}: {why}"));
        let s = &mut self.svcs[i];
        s.result = if o == Outcome::Timeout {
            "timeout".into()
        } else {
            why
        };
        s.failure = Some(o);
        s.state = State::Stopping;
        s.queue.clear();
        self.begin_kill(i);
    }

    // ----- stopping -----

    /// Stops `i` alone (see [`Supervisor::stop`] for it and its dependents).
    fn stop_one(&mut self, i: usize) {
        let s = &mut self.svcs[i];
        s.stop_requested = true;
        s.restart_at = None;
        match s.state {
            State::Active | State::Starting => {}
            State::AutoRestart => {
                s.state = State::Inactive;
                self.dirty = true;
                return;
            }
            _ => return,
        }
        self.dirty = true;
        if s.state == State::Starting {
            // Abort the start: its processes are killed below.
            s.queue.clear();
            s.state = State::Stopping;
            self.begin_kill(i);
            return;
        }
        s.state = State::Stopping;
        s.phase = Phase::Stop;
        s.deadline = s
            .def
            .service
            .timeout_stop
            .finite()
            .map(|d| Instant::now() + d);
        s.queue = s.def.service.exec_stop.iter().cloned().collect();
        log(&format!("{}: stopping", s.def.name));
        self.next_control(i);
    }

    fn kill_targets(&self, i: usize) -> Vec<i32> {
        let s = &self.svcs[i];
        let mut t: Vec<i32> = Vec::new();
        if let Some((p, _)) = &s.control {
            t.push(*p);
        }
        match s.def.service.kill_mode {
            KillMode::None => {}
            KillMode::Process => t.extend(s.main_pid),
            KillMode::ControlGroup | KillMode::Mixed => {
                t.extend(s.main_pid);
                for p in procs::marked(&s.def.name) {
                    if !t.contains(&p) {
                        t.push(p);
                    }
                }
            }
        }
        t.retain(|&p| signals::alive(p));
        t
    }

    fn begin_kill(&mut self, i: usize) {
        let targets = self.kill_targets(i);
        let s = &mut self.svcs[i];
        s.phase = Phase::Kill;
        s.kill_escalated = false;
        s.deadline = s
            .def
            .service
            .timeout_stop
            .finite()
            .map(|d| Instant::now() + d);
        if targets.is_empty() {
            self.begin_stop_post(i);
            return;
        }
        let sig = s.kill_signal;
        let mixed = s.def.service.kill_mode == KillMode::Mixed;
        for p in targets {
            let is_main = Some(p) == s.main_pid || s.control.as_ref().is_some_and(|(c, _)| *c == p);
            if mixed && !is_main {
                continue;
            }
            signals::send(p, sig);
            signals::send(p, libc::SIGCONT);
        }
    }

    fn check_killed(&mut self, i: usize) {
        let s = &self.svcs[i];
        if s.control.is_some() || s.main_pid.is_some_and(signals::alive) {
            return;
        }
        let rest = match s.def.service.kill_mode {
            KillMode::ControlGroup => procs::marked(&s.def.name),
            KillMode::Mixed => {
                // The main process is gone: the rest get SIGKILL, as in systemd.
                for p in procs::marked(&s.def.name) {
                    signals::send(p, libc::SIGKILL);
                }
                Vec::new()
            }
            _ => Vec::new(),
        };
        if rest.is_empty() {
            self.svcs[i].main_pid = None;
            self.begin_stop_post(i);
        }
    }

    fn begin_stop_post(&mut self, i: usize) {
        let s = &mut self.svcs[i];
        s.phase = Phase::StopPost;
        s.deadline = s
            .def
            .service
            .timeout_stop
            .finite()
            .map(|d| Instant::now() + d);
        s.queue = s.def.service.exec_stop_post.iter().cloned().collect();
        self.next_control(i);
    }

    fn finish_stop(&mut self, i: usize) {
        let now = Instant::now();
        self.dirty = true;
        let shutting_down = self.shutdown_started.is_some();
        let s = &mut self.svcs[i];
        s.phase = Phase::Idle;
        s.deadline = None;
        s.main_pid = None;
        s.notify = None;
        s.listeners.clear();
        s.socket_fds.clear();
        s.socket_conn = None;
        let _ = std::fs::remove_file(notify_path(i));
        s.last_inactive = Some(now);
        dirs::remove_runtime(std::path::Path::new("/"), &s.def.service);
        let name = s.def.name.clone();
        if s.stop_requested && s.failure.is_none() {
            if !shutting_down {
                // Down on purpose (systemctl stop, or with a unit it needs): health says so.
                s.result = "stopped by request".into();
            }
            s.state = if s.def.autostart {
                State::Inactive
            } else {
                State::Waiting
            };
            log(&format!("{name}: stopped"));
        } else {
            let o = s.failure.unwrap_or(Outcome::Clean);
            let restart = !shutting_down
                && !s.stop_requested
                && should_restart(
                    s.def.service.restart,
                    o,
                    &s.def.service.restart_prevent_exit_status,
                );
            if restart {
                s.state = State::AutoRestart;
                s.restart_at = Some(now + s.def.service.restart_sec);
                log(&format!(
                    "{name}: restarting in {:?}",
                    s.def.service.restart_sec
                ));
            } else if o == Outcome::Clean {
                s.state = if s.def.autostart {
                    State::Inactive
                } else {
                    State::Waiting
                };
            } else {
                s.state = State::Failed;
                if s.result.is_empty() {
                    s.result = describe(o);
                }
            }
        }
        let note = match self.svcs[i].state {
            State::Failed => format!("{name}: failed: {}.", self.svcs[i].result),
            State::AutoRestart => format!("{name}: scheduled to restart."),
            _ => format!("Stopped {name}."),
        };
        self.pump.note(&name, &note);
        self.reschedule_timers_for(i);
        self.stop_bound(i);
    }

    fn check_deadline(&mut self, i: usize, now: Instant) {
        let s = &mut self.svcs[i];
        let Some(d) = s.deadline else { return };
        if now < d {
            return;
        }
        s.deadline = None;
        let name = s.def.name.clone();
        match s.phase {
            Phase::Pre | Phase::Start | Phase::Post => {
                log(&format!("{name}: start timed out"));
                self.phase_failed(i, "start timed out".into(), Outcome::Timeout);
            }
            Phase::Stop | Phase::StopPost => {
                log(&format!("{name}: stop command timed out"));
                if let Some((p, _)) = s.control.take() {
                    signals::send(p, libc::SIGKILL);
                }
                if s.phase == Phase::Stop {
                    self.begin_kill(i);
                } else {
                    self.finish_stop(i);
                }
            }
            Phase::Kill => {
                if s.kill_escalated || !s.def.service.send_sigkill {
                    log(&format!("{name}: processes survive SIGKILL; leaving them"));
                    s.control = None;
                    s.main_pid = None;
                    self.begin_stop_post(i);
                    return;
                }
                log(&format!("{name}: did not stop in time; sending SIGKILL"));
                s.kill_escalated = true;
                s.deadline = Some(now + Duration::from_secs(5));
                let mut targets: Vec<i32> = procs::marked(&s.def.name);
                targets.extend(s.main_pid);
                if let Some((p, _)) = &s.control {
                    targets.push(*p);
                }
                for p in targets {
                    signals::send(p, libc::SIGKILL);
                }
            }
            Phase::Reload | Phase::Idle => {}
        }
    }

    // ----- following main processes we did not start -----

    /// Whether service `i` is running and its main process is followed through pid files.
    fn follows_pid_file(&self, i: usize) -> bool {
        let s = &self.svcs[i];
        s.state == State::Active
            && matches!(s.phase, Phase::Idle | Phase::Reload)
            && s.watch.by_pid_file()
    }

    /// One look at a running service's main process (see [`pidfiles`]): a pid file naming
    /// a new process is followed; a main process gone for good ends the service.
    fn follow(&mut self, i: usize, now: Instant) {
        let me = std::process::id() as i32;
        let s = &mut self.svcs[i];
        if s.state != State::Active || !matches!(s.phase, Phase::Idle | Phase::Reload) {
            s.watch.disarm();
            return;
        }
        // Our own children are reaped (SIGCHLD says when they end): a service without pid
        // file whose main process is our child needs no looking at.
        let stranger = s.main_pid.is_some_and(|m| procs::parent(m) != Some(me));
        if !s.watch.by_pid_file() && !stranger && !s.watch.losing() {
            s.watch.disarm();
            return;
        }
        let main = s.main_pid;
        let name = s.def.name.clone();
        match s
            .watch
            .check(main, now, &signals::alive, &procs::read_pid_file)
        {
            pidfiles::Verdict::Same => {}
            pidfiles::Verdict::Adopt(p) => {
                log(&format!("{name}: main process is pid {p} (its pid file)"));
                s.main_pid = Some(p);
                self.dirty = true;
            }
            pidfiles::Verdict::Lost => {
                log(&format!(
                    "{name}: main process {} is gone",
                    main.unwrap_or_default()
                ));
                s.main_pid = None;
                self.dirty = true;
            }
            pidfiles::Verdict::Gone(o) => {
                // A daemon that ended on its own, even cleanly, leaves a service that no
                // longer serves: a failure.
                let o = if o == Outcome::Clean {
                    Outcome::Vanished
                } else {
                    o
                };
                self.main_exited(i, o);
            }
        }
    }

    // ----- timers -----

    fn timer_target(&self, i: usize) -> Option<usize> {
        let unit = &self.svcs[i].def.timer.as_ref()?.unit;
        self.svcs
            .iter()
            .position(|s| s.def.name == *unit || s.def.provides.contains(unit))
    }

    fn schedule_timer(&mut self, i: usize, now: Instant) {
        let Some(t) = self.svcs[i].def.timer.clone() else {
            return;
        };
        let target = self.timer_target(i);
        let clock = timers::TimerClock {
            boot: self.boot,
            now,
            wall: timers::wall_now(),
            last_fired: self.svcs[i].timer_last,
            unit_active: target.and_then(|j| self.svcs[j].last_active),
            unit_inactive: target.and_then(|j| self.svcs[j].last_inactive),
        };
        self.svcs[i].timer_next = timers::next_elapse(&t, &clock);
        if t.persistent && self.svcs[i].timer_last.is_none() && self.shutdown_started.is_none() {
            let name = self.svcs[i].def.name.clone();
            if let Some(last) = timers::last_stamp(&name) {
                if timers::missed(&t, last, clock.wall) {
                    log(&format!(
                        "{name}: missed an event while down (Persistent=yes)"
                    ));
                    self.svcs[i].timer_next = Some(now);
                }
            }
        }
    }

    fn reschedule_timers_for(&mut self, j: usize) {
        if self.shutdown_started.is_some() {
            return;
        }
        let now = Instant::now();
        for i in 0..self.svcs.len() {
            if self.svcs[i].def.timer.is_some() && self.timer_target(i) == Some(j) {
                self.schedule_timer(i, now);
            }
        }
    }

    fn fire_timer(&mut self, i: usize, now: Instant) {
        self.svcs[i].timer_last = Some(now);
        if self.svcs[i]
            .def
            .timer
            .as_ref()
            .is_some_and(|t| t.persistent)
        {
            if let Err(e) = timers::touch_stamp(&self.svcs[i].def.name) {
                log(&format!(
                    "{}: cannot record its run: {e}",
                    self.svcs[i].def.name
                ));
            }
        }
        self.svcs[i].timer_next = None;
        self.dirty = true;
        match self.timer_target(i) {
            Some(j)
                if !self.svcs[j].state.running() && self.svcs[j].state != State::AutoRestart =>
            {
                log(&format!(
                    "{}: elapsed, starting {}",
                    self.svcs[i].def.name, self.svcs[j].def.name
                ));
                self.start(j);
            }
            Some(_) => {}
            None => log(&format!(
                "{}: elapsed, but its service is not available",
                self.svcs[i].def.name
            )),
        }
        self.schedule_timer(i, now);
    }

    // ----- events -----

    fn wait_for_events(&mut self) {
        let now = Instant::now();
        let mut timeout = Duration::from_secs(60);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                timeout = timeout.min(t.saturating_duration_since(now));
            }
        };
        for s in &self.svcs {
            consider(s.deadline);
            consider(s.restart_at);
            consider(s.timer_next);
            consider(s.watch.next);
            if s.phase == Phase::Kill {
                // Processes outside our children are checked by polling /proc.
                consider(Some(now + Duration::from_millis(50)));
            }
        }
        if let Some(st) = self.shutdown_started {
            consider(Some(st + self.opts.stop_timeout));
        }
        let mut fds: Vec<libc::pollfd> = vec![libc::pollfd {
            fd: self.sigfd,
            events: libc::POLLIN,
            revents: 0,
        }];
        for s in &self.svcs {
            if let Some(n) = &s.notify {
                fds.push(libc::pollfd {
                    fd: n.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        for fd in self.socket_fds() {
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        for fd in self.ctl.fds() {
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        for fd in self.pump.fds() {
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let ms = timeout.as_millis().min(60_000) as i32
            + if !timeout.subsec_micros().is_multiple_of(1000) {
                1
            } else {
                0
            };
        // SAFETY: poll over a live vector of pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n <= 0 {
            return;
        }
        for p in &fds {
            if p.revents == 0 {
                continue;
            }
            if p.fd == self.sigfd {
                for sig in signals::read_pending(self.sigfd) {
                    self.on_signal(sig);
                }
            } else if let Some(i) = self
                .svcs
                .iter()
                .position(|s| s.notify.as_ref().is_some_and(|n| n.as_raw_fd() == p.fd))
            {
                self.on_notify(i);
            } else if self.ctl.owns(p.fd) {
                self.on_control(p.fd);
            } else if let Some(i) = self.socket_of(p.fd) {
                self.on_socket(i, p.fd);
            } else {
                self.pump.read(p.fd);
            }
        }
    }

    fn on_signal(&mut self, sig: i32) {
        if sig == libc::SIGCHLD {
            self.reap();
            return;
        }
        if self.opts.forward_all {
            if let Some(m) = &self.main {
                if m.code.is_none() {
                    signals::send(-m.pid, sig);
                }
            }
            if is_stop_signal(sig) {
                self.begin_shutdown(&format!("received {}", signals::name(sig)));
            }
            return;
        }
        if is_stop_signal(sig) {
            self.begin_shutdown(&format!("received {}", signals::name(sig)));
        } else if sig == libc::SIGHUP {
            log("SIGHUP: reloading services");
            for i in 0..self.svcs.len() {
                let s = &mut self.svcs[i];
                if s.state == State::Active
                    && s.phase == Phase::Idle
                    && !s.def.service.exec_reload.is_empty()
                {
                    s.phase = Phase::Reload;
                    s.queue = s.def.service.exec_reload.iter().cloned().collect();
                    self.next_control(i);
                }
            }
        } else if let Some(m) = self.main.as_ref().filter(|m| m.code.is_none()) {
            signals::send(-m.pid, sig);
        } else {
            for s in &self.svcs {
                if let Some(p) = s.main_pid {
                    signals::send(p, sig);
                }
            }
        }
    }

    fn on_notify(&mut self, i: usize) {
        let mut buf = [0u8; 4096];
        loop {
            let Some(sock) = &self.svcs[i].notify else {
                return;
            };
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(_) => return,
            };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            for line in msg.lines() {
                if let Some(p) = line.strip_prefix("MAINPID=") {
                    if let Ok(pid) = p.trim().parse::<i32>() {
                        let s = &mut self.svcs[i];
                        s.main_pid = Some(pid);
                        // Possibly not our child: looked at while it runs.
                        if s.state == State::Active {
                            s.watch.arm(Instant::now());
                        }
                    }
                } else if line == "READY=1" && self.svcs[i].phase == Phase::Start {
                    self.begin_post(i);
                }
            }
        }
    }

    fn publish(&mut self, phase: &str) {
        self.dirty = false;
        let Some(path) = self.opts.status_path.clone() else {
            return;
        };
        let services = (0..self.svcs.len())
            .map(|i| (&self.svcs[i], self.shown_state(i)))
            .map(|(s, (state, result))| ServiceStatus {
                name: s.def.name.clone(),
                kind: s.def.kind.as_str().into(),
                state: state.as_str().into(),
                result,
                main_pid: s.main_pid,
                restarts: s.restarts,
                critical: s.def.critical,
                optional: s.def.optional,
            })
            .collect();
        let st = Status {
            pid: std::process::id() as i32,
            mode: self.opts.mode.as_str().into(),
            phase: phase.into(),
            services,
        };
        if let Some(dir) = std::path::Path::new(&path).parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = st.write(&path) {
            log(&format!("cannot write {path}: {e}"));
            self.opts.status_path = None;
        }
    }
}

fn notify_path(i: usize) -> String {
    format!("{RUN_DIR}/notify/{i}.sock")
}

fn bind_notify(i: usize) -> std::io::Result<UnixDatagram> {
    let p = notify_path(i);
    let _ = std::fs::remove_file(&p);
    let sock = UnixDatagram::bind(&p)?;
    sock.set_nonblocking(true)?;
    // Services running as other users must be able to send READY=1.
    let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777));
    Ok(sock)
}

impl ServiceDef {
    /// The prefix for this service's log lines: `SyslogIdentifier=`, else its name without
    /// `.service`.
    pub fn syslog_name(&self) -> String {
        self.service.syslog_identifier.clone().unwrap_or_else(|| {
            self.name
                .strip_suffix(".service")
                .unwrap_or(&self.name)
                .to_string()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies() {
        use Outcome::*;
        use RestartPolicy as R;
        assert!(!should_restart(R::No, ExitCode(1), &[]));
        assert!(should_restart(R::Always, Clean, &[]));
        assert!(should_restart(R::OnFailure, ExitCode(1), &[]));
        assert!(!should_restart(R::OnFailure, Clean, &[]));
        assert!(!should_restart(R::OnFailure, ExitCode(255), &[255]));
        assert!(should_restart(R::OnAbnormal, Signal(9), &[]));
        assert!(!should_restart(R::OnAbnormal, ExitCode(3), &[]));
        assert!(should_restart(R::OnSuccess, Clean, &[]));
        assert!(should_restart(R::OnAbort, Signal(6), &[]));
        assert!(!should_restart(R::OnAbort, Timeout, &[]));
    }
}
