//! SysV init: the scripts linked as `S<NN><name>` into the default runlevel's rcN.d.

use super::{Origin, Service};
use crate::inventory::fs::{base_name, show, Root};

/// Where init scripts live: Debian's /etc/init.d, Red Hat's /etc/rc.d/init.d.
pub const SCRIPT_DIRS: &[&str] = &["etc/init.d", "etc/rc.d/init.d"];

/// One `S` link of a runlevel directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartLink {
    /// The script's name (the link target's base name).
    pub name: String,
    /// The link itself, for people (`/etc/rc2.d/S02ssh`).
    pub link: String,
    /// The script the link points to, resolved inside the source.
    pub script: Option<String>,
}

/// The runlevel directory of `runlevel` (`etc/rc2.d` or `etc/rc.d/rc3.d`).
pub fn runlevel_dir(root: &Root, runlevel: &str) -> Option<String> {
    [
        format!("etc/rc{runlevel}.d"),
        format!("etc/rc.d/rc{runlevel}.d"),
    ]
    .into_iter()
    .find(|d| root.is_dir(d))
}

/// The start links of a runlevel, in start order.
pub fn start_links(root: &Root, runlevel: &str) -> Vec<StartLink> {
    let Some(dir) = runlevel_dir(root, runlevel) else {
        return Vec::new();
    };
    let mut links = Vec::new();
    for name in root.list(&dir) {
        // S, two digits, then the name; anything else (README, K links) does not start.
        if name.len() < 4 || name[0] != b'S' || !name[1..3].iter().all(u8::is_ascii_digit) {
            continue;
        }
        let path = [dir.as_bytes(), b"/", &name].concat();
        let target = root.read_link(&path);
        let script_name = match &target {
            Some(t) => String::from_utf8_lossy(base_name(t)).into_owned(),
            None => String::from_utf8_lossy(&name[3..]).into_owned(),
        };
        let script = root.resolve(&path, true);
        if script.is_none() {
            root.finding(
                show(&path),
                "start link to a script that does not exist (skipped)",
            );
            continue;
        }
        links.push(StartLink {
            name: script_name,
            link: show(&path),
            script: script.map(|s| show(&s)),
        });
    }
    links
}

/// The scripts the default runlevel starts.
pub fn enabled(root: &Root, runlevel: &str) -> Vec<Service> {
    let mut out: Vec<Service> = Vec::new();
    for link in start_links(root, runlevel) {
        if let Some(existing) = out.iter_mut().find(|s| s.name == link.name) {
            existing.enabled_by.push(link.link);
            continue;
        }
        out.push(Service {
            name: link.name,
            kind: "script".into(),
            origin: Some(Origin::Sysv),
            file: link.script,
            enabled_by: vec![link.link],
            starts_in: vec![format!("runlevel {runlevel}")],
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
    fn start_links_of_the_runlevel_only() {
        let src = MemSource::new()
            .file("etc/init.d/ssh", "#!/bin/sh\n")
            .file("etc/init.d/cron", "#!/bin/sh\n")
            .link("etc/rc2.d/S02ssh", "../init.d/ssh")
            .link("etc/rc2.d/K01cron", "../init.d/cron")
            .link("etc/rc2.d/S03gone", "../init.d/gone")
            .file("etc/rc2.d/README", "")
            .link("etc/rc3.d/S01cron", "../init.d/cron");
        let root = Root::new(&src);
        let services = enabled(&root, "2");
        let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["ssh"]);
        assert_eq!(services[0].file.as_deref(), Some("/etc/init.d/ssh"));
        assert_eq!(
            root.take_findings().len(),
            1,
            "the dangling link is reported"
        );
    }
}
