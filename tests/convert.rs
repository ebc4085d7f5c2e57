//! End-to-end tests of `rehost convert`, checked with tools we did not write (skopeo,
//! umoci) against real Debian systems and hand-made edge cases.

mod common;

use common::tree::{assert_same, facts};
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn convert_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["convert", "--json"];
    all.extend_from_slice(args);
    json(&rehost_ok(&all))
}

#[test]
fn debian_systemd_survives_exactly_as_umoci_unpacks_it() {
    let rootfs = fixture("debian-systemd").join("rootfs");
    let work = scratch();
    let image = work.path().join("image");
    let summary = convert_json(&[
        rootfs.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
        "--no-default-excludes",
        "--init",
        "none",
        "--tag",
        "debian:12",
    ]);

    // skopeo reads the layout and sees the digest we printed.
    let digest = skopeo_digest(&format!("oci:{}:12", image.display()));
    assert_eq!(digest, summary["manifest_digest"].as_str().unwrap());
    assert_eq!(summary["architecture"], "amd64");
    assert!(summary["stats"]["files"].as_u64().unwrap() > 5000);

    let unpacked = umoci_unpack(&image, "12", &work.path().join("bundle"));
    assert_same(&facts(&rootfs, &|_| false), &facts(&unpacked, &|_| false));
}

#[test]
fn the_same_input_gives_the_same_digests() {
    let rootfs = fixture("debian-sysvinit").join("rootfs");
    let work = scratch();
    for compression in ["gzip", "zstd"] {
        let digests: Vec<String> = (0..2)
            .map(|i| {
                let out = work.path().join(format!("{compression}-{i}"));
                let s = convert_json(&[
                    rootfs.to_str().unwrap(),
                    "-o",
                    out.to_str().unwrap(),
                    "--compression",
                    compression,
                ]);
                assert_eq!(
                    s["layers"][0]["media_type"]
                        .as_str()
                        .unwrap()
                        .rsplit('+')
                        .next()
                        .unwrap(),
                    compression
                );
                s["manifest_digest"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(
            digests[0], digests[1],
            "{compression}: two runs, two digests"
        );
    }
}

#[test]
fn archives_gzip_zstd_and_stdin_give_the_tree_of_the_directory() {
    let fx = fixture("debian-sysvinit");
    let work = scratch();
    let tar = fx.join("rootfs.tar");
    let gz = work.path().join("rootfs.tar.gz");
    let zst = work.path().join("rootfs.tar.zst");
    run(
        "sh",
        &[
            "-c",
            &format!("gzip -1 -c {} > {}", tar.display(), gz.display()),
        ],
    );
    run(
        "zstd",
        &[
            "-q",
            "-1",
            tar.to_str().unwrap(),
            "-o",
            zst.to_str().unwrap(),
        ],
    );
    let expected = facts(&fx.join("rootfs"), &|_| false);

    let mut digests = Vec::new();
    for (i, input) in [&tar, &gz, &zst].iter().enumerate() {
        let image = work.path().join(format!("img{i}"));
        let s = convert_json(&[
            input.to_str().unwrap(),
            "-o",
            image.to_str().unwrap(),
            "--no-default-excludes",
            "--init",
            "none",
        ]);
        assert!(s["source"].as_str().unwrap().starts_with("archive"));
        digests.push(s["layers"][0]["diff_id"].as_str().unwrap().to_string());
        if i == 0 {
            let unpacked = umoci_unpack(&image, "latest", &work.path().join("bundle"));
            assert_same(&expected, &facts(&unpacked, &|_| false));
        }
    }
    assert!(
        digests.iter().all(|d| *d == digests[0]),
        "compression of the input changed the layer: {digests:?}"
    );

    // A pipe: `ssh host tar -c / | rehost convert - …`
    let image = work.path().join("from-stdin");
    let out = rehost_cmd()
        .args([
            "convert",
            "-",
            "-o",
            image.to_str().unwrap(),
            "--no-default-excludes",
            "--init",
            "none",
            "--json",
        ])
        .stdin(fs::File::open(&gz).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        json(&out)["layers"][0]["diff_id"].as_str().unwrap(),
        digests[0]
    );
    // A stream has no file to date it by: the capture's own time, not 1970.
    let (_, config) = common::image_json(&image);
    let created = config["created"].as_str().unwrap();
    assert!(created[..4] >= *"2025", "created {created}");
}

/// Builds a tree with every kind of entry and metadata a server can have.
fn edge_case_tree(root: &Path) {
    let sh = |script: &str| {
        run(
            "sh",
            &["-euc", &format!("cd '{}'\n{script}", root.display())],
        )
    };
    sh(r#"
        mkdir -p bin etc/deep srv/shared data
        printf 'x' > bin/suid && chmod 4755 bin/suid
        printf 'y' > bin/sgid && chmod 2711 bin/sgid
        chmod 1777 srv/shared
        printf 'owned' > data/owned && chown 1234:5678 data/owned
        printf 'cap' > bin/ping && setcap cap_net_raw+ep bin/ping
        printf 'attr' > etc/attr && setfattr -n user.rehost -v 'hello world' etc/attr
        setfattr -n trusted.rehost -v 0sAAEC etc/attr
        printf 'acl' > etc/acl && setfacl -m u:1000:rw,g:2000:r etc/acl
        setfacl -d -m u:1000:rwx srv/shared
        truncate -s 1G data/sparse
        printf 'start' | dd of=data/sparse conv=notrunc status=none
        printf 'middle' | dd of=data/sparse bs=1 seek=500000000 conv=notrunc status=none
        printf 'end' | dd of=data/sparse bs=1 seek=1073741821 conv=notrunc status=none
        truncate -s 5M data/all-hole
        printf 'one' > data/link1 && ln data/link1 data/link2 && ln data/link1 etc/link3
        mknod dev-null c 1 3 && mknod loop99 b 7 99 && mkfifo pipe
        ln -s ../etc/attr bin/rel-link && ln -s /etc/passwd bin/abs-link
        touch -h -d @1000000000 bin/abs-link
        touch -d @4000000000 etc/future
    "#);
    let long_dir = root
        .join("etc/deep")
        .join("d".repeat(120))
        .join("e".repeat(120));
    fs::create_dir_all(&long_dir).unwrap();
    fs::write(long_dir.join("f".repeat(200)), b"long").unwrap();
    std::os::unix::fs::symlink("t".repeat(150), root.join("bin/long-target")).unwrap();
    let latin1 = std::ffi::OsStr::from_encoded_bytes_checked(b"caf\xe9");
    fs::write(root.join("etc").join(latin1), b"latin-1 name").unwrap();
    fs::set_permissions(root.join("etc/deep"), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::net::UnixListener::bind(root.join("srv/app.sock")).unwrap();
}

trait EncodedBytes {
    fn from_encoded_bytes_checked(bytes: &[u8]) -> &std::ffi::OsStr;
}

impl EncodedBytes for std::ffi::OsStr {
    fn from_encoded_bytes_checked(bytes: &[u8]) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(bytes)
    }
}

#[test]
fn every_kind_of_entry_and_metadata_is_kept() {
    let work = scratch();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    edge_case_tree(&src);
    let image = work.path().join("image");
    let s = convert_json(&[
        src.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
        "--init",
        "none",
    ]);
    let stats = &s["stats"];
    assert_eq!(stats["hardlinks"], 2);
    assert_eq!(stats["devices"], 2);
    assert_eq!(stats["fifos"], 1);
    assert_eq!(stats["sparse_files"], 2);
    let skipped = stats["skipped"].as_array().unwrap();
    assert!(skipped
        .iter()
        .any(|k| k["path"] == "/srv/app.sock" && k["reason"].as_str().unwrap().contains("socket")));
    // A 1 GiB sparse file does not blow up the layer.
    assert!(
        stats["tar_bytes"].as_u64().unwrap() < 1 << 20,
        "tar is {} bytes",
        stats["tar_bytes"]
    );

    let unpacked = umoci_unpack(&image, "latest", &work.path().join("bundle"));
    let not_socket = |p: &[u8]| p == b"srv/app.sock";
    assert_same(&facts(&src, &not_socket), &facts(&unpacked, &|_| false));
}

#[test]
fn the_source_family_profile_applies_unless_profiles_are_chosen() {
    let work = scratch();
    let src = work.path().join("src");
    let lists = src.join("var/lib/apt/lists");
    std::fs::create_dir_all(&lists).unwrap();
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/os-release"), "ID=debian\nVERSION_ID=12\n").unwrap();
    std::fs::write(
        lists.join("deb.example_dists_bookworm_main_binary-amd64_Packages"),
        "p\n",
    )
    .unwrap();
    let excluded = |extra: &[&str]| -> Vec<String> {
        let image = work.path().join("image");
        let mut args = vec![
            src.to_str().unwrap(),
            "-o",
            image.to_str().unwrap(),
            "--force",
            "--init",
            "none",
        ];
        args.extend_from_slice(extra);
        let s = convert_json(&args);
        s["stats"]["excluded"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    // Found in its os-release: Debian's profile leaves out the package lists.
    let by_default = excluded(&[]);
    assert!(
        by_default.iter().any(|r| r.contains("package lists")),
        "{by_default:?}"
    );
    // A chosen profile replaces the default, as in inspect.
    let chosen = excluded(&["--profile", "base"]);
    assert!(
        !chosen.iter().any(|r| r.contains("package lists")),
        "{chosen:?}"
    );
}

#[test]
fn the_base_profile_and_user_globs_exclude_with_reasons() {
    let work = scratch();
    let src = work.path().join("src");
    run(
        "sh",
        &[
            "-euc",
            &format!(
                "mkdir -p {0}/tmp/x {0}/boot {0}/var/log/journal/abc {0}/etc {0}/srv/cache\n\
         echo k > {0}/boot/vmlinuz-6.1; echo j > {0}/var/log/journal/abc/system.journal\n\
         echo s > {0}/var/log/syslog; echo o > {0}/var/log/syslog.1; echo t > {0}/tmp/x/f\n\
         echo p > {0}/etc/passwd; echo c > {0}/srv/cache/blob",
                src.display()
            ),
        ],
    );
    let image = work.path().join("image");
    let s = convert_json(&[
        src.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
        "--exclude",
        "/srv/cache",
    ]);
    let excluded = s["stats"]["excluded"].as_object().unwrap();
    assert!(excluded.keys().any(|r| r.contains("kernel")));
    assert!(excluded.keys().any(|r| r.contains("journal")));
    assert!(excluded.keys().any(|r| r.contains("temporary")));
    assert_eq!(excluded["excluded by --exclude"]["entries"], 2);

    let unpacked = umoci_unpack(&image, "latest", &work.path().join("bundle"));
    for kept in [
        "etc/passwd",
        "var/log/syslog",
        "tmp",
        "boot",
        "var/log/journal",
    ] {
        assert!(unpacked.join(kept).exists(), "{kept} should be kept");
    }
    for gone in [
        "tmp/x",
        "boot/vmlinuz-6.1",
        "var/log/syslog.1",
        "var/log/journal/abc",
        "srv/cache",
    ] {
        assert!(!unpacked.join(gone).exists(), "{gone} should be excluded");
    }
}

#[test]
fn oci_archive_output_is_read_by_skopeo() {
    let rootfs = fixture("debian-sysvinit").join("rootfs");
    let work = scratch();
    let archive = work.path().join("server.tar");
    let s = convert_json(&[
        rootfs.to_str().unwrap(),
        "-o",
        archive.to_str().unwrap(),
        "--format",
        "oci-archive",
        "--tag",
        "web01:v1",
    ]);
    assert!(archive.is_file());
    assert_eq!(
        skopeo_digest(&format!("oci-archive:{}:v1", archive.display())),
        s["manifest_digest"].as_str().unwrap()
    );
    let leftovers: Vec<_> = fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "only the archive is left: {leftovers:?}"
    );
}

/// Builds an archive with Python's tarfile, which writes whatever names it is given.
fn python_tar(path: &Path, script: &str) {
    let code = format!(
        "import io, tarfile\nt = tarfile.open('{}', 'w', format=tarfile.PAX_FORMAT)\n\
         def f(name, data=b'x', **kw):\n    i = tarfile.TarInfo(name); i.size = len(data)\n    [setattr(i, k, v) for k, v in kw.items()]\n    t.addfile(i, io.BytesIO(data))\n\
         def l(name, target, kind):\n    i = tarfile.TarInfo(name); i.type = kind; i.linkname = target; t.addfile(i)\n\
         {script}\nt.close()\n",
        path.display()
    );
    run("python3", &["-c", &code]);
}

fn assert_fails_cleanly(input: &Path, work: &Path, expect: &str) {
    let image = work.join("out.oci");
    let out = rehost(&[
        "convert",
        input.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "should fail: {stderr}");
    assert!(
        stderr.contains(expect),
        "stderr should say `{expect}`: {stderr}"
    );
    assert!(
        stderr.lines().count() <= 3,
        "a clear error, not a dump: {stderr}"
    );
    assert!(!image.exists(), "no output after a failure");
    let leftovers: Vec<_> = fs::read_dir(work)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("rehost-tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary output left behind: {leftovers:?}"
    );
}

#[test]
fn hostile_archives_are_refused_and_write_nothing_outside() {
    let work = scratch();
    let canary = work.path().join("canary");
    fs::create_dir(&canary).unwrap();
    let cases = [
        ("dotdot", "f('../../escape')", "climbs out of the root"),
        (
            "link-parent",
            "l('etc', '/tmp', tarfile.SYMTYPE)\nf('etc/passwd')",
            "not a directory",
        ),
        (
            "hardlink-out",
            "l('x', '../../etc/shadow', tarfile.LNKTYPE)",
            "hardlink climbs out",
        ),
        (
            "hardlink-missing",
            "l('x', 'etc/nothing', tarfile.LNKTYPE)",
            "hardlink to a file not earlier",
        ),
    ];
    for (name, script, expect) in cases {
        let tar = work.path().join(format!("{name}.tar"));
        python_tar(&tar, script);
        assert_fails_cleanly(&tar, work.path(), expect);
    }
    assert_eq!(fs::read_dir(&canary).unwrap().count(), 0);

    // Absolute names are confined to the root, not refused.
    let tar = work.path().join("absolute.tar");
    python_tar(&tar, "f('/etc/hostname', b'web01')");
    let image = work.path().join("abs.oci");
    rehost_ok(&[
        "convert",
        tar.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
    ]);
    let rootfs = umoci_unpack(&image, "latest", &work.path().join("bundle"));
    assert_eq!(fs::read(rootfs.join("etc/hostname")).unwrap(), b"web01");
}

#[test]
fn corrupt_and_truncated_archives_fail_with_one_clear_line() {
    let fx = fixture("debian-sysvinit");
    let work = scratch();
    let tar = fx.join("rootfs.tar");
    let len = fs::metadata(&tar).unwrap().len();

    let cut = work.path().join("cut.tar");
    run(
        "sh",
        &[
            "-c",
            &format!(
                "head -c {} {} > {}",
                len / 2 + 100,
                tar.display(),
                cut.display()
            ),
        ],
    );
    assert_fails_cleanly(&cut, work.path(), "cut.tar");

    let gz = work.path().join("cut.tar.gz");
    run(
        "sh",
        &[
            "-c",
            &format!(
                "gzip -1 -c {} | head -c 3000000 > {}",
                tar.display(),
                gz.display()
            ),
        ],
    );
    assert_fails_cleanly(&gz, work.path(), "cut.tar.gz");

    let junk = work.path().join("junk.bin");
    fs::write(&junk, vec![0x5a; 4096]).unwrap();
    assert_fails_cleanly(
        &junk,
        work.path(),
        "not a directory or a root filesystem archive",
    );

    assert_fails_cleanly(
        &work.path().join("missing"),
        work.path(),
        "no such file or directory",
    );
}

#[test]
fn a_full_disk_fails_cleanly_and_leaves_nothing() {
    let rootfs = fixture("debian-sysvinit").join("rootfs");
    let work = scratch();
    let small = work.path().join("small");
    fs::create_dir(&small).unwrap();
    run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=4m",
            "tmpfs",
            small.to_str().unwrap(),
        ],
    );
    let image = small.join("image");
    let out = rehost(&[
        "convert",
        rootfs.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
    ]);
    let listing = fs::read_dir(&small).unwrap().count();
    run("umount", &[small.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert_eq!(listing, 0, "nothing left on the full disk");
}

#[test]
fn an_existing_output_is_kept_unless_forced() {
    let work = scratch();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/hostname"), "a").unwrap();
    let image = work.path().join("image");
    rehost_ok(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
    ]);
    let out = rehost(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    fs::write(src.join("etc/hostname"), "b").unwrap();
    let s = convert_json(&[
        src.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(
        skopeo_digest(&format!("oci:{}:latest", image.display())),
        s["manifest_digest"].as_str().unwrap()
    );
}

/// `/` as the source: run rehost inside a chroot of a real Debian system, where `/` is
/// an overlay of the fixture with other filesystems mounted in it.
#[test]
fn a_live_root_stays_on_its_filesystems_and_leaves_out_its_own_output() {
    let rootfs = fixture("debian-sysvinit").join("rootfs");
    let work = scratch();
    let w = work.path();
    let script = format!(
        r#"
        set -eu
        mkdir -p {w}/upper {w}/work {w}/root
        mount -t overlay overlay -o lowerdir={rootfs},upperdir={w}/upper,workdir={w}/work {w}/root
        mount -t proc proc {w}/root/proc
        mount -t tmpfs tmpfs {w}/root/run
        mkdir -p {w}/root/srv/other {w}/root/var/lib/data
        mount -t tmpfs tmpfs {w}/root/srv/other && echo other > {w}/root/srv/other/file
        mount -t tmpfs tmpfs {w}/root/var/lib/data && echo data > {w}/root/var/lib/data/file
        cp {bin} {w}/root/usr/local/bin/rehost
        chroot {w}/root /usr/local/bin/rehost convert / -o /root/self.oci --include-mount /var/lib/data --init none --json > {w}/summary.json
        "#,
        w = w.display(),
        rootfs = rootfs.display(),
        bin = rehost_bin(),
    );
    let status = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .status()
        .unwrap();
    assert!(status.success(), "the chrooted conversion failed");
    let summary: serde_json::Value =
        serde_json::from_slice(&fs::read(w.join("summary.json")).unwrap()).unwrap();
    let skipped = summary["stats"]["skipped"].as_array().unwrap();
    assert!(skipped.iter().any(|k| k["path"] == "/srv/other"
        && k["reason"].as_str().unwrap().contains("another filesystem")));
    assert!(summary["stats"]["excluded"]
        .as_object()
        .unwrap()
        .contains_key("rehost's own output"));

    // The overlay's upper layer holds what the chrooted run wrote: the image.
    let image = w.join("upper/root/self.oci");
    let unpacked = umoci_unpack(&image, "latest", &w.join("bundle"));
    assert!(unpacked.join("srv/other").is_dir());
    assert_eq!(
        fs::read_dir(unpacked.join("srv/other")).unwrap().count(),
        0,
        "another filesystem is kept empty"
    );
    assert_eq!(
        fs::read_dir(unpacked.join("proc")).unwrap().count(),
        0,
        "/proc is kept empty"
    );
    assert_eq!(
        fs::read_to_string(unpacked.join("var/lib/data/file")).unwrap(),
        "data\n",
        "--include-mount takes the mount"
    );
    assert!(
        !unpacked.join("root/self.oci").exists(),
        "the image does not contain itself"
    );
    assert!(unpacked.join("etc/init.d/ssh").exists());
}

#[test]
fn an_unreadable_file_is_named_and_nothing_is_written() {
    let work = scratch();
    let w = work.path();
    fs::set_permissions(w, fs::Permissions::from_mode(0o777)).unwrap();
    let src = w.join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/readable"), "ok").unwrap();
    fs::write(src.join("etc/secret"), "no").unwrap();
    fs::set_permissions(src.join("etc/secret"), fs::Permissions::from_mode(0o000)).unwrap();
    let image = w.join("image");
    // As an ordinary user, for whom the file really is unreadable.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            rehost_bin(),
        ])
        .args([
            "convert",
            src.to_str().unwrap(),
            "-o",
            image.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("etc/secret") && stderr.contains("Permission denied"),
        "{stderr}"
    );
    assert!(!image.exists());
    assert_eq!(
        fs::read_dir(w).unwrap().count(),
        1,
        "only the source is left"
    );
}

#[test]
fn source_date_epoch_clamps_newer_times_and_dates_the_image() {
    let work = scratch();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    run("sh", &["-euc", &format!(
        "cd {}; echo old > etc/old; touch -d @1000000000 etc/old; echo new > etc/new; touch -d @4000000000 etc/new",
        src.display()
    )]);
    let image = work.path().join("image");
    let out = rehost_cmd()
        .args([
            "convert",
            src.to_str().unwrap(),
            "-o",
            image.to_str().unwrap(),
            "--json",
        ])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inspect: serde_json::Value = serde_json::from_str(&run(
        "skopeo",
        &[
            "inspect",
            "--config",
            &format!("oci:{}:latest", image.display()),
        ],
    ))
    .unwrap();
    assert_eq!(inspect["created"], "2023-11-14T22:13:20Z");
    let rootfs = umoci_unpack(&image, "latest", &work.path().join("bundle"));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(rootfs.join("etc/new")).unwrap().mtime(),
        1_700_000_000
    );
    assert_eq!(
        fs::metadata(rootfs.join("etc/old")).unwrap().mtime(),
        1_000_000_000
    );
}

#[test]
fn archive_records_with_newlines_keep_xattrs_and_acls() {
    let work = scratch();
    let tar = work.path().join("acl.tar");
    // A binary-looking xattr value with a newline, and GNU tar's text ACL (one entry a line).
    python_tar(
        &tar,
        "f('etc/cap', b'x', pax_headers={'SCHILY.xattr.user.note': 'line one\\nline two'})\n\
         f('etc/acl', b'y', mode=0o640, pax_headers={'SCHILY.acl.access': 'user::rw-\\nuser:1000:r--\\ngroup::r--\\nmask::r--\\nother::---'})",
    );
    let image = work.path().join("image");
    let s = convert_json(&[tar.to_str().unwrap(), "-o", image.to_str().unwrap()]);
    assert_eq!(
        s["stats"]["skipped"].as_array().unwrap().len(),
        0,
        "{}",
        s["stats"]["skipped"]
    );
    let rootfs = umoci_unpack(&image, "latest", &work.path().join("bundle"));
    let note = run(
        "getfattr",
        &[
            "--only-values",
            "-n",
            "user.note",
            rootfs.join("etc/cap").to_str().unwrap(),
        ],
    );
    assert_eq!(note, "line one\nline two");
    let acl = run(
        "getfacl",
        &["-n", "-c", rootfs.join("etc/acl").to_str().unwrap()],
    );
    assert!(acl.contains("user:1000:r--"), "{acl}");
}

/// GNU tar's own sparse archives (`--sparse`, gnu and posix formats) as a SOURCE: the
/// file keeps its name, its size, its bytes and its holes.
#[test]
fn a_gnu_tar_sparse_archive_gives_the_file_with_its_holes() {
    // The old GNU format (`S` headers) and PAX (1.0 maps), as GNU tar writes them.
    for format in ["gnu", "posix"] {
        gnu_tar_sparse(format);
    }
}

fn gnu_tar_sparse(format: &str) {
    use std::os::unix::fs::FileExt;
    let work = scratch();
    let tree = work.path().join("tree");
    fs::create_dir_all(tree.join("data")).unwrap();
    let holey = tree.join("data/holey");
    let file = fs::File::create(&holey).unwrap();
    let data: Vec<u8> = (0..256u32 << 10).map(|i| (i % 253) as u8 + 1).collect();
    file.write_all_at(&data, 8 << 20).unwrap();
    file.write_all_at(b"tail", (32 << 20) - 4).unwrap();
    drop(file);
    let archive = work.path().join("sparse.tar");
    run(
        "tar",
        &[
            "--sparse",
            &format!("--format={format}"),
            "-C",
            tree.to_str().unwrap(),
            "-cf",
            archive.to_str().unwrap(),
            ".",
        ],
    );
    let image = work.path().join("img");
    rehost_ok(&[
        "convert",
        archive.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
        "--init",
        "none",
        "--no-default-excludes",
        "--compression",
        "none",
        "-q",
    ]);
    let unpacked = umoci_unpack(&image, "latest", &work.path().join("bundle"));
    let got = unpacked.join("data/holey");
    assert!(
        !unpacked.join("data/GNUSparseFile.0").exists(),
        "the sparse file kept its header name"
    );
    assert_eq!(fs::read(&got).unwrap(), fs::read(&holey).unwrap());
    assert_eq!(fs::metadata(&got).unwrap().len(), 32 << 20);
    // The layer stores the data, not the holes (umoci fills them in when it unpacks; the
    // runtime's own unpack keeps them, see tests/runtime.rs).
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(image.join("index.json")).unwrap()).unwrap();
    let blob = |digest: &str| image.join("blobs/sha256").join(&digest[7..]);
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let layer = blob(manifest["layers"][0]["digest"].as_str().unwrap());
    let mut archive = tar::Archive::new(fs::File::open(layer).unwrap());
    let stored = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path_bytes().ends_with(b"holey"))
        .expect("the sparse file's entry")
        .size();
    assert!(
        stored < 1 << 20,
        "the layer stores {stored} bytes of a 32 MiB file with 260 KiB of data"
    );
}

/// A guest symlink that points at the host's /etc (`interfaces.d -> /etc`) is read
/// inside the guest: no byte of the host's files reaches the image, and the identity
/// scrubbing does not list through the symlink.
#[test]
fn a_directory_source_never_reads_the_hosts_files_through_a_symlink() {
    let work = scratch();
    let tree = work.path().join("tree");
    fs::create_dir_all(tree.join("etc/network")).unwrap();
    fs::write(
        tree.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\n",
    )
    .unwrap();
    fs::write(tree.join("etc/hostname"), "guest\n").unwrap();
    std::os::unix::fs::symlink("/etc", tree.join("etc/network/interfaces.d")).unwrap();
    // A second way in: a symlinked directory on the way to a file the builder reads.
    std::os::unix::fs::symlink("/etc", tree.join("etc/ssh")).unwrap();
    let image = work.path().join("img");
    rehost_ok(&[
        "convert",
        tree.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
        "--compression",
        "none",
        "-q",
    ]);
    let unpacked = umoci_unpack(&image, "latest", &work.path().join("bundle"));
    let host_shadow = fs::read("/etc/shadow").unwrap();
    let host_hostname = fs::read("/etc/hostname").unwrap_or_default();
    for entry in walkdir(&unpacked) {
        let meta = fs::symlink_metadata(&entry).unwrap();
        if meta.is_file() && meta.len() > 0 {
            let content = fs::read(&entry).unwrap();
            assert!(
                content != host_shadow,
                "{} holds the host's /etc/shadow",
                entry.display()
            );
            if host_hostname.len() > 1 && host_hostname != b"guest\n" {
                assert!(
                    content != host_hostname,
                    "{} holds the host's hostname",
                    entry.display()
                );
            }
        }
    }
    assert!(
        !unpacked
            .join("etc/rehost/original/etc/network/interfaces.d")
            .exists(),
        "the scrubbing listed the host's /etc"
    );
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let meta = fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            out.extend(walkdir(&p));
        }
        out.push(p);
    }
    out
}

/// SIGINT or SIGTERM in the middle of a convert leaves nothing beside the output: no
/// hidden temporary layout, no half-written image.
#[test]
fn an_interrupted_convert_leaves_nothing() {
    let rootfs = fixture("debian-systemd").join("rootfs");
    use std::os::unix::process::ExitStatusExt;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let work = scratch();
        let out = work.path().join("out");
        fs::create_dir(&out).unwrap();
        let image = out.join("image");
        let mut child = rehost_cmd()
            .args([
                "convert",
                rootfs.to_str().unwrap(),
                "-o",
                image.to_str().unwrap(),
            ])
            .args(["--init", "none", "--compression", "gzip", "-q"])
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the temporary layout holds a blob being written.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let started = loop {
            let busy = fs::read_dir(&out)
                .unwrap()
                .filter_map(|e| e.ok())
                .any(|e| e.path().join("blobs/sha256").is_dir());
            if busy || std::time::Instant::now() > deadline {
                break busy;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(started, "convert made no temporary layout");
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        let status = child.wait().unwrap();
        // It dies of the signal, as it would without its cleanup (a shell sees 128+N).
        assert_eq!(status.signal(), Some(signal), "{status}");
        let left: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "signal {signal} left {left:?}");
    }
}

/// A valid archive the decoder will not take, and a full disk while spooling, are said
/// for what they are, not called corrupt.
#[test]
fn a_long_window_zstd_and_a_full_spool_are_named_for_what_they_are() {
    let fx = fixture("debian-sysvinit");
    let work = scratch();
    let tar = fx.join("rootfs.tar");
    let long = work.path().join("long.tar.zst");
    run(
        "sh",
        &[
            "-c",
            &format!(
                "zstd -q -1 --long=31 -c {} > {}",
                tar.display(),
                long.display()
            ),
        ],
    );
    let image = work.path().join("img");
    let out = rehost(&[
        "convert",
        long.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("zstd window larger than 128 MiB"),
        "{stderr}"
    );
    assert!(!stderr.contains("corrupt"), "{stderr}");

    // The spool of a compressed archive on a 4 MiB TMPDIR.
    let small = work.path().join("small");
    fs::create_dir(&small).unwrap();
    run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=4m",
            "tmpfs",
            small.to_str().unwrap(),
        ],
    );
    let gz = work.path().join("root.tar.gz");
    run(
        "sh",
        &[
            "-c",
            &format!("gzip -1 -c {} > {}", tar.display(), gz.display()),
        ],
    );
    let out = rehost_cmd()
        .env("TMPDIR", &small)
        .args([
            "convert",
            gz.to_str().unwrap(),
            "-o",
            image.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    run("umount", &[small.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot spool the decompressed archive"),
        "{stderr}"
    );
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(!stderr.contains("corrupt"), "{stderr}");
    assert!(!image.exists());
}

/// The image config of a layout, as skopeo reads it.
fn image_config(image: &Path, tag: &str) -> serde_json::Value {
    serde_json::from_str(&run(
        "skopeo",
        &[
            "inspect",
            "--config",
            &format!("oci:{}:{tag}", image.display()),
        ],
    ))
    .unwrap()
}

#[test]
fn the_image_is_dated_by_the_sources_time_without_source_date_epoch() {
    let work = scratch();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/hostname"), "web1\n").unwrap();
    run("touch", &["-d", "@1600000000", src.to_str().unwrap()]);
    let image = work.path().join("image");
    rehost_ok(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
        "--init",
        "none",
        "-q",
    ]);
    let config = image_config(&image, "latest");
    // `docker images` shows this date, not N/A.
    assert_eq!(config["created"], "2020-09-13T12:26:40Z");
    let history = config["history"].as_array().unwrap();
    assert!(!history.is_empty());
    for h in history {
        assert_eq!(h["created"], "2020-09-13T12:26:40Z", "{h}");
    }
}

#[test]
fn the_source_label_names_the_kind_of_source_read() {
    let fx = fixture("debian-systemd");
    let work = scratch();
    for (input, kind) in [
        (fx.join("rootfs.tar"), "archive"),
        (fx.join("rootfs"), "directory"),
    ] {
        let image = work.path().join(kind);
        rehost_ok(&[
            "convert",
            input.to_str().unwrap(),
            "-o",
            image.to_str().unwrap(),
            "--init",
            "rehost",
            "--compression",
            "zstd",
            "-q",
        ]);
        let labels = &image_config(&image, "latest")["config"]["Labels"];
        assert_eq!(labels["io.rehost.source"], kind, "{labels}");
        // The server's own name is kept beside it.
        assert_eq!(
            labels["io.rehost.source.host"], "debian-systemd",
            "{labels}"
        );
    }
}

#[test]
fn systemd_mode_mount_hints_are_a_label_docker_inspect_shows() {
    let work = scratch();
    let image =
        common::runtime::converted_with("debian-systemd", work.path(), &["--init", "systemd"]);
    let reference = format!("oci:{}:latest", image.display());
    let config: serde_json::Value =
        serde_json::from_str(&run("skopeo", &["inspect", "--config", &reference])).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&run("skopeo", &["inspect", "--raw", &reference])).unwrap();
    let annotation = manifest["annotations"]["io.rehost.systemd.mounts"]
        .as_str()
        .expect("the manifest keeps the annotation");
    assert!(annotation.contains("tmpfs:/run"), "{annotation}");
    assert_eq!(
        config["config"]["Labels"]["io.rehost.systemd.mounts"], annotation,
        "{config}"
    );
}

#[test]
fn the_summary_gives_each_layer_its_own_sizes() {
    let rootfs = fixture_rootfs("debian-sysvinit");
    let work = scratch();
    let args = |image: &Path| {
        vec![
            "convert".to_string(),
            rootfs.display().to_string(),
            "-o".into(),
            image.display().to_string(),
            "--init".into(),
            "rehost".into(),
            "--compression".into(),
            "zstd".into(),
            "--layers".into(),
            "one".into(),
        ]
    };
    let image = work.path().join("json");
    let mut json_args = args(&image);
    json_args.push("--json".into());
    let summary = json(&rehost_ok(&json_args));
    let layers = summary["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{summary}");
    for layer in layers {
        // What a user measures of the blob: its bytes, and the tar it holds.
        let blob = image.join("blobs/sha256").join(
            layer["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:"),
        );
        assert_eq!(layer["size"], fs::metadata(&blob).unwrap().len(), "{layer}");
        let tar_bytes = run(
            "sh",
            &["-c", &format!("zstd -dc {} | wc -c", blob.display())],
        );
        assert_eq!(
            layer["uncompressed_size"],
            tar_bytes.trim().parse::<u64>().unwrap(),
            "{layer}"
        );
    }

    // The human summary: one line per layer, each with its own uncompressed size.
    let out = rehost_ok(&args(&work.path().join("human")));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let sizes: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("layer "))
        .map(|l| l.split(", ").nth(1).unwrap_or(l))
        .collect();
    assert_eq!(sizes.len(), 2, "{stdout}");
    assert_ne!(sizes[0], sizes[1], "{stdout}");
}

#[test]
fn the_index_names_the_image_by_its_full_reference_for_containerd() {
    let work = scratch();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    for (i, (tag, full, ref_name)) in [
        ("debian:12", Some("docker.io/library/debian:12"), "12"),
        (
            "fleet/web01",
            Some("docker.io/fleet/web01:latest"),
            "latest",
        ),
        (
            "127.0.0.1:5000/fleet/web01:v1",
            Some("127.0.0.1:5000/fleet/web01:v1"),
            "v1",
        ),
        ("v1", None, "v1"),
    ]
    .into_iter()
    .enumerate()
    {
        let image = work.path().join(format!("image{i}"));
        rehost_ok(&[
            "convert",
            src.to_str().unwrap(),
            "-o",
            image.to_str().unwrap(),
            "--init",
            "none",
            "--tag",
            tag,
            "-q",
        ]);
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(image.join("index.json")).unwrap()).unwrap();
        let annotations = &index["manifests"][0]["annotations"];
        assert_eq!(annotations["org.opencontainers.image.ref.name"], ref_name);
        match full {
            Some(full) => assert_eq!(annotations["io.containerd.image.name"], full, "{tag}"),
            None => assert!(
                annotations.get("io.containerd.image.name").is_none(),
                "{tag}"
            ),
        }
    }

    // A name no registry takes is refused before anything is written.
    let image = work.path().join("bad");
    let out = rehost(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
        "--tag",
        "Web_01:v1",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Web_01"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!image.exists());
}

#[test]
fn ctr_images_import_names_the_image_as_tagged() {
    let work = scratch();
    let containerd = match common::containerd::Containerd::start(work.path()) {
        Ok(c) => c,
        Err(why) => {
            return cannot_run_here("containerd", &why);
        }
    };
    let src = work.path().join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/motd"), "hello\n").unwrap();
    let archive = work.path().join("web01.tar");
    rehost_ok(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        archive.to_str().unwrap(),
        "--format",
        "oci-archive",
        "--init",
        "none",
        "--tag",
        "web01:v1",
        "-q",
    ]);
    containerd.ctr(&["images", "import", "--no-unpack", archive.to_str().unwrap()]);
    let names = containerd.ctr(&["images", "ls", "-q"]);
    assert_eq!(names.trim(), "docker.io/library/web01:v1");
}
