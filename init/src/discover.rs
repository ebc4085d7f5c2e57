//! What an image enables by itself: the init system it was built for and the services that
//! init would start at boot. rehost-init uses this when its configuration lists no services;
//! `rehost convert` uses it to write that list.

use crate::config::{ServiceEntry, ServiceKind};
use crate::units::{openrc, systemd, sysv, upstart, FileSystem};

/// The init system an image boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitSystem {
    /// systemd (`/sbin/init` is systemd, or units are enabled under /etc/systemd/system).
    Systemd,
    /// SysV init with rc links.
    Sysv,
    /// OpenRC (`/etc/runlevels`).
    Openrc,
    /// upstart (`/etc/init/*.conf` and `/sbin/initctl`).
    Upstart,
    /// None recognised.
    Unknown,
}

/// Recognises the init system of the root.
pub fn init_system(fs: &dyn FileSystem) -> InitSystem {
    if let Ok(Some(t)) = fs.read_link("/sbin/init") {
        if t.contains("systemd") {
            return InitSystem::Systemd;
        }
        if t.contains("openrc") {
            return InitSystem::Openrc;
        }
    }
    if fs.exists("/etc/runlevels/default") || fs.exists("/sbin/openrc") {
        return InitSystem::Openrc;
    }
    if fs.exists("/sbin/initctl") && fs.exists("/etc/init") && !upstart::jobs(fs).is_empty() {
        return InitSystem::Upstart;
    }
    if fs.exists("/etc/inittab") || fs.exists("/etc/rc2.d") {
        return InitSystem::Sysv;
    }
    if fs.exists("/lib/systemd/systemd") || fs.exists("/usr/lib/systemd/systemd") {
        return InitSystem::Systemd;
    }
    InitSystem::Unknown
}

/// Services that only make sense on a machine booting its own hardware: consoles, disks,
/// clocks, kernel settings, the boot sequence itself. They are not started in a container.
pub fn is_machine_only(name: &str) -> bool {
    let stem = name
        .rsplit_once('.')
        .map(|(s, ext)| {
            if matches!(ext, "service" | "timer" | "sh" | "conf") {
                s
            } else {
                name
            }
        })
        .unwrap_or(name);
    let stem = stem.split('@').next().unwrap_or(stem);
    const NAMES: &[&str] = &[
        "getty",
        "serial-getty",
        "console-getty",
        "container-getty",
        "e2scrub_reap",
        "e2scrub_all",
        "fstrim",
        "hwclock",
        "procps",
        "kmod",
        "udev",
        "bootlogs",
        "rmnologin",
        "bootmisc",
        "brightness",
        "checkfs",
        "checkroot",
        "checkroot-bootclean",
        "halt",
        "reboot",
        "killprocs",
        "sendsigs",
        "single",
        "umountfs",
        "umountnfs",
        "umountroot",
        "urandom",
        "mountall",
        "mountall-bootclean",
        "mountnfs",
        "mountnfs-bootclean",
        "mountkernfs",
        "mountdevsubfs",
        "mount-configfs",
        "hostname",
        "networking",
        "ifupdown",
        "ifupdown-pre",
        "ifupdown-wait-online",
        "keyboard-setup",
        "console-setup",
        "lvm2",
        "lvm2-monitor",
        "mdadm",
        "smartd",
        "smartmontools",
        "irqbalance",
        "acpid",
        "cloud-init",
        "cloud-config",
        "cloud-final",
        "cloud-init-local",
        "apparmor",
        "plymouth",
        "grub-common",
        "dbus",
        "wpa_supplicant",
        "NetworkManager",
        "ModemManager",
    ];
    NAMES.contains(&stem) || stem.starts_with("systemd-") || stem.starts_with("plymouth")
}

/// The services the image's own init would start, without the machine-only ones,
/// sorted by kind and name.
pub fn enabled(fs: &dyn FileSystem) -> Vec<ServiceEntry> {
    enabled_all(fs)
        .into_iter()
        .filter(|e| !is_machine_only(&e.name))
        .collect()
}

/// Every service the image's own init would start, machine-only ones included, sorted by
/// kind and name.
pub fn enabled_all(fs: &dyn FileSystem) -> Vec<ServiceEntry> {
    let mut out: Vec<ServiceEntry> = Vec::new();
    let mut add = |name: String, kind: ServiceKind| {
        if !out.iter().any(|e| e.name == name) {
            out.push(ServiceEntry {
                name,
                kind,
                critical: false,
            });
        }
    };
    match init_system(fs) {
        InitSystem::Systemd => {
            // Every target the boot reaches pulls its wants in (getty.target, sysinit.target…);
            // the machine-only ones among them are filtered by `enabled`.
            for e in systemd::enabled_units(fs) {
                let usable = e.unit.ends_with(".service") || e.unit.ends_with(".timer");
                let template = e.unit.contains("@.");
                let boot = !matches!(
                    e.wanted_by.as_str(),
                    "shutdown.target"
                        | "halt.target"
                        | "poweroff.target"
                        | "reboot.target"
                        | "rescue.target"
                        | "emergency.target"
                );
                // Only what the administrator enabled (/etc); the wants under /lib are
                // systemd's own static plumbing.
                let kind = if e.required { "requires" } else { "wants" };
                let admin = fs.exists(&format!(
                    "/etc/systemd/system/{}.{kind}/{}",
                    e.wanted_by, e.unit
                ));
                if usable && !template && boot && admin {
                    add(e.unit, ServiceKind::Systemd);
                }
            }
        }
        InitSystem::Sysv => {
            let level = sysv::default_runlevel(fs);
            for l in sysv::rc_links(fs, &level).into_iter().filter(|l| l.start) {
                add(l.script, ServiceKind::Sysv);
            }
        }
        InitSystem::Openrc => {
            for level in ["sysinit", "boot", "default"] {
                for s in openrc::runlevel_services(fs, level) {
                    add(s, ServiceKind::Openrc);
                }
            }
        }
        InitSystem::Upstart => {
            for j in upstart::jobs(fs) {
                if let Ok(job) = upstart::load(fs, &j) {
                    if job.start_on.is_some() && !job.manual {
                        add(j, ServiceKind::Upstart);
                    }
                }
            }
        }
        InitSystem::Unknown => {}
    }
    out.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    out
}
