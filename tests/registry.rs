//! `rehost push` and `rehost pull` against a real registry server (the CNCF distribution
//! registry) started by each test, checked with skopeo as a user would.

mod common;
mod registry_server;

use registry_server::{Fault, FlakyProxy, Registry, Setup};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `rehost` with no credentials of the user's (and none of ours leaking to them).
fn isolated() -> Command {
    let mut cmd = common::rehost_cmd();
    // The user's own credentials must not leak into the tests, nor theirs into ours.
    cmd.env("DOCKER_CONFIG", "/nonexistent")
        .env("REGISTRY_AUTH_FILE", "/nonexistent")
        .env_remove("XDG_RUNTIME_DIR")
        .env("HOME", "/nonexistent");
    cmd
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "rehost failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(out: Output) -> Value {
    serde_json::from_str(&ok(out)).expect("--json prints JSON")
}

/// A small tree with a few files, converted into an image layout (or archive).
fn small_image(dir: &Path, name: &str, archive: bool) -> (PathBuf, String) {
    let tree = dir.join(format!("{name}-tree"));
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
    std::fs::write(tree.join("etc/hostname"), format!("{name}\n")).unwrap();
    random_file(&tree.join("usr/bin/tool"), 300_000);
    let image = dir.join(if archive {
        format!("{name}.tar")
    } else {
        format!("{name}.oci")
    });
    let mut cmd = isolated();
    cmd.arg("convert").arg(&tree).arg("-o").arg(&image);
    cmd.args(["--tag", "v1", "--json"]);
    if archive {
        cmd.args(["--format", "oci-archive"]);
    }
    let summary = json(cmd.output().unwrap());
    let digest = summary["manifest_digest"].as_str().unwrap().to_string();
    (image, digest)
}

fn skopeo_digest(reference: &str, tls_args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .arg("inspect")
        .args(tls_args)
        .args(["--format", "{{.Digest}}"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo runs");
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Every file of two layouts, byte for byte.
fn assert_same_layout(a: &Path, b: &Path) {
    let list = |root: &Path| {
        let mut files = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    files.push(p.strip_prefix(root).unwrap().to_path_buf());
                }
            }
        }
        files.sort();
        files
    };
    let (fa, fb) = (list(a), list(b));
    assert_eq!(fa, fb, "the layouts hold different files");
    for f in fa {
        assert!(
            std::fs::read(a.join(&f)).unwrap() == std::fs::read(b.join(&f)).unwrap(),
            "{} differs",
            f.display()
        );
    }
}

#[test]
fn push_to_a_plain_registry_keeps_digests_and_skips_what_is_there() {
    let registry = Registry::start(Setup::Plain);
    let work = registry.scratch();
    let (image, digest) = small_image(&work, "web01", false);
    let reference = format!("{}/fleet/web01:v1", registry.addr);

    let first = json(
        isolated()
            .arg("push")
            .arg(&image)
            .arg(&reference)
            .args(["--tag", "latest", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(first["manifest_digest"], digest.as_str());
    assert!(first["bytes_uploaded"].as_u64().unwrap() > 300_000);
    for tag in ["v1", "latest"] {
        let r = format!("{}/fleet/web01:{tag}", registry.addr);
        assert_eq!(skopeo_digest(&r, &["--tls-verify=false"]), digest, "{r}");
    }

    // The same image again: nothing is uploaded.
    let again = json(
        isolated()
            .args(["push", "--json"])
            .arg(&image)
            .arg(&reference)
            .output()
            .unwrap(),
    );
    assert_eq!(again["bytes_uploaded"], 0);
    assert!(again["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["action"] == "skipped"));

    // Pulled back, it is the same layout, file for file.
    let back = work.join("back.oci");
    ok(isolated()
        .args(["pull", &reference, "--tag", "v1", "-o"])
        .arg(&back)
        .output()
        .unwrap());
    assert_same_layout(&image, &back);
}

#[test]
fn push_an_archive_and_mount_blobs_from_another_repository() {
    let registry = Registry::start(Setup::Plain);
    let work = registry.scratch();
    let (archive, digest) = small_image(&work, "db01", true);
    let base = format!("{}/fleet/base:v1", registry.addr);
    ok(isolated()
        .arg("push")
        .arg(&archive)
        .arg(&base)
        .output()
        .unwrap());
    assert_eq!(skopeo_digest(&base, &["--tls-verify=false"]), digest);

    let other = format!("{}/fleet/db01:v1", registry.addr);
    let summary = json(
        isolated()
            .arg("push")
            .arg(&archive)
            .arg(&other)
            .args(["--mount-from", "fleet/base", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(summary["bytes_uploaded"], 0);
    assert!(summary["bytes_mounted"].as_u64().unwrap() > 300_000);
    assert_eq!(skopeo_digest(&other, &["--tls-verify=false"]), digest);

    // Pulled as an archive, it reads back as the same image.
    let back = work.join("back.tar");
    ok(isolated()
        .args(["pull", &other, "--format", "oci-archive", "-o"])
        .arg(&back)
        .output()
        .unwrap());
    let out = Command::new("skopeo")
        .args(["inspect", "--format", "{{.Digest}}"])
        .arg(format!("oci-archive:{}", back.display()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), digest);
}

/// A second repository of the same registry gets the image's blobs mounted from where the
/// first push sent them, without `--mount-from`; a remembered place the registry does not
/// have (or refuses to mount from) falls back to an upload.
#[test]
fn push_mounts_blobs_from_where_an_earlier_push_sent_them() {
    let registry = Registry::start(Setup::Plain);
    let work = registry.scratch();
    let cache = work.join("cache");
    let remembering = || {
        let mut c = isolated();
        c.env("XDG_CACHE_HOME", &cache);
        c
    };
    let (image, digest) = small_image(&work, "web01", false);
    let first = format!("{}/fleet/web01:v1", registry.addr);
    let pushed = json(
        remembering()
            .arg("push")
            .arg(&image)
            .arg(&first)
            .arg("--json")
            .output()
            .unwrap(),
    );
    assert!(pushed["bytes_uploaded"].as_u64().unwrap() > 300_000);
    assert!(cache.join("rehost/pushed-blobs.json").is_file());

    let second = format!("{}/fleet/web02:v1", registry.addr);
    let summary = json(
        remembering()
            .arg("push")
            .arg(&image)
            .arg(&second)
            .arg("--json")
            .output()
            .unwrap(),
    );
    assert_eq!(summary["bytes_uploaded"], 0, "{summary}");
    for b in summary["blobs"].as_array().unwrap() {
        assert_eq!(b["action"], "mounted", "{b}");
    }
    assert_eq!(skopeo_digest(&second, &["--tls-verify=false"]), digest);

    // Another image whose blobs the memory places in a repository that never held them.
    let (other, other_digest) = small_image(&work, "db01", false);
    let (manifest, _) = common::image_json(&other);
    let mut blobs = serde_json::Map::new();
    for d in std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().unwrap()) {
        blobs.insert(
            d["digest"].as_str().unwrap().to_string(),
            serde_json::json!({"repository": "fleet/gone", "seen": 1}),
        );
    }
    let memory = serde_json::json!({"registries": {registry.addr.clone(): blobs}, "clock": 1});
    std::fs::write(cache.join("rehost/pushed-blobs.json"), memory.to_string()).unwrap();
    let third = format!("{}/fleet/db01:v1", registry.addr);
    let summary = json(
        remembering()
            .arg("push")
            .arg(&other)
            .arg(&third)
            .arg("--json")
            .output()
            .unwrap(),
    );
    assert!(
        summary["bytes_uploaded"].as_u64().unwrap() > 300_000,
        "{summary}"
    );
    assert_eq!(skopeo_digest(&third, &["--tls-verify=false"]), other_digest);
}

/// `push --sbom` attaches the image's SBOM as an OCI referrer; this registry has no
/// referrers API, so the `sha256-HEX` tag schema's index lists it.
#[test]
fn push_attaches_the_sbom_as_a_referrer() {
    let registry = Registry::start(Setup::Plain);
    let work = registry.scratch();
    let tree = work.join("tree");
    for (path, text) in [
        (
            "var/lib/dpkg/status",
            "Package: hello\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.10-3\n",
        ),
        (
            "var/lib/dpkg/info/hello.list",
            "/usr\n/usr/bin\n/usr/bin/hello\n",
        ),
        ("usr/bin/hello", "hello"),
        ("opt/app/run", "app"),
        ("etc/os-release", "ID=debian\nVERSION_ID=12\n"),
    ] {
        std::fs::create_dir_all(tree.join(path).parent().unwrap()).unwrap();
        std::fs::write(tree.join(path), text).unwrap();
    }
    let image = work.join("hello.oci");
    let summary = json(
        isolated()
            .arg("convert")
            .arg(&tree)
            .arg("-o")
            .arg(&image)
            .args(["--tag", "hello:v1", "--init", "none", "--json"])
            .output()
            .unwrap(),
    );
    let digest = summary["manifest_digest"].as_str().unwrap().to_string();
    let reference = format!("{}/fleet/hello:v1", registry.addr);
    let pushed = json(
        isolated()
            .arg("push")
            .arg(&image)
            .arg(&reference)
            .args(["--sbom", "spdx", "--json"])
            .output()
            .unwrap(),
    );
    let sbom = &pushed["sbom"];
    assert_eq!(sbom["indexed_by"], "tag-schema", "{pushed}");
    assert_eq!(sbom["artifact_type"], "application/spdx+json");
    let raw = |r: &str| -> Value {
        let out = Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--raw"])
            .arg(format!("docker://{r}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{r}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let index = raw(&format!(
        "{}/fleet/hello:{}",
        registry.addr,
        digest.replace(':', "-")
    ));
    assert_eq!(index["manifests"][0]["digest"], sbom["digest"], "{index}");
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/spdx+json"
    );
    let artifact = raw(&format!(
        "{}/fleet/hello@{}",
        registry.addr,
        sbom["digest"].as_str().unwrap()
    ));
    assert_eq!(artifact["subject"]["digest"], digest.as_str(), "{artifact}");
    assert_eq!(artifact["artifactType"], "application/spdx+json");
    // The image itself is unchanged.
    assert_eq!(skopeo_digest(&reference, &["--tls-verify=false"]), digest);
}

#[test]
fn htpasswd_registry_takes_right_credentials_and_refuses_wrong_ones_in_one_line() {
    let registry = Registry::start(Setup::Htpasswd {
        user: "ops",
        password: "s3cret",
    });
    let work = registry.scratch();
    let (image, digest) = small_image(&work, "app01", false);
    let reference = format!("{}/fleet/app01:v1", registry.addr);

    let push_with = |password: &str| {
        let mut child = isolated()
            .arg("push")
            .arg(&image)
            .arg(&reference)
            .args(["--username", "ops", "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };

    let wrong = push_with("wrong");
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        stderr.contains("refused the credentials of user `ops`") && stderr.contains("401"),
        "{stderr}"
    );

    let anonymous = isolated()
        .arg("push")
        .arg(&image)
        .arg(&reference)
        .output()
        .unwrap();
    assert!(!anonymous.status.success());
    assert!(String::from_utf8_lossy(&anonymous.stderr).contains("requires credentials"));

    ok(push_with("s3cret"));
    let creds = ["--tls-verify=false", "--creds", "ops:s3cret"];
    assert_eq!(skopeo_digest(&reference, &creds), digest);

    // Credentials from `docker login` (config.json under DOCKER_CONFIG) work as well.
    let docker = work.join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"b3BzOnMzY3JldA=="}}}}}}"#,
            registry.addr
        ),
    )
    .unwrap();
    let second = format!("{}/fleet/app01:v2", registry.addr);
    let summary = json(
        isolated()
            .env("DOCKER_CONFIG", &docker)
            .args(["push", "--json"])
            .arg(&image)
            .arg(&second)
            .output()
            .unwrap(),
    );
    assert_eq!(summary["bytes_uploaded"], 0);
    assert_eq!(skopeo_digest(&second, &creds), digest);

    // And from a credential helper named in config.json (the docker-credential protocol:
    // the server on standard input, the credentials as JSON on standard output).
    let bin = work.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-rehosttest");
    let script = r#"#!/bin/sh
read server
[ "$1" = get ] && [ "$server" = "ADDR" ] || exit 1
echo '{"ServerURL":"ADDR","Username":"ops","Secret":"s3cret"}'
"#;
    std::fs::write(&helper, script.replace("ADDR", &registry.addr)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let helped = work.join("helped");
    std::fs::create_dir_all(&helped).unwrap();
    std::fs::write(
        helped.join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"rehosttest"}}}}"#, registry.addr),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let third = format!("{}/fleet/app01:v3", registry.addr);
    ok(isolated()
        .env("DOCKER_CONFIG", &helped)
        .env("PATH", path)
        .arg("push")
        .arg(&image)
        .arg(&third)
        .output()
        .unwrap());
    assert_eq!(skopeo_digest(&third, &creds), digest);
}

#[test]
fn tls_registry_with_a_private_ca() {
    let registry = Registry::start(Setup::Tls);
    let work = registry.scratch();
    let (image, digest) = small_image(&work, "mail01", false);
    let reference = format!("{}/fleet/mail01:v1", registry.addr);

    // Not trusted without the CA: one clear error about the certificate.
    let untrusted = isolated()
        .arg("push")
        .arg(&image)
        .arg(&reference)
        .output()
        .unwrap();
    assert!(!untrusted.status.success());
    let stderr = String::from_utf8_lossy(&untrusted.stderr).to_lowercase();
    assert!(stderr.contains("certificate"), "{stderr}");

    let summary = json(
        isolated()
            .arg("push")
            .arg(&image)
            .arg(&reference)
            .arg("--ca-cert")
            .arg(registry.ca_cert())
            .arg("--json")
            .output()
            .unwrap(),
    );
    assert_eq!(summary["plain_http"], false);
    let cert_dir = registry.cert_dir();
    let cert_arg = format!("--cert-dir={}", cert_dir.display());
    assert_eq!(skopeo_digest(&reference, &[&cert_arg]), digest);

    let back = work.join("back.oci");
    ok(isolated()
        .args(["pull", &reference, "--tag", "v1", "--ca-cert"])
        .arg(registry.ca_cert())
        .arg("-o")
        .arg(&back)
        .output()
        .unwrap());
    assert_same_layout(&image, &back);
}

/// Bytes that do not compress, so the layer is as big as the file.
fn random_file(path: &Path, size: usize) {
    let mut state = 0x9E3779B97F4A7C15u64;
    let mut data = Vec::with_capacity(size);
    while data.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    std::fs::write(path, data).unwrap();
}

/// The size of the biggest upload in progress in the registry's storage.
fn upload_in_progress(storage: &Path) -> u64 {
    let repos = storage.join("docker/registry/v2/repositories/fleet/big/_uploads");
    std::fs::read_dir(repos)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::metadata(e.path().join("data")).ok())
                .map(|m| m.len())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

#[test]
fn a_push_killed_halfway_completes_when_run_again() {
    let registry = Registry::start(Setup::Plain);
    let work = registry.scratch();
    let tree = work.join("big-tree");
    std::fs::create_dir_all(&tree).unwrap();
    random_file(&tree.join("data.bin"), 160 << 20);
    let image = work.join("big.oci");
    let summary = json(
        isolated()
            .arg("convert")
            .arg(&tree)
            .arg("-o")
            .arg(&image)
            .args(["--compression", "none", "--tag", "v1", "--json"])
            .output()
            .unwrap(),
    );
    let digest = summary["manifest_digest"].as_str().unwrap().to_string();
    let reference = format!("{}/fleet/big:v1", registry.addr);

    let mut child = isolated()
        .arg("push")
        .arg(&image)
        .arg(&reference)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the registry holds part of the layer.
    let deadline = Instant::now() + Duration::from_secs(60);
    while upload_in_progress(&registry.storage()) < 8 << 20 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the push ended before it was killed"
        );
        assert!(
            Instant::now() < deadline,
            "the push never started uploading"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let inspect = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(
        !inspect.status.success(),
        "the killed push must not have tagged the image"
    );

    let again = json(
        isolated()
            .args(["push", "--json"])
            .arg(&image)
            .arg(&reference)
            .output()
            .unwrap(),
    );
    assert_eq!(again["manifest_digest"], digest.as_str());
    assert_eq!(skopeo_digest(&reference, &["--tls-verify=false"]), digest);
    let back = work.join("back.oci");
    ok(isolated()
        .args(["pull", &reference, "--tag", "v1", "-o"])
        .arg(&back)
        .output()
        .unwrap());
    assert_same_layout(&image, &back);
}

#[test]
fn errors_name_what_and_where() {
    let registry = Registry::start(Setup::Plain);
    let work = registry.scratch();
    let (image, _) = small_image(&work, "err01", false);

    let missing = isolated()
        .args(["pull", &format!("{}/fleet/none:v1", registry.addr), "-o"])
        .arg(work.join("none.oci"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("fleet/none:v1") && stderr.contains("404"),
        "{stderr}"
    );
    assert!(
        !work.join("none.oci").exists(),
        "a failed pull leaves nothing"
    );

    let not_image = isolated()
        .arg("push")
        .arg(&work)
        .arg(format!("{}/fleet/x:v1", registry.addr))
        .output()
        .unwrap();
    assert!(!not_image.status.success());
    assert!(String::from_utf8_lossy(&not_image.stderr).contains("not an OCI image layout"));

    // A layer whose bytes no longer match its digest: the registry refuses it, and the
    // error names the blob, the registry's status and its message.
    let (corrupt, _) = small_image(&work, "corrupt01", false);
    let manifest: Value = {
        let index: Value =
            serde_json::from_slice(&std::fs::read(corrupt.join("index.json")).unwrap()).unwrap();
        let digest = index["manifests"][0]["digest"].as_str().unwrap();
        let path = corrupt.join("blobs/sha256").join(&digest[7..]);
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let layer_path = corrupt.join("blobs/sha256").join(&layer[7..]);
    let mut bytes = std::fs::read(&layer_path).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&layer_path, bytes).unwrap();
    let refused = isolated()
        .arg("push")
        .arg(&corrupt)
        .arg(format!("{}/fleet/corrupt:v1", registry.addr))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&layer) && stderr.contains("400") && stderr.contains("DIGEST_INVALID"),
        "{stderr}"
    );

    let bad_ref = isolated()
        .arg("push")
        .arg(&image)
        .arg("Not/A Ref")
        .output()
        .unwrap();
    assert!(!bad_ref.status.success());
    assert!(String::from_utf8_lossy(&bad_ref.stderr).contains("`Not/A Ref`"));
}

/// The real Debian fixture: pushed, re-pushed for nothing, and inspected by skopeo.
#[test]
fn the_debian_fixture_pushes_and_repushes_for_nothing() {
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/build-debian"
    ))
    .arg("debian-systemd")
    .output()
    .expect("fixtures/build-debian runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fixture = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());

    let registry = Registry::start(Setup::Plain);
    let work = registry.scratch();
    let image = work.join("debian.tar");
    let converted = json(
        isolated()
            .arg("convert")
            .arg(fixture.join("rootfs"))
            .arg("-o")
            .arg(&image)
            .args(["--format", "oci-archive", "--tag", "bookworm", "--json"])
            .args(["--init", "rehost"])
            .output()
            .unwrap(),
    );
    let digest = converted["manifest_digest"].as_str().unwrap();
    let reference = format!("{}/fleet/debian:bookworm", registry.addr);
    let first = json(
        isolated()
            .args(["push", "--json"])
            .arg(&image)
            .arg(&reference)
            .output()
            .unwrap(),
    );
    assert!(first["bytes_uploaded"].as_u64().unwrap() > 10 << 20);
    assert_eq!(skopeo_digest(&reference, &["--tls-verify=false"]), digest);
    let again = json(
        isolated()
            .args(["push", "--json"])
            .arg(&image)
            .arg(&reference)
            .output()
            .unwrap(),
    );
    assert_eq!(again["bytes_uploaded"], 0);

    // The fleet's last step: boot the pushed image straight from the registry and check it.
    let root = work.join("runtime-root");
    let verified = isolated()
        .args([
            "verify",
            "--json",
            "--timeout",
            "90",
            "--port",
            "22",
            "--http",
            "80/",
        ])
        .arg(&reference)
        .env("REHOST_ROOT", &root)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&verified.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no report ({e}): {}",
            String::from_utf8_lossy(&verified.stderr)
        )
    });
    assert_eq!(verified.status.code(), Some(0), "{report:#}");
    assert_eq!(report["mode"], "rehost");
    // The pulled layout is gone; only the layer cache keeps what was pulled.
    let pulls = std::fs::read_dir(root.join("pulls")).unwrap().count();
    assert_eq!(pulls, 0);
}

#[test]
fn a_connection_dropped_mid_upload_is_retried() {
    let registry = Registry::start(Setup::Plain);
    let proxy = FlakyProxy::start(&registry.addr, Fault::CutAfter(4 << 20));
    let work = registry.scratch();
    let tree = work.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    random_file(&tree.join("data.bin"), 16 << 20);
    let image = work.join("flaky.oci");
    let converted = json(
        isolated()
            .arg("convert")
            .arg(&tree)
            .arg("-o")
            .arg(&image)
            .args(["--compression", "none", "--json"])
            .output()
            .unwrap(),
    );
    let digest = converted["manifest_digest"].as_str().unwrap();
    let reference = format!("{}/fleet/flaky:v1", proxy.addr);
    let out = isolated()
        .args(["push", "--json"])
        .arg(&image)
        .arg(&reference)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let summary = json(out);
    assert!(proxy.has_cut(), "the proxy never cut the upload");
    assert!(stderr.contains("retrying"), "{stderr}");
    assert_eq!(summary["manifest_digest"], digest);
    let direct = format!("{}/fleet/flaky:v1", registry.addr);
    assert_eq!(skopeo_digest(&direct, &["--tls-verify=false"]), digest);
}

#[test]
fn a_registry_that_refuses_chunks_gets_each_blob_in_one_put() {
    let registry = Registry::start(Setup::Plain);
    let proxy = FlakyProxy::start(&registry.addr, Fault::RefusePatch);
    let work = registry.scratch();
    let (image, digest) = small_image(&work, "mono01", false);
    let reference = format!("{}/fleet/mono01:v1", proxy.addr);
    let summary = json(
        isolated()
            .args(["push", "--json"])
            .arg(&image)
            .arg(&reference)
            .output()
            .unwrap(),
    );
    assert!(proxy.has_cut(), "the proxy never saw a PATCH");
    assert!(summary["bytes_uploaded"].as_u64().unwrap() > 300_000);
    let direct = format!("{}/fleet/mono01:v1", registry.addr);
    assert_eq!(skopeo_digest(&direct, &["--tls-verify=false"]), digest);
}

#[test]
fn bearer_token_registry_takes_right_credentials_and_refuses_wrong_ones() {
    let registry = Registry::start(Setup::Token {
        user: "ci",
        password: "t0ken",
    });
    let work = registry.scratch();
    let (image, digest) = small_image(&work, "tok01", false);
    let reference = format!("{}/fleet/tok01:v1", registry.addr);
    let push_with = |password: &str| {
        let mut child = isolated()
            .arg("push")
            .arg(&image)
            .arg(&reference)
            .args(["--username", "ci", "--password-stdin", "--json"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };
    let wrong = push_with("nope");
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("refused the credentials of user `ci`"),
        "{stderr}"
    );

    let summary = json(push_with("t0ken"));
    assert!(summary["bytes_uploaded"].as_u64().unwrap() > 300_000);
    let creds = ["--tls-verify=false", "--creds", "ci:t0ken"];
    assert_eq!(skopeo_digest(&reference, &creds), digest);
    let again = json(push_with("t0ken"));
    assert_eq!(again["bytes_uploaded"], 0);
}
