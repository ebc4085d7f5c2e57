//! upstart: the jobs of /etc/init that have a `start on` stanza and are not switched
//! off by `manual` (in the job or in its `.override` file), and the SysV scripts its
//! `rc` job starts from the default runlevel's rcN.d (those that are not upstart jobs
//! in disguise: links to /lib/init/upstart-job).

use super::{sysv, Origin, Service};
use crate::inventory::fs::{config_lines, Root};

pub fn enabled(root: &Root, runlevel: &str) -> Vec<Service> {
    let mut out = jobs(root);
    for script in sysv::enabled(root, runlevel) {
        let disguised = script
            .file
            .as_deref()
            .is_some_and(|f| f.ends_with("/upstart-job"));
        if !disguised && !out.iter().any(|j| j.name == script.name) {
            out.push(script);
        }
    }
    out
}

fn jobs(root: &Root) -> Vec<Service> {
    let mut out = Vec::new();
    for name in root.list_names("etc/init") {
        let Some(job) = name.strip_suffix(".conf") else {
            continue;
        };
        let path = format!("etc/init/{name}");
        let Some(text) = root.read_text(&path) else {
            continue;
        };
        let Some(start_on) = stanza(&text, "start on") else {
            continue;
        };
        let overridden = root
            .read_text(format!("etc/init/{job}.override"))
            .is_some_and(|o| config_lines(&o).any(|l| l == "manual"));
        if overridden || config_lines(&text).any(|l| l == "manual") {
            continue;
        }
        out.push(Service {
            name: job.to_string(),
            kind: "job".into(),
            origin: Some(Origin::Upstart),
            file: Some(format!("/{path}")),
            enabled_by: vec![format!("/{path}: start on {start_on}")],
            starts_in: vec![start_on],
            ..Default::default()
        });
    }
    out
}

/// The value of a stanza, continuation lines joined (`start on (a\n and b)`).
fn stanza(text: &str, key: &str) -> Option<String> {
    let mut lines = config_lines(text);
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix(key) else {
            continue;
        };
        if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
            continue;
        }
        let mut value = rest.trim().to_string();
        // A condition spans lines until its parentheses balance.
        let depth = |s: &str| s.matches('(').count() as i64 - s.matches(')').count() as i64;
        while depth(&value) > 0 {
            match lines.next() {
                Some(more) => {
                    value.push(' ');
                    value.push_str(more);
                }
                None => break,
            }
        }
        return Some(value.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::fs::testing::MemSource;

    #[test]
    fn start_on_manual_and_overrides() {
        let src = MemSource::new()
            .file(
                "etc/init/ssh.conf",
                "description \"ssh\"\nstart on (filesystem\n          and net-device-up IFACE!=lo)\nexec /usr/sbin/sshd -D\n",
            )
            .file("etc/init/tty1.conf", "start on stopped rc RUNLEVEL=[2345]\nexec getty\n")
            .file("etc/init/tty1.override", "manual\n")
            .file("etc/init/mounted-x.conf", "task\nexec true\n");
        let services = enabled(&Root::new(&src), "2");
        assert_eq!(services.len(), 1);
        assert_eq!(
            services[0].starts_in,
            ["(filesystem and net-device-up IFACE!=lo)"]
        );
    }
}
