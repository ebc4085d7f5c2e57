//! Helpers of the disk image tests: the fixtures, running `rehost convert`, and comparing
//! two unpacked trees the way a user would (type, mode, owner, size, content, xattrs,
//! link targets).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cached disk fixtures (fixtures/build-disks), built on first use.
pub fn disks() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Command::new(repo().join("fixtures/build-disks"))
            .output()
            .expect("run fixtures/build-disks");
        assert!(
            out.status.success(),
            "fixtures/build-disks failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("disk")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub use crate::common::rehost;

/// What `rehost convert --json` reported.
pub struct Converted {
    pub image: PathBuf,
    pub diff_id: String,
    pub summary: serde_json::Value,
}

/// Converts SOURCE with every entry kept (no profile excludes) and no rehost layer (its
/// files carry the capture time, which each kind of source dates its own way), so the
/// server's trees compare whole.
pub fn convert(source: &Path, out: &Path) -> Converted {
    let image = out.join("image.oci");
    let o = rehost(&[
        "convert".as_ref(),
        source.as_os_str(),
        "-o".as_ref(),
        image.as_os_str(),
        "--no-default-excludes".as_ref(),
        "--init".as_ref(),
        "none".as_ref(),
        "--json".as_ref(),
        "--force".as_ref(),
    ]);
    assert!(
        o.status.success(),
        "rehost convert {} failed: {}",
        source.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    Converted {
        image,
        diff_id: summary["layers"][0]["diff_id"]
            .as_str()
            .unwrap()
            .to_string(),
        summary,
    }
}

/// `rehost convert` that must fail: its error output.
pub fn convert_fails(source: &Path, out: &Path) -> String {
    let o = rehost(&[
        "convert".as_ref(),
        source.as_os_str(),
        "-o".as_ref(),
        out.join("image.oci").as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success(),
        "converting {} should fail",
        source.display()
    );
    assert!(!err.contains("panicked"), "rehost panicked: {err}");
    assert!(
        !out.join("image.oci").exists(),
        "a failed convert left an image"
    );
    err
}

/// Unpacks an image with umoci, as a user would look at it; gives the rootfs.
pub fn unpack(image: &Path, into: &Path) -> PathBuf {
    let o = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", image.display()))
        .arg(into)
        .output()
        .expect("run umoci");
    assert!(
        o.status.success(),
        "umoci unpack: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    into.join("rootfs")
}

/// Runs `rehost` with ARGS, which must end within `secs` seconds: a run still going then
/// is killed and the test fails (a FIFO where a file is expected must never block).
pub fn rehost_within(args: &[&std::ffi::OsStr], secs: u64) -> std::process::Output {
    use std::time::{Duration, Instant};
    let mut child = crate::common::rehost_cmd()
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("rehost runs");
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rehost {args:?} still runs after {secs}s: it blocks");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// `rehost convert SOURCE` with extra flags that must fail within a minute: its one
/// error line (the line naming the failure).
pub fn convert_refused(source: &Path, out: &Path, extra: &[&str]) -> String {
    let image = out.join("image.oci");
    let mut args = vec![
        "convert".as_ref(),
        source.as_os_str(),
        "-o".as_ref(),
        image.as_os_str(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    let o = rehost_within(&args, 60);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success(),
        "converting {} should fail",
        source.display()
    );
    assert!(!err.contains("panicked"), "rehost panicked: {err}");
    assert!(!image.exists(), "a failed convert left an image");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "one error line: {err}");
    lines[0].to_string()
}
