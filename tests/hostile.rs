//! Hostile and broken images against the runtime, verify, the layout reader and the
//! registry client: each test is what a user or another user of the host would see.

mod common;

use common::runtime::{converted, Rt};
use common::scratch;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
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
