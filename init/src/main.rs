//! rehost-init: the pid 1 of rehost images. See the library documentation and
//! `rehost-init --help`.

use rehost_init::config::{
    InitConfig, Mode, CONFIG_PATH, HOOKS_RECORD_DIR, POSTSTOP_DIR, PRESTART_DIR, STATUS_PATH,
};
use rehost_init::supervisor::{hooks, signals, status::Status, Options, Supervisor};
use rehost_init::units::HostRoot;
use rehost_init::{generators, log, model, service, tmpfiles, tools, users};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

const HELP: &str = "rehost-init: the init (pid 1) of rehost rich containers

USAGE:
    rehost-init                   run as the container's init, as /etc/rehost/init.toml says
    rehost-init -- CMD [ARG...]   run as a minimal reaper around CMD (dumb-init mode)
    rehost-init status [--json]   print every service's state and the container's health:
                                  exit 0 when healthy; 1 when degraded (a service that is not
                                  optional failed) or still starting; 3 when no init is running
                                  (an exec probe / HEALTHCHECK)
    rehost-init hooks PHASE [--exit-status N]
                                  run the prestart or poststop hooks now (used by the systemd
                                  and sbin-init modes, whose pid 1 is not rehost-init)
    rehost-init systemctl|service|invoke-rc.d|journalctl ARGS...
                                  the service commands, against the running rehost-init (the
                                  image's own ones when pid 1 is another init); the image's
                                  systemctl, service, invoke-rc.d and journalctl link here
    rehost-init --version

FILES:
    /etc/rehost/init.toml               mode, main command, services (REHOST_INIT_CONFIG overrides)
    $REHOST_INIT_MODE                   overrides the file's mode: rehost, systemd, sbin-init, dumb-init
    /etc/rehost/hooks/prestart.d/*      run in name order before anything starts
    /etc/rehost/hooks/poststop.d/*      run in name order after everything stopped
    /run/rehost/status.json             the live state read by `rehost-init status`

Hooks get REHOST_PHASE, REHOST_MODE, REHOST_CONTAINER and, after stop, REHOST_EXIT_STATUS.
Exit codes of the init: the main command's, 1 when a critical service failed for good,
2 when the configuration or a prestart hook failed, 0 otherwise.
";

fn main() {
    let argv0 = std::env::args().next().unwrap_or_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Linked as systemctl, service, invoke-rc.d or journalctl (see rehost_init::tools).
    if let Some(tool) = tools::tool_of(&argv0) {
        std::process::exit(tools::run(tool, &args));
    }
    let code = match args.first().map(String::as_str) {
        Some(tool) if tools::TOOLS.contains(&tool) => tools::run(tool, &args[1..]),
        None | Some("run") => run(&[]),
        Some("--") => run(&args[1..]),
        Some("status") => status(args.iter().any(|a| a == "--json")),
        Some("hooks") => hooks_cmd(&args[1..]),
        Some("__listen") => listen_exec(&args[1..]),
        Some("--version" | "-V") => {
            println!("rehost-init {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some("--help" | "-h" | "help") => {
            print!("{HELP}");
            0
        }
        Some(other) => {
            eprintln!("rehost-init: unknown command {other:?}; see rehost-init --help");
            2
        }
    };
    std::process::exit(code);
}

fn config_path() -> PathBuf {
    std::env::var_os("REHOST_INIT_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(CONFIG_PATH))
}

fn container_name() -> String {
    std::env::var("REHOST_CONTAINER")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default()
        })
}

fn hook_env(phase: &str, mode: Mode, exit_status: Option<i32>) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    env.entry("PATH".into())
        .or_insert_with(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    env.insert("REHOST_PHASE".into(), phase.into());
    env.insert("REHOST_MODE".into(), mode.as_str().into());
    env.insert("REHOST_CONTAINER".into(), container_name());
    if let Some(c) = exit_status {
        env.insert("REHOST_EXIT_STATUS".into(), c.to_string());
    }
    env
}

/// The configuration file, then what the runtime asked for: a mode in `REHOST_INIT_MODE`
/// (one image boots in any mode) or a command after `--` (dumb-init around it).
fn effective_config(cmd: &[String]) -> Result<InitConfig, String> {
    let mut cfg = InitConfig::load(&config_path()).map_err(|e| e.to_string())?;
    if let Ok(name) = std::env::var("REHOST_INIT_MODE") {
        let mode = Mode::parse(&name).ok_or_else(|| {
            format!("REHOST_INIT_MODE={name:?}: not rehost, systemd, sbin-init or dumb-init")
        })?;
        if mode != cfg.mode {
            // The file's cmd belongs to its mode (the init's arguments, or the main command).
            cfg.cmd.clear();
            cfg.mode = mode;
        }
    }
    if !cmd.is_empty() {
        cfg.mode = Mode::DumbInit;
        cfg.cmd = cmd.to_vec();
    }
    if cfg.mode == Mode::DumbInit && cfg.cmd.is_empty() {
        return Err("dumb-init mode needs a command: rehost-init -- CMD [ARG...]".into());
    }
    Ok(cfg)
}

/// Runs one phase's hooks (a failed prestart hook stops the rest) and records what ran in
/// [`HOOKS_RECORD_DIR`], which `rehost verify` reads.
fn run_hooks(phase: &str, mode: Mode, exit_status: Option<i32>) -> Vec<hooks::HookResult> {
    let dir = if phase == "prestart" {
        PRESTART_DIR
    } else {
        POSTSTOP_DIR
    };
    let results = hooks::run(
        dir,
        &hook_env(phase, mode, exit_status),
        phase == "prestart",
    );
    let record = serde_json::json!({
        "phase": phase,
        "mode": mode.as_str(),
        "exit_status": exit_status,
        "hooks": results
            .iter()
            .map(|r| serde_json::json!({"path": r.path, "code": r.code}))
            .collect::<Vec<_>>(),
    });
    let path = format!("{HOOKS_RECORD_DIR}/{phase}.json");
    let written = std::fs::create_dir_all(HOOKS_RECORD_DIR)
        .and_then(|()| std::fs::write(&path, format!("{record:#}\n")));
    if let Err(e) = written {
        // A read-only root filesystem: the hooks ran, only the record is missing.
        log(&format!("cannot record the {phase} hooks in {path}: {e}"));
    }
    results
}

fn run(cmd: &[String]) -> i32 {
    let cfg = match effective_config(cmd) {
        Ok(c) => c,
        Err(e) => {
            log(&e);
            return 2;
        }
    };
    // SAFETY: getpid/prctl have no memory-safety requirements.
    if unsafe { libc::getpid() } != 1 {
        // Not pid 1 (a test, or under another init): orphans still come to us.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
    }
    match cfg.mode {
        Mode::Systemd | Mode::SbinInit => return exec_image_init(&cfg),
        Mode::Rehost | Mode::DumbInit => {}
    }
    let sigfd = match signals::block_all() {
        Ok(fd) => fd,
        Err(e) => {
            log(&format!("cannot set up signal handling: {e}"));
            return 2;
        }
    };
    let pre = run_hooks("prestart", cfg.mode, None);
    let mut code = if pre.iter().any(|r| r.code != Some(0)) {
        log("a prestart hook failed: not starting anything");
        2
    } else {
        supervise(&cfg, sigfd)
    };
    let post = run_hooks("poststop", cfg.mode, Some(code));
    if code == 0 && post.iter().any(|r| r.code != Some(0)) {
        log("a poststop hook failed");
    }
    // Reap whatever the hooks left behind.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
    if code > 255 {
        code = 255;
    }
    log(&format!("exiting with code {code}"));
    code
}

fn supervise(cfg: &InitConfig, sigfd: i32) -> i32 {
    let opts = Options::from_config(cfg);
    let mut defs = Vec::new();
    let mut broken_critical = false;
    if cfg.mode == Mode::Rehost {
        prepare_boot();
        let root = HostRoot::new("/");
        let entries = if cfg.services.is_empty() {
            model::boot_entries(&root, &cfg.machine_only)
        } else {
            cfg.services.clone()
        };
        for e in &entries {
            match service::load(&root, e) {
                Ok(d) => defs.push(d),
                Err(err) => {
                    log(&format!("{} ({}): {err}", e.name, e.kind.as_str()));
                    broken_critical |= e.critical;
                }
            }
        }
        for e in service::pull_in(&root, &mut defs, &cfg.machine_only) {
            log(&format!("a unit pulled in: {e}"));
        }
        log(&format!(
            "supervising {} service(s): {}",
            defs.len(),
            defs.iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if broken_critical {
        log("a critical service cannot be loaded: not starting");
        return 1;
    }
    Supervisor::new(defs, opts, sigfd).run()
}

/// What a systemd boot does before any service starts and packages count on: their
/// generators decide which units a unit pulls in, and their `tmpfiles.d` lines make the
/// directories their daemons need in an empty /run.
fn prepare_boot() {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    env.entry("PATH".into())
        .or_insert_with(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    for p in generators::run_all(&env) {
        log(&p);
    }
    for p in tmpfiles::apply_all(std::path::Path::new("/"), &users::Database::load()) {
        log(&p);
    }
}

/// The systemd and sbin-init modes: the prestart hooks run here, then the image's own init
/// replaces us as pid 1 (the poststop hooks are run by that init at shutdown, through the
/// unit or rc script `rehost convert` installs).
fn exec_image_init(cfg: &InitConfig) -> i32 {
    let pre = run_hooks("prestart", cfg.mode, None);
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
    if pre.iter().any(|r| r.code != Some(0)) {
        log("a prestart hook failed: not starting the init");
        let _ = run_hooks("poststop", cfg.mode, Some(2));
        return 2;
    }
    let candidates: &[&str] = match cfg.mode {
        Mode::Systemd => &[
            "/lib/systemd/systemd",
            "/usr/lib/systemd/systemd",
            "/sbin/init",
        ],
        _ => &["/sbin/init", "/sbin/openrc-init"],
    };
    let Some(init) = candidates.iter().find(|p| std::path::Path::new(p).exists()) else {
        log(&format!(
            "mode {}: none of {} exists in this image",
            cfg.mode,
            candidates.join(", ")
        ));
        return 2;
    };
    if let Some(said) = rehost_init::console::to_stdout() {
        log(&said);
    }
    let mut cmd = std::process::Command::new(init);
    cmd.args(&cfg.cmd);
    if cfg.mode == Mode::Systemd {
        if let Some(done) = rehost_init::cgroupfs::make_writable_for_systemd() {
            log(&done);
        }
        cmd.env(
            "container",
            std::env::var("container").unwrap_or_else(|_| "rehost".into()),
        );
    }
    let err = cmd.exec();
    log(&format!("cannot exec {init}: {err}"));
    2
}

fn status(json: bool) -> i32 {
    let st = match Status::read(STATUS_PATH) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rehost-init: {e}");
            return 3;
        }
    };
    if !signals::alive(st.pid) {
        eprintln!(
            "rehost-init: {STATUS_PATH} is stale: the init (pid {}) is not running",
            st.pid
        );
        return 3;
    }
    let (health, which) = st.health();
    if json {
        let mut v = serde_json::to_value(&st).expect("status serializes");
        v["health"] = health.as_str().into();
        v["unhealthy"] = which.iter().map(|s| s.name.clone()).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("status serializes")
        );
    } else {
        print!("{}", st.render());
    }
    health.exit_code()
}

fn hooks_cmd(args: &[String]) -> i32 {
    let phase = match args.first().map(String::as_str) {
        Some(phase @ ("prestart" | "poststop")) => phase,
        _ => {
            eprintln!("rehost-init: usage: rehost-init hooks prestart|poststop [--exit-status N]");
            return 2;
        }
    };
    let exit_status = args
        .windows(2)
        .find(|w| w[0] == "--exit-status")
        .and_then(|w| w[1].parse().ok());
    let mode = effective_config(&[]).map(|c| c.mode).unwrap_or_default();
    run_hooks(phase, mode, exit_status)
        .iter()
        .find_map(|r| r.code.filter(|c| *c != 0))
        .unwrap_or(0)
}

/// `rehost-init __listen FD,FD… PROGRAM ARGV0 ARGS…`: the last step of starting a
/// socket-activated service. The supervisor cannot know the pid `LISTEN_PID` must hold
/// before it forks, and std's spawn owns the low fds in the child; here, in the
/// service's own process, the sockets move to 3… and `LISTEN_PID` is this pid.
fn listen_exec(args: &[String]) -> i32 {
    let (Some(fds), Some(program), Some(argv0)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("rehost-init: usage: rehost-init __listen FD,FD... PROGRAM ARGV0 [ARG...]");
        return 2;
    };
    let fds: Vec<i32> = match fds.split(',').map(str::parse).collect() {
        Ok(v) => v,
        Err(_) => {
            eprintln!("rehost-init: __listen: bad fd list {fds:?}");
            return 2;
        }
    };
    let n = fds.len() as i32;
    // Out of the way first (an fd may already sit where another must go), then in place.
    let mut high = Vec::new();
    for fd in &fds {
        // SAFETY: fcntl on fds the supervisor left open for this process.
        let h = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3 + n) };
        if h < 0 {
            eprintln!(
                "rehost-init: __listen: fd {fd}: {}",
                std::io::Error::last_os_error()
            );
            return 2;
        }
        high.push(h);
    }
    for (k, h) in high.iter().enumerate() {
        // SAFETY: dup2 onto 3+k; the result is not close-on-exec, so the program gets it.
        if unsafe { libc::dup2(*h, 3 + k as i32) } < 0 {
            eprintln!("rehost-init: __listen: {}", std::io::Error::last_os_error());
            return 2;
        }
    }
    for fd in fds.iter().chain(&high) {
        if *fd >= 3 + n {
            // SAFETY: closing copies nothing else uses.
            unsafe { libc::close(*fd) };
        }
    }
    let err = std::process::Command::new(program)
        .arg0(argv0)
        .args(&args[3..])
        .env("LISTEN_PID", std::process::id().to_string())
        .exec();
    eprintln!("rehost-init: cannot exec {program}: {err}");
    127
}
