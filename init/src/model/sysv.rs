//! SysV init: the default runlevel (`id:N:initdefault:` in `/etc/inittab`) and the scripts
//! linked as `S<NN><name>` into that runlevel's rcN.d.

use super::fs::FileSystem;
use super::init_system::{base_name, config_lines};
use super::{Finding, Origin, Service};

/// Where init scripts live: Debian's /etc/init.d, Red Hat's /etc/rc.d/init.d.
pub const SCRIPT_DIRS: &[&str] = &["/etc/init.d", "/etc/rc.d/init.d"];

/// Every runlevel that has an rc directory.
pub const RUNLEVELS: &[&str] = &["0", "1", "2", "3", "4", "5", "6", "S"];

/// One `S` link of a runlevel directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartLink {
    /// The script's name (the link target's base name).
    pub name: String,
    /// The link itself, for people (`/etc/rc2.d/S02ssh`).
    pub link: String,
    /// The script the link points to, resolved inside the root.
    pub script: String,
}

/// `id:N:initdefault:` from inittab.
pub fn initdefault(inittab: &str) -> Option<String> {
    config_lines(inittab).find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 3 && fields[2] == "initdefault" && !fields[1].is_empty())
            .then(|| fields[1].to_string())
    })
}

/// The default runlevel from `/etc/inittab`, `2` (Debian's) when it does not say.
pub fn default_runlevel(fs: &dyn FileSystem) -> String {
    fs.read_text("/etc/inittab")
        .as_deref()
        .and_then(initdefault)
        .unwrap_or_else(|| "2".into())
}

/// The rc directories of `runlevel` that exist (`/etc/rc2.d`, `/etc/rc.d/rc3.d`), each
/// once (one is often a link to the other), as written.
pub fn runlevel_dirs(fs: &dyn FileSystem, runlevel: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for dir in [
        format!("/etc/rc{runlevel}.d"),
        format!("/etc/rc.d/rc{runlevel}.d"),
    ] {
        if !fs.is_dir(&dir) {
            continue;
        }
        let Ok(resolved) = fs.resolve(&dir, true) else {
            continue;
        };
        if !seen.contains(&resolved) {
            seen.push(resolved);
            out.push(dir);
        }
    }
    out
}

/// The start links of a runlevel, in directory order by name (the order `rc` runs them).
/// A link to a script that does not exist is a finding and starts nothing.
pub fn start_links(
    fs: &dyn FileSystem,
    runlevel: &str,
    findings: &mut Vec<Finding>,
) -> Vec<StartLink> {
    let Some(dir) = runlevel_dirs(fs, runlevel).into_iter().next() else {
        return Vec::new();
    };
    let mut names = fs.read_dir(&dir).unwrap_or_default();
    names.sort();
    let mut links = Vec::new();
    for name in names {
        // S, two digits, then the name; anything else (README, K links) does not start.
        let b = name.as_bytes();
        if b.len() < 4 || b[0] != b'S' || !b[1..3].iter().all(u8::is_ascii_digit) {
            continue;
        }
        let path = format!("{dir}/{name}");
        let script_name = match fs.read_link(&path) {
            Ok(Some(t)) => base_name(&t).to_string(),
            _ => name[3..].to_string(),
        };
        let script = match fs.resolve(&path, true) {
            Ok(s) if fs.exists(&s) => s,
            _ => {
                findings.push(Finding::new(
                    &path,
                    "start link to a script that does not exist (skipped)",
                ));
                continue;
            }
        };
        links.push(StartLink {
            name: script_name,
            link: path,
            script,
        });
    }
    links
}

/// The scripts the runlevel starts.
pub fn enabled(fs: &dyn FileSystem, runlevel: &str, findings: &mut Vec<Finding>) -> Vec<Service> {
    let mut out: Vec<Service> = Vec::new();
    for link in start_links(fs, runlevel, findings) {
        if let Some(existing) = out.iter_mut().find(|s| s.name == link.name) {
            existing.enabled_by.push(link.link);
            continue;
        }
        out.push(Service {
            name: link.name,
            kind: "script".into(),
            origin: Origin::Sysv,
            file: Some(link.script),
            enabled_by: vec![link.link],
            starts_in: vec![format!("runlevel {runlevel}")],
        });
    }
    out
}

/// Every rc link (start or kill, any runlevel) that runs `script`, as a path inside its
/// real rc directory: what removes the script from every runlevel.
pub fn links_to(fs: &dyn FileSystem, script: &str) -> Vec<String> {
    let mut out = Vec::new();
    for rl in RUNLEVELS {
        for dir in runlevel_dirs(fs, rl) {
            let Ok(real) = fs.resolve(&dir, true) else {
                continue;
            };
            let mut names = fs.read_dir(&dir).unwrap_or_default();
            names.sort();
            for n in names {
                if crate::units::sysv::parse_rc_link(rl, &n).is_some_and(|l| l.script == script) {
                    out.push(format!("{real}/{n}"));
                }
            }
        }
    }
    out
}
