//! Identity scrubbing: the server's SSH host keys are whited out (a default prestart hook
//! makes new ones on first boot), `/etc/machine-id` is emptied (a default prestart hook
//! fills it), and fstab, network interface configuration and udev persistent-net rules
//! are neutralised; the originals are kept under `/etc/rehost/original/`.

use super::items::{whiteout_of, Content, Item, Items};
use super::{exists, small_file};
use crate::entry::Kind;
use crate::inventory::fs::Root;
use crate::source::Source;
use rehost_init::units::FileSystem;

/// Adds the scrubbing to `items`; returns what was scrubbed, for the report.
pub fn scrub(source: &dyn Source, fs: &Root<'_>, items: &mut Items) -> Vec<String> {
    let mut scrubbed = Vec::new();
    if let Ok(names) = fs.read_dir("/etc/ssh") {
        let mut names = names;
        names.sort();
        for n in names.into_iter().filter(|n| n.starts_with("ssh_host_")) {
            items.insert(format!("/etc/ssh/.wh.{n}"), Item::Whiteout);
            scrubbed.push(format!(
                "/etc/ssh/{n} (not shipped; regenerated at first boot)"
            ));
        }
    }
    if exists(source, "/etc/machine-id") {
        items.insert(
            "/etc/machine-id".into(),
            Item::File(0o444, Content::Bytes(Vec::new())),
        );
        scrubbed.push("/etc/machine-id (emptied; regenerated at boot)".into());
    }
    if source
        .metadata(b"var/lib/dbus/machine-id")
        .is_ok_and(|m| m.kind == Kind::File)
    {
        items.insert(
            "/var/lib/dbus/machine-id".into(),
            Item::Symlink("/etc/machine-id".into()),
        );
        scrubbed.push("/var/lib/dbus/machine-id (now a link to /etc/machine-id)".into());
    }
    let mut keep_original =
        |path: &str, replacement: Option<&str>, items: &mut Items, why: &str| {
            if let Some(orig) = small_file(source, path) {
                items.insert(
                    format!("/etc/rehost/original{path}"),
                    Item::File(0o600, Content::Bytes(orig)),
                );
                match replacement {
                    Some(r) => items.insert(
                        path.to_string(),
                        Item::File(0o644, Content::Bytes(r.as_bytes().to_vec())),
                    ),
                    None => items.insert(whiteout_of(path), Item::Whiteout),
                };
                scrubbed.push(format!(
                    "{path} ({why}; original in /etc/rehost/original{path})"
                ));
            }
        };
    keep_original("/etc/fstab", Some("# rehost: the container runtime provides the mounts; the server's fstab is in\n# /etc/rehost/original/etc/fstab\n"), items, "neutralised");
    keep_original("/etc/network/interfaces", Some("# rehost: the container runtime configures the network; the server's file is in\n# /etc/rehost/original/etc/network/interfaces\nauto lo\niface lo inet loopback\n"), items, "neutralised");
    // Only a real directory is listed: through a symlinked one (`interfaces.d -> /etc`)
    // the files named would be others, and the whiteouts would lie under a symlink.
    let listed = |dir: &str| -> Vec<String> {
        if !super::is_dir(source, dir) {
            return Vec::new();
        }
        let mut v: Vec<String> = source
            .read_dir(dir.trim_start_matches('/').as_bytes())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| String::from_utf8(n).ok())
            .collect();
        v.sort();
        v.into_iter().map(|n| format!("{dir}/{n}")).collect()
    };
    for p in listed("/etc/network/interfaces.d") {
        keep_original(&p, None, items, "removed");
    }
    for p in listed("/etc/netplan")
        .into_iter()
        .filter(|p| p.ends_with(".yaml") || p.ends_with(".yml"))
    {
        keep_original(&p, None, items, "removed");
    }
    for p in listed("/etc/systemd/network")
        .into_iter()
        .filter(|p| p.ends_with(".network") || p.ends_with(".netdev") || p.ends_with(".link"))
    {
        keep_original(&p, None, items, "removed");
    }
    for p in listed("/etc/sysconfig/network-scripts")
        .into_iter()
        .filter(|p| {
            p.rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with("ifcfg-") && n != "ifcfg-lo")
        })
    {
        keep_original(&p, None, items, "removed");
    }
    for p in [
        "/etc/udev/rules.d/70-persistent-net.rules",
        "/etc/udev/rules.d/75-persistent-net-generator.rules",
    ] {
        keep_original(p, None, items, "removed");
    }

    scrubbed
}
