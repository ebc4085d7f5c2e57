//! End-to-end tests of the bundled runtime: real converted Debian servers booted with
//! `rehost run` on the embedded engine (and the same bundles under runc), hostile and
//! corrupt images, and nothing left behind.

mod common;

use common::runtime::{converted, free_port, listening_ports, Rt};
use common::{rehost_cmd, scratch};
use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

#[test]
fn systemd_mode_boots_debian_systemd_with_its_services() {
    boots_debian_systemd(None, "embedded");
}

/// The same bundles under runc: only `run` names the engine; exec, ps, stop and rm find
/// it in the container's state.
#[test]
fn the_same_systemd_bundle_boots_under_runc() {
    boots_debian_systemd(Some("runc"), "runc");
}

/// A systemd-mode container of debian-systemd, run detached (with `--oci-runtime
/// oci_runtime` if given): it boots with its services, logs its boot, stops cleanly and
/// leaves nothing behind.
fn boots_debian_systemd(oci_runtime: Option<&str>, engine: &str) {
    let work = scratch();
    let image = converted("debian-systemd", work.path());
    let mut rt = Rt::new();
    let name = rt.name("systemd");
    let mut args = vec![
        "run",
        image.to_str().unwrap(),
        "--init",
        "systemd",
        "-d",
        "--name",
        &name,
    ];
    if let Some(r) = oci_runtime {
        args.extend(["--oci-runtime", r]);
    }
    let printed = rt.rehost_ok(&args);
    assert_eq!(printed.trim(), name);

    let state = rt.wait_booted(&name);
    let (failed, _) = rt.exec(&name, &["systemctl", "--failed", "--no-legend", "--plain"]);
    assert!(
        state == "running" || state == "degraded",
        "is-system-running: {state}; failed units:\n{failed}"
    );
    // The image's own systemd is pid 1.
    let (comm, _) = rt.exec(&name, &["cat", "/proc/1/comm"]);
    assert_eq!(comm, "systemd");
    // `systemctl` is a link to rehost-init in every image; under systemd it runs the image's own.
    let (version, code) = rt.exec(&name, &["systemctl", "--version"]);
    assert!(
        code == 0 && version.starts_with("systemd "),
        "{code}: {version}"
    );
    for unit in ["ssh", "cron", "rsyslog", "nginx"] {
        let (active, _) = rt.exec(&name, &["systemctl", "is-active", unit]);
        assert_eq!(active, "active", "{unit} is {active}");
    }
    // systemd writes its boot only to a console: the log has it, and the services'
    // journal, which journald forwards there (rehost's drop-in).
    let log = rt.rehost_ok(&["logs", &name]);
    assert!(log.contains("Welcome to Debian GNU/Linux 12"), "{log}");
    assert!(log.contains("Reached target multi-user.target"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains(" sshd[") && l.contains("Server listening on")),
        "{log}"
    );
    let ports = listening_ports(&rt, &name);
    assert!(ports.contains(&22) && ports.contains(&80), "{ports:?}");

    let ps: serde_json::Value = serde_json::from_str(&rt.rehost_ok(&["ps", "--json"])).unwrap();
    let me = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name.as_str())
        .unwrap();
    assert_eq!(me["status"], "running");
    assert_eq!(me["mode"], "systemd");
    assert_eq!(me["engine"], engine);
    // Its systemd has a cgroup of its own in the name=systemd hierarchy, not the host's.
    let pid1 = me["pid"].as_i64().unwrap();
    let cgroups = fs::read_to_string(format!("/proc/{pid1}/cgroup")).unwrap();
    let named = cgroups
        .lines()
        .find_map(|l| l.split_once(":name=systemd:"))
        .map(|(_, p)| p.to_string());
    if let Some(path) = named {
        assert!(
            path.starts_with(&format!("/rehost/{name}")),
            "systemd's cgroup: {path}"
        );
    }

    let stop: serde_json::Value =
        serde_json::from_str(&rt.rehost_ok(&["stop", &name, "--time", "60", "--json"])).unwrap();
    assert_eq!(stop["clean"], true, "systemd did not halt on SIGRTMIN+3");
    let ps: serde_json::Value = serde_json::from_str(&rt.rehost_ok(&["ps", "--json"])).unwrap();
    assert_eq!(ps[0]["status"], "exited");
    assert!(rt.mounts().is_empty(), "mounts left: {:?}", rt.mounts());
    assert!(rt.cgroups().is_empty(), "cgroups left: {:?}", rt.cgroups());

    rt.rehost_ok(&["rm", &name]);
    assert_eq!(rt.rehost_ok(&["ps", "--json"]).trim(), "[]");
    assert!(!rt.root().join("containers").join(&name).exists());
}

#[test]
fn a_command_runs_attached_isolated_and_its_exit_code_comes_back() {
    let work = scratch();
    let image = converted("debian-sysvinit", work.path());
    let mut rt = Rt::new();
    let name = rt.name("cmd");
    let script = "hostname; cat /sys/class/net/lo/flags; ls /dev; exit 7";
    let out = rt.rehost(&[
        "run",
        "--rm",
        "--init",
        "none",
        "--name",
        &name,
        image.to_str().unwrap(),
        "/bin/sh",
        "-c",
        script,
    ]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(name.as_str()));
    // lo is up (IFF_UP is bit 0).
    let flags = u32::from_str_radix(lines.next().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1);
    // A private /dev with the standard devices, none of the host's disks or terminals.
    let devs: Vec<&str> = lines.collect();
    for d in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm",
    ] {
        assert!(devs.contains(&d), "/dev lacks {d}: {devs:?}");
    }
    assert!(
        !devs.iter().any(|d| d.starts_with("vd")
            || d.starts_with("sd")
            || d.starts_with("tty") && *d != "tty"),
        "{devs:?}"
    );
    assert!(rt.mounts().is_empty());
    assert!(rt.cgroups().is_empty());
    assert!(
        !rt.root().join("containers").join(&name).exists(),
        "--rm left the container"
    );
}

#[test]
fn without_overlayfs_the_layers_are_copied_and_the_cache_stays_pristine() {
    let work = scratch();
    let image = converted("debian-sysvinit", work.path());
    let mut rt = Rt::new();
    let a = rt.name("overlay");
    let b = rt.name("copy");
    let write = "echo changed > /etc/motd; cat /etc/debian_version";
    let img = image.to_str().unwrap();
    let on = rt.rehost_ok(&[
        "run", "--init", "none", "--name", &a, img, "/bin/sh", "-c", write,
    ]);
    let off = rt.rehost_ok(&[
        "run",
        "--no-overlay",
        "--init",
        "none",
        "--name",
        &b,
        img,
        "/bin/sh",
        "-c",
        write,
    ]);
    assert!(on.starts_with("12."), "{on}");
    assert_eq!(on, off);
    let state = |n: &str| -> serde_json::Value {
        let s = fs::read(rt.root().join("containers").join(n).join("state.json")).unwrap();
        serde_json::from_slice(&s).unwrap()
    };
    assert_eq!(state(&a)["rootfs"], "overlay");
    assert_eq!(state(&b)["rootfs"], "copy");
    // The write went to the container's upper layer, never into the shared cache.
    assert_eq!(
        fs::read_to_string(rt.root().join("containers").join(&a).join("upper/etc/motd")).unwrap(),
        "changed\n"
    );
    // The cached layer that holds /etc/motd (the server's, not the rehost layer).
    let cached = fs::read_dir(rt.root().join("layers/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("etc/motd").exists())
        .expect("a cached layer with /etc/motd");
    assert_ne!(
        fs::read_to_string(cached.join("etc/motd")).unwrap(),
        "changed\n"
    );
}

/// Writes a one-layer OCI layout holding `tar` uncompressed; gives the layer digest.
fn layout_with_layer(dir: &Path, tar: &[u8]) -> String {
    let sha = |b: &[u8]| format!("sha256:{}", hex::encode(Sha256::digest(b)));
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let put = |b: &[u8]| {
        let d = sha(b);
        fs::write(dir.join("blobs/sha256").join(&d[7..]), b).unwrap();
        (d, b.len())
    };
    let (layer, lsize) = put(tar);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/pwn"]},
        "rootfs": {"type": "layers", "diff_ids": [layer]},
    });
    let (cfg, csize) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": csize},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": lsize}],
    });
    let (man, msize) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man, "size": msize}]});
    fs::write(dir.join("index.json"), index.to_string()).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    layer
}

/// A tar entry with a raw name, as an attacker writes it.
fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    name: &str,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(0o755);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

#[test]
fn a_hostile_layer_writes_nothing_outside_the_rootfs() {
    let work = scratch();
    let outside = work.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("host-file"), "host").unwrap();
    let o = outside.to_str().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    use tar::EntryType::{Link, Regular, Symlink};
    raw_entry(&mut b, Symlink, "escape", o, b"");
    raw_entry(
        &mut b,
        Regular,
        "escape/pwned",
        "",
        b"through an absolute link",
    );
    raw_entry(&mut b, Symlink, "climb", "../../../../../../../../..", b"");
    raw_entry(
        &mut b,
        Regular,
        &format!("climb{o}/pwned2"),
        "",
        b"through a relative link",
    );
    raw_entry(&mut b, Regular, "pwn", "", b"#!/bin/sh\n");
    raw_entry(&mut b, Link, "escape/host-file", "/pwn", b"");
    let image = work.path().join("hostile.oci");
    layout_with_layer(&image, &b.into_inner().unwrap());

    let mut rt = Rt::new();
    for flag in [None, Some("--no-overlay")] {
        let name = rt.name("hostile");
        let mut args = vec!["run", "--init", "none", "--name", &name];
        args.extend(flag);
        args.push(image.to_str().unwrap());
        // Whether it runs (/pwn is no program) or not, the host is untouched.
        let out = rt.rehost(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("layer sha256:"),
            "the layer was refused: {err}"
        );
        let left: Vec<_> = fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["host-file"], "{flag:?}");
        assert_eq!(
            fs::read_to_string(outside.join("host-file")).unwrap(),
            "host"
        );
    }
    // In the cache, the writes landed inside the layer, where the links point in the root.
    let layer = fs::read_dir(rt.root().join("layers/sha256"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(layer
        .join(o.trim_start_matches('/'))
        .join("pwned")
        .is_file());
    assert!(layer
        .join(o.trim_start_matches('/'))
        .join("pwned2")
        .is_file());
}

#[test]
fn a_layer_that_does_not_match_its_digest_is_refused_and_not_cached() {
    let work = scratch();
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(&mut b, tar::EntryType::Regular, "file", "", b"original");
    let image = work.path().join("corrupt.oci");
    let digest = layout_with_layer(&image, &b.into_inner().unwrap());
    let blob = image.join("blobs/sha256").join(&digest[7..]);
    let mut bytes = fs::read(&blob).unwrap();
    let at = bytes.windows(8).position(|w| w == b"original").unwrap();
    bytes[at] = b'O';
    fs::write(&blob, bytes).unwrap();

    let mut rt = Rt::new();
    let name = rt.name("corrupt");
    let out = rt.rehost(&[
        "run",
        "--init",
        "none",
        "--name",
        &name,
        image.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("layer {digest}: blob digest is sha256:")),
        "{err}"
    );
    let cached: Vec<_> = fs::read_dir(rt.root().join("layers/sha256"))
        .unwrap()
        .collect();
    assert!(cached.is_empty(), "a corrupt layer was cached");
    assert!(
        !rt.root().join("containers").join(&name).exists(),
        "a failed start left state"
    );
}

#[test]
fn verify_passes_on_debian_systemd_in_rehost_mode_and_leaves_nothing_behind() {
    let work = scratch();
    let image = converted("debian-systemd", work.path());
    let rt = Rt::new();
    let junit = work.path().join("verify.xml");
    let out = rt.rehost(&[
        "verify",
        image.to_str().unwrap(),
        "--port",
        "22",
        "--port",
        "80",
        "--json",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["passed"], true);
    let passed = |kind: &str, name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == kind && c["name"] == name && c["passed"] == true)
    };
    for svc in [
        "ssh.service",
        "cron.service",
        "rsyslog.service",
        "nginx.service",
    ] {
        assert!(
            passed("service", svc),
            "{svc} not checked active: {report:#}"
        );
    }
    assert!(passed("port", "22/tcp") && passed("port", "80/tcp"));
    assert!(passed("boot", "rehost") && passed("stop", "shutdown"));
    // What rehost's layer promises: the hooks ran, the host identity is the container's.
    assert!(passed("hooks", "prestart hooks") && passed("hooks", "poststop hooks"));
    assert!(passed("identity", "/etc/machine-id"));
    assert!(passed("identity", "/etc/ssh/ssh_host_ed25519_key.pub"));
    assert!(passed("reap", "orphaned zombie"));
    let xml = fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("failures=\"0\"") && xml.contains("name=\"nginx.service\""),
        "{xml}"
    );
    // The same image under its own systemd: the poststop hooks run there too (convert
    // installs them for every init the image has, not only the mode it was made for).
    let (own, code) = verify_report(&rt, &[image.to_str().unwrap(), "--init", "systemd"]);
    assert_eq!(code, Some(0), "{own:#}");
    assert_eq!(check(&own, "hooks", "poststop hooks")["passed"], true);
    // The verify container is gone: no state, mounts or cgroups.
    assert_eq!(rt.rehost_ok(&["ps", "--json"]).trim(), "[]");
    assert!(rt.mounts().is_empty(), "{:?}", rt.mounts());
    let name = report["container"].as_str().unwrap();
    for h in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        assert!(
            !h.path().join("rehost").join(name).exists(),
            "cgroup left in {:?}",
            h.path()
        );
    }
}

#[test]
fn a_service_that_always_fails_fails_verify_naming_it_with_its_log() {
    let work = scratch();
    let image = converted("debian-systemd", work.path());
    // A second layer: a broken service, enabled, as an operator might have left it.
    let mut b = tar::Builder::new(Vec::new());
    let unit = b"[Unit]\nDescription=always fails\n[Service]\nExecStart=/bin/sh -c 'echo broken-on-purpose >&2; exit 3'\n[Install]\nWantedBy=multi-user.target\n";
    raw_entry(
        &mut b,
        tar::EntryType::Regular,
        "etc/systemd/system/broken.service",
        "",
        unit,
    );
    raw_entry(
        &mut b,
        tar::EntryType::Symlink,
        "etc/systemd/system/multi-user.target.wants/broken.service",
        "/etc/systemd/system/broken.service",
        b"",
    );
    common::runtime::add_layer(&image, &b.into_inner().unwrap());

    let rt = Rt::new();
    // systemd runs every enabled unit, the broken one included (rehost-init would run
    // only the services the image was converted to keep).
    let out = rt.rehost(&["verify", image.to_str().unwrap(), "--init", "systemd"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let failed: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        failed.iter().any(|l| l.contains("broken.service")),
        "{text}"
    );
    assert!(
        text.contains("broken-on-purpose"),
        "the service's log is not shown:\n{text}"
    );
    // The healthy services still pass.
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok") && l.contains("nginx.service")),
        "{text}"
    );
    assert!(text.contains("FAILED"));
    assert_eq!(rt.rehost_ok(&["ps", "--json"]).trim(), "[]");
}

#[test]
fn host_hooks_receive_the_container_state_around_its_life() {
    let work = scratch();
    let image = converted("debian-sysvinit", work.path());
    let mut rt = Rt::new();
    let name = rt.name("hooks");
    let pre = work.path().join("prestart.json");
    let post = work.path().join("poststop.json");
    rt.rehost_ok(&[
        "run",
        "--rm",
        "--init",
        "none",
        "--name",
        &name,
        "--hook",
        &format!("prestart=cat > {}", pre.display()),
        "--hook",
        &format!("poststop=cat > {}", post.display()),
        image.to_str().unwrap(),
        "/bin/true",
    ]);
    for file in [&pre, &post] {
        let state: serde_json::Value = serde_json::from_slice(&fs::read(file).unwrap()).unwrap();
        assert_eq!(state["id"], name.as_str(), "{}", file.display());
    }
    let bad = rt.rehost(&["run", "--hook", "sometime=true", image.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr).trim(),
        "rehost: error: --hook `sometime=true`: expected prestart=CMD or poststop=CMD"
    );
}

#[test]
fn an_oci_archive_runs_as_is_and_a_tag_selects_the_image() {
    let work = scratch();
    let rootfs = common::fixture("debian-sysvinit").join("rootfs");
    let archive = work.path().join("image.tar");
    common::rehost_ok(&[
        "convert",
        rootfs.to_str().unwrap(),
        "-o",
        archive.to_str().unwrap(),
        "--format",
        "oci-archive",
        "--tag",
        "v7",
        "--compression",
        "zstd",
        "-q",
    ]);
    let rt = Rt::new();
    let tagged = format!("{}:v7", archive.display());
    let out = rt.rehost_ok(&[
        "run",
        "--rm",
        "--init",
        "none",
        &tagged,
        "cat",
        "/etc/debian_version",
    ]);
    assert!(out.starts_with("12."), "{out}");
    let missing = format!("{}:v8", archive.display());
    let bad = rt.rehost(&["run", "--rm", "--init", "none", &missing, "true"]);
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr).trim(),
        format!("rehost: error: {}: no image tagged `v8`", archive.display())
    );
}

#[test]
fn memory_and_pids_limits_reach_the_container_cgroups() {
    let work = scratch();
    let image = converted("debian-sysvinit", work.path());
    let mut rt = Rt::new();
    let name = rt.name("limits");
    let out = rt.rehost_ok(&[
        "run",
        "--rm",
        "--init",
        "none",
        "--name",
        &name,
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        image.to_str().unwrap(),
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/pids/pids.max",
    ]);
    let values: Vec<&str> = out.lines().collect();
    assert_eq!(values, [(64u64 << 20).to_string().as_str(), "50"]);
    assert!(rt.cgroups().is_empty(), "{:?}", rt.cgroups());
}

/// The cgroup v1 lines (`ID:CONTROLLERS:PATH`, controllers named) of a /proc/PID/cgroup.
fn v1_cgroups(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            (!controllers.is_empty()).then(|| (controllers.to_string(), path.to_string()))
        })
        .collect()
}

#[test]
fn pid_1_and_exec_run_in_the_container_cgroups_with_only_the_standard_devices() {
    let work = scratch();
    let image = converted("debian-sysvinit", work.path());
    let mut rt = Rt::new();
    let name = rt.name("cgroups");
    rt.run_detached(&name, &image, &["--init", "none"], &["sleep", "300"]);
    let ps: serde_json::Value = serde_json::from_str(&rt.rehost_ok(&["ps", "--json"])).unwrap();
    let pid = ps[0]["pid"].as_i64().expect("pid 1 in ps --json");

    // Seen from the host, pid 1 is in the container's cgroup in every v1 hierarchy,
    // name=systemd included.
    let host = v1_cgroups(&std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap());
    assert!(host.iter().any(|(c, _)| c == "name=systemd"), "{host:?}");
    let own = format!("/rehost/{name}");
    assert!(host.iter().all(|(_, p)| *p == own), "{host:?}");

    // What exec starts joins them too: inside, the cgroup namespace is rooted at the
    // container's cgroup, so every hierarchy reads `/`.
    let (inside, code) = rt.exec(&name, &["cat", "/proc/self/cgroup"]);
    assert_eq!(code, 0);
    let inside = v1_cgroups(&inside);
    assert_eq!(inside.len(), host.len(), "{inside:?}");
    assert!(inside.iter().all(|(_, p)| p == "/"), "{inside:?}");

    // Every device denied but the standard ones.
    let (devices, _) = rt.exec(&name, &["cat", "/sys/fs/cgroup/devices/devices.list"]);
    let devices: Vec<&str> = devices.lines().collect();
    assert!(!devices.contains(&"a *:* rwm"), "{devices:?}");
    for d in ["c 1:3 rwm", "c 1:9 rwm", "c 5:2 rwm", "c 136:* rwm"] {
        assert!(devices.contains(&d), "{d} not allowed: {devices:?}");
    }
    // The engine's way of placing processes leaves no mount in the host's namespace.
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!host_mounts.contains("cgroup.procs"), "{host_mounts}");

    rt.rehost_ok(&["rm", "--force", &name]);
    rt.assert_clean("rm --force");
}

#[test]
fn exec_and_an_attached_run_from_a_terminal_get_a_terminal_of_the_container_on_either_engine() {
    let work = scratch();
    let image = converted("debian-sysvinit", work.path());
    let mut rt = Rt::new();
    // rehost's console sockets and process files go here, to be checked at the end.
    let tmp = work.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    // `script` gives rehost a terminal of 40 rows and 100 columns.
    let on_a_terminal = |rt: &Rt, rehost_args: &str| {
        let args = format!("{rehost_args} sh -c 'tty; stty size; exit 3'");
        let out = rt
            .on_a_terminal("stty rows 40 cols 100;", &args)
            .env("TMPDIR", &tmp)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.code(),
        )
    };
    for engine in ["embedded", "runc"] {
        let name = rt.name("tty");
        rt.run_detached(
            &name,
            &image,
            &["--oci-runtime", engine, "--init", "none"],
            &["sleep", "300"],
        );
        let image = image.to_str().unwrap();
        for how in [
            format!("exec {name}"),
            format!("run --rm --oci-runtime {engine} --init none {image}"),
        ] {
            let (text, code) = on_a_terminal(&rt, &how);
            // One of the container's own ptys (its devpts counts from 0), never the
            // caller's; the exit code comes back.
            assert!(text.contains("/dev/pts/0"), "{engine} {how}: {text}");
            assert_eq!(code, Some(3), "{engine} {how}: {text}");
            // Sized as the caller's before the command starts. Not so by `runc exec`,
            // which sizes the terminal once the command runs (1.1 ignores a process's
            // consoleSize): under load, `stty size` there reads 0 0, 9 times in 20.
            // (A run's terminal is ours to size on either engine.)
            if engine == "embedded" || how.starts_with("run") {
                assert!(text.contains("40 100"), "{engine} {how}: {text}");
            }
        }
        // Without a terminal, none.
        let (plain, code) = rt.exec(&name, &["sh", "-c", "tty"]);
        assert_eq!((plain.as_str(), code), ("not a tty", 1), "{engine}");
        rt.rehost_ok(&["rm", "--force", &name]);
    }
    rt.assert_clean("exec --tty and run on a terminal");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// An attached boot on a terminal, on either engine: systemd's console (it writes its
/// boot only there) is a terminal of the container's own, joined to the caller's; Ctrl-C
/// on it stops the container through pid 1, cleanly, and leaves nothing.
#[test]
fn an_attached_boot_shows_its_console_on_the_terminal_and_ctrl_c_stops_it() {
    use std::io::{Read, Write};
    let work = scratch();
    let image = converted("debian-systemd", work.path());
    let mut rt = Rt::new();
    for engine in ["embedded", "runc"] {
        let name = rt.name("console");
        let args = format!(
            "run --rm --oci-runtime {engine} --init systemd --name {name} {}",
            image.display()
        );
        let mut script = rt
            .on_a_terminal("", &args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = script.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stdout.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        });
        let state = rt.wait_booted(&name);
        assert!(
            state == "running" || state == "degraded",
            "{engine}: {state}"
        );
        let mut keys = script.stdin.take().unwrap();
        keys.write_all(b"\x03").unwrap();
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(status) = script.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > std::time::Duration::from_secs(60) {
                let _ = script.kill();
                panic!("{engine}: Ctrl-C did not stop the container in 60 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        drop(keys);
        let text = reader.join().unwrap();
        assert!(text.contains("Welcome to Debian"), "{engine}: {text}");
        assert!(text.contains("Exiting container."), "{engine}: {text}");
        assert_eq!(status.code(), Some(0), "{engine}: {text}");
        rt.assert_clean(&format!("Ctrl-C on an attached boot on {engine}"));
    }
}

/// Without a terminal (`docker run -d`, Kubernetes, `rehost run` piped) an engine makes
/// no /dev/console, where systemd writes its boot and journald the services' lines:
/// rehost-init gives it one that reaches pid 1's standard output, on either engine.
#[test]
fn without_a_terminal_the_boot_and_the_services_journal_reach_the_container_output() {
    use std::io::Read;
    let work = scratch();
    let image = converted("debian-systemd", work.path());
    let mut rt = Rt::new();
    for engine in ["embedded", "runc"] {
        let name = rt.name("piped");
        let mut run = rehost_cmd()
            .args(["run", "--rm", "--oci-runtime", engine, "--init", "systemd"])
            .args(["--name", &name, image.to_str().unwrap()])
            .env("REHOST_ROOT", rt.root())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let read_all = |mut from: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = Vec::new();
                let _ = from.read_to_end(&mut text);
                String::from_utf8_lossy(&text).into_owned()
            })
        };
        let reader = read_all(Box::new(run.stdout.take().unwrap()));
        // What rehost itself says, for a failure's message.
        let said = read_all(Box::new(run.stderr.take().unwrap()));
        let state = rt.wait_booted(&name);
        assert!(
            state == "running" || state == "degraded",
            "{engine}: {state}"
        );
        // Stopped by hand, or as a supervisor stops it: SIGTERM to `rehost run`.
        if engine == "embedded" {
            let stop = rt.rehost_ok(&["stop", &name, "--time", "60", "--json"]);
            let stop: serde_json::Value = serde_json::from_str(&stop).unwrap();
            assert_eq!(stop["clean"], true, "{engine}: systemd did not halt");
        } else {
            // SAFETY: a signal to our own child.
            unsafe { libc::kill(run.id() as i32, libc::SIGTERM) };
        }
        let status = run.wait().unwrap();
        let text = reader.join().unwrap();
        let said = said.join().unwrap();
        assert_eq!(
            status.code(),
            Some(0),
            "{engine}: rehost said:\n{said}\nthe container's output:\n{text}"
        );
        for line in [
            "Welcome to Debian GNU/Linux 12",
            "Reached target multi-user.target",
            "Started ssh.service",
        ] {
            assert!(text.contains(line), "{engine}: no `{line}` in:\n{text}");
        }
        assert!(
            text.lines()
                .any(|l| l.contains(" sshd[") && l.contains("Server listening on")),
            "{engine}: no journal line of sshd in:\n{text}"
        );
        // Lines as a log has them, without a terminal's carriage returns.
        assert!(!text.contains("\r\n"), "{engine}: {text:?}");
        rt.assert_clean(&format!("a boot without a terminal on {engine}"));
    }
}

/// `rehost verify --json`'s report, and a lookup of one check in it.
fn verify_report(rt: &Rt, args: &[&str]) -> (serde_json::Value, Option<i32>) {
    let mut all = vec!["verify", "--json", "--timeout", "90"];
    all.extend_from_slice(args);
    let out = rt.rehost(&all);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (report, out.status.code())
}

fn check<'a>(report: &'a serde_json::Value, kind: &str, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == kind && c["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} check of {name}: {report:#}"))
}

/// An executable hook file that leaves a mark in the container.
fn hook_file(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(
        &path,
        "#!/bin/sh\necho \"$REHOST_PHASE $REHOST_EXIT_STATUS\" >> /var/lib/hook-mark\n",
    )
    .unwrap();
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

#[test]
fn verify_checks_debian_systemd_in_systemd_mode_against_its_plan() {
    let work = scratch();
    let rootfs = common::fixture("debian-systemd").join("rootfs");
    let plan = work.path().join("plan.toml");
    common::rehost_ok(&[
        "inspect",
        rootfs.to_str().unwrap(),
        "--plan",
        plan.to_str().unwrap(),
        "-q",
    ]);
    // The operator's own checks, added to the plan as docs/plan.md shows.
    let mut text = fs::read_to_string(&plan).unwrap();
    assert!(text.contains("mode = \"systemd\""), "{text}");
    text += "\n[[check]]\nkind = \"http\"\ntarget = \"80/\"\nexpect = 200\nreason = \"the site answers\"\n";
    text += "\n[[check]]\nkind = \"command\"\ntarget = \"test -s /etc/nginx/nginx.conf\"\nreason = \"config present\"\n";
    fs::write(&plan, text).unwrap();
    let hook = hook_file(work.path(), "drain.sh");
    let image = common::runtime::converted_with(
        "debian-systemd",
        work.path(),
        &[
            "--plan",
            plan.to_str().unwrap(),
            "--hook",
            &format!("poststop={}", hook.display()),
        ],
    );
    let rt = Rt::new();
    let (report, code) = verify_report(
        &rt,
        &[image.to_str().unwrap(), "--plan", plan.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["mode"], "systemd");
    for svc in [
        "ssh.service",
        "cron.service",
        "rsyslog.service",
        "nginx.service",
    ] {
        assert_eq!(check(&report, "service", svc)["passed"], true, "{svc}");
    }
    for port in ["22/tcp", "80/tcp"] {
        assert_eq!(check(&report, "port", port)["passed"], true, "{port}");
    }
    assert_eq!(check(&report, "http", "GET :80/")["detail"], "HTTP 200");
    assert_eq!(
        check(&report, "command", "test -s /etc/nginx/nginx.conf")["passed"],
        true
    );
    // The poststop hook ran inside, at systemd's shutdown, and said so.
    let post = check(&report, "hooks", "poststop hooks");
    assert_eq!(post["passed"], true, "{post}");
    assert!(
        post["detail"].as_str().unwrap().starts_with("1 ran"),
        "{post}"
    );
    assert_eq!(check(&report, "stop", "shutdown")["passed"], true);
    assert_eq!(rt.rehost_ok(&["ps", "--json"]).trim(), "[]");
}

#[test]
fn debian_sysvinit_verifies_in_sbin_init_and_rehost_modes() {
    let work = scratch();
    let hook = hook_file(work.path(), "drain.sh");
    let image = common::runtime::converted_with(
        "debian-sysvinit",
        work.path(),
        &[
            "--init",
            "sbin-init",
            "--hook",
            &format!("poststop={}", hook.display()),
        ],
    );
    let rt = Rt::new();
    for mode in ["sbin-init", "rehost"] {
        let (report, code) = verify_report(
            &rt,
            &[image.to_str().unwrap(), "--init", mode, "--http", "80/"],
        );
        assert_eq!(code, Some(0), "{mode}: {report:#}");
        assert_eq!(report["mode"], mode);
        for svc in ["ssh", "cron", "rsyslog", "nginx"] {
            assert_eq!(
                check(&report, "service", svc)["passed"],
                true,
                "{mode}: {svc}"
            );
        }
        assert_eq!(check(&report, "http", "GET :80/")["passed"], true);
        let post = check(&report, "hooks", "poststop hooks");
        assert!(
            post["detail"].as_str().unwrap().starts_with("1 ran"),
            "{mode}: {post}"
        );
        assert_eq!(check(&report, "stop", "shutdown")["passed"], true, "{mode}");
    }
    assert_eq!(rt.rehost_ok(&["ps", "--json"]).trim(), "[]");
}

/// Every TCP port the plan lists must listen: one nobody listens on fails verify, with
/// or without the plan, in one line naming the port and the service expected on it.
#[test]
fn a_port_of_the_plan_nobody_listens_on_fails_verify_naming_it() {
    let work = scratch();
    let rootfs = common::fixture("debian-sysvinit").join("rootfs");
    let plan = work.path().join("plan.toml");
    common::rehost_ok(&[
        "inspect",
        rootfs.to_str().unwrap(),
        "--plan",
        plan.to_str().unwrap(),
        "-q",
    ]);
    // The operator expects nginx on a second port too; nothing in the image opens it, and
    // no `port-listening` check names it.
    let mut text = fs::read_to_string(&plan).unwrap();
    text += "\n[[port]]\nport = 8081\nprotocol = \"tcp\"\nservice = \"nginx\"\nreason = \"the admin site\"\n";
    fs::write(&plan, text).unwrap();
    let image = common::runtime::converted_with(
        "debian-sysvinit",
        work.path(),
        &["--plan", plan.to_str().unwrap()],
    );
    let rt = Rt::new();
    let out = rt.rehost(&[
        "verify",
        image.to_str().unwrap(),
        "--plan",
        plan.to_str().unwrap(),
        "--timeout",
        "90",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let failed: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert_eq!(failed.len(), 1, "{text}");
    assert!(
        failed[0].contains("8081/tcp") && failed[0].contains("nginx"),
        "{text}"
    );
    for port in ["22/tcp", "80/tcp"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("ok") && l.contains(port)),
            "{port}: {text}"
        );
    }
    // Without the plan, the image's own record of its ports says the same.
    let (report, code) = verify_report(&rt, &[image.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{report:#}");
    let port = check(&report, "port", "8081/tcp");
    assert_eq!(port["passed"], false);
    assert!(port["detail"].as_str().unwrap().contains("nginx"), "{port}");
    assert_eq!(check(&report, "port", "80/tcp")["passed"], true);
    assert_eq!(rt.rehost_ok(&["ps", "--json"]).trim(), "[]");
}

/// A kept service the plan marks optional may fail: verify reports it and still passes,
/// and rehost-init calls the container healthy; the same service not optional fails both.
#[test]
fn an_optional_service_that_fails_is_reported_not_counted() {
    let work = scratch();
    let src = work.path().join("src");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(common::fixture("debian-sysvinit").join("rootfs"))
        .arg(&src)
        .status()
        .unwrap();
    assert!(copied.success());
    let script = src.join("etc/init.d/flaky");
    fs::write(
        &script,
        "#!/bin/sh\ncase \"$1\" in\n  start) echo flaky-refuses-to-start >&2; exit 1 ;;\n  *) exit 0 ;;\nesac\n",
    )
    .unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let rt = Rt::new();
    for optional in [true, false] {
        let image = work.path().join(format!("flaky-{optional}.oci"));
        let mut args = vec![
            "convert",
            src.to_str().unwrap(),
            "-o",
            image.to_str().unwrap(),
            "-q",
            "--init",
            "rehost",
            "--service",
            "sysv:ssh",
            "--service",
            "sysv:nginx",
            "--service",
            "sysv:flaky",
        ];
        if optional {
            args.extend(["--optional", "flaky"]);
        }
        common::rehost_ok(&args);
        let (report, code) = verify_report(&rt, &[image.to_str().unwrap()]);
        let flaky = check(&report, "service", "flaky");
        assert!(
            flaky["detail"].as_str().unwrap().starts_with("failed"),
            "{flaky}"
        );
        if optional {
            assert_eq!(code, Some(0), "{report:#}");
            assert_eq!(flaky["passed"], true, "{flaky}");
            assert!(
                flaky["detail"].as_str().unwrap().contains("optional"),
                "{flaky}"
            );
        } else {
            assert_eq!(code, Some(1), "{report:#}");
            assert_eq!(flaky["passed"], false, "{flaky}");
            assert_eq!(check(&report, "unit", "flaky")["passed"], false);
        }
        assert_eq!(check(&report, "service", "nginx")["passed"], true);
    }
    assert_eq!(rt.rehost_ok(&["ps", "--json"]).trim(), "[]");
}

#[test]
fn dumb_init_verifies_its_one_command() {
    let work = scratch();
    let image = common::runtime::converted_with(
        "debian-systemd",
        work.path(),
        &[
            "--init",
            "dumb-init",
            "--cmd",
            "/usr/sbin/nginx -g 'daemon off;'",
        ],
    );
    let rt = Rt::new();
    let (report, code) = verify_report(&rt, &[image.to_str().unwrap(), "--http", "80/"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["mode"], "dumb-init");
    assert_eq!(check(&report, "http", "GET :80/")["passed"], true);
    assert_eq!(check(&report, "reap", "orphaned zombie")["passed"], true);
    assert_eq!(check(&report, "stop", "shutdown")["passed"], true);
}

/// An HTTP/1.0 GET of `path` on 127.0.0.1:`port`: the whole response.
fn http_get(port: u16, path: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// The body of an HTTP response.
fn body(response: &[u8]) -> &[u8] {
    let at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    &response[at + 4..]
}

/// `rehost run --init dumb-init --name NAME ARGS… /bin/sleep 1000` attached, in a process
/// group of its own (a terminal's job); returns once pid 1 runs and `ready` holds (a hang
/// guard, not a timing check).
fn spawn_attached(
    rt: &Rt,
    name: &str,
    args: &[&str],
    ready: &dyn Fn() -> bool,
) -> std::process::Child {
    let child = rehost_cmd()
        .args(["run", "--init", "dumb-init", "--name", name])
        .args(args)
        .args(["/bin/sleep", "1000"])
        .env("REHOST_ROOT", rt.root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while rt.exec(name, &["cat", "/proc/1/cmdline"]).1 != 0 || !ready() {
        assert!(
            start.elapsed().as_secs() < 120,
            "the container never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child
}

fn forwarder_of(name: &str) -> Vec<String> {
    let mut found = Vec::new();
    for p in fs::read_dir("/proc").unwrap().flatten() {
        let cmd = fs::read(p.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        if args.get(1) == Some(&&b"forward-ports"[..])
            && args
                .windows(2)
                .any(|w| w[0] == b"--name" && w[1] == name.as_bytes())
        {
            found.push(p.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

#[test]
fn a_published_udp_port_answers_each_client_and_closes_with_the_container() {
    let work = scratch();
    let image = converted("debian-sysvinit", work.path());
    let mut rt = Rt::new();
    let name = rt.name("udp");
    let port = free_port();
    // A UDP echo server inside, in the image's own perl: it answers each datagram to its
    // sender, prefixed.
    let server = r#"$s = IO::Socket::INET->new(LocalAddr => "127.0.0.1:9999", Proto => "udp") or die "$!";
        open(M, ">/tmp/bound"); close(M);
        while (1) { $s->recv($m, 65535); $s->send("echo:$m"); }"#;
    let publish = format!("127.0.0.1:{port}:9999/udp");
    rt.run_detached(
        &name,
        &image,
        &["--init", "dumb-init", "-p", &publish],
        &["perl", "-MIO::Socket::INET", "-e", server],
    );
    let ps = rt.rehost_ok(&["ps"]);
    assert!(ps.contains(&format!("127.0.0.1:{port}->9999/udp")), "{ps}");
    // The image's prestart hooks run first (new host keys): wait until the server binds.
    rt.wait_for_file(&name, "/tmp/bound");

    // Two clients, each answered on its own address; as UDP may lose a datagram, each
    // client retries.
    let ask = |text: &str| -> String {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        let mut buf = vec![0u8; 65536];
        for _ in 0..100 {
            sock.send_to(text.as_bytes(), ("127.0.0.1", port)).unwrap();
            if let Ok(n) = sock.recv(&mut buf) {
                return String::from_utf8_lossy(&buf[..n]).into_owned();
            }
        }
        panic!("no answer to {text}: {}", rt.rehost_ok(&["logs", &name]));
    };
    assert_eq!(ask("one"), "echo:one");
    assert_eq!(ask("two"), "echo:two");
    // A datagram larger than a page stays one datagram.
    let big = "x".repeat(8000);
    assert!(
        ask(&big) == format!("echo:{big}"),
        "8000 bytes did not come back whole"
    );

    rt.rehost_ok(&["rm", "--force", &name]);
    rt.assert_clean("rm --force");
    // The host port is free again.
    std::net::UdpSocket::bind(("127.0.0.1", port)).expect("the port was released");
}

#[test]
fn a_connection_waits_for_a_service_that_is_still_starting() {
    let work = scratch();
    let image = converted("debian-sysvinit", work.path());
    let mut rt = Rt::new();
    let name = rt.name("late");
    let port = free_port();
    // The server listens only after a second, and greets whoever connects.
    let server = r#"open(M, ">/tmp/started"); close(M); sleep 1; $l = IO::Socket::INET->new(Listen => 5, LocalAddr => "127.0.0.1:9998", ReuseAddr => 1) or die "$!";
        while ($c = $l->accept) { print $c "hello\n"; close $c; }"#;
    let publish = format!("127.0.0.1:{port}:9998");
    rt.run_detached(
        &name,
        &image,
        &["--init", "dumb-init", "-p", &publish],
        &["perl", "-MIO::Socket::INET", "-e", server],
    );
    // Once the server runs (after the image's prestart hooks), it waits a second before it
    // listens. Connected in that second: the forwarder waits for it, no reset.
    rt.wait_for_file(&name, "/tmp/started");
    let connected = std::time::Instant::now();
    let mut greeting = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()),
        &mut greeting,
    )
    .unwrap();
    assert_eq!(
        greeting,
        "hello\n",
        "after {} ms; the container's log:\n{}",
        connected.elapsed().as_millis(),
        rt.rehost_ok(&["logs", &name])
    );
    rt.rehost_ok(&["rm", "--force", &name]);
    rt.assert_clean("rm --force");
}

#[test]
fn published_ports_reach_nginx_and_sshd_and_close_with_the_container() {
    let work = scratch();
    let image = converted("debian-systemd", work.path());
    let mut rt = Rt::new();
    let name = rt.name("ports");
    let (http, ssh) = (free_port(), free_port());
    let img = image.to_str().unwrap();
    rt.rehost_ok(&[
        "run",
        img,
        "--init",
        "systemd",
        "-d",
        "--name",
        &name,
        "-p",
        &format!("127.0.0.1:{http}:80"),
        "--publish",
        &format!("127.0.0.1:{ssh}:22"),
    ]);
    let state = rt.wait_booted(&name);
    assert!(state == "running" || state == "degraded", "{state}");

    // nginx's page, from the host.
    let page = http_get(http, "/");
    assert!(
        String::from_utf8_lossy(&page).contains("Welcome to nginx!"),
        "{}",
        String::from_utf8_lossy(&page)
    );
    // sshd's banner on the other port.
    let mut banner = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(std::net::TcpStream::connect(("127.0.0.1", ssh)).unwrap()),
        &mut banner,
    )
    .unwrap();
    assert!(banner.starts_with("SSH-2.0-OpenSSH"), "{banner}");

    // A large file streams through intact, while many connections run at once.
    let (_, code) = rt.exec(
        &name,
        &[
            "sh",
            "-c",
            "head -c 24000000 /dev/urandom > /var/www/html/big",
        ],
    );
    assert_eq!(code, 0);
    let (sum, _) = rt.exec(&name, &["sha256sum", "/var/www/html/big"]);
    let clients: Vec<_> = (0..32)
        .map(|i| {
            std::thread::spawn(move || {
                if i % 8 == 0 {
                    hex::encode(Sha256::digest(body(&http_get(http, "/big"))))
                } else {
                    String::from_utf8_lossy(&http_get(http, "/")).into_owned()
                }
            })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        let got = c.join().unwrap();
        if i % 8 == 0 {
            assert_eq!(got, sum.split_whitespace().next().unwrap());
        } else {
            assert!(got.contains("Welcome to nginx!"), "{got}");
        }
    }

    // ps shows the ports.
    let ps = rt.rehost_ok(&["ps"]);
    assert!(ps.contains(&format!("127.0.0.1:{http}->80/tcp")), "{ps}");
    let ps: serde_json::Value = serde_json::from_str(&rt.rehost_ok(&["ps", "--json"])).unwrap();
    assert_eq!(ps[0]["ports"][1]["host_port"], ssh);
    assert_eq!(ps[0]["ports"][1]["port"], 22);

    // A host port in use: one line naming it, and no container made.
    let other = rt.name("taken");
    let out = rt.rehost(&[
        "run",
        img,
        "-d",
        "--name",
        &other,
        "-p",
        &format!("127.0.0.1:{http}:80"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{http}")) && err.contains("in use"),
        "{err}"
    );
    assert!(!rt.root().join("containers").join(&other).exists());

    // Stopped: the ports are closed and the forwarder is gone.
    assert_eq!(forwarder_of(&name).len(), 1);
    rt.rehost_ok(&["stop", &name, "--time", "60"]);
    for port in [http, ssh] {
        let e = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{port}");
    }
    assert!(forwarder_of(&name).is_empty());
    rt.rehost_ok(&["rm", &name]);
    rt.assert_clean("run -p, stop and rm");
}

/// Whether this host mounts cgroups in hybrid mode (v1 controllers, plus cgroup2 beside
/// them), which crun 1.8 refuses.
fn hybrid_cgroups() -> bool {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let fstype = |l: &str| {
        l.split(" - ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .map(String::from)
    };
    let v1 = mounts
        .lines()
        .any(|l| fstype(l).as_deref() == Some("cgroup"));
    let v2 = mounts
        .lines()
        .any(|l| fstype(l).as_deref() == Some("cgroup2"));
    v1 && v2
}

#[test]
fn crun_runs_the_same_bundle_or_says_why_it_cannot() {
    let work = scratch();
    let image = converted("debian-sysvinit", work.path());
    let mut rt = Rt::new();
    let name = rt.name("crun");
    let out = rt.rehost(&[
        "run",
        "--oci-runtime",
        "crun",
        "--rm",
        "--init",
        "none",
        "--name",
        &name,
        image.to_str().unwrap(),
        "/bin/sh",
        "-c",
        "echo hello from $(hostname)",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    rt.assert_clean("a run under crun");
    if hybrid_cgroups() && err.contains("cgroups in hybrid mode not supported") {
        common::cannot_run_here(
            "crun",
            &format!(
                "crun refuses this host's hybrid cgroups (v1 controllers + cgroup2): {}",
                err.trim()
            ),
        );
        return;
    }
    assert!(out.status.success(), "crun failed: {err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("hello from {name}")
    );
}

#[test]
fn nothing_is_left_after_a_failed_start_ctrl_c_or_stop_and_rm() {
    let work = scratch();
    let image = converted("debian-sysvinit", work.path());
    let img = image.to_str().unwrap();
    let mut rt = Rt::new();

    // A command that does not exist: the run fails naming it, and nothing is made.
    let bad = rt.name("missing");
    let out = rt.rehost(&[
        "run",
        "-d",
        "--init",
        "none",
        "--name",
        &bad,
        img,
        "/no/such/command",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/no/such/command"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!rt.root().join("containers").join(&bad).exists());
    rt.assert_clean("a failed detached start");
    let out = rt.rehost(&[
        "run",
        "--init",
        "none",
        "--name",
        &bad,
        img,
        "/no/such/command",
    ]);
    assert!(!out.status.success());
    rt.assert_clean("a failed attached start");
    rt.rehost_ok(&["rm", &bad]);

    // Ctrl-C on an attached run (SIGINT to its whole process group, as a terminal
    // sends it), with a published port.
    let name = rt.name("ctrlc");
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let mut child = spawn_attached(&rt, &name, &["-p", &publish, img], &|| {
        !forwarder_of(&name).is_empty()
    });
    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "pid 1 ends on SIGINT");
    rt.assert_clean("Ctrl-C on an attached run");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    rt.rehost_ok(&["rm", &name]);

    // SIGTERM to `rehost run` alone (a supervisor stopping it): the container gets its
    // stop signal, and nothing is left.
    let name = rt.name("sigterm");
    let mut child = spawn_attached(&rt, &name, &[img], &|| true);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "pid 1 ends on its stop signal");
    rt.assert_clean("SIGTERM to an attached run");
    rt.rehost_ok(&["rm", &name]);

    // run -d, stop, rm.
    let name = rt.name("stoprm");
    rt.rehost_ok(&[
        "run",
        "-d",
        "--init",
        "rehost",
        "--name",
        &name,
        "-p",
        &format!("127.0.0.1:{port}:22"),
        img,
    ]);
    rt.rehost_ok(&["stop", &name, "--time", "30"]);
    rt.rehost_ok(&["rm", &name]);
    rt.assert_clean("run -d, stop and rm");
    assert!(!rt.root().join("containers").join(&name).exists());

    // pid 1 exits by itself: its forwarder follows it (polled under a hang guard).
    let name = rt.name("exits");
    rt.rehost_ok(&[
        "run",
        "-d",
        "--init",
        "none",
        "--name",
        &name,
        "-p",
        &format!("127.0.0.1:{port}:80"),
        img,
        "/bin/true",
    ]);
    let start = std::time::Instant::now();
    while !forwarder_of(&name).is_empty() {
        assert!(
            start.elapsed().as_secs() < 60,
            "the forwarder outlived pid 1"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    rt.rehost_ok(&["rm", &name]);
    rt.assert_clean("pid 1 exiting by itself, then rm");
}

#[test]
fn a_failed_start_names_the_cause_and_leaves_nothing() {
    let work = scratch();
    let image = converted("debian-sysvinit", work.path());
    let mut rt = Rt::new();
    // Detached, and attached (where the engine's stderr is the user's).
    for how in ["-d", "--rm"] {
        let name = rt.name("nostart");
        let out = rt.rehost(&[
            "run",
            how,
            "--init",
            "none",
            "--name",
            &name,
            image.to_str().unwrap(),
            "/no/such/program",
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("rehost: error: embedded run: ") && err.contains("/no/such/program"),
            "{how}: {err}"
        );
        // One line: not libcontainer's failed cleanup, which the engine then does.
        assert_eq!(err.lines().count(), 1, "{how}: {err}");
        assert!(!err.contains("cleanup"), "{how}: {err}");
    }
    assert_eq!(rt.rehost_ok(&["ps", "--json"]).trim(), "[]");
    assert!(rt.mounts().is_empty(), "{:?}", rt.mounts());
    assert!(rt.cgroups().is_empty(), "{:?}", rt.cgroups());
    let engine_state: Vec<_> = fs::read_dir(rt.root().join("embedded"))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(engine_state.is_empty(), "{engine_state:?}");
}

/// A file with holes, as databases and VM images are: its bytes and its holes survive
/// `convert` and the runtime's unpack (PAX 1.0 sparse entries both ways).
#[test]
fn a_sparse_file_keeps_its_content_and_its_holes_from_convert_to_run() {
    use std::os::unix::fs::FileExt;
    let work = scratch();
    let tree = work.path().join("tree");
    let fixture = common::fixture_rootfs("debian-sysvinit");
    common::run(
        "cp",
        &["-a", fixture.to_str().unwrap(), tree.to_str().unwrap()],
    );
    // 64 MiB, of which 1 MiB at 16 MiB holds data.
    let holey = tree.join("srv/holey");
    fs::create_dir_all(holey.parent().unwrap()).unwrap();
    let file = fs::File::create(&holey).unwrap();
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8 + 1).collect();
    file.write_all_at(&data, 16 << 20).unwrap();
    file.set_len(64 << 20).unwrap();
    drop(file);
    let want = hex::encode(Sha256::digest(fs::read(&holey).unwrap()));
    let image = work.path().join("sparse.oci");
    common::rehost_ok(&[
        "convert",
        tree.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
        "--init",
        "none",
        "--compression",
        "zstd",
        "-q",
    ]);
    let mut rt = Rt::new();
    let name = rt.name("sparse");
    let out = rt.rehost_ok(&[
        "run",
        "--rm",
        "--init",
        "none",
        "--name",
        &name,
        image.to_str().unwrap(),
        "/bin/sh",
        "-c",
        "ls /srv; sha256sum /srv/holey; stat -c '%s %b %B' /srv/holey",
    ]);
    rt.assert_clean("a run of a sparse file");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"holey"), "{out}");
    assert!(lines[1].starts_with(&want), "content differs: {out}");
    let stat: Vec<u64> = lines[2]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(stat[0], 64 << 20, "{out}");
    let allocated = stat[1] * stat[2];
    assert!(
        allocated <= 4 << 20,
        "the holes were filled in: {allocated} bytes allocated: {out}"
    );
}
