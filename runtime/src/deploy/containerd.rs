//! A `ctr run` command line (containerd's own client).

use super::{CgroupSetting, Deployment};

/// The arguments of `ctr run` for `d`: the image, then the container's name.
pub(super) fn run_args(d: &Deployment) -> Vec<String> {
    let mut a: Vec<String> = vec!["ctr".into(), "run".into(), "-d".into()];
    for t in &d.tmpfs {
        a.push("--mount".into());
        a.push(format!("type=tmpfs,src=tmpfs,dst={t},options=nosuid:nodev"));
    }
    if d.cgroup == CgroupSetting::HostReadOnly {
        a.push("--mount".into());
        a.push("type=bind,src=/sys/fs/cgroup,dst=/sys/fs/cgroup,options=rbind:ro".into());
    }
    // containerd gives a cgroup v2 container its own cgroup namespace by default.
    for c in &d.cap_add {
        a.push("--cap-add".into());
        a.push(format!("CAP_{c}"));
    }
    a.push(d.image.clone());
    a.push(d.name.clone());
    a
}

/// What ctr cannot do that the other targets do.
pub(super) fn notes(d: &Deployment) -> Vec<String> {
    let mut notes = vec![format!(
        "first: ctr images pull {} (or ctr images import of the image's archive); \
         ctr task kill sends the image's stop signal",
        d.image
    )];
    if !d.ports.is_empty() {
        notes.push(
            "ctr gives the container a network namespace with loopback only: add --net-host \
             to serve its ports on the host's addresses"
                .into(),
        );
    }
    if !d.volumes.is_empty() {
        notes.push(format!(
            "ctr has no volumes: {} stay in the container's snapshot",
            d.volumes.join(", ")
        ));
    }
    notes
}
