//! One model of a server's services: for the real Debian fixtures and the hand-written
//! family trees, the services `rehost inspect` keeps are the ones the converted image's
//! `/etc/rehost/init.toml` and its `io.rehost.init.services` label name, and (for the real
//! fixtures, booted in rehost mode on the bundled runtime) the ones rehost-init starts.

mod common;

use common::runtime::Rt;
use common::{fixture, rehost_ok, scratch};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn tree(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/trees")
        .join(name)
}

/// Whether rehost-init runs a service of this name: services, timers, sockets, and the
/// scripts and jobs of other inits (targets and the other unit kinds are the image init's).
fn run_by_rehost_init(name: &str) -> bool {
    const UNIT_KINDS: &[&str] = &[
        "target",
        "path",
        "mount",
        "automount",
        "swap",
        "slice",
        "device",
        "scope",
    ];
    !name
        .rsplit_once('.')
        .is_some_and(|(_, kind)| UNIT_KINDS.contains(&kind))
}

/// What the image carries after `inspect --plan` then `convert --plan --init rehost`:
/// the services inspect keeps, those init.toml lists, those the label names, and the path
/// of the converted image.
struct Converted {
    inspect_keeps: BTreeSet<String>,
    init_toml: BTreeSet<String>,
    label: BTreeSet<String>,
    image: PathBuf,
}

fn convert(source: &Path, work: &Path) -> Converted {
    let plan = work.join("plan.toml");
    let out = rehost_ok(&[
        "inspect",
        source.to_str().unwrap(),
        "--json",
        "--no-walk",
        "--plan",
        plan.to_str().unwrap(),
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("inspect --json prints JSON");
    let inspect_keeps: BTreeSet<String> = report["plan"]["service"]
        .as_array()
        .expect("the plan's services")
        .iter()
        .filter(|d| d["action"] == "keep")
        .map(|d| d["name"].as_str().unwrap().to_string())
        .filter(|n| run_by_rehost_init(n))
        .collect();

    let image = work.join("image");
    rehost_ok(&[
        "convert",
        source.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
        "--plan",
        plan.to_str().unwrap(),
        "--init",
        "rehost",
        "--compression",
        "none",
        "-q",
    ]);
    let (config, layers) = manifest(&image);
    let label = config["config"]["Labels"]["io.rehost.init.services"]
        .as_str()
        .expect("the services label")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let text = layers
        .iter()
        .rev()
        .find_map(|l| member(l, "etc/rehost/init.toml"))
        .expect("a layer holds /etc/rehost/init.toml");
    let toml: toml::Value = toml::from_str(&text).expect("init.toml is TOML");
    assert_eq!(toml["mode"].as_str(), Some("rehost"), "{text}");
    let init_toml = toml
        .get("service")
        .and_then(|s| s.as_array())
        .map(|a| {
            a.iter()
                .map(|s| s["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    Converted {
        inspect_keeps,
        init_toml,
        label,
        image,
    }
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The image config and the layer blobs of the only image of a layout.
fn manifest(layout: &Path) -> (Value, Vec<PathBuf>) {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(blob(layout, digest)).unwrap()).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config: Value =
        serde_json::from_slice(&std::fs::read(blob(layout, config_digest)).unwrap()).unwrap();
    let layers = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| blob(layout, l["digest"].as_str().unwrap()))
        .collect();
    (config, layers)
}

/// The text of member `path` of an uncompressed layer.
fn member(layer: &Path, path: &str) -> Option<String> {
    let mut archive = tar::Archive::new(std::fs::File::open(layer).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        if name.trim_start_matches("./").trim_start_matches('/') == path {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            return Some(text);
        }
    }
    None
}

fn same_everywhere(c: &Converted) {
    assert!(
        !c.inspect_keeps.is_empty(),
        "inspect keeps no service at all"
    );
    assert_eq!(c.init_toml, c.inspect_keeps, "init.toml against inspect");
    assert_eq!(c.label, c.inspect_keeps, "the label against inspect");
}

/// The services rehost-init supervises in a container, from `rehost-init status --json`,
/// once it has published them.
fn started_by_rehost_init(rt: &Rt, name: &str, init: &str) -> BTreeSet<String> {
    let start = Instant::now();
    loop {
        let (text, _) = rt.exec(name, &[init, "status", "--json"]);
        if let Ok(status) = serde_json::from_str::<Value>(&text) {
            if status["phase"] == "running" {
                return status["services"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["name"].as_str().unwrap().to_string())
                    .collect();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "rehost-init never published its status: {text}\n{}",
            String::from_utf8_lossy(&rt.rehost(&["logs", name]).stdout)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn boots_what_inspect_keeps(fixture_name: &str) {
    let work = scratch();
    let c = convert(&fixture(fixture_name).join("rootfs"), work.path());
    same_everywhere(&c);
    let (config, _) = manifest(&c.image);
    let init = config["config"]["Entrypoint"][0]
        .as_str()
        .expect("the image's entrypoint")
        .to_string();
    let mut rt = Rt::new();
    let name = rt.name("services");
    rt.run_detached(&name, &c.image, &[], &[]);
    let started = started_by_rehost_init(&rt, &name, &init);
    rt.rehost_ok(&["stop", &name, "--time", "30"]);
    rt.rehost_ok(&["rm", &name]);
    // A kept timer brings the service it triggers into the status (waiting for the timer),
    // though nothing starts it at boot.
    let triggered = |s: &String| {
        s.strip_suffix(".service")
            .is_some_and(|stem| c.inspect_keeps.contains(&format!("{stem}.timer")))
    };
    let started: BTreeSet<String> = started
        .into_iter()
        .filter(|s| c.inspect_keeps.contains(s) || !triggered(s))
        .collect();
    assert_eq!(
        started, c.inspect_keeps,
        "rehost-init status against inspect"
    );
}

#[test]
fn debian_systemd_runs_what_inspect_keeps() {
    boots_what_inspect_keeps("debian-systemd");
}

#[test]
fn debian_sysvinit_runs_what_inspect_keeps() {
    boots_what_inspect_keeps("debian-sysvinit");
}

#[test]
fn family_trees_carry_what_inspect_keeps() {
    for name in ["alpine", "centos7", "ubuntu1404"] {
        let work = scratch();
        let c = convert(&tree(name), work.path());
        same_everywhere(&c);
    }
}
