//! upstart: the jobs of /etc/init that have a `start on` stanza and are not switched off by
//! `manual` (in the job or in its `.override` file), and the SysV scripts its `rc` job
//! starts from the default runlevel's rcN.d (those that are not upstart jobs in disguise:
//! links to /lib/init/upstart-job).

use super::fs::FileSystem;
use super::init_system::config_lines;
use super::{sysv, Finding, Origin, Service};
use crate::units::upstart;

/// upstart's `DEFAULT_RUNLEVEL` from rc-sysinit.conf (2 on Ubuntu); `None` without it.
pub fn default_runlevel(fs: &dyn FileSystem) -> Option<String> {
    let text = fs.read_text("/etc/init/rc-sysinit.conf")?;
    let configured = config_lines(&text)
        .find_map(|l| l.strip_prefix("env DEFAULT_RUNLEVEL="))
        .map(|v| v.trim().to_string());
    configured.or(Some("2".into()))
}

/// The jobs and scripts upstart starts at boot.
pub fn enabled(fs: &dyn FileSystem, runlevel: &str, findings: &mut Vec<Finding>) -> Vec<Service> {
    let mut out = jobs(fs, findings);
    for script in sysv::enabled(fs, runlevel, findings) {
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

fn jobs(fs: &dyn FileSystem, findings: &mut Vec<Finding>) -> Vec<Service> {
    let mut out = Vec::new();
    for name in upstart::jobs(fs) {
        // The job with its .override applied, as upstart reads it.
        let job = match upstart::load(fs, &name) {
            Ok(job) => job,
            Err(e) => {
                findings.push(Finding::new(
                    e.path.clone(),
                    format!("{} (the job is skipped)", e.message),
                ));
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
            origin: Origin::Upstart,
            enabled_by: vec![format!("{path}: start on {start_on}")],
            file: Some(path),
            starts_in: vec![start_on],
        });
    }
    out
}
