//! The supervisor's side of the control socket ([`crate::control`]): it accepts requests
//! without ever blocking the event loop (connections are non-blocking and capped), runs
//! them with the same state machine as boot and restarts, and answers a job when it has
//! ended, as systemctl waits for its job.

use super::{Phase, State, Supervisor, Svc};
use crate::config::{ServiceEntry, ServiceKind};
use crate::control::{Answer, JobResult, Request, UnitInfo, Verb, Whom, MAX_REQUEST, SOCKET};
use crate::service::ServiceDef;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// More waiting clients than this and the oldest is dropped.
const MAX_CONNECTIONS: usize = 64;

/// A client whose request is not complete yet.
struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
    uid: u32,
}

/// Where one unit's job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Stopping { then_start: bool },
    Starting,
    Reloading,
    Done,
}

struct UnitJob {
    name: String,
    i: usize,
    stage: Stage,
    result: Option<JobResult>,
}

/// A job a client waits for.
struct Job {
    stream: UnixStream,
    units: Vec<UnitJob>,
}

/// The socket, its clients, and the jobs they wait for.
#[derive(Default)]
pub struct Control {
    listener: Option<UnixListener>,
    conns: Vec<Conn>,
    jobs: Vec<Job>,
}

impl Control {
    /// Starts listening (a failure is logged: the services run anyway).
    pub fn listen(&mut self) {
        let _ = std::fs::remove_file(SOCKET);
        match UnixListener::bind(SOCKET) {
            Ok(l) => {
                let _ = l.set_nonblocking(true);
                // Everybody may ask; only root may change (checked per request).
                let _ = std::fs::set_permissions(SOCKET, std::fs::Permissions::from_mode(0o666));
                self.listener = Some(l);
            }
            Err(e) => super::log(&format!(
                "cannot listen on {SOCKET}: {e} (systemctl and service will not work)"
            )),
        }
    }

    /// The fds to poll.
    pub fn fds(&self) -> Vec<i32> {
        self.listener
            .iter()
            .map(|l| l.as_raw_fd())
            .chain(self.conns.iter().map(|c| c.stream.as_raw_fd()))
            .collect()
    }

    /// Whether `fd` is one of ours.
    pub fn owns(&self, fd: i32) -> bool {
        self.fds().contains(&fd)
    }

    /// Stops listening; waiting clients are told the init is stopping.
    pub fn close(&mut self) {
        if self.listener.take().is_some() {
            let _ = std::fs::remove_file(SOCKET);
        }
        for mut job in std::mem::take(&mut self.jobs) {
            let results = job
                .units
                .iter()
                .map(|u| {
                    u.result.clone().unwrap_or_else(|| JobResult {
                        name: u.name.clone(),
                        outcome: "failed".into(),
                        message: "the init is stopping".into(),
                    })
                })
                .collect();
            reply(&mut job.stream, &Answer::Jobs { results });
        }
        self.conns.clear();
    }
}

fn reply(stream: &mut UnixStream, answer: &Answer) {
    let mut line = serde_json::to_vec(answer).unwrap_or_default();
    line.push(b'\n');
    // A client that does not read gets two seconds, never the init's whole loop.
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = stream.write_all(&line);
}

/// The uid of the process at the other end.
fn peer_uid(stream: &UnixStream) -> Option<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut libc::ucred as *mut libc::c_void,
            &mut len,
        )
    };
    (rc == 0).then_some(cred.uid)
}

fn epoch(t: Option<Instant>) -> Option<u64> {
    let t = t?;
    let ago = Instant::now().saturating_duration_since(t);
    SystemTime::now()
        .checked_sub(ago)?
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// systemd's active and sub state of a service.
fn active_sub(s: &Svc) -> (&'static str, &'static str) {
    match s.state {
        State::Inactive | State::Exited | State::Skipped => ("inactive", "dead"),
        State::Waiting if s.def.timer.is_some() => ("active", "waiting"),
        State::Waiting => ("inactive", "dead"),
        State::Starting => (
            "activating",
            match s.phase {
                Phase::Pre => "start-pre",
                Phase::Post => "start-post",
                _ => "start",
            },
        ),
        State::Active if s.phase == Phase::Reload => ("reloading", "reload"),
        State::Active if s.def.socket.is_some() => ("active", "listening"),
        State::Active if s.main_pid.is_none() && s.def.service.remain_after_exit => {
            ("active", "exited")
        }
        State::Active => ("active", "running"),
        State::AutoRestart => ("activating", "auto-restart"),
        State::Stopping => (
            "deactivating",
            match s.phase {
                Phase::Stop => "stop",
                Phase::StopPost => "stop-post",
                _ => "stop-sigterm",
            },
        ),
        State::Failed => ("failed", "failed"),
    }
}

/// Whether `asked` names the service `def` (`nginx` and `nginx.service` are one).
fn names(def: &ServiceDef, asked: &str) -> bool {
    let bare = |n: &str| n.strip_suffix(".service").unwrap_or(n).to_string();
    def.name == asked
        || bare(&def.name) == bare(asked)
        || def
            .provides
            .iter()
            .any(|p| p == asked || bare(p) == bare(asked))
}

impl Supervisor {
    /// Reads what clients sent on `fd` (or accepts new ones) and answers complete requests.
    pub(super) fn on_control(&mut self, fd: i32) {
        if self
            .ctl
            .listener
            .as_ref()
            .is_some_and(|l| l.as_raw_fd() == fd)
        {
            while let Some(Ok((stream, _))) = self.ctl.listener.as_ref().map(|l| l.accept()) {
                let _ = stream.set_nonblocking(true);
                let uid = peer_uid(&stream).unwrap_or(u32::MAX);
                if self.ctl.conns.len() >= MAX_CONNECTIONS {
                    self.ctl.conns.remove(0);
                }
                self.ctl.conns.push(Conn {
                    stream,
                    buf: Vec::new(),
                    uid,
                });
            }
            return;
        }
        let Some(k) = self
            .ctl
            .conns
            .iter()
            .position(|c| c.stream.as_raw_fd() == fd)
        else {
            return;
        };
        let mut chunk = [0u8; 4096];
        let conn = &mut self.ctl.conns[k];
        let complete = loop {
            match conn.stream.read(&mut chunk) {
                Ok(0) => break None,
                Ok(n) => {
                    conn.buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = conn.buf.iter().position(|b| *b == b'\n') {
                        break Some(Ok(end));
                    }
                    if conn.buf.len() > MAX_REQUEST {
                        break Some(Err(format!("request longer than {MAX_REQUEST} bytes")));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break None,
            }
        };
        let mut conn = self.ctl.conns.remove(k);
        let request = match complete {
            None => return,
            Some(Err(why)) => Err(why),
            Some(Ok(end)) => serde_json::from_slice::<Request>(&conn.buf[..end])
                .map_err(|e| format!("unreadable request: {e}")),
        };
        let req = match request {
            Ok(r) => r,
            Err(message) => {
                reply(&mut conn.stream, &Answer::Error { message });
                return;
            }
        };
        if req.mutates() && conn.uid != 0 {
            let message = "Access denied: only root may change services".to_string();
            reply(&mut conn.stream, &Answer::Error { message });
            return;
        }
        match self.handle(req) {
            Ok(answer) => reply(&mut conn.stream, &answer),
            Err(units) => {
                self.ctl.jobs.push(Job {
                    stream: conn.stream,
                    units,
                });
                self.advance_jobs();
            }
        }
    }

    /// Answers at once, or returns the units of a job to wait for.
    fn handle(&mut self, req: Request) -> Result<Answer, Vec<UnitJob>> {
        let shutting_down = self.shutdown_started.is_some();
        Ok(match req {
            Request::Units { names } => self.units(&names),
            Request::ShowEnvironment => Answer::Environment {
                assignments: self
                    .base_env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
            },
            Request::SetEnvironment { assignments } => {
                let mut parsed = Vec::new();
                for a in &assignments {
                    match a.split_once('=') {
                        Some((k, v)) if valid_name(k) => parsed.push((k, v)),
                        _ => {
                            return Ok(Answer::Error {
                                message: format!(
                                    "Invalid environment assignment: {}",
                                    a.chars().take(200).collect::<String>().escape_debug()
                                ),
                            })
                        }
                    }
                }
                for (k, v) in parsed {
                    self.base_env.insert(k.to_string(), v.to_string());
                }
                Answer::Ok
            }
            Request::UnsetEnvironment { names } => {
                for n in &names {
                    match n.split_once('=') {
                        // `K=V` unsets K only while it has that value, as systemd does.
                        Some((k, v)) => {
                            if self.base_env.get(k).is_some_and(|x| x == v) {
                                self.base_env.remove(k);
                            }
                        }
                        None => {
                            self.base_env.remove(n.as_str());
                        }
                    }
                }
                Answer::Ok
            }
            Request::DaemonReload => {
                self.daemon_reload();
                Answer::Ok
            }
            Request::Kill {
                names,
                signal,
                whom,
            } => Answer::Jobs {
                results: names.iter().map(|n| self.kill(n, signal, whom)).collect(),
            },
            Request::Job { .. } if shutting_down => Answer::Error {
                message: "Transaction refused: the init is shutting down".into(),
            },
            Request::Job { verb, names, wait } => {
                let mut units = Vec::new();
                for n in &names {
                    units.extend(self.begin_job(n, verb));
                }
                if wait && units.iter().any(|u| u.stage != Stage::Done) {
                    return Err(units);
                }
                Answer::Jobs {
                    results: units
                        .into_iter()
                        .map(|u| {
                            u.result.unwrap_or(JobResult {
                                name: u.name,
                                outcome: "queued".into(),
                                message: String::new(),
                            })
                        })
                        .collect(),
                }
            }
        })
    }

    fn units(&self, asked: &[String]) -> Answer {
        let units = self
            .svcs
            .iter()
            .filter(|s| asked.is_empty() || asked.iter().any(|a| names(&s.def, a)))
            .map(|s| self.info(s))
            .collect();
        Answer::Units {
            units,
            system: self.system_state().into(),
        }
    }

    /// `systemctl is-system-running`'s answer.
    pub(super) fn system_state(&self) -> &'static str {
        if self.shutdown_started.is_some() {
            "stopping"
        } else if self
            .svcs
            .iter()
            .any(|s| s.def.autostart && matches!(s.state, State::Inactive | State::Starting))
        {
            "starting"
        } else if self.svcs.iter().any(|s| s.state == State::Failed) {
            "degraded"
        } else {
            "running"
        }
    }

    fn info(&self, s: &Svc) -> UnitInfo {
        let (active, sub) = active_sub(s);
        UnitInfo {
            name: s.def.name.clone(),
            names: s.def.provides.clone(),
            kind: s.def.kind.as_str().into(),
            description: s.def.description.clone().unwrap_or_default(),
            active: active.into(),
            sub: sub.into(),
            unit_file_state: if s.def.autostart || s.def.timer.is_some() {
                "enabled"
            } else {
                "static"
            }
            .into(),
            result: if s.result.is_empty() {
                "success".into()
            } else {
                s.result.clone()
            },
            main_pid: s.main_pid,
            restarts: s.restarts,
            active_enter: epoch(s.last_active),
            inactive_enter: epoch(s.last_inactive),
            next_elapse: epoch_ahead(s.timer_next),
            last_trigger: epoch(s.timer_last),
            triggers: s.def.timer.as_ref().map(|t| t.unit.clone()),
            service_type: s.def.service.service_type.as_str().into(),
            can_reload: !s.def.service.exec_reload.is_empty(),
        }
    }

    /// The service named `asked`, loading it from the image when the init does not run it
    /// yet (an operator may start any service the image has, as under systemd).
    pub(super) fn find_or_load(&mut self, asked: &str) -> Option<usize> {
        if let Some(i) = self.svcs.iter().position(|s| names(&s.def, asked)) {
            return Some(i);
        }
        let root = crate::units::HostRoot::new("/");
        let bare = asked.strip_suffix(".service").unwrap_or(asked);
        let mut tries = Vec::new();
        if asked.contains('.') {
            tries.push((asked.to_string(), ServiceKind::Systemd));
        } else {
            tries.push((format!("{asked}.service"), ServiceKind::Systemd));
        }
        tries.push((bare.to_string(), self.script_kind()));
        let def = tries.into_iter().find_map(|(name, kind)| {
            let entry = ServiceEntry {
                name,
                kind,
                critical: false,
                optional: false,
            };
            crate::service::load(&root, &entry).ok()
        })?;
        let mut def = def;
        def.autostart = false;
        // Not a kept service: the container's health does not hang on it.
        def.optional = true;
        super::log(&format!("{}: loaded on request", def.name));
        self.svcs.push(Svc::new(def));
        self.reorder();
        Some(self.svcs.len() - 1)
    }

    /// What defines the image's /etc/init.d scripts.
    fn script_kind(&self) -> ServiceKind {
        let root = crate::units::HostRoot::new("/");
        match crate::model::InitSystem::detect(&root).kind {
            crate::model::InitKind::Openrc => ServiceKind::Openrc,
            _ => ServiceKind::Sysv,
        }
    }

    fn reorder(&mut self) {
        let defs: Vec<ServiceDef> = self.svcs.iter().map(|s| s.def.clone()).collect();
        self.order = crate::order::resolve(&defs);
    }

    fn daemon_reload(&mut self) {
        let root = crate::units::HostRoot::new("/");
        for s in &mut self.svcs {
            let entry = ServiceEntry {
                name: s.def.name.clone(),
                kind: s.def.kind,
                critical: s.def.critical,
                optional: s.def.optional,
            };
            match crate::service::load(&root, &entry) {
                Ok(mut def) => {
                    def.autostart = s.def.autostart;
                    def.pulled_in_by = s.def.pulled_in_by.take();
                    s.def = def;
                }
                Err(e) => super::log(&format!("daemon-reload: {}: {e}", s.def.name)),
            }
        }
        self.reorder();
        super::log("daemon-reload: definitions read again (used from each unit's next start)");
    }

    fn kill(&mut self, asked: &str, signal: i32, whom: Whom) -> JobResult {
        let Some(i) = self.svcs.iter().position(|s| names(&s.def, asked)) else {
            return not_found(asked);
        };
        let s = &self.svcs[i];
        let mut targets: Vec<i32> = s.main_pid.into_iter().collect();
        if whom == Whom::All {
            targets.extend(s.control.as_ref().map(|(p, _)| *p));
            for p in super::procs::marked(&s.def.name) {
                if !targets.contains(&p) {
                    targets.push(p);
                }
            }
        }
        targets.retain(|&p| super::signals::alive(p));
        if targets.is_empty() {
            return JobResult {
                name: asked.into(),
                outcome: "failed".into(),
                message: format!("No process of {} to signal", s.def.name),
            };
        }
        for p in targets {
            super::signals::send(p, signal);
        }
        JobResult {
            name: asked.into(),
            outcome: "done".into(),
            message: String::new(),
        }
    }

    /// Starts one unit's job, and for a restart the jobs that start again what its stop
    /// took down with it (`Requires=`, `BindsTo=`, `PartOf=`), as systemd does.
    fn begin_job(&mut self, asked: &str, verb: Verb) -> Vec<UnitJob> {
        let Some(i) = self.find_or_load(asked) else {
            return vec![UnitJob {
                name: asked.into(),
                i: usize::MAX,
                stage: Stage::Done,
                result: Some(not_found(asked)),
            }];
        };
        let dependents: Vec<usize> = self
            .order
            .stop_closure(i)
            .into_iter()
            .filter(|&j| self.svcs[j].state.running() || self.svcs[j].state == State::AutoRestart)
            .collect();
        let job = self.begin_one(i, asked, verb);
        let mut jobs = vec![];
        if verb == Verb::Start {
            // What it wants or requires starts with it (a oneshot wrapper's daemons).
            let def = &self.svcs[i].def;
            let pulled: Vec<usize> = def
                .requires
                .iter()
                .chain(&def.wants)
                .chain(&def.linked)
                .filter_map(|n| self.svcs.iter().position(|s| names(&s.def, n)))
                .filter(|&j| j != i)
                .collect();
            for j in pulled {
                let s = &self.svcs[j];
                if s.state.running() || s.state == State::AutoRestart {
                    continue;
                }
                let mut pulled_job = UnitJob {
                    name: s.def.name.clone(),
                    i: j,
                    stage: Stage::Done,
                    result: None,
                };
                self.job_start(&mut pulled_job);
                jobs.push(pulled_job);
            }
        }
        // The job ends when what went down with the unit is down too (and, for a
        // restart, up again).
        if let Stage::Stopping { then_start } = job.stage {
            for j in dependents {
                jobs.push(UnitJob {
                    name: self.svcs[j].def.name.clone(),
                    i: j,
                    stage: Stage::Stopping { then_start },
                    result: None,
                });
            }
        }
        jobs.insert(0, job);
        jobs
    }

    fn begin_one(&mut self, i: usize, asked: &str, verb: Verb) -> UnitJob {
        let mut job = UnitJob {
            name: asked.into(),
            i,
            stage: Stage::Done,
            result: None,
        };
        let s = &self.svcs[i];
        let running = s.state.running() || s.state == State::AutoRestart;
        let can_reload = s.state == State::Active
            && s.phase == Phase::Idle
            && !s.def.service.exec_reload.is_empty();
        match verb {
            Verb::Start => self.job_start(&mut job),
            Verb::Stop => self.job_stop(&mut job, false),
            Verb::Restart => self.job_stop(&mut job, true),
            Verb::TryRestart | Verb::TryReloadOrRestart if !running => {
                job.result = Some(done(asked))
            }
            Verb::TryRestart => self.job_stop(&mut job, true),
            Verb::Reload => {
                if s.def.service.exec_reload.is_empty() {
                    job.result = Some(JobResult {
                        name: asked.into(),
                        outcome: "not-applicable".into(),
                        message: format!(
                            "Job type reload is not applicable for unit {}.",
                            s.def.name
                        ),
                    });
                } else if s.state != State::Active {
                    job.result = Some(JobResult {
                        name: asked.into(),
                        outcome: "failed".into(),
                        message: format!("{} is not active, cannot reload.", s.def.name),
                    });
                } else {
                    self.job_reload(&mut job);
                }
            }
            Verb::ReloadOrRestart | Verb::TryReloadOrRestart => {
                if can_reload {
                    self.job_reload(&mut job);
                } else {
                    self.job_stop(&mut job, true);
                }
            }
        }
        job
    }

    fn job_start(&mut self, job: &mut UnitJob) {
        let i = job.i;
        match self.svcs[i].state {
            State::Active => job.result = Some(done(&job.name)),
            State::Starting => job.stage = Stage::Starting,
            State::Stopping => {
                job.stage = Stage::Stopping { then_start: true };
            }
            _ => {
                self.svcs[i].restart_at = None;
                self.start(i);
                job.stage = Stage::Starting;
            }
        }
    }

    fn job_stop(&mut self, job: &mut UnitJob, then_start: bool) {
        let i = job.i;
        let s = &self.svcs[i];
        if s.state.running() || s.state == State::AutoRestart {
            self.stop(job.i);
            job.stage = Stage::Stopping { then_start };
        } else if then_start {
            self.job_start(job);
        } else {
            job.result = Some(done(&job.name));
        }
    }

    fn job_reload(&mut self, job: &mut UnitJob) {
        let i = job.i;
        if self.svcs[i].phase != Phase::Idle {
            // Busy (a reload already runs): this job waits for it.
            job.stage = Stage::Reloading;
            return;
        }
        let s = &mut self.svcs[i];
        s.reload_failed = None;
        s.phase = Phase::Reload;
        s.queue = s.def.service.exec_reload.iter().cloned().collect();
        self.next_control(i);
        job.stage = Stage::Reloading;
    }

    /// Moves every waiting job on, and answers those that ended.
    pub(super) fn advance_jobs(&mut self) {
        let mut jobs = std::mem::take(&mut self.ctl.jobs);
        for job in &mut jobs {
            for u in &mut job.units {
                self.advance(u);
            }
        }
        let (finished, waiting): (Vec<Job>, Vec<Job>) = jobs
            .into_iter()
            .partition(|j| j.units.iter().all(|u| u.stage == Stage::Done));
        self.ctl.jobs.extend(waiting);
        for mut job in finished {
            let results = job
                .units
                .into_iter()
                .map(|u| u.result.unwrap_or_else(|| done(&u.name)))
                .collect();
            reply(&mut job.stream, &Answer::Jobs { results });
        }
    }

    fn advance(&mut self, u: &mut UnitJob) {
        let i = u.i;
        match u.stage {
            Stage::Done => {}
            Stage::Stopping { then_start } => {
                let s = &self.svcs[i];
                if s.state.running() || s.control.is_some() {
                    return;
                }
                if then_start {
                    self.svcs[i].restart_at = None;
                    self.start(i);
                    u.stage = Stage::Starting;
                    self.advance(u);
                } else {
                    u.stage = Stage::Done;
                    u.result = Some(done(&u.name));
                }
            }
            Stage::Starting => {
                let s = &self.svcs[i];
                match s.state {
                    State::Starting => {}
                    State::Active | State::Exited | State::Waiting | State::Skipped => {
                        u.stage = Stage::Done;
                        u.result = Some(done(&u.name));
                    }
                    _ => {
                        u.stage = Stage::Done;
                        u.result = Some(JobResult {
                            name: u.name.clone(),
                            outcome: "failed".into(),
                            message: format!(
                                "Job for {} failed: {}.\nSee \"systemctl status {}\" and \"journalctl -u {}\" for details.",
                                s.def.name,
                                if s.result.is_empty() { "it stopped" } else { &s.result },
                                s.def.name,
                                s.def.name
                            ),
                        });
                    }
                }
            }
            Stage::Reloading => {
                let s = &self.svcs[i];
                if s.phase == Phase::Reload {
                    return;
                }
                u.stage = Stage::Done;
                u.result = Some(match &s.reload_failed {
                    Some(why) => JobResult {
                        name: u.name.clone(),
                        outcome: "failed".into(),
                        message: format!("Job for {} failed: reload {why}.", s.def.name),
                    },
                    None => done(&u.name),
                });
            }
        }
    }
}

fn epoch_ahead(t: Option<Instant>) -> Option<u64> {
    let t = t?;
    let ahead = t.saturating_duration_since(Instant::now());
    (SystemTime::now() + ahead)
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

fn done(name: &str) -> JobResult {
    JobResult {
        name: name.into(),
        outcome: "done".into(),
        message: String::new(),
    }
}

fn not_found(name: &str) -> JobResult {
    let unit = if name.contains('.') {
        name.to_string()
    } else {
        format!("{name}.service")
    };
    JobResult {
        name: name.into(),
        outcome: "not-found".into(),
        message: format!("Unit {unit} not found."),
    }
}

/// An environment variable name systemd accepts.
fn valid_name(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names() {
        assert!(valid_name("_WSREP_START_POSITION"));
        assert!(valid_name("A1"));
        assert!(!valid_name("1A"));
        assert!(!valid_name(""));
        assert!(!valid_name("A-B"));
    }

    #[test]
    fn unknown_units_are_named_as_systemctl_names_them() {
        assert_eq!(
            not_found("nosuch").message,
            "Unit nosuch.service not found."
        );
        assert_eq!(not_found("a.timer").message, "Unit a.timer not found.");
    }
}
