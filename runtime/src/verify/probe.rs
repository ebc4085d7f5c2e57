//! How verify asks each kind of pid 1 whether the server is up: systemd through
//! `systemctl`, rehost-init through `rehost-init status --json`, SysV init through its
//! runlevel and the scripts' own `status` action.

use super::Inside;
use crate::modes::InitMode;
use oci::contract::INIT_PATH;

/// Where the boot stands.
pub enum Boot {
    /// Still starting: try again.
    Booting(String),
    /// Done (running, or degraded with failed units named separately).
    Ready(String),
}

/// A service's state as its init reports it.
pub struct ServiceState {
    pub active: bool,
    /// The init's own word (`active`, `failed`, `auto-restart`, exit code of `status`).
    pub detail: String,
}

/// The questions verify asks of pid 1, answered per mode.
pub enum Probe {
    Systemd,
    RehostInit,
    SysV,
    /// The image's own command: up when it runs; no services to ask about.
    Plain,
}

impl Probe {
    pub fn for_mode(mode: InitMode) -> Probe {
        match mode {
            InitMode::Systemd => Probe::Systemd,
            InitMode::Rehost | InitMode::DumbInit => Probe::RehostInit,
            InitMode::SbinInit => Probe::SysV,
            InitMode::None => Probe::Plain,
        }
    }

    pub fn boot(&self, c: &Inside) -> Boot {
        match self {
            Probe::Systemd => {
                let (state, _) = c.run(&["systemctl", "is-system-running"]);
                let booting = ["starting", "initializing", "offline", ""].contains(&state.as_str())
                    || state.contains("Failed to connect");
                if booting {
                    Boot::Booting(state)
                } else {
                    Boot::Ready(state)
                }
            }
            Probe::RehostInit => match status(c) {
                None => Boot::Booting("rehost-init has not published its status".into()),
                Some(st) => {
                    let starting = st["services"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        // An inactive service with a result ran and ended: it is not coming.
                        .filter(|s| match s["state"].as_str() {
                            Some("starting") => true,
                            Some("inactive") => s["result"].as_str().unwrap_or("").is_empty(),
                            _ => false,
                        })
                        .count();
                    if st["phase"] != "running" || starting > 0 {
                        Boot::Booting(format!("{starting} service(s) starting"))
                    } else {
                        Boot::Ready("running".into())
                    }
                }
            },
            Probe::SysV => {
                // `runlevel` says N 2 as soon as init enters the runlevel; the rc script
                // that starts the services is still running then.
                let (level, ok) = c.run(&["runlevel"]);
                let rc_running = c
                    .run(&[
                        "sh",
                        "-c",
                        "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '",
                    ])
                    .0
                    .contains("/etc/init.d/rc ");
                match level.split_whitespace().nth(1) {
                    Some(n) if ok && n != "S" && !rc_running => {
                        Boot::Ready(format!("runlevel {n}"))
                    }
                    _ => Boot::Booting(format!("runlevel `{level}`")),
                }
            }
            Probe::Plain => Boot::Ready("running".into()),
        }
    }

    /// The services the plan marks optional (rehost-init's status says which): their
    /// failure is reported, not counted.
    pub fn optional(&self, c: &Inside) -> Vec<String> {
        match self {
            Probe::RehostInit => status(c)
                .and_then(|st| st["services"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter(|s| s["optional"] == true)
                .filter_map(|s| s["name"].as_str().map(String::from))
                .collect(),
            Probe::Systemd | Probe::SysV | Probe::Plain => Vec::new(),
        }
    }

    /// The units or services the init itself reports failed.
    pub fn failed(&self, c: &Inside) -> Vec<String> {
        match self {
            Probe::Systemd => c
                .run(&["systemctl", "--failed", "--no-legend", "--plain", "--full"])
                .0
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(String::from))
                .collect(),
            Probe::RehostInit => status(c)
                .and_then(|st| st["services"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter(|s| s["state"] == "failed")
                .filter_map(|s| s["name"].as_str().map(String::from))
                .collect(),
            Probe::SysV | Probe::Plain => Vec::new(),
        }
    }

    pub fn service(&self, c: &Inside, name: &str) -> ServiceState {
        match self {
            Probe::Systemd => {
                let (state, _) = c.run(&["systemctl", "is-active", name]);
                ServiceState {
                    active: state == "active",
                    detail: state,
                }
            }
            Probe::RehostInit => {
                let found = status(c).and_then(|st| {
                    st["services"]
                        .as_array()?
                        .iter()
                        .find(|s| same_service(s["name"].as_str().unwrap_or(""), name))
                        .cloned()
                });
                match found {
                    None => ServiceState {
                        active: false,
                        detail: "not supervised by rehost-init".into(),
                    },
                    Some(s) => {
                        let state = s["state"].as_str().unwrap_or("").to_string();
                        let result = s["result"].as_str().unwrap_or("");
                        ServiceState {
                            active: matches!(state.as_str(), "active" | "exited" | "waiting"),
                            detail: if result.is_empty() {
                                state
                            } else {
                                format!("{state} ({result})")
                            },
                        }
                    }
                }
            }
            Probe::SysV => {
                let script = format!("/etc/init.d/{}", name.trim_start_matches("sysv:"));
                let (out, ok) = c.run(&[&script, "status"]);
                if ok {
                    ServiceState {
                        active: true,
                        detail: "running".into(),
                    }
                } else if out.to_ascii_lowercase().contains("usage") {
                    // A script with no status action (rc.local, bootmisc): it ran at boot.
                    ServiceState {
                        active: true,
                        detail: "started (the script has no status action)".into(),
                    }
                } else {
                    ServiceState {
                        active: false,
                        detail: out.lines().last().unwrap_or("not running").to_string(),
                    }
                }
            }
            Probe::Plain => ServiceState {
                active: false,
                detail: "no init to ask (mode none)".into(),
            },
        }
    }

    /// The last lines a service logged.
    pub fn log(&self, c: &Inside, name: &str) -> Vec<String> {
        let lines: Vec<String> = match self {
            Probe::Systemd => c
                .run(&[
                    "journalctl",
                    "-u",
                    name,
                    "-n",
                    "15",
                    "--no-pager",
                    "-o",
                    "short",
                ])
                .0
                .lines()
                .map(String::from)
                .collect(),
            // rehost-init prefixes every line of a service's output with its name.
            Probe::RehostInit | Probe::SysV | Probe::Plain => {
                let short = name
                    .trim_end_matches(".service")
                    .trim_start_matches("sysv:");
                c.log()
                    .lines()
                    .filter(|l| {
                        l.starts_with(&format!("{name}: "))
                            || l.starts_with(&format!("{short}: "))
                            || (l.starts_with("rehost-init: ") && l.contains(short))
                    })
                    .map(String::from)
                    .collect()
            }
        };
        lines[lines.len().saturating_sub(15)..].to_vec()
    }
}

/// `ssh` names `ssh.service`; `sysv:ssh` names the SysV script `ssh`.
pub(super) fn same_service(supervised: &str, asked: &str) -> bool {
    let bare = |s: &str| {
        s.trim_start_matches("sysv:")
            .trim_start_matches("openrc:")
            .trim_start_matches("upstart:")
            .trim_end_matches(".service")
            .to_string()
    };
    supervised == asked || bare(supervised) == bare(asked)
}

fn status(c: &Inside) -> Option<serde_json::Value> {
    let (text, _) = c.run(&[INIT_PATH, "status", "--json"]);
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::same_service;

    #[test]
    fn service_names_match_with_or_without_their_suffix_and_kind() {
        assert!(same_service("ssh.service", "ssh"));
        assert!(same_service("ssh", "sysv:ssh"));
        assert!(!same_service("sshd.service", "ssh"));
    }
}
