//! `tmpfiles.d` at boot, as `systemd-tmpfiles --create --remove --boot` does it, for the
//! lines packages rely on for their daemons to start: `d` and `D` (directories, `D`
//! emptied at boot), `f` (files, `f+` rewritten), `L` (symlinks, `L+` replacing what is
//! there) and `z` (the mode and owner of what exists). Packages ship their runtime
//! directories this way (`d /run/php 0755 www-data www-data`), and in a container /run
//! starts empty.
//!
//! Other line types (ACLs, attributes, copies, removals, subvolumes, credentials) are
//! counted and reported once, not applied.

use crate::users::Database;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the configuration files are, highest priority first: a file name higher up
/// hides the same name lower down.
pub const DIRS: &[&str] = &[
    "/etc/tmpfiles.d",
    "/run/tmpfiles.d",
    "/usr/local/lib/tmpfiles.d",
    "/usr/lib/tmpfiles.d",
    "/lib/tmpfiles.d",
];

/// Paths never created here: `/run/nologin` keeps non-root users out until
/// systemd-user-sessions removes it at the end of a systemd boot, which rehost mode has not.
const NEVER: &[&str] = &["/run/nologin"];

/// What a line does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `d`: create a directory.
    Dir,
    /// `D`: create a directory, emptied at boot.
    DirEmptied,
    /// `f`: create a file (`f+`: truncate and write it).
    File {
        /// `+`: write even when it exists.
        force: bool,
    },
    /// `L`: create a symlink (`L+`: replace what is there).
    Symlink {
        /// `+`: replace.
        force: bool,
    },
    /// `z`: set the mode and owner of what exists.
    Adjust,
}

/// One line that is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// What it does.
    pub action: Action,
    /// The path (absolute, specifiers expanded; a `z` path may hold a glob in its last part).
    pub path: String,
    /// The mode, when given.
    pub mode: Option<u32>,
    /// The owner, a name or a number, when given.
    pub user: Option<String>,
    /// The group, when given.
    pub group: Option<String>,
    /// The content of a file, the target of a symlink.
    pub argument: Option<String>,
}

/// The lines of one file's text that rehost-init applies, and the types of the others.
pub fn parse(text: &str) -> (Vec<Line>, BTreeSet<String>) {
    let mut lines = Vec::new();
    let mut skipped = BTreeSet::new();
    for raw in text.lines() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        // Type, path, mode, user, group and age are separated by runs of blanks; the
        // argument is the rest of the line, inner blanks included.
        let mut rest = l;
        let mut fields: Vec<&str> = Vec::new();
        while fields.len() < 6 {
            let Some((f, after)) = next_field(rest) else {
                break;
            };
            fields.push(f);
            rest = after;
        }
        let (Some(&ty), Some(&path)) = (fields.first(), fields.get(1)) else {
            continue;
        };
        let field = |i: usize| {
            fields
                .get(i + 2)
                .copied()
                .filter(|f| *f != "-")
                .map(str::to_string)
        };
        let rest = rest.trim();
        let letter = ty.chars().next().unwrap_or(' ');
        let modifiers = &ty[letter.len_utf8()..];
        // `^` lines take their content from credentials, which a container has none of.
        if modifiers.contains('^') {
            skipped.insert(ty.to_string());
            continue;
        }
        let force = modifiers.contains('+');
        let action = match letter {
            'd' => Action::Dir,
            'D' => Action::DirEmptied,
            'f' => Action::File { force },
            'L' => Action::Symlink { force },
            'z' => Action::Adjust,
            _ => {
                skipped.insert(letter.to_string());
                continue;
            }
        };
        let Some(path) = expand(path) else {
            skipped.insert(format!("{letter} with an unknown specifier"));
            continue;
        };
        if !path.starts_with('/') || NEVER.contains(&path.as_str()) {
            continue;
        }
        let mode = field(0).and_then(|m| {
            u32::from_str_radix(m.trim_start_matches(['~', ':']), 8)
                .ok()
                .map(|m| m & 0o7777)
        });
        let owner = |f: Option<String>| f.map(|o| o.trim_start_matches(':').to_string());
        let argument = Some(rest.to_string()).filter(|a| !a.is_empty() && a != "-");
        if matches!(action, Action::Symlink { .. }) && argument.is_none() {
            // The default target is a factory copy under /usr/share/factory, which
            // images rarely have.
            skipped.insert("L without a target".into());
            continue;
        }
        lines.push(Line {
            action,
            path,
            mode,
            user: owner(field(1)),
            group: owner(field(2)),
            argument,
        });
    }
    (lines, skipped)
}

/// The first blank-separated field of `s` and what follows it.
fn next_field(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

/// Expands the specifiers that name fixed system directories; `None` for one that needs
/// the machine (`%m`, `%b`, `%H`, …).
fn expand(path: &str) -> Option<String> {
    let mut out = String::with_capacity(path.len());
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        out.push_str(match chars.next()? {
            '%' => "%",
            't' => "/run",
            'S' => "/var/lib",
            'C' => "/var/cache",
            'L' => "/var/log",
            'T' => "/tmp",
            'V' => "/var/tmp",
            'E' => "/etc",
            'h' => "/root",
            _ => return None,
        });
    }
    Some(out)
}

/// The configuration files under `root`, by name (higher-priority directories hiding
/// lower ones), in name order: (path inside the root, text).
pub fn files(root: &Path) -> Vec<(String, String)> {
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    for dir in DIRS {
        let Ok(rd) = std::fs::read_dir(root.join(dir.trim_start_matches('/'))) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".conf") || by_name.contains_key(&name) {
                continue;
            }
            shown.insert(name.clone(), format!("{dir}/{name}"));
            by_name.insert(name, e.path());
        }
    }
    by_name
        .into_iter()
        .filter_map(|(name, p)| {
            // A link to /dev/null (or an empty file) disables the name: nothing to read.
            let text = std::fs::read_to_string(&p).ok()?;
            Some((shown.remove(&name)?, text))
        })
        .collect()
}

/// Applies the `tmpfiles.d` of `root` (a host path: "/" in the container) to the same
/// root. The first line for a path wins, as in systemd. Gives what could not be done,
/// and the line types not applied, for the log.
pub fn apply_all(root: &Path, users: &Database) -> Vec<String> {
    let mut problems = Vec::new();
    let mut skipped: BTreeSet<String> = BTreeSet::new();
    let mut seen: BTreeSet<(bool, String)> = BTreeSet::new();
    for (file, text) in files(root) {
        let (lines, other) = parse(&text);
        skipped.extend(other);
        for l in lines {
            let adjust = l.action == Action::Adjust;
            if !seen.insert((adjust, l.path.clone())) {
                continue;
            }
            if let Err(e) = apply(root, &l, users) {
                problems.push(format!("{file}: {}: {e}", l.path));
            }
        }
    }
    if !skipped.is_empty() {
        problems.push(format!(
            "tmpfiles.d: line types not applied: {}",
            skipped.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    problems
}

fn host(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Applies one line under `root`.
pub fn apply(root: &Path, l: &Line, users: &Database) -> std::io::Result<()> {
    let p = host(root, &l.path);
    match l.action {
        Action::Dir | Action::DirEmptied => {
            if !p.is_dir() {
                std::fs::create_dir_all(&p)?;
            } else if l.action == Action::DirEmptied {
                for e in std::fs::read_dir(&p)?.flatten() {
                    let path = e.path();
                    let r = if e.file_type()?.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    r?;
                }
            }
            set_owner_mode(&p, l, 0o755, users)
        }
        Action::File { force } => {
            let exists = p.symlink_metadata().is_ok();
            if !exists || force {
                let content = l.argument.as_deref().map(unescape).unwrap_or_default();
                std::fs::write(&p, content)?;
            }
            set_owner_mode(&p, l, 0o644, users)
        }
        Action::Symlink { force } => {
            let target = l.argument.as_deref().unwrap_or_default();
            if let Ok(m) = p.symlink_metadata() {
                if !force || std::fs::read_link(&p).is_ok_and(|t| t == Path::new(target)) {
                    return Ok(());
                }
                if m.is_dir() {
                    std::fs::remove_dir_all(&p)?;
                } else {
                    std::fs::remove_file(&p)?;
                }
            }
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            symlink(target, &p)
        }
        Action::Adjust => {
            for q in matching(&p) {
                if let Ok(m) = q.symlink_metadata() {
                    if !m.file_type().is_symlink() {
                        let default = m.permissions().mode() & 0o7777;
                        set_owner_mode(&q, l, default, users)?;
                    }
                }
            }
            Ok(())
        }
    }
}

/// The paths a `z` line names: itself, or the entries matching a glob in its last part.
fn matching(p: &Path) -> Vec<PathBuf> {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?', '[']) {
        return vec![p.to_path_buf()];
    }
    let Some(dir) = p.parent() else {
        return Vec::new();
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| crate::model::glob(name.as_bytes(), e.file_name().as_encoded_bytes()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// The `\n`, `\t`, `\\` and `\xNN` escapes a file's content may hold.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                b'x' if i + 3 < b.len() => {
                    if let Ok(v) = u8::from_str_radix(&s[i + 2..i + 4], 16) {
                        out.push(v);
                        i += 4;
                        continue;
                    }
                    out.extend_from_slice(&b[i..i + 2]);
                }
                other => out.extend_from_slice(&[b'\\', other]),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Sets the line's mode (else `default` for what it creates) and owner on `p`.
fn set_owner_mode(p: &Path, l: &Line, default: u32, users: &Database) -> std::io::Result<()> {
    let mode = l.mode.unwrap_or(default);
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
    let uid = match &l.user {
        Some(u) => Some(id_of(u, |n| users.user(n).map(|e| e.uid), "user")?),
        None => None,
    };
    let gid = match &l.group {
        Some(g) => Some(id_of(g, |n| users.group(n).map(|e| e.gid), "group")?),
        None => None,
    };
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::chown(p, uid, gid)?;
        // chown clears set-id bits: the mode again.
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

fn id_of(name: &str, lookup: impl Fn(&str) -> Option<u32>, what: &str) -> std::io::Result<u32> {
    name.parse().ok().or_else(|| lookup(name)).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no {what} named {name:?}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::tests_support::tempdir;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn parses_the_lines_packages_ship() {
        let (lines, skipped) = parse(
            "# comment\n\
             d /run/php              0755 www-data www-data -   -\n\
             d /run/postgresql 2775 postgres postgres - -\n\
             D /tmp 1777 root root -\n\
             f+! /run/nologin 0644 - - - \"System is booting up.\"\n\
             f /var/log/wtmp 0664 root utmp -\n\
             f /etc/motd - - - - hello world\\n\n\
             L+ /etc/mtab   -    -    -    -  ../proc/self/mounts\n\
             L /var/log/README - - - -\n\
             z /var/log/journal/%m 2755 root systemd-journal - -\n\
             z %t/log ~2755 :root :systemd-journal - -\n\
             a+ /var/log/journal - - - - group:adm:r-x\n\
             f^ /etc/hosts - - - - network.hosts\n",
        );
        type Summary<'a> = (
            Action,
            &'a str,
            Option<u32>,
            Option<&'a str>,
            Option<&'a str>,
        );
        let summary: Vec<Summary> = lines
            .iter()
            .map(|l| {
                (
                    l.action,
                    l.path.as_str(),
                    l.mode,
                    l.user.as_deref(),
                    l.argument.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (Action::Dir, "/run/php", Some(0o755), Some("www-data"), None),
                (
                    Action::Dir,
                    "/run/postgresql",
                    Some(0o2775),
                    Some("postgres"),
                    None
                ),
                (Action::DirEmptied, "/tmp", Some(0o1777), Some("root"), None),
                (
                    Action::File { force: false },
                    "/var/log/wtmp",
                    Some(0o664),
                    Some("root"),
                    None
                ),
                (
                    Action::File { force: false },
                    "/etc/motd",
                    None,
                    None,
                    Some("hello world\\n")
                ),
                (
                    Action::Symlink { force: true },
                    "/etc/mtab",
                    None,
                    None,
                    Some("../proc/self/mounts")
                ),
                (Action::Adjust, "/run/log", Some(0o2755), Some("root"), None),
            ]
        );
        assert_eq!(lines[6].group.as_deref(), Some("systemd-journal"));
        assert_eq!(
            skipped.into_iter().collect::<Vec<_>>(),
            [
                "L without a target",
                "a",
                "f^",
                "z with an unknown specifier"
            ]
        );
    }

    #[test]
    fn applies_under_a_root_with_overrides_and_owners() {
        let d = tempdir();
        let r = d.as_path();
        let write = |p: &str, t: &str| {
            let p = r.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, t).unwrap();
        };
        let me = unsafe { libc::getuid() };
        let my_group = unsafe { libc::getgid() };
        write("etc/passwd", &format!("svc:x:{me}:{my_group}::/:/bin/sh\n"));
        write("etc/group", &format!("svc:x:{my_group}:\n"));
        write(
            "usr/lib/tmpfiles.d/svc.conf",
            "d /run/svc 2750 svc svc -\nf /run/svc/flag 0600 - - - on\\n\n\
             D /run/empty 0755 - - -\nL /run/link - - - - /run/svc\n",
        );
        // The administrator's file of the same name wins over the package's.
        write("usr/lib/tmpfiles.d/mask.conf", "d /run/masked 0755 - - -\n");
        write("etc/tmpfiles.d/mask.conf", "# nothing\n");
        write("run/empty/old", "stale");
        write("var/log/a.log", "");
        write("usr/lib/tmpfiles.d/z.conf", "z /var/log/*.log 0640 - - -\n");
        let users = Database::read(&crate::units::HostRoot::new(r));
        let problems = apply_all(r, &users);
        assert!(problems.is_empty(), "{problems:?}");
        let m = std::fs::metadata(r.join("run/svc")).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.mode() & 0o7777, 0o2750);
        assert_eq!((m.uid(), m.gid()), (me, my_group));
        assert_eq!(std::fs::read(r.join("run/svc/flag")).unwrap(), b"on\n");
        assert_eq!(
            std::fs::metadata(r.join("run/svc/flag")).unwrap().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_dir(r.join("run/empty")).unwrap().count(), 0);
        assert_eq!(
            std::fs::read_link(r.join("run/link")).unwrap(),
            Path::new("/run/svc")
        );
        assert!(!r.join("run/masked").exists());
        assert_eq!(
            std::fs::metadata(r.join("var/log/a.log")).unwrap().mode() & 0o777,
            0o640
        );
        // A second boot changes nothing and finds nothing wrong.
        assert!(apply_all(r, &users).is_empty());
    }
}
