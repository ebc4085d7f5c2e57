//! upstart's `initctl` and its short forms `start`, `stop`, `restart`, `reload` and
//! `status`, against rehost-init, with upstart's `JOB GOAL/STATE, process PID` lines.

use super::{ask, systemctl::job_code};
use crate::control::{Answer, Request, UnitInfo, Verb};

/// upstart's `goal/state` of a unit.
pub fn goal_state(u: &UnitInfo) -> String {
    let s = match u.active.as_str() {
        "active" | "reloading" => "start/running",
        "activating" => "start/starting",
        "deactivating" => "stop/stopping",
        _ => "stop/waiting",
    };
    match u.main_pid {
        Some(p) if s == "start/running" => format!("{} {s}, process {p}", u.name),
        _ => format!("{} {s}", u.name),
    }
}

fn status(names: &[String]) -> i32 {
    let units = match ask(
        "initctl",
        &Request::Units {
            names: names.to_vec(),
        },
    ) {
        Ok(Answer::Units { units, .. }) => units,
        Ok(_) => return 1,
        Err(c) => return c,
    };
    if !names.is_empty() && units.is_empty() {
        eprintln!("status: Unknown job: {}", names[0]);
        return 1;
    }
    for u in &units {
        println!("{}", goal_state(u));
    }
    0
}

/// Runs `initctl COMMAND [JOB]` or, when `command` is given, its short form.
pub fn run(command: Option<&str>, args: &[String]) -> i32 {
    let (cmd, rest) = match command {
        Some(c) => (c.to_string(), args),
        None => match args.split_first() {
            Some((c, rest)) => (c.clone(), rest),
            None => {
                eprintln!("initctl: missing command");
                return 1;
            }
        },
    };
    let names: Vec<String> = rest
        .iter()
        .filter(|a| !a.starts_with('-'))
        .cloned()
        .collect();
    match cmd.as_str() {
        "list" => status(&[]),
        "status" => status(&names),
        "start" | "stop" | "restart" | "reload" => {
            if names.is_empty() {
                eprintln!("{cmd}: missing job name");
                return 1;
            }
            let verb = Verb::parse(&cmd).expect("listed verbs");
            let code = match ask(
                "initctl",
                &Request::Job {
                    verb,
                    names: names.clone(),
                    wait: true,
                },
            ) {
                Ok(Answer::Jobs { results }) => job_code(verb, &results),
                Ok(_) => 1,
                Err(c) => c,
            };
            if code == 0 && cmd != "reload" {
                return status(&names);
            }
            code
        }
        other => {
            eprintln!("initctl: unknown command: {other}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstart_lines() {
        let mut u = UnitInfo {
            name: "ssh".into(),
            active: "active".into(),
            main_pid: Some(7),
            ..UnitInfo::default()
        };
        assert_eq!(goal_state(&u), "ssh start/running, process 7");
        u.active = "inactive".into();
        u.main_pid = None;
        assert_eq!(goal_state(&u), "ssh stop/waiting");
        u.active = "failed".into();
        assert_eq!(crate::tools::openrc::openrc_state(&u), "crashed");
    }
}
