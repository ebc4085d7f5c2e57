//! The control socket between rehost-init (pid 1 in rehost mode) and the commands run inside
//! the container (`systemctl`, `service`, `invoke-rc.d`, init scripts): one JSON request
//! line in, one JSON answer line out. The supervisor's side is
//! [`supervisor::control`](crate::supervisor::control); the commands are in [`crate::tools`].
//!
//! Everybody may ask (the socket is 0666, as systemd's bus is open to all); only root may
//! change anything, checked by the caller's credentials on the socket (`SO_PEERCRED`).

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

/// Where rehost-init listens.
pub const SOCKET: &str = "/run/rehost/control.sock";
/// Where rehost-init keeps each service's output, for `journalctl`.
pub const JOURNAL_DIR: &str = "/run/rehost/journal";
/// The longest request the supervisor reads.
pub const MAX_REQUEST: usize = 64 * 1024;
/// The longest answer a command reads.
pub const MAX_ANSWER: usize = 8 << 20;

/// What a job does to a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verb {
    Start,
    Stop,
    Restart,
    Reload,
    TryRestart,
    ReloadOrRestart,
    TryReloadOrRestart,
}

impl Verb {
    /// systemctl's name of the verb.
    pub fn parse(s: &str) -> Option<Verb> {
        Some(match s {
            "start" => Verb::Start,
            "stop" => Verb::Stop,
            "restart" => Verb::Restart,
            "reload" => Verb::Reload,
            "try-restart" | "condrestart" => Verb::TryRestart,
            "reload-or-restart" | "force-reload" => Verb::ReloadOrRestart,
            "try-reload-or-restart" => Verb::TryReloadOrRestart,
            _ => return None,
        })
    }

    /// The verb as systemctl spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
            Verb::Reload => "reload",
            Verb::TryRestart => "try-restart",
            Verb::ReloadOrRestart => "reload-or-restart",
            Verb::TryReloadOrRestart => "try-reload-or-restart",
        }
    }
}

/// Who `kill` signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Whom {
    Main,
    All,
}

/// One request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// What the named units are doing (every unit when `names` is empty).
    Units { names: Vec<String> },
    /// Start, stop, restart or reload units; with `wait`, the answer comes when the jobs end.
    Job {
        verb: Verb,
        names: Vec<String>,
        wait: bool,
    },
    /// Sends a signal to units' processes.
    Kill {
        names: Vec<String>,
        signal: i32,
        whom: Whom,
    },
    /// `KEY=VALUE` assignments for the processes started from now on.
    SetEnvironment { assignments: Vec<String> },
    /// Removes variables from the environment of processes started from now on.
    UnsetEnvironment { names: Vec<String> },
    /// The environment processes are started with.
    ShowEnvironment,
    /// Reads the definitions again (used at the next start of each unit).
    DaemonReload,
}

impl Request {
    /// Whether the request changes anything (only root may).
    pub fn mutates(&self) -> bool {
        !matches!(self, Request::Units { .. } | Request::ShowEnvironment)
    }
}

/// One unit as `systemctl show` and `status` see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UnitInfo {
    /// Its name (`nginx.service`, `cron` for a SysV script).
    pub name: String,
    /// Other names it answers to.
    #[serde(default)]
    pub names: Vec<String>,
    /// `systemd`, `sysv`, `openrc`, `upstart`.
    pub kind: String,
    /// Its description.
    #[serde(default)]
    pub description: String,
    /// `active`, `reloading`, `inactive`, `failed`, `activating`, `deactivating`.
    pub active: String,
    /// `running`, `exited`, `dead`, `failed`, `start-pre`, `waiting`, …
    pub sub: String,
    /// `enabled` (started at boot), `static` (started by a timer or by hand).
    pub unit_file_state: String,
    /// Why it ended as it did (`success`, `exit-code`, …), or a sentence from rehost-init.
    #[serde(default)]
    pub result: String,
    /// Its main process.
    #[serde(default)]
    pub main_pid: Option<i32>,
    /// Restarts so far.
    #[serde(default)]
    pub restarts: u32,
    /// When it last became active / inactive, in seconds since the epoch.
    #[serde(default)]
    pub active_enter: Option<u64>,
    #[serde(default)]
    pub inactive_enter: Option<u64>,
    /// For timers: the next and the last elapse, in seconds since the epoch.
    #[serde(default)]
    pub next_elapse: Option<u64>,
    #[serde(default)]
    pub last_trigger: Option<u64>,
    /// For timers: the unit they start.
    #[serde(default)]
    pub triggers: Option<String>,
    /// `Type=` of a service.
    #[serde(default)]
    pub service_type: String,
    /// Whether it has a reload command.
    #[serde(default)]
    pub can_reload: bool,
}

/// The outcome of one unit's job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// The unit, as asked.
    pub name: String,
    /// `done`, `failed`, `not-found`, `not-applicable`, `queued` (not waited for).
    pub outcome: String,
    /// A sentence for people when it did not succeed.
    #[serde(default)]
    pub message: String,
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "kebab-case")]
pub enum Answer {
    /// Units known (the asked names that are not known are left out).
    Units {
        units: Vec<UnitInfo>,
        /// The init's state: `running`, `starting`, `degraded`, `stopping`.
        system: String,
    },
    /// Jobs done.
    Jobs { results: Vec<JobResult> },
    /// The environment.
    Environment { assignments: Vec<String> },
    /// Done, nothing to say.
    Ok,
    /// Refused.
    Error { message: String },
}

/// Why a command could not talk to rehost-init.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot reach rehost-init at {SOCKET}: {0}")]
    Connect(#[source] std::io::Error),
    #[error("talking to rehost-init at {SOCKET}: {0}")]
    Io(#[source] std::io::Error),
    #[error("rehost-init answered something unreadable: {0}")]
    Bad(String),
}

/// Whether rehost-init answers on its socket here (false when pid 1 is another init).
pub fn available() -> bool {
    UnixStream::connect(SOCKET).is_ok()
}

/// Sends `req` and reads the answer (waiting as long as the job takes).
pub fn ask(req: &Request) -> Result<Answer, ControlError> {
    let mut s = UnixStream::connect(SOCKET).map_err(ControlError::Connect)?;
    let mut line = serde_json::to_vec(req).map_err(|e| ControlError::Bad(e.to_string()))?;
    line.push(b'\n');
    s.write_all(&line).map_err(ControlError::Io)?;
    let mut answer = Vec::new();
    let mut r = BufReader::new(std::io::Read::take(s, MAX_ANSWER as u64));
    r.read_until(b'\n', &mut answer).map_err(ControlError::Io)?;
    if answer.is_empty() {
        return Err(ControlError::Bad("no answer (did it stop?)".into()));
    }
    serde_json::from_slice(&answer).map_err(|e| ControlError::Bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_one_line() {
        let r = Request::Job {
            verb: Verb::Restart,
            names: vec!["nginx".into()],
            wait: true,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains('\n'));
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        assert!(r.mutates());
        assert!(!Request::ShowEnvironment.mutates());
        assert_eq!(Verb::parse("force-reload"), Some(Verb::ReloadOrRestart));
        assert_eq!(Verb::parse("condrestart"), Some(Verb::TryRestart));
        assert_eq!(Verb::parse("rotate"), None);
    }
}
