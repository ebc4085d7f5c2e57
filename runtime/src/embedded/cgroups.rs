//! The embedded engine's cgroups: putting a container's processes in them, and removing
//! them afterwards, on hosts with cgroup v1 hierarchies (legacy or hybrid).
//!
//! Placement is done here rather than by libcontainer, for speed. libcontainer moves the
//! process it forks by writing that pid to `cgroup.procs`. Every such write takes the
//! kernel's global threadgroup lock, which first waits for an RCU grace period: 7 to 25 ms
//! on this kind of host, more than everything else a `/bin/true` container costs (runc
//! pays it too). A thread that moves itself, by writing `0` to `tasks`, is exempt from that
//! lock. So the engine, single-threaded, moves itself into the container's cgroup in every
//! v1 hierarchy (`name=systemd` too, which libcontainer does not know), and the processes
//! it forks inherit them. libcontainer's own writes go to /dev/null, bound over those
//! `cgroup.procs` files in a private mount namespace that lives only while libcontainer
//! makes the process. Its resource limits (memory, pids, devices) still go to the real
//! files.
//!
//! On a host with cgroup v2 alone, libcontainer places the container's first process
//! itself. An exec there may have to go elsewhere: see [`Placement::join_exec`].

use super::EngineError;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// A mounted cgroup v1 hierarchy.
struct Hierarchy {
    mount: PathBuf,
    /// Its controllers and `name=` options, from the mount's super options.
    options: Vec<String>,
}

impl Hierarchy {
    fn has(&self, option: &str) -> bool {
        self.options.iter().any(|o| o == option)
    }
}

/// The v1 hierarchies mounted in this mount namespace.
fn hierarchies() -> Vec<Hierarchy> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| {
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL…] - FSTYPE SOURCE SUPEROPTS
            let (head, tail) = line.split_once(" - ")?;
            let mut tail = tail.split(' ');
            if tail.next()? != "cgroup" {
                return None;
            }
            let options = tail.nth(1)?.split(',').map(str::to_string).collect();
            let mount = unescape(head.split(' ').nth(4)?);
            Some(Hierarchy {
                mount: PathBuf::from(mount),
                options,
            })
        })
        .collect()
}

/// A mountinfo path: space, tab, newline and backslash are written as octal escapes.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's cgroup in `h`, from /proc/self/cgroup (`ID:CONTROLLERS:PATH`).
fn own_cgroup(h: &Hierarchy, proc_cgroup: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        let named = !controllers.is_empty() && controllers.split(',').all(|c| h.has(c));
        named.then(|| path.to_string())
    })
}

/// `cgroup` (a cgroupsPath, absolute) under `mount`.
fn under(mount: &Path, cgroup: &Path) -> PathBuf {
    mount.join(cgroup.strip_prefix("/").unwrap_or(cgroup))
}

/// Creates `dir` under the hierarchy mounted at `mount`. In a cpuset hierarchy each new
/// level gets its parent's cpus and memory nodes: a task cannot join an empty cpuset.
fn create(mount: &Path, dir: &Path, cpuset: bool) -> Result<(), EngineError> {
    let rel = dir.strip_prefix(mount).unwrap_or(dir);
    let mut at = mount.to_path_buf();
    for part in rel.components() {
        let parent = at.clone();
        at.push(part);
        match fs::create_dir(&at) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(EngineError::io(&at, e)),
        }
        if cpuset {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let mine = fs::read_to_string(at.join(file)).unwrap_or_default();
                if mine.trim().is_empty() {
                    let theirs = fs::read_to_string(parent.join(file)).unwrap_or_default();
                    fs::write(at.join(file), theirs.trim())
                        .map_err(|e| EngineError::io(at.join(file), e))?;
                }
            }
        }
    }
    Ok(())
}

/// Moves the calling thread into the cgroup whose `tasks` file this is. Writing `0` (the
/// caller itself) to `tasks` is the one move the kernel makes without its global lock.
fn move_self(tasks: &Path) -> Result<(), EngineError> {
    fs::write(tasks, "0").map_err(|e| EngineError::io(tasks, e))
}

/// The engine inside a container's cgroups, until it leaves them.
pub struct Placement {
    /// Where each hierarchy is mounted.
    mounts: Vec<PathBuf>,
    /// The container's cgroup in each hierarchy.
    dirs: Vec<PathBuf>,
    /// The `tasks` file of the cgroup the engine came from, in each hierarchy.
    back: Vec<PathBuf>,
}

impl Placement {
    /// Moves the engine into `cgroup` (a cgroupsPath) of every v1 hierarchy, creating it
    /// there. The engine must be single-threaded: only the calling thread moves, and the
    /// processes it forks inherit its cgroups. On hosts with only cgroup v2 this does
    /// nothing: libcontainer places the processes.
    pub fn join(cgroup: &Path) -> Result<Placement, EngineError> {
        let proc_cgroup = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| EngineError::io("/proc/self/cgroup", e))?;
        let mut placement = Placement {
            mounts: Vec::new(),
            dirs: Vec::new(),
            back: Vec::new(),
        };
        for h in hierarchies() {
            let dir = under(&h.mount, cgroup);
            let came_from = own_cgroup(&h, &proc_cgroup).unwrap_or_else(|| "/".into());
            if let Err(e) =
                create(&h.mount, &dir, h.has("cpuset")).and_then(|_| move_self(&dir.join("tasks")))
            {
                placement.leave();
                return Err(e);
            }
            placement
                .back
                .push(under(&h.mount, Path::new(&came_from)).join("tasks"));
            placement.dirs.push(dir);
            placement.mounts.push(h.mount);
        }
        Ok(placement)
    }

    /// [`Placement::join`], for a process exec'd into the container whose pid 1 is
    /// `init`. On a host with cgroup v2 alone, an init that delegates controllers to its
    /// children (systemd does, moving itself into `init.scope`) leaves the container's own
    /// cgroup closed to processes: the kernel's "no internal processes" rule, EBUSY, where
    /// libcontainer would write the exec'd process. Then the engine moves itself into
    /// pid 1's cgroup (as runc places such an exec) and libcontainer's write goes to
    /// /dev/null as in [`Placement::masked`]. Only a cgroup inside the container's own
    /// is taken from pid 1: the container chooses where it is, never where the engine goes.
    pub fn join_exec(cgroup: &Path, init: i32) -> Result<Placement, EngineError> {
        let mut placement = Placement::join(cgroup)?;
        let root = Path::new(CGROUP_ROOT);
        if !root.join("cgroup.controllers").is_file() {
            return Ok(placement);
        }
        let dir = under(root, cgroup);
        let delegated = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
        if delegated.trim().is_empty() {
            return Ok(placement);
        }
        let target = fs::read_to_string(format!("/proc/{init}/cgroup"))
            .ok()
            .and_then(|text| unified_cgroup(&text))
            .filter(|t| inside(cgroup, t));
        let Some(target) = target else {
            return Ok(placement);
        };
        let came_from = fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|text| unified_cgroup(&text))
            .unwrap_or_else(|| "/".into());
        if let Err(e) = move_self(&under(root, Path::new(&target)).join("cgroup.procs")) {
            placement.leave();
            return Err(e);
        }
        placement
            .back
            .push(under(root, Path::new(&came_from)).join("cgroup.procs"));
        placement.dirs.push(dir);
        placement.mounts.push(root.to_path_buf());
        Ok(placement)
    }

    /// Back to the cgroups the engine came from, so the container's can be removed once
    /// its processes are gone.
    pub fn leave(&self) {
        for tasks in &self.back {
            let _ = move_self(tasks);
        }
    }

    /// Runs `make` (libcontainer forking the container's first process) with its own
    /// writes to the container's `cgroup.procs` files going to /dev/null, in a private
    /// mount namespace left before returning. When that namespace cannot be set up,
    /// `make` runs as it is and libcontainer moves its process itself (slower, the same
    /// result).
    pub fn masked<T>(&self, make: impl FnOnce() -> T) -> Result<T, EngineError> {
        if self.dirs.is_empty() {
            return Ok(make());
        }
        let Ok(own) = fs::File::open("/proc/self/ns/mnt") else {
            return Ok(make());
        };
        // SAFETY: unshare affects only this (single-threaded) process.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            return Ok(make());
        }
        // SAFETY: back to the namespace we came from, by a descriptor opened above.
        let back = || match unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWNS) } {
            0 => Ok(()),
            _ => Err(EngineError::MountNamespace(std::io::Error::last_os_error())),
        };
        if self.mask().is_err() {
            back()?;
            return Ok(make());
        }
        let made = make();
        back()?;
        Ok(made)
    }

    /// In the private mount namespace: /dev/null over each `cgroup.procs`, on hierarchy
    /// mounts made private first, so that nothing propagates to the host's namespace.
    fn mask(&self) -> rustix::io::Result<()> {
        use rustix::mount::{mount_bind, mount_change, MountPropagationFlags};
        for mount in &self.mounts {
            mount_change(mount, MountPropagationFlags::PRIVATE)?;
        }
        for dir in &self.dirs {
            mount_bind("/dev/null", dir.join("cgroup.procs"))?;
        }
        Ok(())
    }
}

/// The cgroup v2 line of a /proc/PID/cgroup (`0::PATH`).
fn unified_cgroup(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// Whether `path` (a cgroup, as /proc/PID/cgroup names it) is `cgroup` or lies below it.
fn inside(cgroup: &Path, path: &str) -> bool {
    let path = Path::new(path);
    path.starts_with(cgroup)
        && path.components().all(|c| {
            matches!(
                c,
                std::path::Component::RootDir | std::path::Component::Normal(_)
            )
        })
}

/// The cgroup directory of `cgroup` (a cgroupsPath) in each hierarchy: the v1 ones and
/// the unified one of a hybrid host, mounted below /sys/fs/cgroup, or the one hierarchy
/// of a v2-only host, mounted there.
fn cgroup_dirs(cgroup: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(CGROUP_ROOT) else {
        return Vec::new();
    };
    std::iter::once(PathBuf::from(CGROUP_ROOT))
        .chain(rd.flatten().map(|h| h.path()))
        .map(|h| under(&h, cgroup))
        .filter(|d| d.is_dir())
        .collect()
}

/// Waits (a bounded moment) until no process is left in the container's cgroups.
pub fn wait_empty(cgroup: &Path) {
    fn busy(dir: &Path) -> bool {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        if !procs.trim().is_empty() {
            return true;
        }
        fs::read_dir(dir).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| e.file_type().is_ok_and(|t| t.is_dir()) && busy(&e.path()))
        })
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while cgroup_dirs(cgroup).iter().any(|d| busy(d)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Removes the container's cgroups in every hierarchy, deepest first: systemd inside
/// makes child cgroups libcontainer does not know.
pub fn remove(cgroup: &Path) {
    for dir in cgroup_dirs(cgroup) {
        crate::container::depth_first(&dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(
            unescape(r"/sys/fs/cgroup/cpu\054cpuacct"),
            "/sys/fs/cgroup/cpu,cpuacct"
        );
        assert_eq!(unescape(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(unescape(r"/plain\0"), r"/plain\0");
    }

    #[test]
    fn own_cgroup_matches_the_hierarchy_by_its_controllers() {
        let proc_cgroup = "9:name=systemd:/user/1\n2:cpu,cpuacct:/x\n4:memory:/m\n0::/u\n";
        let h = |opts: &str| Hierarchy {
            mount: PathBuf::from("/sys/fs/cgroup/h"),
            options: opts.split(',').map(str::to_string).collect(),
        };
        assert_eq!(
            own_cgroup(&h("rw,xattr,name=systemd"), proc_cgroup).as_deref(),
            Some("/user/1")
        );
        assert_eq!(
            own_cgroup(&h("rw,cpu,cpuacct"), proc_cgroup).as_deref(),
            Some("/x")
        );
        assert_eq!(
            own_cgroup(&h("rw,memory"), proc_cgroup).as_deref(),
            Some("/m")
        );
        assert_eq!(own_cgroup(&h("rw,pids"), proc_cgroup), None);
    }

    #[test]
    fn an_exec_follows_pid_1_only_inside_the_container_cgroup() {
        let c = Path::new("/rehost/web1");
        let text = "9:name=systemd:/\n0::/rehost/web1/init.scope\n";
        let init = unified_cgroup(text).unwrap();
        assert_eq!(init, "/rehost/web1/init.scope");
        assert!(inside(c, &init));
        assert!(inside(c, "/rehost/web1"));
        assert!(!inside(c, "/rehost/web10/init.scope"));
        assert!(!inside(c, "/rehost/web1/../../system.slice"));
        assert!(!inside(c, "/"));
        assert_eq!(unified_cgroup("4:memory:/m\n"), None);
    }
}
