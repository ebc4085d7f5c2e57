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
pub const BUILTIN: &[(&str, &str)] = &[
    ("base", include_str!("../../profiles/base.toml")),
    ("debian", include_str!("../../profiles/debian.toml")),
    ("ubuntu", include_str!("../../profiles/ubuntu.toml")),
    ("rhel", include_str!("../../profiles/rhel.toml")),
    ("alpine", include_str!("../../profiles/alpine.toml")),
];

/// How deep `extends` may chain (a loop stops here with an error).
const MAX_EXTENDS: usize = 8;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    /// What the profile is for, for people.
    #[serde(default)]
    pub description: Option<String>,
    /// A built-in profile this one refines (its rules apply first, this one's win).
    #[serde(default)]
    pub extends: Option<String>,
    #[serde(default)]
    pub exclude: Vec<ExcludeRule>,
    /// What to do with services, by name.
    #[serde(default)]
    pub service: Vec<ServiceRule>,
    /// What to do with host-identity files, by kind.
    #[serde(default)]
    pub identity: Vec<IdentityRule>,
    /// Which init runs in the image, by the server's init system.
    #[serde(default)]
    pub init: Vec<InitRule>,
    /// Name patterns of the services that only make sense on a machine booting its own
    /// hardware; rehost-init leaves them out when it starts what an image enables.
    #[serde(default)]
    pub machine_only: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExcludeRule {
    pub reason: String,
    pub paths: Vec<String>,
}

/// A decision for the services whose names match.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRule {
    pub action: crate::plan::Action,
    pub reason: String,
    /// Globs matched against the name with and without its unit suffix
    /// (`getty*` matches `getty@.service`; `*.target` matches every target).
    pub names: Vec<String>,
    /// Keep the decision but ask a person to look at it.
    #[serde(default)]
    pub review: bool,
}

/// A decision for the host-identity files of some kinds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityRule {
    /// Kinds as the inventory names them (fstab, machine-id, ssh-host-key, …).
    pub kinds: Vec<String>,
    pub action: crate::plan::IdentityAction,
    pub reason: String,
    /// A command the image runs before its services start, to make a new one.
    #[serde(default)]
    pub hook: Option<String>,
}

/// The image's init for servers booted by one init system.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitRule {
    pub source: crate::inventory::InitKind,
    pub mode: crate::plan::InitMode,
    pub reason: String,
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

    /// A built-in profile by name, or a profile file by path.
    pub fn load(name_or_path: &str) -> Result<Self> {
        let path = std::path::Path::new(name_or_path);
        if path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            Self::parse(&path.display().to_string(), &text)
        } else {
            Self::builtin(name_or_path)
        }
    }

    /// A profile with the profiles it extends before it, most general first.
    pub fn with_parents(self) -> Result<Vec<Self>> {
        let mut chain = vec![self];
        while let Some(parent) = chain[0].extends.clone() {
            if chain.len() > MAX_EXTENDS || chain.iter().any(|p| p.name == parent) {
                return Err(Error::Profile {
                    path: chain[0].name.clone(),
                    reason: format!("`extends` goes round in a loop at `{parent}`"),
                });
            }
            chain.insert(0, Self::builtin(&parent)?);
        }
        Ok(chain)
    }

    /// The profiles for a distribution family: `base`, then the family's own (and what
    /// it extends), when rehost has one.
    pub fn for_family(family: &str) -> Result<Vec<Self>> {
        let mut out = vec![Self::builtin("base")?];
        if family != "base" && BUILTIN.iter().any(|(n, _)| *n == family) {
            for p in Self::builtin(family)?.with_parents()? {
                if !out.iter().any(|o| o.name == p.name) {
                    out.push(p);
                }
            }
        }
        Ok(out)
    }

    /// The profiles decisions come from: the ones named (built-in names or files), or when
    /// none is named, `base` and those of the source's distribution family. `inspect` and
    /// `convert` both choose here.
    pub fn choose(names: &[String], family: &str) -> Result<Vec<Self>> {
        let named = names
            .iter()
            .map(|n| Self::load(n))
            .collect::<Result<Vec<_>>>()?;
        Self::or_family(named, family)
    }

    /// The profiles already loaded, or `base` and the family's when there are none (a
    /// remote inspection loads them here and decides on the server).
    pub fn or_family(named: Vec<Self>, family: &str) -> Result<Vec<Self>> {
        if named.is_empty() {
            Self::for_family(family)
        } else {
            Ok(named)
        }
    }

    pub fn parse(origin: &str, text: &str) -> Result<Self> {
        let profile: Profile = toml::from_str(text).map_err(|e| Error::Profile {
            path: origin.into(),
            reason: rehost_init::config::toml_error(text, &e),
        })?;
        for name in profile.service.iter().flat_map(|r| &r.names) {
            Glob::new(name).map_err(|e| Error::Profile {
                path: origin.into(),
                reason: format!("bad service name pattern: {e}"),
            })?;
        }
        Ok(profile)
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
    fn every_builtin_profile_parses_and_extends_a_builtin() {
        for (name, _) in BUILTIN {
            let chain = Profile::builtin(name).unwrap().with_parents().unwrap();
            assert_eq!(chain.last().unwrap().name, *name);
        }
        let names: Vec<String> = Profile::for_family("ubuntu")
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["base", "debian", "ubuntu"]);
        assert_eq!(Profile::for_family("nixos").unwrap().len(), 1);
    }

    #[test]
    fn a_broken_profile_names_itself() {
        let err = Profile::parse("mine.toml", "name = 3")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("mine.toml:"), "{err}");
    }
}
