//! Publishing container ports on the host (`-p [IP:]HOSTPORT:PORT`) with no iptables, no
//! bridge and no extra package: the container keeps its own network namespace with only
//! `lo`, and a forwarder process on the host accepts on HOSTPORT and, for each connection,
//! connects to 127.0.0.1:PORT inside the container's namespace and copies both ways.
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
use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
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

/// One published port: connections to `host_ip:host_port` reach `127.0.0.1:port` inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub port: u16,
}

impl PortMapping {
    pub fn host_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host_ip, self.host_port)
    }
}

impl FromStr for PortMapping {
    type Err = String;

    /// `HOSTPORT:PORT` (on every address, 0.0.0.0, as docker does), `IP:HOSTPORT:PORT`,
    /// `[IPv6]:HOSTPORT:PORT`; an optional `/tcp` suffix.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = |why: &str| format!("`{s}`: {why} (expected [IP:]HOSTPORT:PORT)");
        let body = s.strip_suffix("/tcp").unwrap_or(s);
        if body.ends_with("/udp") {
            return Err(bad("only TCP ports can be published"));
        }
        let (rest, port) = body.rsplit_once(':').ok_or_else(|| bad("no `:`"))?;
        let (ip, host_port) = match rest.rsplit_once(':') {
            Some((ip, hp)) => {
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                let ip: IpAddr = ip.parse().map_err(|_| bad("not an IP address"))?;
                (ip, hp)
            }
            None => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), rest),
        };
        let num = |p: &str, what: &str| -> std::result::Result<u16, String> {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(bad(&format!("{what} `{p}` is not a port 1-65535"))),
            }
        };
        Ok(PortMapping {
            host_ip: ip,
            host_port: num(host_port, "host port")?,
            port: num(port, "container port")?,
        })
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{}/tcp", self.host_addr(), self.port)
    }
}

/// Binds every host port, in order. A port in use is an error naming it.
pub fn bind(mappings: &[PortMapping]) -> Result<Vec<TcpListener>> {
    mappings
        .iter()
        .map(|m| {
            TcpListener::bind(m.host_addr()).map_err(|e| Error::Port {
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
    listeners: Vec<TcpListener>,
    mappings: &[PortMapping],
) -> Result<Child> {
    let exe = std::env::current_exe().at("/proc/self/exe")?;
    let mut cmd = Command::new(&exe);
    cmd.arg(FORWARD_COMMAND)
        .arg("--name")
        .arg(name)
        .arg("--pid-file")
        .arg(dir.join("pid"))
        .args(mappings.iter().map(|m| {
            let ip = match m.host_ip {
                IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            };
            format!("{ip}:{}:{}", m.host_port, m.port)
        }))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
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

/// The forwarder: the listening sockets are fds 3.. in the order of `mappings`.
pub fn serve(pid_file: &Path, mappings: &[PortMapping]) -> Result<()> {
    // SAFETY: `spawn` placed exactly one listening socket per mapping at these fds.
    let listeners: Vec<TcpListener> = (0..mappings.len())
        .map(|i| unsafe { TcpListener::from_raw_fd(FIRST_FD + i as i32) })
        .collect();
    let Some(pid) = wait_for_pid(pid_file) else {
        return Ok(());
    };
    let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(_) => return Ok(()), // pid 1 is already gone
    };
    enter_netns(pid.as_raw_nonzero().get())?;
    for l in &listeners {
        l.set_nonblocking(true).at(pid_file)?;
    }
    let mut polled: Vec<libc::pollfd> = listeners
        .iter()
        .map(|l| l.as_raw_fd())
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
            loop {
                match l.accept() {
                    Ok((client, _)) => {
                        let port = mappings[i].port;
                        let _ = std::thread::Builder::new()
                            .stack_size(64 * 1024)
                            .spawn(move || forward(client, port));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => break, // e.g. the client reset before accept: next one
                }
            }
        }
    }
}

/// Reads the engine's pid file as soon as it exists; None when the `rehost` that started
/// us went away first (the container never started).
fn wait_for_pid(pid_file: &Path) -> Option<rustix::process::Pid> {
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    loop {
        if let Some(pid) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            return rustix::process::Pid::from_raw(pid);
        }
        if unsafe { libc::getppid() } != parent {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Moves this thread (and the threads it starts from now on) into the network namespace
/// of `pid`.
fn enter_netns(pid: i32) -> Result<()> {
    let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let ns: OwnedFd = std::fs::File::open(&path).at(&path)?.into();
    // SAFETY: setns on an fd we own; CLONE_NEWNET only changes this thread's namespace.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(Error::io(&path, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// One connection: connect inside, then copy both ways until both sides are done.
fn forward(client: TcpStream, port: u16) {
    let _ = client.set_nonblocking(false);
    let Ok(inner) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
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
        for bad in [
            "80",
            "x:80",
            "8080:0",
            "1.2.3:80:80",
            "70000:80",
            "53:53/udp",
        ] {
            let e = bad.parse::<PortMapping>().unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
