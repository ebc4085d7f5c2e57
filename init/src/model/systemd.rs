//! systemd: the unit search path and which unit files are enabled, decided as
//! `systemctl list-unit-files` decides it, offline.
//!
//! A unit file's state comes from the first directory of the search path that has its
//! name (a symlink to /dev/null or an empty file masks it, a symlink to another name makes
//! it an alias). It is enabled when a symlink in a configuration directory (/etc, /run)
//! points at it: in a `*.wants`, `*.requires` or `*.upholds` directory under its own name
//! (or an instance of it, for a template), or at top level under another name (an alias).
//! SysV scripts without a native unit that runlevels 2 to 5 start become services through
//! systemd's sysv generator.

use super::fs::{FileKind, FileSystem};
use super::init_system::base_name;
use super::{sysv, Finding, Origin, Service};
use crate::units::systemd::{self as unit, LoadOptions};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The kinds of units (the part of a unit name after the last dot).
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

/// The system unit search path, highest priority first, and whether each directory is
/// configuration (where enablement symlinks and masks count) rather than vendor data.
/// `/usr/lib` and `/lib` are one tier: a distribution ships its units in one of them (or
/// both are the same directory, with a merged /usr).
pub const UNIT_DIRS: &[(&str, bool)] = &[
    ("/etc/systemd/system.control", true),
    ("/run/systemd/system.control", true),
    ("/run/systemd/transient", true),
    ("/etc/systemd/system", true),
    ("/run/systemd/system", true),
    ("/usr/local/lib/systemd/system", false),
    ("/usr/lib/systemd/system", false),
    ("/lib/systemd/system", false),
];

/// The search path's directories, highest priority first.
pub fn search_path() -> impl DoubleEndedIterator<Item = &'static str> {
    UNIT_DIRS.iter().map(|(d, _)| *d)
}

/// Directories of a unit's dependencies expressed as symlinks.
pub const DEPENDENCY_DIRS: &[&str] = &[".wants", ".requires", ".upholds"];

/// Where generators write at boot (early, normal, late): the units and dependency links
/// they make (`postgresql.service.wants/postgresql@15-main.service`) count as the search
/// path's own, at these priorities.
pub const GENERATOR_DIRS: &[&str] = &[
    "/run/systemd/generator.early",
    "/run/systemd/generator",
    "/run/systemd/generator.late",
];

/// How a unit depends on another through a link in its dependency directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkDependency {
    /// `NAME.wants/`.
    Wants,
    /// `NAME.requires/`.
    Requires,
}

/// The units `name` pulls in through links in its `.wants/` and `.requires/` directories
/// (and, for an instance, its template's) anywhere on the search path or in the
/// generators' directories, each once, sorted by name. A link named for a template
/// (`foo@.service`) in a template's directory means the instance of the same name.
pub fn dependency_links(fs: &dyn FileSystem, name: &str) -> Vec<(String, LinkDependency)> {
    let mut owners = vec![name.to_string()];
    let instance = unit::UnitName::parse(name).and_then(|n| n.instance);
    if let Some(t) = template_of(name) {
        owners.push(t);
    }
    let mut out: BTreeMap<String, LinkDependency> = BTreeMap::new();
    let dirs = GENERATOR_DIRS.iter().copied().chain(search_path());
    for dir in dirs {
        for owner in &owners {
            for (suffix, kind) in [
                (".wants", LinkDependency::Wants),
                (".requires", LinkDependency::Requires),
            ] {
                for link in sorted_names(fs, &format!("{dir}/{owner}{suffix}")) {
                    if !is_unit_name(&link) {
                        continue;
                    }
                    let link = match (&instance, link.contains("@.")) {
                        (Some(i), true) => link.replacen("@.", &format!("@{i}."), 1),
                        (None, true) => continue,
                        _ => link,
                    };
                    // Requires wins over Wants when both name the unit.
                    let e = out.entry(link).or_insert(kind);
                    if kind == LinkDependency::Requires {
                        *e = kind;
                    }
                }
            }
        }
    }
    out.into_iter().collect()
}

/// One directory of the search path that exists.
#[derive(Debug, Clone)]
pub struct UnitDir {
    /// As people know it: `/usr/lib/systemd/system`.
    pub shown: String,
    /// The directory with symlinks resolved (`/lib` is often `/usr/lib`).
    pub resolved: String,
    /// Whether enablement links count here.
    pub config: bool,
}

/// What the first file of a unit's name in the search path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitState {
    /// A unit file; its resolved path.
    File(String),
    /// A symlink to /dev/null or an empty file.
    Masked,
    /// A symlink to a unit of another name.
    Alias(String),
}

/// A unit name as the search path has it.
#[derive(Debug, Clone)]
pub struct UnitFile {
    /// The name.
    pub name: String,
    /// Where it was found, for people.
    pub path: String,
    /// What it is.
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

/// Whether `name` is a unit's name (its suffix a unit kind).
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

/// The search path directories that exist, each once (a merged /usr makes
/// `/lib/systemd/system` and `/usr/lib/systemd/system` the same).
pub fn unit_dirs(fs: &dyn FileSystem) -> Vec<UnitDir> {
    let mut out: Vec<UnitDir> = Vec::new();
    for (dir, config) in UNIT_DIRS {
        let Ok(resolved) = fs.resolve(dir, true) else {
            continue;
        };
        if !fs.is_dir(&resolved) || out.iter().any(|d| d.resolved == resolved) {
            continue;
        }
        out.push(UnitDir {
            shown: dir.to_string(),
            resolved,
            config: *config,
        });
    }
    out
}

fn sorted_names(fs: &dyn FileSystem, dir: &str) -> Vec<String> {
    let mut names = fs.read_dir(dir).unwrap_or_default();
    names.sort();
    names
}

/// Every unit name of the search path, as the first directory holding it says.
pub fn unit_files(fs: &dyn FileSystem, dirs: &[UnitDir]) -> BTreeMap<String, UnitFile> {
    let mut units = BTreeMap::new();
    for dir in dirs {
        for name in sorted_names(fs, &dir.resolved) {
            if !is_unit_name(&name) || units.contains_key(&name) {
                continue;
            }
            let path = format!("{}/{name}", dir.resolved);
            let Ok(Some(entry)) = fs.entry(&path) else {
                continue;
            };
            let state = match entry.kind {
                // systemd recognises a mask by the link's target, whether or not the
                // tree has a /dev/null (a snapshot may not).
                FileKind::Symlink if entry.link.as_deref() == Some("/dev/null") => {
                    UnitState::Masked
                }
                FileKind::Symlink => {
                    // A dangling link is no unit file; a loop neither.
                    let Ok(resolved) = fs.resolve(&path, true) else {
                        continue;
                    };
                    let first = base_name(entry.link.as_deref().unwrap_or("")).to_string();
                    let last = base_name(&resolved).to_string();
                    if resolved == "/dev/null" {
                        UnitState::Masked
                    } else if first != name && is_unit_name(&first) {
                        UnitState::Alias(first)
                    } else if last != name && is_unit_name(&last) {
                        UnitState::Alias(last)
                    } else {
                        match fs.entry(&resolved) {
                            Ok(Some(e)) if e.kind == FileKind::File && e.size == 0 => {
                                UnitState::Masked
                            }
                            Ok(Some(e)) if e.kind == FileKind::File => UnitState::File(resolved),
                            _ => continue,
                        }
                    }
                }
                FileKind::File if entry.size == 0 => UnitState::Masked,
                FileKind::File => UnitState::File(path),
                _ => continue,
            };
            units.insert(
                name.clone(),
                UnitFile {
                    path: format!("{}/{name}", dir.shown),
                    name,
                    state,
                },
            );
        }
    }
    units
}

/// The symlinks of the configuration directories that can enable units.
fn enabling_links(fs: &dyn FileSystem, dirs: &[UnitDir]) -> Vec<EnablingLink> {
    let mut links = Vec::new();
    for dir in dirs.iter().filter(|d| d.config) {
        for name in sorted_names(fs, &dir.resolved) {
            let path = format!("{}/{name}", dir.resolved);
            let Ok(Some(entry)) = fs.entry(&path) else {
                continue;
            };
            if entry.kind == FileKind::Symlink && is_unit_name(&name) {
                if let Some(link) = enabling_link(fs, &path, &name, None) {
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
            if entry.kind != FileKind::Dir {
                continue;
            }
            for child in sorted_names(fs, &path) {
                let child_path = format!("{path}/{child}");
                if let Some(link) = enabling_link(fs, &child_path, &child, Some(owner.to_string()))
                {
                    links.push(EnablingLink {
                        path: format!("{}/{name}/{child}", dir.shown),
                        ..link
                    });
                }
            }
        }
    }
    links
}

fn enabling_link(
    fs: &dyn FileSystem,
    path: &str,
    name: &str,
    wanted_by: Option<String>,
) -> Option<EnablingLink> {
    let target = fs.read_link(path).ok()??;
    let resolved = fs.resolve(path, true).unwrap_or_default();
    Some(EnablingLink {
        name: name.to_string(),
        target: base_name(&target).to_string(),
        resolved: base_name(&resolved).to_string(),
        path: path.to_string(),
        wanted_by,
    })
}

/// The enabled units, what `systemctl list-unit-files --state=enabled` lists, plus the
/// SysV scripts the sysv generator would start.
pub fn enabled(fs: &dyn FileSystem, findings: &mut Vec<Finding>) -> Vec<Service> {
    let dirs = unit_dirs(fs);
    let units = unit_files(fs, &dirs);
    let links = enabling_links(fs, &dirs);
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
            if points_here && (named_here || link.wanted_by.is_none()) {
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
            origin: Origin::Systemd,
            file: Some(file.clone()),
            enabled_by,
            starts_in: starts_in.into_iter().collect(),
        });
    }
    out.extend(sysv_generated(fs, &units, findings));
    out
}

/// The SysV scripts systemd-sysv-generator turns into `NAME.service`: executable, no
/// native unit of that name, started in one of the runlevels 2 to 5.
fn sysv_generated(
    fs: &dyn FileSystem,
    units: &BTreeMap<String, UnitFile>,
    findings: &mut Vec<Finding>,
) -> Vec<Service> {
    let mut found: BTreeMap<String, Service> = BTreeMap::new();
    for runlevel in ["2", "3", "4", "5"] {
        for link in sysv::start_links(fs, runlevel, findings) {
            let stem = link.name.strip_suffix(".sh").unwrap_or(&link.name);
            let unit = format!("{stem}.service");
            if units.contains_key(&unit) {
                continue;
            }
            let executable = matches!(fs.stat(&link.script), Ok(Some(e)) if e.mode & 0o111 != 0);
            if !executable {
                continue;
            }
            let service = found.entry(unit.clone()).or_insert_with(|| Service {
                name: unit,
                kind: "service".into(),
                origin: Origin::SysvGenerator,
                file: Some(link.script.clone()),
                enabled_by: Vec::new(),
                starts_in: Vec::new(),
            });
            service.enabled_by.push(link.link);
            service.starts_in.push(format!("runlevel {runlevel}"));
        }
    }
    found.into_values().collect()
}

/// For an enabling link of a dependency directory in a configuration directory
/// (`/etc/systemd/system/multi-user.target.wants/getty@tty1.service`), the name it starts,
/// unless the unit that wants it is one of `not_boot`.
pub fn boot_link_name(link: &str, not_boot: &[&str]) -> Option<String> {
    let (dir, name) = link.rsplit_once('/')?;
    let (base, owner_dir) = dir.rsplit_once('/')?;
    let owner = DEPENDENCY_DIRS
        .iter()
        .find_map(|s| owner_dir.strip_suffix(s))?;
    let config = UNIT_DIRS.iter().any(|(d, c)| *c && *d == base);
    (config && !not_boot.contains(&owner)).then(|| name.to_string())
}

/// The unit `default.target` is, by the first directory of the search path that has it.
pub fn default_target(fs: &dyn FileSystem) -> Option<String> {
    for dir in search_path() {
        let path = format!("{dir}/default.target");
        if let Ok(Some(target)) = fs.read_link(&path) {
            return Some(base_name(&target).to_string());
        }
        if fs.is_file(&path) {
            return Some("default.target".into());
        }
    }
    None
}

/// The units `unit` pulls in with `Wants=` and `Requires=`.
pub fn declared_dependencies(fs: &dyn FileSystem, unit: &str) -> Vec<String> {
    match unit::load(fs, unit, &LoadOptions::default()) {
        Ok(Some(u)) => {
            let section = u.unit_section();
            section.wants.into_iter().chain(section.requires).collect()
        }
        _ => Vec::new(),
    }
}

/// Every unit the target `default` pulls in, itself included: through dependency
/// directories (in every unit directory, vendor ones too) and the `Wants=` and `Requires=`
/// lines units declare. Aliases stand for their unit; instances bring their template.
pub fn pulled_in(fs: &dyn FileSystem, default: &str) -> BTreeSet<String> {
    let dirs = unit_dirs(fs);
    let units = unit_files(fs, &dirs);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut todo: VecDeque<String> = VecDeque::from([default.to_string()]);
    while let Some(name) = todo.pop_front() {
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
                deps.extend(sorted_names(
                    fs,
                    &format!("{}/{name}{suffix}", dir.resolved),
                ));
            }
        }
        if matches!(units.get(&name).map(|u| &u.state), Some(UnitState::File(_))) {
            deps.extend(declared_dependencies(fs, &name));
        }
        for dep in deps {
            if let Some(template) = template_of(&dep) {
                todo.push_back(template);
            }
            todo.push_back(dep);
        }
    }
    seen
}

/// Whether the default target starts the enabled unit `name`, given what it pulls in
/// ([`pulled_in`]).
pub fn started_by_default(name: &str, origin: Origin, pulled: &BTreeSet<String>) -> bool {
    if origin == Origin::SysvGenerator {
        // The generator hooks them into multi-user.target (runlevels 2-4) and
        // graphical.target (5).
        pulled.contains("multi-user.target") || pulled.contains("graphical.target")
    } else {
        pulled.contains(name)
    }
}

/// What disables `unit` in the root: the enabling links in configuration directories that
/// carry its name (resolved, so a layer can white them out).
pub fn links_to(fs: &dyn FileSystem, unit: &str) -> Vec<String> {
    let mut out = Vec::new();
    for dir in unit_dirs(fs).iter().filter(|d| d.config) {
        for name in sorted_names(fs, &dir.resolved) {
            let Some(_) = DEPENDENCY_DIRS.iter().find_map(|s| name.strip_suffix(s)) else {
                continue;
            };
            let path = format!("{}/{name}/{unit}", dir.resolved);
            if fs.exists(&path) {
                out.push(path);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_links_of_units_templates_and_generators() {
        use crate::model::HostRoot;
        use std::os::unix::fs::symlink;
        let d = crate::units::tests_support::tempdir();
        let r = d.as_path();
        let link = |dir: &str, name: &str| {
            let p = r.join(dir.trim_start_matches('/'));
            std::fs::create_dir_all(&p).unwrap();
            symlink("/lib/systemd/system/x.service", p.join(name)).unwrap();
        };
        link("/lib/systemd/system/app.service.wants", "helper.service");
        link("/etc/systemd/system/app.service.requires", "db.service");
        link("/etc/systemd/system/app.service.wants", "db.service");
        link("/run/systemd/generator/app.service.wants", "cache.service");
        link("/lib/systemd/system/app.service.wants", "README");
        link("/lib/systemd/system/getty@.service.wants", "log@.service");
        link("/lib/systemd/system/getty@.service.wants", "plain.service");
        let root = HostRoot::new(r);
        use LinkDependency::{Requires, Wants};
        assert_eq!(
            dependency_links(&root, "app.service"),
            [
                ("cache.service".to_string(), Wants),
                ("db.service".to_string(), Requires),
                ("helper.service".to_string(), Wants),
            ]
        );
        // A template's links hold for each instance, a template name becoming the instance.
        assert_eq!(
            dependency_links(&root, "getty@tty1.service"),
            [
                ("log@tty1.service".to_string(), Wants),
                ("plain.service".to_string(), Wants),
            ]
        );
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

    #[test]
    fn boot_links() {
        let nb = ["shutdown.target"];
        assert_eq!(
            boot_link_name(
                "/etc/systemd/system/multi-user.target.wants/ssh.service",
                &nb
            )
            .as_deref(),
            Some("ssh.service")
        );
        assert_eq!(
            boot_link_name("/etc/systemd/system/shutdown.target.wants/x.service", &nb),
            None
        );
        assert_eq!(
            boot_link_name("/lib/systemd/system/multi-user.target.wants/x.service", &nb),
            None
        );
        assert_eq!(
            boot_link_name("/etc/systemd/system/sshd.service", &nb),
            None
        );
    }
}
