//! End-to-end tests of the bundled runtime: real converted Debian servers booted with
//! `rehost run` on the embedded engine (and the same bundles under runc), hostile and
//! corrupt images, and nothing left behind.

mod common;

use common::runtime::{converted, listening_ports, Rt};
use common::scratch;
use sha2::{Digest, Sha256};
use std::fs;
use std::path::Path;

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
    for unit in ["ssh", "cron", "rsyslog", "nginx"] {
        let (active, _) = rt.exec(&name, &["systemctl", "is-active", unit]);
        assert_eq!(active, "active", "{unit} is {active}");
    }
    // systemd writes its boot only to a console: the log has it.
    let log = rt.rehost_ok(&["logs", &name]);
    assert!(log.contains("Welcome to Debian GNU/Linux 12"), "{log}");
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
    let cached = fs::read_dir(rt.root().join("layers/sha256"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_ne!(
        fs::read_to_string(cached.path().join("etc/motd")).unwrap(),
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
fn verify_passes_on_debian_systemd_and_leaves_nothing_behind() {
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
    assert!(passed("boot", "system") && passed("stop", "shutdown"));
    let xml = fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("failures=\"0\"") && xml.contains("name=\"nginx.service\""),
        "{xml}"
    );
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
    let out = rt.rehost(&["verify", image.to_str().unwrap()]);
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

#[test]
fn a_failed_start_names_the_cause_and_leaves_nothing() {
    let work = scratch();
    let image = converted("debian-sysvinit", work.path());
    let mut rt = Rt::new();
    let name = rt.name("nostart");
    let out = rt.rehost(&[
        "run",
        "-d",
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
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(rt.rehost_ok(&["ps", "--json"]).trim(), "[]");
    assert!(rt.mounts().is_empty(), "{:?}", rt.mounts());
    assert!(rt.cgroups().is_empty(), "{:?}", rt.cgroups());
    let engine_state: Vec<_> = fs::read_dir(rt.root().join("embedded"))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(engine_state.is_empty(), "{engine_state:?}");
}
