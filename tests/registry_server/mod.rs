//! A real registry server (Debian's `docker-registry`, the CNCF distribution registry)
//! for one test: its own free port on 127.0.0.1, its own storage and config, optionally
//! htpasswd auth or TLS from a CA made for the test. Killed when dropped, panics included.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub enum Setup {
    Plain,
    /// HTTP Basic auth from an htpasswd file with this one user.
    Htpasswd {
        user: &'static str,
        password: &'static str,
    },
    /// HTTPS with a certificate from a CA generated here (see [`Registry::ca_cert`]).
    Tls,
}

pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    tls: bool,
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A CA, and a server certificate for 127.0.0.1 and localhost signed by it.
fn make_certificates(dir: &Path) {
    run(Command::new("openssl")
        .current_dir(dir)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=rehost test CA",
        ])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
    run(Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-keyout", "server.key", "-out", "server.csr"]));
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n\
         basicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .current_dir(dir)
        .args([
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
        ])
        .args(["-CAcreateserial", "-out", "server.crt", "-days", "2"])
        .args(["-extfile", "server.ext"]));
}

impl Registry {
    pub fn start(setup: Setup) -> Registry {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path();
        std::fs::create_dir(root.join("storage")).unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            root.join("storage").display()
        );
        let mut tls = false;
        match setup {
            Setup::Plain => {}
            Setup::Htpasswd { user, password } => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("htpasswd (apache2-utils) runs");
                assert!(out.status.success());
                std::fs::write(root.join("htpasswd"), out.stdout).unwrap();
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: rehost-test\n    path: {}\n",
                    root.join("htpasswd").display()
                ));
            }
            Setup::Tls => {
                make_certificates(root);
                tls = true;
                config.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    root.join("server.crt").display(),
                    root.join("server.key").display()
                ));
            }
        }
        std::fs::write(root.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(root.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(root.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry runs (scripts/install-deps installs it)");
        let mut registry = Registry {
            child,
            dir,
            addr,
            tls,
        };
        registry.wait_until_up();
        registry
    }

    fn wait_until_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the registry exited ({status}): {}", self.log());
            }
            if TcpStream::connect(&self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the registry does not answer on {}: {}",
            self.addr,
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The CA that signed the server's certificate (TLS setup only).
    pub fn ca_cert(&self) -> PathBuf {
        assert!(self.tls);
        self.dir.path().join("ca.crt")
    }

    /// A directory with the CA as `ca.crt`, as skopeo's `--cert-dir` wants it.
    pub fn cert_dir(&self) -> PathBuf {
        let dir = self.dir.path().join("certs");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(self.ca_cert(), dir.join("ca.crt")).unwrap();
        dir
    }

    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// A place for the test's own files, removed with the registry.
    pub fn scratch(&self) -> PathBuf {
        let dir = self.dir.path().join("scratch");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does wrong.
#[derive(Clone, Copy)]
pub enum Fault {
    /// Cuts one connection once this many bytes went through it towards the registry:
    /// a connection dropped in the middle of an upload.
    CutAfter(u64),
    /// Answers every PATCH with 405, as a registry that takes no chunked uploads.
    RefusePatch,
}

/// A TCP proxy in front of a registry that misbehaves as [`Fault`] says.
pub struct FlakyProxy {
    pub addr: String,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FlakyProxy {
    pub fn start(upstream: &str, fault: Fault) -> FlakyProxy {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let (upstream, flag) = (upstream.to_string(), cut.clone());
        // The threads end with the test process; each serves one connection.
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut s_in, mut c_out) = (server, client);
                let flag = flag.clone();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_in, &mut c_out);
                    let _ = c_out.shutdown(std::net::Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let mut sent = 0u64;
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        let n = match c_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        sent += n as u64;
                        if let Fault::RefusePatch = fault {
                            // Requests on a connection come one after the other, so a new
                            // one starts a read.
                            if buf[..n].starts_with(b"PATCH ") {
                                flag.store(true, Ordering::SeqCst);
                                let _ = c_in.write_all(
                                    b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\
                                      Connection: close\r\n\r\n",
                                );
                                let _ = c_in.shutdown(std::net::Shutdown::Both);
                                let _ = s_out.shutdown(std::net::Shutdown::Both);
                                return;
                            }
                        }
                        let cut = matches!(fault, Fault::CutAfter(limit) if sent > limit);
                        if cut && !flag.swap(true, Ordering::SeqCst) {
                            let _ = c_in.shutdown(std::net::Shutdown::Both);
                            let _ = s_out.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        if s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s_out.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        FlakyProxy { addr, cut }
    }

    /// Whether the proxy did its fault at least once.
    pub fn has_cut(&self) -> bool {
        self.cut.load(std::sync::atomic::Ordering::SeqCst)
    }
}
