//! End-to-end tests of layers by package (`convert --layers packages`): servers with
//! the same packages share their layers, the image is the same tree as one layer gives,
//! what the server changed stays in its own layer, and the image still boots.

mod common;

use common::runtime::Rt;
use common::tree::{assert_same, facts};
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn convert(rootfs: &Path, image: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "convert",
        "--json",
        "--force",
        rootfs.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    json(&rehost_ok(&args))
}

/// The package layers of a summary: group → (packages, digest).
fn package_layers(summary: &Value) -> BTreeMap<String, (Vec<String>, String)> {
    summary["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["role"] == "packages")
        .map(|l| {
            let packages = l["packages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string())
                .collect();
            (
                l["group"].as_str().unwrap().to_string(),
                (packages, l["digest"].as_str().unwrap().to_string()),
            )
        })
        .collect()
}

/// The packages with a changed file on a server, from `rehost inspect`.
fn packages_changed(rootfs: &Path) -> BTreeSet<String> {
    let report = json(&rehost_ok(&["inspect", "--json", rootfs.to_str().unwrap()]));
    let o = &report["inventory"]["ownership"];
    assert!(
        o["changed"].as_array().unwrap().len() as u64 == o["changed_files"].as_u64().unwrap(),
        "every changed file listed: {o}"
    );
    o["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["package"].as_str().unwrap().to_string())
        .collect()
}

/// The paths in a layer blob of a layout.
fn layer_paths(image: &Path, digest: &str) -> BTreeSet<String> {
    let blob = image.join("blobs/sha256").join(&digest[7..]);
    run("tar", &["-tzf", blob.to_str().unwrap()])
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect()
}

/// debian-systemd and debian-sysvinit share the layers of the packages they have in
/// common at the same versions, byte for byte; every fixture stays within 64 layers.
#[test]
fn servers_with_the_same_packages_share_their_layers() {
    let work = scratch();
    let mut summaries = BTreeMap::new();
    let zoo = zoo_fixture().join("rootfs");
    for (name, rootfs) in [
        ("debian-systemd", fixture_rootfs("debian-systemd")),
        ("debian-sysvinit", fixture_rootfs("debian-sysvinit")),
        ("debian-zoo", zoo),
    ] {
        let image = work.path().join(format!("{name}.oci"));
        let s = convert(&rootfs, &image, &[]);
        assert_eq!(s["layering"], "packages", "{name}");
        let layers = s["layers"].as_array().unwrap();
        assert!(layers.len() <= 64, "{name}: {} layers", layers.len());
        assert!(
            package_layers(&s).len() >= 20,
            "{name}: {} package layers",
            package_layers(&s).len()
        );
        summaries.insert(name, (s, packages_changed(&rootfs)));
    }
    let (a, a_changed) = &summaries["debian-systemd"];
    let (b, b_changed) = &summaries["debian-sysvinit"];
    let (la, lb) = (package_layers(a), package_layers(b));
    let mut shared = 0;
    let mut shared_bytes = 0;
    for (group, (packages, digest)) in &la {
        let Some((other_packages, other_digest)) = lb.get(group) else {
            continue;
        };
        let untouched = !packages
            .iter()
            .filter_map(|p| p.split_once('=').map(|(n, _)| n.to_string()))
            .any(|n| a_changed.contains(&n) || b_changed.contains(&n));
        if packages == other_packages && untouched {
            assert_eq!(
                digest, other_digest,
                "{group}: the same packages ({packages:?}) give different layers"
            );
        }
        if digest == other_digest {
            shared += 1;
            shared_bytes += a["layers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["digest"] == digest.as_str())
                .unwrap()["size"]
                .as_u64()
                .unwrap();
        }
    }
    let total: u64 = b["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum();
    eprintln!(
        "debian-systemd and debian-sysvinit share {shared} layers, {shared_bytes} of \
         debian-sysvinit's {total} bytes"
    );
    assert!(shared >= 25, "only {shared} shared layers");
    assert!(
        shared_bytes * 2 > total,
        "{shared_bytes} of {total} bytes shared"
    );
}

/// A server of another release (bullseye against bookworm's debian-sysvinit) shares a
/// layer only where it holds the same packages at the same versions: never its own
/// layer, never a layer of packages of other versions.
#[test]
fn a_server_of_another_release_shares_only_the_same_package_versions() {
    let work = scratch();
    let bullseye = std::path::PathBuf::from(
        run(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/build-bullseye")
                .to_str()
                .unwrap(),
            &[],
        )
        .trim(),
    )
    .join("rootfs");
    let old = convert(&bullseye, &work.path().join("bullseye.oci"), &[]);
    let new = convert(
        &fixture_rootfs("debian-sysvinit"),
        &work.path().join("bookworm.oci"),
        &[],
    );
    assert_eq!(old["layering"], "packages");
    assert!(package_layers(&old).len() >= 10, "{old:#}");
    let new_layers: BTreeMap<String, Value> = new["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["digest"].as_str().unwrap().to_string(), l.clone()))
        .collect();
    let mut shared = Vec::new();
    for layer in old["layers"].as_array().unwrap() {
        let Some(same) = new_layers.get(layer["digest"].as_str().unwrap()) else {
            continue;
        };
        assert_eq!(
            layer["role"], "packages",
            "a layer that is not packages' is shared: {layer}"
        );
        assert_eq!(
            layer["packages"], same["packages"],
            "one layer holds other packages or versions on each release"
        );
        shared.push(layer["group"].as_str().unwrap().to_string());
    }
    eprintln!("bullseye and bookworm share {shared:?}");
    // A release upgrades nearly everything: far fewer layers shared than between two
    // servers of one release.
    assert!(shared.len() < 10, "{shared:?}");
}

/// A layered image unpacks, with umoci, to the same tree as the image of one layer (the
/// rehost layer on top of both), and its SBOM says the same.
#[test]
fn layers_by_package_give_the_same_tree_as_one_layer() {
    let work = scratch();
    for name in ["debian-systemd", "debian-sysvinit"] {
        let rootfs = fixture_rootfs(name);
        let mut trees = Vec::new();
        let mut sboms = Vec::new();
        for layers in ["one", "packages"] {
            let image = work.path().join(format!("{name}-{layers}.oci"));
            let s = convert(&rootfs, &image, &["--layers", layers, "--init", "rehost"]);
            assert_eq!(s["layering"], layers);
            let count = s["layers"].as_array().unwrap().len();
            match layers {
                "one" => assert_eq!(count, 2),
                _ => assert!(count > 20, "{count} layers"),
            }
            let unpacked = umoci_unpack(
                &image,
                "latest",
                &work.path().join(format!("{name}-{layers}")),
            );
            trees.push(facts(&unpacked, &|_| false));
            let mut sbom: Value = serde_json::from_slice(
                &rehost_ok(&["sbom", image.to_str().unwrap(), "--format", "spdx"]).stdout,
            )
            .unwrap();
            // The image's own digest and name differ; what it holds must not.
            let packages = sbom["packages"].as_array_mut().unwrap();
            let comment = packages[0]["comment"].clone();
            packages.remove(0);
            sboms.push((comment, sbom["packages"].clone()));
        }
        assert_same(&trees[0], &trees[1]);
        assert_eq!(sboms[0], sboms[1], "{name}: the SBOMs differ");
        assert!(sboms[1].1.as_array().unwrap().len() > 100);
    }
}

/// The bundled runtime stacks the layers of a layered image into the same tree as it
/// shows of the image of one layer: every path with its type, mode, owner, link target
/// and time, and every file's content. (Not a directory's size: that is how many blocks
/// its entries took in the file system it was unpacked into, not part of the image.)
#[test]
fn the_bundled_runtime_sees_the_same_tree_in_both_layerings() {
    let work = scratch();
    let rootfs = fixture_rootfs("debian-sysvinit");
    let mut rt = Rt::new();
    // What the runtime itself puts in (proc, sys, dev, run, tmp, and `/` whose time is
    // when the container made its mount points) is left out: the same for both images,
    // but alive.
    let listing = "find / -xdev -mindepth 1 \\( -path /proc -o -path /sys -o -path /dev -o -path /run \
                   -o -path /tmp \\) -prune -o -printf '%p %y %m %U %G %l %T@\\n' \
                   | sort > /run/listing; find / -xdev \\( -path /proc -o -path /sys -o -path /dev \
                   -o -path /run -o -path /tmp \\) -prune -o -type f \
                   -print0 | sort -z | xargs -0 md5sum >> /run/listing; touch /run/listed; sleep 300";
    let mut seen = Vec::new();
    for layers in ["one", "packages"] {
        let image = work.path().join(format!("{layers}.oci"));
        let s = convert(&rootfs, &image, &["--layers", layers, "--init", "rehost"]);
        assert_eq!(s["layering"], layers);
        let name = rt.name(layers);
        rt.run_detached(&name, &image, &["--init", "none"], &["sh", "-c", listing]);
        rt.wait_for_file(&name, "/run/listed");
        let (text, code) = rt.exec(&name, &["cat", "/run/listing"]);
        assert_eq!(code, 0);
        rt.rehost_ok(&["rm", "-f", &name]);
        seen.push(text);
    }
    let (one, packages) = (&seen[0], &seen[1]);
    assert!(
        one.lines().count() > 10_000,
        "a whole system: {} lines",
        one.lines().count()
    );
    let only = |a: &str, b: &str| -> Vec<String> {
        let b: BTreeSet<&str> = b.lines().collect();
        a.lines()
            .filter(|l| !b.contains(l))
            .take(20)
            .map(str::to_string)
            .collect()
    };
    assert!(
        one == packages,
        "the trees differ:\n only with one layer: {:#?}\n only by package: {:#?}",
        only(one, packages),
        only(packages, one)
    );
    rt.assert_clean("two containers removed");
}

/// A hand-edited conffile, an application no package installed and a changed package
/// binary stay in the server's own layer: never in a package layer, which stays the one
/// an untouched server has (but for the changed file).
#[test]
fn what_the_server_changed_stays_in_its_own_layer() {
    let work = scratch();
    let root = work.path().join("rootfs");
    run(
        "cp",
        &[
            "-a",
            fixture_rootfs("debian-systemd").to_str().unwrap(),
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

    let edited_image = work.path().join("edited.oci");
    let edited = convert(&root, &edited_image, &["--layers", "packages"]);
    let plain = convert(
        &fixture_rootfs("debian-systemd"),
        &work.path().join("plain.oci"),
        &["--layers", "packages"],
    );
    assert_eq!(edited["owned_in_server"]["changed"], 2, "{edited:#}");
    let ours = [
        "etc/nginx/nginx.conf",
        "usr/bin/env",
        "opt/app",
        "opt/app/lib/server.py",
    ];
    let plain_digests: BTreeSet<String> = package_layers(&plain)
        .into_values()
        .map(|(_, d)| d)
        .collect();
    let mut in_server = BTreeSet::new();
    for layer in edited["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap();
        let paths = layer_paths(&edited_image, digest);
        for p in ours {
            match layer["role"].as_str().unwrap() {
                "server" if paths.contains(p) => {
                    in_server.insert(p);
                }
                "packages" => assert!(
                    !paths.contains(p),
                    "{p} in the package layer {}",
                    layer["group"]
                ),
                _ => {}
            }
        }
        if layer["role"] == "packages" && !plain_digests.contains(digest) {
            // Only the layers of the changed files' packages differ from an untouched server's.
            let packages = layer["packages"].to_string();
            assert!(
                packages.contains("\"coreutils=") || packages.contains("\"nginx-common="),
                "an untouched package's layer differs: {layer}"
            );
        }
    }
    assert_eq!(
        in_server.len(),
        ours.len(),
        "in the server's layer: {in_server:?}"
    );
}

/// A layered image boots and passes verify in systemd mode on the bundled runtime.
#[test]
fn a_layered_image_verifies_in_systemd_mode() {
    let work = scratch();
    let image = common::runtime::converted_with(
        "debian-systemd",
        work.path(),
        &["--layers", "packages", "--init", "systemd"],
    );
    let rt = Rt::new();
    let out = rt.rehost(&[
        "verify",
        "--json",
        "--timeout",
        "90",
        image.to_str().unwrap(),
        "--http",
        "80/",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["mode"], "systemd");
    let passed: BTreeSet<String> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == true)
        .map(|c| {
            format!(
                "{} {}",
                c["kind"].as_str().unwrap(),
                c["name"].as_str().unwrap()
            )
        })
        .collect();
    for check in [
        "service ssh.service",
        "service nginx.service",
        "port 22/tcp",
        "http GET :80/",
    ] {
        assert!(passed.contains(check), "{check}: {report:#}");
    }
    assert_eq!(rt.rehost_ok(&["ps", "--json"]).trim(), "[]");
}
