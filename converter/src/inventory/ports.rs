//! Listening ports. On a live source the kernel's socket tables say it (and the
//! processes holding the sockets say which service); on a snapshot the well-known
//! configuration files of common daemons give a best guess.

use super::fs::{config_lines, Root};
use super::services::Service;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Port {
    pub port: u16,
    /// tcp or udp.
    pub protocol: String,
    /// The address it listens on (`0.0.0.0`, `::`, `127.0.0.1`), when known.
    pub address: Option<String>,
    /// The enabled service it belongs to, when one matches.
    pub service: Option<String>,
    /// The process (live) or daemon (configuration) that listens.
    pub process: Option<String>,
    /// Where this comes from: `/proc/net/tcp` or the configuration file.
    pub from: String,
}

pub fn collect(root: &Root, services: &[Service]) -> Vec<Port> {
    let mut ports = if is_live(root) {
        live(root, services)
    } else {
        from_configs(root, services)
    };
    ports.sort();
    ports.dedup_by(|a, b| a.port == b.port && a.protocol == b.protocol && a.address == b.address);
    ports
}

/// A running system has socket tables in /proc (a snapshot's /proc is empty).
pub fn is_live(root: &Root) -> bool {
    root.exists("proc/self") && root.exists("proc/net/tcp")
}

/// From /proc/net/{tcp,tcp6,udp,udp6}: TCP sockets in LISTEN, UDP sockets bound with
/// no peer; each mapped through the socket inode to the process holding it.
fn live(root: &Root, services: &[Service]) -> Vec<Port> {
    let owners = socket_owners(root);
    let mut out = Vec::new();
    for (table, protocol) in [
        ("tcp", "tcp"),
        ("tcp6", "tcp"),
        ("udp", "udp"),
        ("udp6", "udp"),
    ] {
        let path = format!("proc/net/{table}");
        let Some(text) = root.read_text(&path) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let listening = match protocol {
                "tcp" => f[3] == "0A",
                _ => f[3] == "07" && f[2].ends_with(":0000"),
            };
            if !listening {
                continue;
            }
            let Some((address, port)) = parse_socket_address(f[1]) else {
                continue;
            };
            let owner = f[9].parse::<u64>().ok().and_then(|i| owners.get(&i));
            let unit = owner.and_then(|o| o.unit.clone());
            out.push(Port {
                port,
                protocol: protocol.into(),
                address: Some(address),
                service: unit
                    .or_else(|| owner.and_then(|o| match_service(services, &[o.comm.as_str()]))),
                process: owner.map(|o| format!("{} (pid {})", o.comm, o.pid)),
                from: format!("/{path}"),
            });
        }
    }
    out
}

struct Owner {
    pid: u32,
    comm: String,
    /// The systemd unit of its cgroup, when there is one.
    unit: Option<String>,
}

/// Socket inode → the process that holds it, from /proc/PID/fd.
fn socket_owners(root: &Root) -> BTreeMap<u64, Owner> {
    let mut owners = BTreeMap::new();
    for pid in root.list_names("proc") {
        let Ok(pid_num) = pid.parse::<u32>() else {
            continue;
        };
        let fd_dir = format!("proc/{pid}/fd");
        let Ok(fds) = root.source.read_dir(fd_dir.as_bytes()) else {
            // Other users' processes when not root; they are just not mapped.
            continue;
        };
        let mut found = Vec::new();
        for fd in fds {
            let path = [fd_dir.as_bytes(), b"/", &fd].concat();
            let Ok(target) = root.source.read_link(&path) else {
                continue;
            };
            let target = String::from_utf8_lossy(&target);
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
            {
                found.push(inode);
            }
        }
        if found.is_empty() {
            continue;
        }
        let comm = root
            .source
            .read_to_vec(format!("proc/{pid}/comm").as_bytes(), 4096)
            .map(|c| String::from_utf8_lossy(&c).trim().to_string())
            .unwrap_or_default();
        let unit = root
            .source
            .read_to_vec(format!("proc/{pid}/cgroup").as_bytes(), 65536)
            .ok()
            .and_then(|c| {
                String::from_utf8_lossy(&c)
                    .split(['/', '\n'])
                    .find(|p| p.ends_with(".service"))
                    .map(str::to_string)
            });
        for inode in found {
            owners.entry(inode).or_insert(Owner {
                pid: pid_num,
                comm: comm.clone(),
                unit: unit.clone(),
            });
        }
    }
    owners
}

/// `0100007F:1F90` (IPv4) or a 32-hex-digit IPv6 address, port in hex.
fn parse_socket_address(field: &str) -> Option<(String, u16)> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let address = match addr.len() {
        8 => {
            let n = u32::from_str_radix(addr, 16).ok()?;
            std::net::Ipv4Addr::from(n.to_le_bytes()).to_string()
        }
        32 => {
            let mut bytes = [0u8; 16];
            for (i, word) in (0..4).map(|i| &addr[i * 8..i * 8 + 8]).enumerate() {
                let n = u32::from_str_radix(word, 16).ok()?;
                bytes[i * 4..i * 4 + 4].copy_from_slice(&n.to_le_bytes());
            }
            std::net::Ipv6Addr::from(bytes).to_string()
        }
        _ => return None,
    };
    Some((address, port))
}

/// The enabled service whose name (without suffix) is one of `names`.
fn match_service(services: &[Service], names: &[&str]) -> Option<String> {
    services
        .iter()
        .find(|s| names.contains(&s.stem()))
        .map(|s| s.name.clone())
}

/// An address (when one is given) and a port, as a configuration file says it.
type Listen = (Option<String>, u16);

/// A daemon whose configuration names its ports.
struct Daemon {
    name: &'static str,
    /// Service names it runs under, on the various distributions.
    services: &'static [&'static str],
    /// Files (globs of one level: `dir/*`) holding its configuration.
    files: &'static [&'static str],
    /// Reads the ports of one file's text.
    ports: fn(&str) -> Vec<Listen>,
    /// When installed (this file exists) but no port is configured.
    default: Option<(&'static str, u16)>,
    /// The keyword that sets the address every port of a file listens on.
    bind: Option<&'static str>,
}

const DAEMONS: &[Daemon] = &[
    Daemon {
        name: "sshd",
        services: &["ssh", "sshd", "openssh"],
        files: &["etc/ssh/sshd_config", "etc/ssh/sshd_config.d/*"],
        ports: |t| keyword_ports(t, "port", ' '),
        default: Some(("usr/sbin/sshd", 22)),
        bind: None,
    },
    Daemon {
        name: "nginx",
        services: &["nginx"],
        files: &[
            "etc/nginx/nginx.conf",
            "etc/nginx/conf.d/*",
            "etc/nginx/sites-enabled/*",
            "etc/nginx/http.d/*",
        ],
        ports: nginx_ports,
        default: None,
        bind: None,
    },
    Daemon {
        name: "apache",
        services: &["apache2", "httpd"],
        files: &[
            "etc/apache2/ports.conf",
            "etc/httpd/conf/httpd.conf",
            "etc/httpd/conf.d/*",
        ],
        ports: |t| keyword_ports(t, "listen", ' '),
        default: None,
        bind: None,
    },
    Daemon {
        name: "mysqld",
        services: &["mysql", "mysqld", "mariadb"],
        files: &[
            "etc/my.cnf",
            "etc/mysql/my.cnf",
            "etc/mysql/mysql.conf.d/*",
            "etc/mysql/mariadb.conf.d/*",
            "etc/my.cnf.d/*",
        ],
        ports: |t| keyword_ports(t, "port", '='),
        default: Some(("usr/sbin/mysqld", 3306)),
        bind: Some("bind-address"),
    },
    Daemon {
        name: "postgres",
        services: &["postgresql", "postgresql@"],
        files: &[
            "etc/postgresql/*/main/postgresql.conf",
            "var/lib/pgsql/data/postgresql.conf",
        ],
        ports: |t| keyword_ports(t, "port", '='),
        default: None,
        bind: Some("listen_addresses"),
    },
    Daemon {
        name: "redis-server",
        services: &["redis-server", "redis"],
        files: &["etc/redis/redis.conf", "etc/redis.conf"],
        ports: |t| keyword_ports(t, "port", ' '),
        default: Some(("usr/bin/redis-server", 6379)),
        bind: Some("bind"),
    },
    Daemon {
        name: "postfix",
        services: &["postfix"],
        files: &["etc/postfix/master.cf"],
        ports: |t| {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() > 1 && f[1] == "inet").then_some(f[0])
                })
                .filter_map(|name| match name {
                    "smtp" => Some((None, 25)),
                    "submission" => Some((None, 587)),
                    "smtps" => Some((None, 465)),
                    other => address_port(other),
                })
                .collect()
        },
        default: None,
        bind: None,
    },
];

fn from_configs(root: &Root, services: &[Service]) -> Vec<Port> {
    let mut out = Vec::new();
    for daemon in DAEMONS {
        let service = match_service(services, daemon.services);
        // A daemon no enabled service starts listens on nothing at boot (with no
        // services known at all, every configured daemon counts).
        if service.is_none() && !services.is_empty() {
            continue;
        }
        let mut found = Vec::new();
        for pattern in daemon.files {
            for file in expand(root, pattern) {
                if let Some(text) = root.read_text(&file) {
                    let bind = daemon.bind.and_then(|k| bind_address(&text, k));
                    for (address, port) in (daemon.ports)(&text) {
                        found.push((address.or(bind.clone()), port, format!("/{file}")));
                    }
                }
            }
        }
        if found.is_empty() {
            if let Some((binary, port)) = daemon.default {
                if root.exists(binary) {
                    found.push((None, port, format!("/{binary} (its default port)")));
                }
            }
        }
        for (address, port, from) in found {
            out.push(Port {
                port,
                protocol: "tcp".into(),
                address,
                service: service.clone(),
                process: Some(daemon.name.into()),
                from,
            });
        }
    }
    out
}

/// A path with `*` components, matched against the source's directories.
fn expand(root: &Root, pattern: &str) -> Vec<String> {
    let mut paths = vec![String::new()];
    for part in pattern.split('/') {
        let mut next = Vec::new();
        for base in &paths {
            let join = |name: &str| {
                if base.is_empty() {
                    name.to_string()
                } else {
                    format!("{base}/{name}")
                }
            };
            if part == "*" {
                for name in root.list_names(base) {
                    if !name.starts_with('.') {
                        next.push(join(&name));
                    }
                }
            } else {
                next.push(join(part));
            }
        }
        paths = next;
    }
    paths.into_iter().filter(|p| root.is_file(p)).collect()
}

/// `keyword value` or `keyword = value` lines (case-insensitive keyword).
fn keyword_ports(text: &str, keyword: &str, separator: char) -> Vec<(Option<String>, u16)> {
    config_lines(text)
        .filter_map(|line| {
            let (key, value) = match separator {
                '=' => line.split_once('=')?,
                _ => line.split_once(char::is_whitespace)?,
            };
            if !key.trim().eq_ignore_ascii_case(keyword) {
                return None;
            }
            address_port(value.split_whitespace().next()?.trim_matches(['"', '\'']))
        })
        .collect()
}

/// The first address of a `bind-address = 127.0.0.1`, `bind 127.0.0.1 ::1` or
/// `listen_addresses = 'localhost'` line; `None` for every address.
fn bind_address(text: &str, keyword: &str) -> Option<String> {
    config_lines(text).find_map(|line| {
        let (key, value) = match line.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case(keyword) => (k, v),
            _ => line.split_once(char::is_whitespace)?,
        };
        if !key.trim().eq_ignore_ascii_case(keyword) {
            return None;
        }
        let first = value.split([' ', ',', '\t']).find(|w| !w.is_empty())?;
        let first = first.trim_matches(['"', '\'']);
        match first {
            "*" | "0.0.0.0" | "::" | "" => None,
            "localhost" => Some("127.0.0.1".into()),
            other => Some(other.to_string()),
        }
    })
}

/// nginx `listen` directives: `listen 80;`, `listen [::]:443 ssl;`, `listen 127.0.0.1:8080;`.
fn nginx_ports(text: &str) -> Vec<(Option<String>, u16)> {
    config_lines(text)
        .flat_map(|l| l.split(';'))
        .filter_map(|stmt| {
            let mut words = stmt.split_whitespace();
            (words.next()? == "listen").then_some(())?;
            let value = words.next()?;
            if value.starts_with("unix:") {
                return None;
            }
            address_port(value)
        })
        .collect()
}

/// `80`, `1.2.3.4:80`, `[::]:80`, `*:80`.
fn address_port(value: &str) -> Option<(Option<String>, u16)> {
    if let Ok(port) = value.parse::<u16>() {
        return Some((None, port));
    }
    let (addr, port) = value.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    let addr = addr.trim_matches(['[', ']']);
    Some((
        (!addr.is_empty() && addr != "*").then(|| addr.to_string()),
        port,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_table_addresses() {
        assert_eq!(
            parse_socket_address("0100007F:1F90"),
            Some(("127.0.0.1".into(), 8080))
        );
        assert_eq!(
            parse_socket_address("00000000000000000000000000000000:0016"),
            Some(("::".into(), 22))
        );
    }

    #[test]
    fn config_listen_forms() {
        let nginx = "server {\n  listen 80 default_server;\n  listen [::]:443 ssl; # tls\n  listen unix:/run/x.sock;\n}\n";
        assert_eq!(nginx_ports(nginx), [(None, 80), (Some("::".into()), 443)]);
        assert_eq!(
            keyword_ports("#Port 22\nPort 2222\n", "port", ' '),
            [(None, 2222)]
        );
        assert_eq!(
            keyword_ports("[mysqld]\nport = 3307\n", "port", '='),
            [(None, 3307)]
        );
        assert_eq!(
            bind_address("[mysqld]\nbind-address\t= 127.0.0.1\n", "bind-address").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            bind_address("bind 10.0.0.1 ::1\n", "bind").as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            bind_address("listen_addresses = '*'\n", "listen_addresses"),
            None
        );
    }

    #[test]
    fn a_live_listener_is_found_with_its_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let source = crate::source::open(std::path::Path::new("/"), &Default::default()).unwrap();
        let root = Root::new(source.as_ref());
        assert!(is_live(&root));
        let ports = collect(&root, &[]);
        let mine = ports
            .iter()
            .find(|p| p.port == port && p.protocol == "tcp")
            .unwrap_or_else(|| panic!("port {port} not in {ports:?}"));
        assert_eq!(mine.address.as_deref(), Some("127.0.0.1"));
        let me = format!("(pid {})", std::process::id());
        assert!(
            mine.process.as_deref().unwrap_or("").ends_with(&me),
            "{mine:?}"
        );
    }
}
