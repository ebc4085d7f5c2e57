//! Hostile and broken images against the runtime, verify, the layout reader and the
//! registry client: each test is what a user or another user of the host would see.

mod common;

use common::runtime::{converted, Rt};
use common::scratch;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

/// A command run as `nobody`, with no groups: another user of the host.
fn as_nobody(program: &str, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", program])
        .args(args)
        .output()
        .expect("setpriv runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// After a run the runtime's directory (layer cache and containers) is 0700 root, even
/// when it was made looser before, and another user can neither see nor run the image's
/// setuid programs in the cache.
#[test]
fn the_runtime_directory_is_private_and_the_cached_setuid_programs_out_of_reach() {
    let work = scratch();
    let image = converted("debian-sysvinit", work.path());
    let mut rt = Rt::new();
    // The directories above are open to all, as /var/lib is: only the runtime's own
    // directory stands between other users and the cache.
    fs::set_permissions(rt.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir(rt.root()).unwrap();
    fs::set_permissions(rt.root(), fs::Permissions::from_mode(0o755)).unwrap();
    let name = rt.name("private");
    let out = rt.rehost(&[
        "run",
        "--init",
        "none",
        "--name",
        &name,
        image.to_str().unwrap(),
        "/bin/true",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let meta = fs::metadata(rt.root()).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o700, "the runtime's directory");
    assert_eq!(meta.uid(), 0);
    let found = common::run(
        "find",
        &[
            rt.root().join("layers").to_str().unwrap(),
            "-type",
            "f",
            "-perm",
            "-4000",
            "-name",
            "su",
        ],
    );
    let su = found.lines().next().expect("su, setuid, in the cache");
    let stat = as_nobody("stat", &[su]);
    assert!(!stat.status.success(), "nobody can stat {su}");
    let run = as_nobody(su, &["-c", "id -u"]);
    assert!(
        !run.status.success() && !String::from_utf8_lossy(&run.stdout).contains('0'),
        "nobody ran {su}: {}",
        String::from_utf8_lossy(&run.stdout)
    );
}

/// A runtime directory below one that other users can write is refused with one line
/// naming that directory, and nothing is made there.
#[test]
fn a_runtime_directory_below_one_others_can_write_is_refused() {
    let work = scratch();
    let open = work.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let root = open.join("root");
    let out = common::rehost_cmd()
        .args(["run", "--init", "none", "no-such-image.oci", "/bin/true"])
        .env("REHOST_ROOT", &root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "{}: writable by other users (mode 0777)",
            open.display()
        )),
        "{err}"
    );
    assert!(!root.exists());
}

/// Rewrites the config of the only image in the layout `dir` (manifest and index follow).
fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    use sha2::{Digest, Sha256};
    let blob = |d: &str| dir.join("blobs/sha256").join(&d[7..]);
    let put = |b: &[u8]| {
        let d = format!("sha256:{}", hex::encode(Sha256::digest(b)));
        fs::write(blob(&d), b).unwrap();
        (d, b.len())
    };
    let read =
        |p: &Path| -> serde_json::Value { serde_json::from_slice(&fs::read(p).unwrap()).unwrap() };
    let mut index = read(&dir.join("index.json"));
    let mut manifest = read(&blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let mut config = read(&blob(manifest["config"]["digest"].as_str().unwrap()));
    edit(&mut config);
    let (cfg, csize) = put(config.to_string().as_bytes());
    manifest["config"]["digest"] = cfg.into();
    manifest["config"]["size"] = csize.into();
    let (man, msize) = put(manifest.to_string().as_bytes());
    index["manifests"][0]["digest"] = man.into();
    index["manifests"][0]["size"] = msize.into();
    fs::write(dir.join("index.json"), index.to_string()).unwrap();
}

/// A layer holding one entry at `name`: a FIFO, or a symlink to `link`.
fn one_entry_layer(name: &str, link: Option<&str>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    match link {
        Some(target) => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_link_name(target).unwrap();
        }
        None => h.set_entry_type(tar::EntryType::Fifo),
    }
    h.set_mode(0o644);
    h.set_size(0);
    b.append_data(&mut h, name, &[][..]).unwrap();
    b.into_inner().unwrap()
}

/// `rehost ARGS` with this runtime root, ended after two minutes: a hang is a failure
/// (124), not a stuck test.
fn rehost_bounded(rt: &Rt, args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["-k", "10", "120", common::rehost_bin()])
        .args(args)
        .env("REHOST_ROOT", rt.root())
        .output()
        .expect("timeout runs rehost")
}

/// The one line of a failed command, which must say `want`.
fn assert_one_line_error(out: &Output, want: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("rehost: error: ") && err.contains(want),
        "wanted `{want}`: {err}"
    );
}

/// User 4294967295 (-1 to setuid, "unchanged") would run pid 1 as root: refused, as runc
/// does, before anything is made.
#[test]
fn a_user_id_out_of_range_is_refused_before_anything_runs() {
    let work = scratch();
    let image = converted("debian-sysvinit", work.path());
    edit_config(&image, |c| {
        c["config"]["User"] = "4294967295:4294967295".into();
    });
    let mut rt = Rt::new();
    let name = rt.name("uid");
    let img = image.to_str().unwrap();
    let out = rehost_bounded(
        &rt,
        &[
            "run", "--rm", "--init", "none", "--name", &name, img, "/bin/sh", "-c", "id -u",
        ],
    );
    assert_one_line_error(&out, "uid 4294967295 is out of range (0-2147483647)");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!rt.root().join("containers").join(&name).exists());
    rt.assert_clean("a refused user");
}

/// A user name is looked up in the image's own /etc/passwd: a link to a host file is
/// followed inside the image (where it names nothing), and a FIFO is refused at once.
#[test]
fn the_user_is_looked_up_inside_the_image_never_on_the_host() {
    let work = scratch();
    let host_passwd = work.path().join("host-passwd");
    fs::write(&host_passwd, "www-data:x:4242:4242::/:/bin/sh\n").unwrap();
    let base = converted("debian-sysvinit", work.path());
    let mut rt = Rt::new();
    for (what, link, want) in [
        (
            "a link to a host file",
            Some(host_passwd.to_str().unwrap()),
            "user `www-data` is not in the image's /etc/passwd",
        ),
        (
            "a FIFO",
            None,
            "user `www-data`: the image's /etc/passwd: not a regular file",
        ),
    ] {
        let image = work.path().join("user.oci");
        let _ = fs::remove_dir_all(&image);
        common::run(
            "cp",
            &["-a", base.to_str().unwrap(), image.to_str().unwrap()],
        );
        common::runtime::add_layer(&image, &one_entry_layer("etc/passwd", link));
        edit_config(&image, |c| c["config"]["User"] = "www-data".into());
        let name = rt.name("user");
        let out = rehost_bounded(
            &rt,
            &[
                "run",
                "--rm",
                "--init",
                "none",
                "--name",
                &name,
                image.to_str().unwrap(),
                "/bin/sh",
                "-c",
                "id -u",
            ],
        );
        assert_ne!(out.status.code(), Some(124), "{what}: run hangs");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("4242"),
            "{what}: the host's passwd was read"
        );
        assert_one_line_error(&out, want);
    }
    rt.assert_clean("refused users");
}

/// An Env entry without `=` or with a NUL (in the image or from -e), or an environment
/// larger than the kernel takes: one line naming the entry, and nothing made.
#[test]
fn a_bad_environment_is_refused_with_one_line_before_anything_is_made() {
    let work = scratch();
    let image = converted("debian-sysvinit", work.path());
    let img = image.to_str().unwrap();
    let mut rt = Rt::new();
    let many: Vec<String> = (0..100_000).map(|i| format!("K{i}=v")).collect();
    let cases: [(Vec<String>, &[&str], &str); 4] = [
        (
            vec!["NOEQUALS".into()],
            &[],
            "the image's Env: entry `NOEQUALS`: not KEY=VALUE",
        ),
        (
            vec!["A=b\0c\x1b[2J".into()],
            &[],
            "the image's Env: entry `A=b\\u{0}c\\u{1b}[2J`: holds a NUL byte",
        ),
        (
            vec![],
            &["-e", "JUSTANAME"],
            "-e: entry `JUSTANAME`: not KEY=VALUE",
        ),
        (many, &[], "holds 100000 entries"),
    ];
    for (env, flags, want) in cases {
        edit_config(&image, |c| c["config"]["Env"] = env.into());
        let name = rt.name("env");
        let mut args = vec!["run", "--rm", "--init", "none", "--name", &name];
        args.extend_from_slice(flags);
        args.extend([img, "/bin/true"]);
        let out = rehost_bounded(&rt, &args);
        assert_one_line_error(&out, want);
        assert!(!rt.root().join("containers").join(&name).exists(), "{want}");
    }
    rt.assert_clean("refused environments");
}

/// A check command inside that writes gigabytes: verify keeps a bounded tail of it (it
/// runs here with 1 GiB of address space), reports the check with its last lines, and
/// leaves no container behind.
#[test]
fn verify_keeps_a_bounded_tail_of_a_chatty_command_and_cleans_up() {
    let work = scratch();
    let image = converted("debian-sysvinit", work.path());
    let rt = Rt::new();
    let out = Command::new("timeout")
        .args([
            "-k",
            "10",
            "300",
            "prlimit",
            "--as=1073741824",
            common::rehost_bin(),
        ])
        .args([
            "verify",
            "--json",
            "--timeout",
            "90",
            image.to_str().unwrap(),
        ])
        .args([
            "--check",
            "head -c 3000000000 /dev/zero; echo; echo last words; exit 3",
        ])
        .env("REHOST_ROOT", rt.root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "command")
        .unwrap_or_else(|| panic!("no command check: {report:#}"));
    assert_eq!(check["passed"], false);
    assert_eq!(check["detail"], "exit 3 (expected 0)");
    let log = check["log"].as_array().unwrap();
    assert_eq!(log.last().unwrap(), "last words", "{log:?}");
    rt.assert_clean("a verify with a chatty command");
    let containers: Vec<_> = fs::read_dir(rt.root().join("containers"))
        .unwrap()
        .flatten()
        .collect();
    assert!(containers.is_empty(), "{containers:?}");
}

fn make_fifo(path: &Path) {
    let _ = fs::remove_file(path);
    common::run("mkfifo", &[path.to_str().unwrap()]);
}

/// A layout whose index.json is a FIFO, or whose manifest is a link to /dev/zero: `run`
/// and `push` say so in one line at once, instead of waiting or reading without end.
#[test]
fn a_layout_with_a_fifo_or_a_link_to_a_device_is_refused_at_once() {
    let work = scratch();
    let base = converted("debian-sysvinit", work.path());
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(base.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"][0]["digest"].as_str().unwrap()[7..].to_string();
    let rt = Rt::new();
    type Spoil = fn(&Path, &str);
    let cases: [(&str, Spoil, &str); 3] = [
        (
            "a FIFO index.json",
            |l, _| make_fifo(&l.join("index.json")),
            "index.json: not a regular file",
        ),
        (
            "a manifest linked to /dev/zero",
            |l, m| {
                let p = l.join("blobs/sha256").join(m);
                fs::remove_file(&p).unwrap();
                std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
            },
            "a symlink that leaves the layout",
        ),
        (
            "a FIFO manifest",
            |l, m| make_fifo(&l.join("blobs/sha256").join(m)),
            "not a regular file",
        ),
    ];
    for (what, spoil, want) in cases {
        let image = work.path().join("spoilt.oci");
        let _ = fs::remove_dir_all(&image);
        common::run(
            "cp",
            &["-a", base.to_str().unwrap(), image.to_str().unwrap()],
        );
        spoil(&image, &manifest);
        let img = image.to_str().unwrap();
        for args in [
            vec!["run", "--rm", "--init", "none", img, "/bin/true"],
            vec!["push", img, "127.0.0.1:9/hostile/image:v1"],
        ] {
            let out = rehost_bounded(&rt, &args);
            assert_ne!(out.status.code(), Some(124), "{what}: {} hangs", args[0]);
            assert_one_line_error(&out, want);
        }
    }
}

/// What the hostile registry does.
#[derive(Clone, Copy)]
enum Answer {
    /// A manifest that never ends.
    EndlessManifest,
    /// A manifest that says it is 200 MB long.
    HugeManifest,
    /// A manifest whose layer the registry sends without end.
    EndlessBlob,
    /// 404 with terminal escape sequences in the body.
    EscapesInError,
}

/// A registry on 127.0.0.1 that answers `/v2/` and then as `answer` says. Its loops are
/// bounded: at most 50 connections, and no body longer than 2 GiB; writes stop when the
/// client hangs up.
fn hostile_registry(answer: Answer) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let layer = vec![b'x'; 1000];
    let layer_digest = {
        use sha2::{Digest, Sha256};
        format!("sha256:{}", hex::encode(Sha256::digest(&layer)))
    };
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = {
        use sha2::{Digest, Sha256};
        format!("sha256:{}", hex::encode(Sha256::digest(config)))
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer.len()}],
    })
    .to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50) {
            let Ok(mut stream) = stream else { continue };
            let manifest = manifest.clone();
            let config_digest = config_digest.clone();
            std::thread::spawn(move || {
                let mut first = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                if reader.read_line(&mut first).is_err() {
                    return;
                }
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
                let head = |status: &str, kind: &str, len: Option<usize>| {
                    let len = len.map_or(String::new(), |n| format!("Content-Length: {n}\r\n"));
                    format!("HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n{len}Connection: close\r\n\r\n")
                };
                let endless = |stream: &mut std::net::TcpStream, start: &[u8]| {
                    let _ = stream.write_all(start);
                    let chunk = vec![b' '; 1 << 20];
                    for _ in 0..2048 {
                        if stream.write_all(&chunk).is_err() {
                            return;
                        }
                    }
                };
                let json = "application/vnd.oci.image.manifest.v1+json";
                if path == "/v2/" || path == "/v2" {
                    let _ =
                        stream.write_all(head("200 OK", "application/json", Some(2)).as_bytes());
                    let _ = stream.write_all(b"{}");
                    return;
                }
                match answer {
                    Answer::EscapesInError => {
                        let body = "\x1b[2J\x1b]0;pwned\x07NAME_UNKNOWN\r\nfake: ok";
                        let _ = stream.write_all(
                            head("404 Not Found", "text/plain", Some(body.len())).as_bytes(),
                        );
                        let _ = stream.write_all(body.as_bytes());
                    }
                    Answer::EndlessManifest if path.contains("/manifests/") => {
                        let _ = stream.write_all(head("200 OK", json, None).as_bytes());
                        endless(&mut stream, b"{\"schemaVersion\":2,\"x\":\"");
                    }
                    Answer::HugeManifest if path.contains("/manifests/") => {
                        let _ =
                            stream.write_all(head("200 OK", json, Some(200_000_000)).as_bytes());
                        endless(&mut stream, b"{\"schemaVersion\":2,\"x\":\"");
                    }
                    Answer::EndlessBlob if path.contains("/manifests/") => {
                        let _ =
                            stream.write_all(head("200 OK", json, Some(manifest.len())).as_bytes());
                        let _ = stream.write_all(manifest.as_bytes());
                    }
                    Answer::EndlessBlob if path.ends_with(&config_digest) => {
                        let _ = stream.write_all(
                            head("200 OK", "application/octet-stream", Some(config.len()))
                                .as_bytes(),
                        );
                        let _ = stream.write_all(config);
                    }
                    Answer::EndlessBlob if path.contains("/blobs/") => {
                        let _ = stream
                            .write_all(head("200 OK", "application/octet-stream", None).as_bytes());
                        endless(&mut stream, &[]);
                    }
                    _ => {
                        let _ = stream
                            .write_all(head("404 Not Found", "text/plain", Some(0)).as_bytes());
                    }
                }
            });
        }
    });
    addr
}

/// `rehost pull` from a hostile registry: one line saying what, nothing left in the
/// output's directory (not even the hidden temporary layout), no hang.
fn pull_refused(answer: Answer, want: &str) -> String {
    let addr = hostile_registry(answer);
    let work = scratch();
    let out_dir = work.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let out = Command::new("timeout")
        .args(["-k", "10", "120", common::rehost_bin()])
        .args(["pull", &format!("{addr}/hostile/image:v1"), "-o"])
        .arg(out_dir.join("image.oci"))
        .env("DOCKER_CONFIG", "/nonexistent")
        .env("REGISTRY_AUTH_FILE", "/nonexistent")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(124), "pull hangs");
    assert_one_line_error(&out, want);
    let left: Vec<_> = fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    stderr(&out)
}

#[test]
fn an_endless_manifest_is_refused_at_4_mib_and_leaves_nothing() {
    pull_refused(
        Answer::EndlessManifest,
        "the registry sent a manifest of more than 4 MiB (refused)",
    );
}

#[test]
fn a_200_mb_manifest_is_refused() {
    pull_refused(
        Answer::HugeManifest,
        "the registry sent a manifest of more than 4 MiB (refused)",
    );
}

#[test]
fn a_blob_longer_than_its_descriptor_is_refused_at_the_first_extra_byte() {
    pull_refused(
        Answer::EndlessBlob,
        "the registry sent more than the 1000 bytes its descriptor says (refused)",
    );
}

#[test]
fn control_characters_of_a_registry_error_never_reach_the_terminal() {
    let err = pull_refused(Answer::EscapesInError, "404 Not Found: ");
    assert!(
        !err.contains('\x1b') && !err.contains('\x07') && !err.contains('\r'),
        "{err:?}"
    );
    assert!(err.contains("\\u{1b}[2J"), "{err:?}");
}
