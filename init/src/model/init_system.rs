//! Which init system a root boots with, and its default target or runlevel.

use super::fs::FileSystem;
use serde::{Deserialize, Serialize};

/// The init system families rehost knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitKind {
    /// systemd.
    Systemd,
    /// SysV init with rc links.
    Sysv,
    /// OpenRC (`/etc/runlevels`).
    Openrc,
    /// upstart (`/etc/init/*.conf` and `/sbin/initctl`).
    Upstart,
    /// None recognised.
    None,
}

impl InitKind {
    /// The name used in reports and profiles.
    pub fn name(self) -> &'static str {
        match self {
            InitKind::Systemd => "systemd",
            InitKind::Sysv => "sysv",
            InitKind::Openrc => "openrc",
            InitKind::Upstart => "upstart",
            InitKind::None => "none",
        }
    }
}

/// The init system of a root, why rehost thinks so, and where it boots to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InitSystem {
    /// The family.
    pub kind: InitKind,
    /// Why rehost thinks so (the file that tells).
    pub evidence: String,
    /// systemd: the default target; SysV and upstart: the default runlevel; OpenRC: the
    /// runlevel it boots into.
    pub default: Option<String>,
}

/// The last component of a path.
pub(crate) fn base_name(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

/// The lines of a configuration file without comments (`#` to the end) and blank lines.
pub fn config_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
}

impl InitSystem {
    /// Recognises the init system of the root.
    pub fn detect(fs: &dyn FileSystem) -> InitSystem {
        let init_name = fs
            .resolve("/sbin/init", true)
            .ok()
            .filter(|p| fs.exists(p))
            .map(|p| base_name(&p).to_string());
        let inittab = fs.read_text("/etc/inittab");

        let (kind, evidence) = if init_name.as_deref() == Some("systemd") {
            (InitKind::Systemd, "/sbin/init is systemd")
        } else if inittab.as_deref().is_some_and(|t| t.contains("openrc"))
            || (fs.is_file("/sbin/openrc") && fs.is_dir("/etc/runlevels"))
        {
            (
                InitKind::Openrc,
                "/etc/inittab runs openrc, /etc/runlevels exists",
            )
        } else if fs.exists("/sbin/initctl")
            && fs.is_dir("/etc/init")
            && fs
                .read_dir("/etc/init")
                .unwrap_or_default()
                .iter()
                .any(|n| n.ends_with(".conf"))
            && inittab.is_none()
        {
            (
                InitKind::Upstart,
                "/sbin/initctl and jobs in /etc/init (upstart)",
            )
        } else if inittab.is_some() {
            (InitKind::Sysv, "/etc/inittab (SysV init)")
        } else if fs.is_dir("/etc/systemd/system")
            && (fs.exists("/lib/systemd/systemd") || fs.exists("/usr/lib/systemd/systemd"))
        {
            (
                InitKind::Systemd,
                "systemd is installed (no /sbin/init link)",
            )
        } else if ["/etc/rc2.d", "/etc/rc3.d", "/etc/rc.d/rc3.d"]
            .iter()
            .any(|d| fs.is_dir(d))
        {
            (InitKind::Sysv, "rcN.d directories (SysV init scripts)")
        } else {
            (InitKind::None, "no init system found")
        };

        let default = match kind {
            InitKind::Systemd => super::systemd::default_target(fs),
            InitKind::Sysv => Some(
                inittab
                    .as_deref()
                    .and_then(super::sysv::initdefault)
                    .unwrap_or_else(|| "2".into()),
            ),
            InitKind::Openrc => Some("default".into()),
            InitKind::Upstart => super::upstart::default_runlevel(fs),
            InitKind::None => None,
        };
        InitSystem {
            kind,
            evidence: evidence.to_string(),
            default,
        }
    }

    /// The runlevel SysV scripts start in (SysV and upstart): the default, else 2.
    pub fn runlevel(&self) -> &str {
        self.default.as_deref().unwrap_or("2")
    }
}
