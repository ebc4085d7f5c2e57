//! `rehost ps`: the containers.

use crate::flags::RuntimeArgs;
use anyhow::Result;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    rt: RuntimeArgs,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let list = args.rt.runtime().list()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<10} {:<10} {:<8} {:<28} IMAGE",
        "NAME", "STATUS", "MODE", "PID", "PORTS"
    );
    for c in list {
        let ports: Vec<String> = c.state.ports.iter().map(|p| p.to_string()).collect();
        println!(
            "{:<24} {:<10} {:<10} {:<8} {:<28} {}",
            c.state.name,
            c.status,
            c.state.mode.to_string(),
            c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            if ports.is_empty() {
                "-".into()
            } else {
                ports.join(", ")
            },
            c.state.image
        );
    }
    Ok(ExitCode::SUCCESS)
}
