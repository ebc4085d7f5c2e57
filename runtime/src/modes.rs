//! The rich modes as data: what runs as pid 1, which signal stops it, and what the
//! container needs around it (mounts, capabilities, environment). The spec generator reads
//! only a [`ModeProfile`], so a new mode is one more arm here.

use oci_spec::runtime::Capability;
use serde::{Deserialize, Serialize};

/// Where `rehost convert` installs rehost-init inside an image (issue 4).
pub const REHOST_INIT: &str = "/usr/sbin/rehost-init";

/// How a container is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitMode {
    /// The image's own systemd (`/sbin/init`) as pid 1.
    Systemd,
    /// rehost-init supervising the kept services from their own definitions.
    Rehost,
    /// The image's SysV `/sbin/init` as pid 1, hooks run by rehost-init around it.
    SbinInit,
    /// rehost-init as a minimal reaper around the image's command.
    DumbInit,
    /// The image's entrypoint and command as pid 1, like any OCI runtime.
    None,
}

impl std::str::FromStr for InitMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "systemd" => InitMode::Systemd,
            "rehost" => InitMode::Rehost,
            "sbin-init" => InitMode::SbinInit,
            "dumb-init" => InitMode::DumbInit,
            "none" => InitMode::None,
            _ => {
                return Err(format!(
                    "unknown init mode `{s}` (systemd, rehost, sbin-init, dumb-init, none)"
                ))
            }
        })
    }
}

impl std::fmt::Display for InitMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InitMode::Systemd => "systemd",
            InitMode::Rehost => "rehost",
            InitMode::SbinInit => "sbin-init",
            InitMode::DumbInit => "dumb-init",
            InitMode::None => "none",
        })
    }
}

/// Everything a mode decides about the container.
#[derive(Debug, Clone)]
pub struct ModeProfile {
    pub mode: InitMode,
    /// pid 1's command line.
    pub pid1: Vec<String>,
    /// The signal that asks pid 1 to shut down cleanly, as a number.
    pub stop_signal: i32,
    /// tmpfs on /run and /run/lock (an init expects a fresh /run).
    pub run_tmpfs: bool,
    /// /sys/fs/cgroup writable inside the cgroup namespace (systemd manages it).
    pub cgroup_writable: bool,
    pub capabilities: Vec<Capability>,
    /// Added to the image's environment.
    pub env: Vec<String>,
}

/// The capabilities podman gives a container by default: the least with which systemd,
/// journald, sshd and nginx all work (with only 3, journald and nginx fail).
pub const RICH_CAPABILITIES: [Capability; 11] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::NetBindService,
    Capability::Setfcap,
    Capability::Setgid,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysChroot,
];

/// `SIGRTMIN+3` as the kernel numbers it from the C library's SIGRTMIN: what systemd
/// takes as "halt".
pub fn sigrtmin_plus(n: i32) -> i32 {
    libc::SIGRTMIN() + n
}

impl InitMode {
    /// The profile of this mode for an image whose own command is `image_cmd`
    /// (entrypoint + cmd) and stop signal `image_stop`; `user_cmd` replaces the image's
    /// command where the mode runs one.
    pub fn profile(
        self,
        image_cmd: &[String],
        image_stop: Option<i32>,
        user_cmd: &[String],
    ) -> ModeProfile {
        let cmd = if user_cmd.is_empty() {
            image_cmd.to_vec()
        } else {
            user_cmd.to_vec()
        };
        let base = ModeProfile {
            mode: self,
            pid1: vec![REHOST_INIT.to_string()],
            stop_signal: libc::SIGTERM,
            run_tmpfs: true,
            cgroup_writable: false,
            capabilities: RICH_CAPABILITIES.to_vec(),
            env: vec!["container=rehost".into()],
        };
        match self {
            InitMode::Systemd => ModeProfile {
                pid1: vec!["/sbin/init".into()],
                stop_signal: sigrtmin_plus(3),
                cgroup_writable: true,
                ..base
            },
            InitMode::Rehost => base,
            InitMode::SbinInit => ModeProfile {
                pid1: vec!["/sbin/init".into()],
                // SysV init ignores SIGTERM; SIGPWR runs its power-failure shutdown.
                stop_signal: libc::SIGPWR,
                ..base
            },
            InitMode::DumbInit => ModeProfile {
                pid1: [vec![REHOST_INIT.to_string(), "--".into()], cmd].concat(),
                run_tmpfs: false,
                ..base
            },
            InitMode::None => ModeProfile {
                pid1: cmd,
                stop_signal: image_stop.unwrap_or(libc::SIGTERM),
                run_tmpfs: false,
                env: Vec::new(),
                ..base
            },
        }
    }
}

/// A signal named as in an image config (`SIGTERM`, `TERM`, `15`, `SIGRTMIN+3`).
pub fn parse_signal(name: &str) -> Option<i32> {
    let n = name.trim().trim_start_matches("SIG");
    if let Ok(num) = n.parse() {
        return Some(num);
    }
    if let Some(off) = n.strip_prefix("RTMIN+") {
        return off.parse().ok().map(sigrtmin_plus);
    }
    Some(match n {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "PWR" => libc::SIGPWR,
        "WINCH" => libc::SIGWINCH,
        "RTMIN" => libc::SIGRTMIN(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_is_stopped_with_sigrtmin_plus_3() {
        let p = InitMode::Systemd.profile(&[], None, &[]);
        assert_eq!(p.stop_signal, libc::SIGRTMIN() + 3);
        assert_eq!(p.pid1, ["/sbin/init"]);
        assert!(p.cgroup_writable && p.run_tmpfs);
        assert_eq!(p.capabilities.len(), 11);
    }

    #[test]
    fn plain_mode_runs_the_user_command_over_the_image_one() {
        let image = vec!["/bin/sh".to_string()];
        let p = InitMode::None.profile(&image, Some(libc::SIGQUIT), &["/bin/true".into()]);
        assert_eq!(p.pid1, ["/bin/true"]);
        assert_eq!(p.stop_signal, libc::SIGQUIT);
        let d = InitMode::DumbInit.profile(&image, None, &[]);
        assert_eq!(d.pid1, [REHOST_INIT, "--", "/bin/sh"]);
    }

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("SIGTERM"), Some(15));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("SIGRTMIN+3"), Some(libc::SIGRTMIN() + 3));
        assert_eq!(parse_signal("SIGNOPE"), None);
    }
}
