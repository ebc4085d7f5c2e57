//! The hidden `rehost forward-ports`, started by `run -p`.

use anyhow::{Context, Result};
use runtime::PortMapping;
use std::path::PathBuf;
use std::process::ExitCode;

/// The hidden `rehost forward-ports`: the process that serves a container's published
/// ports (started by `run` with the bound sockets; see `runtime::ports`).
#[derive(clap::Args)]
pub struct Args {
    /// The container (to recognise this process by).
    #[arg(long)]
    name: String,
    /// The engine's pid file of the container's pid 1.
    #[arg(long)]
    pid_file: PathBuf,
    mappings: Vec<PortMapping>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    runtime::ports::serve(&args.pid_file, &args.mappings)
        .with_context(|| format!("forwarding the ports of {}", args.name))?;
    Ok(ExitCode::SUCCESS)
}
