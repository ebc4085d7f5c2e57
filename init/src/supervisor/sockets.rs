//! Socket units: rehost-init listens where a `.socket` unit says, and starts its service on
//! the first connection. With `Accept=no` the listening sockets are passed to the service
//! (fds 3…, `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`, as `sd_listen_fds` reads them) and
//! rehost-init stops watching them while it runs. With `Accept=yes` (inetd style, Debian's
//! and Ubuntu's `ssh.socket`) each connection gets an instance of the template service,
//! with the connection on stdin/stdout when `StandardInput=socket`, else as fd 3.

use super::{log, State, Supervisor};
use crate::service::{Listen, SocketDef};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Opens every listening socket of `def` (non-blocking, close-on-exec until passed).
pub fn open(def: &SocketDef) -> std::io::Result<Vec<OwnedFd>> {
    def.listen.iter().map(|l| bind(l, def.mode)).collect()
}

fn cvt(rc: libc::c_int) -> std::io::Result<libc::c_int> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn bind(l: &Listen, mode: u32) -> std::io::Result<OwnedFd> {
    let (family, ty) = match l {
        Listen::Tcp(a) if a.is_ipv6() => (libc::AF_INET6, libc::SOCK_STREAM),
        Listen::Tcp(_) => (libc::AF_INET, libc::SOCK_STREAM),
        Listen::Udp(a) if a.is_ipv6() => (libc::AF_INET6, libc::SOCK_DGRAM),
        Listen::Udp(_) => (libc::AF_INET, libc::SOCK_DGRAM),
        Listen::Unix(_) => (libc::AF_UNIX, libc::SOCK_STREAM),
    };
    // SAFETY: plain socket calls on an fd we own; the address structs are initialised
    // before use and passed with their sizes.
    unsafe {
        let fd = cvt(libc::socket(
            family,
            ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        ))?;
        let owned = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        let opt = |level, name| {
            libc::setsockopt(
                fd,
                level,
                name,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        match l {
            Listen::Tcp(a) | Listen::Udp(a) => {
                opt(libc::SOL_SOCKET, libc::SO_REUSEADDR);
                let (storage, len) = sockaddr(a);
                if a.is_ipv6() {
                    // `ListenStream=22` is both families, as systemd binds it.
                    let zero: libc::c_int = 0;
                    libc::setsockopt(
                        fd,
                        libc::IPPROTO_IPV6,
                        libc::IPV6_V6ONLY,
                        &zero as *const libc::c_int as *const libc::c_void,
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    );
                }
                cvt(libc::bind(
                    fd,
                    &storage as *const libc::sockaddr_storage as *const libc::sockaddr,
                    len,
                ))?;
            }
            Listen::Unix(path) => {
                let mut sun: libc::sockaddr_un = std::mem::zeroed();
                sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
                let bytes = path.as_bytes();
                if bytes.len() >= sun.sun_path.len() {
                    return Err(std::io::Error::other(format!("{path}: path too long")));
                }
                let abstract_ns = bytes.first() == Some(&b'@');
                for (k, b) in bytes.iter().enumerate() {
                    sun.sun_path[k] = if k == 0 && abstract_ns {
                        0
                    } else {
                        *b as libc::c_char
                    };
                }
                if !abstract_ns {
                    let _ = std::fs::remove_file(path);
                    if let Some(dir) = std::path::Path::new(path).parent() {
                        let _ = std::fs::create_dir_all(dir);
                    }
                }
                let len = std::mem::size_of::<libc::sa_family_t>()
                    + bytes.len()
                    + usize::from(!abstract_ns);
                cvt(libc::bind(
                    fd,
                    &sun as *const libc::sockaddr_un as *const libc::sockaddr,
                    len as libc::socklen_t,
                ))?;
                if !abstract_ns {
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
                }
            }
        }
        if ty == libc::SOCK_STREAM {
            cvt(libc::listen(fd, libc::SOMAXCONN))?;
        }
        Ok(owned)
    }
}

fn sockaddr(a: &std::net::SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid; the family-specific view is written
    // within its size.
    unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        match a {
            std::net::SocketAddr::V4(v4) => {
                let sin = &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in);
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = v4.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
                (
                    storage,
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
            std::net::SocketAddr::V6(v6) => {
                let sin6 = &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6);
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = v6.port().to_be();
                sin6.sin6_addr.s6_addr = v6.ip().octets();
                (
                    storage,
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    }
}

/// Binds `def`'s sockets; `ListenStream=PORT` on a host without IPv6 falls back to IPv4.
pub fn open_with_fallback(def: &SocketDef) -> std::io::Result<Vec<OwnedFd>> {
    match open(def) {
        Ok(fds) => Ok(fds),
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
            let mut v4 = def.clone();
            for l in &mut v4.listen {
                if let Listen::Tcp(a) | Listen::Udp(a) = l {
                    if a.ip().is_unspecified() {
                        a.set_ip(std::net::Ipv4Addr::UNSPECIFIED.into());
                    }
                }
            }
            open(&v4)
        }
        Err(e) => Err(e),
    }
}

impl Supervisor {
    /// The listening fds to watch now: those of active socket units whose service does
    /// not hold them.
    pub(super) fn socket_fds(&self) -> Vec<RawFd> {
        let mut out = Vec::new();
        for s in &self.svcs {
            let Some(sock) = &s.def.socket else { continue };
            if s.state != State::Active || s.listeners.is_empty() {
                continue;
            }
            if !sock.accept && self.holder_running(&sock.service) {
                continue;
            }
            out.extend(s.listeners.iter().map(|f| f.as_raw_fd()));
        }
        out
    }

    fn holder_running(&self, service: &str) -> bool {
        self.svcs
            .iter()
            .any(|s| s.def.name == service && (s.state.running() || s.state == State::AutoRestart))
    }

    /// The socket unit that listens on `fd`.
    pub(super) fn socket_of(&self, fd: RawFd) -> Option<usize> {
        self.svcs
            .iter()
            .position(|s| s.listeners.iter().any(|l| l.as_raw_fd() == fd))
    }

    /// A connection is waiting on socket unit `i`'s `fd`.
    pub(super) fn on_socket(&mut self, i: usize, fd: RawFd) {
        let Some(sock) = self.svcs[i].def.socket.clone() else {
            return;
        };
        if !sock.accept {
            let Some(t) = self.find_or_load(&sock.service) else {
                log(&format!(
                    "{}: its service {} cannot be loaded",
                    self.svcs[i].def.name, sock.service
                ));
                self.fail_socket(i);
                return;
            };
            let mut fds = Vec::new();
            for l in &self.svcs[i].listeners {
                match l.try_clone() {
                    Ok(f) => fds.push(f),
                    Err(e) => log(&format!("{}: {e}", self.svcs[i].def.name)),
                }
            }
            let names = vec![self.svcs[i].def.name.clone(); fds.len()];
            log(&format!(
                "{}: a connection: starting {}",
                self.svcs[i].def.name, sock.service
            ));
            let t_svc = &mut self.svcs[t];
            t_svc.socket_fds = fds;
            t_svc.socket_names = names;
            t_svc.restart_at = None;
            self.start(t);
            return;
        }
        // Accept=yes: one instance per connection.
        // SAFETY: accept4 on a listening socket we own; the new fd is owned below.
        let conn = unsafe {
            libc::accept4(
                fd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if conn < 0 {
            return;
        }
        // SAFETY: accept4 returned a new fd that nothing else owns.
        let conn = unsafe { OwnedFd::from_raw_fd(conn) };
        let Some(slot) = self.free_instance(i, &sock) else {
            log(&format!(
                "{}: too many connections ({}), refusing one",
                self.svcs[i].def.name, sock.max_connections
            ));
            return;
        };
        let s = &mut self.svcs[slot];
        s.socket_conn = Some(conn);
        s.restart_at = None;
        self.start(slot);
    }

    /// An idle instance of the socket's template for a new connection, loaded when needed
    /// (at most `MaxConnections=` of them).
    fn free_instance(&mut self, i: usize, sock: &crate::service::SocketDef) -> Option<usize> {
        let prefix = sock.service.strip_suffix("@.service")?;
        let socket_name = self.svcs[i].def.name.clone();
        let instances: Vec<usize> = (0..self.svcs.len())
            .filter(|&j| {
                self.svcs[j]
                    .def
                    .name
                    .strip_prefix(prefix)
                    .is_some_and(|r| r.starts_with('@') && r.ends_with(".service"))
                    && self.svcs[j].spawned_by.as_deref() == Some(socket_name.as_str())
            })
            .collect();
        if let Some(&j) = instances
            .iter()
            .find(|&&j| !self.svcs[j].state.running() && self.svcs[j].state != State::AutoRestart)
        {
            return Some(j);
        }
        if instances.len() >= sock.max_connections as usize {
            return None;
        }
        let name = format!("{prefix}@{}.service", instances.len());
        let j = self.find_or_load(&name)?;
        self.svcs[j].spawned_by = Some(socket_name);
        // An instance serves its one connection and is done.
        self.svcs[j].def.service.restart = crate::units::systemd::RestartPolicy::No;
        Some(j)
    }

    fn fail_socket(&mut self, i: usize) {
        let s = &mut self.svcs[i];
        s.listeners.clear();
        s.state = State::Failed;
        s.result = "service-start-limit-hit".into();
        self.dirty = true;
    }
}
