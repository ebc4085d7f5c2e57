//! `rehost exec NAME CMD…`: a command in a running container.

use crate::flags::RuntimeArgs;
use anyhow::Result;
use std::io::IsTerminal;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(
    after_help = "From a terminal, the command gets a terminal of the container's own, joined to \
    yours; otherwise it gets your standard input and output.\n\n\
    Example:\n  rehost exec web01 systemctl status nginx"
)]
pub struct Args {
    /// The container's name (see `rehost ps`).
    name: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, required = true)]
    command: Vec<String>,
    #[command(flatten)]
    rt: RuntimeArgs,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let rt = args.rt.runtime();
    rt.require_running(&args.name)?;
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let status = rt
        .engine_for(&args.name)
        .exec(&args.name, &args.command, tty)?;
    Ok(ExitCode::from(status.code().unwrap_or(255) as u8))
}
