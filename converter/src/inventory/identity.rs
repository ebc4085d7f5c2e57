//! Host-identity files: what makes a copy of this server believe it is the original
//! (its mounts, machine id, name, SSH host keys, network setup, cloud-init state).

use super::fs::Root;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentityFile {
    pub path: String,
    /// fstab, machine-id, hostname, ssh-host-key, network-config, persistent-net-rules,
    /// cloud-init, resolver.
    pub kind: String,
}

/// Files and directories by kind; `*` matches the names of one directory.
const KNOWN: &[(&str, &str)] = &[
    ("fstab", "etc/fstab"),
    ("machine-id", "etc/machine-id"),
    ("machine-id", "var/lib/dbus/machine-id"),
    ("hostname", "etc/hostname"),
    ("hostname", "etc/HOSTNAME"),
    ("ssh-host-key", "etc/ssh/ssh_host_*"),
    ("network-config", "etc/network/interfaces"),
    ("network-config", "etc/network/interfaces.d/*"),
    ("network-config", "etc/netplan/*"),
    ("network-config", "etc/sysconfig/network"),
    ("network-config", "etc/sysconfig/network-scripts/ifcfg-*"),
    ("network-config", "etc/NetworkManager/system-connections/*"),
    ("network-config", "etc/systemd/network/*"),
    ("network-config", "etc/conf.d/net"),
    (
        "persistent-net-rules",
        "etc/udev/rules.d/70-persistent-net.rules",
    ),
    (
        "persistent-net-rules",
        "etc/udev/rules.d/75-persistent-net-generator.rules",
    ),
    ("cloud-init", "etc/cloud/cloud.cfg"),
    ("cloud-init", "etc/cloud/cloud.cfg.d/*"),
    ("cloud-init", "var/lib/cloud"),
    ("resolver", "etc/resolv.conf"),
];

pub fn collect(root: &Root) -> Vec<IdentityFile> {
    let mut out = Vec::new();
    for (kind, pattern) in KNOWN {
        let paths = match pattern.rsplit_once('/') {
            Some((dir, name)) if name.contains('*') => {
                let prefix = name.trim_end_matches('*');
                root.list_names(dir)
                    .into_iter()
                    .filter(|n| n.starts_with(prefix) && !n.starts_with('.'))
                    .map(|n| format!("{dir}/{n}"))
                    .collect()
            }
            _ => vec![pattern.to_string()],
        };
        for path in paths {
            // lstat: a dangling resolv.conf link is still identity worth neutralising.
            if root.lstat(&path).is_some() {
                out.push(IdentityFile {
                    path: format!("/{path}"),
                    kind: kind.to_string(),
                });
            }
        }
    }
    out
}
