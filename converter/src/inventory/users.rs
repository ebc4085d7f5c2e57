//! The accounts that can log in: those of /etc/passwd with a real shell.

use super::fs::Root;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// Shells that mean "no login".
fn is_login_shell(shell: &str) -> bool {
    let name = shell.rsplit('/').next().unwrap_or("");
    !shell.is_empty()
        && !matches!(
            name,
            "nologin" | "false" | "sync" | "halt" | "shutdown" | "true"
        )
}

pub fn collect(root: &Root) -> Vec<User> {
    let Some(text) = root.read_text("etc/passwd") else {
        root.finding("/etc/passwd", "no passwd file: users unknown");
        return Vec::new();
    };
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') || line.starts_with('+') {
            continue;
        }
        let f: Vec<&str> = line.split(':').collect();
        let (Some(uid), Some(gid)) = (
            f.get(2).and_then(|v| v.parse().ok()),
            f.get(3).and_then(|v| v.parse().ok()),
        ) else {
            root.finding(format!("/etc/passwd:{}", n + 1), "malformed line (skipped)");
            continue;
        };
        if f.len() < 7 || !is_login_shell(f[6]) {
            continue;
        }
        users.push(User {
            name: f[0].into(),
            uid,
            gid,
            home: f[5].into(),
            shell: f[6].into(),
        });
    }
    users
}

/// Home directories of every account, for the secret search.
pub fn homes(root: &Root) -> Vec<String> {
    let mut homes: Vec<String> = root
        .read_text("etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(':').nth(5).map(str::to_string))
        .filter(|h| h.len() > 1 && h.starts_with('/'))
        .collect();
    homes.extend(
        root.list_names("home")
            .into_iter()
            .map(|n| format!("/home/{n}")),
    );
    homes.push("/root".into());
    homes.sort();
    homes.dedup();
    homes
}
