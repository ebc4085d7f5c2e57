//! `rehost verify IMAGE`: boot it, check every service, stop it, report.

use crate::run::RuntimeArgs;
use anyhow::{Context, Result};
use runtime::verify::{self, Checks, VerifyOptions};
use runtime::InitMode;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
#[command(
    after_help = "Exit status: 0 only if every check passed.\n\nExamples:\n  \
    rehost verify web01.oci --port 22 --port 80\n  \
    rehost verify web01.oci --json --junit verify.xml"
)]
pub struct Args {
    /// The image: an OCI layout directory or archive, optionally :TAG.
    image: String,
    /// pid 1 to boot with (systemd for now).
    #[arg(long = "init", default_value = "systemd", value_name = "MODE")]
    mode: InitMode,
    /// Seconds allowed for the boot, and again for the stop.
    #[arg(long, default_value_t = 120, value_name = "S")]
    timeout: u64,
    /// A service that must be active [default: every enabled long-running service].
    #[arg(long, value_name = "UNIT")]
    service: Vec<String>,
    /// A TCP port that must listen inside [default: the image's exposed ports].
    #[arg(long, value_name = "PORT")]
    port: Vec<u16>,
    /// A shell command that must exit 0 inside.
    #[arg(long, value_name = "CMD")]
    check: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Also write the report as JUnit XML.
    #[arg(long, value_name = "FILE")]
    junit: Option<std::path::PathBuf>,
    /// Copy the layers instead of mounting them with overlayfs.
    #[arg(long)]
    no_overlay: bool,
    #[command(flatten)]
    rt: RuntimeArgs,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let rt = args.rt.runtime();
    let opts = VerifyOptions {
        image: args.image,
        mode: args.mode,
        timeout: Duration::from_secs(args.timeout),
        checks: Checks {
            services: args.service,
            ports: args.port,
            commands: args.check,
        },
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
        for c in &report.checks {
            let mark = if c.passed { "ok  " } else { "FAIL" };
            println!("{mark}  {:<8} {:<32} {}", c.kind, c.name, c.detail);
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
