use super::*;
use oci::image::{Empty, RunConfig};

fn config(mode: &str, extra: &[(&str, &str)]) -> ImageConfig {
    let mut run = RunConfig {
        entrypoint: Some(vec!["/usr/sbin/rehost-init".into()]),
        stop_signal: Some(
            if mode == "systemd" {
                "SIGRTMIN+3"
            } else {
                "SIGTERM"
            }
            .into(),
        ),
        ..Default::default()
    };
    run.labels
        .insert(oci::contract::MODE_LABEL.into(), mode.into());
    run.labels
        .insert(oci::contract::IMAGE_NAME_LABEL.into(), "Web_01".into());
    for (k, v) in extra {
        run.labels.insert(k.to_string(), v.to_string());
    }
    run.exposed_ports.insert("80/tcp".into(), Empty {});
    run.exposed_ports.insert("53/udp".into(), Empty {});
    run.exposed_ports.insert("x/sctp".into(), Empty {});
    run.volumes.insert("/var/lib/mysql".into(), Empty {});
    run.volumes.insert("/x'; rm -rf /".into(), Empty {});
    ImageConfig {
        config: run,
        ..Default::default()
    }
}

#[test]
fn systemd_mode_needs_the_cgroup_setting_of_the_hosts_version() {
    let c = config("systemd", &[]);
    let v1 = Deployment::of(&c, "127.0.0.1:5000/web01:v1", CgroupVersion::V1);
    assert_eq!(v1.cgroup, CgroupSetting::HostReadOnly);
    assert!(v1.cap_add.is_empty(), "{:?}", v1.cap_add);
    assert_eq!(v1.tmpfs, ["/run", "/run/lock"]);
    let v2 = Deployment::of(&c, "127.0.0.1:5000/web01:v1", CgroupVersion::V2);
    assert_eq!(v2.cgroup, CgroupSetting::PrivateNamespace);
    assert_eq!(v2.cap_add, ["SYS_ADMIN"]);
    let line = v2.render(Target::Docker);
    assert!(
        line.contains("--cgroupns private --cap-add SYS_ADMIN"),
        "{line}"
    );
    assert!(line.starts_with("# systemd needs"), "{line}");
    // Podman sets systemd up itself.
    let podman = v2.render(Target::Podman);
    assert!(
        podman.starts_with("podman run -d --name web-01 --systemd always"),
        "{podman}"
    );
}

#[test]
fn rehost_mode_needs_nothing_beyond_the_engines_defaults() {
    let d = Deployment::of(&config("rehost", &[]), "web01:v1", CgroupVersion::V2);
    assert_eq!(d.cgroup, CgroupSetting::Default);
    assert!(d.cap_add.is_empty());
    assert_eq!(d.name, "web-01");
    assert_eq!(
        d.readiness,
        Some(Probe::Exec {
            command: vec!["/usr/sbin/rehost-init".into(), "status".into()]
        })
    );
    assert_eq!(d.liveness, Some(Probe::Tcp { port: 80 }));
    // Only the well-formed ports and paths of the image's config.
    assert_eq!(d.ports.len(), 2);
    assert_eq!(d.volumes, ["/var/lib/mysql"]);
    let line = d.render(Target::Docker);
    assert!(line.contains("-p 53:53/udp -p 80:80"), "{line}");
    assert!(
        line.contains("-v web-01-var-lib-mysql:/var/lib/mysql"),
        "{line}"
    );
}

#[test]
fn sbin_init_mode_asks_for_sys_boot() {
    let d = Deployment::of(&config("sbin-init", &[]), "web01:v1", CgroupVersion::V1);
    assert_eq!(d.cap_add, ["SYS_BOOT"]);
}

#[test]
fn the_plans_http_check_is_the_liveness_probe() {
    let c = config("rehost", &[(HTTP_CHECKS_LABEL, "80/health")]);
    let d = Deployment::of(&c, "web01:v1", CgroupVersion::V1);
    assert_eq!(
        d.liveness,
        Some(Probe::Http {
            port: 80,
            path: "/health".into()
        })
    );
    assert!(d.render(Target::Kubernetes).contains("path: \"/health\""));
}

#[test]
fn hostile_labels_stay_values() {
    let c = config(
        "rehost",
        &[(oci::contract::SOURCE_HOST_LABEL, "a;b\nkind: Secret")],
    );
    let d = Deployment::of(&c, "web01:v1", CgroupVersion::V1);
    assert_eq!(d.hostname, None);
    let mut c = config("rehost", &[]);
    c.config.labels.insert(
        oci::contract::IMAGE_NAME_LABEL.into(),
        "x\n  kind: Secret $(reboot)".into(),
    );
    let d = Deployment::of(&c, "web01:v1", CgroupVersion::V1);
    assert!(d
        .name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
    for target in [Target::Compose, Target::Kubernetes] {
        assert!(!d.render(target).contains("kind: Secret"));
    }
}

#[test]
fn shell_words_read_back() {
    let words: Vec<String> = ["docker", "a b", "it's", "", "$(x)", "-p", "80:80"]
        .map(String::from)
        .to_vec();
    let line = shell_line(&words);
    assert_eq!(line, r#"docker 'a b' 'it'\''s' '' '$(x)' -p 80:80"#);
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("printf '%s\\n' {line}")])
        .output()
        .unwrap();
    let back: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(back, words);
}

#[test]
fn yaml_quotes_every_string() {
    let v = serde_json::json!({"a": ["x: y", {"b": "line\nnext", "c": []}], "d": {}, "e key": 1});
    assert_eq!(
        to_yaml(&v),
        "a:\n- \"x: y\"\n- b: \"line\\nnext\"\n  c: []\nd: {}\n\"e key\": 1\n"
    );
}
