//! The rehost layer: one last, small layer holding everything rehost changes in an image
//! (the rehost-init binary, `/etc/rehost/` with the init configuration, the plan and the
//! hooks, masks and whiteouts for dropped services, identity scrubbing), and the image
//! settings that go with the init mode (Entrypoint, StopSignal, Env, labels, annotations).
//! Everything it decides comes from the plan.
//!
//! - [`services`]: the kept services and the masks of the others;
//! - [`identity`]: the host identity scrubbed;
//! - [`inits`]: the poststop hooks for every init the image has;
//! - [`hooks`]: the default hook scripts; [`binary`]: the rehost-init shipped;
//! - [`items`]: the layer's paths and how they are written.

pub mod binary;
pub mod hooks;
mod identity;
mod inits;
pub mod items;
mod sandbox;
mod services;
mod tools;

use crate::entry::Kind;
use crate::error::{Error, Result};
use crate::inventory::fs::Root;
use crate::plan::{HookWhen, InitMode, Plan};
use crate::source::{Source, SourceKind};
pub use items::write;
use items::{Content, Item, Items};
use oci::contract::{
    CAPTURED_LABEL, HOOKS_LABEL, INIT_PATH, MODE_LABEL, PLAN_DIGEST_LABEL, SERVICES_LABEL,
    SOURCE_HOST_LABEL, SOURCE_LABEL, SYSTEMD_MOUNTS_ANNOTATION,
};
use rehost_init::config::{InitConfig, Mode, ServiceEntry};
use rehost_init::model::InitSystem;
use rehost_init::units::FileSystem;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where the plan the image was built from is kept inside it.
pub const PLAN_PATH: &str = "/etc/rehost/plan.toml";

/// The hook phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPhase {
    /// Before anything starts.
    Prestart,
    /// After everything stopped.
    Poststop,
}

impl HookPhase {
    fn dir(self) -> &'static str {
        match self {
            HookPhase::Prestart => "prestart.d",
            HookPhase::Poststop => "poststop.d",
        }
    }
}

/// What the layer is built from besides the plan and the source: files of this machine
/// and facts of the capture, no decisions.
#[derive(Debug, Clone)]
pub struct RichInputs {
    /// The rehost-init binary to ship.
    pub init_binary: PathBuf,
    /// The user's own hook scripts.
    pub hooks: Vec<(HookPhase, PathBuf)>,
    /// Where the source came from, for the labels; empty: the source's /etc/hostname.
    pub source_host: String,
    /// The kind of source read (directory, archive, ...), for the labels.
    pub source_kind: SourceKind,
    /// The capture time (seconds since the epoch) for labels and file times.
    pub capture_time: i64,
}

/// The planned layer and image settings.
#[derive(Debug, Clone)]
pub struct RichLayer {
    pub items: Items,
    /// The init configuration written to /etc/rehost/init.toml.
    pub config: InitConfig,
    /// Services kept.
    pub kept: Vec<ServiceEntry>,
    /// Services dropped (masked / removed from runlevels).
    pub dropped: Vec<String>,
    /// Identity files scrubbed, for the report.
    pub scrubbed: Vec<String>,
    /// Where the init binary goes.
    pub init_path: String,
    /// Image settings.
    pub entrypoint: Vec<String>,
    /// StopSignal.
    pub stop_signal: String,
    /// The engine's health check: `rehost-init status`, when rehost-init supervises.
    pub healthcheck: Option<oci::image::Healthcheck>,
    /// Env entries to add.
    pub env: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Manifest annotations.
    pub annotations: BTreeMap<String, String>,
}

pub(crate) fn exists(source: &dyn Source, path: &str) -> bool {
    source
        .metadata(path.trim_start_matches('/').as_bytes())
        .is_ok()
}

fn is_dir(source: &dyn Source, path: &str) -> bool {
    source
        .metadata(path.trim_start_matches('/').as_bytes())
        .is_ok_and(|m| m.kind == Kind::Dir)
}

/// A regular file of the source, up to 1 MiB.
pub(crate) fn small_file(source: &dyn Source, path: &str) -> Option<Vec<u8>> {
    let m = source
        .metadata(path.trim_start_matches('/').as_bytes())
        .ok()?;
    if m.kind != Kind::File {
        return None;
    }
    source
        .read_to_vec(path.trim_start_matches('/').as_bytes(), 1 << 20)
        .ok()
}

/// rehost-init's own name of a mode, as its init.toml holds it (the init depends on no
/// other rehost crate, so it keeps its own enum).
fn init_toml_mode(mode: InitMode) -> Result<Mode> {
    Ok(match mode {
        InitMode::Rehost => Mode::Rehost,
        InitMode::Systemd => Mode::Systemd,
        InitMode::SbinInit => Mode::SbinInit,
        InitMode::DumbInit => Mode::DumbInit,
        InitMode::None => {
            return Err(Error::Profile {
                path: "init.mode".into(),
                reason: "an image without init (none) has no rehost layer".into(),
            })
        }
    })
}

/// Plans the rehost layer of `source` for `plan` (whose init mode is not `none`).
pub fn plan(source: &dyn Source, plan: &Plan, inputs: &RichInputs) -> Result<RichLayer> {
    let mode = init_toml_mode(plan.init.mode)?;
    let cmd = match &plan.init.cmd {
        Some(c) => rehost_init::units::shell::split(c, &Default::default()).ok_or_else(|| {
            Error::Profile {
                path: "init.cmd".into(),
                reason: format!("{c:?}: unterminated quote"),
            }
        })?,
        None => Vec::new(),
    };
    if mode == Mode::DumbInit && cmd.is_empty() {
        return Err(Error::Profile {
            path: "init.cmd".into(),
            reason: "dumb-init needs the one program the container runs (--cmd)".into(),
        });
    }
    let fs = Root::new(source);
    let init_system = InitSystem::detect(&fs).kind;
    let mut items = Items::new();

    // The binary: in /usr/sbin when that is a real directory of the image.
    let init_path = if is_dir(source, "/usr") && is_dir(source, "/usr/sbin") {
        INIT_PATH
    } else if is_dir(source, "/sbin") {
        "/sbin/rehost-init"
    } else {
        INIT_PATH
    }
    .to_string();
    binary::check(&inputs.init_binary)?;
    items.insert(
        init_path.clone(),
        Item::File(0o755, Content::HostFile(inputs.init_binary.clone())),
    );

    tools::install(&fs, &init_path, &mut items);

    let services = services::resolve(&fs, init_system, plan)?;
    for d in &services.dropped {
        services::drop_service(&fs, d, &mut items);
    }
    sandbox::relax(&fs, &services.kept, &mut items);
    let scrubbed = identity::scrub(source, &fs, &mut items);

    // Configuration, the plan, and the hooks.
    let config = InitConfig {
        mode,
        cmd,
        stop_timeout_sec: 90,
        machine_only: if mode == Mode::Rehost {
            machine_only(&fs)?
        } else {
            Vec::new()
        },
        services: if mode == Mode::Rehost {
            services.kept.clone()
        } else {
            Vec::new()
        },
    };
    items.insert("/etc/rehost".into(), Item::Dir(0o755));
    items.insert(
        "/etc/rehost/init.toml".into(),
        Item::bytes(0o644, config.to_toml()),
    );
    items.insert(PLAN_PATH.into(), Item::bytes(0o644, plan.to_toml()));
    add_hooks(plan, inputs, &mut items)?;
    let inits = inits::ImageInits::of(&fs, init_system);
    let hook_inits =
        inits::install_poststop(&fs, init_system, &inits, mode, &init_path, &mut items);

    // Mode-specific settings.
    let mut env = Vec::new();
    // Every label is also a manifest annotation (copied below).
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    let mut annotations = BTreeMap::new();
    let stop_signal = match mode {
        Mode::Rehost | Mode::DumbInit => "SIGTERM".to_string(),
        Mode::Systemd => {
            if !inits.systemd {
                return Err(Error::Profile {
                    path: "--init systemd".into(),
                    reason: "the image has no systemd".into(),
                });
            }
            env.push("container=rehost".to_string());
            // A label too, so `docker inspect` shows what the container needs.
            labels.insert(
                SYSTEMD_MOUNTS_ANNOTATION.into(),
                "tmpfs:/run,tmpfs:/run/lock,tmpfs:/tmp,cgroup2:/sys/fs/cgroup:rw".into(),
            );
            "SIGRTMIN+3".to_string()
        }
        Mode::SbinInit => {
            if !inits.sbin_init {
                return Err(Error::Profile {
                    path: "--init sbin-init".into(),
                    reason: "the image has no /sbin/init".into(),
                });
            }
            // sysvinit halts on SIGINT through the ctrlaltdel entry rewritten above.
            "SIGINT".to_string()
        }
    };
    let source_host = if inputs.source_host.is_empty() {
        fs.read("/etc/hostname")
            .ok()
            .map(|h| String::from_utf8_lossy(&h).trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| source.describe())
    } else {
        inputs.source_host.clone()
    };
    labels.insert(SOURCE_LABEL.into(), inputs.source_kind.as_str().into());
    labels.insert(SOURCE_HOST_LABEL.into(), source_host);
    labels.insert(
        CAPTURED_LABEL.into(),
        oci::image::rfc3339(inputs.capture_time),
    );
    labels.insert(MODE_LABEL.into(), plan.init.mode.as_str().into());
    // The image inits that run the poststop hooks (rehost-init always does).
    labels.insert(HOOKS_LABEL.into(), hook_inits.join(","));
    labels.insert(
        SERVICES_LABEL.into(),
        services
            .kept
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>()
            .join(","),
    );
    labels.insert(
        PLAN_DIGEST_LABEL.into(),
        oci::digest::of(plan.to_toml().as_bytes()),
    );
    for (k, v) in &labels {
        annotations.insert(k.clone(), v.clone());
    }
    Ok(RichLayer {
        items,
        config,
        dropped: services.dropped.iter().map(|d| d.name.clone()).collect(),
        kept: services.kept,
        scrubbed,
        entrypoint: vec![init_path.clone()],
        healthcheck: (mode == Mode::Rehost).then(|| health_check(&init_path)),
        init_path,
        stop_signal,
        env,
        labels,
        annotations,
    })
}

/// `rehost-init status` as the engine's health check: it exits 0 only when every kept
/// service that is not optional is up. A slow server gets two minutes to come up.
fn health_check(init_path: &str) -> oci::image::Healthcheck {
    const SECOND: u64 = 1_000_000_000;
    oci::image::Healthcheck {
        test: vec!["CMD".into(), init_path.into(), "status".into()],
        interval: 30 * SECOND,
        timeout: 10 * SECOND,
        start_period: 120 * SECOND,
        retries: 3,
    }
}

/// The profiles' machine-only service patterns for the source's family, for rehost-init
/// when it starts what the image enables.
fn machine_only(fs: &Root<'_>) -> Result<Vec<String>> {
    let family = crate::inventory::os::detect(fs).family;
    Ok(crate::profile::Profile::for_family(&family)?
        .into_iter()
        .flat_map(|p| p.machine_only)
        .collect())
}

/// The default hooks, the user's files and the plan's commands.
fn add_hooks(plan: &Plan, inputs: &RichInputs, items: &mut Items) -> Result<()> {
    for d in [
        "/etc/rehost/hooks",
        "/etc/rehost/hooks/prestart.d",
        "/etc/rehost/hooks/poststop.d",
    ] {
        items.insert(d.into(), Item::Dir(0o755));
    }
    items.insert(
        "/etc/rehost/hooks/prestart.d/10-machine-id".into(),
        Item::bytes(0o755, hooks::MACHINE_ID),
    );
    items.insert(
        "/etc/rehost/hooks/prestart.d/20-ssh-host-keys".into(),
        Item::bytes(0o755, hooks::SSH_HOST_KEYS),
    );
    for (phase, file) in &inputs.hooks {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::BadSource {
                path: file.clone(),
                reason: "not a file name".into(),
            })?;
        if !file.is_file() {
            return Err(Error::BadSource {
                path: file.clone(),
                reason: "hook file not found".into(),
            });
        }
        // User hooks run after the defaults unless their names sort earlier on purpose.
        let name = if name.starts_with(|c: char| c.is_ascii_digit()) {
            name
        } else {
            format!("50-{name}")
        };
        items.insert(
            format!("/etc/rehost/hooks/{}/{name}", phase.dir()),
            Item::File(0o755, Content::HostFile(file.clone())),
        );
    }
    for (n, h) in plan.hook.iter().enumerate() {
        let phase = match h.when {
            HookWhen::Prestart => HookPhase::Prestart,
            HookWhen::Poststop => HookPhase::Poststop,
        };
        let script = format!(
            "#!/bin/sh\n# from the plan: {}\n{}\n",
            h.reason.replace('\n', " "),
            h.run
        );
        items.insert(
            format!("/etc/rehost/hooks/{}/60-plan-{n:02}", phase.dir()),
            Item::bytes(0o755, script),
        );
    }
    Ok(())
}
