//! `rehost convert SOURCE -o IMAGE`

use crate::output;
use anyhow::Result;
use converter::convert::{self, ConvertOptions, LayerRole, Layering};
use converter::image::cut::DEFAULT_MAX_LAYERS;
use converter::image::rich::HookPhase;
use converter::image::Compression;
use converter::plan::amend::Amendments;
use converter::plan::Plan;
use converter::source::remote::Filter;
use converter::source::{self, OpenOptions};
use oci::layout::OutputFormat;
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
    /// a VM disk image (raw, qcow2, vmdk, vhd, ova), or a remote server
    /// (ssh://[USER@]HOST[:PORT][/PATH], nothing installed on it).
    source: PathBuf,
    /// Where to write the image.
    #[arg(short, long, value_name = "IMAGE")]
    output: PathBuf,
    /// oci (an image layout directory), oci-archive (the same in one tar file) or
    /// docker-archive (the oci-archive plus Docker's manifest.json, for `docker load`
    /// before Docker 25; needs --tag NAME:TAG).
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
    /// A built-in profile's name or a profile file, instead of the default: `base` and
    /// the profiles of the source's distribution family (from its os-release).
    #[arg(long, value_name = "NAME|FILE")]
    profile: Vec<String>,
    /// Keep everything: apply no profile's excludes.
    #[arg(long)]
    no_default_excludes: bool,
    /// Follow a plan written by `rehost inspect --plan` (default: the plan inspect would
    /// write, from the profiles); the other flags amend it.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["profile"])]
    plan: Option<PathBuf>,
    /// For a live root: also take this mount point's filesystem (e.g. /var).
    #[arg(long, value_name = "PATH")]
    include_mount: Vec<PathBuf>,
    /// For a disk image: let its backing files (qcow2) and extents (VMDK) lie in DIR too
    /// (repeatable). By default they must lie in the image's own directory.
    #[arg(long, value_name = "DIR")]
    allow_backing: Vec<PathBuf>,
    /// Layer compression: gzip, zstd or none.
    #[arg(long, default_value = "gzip", value_name = "KIND")]
    compression: Compression,
    /// How the server's files are cut into layers: packages (the default when the source
    /// has a dpkg, rpm or apk database: package files checked against the database go into
    /// layers by package, which servers with the same package versions share; the rest
    /// into the server's own layer on top) or one (the whole tree in one layer).
    #[arg(long, value_name = "packages|one")]
    layers: Option<Layering>,
    /// The most layers the image may have, the rehost layer included.
    #[arg(long, default_value_t = DEFAULT_MAX_LAYERS, value_name = "N")]
    max_layers: usize,
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
    #[command(flatten)]
    init: Box<InitArgs>,
}

/// The rich-container settings: which init runs the image and what it starts.
#[derive(clap::Args)]
pub struct InitArgs {
    /// The init at pid 1: rehost (rehost-init supervises the services), systemd (the
    /// image's systemd), sbin-init (the image's /sbin/init), dumb-init (rehost-init reaps
    /// and runs --cmd), or none (a plain filesystem image without the rehost layer).
    /// Default: the plan's (systemd for systemd servers, rehost for the others).
    #[arg(long = "init", value_name = "MODE")]
    mode: Option<String>,
    /// The main command, as one shell-quoted string (required for dumb-init; with rehost,
    /// it runs beside the services and the container ends when it exits).
    #[arg(long, value_name = "COMMAND")]
    cmd: Option<String>,
    /// Keep exactly these services (repeatable): a systemd unit (ssh.service, foo.timer), or
    /// KIND:NAME with KIND sysv, openrc or upstart. Default: the plan's (what the server
    /// enables, minus machine-only services: gettys, disk and clock services).
    #[arg(long = "service", value_name = "NAME")]
    services: Vec<String>,
    /// Drop this service from the default set (repeatable).
    #[arg(long = "drop", value_name = "NAME")]
    drop: Vec<String>,
    /// Mark a kept service critical (repeatable): the container is unhealthy without it and
    /// stops when it exhausts its restart budget.
    #[arg(long = "critical", value_name = "NAME")]
    critical: Vec<String>,
    /// Mark a kept service optional (repeatable): when it fails, `rehost-init status`
    /// reports it, but the container is not degraded for it.
    #[arg(long = "optional", value_name = "NAME")]
    optional: Vec<String>,
    /// Add a hook script: prestart=FILE or poststop=FILE (repeatable).
    #[arg(long = "hook", value_name = "PHASE=FILE")]
    hooks: Vec<String>,
    /// Declare a port the image listens on (80, 53/udp; repeatable).
    #[arg(long = "expose", value_name = "PORT")]
    expose: Vec<String>,
    /// Declare a volume (a path whose data lives outside the container; repeatable).
    #[arg(long = "volume", value_name = "PATH")]
    volumes: Vec<String>,
    /// The static rehost-init binary to ship (default: `rehost-init` next to this program).
    #[arg(long, env = "REHOST_INIT", value_name = "FILE")]
    init_binary: Option<PathBuf>,
}

impl InitArgs {
    /// The flags that change the plan's decisions.
    fn amendments(&self, a: &Args) -> Amendments {
        Amendments {
            mode: self.mode.clone(),
            cmd: self.cmd.clone(),
            keep_only: self.services.clone(),
            drop: self.drop.clone(),
            critical: self.critical.clone(),
            optional: self.optional.clone(),
            ports: self.expose.clone(),
            volumes: self.volumes.clone(),
            excludes: a.exclude.clone(),
            no_default_excludes: a.no_default_excludes,
        }
    }

    fn hooks(&self) -> Result<Vec<(HookPhase, PathBuf)>> {
        self.hooks
            .iter()
            .map(|h| match h.split_once('=') {
                Some(("prestart", f)) => Ok((HookPhase::Prestart, PathBuf::from(f))),
                Some(("poststop", f)) => Ok((HookPhase::Poststop, PathBuf::from(f))),
                _ => anyhow::bail!("--hook {h}: expected prestart=FILE or poststop=FILE"),
            })
            .collect()
    }
}

pub fn run(args: Args, quiet: bool) -> Result<ExitCode> {
    let given = args.plan.as_deref().map(Plan::read).transpose()?;
    // A remote server leaves out what the plan will, before anything crosses the network.
    let filter = match &given {
        Some(plan) => Filter::of_plan(plan, &args.exclude),
        None => Filter::of_profiles(&args.profile, args.no_default_excludes, &args.exclude)?,
    };
    let amendments = args.init.amendments(&args);
    let source = source::open(
        &args.source,
        &OpenOptions {
            include_mounts: args.include_mount.clone(),
            allow_backing: args.allow_backing.clone(),
            filter,
            prepare: Some(convert::PrepareOptions {
                plan: given.clone(),
                layers: args.layers,
                max_layers: args.max_layers,
                amendments: amendments.clone(),
            }),
            ..OpenOptions::default()
        },
    )?;
    let options = ConvertOptions {
        source: args.source.clone(),
        output: args.output.clone(),
        format: args.format,
        tag: args.tag.clone(),
        force: args.force,
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
        init_binary: args.init.init_binary.clone(),
        hooks: args.init.hooks()?,
        layers: args.layers,
        max_layers: args.max_layers,
    };
    // The plan: the operator's, or the one `inspect` would write; the flags amend it.
    let mut prepared = convert::prepare(source.as_ref(), given, &args.profile, &options)?;
    prepared.plan.amend(&amendments)?;
    let bar = output::spinner(quiet || args.json);
    bar.set_message(format!("reading {}", args.source.display()));
    // A server's tree is built as it arrives: its line shows the transfer and the build.
    let remote = crate::remote::Shown::start(&bar, &args.source);
    let summary = convert::convert(source.as_ref(), prepared, &options, &mut |p| {
        if p.entries % 256 == 0 {
            match &remote {
                Some(shown) => shown.built(p.bytes),
                None => {
                    bar.set_message(format!("{} entries, {}", p.entries, output::bytes(p.bytes)))
                }
            }
        }
    })?;
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
    if let Some(o) = &summary.owned_in_server {
        let packages = summary
            .layers
            .iter()
            .filter(|l| l.role == LayerRole::Packages);
        println!(
            "layers    {} by package ({} files, {}), the server's own, {} in all",
            packages.clone().count(),
            packages.clone().map(|l| l.files).sum::<u64>(),
            output::bytes(packages.map(|l| l.size).sum()),
            summary.layers.len()
        );
        println!(
            "          package files in the server's layer: {} changed, {} without a digest \
             (symlinks), {} not owned by root, {} other (split hardlinks, sparse, unreadable)",
            o.changed, o.unchecked, o.not_root, o.other
        );
    }
    for layer in &summary.layers {
        let what = match (&layer.group, layer.role) {
            (Some(group), _) => format!(
                "{group}: {}",
                match layer.packages.as_slice() {
                    [one] => one.clone(),
                    many => format!("{} packages", many.len()),
                }
            ),
            (None, LayerRole::Server) if summary.layering == Layering::Packages => {
                "the server's own".into()
            }
            (None, LayerRole::Rehost) => "rehost".into(),
            _ => "the server".into(),
        };
        println!(
            "layer     {} ({}, {} uncompressed, {what})",
            layer.digest,
            output::bytes(layer.size),
            output::bytes(layer.uncompressed_size)
        );
    }
    if let Some(r) = &summary.rich {
        println!("init      {} ({})", r.mode, r.init);
        println!(
            "services  {}",
            if r.kept.is_empty() {
                "-".to_string()
            } else {
                r.kept.join(", ")
            }
        );
        if !r.critical.is_empty() {
            println!("critical  {}", r.critical.join(", "));
        }
        if !r.optional.is_empty() {
            println!("optional  {}", r.optional.join(", "));
        }
        if !r.dropped.is_empty() {
            println!("dropped   {}", r.dropped.join(", "));
        }
        for s in &r.scrubbed {
            println!("scrubbed  {s}");
        }
    }
    println!("manifest  {}", summary.manifest_digest);
    if let Some(r) = &summary.received {
        println!(
            "received  {} in {} chunks, {} in {} chunks reused from an interrupted run",
            output::bytes(r.bytes),
            r.chunks,
            output::bytes(r.reused_bytes),
            r.reused_chunks
        );
    }
    for (reason, e) in &s.excluded {
        println!(
            "excluded  {} entries, {}: {reason}",
            e.entries,
            output::bytes(e.bytes)
        );
    }
    if !s.skipped.is_empty() {
        println!(
            "skipped   {} entries (--json lists the first {}):",
            s.skipped.total(),
            s.skipped.listed().len()
        );
        for item in s.skipped.listed().iter().take(5) {
            println!("          {}: {}", item.path, item.reason);
        }
    }
    println!("time      {:.1} s", summary.seconds);
    Ok(ExitCode::SUCCESS)
}
