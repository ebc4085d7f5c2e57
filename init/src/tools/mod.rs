//! The service commands of a server, inside a rehost-mode container: `systemctl`,
//! `service`, `invoke-rc.d` and `journalctl`. rehost convert links them to rehost-init (one
//! binary, called by these names) and keeps the image's own under [`REAL_DIR`]. Which one
//! answers is decided each time, from what pid 1 is: rehost-init when its control socket
//! answers, else the image's own tool (systemd mode runs the real `systemctl`).

pub mod journalctl;
pub mod openrc;
pub mod service;
pub mod systemctl;
pub mod time;
pub mod upstart;

use crate::control;
use std::os::unix::process::CommandExt;

/// Where rehost convert keeps the image's own copies of the tools it replaces.
pub const REAL_DIR: &str = "/usr/lib/rehost/real";

/// The names rehost-init answers to in every image (also as `rehost-init TOOL ARGS`).
pub const TOOLS: &[&str] = &["systemctl", "service", "invoke-rc.d", "journalctl"];

/// The names it answers to in images that have them: OpenRC's and upstart's.
pub const OWN_INIT_TOOLS: &[&str] = &[
    "rc-service",
    "rc-status",
    "rc-update",
    "initctl",
    "start",
    "stop",
    "restart",
    "reload",
    "status",
];

/// The tool `argv0` (a path or a name) names, when it is one of [`TOOLS`] or
/// [`OWN_INIT_TOOLS`].
pub fn tool_of(argv0: &str) -> Option<&'static str> {
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    TOOLS
        .iter()
        .chain(OWN_INIT_TOOLS)
        .copied()
        .find(|t| *t == base)
}

/// Runs tool `name` with `args` and returns its exit code.
pub fn run(name: &str, args: &[String]) -> i32 {
    if !control::available() {
        return exec_real(name, args);
    }
    match name {
        "systemctl" => systemctl::run(args),
        "service" => service::service(args),
        "invoke-rc.d" => service::invoke_rc_d(args),
        "journalctl" => journalctl::run(args),
        "rc-service" => openrc::rc_service(args),
        "rc-status" => openrc::rc_status(args),
        "initctl" => upstart::run(None, args),
        "start" | "stop" | "restart" | "reload" | "status" => upstart::run(Some(name), args),
        // rc-update edits runlevel links, which needs no running init.
        _ => exec_real(name, args),
    }
}

/// Replaces this process with the image's own `name` (or says why it cannot).
pub fn exec_real(name: &str, args: &[String]) -> i32 {
    let real = format!("{REAL_DIR}/{name}");
    if std::path::Path::new(&real).exists() {
        let err = std::process::Command::new(&real)
            .arg0(name)
            .args(args)
            .exec();
        eprintln!("{name}: cannot run {real}: {err}");
        return 1;
    }
    eprintln!(
        "{name}: rehost-init does not answer here (pid 1 is another init, or {} is missing), and this image has no {name} of its own",
        control::SOCKET
    );
    1
}

/// Talks to rehost-init; a failure is one line and exit code 1.
pub(crate) fn ask(tool: &str, req: &control::Request) -> Result<control::Answer, i32> {
    match control::ask(req) {
        Ok(control::Answer::Error { message }) => {
            eprintln!("{tool}: {message}");
            Err(1)
        }
        Ok(a) => Ok(a),
        Err(e) => {
            eprintln!("{tool}: {e}");
            Err(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_known_by_their_base_name() {
        assert_eq!(tool_of("/usr/bin/systemctl"), Some("systemctl"));
        assert_eq!(tool_of("invoke-rc.d"), Some("invoke-rc.d"));
        assert_eq!(tool_of("rehost-init"), None);
        assert_eq!(tool_of("/usr/sbin/rehost-init"), None);
        assert_eq!(tool_of("/sbin/rc-service"), Some("rc-service"));
    }
}
