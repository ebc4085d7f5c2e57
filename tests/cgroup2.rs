//! The bundled runtime on a host with cgroup v2 alone, as most hosts run today. This
//! project's machines mount cgroups in hybrid mode (v1 controllers, plus cgroup2 beside
//! them), so each test runs every `rehost` command in a mount namespace of its own whose
//! /sys/fs/cgroup is one cgroup2 mount of the whole hierarchy ([`Rt::cgroup2`]): what
//! rehost, libcontainer and the systemd inside see there is what a v2-only host shows.
//!
//! What cannot be checked in that view: the memory and pids limits (and cpu, io). On a
//! hybrid host those controllers stay bound to their v1 hierarchies, mounted or not, so
//! the v2 hierarchy cannot offer them: a limit could not be set at all. On a v2-only host
//! the test checks them too.

mod common;

use common::runtime::{converted, Rt};
use common::scratch;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The cgroups a systemd makes (`init.scope`, `system.slice`…) at the root of the v2
/// hierarchy and in the runtime's shared `/rehost` parent (host paths): where a
/// container that escaped its own subtree, or a systemd that was not given one, would
/// write. Only those names: other programs of the host (a Docker, other tests'
/// containers under /rehost) make and remove their own cgroups meanwhile.
fn above_containers(v2: &Path) -> BTreeSet<PathBuf> {
    let units = [".scope", ".slice", ".service", ".mount", ".socket"];
    let made_by_systemd = |dir: &Path| -> Vec<PathBuf> {
        fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        units.iter().any(|u| name.ends_with(u))
                    })
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut all: BTreeSet<PathBuf> = made_by_systemd(v2).into_iter().collect();
    all.extend(made_by_systemd(&v2.join("rehost")));
    all
}

/// The cgroup v2 path of a /proc/PID/cgroup (its `0::PATH` line; the kernel lists the
/// v1 hierarchies too, mounted or not).
fn unified(proc_cgroup: &str) -> &str {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_default()
}

/// `rehost verify --json`'s report and exit code.
fn verify(rt: &Rt, image: &Path, mode: &str) -> (serde_json::Value, Option<i32>) {
    let out = rt.rehost(&[
        "verify",
        image.to_str().unwrap(),
        "--init",
        mode,
        "--port",
        "22",
        "--port",
        "80",
        "--json",
        "--timeout",
        "90",
    ]);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (report, out.status.code())
}

fn passed(report: &serde_json::Value, kind: &str, name: &str) -> bool {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["kind"] == kind && c["name"] == name && c["passed"] == true)
}

#[test]
fn debian_systemd_verifies_in_systemd_and_rehost_modes_on_cgroup_v2_and_leaves_no_cgroup() {
    let work = scratch();
    let image = converted("debian-systemd", work.path());
    let rt = Rt::cgroup2();
    let v2 = Rt::host_cgroup2();
    let before = above_containers(&v2);
    for mode in ["systemd", "rehost"] {
        let (report, code) = verify(&rt, &image, mode);
        assert_eq!(code, Some(0), "{mode} mode on cgroup v2: {report:#}");
        assert_eq!(report["mode"], mode);
        for svc in [
            "ssh.service",
            "cron.service",
            "rsyslog.service",
            "nginx.service",
        ] {
            assert!(passed(&report, "service", svc), "{mode}: {svc}: {report:#}");
        }
        assert!(passed(&report, "port", "22/tcp") && passed(&report, "port", "80/tcp"));
        assert!(passed(&report, "boot", mode), "{report:#}");
        assert!(passed(&report, "stop", "shutdown"), "{report:#}");
        assert!(passed(&report, "hooks", "poststop hooks"), "{report:#}");
        // The verify container is gone, its cgroup (and what its init made below it) too.
        let name = report["container"].as_str().unwrap();
        assert!(
            !v2.join("rehost").join(name).exists(),
            "{mode}: cgroup left"
        );
        assert_eq!(rt.rehost_ok(&["ps", "--json"]).trim(), "[]");
        assert!(rt.mounts().is_empty(), "{:?}", rt.mounts());
        assert_eq!(above_containers(&v2), before, "{mode}: written above");
    }
}

#[test]
fn systemd_gets_a_writable_cgroup_subtree_of_its_own_on_cgroup_v2_and_nothing_above() {
    let work = scratch();
    let image = converted("debian-systemd", work.path());
    let mut rt = Rt::cgroup2();
    let v2 = Rt::host_cgroup2();
    let before = above_containers(&v2);
    let name = rt.name("v2systemd");
    // The limits where the hierarchy offers their controllers (a v2-only host); see the
    // top of this file for why a hybrid host cannot.
    let offered = fs::read_to_string(v2.join("cgroup.controllers")).unwrap();
    let limits = ["memory", "pids"]
        .iter()
        .all(|c| offered.split_whitespace().any(|o| o == *c));
    let mut flags = vec!["--init", "systemd"];
    if limits {
        flags.extend(["--memory", "512m", "--pids-limit", "500"]);
    } else {
        eprintln!(
            "memory and pids limits not checked: this host's v1 hierarchies hold those \
             controllers (the cgroup v2 root offers `{}`)",
            offered.trim()
        );
    }
    rt.run_detached(&name, &image, &flags, &[]);
    let state = rt.wait_booted(&name);
    assert!(state == "running" || state == "degraded", "{state}");

    // Inside: a cgroup namespace rooted at the container's cgroup, mounted read-write,
    // where systemd moved itself into a cgroup of its own making.
    let (own, _) = rt.exec(&name, &["cat", "/proc/1/cgroup"]);
    assert_eq!(unified(&own), "/init.scope", "{own}");
    let (mounts, _) = rt.exec(&name, &["cat", "/proc/self/mountinfo"]);
    let cgroup_mount = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/sys/fs/cgroup"))
        .unwrap_or_else(|| panic!("no /sys/fs/cgroup: {mounts}"));
    assert!(
        cgroup_mount.contains(" - cgroup2 ")
            && cgroup_mount.split(' ').nth(5).unwrap().starts_with("rw"),
        "{cgroup_mount}"
    );
    // On the host, what systemd made lies in the container's own subtree, and nothing
    // above it changed.
    let own_dir = v2.join("rehost").join(&name);
    for made in ["init.scope", "system.slice/nginx.service"] {
        assert!(own_dir.join(made).is_dir(), "{made} not in {own_dir:?}");
    }
    assert_eq!(above_containers(&v2), before, "written above the container");
    if limits {
        let read = |f: &str| fs::read_to_string(own_dir.join(f)).unwrap();
        assert_eq!(read("memory.max").trim(), (512u64 << 20).to_string());
        assert_eq!(read("pids.max").trim(), "500");
    }

    // systemd on a v2-only host enables its controllers (memory, pids…) for its children
    // in its root cgroup, which then may hold no process: an exec still runs, beside
    // pid 1. Done here by hand with a controller the v1 hierarchies do not hold, when
    // systemd had none to enable.
    let delegated = own_dir.join("cgroup.subtree_control");
    if fs::read_to_string(&delegated).unwrap().trim().is_empty() {
        let free = fs::read_to_string(own_dir.join("cgroup.controllers")).unwrap();
        match free.split_whitespace().next() {
            Some(c) => fs::write(&delegated, format!("+{c}")).unwrap(),
            None => eprintln!(
                "exec into a delegated cgroup not checked: no controller is free of the \
                 v1 hierarchies on this host"
            ),
        }
    }
    let (cgroup, code) = rt.exec(&name, &["cat", "/proc/self/cgroup"]);
    assert_eq!(code, 0, "{cgroup}");
    assert_eq!(unified(&cgroup), "/init.scope", "{cgroup}");

    let stop: serde_json::Value =
        serde_json::from_str(&rt.rehost_ok(&["stop", &name, "--time", "60", "--json"])).unwrap();
    assert_eq!(stop["clean"], true, "systemd did not halt on SIGRTMIN+3");
    rt.rehost_ok(&["rm", &name]);
    rt.assert_clean("stop and rm on cgroup v2");
    assert_eq!(above_containers(&v2), before, "written above the container");
}
