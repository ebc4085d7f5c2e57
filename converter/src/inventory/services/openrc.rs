//! OpenRC: the scripts linked into the runlevels the system boots through
//! (`sysinit`, `boot`, then `default`).

use super::{Origin, Service};
use crate::inventory::fs::{base_name, show, Root};

/// The runlevels OpenRC enters at boot, in order.
pub const BOOT_RUNLEVELS: &[&str] = &["sysinit", "boot", "default"];

pub fn enabled(root: &Root) -> Vec<Service> {
    let mut out: Vec<Service> = Vec::new();
    for runlevel in BOOT_RUNLEVELS {
        let dir = format!("etc/runlevels/{runlevel}");
        for name in root.list(&dir) {
            let path = [dir.as_bytes(), b"/", &name].concat();
            let script_name = match root.read_link(&path) {
                Some(target) => String::from_utf8_lossy(base_name(&target)).into_owned(),
                None => String::from_utf8_lossy(&name).into_owned(),
            };
            let Some(script) = root.resolve(&path, true) else {
                root.finding(
                    show(&path),
                    "runlevel link to a script that does not exist (skipped)",
                );
                continue;
            };
            if let Some(existing) = out.iter_mut().find(|s| s.name == script_name) {
                existing.enabled_by.push(show(&path));
                existing.starts_in.push((*runlevel).into());
                continue;
            }
            out.push(Service {
                name: script_name,
                kind: "script".into(),
                origin: Some(Origin::Openrc),
                file: Some(show(&script)),
                enabled_by: vec![show(&path)],
                starts_in: vec![(*runlevel).into()],
                ..Default::default()
            });
        }
    }
    out
}
