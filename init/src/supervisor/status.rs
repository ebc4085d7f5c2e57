//! The state every service is in, published by the running init in
//! [`STATUS_PATH`](crate::config::STATUS_PATH) and read by `rehost-init status`.

use serde::{Deserialize, Serialize};
use std::io::Write;

/// Why the status file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("{path}: {source} (is rehost-init running as pid 1 in this container?)")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// One service's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Its name.
    pub name: String,
    /// `systemd`, `sysv`, `openrc`, `upstart`.
    pub kind: String,
    /// `inactive`, `starting`, `active`, `exited` (ran to completion), `waiting` (a timer's
    /// service between runs, or a timer), `auto-restart`, `stopping`, `failed`, `skipped`
    /// (a condition was not met).
    pub state: String,
    /// Why it is in that state, when it is not running (`exit-code 1`, `start-limit-hit`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub result: String,
    /// Its main process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_pid: Option<i32>,
    /// How many times it was restarted.
    pub restarts: u32,
    /// Whether the plan marks it critical.
    pub critical: bool,
}

impl ServiceStatus {
    /// Whether the service counts as up.
    pub fn healthy(&self) -> bool {
        matches!(
            self.state.as_str(),
            "active" | "exited" | "waiting" | "skipped"
        )
    }
}

/// The whole published state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The init's pid (to tell a stale file from a live init).
    pub pid: i32,
    /// The init mode.
    pub mode: String,
    /// `running`, `stopping`, `stopped`.
    pub phase: String,
    /// Every service.
    pub services: Vec<ServiceStatus>,
}

impl Status {
    /// The critical services that are down.
    pub fn critical_down(&self) -> Vec<&ServiceStatus> {
        self.services
            .iter()
            .filter(|s| s.critical && !s.healthy())
            .collect()
    }

    /// Writes the file atomically (temporary name, then rename).
    pub fn write(&self, path: &str) -> std::io::Result<()> {
        let tmp = format!("{path}.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(
            serde_json::to_string_pretty(self)
                .expect("status serializes")
                .as_bytes(),
        )?;
        f.write_all(b"\n")?;
        drop(f);
        std::fs::rename(tmp, path)
    }

    /// Reads the file.
    pub fn read(path: &str) -> Result<Status, StatusError> {
        let text = std::fs::read_to_string(path).map_err(|source| StatusError::Read {
            path: path.into(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| StatusError::Parse {
            path: path.into(),
            source,
        })
    }

    /// A table for people.
    pub fn render(&self) -> String {
        let w = self
            .services
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(7)
            .max(7);
        let mut out = format!(
            "rehost-init (pid {}, mode {}, {})\n",
            self.pid, self.mode, self.phase
        );
        out.push_str(&format!(
            "{:<w$}  {:<8} {:<12} {:>7} {:>8}  {}\n",
            "SERVICE", "KIND", "STATE", "PID", "RESTARTS", "NOTE"
        ));
        for s in &self.services {
            let pid = s
                .main_pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into());
            let mut note = s.result.clone();
            if s.critical {
                note = if note.is_empty() {
                    "critical".into()
                } else {
                    format!("critical, {note}")
                };
            }
            out.push_str(&format!(
                "{:<w$}  {:<8} {:<12} {:>7} {:>8}  {}\n",
                s.name, s.kind, s.state, pid, s.restarts, note
            ));
        }
        out
    }
}
