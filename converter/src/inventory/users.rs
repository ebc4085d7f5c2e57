//! The accounts that can log in: those of /etc/passwd (read by the one parser,
//! [`rehost_init::users`]) with a real shell.

use super::fs::Root;
use rehost_init::users::{parse_passwd, read_passwd};
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
    let (entries, malformed) = read_passwd(&text);
    for n in malformed {
        root.finding(format!("/etc/passwd:{n}"), "malformed line (skipped)");
    }
    entries
        .into_iter()
        .filter(|e| is_login_shell(&e.shell))
        .map(|e| User {
            name: e.name,
            uid: e.uid,
            gid: e.gid,
            home: e.home,
            shell: e.shell,
        })
        .collect()
}

/// Home directories of every account, for the secret search.
pub fn homes(root: &Root) -> Vec<String> {
    let mut homes: Vec<String> = parse_passwd(&root.read_text("etc/passwd").unwrap_or_default())
        .into_iter()
        .map(|e| e.home)
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
