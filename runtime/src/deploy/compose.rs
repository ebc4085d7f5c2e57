//! A Compose file: one service, its named volumes.

use super::{volume_name, CgroupSetting, Deployment, Probe};
use serde_json::{json, Map, Value};

/// The compose file of `d`.
pub(super) fn file(d: &Deployment) -> Value {
    let mut s = Map::new();
    s.insert("image".into(), json!(d.image));
    if let Some(h) = &d.hostname {
        s.insert("hostname".into(), json!(h));
    }
    if !d.tmpfs.is_empty() {
        s.insert("tmpfs".into(), json!(d.tmpfs));
    }
    let mut volumes: Vec<String> = Vec::new();
    if d.cgroup == CgroupSetting::HostReadOnly {
        volumes.push("/sys/fs/cgroup:/sys/fs/cgroup:ro".into());
    }
    // A private cgroup namespace is Docker's default on cgroup v2 hosts: no key for it
    // (Compose files before the Compose spec have none).
    let mut named = Map::new();
    for v in &d.volumes {
        let name = volume_name(&d.name, v);
        volumes.push(format!("{name}:{v}"));
        named.insert(name, json!({}));
    }
    if !volumes.is_empty() {
        s.insert("volumes".into(), json!(volumes));
    }
    if !d.cap_add.is_empty() {
        s.insert("cap_add".into(), json!(d.cap_add));
    }
    if !d.ports.is_empty() {
        let ports: Vec<String> = d
            .ports
            .iter()
            .map(|p| {
                let suffix = if p.protocol == "udp" { "/udp" } else { "" };
                format!("{0}:{0}{suffix}", p.port)
            })
            .collect();
        s.insert("ports".into(), json!(ports));
    }
    if let Some(sig) = &d.stop_signal {
        s.insert("stop_signal".into(), json!(sig));
    }
    s.insert(
        "stop_grace_period".into(),
        json!(format!("{}s", d.stop_timeout)),
    );
    if let Some(Probe::Exec { command }) = &d.readiness {
        let mut test = vec!["CMD".to_string()];
        test.extend(command.iter().cloned());
        s.insert(
            "healthcheck".into(),
            json!({"test": test, "interval": "30s", "timeout": "10s", "retries": 3, "start_period": "120s"}),
        );
    }
    s.insert("restart".into(), json!("unless-stopped"));
    let mut file = Map::new();
    // 2.4: the newest format docker-compose 1.x reads with tmpfs, start_period and
    // stop_grace_period; the Compose spec reads it too.
    file.insert("version".into(), json!("2.4"));
    file.insert(
        "services".into(),
        json!({ d.name.clone(): Value::Object(s) }),
    );
    if !named.is_empty() {
        file.insert("volumes".into(), Value::Object(named));
    }
    Value::Object(file)
}
