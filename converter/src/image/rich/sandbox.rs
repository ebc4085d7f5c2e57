//! Unit settings systemd cannot apply inside a container. A bind mount into a unit's own
//! mount namespace (`BindPaths=`, `BindReadOnlyPaths=`, `TemporaryFileSystem=`) needs
//! CAP_SYS_ADMIN, which no engine gives by default; where systemd skips the other
//! sandboxing it cannot set up, these fail the unit (`226/NAMESPACE`: haproxy on Debian).
//! A drop-in clears them for the kept units, so systemd mode runs them as rehost mode does
//! (rehost-init does not apply them either). It is inert on a machine that boots the image
//! with the capability; remove it there to get the sandbox back.

use super::items::{Item, Items};
use crate::inventory::fs::Root;
use rehost_init::config::{ServiceEntry, ServiceKind};
use rehost_init::units::systemd::{lookup, LoadOptions, Lookup};

/// The `[Service]` settings cleared.
const NEEDS_A_MOUNT_NAMESPACE: &[&str] = &["BindPaths", "BindReadOnlyPaths", "TemporaryFileSystem"];

/// The drop-in's name, after the unit's own drop-ins (which may set them too).
const DROP_IN: &str = "90-rehost-container.conf";

/// Adds the drop-ins for the kept systemd units that use those settings.
pub fn relax(fs: &Root<'_>, kept: &[ServiceEntry], items: &mut Items) {
    for e in kept.iter().filter(|e| e.kind == ServiceKind::Systemd) {
        let Ok(Lookup::Found(unit)) = lookup(fs, &e.name, &LoadOptions::default()) else {
            continue;
        };
        let used: Vec<&str> = NEEDS_A_MOUNT_NAMESPACE
            .iter()
            .copied()
            .filter(|k| !unit.file.get_all("Service", k).is_empty())
            .collect();
        if used.is_empty() {
            continue;
        }
        let dir = format!("/etc/systemd/system/{}.d", e.name);
        items.entry(dir.clone()).or_insert(Item::Dir(0o755));
        items.insert(
            format!("{dir}/{DROP_IN}"),
            Item::bytes(0o644, drop_in(&used)),
        );
    }
}

fn drop_in(keys: &[&str]) -> String {
    let mut text = String::from(
        "# rehost: a container gives systemd no CAP_SYS_ADMIN for these bind mounts, and the\n# unit would fail with 226/NAMESPACE. Remove this file where it has the capability.\n[Service]\n",
    );
    for k in keys {
        text.push_str(&format!("{k}=\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drop_in_clears_what_the_unit_uses() {
        let t = drop_in(&["BindReadOnlyPaths"]);
        assert!(t.ends_with("[Service]\nBindReadOnlyPaths=\n"), "{t}");
    }
}
