//! `rehost inspect SOURCE`: what is on the server, and what rehost will do with it.

use crate::output;
use anyhow::{Context, Result};
use converter::plan::Plan;
use converter::profile::Profile;
use converter::report::{examine, render};
use converter::source::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  rehost inspect /mnt/web01\n  \
    rehost inspect web01.tar.gz --plan web01.plan.toml\n  \
    rehost inspect / --json > web01.inventory.json\n\n\
    The plan is a TOML file; edit it, then give it to `rehost convert --plan` and \
    `rehost verify --plan`. docs/plan.md describes every field.")]
pub struct Args {
    /// The server: a directory, the live root /, a root filesystem archive (- for stdin),
    /// a VM disk image, or a remote server (ssh://[USER@]HOST[:PORT][/PATH]).
    pub(crate) source: PathBuf,
    /// Print the inventory and the plan as JSON on standard output.
    #[arg(long)]
    pub(crate) json: bool,
    /// Write the plan (every decision, with its reason) to this TOML file.
    #[arg(long, value_name = "FILE")]
    pub(crate) plan: Option<PathBuf>,
    /// Replace the plan file if it exists.
    #[arg(long)]
    pub(crate) force: bool,
    /// Profiles the plan's decisions come from (built-in names or files), instead of
    /// `base` plus the distribution family's own.
    #[arg(long, value_name = "NAME|FILE")]
    pub(crate) profile: Vec<String>,
    /// Skip the metadata walk (sizes, sparse files, keys outside the usual places).
    #[arg(long)]
    pub(crate) no_walk: bool,
    /// For a live root: also look at this mount point's filesystem.
    #[arg(long, value_name = "PATH")]
    pub(crate) include_mount: Vec<PathBuf>,
    /// For a disk image: let its backing files (qcow2) and extents (VMDK) lie in DIR too
    /// (repeatable). By default they must lie in the image's own directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) allow_backing: Vec<PathBuf>,
}

pub fn run(args: Args, quiet: bool) -> Result<ExitCode> {
    if converter::source::remote::is_remote(&args.source) {
        return crate::remote::inspect(args, quiet);
    }
    let bar = output::spinner(quiet || args.json);
    bar.set_message(format!("reading {}", args.source.display()));
    let source = source::open(
        &args.source,
        &OpenOptions {
            include_mounts: args.include_mount.clone(),
            allow_backing: args.allow_backing.clone(),
            ..OpenOptions::default()
        },
    )
    .with_context(|| format!("inspecting {}", args.source.display()))?;
    let profiles = args
        .profile
        .iter()
        .map(|p| Profile::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    let examined = examine(source.as_ref(), &profiles, !args.no_walk)
        .with_context(|| format!("inspecting {}", args.source.display()))?;
    bar.finish_and_clear();
    let report = render(&examined, args.json).context("writing the report")?;
    let review = converter::plan::review(&examined.inventory);
    finish(&args, quiet, &report, &examined.plan, &review)
}

/// Writes the plan file and prints the report.
pub(crate) fn finish(
    args: &Args,
    quiet: bool,
    report: &[u8],
    plan: &Plan,
    review: &[String],
) -> Result<ExitCode> {
    if let Some(path) = &args.plan {
        plan.write(path, args.force, review)
            .with_context(|| format!("writing the plan {}", path.display()))?;
    }
    if quiet && !args.json {
        return Ok(ExitCode::SUCCESS);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let printed = out.write_all(report).and_then(|()| {
        if let (Some(path), false) = (&args.plan, args.json) {
            writeln!(out, "\nplan written to {}", path.display())?;
        }
        out.flush()
    });
    match printed {
        // The reader went away (`| head`): nothing more to say.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.context("writing the report")?,
    }
    Ok(ExitCode::SUCCESS)
}
