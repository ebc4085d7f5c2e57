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

/// The plan's checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlannedChecks {
    pub services: Vec<String>,
    pub ports: Vec<u16>,
    /// A shell command and the exit code it must give.
    pub commands: Vec<(String, i32)>,
    pub http: Vec<HttpGet>,
}

impl Plan {
    /// The checks `verify --plan` runs. `no-failed-services` needs nothing more: every
    /// verify names the failed units and services. UDP ports are not probed.
    pub fn checks(&self) -> Result<PlannedChecks> {
        let mut out = PlannedChecks::default();
        for c in &self.check {
            match c.kind {
                CheckKind::ServiceRunning => out.services.push(c.target.clone()),
                CheckKind::PortListening => {
                    let (port, proto) = c.target.split_once('/').unwrap_or((&c.target, "tcp"));
                    if proto == "tcp" {
                        out.ports.push(port.parse().map_err(|_| Error::Profile {
                            path: format!("port-listening `{}`", c.target),
                            reason: "not PORT/tcp".into(),
                        })?);
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
