//! rehost-init end to end: the real Debian fixtures converted with `rehost convert`,
//! unpacked with umoci, and booted under rehost-init in fresh namespaces.

mod common;
mod init_support;

use init_support::*;
use std::time::Duration;

const SIGTERM: i32 = 15;

#[test]
fn rehost_init_is_statically_linked() {
    let bin = init_binary();
    let out = run_ok(std::process::Command::new("file").arg("-L").arg(&bin));
    assert!(
        out.contains("statically linked") || out.contains("static-pie linked"),
        "{out}"
    );
}

#[test]
fn convert_refuses_a_dynamic_init_binary() {
    let work = Scratch::new("dynamic");
    let out = common::rehost_cmd()
        .args(["convert"])
        .arg(fixture("debian-systemd"))
        .arg("-o")
        .arg(work.path().join("img"))
        .arg("--init-binary")
        .arg("/bin/sh")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dynamically linked"), "{err}");
    assert!(!work.path().join("img").exists());
}

/// debian-systemd with three extra units: one that leaves an orphan behind, one whose
/// ExecStop leaves a mark, and the image's own ssh, nginx, cron and rsyslog.
#[test]
fn debian_systemd_boots_serves_reaps_and_stops_in_order() {
    assert!(
        is_root(),
        "these tests need root (namespaces, mounts, chroot)"
    );
    let work = Scratch::new("systemd");
    let src = work.path().join("src");
    copy_tree(&fixture("debian-systemd"), &src);
    write(&src, "/etc/systemd/system/orphan.service", "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh -c '(sleep 1 &) ; exit 0'\n", 0o644);
    write(
        &src,
        "/etc/systemd/system/marker.service",
        "[Unit]\nAfter=nginx.service\n[Service]\nExecStart=/bin/sleep infinity\nExecStop=/bin/sh -c 'echo stopped-by-execstop > /var/lib/marker-stop'\nTimeoutStopSec=10\n",
        0o644,
    );
    write(
        &src,
        "/etc/systemd/system/tick.timer",
        "[Timer]\nOnBootSec=1s\n",
        0o644,
    );
    write(
        &src,
        "/etc/systemd/system/tick.service",
        "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo ticked >> /var/lib/ticks'\n",
        0o644,
    );
    let hook = work.path().join("record-status");
    write(work.path(), "record-status", "#!/bin/sh\necho \"$REHOST_PHASE $REHOST_MODE $REHOST_EXIT_STATUS\" > /var/lib/poststop-ran\n", 0o755);
    let rootfs = convert_and_unpack(
        &src,
        work.path(),
        &[
            "--init",
            "rehost",
            "--service",
            "ssh.service",
            "--service",
            "nginx.service",
            "--service",
            "cron.service",
            "--service",
            "rsyslog.service",
            "--service",
            "orphan.service",
            "--service",
            "marker.service",
            "--service",
            "tick.timer",
            "--critical",
            "ssh.service",
            "--critical",
            "nginx.service",
            "--hook",
            &format!("poststop={}", hook.display()),
        ],
    );
    // The server's identity is not in the image.
    assert!(!rootfs.join("etc/ssh/ssh_host_ed25519_key").exists());
    assert_eq!(std::fs::read(rootfs.join("etc/machine-id")).unwrap(), b"");

    let mut c = boot(&rootfs, work.path());
    assert_serving(
        &c,
        &[
            "ssh.service",
            "nginx.service",
            "cron.service",
            "rsyslog.service",
            "marker.service",
        ],
    );

    // New SSH host keys, not the source server's.
    let fresh = std::fs::read(rootfs.join("etc/ssh/ssh_host_ed25519_key.pub"))
        .expect("host key generated at boot");
    let original = std::fs::read(src.join("etc/ssh/ssh_host_ed25519_key.pub")).unwrap();
    assert_ne!(fresh, original);
    let mid = std::fs::read_to_string(rootfs.join("etc/machine-id")).unwrap();
    assert_eq!(mid.trim().len(), 32, "machine-id {mid:?}");

    // The orphaned `sleep 1` exits under pid 1 and must not stay a zombie.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(c.zombies().is_empty(), "zombies: {:?}", c.zombies());

    // The OnBootSec=1s timer has fired its service once.
    assert_eq!(
        std::fs::read_to_string(rootfs.join("var/lib/ticks")).unwrap_or_default(),
        "ticked\n",
        "{}",
        c.console()
    );

    // Service output reaches the console with the service name.
    let console = c.console();
    assert!(console.contains("ssh.service: started"), "{console}");

    c.signal(SIGTERM);
    let code = c.wait(Duration::from_secs(60));
    let console = c.console();
    assert_eq!(code, 0, "{console}");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("var/lib/marker-stop"))
            .unwrap()
            .trim(),
        "stopped-by-execstop"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("var/lib/poststop-ran"))
            .unwrap()
            .trim(),
        "poststop rehost 0"
    );
    // marker.service starts after nginx, so it stops before it.
    let stop_marker = console
        .find("marker.service: stopped")
        .expect("marker stopped");
    let stop_nginx = console
        .find("nginx.service: stopping")
        .expect("nginx stopped");
    assert!(stop_marker < stop_nginx, "{console}");
}

#[test]
fn debian_systemd_serves_and_stops_cleanly_in_a_user_namespace() {
    assert!(
        is_root(),
        "these tests need root (to map the user namespace)"
    );
    let work = Scratch::new("userns");
    let hook = work.path().join("record-status");
    write(
        work.path(),
        "record-status",
        "#!/bin/sh\necho \"$REHOST_PHASE $REHOST_EXIT_STATUS\" > /var/lib/poststop-ran\n",
        0o755,
    );
    let rootfs = convert_and_unpack(
        &fixture("debian-systemd"),
        work.path(),
        &[
            "--init",
            "rehost",
            "--critical",
            "ssh.service",
            "--critical",
            "nginx.service",
            "--hook",
            &format!("poststop={}", hook.display()),
        ],
    );
    shift_ids(&rootfs, USERNS_BASE);
    // The namespace's root is an ordinary user on the host: it must reach the rootfs.
    for dir in [work.path(), rootfs.parent().unwrap()] {
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let mut c = boot_in_user_namespace(&rootfs, work.path());
    assert_serving(
        &c,
        &[
            "ssh.service",
            "nginx.service",
            "cron.service",
            "rsyslog.service",
        ],
    );
    // Root inside is an unprivileged id outside: nothing ran as the host's root.
    let uid = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|u| u.split_whitespace().next().map(String::from))
            .unwrap()
    };
    assert_eq!(uid(c.init_pid()), USERNS_BASE.to_string());
    // Host keys were made inside, owned by the container's root.
    let key = rootfs.join("etc/ssh/ssh_host_ed25519_key");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&key).unwrap()),
        USERNS_BASE
    );

    c.signal(SIGTERM);
    let code = c.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "{}", c.console());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("var/lib/poststop-ran"))
            .unwrap()
            .trim(),
        "poststop 0"
    );
}

#[test]
fn a_crash_looping_critical_service_ends_the_container_with_an_error() {
    assert!(
        is_root(),
        "these tests need root (namespaces, mounts, chroot)"
    );
    let work = Scratch::new("crash");
    let src = work.path().join("src");
    copy_tree(&fixture("debian-systemd"), &src);
    write(
        &src,
        "/etc/systemd/system/crashy.service",
        "[Unit]\nStartLimitBurst=3\nStartLimitIntervalSec=60\n[Service]\nExecStart=/bin/sh -c 'echo about to crash; exit 3'\nRestart=on-failure\nRestartSec=100ms\n",
        0o644,
    );
    let rootfs = convert_and_unpack(
        &src,
        work.path(),
        &[
            "--init",
            "rehost",
            "--service",
            "crashy.service",
            "--service",
            "cron.service",
            "--critical",
            "crashy.service",
        ],
    );
    let mut c = boot(&rootfs, work.path());
    let code = c.wait(Duration::from_secs(60));
    let console = c.console();
    assert_eq!(code, 1, "{console}");
    assert!(console.contains("crashy: about to crash"), "{console}");
    assert!(
        console.contains("crashy.service: restarted too often"),
        "{console}"
    );
    assert!(
        console.contains("cron.service: stopped"),
        "the rest is stopped cleanly:\n{console}"
    );
}

#[test]
fn debian_sysvinit_boots_its_rc_scripts() {
    assert!(
        is_root(),
        "these tests need root (namespaces, mounts, chroot)"
    );
    let work = Scratch::new("sysv");
    let rootfs = convert_and_unpack(
        &fixture("debian-sysvinit"),
        work.path(),
        &["--critical", "ssh", "--critical", "nginx"],
    );
    // Engines that run health checks run `rehost-init status`.
    let (_, config) = common::image_json(&work.path().join("image"));
    let check = &config["config"]["Healthcheck"];
    assert_eq!(
        check["Test"],
        serde_json::json!(["CMD", "/usr/sbin/rehost-init", "status"]),
        "{config}"
    );
    let toml = std::fs::read_to_string(rootfs.join("etc/rehost/init.toml")).unwrap();
    for s in ["ssh", "nginx", "cron", "rsyslog"] {
        assert!(
            toml.contains(&format!("name = \"{s}\"")),
            "{s} kept:\n{toml}"
        );
    }
    let mut c = boot(&rootfs, work.path());
    let status = c.wait_healthy(Duration::from_secs(60));
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("ssh ") && l.contains("active")),
        "{status}"
    );
    let ports = c.listening();
    assert!(
        ports.contains(&22) && ports.contains(&80),
        "listening: {ports:?}\n{}",
        c.console()
    );
    let ps = c.exec(&["ps", "-eo", "comm"]);
    let ps = String::from_utf8_lossy(&ps.stdout).into_owned();
    for p in ["sshd", "nginx", "cron", "rsyslogd"] {
        assert!(ps.lines().any(|l| l.trim() == p), "{p} not running:\n{ps}");
    }
    // The daemons the scripts started show their pids: those of their pid files.
    for (svc, pidfile) in [("nginx", "/run/nginx.pid"), ("ssh", "/run/sshd.pid")] {
        let (pid, status) = wait_pid_shown(&c, svc, pidfile);
        assert!(pid > 1, "{svc}: {pidfile} holds {pid}\n{status}");
    }
    assert!(
        status_of(&c).1.ends_with("healthy\n"),
        "{}",
        status_of(&c).1
    );
    c.signal(SIGTERM);
    let code = c.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "{}", c.console());
}

/// A SysV daemon restarted by its own script by hand is followed to its new pid; one
/// killed by hand fails its service, and the container's health is degraded.
#[test]
fn sysv_daemons_are_followed_through_their_pid_files() {
    assert!(
        is_root(),
        "these tests need root (namespaces, mounts, chroot)"
    );
    let work = Scratch::new("sysv-pids");
    let rootfs = convert_and_unpack(
        &fixture("debian-sysvinit"),
        work.path(),
        &[
            "--service",
            "sysv:ssh",
            "--service",
            "sysv:nginx",
            "--service",
            "sysv:cron",
            "--optional",
            "cron",
        ],
    );
    let toml = std::fs::read_to_string(rootfs.join("etc/rehost/init.toml")).unwrap();
    assert!(toml.contains("optional = true"), "{toml}");
    let c = boot(&rootfs, work.path());
    c.wait_healthy(Duration::from_secs(60));
    let (first, _) = wait_pid_shown(&c, "nginx", "/run/nginx.pid");

    // Restarted by its own script, from outside the init: the new master is followed.
    let out = c.exec(&["/etc/init.d/nginx", "restart"]);
    assert!(out.status.success(), "{out:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (second, status) = loop {
        let (pid, status) = wait_pid_shown(&c, "nginx", "/run/nginx.pid");
        if pid != first && service_line(&status, "nginx").contains(" active ") {
            break (pid, status);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nginx still shows pid {first} after its restart:\n{status}\n{}",
            c.console()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_ne!(first, second);
    assert!(status.ends_with("healthy\n"), "{status}");
    assert!(c.listening().contains(&80));

    // Killed by hand: nginx is no longer active and the container is degraded (exit 1).
    let out = c.exec(&["kill", &second.to_string()]);
    assert!(out.status.success(), "{out:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (code, status) = loop {
        let (code, status) = status_of(&c);
        if !service_line(&status, "nginx").contains(" active ") {
            break (code, status);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nginx still active after its daemon was killed:\n{status}\n{}",
            c.console()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(code, 1, "{status}");
    let line = service_line(&status, "nginx");
    assert!(line.contains(" failed "), "{line}");
    let health = status.lines().last().unwrap_or_default();
    assert!(health.starts_with("degraded: nginx (failed"), "{status}");

    // An optional service that dies does not degrade the container.
    let (cron, _) = wait_pid_shown(&c, "cron", "/run/crond.pid");
    let before = status_of(&c).1;
    assert!(!before.lines().last().unwrap().contains("cron"), "{before}");
    let out = c.exec(&["kill", &cron.to_string()]);
    assert!(out.status.success(), "{out:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, status) = status_of(&c);
        if service_line(&status, "cron").contains(" failed ") {
            let health = status.lines().last().unwrap_or_default();
            assert!(!health.contains("cron"), "{status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cron still active after its daemon was killed:\n{status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `rehost-init status`: its exit code and output.
fn status_of(c: &Booted) -> (i32, String) {
    let out = c.exec(&["/usr/sbin/rehost-init", "status"]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The status line of `service`.
fn service_line<'a>(status: &'a str, service: &str) -> &'a str {
    status
        .lines()
        .find(|l| l.split_whitespace().next() == Some(service))
        .unwrap_or_else(|| panic!("{service} missing:\n{status}"))
}

/// Waits until `rehost-init status` shows for `service` the pid its `pidfile` holds;
/// returns that pid and the status.
fn wait_pid_shown(c: &Booted, service: &str, pidfile: &str) -> (i32, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let out = c.exec(&["cat", pidfile]);
        let held: Option<i32> = String::from_utf8_lossy(&out.stdout).trim().parse().ok();
        let (_, status) = status_of(c);
        let shown: Option<i32> = service_line(&status, service)
            .split_whitespace()
            .nth(3)
            .and_then(|p| p.parse().ok());
        if let (Some(h), Some(s)) = (held, shown) {
            if h == s {
                return (h, status);
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{service}: status shows pid {shown:?}, {pidfile} holds {held:?}:\n{status}\n{}",
            c.console()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn dumb_init_runs_one_command_and_exits_with_its_code() {
    assert!(
        is_root(),
        "these tests need root (namespaces, mounts, chroot)"
    );
    let work = Scratch::new("dumb");
    write(
        work.path(),
        "record-status",
        "#!/bin/sh\necho \"$REHOST_MODE $REHOST_EXIT_STATUS\" > /var/lib/poststop-ran\n",
        0o755,
    );
    let hook = format!("poststop={}", work.path().join("record-status").display());
    let rootfs = convert_and_unpack(
        &fixture("debian-sysvinit"),
        work.path(),
        &[
            "--init",
            "dumb-init",
            "--cmd",
            "/bin/sh -c 'echo hello from main; exit 7'",
            "--hook",
            &hook,
        ],
    );
    let mut c = boot(&rootfs, work.path());
    let code = c.wait(Duration::from_secs(60));
    assert_eq!(code, 7, "{}", c.console());
    assert!(c.console().contains("hello from main"), "{}", c.console());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("var/lib/poststop-ran"))
            .unwrap()
            .trim(),
        "dumb-init 7"
    );
}

#[test]
fn systemd_mode_hands_over_to_the_images_systemd_with_hooks_and_masks() {
    let work = Scratch::new("systemd-mode");
    let rootfs = convert_and_unpack(
        &fixture("debian-systemd"),
        work.path(),
        &[
            "--init",
            "systemd",
            "--drop",
            "cron.service",
            "--expose",
            "80",
            "--layers",
            "one",
        ],
    );
    let (manifest, config) = common::image_json(&work.path().join("image"));
    let c = &config["config"];
    assert_eq!(c["Entrypoint"][0], "/usr/sbin/rehost-init");
    assert_eq!(c["StopSignal"], "SIGRTMIN+3");
    assert!(
        c["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "container=rehost"),
        "{c}"
    );
    assert!(c["ExposedPorts"]["80/tcp"].is_object(), "{c}");
    assert_eq!(c["Labels"]["io.rehost.init.mode"], "systemd");
    // rehost-init's status is not systemd's: no health check that would always fail.
    assert!(c["Healthcheck"].is_null(), "{c}");
    assert_eq!(c["Labels"]["io.rehost.captured"], "2023-11-14T22:13:20Z");
    assert!(manifest["annotations"]["io.rehost.systemd.mounts"]
        .as_str()
        .unwrap()
        .contains("/sys/fs/cgroup"));
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
    // The dropped unit is masked and no longer wanted; the hooks unit runs poststop.
    assert_eq!(
        std::fs::read_link(rootfs.join("etc/systemd/system/cron.service")).unwrap(),
        std::path::Path::new("/dev/null")
    );
    assert!(!link_exists(&rootfs.join(
        "etc/systemd/system/multi-user.target.wants/cron.service"
    )));
    assert!(link_exists(
        &rootfs.join("etc/systemd/system/multi-user.target.wants/ssh.service")
    ));
    let unit =
        std::fs::read_to_string(rootfs.join("etc/systemd/system/rehost-hooks.service")).unwrap();
    assert!(
        unit.contains("ExecStop=/usr/sbin/rehost-init hooks poststop"),
        "{unit}"
    );
    assert!(link_exists(&rootfs.join(
        "etc/systemd/system/sysinit.target.wants/rehost-hooks.service"
    )));
    let cfg = std::fs::read_to_string(rootfs.join("etc/rehost/init.toml")).unwrap();
    assert!(cfg.contains("mode = \"systemd\""), "{cfg}");
}

#[test]
fn without_a_plan_convert_keeps_and_drops_what_the_inspect_plan_decides() {
    for (name, kept, dropped) in [
        ("debian-systemd", "ssh.service", "apt-daily.timer"),
        ("debian-sysvinit", "rc.local", "rmnologin"),
    ] {
        let work = Scratch::new("plan-or-not");
        let source = fixture(name);
        let plan = work.path().join("plan.toml");
        run_ok(
            common::rehost_cmd()
                .arg("inspect")
                .arg(&source)
                .arg("--plan")
                .arg(&plan),
        );
        // The rehost layer's services, as the convert summary gives them.
        let services = |extra: &[&std::ffi::OsStr]| -> (serde_json::Value, serde_json::Value) {
            let out = run_ok(
                common::rehost_cmd()
                    .arg("convert")
                    .arg(&source)
                    .arg("-o")
                    .arg(work.path().join("image"))
                    .args(["--force", "--json"])
                    .args(extra)
                    .env("REHOST_INIT", init_binary()),
            );
            let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
            (
                summary["rich"]["kept"].clone(),
                summary["rich"]["dropped"].clone(),
            )
        };
        let without = services(&[]);
        let with = services(&["--plan".as_ref(), plan.as_os_str()]);
        assert_eq!(without, with, "{name}: without a plan vs with inspect's");
        let has =
            |list: &serde_json::Value, s: &str| list.as_array().unwrap().iter().any(|v| v == s);
        assert!(
            has(&without.0, kept) && !has(&without.1, kept),
            "{name}: {without:?}"
        );
        assert!(
            has(&without.1, dropped) && !has(&without.0, dropped),
            "{name}: {without:?}"
        );
    }
}

#[test]
fn sbin_init_mode_removes_gettys_and_dropped_rc_links() {
    let work = Scratch::new("sbin-init-mode");
    let rootfs = convert_and_unpack(
        &fixture("debian-sysvinit"),
        work.path(),
        &["--init", "sbin-init", "--drop", "cron"],
    );
    let (_, config) = common::image_json(&work.path().join("image"));
    assert_eq!(config["config"]["StopSignal"], "SIGINT");
    let inittab = std::fs::read_to_string(rootfs.join("etc/inittab")).unwrap();
    assert!(
        !inittab
            .lines()
            .any(|l| !l.starts_with('#') && l.contains("getty")),
        "{inittab}"
    );
    assert!(
        inittab.contains(":ctrlaltdel:/sbin/shutdown -t1 -h now"),
        "{inittab}"
    );
    let rc2: Vec<String> = std::fs::read_dir(rootfs.join("etc/rc2.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!rc2.iter().any(|n| n.ends_with("cron")), "{rc2:?}");
    assert!(rc2.iter().any(|n| n.ends_with("ssh")), "{rc2:?}");
    // The poststop hooks run after the services stop and before sendsigs (K02 here).
    assert!(link_exists(&rootfs.join("etc/rc0.d/K02rehost-hooks")));
    let depend = std::fs::read_to_string(rootfs.join("etc/init.d/.depend.stop")).unwrap();
    assert!(depend.contains("sendsigs: nginx rehost-hooks"), "{depend}");
}

/// The container becomes healthy with every one of `services` active, and sshd and
/// nginx listen on 22 and 80.
fn assert_serving(c: &Booted, services: &[&str]) {
    let status = c.wait_healthy(Duration::from_secs(60));
    assert_active(&status, services);
    let ports = c.listening();
    assert!(
        ports.contains(&22) && ports.contains(&80),
        "listening: {ports:?}"
    );
}

/// Every one of `services` is listed active by `rehost-init status`.
fn assert_active(status: &str, services: &[&str]) {
    for s in services {
        let line = status
            .lines()
            .find(|l| l.starts_with(s))
            .unwrap_or_else(|| panic!("{s} missing:\n{status}"));
        assert!(line.contains(" active "), "{line}");
    }
}

/// Whether a path exists as itself (a symlink into the image's root is not followed on the host).
fn link_exists(p: &std::path::Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// What `rehost exec NAME CMD` would give: (stdout, stderr, exit code).
fn sh(c: &Booted, script: &str) -> (String, String, i32) {
    let out = c.exec(&["/bin/sh", "-c", script]);
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
        out.status.code().unwrap_or(-1),
    )
}

/// An HTTP GET of port 80 from inside, with bash's /dev/tcp (the fixture has no curl).
const GET: &str =
    "exec 3<>/dev/tcp/127.0.0.1/80 && printf \"GET / HTTP/1.0\\r\\n\\r\\n\" >&3 && head -1 <&3";

/// In rehost mode the operator's commands work against rehost-init: systemctl, service,
/// an init script run by hand, journalctl; a unit's ExecStartPre may call
/// `systemctl set-environment` (as mariadb's does) and its ExecStart sees the value.
#[test]
fn rehost_mode_answers_systemctl_service_init_scripts_and_journalctl() {
    assert!(
        is_root(),
        "these tests need root (namespaces, mounts, chroot)"
    );
    let work = Scratch::new("tools");
    let src = work.path().join("src");
    copy_tree(&fixture("debian-systemd"), &src);
    // Not enabled: started by hand only.
    write(
        &src,
        "/etc/systemd/system/envpre.service",
        "[Unit]\nDescription=Reads what its ExecStartPre set\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStartPre=/bin/sh -c 'systemctl set-environment PRE_VALUE=from-pre'\nExecStart=/bin/sh -c 'echo \"$PRE_VALUE $FOO\" > /run/envpre; echo envpre-ran'\n",
        0o644,
    );
    // Needs nginx: stopping nginx stops it, a restart of nginx starts it again.
    write(
        &src,
        "/etc/systemd/system/needy.service",
        "[Unit]\nRequires=nginx.service\nAfter=nginx.service\n[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n",
        0o644,
    );
    std::os::unix::fs::symlink(
        "/etc/systemd/system/needy.service",
        src.join("etc/systemd/system/multi-user.target.wants/needy.service"),
    )
    .unwrap();
    let rootfs = convert_and_unpack(&src, work.path(), &["--init", "rehost"]);
    // The image's own systemctl is kept for the other modes; the name links to rehost-init.
    assert_eq!(
        std::fs::read_link(rootfs.join("usr/bin/systemctl")).unwrap(),
        std::path::Path::new("/usr/sbin/rehost-init")
    );
    assert_eq!(
        std::fs::read(rootfs.join("usr/lib/rehost/real/systemctl")).unwrap(),
        std::fs::read(src.join("usr/bin/systemctl")).unwrap()
    );
    let c = boot(&rootfs, work.path());
    c.wait_healthy(Duration::from_secs(60));

    let (out, _, code) = sh(&c, "systemctl is-active nginx");
    assert_eq!((out.as_str(), code), ("active", 0));
    let (pid_before, _, _) = sh(&c, "systemctl show -p MainPID --value nginx.service");

    // restart: the job waits until nginx is back, and it answers.
    let (_, err, code) = sh(&c, "systemctl restart nginx");
    assert_eq!(code, 0, "{err}\n{}", c.console());
    let (pid_after, _, _) = sh(&c, "systemctl show -p MainPID --value nginx");
    assert_ne!(pid_before, pid_after);
    assert_ne!(pid_after, "0");
    let (line, _, _) = sh(&c, &format!("bash -c '{GET}'"));
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");

    let (out, _, code) = sh(&c, "systemctl is-active needy");
    assert_eq!(
        (out.as_str(), code),
        ("active", 0),
        "a restart of nginx starts needy again"
    );

    // stop: is-active says inactive with 3, status 3 (LSB), nothing listens; what
    // requires nginx stops with it.
    let (_, err, code) = sh(&c, "systemctl stop nginx.service");
    assert_eq!(code, 0, "{err}");
    let (out, _, code) = sh(&c, "systemctl is-active needy.service");
    assert_eq!((out.as_str(), code), ("inactive", 3));
    let (out, _, code) = sh(&c, "systemctl is-active nginx");
    assert_eq!((out.as_str(), code), ("inactive", 3));
    let (status, _, code) = sh(&c, "systemctl status nginx --no-pager");
    assert_eq!(code, 3, "{status}");
    assert!(status.contains("Active: inactive (dead)"), "{status}");
    assert!(!c.listening().contains(&80));

    // service NAME start, then the init script by hand: both go through rehost-init.
    let (_, err, code) = sh(&c, "service nginx start");
    assert_eq!(code, 0, "{err}");
    // A start does not start what requires the unit (as systemd): the stopped needy makes
    // the container degraded until the operator starts it again.
    let (st, _, code) = sh(&c, "rehost-init status");
    assert_eq!(code, 1, "{st}");
    assert!(
        st.contains("degraded: needy.service (inactive: stopped by request)"),
        "{st}"
    );
    let (_, err, code) = sh(&c, "systemctl start needy");
    assert_eq!(code, 0, "{err}");
    let (line, _, _) = sh(&c, &format!("bash -c '{GET}'"));
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let (_, err, code) = sh(&c, "/etc/init.d/nginx restart");
    assert_eq!(code, 0, "{err}");
    let (pid_script, _, _) = sh(&c, "systemctl show -p MainPID --value nginx");
    assert_ne!(pid_script, pid_after);
    let (status, _, code) = sh(&c, "systemctl status nginx");
    assert_eq!(code, 0, "{status}");
    assert!(
        status.contains("Active: active (running) since"),
        "{status}"
    );
    assert!(
        status.contains(&format!("Main PID: {pid_script} (nginx)")),
        "{status}"
    );
    let st = c.wait_healthy(Duration::from_secs(30));
    assert_active(&st, &["nginx.service"]);

    // A unit no one enabled starts on request, with the manager's environment, including
    // what its own ExecStartPre set.
    let (_, err, code) = sh(&c, "systemctl set-environment FOO=bar");
    assert_eq!(code, 0, "{err}");
    let (env, _, _) = sh(&c, "systemctl show-environment");
    assert!(env.lines().any(|l| l == "FOO=bar"), "{env}");
    let (_, err, code) = sh(&c, "systemctl start envpre");
    assert_eq!(code, 0, "{err}\n{}", c.console());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("run/envpre")).ok(),
        None,
        "/run is the container's tmpfs, not the rootfs"
    );
    let (seen, _, _) = sh(&c, "cat /run/envpre");
    assert_eq!(seen, "from-pre bar");
    let (_, _, code) = sh(&c, "systemctl unset-environment FOO");
    assert_eq!(code, 0);
    let (env, _, _) = sh(&c, "systemctl show-environment");
    assert!(!env.lines().any(|l| l.starts_with("FOO=")), "{env}");

    // journalctl -u shows the unit's own output and the init's lines about it.
    let (log, err, code) = sh(&c, "journalctl -u envpre --no-pager");
    assert_eq!(code, 0, "{err}");
    assert!(log.contains("envpre: envpre-ran"), "{log}");
    let (log, _, _) = sh(&c, "journalctl -u nginx -n 3 --no-pager");
    assert!(log.contains("Started nginx.service."), "{log}");
    assert!(log.lines().count() <= 3, "{log}");

    // What does not exist, and who may not.
    let (_, err, code) = sh(&c, "systemctl start nosuch");
    assert_eq!(code, 5);
    assert_eq!(
        err,
        "Failed to start nosuch.service: Unit nosuch.service not found."
    );
    let (_, err, code) = sh(&c, "systemctl status nosuch");
    assert_eq!(code, 4, "{err}");
    let (_, err, code) = sh(
        &c,
        "setpriv --reuid 65534 --regid 65534 --clear-groups systemctl stop nginx",
    );
    assert_eq!(code, 1);
    assert!(err.contains("Access denied"), "{err}");
    let (out, _, code) = sh(
        &c,
        "setpriv --reuid 65534 --regid 65534 --clear-groups systemctl is-active nginx",
    );
    assert_eq!((out.as_str(), code), ("active", 0));
    let (_, err, code) = sh(&c, "systemctl kill -s HUP rsyslog");
    assert_eq!(code, 0, "{err}");
    let (state, _, code) = sh(&c, "systemctl is-system-running");
    assert!(["running", "degraded"].contains(&state.as_str()), "{state}");
    assert_eq!(code == 0, state == "running");
}

/// Socket units in rehost mode: rehost-init listens, and starts the service on the first
/// connection, handing it the listening socket (`Accept=no`: `LISTEN_FDS`, `LISTEN_PID`,
/// fd 3), or one instance per connection with the connection on stdin and stdout
/// (`Accept=yes`, inetd style, as older Debian's `ssh.socket`).
#[test]
fn socket_units_start_their_service_on_the_first_connection() {
    assert!(
        is_root(),
        "these tests need root (namespaces, mounts, chroot)"
    );
    let work = Scratch::new("sockets");
    let src = work.path().join("src");
    copy_tree(&fixture("debian-systemd"), &src);
    write(
        &src,
        "/etc/systemd/system/echo.socket",
        "[Socket]\nListenStream=127.0.0.1:7777\nAccept=yes\n[Install]\nWantedBy=sockets.target\n",
        0o644,
    );
    write(
        &src,
        "/etc/systemd/system/echo@.service",
        "[Service]\nExecStart=/bin/sh -c 'read line; echo \"got:$line\"'\nStandardInput=socket\n",
        0o644,
    );
    write(
        &src,
        "/etc/systemd/system/held.socket",
        "[Socket]\nListenStream=7778\n[Install]\nWantedBy=sockets.target\n",
        0o644,
    );
    write(
        &src,
        "/etc/systemd/system/held.service",
        // `$$` is a literal `$` in a unit file, so the shell's `$$` is written `$$$$`.
        "[Service]\nExecStart=/bin/sh -c 'echo \"$LISTEN_FDS $LISTEN_PID $$$$ $LISTEN_FDNAMES $(readlink /proc/$$$$/fd/3)\" > /run/held; exec sleep infinity'\n",
        0o644,
    );
    for unit in ["echo.socket", "held.socket"] {
        let dir = src.join("etc/systemd/system/sockets.target.wants");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(format!("/etc/systemd/system/{unit}"), dir.join(unit)).unwrap();
    }
    let rootfs = convert_and_unpack(
        &src,
        work.path(),
        &[
            "--init",
            "rehost",
            "--service",
            "echo.socket",
            "--service",
            "held.socket",
        ],
    );
    let c = boot(&rootfs, work.path());
    let st = c.wait_healthy(Duration::from_secs(60));
    assert_active(&st, &["echo.socket", "held.socket"]);
    let ports = c.listening();
    assert!(ports.contains(&7777) && ports.contains(&7778), "{ports:?}");
    // Nothing started before a client came.
    let (out, _, code) = sh(&c, "systemctl is-active held.service");
    assert_eq!((out.as_str(), code), ("inactive", 3));

    // Accept=yes: each connection is served by its own instance.
    for word in ["one", "two"] {
        let (line, err, _) = sh(
            &c,
            &format!("bash -c 'exec 3<>/dev/tcp/127.0.0.1/7777; echo {word} >&3; head -1 <&3'"),
        );
        assert_eq!(line, format!("got:{word}"), "{err}\n{}", c.console());
    }

    // Accept=no: the first connection starts held.service with the socket as fd 3.
    let (_, err, _) = sh(&c, "bash -c 'exec 3<>/dev/tcp/127.0.0.1/7778; sleep 0.2'");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let (seen, _, _) = sh(&c, "cat /run/held 2>/dev/null");
        if !seen.is_empty() || std::time::Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let f: Vec<&str> = seen.split_whitespace().collect();
    assert_eq!(f.len(), 5, "{seen:?} {err}\n{}", c.console());
    assert_eq!(f[0], "1");
    assert_eq!(f[1], f[2], "LISTEN_PID is the service's own pid");
    assert_eq!(f[3], "held.socket");
    assert!(f[4].starts_with("socket:["), "{seen}");
    let (out, _, code) = sh(&c, "systemctl is-active held.service");
    assert_eq!((out.as_str(), code), ("active", 0));
    let (out, _, _) = sh(&c, "systemctl show -p SubState --value held.socket");
    assert_eq!(out, "listening");
}
