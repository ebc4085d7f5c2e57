//! Secrets: private keys, cloud and registry credentials, password hashes. Listed by
//! path and kind only; their content is read to recognise them and never kept.

use super::fs::{base_name, show, Root};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Secret {
    pub path: String,
    /// password-hashes, ssh-host-private-key, ssh-private-key, private-key,
    /// cloud-credentials, registry-credentials, kubeconfig, password-file.
    pub kind: String,
    /// What is there, without the content (`3 accounts with a password hash`).
    pub detail: Option<String>,
}

/// Files under a home directory that hold credentials, by kind.
const HOME_FILES: &[(&str, &str, &str)] = &[
    (".aws/credentials", "cloud-credentials", "AWS"),
    (
        ".config/gcloud/credentials.db",
        "cloud-credentials",
        "Google Cloud",
    ),
    (
        ".config/gcloud/application_default_credentials.json",
        "cloud-credentials",
        "Google Cloud",
    ),
    (".azure/accessTokens.json", "cloud-credentials", "Azure"),
    (".azure/msal_token_cache.json", "cloud-credentials", "Azure"),
    (".docker/config.json", "registry-credentials", "Docker"),
    (".kube/config", "kubeconfig", "Kubernetes"),
    (".pgpass", "password-file", "PostgreSQL"),
    (".my.cnf", "password-file", "MySQL"),
    (".netrc", "password-file", "netrc"),
    (".git-credentials", "password-file", "git"),
];

/// Names worth opening to see whether they hold a private key.
pub fn may_hold_key(name: &[u8]) -> bool {
    let name = String::from_utf8_lossy(name);
    name.starts_with("id_") && !name.ends_with(".pub")
        || name.ends_with(".key")
        || name.ends_with(".pem")
        || name.ends_with("_key")
        || name.ends_with(".p12")
        || name.ends_with(".pfx")
}

pub fn collect(root: &Root, homes: &[String], key_candidates: &[Vec<u8>]) -> Vec<Secret> {
    let mut out = Vec::new();
    for (path, what) in [("etc/shadow", "account"), ("etc/gshadow", "group")] {
        if let Some(text) = root.read_text(path) {
            let hashes = text
                .lines()
                .filter(|l| {
                    let hash = l.split(':').nth(1).unwrap_or("");
                    // `*`, `!`, `!!` and `!hash` lock the account; empty has no password.
                    !hash.is_empty() && !hash.starts_with('!') && !hash.starts_with('*')
                })
                .count();
            if hashes > 0 {
                out.push(Secret {
                    path: format!("/{path}"),
                    kind: "password-hashes".into(),
                    detail: Some(format!(
                        "{hashes} {what}{} with a password hash",
                        if hashes == 1 { "" } else { "s" }
                    )),
                });
            }
        }
    }
    for home in homes {
        let home = home.trim_start_matches('/');
        for (file, kind, what) in HOME_FILES {
            let path = format!("{home}/{file}");
            if root.is_file(&path) {
                out.push(Secret {
                    path: format!("/{path}"),
                    kind: kind.to_string(),
                    detail: Some(what.to_string()),
                });
            }
        }
    }
    for path in key_candidates {
        let Some(head) = root.head(path, 8192) else {
            continue;
        };
        let text = String::from_utf8_lossy(&head);
        let name = base_name(path);
        let binary_bundle = name.ends_with(b".p12") || name.ends_with(b".pfx");
        if !text.contains("PRIVATE KEY-----") && !binary_bundle {
            continue;
        }
        let kind = if path.starts_with(b"etc/ssh/ssh_host_") {
            "ssh-host-private-key"
        } else if text.contains("OPENSSH PRIVATE KEY") || name.starts_with(b"id_") {
            "ssh-private-key"
        } else {
            "private-key"
        };
        out.push(Secret {
            path: show(path),
            kind: kind.into(),
            detail: text
                .contains("ENCRYPTED")
                .then(|| "encrypted with a passphrase".into()),
        });
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::fs::testing::MemSource;

    #[test]
    fn hashes_and_keys_by_kind() {
        let src = MemSource::new()
            .file(
                "etc/shadow",
                "root:$6$salt$hash:19000::::::\ndaemon:*:19000::::::\nops:!$6$x:1::::::\napp:$y$j9T$abc:1::::::\n",
            )
            .file("root/.ssh/id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n")
            .file("srv/app/tls.key", "-----BEGIN PRIVATE KEY-----\nMII\n")
            .file("srv/app/cert.pem", "-----BEGIN CERTIFICATE-----\nMII\n")
            .file("home/ops/.aws/credentials", "[default]\naws_secret_access_key=x\n");
        let root = Root::new(&src);
        let candidates: Vec<Vec<u8>> = vec![
            b"root/.ssh/id_ed25519".to_vec(),
            b"srv/app/tls.key".to_vec(),
            b"srv/app/cert.pem".to_vec(),
        ];
        let secrets = collect(&root, &["/home/ops".into(), "/root".into()], &candidates);
        let kinds: Vec<(&str, &str)> = secrets
            .iter()
            .map(|s| (s.path.as_str(), s.kind.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("/etc/shadow", "password-hashes"),
                ("/home/ops/.aws/credentials", "cloud-credentials"),
                ("/root/.ssh/id_ed25519", "ssh-private-key"),
                ("/srv/app/tls.key", "private-key"),
            ]
        );
        assert_eq!(
            secrets[0].detail.as_deref(),
            Some("2 accounts with a password hash")
        );
        let json = serde_json::to_string(&secrets).unwrap();
        assert!(!json.contains("$6$") && !json.contains("BEGIN"), "{json}");
    }
}
