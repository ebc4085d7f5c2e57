//! Scheduled work: the system crontab, /etc/cron.d, the periodic directories, users'
//! crontabs (Debian, Red Hat and busybox spool layouts) and systemd timers.

use super::fs::{show, Root};
use super::services::Service;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    /// The file that schedules it.
    pub from: String,
    /// crontab, cron.d, periodic, user-crontab or timer.
    pub kind: String,
    /// The cron schedule (`*/5 * * * *`, `@reboot`), `daily` for the periodic
    /// directories, the timer's calendar for a timer.
    pub schedule: String,
    pub user: Option<String>,
    pub command: String,
}

/// Where each layout keeps users' crontabs (the file name is the user).
const USER_SPOOLS: &[&str] = &[
    "var/spool/cron/crontabs",
    "var/spool/cron/tabs",
    "var/spool/cron",
    "etc/crontabs",
];

pub fn collect(root: &Root, services: &[Service]) -> Vec<Job> {
    let mut jobs = Vec::new();
    if let Some(text) = root.read_text("etc/crontab") {
        jobs.extend(parse(&text, "/etc/crontab", "crontab", None));
    }
    for name in root.list_names("etc/cron.d") {
        // cron ignores names with dots and editor leftovers.
        if name.starts_with('.') || name.contains('.') || name.ends_with('~') {
            continue;
        }
        let path = format!("etc/cron.d/{name}");
        if let Some(text) = root.read_text(&path) {
            jobs.extend(parse(&text, &format!("/{path}"), "cron.d", None));
        }
    }
    for period in ["hourly", "daily", "weekly", "monthly"] {
        let dir = format!("etc/cron.{period}");
        for name in root.list_names(&dir) {
            if name.starts_with('.') {
                continue;
            }
            jobs.push(Job {
                from: format!("/{dir}"),
                kind: "periodic".into(),
                schedule: period.into(),
                user: Some("root".into()),
                command: format!("/{dir}/{name}"),
            });
        }
    }
    // var/spool/cron holds Red Hat's crontabs itself and only directories on Debian,
    // so taking the regular files of each spool never counts one twice.
    for spool in USER_SPOOLS {
        for name in root.list(spool) {
            let path = [spool.as_bytes(), b"/", &name].concat();
            if !root.is_file(&path) {
                continue;
            }
            let user = String::from_utf8_lossy(&name).into_owned();
            if let Some(text) = root.read_text(&path) {
                jobs.extend(parse(&text, &show(&path), "user-crontab", Some(&user)));
            }
        }
    }
    for timer in services.iter().filter(|s| s.kind == "timer") {
        jobs.push(Job {
            from: timer.file.clone().unwrap_or_default(),
            kind: "timer".into(),
            schedule: timer
                .schedule
                .clone()
                .unwrap_or_else(|| "see the timer".into()),
            user: None,
            command: timer
                .command
                .clone()
                .unwrap_or_else(|| timer.name.replace(".timer", ".service")),
        });
    }
    jobs
}

/// The jobs of one crontab; system crontabs (no `user` given) have a user field.
pub fn parse(text: &str, from: &str, kind: &str, user: Option<&str>) -> Vec<Job> {
    let mut jobs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or("");
        // Environment settings: NAME=value.
        if first.contains('=') && !first.starts_with(|c: char| c.is_ascii_digit() || c == '*') {
            continue;
        }
        let fields_in_schedule = if first.starts_with('@') { 1 } else { 5 };
        let mut rest = line;
        let mut schedule = Vec::new();
        for _ in 0..fields_in_schedule {
            let trimmed = rest.trim_start();
            let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
            schedule.push(&trimmed[..end]);
            rest = &trimmed[end..];
        }
        let (job_user, command) = match user {
            Some(u) => (u.to_string(), rest.trim()),
            None => {
                let trimmed = rest.trim_start();
                let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
                (trimmed[..end].to_string(), trimmed[end..].trim())
            }
        };
        if command.is_empty() || schedule.iter().any(|f| f.is_empty()) {
            continue;
        }
        jobs.push(Job {
            from: from.to_string(),
            kind: kind.to_string(),
            schedule: schedule.join(" "),
            user: Some(job_user),
            command: command.to_string(),
        });
    }
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_and_user_crontab_lines() {
        let system = "SHELL=/bin/sh\n# m h dom mon dow user command\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\n@reboot www-data /srv/app/start\n";
        let jobs = parse(system, "/etc/crontab", "crontab", None);
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].schedule, "17 * * * *");
        assert_eq!(jobs[0].user.as_deref(), Some("root"));
        assert_eq!(
            jobs[0].command,
            "cd / && run-parts --report /etc/cron.hourly"
        );
        assert_eq!(jobs[1].schedule, "@reboot");
        let user = parse(
            "*/5 * * * * /home/app/bin/poll --quiet\n",
            "x",
            "user-crontab",
            Some("app"),
        );
        assert_eq!(user[0].command, "/home/app/bin/poll --quiet");
        assert_eq!(user[0].user.as_deref(), Some("app"));
    }
}
