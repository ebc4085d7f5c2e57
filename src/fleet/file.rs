//! The fleet file: which hosts, where their images go, and each host's amendments.
//!
//! It is the operator's own file, but it names paths and is read like any input: its size
//! is capped, unknown keys are refused (a typo must not silently drop an override), and
//! host names are checked before they become directory and repository names.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A fleet file is a list of hosts, not data: a megabyte is thousands of them.
const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    output: Option<PathBuf>,
    jobs: Option<usize>,
    registry: Option<String>,
    tag: Option<String>,
    #[serde(default)]
    insecure: bool,
    sbom: Option<String>,
    #[serde(default)]
    defaults: Settings,
    #[serde(default, rename = "host")]
    hosts: Vec<RawHost>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: String,
    source: String,
    plan: Option<PathBuf>,
    #[serde(default)]
    amend: Amend,
    #[serde(default)]
    convert: ConvertSettings,
    #[serde(default)]
    verify: VerifySettings,
}

/// What a host's convert and verify get beyond its plan; `[defaults]` gives every host's.
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Amendments to the plan, as `rehost convert`'s flags of the same names.
    #[serde(default)]
    pub amend: Amend,
    #[serde(default)]
    pub convert: ConvertSettings,
    #[serde(default)]
    pub verify: VerifySettings,
}

/// How the image is built, as `rehost convert`'s flags of the same names.
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConvertSettings {
    /// `packages` or `one`; unset, convert's own default.
    pub layers: Option<String>,
    pub max_layers: Option<usize>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Amend {
    pub init: Option<String>,
    #[serde(default)]
    pub service: Vec<String>,
    #[serde(default)]
    pub drop: Vec<String>,
    #[serde(default)]
    pub critical: Vec<String>,
    #[serde(default)]
    pub optional: Vec<String>,
    #[serde(default)]
    pub expose: Vec<String>,
    #[serde(default)]
    pub volume: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VerifySettings {
    /// Convert and push without booting the image.
    pub skip: Option<bool>,
    pub timeout: Option<u64>,
    #[serde(default)]
    pub port: Vec<u16>,
    #[serde(default)]
    pub http: Vec<String>,
    #[serde(default)]
    pub check: Vec<String>,
}

/// The fleet, resolved: paths made absolute against the fleet file's directory.
#[derive(Debug)]
pub struct Fleet {
    pub output: PathBuf,
    pub jobs: usize,
    /// REGISTRY/PREFIX: host NAME goes to REGISTRY/PREFIX/NAME:TAG.
    pub registry: Option<String>,
    pub tag: String,
    pub insecure: bool,
    /// Attach each image's SBOM when pushing: `spdx` or `cyclonedx`.
    pub sbom: Option<String>,
    pub hosts: Vec<Host>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub name: String,
    /// As the operator wrote it (ssh://… stays as is).
    pub source: String,
    /// `source` as a local path, when it is one.
    #[serde(skip)]
    pub local: Option<PathBuf>,
    pub plan: Option<PathBuf>,
    pub settings: Settings,
}

impl Fleet {
    pub fn read(path: &Path) -> Result<Fleet> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("reading the fleet file {}", path.display()))?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            bail!("the fleet file {} is not a regular file", path.display());
        }
        if meta.len() > MAX_FILE_BYTES {
            bail!(
                "the fleet file {} is {} bytes; at most {MAX_FILE_BYTES} are read",
                path.display(),
                meta.len()
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the fleet file {}", path.display()))?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::path::absolute(base)?;
        Fleet::parse(&text, &base).with_context(|| format!("in the fleet file {}", path.display()))
    }

    /// Relative paths in `text` are taken against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Fleet> {
        let raw: Raw = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", one_line(&e)))?;
        if raw.hosts.is_empty() {
            bail!("no [[host]]: name at least one host (name and source)");
        }
        let jobs = raw.jobs.unwrap_or(2);
        if jobs == 0 || jobs > 64 {
            bail!("jobs = {jobs}: give 1 to 64 hosts at a time");
        }
        let tag = raw.tag.unwrap_or_else(|| "latest".into());
        if !valid_tag(&tag) {
            bail!("tag = {tag:?} is not an image tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})");
        }
        if let Some(registry) = &raw.registry {
            // The part after the last '/' is a repository prefix; a ':' there is a tag.
            if registry
                .trim_end_matches('/')
                .rsplit_once('/')
                .is_some_and(|(_, last)| last.contains(':'))
            {
                bail!(
                    "registry = {registry:?}: give REGISTRY/PREFIX without a tag (tag = … sets it)"
                );
            }
        }
        if let Some(sbom) = &raw.sbom {
            sbom.parse::<converter::sbom::Format>()
                .map_err(|e| anyhow::anyhow!("sbom = {sbom:?}: {e}"))?;
        }
        let mut names = BTreeSet::new();
        let mut hosts = Vec::with_capacity(raw.hosts.len());
        for h in raw.hosts {
            if !valid_name(&h.name) {
                bail!(
                    "host name {:?}: use 1 to 63 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit (it names the host's directory and repository)",
                    h.name
                );
            }
            if !names.insert(h.name.clone()) {
                bail!("host {:?} is named twice", h.name);
            }
            if h.source.is_empty() || h.source == "-" {
                bail!(
                    "host {:?}: source {:?} is not a server (give a directory, an archive, a disk image or ssh://…)",
                    h.name,
                    h.source
                );
            }
            let local = (!h.source.starts_with("ssh://")).then(|| base.join(&h.source));
            let settings = merge(
                &raw.defaults,
                Settings {
                    amend: h.amend,
                    convert: h.convert,
                    verify: h.verify,
                },
            );
            check_convert(&h.name, &settings.convert)?;
            hosts.push(Host {
                local,
                source: h.source,
                plan: h.plan.map(|p| base.join(p)),
                settings,
                name: h.name,
            });
        }
        Ok(Fleet {
            output: base.join(raw.output.unwrap_or_else(|| "fleet".into())),
            jobs,
            registry: raw.registry.map(|r| r.trim_end_matches('/').to_string()),
            tag,
            insecure: raw.insecure,
            sbom: raw.sbom,
            hosts,
        })
    }
}

/// The host's own settings after the defaults: lists add up, single values override.
fn merge(defaults: &Settings, own: Settings) -> Settings {
    let cat = |a: &[String], b: Vec<String>| a.iter().cloned().chain(b).collect::<Vec<_>>();
    let d = &defaults.amend;
    let a = own.amend;
    let dv = &defaults.verify;
    let v = own.verify;
    let dc = &defaults.convert;
    let c = own.convert;
    Settings {
        amend: Amend {
            init: a.init.or_else(|| d.init.clone()),
            service: cat(&d.service, a.service),
            drop: cat(&d.drop, a.drop),
            critical: cat(&d.critical, a.critical),
            optional: cat(&d.optional, a.optional),
            expose: cat(&d.expose, a.expose),
            volume: cat(&d.volume, a.volume),
            exclude: cat(&d.exclude, a.exclude),
        },
        convert: ConvertSettings {
            layers: c.layers.or_else(|| dc.layers.clone()),
            max_layers: c.max_layers.or(dc.max_layers),
        },
        verify: VerifySettings {
            skip: v.skip.or(dv.skip),
            timeout: v.timeout.or(dv.timeout),
            port: dv.port.iter().copied().chain(v.port).collect(),
            http: cat(&dv.http, v.http),
            check: cat(&dv.check, v.check),
        },
    }
}

/// Refuses a layering convert would refuse, before any host runs.
fn check_convert(host: &str, c: &ConvertSettings) -> Result<()> {
    if let Some(layers) = &c.layers {
        layers
            .parse::<converter::convert::Layering>()
            .map_err(|e| anyhow::anyhow!("host {host:?}: convert.layers: {e}"))?;
    }
    if let Some(n) = c.max_layers {
        if n < 3 {
            bail!("host {host:?}: convert.max_layers = {n}: give at least 3 (the packages', the server's own and rehost's)");
        }
    }
    Ok(())
}

/// A name that is safe as a directory name and as a repository path component.
fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

fn valid_tag(tag: &str) -> bool {
    (1..=128).contains(&tag.len())
        && (tag.as_bytes()[0].is_ascii_alphanumeric() || tag.as_bytes()[0] == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// toml's messages quote the offending lines over several; the CLI prints one line.
fn one_line(e: &toml::de::Error) -> String {
    let what = e.message().trim().to_string();
    match e.span() {
        Some(span) => format!("{what} (at byte {})", span.start),
        None => what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Fleet> {
        Fleet::parse(text, Path::new("/fleet"))
    }

    #[test]
    fn defaults_and_host_settings_merge_and_paths_resolve() {
        let fleet = parse(
            r#"
            registry = "127.0.0.1:5000/migrated"
            [defaults.amend]
            drop = ["cron.service"]
            [defaults.verify]
            timeout = 60
            [defaults.convert]
            layers = "packages"
            max_layers = 32
            [[host]]
            name = "web1"
            source = "roots/web1"
            plan = "web1.plan.toml"
            amend.drop = ["ssh.service"]
            verify.http = ["80/"]
            [[host]]
            name = "db1"
            source = "ssh://root@db1"
            verify.timeout = 30
            convert.layers = "one"
            "#,
        )
        .unwrap();
        assert_eq!(fleet.output, Path::new("/fleet/fleet"));
        assert_eq!(fleet.jobs, 2);
        assert_eq!(fleet.tag, "latest");
        let web = &fleet.hosts[0];
        assert_eq!(web.local.as_deref(), Some(Path::new("/fleet/roots/web1")));
        assert_eq!(
            web.plan.as_deref(),
            Some(Path::new("/fleet/web1.plan.toml"))
        );
        assert_eq!(web.settings.amend.drop, ["cron.service", "ssh.service"]);
        assert_eq!(web.settings.verify.timeout, Some(60));
        let db = &fleet.hosts[1];
        assert_eq!(db.local, None);
        assert_eq!(db.settings.verify.timeout, Some(30));
        assert_eq!(web.settings.convert.layers.as_deref(), Some("packages"));
        assert_eq!(db.settings.convert.layers.as_deref(), Some("one"));
        assert_eq!(db.settings.convert.max_layers, Some(32));
    }

    #[test]
    fn mistakes_are_refused_with_what_is_wrong() {
        let cases = [
            ("", "no [[host]]"),
            (
                "[[host]]\nname = \"Web\"\nsource = \"/x\"",
                "host name \"Web\"",
            ),
            ("[[host]]\nname = \"../x\"\nsource = \"/x\"", "host name"),
            (
                "[[host]]\nname = \"a\"\nsource = \"/x\"\n[[host]]\nname = \"a\"\nsource = \"/y\"",
                "named twice",
            ),
            (
                "[[host]]\nname = \"a\"\nsource = \"/x\"\nsevice = []",
                "unknown field",
            ),
            (
                "[[host]]\nname = \"a\"\nsource = \"/x\"\namend.sevice = []",
                "unknown field",
            ),
            (
                "jobs = 0\n[[host]]\nname = \"a\"\nsource = \"/x\"",
                "jobs = 0",
            ),
            (
                "tag = \"a/b\"\n[[host]]\nname = \"a\"\nsource = \"/x\"",
                "not an image tag",
            ),
            ("[[host]]\nname = \"a\"", "missing field `source`"),
            (
                "[[host]]\nname = \"a\"\nsource = \"/x\"\nconvert.layers = \"pkgs\"",
                "convert.layers",
            ),
            (
                "[[host]]\nname = \"a\"\nsource = \"/x\"\nconvert.max_layers = 2",
                "at least 3",
            ),
            (
                "sbom = \"swid\"\n[[host]]\nname = \"a\"\nsource = \"/x\"",
                "sbom = \"swid\"",
            ),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }
}
