//! The services a server starts at boot, whichever init system starts them.
//!
//! Each module finds what is *enabled* the way its init system decides it (symlinks,
//! rc links, runlevels, `start on` stanzas); what a service runs (command, user, type,
//! restart policy) is filled in afterwards from its definition.

pub mod openrc;
pub mod systemd;
pub mod sysv;
pub mod upstart;

use super::fs::Root;
use super::init_system::{InitKind, InitSystem};
use serde::Serialize;

/// Which mechanism enables a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// A systemd unit enabled by symlinks.
    Systemd,
    /// A SysV script that systemd's sysv generator turns into a service.
    SysvGenerator,
    /// A SysV script linked into the default runlevel's rcN.d.
    Sysv,
    /// An OpenRC script in a runlevel.
    Openrc,
    /// An upstart job with a `start on` stanza.
    Upstart,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Service {
    /// The unit name (`ssh.service`, `getty@.service`, `apt-daily.timer`) or the script
    /// or job name (`ssh`).
    pub name: String,
    /// service, timer, socket, target, path, mount… for systemd; `script` for SysV and
    /// OpenRC scripts, `job` for upstart jobs.
    pub kind: String,
    pub origin: Option<Origin>,
    /// What it is, as its definition says (`Description=`, the LSB header…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The file that defines it.
    pub file: Option<String>,
    /// What enables it: the symlinks, rc links or stanza that make it start.
    pub enabled_by: Vec<String>,
    /// The targets or runlevels it starts in.
    pub starts_in: Vec<String>,
    /// Whether the default target pulls it in (systemd; `None` when not judged).
    pub started_by_default: Option<bool>,
    pub command: Option<String>,
    pub user: Option<String>,
    /// In systemd's words whatever the init system: simple, forking, oneshot, notify…
    #[serde(rename = "type")]
    pub service_type: Option<String>,
    pub restart: Option<String>,
    /// For a timer: when it fires (its `command` is the unit it starts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Conditions that can be judged offline and fail on this source.
    pub failed_conditions: Vec<String>,
}

impl Service {
    /// The name without the unit suffix: `ssh` for `ssh.service`, `getty@` for `getty@.service`.
    pub fn stem(&self) -> &str {
        match self.name.rsplit_once('.') {
            Some((stem, suffix)) if systemd::UNIT_SUFFIXES.contains(&suffix) => stem,
            _ => &self.name,
        }
    }
}

/// The enabled services of the server, in a stable order (by name).
pub fn collect(root: &Root, init: &InitSystem) -> Vec<Service> {
    let mut services = match init.kind {
        InitKind::Systemd => systemd::enabled(root),
        InitKind::Sysv => sysv::enabled(root, init.default.as_deref().unwrap_or("2")),
        InitKind::Openrc => openrc::enabled(root),
        InitKind::Upstart => upstart::enabled(root, init.default.as_deref().unwrap_or("2")),
        InitKind::None => Vec::new(),
    };
    services.sort_by(|a, b| a.name.cmp(&b.name));
    services
}
