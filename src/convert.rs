//! `rehost convert SOURCE -o IMAGE`

use crate::output;
use anyhow::{Context, Result};
use converter::convert::{self, ConvertOptions};
use converter::image::{Compression, OutputFormat};
use converter::profile::Profile;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  rehost convert / -o web01.oci --tag web01:v1\n  \
    rehost convert /mnt/disk -o web01.tar --format oci-archive\n  \
    ssh web01 tar -C / -cf - --one-file-system . | rehost convert - -o web01.oci"
)]
pub struct Args {
    /// The server: a directory, the live root /, a root filesystem archive (- for stdin),
    /// or a VM disk image (raw, qcow2, vmdk, vhd, ova).
    source: PathBuf,
    /// Where to write the image.
    #[arg(short, long, value_name = "IMAGE")]
    output: PathBuf,
    /// oci (an image layout directory) or oci-archive (the same in one tar file).
    #[arg(long, default_value = "oci", value_name = "FORMAT")]
    format: OutputFormat,
    /// The image's name in the layout: NAME:TAG, or just a TAG.
    #[arg(long, default_value = "latest", value_name = "NAME:TAG")]
    tag: String,
    /// Replace IMAGE if it exists (only once the new image is complete).
    #[arg(long)]
    force: bool,
    /// Leave out paths matching GLOB too (`*` stays in a directory, `**` crosses them).
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// A built-in profile's name or a profile file, instead of the default `base`.
    #[arg(long, value_name = "NAME|FILE")]
    profile: Vec<String>,
    /// Keep everything: apply no profile's excludes.
    #[arg(long)]
    no_default_excludes: bool,
    /// For a live root: also take this mount point's filesystem (e.g. /var).
    #[arg(long, value_name = "PATH")]
    include_mount: Vec<PathBuf>,
    /// Layer compression: gzip, zstd or none.
    #[arg(long, default_value = "gzip", value_name = "KIND")]
    compression: Compression,
    /// Compression threads (default: all cores).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Clamp newer modification times to this Unix time and record it as the image's
    /// creation time, for reproducible images.
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    source_date_epoch: Option<String>,
    /// Print the summary as JSON on standard output.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, quiet: bool) -> Result<ExitCode> {
    let profiles = if args.no_default_excludes {
        Vec::new()
    } else if args.profile.is_empty() {
        vec![Profile::builtin("base")?]
    } else {
        args.profile
            .iter()
            .map(|p| {
                if std::path::Path::new(p).is_file() {
                    convert::load_profile(p.as_ref())
                } else {
                    Profile::builtin(p)
                }
            })
            .collect::<Result<_, _>>()?
    };
    let options = ConvertOptions {
        source: args.source.clone(),
        output: args.output.clone(),
        format: args.format,
        tag: args.tag.clone(),
        force: args.force,
        profiles,
        excludes: args.exclude.clone(),
        include_mounts: args.include_mount.clone(),
        compression: args.compression,
        threads: args.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }),
        source_date_epoch: args
            .source_date_epoch
            .as_deref()
            .map(convert::parse_epoch)
            .transpose()?,
    };
    let bar = output::spinner(quiet || args.json);
    bar.set_message(format!("reading {}", args.source.display()));
    let summary = convert::convert(&options, &mut |p| {
        if p.entries % 256 == 0 {
            bar.set_message(format!("{} entries, {}", p.entries, output::bytes(p.bytes)));
        }
    })
    .with_context(|| format!("converting {}", args.source.display()))?;
    bar.finish_and_clear();

    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(ExitCode::SUCCESS);
    }
    if quiet {
        return Ok(ExitCode::SUCCESS);
    }
    let s = &summary.stats;
    println!(
        "image     {} ({:?}, tag {})",
        summary.output.display(),
        summary.format,
        summary.tag
    );
    println!("source    {} ({})", summary.source, summary.architecture);
    println!(
        "entries   {} files, {} dirs, {} symlinks, {} hardlinks, {} devices, {} fifos",
        s.files, s.dirs, s.symlinks, s.hardlinks, s.devices, s.fifos
    );
    println!(
        "content   {} ({} sparse files)",
        output::bytes(s.content_bytes),
        s.sparse_files
    );
    for layer in &summary.layers {
        println!(
            "layer     {} ({}, {} uncompressed)",
            layer.digest,
            output::bytes(layer.size),
            output::bytes(s.tar_bytes)
        );
    }
    println!("manifest  {}", summary.manifest_digest);
    for (reason, e) in &s.excluded {
        println!(
            "excluded  {} entries, {}: {reason}",
            e.entries,
            output::bytes(e.bytes)
        );
    }
    if !s.skipped.is_empty() {
        println!("skipped   {} entries (--json lists them):", s.skipped.len());
        for item in s.skipped.iter().take(5) {
            println!("          {}: {}", item.path, item.reason);
        }
    }
    println!("time      {:.1} s", summary.seconds);
    Ok(ExitCode::SUCCESS)
}
