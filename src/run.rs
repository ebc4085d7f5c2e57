//! `rehost run IMAGE [CMD…]`

use crate::flags::{RegistryArgs, RuntimeArgs};
use anyhow::{Context, Result};
use runtime::spec::Options;
use runtime::{InitMode, PortMapping, RunRequest};
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(
    after_help = "Attached (without -d) from a terminal, the container gets a terminal of its own, \
    joined to yours: an init (systemd, rehost, sbin-init) shows its boot there and Ctrl-C stops \
    the container; a command (none, dumb-init) gets Ctrl-C as a key.\n\n\
    Examples:\n  rehost run web01.oci --init systemd -d --name web01\n  \
    rehost run web01.oci:v1 --init none /bin/sh -c 'echo hello'\n  \
    rehost run web01.oci -d -p 127.0.0.1:8080:80 -p 2222:22"
)]
pub struct Args {
    /// The image: an OCI layout directory or archive, optionally :TAG, or a registry
    /// reference (REGISTRY/REPO:TAG), pulled first.
    image: String,
    /// The command, replacing the image's (modes that run one: dumb-init, none).
    #[arg(trailing_var_arg = true)]
    command: Vec<String>,
    /// pid 1: systemd (the image's own), rehost (rehost-init), sbin-init, dumb-init, none
    /// [default: the mode the image was converted for; none for other images].
    #[arg(long = "init", value_name = "MODE")]
    mode: Option<InitMode>,
    /// Run in the background and print the container's name.
    #[arg(short, long)]
    detach: bool,
    /// The container's name (and hostname) [default: from the image digest].
    #[arg(long)]
    name: Option<String>,
    /// KEY=VALUE in the environment of pid 1.
    #[arg(short, long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Memory limit in bytes (suffixes k, m, g).
    #[arg(long, value_name = "BYTES")]
    memory: Option<String>,
    /// Most processes the container may have.
    #[arg(long, value_name = "N")]
    pids_limit: Option<i64>,
    /// A host command run around the container with its state (JSON) on stdin:
    /// prestart=CMD or poststop=CMD.
    #[arg(long, value_name = "PHASE=CMD")]
    hook: Vec<String>,
    /// Copy the layers instead of mounting them with overlayfs.
    #[arg(long)]
    no_overlay: bool,
    /// Publish a container port on the host: [IP:]HOSTPORT:PORT[/udp], repeatable.
    /// Without IP the port is open on every host address (0.0.0.0), as docker does; give
    /// 127.0.0.1:HOSTPORT:PORT to keep it local. A forwarder process on the host connects
    /// each connection (or UDP client) to 127.0.0.1:PORT inside the container (no
    /// iptables).
    #[arg(short = 'p', long = "publish", value_name = "[IP:]HOSTPORT:PORT[/udp]")]
    publish: Vec<PortMapping>,
    /// Remove the container when it exits (attached runs).
    #[arg(long)]
    rm: bool,
    #[command(flatten)]
    rt: RuntimeArgs,
    /// How to reach the registry when IMAGE is a reference (REGISTRY/REPO:TAG).
    #[command(flatten)]
    registry: RegistryArgs,
}

fn parse_bytes(s: &str) -> Result<i64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mul) = match s.chars().last() {
        Some('k') => (&s[..s.len() - 1], 1 << 10),
        Some('m') => (&s[..s.len() - 1], 1 << 20),
        Some('g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s.as_str(), 1),
    };
    let n: i64 = num
        .parse()
        .with_context(|| format!("--memory `{s}`: not a size like 512m"))?;
    Ok(n * mul)
}

pub fn request(
    image: String,
    mode: Option<InitMode>,
    name: Option<String>,
    command: Vec<String>,
    hooks: &[String],
    no_overlay: bool,
) -> Result<RunRequest> {
    let mut options = Options::default();
    for h in hooks {
        match h.split_once('=') {
            Some(("prestart", cmd)) => options.prestart_hooks.push(cmd.into()),
            Some(("poststop", cmd)) => options.poststop_hooks.push(cmd.into()),
            _ => anyhow::bail!("--hook `{h}`: expected prestart=CMD or poststop=CMD"),
        }
    }
    Ok(RunRequest {
        image,
        name,
        mode,
        command,
        options,
        overlay: !no_overlay,
    })
}

pub fn run(args: Args) -> Result<ExitCode> {
    let rt = args.rt.runtime();
    let image = crate::image_ref::resolve(&args.image, &args.registry, &rt.root)?;
    let mut req = request(
        image.reference.clone(),
        args.mode,
        args.name,
        args.command,
        &args.hook,
        args.no_overlay,
    )?;
    req.options.env = args.env;
    req.options.memory = args.memory.as_deref().map(parse_bytes).transpose()?;
    req.options.pids_limit = args.pids_limit;
    req.options.ports = args.publish;
    if args.detach {
        let state = rt.run_detached(&req)?;
        println!("{}", state.name);
        return Ok(ExitCode::SUCCESS);
    }
    let code = rt.run_attached(&req, args.rm)?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
