//! Profiles: the data-driven defaults of a conversion (what to exclude, and why).
//!
//! Profiles are TOML files under `profiles/`; the ones shipped with rehost are built
//! in, so the command works from any directory. Adding a distribution family is adding
//! a file.

use crate::entry::DisplayPath;
use crate::error::{Error, Result};
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// The profiles shipped with rehost, by name.
pub const BUILTIN: &[(&str, &str)] = &[("base", include_str!("../../profiles/base.toml"))];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default)]
    pub exclude: Vec<ExcludeRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExcludeRule {
    pub reason: String,
    pub paths: Vec<String>,
}

impl Profile {
    pub fn builtin(name: &str) -> Result<Self> {
        let (_, text) = BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| Error::Profile {
                path: name.into(),
                reason: format!(
                    "no built-in profile of that name (there are: {})",
                    BUILTIN
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        Self::parse(name, text)
    }

    pub fn parse(origin: &str, text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Profile {
            path: origin.into(),
            reason: e.to_string().trim().replace('\n', " "),
        })
    }
}

/// Decides which paths a conversion leaves out, and says why.
pub struct Excludes {
    set: GlobSet,
    /// The reason of each glob in `set`, by index.
    reasons: Vec<String>,
}

impl Excludes {
    /// From the profile's rules plus the user's own globs (`--exclude`).
    pub fn new(rules: &[ExcludeRule], user: &[String]) -> Result<Self> {
        let mut builder = GlobSetBuilder::new();
        let mut reasons = Vec::new();
        let user_rule = ExcludeRule {
            reason: "excluded by --exclude".into(),
            paths: user.to_vec(),
        };
        for rule in rules.iter().chain(std::iter::once(&user_rule)) {
            for pattern in &rule.paths {
                builder.add(glob(pattern)?);
                reasons.push(rule.reason.clone());
            }
        }
        let set = builder.build().map_err(|e| Error::Profile {
            path: "excludes".into(),
            reason: e.to_string(),
        })?;
        Ok(Excludes { set, reasons })
    }

    /// Nothing excluded.
    pub fn none() -> Self {
        Excludes {
            set: GlobSet::empty(),
            reasons: Vec::new(),
        }
    }

    /// Why `path` (a tree path) is excluded, if it is. The first matching rule wins.
    pub fn reason(&self, path: &[u8]) -> Option<&str> {
        let mut candidate = Vec::with_capacity(path.len() + 1);
        candidate.push(b'/');
        candidate.extend_from_slice(path);
        let matches = self.set.matches(OsStr::from_bytes(&candidate));
        matches.iter().min().map(|&i| self.reasons[i].as_str())
    }
}

fn glob(pattern: &str) -> Result<Glob> {
    let anchored = if pattern.starts_with('/') {
        pattern.to_string()
    } else {
        format!("/{pattern}")
    };
    GlobBuilder::new(&anchored)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| Error::Profile {
            path: pattern.into(),
            reason: format!("bad exclude pattern: {e}"),
        })
}

/// For messages.
pub fn show(path: &[u8]) -> String {
    DisplayPath(path).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_profile_excludes_contents_but_keeps_directories() {
        let p = Profile::builtin("base").unwrap();
        let ex = Excludes::new(&p.exclude, &["/srv/big/**".into()]).unwrap();
        assert!(ex.reason(b"tmp").is_none());
        assert!(ex.reason(b"tmp/x").is_some());
        assert!(ex.reason(b"boot/vmlinuz-6.1").unwrap().contains("kernel"));
        assert!(ex.reason(b"var/log/syslog").is_none());
        assert!(ex.reason(b"var/log/syslog.1").is_some());
        assert!(ex.reason(b"var/log/nginx/access.log.2.gz").is_some());
        assert!(ex.reason(b"var/cache/apt/archives/partial").is_none());
        assert!(ex.reason(b"var/cache/apt/archives/x.deb").is_some());
        assert_eq!(ex.reason(b"srv/big/a/b"), Some("excluded by --exclude"));
        assert!(ex.reason(b"etc/passwd").is_none());
    }

    #[test]
    fn a_broken_profile_names_itself() {
        let err = Profile::parse("mine.toml", "name = 3")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("mine.toml:"), "{err}");
    }
}
