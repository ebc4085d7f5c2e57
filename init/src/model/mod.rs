//! The one model of what a server runs, for every init family: which init system it boots
//! with and its default target or runlevel ([`init_system`]), which services that init
//! enables ([`systemd`] search path and enablement links, [`sysv`] rc links and inittab,
//! [`openrc`] runlevels, [`upstart`] `start on`), and how a root is read ([`fs`]: the one
//! resolver of paths inside a root).
//!
//! The inventory (`rehost inspect`), the image builder and rehost-init all ask this model;
//! what a service *runs* comes from the parsers in [`crate::units`]. Nothing here changes a
//! file or runs a program. What is machine-only (consoles, disks, clocks) is not decided
//! here: it is profile data, passed in as name patterns ([`boot_entries`]).

pub mod fs;
pub mod init_system;
pub mod openrc;
pub mod systemd;
pub mod sysv;
pub mod upstart;

pub use fs::{FileKind, FileSystem, HostRoot, Stat};
pub use init_system::{InitKind, InitSystem};

use crate::config::{ServiceEntry, ServiceKind};
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

/// One enabled service, as its init system decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The unit name (`ssh.service`, `getty@.service`, `apt-daily.timer`) or the script
    /// or job name (`ssh`).
    pub name: String,
    /// service, timer, socket, target… for systemd; `script` for SysV and OpenRC scripts,
    /// `job` for upstart jobs.
    pub kind: String,
    /// What enables it.
    pub origin: Origin,
    /// The file that defines it (a path inside the root).
    pub file: Option<String>,
    /// What enables it: the symlinks, rc links or stanza that make it start.
    pub enabled_by: Vec<String>,
    /// The targets or runlevels it starts in.
    pub starts_in: Vec<String>,
}

/// Something the model could not read or understand, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The path at fault, for people.
    pub path: String,
    /// What is wrong.
    pub problem: String,
}

impl Finding {
    pub(crate) fn new(path: impl Into<String>, problem: impl Into<String>) -> Self {
        Finding {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

/// The services the init system of the root enables, sorted by name, and what could not
/// be read on the way.
pub fn enabled(fs: &dyn FileSystem, init: &InitSystem) -> (Vec<Service>, Vec<Finding>) {
    let mut findings = Vec::new();
    let mut services = match init.kind {
        InitKind::Systemd => systemd::enabled(fs, &mut findings),
        InitKind::Sysv => sysv::enabled(fs, init.runlevel(), &mut findings),
        InitKind::Openrc => openrc::enabled(fs, &mut findings),
        InitKind::Upstart => upstart::enabled(fs, init.runlevel(), &mut findings),
        InitKind::None => Vec::new(),
    };
    services.sort_by(|a, b| a.name.cmp(&b.name));
    (services, findings)
}

/// Targets that end the system or rescue it: what they pull in is no boot service.
const NOT_BOOT_TARGETS: &[&str] = &[
    "shutdown.target",
    "halt.target",
    "poweroff.target",
    "reboot.target",
    "kexec.target",
    "rescue.target",
    "emergency.target",
];

/// The services of the root as rehost-init runs them: what the image's init starts at
/// boot, each under the name and kind rehost-init loads it by, sorted by kind and name.
///
/// - systemd: services and timers an administrator enabled into a boot target (a link in
///   a `.wants`, `.requires` or `.upholds` directory of `/etc` or `/run`), under the link's
///   name (an instance for a template: `getty@tty1.service`);
/// - SysV: the start links of the default runlevel; OpenRC: the boot runlevels;
/// - upstart: the jobs with `start on`, and the SysV scripts its `rc` job starts.
///
/// Services matching `machine_only` (name patterns of the profiles, matched with and
/// without the unit suffix and instance) are left out.
pub fn boot_entries(fs: &dyn FileSystem, machine_only: &[String]) -> Vec<ServiceEntry> {
    let init = InitSystem::detect(fs);
    let (services, _) = enabled(fs, &init);
    let mut out: Vec<ServiceEntry> = Vec::new();
    for s in &services {
        let names: Vec<(String, ServiceKind)> = match s.origin {
            Origin::Systemd if matches!(s.kind.as_str(), "service" | "timer" | "socket") => s
                .enabled_by
                .iter()
                .filter_map(|link| systemd::boot_link_name(link, NOT_BOOT_TARGETS))
                .filter(|n| !n.contains("@."))
                .map(|n| (n, ServiceKind::Systemd))
                .collect(),
            Origin::Systemd | Origin::SysvGenerator => Vec::new(),
            Origin::Sysv => vec![(s.name.clone(), ServiceKind::Sysv)],
            Origin::Openrc => vec![(s.name.clone(), ServiceKind::Openrc)],
            Origin::Upstart => vec![(s.name.clone(), ServiceKind::Upstart)],
        };
        for (name, kind) in names {
            if !is_machine_only(&name, machine_only) && !out.iter().any(|e| e.name == name) {
                out.push(ServiceEntry {
                    name,
                    kind,
                    critical: false,
                    optional: false,
                });
            }
        }
    }
    out.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    out
}

/// Whether `name` matches one of the `patterns` (globs with `*`, `?` and `[…]`), tried on
/// the name, on it without its suffix (a unit kind, `.sh` of a script, `.conf` of a job)
/// and on a template instance's prefix (`getty` for `getty@tty1.service`).
pub fn is_machine_only(name: &str, patterns: &[String]) -> bool {
    let stem = match name.rsplit_once('.') {
        Some((s, suffix))
            if systemd::UNIT_SUFFIXES.contains(&suffix) || matches!(suffix, "sh" | "conf") =>
        {
            s
        }
        _ => name,
    };
    let prefix = stem.split_once('@').map(|(p, _)| p);
    patterns.iter().any(|p| {
        glob(p.as_bytes(), name.as_bytes())
            || glob(p.as_bytes(), stem.as_bytes())
            || prefix.is_some_and(|pre| glob(p.as_bytes(), pre.as_bytes()))
    })
}

/// Shell-style matching of a whole name: `*` any run, `?` one character, `[…]` a set or
/// range (`[!…]` negated).
pub fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.first() {
        None => name.is_empty(),
        Some(b'*') => (0..=name.len()).any(|i| glob(&pattern[1..], &name[i..])),
        Some(b'?') => !name.is_empty() && glob(&pattern[1..], &name[1..]),
        Some(b'[') => {
            let Some(end) = pattern
                .iter()
                .skip(2)
                .position(|c| *c == b']')
                .map(|p| p + 2)
            else {
                return name.first() == Some(&b'[') && glob(&pattern[1..], &name[1..]);
            };
            let Some(c) = name.first() else {
                return false;
            };
            let mut set = &pattern[1..end];
            let negate = matches!(set.first(), Some(b'!') | Some(b'^'));
            if negate {
                set = &set[1..];
            }
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == b'-' {
                    hit |= set[i] <= *c && *c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == *c;
                    i += 1;
                }
            }
            hit != negate && glob(&pattern[end + 1..], &name[1..])
        }
        Some(p) => name.first() == Some(p) && glob(&pattern[1..], &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::tests_support::tempdir;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    fn file(root: &Path, path: &str, text: &str) {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn link(root: &Path, path: &str, target: &str) {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
    }

    fn names(entries: &[ServiceEntry]) -> Vec<(&str, ServiceKind)> {
        entries.iter().map(|e| (e.name.as_str(), e.kind)).collect()
    }

    #[test]
    fn boot_entries_of_each_family() {
        let only = vec!["getty*".to_string(), "hwclock".to_string()];

        let d = tempdir();
        let r = d.as_path();
        link(r, "sbin/init", "/lib/systemd/systemd");
        file(r, "lib/systemd/systemd", "");
        file(
            r,
            "lib/systemd/system/ssh.service",
            "[Service]\nExecStart=/x\n",
        );
        file(
            r,
            "lib/systemd/system/getty@.service",
            "[Service]\nExecStart=/x\n",
        );
        file(
            r,
            "lib/systemd/system/halt.service",
            "[Service]\nExecStart=/x\n",
        );
        link(
            r,
            "etc/systemd/system/multi-user.target.wants/ssh.service",
            "/lib/systemd/system/ssh.service",
        );
        link(
            r,
            "etc/systemd/system/getty.target.wants/getty@tty1.service",
            "/lib/systemd/system/getty@.service",
        );
        link(
            r,
            "etc/systemd/system/halt.target.wants/halt.service",
            "/lib/systemd/system/halt.service",
        );
        let root = HostRoot::new(r);
        assert_eq!(
            names(&boot_entries(&root, &only)),
            [("ssh.service", ServiceKind::Systemd)]
        );
        assert_eq!(
            names(&boot_entries(&root, &[])),
            [
                ("getty@tty1.service", ServiceKind::Systemd),
                ("ssh.service", ServiceKind::Systemd)
            ]
        );

        let d = tempdir();
        let r = d.as_path();
        file(r, "etc/inittab", "id:3:initdefault:\n");
        file(r, "etc/init.d/ssh", "#!/bin/sh\n");
        file(r, "etc/init.d/hwclock.sh", "#!/bin/sh\n");
        link(r, "etc/rc3.d/S01ssh", "../init.d/ssh");
        link(r, "etc/rc3.d/S02hwclock.sh", "../init.d/hwclock.sh");
        link(r, "etc/rc2.d/S01other", "../init.d/ssh");
        let root = HostRoot::new(r);
        assert_eq!(
            names(&boot_entries(&root, &only)),
            [("ssh", ServiceKind::Sysv)]
        );

        let d = tempdir();
        let r = d.as_path();
        file(r, "etc/inittab", "::sysinit:/sbin/openrc sysinit\n");
        file(r, "etc/init.d/sshd", "#!/sbin/openrc-run\n");
        link(r, "etc/runlevels/default/sshd", "/etc/init.d/sshd");
        let root = HostRoot::new(r);
        assert_eq!(
            names(&boot_entries(&root, &only)),
            [("sshd", ServiceKind::Openrc)]
        );

        let d = tempdir();
        let r = d.as_path();
        file(r, "sbin/initctl", "");
        file(
            r,
            "etc/init/ssh.conf",
            "start on filesystem\nexec /usr/sbin/sshd -D\n",
        );
        file(r, "etc/init/off.conf", "start on filesystem\nexec /x\n");
        file(r, "etc/init/off.override", "manual\n");
        file(r, "etc/init.d/apache2", "#!/bin/sh\n");
        link(r, "etc/rc2.d/S91apache2", "../init.d/apache2");
        let root = HostRoot::new(r);
        assert_eq!(
            names(&boot_entries(&root, &only)),
            [
                ("apache2", ServiceKind::Sysv),
                ("ssh", ServiceKind::Upstart)
            ]
        );
    }

    #[test]
    fn machine_only_patterns() {
        let p: Vec<String> = ["getty*", "systemd-*", "tty[0-9]*", "udev"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(is_machine_only("getty@tty1.service", &p));
        assert!(is_machine_only("systemd-timesyncd.service", &p));
        assert!(is_machine_only("tty1", &p));
        assert!(is_machine_only("udev.sh", &p));
        assert!(is_machine_only("udev", &p));
        assert!(!is_machine_only("ssh.service", &p));
    }
}
