//! `docker run` and `podman run` command lines.

use super::{volume_name, CgroupSetting, Deployment, Target};
use oci::contract::InitMode;

/// The arguments of `docker run` (or `podman run`) for `d`, ending with the image.
pub(super) fn run_args(d: &Deployment, target: Target) -> Vec<String> {
    let engine = if target == Target::Podman {
        "podman"
    } else {
        "docker"
    };
    let mut a: Vec<String> = vec![engine.into(), "run".into(), "-d".into()];
    let mut flag = |k: &str, v: String| {
        a.push(k.into());
        a.push(v);
    };
    flag("--name", d.name.clone());
    if let Some(h) = &d.hostname {
        flag("--hostname", h.clone());
    }
    if target == Target::Podman && d.mode == InitMode::Systemd {
        // Podman sets up what systemd needs itself (tmpfs, a writable cgroup of the
        // container's own, the stop signal); `always`, since pid 1 is rehost-init.
        flag("--systemd", "always".into());
    } else {
        for t in &d.tmpfs {
            flag("--tmpfs", t.clone());
        }
        match d.cgroup {
            CgroupSetting::Default => {}
            CgroupSetting::HostReadOnly => flag("-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro".into()),
            CgroupSetting::PrivateNamespace => flag("--cgroupns", "private".into()),
        }
        for c in &d.cap_add {
            flag("--cap-add", c.clone());
        }
    }
    flag("--stop-timeout", d.stop_timeout.to_string());
    // A server comes back with its host, as it did before.
    flag("--restart", "unless-stopped".into());
    if d.mode == InitMode::Systemd {
        // The image has no health check of its own in this mode (rehost mode's runs
        // `rehost-init status`).
        flag("--health-cmd", "systemctl is-system-running".into());
        flag("--health-start-period", "120s".into());
    }
    for p in &d.ports {
        let suffix = if p.protocol == "udp" { "/udp" } else { "" };
        flag("-p", format!("{0}:{0}{suffix}", p.port));
    }
    for v in &d.volumes {
        flag("-v", format!("{}:{v}", volume_name(&d.name, v)));
    }
    a.push(d.image.clone());
    a
}

/// `argv` as one line a POSIX shell reads back as the same words.
pub fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./-_".contains(&b));
            if plain {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
