//! Publishing container ports on the host (`-p [IP:]HOSTPORT:PORT[/udp]`) with no
//! iptables, no bridge and no extra package: the container keeps its own network namespace
//! with only `lo`, and a forwarder process on the host accepts on HOSTPORT and, for each
//! connection, connects to 127.0.0.1:PORT inside the container's namespace and copies both
//! ways. UDP is relayed per client: each client address gets a socket of its own inside,
//! whose replies go back to that client, until it is idle for [`UDP_IDLE`].
//!
//! The host ports are bound by `rehost run` before the container exists, so a port in use
//! fails with nothing made. The bound sockets go to the forwarder as inherited fds: it is
//! the `rehost` program itself re-executed as the hidden [`FORWARD_COMMAND`], so it
//! outlives `rehost run -d`, shows in `ps` under a clear name, and holds no mount and no
//! cgroup of the container. It enters the container's network namespace (`setns`, which
//! moves only the calling thread and the threads it then starts, while the listening
//! sockets stay in the host's) and exits when the container's pid 1 does (a pidfd), or
//! when `rehost stop` / `rm` ends it.

use crate::error::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

/// The hidden subcommand of `rehost` that runs [`serve`].
pub const FORWARD_COMMAND: &str = "forward-ports";
/// The forwarder's pid, in the container's directory.
const PID_FILE: &str = "forwarder.pid";
/// The first inherited listening socket; the others follow in order.
const FIRST_FD: i32 = 3;
/// Per direction of each connection: memory stays bounded whatever the traffic.
const BUFFER: usize = 32 * 1024;
/// How long a connection waits for a port inside that refuses (a service restarting).
const REFUSED_WAIT: Duration = Duration::from_secs(2);
/// How long pid 1 may take to make its network namespace (a bound for a spec without
/// one; ours always has one, made in the first moments of pid 1).
const NETNS_WAIT: Duration = Duration::from_secs(30);
/// A UDP client's relay ends after this long without a datagram either way (docker's
/// userland proxy waits 90 s).
const UDP_IDLE: Duration = Duration::from_secs(90);
/// UDP clients relayed at once, per port; datagrams from more are dropped.
const UDP_CLIENTS: usize = 1024;

/// One published port: connections to `host_ip:host_port` reach `127.0.0.1:port` inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub port: u16,
    /// Recorded since UDP came; containers recorded before it are TCP.
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

impl PortMapping {
    pub fn host_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host_ip, self.host_port)
    }
}

/// A `--publish` value that is not a port mapping: the value, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("`{mapping}`: {fault} (expected [IP:]HOSTPORT:PORT[/udp])")]
pub struct BadPortMapping {
    pub mapping: String,
    pub fault: PortFault,
}

/// What is wrong with a [`BadPortMapping`].
#[derive(Debug, thiserror::Error)]
pub enum PortFault {
    #[error("unknown protocol `{0}` (tcp, udp)")]
    Protocol(String),
    #[error("no `:`")]
    NoColon,
    #[error("not an IP address")]
    NotAnIp,
    #[error("{what} `{value}` is not a port 1-65535")]
    NotAPort { what: &'static str, value: String },
}

impl FromStr for PortMapping {
    type Err = BadPortMapping;

    /// `HOSTPORT:PORT` (on every address, 0.0.0.0, as docker does), `IP:HOSTPORT:PORT`,
    /// `[IPv6]:HOSTPORT:PORT`; an optional `/tcp` or `/udp` suffix.
    fn from_str(s: &str) -> std::result::Result<Self, BadPortMapping> {
        let bad = |fault: PortFault| BadPortMapping {
            mapping: s.to_string(),
            fault,
        };
        let (body, protocol) = match s.rsplit_once('/') {
            Some((b, "tcp")) => (b, Protocol::Tcp),
            Some((b, "udp")) => (b, Protocol::Udp),
            Some((_, p)) => return Err(bad(PortFault::Protocol(p.to_string()))),
            None => (s, Protocol::Tcp),
        };
        let (rest, port) = body
            .rsplit_once(':')
            .ok_or_else(|| bad(PortFault::NoColon))?;
        let (ip, host_port) = match rest.rsplit_once(':') {
            Some((ip, hp)) => {
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                let ip: IpAddr = ip.parse().map_err(|_| bad(PortFault::NotAnIp))?;
                (ip, hp)
            }
            None => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), rest),
        };
        let num = |p: &str, what: &'static str| -> std::result::Result<u16, BadPortMapping> {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(bad(PortFault::NotAPort {
                    what,
                    value: p.to_string(),
                })),
            }
        };
        Ok(PortMapping {
            host_ip: ip,
            host_port: num(host_port, "host port")?,
            port: num(port, "container port")?,
            protocol,
        })
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{}/{}", self.host_addr(), self.port, self.protocol)
    }
}

/// Binds every host port, in order. A port in use is an error naming it.
pub fn bind(mappings: &[PortMapping]) -> Result<Vec<OwnedFd>> {
    mappings
        .iter()
        .map(|m| {
            match m.protocol {
                Protocol::Tcp => TcpListener::bind(m.host_addr()).map(OwnedFd::from),
                Protocol::Udp => UdpSocket::bind(m.host_addr()).map(OwnedFd::from),
            }
            .map_err(|e| Error::Port {
                mapping: m.to_string(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Starts the forwarder of the container whose bundle is `dir`: it waits for the engine's
/// pid file (`dir/pid`), then forwards until that pid exits. Records its pid in `dir`.
pub fn spawn(
    name: &str,
    dir: &Path,
    listeners: Vec<OwnedFd>,
    mappings: &[PortMapping],
) -> Result<Child> {
    let exe = std::env::current_exe().at("/proc/self/exe")?;
    let mut cmd = Command::new(&exe);
    cmd.arg(FORWARD_COMMAND)
        .arg("--name")
        .arg(name)
        .arg("--pid-file")
        .arg(crate::engine::pid_file(dir))
        .args(mappings.iter().map(|m| {
            let ip = match m.host_ip {
                IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            };
            format!("{ip}:{}:{}/{}", m.host_port, m.port, m.protocol)
        }))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Its errors go to the container's log, where `rehost logs` shows them.
        .stderr(
            std::fs::File::options()
                .create(true)
                .append(true)
                .open(dir.join("log"))
                .map_or_else(|_| Stdio::null(), Stdio::from),
        );
    let fds: Vec<i32> = listeners.iter().map(|l| l.as_raw_fd()).collect();
    // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl, setsid).
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            // Out of the terminal's process group: Ctrl-C on an attached run is rehost's
            // to handle, and a detached forwarder outlives the session.
            libc::setsid();
            // Move the sockets above the target range first, so no dup2 overwrites one
            // not yet moved; dup2 clears close-on-exec.
            let high: Vec<i32> = fds
                .iter()
                .map(|&fd| libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 1000))
                .collect();
            for (i, fd) in high.into_iter().enumerate() {
                if fd < 0 || libc::dup2(fd, FIRST_FD + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().at(&exe)?;
    drop(listeners);
    let pid_path = dir.join(PID_FILE);
    crate::sidecar::record(&pid_path, child.id() as i32).at(&pid_path)?;
    Ok(child)
}

/// Ends the forwarder recorded in `dir`, if it still runs, and waits until it is gone:
/// its ports are closed when this returns.
pub fn stop(dir: &Path) {
    crate::sidecar::end(&dir.join(PID_FILE), true, Duration::from_secs(5));
}

/// A published port's host socket, in the forwarder.
enum Listener {
    Tcp(TcpListener),
    Udp(UdpRelay),
}

/// The forwarder: the host sockets are fds 3.. in the order of `mappings`.
pub fn serve(pid_file: &Path, mappings: &[PortMapping]) -> Result<()> {
    // SAFETY: `spawn` placed exactly one socket per mapping, of its protocol, at these fds.
    let listeners: Vec<Listener> = mappings
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let fd = FIRST_FD + i as i32;
            match m.protocol {
                Protocol::Tcp => Listener::Tcp(unsafe { TcpListener::from_raw_fd(fd) }),
                Protocol::Udp => Listener::Udp(UdpRelay {
                    host: std::sync::Arc::new(unsafe { UdpSocket::from_raw_fd(fd) }),
                    port: m.port,
                    clients: Default::default(),
                }),
            }
        })
        .collect();
    let Some(pid) = wait_for_pid(pid_file) else {
        return Ok(());
    };
    let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(_) => return Ok(()), // pid 1 is already gone
    };
    if !enter_netns(pid.as_raw_nonzero().get(), &pidfd)? {
        return Ok(()); // pid 1 exited before its namespace was made
    }
    let fds: Vec<i32> = listeners
        .iter()
        .map(|l| match l {
            Listener::Tcp(t) => t.set_nonblocking(true).map(|_| t.as_raw_fd()),
            Listener::Udp(u) => u.host.set_nonblocking(true).map(|_| u.host.as_raw_fd()),
        })
        .collect::<std::io::Result<_>>()
        .at(pid_file)?;
    let mut polled: Vec<libc::pollfd> = fds
        .into_iter()
        .chain([pidfd.as_fd().as_raw_fd()])
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `polled` is a valid array of pollfds for its length.
        let n = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, -1) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io(pid_file, e));
        }
        if polled[listeners.len()].revents != 0 {
            return Ok(()); // the container's pid 1 exited
        }
        for (i, l) in listeners.iter().enumerate() {
            if polled[i].revents == 0 {
                continue;
            }
            match l {
                Listener::Tcp(l) => accept_all(l, mappings[i].port),
                Listener::Udp(u) => u.relay_pending(),
            }
        }
    }
}

/// Accepts every pending connection, each forwarded by a thread of its own.
fn accept_all(l: &TcpListener, port: u16) {
    loop {
        match l.accept() {
            Ok((client, _)) => {
                let spawned = std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || forward(client, port));
                if let Err(e) = spawned {
                    eprintln!("rehost: a client of port {port} closed: no thread for it: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) => break, // e.g. the client reset before accept: next one
        }
    }
}

/// A published UDP port: a socket inside per client address, connected to the port, and
/// a thread per client that sends what comes back from inside to that client.
struct UdpRelay {
    host: std::sync::Arc<UdpSocket>,
    port: u16,
    clients: std::sync::Arc<std::sync::Mutex<HashMap<SocketAddr, std::sync::Arc<UdpSocket>>>>,
}

impl UdpRelay {
    /// Relays every datagram waiting on the host socket into the container.
    fn relay_pending(&self) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let (n, client) = match self.host.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return, // WouldBlock: all read
            };
            if let Some(inner) = self.inner_for(client) {
                // Nothing listening inside, a full buffer: lost, as UDP may lose it.
                let _ = inner.send(&buf[..n]);
            }
        }
    }

    /// The client's socket inside, made (with its reply thread) on its first datagram;
    /// None when too many clients are relayed already or no socket can be made.
    fn inner_for(&self, client: SocketAddr) -> Option<std::sync::Arc<UdpSocket>> {
        let mut clients = self.clients.lock().ok()?;
        if let Some(inner) = clients.get(&client) {
            return Some(inner.clone());
        }
        if clients.len() >= UDP_CLIENTS {
            return None;
        }
        // This thread is in the container's network namespace: so is the socket.
        let inner = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
        inner.connect((Ipv4Addr::LOCALHOST, self.port)).ok()?;
        inner.set_read_timeout(Some(UDP_IDLE)).ok()?;
        let inner = std::sync::Arc::new(inner);
        clients.insert(client, inner.clone());
        let (back, host, all) = (inner.clone(), self.host.clone(), self.clients.clone());
        let spawned = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                // Until idle (the read times out) or the port inside refuses.
                while let Ok(n) = back.recv(&mut buf) {
                    let _ = host.send_to(&buf[..n], client);
                }
                if let Ok(mut all) = all.lock() {
                    all.remove(&client);
                }
            });
        if spawned.is_err() {
            clients.remove(&client);
            return None;
        }
        Some(inner)
    }
}

/// Reads the engine's pid file as soon as it exists; None when the `rehost` that started
/// us went away first (the container never started).
fn wait_for_pid(pid_file: &Path) -> Option<rustix::process::Pid> {
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    loop {
        if let Some(pid) = crate::engine::read_pid(pid_file) {
            return rustix::process::Pid::from_raw(pid);
        }
        if unsafe { libc::getppid() } != parent {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Moves this thread (and the threads it starts from now on) into the network namespace
/// of `pid`, once it has one of its own. The engine names pid 1 (its pid file) before
/// pid 1 leaves the host's namespace: entered then, every connection would go to the
/// host's 127.0.0.1 (seen under load, 3 runs in 24). False when pid 1 exits first.
fn enter_netns(pid: i32, pidfd: &OwnedFd) -> Result<bool> {
    let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let host = std::fs::metadata("/proc/self/ns/net").at("/proc/self/ns/net")?;
    let deadline = std::time::Instant::now() + NETNS_WAIT;
    let ns: OwnedFd = loop {
        let ns = std::fs::File::open(&path).at(&path)?;
        let own = ns.metadata().at(&path)?;
        if (own.dev(), own.ino()) != (host.dev(), host.ino()) {
            break ns.into();
        }
        if crate::sidecar::wait_gone(pidfd, Duration::ZERO) {
            return Ok(false);
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::io(
                &path,
                std::io::Error::other("the container has no network namespace of its own"),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // SAFETY: setns on an fd we own; CLONE_NEWNET only changes this thread's namespace.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(Error::io(&path, std::io::Error::last_os_error()));
    }
    Ok(true)
}

/// One connection: connect inside, then copy both ways until both sides are done.
fn forward(client: TcpStream, port: u16) {
    let _ = client.set_nonblocking(false);
    let Some(inner) = connect_inside(port) else {
        return; // nothing listens inside: the client sees the connection close
    };
    let _ = client.set_nodelay(true);
    let _ = inner.set_nodelay(true);
    let (Ok(client2), Ok(inner2)) = (client.try_clone(), inner.try_clone()) else {
        return;
    };
    let back = std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || copy(inner2, client2));
    copy(client, inner);
    if let Ok(back) = back {
        let _ = back.join();
    }
}

/// Connects to 127.0.0.1:`port` inside. A service that is starting or restarting
/// refuses for a moment: the client waits up to [`REFUSED_WAIT`] for it rather than being
/// reset at once. A client given up on is said in the container's log, with why.
fn connect_inside(port: u16) -> Option<TcpStream> {
    let start = std::time::Instant::now();
    loop {
        match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            Ok(inner) => return Some(inner),
            // Refused: nothing listens yet. Unreachable: lo is not up yet (the engine
            // brings it up just before pid 1 starts).
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NetworkUnreachable
                ) && start.elapsed() < REFUSED_WAIT =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                eprintln!(
                    "rehost: a client of port {port} closed: 127.0.0.1:{port} inside, after {} ms: {e}",
                    start.elapsed().as_millis()
                );
                return None;
            }
        }
    }
}

/// Copies `from` into `to` until EOF, then passes the EOF on (a half close), so protocols
/// that end their request with a shutdown work.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; BUFFER];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    let _ = from.shutdown(Shutdown::Read);
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_parse_like_docker() {
        let m: PortMapping = "8080:80".parse().unwrap();
        assert_eq!(m.host_addr().to_string(), "0.0.0.0:8080");
        assert_eq!(m.port, 80);
        let m: PortMapping = "127.0.0.1:2222:22/tcp".parse().unwrap();
        assert_eq!(m.to_string(), "127.0.0.1:2222->22/tcp");
        let m: PortMapping = "[::1]:8443:443".parse().unwrap();
        assert_eq!(m.to_string(), "[::1]:8443->443/tcp");
        let m: PortMapping = "5353:53/udp".parse().unwrap();
        assert_eq!((m.port, m.protocol), (53, Protocol::Udp));
        assert_eq!(m.to_string(), "0.0.0.0:5353->53/udp");
        // What containers recorded before UDP came reads as TCP.
        let old: PortMapping =
            serde_json::from_str(r#"{"host_ip":"127.0.0.1","host_port":8080,"port":80}"#).unwrap();
        assert_eq!(old.protocol, Protocol::Tcp);
        for bad in [
            "80",
            "x:80",
            "8080:0",
            "1.2.3:80:80",
            "70000:80",
            "53:53/sctp",
        ] {
            let e = bad.parse::<PortMapping>().unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
