//! `Condition*=` and `Assert*=` checks, evaluated inside the container when a service is
//! about to start.

use crate::units::systemd::Condition;
use std::os::unix::fs::PermissionsExt;

/// The outcome of a unit's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Start it.
    Go,
    /// A condition failed: skip it, not an error.
    Skip(String),
    /// An assertion failed: it fails.
    Fail(String),
}

/// Evaluates one check; `None` when its kind is not supported (the caller logs it and
/// treats it as met).
pub fn check(c: &Condition) -> Option<bool> {
    let p = &c.value;
    let meta = std::fs::metadata(p);
    let raw = match c.kind.as_str() {
        "PathExists" => std::fs::symlink_metadata(p).is_ok(),
        "PathExistsGlob" => glob_exists(p),
        "PathIsDirectory" => meta.map(|m| m.is_dir()).unwrap_or(false),
        "PathIsSymbolicLink" => std::fs::symlink_metadata(p)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false),
        "PathIsMountPoint" => is_mount_point(p),
        "PathIsReadWrite" => std::fs::metadata(p).is_ok() && !is_read_only(p),
        "FileNotEmpty" => meta.map(|m| m.is_file() && m.len() > 0).unwrap_or(false),
        "FileIsExecutable" => meta
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false),
        "DirectoryNotEmpty" => std::fs::read_dir(p)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false),
        // We are in a container: "container" and "yes" hold, machine types do not.
        "Virtualization" => matches!(
            p.as_str(),
            "yes" | "container" | "rehost" | "docker" | "podman" | "oci"
        ),
        "Host" => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim() == p)
            .unwrap_or(false),
        // No first boot, no pending /usr update, no kernel command line of our own.
        "FirstBoot" | "NeedsUpdate" | "KernelCommandLine" => false,
        "ControlGroupController" => true,
        _ => return None,
    };
    Some(raw != c.negate)
}

/// Evaluates every check of a unit as systemd does: all non-trigger conditions must hold,
/// and at least one trigger (`|`) condition if there are any. Unsupported kinds are
/// returned so they can be logged.
pub fn evaluate(conds: &[Condition]) -> (Verdict, Vec<String>) {
    let mut unsupported = Vec::new();
    let mut trigger_seen = false;
    let mut trigger_ok = false;
    let describe = |c: &Condition| {
        format!(
            "{}{}={}{}",
            if c.assert { "Assert" } else { "Condition" },
            c.kind,
            if c.negate { "!" } else { "" },
            c.value
        )
    };
    for c in conds {
        let ok = match check(c) {
            Some(ok) => ok,
            None => {
                unsupported.push(describe(c));
                true
            }
        };
        if c.trigger && !c.assert {
            trigger_seen = true;
            trigger_ok |= ok;
            continue;
        }
        if !ok {
            let v = if c.assert {
                Verdict::Fail(format!("assertion failed: {}", describe(c)))
            } else {
                Verdict::Skip(format!("condition not met: {}", describe(c)))
            };
            return (v, unsupported);
        }
    }
    if trigger_seen && !trigger_ok {
        return (
            Verdict::Skip("no triggering condition met".into()),
            unsupported,
        );
    }
    (Verdict::Go, unsupported)
}

fn glob_exists(pattern: &str) -> bool {
    let (dir, pat) = pattern.rsplit_once('/').unwrap_or((".", pattern));
    let Ok(entries) = std::fs::read_dir(if dir.is_empty() { "/" } else { dir }) else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|n| wildcard(pat.as_bytes(), n.as_bytes()))
    })
}

fn wildcard(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&p[1..], s) || (!s.is_empty() && wildcard(p, &s[1..])),
        (Some(b'?'), Some(_)) => wildcard(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&p[1..], &s[1..]),
        _ => false,
    }
}

fn is_mount_point(p: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(4) == Some(p)))
        .unwrap_or(false)
}

fn is_read_only(p: &str) -> bool {
    let c = std::ffi::CString::new(p).unwrap_or_default();
    // SAFETY: access(2) with a valid C string.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(kind: &str, negate: bool, trigger: bool, value: &str) -> Condition {
        Condition {
            kind: kind.into(),
            assert: false,
            negate,
            trigger,
            value: value.into(),
        }
    }

    #[test]
    fn evaluates_conditions() {
        assert_eq!(
            evaluate(&[cond("PathExists", true, false, "/nonexistent/x")]).0,
            Verdict::Go
        );
        assert!(matches!(
            evaluate(&[cond("PathExists", false, false, "/nonexistent/x")]).0,
            Verdict::Skip(_)
        ));
        assert_eq!(
            evaluate(&[
                cond("PathIsDirectory", false, true, "/nonexistent"),
                cond("PathIsDirectory", false, true, "/")
            ])
            .0,
            Verdict::Go
        );
        assert!(matches!(
            evaluate(&[cond("PathIsDirectory", false, true, "/nonexistent")]).0,
            Verdict::Skip(_)
        ));
        let mut a = cond("PathExists", false, false, "/nonexistent");
        a.assert = true;
        assert!(matches!(evaluate(&[a]).0, Verdict::Fail(_)));
        let (v, unsupported) = evaluate(&[cond("Security", false, false, "selinux")]);
        assert_eq!((v, unsupported.len()), (Verdict::Go, 1));
        assert!(wildcard(b"*.conf", b"a.conf") && !wildcard(b"*.conf", b"a.cfg"));
    }
}
