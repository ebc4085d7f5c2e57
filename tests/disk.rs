//! VM disk images as a source, end to end: `rehost convert IMAGE` gives the very tree
//! (and layer) that converting the directory the image was made from gives; hostile and
//! corrupt images fail with one clear error.

mod common;
mod disk_support;

use common::tree::{assert_same, facts, Facts};
use disk_support::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The directory the images were made from, converted once for all tests.
fn reference() -> &'static Converted {
    static REF: OnceLock<Converted> = OnceLock::new();
    REF.get_or_init(|| convert(&disks().join("tree"), &scratch("reference")))
}

/// Converts one image and checks it gives the reference layer, entry for entry.
fn same_as_directory(image: &str) -> Converted {
    // Each test converts into its own directory: two may convert the same image.
    let test = std::thread::current().name().unwrap_or("test").to_string();
    let got = convert(&disks().join(image), &scratch(&format!("{test}/{image}")));
    let want = reference();
    assert_eq!(
        got.summary["stats"]["files"], want.summary["stats"]["files"],
        "{image}: file count"
    );
    assert_eq!(
        got.diff_id, want.diff_id,
        "{image}: the layer differs from the directory's"
    );
    got
}

#[test]
fn raw_disks_with_mbr_gpt_or_no_table_give_the_directory_tree() {
    for image in ["fs.img", "mbr.img", "gpt.img"] {
        same_as_directory(image);
    }
}

#[test]
fn unpacked_image_from_a_disk_equals_the_directory() {
    let got = same_as_directory("gpt.img");
    let dir = scratch("unpack-gpt");
    let from_disk = tree(&unpack(&got.image, &dir.join("disk")));
    let from_dir = tree(&unpack(&reference().image, &dir.join("dir")));
    assert_same(&from_dir, &from_disk);
    // What the fixture put there to be kept, as a user would look for it.
    let f = |p: &str| &from_disk[p.as_bytes()];
    let has = |p: &str, x: &str| f(p).xattrs.contains_key(x.as_bytes());
    assert!(has("srv/fidelity/capped", "security.capability"));
    assert!(has("srv/fidelity/acl", "system.posix_acl_access"));
    assert!(has("srv/fidelity/many", "system.posix_acl_default"));
    let group = f("srv/fidelity/hard-b").link_group.clone();
    assert!(group.is_some());
    assert_eq!(
        from_disk.values().filter(|x| x.link_group == group).count(),
        3
    );
    assert_eq!(f("srv/fidelity/null").kind, "char");
    assert_eq!(
        from_disk
            .keys()
            .filter(|k| k.starts_with(b"srv/fidelity/many/"))
            .count(),
        3001
    );
}

#[test]
fn var_on_its_own_partition_is_grafted_from_fstab() {
    let got = same_as_directory("split.img");
    let skipped = got.summary["stats"]["skipped"].to_string();
    assert!(!skipped.contains("/var"), "{skipped}");
}

/// A small root filesystem of our own, to break in the hostile tests.
fn small_fs(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    std::fs::write(tree.join("etc/os-release"), "ID=test\n").unwrap();
    std::fs::write(tree.join("a/b/file"), "content\n").unwrap();
    let img = dir.join("small.img");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(8 << 20).unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&tree)
        .arg(&img));
    img
}

fn run(cmd: &mut Command) {
    let o = cmd.output().expect("run a fixture tool");
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_directory_cycle_fails_cleanly() {
    let dir = scratch("cycle");
    let img = small_fs(&dir);
    // An entry in a/b that leads back to a: a walk that trusts it never ends.
    run(Command::new("debugfs")
        .args(["-w", "-R", "link /a /a/b/loop"])
        .arg(&img));
    let err = convert_fails(&img, &dir);
    assert!(err.contains("directory cycle"), "{err}");
    assert!(err.contains("/a/b/loop"), "{err}");
}

#[test]
fn a_truncated_disk_names_the_partition_cut_off() {
    let dir = scratch("truncated");
    let img = dir.join("cut.img");
    std::fs::copy(disks().join("gpt.img"), &img).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.set_len(f.metadata().unwrap().len() / 2).unwrap();
    let err = convert_fails(&img, &dir);
    assert!(err.contains("cut.img"), "{err}");
    assert!(
        err.contains("partition 2 lies beyond the end of the disk"),
        "{err}"
    );
}

#[test]
fn encrypted_and_unknown_partitions_are_named() {
    let dir = scratch("luks");
    let img = dir.join("luks.img");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(16 << 20).unwrap();
    drop(f);
    let mut sfdisk = Command::new("sfdisk")
        .arg("-q")
        .arg(&img)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(b"start=2048, size=8192, type=83\nstart=10240, size=8192, type=83\n")
        .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    let mut data = std::fs::read(&img).unwrap();
    data[2048 * 512..2048 * 512 + 6].copy_from_slice(b"LUKS\xba\xbe");
    std::fs::write(&img, data).unwrap();
    let err = convert_fails(&img, &dir);
    assert!(err.contains("no root filesystem found"), "{err}");
    assert!(err.contains("partition 1: LUKS-encrypted"), "{err}");
    assert!(err.contains("partition 2: unknown content"), "{err}");
}

#[test]
fn qcow2_plain_compressed_and_with_a_backing_file_give_the_directory_tree() {
    for image in ["disk.qcow2", "compressed.qcow2", "overlay.qcow2"] {
        same_as_directory(image);
    }
}

#[test]
fn a_qcow2_backing_chain_that_loops_fails_cleanly() {
    let dir = scratch("qcow2-loop");
    let (a, b) = (dir.join("a.qcow2"), dir.join("b.qcow2"));
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&a)
        .arg("16M"));
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&a)
        .arg(&b));
    // Point a's backing file at b: qemu-img refuses to, so write the header by hand.
    let mut data = std::fs::read(&a).unwrap();
    let name = b"b.qcow2";
    let at = 0x1000 - 64;
    data[at..at + name.len()].copy_from_slice(name);
    data[8..16].copy_from_slice(&(at as u64).to_be_bytes());
    data[16..20].copy_from_slice(&(name.len() as u32).to_be_bytes());
    std::fs::write(&a, data).unwrap();
    let err = convert_fails(&b, &dir);
    assert!(err.contains("backing file chain loops"), "{err}");
}

#[test]
fn a_corrupt_qcow2_table_fails_cleanly() {
    let dir = scratch("qcow2-corrupt");
    let img = dir.join("bad.qcow2");
    std::fs::copy(disks().join("disk.qcow2"), &img).unwrap();
    let mut data = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut header = [0u8; 48];
    data.read_exact(&mut header).unwrap();
    let l1 = u64::from_be_bytes(header[40..48].try_into().unwrap());
    // The first L2 table now points far beyond the end of the file.
    data.seek(SeekFrom::Start(l1)).unwrap();
    data.write_all(&(0x8000_00ff_ffff_0000u64).to_be_bytes())
        .unwrap();
    drop(data);
    let err = convert_fails(&img, &dir);
    assert!(err.contains("bad.qcow2"), "{err}");
    assert!(err.contains("L2 table"), "{err}");
}

#[test]
fn vmdk_both_kinds_and_an_ova_give_the_directory_tree() {
    for image in ["disk.vmdk", "stream.vmdk", "disk.ova"] {
        let got = same_as_directory(image);
        let source = got.summary["source"].as_str().unwrap();
        assert!(source.contains(image), "{source}");
    }
}

#[test]
fn vhd_fixed_and_dynamic_give_the_directory_tree() {
    for image in ["fixed.vhd", "dynamic.vhd"] {
        same_as_directory(image);
    }
}

#[test]
fn a_truncated_ova_fails_cleanly() {
    let dir = scratch("ova-cut");
    let img = dir.join("cut.ova");
    std::fs::copy(disks().join("disk.ova"), &img).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.set_len(f.metadata().unwrap().len() / 2).unwrap();
    let err = convert_fails(&img, &dir);
    assert!(err.contains("cut.ova"), "{err}");
}

#[test]
fn a_root_on_an_lvm_logical_volume_gives_the_directory_tree() {
    // fixtures/build-disks writes the LVM metadata with the real tools, which needs root.
    if !disks().join("lvm.img").exists() {
        common::cannot_run_here("lvm", "no lvm.img (fixtures/build-disks makes it as root)");
        return;
    }
    let got = same_as_directory("lvm.img");
    assert_eq!(got.summary["stats"]["skipped"].as_array().unwrap().len(), 1);
}

#[test]
fn an_xfs_root_is_mounted_read_only_when_running_as_root() {
    let image = disks().join("xfs.img");
    if !image.exists() {
        common::cannot_run_here("xfs", "no xfs.img (fixtures/build-disks makes it as root)");
        return;
    }
    let dir = scratch("xfs");
    let got = convert(&image, &dir);
    let source = got.summary["source"].as_str().unwrap();
    assert!(source.contains("xfs"), "{source}");
    let from_disk = tree(&unpack(&got.image, &dir.join("disk")));
    let from_dir = tree(&unpack(&reference().image, &dir.join("dir")));
    assert_same(&from_dir, &from_disk);
    // The loop device and the mount are gone once rehost is done.
    let loops = Command::new("losetup").arg("-a").output().unwrap();
    assert!(!String::from_utf8_lossy(&loops.stdout).contains("xfs.img"));
}

/// `rehost inspect --json` on SOURCE, without what names the source itself, and
/// without the count of skipped entries: the fixture's fstab names a `/var` partition
/// that only `split.img` has, and the others report it as not grafted.
fn inventory(source: &Path) -> serde_json::Value {
    let out = rehost(&["inspect".as_ref(), source.as_os_str(), "--json".as_ref()]);
    assert!(
        out.status.success(),
        "inspect {}: {}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (object, key) in [("inventory", "source"), ("plan", "source")] {
        v[object].as_object_mut().unwrap().remove(key).expect(key);
    }
    v["inventory"]["size"]
        .as_object_mut()
        .unwrap()
        .remove("skipped")
        .expect("skipped");
    v
}

#[test]
fn inspect_gives_the_directory_inventory_from_every_image_kind() {
    let want = inventory(&disks().join("tree"));
    // What a user checks first: the server was recognised and its services found.
    assert_eq!(want["inventory"]["os"]["id"], "debian");
    assert!(want["inventory"]["services"].as_array().unwrap().len() > 3);
    for image in [
        "fs.img",
        "mbr.img",
        "gpt.img",
        "disk.qcow2",
        "compressed.qcow2",
        "overlay.qcow2",
        "disk.vmdk",
        "stream.vmdk",
        "disk.ova",
        "fixed.vhd",
        "dynamic.vhd",
        "split.img",
    ] {
        let got = inventory(&disks().join(image));
        assert_eq!(got, want, "{image}: inspect differs from the directory's");
    }
}

/// An unpacked tree as the foundation's fidelity tests compare it (tests/common/tree.rs).
fn tree(root: &Path) -> BTreeMap<Vec<u8>, Facts> {
    facts(root, &|_| false)
}

fn qemu_img(args: &[&std::ffi::OsStr]) {
    run(Command::new("qemu-img").args(args));
}

fn mkfifo(path: &Path) {
    run(Command::new("mkfifo").arg(path));
}

/// A qcow2 overlay in `dir` whose backing file is named `backing` (not checked).
fn overlay_naming(dir: &Path, name: &str, backing: &str) -> PathBuf {
    let img = dir.join(name);
    qemu_img(&[
        "create".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        img.as_os_str(),
        "8M".as_ref(),
    ]);
    qemu_img(&[
        "rebase".as_ref(),
        "-q".as_ref(),
        "-u".as_ref(),
        "-F".as_ref(),
        "raw".as_ref(),
        "-b".as_ref(),
        backing.as_ref(),
        img.as_os_str(),
    ]);
    img
}

#[test]
fn a_qcow2_backing_file_outside_the_image_directory_is_refused() {
    let dir = scratch("backing-outside");
    // A valid root filesystem outside the image's directory: followed, its files (the
    // host's) would end up in the image.
    let host = small_fs(&dir.join("outside"));
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::os::unix::fs::symlink(&host, images.join("link.img")).unwrap();
    let absolute = host.to_str().unwrap();
    for (name, backing, shown) in [
        ("abs.qcow2", absolute, absolute),
        ("rel.qcow2", "../outside/small.img", "../outside/small.img"),
        ("link.qcow2", "link.img", absolute),
        ("shadow.qcow2", "/etc/shadow", "/etc/shadow"),
    ] {
        let img = overlay_naming(&images, name, backing);
        let err = convert_refused(&img, &dir, &[]);
        assert!(err.contains(name), "{err}");
        assert!(err.contains(shown), "{err}");
        assert!(err.contains("--allow-backing"), "{err}");
    }
    // Allowed by the user, the same overlay converts, with the backing disk's files.
    let img = images.join("rel.qcow2");
    let out = dir.join("allowed.oci");
    let o = rehost(&[
        "convert".as_ref(),
        img.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--allow-backing".as_ref(),
        dir.join("outside").as_os_str(),
        "--init".as_ref(),
        "none".as_ref(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let root = unpack(&out, &dir.join("unpacked"));
    assert_eq!(
        std::fs::read_to_string(root.join("a/b/file")).unwrap(),
        "content\n"
    );
}

#[test]
fn a_vmdk_extent_outside_the_image_directory_is_refused() {
    let dir = scratch("vmdk-extent-outside");
    let host = small_fs(&dir.join("outside"));
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let sectors = std::fs::metadata(&host).unwrap().len() / 512;
    for (name, extent) in [
        ("abs.vmdk", host.to_str().unwrap()),
        ("rel.vmdk", "../outside/small.img"),
    ] {
        let img = images.join(name);
        std::fs::write(
            &img,
            format!(
                "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
                 createType=\"monolithicFlat\"\n\n# Extent description\n\
                 RW {sectors} FLAT \"{extent}\" 0\n"
            ),
        )
        .unwrap();
        let err = convert_refused(&img, &dir, &[]);
        assert!(err.contains(name), "{err}");
        assert!(err.contains(extent), "{err}");
        assert!(err.contains("--allow-backing"), "{err}");
    }
}

#[test]
fn a_fifo_as_image_backing_file_or_extent_fails_without_blocking() {
    let dir = scratch("fifo");
    let fifo = dir.join("fifo.img");
    mkfifo(&fifo);
    let err = convert_refused(&fifo, &dir, &[]);
    assert!(err.contains("fifo.img"), "{err}");
    assert!(err.contains("FIFO"), "{err}");

    let img = overlay_naming(&dir, "over.qcow2", "fifo.img");
    let err = convert_refused(&img, &dir, &[]);
    assert!(err.contains("over.qcow2"), "{err}");
    assert!(err.contains("FIFO"), "{err}");

    let img = dir.join("desc.vmdk");
    std::fs::write(
        &img,
        "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\n\
         RW 16384 FLAT \"fifo.img\" 0\n",
    )
    .unwrap();
    let err = convert_refused(&img, &dir, &[]);
    assert!(err.contains("desc.vmdk"), "{err}");
    assert!(err.contains("FIFO"), "{err}");
}

#[test]
fn a_deep_backing_chain_is_refused_in_one_short_line() {
    let dir = scratch("deep-chain");
    let mut below = dir.join("0.qcow2");
    qemu_img(&[
        "create".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        below.as_os_str(),
        "8M".as_ref(),
    ]);
    for i in 1..40 {
        let name = format!("layer-number-{i:02}-of-a-long-chain.qcow2");
        let below_name = below.file_name().unwrap().to_str().unwrap().to_string();
        below = overlay_naming(&dir, &name, &below_name);
    }
    let err = convert_refused(&below, &dir, &[]);
    assert!(err.contains("layer-number-39"), "{err}");
    assert!(err.contains("16"), "{err}");
    assert!(err.len() < 300, "{} bytes: {err}", err.len());
}

/// A raw image holding one XFS filesystem, filled by `fill` through a loop mount (which
/// needs root and the kernel's XFS); `None` when this machine cannot make one.
fn xfs_image(dir: &Path, fill: impl FnOnce(&Path)) -> Option<PathBuf> {
    let img = dir.join("xfs.img");
    // mkfs.xfs wants 300 MB at least; the file stays sparse.
    std::fs::File::create(&img)
        .unwrap()
        .set_len(320 << 20)
        .unwrap();
    let made = Command::new("mkfs.xfs").arg("-q").arg(&img).status();
    if !made.is_ok_and(|s| s.success()) {
        return None;
    }
    let mnt = dir.join("fill");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-o", "loop"])
        .arg(&img)
        .arg(&mnt)
        .output()
        .ok()?;
    if !mounted.status.success() {
        return None;
    }
    fill(&mnt);
    run(Command::new("umount").arg(&mnt));
    Some(img)
}

/// Mount points under `dir` in this mount namespace, with their options.
fn mounts_under(dir: &Path) -> Vec<(String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let point = f.get(4)?.to_string();
            let options = f.get(5)?.to_string();
            point
                .starts_with(dir.to_str().unwrap())
                .then_some((point, options))
        })
        .collect()
}

/// Loop devices whose backing file is `img`.
fn loops_of(img: &Path) -> String {
    let o = Command::new("losetup")
        .args(["--list", "--noheadings", "--output", "NAME,BACK-FILE"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.ends_with(img.to_str().unwrap()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Nothing the XFS fallback made is left: no mount and no directory under `tmp`, no
/// loop device on `img` (the kernel frees a lazily detached one a moment after exit).
fn assert_nothing_left(tmp: &Path, img: &Path) {
    assert_eq!(mounts_under(tmp), vec![], "a mount is left");
    let left: Vec<_> = std::fs::read_dir(tmp).unwrap().collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    for _ in 0..50 {
        if loops_of(img).is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("a loop device is left: {}", loops_of(img));
}

#[test]
fn an_interrupted_xfs_convert_leaves_no_mount_loop_device_or_directory() {
    let fixture = disks().join("xfs.img");
    if !fixture.exists() {
        common::cannot_run_here("xfs", "no xfs.img (fixtures/build-disks makes it as root)");
        return;
    }
    let dir = scratch("xfs-interrupt");
    // A name of its own for the image, so its loop device is told from other tests'.
    let img = dir.join("mine.img");
    if std::fs::hard_link(&fixture, &img).is_err() {
        run(Command::new("cp")
            .arg("--sparse=always")
            .arg(&fixture)
            .arg(&img));
    }
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let mut child = common::rehost_cmd()
            .arg("convert")
            .arg(&img)
            .arg("-o")
            .arg(dir.join("image.oci"))
            .args(["--force", "--init", "none"])
            .env("TMPDIR", &tmp)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        let options = loop {
            if let Some((_, options)) = mounts_under(&tmp).pop() {
                break options;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "convert ended unmounted"
            );
            assert!(start.elapsed().as_secs() < 60, "never mounted");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        for o in ["ro", "nosuid", "nodev", "noexec"] {
            assert!(options.split(',').any(|x| x == o), "{o} not in {options}");
        }
        // SAFETY: kill(2) on the child we started.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let status = child.wait().unwrap();
        assert!(!status.success(), "an interrupted convert succeeded");
        assert_nothing_left(&tmp, &img);
    }
}

#[test]
fn an_xfs_guest_link_to_etc_reads_no_host_file() {
    let dir = scratch("xfs-link");
    let host_shadow = std::fs::read("/etc/shadow").unwrap();
    assert!(!host_shadow.is_empty());
    let made = xfs_image(&dir, |root| {
        std::fs::create_dir_all(root.join("etc/network")).unwrap();
        std::fs::write(root.join("etc/os-release"), "ID=debian\nVERSION_ID=12\n").unwrap();
        std::fs::write(root.join("etc/shadow"), "root:guest:::::::\n").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc/network/interfaces.d")).unwrap();
    });
    let Some(img) = made else {
        common::cannot_run_here("xfs", "cannot make and loop-mount an XFS filesystem");
        return;
    };
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let image = dir.join("image.oci");
    let o = common::rehost_cmd()
        .arg("convert")
        .arg(&img)
        .arg("-o")
        .arg(&image)
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_nothing_left(&tmp, &img);
    let root = unpack(&image, &dir.join("unpacked"));
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                assert_ne!(std::fs::read(&p).unwrap(), host_shadow, "{}", p.display());
            }
        }
    }
}

#[test]
fn an_xfs_filesystem_that_is_no_root_fails_and_leaves_nothing() {
    let dir = scratch("xfs-noroot");
    let Some(img) = xfs_image(&dir, |root| {
        std::fs::write(root.join("data"), "not a root\n").unwrap();
    }) else {
        common::cannot_run_here("xfs", "cannot make and loop-mount an XFS filesystem");
        return;
    };
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let o = common::rehost_cmd()
        .arg("convert")
        .arg(&img)
        .arg("-o")
        .arg(dir.join("image.oci"))
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("xfs.img"), "{err}");
    assert_nothing_left(&tmp, &img);
}

#[test]
fn a_partition_smaller_than_64_kib_is_skipped_and_the_rest_converted() {
    let dir = scratch("tiny-partition");
    let fs = small_fs(&dir);
    let img = dir.join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let mut sfdisk = Command::new("sfdisk")
        .arg("-q")
        .arg(&img)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    // Partition 1: 8 KiB (a BIOS boot partition is often this small); 2: the root.
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(b"start=2048, size=16, type=83\nstart=4096, size=16384, type=83\n")
        .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    let mut data = std::fs::read(&img).unwrap();
    let root = std::fs::read(&fs).unwrap();
    data[4096 * 512..4096 * 512 + root.len()].copy_from_slice(&root);
    std::fs::write(&img, data).unwrap();
    let image = dir.join("image.oci");
    let o = rehost(&[
        "convert".as_ref(),
        img.as_os_str(),
        "-o".as_ref(),
        image.as_os_str(),
        "--init".as_ref(),
        "none".as_ref(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("partition 1"),
        "the small partition is reported: {err}"
    );
    let root = unpack(&image, &dir.join("unpacked"));
    assert_eq!(
        std::fs::read_to_string(root.join("a/b/file")).unwrap(),
        "content\n"
    );
}

/// Runs debugfs commands on an ext image; gives what it printed.
fn debugfs(img: &Path, writable: bool, commands: &str) -> String {
    let script = img.with_extension("debugfs");
    std::fs::write(&script, commands).unwrap();
    let mut cmd = Command::new("debugfs");
    if writable {
        cmd.arg("-w");
    }
    let o = cmd.arg("-f").arg(&script).arg(img).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn hardlinked_directories_fanning_out_fail_cleanly() {
    let dir = scratch("fan-out");
    let img = small_fs(&dir);
    // d0 holds two links to d1, d1 two to d2, …: 2^24 paths to walk, but 25 directories.
    let mut cmds = String::new();
    for i in 0..25 {
        cmds += &format!("mkdir /d{i}\n");
    }
    for i in 0..24 {
        cmds += &format!("link /d{} /d{i}/x\nlink /d{} /d{i}/y\n", i + 1, i + 1);
    }
    debugfs(&img, true, &cmds);
    let err = convert_refused(&img, &dir, &[]);
    assert!(err.contains("small.img"), "{err}");
    assert!(err.contains("reached a second time"), "{err}");
    assert!(err.contains("/d0/"), "{err}");
}

#[test]
fn an_extent_tree_whose_index_entries_share_blocks_fails_cleanly() {
    let dir = scratch("shared-extents");
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    std::fs::write(tree.join("etc/os-release"), "ID=test\n").unwrap();
    std::fs::write(tree.join("a/b/file"), "content\n").unwrap();
    let img = dir.join("small.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&tree)
        .arg(&img));
    let num = |text: &str, after: &str| -> u64 {
        let rest = &text[text.find(after).unwrap() + after.len()..];
        let word = rest
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches(',');
        match word.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
            None => word.parse().unwrap(),
        }
    };
    let free = debugfs(&img, false, "ffb 4 1000\n");
    let blocks: Vec<u64> = free
        .split("found:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|b| b.parse().unwrap())
        .collect();
    let imap = debugfs(&img, false, "imap /a/b/file\n");
    let inode_at = num(&imap, "located at block") * 4096 + num(&imap, "offset");
    // A node: header (magic, entries, max, depth) and 12-byte entries.
    let node = |entries: u16, depth: u16, entry: &dyn Fn(u16) -> [u8; 12]| -> Vec<u8> {
        let mut n = Vec::new();
        for v in [0xF30A, entries, entries, depth] {
            n.extend_from_slice(&u16::to_le_bytes(v));
        }
        n.extend_from_slice(&[0; 4]);
        for i in 0..entries {
            n.extend_from_slice(&entry(i));
        }
        n
    };
    let index = |to: u64| {
        move |_: u16| {
            let mut e = [0u8; 12];
            e[4..8].copy_from_slice(&(to as u32).to_le_bytes());
            e
        }
    };
    let mut data = std::fs::read(&img).unwrap();
    // Four levels of index nodes, each entry of each pointing at the same next node.
    for level in 0..3 {
        let at = blocks[level] as usize * 4096;
        let n = node(340, 3 - level as u16, &index(blocks[level + 1]));
        data[at..at + n.len()].copy_from_slice(&n);
    }
    let leaf = node(340, 0, &|i| {
        let mut e = [0u8; 12];
        e[0..4].copy_from_slice(&(i as u32).to_le_bytes());
        e[4..6].copy_from_slice(&1u16.to_le_bytes());
        e[8..12].copy_from_slice(&(blocks[3] as u32).to_le_bytes());
        e
    });
    let at = blocks[3] as usize * 4096;
    data[at..at + leaf.len()].copy_from_slice(&leaf);
    let root = node(4, 4, &index(blocks[0]));
    let i = inode_at as usize;
    data[i + 0x28..i + 0x28 + root.len()].copy_from_slice(&root);
    // A size of 1 TiB, so a walk bounded by the size alone runs (and allocates) on.
    data[i + 0x4..i + 0x8].copy_from_slice(&0u32.to_le_bytes());
    data[i + 0x6C..i + 0x70].copy_from_slice(&256u32.to_le_bytes());
    std::fs::write(&img, data).unwrap();
    let err = convert_refused(&img, &dir, &[]);
    assert!(err.contains("small.img"), "{err}");
    assert!(err.contains("/a/b/file"), "{err}");
    assert!(err.contains("extent tree"), "{err}");
}

#[test]
fn a_filesystem_fstab_mounts_twice_is_grafted_once() {
    let dir = scratch("fstab-twice");
    let tree = dir.join("tree");
    for d in ["etc", "var", "srv"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::fs::write(tree.join("etc/os-release"), "ID=test\n").unwrap();
    std::fs::write(
        tree.join("etc/fstab"),
        "/dev/sda2 /var ext4 defaults 0 2\n/dev/sda2 /srv ext4 defaults 0 2\n",
    )
    .unwrap();
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("d")).unwrap();
    std::fs::write(data.join("d/f"), "data\n").unwrap();
    let mut parts = Vec::new();
    for (name, from) in [("root.img", &tree), ("data.img", &data)] {
        let img = dir.join(name);
        std::fs::File::create(&img)
            .unwrap()
            .set_len(4 << 20)
            .unwrap();
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(from)
            .arg(&img));
        parts.push(std::fs::read(&img).unwrap());
    }
    let img = dir.join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(10 << 20)
        .unwrap();
    let mut sfdisk = Command::new("sfdisk")
        .arg("-q")
        .arg(&img)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(b"start=2048, size=8192, type=83\nstart=10240, size=8192, type=83\n")
        .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    let mut disk = std::fs::read(&img).unwrap();
    for (part, start) in parts.iter().zip([2048usize, 10240]) {
        disk[start * 512..start * 512 + part.len()].copy_from_slice(part);
    }
    std::fs::write(&img, disk).unwrap();
    let image = dir.join("image.oci");
    let o = rehost(&[
        "convert".as_ref(),
        img.as_os_str(),
        "-o".as_ref(),
        image.as_os_str(),
        "--init".as_ref(),
        "none".as_ref(),
        "--json".as_ref(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let skipped = summary["stats"]["skipped"].to_string();
    // The first line wins; the second is reported.
    assert!(skipped.contains("taken once, at /var"), "{skipped}");
    let root = unpack(&image, &dir.join("unpacked"));
    assert_eq!(
        std::fs::read_to_string(root.join("var/d/f")).unwrap(),
        "data\n"
    );
    assert!(!root.join("srv/d").exists());
}
