//! The services a server starts at boot, whichever init system starts them.
//!
//! Which services are *enabled* is the service model's answer
//! ([`rehost_init::model`]: symlinks, rc links, runlevels, `start on` stanzas), the same
//! one the image builder and rehost-init use; what a service runs (command, user, type,
//! restart policy) is filled in afterwards from its definition ([`super::details`]).

use super::fs::Root;
use rehost_init::model::{self, InitKind, InitSystem};
use serde::Serialize;

pub use rehost_init::model::Origin;

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
            Some((stem, suffix)) if model::systemd::UNIT_SUFFIXES.contains(&suffix) => stem,
            _ => &self.name,
        }
    }
}

impl From<model::Service> for Service {
    fn from(s: model::Service) -> Self {
        Service {
            name: s.name,
            kind: s.kind,
            origin: Some(s.origin),
            file: s.file,
            enabled_by: s.enabled_by,
            starts_in: s.starts_in,
            ..Default::default()
        }
    }
}

/// The enabled services of the server, in a stable order (by name).
pub fn collect(root: &Root, init: &InitSystem) -> Vec<Service> {
    let (services, findings) = model::enabled(root, init);
    for f in findings {
        root.finding(f.path, f.problem);
    }
    services.into_iter().map(Service::from).collect()
}

/// Marks which enabled units the default target pulls in (systemd only).
pub fn mark_started(root: &Root, init: &InitSystem, services: &mut [Service]) {
    let (InitKind::Systemd, Some(default)) = (init.kind, init.default.as_deref()) else {
        return;
    };
    let pulled = model::systemd::pulled_in(root, default);
    for s in services.iter_mut() {
        let origin = s.origin.unwrap_or(Origin::Systemd);
        s.started_by_default = Some(model::systemd::started_by_default(&s.name, origin, &pulled));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::fs::testing::MemSource;

    fn init(kind: InitKind, default: Option<&str>) -> InitSystem {
        InitSystem {
            kind,
            evidence: String::new(),
            default: default.map(str::to_string),
        }
    }

    fn names(services: &[Service]) -> Vec<&str> {
        services.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn enablement_masks_aliases_and_templates() {
        let src = MemSource::new()
            .link("lib", "usr/lib")
            .file(
                "usr/lib/systemd/system/ssh.service",
                "[Service]\nExecStart=/usr/sbin/sshd -D\n[Install]\nWantedBy=multi-user.target\nAlias=sshd.service\n",
            )
            .file("usr/lib/systemd/system/getty@.service", "[Service]\nExecStart=/sbin/agetty\n")
            .file("usr/lib/systemd/system/masked.service", "[Service]\nExecStart=/x\n")
            .file("usr/lib/systemd/system/off.service", "[Service]\nExecStart=/x\n")
            .link("etc/systemd/system/masked.service", "/dev/null")
            .link("etc/systemd/system/sshd.service", "/lib/systemd/system/ssh.service")
            .link(
                "etc/systemd/system/multi-user.target.wants/ssh.service",
                "/lib/systemd/system/ssh.service",
            )
            .link(
                "etc/systemd/system/multi-user.target.wants/masked.service",
                "/lib/systemd/system/masked.service",
            )
            .link(
                "etc/systemd/system/getty.target.wants/getty@tty1.service",
                "/lib/systemd/system/getty@.service",
            )
            .link("etc/systemd/system/multi-user.target.wants/gone.service", "/nowhere");
        let root = Root::new(&src);
        let services = collect(&root, &init(InitKind::Systemd, None));
        assert_eq!(names(&services), ["getty@.service", "ssh.service"]);
        let ssh = &services[1];
        assert_eq!(ssh.starts_in, ["alias", "multi-user.target"]);
        assert_eq!(
            ssh.file.as_deref(),
            Some("/usr/lib/systemd/system/ssh.service")
        );
    }

    #[test]
    fn sysv_scripts_without_a_unit_are_generated() {
        let mut src = MemSource::new()
            .file("etc/init.d/legacy", "#!/bin/sh\n")
            .file("etc/init.d/cron", "#!/bin/sh\n")
            .file(
                "lib/systemd/system/cron.service",
                "[Service]\nExecStart=/usr/sbin/cron\n",
            )
            .link("etc/rc3.d/S50legacy", "../init.d/legacy")
            .link("etc/rc3.d/S20cron", "../init.d/cron")
            .dir("etc/systemd/system");
        for (_, (e, _)) in src.entries.iter_mut() {
            e.mode = 0o755;
        }
        let services = collect(&Root::new(&src), &init(InitKind::Systemd, None));
        assert_eq!(names(&services), ["legacy.service"]);
        assert_eq!(services[0].origin, Some(Origin::SysvGenerator));
    }

    #[test]
    fn start_links_of_the_runlevel_only() {
        let src = MemSource::new()
            .file("etc/init.d/ssh", "#!/bin/sh\n")
            .file("etc/init.d/cron", "#!/bin/sh\n")
            .link("etc/rc2.d/S02ssh", "../init.d/ssh")
            .link("etc/rc2.d/K01cron", "../init.d/cron")
            .link("etc/rc2.d/S03gone", "../init.d/gone")
            .file("etc/rc2.d/README", "")
            .link("etc/rc3.d/S01cron", "../init.d/cron");
        let root = Root::new(&src);
        let services = collect(&root, &init(InitKind::Sysv, Some("2")));
        let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["ssh"]);
        assert_eq!(services[0].file.as_deref(), Some("/etc/init.d/ssh"));
        assert_eq!(
            root.take_findings().len(),
            1,
            "the dangling link is reported"
        );
    }

    #[test]
    fn start_on_manual_and_overrides() {
        let src = MemSource::new()
            .file(
                "etc/init/ssh.conf",
                "description \"ssh\"\nstart on (filesystem\n          and net-device-up IFACE!=lo)\nexec /usr/sbin/sshd -D\n",
            )
            .file("etc/init/tty1.conf", "start on stopped rc RUNLEVEL=[2345]\nexec getty\n")
            .file("etc/init/tty1.override", "manual\n")
            .file("etc/init/mounted-x.conf", "task\nexec true\n");
        let services = collect(&Root::new(&src), &init(InitKind::Upstart, Some("2")));
        assert_eq!(services.len(), 1);
        assert_eq!(
            services[0].starts_in,
            ["(filesystem and net-device-up IFACE!=lo)"]
        );
    }

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
        let init = InitSystem::detect(&Root::new(&src));
        assert_eq!(init.kind, InitKind::Systemd);
        assert_eq!(init.default.as_deref(), Some("multi-user.target"));
    }

    #[test]
    fn runlevel_from_inittab() {
        assert_eq!(
            model::sysv::initdefault("# x\nid:3:initdefault:\nsi::sysinit:/etc/rc.d/rc.sysinit\n")
                .as_deref(),
            Some("3")
        );
    }
}
