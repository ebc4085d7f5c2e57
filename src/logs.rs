//! `rehost logs NAME`: pid 1's output.

use crate::flags::RuntimeArgs;
use anyhow::Result;
use std::io::{Read, Seek, SeekFrom, Write};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    name: String,
    /// Keep printing new output until the container stops.
    #[arg(short, long)]
    follow: bool,
    #[command(flatten)]
    rt: RuntimeArgs,
}

pub fn run(args: Args) -> Result<ExitCode> {
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
