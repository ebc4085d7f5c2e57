//! What the end-to-end tests share: the `rehost` command, the real fixtures, peer tools
//! and a comparison of two trees that checks what a user would.
#![allow(dead_code)]

pub mod containerd;
pub mod docker;
pub mod tree;

use std::ffi::OsStr;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The path of the `rehost` built for the tests: every test reaches it through here.
pub fn rehost_bin() -> &'static str {
    env!("CARGO_BIN_EXE_rehost")
}

/// The `rehost` command built for the tests.
pub fn rehost_cmd() -> Command {
    Command::new(rehost_bin())
}

/// Runs `rehost` with arguments; returns its output whatever the exit code.
pub fn rehost<S: AsRef<OsStr> + Debug>(args: &[S]) -> Output {
    rehost_cmd().args(args).output().expect("rehost runs")
}

/// Runs `rehost` and insists it succeeds.
pub fn rehost_ok<S: AsRef<OsStr> + Debug>(args: &[S]) -> Output {
    let out = rehost(args);
    assert!(
        out.status.success(),
        "rehost {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs any command and insists it succeeds; gives its standard output.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} cannot run: {e} (scripts/install-deps installs it)"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The directory of a real Debian fixture (built once, cached by fixtures/build-debian).
pub fn fixture(name: &str) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/build-debian");
    let dir = run(script.to_str().unwrap(), &[name]);
    PathBuf::from(dir.trim())
}

/// The directory of debian-zoo, the Debian server running many daemons at once (built
/// once, cached by fixtures/build-zoo). A machine that cannot build it fails the test
/// that asked, saying why.
pub fn zoo_fixture() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/build-zoo");
    let out = Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("{} cannot run: {e}", script.display()));
    assert!(
        out.status.success(),
        "fixtures/build-zoo cannot build debian-zoo ({}); it needs root and mmdebstrap \
         (scripts/install-deps installs it):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The root filesystem of a real Debian fixture.
pub fn fixture_rootfs(name: &str) -> PathBuf {
    fixture(name).join("rootfs")
}

/// A fresh scratch directory, removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rehost-test-")
        .tempdir()
        .expect("tempdir")
}

/// The manifest and the image config of the only image of a layout.
pub fn image_json(layout: &Path) -> (serde_json::Value, serde_json::Value) {
    let read = |digest: &str| -> serde_json::Value {
        let bytes = std::fs::read(
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = read(index["manifests"][0]["digest"].as_str().unwrap());
    let config = read(manifest["config"]["digest"].as_str().unwrap());
    (manifest, config)
}

/// The manifest digest of the only image in a layout, as skopeo (a peer) reads it.
pub fn skopeo_digest(transport_ref: &str) -> String {
    let json = run("skopeo", &["inspect", transport_ref]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("skopeo prints JSON");
    v["Digest"].as_str().expect("digest").to_string()
}

/// Unpacks an image with umoci (a peer) and gives the rootfs path.
pub fn umoci_unpack(layout: &Path, tag: &str, into: &Path) -> PathBuf {
    let image = format!("{}:{tag}", layout.display());
    run(
        "umoci",
        &["unpack", "--image", &image, into.to_str().unwrap()],
    );
    into.join("rootfs")
}

/// The JSON summary of a `--json` run.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}
pub mod runtime;

/// Removes the cgroup directories named `name` at the top of each hierarchy when they are
/// empty (the parent a test's own containerd or Docker made); a busy one stays.
pub fn remove_empty_cgroups(name: &str) {
    let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut dirs: Vec<PathBuf> = roots
        .flatten()
        .map(|e| e.path().join(name))
        .chain([Path::new("/sys/fs/cgroup").join(name)])
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        // Children first; a cgroup with processes (or children) refuses rmdir.
        let _ = Command::new("find")
            .arg(&dir)
            .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir(&dir);
    }
}

/// A test that cannot run on this machine (a fixture that needs root, a peer that refuses
/// the host) fails, unless `REHOST_TEST_SKIP` names it (comma-separated; see README,
/// "Tests"): then it says so on stderr and the caller returns. Never a silent pass.
pub fn cannot_run_here(test: &str, why: &str) {
    let allowed = std::env::var("REHOST_TEST_SKIP").unwrap_or_default();
    if allowed.split(',').any(|t| t.trim() == test) {
        eprintln!("SKIPPED {test}: {why} (REHOST_TEST_SKIP={allowed})");
        return;
    }
    panic!("{test} cannot run here: {why}; REHOST_TEST_SKIP={test} skips it knowingly");
}
