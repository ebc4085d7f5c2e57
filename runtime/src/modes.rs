//! The rich modes as data: what runs as pid 1, which signal stops it, and what the
//! container needs around it (mounts, capabilities, environment). The spec generator reads
//! only a [`ModeProfile`], so a new mode is one more arm here.

pub use oci::contract::InitMode;
use oci::contract::{HOOKS_LABEL, INIT_PATH, MODE_LABEL};
use oci_spec::runtime::Capability;

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

/// What an image brings to the choice of pid 1.
#[derive(Debug, Clone, Default)]
pub struct ImageInit {
    /// The image's Entrypoint + Cmd.
    pub cmd: Vec<String>,
    /// The image's StopSignal, as a number.
    pub stop_signal: Option<i32>,
    /// The mode `rehost convert` built the image for (label `io.rehost.init.mode`);
    /// `None` for an image without rehost's layer (`--init none`, or not ours).
    pub built_for: Option<InitMode>,
    /// The image's own inits that run the poststop hooks (`systemd`, `sysv`, `openrc`:
    /// label `io.rehost.init.hooks`), whatever mode it was built for.
    pub hook_inits: Vec<String>,
    /// Where the image's rehost-init is: its Entrypoint (convert puts it in /sbin when
    /// the image's /usr/sbin is not a directory of its own), else [`INIT_PATH`].
    pub init_path: String,
}

impl ImageInit {
    /// What the image's configuration says.
    pub fn of(run: &oci::image::RunConfig) -> ImageInit {
        ImageInit {
            cmd: run
                .entrypoint
                .iter()
                .flatten()
                .chain(run.cmd.iter().flatten())
                .cloned()
                .collect(),
            stop_signal: run.stop_signal.as_deref().and_then(parse_signal),
            built_for: run.labels.get(MODE_LABEL).and_then(|m| m.parse().ok()),
            hook_inits: run
                .labels
                .get(HOOKS_LABEL)
                .map(|l| {
                    l.split(',')
                        .filter(|h| !h.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            init_path: run
                .entrypoint
                .iter()
                .flatten()
                .next()
                .filter(|p| p.ends_with("/rehost-init"))
                .cloned()
                .unwrap_or_else(|| INIT_PATH.to_string()),
        }
    }

    /// Whether the image's SysV or OpenRC init has convert's container inittab (no
    /// gettys; ctrlaltdel, SIGINT, halts), installed with its poststop hooks.
    fn sysv_like_hooks(&self) -> bool {
        self.hook_inits.iter().any(|h| h == "sysv" || h == "openrc")
    }

    /// Whether the poststop hooks run when pid 1 is `mode`: rehost-init runs them itself;
    /// the image's own init through what convert installed for it (an image converted
    /// before the hooks label: for the mode it was built for only).
    pub fn runs_poststop_hooks(&self, mode: InitMode) -> bool {
        if !self.has_rehost_init() {
            return false;
        }
        let installed = match mode {
            InitMode::Rehost | InitMode::DumbInit => true,
            InitMode::Systemd => self.hook_inits.iter().any(|h| h == "systemd"),
            InitMode::SbinInit => self.sysv_like_hooks(),
            InitMode::None => false,
        };
        installed || self.built_for == Some(mode)
    }

    /// Whether the image carries rehost-init (and its hooks and configuration).
    fn has_rehost_init(&self) -> bool {
        matches!(self.built_for, Some(m) if m != InitMode::None)
    }
}

/// A mode the image cannot run in.
#[derive(Debug, thiserror::Error)]
pub enum ModeError {
    #[error(
        "--init {mode} needs rehost-init in the image: convert it with `rehost convert --init {mode}`"
    )]
    NeedsRehostInit { mode: InitMode },
}

/// What the runtime makes of each mode of the image contract.
pub trait ModeProfiles: Sized {
    /// The mode a container of `image` runs in when the user names none.
    fn default_for(image: &ImageInit) -> Self;
    /// The profile of this mode for `image`; `user_cmd` replaces the image's command
    /// where the mode runs one.
    fn profile(self, image: &ImageInit, user_cmd: &[String]) -> Result<ModeProfile, ModeError>;
}

impl ModeProfiles for InitMode {
    /// The one it was converted for, else the image's own command.
    fn default_for(image: &ImageInit) -> InitMode {
        image.built_for.unwrap_or(InitMode::None)
    }

    /// The profile of this mode for `image`; `user_cmd` replaces the image's command
    /// where the mode runs one.
    ///
    /// An image converted by rehost boots every rich mode through its own rehost-init,
    /// so the prestart hooks (new SSH host keys, a new machine-id) run before the
    /// image's init: the mode it was not built for is asked for in `REHOST_INIT_MODE`.
    /// Without rehost-init, systemd and sbin-init modes run `/sbin/init` directly.
    fn profile(self, image: &ImageInit, user_cmd: &[String]) -> Result<ModeProfile, ModeError> {
        let cmd = if user_cmd.is_empty() {
            image.cmd.clone()
        } else {
            user_cmd.to_vec()
        };
        let built = image.built_for == Some(self);
        let mut base = ModeProfile {
            mode: self,
            pid1: vec![image.init_path.clone()],
            stop_signal: libc::SIGTERM,
            run_tmpfs: true,
            cgroup_writable: false,
            capabilities: RICH_CAPABILITIES.to_vec(),
            env: vec!["container=rehost".into()],
        };
        if image.has_rehost_init() && !built && self != InitMode::None {
            base.env.push(format!("REHOST_INIT_MODE={self}"));
        }
        let image_stop = |default: i32| {
            if built {
                image.stop_signal.unwrap_or(default)
            } else {
                default
            }
        };
        let needs_rehost_init = || {
            if image.has_rehost_init() {
                Ok(())
            } else {
                Err(ModeError::NeedsRehostInit { mode: self })
            }
        };
        Ok(match self {
            InitMode::Systemd => ModeProfile {
                pid1: if image.has_rehost_init() {
                    base.pid1.clone()
                } else {
                    vec!["/sbin/init".into()]
                },
                stop_signal: image_stop(sigrtmin_plus(3)),
                cgroup_writable: true,
                ..base
            },
            InitMode::SbinInit => ModeProfile {
                pid1: if image.has_rehost_init() {
                    base.pid1.clone()
                } else {
                    vec!["/sbin/init".into()]
                },
                // An image rehost converted halts on SIGINT (its ctrlaltdel entry is
                // rewritten); otherwise SIGPWR runs SysV init's power-failure shutdown.
                stop_signal: image_stop(if image.sysv_like_hooks() {
                    libc::SIGINT
                } else {
                    libc::SIGPWR
                }),
                // SysV's halt ends with reboot(2), which in a pid namespace ends only that
                // namespace's init, and needs CAP_SYS_BOOT: without it init sits in
                // runlevel 0 until it is killed.
                capabilities: [RICH_CAPABILITIES.as_slice(), &[Capability::SysBoot]].concat(),
                ..base
            },
            InitMode::Rehost => {
                needs_rehost_init()?;
                base
            }
            InitMode::DumbInit => {
                needs_rehost_init()?;
                // The image's own Entrypoint is rehost-init: the command is what follows.
                let main: Vec<String> = if user_cmd.is_empty() {
                    cmd.into_iter()
                        .skip_while(|a| *a == image.init_path || a == "--")
                        .collect()
                } else {
                    cmd
                };
                ModeProfile {
                    pid1: if main.is_empty() {
                        // The image's configuration names the command.
                        base.pid1.clone()
                    } else {
                        [vec![image.init_path.clone(), "--".into()], main].concat()
                    },
                    run_tmpfs: false,
                    ..base
                }
            }
            InitMode::None => ModeProfile {
                pid1: cmd,
                stop_signal: image.stop_signal.unwrap_or(libc::SIGTERM),
                run_tmpfs: false,
                env: Vec::new(),
                ..base
            },
        })
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

    fn plain() -> ImageInit {
        ImageInit {
            cmd: vec!["/bin/sh".into()],
            stop_signal: Some(libc::SIGQUIT),
            built_for: None,
            hook_inits: Vec::new(),
            init_path: INIT_PATH.into(),
        }
    }

    fn converted(mode: InitMode) -> ImageInit {
        ImageInit {
            cmd: vec![INIT_PATH.into()],
            stop_signal: Some(libc::SIGINT),
            built_for: Some(mode),
            hook_inits: vec!["sysv".into()],
            init_path: INIT_PATH.into(),
        }
    }

    #[test]
    fn systemd_is_stopped_with_sigrtmin_plus_3() {
        let p = InitMode::Systemd.profile(&plain(), &[]).unwrap();
        assert_eq!(p.stop_signal, libc::SIGRTMIN() + 3);
        assert_eq!(p.pid1, ["/sbin/init"]);
        assert!(p.cgroup_writable && p.run_tmpfs);
        assert_eq!(p.capabilities.len(), 11);
    }

    #[test]
    fn a_converted_image_boots_any_mode_through_its_rehost_init() {
        let image = converted(InitMode::Rehost);
        assert_eq!(InitMode::default_for(&image), InitMode::Rehost);
        let p = InitMode::Systemd.profile(&image, &[]).unwrap();
        assert_eq!(p.pid1, [INIT_PATH]);
        assert!(p.env.contains(&"REHOST_INIT_MODE=systemd".to_string()));
        assert_eq!(p.stop_signal, libc::SIGRTMIN() + 3);
        let own = InitMode::SbinInit
            .profile(&converted(InitMode::SbinInit), &[])
            .unwrap();
        assert_eq!(own.stop_signal, libc::SIGINT, "the image's own StopSignal");
        assert!(!own.env.iter().any(|e| e.starts_with("REHOST_INIT_MODE")));
    }

    #[test]
    fn the_image_init_runs_the_poststop_hooks_where_convert_installed_them() {
        let image = converted(InitMode::Rehost);
        assert!(image.runs_poststop_hooks(InitMode::Rehost));
        assert!(image.runs_poststop_hooks(InitMode::SbinInit));
        assert!(!image.runs_poststop_hooks(InitMode::Systemd));
        assert!(!plain().runs_poststop_hooks(InitMode::SbinInit));
        // Its inittab was rewritten with the hooks: SIGINT halts it in any mode.
        let p = InitMode::SbinInit.profile(&image, &[]).unwrap();
        assert_eq!(p.stop_signal, libc::SIGINT);
    }

    #[test]
    fn rehost_modes_need_rehost_init() {
        let err = InitMode::Rehost.profile(&plain(), &[]).unwrap_err();
        assert!(
            err.to_string().contains("rehost convert --init rehost"),
            "{err}"
        );
        assert_eq!(InitMode::default_for(&plain()), InitMode::None);
    }

    #[test]
    fn plain_mode_runs_the_user_command_over_the_image_one() {
        let p = InitMode::None
            .profile(&plain(), &["/bin/true".into()])
            .unwrap();
        assert_eq!(p.pid1, ["/bin/true"]);
        assert_eq!(p.stop_signal, libc::SIGQUIT);
        let d = InitMode::DumbInit
            .profile(&converted(InitMode::Rehost), &["/bin/sh".into()])
            .unwrap();
        assert_eq!(d.pid1, [INIT_PATH, "--", "/bin/sh"]);
    }

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("SIGTERM"), Some(15));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("SIGRTMIN+3"), Some(libc::SIGRTMIN() + 3));
        assert_eq!(parse_signal("SIGNOPE"), None);
    }
}
