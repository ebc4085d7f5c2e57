//! The plan: every decision of a migration, each with its reason, in one TOML file a
//! person reads and edits. `inspect --plan` writes it from the inventory and the
//! profiles' rules; `convert --plan` and `verify --plan` act on it. docs/plan.md is
//! its schema.
//!
//! The plan is the image builder's only input: `convert` without `--plan` derives the
//! same plan `inspect` writes ([`derive`]), and the command's flags are amendments to it
//! ([`amend`]).

pub mod amend;
pub mod checks;

use crate::error::{Error, Result};
use crate::inventory::{Inventory, Service};
use crate::profile::{ExcludeRule, Profile};
use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// The schema version this rehost writes and reads.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The plan schema's version.
    pub version: u32,
    /// What was inspected.
    pub source: String,
    /// The distribution, for people.
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// The profiles the decisions came from, most general first.
    #[serde(default)]
    pub profiles: Vec<String>,
    pub init: InitDecision,
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceDecision>,
    #[serde(default)]
    pub identity: Vec<IdentityDecision>,
    #[serde(default)]
    pub exclude: Vec<ExcludeRule>,
    #[serde(default)]
    pub volume: Vec<Volume>,
    #[serde(default)]
    pub port: Vec<PortDecision>,
    #[serde(default)]
    pub hook: Vec<Hook>,
    #[serde(default)]
    pub check: Vec<Check>,
}

/// What runs as pid 1 in the image: the one mode of the image contract.
pub use oci::contract::InitMode;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitDecision {
    #[serde(serialize_with = "oci::contract::serialize_plan_name")]
    pub mode: InitMode,
    pub reason: String,
    /// The main command, one shell-quoted string: required by `dumb-init`; with
    /// `rehost-init` it runs beside the services and the container ends when it exits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
}

/// What happens to a service in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// It runs in the container as it ran on the server.
    Keep,
    /// It is not started (disabled; rehost-init does not run it).
    Drop,
    /// It can never start, not even as another unit's dependency (systemd: linked to
    /// /dev/null; rehost-init: as drop).
    Mask,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::Mask => "mask",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDecision {
    /// As the inventory names it (`ssh.service`, `ssh`).
    pub name: String,
    pub action: Action,
    pub reason: String,
    /// A person should look at this decision (no rule knew the service).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub review: bool,
    /// A kept service the container is unhealthy without (and stops for when it
    /// exhausts its restart budget).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub critical: bool,
    /// A kept service the container stays healthy without: when it fails, `rehost-init
    /// status` reports it but not the container degraded. Not together with `critical`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// What happens to a host-identity file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityAction {
    /// Taken as it is.
    Keep,
    /// Left out of the image.
    Exclude,
    /// Left out of the image and made anew when the container first starts.
    Regenerate,
    /// Replaced by a harmless version (empty, or the runtime's).
    Neutralise,
}

impl IdentityAction {
    pub fn name(self) -> &'static str {
        match self {
            IdentityAction::Keep => "keep",
            IdentityAction::Exclude => "exclude",
            IdentityAction::Regenerate => "regenerate",
            IdentityAction::Neutralise => "neutralise",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityDecision {
    pub path: String,
    pub kind: String,
    pub action: IdentityAction,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortDecision {
    pub port: u16,
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookWhen {
    /// Inside the container, before the services start.
    Prestart,
    /// Inside the container, after the services stopped.
    Poststop,
}

impl HookWhen {
    pub fn name(self) -> &'static str {
        match self {
            HookWhen::Prestart => "prestart",
            HookWhen::Poststop => "poststop",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    pub when: HookWhen,
    /// A shell command.
    pub run: String,
    pub reason: String,
}

/// What `verify` checks on the booted image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    /// The service is running (its init reports it active).
    ServiceRunning,
    /// Something listens on the port (`target` is `PORT/PROTOCOL`).
    PortListening,
    /// None of the kept services failed.
    NoFailedServices,
    /// A shell command run inside exits with `expect` (default 0).
    Command,
    /// An HTTP GET inside the container (`target` is `PORT/PATH`, e.g. `80/health`)
    /// answers with status `expect` (default: any 2xx or 3xx).
    Http,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub kind: CheckKind,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// The exit code (`command`) or HTTP status (`http`) the check expects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<i64>,
    pub reason: String,
}

impl Check {
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            CheckKind::ServiceRunning => "service-running",
            CheckKind::PortListening => "port-listening",
            CheckKind::NoFailedServices => "no-failed-services",
            CheckKind::Command => "command",
            CheckKind::Http => "http",
        };
        if self.target.is_empty() {
            kind.to_string()
        } else {
            format!("{kind} {}", self.target)
        }
    }
}

/// A profile's service rule, compiled.
struct CompiledRule<'a> {
    rule: &'a crate::profile::ServiceRule,
    profile: &'a str,
    globs: Vec<GlobMatcher>,
}

impl Plan {
    /// The plan `inspect` writes for `source`: its inventory decided by the profiles
    /// [`Profile::choose`] picks from `profiles` (none named: `base` and the family's).
    /// The size walk is left out: nothing the plan decides depends on it.
    pub fn derive(source: &dyn crate::source::Source, profiles: &[String]) -> Result<Plan> {
        let inventory =
            crate::inventory::inspect(source, &crate::inventory::InspectOptions { walk: false });
        let profiles = Profile::choose(profiles, &inventory.os.family)?;
        Ok(Plan::decide(&inventory, &profiles))
    }

    /// Decides everything from the inventory and the profiles (most general first; a
    /// later profile's rule wins over an earlier one's).
    pub fn decide(inv: &Inventory, profiles: &[Profile]) -> Plan {
        let init = decide_init(inv, profiles);
        let rules = compile(profiles);
        let services: Vec<ServiceDecision> = inv
            .services
            .iter()
            .map(|s| decide_service(s, &rules, inv))
            .collect();

        let mut identity = Vec::new();
        let mut hook: Vec<Hook> = Vec::new();
        for file in &inv.identity {
            let rule = profiles
                .iter()
                .rev()
                .flat_map(|p| p.identity.iter())
                .find(|r| r.kinds.contains(&file.kind));
            let (action, reason) = match rule {
                Some(r) => (r.action, r.reason.clone()),
                None => (
                    IdentityAction::Keep,
                    "no profile rule for this kind: kept".to_string(),
                ),
            };
            if let Some(run) = rule.and_then(|r| r.hook.clone()) {
                if !hook.iter().any(|h| h.run == run) {
                    hook.push(Hook {
                        when: HookWhen::Prestart,
                        run,
                        reason: format!("{} ({})", reason, file.kind),
                    });
                }
            }
            identity.push(IdentityDecision {
                path: file.path.clone(),
                kind: file.kind.clone(),
                action,
                reason,
            });
        }

        let mut exclude: Vec<ExcludeRule> = Vec::new();
        for p in profiles {
            for rule in &p.exclude {
                if !exclude.contains(rule) {
                    exclude.push(rule.clone());
                }
            }
        }

        let volume = inv
            .data_dirs
            .iter()
            .map(|d| Volume {
                path: d.path.clone(),
                reason: format!(
                    "{}: changes while the server runs and must outlive the image",
                    d.holds
                ),
            })
            .collect();

        let kept = |name: &Option<String>| {
            name.as_ref().is_none_or(|n| {
                services
                    .iter()
                    .any(|d| &d.name == n && d.action == Action::Keep)
            })
        };
        let mut port: Vec<PortDecision> = Vec::new();
        for p in &inv.ports {
            let loopback = p
                .address
                .as_deref()
                .is_some_and(|a| a.starts_with("127.") || a == "::1");
            if loopback || !kept(&p.service) {
                continue;
            }
            if port
                .iter()
                .any(|q| q.port == p.port && q.protocol == p.protocol)
            {
                continue;
            }
            port.push(PortDecision {
                port: p.port,
                protocol: p.protocol.clone(),
                service: p.service.clone(),
                reason: format!(
                    "{} listens on it ({})",
                    p.service
                        .as_deref()
                        .or(p.process.as_deref())
                        .unwrap_or("a process"),
                    p.from
                ),
            });
        }

        let mut check = Vec::new();
        for d in services.iter().filter(|d| d.action == Action::Keep) {
            let runs = inv
                .services
                .iter()
                .find(|s| s.name == d.name)
                .is_some_and(runs_a_process);
            if runs {
                check.push(Check {
                    kind: CheckKind::ServiceRunning,
                    target: d.name.clone(),
                    expect: None,
                    reason: "kept: it must run in the container".into(),
                });
            }
        }
        for p in &port {
            check.push(Check {
                kind: CheckKind::PortListening,
                target: format!("{}/{}", p.port, p.protocol),
                expect: None,
                reason: "exposed: something must answer on it".into(),
            });
        }
        check.push(Check {
            kind: CheckKind::NoFailedServices,
            target: String::new(),
            expect: None,
            reason: "a kept service that fails in the container is a failed migration".into(),
        });

        Plan {
            version: VERSION,
            source: inv.source.clone(),
            os: inv.os.pretty_name.clone(),
            architecture: inv.architecture.clone(),
            profiles: profiles.iter().map(|p| p.name.clone()).collect(),
            init,
            services,
            identity,
            exclude,
            volume,
            port,
            hook,
            check,
        }
    }

    /// What the image leaves out: the plan's `exclude` rules, and the identity files it
    /// excludes or regenerates.
    pub fn excludes(&self) -> Vec<ExcludeRule> {
        let mut rules = self.exclude.clone();
        for action in [IdentityAction::Exclude, IdentityAction::Regenerate] {
            let paths: Vec<String> = self
                .identity
                .iter()
                .filter(|d| d.action == action)
                .map(|d| globset::escape(&d.path))
                .collect();
            if !paths.is_empty() {
                rules.push(ExcludeRule {
                    reason: format!("host identity ({})", action.name()),
                    paths,
                });
            }
        }
        rules
    }

    /// Bytes of content the image will hold: one metadata walk of the source with the
    /// plan's excludes applied (an excluded directory takes its content with it; a file
    /// with several names counts once).
    pub fn image_bytes(&self, source: &dyn crate::source::Source) -> Result<u64> {
        let excludes = crate::profile::Excludes::new(&self.excludes(), &[])?;
        let mut total = 0u64;
        let mut cut: Option<Vec<u8>> = None;
        let mut inodes = std::collections::HashSet::new();
        source.walk(&mut |entry| {
            if let Some(prefix) = &cut {
                if entry.path.starts_with(prefix) && entry.path.get(prefix.len()) == Some(&b'/') {
                    return Ok(());
                }
                cut = None;
            }
            if excludes.reason(&entry.path).is_some() {
                if entry.kind == crate::entry::Kind::Dir {
                    cut = Some(entry.path.clone());
                }
                return Ok(());
            }
            if entry.kind == crate::entry::Kind::File
                && entry.inode.is_none_or(|i| inodes.insert(i))
            {
                total += entry.data_len();
            }
            Ok(())
        })?;
        Ok(total)
    }

    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(self).expect("a plan serializes");
        format!(
            "# rehost migration plan for {}\n\
             # Every decision has its reason; edit any of them, then run\n\
             # `rehost convert --plan THIS` and `rehost verify --plan THIS`.\n\
             # The fields are described in docs/plan.md.\n\n{body}",
            self.source
        )
    }

    pub fn parse(origin: &str, text: &str) -> Result<Plan> {
        let plan: Plan = toml::from_str(text).map_err(|e| Error::Profile {
            path: origin.into(),
            reason: rehost_init::config::toml_error(text, &e),
        })?;
        if plan.version != VERSION {
            return Err(Error::Profile {
                path: origin.into(),
                reason: format!(
                    "plan version {} (this rehost reads version {VERSION})",
                    plan.version
                ),
            });
        }
        // Bad globs are found now, not halfway through a conversion.
        crate::profile::Excludes::new(&plan.excludes(), &[]).map_err(|e| Error::Profile {
            path: origin.into(),
            reason: e.to_string(),
        })?;
        if let Some(d) = plan.services.iter().find(|d| d.critical && d.optional) {
            return Err(Error::Profile {
                path: origin.into(),
                reason: format!(
                    "service {} is both critical and optional (choose one)",
                    d.name
                ),
            });
        }
        Ok(plan)
    }

    pub fn read(path: &Path) -> Result<Plan> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Writes the plan to a temporary file beside `path` and renames it into place.
    /// Writes the plan file, with `review` (from [`review`]) as comments at its end:
    /// facts for the operator to look at, which change no decision.
    pub fn write(&self, path: &Path, force: bool, review: &[String]) -> Result<()> {
        if path.exists() && !force {
            return Err(Error::OutputExists(path.to_path_buf()));
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".rehost-plan")
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        let mut text = self.to_toml();
        if !review.is_empty() {
            text.push_str("\n# To review: what is not from a package (package ownership)\n");
            for line in review {
                text.push_str(&format!("# {}\n", line.replace(['\n', '\r'], " ")));
            }
        }
        tmp.write_all(text.as_bytes())
            .map_err(|e| Error::io(tmp.path(), e))?;
        tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
        Ok(())
    }
}

fn decide_init(inv: &Inventory, profiles: &[Profile]) -> InitDecision {
    let rule = profiles
        .iter()
        .rev()
        .flat_map(|p| p.init.iter())
        .find(|r| r.source == inv.init.kind);
    match rule {
        Some(r) => InitDecision {
            mode: r.mode,
            reason: r.reason.clone(),
            cmd: None,
        },
        None => InitDecision {
            mode: InitMode::Rehost,
            cmd: None,
            reason: format!(
                "no profile rule for {} servers: rehost-init supervises the kept services",
                inv.init.kind.name()
            ),
        },
    }
}

fn compile(profiles: &[Profile]) -> Vec<CompiledRule<'_>> {
    let mut out = Vec::new();
    // Most specific profile first, so the first match wins.
    for profile in profiles.iter().rev() {
        for rule in &profile.service {
            let globs = rule
                .names
                .iter()
                .filter_map(|n| GlobBuilder::new(n).build().ok())
                .map(|g| g.compile_matcher())
                .collect();
            out.push(CompiledRule {
                rule,
                profile: &profile.name,
                globs,
            });
        }
    }
    out
}

fn decide_service(s: &Service, rules: &[CompiledRule], inv: &Inventory) -> ServiceDecision {
    let matched = rules.iter().find(|r| {
        r.globs
            .iter()
            .any(|g| g.is_match(&s.name) || g.is_match(s.stem()))
    });
    let (mut action, mut reason, review) = match matched {
        Some(r) => (
            r.rule.action,
            format!("{} [{}]", r.rule.reason, r.profile),
            r.rule.review,
        ),
        None => (
            Action::Keep,
            "no profile rule knows it: kept, review it".to_string(),
            true,
        ),
    };
    if action == Action::Keep {
        if let Some(c) = s.failed_conditions.first() {
            action = Action::Drop;
            reason = format!("its condition fails on this server, so it never starts: {c}");
        } else if s.started_by_default == Some(false) {
            action = Action::Drop;
            reason = format!(
                "enabled, but the default target ({}) does not start it",
                inv.init.default.as_deref().unwrap_or("?")
            );
        }
    }
    ServiceDecision {
        name: s.name.clone(),
        action,
        reason,
        review,
        critical: false,
        optional: false,
    }
}

/// Whether a kept service is a process `verify` can see running (targets, timers,
/// sockets and one-shot jobs are not).
fn runs_a_process(s: &Service) -> bool {
    let long_running = s.service_type.as_deref() != Some("oneshot");
    matches!(s.kind.as_str(), "service" | "script" | "job") && long_running
}

/// What the operator should review before the image is trusted: the files no package
/// installed, and the package files changed since installation (from the inventory's
/// package ownership; none without it).
pub fn review(inv: &Inventory) -> Vec<String> {
    let Some(o) = &inv.ownership else {
        return Vec::new();
    };
    let mut lines = vec![format!(
        "{} files ({} bytes) are from no {} package; the largest places:",
        o.unowned.files, o.unowned.bytes, o.manager
    )];
    for d in &o.unowned.largest_directories {
        lines.push(format!("  {:>12}  {}", d.bytes, d.path));
    }
    if o.changed_files > 0 {
        lines.push(format!(
            "{} package files differ from what their package installed:",
            o.changed_files
        ));
        for c in &o.changed {
            let what = if c.conffile { "conffile" } else { "file" };
            lines.push(format!("  {} ({what} of {})", c.path, c.package));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::fs::testing::MemSource;
    use crate::inventory::{inspect, InspectOptions};

    fn server() -> MemSource {
        MemSource::new()
            .file("etc/os-release", "ID=debian\nVERSION_ID=12\n")
            .file("etc/inittab", "id:2:initdefault:\n")
            .file("etc/init.d/ssh", "#!/bin/sh\n")
            .file("etc/init.d/apt-daily", "#!/bin/sh\n")
            .file("etc/init.d/getty", "#!/bin/sh\n")
            .file("etc/init.d/billing", "#!/bin/sh\n")
            .link("etc/rc2.d/S01ssh", "../init.d/ssh")
            .link("etc/rc2.d/S01apt-daily", "../init.d/apt-daily")
            .link("etc/rc2.d/S01getty", "../init.d/getty")
            .link("etc/rc2.d/S02billing", "../init.d/billing")
            .file("etc/ssh/sshd_config", "Port 2222\n")
            .file(
                "etc/ssh/ssh_host_ed25519_key",
                "-----BEGIN OPENSSH PRIVATE KEY-----\n",
            )
            .file("etc/machine-id", "0123\n")
    }

    #[test]
    fn family_rules_win_unknown_services_are_flagged_identity_is_excluded() {
        let src = server();
        let inv = inspect(&src, &InspectOptions { walk: false });
        let profiles = Profile::for_family(&inv.os.family).unwrap();
        let plan = Plan::decide(&inv, &profiles);
        let get = |n: &str| plan.services.iter().find(|s| s.name == n).unwrap();
        assert_eq!(get("ssh").action, Action::Keep);
        assert!(get("apt-daily").reason.ends_with("[debian]"));
        assert_eq!(get("apt-daily").action, Action::Drop);
        assert_eq!(get("getty").action, Action::Mask);
        assert!(get("billing").review && get("billing").action == Action::Keep);
        assert_eq!(plan.init.mode, InitMode::Rehost);
        assert_eq!(plan.port.len(), 1);
        assert_eq!(plan.port[0].port, 2222);
        let ex = crate::profile::Excludes::new(&plan.excludes(), &[]).unwrap();
        assert!(ex.reason(b"etc/ssh/ssh_host_ed25519_key").is_some());
        assert!(ex.reason(b"etc/ssh/sshd_config").is_none());
        // machine-id is neutralised (rewritten), not left out.
        assert!(ex.reason(b"etc/machine-id").is_none());
        assert_eq!(plan.hook.len(), 1);
    }

    #[test]
    fn the_toml_reads_back_the_same() {
        let src = server();
        let inv = inspect(&src, &InspectOptions { walk: false });
        let plan = Plan::decide(&inv, &Profile::for_family("debian").unwrap());
        let again = Plan::parse("plan.toml", &plan.to_toml()).unwrap();
        assert_eq!(plan, again);
        let err = Plan::parse(
            "p.toml",
            &plan
                .to_toml()
                .replace("action = \"keep\"", "action = \"maybe\""),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("p.toml:") && err.contains("maybe"), "{err}");
    }

    #[test]
    fn optional_is_read_written_and_absent_means_not_optional() {
        let src = server();
        let inv = inspect(&src, &InspectOptions { walk: false });
        let mut plan = Plan::decide(&inv, &Profile::for_family("debian").unwrap());
        // A plan written before the field existed has none: every service counts.
        assert!(!plan.to_toml().contains("optional"));
        assert!(plan.services.iter().all(|d| !d.optional));
        let ssh = plan.services.iter().position(|d| d.name == "ssh").unwrap();
        plan.services[ssh].optional = true;
        let text = plan.to_toml();
        assert!(text.contains("optional = true"), "{text}");
        assert_eq!(Plan::parse("p.toml", &text).unwrap(), plan);
        plan.services[ssh].critical = true;
        let err = Plan::parse("p.toml", &plan.to_toml())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ssh") && err.contains("critical and optional"),
            "{err}"
        );
    }

    /// A plan whose bad line is 50 MB long gives a short error, not the line.
    #[test]
    fn a_bad_plan_is_named_in_one_short_line() {
        let text = format!("version = 1\nsource = \"{}\n", "x".repeat(50 << 20));
        let e = Plan::parse("plan.toml", &text).unwrap_err().to_string();
        assert!(
            e.len() < 400 && e.starts_with("plan.toml"),
            "{}",
            &e[..e.len().min(400)]
        );
        assert!(e.contains("line 2"), "{e}");
    }
}
