//! The small container commands: `exec`, `stop`, `ps`, `logs`, `rm`.

use crate::run::RuntimeArgs;
use anyhow::Result;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
#[command(
    after_help = "From a terminal, the command gets a terminal of the container's own, joined to \
    yours; otherwise it gets your standard input and output.\n\n\
    Example:\n  rehost exec web01 systemctl status nginx"
)]
pub struct ExecArgs {
    /// The container's name (see `rehost ps`).
    name: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, required = true)]
    command: Vec<String>,
    #[command(flatten)]
    rt: RuntimeArgs,
}

pub fn exec(args: ExecArgs) -> Result<ExitCode> {
    let rt = args.rt.runtime();
    rt.require_running(&args.name)?;
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let status = rt
        .engine_for(&args.name)
        .exec(&args.name, &args.command, tty)?;
    Ok(ExitCode::from(status.code().unwrap_or(255) as u8))
}

#[derive(clap::Args)]
pub struct StopArgs {
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

pub fn stop(args: StopArgs) -> Result<ExitCode> {
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

#[derive(clap::Args)]
pub struct PsArgs {
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    rt: RuntimeArgs,
}

pub fn ps(args: PsArgs) -> Result<ExitCode> {
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

#[derive(clap::Args)]
pub struct LogsArgs {
    name: String,
    /// Keep printing new output until the container stops.
    #[arg(short, long)]
    follow: bool,
    #[command(flatten)]
    rt: RuntimeArgs,
}

pub fn logs(args: LogsArgs) -> Result<ExitCode> {
    let rt = args.rt.runtime();
    rt.state(&args.name)?;
    let path = rt.log_path(&args.name);
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
    };
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n > 0 {
            out.write_all(&buf[..n])?;
            continue;
        }
        out.flush()?;
        if !args.follow || rt.require_running(&args.name).is_err() {
            // One last read: what pid 1 wrote as it exited.
            let pos = file.stream_position()?;
            file.seek(SeekFrom::Start(pos))?;
            std::io::copy(&mut file, &mut out)?;
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[derive(clap::Args)]
pub struct RmArgs {
    #[arg(required = true)]
    names: Vec<String>,
    /// Stop running containers first (SIGKILL).
    #[arg(short, long)]
    force: bool,
    #[command(flatten)]
    rt: RuntimeArgs,
}

pub fn rm(args: RmArgs) -> Result<ExitCode> {
    let rt = args.rt.runtime();
    for name in &args.names {
        rt.remove(name, args.force)?;
    }
    Ok(ExitCode::SUCCESS)
}
