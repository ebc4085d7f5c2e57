//! What `verify` checks for a plan, in the runtime's terms (services, TCP ports,
//! commands, HTTP GETs), so the command only hands them on.

use super::{CheckKind, Plan};
use crate::error::{Error, Result};

/// An HTTP GET made inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGet {
    pub port: u16,
    /// Starts with `/`.
    pub path: String,
    /// The status expected; `None`: any 2xx or 3xx.
    pub expect: Option<u16>,
}

impl HttpGet {
    /// `80/health` → port 80, path `/health`.
    pub fn parse(spec: &str, expect: Option<u16>) -> Result<HttpGet> {
        let (port, path) = spec.split_once('/').unwrap_or((spec, ""));
        let port = port.parse().map_err(|_| Error::Profile {
            path: format!("http check `{spec}`"),
            reason: "expected PORT/PATH, like 80/health".into(),
        })?;
        Ok(HttpGet {
            port,
            path: format!("/{path}"),
            expect,
        })
    }
}

/// A TCP port that must listen, and the service the plan expects on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPort {
    pub port: u16,
    pub service: Option<String>,
}

/// The plan's checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlannedChecks {
    pub services: Vec<String>,
    /// Every TCP port of the plan's `port` table (from the configuration or the live socket
    /// table), and of its `port-listening` checks.
    pub ports: Vec<PlannedPort>,
    /// A shell command and the exit code it must give.
    pub commands: Vec<(String, i32)>,
    pub http: Vec<HttpGet>,
}

impl Plan {
    /// The checks `verify --plan` runs. `no-failed-services` needs nothing more: every
    /// verify names the failed units and services. Every TCP port the plan lists must
    /// listen, whether a `port-listening` check names it or not; UDP ports are not probed.
    pub fn checks(&self) -> Result<PlannedChecks> {
        let mut out = PlannedChecks::default();
        let service_of = |port: u16| {
            self.port
                .iter()
                .find(|p| p.port == port && p.protocol == "tcp")
                .and_then(|p| p.service.clone())
        };
        let add_port = |out: &mut PlannedChecks, port: u16| {
            if !out.ports.iter().any(|p| p.port == port) {
                out.ports.push(PlannedPort {
                    port,
                    service: service_of(port),
                });
            }
        };
        for p in self.port.iter().filter(|p| p.protocol == "tcp") {
            add_port(&mut out, p.port);
        }
        for c in &self.check {
            match c.kind {
                CheckKind::ServiceRunning => out.services.push(c.target.clone()),
                CheckKind::PortListening => {
                    let (port, proto) = c.target.split_once('/').unwrap_or((&c.target, "tcp"));
                    if proto == "tcp" {
                        let port = port.parse().map_err(|_| Error::Profile {
                            path: format!("port-listening `{}`", c.target),
                            reason: "not PORT/tcp".into(),
                        })?;
                        add_port(&mut out, port);
                    }
                }
                CheckKind::NoFailedServices => {}
                CheckKind::Command => out
                    .commands
                    .push((c.target.clone(), c.expect.unwrap_or(0) as i32)),
                CheckKind::Http => out
                    .http
                    .push(HttpGet::parse(&c.target, c.expect.map(|e| e as u16))?),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Check, InitDecision, InitMode, PortDecision};

    fn port(port: u16, protocol: &str, service: Option<&str>) -> PortDecision {
        PortDecision {
            port,
            protocol: protocol.into(),
            service: service.map(String::from),
            reason: "r".into(),
        }
    }

    #[test]
    fn every_tcp_port_of_the_plan_is_checked_with_its_service() {
        let plan = Plan {
            version: 1,
            source: "s".into(),
            os: "Debian".into(),
            architecture: None,
            profiles: vec![],
            init: InitDecision {
                mode: InitMode::Rehost,
                reason: "r".into(),
                cmd: None,
            },
            services: vec![],
            identity: vec![],
            exclude: vec![],
            volume: vec![],
            // 8080 from the live socket table, with no check of its own.
            port: vec![
                port(22, "tcp", Some("ssh")),
                port(8080, "tcp", Some("billing")),
                port(53, "udp", Some("bind9")),
            ],
            hook: vec![],
            check: vec![
                Check {
                    kind: CheckKind::PortListening,
                    target: "22/tcp".into(),
                    expect: None,
                    reason: "r".into(),
                },
                Check {
                    kind: CheckKind::PortListening,
                    target: "9000/tcp".into(),
                    expect: None,
                    reason: "r".into(),
                },
            ],
        };
        let c = plan.checks().unwrap();
        let got: Vec<(u16, Option<&str>)> = c
            .ports
            .iter()
            .map(|p| (p.port, p.service.as_deref()))
            .collect();
        assert_eq!(
            got,
            [(22, Some("ssh")), (8080, Some("billing")), (9000, None)]
        );
    }
}
