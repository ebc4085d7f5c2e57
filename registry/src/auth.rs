//! The user's existing registry credentials: containers' `auth.json`, Docker's
//! `config.json` (also under `$DOCKER_CONFIG`), and the credential helpers they name.

use crate::error::{RegistryError, Result};
use base64::Engine;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, Default, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The files to ask, in order: containers' first (as podman and skopeo do), then Docker's.
fn candidate_files() -> Vec<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut files = Vec::new();
    if let Some(f) = env("REGISTRY_AUTH_FILE") {
        files.push(f);
    }
    if let Some(run) = env("XDG_RUNTIME_DIR") {
        files.push(run.join("containers/auth.json"));
    }
    let home = env("HOME");
    match env("XDG_CONFIG_HOME") {
        Some(c) => files.push(c.join("containers/auth.json")),
        None => files.extend(home.iter().map(|h| h.join(".config/containers/auth.json"))),
    }
    match env("DOCKER_CONFIG") {
        Some(d) => files.push(d.join("config.json")),
        None => files.extend(home.iter().map(|h| h.join(".docker/config.json"))),
    }
    files
}

/// The credentials for `registry` (host[:port]), or anonymous when none is configured.
pub fn lookup(registry: &str) -> Result<RegistryAuth> {
    for file in candidate_files() {
        if let Some(auth) = lookup_in(&file, registry)? {
            tracing::debug!("credentials for {registry} from {}", file.display());
            return Ok(auth);
        }
    }
    Ok(RegistryAuth::Anonymous)
}

/// `https://host:port/v1/` and `host:port` name the same registry in these files.
fn normalize_key(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

fn lookup_in(file: &Path, registry: &str) -> Result<Option<RegistryAuth>> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RegistryError::io(file, e)),
    };
    let parsed: AuthFile =
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Credentials {
            source_name: file.display().to_string(),
            reason: format!("not a valid credentials file: {e}"),
        })?;
    // Keys may be written as URLs (`https://host/v1/`): compared by host[:port].
    let wanted = |k: &String| normalize_key(k) == normalize_key(registry);

    if let Some((_, helper)) = parsed.cred_helpers.iter().find(|(k, _)| wanted(k)) {
        return run_helper(helper, registry);
    }
    if let Some((key, entry)) = parsed.auths.iter().find(|(k, _)| wanted(k)) {
        let bad = |reason: &str| RegistryError::Credentials {
            source_name: format!("{} (entry `{key}`)", file.display()),
            reason: reason.into(),
        };
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(Some(RegistryAuth::Basic(u.clone(), p.clone())));
        }
        if let Some(encoded) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| bad("`auth` is not base64"))?;
            let text = String::from_utf8(decoded).map_err(|_| bad("`auth` is not UTF-8"))?;
            let (u, p) = text
                .split_once(':')
                .ok_or_else(|| bad("`auth` is not user:password"))?;
            return Ok(Some(RegistryAuth::Basic(u.into(), p.into())));
        }
        // An entry without a secret (a credsStore keeps it): fall through to the store.
    }
    match &parsed.creds_store {
        Some(store) if !store.is_empty() => run_helper(store, registry),
        _ => Ok(None),
    }
}

/// Asks `docker-credential-NAME get` for the server's credentials (the helper protocol:
/// the server on standard input, `{"Username", "Secret"}` on standard output).
fn run_helper(name: &str, server: &str) -> Result<Option<RegistryAuth>> {
    let program = format!("docker-credential-{name}");
    let bad = |reason: String| RegistryError::Credentials {
        source_name: program.clone(),
        reason,
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| bad(format!("cannot run the credential helper: {e}")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(server.as_bytes())
        .map_err(|e| bad(format!("cannot talk to the credential helper: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| bad(format!("credential helper failed: {e}")))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        // The helpers' way of saying "no credentials for this server".
        if text.to_ascii_lowercase().contains("not found") {
            return Ok(None);
        }
        return Err(bad(format!("`get` for {server} failed: {}", text.trim())));
    }
    #[derive(Deserialize)]
    struct Answer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let answer: Answer = serde_json::from_slice(&out.stdout)
        .map_err(|e| bad(format!("unexpected answer for {server}: {e}")))?;
    // `<token>` means the secret is an identity (refresh) token, which is sent as a bearer.
    if answer.username == "<token>" {
        return Ok(Some(RegistryAuth::Bearer(answer.secret)));
    }
    Ok(Some(RegistryAuth::Basic(answer.username, answer.secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_entries_are_found_by_host() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(
            &file,
            r#"{"auths":{"https://127.0.0.1:5000/v1/":{"auth":"dXNlcjpwYXNz"},"other:1":{}}}"#,
        )
        .unwrap();
        match lookup_in(&file, "127.0.0.1:5000").unwrap() {
            Some(RegistryAuth::Basic(u, p)) => {
                assert_eq!((u.as_str(), p.as_str()), ("user", "pass"))
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(lookup_in(&file, "127.0.0.1:5001").unwrap().is_none());
        assert!(lookup_in(&dir.path().join("missing.json"), "x")
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_broken_entry_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        std::fs::write(&file, r#"{"auths":{"reg:1":{"auth":"%%%"}}}"#).unwrap();
        let err = lookup_in(&file, "reg:1").unwrap_err().to_string();
        assert!(err.contains("auth.json") && err.contains("base64"), "{err}");
    }
}
