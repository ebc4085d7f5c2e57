//! `rehost fleet`: three hosts, two directories and one real SSH server (a fixture's own
//! sshd in a network namespace), each inspected, converted, verified and pushed to a real
//! registry. One host fails verify on purpose: the run goes to the end, the report says
//! which host and why, and a rerun keeps the two that are done. The report page, rendered
//! by headless Chromium, shows the fleet's table.

mod common;
#[allow(dead_code)]
mod registry_server;
mod remote_support;

use registry_server::{Registry, Setup};
use remote_support::{fixture_root, Prepared};
use std::path::Path;
use std::process::{Command, Output};

fn fleet(
    server: &remote_support::Server,
    file: &Path,
    runtime: &Path,
) -> (Output, serde_json::Value) {
    let out = server
        .rehost_command_with_host_mounts("config", &["fleet", file.to_str().unwrap(), "--json"])
        .env("REHOST_ROOT", runtime)
        .output()
        .expect("run rehost fleet");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "fleet printed no JSON report ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, report)
}

fn host<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in the report: {report:#}"))
}

/// Headless Chromium's rendering of a page: (its DOM, its screenshot's PNG bytes).
fn render(page: &Path, scratch: &Path, name: &str) -> (String, Vec<u8>) {
    let chromium = |extra: &[&str]| {
        let out = Command::new("timeout")
            .args([
                "120",
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
            ])
            .arg(format!(
                "--user-data-dir={}",
                scratch.join(format!("{name}-profile")).display()
            ))
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("chromium runs (scripts/install-deps installs it)");
        assert!(
            out.status.success(),
            "chromium failed on {}: {}",
            page.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let dom = String::from_utf8_lossy(&chromium(&["--dump-dom"]).stdout).into_owned();
    let png = scratch.join(format!("{name}.png"));
    chromium(&[
        &format!("--screenshot={}", png.display()),
        "--window-size=1280,900",
        "--hide-scrollbars",
    ]);
    (dom, std::fs::read(&png).expect("the screenshot"))
}

#[test]
fn a_fleet_of_three_runs_to_the_end_reports_the_failure_and_a_rerun_keeps_the_two_done() {
    let server = Prepared::new("debian-sysvinit").start(false);
    let registry = Registry::start_in_netns(Setup::Plain, server.client_netns());
    let scratch = common::scratch();
    let dir = scratch.path();
    let runtime = dir.join("runtime");
    let file = dir.join("fleet.toml");
    std::fs::write(
        &file,
        format!(
            "output = \"out\"\njobs = 2\nregistry = \"{registry}/fleet\"\nsbom = \"spdx\"\n\
             [defaults.verify]\ntimeout = 90\n\
             [[host]]\nname = \"web\"\nsource = \"{systemd}\"\n\
             [[host]]\nname = \"broken\"\nsource = \"{sysv}\"\n\
             verify.http = [\"8080/\"]\n\
             [[host]]\nname = \"remote\"\nsource = \"{remote}\"\n\
             convert.layers = \"one\"\n",
            registry = registry.addr,
            systemd = fixture_root("debian-systemd").display(),
            sysv = fixture_root("debian-sysvinit").display(),
            remote = server.url("root", "/"),
        ),
    )
    .unwrap();

    let (out, report) = fleet(&server, &file, &runtime);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed host makes the run exit 1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["web", "remote"] {
        let h = host(&report, name);
        assert_eq!(h["status"], "ok", "{name}: {h:#}");
        assert_eq!(h["ran"], true);
        assert!(h["verify"]["passed"] == true, "{name}: {h:#}");
        assert!(
            h["services"].as_array().unwrap().len() >= 3,
            "{name} keeps its services: {h:#}"
        );
        let reference = format!("{}/fleet/{name}:latest", registry.addr);
        assert_eq!(h["pushed"]["reference"], reference.as_str());
        // The registry's own storage has the tag.
        let tag = registry.storage().join(format!(
            "docker/registry/v2/repositories/fleet/{name}/_manifests/tags/latest"
        ));
        assert!(
            tag.is_dir(),
            "{} was pushed: {} is missing",
            reference,
            tag.display()
        );
    }
    assert_eq!(host(&report, "web")["mode"], "systemd");
    // The fleet file's layering: the web host by package (convert's default), the remote
    // one as one layer; each pushed image has its SBOM attached in the registry.
    let layer_count = |name: &str| {
        host(&report, name)["image"]["layers"]
            .as_array()
            .unwrap()
            .len()
    };
    assert!(
        layer_count("web") > 20,
        "web: {} layers",
        layer_count("web")
    );
    assert_eq!(layer_count("remote"), 2, "remote: its tree and rehost's");
    // The remote host's tree came over the network and was built as it arrived (the
    // fleet converts with the host's plan, which goes to the server too).
    let received = &host(&report, "remote")["image"]["received"];
    assert!(received["bytes"].as_u64().unwrap() > 0, "{received}");
    assert_eq!(received["built_while_arriving"], true, "{received}");
    assert!(host(&report, "web")["image"]["received"].is_null());
    for name in ["web", "remote"] {
        let sbom = host(&report, name)["pushed"]["sbom_digest"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no SBOM attached: {:#}", host(&report, name)));
        let revision = registry.storage().join(format!(
            "docker/registry/v2/repositories/fleet/{name}/_manifests/revisions/sha256/{}",
            sbom.trim_start_matches("sha256:")
        ));
        assert!(
            revision.is_dir(),
            "{name}: the registry holds the SBOM {sbom}"
        );
    }
    let broken = host(&report, "broken");
    assert_eq!(broken["status"], "failed");
    assert_eq!(broken["failed_step"], "verify");
    let why = broken["reason"].as_str().unwrap();
    assert!(
        why.contains("8080"),
        "the reason names the failed check: {why}"
    );
    assert!(broken["pushed"].is_null(), "a failed host is not pushed");
    let totals = &report["totals"];
    assert_eq!(
        (totals["ok"].as_u64(), totals["failed"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(totals["stored_bytes"].as_u64() <= totals["image_bytes"].as_u64());

    let output = dir.join("out");
    let junit = std::fs::read_to_string(output.join("report.xml")).unwrap();
    assert!(junit.contains("tests=\"3\" failures=\"1\""), "{junit}");
    assert!(junit.contains("<failure message=\"verify: "), "{junit}");
    for file in [
        "report.json",
        "state.json",
        "web/plan.toml",
        "web/verify.xml",
        "remote/convert.log",
    ] {
        assert!(output.join(file).is_file(), "{file} is written");
    }

    // The rerun keeps the two done and runs the failed one again.
    let (out, again) = fleet(&server, &file, &runtime);
    assert_eq!(out.status.code(), Some(1));
    for name in ["web", "remote"] {
        let h = host(&again, name);
        assert_eq!(
            (&h["status"], &h["ran"]),
            (&"ok".into(), &false.into()),
            "{name}: {h:#}"
        );
        assert_eq!(
            h["image"]["manifest_digest"],
            host(&report, name)["image"]["manifest_digest"]
        );
    }
    assert_eq!(host(&again, "broken")["ran"], true);
    assert_eq!(host(&again, "broken")["status"], "failed");
    assert_eq!(again["totals"]["kept"], 2);
    server.assert_nothing_left("two fleet runs");

    // The page: its table lists every host with its result, and the screenshot shows it
    // (a rendered table is far more than a blank page of the same size).
    let (dom, shot) = render(&output.join("report.html"), dir, "report");
    assert!(dom.contains("<table id=\"fleet\">"), "{dom}");
    for text in [
        "web",
        "remote",
        "broken",
        "failed: verify",
        "8080",
        "over ssh; built as it arrived",
    ] {
        assert!(dom.contains(text), "the page shows {text}: {dom}");
    }
    let blank = dir.join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let (_, blank_shot) = render(&blank, dir, "blank");
    assert_eq!(&shot[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    assert_eq!(&shot[16..24], &[0, 0, 5, 0, 0, 0, 3, 132], "1280x900");
    assert!(
        shot.len() > 4 * blank_shot.len(),
        "the screenshot shows the table: {} bytes against {} for a blank page",
        shot.len(),
        blank_shot.len()
    );
}

#[test]
fn a_wrong_fleet_file_is_one_line_and_exit_2_and_runs_nothing() {
    let scratch = common::scratch();
    let file = scratch.path().join("fleet.toml");
    std::fs::write(&file, "[[host]]\nname = \"Web 1\"\nsource = \"/nowhere\"\n").unwrap();
    let out = common::rehost(&["fleet", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("host name \"Web 1\"") && err.contains("fleet.toml"),
        "{err}"
    );
    assert!(!scratch.path().join("fleet").exists(), "nothing ran");
}
