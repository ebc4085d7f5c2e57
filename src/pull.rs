//! `rehost pull REF -o IMAGE`

use crate::flags::RegistryArgs;
use crate::output;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use oci::layout::OutputFormat;
use registry::{self, PullOptions};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    rehost pull registry.example:5000/fleet/web01:v1 -o web01.oci\n  \
    rehost pull registry.example/fleet/web01@sha256:… -o web01.tar --format oci-archive")]
pub struct Args {
    /// What to pull: REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@DIGEST.
    reference: String,
    /// Where to write the image.
    #[arg(short, long, value_name = "IMAGE")]
    output: PathBuf,
    /// oci (an image layout directory), oci-archive (the same in one tar file) or
    /// docker-archive (the oci-archive plus Docker's manifest.json, for `docker load`
    /// before Docker 25; the layout is kept as the registry has it, so docker load
    /// gives the image's ID only: `docker tag` names it).
    #[arg(long, default_value = "oci", value_name = "FORMAT")]
    format: OutputFormat,
    /// The image's name in the layout (default: the reference's tag).
    #[arg(long, value_name = "TAG")]
    tag: Option<String>,
    /// Replace IMAGE if it exists (only once the new image is complete).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Print the summary as JSON on standard output.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, quiet: bool) -> Result<ExitCode> {
    let options = PullOptions {
        connect: args.registry.connect_options()?,
        output: args.output.clone(),
        format: args.format,
        force: args.force,
        tag: args.tag.clone(),
    };
    let bar = if quiet || args.json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "pulling [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        bar
    };
    let summary = registry::pull(&args.reference, &options, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .with_context(|| format!("pulling {}", args.reference))?;
    bar.finish_and_clear();

    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(ExitCode::SUCCESS);
    }
    if quiet {
        return Ok(ExitCode::SUCCESS);
    }
    for blob in &summary.blobs {
        println!("blob      {} ({})", blob.digest, output::bytes(blob.size));
    }
    println!(
        "image     {} ({:?}, tag {})",
        summary.output.display(),
        summary.format,
        summary.tag
    );
    println!("manifest  {}", summary.manifest_digest);
    println!(
        "bytes     {} in {:.1} s",
        output::bytes(summary.bytes_downloaded),
        summary.seconds
    );
    Ok(ExitCode::SUCCESS)
}
