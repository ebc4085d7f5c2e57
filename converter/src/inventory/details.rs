//! What each enabled service runs (command, user, type, restart policy), which of its
//! conditions fail, and what it pulls in, read by the one parser of service definitions,
//! `rehost-init`'s [`units`](rehost_init::units), through the source.

use super::fs::Root;
use super::services::{Origin, Service};
use crate::entry::Kind;
use rehost_init::units::systemd::{self as unit, Condition, Lookup, RestartPolicy};
use rehost_init::units::{openrc, sysv, upstart, ParseError};

/// Fills in each service's details from its definition. A unit file the parser
/// refuses is a finding and no service (systemd calls it `bad` and never starts it);
/// an alias link that the unit's `Alias=` does not name enables nothing.
pub fn fill(root: &Root, services: &mut Vec<Service>) {
    services.retain_mut(|s| match s.origin {
        Some(Origin::Systemd) => systemd_unit(root, s),
        Some(Origin::Sysv) | Some(Origin::SysvGenerator) => {
            sysv_script(root, s);
            true
        }
        Some(Origin::Openrc) => {
            openrc_script(root, s);
            true
        }
        Some(Origin::Upstart) => {
            upstart_job(root, s);
            true
        }
        None => true,
    });
}

fn finding(root: &Root, e: &ParseError) {
    let at = if e.line > 0 {
        format!("{}:{}", e.path, e.line)
    } else {
        e.path.clone()
    };
    root.finding(at, e.message.clone());
}

/// Returns false when the unit is not enabled after all.
fn systemd_unit(root: &Root, s: &mut Service) -> bool {
    let loaded = match unit::lookup(root, &s.name, &unit::LoadOptions::default()) {
        Ok(Lookup::Found(u)) => u,
        Ok(_) => return true,
        Err(e) => {
            finding(
                root,
                &ParseError {
                    message: format!("{} (the unit is bad and never starts)", e.message),
                    ..e
                },
            );
            return false;
        }
    };
    // Top-level links of another name enable a unit only as one of its Alias= names.
    let aliases = loaded.install().alias;
    let is_alias_link = |link: &str| {
        ![".wants/", ".requires/", ".upholds/"]
            .iter()
            .any(|d| link.contains(d))
    };
    s.enabled_by.retain(|link| {
        let name = link.rsplit('/').next().unwrap_or("");
        !is_alias_link(link) || aliases.iter().any(|a| a == name)
    });
    if s.enabled_by.is_empty() {
        return false;
    }
    if !s.enabled_by.iter().any(|l| is_alias_link(l)) {
        s.starts_in.retain(|t| t != "alias");
    }

    let section = loaded.unit_section();
    s.description = section.description.clone();
    s.failed_conditions = section
        .conditions
        .iter()
        .filter(|c| !c.trigger && !c.assert)
        .filter_map(|c| judge(root, c))
        .collect();
    match s.kind.as_str() {
        "service" => {
            let svc = loaded.service();
            s.command = svc.exec_start.first().map(|c| shell_words(&c.argv));
            s.user = svc.user.clone();
            s.service_type = Some(svc.service_type.as_str().into());
            s.restart = Some(restart(svc.restart).into());
        }
        "timer" => {
            let timer = loaded.timer();
            let mut when: Vec<String> = timer.on_calendar.clone();
            when.extend(
                timer
                    .on_boot
                    .iter()
                    .map(|d| format!("{}s after boot", d.as_secs())),
            );
            when.extend(
                timer
                    .on_unit_active
                    .iter()
                    .map(|d| format!("every {}s", d.as_secs())),
            );
            s.schedule = Some(if when.is_empty() {
                "no schedule".into()
            } else {
                when.join(", ")
            });
            s.command = Some(loaded.timer_target());
        }
        _ => {}
    }
    true
}

/// A condition that can be judged without running the server, judged on the source;
/// `Some(why)` when it fails. Paths of the runtime's own trees are not judged.
fn judge(root: &Root, c: &Condition) -> Option<String> {
    let path = c.value.as_str();
    let runtime = ["/proc", "/sys", "/dev", "/run"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    let holds = match c.kind.as_str() {
        "PathExists" if !runtime => root.exists(path),
        "PathIsDirectory" if !runtime => root.is_dir(path),
        "FileNotEmpty" if !runtime => root.stat(path).is_some_and(|e| e.size > 0),
        "DirectoryNotEmpty" if !runtime => !root.list(path).is_empty(),
        "FileIsExecutable" if !runtime => root
            .stat(path)
            .is_some_and(|e| e.kind == Kind::File && e.mode & 0o111 != 0),
        "PathIsSymbolicLink" if !runtime => root.read_link(path).is_some(),
        // The image runs in a container: the answer is known in advance.
        "Virtualization" => match path {
            "container" | "yes" | "1" | "true" => true,
            "no" | "0" | "false" => false,
            // A specific hypervisor or container manager: not judged.
            _ => return None,
        },
        _ => return None,
    };
    (holds == c.negate).then(|| {
        format!(
            "Condition{}={}{}",
            c.kind,
            if c.negate { "!" } else { "" },
            c.value
        )
    })
}

/// A command line for people: arguments holding spaces or shell syntax are quoted.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || ";&|<>'\"".contains(c)) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn restart(r: RestartPolicy) -> &'static str {
    match r {
        RestartPolicy::No => "no",
        RestartPolicy::Always => "always",
        RestartPolicy::OnSuccess => "on-success",
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::OnAbnormal => "on-abnormal",
        RestartPolicy::OnAbort => "on-abort",
        RestartPolicy::OnWatchdog => "on-watchdog",
    }
}

/// A SysV script runs itself with `start`; its LSB header says what it is.
fn sysv_script(root: &Root, s: &mut Service) {
    let Some(file) = s.file.clone() else {
        return;
    };
    s.command = Some(format!("{file} start"));
    s.service_type = Some("forking".into());
    s.restart = Some("no".into());
    if let Some(text) = root.read_text(&file) {
        match sysv::parse_lsb(&file, &text) {
            Ok(Some(lsb)) => s.description = lsb.short_description.or(lsb.description),
            Ok(None) => {}
            Err(e) => finding(root, &e),
        }
    }
}

fn openrc_script(root: &Root, s: &mut Service) {
    match openrc::load(root, &s.name) {
        Ok(script) => {
            s.description = script.description.clone();
            if let Some(command) = &script.command {
                let mut words = vec![command.clone()];
                words.extend(script.command_args.iter().cloned());
                s.command = Some(words.join(" "));
            } else if let Some(file) = &s.file {
                s.command = Some(format!("{file} start"));
            }
            s.user = script
                .command_user
                .as_deref()
                .map(|u| u.split(':').next().unwrap_or(u).to_string());
            // OpenRC expects a command to daemonize itself unless it backgrounds it
            // (command_background) or a supervisor keeps it in the foreground; a script
            // without a command runs its start() function once.
            s.service_type = Some(
                if script.command.is_none() {
                    "oneshot"
                } else if script.supervisor.is_some() || script.command_background {
                    "simple"
                } else {
                    "forking"
                }
                .into(),
            );
            s.restart = Some(
                if script.supervisor.as_deref() == Some("supervise-daemon") {
                    "always"
                } else {
                    "no"
                }
                .into(),
            );
        }
        Err(e) => finding(root, &e),
    }
}

fn upstart_job(root: &Root, s: &mut Service) {
    match upstart::load(root, &s.name) {
        Ok(job) => {
            s.description = job.description.clone();
            s.command = match &job.main {
                Some(upstart::Process::Exec(line)) => Some(line.clone()),
                Some(upstart::Process::Script(_)) => Some("(a shell script)".into()),
                None => None,
            };
            s.user = job.setuid.clone();
            // In systemd's words, which every init system's services are given in.
            s.service_type = Some(
                match (job.task, job.expect.as_deref()) {
                    (true, _) => "oneshot",
                    (false, Some("fork") | Some("daemon")) => "forking",
                    _ => "simple",
                }
                .into(),
            );
            s.restart = Some(if job.respawn { "always" } else { "no" }.into());
        }
        Err(e) => finding(root, &e),
    }
}
