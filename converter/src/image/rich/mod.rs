//! The rehost layer: one last, small layer holding everything rehost changes in an image
//! (the rehost-init binary, `/etc/rehost/` with the init configuration and hooks, masks and
//! whiteouts for dropped services, identity scrubbing), and the image settings that go with
//! the init mode (Entrypoint, StopSignal, Env, labels, annotations).
//!
//! Identity scrubbing: the server's SSH host keys are whited out (a default prestart hook
//! generates new ones on first boot), `/etc/machine-id` is emptied (a default prestart hook
//! fills it), and fstab, network interface configuration and udev persistent-net rules are
//! neutralised; the originals are kept under `/etc/rehost/original/` for reference.

pub mod hooks;

use crate::entry::{Entry, Kind};
use crate::error::{Error, IoContext, Result};
use crate::image::compress::{self, Compression};
use crate::image::digest::HashingWriter;
use crate::image::layer::{BuiltLayer, LayerStats};
use crate::image::layout::{BlobWriter, LayoutWriter};
use crate::image::tar::TarWriter;
use crate::inventory::fs::Root;
use crate::source::Source;
use rehost_init::config::{InitConfig, Mode, ServiceEntry, ServiceKind};
use rehost_init::model::{self, InitKind, InitSystem};
use rehost_init::units::FileSystem;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

/// The label naming the image's own inits that run the poststop hooks (`systemd`,
/// `sysv`, `openrc`, comma-separated).
pub const HOOKS_LABEL: &str = "io.rehost.init.hooks";

/// The hook phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPhase {
    /// Before anything starts.
    Prestart,
    /// After everything stopped.
    Poststop,
}

/// What `rehost convert` was asked for.
#[derive(Debug, Clone)]
pub struct RichOptions {
    /// The init mode.
    pub mode: Mode,
    /// The main command (dumb-init: required; rehost: optional).
    pub cmd: Vec<String>,
    /// The services to keep; empty: the plan's (with `plan_digest`), else those the
    /// server's family profiles keep of what it enables (as `rehost inspect` plans).
    pub services: Vec<ServiceEntry>,
    /// Services to drop from the default set.
    pub drop: Vec<String>,
    /// Services marked critical.
    pub critical: Vec<String>,
    /// The user's own hooks.
    pub hooks: Vec<(HookPhase, PathBuf)>,
    /// Hooks given as script text (from the plan).
    pub inline_hooks: Vec<(HookPhase, String)>,
    /// The rehost-init binary to ship.
    pub init_binary: PathBuf,
    /// Ports to declare (`80`, `53/udp`).
    pub ports: Vec<String>,
    /// Volumes to declare.
    pub volumes: Vec<String>,
    /// Where the source came from, for the labels; empty: the source's /etc/hostname.
    pub source_host: String,
    /// The capture time (seconds since the epoch) for labels and file times; `None`: the
    /// source's own modification time.
    pub capture_time: Option<i64>,
    /// The digest of the plan the conversion followed, if any.
    pub plan_digest: Option<String>,
}

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
enum Content {
    Bytes(Vec<u8>),
    HostFile(PathBuf),
}

#[derive(Debug, Clone)]
enum Item {
    Dir(u32),
    File(u32, Content),
    Symlink(String),
    Whiteout,
}

/// The planned layer and image settings.
#[derive(Debug, Clone)]
pub struct RichLayer {
    items: BTreeMap<String, Item>,
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
    /// Env entries to add.
    pub env: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Manifest annotations.
    pub annotations: BTreeMap<String, String>,
    /// Ports.
    pub ports: Vec<String>,
    /// Volumes.
    pub volumes: Vec<String>,
}

fn is_dir(source: &dyn Source, path: &str) -> bool {
    source
        .metadata(path.trim_start_matches('/').as_bytes())
        .is_ok_and(|m| m.kind == Kind::Dir)
}

fn exists(source: &dyn Source, path: &str) -> bool {
    source
        .metadata(path.trim_start_matches('/').as_bytes())
        .is_ok()
}

fn small_file(source: &dyn Source, path: &str) -> Option<Vec<u8>> {
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

/// Plans the rehost layer for `source`.
pub fn plan(source: &dyn Source, opts: &RichOptions) -> Result<RichLayer> {
    let fs = Root::new(source);
    let init_system = InitSystem::detect(&fs).kind;
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    let mut scrubbed = Vec::new();

    // The binary: in /usr/sbin when that is a real directory of the image.
    let init_path = if is_dir(source, "/usr") && is_dir(source, "/usr/sbin") {
        "/usr/sbin/rehost-init"
    } else if is_dir(source, "/sbin") {
        "/sbin/rehost-init"
    } else {
        "/usr/sbin/rehost-init"
    }
    .to_string();
    if !opts.init_binary.is_file() {
        return Err(Error::BadSource { path: opts.init_binary.clone(), reason: "the rehost-init binary is missing (build it with scripts/build-init, or pass --init-binary / REHOST_INIT)".into() });
    }
    items.insert(
        init_path.clone(),
        Item::File(0o755, Content::HostFile(opts.init_binary.clone())),
    );

    // Services kept and dropped: the plan's or the flags' choice, else what `rehost
    // inspect` would plan for this server (its inventory, decided by its family's
    // profiles), so a convert without a plan keeps what one with the plan would.
    // Everything the image's own init starts (machine-only services included: what is
    // not kept is masked), under the name and kind rehost-init runs it by.
    let all = model::boot_entries(&fs, &[]);
    let mut drop = opts.drop.clone();
    let mut kept: Vec<ServiceEntry> = if opts.services.is_empty() && opts.plan_digest.is_none() {
        let (keep, dropped) = decided_services(source)?;
        drop.extend(dropped);
        keep
    } else {
        opts.services.clone()
    };
    // A name without a unit suffix is a script or job of the image's own init: the kind
    // the model gives it (a SysV script under upstart stays one), else the init's own.
    for e in &mut kept {
        if e.kind == ServiceKind::Systemd && !is_unit_name(&e.name) {
            if let Some(known) = all.iter().find(|a| a.name == e.name) {
                e.kind = known.kind;
                continue;
            }
            e.kind = match init_system {
                InitKind::Openrc => ServiceKind::Openrc,
                InitKind::Upstart => ServiceKind::Upstart,
                InitKind::Systemd => {
                    e.name.push_str(".service");
                    ServiceKind::Systemd
                }
                _ => ServiceKind::Sysv,
            };
        }
    }
    kept.retain(|e| !drop.iter().any(|d| same_service(d, &e.name)));
    for e in &mut kept {
        e.critical = opts.critical.iter().any(|c| same_service(c, &e.name));
    }
    for c in &opts.critical {
        if !kept.iter().any(|e| same_service(c, &e.name)) {
            return Err(Error::Profile {
                path: "--critical".into(),
                reason: format!(
                    "{c} is not among the services kept ({})",
                    kept.iter()
                        .map(|e| e.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    // Every kept service must be loadable now, not fail at boot.
    for e in &kept {
        rehost_init::service::load(&fs, e).map_err(|err| Error::Profile {
            path: format!("service {}", e.name),
            reason: err.to_string(),
        })?;
    }
    let dropped: Vec<ServiceEntry> = all
        .into_iter()
        .filter(|a| !kept.iter().any(|k| k.name == a.name && k.kind == a.kind))
        .collect();
    for d in &dropped {
        drop_service(&fs, d, &mut items);
    }

    // Identity scrubbing.
    if let Ok(names) = fs.read_dir("/etc/ssh") {
        let mut names = names;
        names.sort();
        for n in names.into_iter().filter(|n| n.starts_with("ssh_host_")) {
            items.insert(format!("/etc/ssh/.wh.{n}"), Item::Whiteout);
            scrubbed.push(format!(
                "/etc/ssh/{n} (not shipped; regenerated at first boot)"
            ));
        }
    }
    if exists(source, "/etc/machine-id") {
        items.insert(
            "/etc/machine-id".into(),
            Item::File(0o444, Content::Bytes(Vec::new())),
        );
        scrubbed.push("/etc/machine-id (emptied; regenerated at boot)".into());
    }
    if source
        .metadata(b"var/lib/dbus/machine-id")
        .is_ok_and(|m| m.kind == Kind::File)
    {
        items.insert(
            "/var/lib/dbus/machine-id".into(),
            Item::Symlink("/etc/machine-id".into()),
        );
        scrubbed.push("/var/lib/dbus/machine-id (now a link to /etc/machine-id)".into());
    }
    let mut keep_original =
        |path: &str, replacement: Option<&str>, items: &mut BTreeMap<String, Item>, why: &str| {
            if let Some(orig) = small_file(source, path) {
                items.insert(
                    format!("/etc/rehost/original{path}"),
                    Item::File(0o600, Content::Bytes(orig)),
                );
                match replacement {
                    Some(r) => items.insert(
                        path.to_string(),
                        Item::File(0o644, Content::Bytes(r.as_bytes().to_vec())),
                    ),
                    None => items.insert(whiteout_of(path), Item::Whiteout),
                };
                scrubbed.push(format!(
                    "{path} ({why}; original in /etc/rehost/original{path})"
                ));
            }
        };
    keep_original("/etc/fstab", Some("# rehost: the container runtime provides the mounts; the server's fstab is in\n# /etc/rehost/original/etc/fstab\n"), &mut items, "neutralised");
    keep_original("/etc/network/interfaces", Some("# rehost: the container runtime configures the network; the server's file is in\n# /etc/rehost/original/etc/network/interfaces\nauto lo\niface lo inet loopback\n"), &mut items, "neutralised");
    let listed = |dir: &str| -> Vec<String> {
        let mut v = fs.read_dir(dir).unwrap_or_default();
        v.sort();
        v.into_iter().map(|n| format!("{dir}/{n}")).collect()
    };
    for p in listed("/etc/network/interfaces.d") {
        keep_original(&p, None, &mut items, "removed");
    }
    for p in listed("/etc/netplan")
        .into_iter()
        .filter(|p| p.ends_with(".yaml") || p.ends_with(".yml"))
    {
        keep_original(&p, None, &mut items, "removed");
    }
    for p in listed("/etc/systemd/network")
        .into_iter()
        .filter(|p| p.ends_with(".network") || p.ends_with(".netdev") || p.ends_with(".link"))
    {
        keep_original(&p, None, &mut items, "removed");
    }
    for p in listed("/etc/sysconfig/network-scripts")
        .into_iter()
        .filter(|p| {
            p.rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with("ifcfg-") && n != "ifcfg-lo")
        })
    {
        keep_original(&p, None, &mut items, "removed");
    }
    for p in [
        "/etc/udev/rules.d/70-persistent-net.rules",
        "/etc/udev/rules.d/75-persistent-net-generator.rules",
    ] {
        keep_original(p, None, &mut items, "removed");
    }

    // Configuration and hooks.
    let config = InitConfig {
        mode: opts.mode,
        cmd: opts.cmd.clone(),
        stop_timeout_sec: 90,
        machine_only: if opts.mode == Mode::Rehost {
            machine_only(&fs)?
        } else {
            Vec::new()
        },
        services: if opts.mode == Mode::Rehost {
            kept.clone()
        } else {
            Vec::new()
        },
    };
    items.insert("/etc/rehost".into(), Item::Dir(0o755));
    items.insert(
        "/etc/rehost/init.toml".into(),
        Item::File(0o644, Content::Bytes(config.to_toml().into_bytes())),
    );
    for d in [
        "/etc/rehost/hooks",
        "/etc/rehost/hooks/prestart.d",
        "/etc/rehost/hooks/poststop.d",
    ] {
        items.insert(d.into(), Item::Dir(0o755));
    }
    items.insert(
        "/etc/rehost/hooks/prestart.d/10-machine-id".into(),
        Item::File(0o755, Content::Bytes(hooks::MACHINE_ID.into())),
    );
    items.insert(
        "/etc/rehost/hooks/prestart.d/20-ssh-host-keys".into(),
        Item::File(0o755, Content::Bytes(hooks::SSH_HOST_KEYS.into())),
    );
    for (phase, file) in &opts.hooks {
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
        let dir = match phase {
            HookPhase::Prestart => "prestart.d",
            HookPhase::Poststop => "poststop.d",
        };
        // User hooks run after the defaults unless their names sort earlier on purpose.
        let name = if name.starts_with(|c: char| c.is_ascii_digit()) {
            name
        } else {
            format!("50-{name}")
        };
        items.insert(
            format!("/etc/rehost/hooks/{dir}/{name}"),
            Item::File(0o755, Content::HostFile(file.clone())),
        );
    }

    for (n, (phase, script)) in opts.inline_hooks.iter().enumerate() {
        let dir = match phase {
            HookPhase::Prestart => "prestart.d",
            HookPhase::Poststop => "poststop.d",
        };
        items.insert(
            format!("/etc/rehost/hooks/{dir}/60-plan-{n:02}"),
            Item::File(0o755, Content::Bytes(script.clone().into_bytes())),
        );
    }

    // The image's own init runs the poststop hooks whichever mode boots it (`rehost run
    // --init` may pick another than this one): what it needs is installed for every init
    // the image has, and is inert while another is pid 1.
    let has_systemd = init_system == InitKind::Systemd
        || exists(source, "/lib/systemd/systemd")
        || exists(source, "/usr/lib/systemd/systemd");
    let has_sbin_init = exists(source, "/sbin/init");
    let mut hook_inits: Vec<&str> = Vec::new();
    if has_systemd {
        // systemd starts a getty on the container's console by itself: no one logs in there.
        items.insert(
            "/etc/systemd/system/console-getty.service".into(),
            Item::Symlink("/dev/null".into()),
        );
        let unit = hooks::SYSTEMD_UNIT.replace("@INIT@", &init_path);
        items.insert(
            "/etc/systemd/system/rehost-hooks.service".into(),
            Item::File(0o644, Content::Bytes(unit.into_bytes())),
        );
        items.insert(
            "/etc/systemd/system/sysinit.target.wants/rehost-hooks.service".into(),
            Item::Symlink("/etc/systemd/system/rehost-hooks.service".into()),
        );
        hook_inits.push("systemd");
    }
    let sysv_like = matches!(init_system, InitKind::Sysv | InitKind::Openrc);
    // The container's inittab: no gettys, and ctrlaltdel (SIGINT) halts.
    if has_sbin_init && (sysv_like || opts.mode == Mode::SbinInit) {
        if let Some(inittab) = small_file(source, "/etc/inittab") {
            items.insert(
                "/etc/inittab".into(),
                Item::File(
                    0o644,
                    Content::Bytes(
                        container_inittab(&String::from_utf8_lossy(&inittab)).into_bytes(),
                    ),
                ),
            );
        }
    }
    if has_sbin_init && sysv_like {
        if init_system == InitKind::Sysv {
            let script = hooks::SYSV_SCRIPT.replace("@INIT@", &init_path);
            items.insert(
                "/etc/init.d/rehost-hooks".into(),
                Item::File(0o755, Content::Bytes(script.into_bytes())),
            );
            for rl in ["0", "6"] {
                let names = fs.read_dir(&format!("/etc/rc{rl}.d")).unwrap_or_default();
                items.insert(
                    format!("/etc/rc{rl}.d/{}", sysv_poststop_link(&names)),
                    Item::Symlink("../init.d/rehost-hooks".into()),
                );
            }
            // startpar runs only what .depend.stop lists: place the hooks there too.
            if let Some(dep) = small_file(source, "/etc/init.d/.depend.stop") {
                items.insert(
                    "/etc/init.d/.depend.stop".into(),
                    Item::File(
                        0o644,
                        Content::Bytes(
                            depend_stop_with_hooks(&String::from_utf8_lossy(&dep)).into_bytes(),
                        ),
                    ),
                );
            }
            hook_inits.push("sysv");
        } else {
            let local = format!("#!/bin/sh\n# rehost: poststop hooks, run by OpenRC's local service at stop\nexec {init_path} hooks poststop\n");
            items.insert(
                "/etc/local.d/rehost.stop".into(),
                Item::File(0o755, Content::Bytes(local.into_bytes())),
            );
            hook_inits.push("openrc");
        }
    }

    // Mode-specific settings.
    let mut env = Vec::new();
    let mut annotations = BTreeMap::new();
    let stop_signal = match opts.mode {
        Mode::Rehost | Mode::DumbInit => "SIGTERM".to_string(),
        Mode::Systemd => {
            if !has_systemd {
                return Err(Error::Profile {
                    path: "--init systemd".into(),
                    reason: "the image has no systemd".into(),
                });
            }
            env.push("container=rehost".to_string());
            annotations.insert(
                "io.rehost.systemd.mounts".into(),
                "tmpfs:/run,tmpfs:/run/lock,tmpfs:/tmp,cgroup2:/sys/fs/cgroup:rw".into(),
            );
            "SIGRTMIN+3".to_string()
        }
        Mode::SbinInit => {
            if !has_sbin_init {
                return Err(Error::Profile {
                    path: "--init sbin-init".into(),
                    reason: "the image has no /sbin/init".into(),
                });
            }
            // sysvinit halts on SIGINT through the ctrlaltdel entry rewritten above.
            "SIGINT".to_string()
        }
    };
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    let source_host = if opts.source_host.is_empty() {
        fs.read("/etc/hostname")
            .ok()
            .map(|h| String::from_utf8_lossy(&h).trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| source.describe())
    } else {
        opts.source_host.clone()
    };
    labels.insert("io.rehost.source".into(), source_host);
    labels.insert(
        "io.rehost.captured".into(),
        crate::image::oci::rfc3339(opts.capture_time.unwrap_or(0)),
    );
    labels.insert("io.rehost.init.mode".into(), opts.mode.as_str().into());
    // The image inits that run the poststop hooks (rehost-init always does).
    labels.insert(HOOKS_LABEL.into(), hook_inits.join(","));
    labels.insert(
        "io.rehost.init.services".into(),
        kept.iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>()
            .join(","),
    );
    labels.insert(
        "io.rehost.plan.digest".into(),
        opts.plan_digest.clone().unwrap_or_else(|| "none".into()),
    );
    for (k, v) in &labels {
        annotations.insert(k.clone(), v.clone());
    }
    let dropped_names: Vec<String> = dropped.iter().map(|d| d.name.clone()).collect();
    Ok(RichLayer {
        items,
        config,
        kept,
        dropped: dropped_names,
        scrubbed,
        entrypoint: vec![init_path.clone()],
        init_path,
        stop_signal,
        env,
        labels,
        annotations,
        ports: opts.ports.clone(),
        volumes: opts.volumes.clone(),
    })
}

/// What a plan decides for the services: those to keep, as rehost-init runs them (their
/// kind is settled against the image's init later), and the names of those it drops or
/// masks.
pub fn plan_services(plan: &crate::plan::Plan) -> (Vec<ServiceEntry>, Vec<String>) {
    use crate::plan::Action;
    let keep = plan
        .services
        .iter()
        .filter(|d| d.action == Action::Keep)
        // rehost-init runs services, timers and scripts (`rc.local` is one); targets,
        // sockets and the other unit kinds are the image init's business.
        .filter(|d| {
            !is_unit_name(&d.name) || d.name.ends_with(".service") || d.name.ends_with(".timer")
        })
        .map(|d| ServiceEntry {
            name: d.name.clone(),
            kind: ServiceKind::Systemd,
            critical: false,
        })
        .collect();
    let drop = plan
        .services
        .iter()
        .filter(|d| d.action != Action::Keep)
        .map(|d| d.name.clone())
        .collect();
    (keep, drop)
}

/// Whether `name` is a systemd unit's (its suffix a unit kind); otherwise it names a
/// script or job of the image's own init (`ssh`, `rc.local`).
fn is_unit_name(name: &str) -> bool {
    model::systemd::is_unit_name(name)
}

/// The services `rehost inspect` would plan to keep and drop on this server.
fn decided_services(source: &dyn Source) -> Result<(Vec<ServiceEntry>, Vec<String>)> {
    let options = crate::inventory::InspectOptions { walk: false };
    let inventory = crate::inventory::inspect(source, &options);
    let profiles = crate::profile::Profile::for_family(&inventory.os.family)?;
    Ok(plan_services(&crate::plan::Plan::decide(
        &inventory, &profiles,
    )))
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

/// `ssh` and `ssh.service` name the same service.
fn same_service(a: &str, b: &str) -> bool {
    a == b || a.strip_suffix(".service") == Some(b) || b.strip_suffix(".service") == Some(a)
}

fn whiteout_of(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/.wh.{name}"),
        None => format!(".wh.{path}"),
    }
}

/// Masks a dropped service and removes it from its init's start lists (the links the
/// service model says start it).
fn drop_service(fs: &Root<'_>, d: &ServiceEntry, items: &mut BTreeMap<String, Item>) {
    let links = match d.kind {
        ServiceKind::Systemd => {
            items.insert(
                format!("/etc/systemd/system/{}", d.name),
                Item::Symlink("/dev/null".into()),
            );
            model::systemd::links_to(fs, &d.name)
        }
        ServiceKind::Sysv => model::sysv::links_to(fs, &d.name),
        ServiceKind::Openrc => model::openrc::links_to(fs, &d.name),
        ServiceKind::Upstart => {
            items.insert(
                format!("/etc/init/{}.override", d.name),
                Item::File(
                    0o644,
                    Content::Bytes(b"# rehost: dropped from the container\nmanual\n".to_vec()),
                ),
            );
            Vec::new()
        }
    };
    for link in links {
        items.insert(whiteout_of(&link), Item::Whiteout);
    }
}

/// inittab for a container: no gettys (there are no consoles to log in on), and Ctrl-Alt-Del
/// (SIGINT to init, the image's StopSignal) halts instead of rebooting.
/// The scripts of a SysV shutdown that end the system rather than a service: the
/// poststop hooks run after the services stopped and before these kill what is left and
/// unmount the disks (after them, a hook could not write anything).
const SYSV_TEARDOWN: [&str; 8] = [
    "sendsigs",
    "umountnfs.sh",
    "umountfs",
    "umountroot",
    "halt",
    "reboot",
    "hwclock.sh",
    "urandom",
];

/// The rc0.d/rc6.d link name for the hooks script: at `sendsigs`' sequence number, which
/// sorts it just before `sendsigs`; K01 when there is no sendsigs.
fn sysv_poststop_link(names: &[String]) -> String {
    let level = names
        .iter()
        .find_map(|n| n.strip_prefix('K')?.strip_suffix("sendsigs"))
        .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or("01");
    format!("K{level}rehost-hooks")
}

/// `.depend.stop` with `rehost-hooks` after every service and before the teardown.
fn depend_stop_with_hooks(text: &str) -> String {
    let mut services: Vec<String> = Vec::new();
    let mut deps: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("TARGETS = ") {
            services = t
                .split_whitespace()
                .filter(|n| !SYSV_TEARDOWN.contains(n) && *n != "rehost-hooks")
                .map(String::from)
                .collect();
        } else if let Some((name, d)) = line.split_once(':') {
            deps.insert(name.trim(), d.split_whitespace().collect());
        }
    }
    // A service stopped after a teardown script (rsyslog after sendsigs) stays after it:
    // the hooks cannot wait for it without a cycle.
    let mut late: Vec<&str> = SYSV_TEARDOWN.to_vec();
    loop {
        let before = late.len();
        for (name, d) in &deps {
            if !late.contains(name) && d.iter().any(|x| late.contains(x)) {
                late.push(name);
            }
        }
        if late.len() == before {
            break;
        }
    }
    services.retain(|s| !late.contains(&s.as_str()));
    let mut out = String::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("TARGETS = ") {
            out.push_str(&format!("TARGETS = {t} rehost-hooks\n"));
            continue;
        }
        match line.split_once(':') {
            Some((name, deps)) if SYSV_TEARDOWN.contains(&name.trim()) => {
                out.push_str(&format!("{name}:{deps} rehost-hooks\n"));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    // Teardown scripts with no line of their own wait for the hooks too.
    for t in SYSV_TEARDOWN {
        let listed = text.lines().any(|l| l.split(':').next() == Some(t));
        let target = text
            .lines()
            .any(|l| l.starts_with("TARGETS = ") && l.split_whitespace().any(|w| w == t));
        if target && !listed {
            out.push_str(&format!("{t}: rehost-hooks\n"));
        }
    }
    if !services.is_empty() {
        out.push_str(&format!("rehost-hooks: {}\n", services.join(" ")));
    }
    out
}

fn container_inittab(text: &str) -> String {
    let mut out =
        String::from("# rehost: gettys disabled and ctrlaltdel set to halt for the container\n");
    for line in text.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if !line.trim_start().starts_with('#') && fields.len() >= 4 {
            if fields[3].contains("getty") {
                out.push_str(&format!("#{line}\n"));
                continue;
            }
            if fields[2] == "ctrlaltdel" {
                out.push_str(&format!(
                    "{}:{}:ctrlaltdel:/sbin/shutdown -t1 -h now\n",
                    fields[0], fields[1]
                ));
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Writes the planned layer as a blob of `out`. Parent directories that exist in the
/// source get entries with the source's metadata, so the layer changes nothing else.
/// New files get `mtime`; the parents copied from the source get their own times, clamped
/// to `clamp` as the main layer did.
pub fn write(
    layer: &RichLayer,
    source: &dyn Source,
    out: &LayoutWriter,
    compression: Compression,
    threads: usize,
    mtime: i64,
    clamp: Option<i64>,
) -> Result<BuiltLayer> {
    // Every parent directory of every item, in order.
    let mut all: BTreeMap<Vec<u8>, (String, Option<&Item>)> = BTreeMap::new();
    for (path, item) in &layer.items {
        let rel = path.trim_start_matches('/');
        let mut parent = String::new();
        let parts: Vec<&str> = rel.split('/').collect();
        for p in &parts[..parts.len() - 1] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(p);
            all.entry(crate::entry::walk_order_key(parent.as_bytes()))
                .or_insert_with(|| (parent.clone(), None));
        }
        all.insert(
            crate::entry::walk_order_key(rel.as_bytes()),
            (rel.to_string(), Some(item)),
        );
    }
    let blob = out.blob()?;
    let blob_path = blob.path().to_path_buf();
    let (dir, path, writer) = blob.into_writer();
    let compressed = compress::writer(writer, compression, threads).at(&blob_path)?;
    let mut tar = TarWriter::new(HashingWriter::new(compressed));
    let mut stats = LayerStats::default();
    for (rel, item) in all.values() {
        let mut entry = Entry::new(rel.as_bytes().to_vec(), Kind::Dir);
        entry.mtime = mtime;
        match item {
            None => {
                match source.metadata(rel.as_bytes()) {
                    Ok(m) if m.kind == Kind::Dir => {
                        entry.mode = m.mode;
                        entry.uid = m.uid;
                        entry.gid = m.gid;
                        entry.mtime = match clamp {
                            Some(c) if m.mtime > c => c,
                            _ => m.mtime,
                        };
                        entry.xattrs = m.xattrs;
                    }
                    _ => entry.mode = 0o755,
                }
                tar.append(&entry, None).at(&blob_path)?;
                stats.dirs += 1;
            }
            Some(Item::Dir(mode)) => {
                entry.mode = *mode;
                tar.append(&entry, None).at(&blob_path)?;
                stats.dirs += 1;
            }
            Some(Item::Symlink(target)) => {
                entry.kind = Kind::Symlink;
                entry.mode = 0o777;
                entry.link = target.as_bytes().to_vec();
                tar.append(&entry, None).at(&blob_path)?;
                stats.symlinks += 1;
            }
            Some(Item::Whiteout) => {
                entry.kind = Kind::File;
                entry.mode = 0o644;
                tar.append(&entry, Some(&mut std::io::empty()))
                    .at(&blob_path)?;
                stats.files += 1;
            }
            Some(Item::File(mode, content)) => {
                entry.kind = Kind::File;
                entry.mode = *mode;
                match content {
                    Content::Bytes(b) => {
                        entry.size = b.len() as u64;
                        tar.append(&entry, Some(&mut &b[..])).at(&blob_path)?;
                    }
                    Content::HostFile(p) => {
                        let f = std::fs::File::open(p).at(p)?;
                        entry.size = f.metadata().at(p)?.len();
                        let mut r: Box<dyn Read> = Box::new(f);
                        let short = tar.append(&entry, Some(&mut r)).at(p)?;
                        if short {
                            return Err(Error::io(
                                p,
                                std::io::Error::other("changed while being read"),
                            ));
                        }
                    }
                }
                stats.files += 1;
                stats.content_bytes += entry.size;
            }
        }
    }
    let hashed = tar.finish().at(&blob_path)?;
    let (diff_id, tar_bytes, compressed) = hashed.finish();
    stats.tar_bytes = tar_bytes;
    let writer = compressed
        .finish_into()
        .map_err(|e| Error::io(&blob_path, e))?;
    let (digest, size) = BlobWriter::commit_parts(&dir, &path, writer)?;
    Ok(BuiltLayer {
        digest,
        diff_id,
        size,
        media_type: compression.layer_media_type().into(),
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysv_poststop_hooks_run_after_the_services_and_before_the_teardown() {
        let rc0: Vec<String> = ["K01nginx", "K02sendsigs", "K07halt"]
            .map(String::from)
            .to_vec();
        assert_eq!(sysv_poststop_link(&rc0), "K02rehost-hooks");
        assert!("K02rehost-hooks" < "K02sendsigs");
        assert_eq!(sysv_poststop_link(&[]), "K01rehost-hooks");
        let dep = "TARGETS = nginx sendsigs rsyslog halt\nsendsigs: nginx\nrsyslog: sendsigs\nhalt: rsyslog\n";
        let out = depend_stop_with_hooks(dep);
        assert!(
            out.contains("TARGETS = nginx sendsigs rsyslog halt rehost-hooks\n"),
            "{out}"
        );
        assert!(out.contains("sendsigs: nginx rehost-hooks\n"), "{out}");
        assert!(out.contains("halt: rsyslog rehost-hooks\n"), "{out}");
        assert!(out.contains("rehost-hooks: nginx\n"), "{out}");
    }

    #[test]
    fn inittab_for_containers() {
        let t = "id:2:initdefault:\nca:12345:ctrlaltdel:/sbin/shutdown -t1 -a -r now\n1:2345:respawn:/sbin/getty --noclear 38400 tty1\n# 2:23:respawn:/sbin/getty 38400 tty2\n";
        let out = container_inittab(t);
        assert!(out.contains("\n#1:2345:respawn:/sbin/getty"));
        assert!(out.contains("ca:12345:ctrlaltdel:/sbin/shutdown -t1 -h now"));
        assert!(out.contains("id:2:initdefault:"));
    }

    #[test]
    fn service_names_and_whiteouts() {
        assert!(
            same_service("ssh", "ssh.service")
                && same_service("ssh.service", "ssh")
                && !same_service("ssh", "sshd")
        );
        assert_eq!(
            whiteout_of("/etc/ssh/ssh_host_rsa_key"),
            "/etc/ssh/.wh.ssh_host_rsa_key"
        );
    }
}
