//! Agentless `ssh://` sources and the static rehost, end to end, against real OpenSSH
//! servers (a fixture's own sshd in a copy of its root, in a network namespace the test
//! makes): converting `ssh://` gives the tree converting the server's directory gives,
//! inspecting it gives the same inventory and plan plus the live ports, refusals are one
//! clear line, a noexec /tmp falls back to the server's tar, the operator's own ssh setup
//! (a host alias, an agent's key, a jump host) is what connects, and nothing stays on the
//! server after any run.

mod common;
mod remote_support;

use remote_support::*;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn local_rehost(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rehost"))
        .args(args)
        .output()
        .expect("run rehost")
}

/// The flags of every convert here: the tree alone (no rehost layer, which carries the
/// capture time), uncompressed so the layer reads as a plain tar.
const CONVERT: [&str; 5] = ["--init", "none", "--compression", "none", "--json"];

/// The listing of the tree without the mount points the running server has and the
/// directory does not (their own metadata is the mounted filesystem's), which must be
/// empty in both.
fn tree(image: &Path, mounts: &[&str]) -> BTreeMap<String, String> {
    let mut listing = layer_listing(image);
    // A running server changes these directories itself (sshd's pid file in /run, the
    // helper's private directory made and removed in /tmp, or in the user's home when
    // /tmp is noexec): their times are not the tree's.
    for dir in ["run/", "tmp/", "home/tester/"] {
        if let Some(line) = listing.get_mut(dir) {
            let mut fields: Vec<&str> = line.split(' ').collect();
            fields[4] = "-";
            *line = fields.join(" ");
        }
    }
    // A login with a terminal (the second command of a run whose sudo wants one) is
    // recorded by sshd, as the operator's own `ssh` would be.
    for log in ["wtmp", "lastlog", "GNUSparseFile.0/lastlog"] {
        listing.remove(&format!("var/log/{log}"));
    }
    for m in mounts {
        let dir = format!("{m}/");
        assert!(
            listing.remove(&dir).is_some(),
            "{dir} is missing from {}",
            image.display()
        );
        assert!(
            !listing.keys().any(|k| k.starts_with(&dir)),
            "{dir} is not empty in {}",
            image.display()
        );
    }
    listing
}

fn assert_same_tree(want: &BTreeMap<String, String>, got: &BTreeMap<String, String>) {
    let diff = differences(want, got);
    assert!(
        diff.is_empty(),
        "the trees differ in {} entries (directory / ssh://):\n{}",
        diff.len(),
        diff.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// The inventory and plan facts that must not depend on how the server was reached.
fn comparable(report: &serde_json::Value) -> serde_json::Value {
    let inv = &report["inventory"];
    let plan = &report["plan"];
    serde_json::json!({
        "os": inv["os"], "architecture": inv["architecture"], "packages": inv["packages"],
        "init": inv["init"], "services": inv["services"], "scheduled": inv["scheduled"],
        "users": inv["users"], "data_dirs": inv["data_dirs"], "identity": inv["identity"],
        "secrets": inv["secrets"],
        "plan_init": plan["init"], "plan_services": plan["services"],
        "plan_identity": plan["identity"], "plan_exclude": plan["exclude"],
        "plan_volume": plan["volume"], "plan_profiles": plan["profiles"],
    })
}

/// Converts and inspects the prepared root as a directory (before its server runs: a
/// directory walk must not meet the mounted /proc).
fn reference(prepared: &Prepared) -> (tempfile::TempDir, serde_json::Value) {
    let out = tempfile::tempdir().unwrap();
    let image = out.path().join("dir.oci");
    let root = prepared.root.to_str().unwrap();
    let mut args = vec!["convert", root, "-o", image.to_str().unwrap()];
    args.extend(CONVERT);
    let summary = ok(&local_rehost(&args), "convert of the directory");
    std::fs::write(out.path().join("dir.json"), summary).unwrap();
    let report = ok(
        &local_rehost(&["inspect", root, "--json"]),
        "inspect of the directory",
    );
    (out, serde_json::from_str(&report).unwrap())
}

/// What a convert's plan and package database decide: the layers by package and what
/// the image's configuration says of ports and volumes.
fn prepared_facts(summary: &serde_json::Value, image: &Path) -> serde_json::Value {
    let layers: Vec<_> = summary["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| serde_json::json!([l["role"], l["group"], l["packages"], l["files"]]))
        .collect();
    let (_, config) = common::image_json(image);
    serde_json::json!({
        "layering": summary["layering"], "layers": layers,
        "ports": config["config"]["ExposedPorts"], "volumes": config["config"]["Volumes"],
    })
}

/// Converts and inspects `ssh://USER@server/` and checks both against the directory's.
fn same_as_directory(server: &Server, user: &str, dir: &Path, want_report: &serde_json::Value) {
    let want_tree = &tree(&dir.join("dir.oci"), &["proc"]);
    let dir_summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("dir.json")).unwrap()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let image = out.path().join("ssh.oci");
    let url = server.url(user, "/");
    let mut args = vec!["convert", url.as_str(), "-o", image.to_str().unwrap()];
    args.extend(CONVERT);
    let summary: serde_json::Value =
        serde_json::from_str(&ok(&server.rehost("config", &args), "convert over ssh")).unwrap();
    assert_eq!(summary["source"], url.as_str());
    server.assert_nothing_left(&format!("convert as {user}"));
    assert_same_tree(want_tree, &tree(&image, &["proc"]));
    // The plan and the package database were read from what the server recorded and
    // sent ahead of the tree, and decide what the directory's own decide.
    assert_eq!(summary["prepared_from_record"], true, "{summary}");
    assert!(summary["received"]["record_bytes"].as_u64().unwrap() > 0);
    // And the image was built as the tree arrived.
    assert_eq!(
        summary["received"]["built_while_arriving"], true,
        "{summary}"
    );
    assert_eq!(
        prepared_facts(&summary, &image),
        prepared_facts(&dir_summary, &dir.join("dir.oci"))
    );

    let report = ok(
        &server.rehost("config", &["inspect", url.as_str(), "--json"]),
        "inspect over ssh",
    );
    server.assert_nothing_left(&format!("inspect as {user}"));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["inventory"]["source"], url.as_str());
    assert_eq!(comparable(&report), comparable(want_report));
    // Plus the ports really listening: the server's own sshd.
    assert_eq!(report["inventory"]["ports_live"], true);
    let ports = report["inventory"]["ports"].as_array().unwrap();
    assert!(
        ports.iter().any(|p| p["port"] == 22),
        "the listening sshd is not among the ports: {ports:?}"
    );

    // The human report says where it came from, and shows the port.
    let text = ok(
        &server.rehost("config", &["inspect", url.as_str()]),
        "inspect over ssh",
    );
    assert!(text.contains(&url), "{text}");
    assert!(text.contains("22/tcp"), "{text}");
    server.assert_nothing_left(&format!("the second inspect as {user}"));
}

#[test]
fn convert_and_inspect_as_root_give_what_the_directory_gives() {
    let prepared = Prepared::new("debian-sysvinit");
    let (dir, want_report) = reference(&prepared);
    let server = prepared.start(false);
    same_as_directory(&server, "root", dir.path(), &want_report);
    with_the_operators_plan(&server);
}

/// The operator's plan goes to the server with the request: the reads of the rehost
/// layer's plan are recorded with the others, and the image, with its rehost layer, is
/// still built as the tree arrives.
fn with_the_operators_plan(server: &Server) {
    let out = tempfile::tempdir().unwrap();
    let plan = out.path().join("plan.toml");
    let url = server.url("root", "/");
    let plan_arg = plan.to_str().unwrap();
    ok(
        &server.rehost("config", &["inspect", url.as_str(), "--plan", plan_arg]),
        "inspect over ssh",
    );
    let image = out.path().join("ssh.oci");
    let args = [
        "convert",
        url.as_str(),
        "-o",
        image.to_str().unwrap(),
        "--plan",
        plan_arg,
        "--compression",
        "none",
        "--json",
    ];
    let summary: serde_json::Value =
        serde_json::from_str(&ok(&server.rehost("config", &args), "convert over ssh")).unwrap();
    server.assert_nothing_left("convert with a plan");
    assert_eq!(summary["prepared_from_record"], true, "{summary}");
    assert_eq!(
        summary["received"]["built_while_arriving"], true,
        "{summary}"
    );
    assert_eq!(summary["rich"]["mode"], "rehost", "{summary}");
    let kept = summary["rich"]["kept"].as_array().unwrap();
    assert!(
        kept.iter().any(|s| s == "nginx"),
        "the plan's services are kept: {summary}"
    );
}

#[test]
fn a_user_with_passwordless_sudo_on_bullseye_gets_the_same() {
    let prepared = Prepared::new("debian-bullseye");
    let (dir, want_report) = reference(&prepared);
    let server = prepared.start(false);
    same_as_directory(&server, "tester", dir.path(), &want_report);
    through_the_operators_own_ssh_setup(&server, &want_report);
}

/// A server whose sudo wants a terminal (`Defaults requiretty`, as CentOS and RHEL 7
/// long shipped; with `use_pty` too, as newer sudoers have, so sudo runs the helper in a
/// terminal of its own): the run gets its root helper through a second command that has
/// one, and gives what a run as root gives. A sudo that wants a password still gets one
/// line.
#[test]
fn a_sudo_that_wants_a_terminal_gets_one_and_the_same_tree() {
    let prepared = Prepared::new("debian-bullseye");
    let rules = prepared.root.join("etc/sudoers.d/rehost-test");
    let mut text = std::fs::read_to_string(&rules).unwrap();
    text.push_str("Defaults:tester requiretty, use_pty\nDefaults:asker requiretty\n");
    std::fs::write(&rules, text).unwrap();
    let (dir, want_report) = reference(&prepared);
    let server = prepared.start(false);
    // What rehost meets first: without a terminal, this sudo refuses.
    let plain = server.ssh("tester", "sudo -n true");
    assert!(!plain.status.success());
    let said = String::from_utf8_lossy(&plain.stderr);
    assert!(said.contains("must have a tty"), "{said}");
    same_as_directory(&server, "tester", dir.path(), &want_report);

    // Killed once the root helper has taken the run over: both commands and the
    // directory go.
    let out = tempfile::tempdir().unwrap();
    let image = out.path().join("x.oci");
    // The root helper itself (not the sudo that starts it).
    convert_killed_once(&server, "tester", &image, |_| {
        server
            .processes()
            .iter()
            .any(|p| p.contains("--from") && !p.contains("sudo"))
    });
    server.assert_nothing_left("a run through a terminal killed with SIGKILL");
    assert!(!image.exists(), "a killed run left an image");

    let url = server.url("asker", "/");
    let run = server.rehost(
        "config",
        &[
            "convert",
            &url,
            "-o",
            image.to_str().unwrap(),
            "--init",
            "none",
        ],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("passwordless sudo"), "{stderr}");
    assert!(errors[0].contains("password is required"), "{stderr}");
    assert!(!image.exists(), "a refused run left an image");
    server.assert_nothing_left("a refused sudo with a terminal");
}

/// The operator's own ssh setup is what connects: a host alias of their configuration
/// (its name, its user), a key only their agent holds, and a jump host. The server's
/// sshd also listens on its own loopback, which the client cannot reach: only the jump
/// gets there.
fn through_the_operators_own_ssh_setup(server: &Server, want_report: &serde_json::Value) {
    let client = &server.prepared.client;
    let agent = Agent::holding(&client.join("agent"), &client.join("agent.sock"));
    let config = |jump: bool| {
        format!(
            "Host legacy-db\n  HostName 127.0.0.1\n  User tester\n{}  \
             IdentityFile {c}/agent.pub\n  IdentityAgent {c}/agent.sock\n\
             Host jump-host\n  HostName {address}\n  User root\n  IdentityFile {c}/id\n\
             Host *\n  IdentitiesOnly yes\n  UserKnownHostsFile {c}/known_hosts\n  \
             GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n  \
             ConnectTimeout 10\n  LogLevel ERROR\n",
            if jump { "  ProxyJump jump-host\n" } else { "" },
            c = client.display(),
            address = server.prepared.address,
        )
    };
    std::fs::write(client.join("config-operator"), config(true)).unwrap();
    std::fs::write(client.join("config-no-jump"), config(false)).unwrap();
    let url = "ssh://legacy-db";

    let report = ok(
        &server.rehost("config-operator", &["inspect", url, "--json"]),
        "inspect through the operator's ssh setup",
    );
    server.assert_nothing_left("inspect through a jump host");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["inventory"]["source"], "ssh://legacy-db/");
    assert_eq!(comparable(&report), comparable(want_report));
    assert_eq!(report["inventory"]["ports_live"], true);

    // A path of the server, converted the same way, is that directory's tree.
    let out = tempfile::tempdir().unwrap();
    let image = out.path().join("etc.oci");
    let path_url = format!("{url}/etc");
    let mut args = vec!["convert", &path_url, "-o", image.to_str().unwrap()];
    args.extend(CONVERT);
    ok(
        &server.rehost("config-operator", &args),
        "convert through the operator's ssh setup",
    );
    server.assert_nothing_left("convert through a jump host");
    let local = out.path().join("local.oci");
    let etc = server.root().join("etc");
    let mut args = vec![etc.to_str().unwrap(), "-o", local.to_str().unwrap()];
    args.extend(CONVERT);
    args.insert(0, "convert");
    ok(&local_rehost(&args), "convert of the server's /etc");
    let etc = tree(&image, &[]);
    assert!(etc.contains_key("debian_version"), "not /etc: {etc:?}");
    assert_same_tree(&tree(&local, &[]), &etc);

    // Without the jump, that loopback is the client's own, where nothing listens.
    let run = server.rehost("config-no-jump", &["inspect", url]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    // And without the agent, the key is nowhere.
    drop(agent);
    let run = server.rehost("config-operator", &["inspect", url]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    server.assert_nothing_left("the refused runs");
}

#[test]
fn refusals_are_one_clear_line_and_leave_nothing() {
    let server = Prepared::new("debian-bullseye").start(false);
    let out = tempfile::tempdir().unwrap();
    let image = out.path().join("x.oci");
    let image = image.to_str().unwrap();
    for (config, user, says) in [
        ("config", "asker", "sudo"),
        (
            "config-unknown-host",
            "root",
            "Host key verification failed",
        ),
        ("config-refused-key", "root", "Permission denied"),
    ] {
        let url = server.url(user, "/");
        for args in [
            vec!["convert", url.as_str(), "-o", image, "--init", "none"],
            vec!["inspect", url.as_str()],
        ] {
            let run = server.rehost(config, &args);
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert_eq!(run.status.code(), Some(1), "{config} {args:?}: {stderr}");
            let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
            assert_eq!(errors.len(), 1, "{config} {args:?}: {stderr}");
            assert!(errors[0].contains(says), "{config} {args:?}: {stderr}");
            assert!(errors[0].contains(&server.prepared.address), "{stderr}");
            assert!(!Path::new(image).exists(), "a refused run left an image");
            server.assert_nothing_left(&format!("{config} {args:?}"));
        }
    }
    // The password case says what to do.
    let run = server.rehost("config", &["inspect", &server.url("asker", "/")]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("passwordless sudo"), "{stderr}");
    // A server whose helper answers an inspect without end (a compromised one): read up
    // to the answer's cap, then one line, and the run stops it.
    // It must be a static executable, as rehost checks before sending one: built here
    // from C with the toolchain's static libc (scripts/build-static needs it too).
    let source = out.path().join("endless-helper.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\n#include <string.h>\n\
         int main(int c, char **v) {\n\
           if (c > 2 && !strcmp(v[2], \"--probe\")) { puts(\"rehost-helper\"); return 0; }\n\
           for (;;) if (fputs(\"rehost\\n\", stdout) < 0) return 1;\n}\n",
    )
    .unwrap();
    let hostile = out.path().join("endless-helper");
    let built = std::process::Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&hostile)
        .arg(&source)
        .status()
        .expect("cc");
    assert!(built.success(), "cannot build the endless helper");
    let run = server.rehost_sending(&hostile, "config", &["inspect", &server.url("root", "/")]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("answer is over 64 MiB"), "{stderr}");
    server.assert_nothing_left("an endless answer");
}

/// A noexec /tmp (as CIS-hardened servers have): the helper runs from the user's home
/// instead (root runs it there through sudo), and where it cannot run there either,
/// rehost falls back to the server's own tar: also an old one, and also through a sudo
/// that wants a terminal. All give the directory's tree.
#[test]
fn a_noexec_tmp_runs_the_helper_from_home_and_else_falls_back_to_the_servers_tar() {
    let prepared = Prepared::new("debian-bullseye");
    // root's home is the noexec /tmp: nowhere for the helper to run.
    let passwd = prepared.root.join("etc/passwd");
    let text: Vec<String> = std::fs::read_to_string(&passwd)
        .unwrap()
        .lines()
        .map(|l| match l.starts_with("root:") {
            true => l.replace(":/root:", ":/tmp:"),
            false => l.to_string(),
        })
        .collect();
    std::fs::write(&passwd, text.join("\n") + "\n").unwrap();
    // While /tmp/old-tar exists, the server's tar is one before 1.27 (SLES 11, CentOS 6):
    // it has no --xattrs, --xattrs-include or --acls.
    let old_tar = prepared.root.join("usr/local/bin/tar");
    std::fs::write(
        &old_tar,
        "#!/bin/sh\nif [ -e /tmp/old-tar ]; then for a in \"$@\"; do case \"$a\" in\n\
         --xattrs*|--acls) echo \"tar: unrecognized option '$a'\" >&2; exit 64;;\n\
         esac; done; fi\nexec /bin/tar \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&old_tar, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (dir, _) = reference(&prepared);
    let want = tree(&dir.path().join("dir.oci"), &["proc", "tmp"]);
    let server = prepared.start(true);
    let out = tempfile::tempdir().unwrap();
    let marker = server.root().join("tmp/old-tar");
    // ttyer's home is /tmp too, and its sudo wants a terminal: tar runs in one.
    for (user, falls_back, old) in [
        ("tester", false, false),
        ("root", true, false),
        ("root", true, true),
        ("ttyer", true, false),
    ] {
        if old {
            std::fs::write(&marker, "").unwrap();
        }
        let image = out.path().join(format!("{user}-{old}.oci"));
        let url = server.url(user, "/");
        let mut args = vec!["convert", url.as_str(), "-o", image.to_str().unwrap()];
        args.extend(CONVERT);
        let run = server.rehost("config", &args);
        let summary: serde_json::Value =
            serde_json::from_str(&ok(&run, "convert over ssh with a noexec /tmp")).unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(
            stderr.contains("falling back to the server's tar") && stderr.contains("lost"),
            falls_back,
            "{user}: the fallback and what it loses: {stderr}"
        );
        // The helper's run reads the plan from the server's record; tar's does not.
        assert_eq!(
            summary["prepared_from_record"] == true,
            !falls_back,
            "{user}: {summary}"
        );
        // An old tar runs without what it lacks, and rehost says what that loses.
        assert_eq!(
            stderr.contains(
                "the server's tar has no --xattrs --xattrs-include=* --acls: extended attributes"
            ),
            old,
            "{user}: {stderr}"
        );
        let _ = std::fs::remove_file(&marker);
        server.assert_nothing_left(&format!("a noexec /tmp, as {user}"));
        // /tmp is a mount point on the server (its own tmpfs), empty in both.
        assert_same_tree(&want, &tree(&image, &["proc", "tmp"]));
    }
}

#[test]
fn the_static_rehost_runs_with_no_libc_and_on_bullseye_where_the_dynamic_one_cannot() {
    let fixed = static_rehost();
    // An empty root: no libc, no loader, nothing but the binary.
    let empty = tempfile::tempdir().unwrap();
    // Copied by cp, not by this process: a file this process held open for writing
    // could be inherited by another test's fork, and running it would fail (ETXTBSY).
    let copy = |from: &Path, to: &Path| sh("cp", &[from.to_str().unwrap(), to.to_str().unwrap()]);
    copy(&fixed, &empty.path().join("rehost"));
    let version = sh(
        "chroot",
        &[empty.path().to_str().unwrap(), "/rehost", "--version"],
    );
    assert!(version.starts_with("rehost "), "{version}");
    // Both serve as the helper there: the one ssh:// runs send, and the whole rehost.
    copy(&static_helper(), &empty.path().join("rehost-helper"));
    for helper in ["/rehost-helper", "/rehost"] {
        let probe = sh(
            "chroot",
            &[
                empty.path().to_str().unwrap(),
                helper,
                "__remote",
                "--probe",
            ],
        );
        assert_eq!(
            probe.trim(),
            converter::source::remote::PROBE_ANSWER,
            "{helper}"
        );
    }

    // Debian 11: glibc 2.31.
    let prepared = Prepared::new("debian-bullseye");
    let bin = prepared.root.join("usr/local/bin");
    copy(&fixed, &bin.join("rehost-static"));
    copy(
        Path::new(env!("CARGO_BIN_EXE_rehost")),
        &bin.join("rehost-dynamic"),
    );
    let root = prepared.root.to_str().unwrap();
    let dynamic = Command::new("chroot")
        .args([root, "/usr/local/bin/rehost-dynamic", "--version"])
        .output()
        .unwrap();
    assert!(
        !dynamic.status.success(),
        "the dynamic rehost ran on bullseye"
    );
    assert!(
        String::from_utf8_lossy(&dynamic.stderr).contains("GLIBC_"),
        "{}",
        String::from_utf8_lossy(&dynamic.stderr)
    );
    // The static one does real work there: it inspects the system it runs on.
    let report = sh(
        "chroot",
        &[
            root,
            "/usr/local/bin/rehost-static",
            "inspect",
            "/",
            "--no-walk",
            "--json",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let system = report["inventory"]["os"]["pretty_name"]
        .as_str()
        .unwrap_or_default();
    assert!(system.contains("11"), "{report}");
}

#[test]
fn a_file_that_grows_during_the_capture_is_listed_and_the_run_finishes() {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let prepared = Prepared::new("debian-sysvinit");
    // Big enough that reading it takes a while, during which it keeps growing.
    let big = prepared.root.join("srv/growing.log");
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    sh(
        "dd",
        &[
            "if=/dev/zero",
            &format!("of={}", big.display()),
            "bs=1M",
            "count=200",
            "status=none",
        ],
    );
    // A sparse one too (a hole, then data): it is read by its extents, whose end is
    // not its size, and its growth is measured against the size the walk saw. Its data
    // is random, so that reading, compressing and sending it takes long enough for the
    // writer below to append to it meanwhile, even on a loaded machine.
    let sparse = prepared.root.join("srv/growing.img");
    sh(
        "dd",
        &[
            "if=/dev/urandom",
            &format!("of={}", sparse.display()),
            "bs=1M",
            "seek=64",
            "count=64",
            "status=none",
        ],
    );
    let server = prepared.start(false);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let files = [big.clone(), sparse.clone()];
        std::thread::spawn(move || {
            let mut open: Vec<std::fs::File> = files
                .iter()
                .map(|f| std::fs::OpenOptions::new().append(true).open(f).unwrap())
                .collect();
            while !stop.load(Ordering::Relaxed) {
                for f in &mut open {
                    f.write_all(b"another line\n").unwrap();
                }
            }
        })
    };
    let out = tempfile::tempdir().unwrap();
    let image = out.path().join("ssh.oci");
    let url = server.url("root", "/");
    let mut args = vec!["convert", url.as_str(), "-o", image.to_str().unwrap()];
    args.extend(CONVERT);
    let run = server.rehost("config", &args);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&ok(&run, "convert over ssh of a changing server")).unwrap();
    let skipped = summary["stats"]["skipped"].as_array().unwrap();
    for path in ["/srv/growing.log", "/srv/growing.img"] {
        assert!(
            skipped.iter().any(|s| s["path"] == path
                && s["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("grew while reading")),
            "the growing file {path} is not in the ledger: {skipped:?}"
        );
    }
    assert!(image.join("index.json").is_file(), "no image");
    server.assert_nothing_left("a capture of a changing server");
}

/// Starts `convert ssh://USER@server/ -o IMAGE` and kills it with SIGKILL once `ready`
/// (given its pid) holds, which the run must reach before it ends; gives the pid.
fn convert_killed_once(
    server: &Server,
    user: &str,
    image: &Path,
    ready: impl Fn(u32) -> bool,
) -> u32 {
    let url = server.url(user, "/");
    let mut args = vec!["convert", url.as_str(), "-o", image.to_str().unwrap()];
    args.extend(CONVERT);
    let mut child = server
        .rehost_command("config", &args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ready(child.id()) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the capture ended before it could be killed"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the run was not ready to be killed in 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    sh("kill", &["-9", &child.id().to_string()]);
    let _ = child.wait();
    child.id()
}

/// A rehost killed with SIGKILL mid-capture: the helper on the server sees its input end
/// and goes, with its directory; the ssh master ends with rehost (parent-death signal);
/// the local session directory, which nothing could remove, is swept by the next run.
#[test]
fn a_run_killed_with_sigkill_leaves_nothing_and_the_next_run_sweeps_its_directory() {
    let server = Prepared::new("debian-sysvinit").start(false);
    let out = tempfile::tempdir().unwrap();
    let image = out.path().join("killed.oci");
    let url = server.url("root", "/");
    // The session's own directory: the one whose owner file names this rehost.
    let dir_of_run = |pid: u32| {
        std::fs::read_dir(server.tmp())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("rehost-ssh."))
                    && std::fs::read_to_string(p.join("owner"))
                        .is_ok_and(|o| o.trim() == pid.to_string())
            })
    };
    let pid = convert_killed_once(&server, "root", &image, |pid| {
        !server.processes().is_empty() && dir_of_run(pid).is_some()
    });
    let dir = dir_of_run(pid).unwrap();
    server.assert_nothing_left("a rehost killed with SIGKILL");
    assert!(!image.exists(), "a killed run left an image");
    // Its ssh master went with it.
    let masters = Command::new("pgrep")
        .args(["-f", &dir.display().to_string()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&masters.stdout).trim().is_empty(),
        "an ssh master of the killed run still runs"
    );
    assert!(
        dir.exists(),
        "nothing removed the killed run's directory yet"
    );
    ok(
        &server.rehost("config", &["inspect", &url, "--no-walk"]),
        "inspect after a killed run",
    );
    assert!(
        !dir.exists(),
        "the next run did not sweep {}",
        dir.display()
    );
}

/// The `received` part of a convert's summary: bytes from the network, bytes reused.
fn received(summary: &serde_json::Value) -> (u64, u64) {
    let r = &summary["received"];
    (
        r["bytes"]
            .as_u64()
            .expect("no received bytes in the summary"),
        r["reused_bytes"].as_u64().unwrap(),
    )
}

/// A capture cut by a dropped connection at about half way fails with one line and
/// leaves no image; the rerun resumes: it receives less than half of what a whole run
/// does, and gives the tree the whole run gives. The kept chunks go with the image.
#[test]
fn a_run_cut_half_way_leaves_no_image_and_the_rerun_receives_less_than_half() {
    let server = Prepared::new("debian-sysvinit").start(false);
    let out = tempfile::tempdir().unwrap();
    let url = server.url("root", "/");
    let args_for = |image: &Path| {
        let mut args = vec![
            "convert".to_string(),
            url.clone(),
            "-o".into(),
            image.to_str().unwrap().into(),
        ];
        args.extend(CONVERT.iter().map(|a| a.to_string()));
        args
    };
    let run = |image: &Path| {
        let args = args_for(image);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let summary = ok(&server.rehost("config", &args), "convert over ssh");
        serde_json::from_str::<serde_json::Value>(&summary).unwrap()
    };

    // The whole run: what a capture receives, and the tree.
    let whole = out.path().join("whole.oci");
    let (full, reused) = received(&run(&whole));
    assert_eq!(reused, 0, "a first run reused something");
    assert!(full > 0);
    assert_eq!(
        server.kept_bytes(),
        0,
        "chunks kept after the image was written"
    );
    let want = tree(&whole, &["proc"]);

    // The cut: the connection goes (its ssh master dies) once more than half is kept:
    // 60% of the whole run's bytes, as each run's compression level follows the link and
    // the same tree may take a few percent more bytes in one run than in the other.
    let cut = out.path().join("cut.oci");
    let args = args_for(&cut);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = server
        .rehost_command("config", &args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while server.kept_bytes() < full * 60 / 100 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the capture ended before half of it was kept"
        );
        assert!(std::time::Instant::now() < deadline, "no progress in 120 s");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let masters = children_with(child.id(), "ControlMaster=yes");
    assert_eq!(masters.len(), 1, "not one ssh master: {masters:?}");
    sh("kill", &["-9", &masters[0].to_string()]);
    let cut_run = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&cut_run.stderr);
    assert_eq!(cut_run.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("connection was lost"), "{stderr}");
    assert!(!cut.exists(), "a cut run left an image");
    server.assert_nothing_left("a cut capture");
    assert!(server.kept_bytes() > 0, "the cut run kept nothing");

    // The rerun resumes.
    let resumed = out.path().join("resumed.oci");
    let (again, reused) = received(&run(&resumed));
    assert!(
        again < full / 2,
        "the rerun received {again} bytes, a whole run {full}"
    );
    assert!(reused > 0, "the rerun reused nothing");
    assert_same_tree(&want, &tree(&resumed, &["proc"]));
    assert_eq!(
        server.kept_bytes(),
        0,
        "chunks kept after the image was written"
    );
    server.assert_nothing_left("a resumed capture");
}

/// A file deleted and a file appended to while the capture runs: the run finishes, the
/// image is written, and the ledger names both, with why.
#[test]
fn a_file_deleted_and_a_file_appended_to_during_the_capture_are_in_the_ledger() {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let prepared = Prepared::new("debian-sysvinit");
    // The walk has seen both when it opens the big file (the victim comes after it, in
    // the same directory); reading it takes a while, during which it grows and the
    // victim goes.
    let big = prepared.root.join("srv/growing.log");
    let victim = prepared.root.join("srv/victim.txt");
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    sh(
        "dd",
        &[
            "if=/dev/zero",
            &format!("of={}", big.display()),
            "bs=1M",
            "count=300",
            "status=none",
        ],
    );
    std::fs::write(&victim, "soon gone\n").unwrap();
    let server = Arc::new(prepared.start(false));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, big) = (stop.clone(), big.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(big).unwrap();
            while !stop.load(Ordering::Relaxed) {
                f.write_all(b"another line\n").unwrap();
            }
        })
    };
    let deleter = {
        let (stop, server, victim) = (stop.clone(), server.clone(), victim.clone());
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                if server.has_open("srv/growing.log") {
                    std::fs::remove_file(&victim).unwrap();
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            false
        })
    };
    let out = tempfile::tempdir().unwrap();
    let image = out.path().join("ssh.oci");
    let url = server.url("root", "/");
    let mut args = vec!["convert", url.as_str(), "-o", image.to_str().unwrap()];
    args.extend(CONVERT);
    let run = server.rehost("config", &args);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        deleter.join().unwrap(),
        "the big file was never seen open on the server"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&ok(&run, "convert over ssh of a changing server")).unwrap();
    let skipped = summary["stats"]["skipped"].as_array().unwrap();
    let reason = |path: &str| {
        skipped
            .iter()
            .find(|s| s["path"] == path)
            .and_then(|s| s["reason"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        reason("/srv/growing.log").contains("grew while reading"),
        "the appended file is not in the ledger: {skipped:?}"
    );
    assert!(
        reason("/srv/victim.txt").contains("vanished"),
        "the deleted file is not in the ledger: {skipped:?}"
    );
    assert!(image.join("index.json").is_file(), "no image");
    server.assert_nothing_left("a capture of a changing server");
}
