//! `verify`: boot an image on the runtime, check it against a list of checks, stop it,
//! and report. The checks are data ([`Checks`]): the plan fills them at integration;
//! without one they come from the image itself (its enabled services, exposed ports).

use crate::container::{RunRequest, Runtime};
use crate::error::{Error, Result};
use crate::modes::InitMode;
use crate::spec::Options;
use serde::Serialize;
use std::time::{Duration, Instant};

/// What to check, beyond the boot and the stop.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    /// Services that must be active. Empty: every enabled long-running service.
    pub services: Vec<String>,
    /// TCP ports that must listen inside. Empty: the image's exposed TCP ports.
    pub ports: Vec<u16>,
    /// Shell commands that must exit 0 inside.
    pub commands: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub image: String,
    pub mode: InitMode,
    /// For the boot and for the stop, each.
    pub timeout: Duration,
    pub checks: Checks,
    pub overlay: bool,
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// boot, unit, service, port, command, stop.
    pub kind: &'static str,
    pub name: String,
    pub passed: bool,
    pub detail: String,
    /// For a failure: the last log lines of what failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub image: String,
    /// The container verify ran (removed since).
    pub container: String,
    pub mode: InitMode,
    pub passed: bool,
    pub seconds_to_ready: f64,
    pub seconds_total: f64,
    pub checks: Vec<CheckResult>,
}

/// Removes the verify container, whatever happens.
struct Cleanup<'a> {
    rt: &'a Runtime,
    name: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.rt.remove(&self.name, true);
    }
}

impl CheckResult {
    fn new(
        kind: &'static str,
        name: impl Into<String>,
        passed: bool,
        detail: impl Into<String>,
    ) -> Self {
        CheckResult {
            kind,
            name: name.into(),
            passed,
            detail: detail.into(),
            log: Vec::new(),
        }
    }
}

/// Runs `args` inside; stdout trimmed, and whether it exited 0.
fn exec(rt: &Runtime, name: &str, args: &[&str]) -> (String, bool) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    match rt.engine.exec_output(name, &args) {
        Ok(out) => (
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            out.status.success(),
        ),
        Err(e) => (e.to_string(), false),
    }
}

fn unit_log(rt: &Runtime, name: &str, unit: &str) -> Vec<String> {
    let (text, _) = exec(
        rt,
        name,
        &[
            "journalctl",
            "-u",
            unit,
            "-n",
            "15",
            "--no-pager",
            "-o",
            "short",
        ],
    );
    text.lines().map(String::from).collect()
}

/// Listening TCP ports inside, from /proc/net/tcp and tcp6 (no tools needed in the image).
fn listening(rt: &Runtime, name: &str) -> Vec<u16> {
    let (text, _) = exec(rt, name, &["cat", "/proc/net/tcp", "/proc/net/tcp6"]);
    let mut ports: Vec<u16> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.get(3) != Some(&"0A") {
                return None;
            }
            u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

pub fn verify(rt: &Runtime, opts: &VerifyOptions) -> Result<Report> {
    if opts.mode != InitMode::Systemd {
        return Err(Error::Spec(format!(
            "verify in {} mode needs rehost-init's status command (not integrated yet); use --init systemd",
            opts.mode
        )));
    }
    let start = Instant::now();
    let image = crate::Image::open(&opts.image)?;
    let name = format!(
        "verify-{}-{}",
        &image.manifest_digest[7..19],
        std::process::id()
    );
    let req = RunRequest {
        image: opts.image.clone(),
        name: Some(name.clone()),
        mode: Some(opts.mode),
        command: Vec::new(),
        options: Options::default(),
        overlay: opts.overlay,
    };
    // Ctrl-C or a termination request ends the verify through the cleanup below, not
    // by killing us with a container still running.
    let _signals = crate::signals::Deferred::install();
    rt.run_detached(&req)?;
    let _cleanup = Cleanup {
        rt,
        name: name.clone(),
    };
    let interrupted = || {
        if crate::signals::Deferred::received() != 0 {
            return Err(Error::Container {
                name: name.clone(),
                reason: "verify interrupted; container removed".into(),
            });
        }
        Ok(())
    };
    let mut checks = Vec::new();

    // 1. Boot: systemd is done when is-system-running leaves starting/initializing.
    let mut state;
    loop {
        state = exec(rt, &name, &["systemctl", "is-system-running"]).0;
        let booting = ["starting", "initializing", "offline", ""].contains(&state.as_str())
            || state.contains("Failed to connect");
        interrupted()?;
        if !booting || start.elapsed() > opts.timeout {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let seconds_to_ready = start.elapsed().as_secs_f64();
    let (failed, _) = exec(
        rt,
        &name,
        &["systemctl", "--failed", "--no-legend", "--plain", "--full"],
    );
    let failed: Vec<String> = failed
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    let ready = state == "running" || state == "degraded";
    checks.push(CheckResult::new(
        "boot",
        "system",
        ready,
        if ready {
            format!("{state} after {seconds_to_ready:.1}s")
        } else {
            format!(
                "`{state}` after {seconds_to_ready:.1}s (timeout {}s)",
                opts.timeout.as_secs()
            )
        },
    ));
    for unit in &failed {
        let mut c = CheckResult::new("unit", unit.clone(), false, "failed");
        c.log = unit_log(rt, &name, unit);
        checks.push(c);
    }

    // 2. Services, ports, commands.
    let services = if opts.checks.services.is_empty() {
        enabled_services(rt, &name)
    } else {
        opts.checks.services.clone()
    };
    for svc in &services {
        let (active, _) = exec(rt, &name, &["systemctl", "is-active", svc]);
        let passed = active == "active";
        let mut c = CheckResult::new("service", svc.clone(), passed, active);
        if !passed {
            c.log = unit_log(rt, &name, svc);
        }
        checks.push(c);
    }
    let ports = if opts.checks.ports.is_empty() {
        image
            .config
            .config
            .exposed_ports
            .keys()
            .filter_map(|p| p.strip_suffix("/tcp").unwrap_or(p).parse().ok())
            .collect()
    } else {
        opts.checks.ports.clone()
    };
    if !ports.is_empty() {
        let open = listening(rt, &name);
        for port in ports {
            let passed = open.contains(&port);
            checks.push(CheckResult::new(
                "port",
                format!("{port}/tcp"),
                passed,
                if passed { "listening" } else { "not listening" },
            ));
        }
    }
    for cmd in &opts.checks.commands {
        let out = rt
            .engine
            .exec_output(&name, &["/bin/sh".into(), "-c".into(), cmd.clone()])?;
        let mut c = CheckResult::new(
            "command",
            cmd.clone(),
            out.status.success(),
            format!("exit {}", out.status.code().unwrap_or(-1)),
        );
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr).to_string()
                + &String::from_utf8_lossy(&out.stdout);
            let lines: Vec<String> = text.lines().map(String::from).collect();
            c.log = lines[lines.len().saturating_sub(15)..].to_vec();
        }
        checks.push(c);
    }

    interrupted()?;
    // 3. Stop: pid 1 halts on its stop signal within the timeout.
    let stop = rt.stop(&name, opts.timeout)?;
    checks.push(CheckResult::new(
        "stop",
        "shutdown",
        stop.clean,
        if stop.clean {
            format!("halted in {:.1}s", stop.seconds)
        } else {
            format!("still running after {}s: killed", opts.timeout.as_secs())
        },
    ));

    let passed = checks.iter().all(|c| c.passed);
    Ok(Report {
        image: opts.image.clone(),
        container: name.clone(),
        mode: opts.mode,
        passed,
        seconds_to_ready,
        seconds_total: start.elapsed().as_secs_f64(),
        checks,
    })
}

/// The enabled services that run (not one-shot): what the server ran before.
fn enabled_services(rt: &Runtime, name: &str) -> Vec<String> {
    let (list, _) = exec(
        rt,
        name,
        &[
            "systemctl",
            "list-unit-files",
            "--type=service",
            "--state=enabled",
            "--no-legend",
            "--plain",
        ],
    );
    let units: Vec<String> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|u| !u.contains('@'))
        .map(String::from)
        .collect();
    units
        .into_iter()
        .filter(|u| {
            let (ty, _) = exec(rt, name, &["systemctl", "show", "-p", "Type", "--value", u]);
            ty != "oneshot"
        })
        .collect()
}

impl Report {
    /// The report as JUnit XML: one test case per check.
    pub fn junit(&self) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let failures = self.checks.iter().filter(|c| !c.passed).count();
        let mut x = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"rehost verify {}\" tests=\"{}\" failures=\"{failures}\" time=\"{:.3}\">\n",
            esc(&self.image),
            self.checks.len(),
            self.seconds_total
        );
        for c in &self.checks {
            x += &format!(
                "  <testcase classname=\"{}\" name=\"{}\">",
                c.kind,
                esc(&c.name)
            );
            if c.passed {
                x += "</testcase>\n";
            } else {
                x += &format!(
                    "\n    <failure message=\"{}\">{}</failure>\n  </testcase>\n",
                    esc(&c.detail),
                    esc(&c.log.join("\n"))
                );
            }
        }
        x + "</testsuite>\n"
    }
}
