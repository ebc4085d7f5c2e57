//! The checks that do not depend on the init: listening ports, an HTTP GET inside the
//! container's network, the hooks' records, the host identity, and orphan reaping.

use super::{CheckResult, Inside};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// Listening TCP ports inside, from /proc/net/tcp and tcp6 (no tools needed in the image).
pub fn listening(c: &Inside) -> Vec<u16> {
    let (text, _) = c.run(&["cat", "/proc/net/tcp", "/proc/net/tcp6"]);
    let mut ports: Vec<u16> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.get(3) != Some(&"0A") {
                return None;
            }
            u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Waits (at most `within`, polling) until every one of `ports` listens, or `stop` says
/// to give up; returns the ports listening at the end.
pub fn wait_listening(
    c: &Inside,
    ports: &[super::PortCheck],
    within: Duration,
    stop: &dyn Fn() -> bool,
) -> Vec<u16> {
    let start = Instant::now();
    loop {
        let open = listening(c);
        if ports.iter().all(|p| open.contains(&p.port)) || start.elapsed() >= within || stop() {
            return open;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The result of one port check: the port, and when it does not listen, the service
/// that should be listening on it.
pub fn port_result(p: &super::PortCheck, listening: bool, waited: Duration) -> CheckResult {
    let detail = if listening {
        "listening".to_string()
    } else {
        let whose = match &p.service {
            Some(s) => format!("{s}'s port"),
            None => "no service named for it".to_string(),
        };
        format!(
            "nothing listens on {}/tcp after {}s ({whose})",
            p.port,
            waited.as_secs()
        )
    };
    CheckResult::new("port", format!("{}/tcp", p.port), listening, detail)
}

/// Why an HTTP check got no status code; each names the namespace or port it was at.
#[derive(Debug, thiserror::Error)]
pub enum HttpCheckError {
    #[error("the container is not running")]
    NotRunning,
    #[error("{ns}: {source}")]
    OpenNamespace {
        ns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("entering {ns}: {source}")]
    EnterNamespace {
        ns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connect to port {port}: {source}")]
    Connect {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("send: {source}")]
    Send {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("read: {source}")]
    Read {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    /// The first line of what the port answered.
    #[error("not an HTTP answer: {answer:?}")]
    NotHttp { port: u16, answer: String },
    #[error("the HTTP check panicked")]
    Panicked,
}

/// An HTTP GET on 127.0.0.1:PORT inside the container's network namespace; the status
/// code it answered.
pub fn http_get(pid: i32, port: u16, path: &str, timeout: Duration) -> Result<u16, HttpCheckError> {
    let ns = format!("/proc/{pid}/ns/net");
    let path = path.to_string();
    // setns(CLONE_NEWNET) changes only the calling thread: a thread of its own enters the
    // container's network and ends there.
    std::thread::spawn(move || {
        let f = std::fs::File::open(&ns).map_err(|source| HttpCheckError::OpenNamespace {
            ns: ns.clone(),
            source,
        })?;
        // SAFETY: a valid descriptor of a network namespace; affects this thread only.
        if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) } != 0 {
            return Err(HttpCheckError::EnterNamespace {
                ns,
                source: std::io::Error::last_os_error(),
            });
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|source| HttpCheckError::Connect { port, source })?;
        s.set_read_timeout(Some(timeout)).ok();
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: rehost-verify\r\n\r\n"
        )
        .map_err(|source| HttpCheckError::Send { port, source })?;
        let mut head = [0u8; 64];
        let n = s
            .read(&mut head)
            .map_err(|source| HttpCheckError::Read { port, source })?;
        let line = String::from_utf8_lossy(&head[..n]);
        line.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .filter(|_| line.starts_with("HTTP/"))
            .ok_or_else(|| HttpCheckError::NotHttp {
                port,
                answer: line.lines().next().unwrap_or("").to_string(),
            })
    })
    .join()
    .unwrap_or(Err(HttpCheckError::Panicked))
}

/// What a hook phase recorded (rehost-init writes `/var/lib/rehost/hooks/PHASE.json`).
pub fn hooks_record(phase: &str, text: Option<String>) -> CheckResult {
    let name = format!("{phase} hooks");
    let Some(text) = text else {
        return CheckResult::new("hooks", name, false, "no record: the hooks did not run");
    };
    let v: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return CheckResult::new("hooks", name, false, format!("bad record: {e}")),
    };
    let hooks = v["hooks"].as_array().cloned().unwrap_or_default();
    let failed: Vec<String> = hooks
        .iter()
        .filter(|h| h["code"] != 0)
        .map(|h| {
            format!(
                "{} ({})",
                h["path"].as_str().unwrap_or("?"),
                match h["code"].as_i64() {
                    Some(c) => format!("exit {c}"),
                    None => "not started".into(),
                }
            )
        })
        .collect();
    if failed.is_empty() {
        CheckResult::new(
            "hooks",
            name,
            true,
            format!("{} ran, all exit 0", hooks.len()),
        )
    } else {
        CheckResult::new(
            "hooks",
            name,
            false,
            format!("failed: {}", failed.join(", ")),
        )
    }
}

/// The files that make a host unique, each as the image shipped it (`None`: not shipped)
/// against the running container's.
pub fn identity(c: &Inside, image_file: &dyn Fn(&str) -> Option<Vec<u8>>) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let (id, _) = c.run(&["cat", "/etc/machine-id"]);
    let shipped = image_file("/etc/machine-id")
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    out.push(if id.is_empty() {
        CheckResult::new(
            "identity",
            "/etc/machine-id",
            false,
            "empty: none was made at boot",
        )
    } else if id == shipped {
        CheckResult::new(
            "identity",
            "/etc/machine-id",
            false,
            "the image's own, shared by every copy",
        )
    } else {
        CheckResult::new(
            "identity",
            "/etc/machine-id",
            true,
            "made for this container",
        )
    });
    let (sshd, _) = c.run(&["sh", "-c", "test -e /etc/ssh/sshd_config && echo yes"]);
    if sshd == "yes" {
        let (keys, _) = c.run(&["sh", "-c", "ls /etc/ssh/ssh_host_*_key.pub 2>/dev/null"]);
        let keys: Vec<&str> = keys.lines().collect();
        if keys.is_empty() {
            out.push(CheckResult::new(
                "identity",
                "ssh host keys",
                false,
                "none: sshd cannot start",
            ));
        }
        for key in keys {
            let (now, _) = c.run(&["cat", key]);
            let same =
                image_file(key).is_some_and(|b| String::from_utf8_lossy(&b).trim() == now.trim());
            out.push(CheckResult::new(
                "identity",
                key,
                !same,
                if same {
                    "the source's key, shipped in the image"
                } else {
                    "made for this container"
                },
            ));
        }
    }
    out
}

/// Orphans a child inside and checks that pid 1 adopts and reaps it.
pub fn orphan_reaped(c: &Inside, timeout: Duration) -> CheckResult {
    let name = "orphaned zombie";
    // The shell exits at once: its background `sleep` is orphaned and re-parented, and
    // exits a moment later for pid 1 to reap.
    let (pid, ok) = c.run(&["sh", "-c", "sleep 0.2 & echo $!"]);
    let Ok(pid) = pid.trim().parse::<u32>() else {
        return CheckResult::new("reap", name, false, format!("could not start one: {pid}"));
    };
    if !ok {
        return CheckResult::new("reap", name, false, "could not start one");
    }
    let stat = |c: &Inside| c.run(&["cat", &format!("/proc/{pid}/stat")]).0;
    let start = Instant::now();
    loop {
        let s = stat(c);
        // Fields after the command name: state, ppid.
        let rest: Vec<&str> = s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        match (rest.first(), rest.get(1)) {
            (None, _) => return CheckResult::new("reap", name, true, "reaped by pid 1"),
            (Some(&"Z"), Some(ppid)) if start.elapsed() > timeout => {
                return CheckResult::new(
                    "reap",
                    name,
                    false,
                    format!("pid {pid} is still a zombie of pid {ppid}"),
                )
            }
            _ if start.elapsed() > timeout + Duration::from_secs(2) => {
                return CheckResult::new("reap", name, false, format!("pid {pid} is still there"))
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A file as a layer directory stack has it: the topmost layer that holds the path or
/// whites it out decides. The path comes from inside the container: each layer is read
/// confined to itself and bounded ([`crate::confined`]).
pub fn file_in_layers(lowers: &[impl AsRef<Path>], path: &str) -> Option<Vec<u8>> {
    let rel = path.trim_start_matches('/');
    let (dir, base) = rel.rsplit_once('/').unwrap_or(("", rel));
    let whiteout = format!("{dir}/.wh.{base}");
    for layer in lowers.iter().rev() {
        let layer = layer.as_ref();
        let present = |p: &str| crate::confined::exists(layer, p);
        if present(&whiteout) {
            return None;
        }
        if present(rel) {
            return crate::confined::read(layer, rel).ok().flatten();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_record_passes_only_when_every_hook_exited_0() {
        let ok = r#"{"hooks":[{"path":"/a","code":0},{"path":"/b","code":0}]}"#;
        assert!(hooks_record("prestart", Some(ok.into())).passed);
        let bad = r#"{"hooks":[{"path":"/a","code":0},{"path":"/b","code":3}]}"#;
        let r = hooks_record("poststop", Some(bad.into()));
        assert!(
            !r.passed && r.detail.contains("/b (exit 3)"),
            "{}",
            r.detail
        );
        assert!(!hooks_record("prestart", None).passed);
    }

    #[test]
    fn a_silent_port_names_its_service() {
        let p = super::super::PortCheck {
            port: 8080,
            service: Some("billing".into()),
        };
        let r = port_result(&p, false, Duration::from_secs(10));
        assert!(!r.passed);
        assert_eq!(r.name, "8080/tcp");
        assert_eq!(
            r.detail,
            "nothing listens on 8080/tcp after 10s (billing's port)"
        );
        assert!(port_result(&p, true, Duration::ZERO).passed);
    }

    #[test]
    fn the_top_layer_decides_and_whiteouts_hide() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::create_dir_all(a.join("etc")).unwrap();
        std::fs::create_dir_all(b.join("etc")).unwrap();
        std::fs::write(a.join("etc/machine-id"), "old").unwrap();
        std::fs::write(a.join("etc/hostname"), "web01").unwrap();
        std::fs::write(b.join("etc/machine-id"), "").unwrap();
        std::fs::write(b.join("etc/.wh.hostname"), "").unwrap();
        let layers = [a, b];
        assert_eq!(file_in_layers(&layers, "/etc/machine-id").unwrap(), b"");
        assert_eq!(file_in_layers(&layers, "/etc/hostname"), None);
        assert_eq!(file_in_layers(&layers, "/etc/nothing"), None);
    }
}
