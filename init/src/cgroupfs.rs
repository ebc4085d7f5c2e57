//! systemd as pid 1 needs a cgroup2 tree it may write. On a cgroup v2 host, Docker and
//! containerd give a container a cgroup namespace of its own but mount /sys/fs/cgroup
//! read-only (unless the container is privileged), and systemd then stops with
//! "Failed to create /init.scope control group: Read-only file system".
//!
//! Inside a private cgroup namespace the mount shows only the container's own subtree,
//! which the engine removes with the container: making it writable lets systemd manage
//! its own units there and nothing above. It takes CAP_SYS_ADMIN, which `rehost deploy`
//! asks for on cgroup v2 targets; without it, this says what is missing and systemd gets
//! the mount as it is.

use std::ffi::CString;

const CGROUP: &str = "/sys/fs/cgroup";
/// `CGROUP2_SUPER_MAGIC` of statfs(2).
const CGROUP2_MAGIC: i64 = 0x6367_7270;

/// What was done, for the log; `None` when nothing needed doing.
pub fn make_writable_for_systemd() -> Option<String> {
    let path = CString::new(CGROUP).expect("no NUL");
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut fs) } != 0 || fs.f_type as i64 != CGROUP2_MAGIC {
        return None;
    }
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut vfs) } != 0 || vfs.f_flag & libc::ST_RDONLY == 0 {
        return None;
    }
    // Only our own subtree: with the host's cgroup namespace, the mount is the host's
    // whole tree, and it stays read-only.
    let own_namespace = std::fs::read_to_string("/proc/self/cgroup")
        .map(|c| in_own_namespace(&c))
        .unwrap_or(false);
    if !own_namespace {
        return Some(format!(
            "{CGROUP} is read-only and not in a cgroup namespace of the container's own: \
             systemd may not start (run the container with --cgroupns=private)"
        ));
    }
    // Keep the mount's other flags, as mount -o remount,rw does.
    let mut flags = libc::MS_REMOUNT;
    for (st, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if vfs.f_flag & st != 0 {
            flags |= ms;
        }
    }
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            path.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    Some(if rc == 0 {
        format!("{CGROUP}: made the container's own cgroup2 tree writable for systemd")
    } else {
        format!(
            "{CGROUP} is read-only and cannot be made writable ({}): systemd needs \
             CAP_SYS_ADMIN on a cgroup v2 host (docker run --cap-add SYS_ADMIN)",
            std::io::Error::last_os_error()
        )
    })
}

/// Whether `/proc/self/cgroup` puts us at the root of a cgroup2 namespace (`0::/`).
fn in_own_namespace(proc_self_cgroup: &str) -> bool {
    proc_self_cgroup.lines().any(|l| l.trim() == "0::/")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_root_of_a_namespace_is_recognised() {
        assert!(super::in_own_namespace("0::/\n"));
        assert!(super::in_own_namespace("1:name=systemd:/x\n0::/\n"));
        assert!(!super::in_own_namespace("0::/docker/abc\n"));
        assert!(!super::in_own_namespace(""));
    }
}
