//! `rehost convert SOURCE -o IMAGE`

use crate::output;
use anyhow::{Context, Result};
use converter::convert::{self, ConvertOptions};
use converter::image::rich::{HookPhase, RichOptions};
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
    /// a VM disk image (raw, qcow2, vmdk, vhd, ova), or a remote server
    /// (ssh://[USER@]HOST[:PORT][/PATH], nothing installed on it).
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
    /// A built-in profile's name or a profile file, instead of the default: `base` and
    /// the profiles of the source's distribution family (from its os-release).
    #[arg(long, value_name = "NAME|FILE")]
    profile: Vec<String>,
    /// Keep everything: apply no profile's excludes.
    #[arg(long)]
    no_default_excludes: bool,
    /// Apply the decisions of a plan written by `rehost inspect --plan` (its excludes
    /// replace the profiles').
    #[arg(long, value_name = "FILE", conflicts_with_all = ["profile", "no_default_excludes"])]
    plan: Option<PathBuf>,
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
    #[command(flatten)]
    init: Box<InitArgs>,
}

/// The rich-container settings: which init runs the image and what it starts.
#[derive(clap::Args)]
pub struct InitArgs {
    /// The init at pid 1: rehost (rehost-init supervises the services), systemd (the
    /// image's systemd), sbin-init (the image's /sbin/init), dumb-init (rehost-init reaps
    /// and runs --cmd), or none (a plain filesystem image without the rehost layer).
    /// Default: the plan's init mode, else rehost.
    #[arg(long = "init", value_name = "MODE")]
    mode: Option<String>,
    /// The main command, as one shell-quoted string (required for dumb-init; with rehost,
    /// it runs beside the services and the container ends when it exits).
    #[arg(long, value_name = "COMMAND")]
    cmd: Option<String>,
    /// Keep exactly these services (repeatable): a systemd unit (ssh.service, foo.timer), or
    /// KIND:NAME with KIND sysv, openrc or upstart. Default: what the image enables, minus
    /// machine-only services (gettys, disk and clock services).
    #[arg(long = "service", value_name = "NAME")]
    services: Vec<String>,
    /// Drop this service from the default set (repeatable).
    #[arg(long = "drop", value_name = "NAME")]
    drop: Vec<String>,
    /// Mark a kept service critical (repeatable): the container is unhealthy without it and
    /// stops when it exhausts its restart budget.
    #[arg(long = "critical", value_name = "NAME")]
    critical: Vec<String>,
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

fn rich_options(
    a: &InitArgs,
    plan: Option<(&converter::plan::Plan, String)>,
) -> Result<Option<RichOptions>> {
    use converter::plan::{HookWhen, InitMode};
    use rehost_init::config::{Mode, ServiceEntry, ServiceKind};
    let mode_name = match (&a.mode, &plan) {
        (Some(m), _) => m.clone(),
        (None, Some((p, _))) => match p.init.mode {
            InitMode::Systemd => "systemd".into(),
            InitMode::Sysv | InitMode::Openrc => "sbin-init".into(),
            InitMode::RehostInit => "rehost".into(),
        },
        (None, None) => "rehost".into(),
    };
    if mode_name == "none" {
        return Ok(None);
    }
    let mode = Mode::parse(&mode_name).with_context(|| {
        format!("--init {mode_name}: unknown mode (rehost, systemd, sbin-init, dumb-init, none)")
    })?;
    let cmd = match &a.cmd {
        Some(c) => rehost_init::units::shell::split(c, &Default::default())
            .with_context(|| format!("--cmd {c:?}: unterminated quote"))?,
        None => Vec::new(),
    };
    if mode == Mode::DumbInit && cmd.is_empty() {
        anyhow::bail!("--init dumb-init needs --cmd (the one program the container runs)");
    }
    let services = a
        .services
        .iter()
        .map(|s| {
            let (kind, name) = match s.split_once(':') {
                Some(("sysv", n)) => (ServiceKind::Sysv, n),
                Some(("openrc", n)) => (ServiceKind::Openrc, n),
                Some(("upstart", n)) => (ServiceKind::Upstart, n),
                Some(("systemd", n)) => (ServiceKind::Systemd, n),
                Some((k, _)) => anyhow::bail!(
                    "--service {s}: unknown kind {k} (systemd, sysv, openrc, upstart)"
                ),
                None => (ServiceKind::Systemd, s.as_str()),
            };
            Ok(ServiceEntry {
                name: name.to_string(),
                kind,
                critical: false,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // The plan's decisions, unless flags say otherwise.
    let mut services = services;
    let mut drop = a.drop.clone();
    let mut ports = a.expose.clone();
    let mut volumes = a.volumes.clone();
    let mut inline_hooks = Vec::new();
    let mut plan_digest = None;
    if let Some((p, digest)) = &plan {
        let (keep, dropped) = converter::image::rich::plan_services(p);
        if services.is_empty() {
            services = keep;
        }
        drop.extend(dropped);
        if ports.is_empty() {
            ports = p
                .port
                .iter()
                .map(|x| format!("{}/{}", x.port, x.protocol))
                .collect();
        }
        if volumes.is_empty() {
            volumes = p.volume.iter().map(|v| v.path.clone()).collect();
        }
        for h in &p.hook {
            let phase = match h.when {
                HookWhen::Prestart => HookPhase::Prestart,
                HookWhen::Poststop => HookPhase::Poststop,
            };
            inline_hooks.push((
                phase,
                format!(
                    "#!/bin/sh\n# from the plan: {}\n{}\n",
                    h.reason.replace('\n', " "),
                    h.run
                ),
            ));
        }
        plan_digest = Some(digest.clone());
    }
    let hooks = a
        .hooks
        .iter()
        .map(|h| match h.split_once('=') {
            Some(("prestart", f)) => Ok((HookPhase::Prestart, PathBuf::from(f))),
            Some(("poststop", f)) => Ok((HookPhase::Poststop, PathBuf::from(f))),
            _ => anyhow::bail!("--hook {h}: expected prestart=FILE or poststop=FILE"),
        })
        .collect::<Result<Vec<_>>>()?;
    let init_binary = match &a.init_binary {
        Some(p) => p.clone(),
        None => find_init_binary()?,
    };
    if !init_binary.is_file() {
        anyhow::bail!(
            "the rehost-init binary is not at {} (build it with scripts/build-init, pass --init-binary FILE or set REHOST_INIT, or use --init none)",
            init_binary.display()
        );
    }
    if !is_static_elf(&init_binary)? {
        anyhow::bail!(
            "{} is dynamically linked and would not run in every image; build the static one with scripts/build-init",
            init_binary.display()
        );
    }
    Ok(Some(RichOptions {
        mode,
        cmd,
        services,
        drop,
        critical: a.critical.clone(),
        hooks,
        init_binary,
        ports,
        volumes,
        inline_hooks,
        source_host: String::new(),
        capture_time: None,
        plan_digest,
    }))
}

pub fn run(args: Args, quiet: bool) -> Result<ExitCode> {
    let plan = match &args.plan {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            Some((
                converter::plan::Plan::read(path)?,
                converter::image::digest::of(&bytes),
            ))
        }
        None => None,
    };
    let profiles = if let Some((plan, _)) = &plan {
        vec![Profile::from_plan(plan)]
    } else if args.no_default_excludes {
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
        // Without a plan or a choice of profiles: base and the source's own family.
        family_profiles: args.plan.is_none()
            && args.profile.is_empty()
            && !args.no_default_excludes,
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
        rich: rich_options(&args.init, plan.as_ref().map(|(p, d)| (p, d.clone())))?,
    };
    let bar = output::spinner(quiet || args.json);
    bar.set_message(format!("reading {}", args.source.display()));
    crate::remote::show_transfer(&bar, &args.source);
    let summary = convert::convert(&options, &mut |p| {
        if p.entries % 256 == 0 {
            bar.set_message(format!("{} entries, {}", p.entries, output::bytes(p.bytes)));
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
    for layer in &summary.layers {
        println!(
            "layer     {} ({}, {} uncompressed)",
            layer.digest,
            output::bytes(layer.size),
            output::bytes(s.tar_bytes)
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
        if !r.dropped.is_empty() {
            println!("dropped   {}", r.dropped.join(", "));
        }
        for s in &r.scrubbed {
            println!("scrubbed  {s}");
        }
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

/// The rehost-init to ship when none is named: a static one next to this program, or the
/// one scripts/build-init leaves in `target/static/` of a source tree.
fn find_init_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the rehost executable")?;
    let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    let candidates = [dir.join("rehost-init"), dir.join("../static/rehost-init")];
    for c in &candidates {
        if c.is_file() && is_static_elf(c).unwrap_or(false) {
            return Ok(c.clone());
        }
    }
    anyhow::bail!(
        "no static rehost-init found (looked at {}); build it with scripts/build-init, pass --init-binary FILE or set REHOST_INIT, or use --init none",
        candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", ")
    )
}

/// Whether an ELF file has no program interpreter (is statically linked).
fn is_static_elf(path: &std::path::Path) -> Result<bool> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
        .with_context(|| format!("reading {}", path.display()))?;
    let bad = || {
        anyhow::anyhow!(
            "{}: not a 64-bit little-endian ELF executable",
            path.display()
        )
    };
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return Err(bad());
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(head[32..40].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > head.len() {
            return Err(bad());
        }
        // PT_INTERP: the file asks for a dynamic loader.
        if u32::from_le_bytes(head[o..o + 4].try_into().expect("4 bytes")) == 3 {
            return Ok(false);
        }
    }
    Ok(true)
}
