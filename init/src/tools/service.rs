//! `service NAME ACTION` and `invoke-rc.d NAME ACTION` against rehost-init: the usual
//! actions become jobs (as Debian's `service` turns them into systemctl calls under
//! systemd); any other action (`rotate`, `configtest`) runs the init script itself.

use super::{ask, systemctl};
use crate::control::{Answer, Request, Verb};
use std::os::unix::process::CommandExt;

const USAGE_SERVICE: &str =
    "Usage: service < option > | --status-all | [ service_name [ command | --full-restart ] ]";
const USAGE_INVOKE: &str = "usage: invoke-rc.d [options] <basename> <action> [extra parameters]";

/// Runs `service`; returns the exit code.
pub fn service(args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        Some("--status-all") => status_all(),
        Some("--version") => {
            println!("service ver. rehost-init {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some("-h" | "--help") | None => {
            eprintln!("{USAGE_SERVICE}");
            i32::from(args.is_empty())
        }
        Some(name) => match args.get(1).map(String::as_str) {
            None => {
                eprintln!("{USAGE_SERVICE}");
                1
            }
            Some("--full-restart") => act("service", name, "restart", &[]),
            Some(action) => act("service", name, action, &args[2..]),
        },
    }
}

/// Runs `invoke-rc.d`; returns the exit code.
pub fn invoke_rc_d(args: &[String]) -> i32 {
    let mut rest = Vec::new();
    let mut query = false;
    let mut quiet = false;
    for a in args {
        match a.as_str() {
            "--query" => query = true,
            "--quiet" => quiet = true,
            "--force"
            | "--try-anyway"
            | "--disclose-deny"
            | "--no-fallback"
            | "--skip-systemd-native" => {}
            "-h" | "--help" => {
                eprintln!("{USAGE_INVOKE}");
                return 0;
            }
            _ => rest.push(a.clone()),
        }
    }
    let (Some(name), Some(action)) = (rest.first(), rest.get(1)) else {
        eprintln!("{USAGE_INVOKE}");
        return 102;
    };
    if query {
        // "Action allowed": no policy layer in a rehost container.
        return 104;
    }
    let code = act("invoke-rc.d", name, action, &rest[2..]);
    if code != 0 && !quiet {
        eprintln!("invoke-rc.d: initscript {name}, action \"{action}\" failed.");
    }
    code
}

/// One action on one service, as `service` and `rc-service` do it.
pub fn act(tool: &str, name: &str, action: &str, extra: &[String]) -> i32 {
    if action == "status" {
        return systemctl::run(&["status".to_string(), name.to_string()]);
    }
    if let Some(verb) = Verb::parse(action) {
        return match ask(
            tool,
            &Request::Job {
                verb,
                names: vec![name.to_string()],
                wait: true,
            },
        ) {
            Ok(Answer::Jobs { results }) => systemctl::job_code(verb, &results),
            Ok(_) => 1,
            Err(c) => c,
        };
    }
    // Other actions are the script's own business.
    let script = format!("/etc/init.d/{name}");
    if !std::path::Path::new(&script).exists() {
        eprintln!("{tool}: {name}: unrecognized action {action:?} (and no {script})");
        return 1;
    }
    let err = std::process::Command::new(&script)
        .arg(action)
        .args(extra)
        .exec();
    eprintln!("{tool}: cannot run {script}: {err}");
    1
}

fn status_all() -> i32 {
    let scripts: Vec<String> = std::fs::read_dir("/etc/init.d")
        .map(|d| {
            let mut v: Vec<String> = d
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    !n.starts_with('.')
                        && n != "README"
                        && n != "skeleton"
                        && n != "rc"
                        && n != "rcS"
                })
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    let known = match ask("service", &Request::Units { names: vec![] }) {
        Ok(Answer::Units { units, .. }) => units,
        Ok(_) => Vec::new(),
        Err(c) => return c,
    };
    for s in scripts {
        let state = known
            .iter()
            .find(|u| u.name == s || u.name == format!("{s}.service"))
            .map(|u| u.active.as_str());
        let mark = match state {
            Some("active" | "reloading") => "+",
            Some(_) | None => "-",
        };
        println!(" [ {mark} ]  {s}");
    }
    0
}
