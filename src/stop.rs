//! `rehost stop NAME`: the stop signal, then SIGKILL after --time.

use crate::flags::RuntimeArgs;
use anyhow::Result;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    name: String,
    /// Seconds to wait after the stop signal before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    time: u64,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    rt: RuntimeArgs,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let outcome = args
        .rt
        .runtime()
        .stop(&args.name, Duration::from_secs(args.time))?;
    if args.json {
        println!("{}", serde_json::to_string(&outcome)?);
    } else if !outcome.clean {
        eprintln!(
            "rehost: {} did not stop within {}s: killed",
            args.name, args.time
        );
    }
    Ok(ExitCode::SUCCESS)
}
