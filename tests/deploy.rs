//! `rehost deploy` against the engines users run: a Docker 20.10 of the test's own (on
//! the host's cgroups and on a cgroup2-only view), docker-compose, and the Kubernetes
//! schema. Every container is started with exactly the line `deploy` printed.

mod common;
#[allow(dead_code)]
mod registry_server;

use common::docker::{Cgroups, Docker};
use common::{fixture_rootfs, rehost_ok, scratch};
use registry_server::{Registry, Setup};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The debian-systemd fixture converted for `mode`, as a docker-archive named `name`
/// (also an oci-archive: the same tar with Docker's manifest.json added).
fn archive(dir: &Path, mode: &str, name: &str) -> std::path::PathBuf {
    archive_of("debian-systemd", dir, mode, name)
}

fn archive_of(fixture: &str, dir: &Path, mode: &str, name: &str) -> std::path::PathBuf {
    let out = dir.join(format!("{mode}-{}.tar", name.replace(':', "-")));
    rehost_ok(&[
        "convert",
        fixture_rootfs(fixture).to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--format",
        "docker-archive",
        "--tag",
        name,
        "--init",
        mode,
        "--volume",
        "/var/www",
    ]);
    out
}

fn deploy(args: &[&str]) -> String {
    let out = rehost_ok(&[&["deploy"], args].concat());
    String::from_utf8(out.stdout).unwrap()
}

/// The command line of `deploy --to docker` (comments aside), checked to be one line.
fn docker_line(printed: &str) -> String {
    let lines: Vec<&str> = printed.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 1, "one command line: {printed}");
    lines[0].to_string()
}

/// Waits until `docker exec NAME CHECK…` exits 0 (the mode's own readiness).
fn wait_ready(docker: &Docker, name: &str, check: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = docker.try_docker(&[&["exec", name], check].concat());
        if out.is_ok() {
            return;
        }
        if Instant::now() > deadline {
            let logs = docker.try_docker(&["logs", name]).unwrap_or_default();
            panic!("{name} not ready in 90 s: {out:?}\nlogs:\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What a client gets first from `port` inside the container's network namespace (an
/// HTTP status line, an SSH banner).
fn first_line(docker: &Docker, name: &str, port: u16, send: &str) -> String {
    let pid = docker.docker(&["inspect", "-f", "{{.State.Pid}}", name]);
    first_line_in(pid.trim(), port, send)
}

fn first_line_in(pid: &str, port: u16, send: &str) -> String {
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port}; printf '{send}' >&3; head -n1 <&3 | tr -d '\\r'"
    );
    let out = Command::new("nsenter")
        .args(["-t", pid, "-n", "bash", "-c", &script])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The cgroup directories a container may leave behind on this host (the unified tree,
/// and the v1 controllers when Docker used them).
fn cgroups_of(id: &str) -> Vec<String> {
    let mut found = Vec::new();
    for root in [
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/systemd",
    ] {
        let out = Command::new("find")
            .args([
                root,
                "-maxdepth",
                "3",
                "-type",
                "d",
                "-name",
                &format!("*{id}*"),
            ])
            .output()
            .unwrap();
        found.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(String::from),
        );
    }
    found
}

/// Runs the deploy line, checks the services serve and log, then stops it: exit 0 (a
/// SIGKILL after the 30 s the line allows gives 137), and nothing left in the cgroups.
fn run_and_check(docker: &Docker, line: &str, name: &str, ready: &[&str], boot_log: &str) {
    run_and_check_exit(docker, line, name, ready, boot_log, "0")
}

fn run_and_check_exit(
    docker: &Docker,
    line: &str,
    name: &str,
    ready: &[&str],
    boot_log: &str,
    exit: &str,
) {
    let id = docker.sh(line).trim().to_string();
    assert_eq!(id.len(), 64, "docker run prints the container's id: {id}");
    wait_ready(docker, name, ready);
    assert_eq!(
        first_line(docker, name, 80, "GET / HTTP/1.0\\r\\n\\r\\n"),
        "HTTP/1.1 200 OK",
        "nginx answers in {name}"
    );
    assert!(
        first_line(docker, name, 22, "").starts_with("SSH-2.0-OpenSSH"),
        "sshd answers in {name}"
    );
    // Both streams, as `docker logs` shows them on a terminal.
    let logs = docker.sh(&format!("docker logs {name} 2>&1"));
    assert!(
        logs.contains(boot_log),
        "docker logs of {name} (no terminal) show the boot ({boot_log}):\n{logs}"
    );
    docker.docker(&["stop", name]);
    let code = docker.docker(&["inspect", "-f", "{{.State.ExitCode}}", name]);
    assert_eq!(
        code.trim(),
        exit,
        "{name} stops gracefully with exit {exit}"
    );
    docker.docker(&["rm", "-v", name]);
    assert_eq!(cgroups_of(&id), Vec::<String>::new(), "{name} left cgroups");
}

fn docker_runs_what_deploy_prints(cgroups: Cgroups) {
    let work = scratch();
    let docker = match Docker::start(work.path(), cgroups) {
        Ok(d) => d,
        Err(why) => return common::cannot_run_here("docker", &why),
    };
    let version = match cgroups {
        Cgroups::Host => "v1",
        Cgroups::V2 => "v2",
    };
    let info = docker.docker(&["info", "-f", "{{.CgroupVersion}}"]);
    assert_eq!(
        format!("v{}", info.trim()),
        version,
        "the daemon's cgroup view"
    );

    // systemd mode, through `docker load` of the docker-archive.
    let sd = archive(work.path(), "systemd", "web01:sd");
    assert!(docker
        .docker(&["load", "-i", sd.to_str().unwrap()])
        .contains("Loaded image: web01:sd"));
    let printed = deploy(&[sd.to_str().unwrap(), "--to", "docker", "--cgroup", version]);
    let line = docker_line(&printed);
    assert!(line.starts_with("docker run -d --name web01 "), "{line}");
    assert!(line.ends_with(" docker.io/library/web01:sd"), "{line}");
    assert!(line.contains("-v web01-var-www:/var/www"), "{line}");
    run_and_check(
        &docker,
        &line,
        "web01",
        &["systemctl", "is-system-running"],
        "Reached target",
    );

    // rehost mode, pushed to a registry and pulled by Docker.
    let registry = Registry::start(Setup::Plain);
    let rh = archive(work.path(), "rehost", "web02:rh");
    let reference = format!("{}/fleet/web02:rh", registry.addr);
    rehost_ok(&["push", rh.to_str().unwrap(), &reference]);
    docker.docker(&["pull", &reference]);
    let printed = deploy(&[&reference, "--to", "docker", "--cgroup", version]);
    let line = docker_line(&printed);
    assert!(line.ends_with(&format!(" {reference}")), "{line}");
    run_and_check(
        &docker,
        &line,
        "web02",
        &["/usr/sbin/rehost-init", "status"],
        "nginx.service: started",
    );

    // sbin-init mode: the SysV server's own init, which halts with reboot(2).
    let sv = archive_of("debian-sysvinit", work.path(), "sbin-init", "web07:sv");
    docker.docker(&["load", "-i", sv.to_str().unwrap()]);
    let printed = deploy(&[sv.to_str().unwrap(), "--to", "docker", "--cgroup", version]);
    let line = docker_line(&printed);
    assert!(line.contains("--cap-add SYS_BOOT"), "{line}");
    assert!(printed.contains("exit 130"), "{printed}");
    // A halt by reboot(2) in a pid namespace ends its init as by SIGINT (the kernel's
    // rule): Docker reports 130, which deploy's output says; SIGKILL would be 137.
    run_and_check_exit(
        &docker,
        &line,
        "web07",
        &[
            "sh",
            "-c",
            "test -s /run/nginx.pid && test -s /run/sshd.pid",
        ],
        "Starting",
        "130",
    );
}

#[test]
fn docker_runs_what_deploy_prints_on_the_hosts_cgroups() {
    docker_runs_what_deploy_prints(Cgroups::Host);
}

/// A cgroup2-only host, shown to the daemons in a private mount namespace.
#[test]
fn docker_runs_what_deploy_prints_on_cgroup_v2() {
    docker_runs_what_deploy_prints(Cgroups::V2);
}

#[test]
fn compose_runs_the_file_deploy_writes() {
    let work = scratch();
    if Command::new("docker-compose")
        .arg("version")
        .output()
        .is_err()
    {
        return common::cannot_run_here(
            "compose",
            "docker-compose is not installed (scripts/install-deps installs it)",
        );
    }
    let docker = match Docker::start(work.path(), Cgroups::Host) {
        Ok(d) => d,
        Err(why) => return common::cannot_run_here("docker", &why),
    };
    let rh = archive(work.path(), "rehost", "web03:rh");
    docker.docker(&["load", "-i", rh.to_str().unwrap()]);
    let file = work.path().join("compose.yaml");
    rehost_ok(&[
        "deploy",
        rh.to_str().unwrap(),
        "--to",
        "compose",
        "-o",
        file.to_str().unwrap(),
    ]);
    let compose = |args: &[&str]| {
        let out = docker
            .command("docker-compose")
            .args(["-f", file.to_str().unwrap(), "-p", "rehosttest"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    compose(&["up", "-d"]);
    let name = docker.docker(&[
        "ps",
        "-q",
        "--filter",
        "label=com.docker.compose.project=rehosttest",
    ]);
    let name = name.trim();
    wait_ready(&docker, name, &["/usr/sbin/rehost-init", "status"]);
    assert_eq!(
        first_line(&docker, name, 80, "GET / HTTP/1.0\\r\\n\\r\\n"),
        "HTTP/1.1 200 OK"
    );
    let volumes = docker.docker(&["volume", "ls", "-q"]);
    assert!(
        volumes.contains("web03-var-www"),
        "a named volume: {volumes}"
    );
    compose(&["stop"]);
    let code = docker.docker(&["inspect", "-f", "{{.State.ExitCode}}", name]);
    assert_eq!(code.trim(), "0");
    compose(&["down", "-v"]);
}

/// The manifests for both modes and both cgroup versions pass the schema of a current
/// Kubernetes.
#[test]
fn kubernetes_manifests_are_valid() {
    let work = scratch();
    if Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .is_err()
    {
        return common::cannot_run_here(
            "kubernetes-validate",
            "not installed (scripts/install-deps installs it from PyPI)",
        );
    }
    for mode in ["rehost", "systemd"] {
        let image = archive(work.path(), mode, "web04:v1");
        for version in ["v1", "v2"] {
            let file = work.path().join(format!("{mode}-{version}.yaml"));
            rehost_ok(&[
                "deploy",
                image.to_str().unwrap(),
                "--to",
                "kubernetes",
                "--cgroup",
                version,
                "--ref",
                "127.0.0.1:5000/fleet/web04:v1",
                "-o",
                file.to_str().unwrap(),
            ]);
            let text = std::fs::read_to_string(&file).unwrap();
            for kind in ["PersistentVolumeClaim", "Service", "Deployment"] {
                assert!(
                    text.contains(&format!("kind: \"{kind}\"")),
                    "{kind} in {text}"
                );
            }
            assert_eq!(
                text.contains("SYS_ADMIN"),
                mode == "systemd" && version == "v2",
                "{mode} on {version}: capabilities\n{text}"
            );
            let out = Command::new("kubernetes-validate")
                .args(["--strict", file.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "kubernetes-validate {mode} {version}: {}{}\n{text}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// containerd's `ctr`: the oci-archive imported by its name (systemd mode) and an image
/// pulled from a registry (rehost mode), each run with the line `deploy --to containerd`
/// printed. On the host's cgroups only: on the cgroup2-only view the cpu controller stays
/// bound to v1, and ctr's default spec writes `cpu.weight`, which that view lacks.
#[test]
fn containerd_runs_what_deploy_prints() {
    use common::containerd::Containerd;
    let work = scratch();
    let ctd = match Containerd::start(work.path()) {
        Ok(c) => c,
        Err(why) => return common::cannot_run_here("containerd", &why),
    };
    let run_line = |image: &str| {
        let printed = deploy(&[image, "--to", "containerd", "--cgroup", "v1"]);
        let line = docker_line(&printed);
        assert!(line.starts_with("ctr run -d "), "{line}");
        let out = ctd.command("sh").args(["-c", &line]).output().unwrap();
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let check = |name: &str, ready: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(90);
        while ctd
            .try_ctr(&[&["task", "exec", "--exec-id", "ready", name], ready].concat())
            .is_err()
        {
            assert!(Instant::now() < deadline, "{name} not ready in 90 s");
            std::thread::sleep(Duration::from_millis(500));
        }
        let tasks = ctd.ctr(&["task", "ls"]);
        let pid = tasks
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&name)).then(|| f[1].to_string())
            })
            .unwrap_or_else(|| panic!("{name} in {tasks}"));
        assert_eq!(
            first_line_in(&pid, 80, "GET / HTTP/1.0\\r\\n\\r\\n"),
            "HTTP/1.1 200 OK"
        );
        // The image's stop signal; `task delete` exits with the task's own code.
        ctd.ctr(&["task", "kill", name]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ctd.ctr(&["task", "ls"]).contains("STOPPED") {
            assert!(Instant::now() < deadline, "{name} did not stop in 30 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        ctd.ctr(&["task", "delete", name]);
        ctd.ctr(&["containers", "rm", name]);
        assert_eq!(
            cgroups_of(name),
            Vec::<String>::new(),
            "{name} left cgroups"
        );
    };

    let sd = archive(work.path(), "systemd", "web05:sd");
    ctd.ctr(&["images", "import", sd.to_str().unwrap()]);
    run_line(sd.to_str().unwrap());
    check("web05", &["systemctl", "is-system-running"]);

    let registry = Registry::start(Setup::Plain);
    let rh = archive(work.path(), "rehost", "web06:rh");
    let reference = format!("{}/fleet/web06:rh", registry.addr);
    rehost_ok(&["push", rh.to_str().unwrap(), &reference]);
    ctd.ctr(&["images", "pull", "--plain-http", &reference]);
    run_line(&reference);
    check("web06", &["/usr/sbin/rehost-init", "status"]);
}
