//! OpenRC's `rc-service` and `rc-status` against rehost-init (`rc-update` edits runlevel
//! links, which the image's own does without a running OpenRC).

use super::{ask, service};
use crate::control::{Answer, Request, UnitInfo};

/// Runs `rc-service [-e|--exists NAME] [-l|--list] NAME ACTION`; returns the exit code.
pub fn rc_service(args: &[String]) -> i32 {
    let args: Vec<&String> = args
        .iter()
        .filter(|a| {
            !matches!(
                a.as_str(),
                "-q" | "--quiet" | "-v" | "--verbose" | "-i" | "--ifexists"
            )
        })
        .collect();
    match args.first().map(|a| a.as_str()) {
        Some("-l" | "--list") => {
            for s in scripts() {
                println!("{s}");
            }
            0
        }
        Some("-e" | "--exists") => match args.get(1) {
            Some(n) => i32::from(!scripts().iter().any(|s| s == *n)),
            None => usage(),
        },
        Some(name) => match args.get(1) {
            Some(action) => service::act("rc-service", name, action, &[]),
            None => usage(),
        },
        None => usage(),
    }
}

fn usage() -> i32 {
    eprintln!("Usage: rc-service [options] service <args>...");
    1
}

fn scripts() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/etc/init.d")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') && !n.starts_with("functions"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// OpenRC's word for a unit's state.
pub fn openrc_state(u: &UnitInfo) -> &'static str {
    match u.active.as_str() {
        "active" | "reloading" => "started",
        "activating" => "starting",
        "deactivating" => "stopping",
        "failed" => "crashed",
        _ => "stopped",
    }
}

/// Runs `rc-status`: the services rehost-init runs, with OpenRC's states.
pub fn rc_status(_args: &[String]) -> i32 {
    let units = match ask("rc-status", &Request::Units { names: vec![] }) {
        Ok(Answer::Units { units, .. }) => units,
        Ok(_) => return 1,
        Err(c) => return c,
    };
    println!("Runlevel: default");
    for u in &units {
        println!(" {:<40} [ {} ]", u.name, openrc_state(u));
    }
    0
}
