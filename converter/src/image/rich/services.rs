//! The services the image runs, from the plan: those it keeps, as rehost-init runs them,
//! and the masks and whiteouts that keep every other enabled service from starting.

use super::items::{Item, Items};
use super::SourceFs;
use crate::error::{Error, Result};
use crate::plan::Plan;
use rehost_init::config::{ServiceEntry, ServiceKind};
use rehost_init::discover::{self, InitSystem};
use rehost_init::units::{systemd, sysv, FileSystem};

/// The services kept (kinds settled against the image's init, each loadable now rather
/// than failing at boot) and those every enabled service that is not kept.
pub struct Services {
    pub kept: Vec<ServiceEntry>,
    pub dropped: Vec<ServiceEntry>,
}

/// What the plan keeps, as rehost-init runs it. A `KIND:` prefix (`sysv:legacyd`) names
/// the definition; a name without a unit suffix is a script or job of the image's own init.
pub fn resolve(fs: &SourceFs<'_>, init_system: InitSystem, plan: &Plan) -> Result<Services> {
    let mut kept: Vec<ServiceEntry> = plan
        .kept()
        // rehost-init runs services, timers and scripts (`rc.local` is one); targets,
        // sockets and the other unit kinds are the image init's business.
        .filter(|d| {
            !is_unit_name(&d.name) || d.name.ends_with(".service") || d.name.ends_with(".timer")
        })
        .map(|d| entry(&d.name, d.critical, init_system))
        .collect();
    kept.dedup_by(|a, b| a.name == b.name && a.kind == b.kind);
    for e in &kept {
        rehost_init::service::load(fs, e).map_err(|err| Error::Profile {
            path: format!("service {}", e.name),
            reason: err.to_string(),
        })?;
    }
    let dropped = discover::enabled_all(fs)
        .into_iter()
        .filter(|a| !kept.iter().any(|k| k.name == a.name && k.kind == a.kind))
        .collect();
    Ok(Services { kept, dropped })
}

fn entry(name: &str, critical: bool, init_system: InitSystem) -> ServiceEntry {
    let (kind, name) = match name.split_once(':') {
        Some(("sysv", n)) => (ServiceKind::Sysv, n.to_string()),
        Some(("openrc", n)) => (ServiceKind::Openrc, n.to_string()),
        Some(("upstart", n)) => (ServiceKind::Upstart, n.to_string()),
        Some(("systemd", n)) => (ServiceKind::Systemd, n.to_string()),
        _ if is_unit_name(name) => (ServiceKind::Systemd, name.to_string()),
        _ => match init_system {
            InitSystem::Openrc => (ServiceKind::Openrc, name.to_string()),
            InitSystem::Upstart => (ServiceKind::Upstart, name.to_string()),
            InitSystem::Systemd => (ServiceKind::Systemd, format!("{name}.service")),
            _ => (ServiceKind::Sysv, name.to_string()),
        },
    };
    ServiceEntry {
        name,
        kind,
        critical,
    }
}

/// Whether `name` is a systemd unit's (its suffix a unit kind); otherwise it names a
/// script or job of the image's own init (`ssh`, `rc.local`).
fn is_unit_name(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, kind)| crate::inventory::services::systemd::UNIT_SUFFIXES.contains(&kind))
}

/// Masks a dropped service and removes it from its init's start lists.
pub fn drop_service(fs: &SourceFs<'_>, d: &ServiceEntry, items: &mut Items) {
    match d.kind {
        ServiceKind::Systemd => {
            items.insert(
                format!("/etc/systemd/system/{}", d.name),
                Item::Symlink("/dev/null".into()),
            );
            for e in systemd::enabled_units(fs)
                .into_iter()
                .filter(|e| e.unit == d.name)
            {
                let dir = format!(
                    "/etc/systemd/system/{}.{}",
                    e.wanted_by,
                    if e.required { "requires" } else { "wants" }
                );
                if fs.exists(&format!("{dir}/{}", d.name)) {
                    items.insert(format!("{dir}/.wh.{}", d.name), Item::Whiteout);
                }
            }
        }
        ServiceKind::Sysv => {
            for rl in ["0", "1", "2", "3", "4", "5", "6", "S"] {
                let dir = format!("/etc/rc{rl}.d");
                for n in fs.read_dir(&dir).unwrap_or_default() {
                    if sysv::parse_rc_link(rl, &n).is_some_and(|l| l.script == d.name) {
                        items.insert(format!("{dir}/.wh.{n}"), Item::Whiteout);
                    }
                }
            }
        }
        ServiceKind::Openrc => {
            for rl in fs.read_dir("/etc/runlevels").unwrap_or_default() {
                if fs.exists(&format!("/etc/runlevels/{rl}/{}", d.name)) {
                    items.insert(
                        format!("/etc/runlevels/{rl}/.wh.{}", d.name),
                        Item::Whiteout,
                    );
                }
            }
        }
        ServiceKind::Upstart => {
            items.insert(
                format!("/etc/init/{}.override", d.name),
                Item::bytes(
                    0o644,
                    b"# rehost: dropped from the container\nmanual\n".to_vec(),
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_settle_against_the_image_init() {
        let e = entry("ssh", false, InitSystem::Systemd);
        assert_eq!(
            (e.name.as_str(), e.kind),
            ("ssh.service", ServiceKind::Systemd)
        );
        let e = entry("sysv:legacyd", true, InitSystem::Systemd);
        assert_eq!((e.name.as_str(), e.kind), ("legacyd", ServiceKind::Sysv));
        assert!(e.critical);
        let e = entry("ssh", false, InitSystem::Sysv);
        assert_eq!(e.kind, ServiceKind::Sysv);
        let e = entry("cron.timer", false, InitSystem::Sysv);
        assert_eq!(e.kind, ServiceKind::Systemd);
    }
}
