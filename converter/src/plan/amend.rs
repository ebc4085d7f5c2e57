//! Amendments: what the command's flags change in a plan (`convert --init`, `--service`,
//! `--drop`, `--critical`, `--expose`, `--volume`, `--exclude`, `--cmd`), applied to the
//! plan read from a file or derived from the source, so the builder sees one plan.

use super::{
    Action, CheckKind, ExcludeRule, IdentityAction, InitMode, Plan, PortDecision, ServiceDecision,
    Volume,
};
use crate::error::{Error, Result};

/// The changes asked for on the command line; empty fields change nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Amendments {
    /// `--init`: rehost, systemd, sbin-init, dumb-init, none (or a plan mode name).
    pub mode: Option<String>,
    /// `--cmd`: the main command, one shell-quoted string.
    pub cmd: Option<String>,
    /// `--service`: keep exactly these (a unit name, or KIND:NAME with KIND systemd,
    /// sysv, openrc or upstart); every other service is dropped.
    pub keep_only: Vec<String>,
    /// `--drop`: drop these too.
    pub drop: Vec<String>,
    /// `--critical`: mark these kept services critical.
    pub critical: Vec<String>,
    /// `--optional`: mark these kept services optional.
    pub optional: Vec<String>,
    /// `--expose`: the ports, instead of the plan's (`80`, `53/udp`).
    pub ports: Vec<String>,
    /// `--volume`: the volumes, instead of the plan's.
    pub volumes: Vec<String>,
    /// `--exclude`: more paths to leave out.
    pub excludes: Vec<String>,
    /// `--no-default-excludes`: none of the profiles' excludes.
    pub no_default_excludes: bool,
}

/// Whether two service names name the same service (`ssh` and `ssh.service`).
pub fn same_service(a: &str, b: &str) -> bool {
    let stem = |n: &str| {
        let n = n.split_once(':').map_or(n, |(_, n)| n);
        n.strip_suffix(".service").unwrap_or(n).to_string()
    };
    a == b || stem(a) == stem(b)
}

impl Plan {
    /// Applies the command line's amendments. Each changed decision says so in its reason.
    pub fn amend(&mut self, a: &Amendments) -> Result<()> {
        let bad = |flag: &str, reason: String| Error::Profile {
            path: flag.into(),
            reason,
        };
        if let Some(m) = &a.mode {
            self.init.mode = m
                .parse()
                .map_err(|e: oci::contract::UnknownInitMode| bad("--init", e.to_string()))?;
            self.init.reason = format!("--init {m}");
        }
        if let Some(cmd) = &a.cmd {
            self.init.cmd = Some(cmd.clone());
        }
        if self.init.mode == InitMode::DumbInit && self.init.cmd.is_none() {
            return Err(bad(
                "--init dumb-init",
                "needs --cmd (the one program the container runs)".into(),
            ));
        }
        if !a.keep_only.is_empty() {
            for name in &a.keep_only {
                if let Some((kind, _)) = name.split_once(':') {
                    if !["systemd", "sysv", "openrc", "upstart"].contains(&kind) {
                        return Err(bad(
                            &format!("--service {name}"),
                            format!("unknown kind {kind} (systemd, sysv, openrc, upstart)"),
                        ));
                    }
                }
            }
            for d in &mut self.services {
                if d.action == Action::Keep && !a.keep_only.iter().any(|k| same_service(k, &d.name))
                {
                    d.action = Action::Drop;
                    d.reason = "not named by --service".into();
                }
            }
            // The named services, as named (a KIND: prefix chooses the definition).
            self.services
                .retain(|d| !a.keep_only.iter().any(|k| same_service(k, &d.name)));
            for name in &a.keep_only {
                self.services.push(ServiceDecision {
                    name: name.clone(),
                    action: Action::Keep,
                    reason: "named by --service".into(),
                    review: false,
                    critical: false,
                    optional: false,
                });
            }
        }
        for name in &a.drop {
            match self
                .services
                .iter_mut()
                .find(|d| same_service(name, &d.name))
            {
                Some(d) => {
                    d.action = Action::Drop;
                    d.reason = "--drop".into();
                }
                None => self.services.push(ServiceDecision {
                    name: name.clone(),
                    action: Action::Drop,
                    reason: "--drop".into(),
                    review: false,
                    critical: false,
                    optional: false,
                }),
            }
        }
        let kept_names = |plan: &Plan| {
            plan.kept()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for name in &a.optional {
            let names = kept_names(self);
            let kept = self
                .services
                .iter_mut()
                .find(|d| d.action == Action::Keep && same_service(name, &d.name));
            match kept {
                Some(d) => {
                    d.optional = true;
                    d.critical = false;
                }
                None => {
                    return Err(bad(
                        "--optional",
                        format!("{name} is not among the services kept ({names})"),
                    ))
                }
            }
        }
        for name in &a.critical {
            let kept = self
                .services
                .iter_mut()
                .find(|d| d.action == Action::Keep && same_service(name, &d.name));
            match kept {
                Some(d) if d.optional && a.optional.iter().any(|o| same_service(o, name)) => {
                    return Err(bad(
                        "--critical",
                        format!("{name} is also named by --optional (choose one)"),
                    ))
                }
                Some(d) => {
                    d.critical = true;
                    d.optional = false;
                }
                None => {
                    return Err(bad(
                        "--critical",
                        format!(
                            "{name} is not among the services kept ({})",
                            self.kept()
                                .map(|d| d.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ))
                }
            }
        }
        if !a.ports.is_empty() {
            self.port = a
                .ports
                .iter()
                .map(|p| {
                    let (port, protocol) = p.split_once('/').unwrap_or((p, "tcp"));
                    let port = port.parse().map_err(|_| {
                        bad(&format!("--expose {p}"), "expected PORT or PORT/udp".into())
                    })?;
                    if !["tcp", "udp"].contains(&protocol) {
                        return Err(bad(
                            &format!("--expose {p}"),
                            "the protocol is tcp or udp".into(),
                        ));
                    }
                    Ok(PortDecision {
                        port,
                        protocol: protocol.into(),
                        service: None,
                        reason: "--expose".into(),
                    })
                })
                .collect::<Result<_>>()?;
        }
        if self.init.mode == InitMode::DumbInit {
            // One command runs, no service: the services' ports and checks do not apply.
            self.port.retain(|p| p.service.is_none());
            let ports: Vec<String> = self
                .port
                .iter()
                .map(|p| format!("{}/{}", p.port, p.protocol))
                .collect();
            self.check.retain(|c| match c.kind {
                CheckKind::ServiceRunning => false,
                CheckKind::PortListening => ports.contains(&c.target),
                _ => true,
            });
        }
        if !a.volumes.is_empty() {
            self.volume = a
                .volumes
                .iter()
                .map(|v| Volume {
                    path: v.clone(),
                    reason: "--volume".into(),
                })
                .collect();
        }
        if a.no_default_excludes {
            // Everything is kept: no profile's excludes, and no identity file left out
            // (the rehost layer still scrubs what it scrubs).
            self.exclude.clear();
            for d in &mut self.identity {
                if matches!(
                    d.action,
                    IdentityAction::Exclude | IdentityAction::Regenerate
                ) {
                    d.action = IdentityAction::Keep;
                    d.reason = "--no-default-excludes".into();
                }
            }
        }
        if !a.excludes.is_empty() {
            self.exclude.push(ExcludeRule {
                reason: "excluded by --exclude".into(),
                paths: a.excludes.clone(),
            });
        }
        // Bad globs are found now, not halfway through the conversion.
        crate::profile::Excludes::new(&self.excludes(), &[])?;
        Ok(())
    }

    /// The services the plan keeps.
    pub fn kept(&self) -> impl Iterator<Item = &ServiceDecision> {
        self.services.iter().filter(|d| d.action == Action::Keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::InitDecision;

    fn plan() -> Plan {
        let svc = |name: &str, action| ServiceDecision {
            name: name.into(),
            action,
            reason: "r".into(),
            review: false,
            critical: false,
            optional: false,
        };
        Plan {
            version: 1,
            source: "s".into(),
            os: "Debian".into(),
            architecture: None,
            profiles: vec![],
            init: InitDecision {
                mode: InitMode::Systemd,
                reason: "r".into(),
                cmd: None,
            },
            services: vec![
                svc("ssh.service", Action::Keep),
                svc("nginx.service", Action::Keep),
                svc("getty@.service", Action::Mask),
            ],
            identity: vec![],
            exclude: vec![ExcludeRule {
                reason: "boot".into(),
                paths: vec!["/boot/*".into()],
            }],
            volume: vec![],
            port: vec![],
            hook: vec![],
            check: vec![],
        }
    }

    #[test]
    fn flags_change_the_decisions_they_name() {
        let mut p = plan();
        p.amend(&Amendments {
            mode: Some("rehost".into()),
            drop: vec!["nginx".into()],
            critical: vec!["ssh".into()],
            ports: vec!["22".into(), "53/udp".into()],
            excludes: vec!["/srv/cache/**".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.init.mode, InitMode::Rehost);
        let get = |n: &str| p.services.iter().find(|d| d.name == n).unwrap().clone();
        assert_eq!(get("nginx.service").action, Action::Drop);
        assert!(get("ssh.service").critical);
        assert_eq!(p.port.len(), 2);
        assert_eq!(p.port[1].protocol, "udp");
        assert_eq!(p.exclude.len(), 2);
    }

    #[test]
    fn optional_marks_a_kept_service() {
        let mut p = plan();
        p.amend(&Amendments {
            optional: vec!["nginx".into()],
            ..Default::default()
        })
        .unwrap();
        let get = |n: &str| p.services.iter().find(|d| d.name == n).unwrap().clone();
        assert!(get("nginx.service").optional && !get("nginx.service").critical);
        assert!(!get("ssh.service").optional);
    }

    #[test]
    fn service_keeps_exactly_what_it_names() {
        let mut p = plan();
        p.amend(&Amendments {
            keep_only: vec!["sysv:legacyd".into(), "ssh.service".into()],
            ..Default::default()
        })
        .unwrap();
        let kept: Vec<_> = p.kept().map(|d| d.name.as_str()).collect();
        assert_eq!(kept, ["sysv:legacyd", "ssh.service"]);
        assert!(p
            .amend(&Amendments {
                keep_only: vec!["weird:x".into()],
                ..Default::default()
            })
            .is_err());
    }

    #[test]
    fn service_names() {
        assert!(same_service("ssh", "ssh.service") && same_service("ssh.service", "ssh"));
        assert!(same_service("sysv:ssh", "ssh") && !same_service("ssh", "sshd"));
    }

    #[test]
    fn refusals_name_the_flag() {
        let err = plan()
            .amend(&Amendments {
                critical: vec!["cron".into()],
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("--critical") && err.contains("cron"), "{err}");
        let err = plan()
            .amend(&Amendments {
                optional: vec!["cron".into()],
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("--optional") && err.contains("cron"), "{err}");
        let err = plan()
            .amend(&Amendments {
                optional: vec!["ssh".into()],
                critical: vec!["ssh".into()],
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("choose one"), "{err}");
        let err = plan()
            .amend(&Amendments {
                mode: Some("dumb-init".into()),
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("--cmd"), "{err}");
        assert!(plan()
            .amend(&Amendments {
                mode: Some("upstart".into()),
                ..Default::default()
            })
            .is_err());
    }
}
