//! `rehost verify IMAGE`: boot it, check every service, stop it, report.

use crate::flags::{RegistryArgs, RuntimeArgs};
use anyhow::{Context, Result};
use converter::plan::checks::HttpGet;
use converter::plan::Plan;
use runtime::verify::{self, Checks, CommandCheck, HttpCheck, PortCheck, VerifyOptions};
use runtime::InitMode;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
#[command(
    after_help = "What is checked: the boot (systemd: is-system-running; rehost-init: its \
    status; SysV: the runlevel), every kept service, every port, the plan's commands and HTTP \
    GETs, that the prestart hooks ran, that machine-id and SSH host keys are the container's \
    own, that pid 1 reaps an orphan, and that the server stops cleanly within --timeout and \
    runs its poststop hooks.\n\nExit status: 0 only if every check passed, 1 otherwise.\n\n\
    Examples:\n  rehost verify web01.oci --plan web01.plan.toml\n  \
    rehost verify web01.oci --init rehost --port 22 --http 80/ --json --junit verify.xml"
)]
pub struct Args {
    /// The image: an OCI layout directory or archive, optionally :TAG, or a registry
    /// reference (REGISTRY/REPO:TAG), pulled first.
    image: String,
    /// pid 1 to boot with: systemd, rehost, sbin-init, dumb-init, none
    /// [default: the mode the image was converted for].
    #[arg(long = "init", value_name = "MODE")]
    mode: Option<InitMode>,
    /// The plan (from `rehost inspect --plan`): its services, ports, commands and HTTP
    /// checks are what is checked.
    #[arg(long, value_name = "FILE")]
    plan: Option<PathBuf>,
    /// Seconds allowed for the boot, and again for the stop.
    #[arg(long, default_value_t = 120, value_name = "S")]
    timeout: u64,
    /// A service that must be active [default: the plan's, else the image's kept services].
    #[arg(long, value_name = "NAME")]
    service: Vec<String>,
    /// A TCP port that must listen inside [default: every TCP port of the plan, else the
    /// exposed ports].
    #[arg(long, value_name = "PORT")]
    port: Vec<u16>,
    /// A shell command that must exit 0 inside.
    #[arg(long, value_name = "CMD")]
    check: Vec<String>,
    /// An HTTP GET inside the container that must answer 2xx or 3xx: PORT/PATH.
    #[arg(long, value_name = "PORT/PATH")]
    http: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Also write the report as JUnit XML.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Copy the layers instead of mounting them with overlayfs.
    #[arg(long)]
    no_overlay: bool,
    #[command(flatten)]
    rt: RuntimeArgs,
    /// How to reach the registry when IMAGE is a reference (REGISTRY/REPO:TAG).
    #[command(flatten)]
    registry: RegistryArgs,
}

fn http_check(get: HttpGet) -> HttpCheck {
    HttpCheck {
        port: get.port,
        path: get.path,
        expect: get.expect,
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let rt = args.rt.runtime();
    let mut checks = Checks::default();
    if let Some(path) = &args.plan {
        let planned = Plan::read(path)?
            .checks()
            .with_context(|| format!("{}: its checks", path.display()))?;
        checks.services = planned.services;
        checks.ports = planned
            .ports
            .into_iter()
            .map(|p| PortCheck {
                port: p.port,
                service: p.service,
            })
            .collect();
        checks.commands = planned
            .commands
            .into_iter()
            .map(|(command, expect)| CommandCheck { command, expect })
            .collect();
        checks.http = planned.http.into_iter().map(http_check).collect();
    }
    checks.services.extend(args.service);
    for port in args.port {
        if !checks.ports.iter().any(|p| p.port == port) {
            checks.ports.push(PortCheck {
                port,
                service: None,
            });
        }
    }
    checks.commands.extend(
        args.check
            .into_iter()
            .map(|command| CommandCheck { command, expect: 0 }),
    );
    for h in &args.http {
        checks.http.push(http_check(HttpGet::parse(h, None)?));
    }
    let image = crate::image_ref::resolve(&args.image, &args.registry, &rt.root)?;
    let opts = VerifyOptions {
        image: image.reference.clone(),
        mode: args.mode,
        timeout: Duration::from_secs(args.timeout),
        checks,
        overlay: !args.no_overlay,
    };
    let report = verify::verify(&rt, &opts)?;
    if let Some(path) = &args.junit {
        std::fs::write(path, report.junit())
            .with_context(|| format!("{}: cannot write the JUnit report", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        // The name column as wide as the longest name, so the details line up.
        let width = report.checks.iter().map(|c| c.name.chars().count()).max();
        let width = width.unwrap_or(0).max(24);
        for c in &report.checks {
            let mark = if c.passed { "ok  " } else { "FAIL" };
            println!("{mark}  {:<8} {:<width$}  {}", c.kind, c.name, c.detail);
            for line in &c.log {
                println!("        | {line}");
            }
        }
        let failed = report.checks.iter().filter(|c| !c.passed).count();
        println!(
            "{}: {} checks, {failed} failed, ready in {:.1}s",
            if report.passed { "PASSED" } else { "FAILED" },
            report.checks.len(),
            report.seconds_to_ready
        );
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
