//! What the image's own inits need to run the poststop hooks (the systemd unit, the SysV
//! script and its links, the container inittab, the OpenRC file) and to log to the
//! container's output (journald's drop-in), installed for every init the image has:
//! `rehost run --init` may boot another init than the one converted for, and each is
//! inert while another is pid 1.

use super::hooks;
use super::items::{Item, Items};
use crate::inventory::fs::Root;
use rehost_init::config::Mode;
use rehost_init::model::InitKind as InitSystem;
use rehost_init::units::FileSystem;
use std::collections::BTreeMap;

/// journald's drop-in that forwards the journal to the console.
pub const JOURNALD_CONSOLE: &str = "/etc/systemd/journald.conf.d/90-rehost-console.conf";

/// Every message at `info` or more urgent, as a service's own output is logged.
const JOURNALD_DROP_IN: &str =
    "# rehost: the journal on the console, which is the container's output.
[Journal]
ForwardToConsole=yes
TTYPath=/dev/console
MaxLevelConsole=info
";

/// Which of the image's own inits exist.
pub struct ImageInits {
    pub systemd: bool,
    pub sbin_init: bool,
}

impl ImageInits {
    pub fn of(fs: &Root<'_>, init_system: InitSystem) -> ImageInits {
        ImageInits {
            systemd: init_system == InitSystem::Systemd
                || fs.exists("/lib/systemd/systemd")
                || fs.exists("/usr/lib/systemd/systemd"),
            sbin_init: fs.exists("/sbin/init"),
        }
    }
}

/// Installs the poststop mechanism of every init the image has; returns their names for
/// the `io.rehost.init.hooks` label.
pub fn install_poststop(
    fs: &Root<'_>,
    init_system: InitSystem,
    inits: &ImageInits,
    mode: Mode,
    init_path: &str,
    items: &mut Items,
) -> Vec<&'static str> {
    let mut hook_inits = Vec::new();
    if inits.systemd {
        // systemd starts a getty on the container's console by itself: no one logs in there.
        items.insert(
            "/etc/systemd/system/console-getty.service".into(),
            Item::Symlink("/dev/null".into()),
        );
        // The services' journal on the console too, which is the container's output
        // (`docker logs`, `kubectl logs`, `rehost logs`): rehost-init makes one that
        // reaches pid 1's standard output when the engine gives none.
        items.insert(
            JOURNALD_CONSOLE.into(),
            Item::bytes(0o644, JOURNALD_DROP_IN.to_string()),
        );
        let unit = hooks::SYSTEMD_UNIT.replace("@INIT@", init_path);
        items.insert(
            "/etc/systemd/system/rehost-hooks.service".into(),
            Item::bytes(0o644, unit),
        );
        items.insert(
            "/etc/systemd/system/sysinit.target.wants/rehost-hooks.service".into(),
            Item::Symlink("/etc/systemd/system/rehost-hooks.service".into()),
        );
        hook_inits.push("systemd");
    }
    let sysv_like = matches!(init_system, InitSystem::Sysv | InitSystem::Openrc);
    // The container's inittab: no gettys, and ctrlaltdel (SIGINT) halts.
    if inits.sbin_init && (sysv_like || mode == Mode::SbinInit) {
        if let Some(inittab) = super::small_file(fs.source(), "/etc/inittab") {
            items.insert(
                "/etc/inittab".into(),
                Item::bytes(0o644, container_inittab(&String::from_utf8_lossy(&inittab))),
            );
        }
    }
    if inits.sbin_init && sysv_like {
        if init_system == InitSystem::Sysv {
            let script = hooks::SYSV_SCRIPT.replace("@INIT@", init_path);
            items.insert(
                "/etc/init.d/rehost-hooks".into(),
                Item::bytes(0o755, script),
            );
            for rl in ["0", "6"] {
                let names = fs.read_dir(&format!("/etc/rc{rl}.d")).unwrap_or_default();
                items.insert(
                    format!("/etc/rc{rl}.d/{}", sysv_poststop_link(&names)),
                    Item::Symlink("../init.d/rehost-hooks".into()),
                );
            }
            // startpar runs only what .depend.stop lists: place the hooks there too.
            if let Some(dep) = super::small_file(fs.source(), "/etc/init.d/.depend.stop") {
                items.insert(
                    "/etc/init.d/.depend.stop".into(),
                    Item::bytes(
                        0o644,
                        depend_stop_with_hooks(&String::from_utf8_lossy(&dep)),
                    ),
                );
            }
            hook_inits.push("sysv");
        } else {
            let local = format!("#!/bin/sh\n# rehost: poststop hooks, run by OpenRC's local service at stop\nexec {init_path} hooks poststop\n");
            items.insert("/etc/local.d/rehost.stop".into(), Item::bytes(0o755, local));
            hook_inits.push("openrc");
        }
    }
    hook_inits
}

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

/// inittab for a container: no gettys (there are no consoles to log in on), and Ctrl-Alt-Del
/// (SIGINT to init, the image's StopSignal) halts instead of rebooting.
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
}
