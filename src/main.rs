//! The `rehost` command: parses arguments, calls the libraries, prints.

mod convert;
mod deploy;
mod exec;
mod flags;
mod fleet;
mod forward_ports;
mod image_ref;
mod inspect;
mod logs;
mod output;
mod ps;
mod pull;
mod push;
mod remote;
mod rm;
mod run;
mod sbom;
mod stop;
mod verify;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "rehost",
    version,
    about = "Move legacy servers and VMs into rich OCI containers",
    long_about = "Move legacy servers and VMs into rich OCI containers.\n\n\
        A SOURCE is a live root (/), a directory, a root filesystem archive \
        (tar, tar.gz, tar.zst; - reads one from standard input), a VM disk image \
        or a remote server (ssh://[USER@]HOST[:PORT][/PATH]).\n\
        An IMAGE is an OCI image layout directory or an OCI archive; \
        a REF is an image in a registry (REGISTRY/REPOSITORY:TAG)."
)]
struct Cli {
    /// More detail on standard error (-vv for debugging).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors on standard error.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Snapshot a server's filesystem into an OCI image.
    Convert(convert::Args),
    /// Show what a server runs and what rehost will do with each part; write the plan.
    Inspect(inspect::Args),
    /// Send an image to an OCI registry (blobs it already has are not sent again).
    Push(push::Args),
    /// Print what runs an image on Docker, Podman, Compose or Kubernetes.
    Deploy(deploy::Args),
    /// Write an image's bill of materials (SPDX or CycloneDX JSON) from its packages.
    Sbom(sbom::Args),
    /// Fetch an image from an OCI registry into an OCI layout or archive.
    Pull(pull::Args),
    /// Run an image as a rich container on the bundled runtime.
    Run(run::Args),
    /// Run a command in a running container.
    Exec(exec::Args),
    /// Stop a container: its stop signal, then SIGKILL after --time.
    Stop(stop::Args),
    /// List containers.
    Ps(ps::Args),
    /// Print a container's output (pid 1's stdout and stderr).
    Logs(logs::Args),
    /// Remove containers.
    Rm(rm::Args),
    /// Boot an image, check its services, ports and shutdown, and report.
    Verify(verify::Args),
    /// Inspect, convert, verify and push many hosts from one file, N at a time; one report.
    Fleet(fleet::Args),
    /// Serve a container's published ports (started by `run -p`).
    #[command(name = "forward-ports", hide = true)]
    ForwardPorts(forward_ports::Args),
}

fn main() -> ExitCode {
    // The embedded engine: rehost re-executed by itself to run libcontainer in a process
    // that does nothing else (hidden, not a user command).
    let mut argv = std::env::args_os();
    if argv
        .nth(1)
        .is_some_and(|a| a == runtime::embedded::SUBCOMMAND)
    {
        let code = runtime::embedded::main(argv.collect());
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    // The helper's side of an ssh:// source, on the server (hidden, not a user command).
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == converter::source::remote::HELPER_SUBCOMMAND)
    {
        return converter::source::remote::helper::main(std::env::args_os().skip(2).collect());
    }
    let cli = Cli::parse();
    output::init_logging(cli.verbose, cli.quiet);
    let result = match cli.command {
        Command::Convert(args) => {
            oci::cleanup::install();
            convert::run(args, cli.quiet)
        }
        Command::Inspect(args) => {
            oci::cleanup::install();
            inspect::run(args, cli.quiet)
        }
        Command::Push(args) => push::run(args, cli.quiet),
        Command::Pull(args) => {
            oci::cleanup::install();
            pull::run(args, cli.quiet)
        }
        Command::Deploy(args) => deploy::run(args),
        Command::Run(args) => run::run(args),
        Command::Sbom(args) => sbom::run(args),
        Command::Exec(args) => exec::run(args),
        Command::Stop(args) => stop::run(args),
        Command::Ps(args) => ps::run(args),
        Command::Logs(args) => logs::run(args),
        Command::Rm(args) => rm::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Fleet(args) => fleet::run(args, cli.quiet),
        Command::ForwardPorts(args) => forward_ports::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            output::print_error(&err);
            ExitCode::FAILURE
        }
    }
}
