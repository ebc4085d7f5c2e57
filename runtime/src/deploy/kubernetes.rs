//! Kubernetes objects: a PersistentVolumeClaim per data directory, a Service for the
//! ports, and a Deployment of one pod.

use super::{volume_name, Deployment, Probe};
use serde_json::{json, Map, Value};

/// The size each claim asks for; the operator edits it to the server's data.
const VOLUME_SIZE: &str = "10Gi";
/// Where the init container sees each claim while it fills it.
const FILL_MOUNT: &str = "/rehost-volume";

/// The objects, in the order `kubectl apply` wants them.
pub(super) fn objects(d: &Deployment) -> Vec<Value> {
    let labels =
        json!({ "app.kubernetes.io/name": d.name, "app.kubernetes.io/managed-by": "rehost" });
    let mut out = Vec::new();
    for v in &d.volumes {
        out.push(json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": { "name": volume_name(&d.name, v), "labels": labels },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": { "requests": { "storage": VOLUME_SIZE } }
            }
        }));
    }
    if !d.ports.is_empty() {
        let ports: Vec<Value> = d
            .ports
            .iter()
            .map(|p| {
                json!({
                    "name": format!("{}-{}", p.protocol, p.port),
                    "port": p.port,
                    "targetPort": p.port,
                    "protocol": p.protocol.to_ascii_uppercase(),
                })
            })
            .collect();
        out.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": d.name, "labels": labels },
            "spec": { "selector": { "app.kubernetes.io/name": d.name }, "ports": ports }
        }));
    }
    out.push(deployment(d, &labels));
    out
}

fn deployment(d: &Deployment, labels: &Value) -> Value {
    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    let mut fill_mounts = Vec::new();
    let mut fill_script = String::from("set -e\n");
    for (i, v) in d.volumes.iter().enumerate() {
        let name = volume_name(&d.name, v);
        mounts.push(json!({ "name": name, "mountPath": v }));
        volumes.push(json!({ "name": name, "persistentVolumeClaim": { "claimName": name } }));
        // A new claim is empty: it is filled once with what the image holds there, as
        // Docker fills a new named volume, so the server's data is not hidden by it.
        let at = format!("{FILL_MOUNT}/{i}");
        fill_mounts.push(json!({ "name": name, "mountPath": at }));
        fill_script.push_str(&format!(
            "if [ -z \"$(ls -A {at})\" ] && [ -d '{v}' ]; then cp -a '{v}/.' {at}/; fi\n"
        ));
    }
    for (i, t) in d.tmpfs.iter().enumerate() {
        let name = format!("tmpfs-{i}");
        mounts.push(json!({ "name": name, "mountPath": t }));
        volumes.push(json!({ "name": name, "emptyDir": { "medium": "Memory" } }));
    }
    let mut c = Map::new();
    c.insert("name".into(), json!(d.name));
    c.insert("image".into(), json!(d.image));
    if !d.ports.is_empty() {
        let ports: Vec<Value> = d
            .ports
            .iter()
            .map(
                |p| json!({ "containerPort": p.port, "protocol": p.protocol.to_ascii_uppercase() }),
            )
            .collect();
        c.insert("ports".into(), json!(ports));
    }
    if !mounts.is_empty() {
        c.insert("volumeMounts".into(), json!(mounts));
    }
    // The cgroup setting needs nothing more here: on v1 nodes containerd mounts the tree
    // read-only, as systemd mode wants; on v2 the pod has its own namespace, and the
    // capability below lets rehost-init make it writable.
    if !d.cap_add.is_empty() {
        c.insert(
            "securityContext".into(),
            json!({ "capabilities": { "add": d.cap_add } }),
        );
    }
    if let Some(p) = &d.readiness {
        c.insert("readinessProbe".into(), probe(p, 10, 3));
        // Up to two minutes to boot before liveness counts.
        c.insert("startupProbe".into(), probe(p, 5, 24));
    }
    if let Some(p) = &d.liveness {
        c.insert("livenessProbe".into(), probe(p, 30, 3));
    }
    let mut pod = Map::new();
    if let Some(h) = d.hostname.as_ref().filter(|h| !h.contains('.')) {
        pod.insert("hostname".into(), json!(h));
    }
    pod.insert(
        "terminationGracePeriodSeconds".into(),
        json!(d.stop_timeout),
    );
    if !fill_mounts.is_empty() {
        pod.insert(
            "initContainers".into(),
            json!([{
                "name": "fill-volumes",
                "image": d.image,
                "command": ["/bin/sh", "-c", fill_script],
                "volumeMounts": fill_mounts,
            }]),
        );
    }
    pod.insert("containers".into(), json!([Value::Object(c)]));
    if !volumes.is_empty() {
        pod.insert("volumes".into(), json!(volumes));
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": d.name, "labels": labels },
        "spec": {
            "replicas": 1,
            // One server: the old pod stops before the new one starts (its volumes are
            // ReadWriteOnce, and two copies of one server must not run).
            "strategy": { "type": "Recreate" },
            "selector": { "matchLabels": { "app.kubernetes.io/name": d.name } },
            "template": {
                "metadata": { "labels": labels },
                "spec": Value::Object(pod),
            }
        }
    })
}

fn probe(p: &Probe, period: u32, failures: u32) -> Value {
    let mut v = match p {
        Probe::Exec { command } => json!({ "exec": { "command": command } }),
        Probe::Tcp { port } => json!({ "tcpSocket": { "port": port } }),
        Probe::Http { port, path } => json!({ "httpGet": { "port": port, "path": path } }),
    };
    v["periodSeconds"] = json!(period);
    v["failureThreshold"] = json!(failures);
    v["timeoutSeconds"] = json!(10);
    v
}
