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
    /// Whether the plan marks it optional: its failure does not make the container degraded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

impl ServiceStatus {
    /// Whether the service counts as up.
    pub fn healthy(&self) -> bool {
        matches!(
            self.state.as_str(),
            "active" | "exited" | "waiting" | "skipped"
        )
    }

    /// Whether the service is down for good, not on its way up: it failed, or it ran and
    /// ended (an `inactive` service with a result: its main process exited).
    pub fn down(&self) -> bool {
        self.state == "failed" || (self.state == "inactive" && !self.result.is_empty())
    }

    /// Whether the container's health depends on it: every kept service but the optional
    /// ones (a critical one always counts).
    pub fn counts(&self) -> bool {
        self.critical || !self.optional
    }

    /// `name (state: result)`, for a line about it.
    fn describe(&self) -> String {
        if self.result.is_empty() {
            format!("{} ({})", self.name, self.state)
        } else {
            format!("{} ({}: {})", self.name, self.state, self.result)
        }
    }
}

/// The container's health, from its services (see [`Status::health`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Every service that counts is up.
    Healthy,
    /// None has failed, but some are not up yet (starting, waiting to restart).
    Starting,
    /// One that counts failed, or ran and ended.
    Degraded,
    /// The init is shutting down.
    Stopping,
}

impl Health {
    /// The word `rehost-init status` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Starting => "starting",
            Health::Degraded => "degraded",
            Health::Stopping => "stopping",
        }
    }

    /// The exit code of `rehost-init status`: 0 only when healthy.
    pub fn exit_code(self) -> i32 {
        match self {
            Health::Healthy => 0,
            _ => 1,
        }
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
    /// The container's health, and the services that make it so (those down when
    /// degraded, those not up yet when starting). Optional services never count.
    pub fn health(&self) -> (Health, Vec<&ServiceStatus>) {
        if self.phase != "running" {
            return (Health::Stopping, Vec::new());
        }
        let counted = || self.services.iter().filter(|s| s.counts());
        let down: Vec<&ServiceStatus> = counted().filter(|s| s.down()).collect();
        if !down.is_empty() {
            return (Health::Degraded, down);
        }
        let coming: Vec<&ServiceStatus> = counted().filter(|s| !s.healthy()).collect();
        if coming.is_empty() {
            (Health::Healthy, coming)
        } else {
            (Health::Starting, coming)
        }
    }

    /// One line about the health: `healthy`, or `degraded: nginx (failed: …), …`.
    pub fn health_line(&self) -> String {
        let (health, which) = self.health();
        if which.is_empty() {
            health.as_str().to_string()
        } else {
            format!(
                "{}: {}",
                health.as_str(),
                which
                    .iter()
                    .map(|s| s.describe())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
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
            for (marked, word) in [(s.critical, "critical"), (s.optional, "optional")] {
                if marked {
                    note = if note.is_empty() {
                        word.into()
                    } else {
                        format!("{word}, {note}")
                    };
                }
            }
            out.push_str(&format!(
                "{:<w$}  {:<8} {:<12} {:>7} {:>8}  {}\n",
                s.name, s.kind, s.state, pid, s.restarts, note
            ));
        }
        out.push_str(&self.health_line());
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, state: &str, result: &str) -> ServiceStatus {
        ServiceStatus {
            name: name.into(),
            kind: "sysv".into(),
            state: state.into(),
            result: result.into(),
            main_pid: None,
            restarts: 0,
            critical: false,
            optional: false,
        }
    }

    fn status(services: Vec<ServiceStatus>) -> Status {
        Status {
            pid: 1,
            mode: "rehost".into(),
            phase: "running".into(),
            services,
        }
    }

    #[test]
    fn a_failed_kept_service_degrades_the_container_unless_optional() {
        let mut st = status(vec![
            svc("ssh", "active", ""),
            svc("cron", "exited", ""),
            svc("nginx", "failed", "main process gone"),
        ]);
        assert_eq!(st.health().0, Health::Degraded);
        assert_eq!(st.health().0.exit_code(), 1);
        assert_eq!(
            st.health_line(),
            "degraded: nginx (failed: main process gone)"
        );
        assert!(st
            .render()
            .ends_with("degraded: nginx (failed: main process gone)\n"));
        st.services[2].optional = true;
        assert_eq!(st.health(), (Health::Healthy, vec![]));
        assert_eq!(st.health().0.exit_code(), 0);
        assert!(st.render().contains("optional, main process gone"));
        // Critical wins over optional.
        st.services[2].critical = true;
        assert_eq!(st.health().0, Health::Degraded);
    }

    #[test]
    fn a_service_that_ended_is_down_one_on_its_way_up_is_starting() {
        let st = status(vec![svc("web", "inactive", "main process exited")]);
        assert_eq!(st.health().0, Health::Degraded);
        for state in ["starting", "auto-restart", "inactive"] {
            let st = status(vec![svc("ssh", "active", ""), svc("web", state, "")]);
            let (h, which) = st.health();
            assert_eq!(h, Health::Starting, "{state}");
            assert_eq!(which[0].name, "web");
            assert_eq!(h.exit_code(), 1);
        }
        let mut st = status(vec![svc("web", "failed", "exit-code 1")]);
        st.phase = "stopping".into();
        assert_eq!(st.health().0, Health::Stopping);
        assert_eq!(status(vec![]).health().0, Health::Healthy);
    }

    #[test]
    fn a_status_file_without_the_new_fields_still_reads() {
        let old = r#"{"pid":1,"mode":"rehost","phase":"running","services":[{"name":"ssh","kind":"sysv","state":"active","restarts":0,"critical":true}]}"#;
        let st: Status = serde_json::from_str(old).unwrap();
        assert!(!st.services[0].optional);
        assert_eq!(st.health().0, Health::Healthy);
    }
}
