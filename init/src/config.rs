//! The init configuration, `/etc/rehost/init.toml`: the one place where `rehost convert`
//! (from its flags, later from the plan) tells rehost-init what to run.
//!
//! ```toml
//! # Which init runs the container: "rehost" (rehost-init supervises the services below),
//! # "systemd" (the image's own systemd), "sbin-init" (the image's /sbin/init, SysV or
//! # OpenRC) or "dumb-init" (rehost-init only reaps zombies and runs `cmd`).
//! mode = "rehost"
//! # The main command: in dumb-init mode the only program; in rehost mode optional, run
//! # beside the services, and the container ends (with its exit code) when it exits.
//! cmd = ["/usr/local/bin/app", "--serve"]
//! # How long shutdown may take in total before everything left gets SIGKILL.
//! stop_timeout_sec = 90
//!
//! # The services to start, in any order (dependencies order them). `kind` is "systemd"
//! # (a unit name: services and timers; instances of templates too), "sysv" or "openrc"
//! # (a script in /etc/init.d) or "upstart" (a job in /etc/init). A service that failed
//! # makes `rehost-init status` report the container degraded (exit 1) unless it is
//! # `optional`; a critical service that exhausts its restart budget also stops the
//! # container with a non-zero exit code.
//! [[service]]
//! name = "ssh.service"
//! kind = "systemd"
//! critical = true
//!
//! [[service]]
//! name = "cron.service"
//! optional = true
//! ```
//!
//! When the file has no `[[service]]` at all, rehost-init starts what the image itself
//! enables (see [`crate::model::boot_entries`]), except the services matching
//! `machine_only = ["getty*", "udev", …]` (patterns the converter copies from the profiles).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// Where the configuration lives inside the image.
pub const CONFIG_PATH: &str = "/etc/rehost/init.toml";
/// Hooks run before anything else, in file-name order.
pub const PRESTART_DIR: &str = "/etc/rehost/hooks/prestart.d";
/// Hooks run after everything stopped, in file-name order.
pub const POSTSTOP_DIR: &str = "/etc/rehost/hooks/poststop.d";
/// Where rehost-init keeps its runtime state (status file, notify sockets).
pub const RUN_DIR: &str = "/run/rehost";
/// Where each hook phase records what ran (`prestart.json`, `poststop.json`): on the
/// container's own filesystem, so it can be read after the container stopped.
pub const HOOKS_RECORD_DIR: &str = "/var/lib/rehost/hooks";
/// Where the running init publishes every service's state for `rehost-init status`.
pub const STATUS_PATH: &str = "/run/rehost/status.json";

/// Which init is pid 1 in the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// rehost-init supervises the services itself (the portable default).
    #[default]
    Rehost,
    /// The image's own systemd (`/lib/systemd/systemd`).
    Systemd,
    /// The image's `/sbin/init` (SysV init or OpenRC).
    SbinInit,
    /// rehost-init as a minimal reaper around one main command.
    DumbInit,
}

impl Mode {
    /// The name used in configuration, flags and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Rehost => "rehost",
            Mode::Systemd => "systemd",
            Mode::SbinInit => "sbin-init",
            Mode::DumbInit => "dumb-init",
        }
    }

    /// Parses a mode name.
    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "rehost" => Mode::Rehost,
            "systemd" => Mode::Systemd,
            "sbin-init" => Mode::SbinInit,
            "dumb-init" => Mode::DumbInit,
            _ => return None,
        })
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What defines a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// A systemd unit (`.service` or `.timer`).
    #[default]
    Systemd,
    /// A SysV init script in /etc/init.d.
    Sysv,
    /// An OpenRC script in /etc/init.d.
    Openrc,
    /// An upstart job in /etc/init.
    Upstart,
}

impl ServiceKind {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Systemd => "systemd",
            ServiceKind::Sysv => "sysv",
            ServiceKind::Openrc => "openrc",
            ServiceKind::Upstart => "upstart",
        }
    }
}

/// One service to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// The unit, script or job name.
    pub name: String,
    /// What defines it.
    #[serde(default)]
    pub kind: ServiceKind,
    /// Whether the container is unhealthy without it.
    #[serde(default)]
    pub critical: bool,
    /// Whether the container stays healthy without it: an optional service that fails is
    /// reported, but does not make `rehost-init status` degraded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InitConfig {
    /// The init mode.
    #[serde(default)]
    pub mode: Mode,
    /// The main command (see the module documentation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    /// Total time shutdown may take before the remaining processes get SIGKILL.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_sec: u64,
    /// Name patterns (globs, matched with and without the unit suffix) of the services
    /// that only make sense on a machine booting its own hardware: consoles, disks, clocks.
    /// From the profiles; used when `services` is empty and rehost-init starts what the
    /// image itself enables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub machine_only: Vec<String>,
    /// The services, when the image's own enabled set should not be used.
    #[serde(default, rename = "service", skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceEntry>,
}

fn default_stop_timeout() -> u64 {
    90
}

/// A configuration file that cannot be read or understood.
#[derive(Debug)]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A TOML error as one short line: where (line and column) and what, never the text
/// itself, whose lines (or values the message quotes) may be megabytes long.
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    const MAX: usize = 200;
    let mut what: String = e
        .message()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if what.len() > MAX {
        let mut cut = MAX;
        while !what.is_char_boundary(cut) {
            cut -= 1;
        }
        what.truncate(cut);
        what.push('…');
    }
    match e.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let column = before.len()
                - before
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1)
                + 1;
            format!("line {line}, column {column}: {what}")
        }
        None => what,
    }
}

impl InitConfig {
    /// Parses the text of a configuration file (`path` names it in errors).
    pub fn parse(path: &str, text: &str) -> Result<InitConfig, ConfigError> {
        let cfg: InitConfig = toml::from_str(text).map_err(|e| ConfigError {
            path: path.to_string(),
            message: toml_error(text, &e),
        })?;
        if cfg.mode == Mode::DumbInit && cfg.cmd.is_empty() {
            return Err(ConfigError {
                path: path.to_string(),
                message: "mode \"dumb-init\" needs a cmd".into(),
            });
        }
        Ok(cfg)
    }

    /// Reads the configuration file at `path`; a missing file is the default configuration.
    pub fn load(path: &Path) -> Result<InitConfig, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(t) => InitConfig::parse(&path.display().to_string(), &t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(InitConfig {
                stop_timeout_sec: default_stop_timeout(),
                ..InitConfig::default()
            }),
            Err(e) => Err(ConfigError {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        }
    }

    /// The configuration as TOML text, with a header comment pointing at the format.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("the configuration always serializes");
        format!("# rehost-init configuration; format: see `rehost-init --help` and the rehost README.\n{body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_errors() {
        let cfg = InitConfig {
            mode: Mode::Rehost,
            cmd: vec![],
            stop_timeout_sec: 30,
            machine_only: vec!["getty*".into()],
            services: vec![
                ServiceEntry {
                    name: "ssh.service".into(),
                    kind: ServiceKind::Systemd,
                    critical: true,
                    optional: false,
                },
                ServiceEntry {
                    name: "cron".into(),
                    kind: ServiceKind::Sysv,
                    critical: false,
                    optional: true,
                },
            ],
        };
        let text = cfg.to_toml();
        assert_eq!(InitConfig::parse("x", &text).unwrap(), cfg);
        // Files written before `optional` existed read as not optional.
        let old = InitConfig::parse("x", "[[service]]\nname = \"a\"\ncritical = true\n").unwrap();
        assert!(old.services[0].critical && !old.services[0].optional);
        let d = InitConfig::parse("x", "").unwrap();
        assert_eq!((d.mode, d.stop_timeout_sec), (Mode::Rehost, 90));
        let e = InitConfig::parse("/etc/rehost/init.toml", "mode = \"upside-down\"").unwrap_err();
        assert!(e.to_string().starts_with("/etc/rehost/init.toml: "), "{e}");
        assert!(InitConfig::parse("x", "mode = \"dumb-init\"").is_err());
        assert!(InitConfig::parse("x", "[[service]]\nname = \"a\"\nbogus = 1\n").is_err());
    }

    /// A 50 MB line used to be quoted whole in the error.
    #[test]
    fn a_toml_error_is_one_short_line() {
        let text = format!(
            "mode = \"rehost\"\ncmd = [\"{}\" \"x\"]\n",
            "a".repeat(50 << 20)
        );
        let e = InitConfig::parse("init.toml", &text)
            .unwrap_err()
            .to_string();
        assert!(e.len() < 400, "{} bytes", e.len());
        assert!(e.contains("line 2, column"), "{e}");
        assert!(!e.contains('\n'));
    }
}
