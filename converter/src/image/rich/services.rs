//! The services the image runs, from the plan: those it keeps, as rehost-init runs them,
//! and the masks and whiteouts that keep every other enabled service from starting.

use super::items::{whiteout_of, Item, Items};
use crate::error::{Error, Result};
use crate::inventory::fs::Root;
use crate::plan::Plan;
use rehost_init::config::{ServiceEntry, ServiceKind};
use rehost_init::model::{self, InitKind as InitSystem};

/// The services kept (kinds settled against the image's init, each loadable now rather
/// than failing at boot) and those every enabled service that is not kept.
pub struct Services {
    pub kept: Vec<ServiceEntry>,
    pub dropped: Vec<ServiceEntry>,
}

/// What the plan keeps, as rehost-init runs it. A `KIND:` prefix (`sysv:legacyd`) names
/// the definition; a name without a unit suffix is a script or job of the image's own init.
pub fn resolve(fs: &Root<'_>, init_system: InitSystem, plan: &Plan) -> Result<Services> {
    // Everything the image's own init starts (machine-only services included: what is
    // not kept is masked), under the name and kind rehost-init runs it by.
    let all = model::boot_entries(fs, &[]);
    let mut kept: Vec<ServiceEntry> = plan
        .kept()
        // rehost-init runs services, timers, sockets and scripts (`rc.local` is one);
        // targets and the other unit kinds are the image init's business.
        .filter(|d| {
            !is_unit_name(&d.name)
                || d.name.ends_with(".service")
                || d.name.ends_with(".timer")
                || d.name.ends_with(".socket")
        })
        .map(|d| {
            let mut e = entry(&d.name, d.critical, init_system, &all);
            e.optional = d.optional && !d.critical;
            e
        })
        .collect();
    kept.dedup_by(|a, b| a.name == b.name && a.kind == b.kind);
    for e in &kept {
        rehost_init::service::load(fs, e).map_err(|err| Error::Profile {
            path: format!("service {}", e.name),
            reason: err.to_string(),
        })?;
    }
    let dropped = all
        .into_iter()
        .filter(|a| !kept.iter().any(|k| k.name == a.name && k.kind == a.kind))
        .collect();
    Ok(Services { kept, dropped })
}

/// A kept name as rehost-init runs it: a `KIND:` prefix names the definition; a name
/// without a unit suffix takes the kind the model gives it (a SysV script under upstart
/// stays one), else the image init's own.
fn entry(
    name: &str,
    critical: bool,
    init_system: InitSystem,
    all: &[ServiceEntry],
) -> ServiceEntry {
    let (kind, name) = match name.split_once(':') {
        Some(("sysv", n)) => (ServiceKind::Sysv, n.to_string()),
        Some(("openrc", n)) => (ServiceKind::Openrc, n.to_string()),
        Some(("upstart", n)) => (ServiceKind::Upstart, n.to_string()),
        Some(("systemd", n)) => (ServiceKind::Systemd, n.to_string()),
        _ if is_unit_name(name) => (ServiceKind::Systemd, name.to_string()),
        _ if all.iter().any(|a| a.name == name) => {
            let known = all.iter().find(|a| a.name == name).expect("found");
            (known.kind, name.to_string())
        }
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
        optional: false,
    }
}

/// Whether `name` is a systemd unit's (its suffix a unit kind); otherwise it names a
/// script or job of the image's own init (`ssh`, `rc.local`).
fn is_unit_name(name: &str) -> bool {
    model::systemd::is_unit_name(name)
}

/// Masks a dropped service and removes it from its init's start lists.
pub fn drop_service(fs: &Root<'_>, d: &ServiceEntry, items: &mut Items) {
    let links = match d.kind {
        ServiceKind::Systemd => {
            items.insert(
                format!("/etc/systemd/system/{}", d.name),
                Item::Symlink("/dev/null".into()),
            );
            model::systemd::links_to(fs, &d.name)
        }
        ServiceKind::Sysv => model::sysv::links_to(fs, &d.name),
        ServiceKind::Openrc => model::openrc::links_to(fs, &d.name),
        ServiceKind::Upstart => {
            items.insert(
                format!("/etc/init/{}.override", d.name),
                Item::bytes(
                    0o644,
                    b"# rehost: dropped from the container\nmanual\n".to_vec(),
                ),
            );
            Vec::new()
        }
    };
    for link in links {
        items.insert(whiteout_of(&link), Item::Whiteout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_settle_against_the_image_init() {
        let e = entry("ssh", false, InitSystem::Systemd, &[]);
        assert_eq!(
            (e.name.as_str(), e.kind),
            ("ssh.service", ServiceKind::Systemd)
        );
        let e = entry("sysv:legacyd", true, InitSystem::Systemd, &[]);
        assert_eq!((e.name.as_str(), e.kind), ("legacyd", ServiceKind::Sysv));
        assert!(e.critical);
        let e = entry("ssh", false, InitSystem::Sysv, &[]);
        assert_eq!(e.kind, ServiceKind::Sysv);
        let e = entry("cron.timer", false, InitSystem::Sysv, &[]);
        assert_eq!(e.kind, ServiceKind::Systemd);
    }
}
