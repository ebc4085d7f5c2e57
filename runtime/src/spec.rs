//! The OCI runtime config of a rich container, from the image config, the mode's profile
//! and the user's options. Starts from the standard runtime defaults (namespaces, a
//! private /dev, /proc and /sys, masked and read-only paths) and changes only what the
//! mode needs.

use crate::error::{Error, Result};
use crate::modes::ModeProfile;
use oci::image::ImageConfig;
use oci::text::one_line;
use oci_spec::runtime::{
    Capability, HookBuilder, HooksBuilder, LinuxBuilder, LinuxCapabilitiesBuilder,
    LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder,
    PosixRlimitType, ProcessBuilder, RootBuilder, Spec, UserBuilder,
};
use std::collections::HashSet;
use std::path::Path;

/// What the user asked for on top of the image and the mode.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub hostname: String,
    /// `KEY=VALUE`, over the image's.
    pub env: Vec<String>,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    pub pids_limit: Option<i64>,
    /// Host-side commands run (by `sh -c`) with the container state on stdin.
    pub prestart_hooks: Vec<String>,
    pub poststop_hooks: Vec<String>,
    /// Where the container's cgroups go, relative to each hierarchy's root.
    pub cgroups_path: String,
    /// pid 1 on a terminal (its /dev/console), for inits that log only there.
    pub terminal: bool,
    /// Host ports forwarded into the container (not part of the OCI config: a forwarder
    /// process of ours serves them, see `ports`).
    pub ports: Vec<crate::ports::PortMapping>,
}

/// Set (to "true") when pid 1's terminal is the console of a booting system: an engine
/// of ours joining it to the caller's terminal leaves Ctrl-C and Ctrl-\ to the caller's,
/// which signals us, and we pass the signal to pid 1 (an init stops on it). Without it,
/// they go to the container's terminal, as keys, to the program on it.
pub const CONSOLE_ANNOTATION: &str = "io.rehost.console";

/// How pid 1 of an attached run is on the caller's terminal, from its config: None
/// without a terminal; Some(true) for a console, whose Ctrl-C and Ctrl-\ signal the
/// caller (see [`CONSOLE_ANNOTATION`]); Some(false) for a program's own terminal.
pub fn attached_terminal(spec: &Spec) -> Option<bool> {
    let terminal = spec.process().as_ref().and_then(|p| p.terminal()) == Some(true);
    terminal.then(|| {
        spec.annotations()
            .as_ref()
            .is_some_and(|a| a.contains_key(CONSOLE_ANNOTATION))
    })
}

fn spec_err(e: impl std::fmt::Display) -> Error {
    Error::Spec(e.to_string())
}

/// The config for a container of `image` whose rootfs is `rootfs` (used to look up a
/// named user).
pub fn generate(
    image: &ImageConfig,
    profile: &ModeProfile,
    opts: &Options,
    rootfs: &Path,
) -> Result<Spec> {
    let run = &image.config;
    if profile.pid1.is_empty() {
        return Err(Error::Spec(
            "the image has no command to run: give one after the image".into(),
        ));
    }

    let caps: HashSet<Capability> = profile.capabilities.iter().copied().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        // Nothing inherited across exec beyond what files grant (the defaults name
        // capabilities outside the bounding set, which the kernel refuses).
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(spec_err)?;

    check_env(&run.env, &opts.env)?;
    let (uid, gid) = resolve_user(run.user.as_deref().unwrap_or(""), rootfs)?;
    let mut env = merge_env(&run.env, &profile.env);
    env = merge_env(&env, &opts.env);

    // Rlimits never above what the host allows.
    let host = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let hard = host.maximum.unwrap_or(u64::MAX).min(1 << 20);
    let nofile = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .hard(hard)
        .soft(hard.min(1 << 20))
        .build()
        .map_err(spec_err)?;

    let process = ProcessBuilder::default()
        .terminal(opts.terminal)
        .args(profile.pid1.clone())
        .env(env)
        .cwd(
            run.working_dir
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "/".into()),
        )
        .user(
            UserBuilder::default()
                .uid(uid)
                .gid(gid)
                .build()
                .map_err(spec_err)?,
        )
        .capabilities(capabilities)
        .rlimits(vec![nofile])
        // setuid programs (su, sudo, ping) keep working in a whole server.
        .no_new_privileges(false)
        .build()
        .map_err(spec_err)?;

    let namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Cgroup,
    ]
    .into_iter()
    .map(|t| {
        LinuxNamespaceBuilder::default()
            .typ(t)
            .build()
            .map_err(spec_err)
    })
    .collect::<Result<Vec<_>>>()?;

    // Every device denied, as runc's and podman's defaults do; the engine then allows
    // the standard ones (null, zero, full, random, urandom, tty, console, ptmx, pts, tun).
    let mut resources =
        LinuxResourcesBuilder::default().devices(vec![LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .map_err(spec_err)?]);
    if let Some(limit) = opts.memory {
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .swap(limit)
                .build()
                .map_err(spec_err)?,
        );
    }
    if let Some(limit) = opts.pids_limit {
        resources = resources.pids(
            LinuxPidsBuilder::default()
                .limit(limit)
                .build()
                .map_err(spec_err)?,
        );
    }
    let defaults = oci_spec::runtime::Linux::default();
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build().map_err(spec_err)?)
        .cgroups_path(opts.cgroups_path.clone())
        .masked_paths(defaults.masked_paths().clone().unwrap_or_default())
        .readonly_paths(defaults.readonly_paths().clone().unwrap_or_default())
        .build()
        .map_err(spec_err)?;

    let mut spec = Spec::default();
    spec.set_hostname(Some(opts.hostname.clone()));
    spec.set_process(Some(process));
    spec.set_root(Some(
        RootBuilder::default()
            .path("rootfs")
            .readonly(false)
            .build()
            .map_err(spec_err)?,
    ));
    spec.set_linux(Some(linux));
    spec.set_mounts(Some(mounts(profile)?));
    if opts.terminal && profile.mode.boots_a_system() {
        spec.set_annotations(Some(
            [(CONSOLE_ANNOTATION.to_string(), "true".to_string())].into(),
        ));
    }
    if !opts.prestart_hooks.is_empty() || !opts.poststop_hooks.is_empty() {
        let hook = |cmd: &String| {
            HookBuilder::default()
                .path("/bin/sh")
                .args(vec!["sh".into(), "-c".into(), cmd.clone()])
                .build()
                .map_err(spec_err)
        };
        let pre = opts
            .prestart_hooks
            .iter()
            .map(hook)
            .collect::<Result<Vec<_>>>()?;
        let post = opts
            .poststop_hooks
            .iter()
            .map(hook)
            .collect::<Result<Vec<_>>>()?;
        // createRuntime is prestart's successor: run in the runtime namespace after the
        // namespaces exist and before pivot_root.
        spec.set_hooks(Some(
            HooksBuilder::default()
                .create_runtime(pre)
                .poststop(post)
                .build()
                .map_err(spec_err)?,
        ));
    }
    Ok(spec)
}

fn mounts(profile: &ModeProfile) -> Result<Vec<Mount>> {
    let mut mounts: Vec<Mount> = oci_spec::runtime::get_default_mounts()
        .into_iter()
        .filter(|m| m.destination() != Path::new("/sys/fs/cgroup"))
        .collect();
    let mount = |dest: &str, typ: &str, opts: &[&str]| {
        MountBuilder::default()
            .destination(dest)
            .typ(typ)
            .source(typ)
            .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .map_err(spec_err)
    };
    let cgroup_mode = if profile.cgroup_writable { "rw" } else { "ro" };
    mounts.push(mount(
        "/sys/fs/cgroup",
        "cgroup",
        &["nosuid", "noexec", "nodev", "relatime", cgroup_mode],
    )?);
    if profile.run_tmpfs {
        // Without a fresh /run, systemd exits 255 without a word.
        mounts.push(mount(
            "/run",
            "tmpfs",
            &["nosuid", "nodev", "mode=755", "size=20%"],
        )?);
        mounts.push(mount(
            "/run/lock",
            "tmpfs",
            &["nosuid", "nodev", "noexec", "mode=1777", "size=5m"],
        )?);
    }
    // Every process of a whole server shares one /tmp: give it a fresh one.
    mounts.push(mount("/tmp", "tmpfs", &["nosuid", "nodev", "mode=1777"])?);
    Ok(mounts)
}

/// The most environment entries pid 1 gets, and their most bytes: the kernel takes at
/// most 2 MiB of arguments and environment together (a quarter of the stack limit, 8 MiB
/// by default), and fails the exec past it with nothing said.
pub const MAX_ENV_ENTRIES: usize = 4096;
pub const MAX_ENV_BYTES: usize = 1 << 20;

/// Checks the image's Env and the user's `-e` entries before anything is made: each is
/// `KEY=VALUE` with a key and no NUL byte (the engine cannot pass one on), and all fit
/// what the kernel takes. The error names the bad entry, escaped and cut.
pub fn check_env(image: &[String], user: &[String]) -> Result<()> {
    for (whose, list) in [("the image's Env", image), ("-e", user)] {
        for entry in list {
            let why = if entry.contains('\0') {
                "holds a NUL byte"
            } else if !entry.contains('=') {
                "not KEY=VALUE"
            } else if entry.starts_with('=') {
                "no name before `=`"
            } else {
                continue;
            };
            return Err(Error::Spec(format!(
                "{whose}: entry `{}`: {why}",
                one_line(entry, 80)
            )));
        }
    }
    let count = image.len() + user.len();
    let bytes: usize = image.iter().chain(user).map(|e| e.len() + 1).sum();
    if count > MAX_ENV_ENTRIES || bytes > MAX_ENV_BYTES {
        return Err(Error::Spec(format!(
            "the environment (the image's Env and -e) holds {count} entries, {bytes} bytes: \
             at most {MAX_ENV_ENTRIES} entries and {} MiB",
            MAX_ENV_BYTES >> 20
        )));
    }
    Ok(())
}

/// `KEY=VALUE` lists merged, later keys replacing earlier ones in place.
fn merge_env(base: &[String], over: &[String]) -> Vec<String> {
    let mut out: Vec<String> = base.to_vec();
    for kv in over {
        let key = kv.split('=').next().unwrap_or("");
        match out.iter_mut().find(|e| e.split('=').next() == Some(key)) {
            Some(slot) => *slot = kv.clone(),
            None => out.push(kv.clone()),
        }
    }
    if !out.iter().any(|e| e.starts_with("PATH=")) {
        out.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    out
}

/// The largest uid or gid, as runc has it (2^31 - 1, for 32-bit systems). Above it is
/// 4294967295, which is -1 to setuid(2), "unchanged": pid 1 would stay root.
pub const MAX_ID: u64 = (1 << 31) - 1;

/// The image's `User` (`name`, `uid`, `name:group`, `uid:gid`) as numbers, names looked
/// up in the rootfs' own /etc/passwd and /etc/group, read inside the rootfs by the kernel
/// ([`crate::confined`]: a link there never reaches the host's files, a FIFO never
/// blocks) and parsed by the one parser of `rehost_init::users`. Every id is checked
/// against [`MAX_ID`].
fn resolve_user(user: &str, rootfs: &Path) -> Result<(u32, u32)> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let bad = |why: String| Error::Spec(format!("user `{}`: {why}", one_line(user, 80)));
    let checked = |what: &str, id: u64| {
        u32::try_from(id)
            .ok()
            .filter(|&id| u64::from(id) <= MAX_ID)
            .ok_or_else(|| bad(format!("{what} {id} is out of range (0-{MAX_ID})")))
    };
    // A number: digits only (runc's rule), however many.
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().unwrap_or(u64::MAX))
    };
    let mut db = None;
    let mut database = || -> Result<rehost_init::users::Database> {
        if db.is_none() {
            db = Some(image_users(rootfs).map_err(|e| bad(format!("the image's {e}")))?);
        }
        Ok(db.clone().unwrap_or_default())
    };
    let (uid, primary) = match number(u) {
        Some(n) => (checked("uid", n)?, 0),
        None => {
            let entry = database()?.user(u).cloned().ok_or_else(|| {
                Error::Spec(format!(
                    "user `{}` is not in the image's /etc/passwd",
                    one_line(u, 80)
                ))
            })?;
            (
                checked("uid", entry.uid.into())?,
                checked("gid", entry.gid.into())?,
            )
        }
    };
    let gid = match g {
        None => primary,
        Some(g) => match number(g) {
            Some(n) => checked("gid", n)?,
            None => {
                let gid = database()?.group(g).map(|e| e.gid).ok_or_else(|| {
                    Error::Spec(format!(
                        "group `{}` is not in the image's /etc/group",
                        one_line(g, 80)
                    ))
                })?;
                checked("gid", gid.into())?
            }
        },
    };
    Ok((uid, gid))
}

/// The image's /etc/passwd and /etc/group (a missing one is empty).
fn image_users(rootfs: &Path) -> std::io::Result<rehost_init::users::Database> {
    use rehost_init::users::{parse_group, parse_passwd, Database};
    let text = |path: &str| -> std::io::Result<String> {
        let bytes = crate::confined::read(rootfs, path)?.unwrap_or_default();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    Ok(Database {
        passwd: parse_passwd(&text("/etc/passwd")?),
        group: parse_group(&text("/etc/group")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modes::{InitMode, ModeProfiles};

    #[test]
    fn systemd_mode_gets_what_systemd_needs() {
        let image = ImageConfig::default();
        let profile = InitMode::Systemd.profile(&Default::default(), &[]).unwrap();
        let opts = Options {
            hostname: "web1".into(),
            cgroups_path: "/rehost/web1".into(),
            ..Default::default()
        };
        let spec = generate(&image, &profile, &opts, Path::new("/nonexistent")).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        let dests: Vec<&str> = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        for d in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/sys",
            "/sys/fs/cgroup",
            "/run",
            "/run/lock",
        ] {
            assert!(dests.contains(&d), "{d} missing from {dests:?}");
        }
        let cg = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys/fs/cgroup")
            .unwrap();
        assert!(cg["options"].as_array().unwrap().contains(&"rw".into()));
        let ns: Vec<&str> = json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "mount", "uts", "ipc", "network", "cgroup"]);
        assert_eq!(json["process"]["args"][0], "/sbin/init");
        assert_eq!(
            json["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            11
        );
        assert!(json["process"]["env"]
            .as_array()
            .unwrap()
            .contains(&"container=rehost".into()));
        assert_eq!(json["hostname"], "web1");
        assert_eq!(json["linux"]["cgroupsPath"], "/rehost/web1");
        assert!(!json["linux"]["maskedPaths"].as_array().unwrap().is_empty());
    }

    #[test]
    fn only_the_terminal_of_a_booting_system_is_marked_a_console() {
        let image = ImageConfig::default();
        let console = |mode: InitMode, terminal: bool| {
            let command = ["/bin/sh".to_string()];
            let command = if mode.boots_a_system() {
                &[][..]
            } else {
                &command[..]
            };
            let profile = mode.profile(&Default::default(), command).unwrap();
            let opts = Options {
                terminal,
                ..Default::default()
            };
            let spec = generate(&image, &profile, &opts, Path::new("/nonexistent")).unwrap();
            attached_terminal(&spec)
        };
        assert_eq!(console(InitMode::Systemd, true), Some(true));
        assert_eq!(console(InitMode::SbinInit, true), Some(true));
        assert_eq!(console(InitMode::Systemd, false), None);
        assert_eq!(console(InitMode::None, true), Some(false));
    }

    #[test]
    fn env_entries_are_key_value_without_nul_and_bounded() {
        let ok = vec!["A=1".to_string(), "B=".into()];
        check_env(&ok, &["C=x=y".into()]).unwrap();
        let err = |image: &[&str], user: &[&str]| {
            let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            check_env(&v(image), &v(user)).unwrap_err().to_string()
        };
        assert_eq!(
            err(&["A=1", "NOEQUALS"], &[]),
            "OCI runtime config: the image's Env: entry `NOEQUALS`: not KEY=VALUE"
        );
        assert_eq!(
            err(&["A=b\0\x1b[2J"], &[]),
            "OCI runtime config: the image's Env: entry `A=b\\u{0}\\u{1b}[2J`: holds a NUL byte"
        );
        assert_eq!(
            err(&[], &["=x"]),
            "OCI runtime config: -e: entry `=x`: no name before `=`"
        );
        let many: Vec<String> = (0..100_000).map(|i| format!("K{i}=v")).collect();
        let e = check_env(&many, &[]).unwrap_err().to_string();
        assert!(e.contains("holds 100000 entries"), "{e}");
    }

    #[test]
    fn env_merges_and_users_resolve_in_the_rootfs() {
        let env = merge_env(
            &["PATH=/bin".into(), "A=1".into()],
            &["A=2".into(), "B=3".into()],
        );
        assert_eq!(env, ["PATH=/bin", "A=2", "B=3"]);
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.path().join("etc/group"), "adm:x:4:\n").unwrap();
        assert_eq!(resolve_user("www-data", root.path()).unwrap(), (33, 33));
        assert_eq!(resolve_user("www-data:adm", root.path()).unwrap(), (33, 4));
        assert_eq!(
            resolve_user("1000:1000", root.path()).unwrap(),
            (1000, 1000)
        );
        for user in [
            "4294967295:4294967295",
            "2147483648",
            "0:99999999999999999999",
        ] {
            let e = resolve_user(user, root.path()).unwrap_err().to_string();
            assert!(e.contains("is out of range (0-2147483647)"), "{user}: {e}");
        }
        assert_eq!(
            resolve_user("2147483647:0", root.path()).unwrap(),
            (2147483647, 0)
        );
        let e = resolve_user("nobody2", root.path()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "OCI runtime config: user `nobody2` is not in the image's /etc/passwd"
        );
    }
}
