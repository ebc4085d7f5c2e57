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
    /// Bearer tokens from a [`TokenService`] that knows this one user.
    Token {
        user: &'static str,
        password: &'static str,
    },
}

pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    tls: bool,
    /// The network namespace it listens in (`ip netns` name); None: the test's own.
    netns: Option<String>,
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
        Registry::start_in(setup, None)
    }

    /// A registry on 127.0.0.1 of a network namespace the test made (`ip netns add`),
    /// for a client that runs there.
    #[allow(dead_code)] // tests/fleet.rs only
    pub fn start_in_netns(setup: Setup, netns: &str) -> Registry {
        Registry::start_in(setup, Some(netns.to_string()))
    }

    fn start_in(setup: Setup, netns: Option<String>) -> Registry {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path();
        std::fs::create_dir(root.join("storage")).unwrap();
        // A namespace of the test's own has every port free.
        let port = if netns.is_some() { 5000 } else { free_port() };
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
            Setup::Token { user, password } => {
                let service = TokenService::start(root, user, password);
                config.push_str(&format!(
                    "auth:\n  token:\n    realm: {}\n    service: rehost-test\n    \
                     issuer: rehost-test-issuer\n    rootcertbundle: {}\n",
                    service.realm,
                    root.join("token.crt").display()
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
        let mut command = match &netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "docker-registry"]);
                c
            }
            None => Command::new("docker-registry"),
        };
        let child = command
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
            netns,
        };
        registry.wait_until_up();
        registry
    }

    /// Whether something accepts connections on its address, from its namespace.
    fn answers(&self) -> bool {
        let Some(ns) = &self.netns else {
            return TcpStream::connect(&self.addr).is_ok();
        };
        // setns(2) moves only the calling thread: a thread of its own enters the
        // namespace and connects from there.
        let path = format!("/var/run/netns/{ns}");
        let addr = self.addr.clone();
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let file = std::fs::File::open(&path).expect("the namespace's file");
            // SAFETY: a valid namespace descriptor; only this thread changes namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "entering {path}");
            TcpStream::connect(&addr).is_ok()
        })
        .join()
        .expect("the connecting thread")
    }

    fn wait_until_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the registry exited ({status}): {}", self.log());
            }
            if self.answers() {
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

/// A token service for the registry's bearer auth (`auth: token`): checks HTTP Basic
/// credentials and hands out JWTs signed with a key made here (RS256, by openssl), the
/// certificate in the token's `x5c` header and in the registry's root bundle.
pub struct TokenService {
    pub realm: String,
}

fn base64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn base64_std(data: &[u8]) -> String {
    let mut s = base64url(data).replace('-', "+").replace('_', "/");
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

impl TokenService {
    /// Starts the service in `dir` (key and certificate written there) for `user`.
    pub fn start(dir: &Path, user: &'static str, password: &'static str) -> TokenService {
        use std::io::{BufRead, BufReader, Write};
        run(Command::new("openssl")
            .current_dir(dir)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args([
                "-keyout",
                "token.key",
                "-out",
                "token.crt",
                "-subj",
                "/CN=rehost token",
            ]));
        let der = Command::new("openssl")
            .current_dir(dir)
            .args(["x509", "-in", "token.crt", "-outform", "DER"])
            .output()
            .unwrap()
            .stdout;
        let header = base64url(
            format!(
                r#"{{"typ":"JWT","alg":"RS256","x5c":["{}"]}}"#,
                base64_std(&der)
            )
            .as_bytes(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let key = dir.join("token.key");
        let expected = format!(
            "Basic {}",
            base64_std(format!("{user}:{password}").as_bytes())
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut authorized = false;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = h.split_once(':') {
                        if name.eq_ignore_ascii_case("authorization") && value.trim() == expected {
                            authorized = true;
                        }
                    }
                }
                let response = if !authorized {
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 26\r\nConnection: close\r\n\r\n\
                     {\"details\":\"bad password\"}"
                        .to_string()
                } else {
                    // scope=repository:NAME:ACTIONS, percent-encoded by the client.
                    let scope = target
                        .split(['?', '&'])
                        .find_map(|p| p.strip_prefix("scope="))
                        .unwrap_or("")
                        .replace("%3A", ":")
                        .replace("%2F", "/")
                        .replace("%2C", ",");
                    let mut parts = scope.splitn(3, ':');
                    let (_, name, actions) = (parts.next(), parts.next(), parts.next());
                    let actions: Vec<String> = actions
                        .unwrap_or("")
                        .split(',')
                        .filter(|a| !a.is_empty())
                        .map(|a| format!("\"{a}\""))
                        .collect();
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    let claims = format!(
                        r#"{{"iss":"rehost-test-issuer","sub":"{user}","aud":"rehost-test","exp":{},"nbf":{},"iat":{},"jti":"{}","access":[{{"type":"repository","name":"{}","actions":[{}]}}]}}"#,
                        now + 600,
                        now - 10,
                        now - 10,
                        now,
                        name.unwrap_or(""),
                        actions.join(",")
                    );
                    let signing_input = format!("{header}.{}", base64url(claims.as_bytes()));
                    let mut child = Command::new("openssl")
                        .args(["dgst", "-sha256", "-sign"])
                        .arg(&key)
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .spawn()
                        .unwrap();
                    child
                        .stdin
                        .take()
                        .unwrap()
                        .write_all(signing_input.as_bytes())
                        .unwrap();
                    let signature = child.wait_with_output().unwrap().stdout;
                    let token = format!("{signing_input}.{}", base64url(&signature));
                    let body = format!(r#"{{"token":"{token}","expires_in":600}}"#);
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = stream.write_all(response.as_bytes());
            }
        });
        TokenService { realm }
    }
}
