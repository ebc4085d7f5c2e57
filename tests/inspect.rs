//! End-to-end tests of `rehost inspect`: the inventory of real Debian systems against
//! what their own tools say, the hand-written trees of other families against their
//! expected inventories, bad input, and the plan's round trip through `convert --plan`.

mod common;

use common::{fixture, rehost, rehost_cmd};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `rehost inspect ARGS --json`, parsed; panics with stderr when it fails.
fn inspect_json(source: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["inspect", source.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = rehost(&args);
    assert!(
        out.status.success(),
        "inspect {} failed: {}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("inspect --json prints JSON")
}

fn tree(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/trees")
        .join(name)
}

fn services(report: &Value) -> Vec<&Value> {
    report["inventory"]["services"]
        .as_array()
        .expect("services")
        .iter()
        .collect()
}

fn service_names(report: &Value) -> BTreeSet<String> {
    services(report)
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

fn service<'a>(report: &'a Value, name: &str) -> &'a Value {
    services(report)
        .into_iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no service {name} in {:?}", service_names(report)))
}

fn decision<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["plan"]["service"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no decision for {name}"))
}

fn strings(value: &Value, field: &str) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[field].as_str().unwrap_or_default().to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// What systemd itself says is enabled in a tree: `systemctl --root`, or systemctl run
/// inside the tree when the machine has none.
fn systemctl_enabled(root: &Path) -> BTreeSet<String> {
    let out = if Path::new("/usr/bin/systemctl").exists() || Path::new("/bin/systemctl").exists() {
        Command::new("systemctl")
            .arg(format!("--root={}", root.display()))
            .args([
                "list-unit-files",
                "--state=enabled",
                "--no-legend",
                "--no-pager",
            ])
            .output()
            .expect("systemctl runs")
    } else {
        Command::new("chroot")
            .arg(root)
            .args([
                "systemctl",
                "list-unit-files",
                "--state=enabled",
                "--no-legend",
                "--no-pager",
            ])
            .output()
            .expect("chroot systemctl runs")
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn debian_systemd_enabled_units_are_what_systemctl_says() {
    let fixture = fixture("debian-systemd");
    let root = fixture.join("rootfs");
    let report = inspect_json(&root, &[]);
    let inv = &report["inventory"];
    assert_eq!(inv["os"]["id"], "debian");
    assert_eq!(inv["os"]["version"], "12");
    assert_eq!(inv["architecture"], Value::String(host_arch().into()));
    assert_eq!(inv["init"]["kind"], "systemd");
    assert_eq!(inv["packages"]["manager"], "dpkg");
    assert!(inv["packages"]["count"].as_u64().unwrap() > 100);

    let expected = systemctl_enabled(&root);
    assert!(expected.contains("ssh.service"), "{expected:?}");
    let native: BTreeSet<String> = services(&report)
        .iter()
        .filter(|s| s["origin"] == "systemd")
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(native, expected);
    // No SysV script lacks a native unit in this fixture: nothing generated either.
    assert_eq!(service_names(&report), expected);

    // The plan: the operators' services stay, hardware and consoles go.
    for kept in [
        "ssh.service",
        "cron.service",
        "rsyslog.service",
        "nginx.service",
    ] {
        assert_eq!(decision(&report, kept)["action"], "keep", "{kept}");
    }
    for masked in ["getty@.service", "systemd-pstore.service", "fstrim.timer"] {
        assert_eq!(decision(&report, masked)["action"], "mask", "{masked}");
    }
    assert_eq!(decision(&report, "apt-daily.timer")["action"], "drop");
    assert_eq!(report["plan"]["init"]["mode"], "systemd");

    // Ports from the configuration, each with its service.
    let ports = &inv["ports"];
    assert!(ports
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["port"] == 22 && p["service"] == "ssh.service"));
    assert!(ports
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["port"] == 80 && p["service"] == "nginx.service"));
    // The fixture's marker hostname and its SSH host keys are identity.
    let identity = strings(&inv["identity"], "path");
    assert!(identity.contains("/etc/hostname"));
    assert!(identity.contains("/etc/ssh/ssh_host_ed25519_key"));
    assert!(strings(&inv["secrets"], "kind").contains("ssh-host-private-key"));
    assert!(inv["size"]["total_bytes"].as_u64().unwrap() > 100 << 20);
}

#[test]
fn the_archive_gives_the_same_inventory_as_the_tree() {
    let fixture = fixture("debian-systemd");
    let from_dir = inspect_json(&fixture.join("rootfs"), &[]);
    let from_tar = inspect_json(&fixture.join("rootfs.tar"), &[]);
    for field in [
        "os",
        "architecture",
        "packages",
        "init",
        "services",
        "scheduled",
        "ports",
        "users",
        "identity",
        "secrets",
    ] {
        assert_eq!(
            from_dir["inventory"][field], from_tar["inventory"][field],
            "{field} differs between the tree and its archive"
        );
    }
    // The same archive on standard input (`-`), as `ssh host tar c / | rehost inspect -`.
    let piped = rehost_cmd()
        .args(["inspect", "-", "--json", "--no-walk"])
        .stdin(std::fs::File::open(fixture.join("rootfs.tar")).unwrap())
        .output()
        .unwrap();
    assert!(
        piped.status.success(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    let from_stdin: Value = serde_json::from_slice(&piped.stdout).unwrap();
    assert_eq!(
        from_dir["inventory"]["services"],
        from_stdin["inventory"]["services"]
    );
    let mut plan_dir = from_dir["plan"].clone();
    let mut plan_tar = from_tar["plan"].clone();
    plan_dir["source"] = Value::Null;
    plan_tar["source"] = Value::Null;
    assert_eq!(plan_dir, plan_tar);
}

#[test]
fn debian_sysvinit_enabled_scripts_are_the_rc2_links() {
    let fixture = fixture("debian-sysvinit");
    let root = fixture.join("rootfs");
    let report = inspect_json(&root, &["--no-walk"]);
    assert_eq!(report["inventory"]["init"]["kind"], "sysv");
    assert_eq!(report["inventory"]["init"]["default"], "2");
    let mut expected = BTreeSet::new();
    for entry in std::fs::read_dir(root.join("etc/rc2.d")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with('S') {
            let target = std::fs::read_link(root.join("etc/rc2.d").join(&name)).unwrap();
            expected.insert(target.file_name().unwrap().to_str().unwrap().to_string());
        }
    }
    assert!(
        expected.contains("ssh") && expected.contains("rsyslog"),
        "{expected:?}"
    );
    assert_eq!(service_names(&report), expected);
    let ssh = service(&report, "ssh");
    assert_eq!(ssh["origin"], "sysv");
    assert_eq!(ssh["file"], "/etc/init.d/ssh");
    assert_eq!(report["plan"]["init"]["mode"], "rehost-init");
    assert_eq!(decision(&report, "rc.local")["review"], true);
}

#[test]
fn centos7_layout() {
    let root = tree("centos7");
    let report = inspect_json(&root, &[]);
    let inv = &report["inventory"];
    assert_eq!(inv["os"]["pretty_name"], "CentOS Linux 7 (Core)");
    assert_eq!(inv["os"]["family"], "rhel");
    assert_eq!(inv["architecture"], "amd64");
    assert_eq!(inv["packages"]["manager"], "rpm");
    assert_eq!(inv["packages"]["count"], Value::Null);
    assert_eq!(inv["init"]["kind"], "systemd");
    assert_eq!(inv["init"]["default"], "multi-user.target");

    let expected_native = set(&[
        "NetworkManager.service",
        "billing-sync.service",
        "cups.service",
        "gdm.service",
        "chronyd.service",
        "crond.service",
        "getty@.service",
        "kdump.service",
        "myapp.service",
        "nginx.service",
        "postfix.service",
        "rsyslog.service",
        "sshd.service",
        "tuned.service",
    ]);
    let native: BTreeSet<String> = services(&report)
        .iter()
        .filter(|s| s["origin"] == "systemd")
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(native, expected_native);
    if Path::new("/usr/bin/systemctl").exists() {
        assert_eq!(systemctl_enabled(&root), expected_native);
    }
    // The SysV scripts enabled in rc3.d, through the sysv generator.
    let generated: BTreeSet<String> = services(&report)
        .iter()
        .filter(|s| s["origin"] == "sysv-generator")
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(generated, set(&["legacy-agent.service", "network.service"]));
    assert_eq!(
        service(&report, "legacy-agent.service")["file"],
        "/etc/rc.d/init.d/legacy-agent"
    );

    assert_eq!(decision(&report, "myapp.service")["review"], true);
    assert_eq!(decision(&report, "myapp.service")["action"], "keep");
    // What each runs, from its unit file.
    let myapp = service(&report, "myapp.service");
    assert_eq!(
        myapp["command"],
        "/opt/billing/bin/billing-api --listen 0.0.0.0:8080"
    );
    assert_eq!(myapp["user"], "app");
    assert_eq!(myapp["restart"], "always");
    assert_eq!(myapp["type"], "simple");
    assert_eq!(myapp["file"], "/etc/systemd/system/myapp.service");
    let sshd = service(&report, "sshd.service");
    assert_eq!(sshd["type"], "notify");
    assert_eq!(sshd["restart"], "on-failure");
    assert_eq!(sshd["file"], "/usr/lib/systemd/system/sshd.service");
    assert_eq!(
        service(&report, "legacy-agent.service")["description"],
        "inventory agent"
    );
    // Enabled, but never started: a condition fails here, or the default target
    // (multi-user) does not reach graphical.target's wants.
    let sync = decision(&report, "billing-sync.service");
    assert_eq!(sync["action"], "drop");
    assert!(sync["reason"]
        .as_str()
        .unwrap()
        .contains("ConditionPathExists=/etc/billing/sync.conf"));
    assert_eq!(
        service(&report, "cups.service")["started_by_default"],
        false
    );
    assert_eq!(decision(&report, "cups.service")["action"], "drop");
    assert_eq!(service(&report, "sshd.service")["started_by_default"], true);
    assert_eq!(
        service(&report, "getty@.service")["started_by_default"],
        true
    );
    for masked in [
        "tuned.service",
        "NetworkManager.service",
        "chronyd.service",
        "kdump.service",
        "network.service",
    ] {
        assert_eq!(decision(&report, masked)["action"], "mask", "{masked}");
    }

    // The garbage unit and the symlink loop are findings, never services.
    let findings = strings(&inv["findings"], "path");
    assert!(
        findings.iter().any(|f| f.contains("loop-a.service")),
        "{findings:?}"
    );
    assert!(
        findings.iter().any(|f| f.ends_with("broken.service:1")),
        "the garbage unit is a finding with its line: {findings:?}"
    );
    assert!(!service_names(&report).contains("broken.service"));
    assert!(!service_names(&report).contains("loop-a.service"));

    let jobs = inv["scheduled"].as_array().unwrap();
    assert!(jobs.iter().any(|j| j["kind"] == "user-crontab"
        && j["user"] == "app"
        && j["command"] == "/opt/billing/bin/export --to /srv/exports"));
    assert!(jobs
        .iter()
        .any(|j| j["from"] == "/etc/cron.d/0hourly" && j["schedule"] == "01 * * * *"));
    assert!(
        !jobs
            .iter()
            .any(|j| j["from"] == "/etc/cron.d/billing-report.rpmsave"),
        "cron ignores names with dots"
    );

    let ports: BTreeSet<(u64, String)> = inv["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["port"].as_u64().unwrap(),
                p["service"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(ports.contains(&(2222, "sshd.service".into())), "{ports:?}");
    assert!(ports.contains(&(443, "nginx.service".into())), "{ports:?}");
    assert!(ports.contains(&(25, "postfix.service".into())), "{ports:?}");

    assert_eq!(
        strings(&inv["users"], "name"),
        set(&["root", "postgres", "app"])
    );
    // The image leaves out what the plan excludes (identity files, here).
    let total = inv["size"]["total_bytes"].as_u64().unwrap();
    let image = report["image_bytes"].as_u64().unwrap();
    assert!(image > 0 && image < total, "image {image}, server {total}");
    assert_eq!(strings(&inv["data_dirs"], "path"), set(&["/var/lib/pgsql"]));
    assert_eq!(
        strings(&inv["identity"], "kind"),
        set(&[
            "fstab",
            "machine-id",
            "hostname",
            "ssh-host-key",
            "network-config",
            "persistent-net-rules",
            "cloud-init"
        ])
    );
    let secrets: BTreeSet<(String, String)> = inv["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().into(),
                s["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        secrets,
        [
            ("/etc/pki/tls/private/billing.key", "private-key"),
            ("/etc/shadow", "password-hashes"),
            ("/etc/ssh/ssh_host_rsa_key", "ssh-host-private-key"),
            ("/home/app/.aws/credentials", "cloud-credentials"),
            ("/home/app/.ssh/id_ed25519", "ssh-private-key"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
    );
}

#[test]
fn alpine_openrc_layout() {
    let report = inspect_json(&tree("alpine"), &[]);
    let inv = &report["inventory"];
    assert_eq!(inv["os"]["id"], "alpine");
    assert_eq!(inv["os"]["version"], "3.19.1");
    // From the tree's own busybox, not from the machine running the test.
    assert_eq!(inv["architecture"], "arm64");
    assert_eq!(inv["packages"]["manager"], "apk");
    assert_eq!(inv["packages"]["count"], 4);
    assert_eq!(inv["init"]["kind"], "openrc");
    assert_eq!(
        service_names(&report),
        set(&[
            "devfs",
            "dmesg",
            "mdev",
            "hwdrivers",
            "modules",
            "sysctl",
            "hostname",
            "bootmisc",
            "syslog",
            "networking",
            "crond",
            "sshd",
            "nginx",
            "queue-worker"
        ])
    );
    assert_eq!(service(&report, "sshd")["starts_in"][0], "default");
    assert_eq!(service(&report, "mdev")["starts_in"][0], "sysinit");
    for masked in ["devfs", "mdev", "modules", "networking"] {
        assert_eq!(decision(&report, masked)["action"], "mask", "{masked}");
    }
    for kept in ["crond", "sshd", "nginx", "syslog"] {
        assert_eq!(decision(&report, kept)["action"], "keep", "{kept}");
    }
    assert_eq!(decision(&report, "queue-worker")["review"], true);
    let worker = service(&report, "queue-worker");
    assert_eq!(worker["command"], "/opt/worker/bin/worker --queue jobs");
    assert_eq!(worker["user"], "worker");
    assert_eq!(worker["restart"], "always");
    assert_eq!(worker["type"], "simple");
    assert_eq!(service(&report, "sshd")["type"], "forking");
    assert_eq!(service(&report, "bootmisc")["type"], "oneshot");
    // redis is configured but no runlevel starts it: no port for it.
    let ports: BTreeSet<u64> = inv["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [22, 8000].into_iter().collect());
    let jobs = inv["scheduled"].as_array().unwrap();
    assert!(jobs
        .iter()
        .any(|j| j["user"] == "worker" && j["schedule"] == "@reboot"));
    assert_eq!(strings(&inv["users"], "name"), set(&["root", "worker"]));
    assert!(strings(&inv["secrets"], "kind").contains("registry-credentials"));
    assert_eq!(report["plan"]["init"]["mode"], "rehost-init");
}

#[test]
fn ubuntu_upstart_layout() {
    let report = inspect_json(&tree("ubuntu1404"), &[]);
    let inv = &report["inventory"];
    assert_eq!(inv["os"]["id"], "ubuntu");
    assert_eq!(inv["os"]["version"], "14.04");
    assert_eq!(inv["os"]["family"], "ubuntu");
    assert_eq!(inv["init"]["kind"], "upstart");
    assert_eq!(inv["init"]["default"], "2");
    assert_eq!(
        report["plan"]["profiles"],
        serde_json::json!(["base", "debian", "ubuntu"])
    );
    // Jobs with `start on`, minus the overridden one; SysV scripts of rc2.d that are
    // not upstart jobs in disguise.
    assert_eq!(
        service_names(&report),
        set(&[
            "billing-worker",
            "cron",
            "mountall",
            "mysql",
            "network-interface",
            "rc",
            "rc-sysinit",
            "rsyslog",
            "ssh",
            "tty1",
            "udev",
            "apache2",
            "ondemand"
        ])
    );
    assert_eq!(service(&report, "ssh")["origin"], "upstart");
    assert_eq!(service(&report, "apache2")["origin"], "sysv");
    assert_eq!(decision(&report, "tty1")["action"], "mask");
    assert_eq!(decision(&report, "udev")["action"], "mask");
    assert_eq!(decision(&report, "mysql")["action"], "keep");
    assert_eq!(decision(&report, "billing-worker")["review"], true);
    let worker = service(&report, "billing-worker");
    assert_eq!(worker["command"], "/srv/billing/bin/worker --threads 4");
    assert_eq!(worker["user"], "billing");
    assert_eq!(worker["restart"], "always");
    assert_eq!(worker["type"], "simple");
    assert_eq!(service(&report, "cron")["type"], "forking");
    assert_eq!(service(&report, "mountall")["type"], "oneshot");
    assert_eq!(
        service(&report, "apache2")["description"],
        "Apache2 web server"
    );
    // MySQL listens on loopback only: found, not exposed.
    let mysql = inv["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == 3306)
        .expect("mysql's port");
    assert_eq!(mysql["address"], "127.0.0.1");
    let exposed: BTreeSet<u64> = report["plan"]["port"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(exposed, [22, 80, 443].into_iter().collect());
    assert_eq!(strings(&inv["data_dirs"], "path"), set(&["/var/lib/mysql"]));
    let secrets = inv["secrets"].as_array().unwrap();
    let key = secrets
        .iter()
        .find(|s| s["path"] == "/home/ubuntu/.ssh/id_rsa")
        .expect("the user's key");
    assert_eq!(key["detail"], "encrypted with a passphrase");
    assert!(strings(&inv["secrets"], "path").contains("/srv/billing/.pgpass"));
    // No ELF binary in this tree: said so, not guessed.
    assert_eq!(inv["architecture"], Value::Null);
    assert!(strings(&inv["findings"], "problem")
        .iter()
        .any(|p| p.contains("architecture is unknown")));
}

#[test]
fn secrets_are_listed_never_shown() {
    for name in ["centos7", "alpine", "ubuntu1404"] {
        let root = tree(name);
        let json = rehost(&["inspect", root.to_str().unwrap(), "--json"]);
        let text = rehost(&["inspect", root.to_str().unwrap()]);
        for out in [&json.stdout, &text.stdout] {
            let out = String::from_utf8_lossy(out);
            for needle in [
                "$6$",
                "PRIVATE KEY-----",
                "aws_secret",
                "fixture-password",
                "Zml4",
            ] {
                assert!(!out.contains(needle), "{name}: the report shows {needle}");
            }
        }
    }
}

#[test]
fn bad_input_gives_findings_or_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("etc/passwd")).unwrap(); // a directory, not a file
    std::fs::create_dir_all(root.join("etc/systemd/system/multi-user.target.wants")).unwrap();
    std::fs::create_dir_all(root.join("usr/lib/systemd/system")).unwrap();
    std::fs::write(root.join("usr/lib/systemd/systemd"), b"").unwrap();
    std::fs::write(
        root.join("usr/lib/systemd/system/junk.service"),
        b"\x00\xff\xfe garbage\n[Service\nExecStart\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "/usr/lib/systemd/system/junk.service",
        root.join("etc/systemd/system/multi-user.target.wants/junk.service"),
    )
    .unwrap();
    std::os::unix::fs::symlink("../sbin/init", root.join("etc/init-loop")).unwrap();
    std::fs::create_dir_all(root.join("sbin")).unwrap();
    std::os::unix::fs::symlink("/etc/init-loop", root.join("sbin/init")).unwrap();
    std::fs::write(root.join("etc/crontab"), b"* * *\nnot a job at all\n").unwrap();
    // A fifo where a configuration file should be would block a reader for ever.
    let made = Command::new("mkfifo")
        .arg(root.join("etc/lsb-release"))
        .status()
        .unwrap();
    assert!(made.success());

    let report = inspect_json(root, &[]);
    let inv = &report["inventory"];
    assert_eq!(inv["os"]["id"], "unknown");
    let problems: Vec<String> = inv["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{}: {}",
                f["path"].as_str().unwrap(),
                f["problem"].as_str().unwrap()
            )
        })
        .collect();
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(has("/etc/os-release: no os-release"), "{problems:?}");
    assert!(
        has("/sbin/init: too many levels of symbolic links"),
        "{problems:?}"
    );
    assert!(
        has("/etc/passwd: a directory where a file was expected"),
        "{problems:?}"
    );
    assert!(has("/etc/lsb-release: not a regular file"), "{problems:?}");
    assert!(has("junk.service:1: expected Key=value"), "{problems:?}");
    assert!(inv["services"].as_array().unwrap().is_empty());
    assert!(inv["scheduled"].as_array().unwrap().is_empty());

    // A source that is not there: one line naming it, a failure status.
    let missing = root.join("no-such-server");
    let out = rehost(&["inspect", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-server") && err.contains("no such file"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // An archive that is not one: the same.
    let junk = root.join("server.tar");
    std::fs::write(&junk, vec![0x5au8; 4096]).unwrap();
    let out = rehost(&["inspect", junk.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.tar"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn the_plan_round_trips_and_convert_applies_its_excludes() {
    let dir = tempfile::tempdir().unwrap();
    let plan_path = dir.path().join("plan.toml");
    let root = tree("centos7");
    let out = rehost(&[
        "inspect",
        root.to_str().unwrap(),
        "--plan",
        plan_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&plan_path).unwrap();
    assert!(text.starts_with("# rehost migration plan"));
    let plan = converter::plan::Plan::read(&plan_path).expect("the written plan reads back");
    assert_eq!(plan.init.mode, converter::plan::InitMode::Systemd);
    let myapp = plan
        .services
        .iter()
        .find(|s| s.name == "myapp.service")
        .unwrap();
    assert!(myapp.review && !myapp.reason.is_empty());

    // Writing again refuses to replace it without --force.
    let again = rehost(&[
        "inspect",
        root.to_str().unwrap(),
        "--plan",
        plan_path.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // An operator's edit: leave /opt out too.
    let edited = format!(
        "{text}\n[[exclude]]\nreason = \"the billing code is deployed separately\"\npaths = [\"/opt/billing\"]\n"
    );
    std::fs::write(&plan_path, edited).unwrap();
    let image = dir.path().join("image");
    let out = rehost(&[
        "convert",
        root.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
        "--plan",
        plan_path.to_str().unwrap(),
        "--compression",
        "none",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let layer = summary["layers"][0]["digest"].as_str().unwrap();
    let blob = image
        .join("blobs/sha256")
        .join(layer.strip_prefix("sha256:").unwrap());
    let list = Command::new("tar").arg("-tf").arg(&blob).output().unwrap();
    let names = String::from_utf8(list.stdout).unwrap();
    let has = |p: &str| {
        names
            .lines()
            .any(|l| l.trim_start_matches("./").trim_end_matches('/') == p)
    };
    assert!(has("etc/passwd"), "the layer lists: {names}");
    assert!(
        !has("opt/billing/bin/billing-api"),
        "the plan's own exclude applies"
    );
    assert!(
        !has("etc/udev/rules.d/70-persistent-net.rules"),
        "identity excluded"
    );
    assert!(
        !has("etc/ssh/ssh_host_rsa_key"),
        "regenerated keys are not in the image"
    );
    assert!(has("etc/ssh/sshd_config"));

    // A broken plan is one clear error naming the file.
    std::fs::write(&plan_path, "version = 1\nbogus = true\n").unwrap();
    let out = rehost(&[
        "convert",
        root.to_str().unwrap(),
        "-o",
        dir.path().join("image2").to_str().unwrap(),
        "--plan",
        plan_path.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plan.toml"), "{err}");
    assert!(!dir.path().join("image2").exists(), "nothing half-written");
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A copy of debian-systemd with a hand-edited conffile, an application no package
/// installed and a changed package binary: each is named in the report and in the plan
/// file's review notes; the untouched package files are not.
#[test]
fn what_is_not_from_a_package_is_reported() {
    let work = common::scratch();
    let root = work.path().join("rootfs");
    common::run(
        "cp",
        &[
            "-a",
            common::fixture_rootfs("debian-systemd").to_str().unwrap(),
            root.to_str().unwrap(),
        ],
    );
    let append = |rel: &str, text: &str| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(root.join(rel))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    append("etc/nginx/nginx.conf", "\n# tuned by hand\n");
    append("usr/bin/env", "patched");
    std::fs::create_dir_all(root.join("opt/app/lib")).unwrap();
    std::fs::write(root.join("opt/app/lib/server.py"), vec![b'#'; 200_000]).unwrap();

    let plan = work.path().join("plan.toml");
    let report = inspect_json(&root, &["--plan", plan.to_str().unwrap()]);
    let o = &report["inventory"]["ownership"];
    assert_eq!(o["manager"], "dpkg");
    assert!(o["packages"].as_u64().unwrap() > 100, "{o}");
    assert!(o["owned_files"].as_u64().unwrap() > 5000, "{o}");
    let changed: BTreeSet<String> = o["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {} {}", c["path"], c["package"], c["conffile"]))
        .collect();
    assert_eq!(
        changed,
        set(&[
            "\"/etc/nginx/nginx.conf\" \"nginx-common\" true",
            "\"/usr/bin/env\" \"coreutils\" false"
        ]),
        "{o}"
    );
    let dirs: Vec<&str> = o["unowned"]["largest_directories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(dirs.contains(&"/opt/app/lib"), "{dirs:?}");
    assert!(!dirs.iter().any(|d| d.starts_with("/usr/bin")), "{dirs:?}");
    let text = std::fs::read_to_string(&plan).unwrap();
    for needle in [
        "/opt/app/lib",
        "/etc/nginx/nginx.conf (conffile of nginx-common)",
    ] {
        assert!(
            text.contains(needle),
            "{needle} in the plan's review:\n{text}"
        );
    }
}

/// RPM servers, in both database formats rehost reads (the Berkeley DB `Packages` of
/// CentOS 7 and the SQLite `rpmdb.sqlite` of RHEL 9), from packages rpmbuild made and
/// Debian's rpm installed (fixtures/build-rpmdb): owners and versions, an edited %config
/// file, a changed binary and an unowned application are each named; the SBOM has the
/// packages' purls.
#[test]
fn rpm_databases_of_both_formats_give_owners_versions_and_changes() {
    let fixture = PathBuf::from(
        common::run(
            concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/build-rpmdb"),
            &[],
        )
        .trim(),
    );
    for (format, database, distro) in [
        ("bdb", "/var/lib/rpm/Packages", "centos"),
        ("sqlite", "/var/lib/rpm/rpmdb.sqlite", "rocky"),
    ] {
        let work = common::scratch();
        let root = work.path().join("rootfs");
        let source = fixture.join(format!("rootfs-{format}"));
        common::run(
            "cp",
            &["-a", source.to_str().unwrap(), root.to_str().unwrap()],
        );
        let unchanged = inspect_json(&root, &[]);
        let o = &unchanged["inventory"]["ownership"];
        assert_eq!(o["manager"], "rpm", "{format}: {o}");
        assert_eq!(o["packages"], 3, "{format}: {o}");
        // 400 pages of docs, the config, the page and its link, the two tool files.
        assert_eq!(o["owned_files"], 405, "{format}: {o}");
        assert_eq!(o["changed_files"], 0, "{format}: {o}");
        assert_eq!(o["unowned"]["files"], 2, "os-release and passwd: {o}");
        let p = &unchanged["inventory"]["packages"];
        assert_eq!(
            (&p["count"], p["database"].as_str()),
            (&3.into(), Some(database))
        );

        std::fs::write(root.join("etc/webapp/webapp.conf"), "listen 9090\n").unwrap();
        std::fs::write(root.join("usr/bin/tool"), "#!/bin/sh\necho patched\n").unwrap();
        std::fs::create_dir_all(root.join("opt/app")).unwrap();
        std::fs::write(root.join("opt/app/run.sh"), vec![b'#'; 50_000]).unwrap();
        let report = inspect_json(&root, &[]);
        let o = &report["inventory"]["ownership"];
        let changed: BTreeSet<String> = o["changed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| format!("{} {} {}", c["path"], c["package"], c["conffile"]))
            .collect();
        assert_eq!(
            changed,
            set(&[
                "\"/etc/webapp/webapp.conf\" \"webapp\" true",
                "\"/usr/bin/tool\" \"tool\" false"
            ]),
            "{format}: {o}"
        );
        let files: Vec<&str> = o["unowned"]["largest_files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].as_str().unwrap())
            .collect();
        assert_eq!(files.first(), Some(&"/opt/app/run.sh"), "{format}: {o}");

        let image = work.path().join("image.oci");
        let converted = common::json(&common::rehost_ok(&[
            "convert",
            root.to_str().unwrap(),
            "-o",
            image.to_str().unwrap(),
            "--init",
            "none",
            "--json",
        ]));
        // The rpm database cuts the image by package too: package layers and the
        // server's own on top.
        let layers = converted["layers"].as_array().unwrap();
        assert!(layers.len() >= 2, "{format}: {converted:#}");
        let sbom = work.path().join("sbom.json");
        common::rehost_ok(&[
            "sbom",
            image.to_str().unwrap(),
            "--format",
            "cyclonedx",
            "-o",
            sbom.to_str().unwrap(),
        ]);
        let doc: Value = serde_json::from_slice(&std::fs::read(&sbom).unwrap()).unwrap();
        let purls: BTreeSet<&str> = doc["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["purl"].as_str())
            .collect();
        for want in [
            format!("pkg:rpm/{distro}/webapp@2.4.1-3.el7?arch=noarch"),
            format!("pkg:rpm/{distro}/tool@1.0-1?arch=x86_64"),
            format!("pkg:rpm/{distro}/docs@0.9-2?arch=noarch"),
        ] {
            assert!(
                purls.contains(want.as_str()),
                "{format}: {want} in {purls:?}"
            );
        }
    }
}
