//! Which init system the server boots with, and its default target or runlevel.

use super::fs::{base_name, config_lines, Root};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitKind {
    Systemd,
    Sysv,
    Openrc,
    Upstart,
    None,
}

impl InitKind {
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InitSystem {
    pub kind: InitKind,
    /// Why rehost thinks so (the file that tells).
    pub evidence: String,
    /// systemd: the default target; SysV and upstart: the default runlevel; OpenRC: the
    /// runlevel it boots into.
    pub default: Option<String>,
}

pub fn detect(root: &Root) -> InitSystem {
    let init_target = root.resolve("sbin/init", true);
    let init_name = init_target
        .as_deref()
        .map(|p| String::from_utf8_lossy(base_name(p)).into_owned());
    let inittab = root.read_text("etc/inittab");

    let (kind, evidence) = if init_name.as_deref() == Some("systemd") {
        (InitKind::Systemd, "/sbin/init is systemd".to_string())
    } else if inittab.as_deref().is_some_and(|t| t.contains("openrc"))
        || (root.is_file("sbin/openrc") && root.is_dir("etc/runlevels"))
    {
        (
            InitKind::Openrc,
            "/etc/inittab runs openrc, /etc/runlevels exists".to_string(),
        )
    } else if root.exists("sbin/initctl")
        && root.is_dir("etc/init")
        && root
            .list_names("etc/init")
            .iter()
            .any(|n| n.ends_with(".conf"))
        && inittab.is_none()
    {
        (
            InitKind::Upstart,
            "/sbin/initctl and jobs in /etc/init (upstart)".to_string(),
        )
    } else if inittab.is_some() {
        (InitKind::Sysv, "/etc/inittab (SysV init)".to_string())
    } else if root.is_dir("etc/systemd/system")
        && (root.exists("lib/systemd/systemd") || root.exists("usr/lib/systemd/systemd"))
    {
        (
            InitKind::Systemd,
            "systemd is installed (no /sbin/init link)".to_string(),
        )
    } else if ["etc/rc2.d", "etc/rc3.d", "etc/rc.d/rc3.d"]
        .iter()
        .any(|d| root.is_dir(d))
    {
        (
            InitKind::Sysv,
            "rcN.d directories (SysV init scripts)".to_string(),
        )
    } else {
        (InitKind::None, "no init system found".to_string())
    };

    let default = match kind {
        InitKind::Systemd => default_target(root),
        InitKind::Sysv => inittab
            .as_deref()
            .and_then(initdefault)
            .or(Some("2".into())),
        InitKind::Openrc => Some("default".into()),
        InitKind::Upstart => upstart_runlevel(root),
        InitKind::None => None,
    };
    InitSystem {
        kind,
        evidence,
        default,
    }
}

/// The unit `default.target` links to, first in /etc then in the vendor directories.
pub fn default_target(root: &Root) -> Option<String> {
    for dir in [
        "etc/systemd/system",
        "run/systemd/system",
        "usr/local/lib/systemd/system",
        "usr/lib/systemd/system",
        "lib/systemd/system",
    ] {
        let path = format!("{dir}/default.target");
        if let Some(target) = root.read_link(&path) {
            return Some(String::from_utf8_lossy(base_name(&target)).into_owned());
        }
        if root.is_file(&path) {
            return Some("default.target".into());
        }
    }
    None
}

/// `id:N:initdefault:` from inittab.
pub fn initdefault(inittab: &str) -> Option<String> {
    config_lines(inittab).find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 3 && fields[2] == "initdefault" && !fields[1].is_empty())
            .then(|| fields[1].to_string())
    })
}

/// Upstart's `DEFAULT_RUNLEVEL` from rc-sysinit.conf (2 on Ubuntu).
fn upstart_runlevel(root: &Root) -> Option<String> {
    let text = root.read_text("etc/init/rc-sysinit.conf")?;
    let configured = config_lines(&text)
        .find_map(|l| l.strip_prefix("env DEFAULT_RUNLEVEL="))
        .map(|v| v.trim().to_string());
    configured.or(Some("2".into()))
}

#[cfg(test)]
mod tests {
    use super::super::fs::testing::MemSource;
    use super::*;

    #[test]
    fn systemd_through_a_merged_usr() {
        let src = MemSource::new()
            .link("sbin", "usr/sbin")
            .link("usr/sbin/init", "../lib/systemd/systemd")
            .file("usr/lib/systemd/systemd", "")
            .link(
                "etc/systemd/system/default.target",
                "/usr/lib/systemd/system/multi-user.target",
            );
        let init = detect(&Root::new(&src));
        assert_eq!(init.kind, InitKind::Systemd);
        assert_eq!(init.default.as_deref(), Some("multi-user.target"));
    }

    #[test]
    fn runlevel_from_inittab() {
        assert_eq!(
            initdefault("# x\nid:3:initdefault:\nsi::sysinit:/etc/rc.d/rc.sysinit\n").as_deref(),
            Some("3")
        );
    }
}
