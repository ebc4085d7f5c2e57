//! The README's flow at real size: a generated root of a million entries and GiBs
//! (sparse files, hardlinks, a sparse file with several names, 255-byte names, a deep
//! chain of directories, big files) on a real Debian system, converted by the `rehost`
//! command in bounded memory, booted by `rehost verify`, and unpacked by the runtime into
//! exactly the tree it came from.

mod common;
mod scale_support;

use common::runtime::Rt;
use common::*;
use scale_support::{compare, generate};
use std::path::Path;
use std::process::{Command, Stdio};

/// Entries generated for the test: a root of real size.
const ENTRIES: u64 = 1_000_000;
/// The design's bound on convert's memory, whatever the tree.
const CONVERT_MEMORY: u64 = 64 << 20;

/// Runs `rehost ARGS` and gives its standard output and its own peak resident memory
/// (VmHWM, from the kernel's accounting of that one child).
// The child is reaped by wait4, which gives its own resource usage; std's wait cannot.
#[allow(clippy::zombie_processes)]
fn rehost_measured(args: &[&str]) -> (Vec<u8>, u64) {
    let child = Command::new(rehost_bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("rehost runs");
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.expect("piped");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut out).unwrap();
        out
    });
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, with valid pointers.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let out = reader.join().unwrap();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "rehost {args:?} failed (status {status})"
    );
    // ru_maxrss is in KiB.
    (out, usage.ru_maxrss as u64 * 1024)
}

#[test]
fn a_root_of_a_million_entries_converts_in_bounded_memory_boots_and_unpacks_the_same() {
    let started = std::time::Instant::now();
    let phase = |what: &str| eprintln!("{:6.1} s  {what}", started.elapsed().as_secs_f64());
    let work = scratch();
    let root = work.path().join("root");
    // A real system to boot (its shell and tools for verify; its files linked, not
    // copied: the walk meets each once), with the bulk of a big server under /srv/data.
    let base = fixture("debian-sysvinit").join("rootfs");
    run(
        "cp",
        &[
            "-al",
            &format!("{}/.", base.display()),
            root.to_str().unwrap(),
        ],
    );
    let made = generate::generate(&root.join("srv/data"), ENTRIES);
    assert!(
        made.entries >= ENTRIES && made.apparent_bytes >= 4 << 30,
        "{made:?}"
    );
    phase("tree generated");

    let image = work.path().join("big.oci");
    let (out, peak) = rehost_measured(&[
        "convert",
        root.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
        "--init",
        "dumb-init",
        "--cmd",
        "sleep infinity",
        "--json",
        // The server's one layer is what the runtime's unpack is compared with below.
        "--layers",
        "one",
    ]);
    let summary: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let stats = &summary["stats"];
    let entries: u64 = ["files", "dirs", "symlinks", "hardlinks", "fifos", "devices"]
        .iter()
        .map(|k| stats[k].as_u64().unwrap())
        .sum();
    assert!(entries >= ENTRIES, "{stats:#}");
    assert!(
        stats["hardlinks"].as_u64().unwrap() >= made.hardlinks,
        "{stats:#}"
    );
    assert!(
        stats["sparse_files"].as_u64().unwrap() >= made.sparse,
        "{stats:#}"
    );
    phase(&format!(
        "converted: {entries} entries, peak memory {} MiB",
        peak >> 20
    ));
    assert!(
        peak < CONVERT_MEMORY,
        "convert of {} entries peaked at {} MiB (bound: {} MiB)",
        made.entries,
        peak >> 20,
        CONVERT_MEMORY >> 20
    );

    // The README's next step: boot it and check it. The runtime unpacks the server's
    // layer into its cache, where it is compared with the tree it came from.
    let rt = Rt::new();
    let out = rt.rehost(&[
        "verify",
        "--json",
        "--timeout",
        "120",
        image.to_str().unwrap(),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(rt.leftovers(), Vec::<String>::new());
    phase("verified");

    let layer = summary["layers"][0]["digest"].as_str().unwrap();
    let unpacked = rt
        .root()
        .join("layers/sha256")
        .join(layer.strip_prefix("sha256:").unwrap());
    let data = Path::new("srv/data");
    let compared = compare::same_tree(&root.join(data), &unpacked.join(data))
        .unwrap_or_else(|e| panic!("the unpacked tree differs: {e}"));
    assert_eq!(compared, made.entries);
    phase("compared");
}

/// Not a test: makes a tree for `scripts/bench-scale` at `REHOST_SCALE_TREE` with
/// `REHOST_SCALE_ENTRIES` entries (the same generator as the test above).
#[test]
#[ignore = "run by scripts/bench-scale"]
fn generate_a_tree_for_the_bench() {
    let dir = std::env::var("REHOST_SCALE_TREE").expect("REHOST_SCALE_TREE: where to make it");
    let entries: u64 = std::env::var("REHOST_SCALE_ENTRIES")
        .expect("REHOST_SCALE_ENTRIES: how many entries")
        .parse()
        .expect("REHOST_SCALE_ENTRIES is a number");
    let made = generate::generate(Path::new(&dir), entries);
    println!("{made:?}");
}
