//! `rehost fleet FILE`: inspect, convert, verify and push many hosts, N at a time, and
//! report on them together.
//!
//! The one subcommand that is more than a file: the fleet file (`file`), one host's run
//! (`host`), the report and the state a rerun resumes from (`report`), and the page
//! (`html`).

mod file;
mod host;
mod html;
mod report;

use crate::output;
use anyhow::{bail, Context, Result};
use file::Fleet;
use report::{HostResult, Report, State, Status};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(clap::Args)]
#[command(after_help = "The fleet file (TOML):\n\
    \n  output = \"fleet\"                      # images, plans, logs and the report (default: fleet)\
    \n  jobs = 2                              # hosts at a time\
    \n  registry = \"registry.example/migrated\" # push each host to REGISTRY/NAME:TAG (optional)\
    \n  tag = \"latest\"\
    \n  sbom = \"spdx\"                         # push attaches each image's SBOM (or cyclonedx; optional)\
    \n  [defaults.amend]                      # for every host, as convert's flags\
    \n  drop = [\"cron.service\"]\
    \n  [defaults.convert]                    # layers (packages, one), max_layers: convert's flags\
    \n  layers = \"packages\"\
    \n  [[host]]\
    \n  name = \"web01\"                        # a-z 0-9 . _ -: its directory and repository\
    \n  source = \"ssh://root@web01\"           # or a directory, an archive, a disk image\
    \n  plan = \"web01.plan.toml\"              # optional: an edited plan from `rehost inspect --plan`\
    \n  amend.critical = [\"nginx.service\"]    # init, service, drop, critical, optional, expose, volume, exclude\
    \n  verify.http = [\"80/\"]                 # skip, timeout, port, http, check\n\
    \nA host already done is kept unless its source, plan or settings changed (a directory \
    by the metadata of every file, an archive or disk image by its size and time, an ssh:// \
    host by what inspect finds); --redo runs it anyway.\n\
    \nWritten to the output directory: NAME/ (plan.toml, image.oci, one log per step, \
    verify.xml), report.json, report.xml (JUnit), report.html and state.json.\n\
    \nExit status: 0 every host passed, 1 a host failed (the report says which step and \
    why), 2 the fleet file or the flags are wrong (nothing ran).\n\
    \nExamples:\n  rehost fleet fleet.toml\n  rehost fleet fleet.toml --host web01 --redo\n  \
    rehost fleet fleet.toml --jobs 4 --json > fleet.json")]
pub struct Args {
    /// The fleet file (TOML): its hosts and where their images go.
    file: PathBuf,
    /// Hosts at a time [default: the file's `jobs`, else 2].
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Run only this host (repeatable); the report still lists the others' last results.
    #[arg(long = "host", value_name = "NAME")]
    only: Vec<String>,
    /// Run every host again, even those done with an unchanged source.
    #[arg(long)]
    redo: bool,
    /// Print the report as JSON on standard output.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, quiet: bool) -> Result<ExitCode> {
    let fleet = match prepare(&args) {
        Ok(fleet) => fleet,
        Err(e) => {
            output::print_error(&e);
            return Ok(ExitCode::from(2));
        }
    };
    std::fs::create_dir_all(&fleet.output)
        .with_context(|| format!("creating {}", fleet.output.display()))?;
    // One run per output directory: two would convert into the same images.
    let lock_path = fleet.output.join(".lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        bail!(
            "another `rehost fleet` is running on {}",
            fleet.output.display()
        );
    }
    let state_path = fleet.output.join("state.json");
    let state = Mutex::new(State::load(&state_path)?);

    let selected: Vec<&file::Host> = fleet
        .hosts
        .iter()
        .filter(|h| args.only.is_empty() || args.only.contains(&h.name))
        .collect();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let total = selected.len();
    std::thread::scope(|scope| {
        for _ in 0..fleet.jobs.min(total) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(host) = selected.get(i) else { break };
                let say = |msg: &str| {
                    if !quiet {
                        eprintln!("{}: {msg}", host.name);
                    }
                };
                let previous = lock_state(&state).hosts.get(&host.name).cloned();
                let result = host::run(&fleet, host, previous.as_ref(), args.redo, &say);
                let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                say(&match (result.status, result.ran) {
                    (Status::Ok, false) => {
                        format!("[{n}/{total}] kept: done by an earlier run, source unchanged")
                    }
                    (Status::Ok, true) => format!("[{n}/{total}] done in {:.0} s", result.seconds),
                    (Status::Failed, _) => format!(
                        "[{n}/{total}] FAILED at {}: {}",
                        result.failed_step.as_deref().unwrap_or("?"),
                        result.reason.as_deref().unwrap_or("")
                    ),
                });
                let mut state = lock_state(&state);
                state.hosts.insert(host.name.clone(), result);
                if let Err(e) = state.save(&state_path) {
                    tracing::warn!("saving the fleet state: {e:#}");
                }
            });
        }
    });

    // The report covers the whole fleet: hosts not run this time show their last result.
    let mut state = state.into_inner().unwrap_or_else(|e| e.into_inner());
    let results: Vec<HostResult> = fleet
        .hosts
        .iter()
        .filter_map(|h| state.hosts.remove(&h.name))
        .collect();
    let report = Report::new(results);
    let title = format!(
        "rehost fleet: {}",
        args.file.file_name().map_or_else(
            || args.file.display().to_string(),
            |n| n.to_string_lossy().into()
        )
    );
    report::write_atomically(
        &fleet.output.join("report.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    report::write_atomically(&fleet.output.join("report.xml"), report.junit().as_bytes())?;
    report::write_atomically(
        &fleet.output.join("report.html"),
        html::page(&report, &title).as_bytes(),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
        if !quiet {
            eprintln!("report: {}", fleet.output.join("report.html").display());
        }
    }
    Ok(if report.totals.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The fleet file and the flags, checked before anything runs.
fn prepare(args: &Args) -> Result<Fleet> {
    let mut fleet = Fleet::read(&args.file)?;
    if let Some(jobs) = args.jobs {
        if jobs == 0 || jobs > 64 {
            bail!("--jobs {jobs}: give 1 to 64 hosts at a time");
        }
        fleet.jobs = jobs;
    }
    for name in &args.only {
        if !fleet.hosts.iter().any(|h| &h.name == name) {
            bail!("--host {name}: {} has no such host", args.file.display());
        }
    }
    Ok(fleet)
}

fn lock_state(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A panicking host thread must not stop the others from recording theirs.
    state.lock().unwrap_or_else(|e| e.into_inner())
}
