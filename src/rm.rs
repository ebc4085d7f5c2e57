//! `rehost rm NAME…`: remove containers.

use crate::flags::RuntimeArgs;
use anyhow::Result;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[arg(required = true)]
    names: Vec<String>,
    /// Stop running containers first (SIGKILL).
    #[arg(short, long)]
    force: bool,
    #[command(flatten)]
    rt: RuntimeArgs,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let rt = args.rt.runtime();
    for name in &args.names {
        rt.remove(name, args.force)?;
    }
    Ok(ExitCode::SUCCESS)
}
