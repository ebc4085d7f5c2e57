//! debian-zoo end to end: a real Debian server running many daemons at once (mariadb,
//! postgresql, redis, apache with php-fpm behind haproxy, memcached, postfix, dovecot,
//! bind9, ssh, cron, rsyslog), converted once and booted on the bundled runtime in rehost
//! mode and in systemd mode. In each mode every kept service is active and each port
//! answers a real client run inside the container, as a user would check it.

mod common;

use common::runtime::Rt;
use common::{rehost_ok, zoo_fixture};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A hang guard, not a timing check: how long a service may take to come up.
const BOUND: Duration = Duration::from_secs(180);

/// debian-zoo converted (rehost mode, the default) into an OCI layout, once for every
/// test of this file; the other mode boots the same image with `run --init systemd`.
fn image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let rootfs = zoo_fixture().join("rootfs");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("zoo");
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join("debian-zoo.oci");
        rehost_ok(&[
            "convert",
            rootfs.to_str().unwrap(),
            "-o",
            image.to_str().unwrap(),
            "--init",
            "rehost",
            "--compression",
            "zstd",
            "-q",
            "--force",
        ]);
        image
    })
}

/// The services the image keeps (its `io.rehost.init.services` label) and its entrypoint
/// (rehost-init).
fn kept_and_init(layout: &Path) -> (Vec<String>, String) {
    let (_, config) = common::image_json(layout);
    let kept: Vec<String> = config["config"]["Labels"]["io.rehost.init.services"]
        .as_str()
        .expect("the services label")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let init = config["config"]["Entrypoint"][0]
        .as_str()
        .expect("the image's entrypoint")
        .to_string();
    (kept, init)
}

/// The daemons of the zoo: the image must keep each of them.
const DAEMONS: &[&str] = &[
    "mariadb.service",
    "postgresql.service",
    "redis-server.service",
    "apache2.service",
    "php8.2-fpm.service",
    "memcached.service",
    "postfix.service",
    "dovecot.service",
    "named.service",
    "haproxy.service",
    "ssh.service",
    "cron.service",
    "rsyslog.service",
];

/// What a user runs against each port, inside the container, and what the answer holds.
const CLIENTS: &[(&str, &[&str], &str)] = &[
    ("mariadb", &["mysql", "-N", "-e", "select 1"], "1"),
    (
        "postgresql",
        &["runuser", "-u", "postgres", "--", "psql", "-tA", "-c", "select 1"],
        "1",
    ),
    ("redis", &["redis-cli", "ping"], "PONG"),
    (
        "haproxy → apache → php-fpm",
        &["curl", "-sS", "-m", "10", "http://127.0.0.1:8080/index.php"],
        "debian-zoo says hello through fpm-fcgi",
    ),
    (
        "bind",
        &["dig", "+short", "+time=5", "@127.0.0.1", "localhost"],
        "127.0.0.1",
    ),
    (
        "postfix (SMTP banner)",
        &[
            "bash",
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/25 && timeout 10 head -n1 <&3",
        ],
        "ESMTP Postfix",
    ),
    (
        "dovecot (IMAP banner)",
        &[
            "bash",
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/143 && timeout 10 head -n1 <&3",
        ],
        "* OK",
    ),
    (
        "memcached (stats)",
        &[
            "bash",
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/11211 && printf 'stats\\r\\nquit\\r\\n' >&3 && timeout 10 cat <&3",
        ],
        "STAT curr_connections",
    ),
    (
        "ssh (banner)",
        &[
            "bash",
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/22 && timeout 10 head -n1 <&3",
        ],
        "SSH-2.0-OpenSSH",
    ),
];

/// Runs every client (each retried within the bound: a server may still be warming up)
/// and gives the ones that never got their answer, with what they last said.
fn clients_failing(rt: &Rt, name: &str) -> Vec<String> {
    let mut failing = Vec::new();
    for (what, cmd, expect) in CLIENTS {
        let start = Instant::now();
        loop {
            let (out, code) = rt.exec(name, cmd);
            if code == 0 && out.contains(expect) {
                break;
            }
            if start.elapsed() > BOUND {
                failing.push(format!(
                    "{what}: `{}` exited {code}, said {out:?}, expected {expect:?}",
                    cmd.join(" ")
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    failing
}

fn assert_keeps_the_daemons(kept: &[String]) {
    for d in DAEMONS {
        assert!(
            kept.iter().any(|k| k == d),
            "the image does not keep {d}: {kept:?}"
        );
    }
}

/// What `rehost-init status --json` says of each service, once every kept service has
/// settled (a bound, then whatever it says).
fn settled_status(rt: &Rt, name: &str, init: &str, kept: &[String]) -> Vec<(String, String)> {
    let start = Instant::now();
    loop {
        let (text, _) = rt.exec(name, &[init, "status", "--json"]);
        let states: Vec<(String, String)> = serde_json::from_str::<Value>(&text)
            .ok()
            .filter(|s| s["phase"] == "running")
            .and_then(|s| {
                s["services"].as_array().map(|a| {
                    a.iter()
                        .map(|s| {
                            (
                                s["name"].as_str().unwrap_or_default().to_string(),
                                s["state"].as_str().unwrap_or_default().to_string(),
                            )
                        })
                        .collect()
                })
            })
            .unwrap_or_default();
        let settled = !states.is_empty()
            && kept.iter().all(|k| {
                states
                    .iter()
                    .any(|(n, s)| n == k && !matches!(s.as_str(), "inactive" | "starting"))
            });
        if settled || start.elapsed() > BOUND {
            return states;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn debian_zoo_serves_in_rehost_mode() {
    let image = image();
    let (kept, init) = kept_and_init(image);
    assert_keeps_the_daemons(&kept);
    let mut rt = Rt::new();
    let name = rt.name("zoo-rehost");
    rt.run_detached(&name, image, &[], &[]);
    let states = settled_status(&rt, &name, &init, &kept);
    // A service is up when it runs (active), or ran to completion (a oneshot); a timer
    // waits for its time.
    let down: Vec<String> = kept
        .iter()
        .filter(|k| {
            let want: &[&str] = if k.ends_with(".timer") {
                &["waiting"]
            } else {
                &["active", "exited"]
            };
            !states
                .iter()
                .any(|(n, s)| n == *k && want.contains(&s.as_str()))
        })
        .cloned()
        .collect();
    let failing = clients_failing(&rt, &name);
    let logs = String::from_utf8_lossy(&rt.rehost(&["logs", &name]).stdout).into_owned();
    assert!(
        down.is_empty() && failing.is_empty(),
        "in rehost mode:\nnot active: {down:?}\nclients without their answer:\n{}\nstatus: {states:?}\nlogs:\n{logs}",
        failing.join("\n")
    );
    // The operator's commands, as on the server: each job returns when it is done, and the
    // port answers again.
    let answers = |what: &str, cmd: &[&str], expect: &str| {
        let start = Instant::now();
        loop {
            let (out, code) = rt.exec(&name, cmd);
            if code == 0 && out.contains(expect) {
                return;
            }
            assert!(
                start.elapsed() < BOUND,
                "{what}: `{}` exited {code}, said {out:?}",
                cmd.join(" ")
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let ok = |cmd: &[&str]| {
        let (out, code) = rt.exec(&name, cmd);
        assert_eq!(code, 0, "`{}` said {out:?}", cmd.join(" "));
        out
    };
    ok(&["systemctl", "restart", "mariadb"]);
    answers("mariadb after systemctl restart", CLIENTS[0].1, "1");
    ok(&["service", "redis-server", "restart"]);
    answers(
        "redis after service restart",
        &["redis-cli", "ping"],
        "PONG",
    );
    // What logrotate's postrotate for apache2 runs.
    ok(&["invoke-rc.d", "apache2", "reload"]);
    answers("apache after a reload", CLIENTS[3].1, CLIENTS[3].2);
    let log = ok(&["journalctl", "-u", "mariadb", "--no-pager"]);
    assert!(log.contains("Started mariadb.service."), "{log}");
    // Stopping the wrapper stops the cluster that is part of it; starting it starts the
    // cluster again.
    ok(&["systemctl", "stop", "postgresql"]);
    let (state, code) = rt.exec(&name, &["systemctl", "is-active", "postgresql@15-main"]);
    assert_eq!((state.as_str(), code), ("inactive", 3));
    ok(&["systemctl", "start", "postgresql"]);
    answers("postgresql after stop and start", CLIENTS[1].1, "1");

    // postgresql.service is a oneshot wrapper (`ExecStart=/bin/true`); the server is the
    // cluster it pulls in. When the cluster's postmaster dies, the wrapper is not up.
    let (said, code) = rt.exec(
        &name,
        &[
            "bash",
            "-c",
            "kill -KILL $(head -n1 /run/postgresql/15-main.pid)",
        ],
    );
    assert_eq!(code, 0, "{said}");
    let start = Instant::now();
    loop {
        let states = settled_status(&rt, &name, &init, &kept);
        let of = |unit: &str| {
            states
                .iter()
                .find(|(n, _)| n == unit)
                .map(|(_, s)| s.clone())
                .unwrap_or_default()
        };
        if of("postgresql@15-main.service") == "failed" {
            assert_eq!(of("postgresql.service"), "failed", "{states:?}");
            break;
        }
        assert!(
            start.elapsed() < BOUND,
            "the killed cluster never failed: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    rt.rehost_ok(&["stop", &name, "--time", "60"]);
}

#[test]
fn debian_zoo_serves_in_systemd_mode() {
    let image = image();
    let (kept, _) = kept_and_init(image);
    assert_keeps_the_daemons(&kept);
    let mut rt = Rt::new();
    let name = rt.name("zoo-systemd");
    rt.run_detached(&name, image, &["--init", "systemd"], &[]);
    let state = rt.wait_booted(&name);
    let down: Vec<String> = kept
        .iter()
        .filter_map(|k| {
            let (active, _) = rt.exec(&name, &["systemctl", "is-active", k]);
            (active != "active").then(|| format!("{k} is {active}"))
        })
        .collect();
    let failing = clients_failing(&rt, &name);
    let (failed_units, _) = rt.exec(&name, &["systemctl", "--failed", "--no-legend", "--plain"]);
    // What the journal says of each unit that is down.
    let journal: Vec<String> = down
        .iter()
        .filter_map(|d| d.split_whitespace().next())
        .map(|unit| {
            rt.exec(&name, &["journalctl", "--no-pager", "-n", "30", "-u", unit])
                .0
        })
        .collect();
    assert!(
        down.is_empty() && failing.is_empty(),
        "in systemd mode (is-system-running: {state}):\nnot active: {down:?}\nclients without their answer:\n{}\nfailed units:\n{failed_units}\n{}",
        failing.join("\n"),
        journal.join("\n")
    );
    rt.rehost_ok(&["stop", &name, "--time", "60"]);
}
