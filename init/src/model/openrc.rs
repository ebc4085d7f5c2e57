//! OpenRC: the scripts linked into the runlevels the system boots through (`sysinit`,
//! `boot`, then `default`).

use super::fs::FileSystem;
use super::init_system::base_name;
use super::{Finding, Origin, Service};

/// The runlevels OpenRC enters at boot, in order.
pub const BOOT_RUNLEVELS: &[&str] = &["sysinit", "boot", "default"];

/// The scripts of the boot runlevels, each once, in runlevel order.
pub fn enabled(fs: &dyn FileSystem, findings: &mut Vec<Finding>) -> Vec<Service> {
    let mut out: Vec<Service> = Vec::new();
    for runlevel in BOOT_RUNLEVELS {
        let dir = format!("/etc/runlevels/{runlevel}");
        let mut names = fs.read_dir(&dir).unwrap_or_default();
        names.sort();
        for name in names {
            let path = format!("{dir}/{name}");
            let script_name = match fs.read_link(&path) {
                Ok(Some(target)) => base_name(&target).to_string(),
                _ => name.clone(),
            };
            let script = match fs.resolve(&path, true) {
                Ok(s) if fs.exists(&s) => s,
                _ => {
                    findings.push(Finding::new(
                        &path,
                        "runlevel link to a script that does not exist (skipped)",
                    ));
                    continue;
                }
            };
            if let Some(existing) = out.iter_mut().find(|s| s.name == script_name) {
                existing.enabled_by.push(path);
                existing.starts_in.push((*runlevel).into());
                continue;
            }
            out.push(Service {
                name: script_name,
                kind: "script".into(),
                origin: Origin::Openrc,
                file: Some(script),
                enabled_by: vec![path],
                starts_in: vec![(*runlevel).into()],
            });
        }
    }
    out
}

/// Every runlevel entry of `script` (`/etc/runlevels/default/sshd`): what removes it from
/// every runlevel.
pub fn links_to(fs: &dyn FileSystem, script: &str) -> Vec<String> {
    let mut levels = fs.read_dir("/etc/runlevels").unwrap_or_default();
    levels.sort();
    levels
        .into_iter()
        .map(|rl| format!("/etc/runlevels/{rl}/{script}"))
        .filter(|p| fs.exists(p))
        .collect()
}
