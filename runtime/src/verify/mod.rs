//! `verify`: boot an image on the runtime, check it, stop it, and report. The checks are
//! data ([`Checks`]): a plan fills them; without one they come from the image itself (the
//! services and ports `rehost convert` recorded in its labels and config). Each init is
//! asked in its own terms ([`probe::Probe`]).

mod checks;
mod probe;

use crate::container::{RunRequest, Runtime};
use crate::error::{Error, Result};
use crate::layers::LayerCache;
use crate::modes::{ImageInit, InitMode};
use crate::rootfs::RootfsKind;
use crate::spec::Options;
use oci::contract::{MODE_LABEL, PORT_SERVICES_LABEL, SERVICES_LABEL};
use probe::{Boot, Probe};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// An HTTP GET on a port inside the container.
#[derive(Debug, Clone)]
pub struct HttpCheck {
    pub port: u16,
    pub path: String,
    /// The status it must answer; `None`: any 2xx or 3xx.
    pub expect: Option<u16>,
}

/// A TCP port that must listen inside, and the service expected on it (named when it
/// does not listen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortCheck {
    pub port: u16,
    pub service: Option<String>,
}

/// How long the port checks wait for a listener that is not there yet: a service reported
/// active may bind its port a moment later.
const PORT_WAIT: Duration = Duration::from_secs(10);

/// A command run inside, and the exit code it must give.
#[derive(Debug, Clone)]
pub struct CommandCheck {
    pub command: String,
    pub expect: i32,
}

/// What to check, beyond the boot, the hooks, the identity, reaping and the stop.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    /// Services that must be active. Empty: the services the image was converted to run
    /// (its label), else (systemd) every enabled long-running service.
    pub services: Vec<String>,
    /// TCP ports that must listen inside. Empty: the image's exposed TCP ports (each with
    /// the service its label names).
    pub ports: Vec<PortCheck>,
    pub commands: Vec<CommandCheck>,
    pub http: Vec<HttpCheck>,
}

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub image: String,
    /// `None`: the mode the image was converted for.
    pub mode: Option<InitMode>,
    /// For the boot and for the stop, each.
    pub timeout: Duration,
    pub checks: Checks,
    pub overlay: bool,
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// boot, unit, service, port, http, command, hooks, identity, reap, stop.
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
        if let Err(e) = self.rt.remove(&self.name, true) {
            tracing::warn!("removing {}: {e}", self.name);
        }
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

    fn with_log(mut self, log: Vec<String>) -> Self {
        if !self.passed {
            self.log = log;
        }
        self
    }
}

/// The running container, as the checks see it.
pub struct Inside<'a> {
    rt: &'a Runtime,
    name: &'a str,
}

impl Inside<'_> {
    /// Runs `args` inside; stdout trimmed, and whether it exited 0.
    pub fn run(&self, args: &[&str]) -> (String, bool) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match self.rt.engine.exec_output(self.name, &args) {
            Ok(out) => (
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
                out.status.success(),
            ),
            Err(e) => (e.to_string(), false),
        }
    }

    /// The end of what pid 1 wrote (the last [`crate::tail::TAIL`] bytes: a chatty
    /// container writes without end).
    pub fn log(&self) -> String {
        let tail = crate::tail::file_tail(&self.rt.log_path(self.name), crate::tail::TAIL);
        String::from_utf8_lossy(&tail.unwrap_or_default()).into_owned()
    }

    fn pid(&self) -> Option<i32> {
        self.rt
            .engine
            .state(self.name)
            .map(|s| s.pid)
            .filter(|p| *p > 0)
    }
}

/// The last lines of pid 1's output (for a boot that went wrong).
fn log_tail(c: &Inside) -> Vec<String> {
    let text = c.log();
    let lines: Vec<String> = text.lines().map(String::from).collect();
    lines[lines.len().saturating_sub(20)..].to_vec()
}

pub fn verify(rt: &Runtime, opts: &VerifyOptions) -> Result<Report> {
    let start = Instant::now();
    let image = crate::Image::open(&opts.image)?;
    let labels = &image.config.config.labels;
    let converted = labels.get(MODE_LABEL).is_some_and(|m| m.as_str() != "none");
    let name = format!(
        "verify-{}-{}",
        &image.manifest_digest[7..19],
        std::process::id()
    );
    let req = RunRequest {
        image: opts.image.clone(),
        name: Some(name.clone()),
        mode: opts.mode,
        command: Vec::new(),
        options: Options::default(),
        overlay: opts.overlay,
    };
    // Ctrl-C or a termination request ends the verify through the cleanup below, not
    // by killing us with a container still running.
    let _signals = crate::signals::Deferred::install();
    let state = rt.run_detached(&req)?;
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
    let inside = Inside { rt, name: &name };
    let probe = Probe::for_mode(state.mode);
    let mut checks = Vec::new();

    // 1. Boot.
    let boot = loop {
        interrupted()?;
        if !rt.running(&name) {
            break Err("pid 1 exited during the boot".to_string());
        }
        match probe.boot(&inside) {
            Boot::Ready(s) => break Ok(s),
            Boot::Booting(s) if start.elapsed() > opts.timeout => {
                break Err(format!("`{s}` after {}s (timeout)", opts.timeout.as_secs()))
            }
            Boot::Booting(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let seconds_to_ready = start.elapsed().as_secs_f64();
    let ready = boot.is_ok();
    checks.push(
        CheckResult::new(
            "boot",
            state.mode.to_string(),
            ready,
            match &boot {
                Ok(s) => format!("{s} after {seconds_to_ready:.1}s"),
                Err(e) => e.clone(),
            },
        )
        .with_log(log_tail(&inside)),
    );

    if ready {
        let optional = probe.optional(&inside);
        let is_optional = |name: &str| optional.iter().any(|o| probe::same_service(o, name));
        for unit in probe.failed(&inside) {
            let (passed, detail) = if is_optional(&unit) {
                (true, "failed (optional: the container stays healthy)")
            } else {
                (false, "failed")
            };
            checks.push(
                CheckResult::new("unit", unit.clone(), passed, detail)
                    .with_log(probe.log(&inside, &unit)),
            );
        }

        // 2. Services, ports, the plan's own checks.
        let services = if !opts.checks.services.is_empty() {
            opts.checks.services.clone()
        } else if matches!(state.mode, InitMode::DumbInit | InitMode::None) {
            // One main command: the boot check saw it running.
            Vec::new()
        } else if let Some(list) = labels.get(SERVICES_LABEL).filter(|l| !l.is_empty()) {
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.ends_with(".timer") && !s.ends_with(".target"))
                .map(String::from)
                .collect()
        } else if matches!(probe, Probe::Systemd) {
            enabled_services(&inside)
        } else {
            Vec::new()
        };
        for svc in &services {
            let st = probe.service(&inside, svc);
            let (passed, detail) = if !st.active && is_optional(svc) {
                (true, format!("{} (optional)", st.detail))
            } else {
                (st.active, st.detail)
            };
            checks.push(
                CheckResult::new("service", svc.clone(), passed, detail)
                    .with_log(probe.log(&inside, svc)),
            );
        }
        let ports: Vec<PortCheck> = if opts.checks.ports.is_empty() {
            image_ports(&image.config.config)
        } else {
            opts.checks.ports.clone()
        };
        if !ports.is_empty() {
            // Bounded: at most PORT_WAIT (and never past the boot timeout) for late binders.
            let wait = PORT_WAIT.min(opts.timeout);
            let open = checks::wait_listening(&inside, &ports, wait, &|| {
                crate::signals::Deferred::received() != 0
            });
            for p in ports {
                checks.push(checks::port_result(&p, open.contains(&p.port), wait));
            }
        }
        for h in &opts.checks.http {
            let label = format!("GET :{}{}", h.port, h.path);
            // A server reported running may listen a moment later (dumb-init's one command
            // is "running" once started): a refused connection is tried again, bounded as
            // the port checks are.
            let until = std::time::Instant::now() + PORT_WAIT.min(opts.timeout);
            let got = loop {
                let got = match inside.pid() {
                    Some(pid) => checks::http_get(pid, h.port, &h.path, Duration::from_secs(10)),
                    None => Err(checks::HttpCheckError::NotRunning),
                };
                let refused = matches!(&got, Err(checks::HttpCheckError::Connect { .. }));
                if !refused
                    || std::time::Instant::now() >= until
                    || crate::signals::Deferred::received() != 0
                {
                    break got;
                }
                std::thread::sleep(Duration::from_millis(200));
            };
            checks.push(match got {
                Ok(code) => {
                    let passed = match h.expect {
                        Some(want) => code == want,
                        None => (200..400).contains(&code),
                    };
                    CheckResult::new("http", label, passed, format!("HTTP {code}"))
                }
                Err(e) => CheckResult::new("http", label, false, e.to_string()),
            });
        }
        for cmd in &opts.checks.commands {
            let out = rt
                .engine
                .exec_output(&name, &["/bin/sh".into(), "-c".into(), cmd.command.clone()])?;
            let code = out.status.code().unwrap_or(-1);
            let text = String::from_utf8_lossy(&out.stderr).to_string()
                + &String::from_utf8_lossy(&out.stdout);
            let lines: Vec<String> = text.lines().map(String::from).collect();
            checks.push(
                CheckResult::new(
                    "command",
                    cmd.command.clone(),
                    code == cmd.expect,
                    format!("exit {code} (expected {})", cmd.expect),
                )
                .with_log(lines[lines.len().saturating_sub(15)..].to_vec()),
            );
        }

        // 3. What rehost's layer promises: hooks ran, the host identity is new.
        if converted {
            let (record, ok) = inside.run(&["cat", "/var/lib/rehost/hooks/prestart.json"]);
            checks.push(checks::hooks_record("prestart", ok.then_some(record)));
            let lowers = LayerCache::new(&rt.root).ensure(&image)?;
            checks.extend(checks::identity(&inside, &|p| {
                checks::file_in_layers(&lowers, p)
            }));
        }
        checks.push(checks::orphan_reaped(&inside, Duration::from_secs(5)));
    }

    interrupted()?;
    // 4. Stop: pid 1 halts on its stop signal within the timeout, the poststop hooks ran.
    let stop = rt.stop(&name, opts.timeout)?;
    checks.push(
        CheckResult::new(
            "stop",
            "shutdown",
            stop.clean,
            if stop.clean {
                format!("halted in {:.1}s", stop.seconds)
            } else {
                format!("still running after {}s: killed", opts.timeout.as_secs())
            },
        )
        .with_log(log_tail(&inside)),
    );
    let poststop_installed = ImageInit::of(&image.config.config).runs_poststop_hooks(state.mode);
    if converted && ready && poststop_installed {
        let record = container_file(
            rt,
            &name,
            state.rootfs,
            "/var/lib/rehost/hooks/poststop.json",
        );
        checks.push(checks::hooks_record("poststop", record));
    }

    let passed = checks.iter().all(|c| c.passed);
    Ok(Report {
        image: opts.image.clone(),
        container: name.clone(),
        mode: state.mode,
        passed,
        seconds_to_ready,
        seconds_total: start.elapsed().as_secs_f64(),
        checks,
    })
}

/// A file the stopped container wrote: in its upper layer, or its copied rootfs. The
/// container shaped that tree: the path is resolved inside it and read bounded
/// ([`crate::confined`]); a link, a FIFO or a huge file there gives no record.
fn container_file(rt: &Runtime, name: &str, kind: RootfsKind, path: &str) -> Option<String> {
    let dir = rt.container_dir(name);
    let base: PathBuf = match kind {
        RootfsKind::Overlay => dir.join("upper"),
        RootfsKind::Copy => crate::rootfs::rootfs_path(&dir),
    };
    match crate::confined::read(&base, path) {
        Ok(bytes) => bytes.map(|b| String::from_utf8_lossy(&b).into_owned()),
        Err(e) => {
            tracing::warn!("{name}: {e}");
            None
        }
    }
}

/// The image's exposed TCP ports, each with the service its label expects there.
fn image_ports(config: &oci::image::RunConfig) -> Vec<PortCheck> {
    let services = config
        .labels
        .get(PORT_SERVICES_LABEL)
        .map(|l| oci::contract::parse_port_services(l))
        .unwrap_or_default();
    config
        .exposed_ports
        .keys()
        .filter_map(|p| {
            let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            if proto != "tcp" {
                return None;
            }
            let port: u16 = port.parse().ok()?;
            let service = services
                .iter()
                .find(|(q, pr, _)| *q == port && pr == "tcp")
                .map(|(_, _, s)| s.clone());
            Some(PortCheck { port, service })
        })
        .collect()
}

/// The enabled services that run (not one-shot): what the server ran before.
fn enabled_services(c: &Inside) -> Vec<String> {
    let (list, _) = c.run(&[
        "systemctl",
        "list-unit-files",
        "--type=service",
        "--state=enabled",
        "--no-legend",
        "--plain",
    ]);
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|u| !u.contains('@'))
        .filter(|u| c.run(&["systemctl", "show", "-p", "Type", "--value", u]).0 != "oneshot")
        .map(String::from)
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
