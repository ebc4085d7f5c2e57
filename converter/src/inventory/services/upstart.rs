//! upstart: the jobs of /etc/init that have a `start on` stanza and are not switched
//! off by `manual` (in the job or in its `.override` file), and the SysV scripts its
//! `rc` job starts from the default runlevel's rcN.d (those that are not upstart jobs
//! in disguise: links to /lib/init/upstart-job).

use super::{sysv, Origin, Service};
use crate::inventory::details::SourceFs;
use crate::inventory::fs::Root;
use rehost_init::units::upstart;

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
    let fs = SourceFs::new(root);
    let mut out = Vec::new();
    for name in upstart::jobs(&fs) {
        // The job with its .override applied, as upstart reads it.
        let job = match upstart::load(&fs, &name) {
            Ok(job) => job,
            Err(e) => {
                root.finding(
                    e.path.clone(),
                    format!("{} (the job is skipped)", e.message),
                );
                continue;
            }
        };
        let Some(start_on) = job.start_on.filter(|_| !job.manual) else {
            continue;
        };
        let start_on = start_on.split_whitespace().collect::<Vec<_>>().join(" ");
        let path = format!("/etc/init/{name}.conf");
        out.push(Service {
            name,
            kind: "job".into(),
            origin: Some(Origin::Upstart),
            enabled_by: vec![format!("{path}: start on {start_on}")],
            file: Some(path),
            starts_in: vec![start_on],
            ..Default::default()
        });
    }
    out
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
