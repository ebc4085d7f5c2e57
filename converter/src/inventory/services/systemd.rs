//! systemd: the unit files that are enabled, decided as `systemctl list-unit-files`
//! decides it, offline. A unit file's state comes from the first directory of the
//! search path that has it (a symlink to /dev/null or an empty file masks it, a symlink
//! to another name makes it an alias); it is enabled when a symlink in the
//! configuration directories (/etc, /run) points at it: in a `*.wants`, `*.requires`
//! or `*.upholds` directory, or as an alias. SysV scripts without a native unit that
//! the default runlevels start become services through systemd's sysv generator.

use super::sysv;
use super::{Origin, Service};
use crate::entry::Kind;
use crate::inventory::fs::{base_name, show, Root};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub const UNIT_SUFFIXES: &[&str] = &[
    "service",
    "socket",
    "timer",
    "target",
    "path",
    "mount",
    "automount",
    "swap",
    "slice",
    "device",
    "scope",
];

/// The unit search path, most important first, and whether each is configuration
/// (where enablement symlinks count) rather than vendor data.
pub const UNIT_DIRS: &[(&str, bool)] = &[
    ("etc/systemd/system", true),
    ("run/systemd/system", true),
    ("usr/local/lib/systemd/system", false),
    ("usr/lib/systemd/system", false),
    ("lib/systemd/system", false),
];

/// Directories of a unit's dependencies expressed as symlinks.
const DEPENDENCY_DIRS: &[&str] = &[".wants", ".requires", ".upholds"];

#[derive(Debug, Clone)]
pub struct UnitDir {
    /// As people know it: `/usr/lib/systemd/system`.
    pub shown: String,
    /// The directory in the tree, symlinks resolved (`lib` is often `usr/lib`).
    pub resolved: Vec<u8>,
    pub config: bool,
}

/// What the first file of a unit's name in the search path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitState {
    /// A unit file; its resolved tree path.
    File(Vec<u8>),
    /// A symlink to /dev/null or an empty file.
    Masked,
    /// A symlink to a unit of another name.
    Alias(String),
}

#[derive(Debug, Clone)]
pub struct UnitFile {
    pub name: String,
    /// Where it was found, for people.
    pub path: String,
    pub state: UnitState,
}

/// A symlink in a configuration directory that may enable a unit.
#[derive(Debug, Clone)]
struct EnablingLink {
    /// The link's own name (an instance name for templates: `getty@tty1.service`).
    name: String,
    /// Base names of the link's target, as written and fully resolved.
    target: String,
    resolved: String,
    /// For people: `/etc/systemd/system/multi-user.target.wants/ssh.service`.
    path: String,
    /// The unit whose dependency directory holds it; `None` for an alias at top level.
    wanted_by: Option<String>,
}

/// The search path directories that exist, each once (a merged /usr makes
/// `lib/systemd/system` and `usr/lib/systemd/system` the same).
pub fn unit_dirs(root: &Root) -> Vec<UnitDir> {
    let mut out: Vec<UnitDir> = Vec::new();
    for (dir, config) in UNIT_DIRS {
        let Some(resolved) = root.resolve(dir, true) else {
            continue;
        };
        if !root.is_dir(&resolved) || out.iter().any(|d| d.resolved == resolved) {
            continue;
        }
        out.push(UnitDir {
            shown: format!("/{dir}"),
            resolved,
            config: *config,
        });
    }
    out
}

pub fn is_unit_name(name: &str) -> bool {
    match name.rsplit_once('.') {
        Some((stem, suffix)) => !stem.is_empty() && UNIT_SUFFIXES.contains(&suffix),
        None => false,
    }
}

/// `getty@.service` for `getty@tty1.service`; `None` for a name that is no instance.
pub fn template_of(name: &str) -> Option<String> {
    let (prefix, rest) = name.split_once('@')?;
    let (instance, suffix) = rest.rsplit_once('.')?;
    (!instance.is_empty()).then(|| format!("{prefix}@.{suffix}"))
}

/// Every unit file of the search path, by name, as the first directory holding it says.
pub fn unit_files(root: &Root, dirs: &[UnitDir]) -> BTreeMap<String, UnitFile> {
    let mut units = BTreeMap::new();
    for dir in dirs {
        for raw in root.list(&dir.resolved) {
            let name = String::from_utf8_lossy(&raw).into_owned();
            if !is_unit_name(&name) || units.contains_key(&name) {
                continue;
            }
            let path = [&dir.resolved[..], b"/", &raw].concat();
            let shown = format!("{}/{name}", dir.shown);
            let Some(entry) = root.lstat(&path) else {
                continue;
            };
            let state = match entry.kind {
                Kind::Dir => continue,
                // systemd recognises a mask by the link's target, whether or not the
                // tree has a /dev/null (a snapshot may not).
                Kind::Symlink if entry.link == b"/dev/null" => UnitState::Masked,
                Kind::Symlink => {
                    let Some(resolved) = root.resolve(&path, true) else {
                        // A dangling link is no unit file; a loop is already a finding.
                        continue;
                    };
                    let first = String::from_utf8_lossy(base_name(&entry.link)).into_owned();
                    let last = String::from_utf8_lossy(base_name(&resolved)).into_owned();
                    if resolved == b"dev/null" {
                        UnitState::Masked
                    } else if first != name && is_unit_name(&first) {
                        UnitState::Alias(first)
                    } else if last != name && is_unit_name(&last) {
                        UnitState::Alias(last)
                    } else {
                        match root.stat(&resolved).ok_or(()) {
                            Ok(e) if e.kind == Kind::File && e.size == 0 => UnitState::Masked,
                            Ok(e) if e.kind == Kind::File => UnitState::File(resolved),
                            _ => continue,
                        }
                    }
                }
                Kind::File if entry.size == 0 => UnitState::Masked,
                Kind::File | Kind::Hardlink => UnitState::File(path),
                _ => continue,
            };
            units.insert(
                name.clone(),
                UnitFile {
                    name,
                    path: shown,
                    state,
                },
            );
        }
    }
    units
}

/// The symlinks of the configuration directories that can enable units.
fn enabling_links(root: &Root, dirs: &[UnitDir]) -> Vec<EnablingLink> {
    let mut links = Vec::new();
    for dir in dirs.iter().filter(|d| d.config) {
        for raw in root.list(&dir.resolved) {
            let name = String::from_utf8_lossy(&raw).into_owned();
            let path = [&dir.resolved[..], b"/", &raw].concat();
            let Some(entry) = root.lstat(&path) else {
                continue;
            };
            if entry.kind == Kind::Symlink && is_unit_name(&name) {
                if let Some(link) = enabling_link(root, &path, &name, None) {
                    links.push(EnablingLink {
                        path: format!("{}/{name}", dir.shown),
                        ..link
                    });
                }
                continue;
            }
            let Some(owner) = DEPENDENCY_DIRS
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
            else {
                continue;
            };
            if entry.kind != Kind::Dir {
                continue;
            }
            for child in root.list(&path) {
                let child_name = String::from_utf8_lossy(&child).into_owned();
                let child_path = [&path[..], b"/", &child].concat();
                if let Some(link) =
                    enabling_link(root, &child_path, &child_name, Some(owner.to_string()))
                {
                    links.push(EnablingLink {
                        path: format!("{}/{name}/{child_name}", dir.shown),
                        ..link
                    });
                }
            }
        }
    }
    links
}

fn enabling_link(
    root: &Root,
    path: &[u8],
    name: &str,
    wanted_by: Option<String>,
) -> Option<EnablingLink> {
    let target = root.read_link(path)?;
    let resolved = root.resolve(path, true).unwrap_or_default();
    Some(EnablingLink {
        name: name.to_string(),
        target: String::from_utf8_lossy(base_name(&target)).into_owned(),
        resolved: String::from_utf8_lossy(base_name(&resolved)).into_owned(),
        path: show(path),
        wanted_by,
    })
}

/// The enabled units, what `systemctl list-unit-files --state=enabled` lists, plus the
/// SysV scripts the sysv generator would start.
pub fn enabled(root: &Root) -> Vec<Service> {
    let dirs = unit_dirs(root);
    let units = unit_files(root, &dirs);
    let links = enabling_links(root, &dirs);
    let mut out = Vec::new();
    for unit in units.values() {
        let UnitState::File(file) = &unit.state else {
            continue;
        };
        let is_template = unit.name.contains("@.");
        let mut enabled_by = Vec::new();
        let mut starts_in = BTreeSet::new();
        for link in &links {
            let points_here = link.target == unit.name || link.resolved == unit.name;
            let named_here = link.name == unit.name
                || (is_template && template_of(&link.name).as_deref() == Some(&unit.name));
            // A link of another name pointing here is an alias (Alias=) when at top
            // level; in a dependency directory it must carry the unit's own name.
            let counts = points_here && (named_here || link.wanted_by.is_none());
            if counts {
                enabled_by.push(link.path.clone());
                starts_in.insert(link.wanted_by.clone().unwrap_or_else(|| "alias".into()));
            }
        }
        if enabled_by.is_empty() {
            continue;
        }
        let kind = unit.name.rsplit_once('.').map(|(_, s)| s).unwrap_or("");
        out.push(Service {
            name: unit.name.clone(),
            kind: kind.into(),
            origin: Some(Origin::Systemd),
            file: Some(show(file)),
            enabled_by,
            starts_in: starts_in.into_iter().collect(),
            ..Default::default()
        });
    }
    out.extend(sysv_generated(root, &units));
    out
}

/// The SysV scripts systemd-sysv-generator turns into `NAME.service`: executable, no
/// native unit of that name, started in one of the runlevels 2 to 5.
fn sysv_generated(root: &Root, units: &BTreeMap<String, UnitFile>) -> Vec<Service> {
    let mut found: BTreeMap<String, Service> = BTreeMap::new();
    for runlevel in ["2", "3", "4", "5"] {
        for link in sysv::start_links(root, runlevel) {
            let stem = link.name.strip_suffix(".sh").unwrap_or(&link.name);
            let unit = format!("{stem}.service");
            if units.contains_key(&unit) {
                continue;
            }
            let executable = link
                .script
                .as_deref()
                .and_then(|s| root.stat(s))
                .is_some_and(|e| e.mode & 0o111 != 0);
            if !executable {
                continue;
            }
            let service = found.entry(unit.clone()).or_insert_with(|| Service {
                name: unit,
                kind: "service".into(),
                origin: Some(Origin::SysvGenerator),
                file: link.script.clone(),
                ..Default::default()
            });
            service.enabled_by.push(link.link);
            service.starts_in.push(format!("runlevel {runlevel}"));
        }
    }
    found.into_values().collect()
}

/// Marks which enabled units the default target pulls in, through dependency
/// directories (in every unit directory, vendor ones too) and the `Wants=` and
/// `Requires=` lines units declare.
pub fn mark_started(root: &Root, default: &str, services: &mut [Service]) {
    let dirs = unit_dirs(root);
    let units = unit_files(root, &dirs);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut todo: VecDeque<String> = VecDeque::from([default.to_string()]);
    while let Some(name) = todo.pop_front() {
        // An alias stands for its unit.
        let name = match units.get(&name).map(|u| &u.state) {
            Some(UnitState::Alias(to)) => to.clone(),
            _ => name,
        };
        if !seen.insert(name.clone()) {
            continue;
        }
        let mut deps: Vec<String> = Vec::new();
        for dir in &dirs {
            for suffix in DEPENDENCY_DIRS {
                let sub = [&dir.resolved[..], b"/", name.as_bytes(), suffix.as_bytes()].concat();
                deps.extend(root.list_names(&sub));
            }
        }
        if matches!(
            units.get(&name),
            Some(UnitFile {
                state: UnitState::File(_),
                ..
            })
        ) {
            deps.extend(super::super::details::dependencies(root, &name));
        }
        // Instances are started through their template's definition.
        for dep in deps {
            if let Some(template) = template_of(&dep) {
                todo.push_back(template);
            }
            todo.push_back(dep);
        }
    }
    for service in services.iter_mut() {
        if service.origin == Some(Origin::SysvGenerator) {
            // The generator hooks them into multi-user.target (runlevels 2-4) and
            // graphical.target (5).
            service.started_by_default =
                Some(seen.contains("multi-user.target") || seen.contains("graphical.target"));
        } else {
            service.started_by_default = Some(seen.contains(&service.name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::fs::testing::MemSource;

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
        let services = enabled(&root);
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
        let services = enabled(&Root::new(&src));
        assert_eq!(names(&services), ["legacy.service"]);
        assert_eq!(services[0].origin, Some(Origin::SysvGenerator));
    }

    #[test]
    fn template_names() {
        assert_eq!(
            template_of("getty@tty1.service").as_deref(),
            Some("getty@.service")
        );
        assert_eq!(template_of("getty@.service"), None);
        assert_eq!(template_of("ssh.service"), None);
    }
}
