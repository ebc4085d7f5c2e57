//! Connecting to a registry: which scheme (HTTPS, or plain HTTP where allowed), which
//! certificates, which credentials, and whether the registry accepts them. Also what to
//! make of oci-client's errors: a status and a message for the user, and whether a retry
//! may help.

use crate::auth;
use crate::error::{RegistryError, Result};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// How to reach a registry, as the user asked.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Allow plain HTTP (and unverified certificates) for this registry.
    pub insecure: bool,
    /// Extra certificate authorities (PEM files) to trust.
    pub ca_certs: Vec<PathBuf>,
    /// Explicit credentials; when None, the user's config files and helpers are asked.
    pub credentials: Option<(String, String)>,
    /// How many blobs travel at once.
    pub jobs: usize,
}

/// A registry reached and authenticated.
pub(crate) struct Connection {
    /// host[:port], as the user wrote it.
    pub registry: String,
    /// Uploads in chunks (PATCH), the default.
    pub client: Client,
    /// Uploads in one PUT, for registries that refuse chunks.
    pub monolithic: Client,
    pub auth: RegistryAuth,
    pub plain_http: bool,
    /// The same HTTP stack, for the one request oci-client cannot make (a streamed PATCH).
    pub http: reqwest::Client,
    /// `https://host:port` or `http://host:port`.
    pub base_url: String,
}

/// Docker treats the loopback registry as one that may speak plain HTTP; so do we.
fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

pub(crate) async fn connect(
    reference: &Reference,
    options: &ConnectOptions,
    operation: RegistryOperation,
) -> Result<Connection> {
    let registry = reference.resolve_registry().to_string();
    let mut certificates = Vec::new();
    for path in &options.ca_certs {
        let data = std::fs::read(path).map_err(|e| RegistryError::io(path, e))?;
        if reqwest::Certificate::from_pem(&data).is_err() || !data.starts_with(b"-----BEGIN") {
            return Err(RegistryError::Credentials {
                source_name: path.display().to_string(),
                reason: "not a PEM certificate".into(),
            });
        }
        certificates.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data,
        });
    }

    let mut probe = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(300))
        .danger_accept_invalid_certs(options.insecure);
    for cert in &certificates {
        probe = probe.add_root_certificate(
            reqwest::Certificate::from_pem(&cert.data).expect("checked above"),
        );
    }
    let probe = probe.build().map_err(|e| RegistryError::Connect {
        registry: registry.clone(),
        reason: error_chain(&e),
    })?;

    let plain_allowed = options.insecure || is_loopback(&registry);
    let (plain_http, ping) = choose_scheme(&probe, &registry, plain_allowed).await?;
    let scheme = if plain_http { "http" } else { "https" };

    let auth = match &options.credentials {
        Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
        None => auth::lookup(&registry)?,
    };
    check_credentials(&probe, &registry, scheme, &ping, &auth).await?;

    let build = |monolithic: bool| {
        Client::new(ClientConfig {
            protocol: if plain_http {
                ClientProtocol::HttpsExcept(vec![registry.clone()])
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: options.insecure,
            extra_root_certificates: certificates.clone(),
            use_monolithic_push: monolithic,
            max_concurrent_upload: options.jobs.max(1),
            max_concurrent_download: options.jobs.max(1),
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(300)),
            user_agent: concat!("rehost/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        })
    };
    let client = build(false);
    let monolithic = build(true);
    for c in [&client, &monolithic] {
        // A bearer challenge is answered here, once, so that wrong credentials give one
        // clear error instead of anonymous requests failing later.
        c.auth(reference, &auth, operation)
            .await
            .map_err(|e| match e {
                OciDistributionError::AuthenticationFailure(reason) => {
                    RegistryError::Unauthorized {
                        registry: registry.clone(),
                        reason: format!(
                            "the token service refused the credentials{}: {}",
                            user_of(&auth),
                            one_line(&reason)
                        ),
                    }
                }
                other => RegistryError::Connect {
                    registry: registry.clone(),
                    reason: describe(&other),
                },
            })?;
    }
    let base_url = format!("{scheme}://{registry}");
    Ok(Connection {
        registry,
        client,
        monolithic,
        auth,
        plain_http,
        http: probe,
        base_url,
    })
}

/// What `GET /v2/` answered.
struct Ping {
    status: u16,
    challenge: Option<String>,
}

/// HTTPS, unless it fails and plain HTTP is allowed and answers as a registry.
async fn choose_scheme(
    probe: &reqwest::Client,
    registry: &str,
    plain_allowed: bool,
) -> Result<(bool, Ping)> {
    let https = ping(probe, &format!("https://{registry}/v2/")).await;
    let https_err = match https {
        Ok(p) => return Ok((false, p)),
        Err(e) => error_chain(&e),
    };
    if plain_allowed {
        if let Ok(resp) = probe.get(format!("http://{registry}/v2/")).send().await {
            let status = resp.status().as_u16();
            let challenge = challenge_of(&resp);
            let body = resp.text().await.unwrap_or_default();
            // A TLS server answers plain HTTP with a 400 that says so.
            if !(status == 400 && body.contains("HTTPS")) {
                return Ok((true, Ping { status, challenge }));
            }
        }
    }
    Err(RegistryError::Connect {
        registry: registry.into(),
        reason: if plain_allowed {
            https_err
        } else {
            format!("{https_err} (plain HTTP is used only with --insecure or for localhost)")
        },
    })
}

async fn ping(probe: &reqwest::Client, url: &str) -> reqwest::Result<Ping> {
    let resp = probe
        .get(url)
        .timeout(Duration::from_secs(60))
        .send()
        .await?;
    Ok(Ping {
        status: resp.status().as_u16(),
        challenge: challenge_of(&resp),
    })
}

fn challenge_of(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// For a registry that asks for HTTP Basic auth, tries the credentials once on `/v2/`.
async fn check_credentials(
    probe: &reqwest::Client,
    registry: &str,
    scheme: &str,
    ping: &Ping,
    auth: &RegistryAuth,
) -> Result<()> {
    if ping.status != 401 {
        return Ok(());
    }
    let basic = ping
        .challenge
        .as_deref()
        .is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("basic"));
    match auth {
        RegistryAuth::Anonymous if basic => Err(RegistryError::Unauthorized {
            registry: registry.into(),
            reason: "the registry requires credentials (--username with --password-stdin, \
                or log in with docker login / podman login)"
                .into(),
        }),
        RegistryAuth::Basic(user, password) if basic => {
            let resp = probe
                .get(format!("{scheme}://{registry}/v2/"))
                .basic_auth(user, Some(password))
                .send()
                .await
                .map_err(|e| RegistryError::Connect {
                    registry: registry.into(),
                    reason: error_chain(&e),
                })?;
            if resp.status().as_u16() == 401 {
                return Err(RegistryError::Unauthorized {
                    registry: registry.into(),
                    reason: format!(
                        "the registry refused the credentials of user `{user}` (401 Unauthorized)"
                    ),
                });
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn user_of(auth: &RegistryAuth) -> String {
    match auth {
        RegistryAuth::Basic(user, _) => format!(" of user `{user}`"),
        _ => String::new(),
    }
}

/// An error and its causes on one line (reqwest hides the interesting part in causes).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

/// A registry's text (an error body, a message) for one line: whitespace runs made one
/// space, control characters escaped (none reaches the terminal raw), cut at 300
/// characters.
pub(crate) fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    oci::text::one_line(&s, 300)
}

/// The most bytes of an error body read: its message is cut to one line anyway.
const ERROR_BODY_LIMIT: usize = 64 << 10;

/// The Authorization header for `operation` on `target`: the registry's bearer token when
/// it hands out tokens, else the user's Basic credentials, else none. For the requests
/// made here, not through oci-client.
/// The URL of the manifest `reference` names (by digest, else tag, else `latest`).
pub(crate) fn manifest_url(conn: &Connection, reference: &Reference) -> String {
    let name = reference.digest().or(reference.tag()).unwrap_or("latest");
    format!(
        "{}/v2/{}/manifests/{name}",
        conn.base_url,
        reference.repository()
    )
}

pub(crate) async fn authorization(
    conn: &Connection,
    target: &Reference,
    operation: RegistryOperation,
) -> Result<Option<reqwest::header::HeaderValue>, OciDistributionError> {
    let token = conn.client.auth(target, &conn.auth, operation).await?;
    let value = match (token, &conn.auth) {
        (Some(token), _) => format!("Bearer {token}"),
        (None, RegistryAuth::Basic(user, password)) => {
            use base64::Engine;
            let pair = format!("{user}:{password}");
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        }
        (None, RegistryAuth::Bearer(token)) => format!("Bearer {token}"),
        (None, RegistryAuth::Anonymous) => return Ok(None),
    };
    reqwest::header::HeaderValue::from_str(&value)
        .map(Some)
        .map_err(|e| OciDistributionError::GenericError(Some(e.to_string())))
}

/// Turns an unexpected answer into oci-client's error (its body read up to
/// [`ERROR_BODY_LIMIT`]), so that one mapping to messages and one retry policy serve
/// both paths.
pub(crate) async fn unexpected(mut resp: reqwest::Response) -> OciDistributionError {
    let code = resp.status().as_u16();
    let url = resp.url().to_string();
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk[..chunk.len().min(ERROR_BODY_LIMIT - body.len())]);
        if body.len() >= ERROR_BODY_LIMIT {
            break;
        }
    }
    let message = String::from_utf8_lossy(&body).into_owned();
    OciDistributionError::ServerError { code, url, message }
}

/// The registry's JSON error body as `CODE: message; …`, or the body itself.
fn registry_message(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_str::<Envelope>(body) {
        Ok(env) if !env.errors.is_empty() => env
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        _ => one_line(body),
    }
}

/// The HTTP status (when there was one) and the registry's message, on one line.
pub(crate) fn status_and_message(e: &OciDistributionError) -> (Option<u16>, String) {
    let (status, message) = raw_status_and_message(e);
    (status, one_line(&message))
}

fn raw_status_and_message(e: &OciDistributionError) -> (Option<u16>, String) {
    match e {
        OciDistributionError::ServerError { code, message, .. } => {
            (Some(*code), registry_message(message))
        }
        OciDistributionError::RegistryError { envelope, .. } => {
            // oci-client keeps the registry's error codes but not the status: the codes
            // say it (distribution spec, error codes table).
            let code = |e: &oci_client::errors::OciError| {
                serde_json::to_value(&e.code)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| format!("{:?}", e.code))
            };
            let status = envelope.errors.first().map(|e| match code(e).as_str() {
                "BLOB_UNKNOWN" | "MANIFEST_UNKNOWN" | "NAME_UNKNOWN" | "BLOB_UPLOAD_UNKNOWN" => 404,
                "UNAUTHORIZED" => 401,
                "DENIED" => 403,
                "TOOMANYREQUESTS" => 429,
                "UNSUPPORTED" => 405,
                _ => 400,
            });
            let message = envelope
                .errors
                .iter()
                .map(|e| format!("{}: {}", code(e), e.message))
                .collect::<Vec<_>>()
                .join("; ");
            (status, message)
        }
        OciDistributionError::UnauthorizedError { .. } => {
            (Some(401), "not authorized (check the credentials)".into())
        }
        OciDistributionError::RequestError(err) => {
            (err.status().map(|s| s.as_u16()), error_chain(err))
        }
        other => (None, error_chain(other)),
    }
}

/// A status and message for the user: `500 Internal Server Error: …`.
pub(crate) fn describe(e: &OciDistributionError) -> String {
    let (status, message) = status_and_message(e);
    match status {
        Some(code) => format!("{}: {message}", status_text(code)),
        None => message,
    }
}

pub(crate) fn status_text(code: u16) -> String {
    match reqwest::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{code} {reason}"),
        None => code.to_string(),
    }
}

/// Server errors, throttling and dropped connections may pass; the rest will not.
pub(crate) fn is_transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
        OciDistributionError::RequestError(err) => {
            err.status()
                .is_some_and(|s| s.is_server_error() || s.as_u16() == 429)
                || err.is_connect()
                || err.is_timeout()
                || err.is_request()
                || err.is_body()
        }
        OciDistributionError::IoError(err) => matches!(
            err.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// How often a transient failure is retried, and how long to wait between tries.
pub(crate) const ATTEMPTS: u32 = 5;

/// Runs `op` until it succeeds, fails for good, or has failed [`ATTEMPTS`] times,
/// waiting longer after each failure (0.5 s, 1 s, 2 s, …).
pub(crate) async fn retry<T, F, Fut>(what: &str, mut op: F) -> Result<T, OciDistributionError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, OciDistributionError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                let wait = Duration::from_millis(500 << (attempt - 1));
                tracing::warn!(
                    "{what}: {} (retrying in {:.1} s)",
                    describe(&e),
                    wait.as_secs_f32()
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_may_use_plain_http() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:40000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example:5000"));
        assert!(!is_loopback("10.0.0.1"));
    }

    #[test]
    fn registry_messages_are_read_from_the_error_envelope() {
        let body = r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:00"}]}"#;
        assert_eq!(
            registry_message(body),
            "BLOB_UNKNOWN: blob unknown to registry"
        );
        assert_eq!(registry_message("plain\ntext"), "plain text");
        // Escapes reach no terminal; a long body is cut.
        let (_, message) = status_and_message(&OciDistributionError::ServerError {
            code: 404,
            url: String::new(),
            message: format!("\x1b]0;title\x07{}", "x".repeat(1000)),
        });
        assert!(message.starts_with("\\u{1b}]0;title\\u{7}xxx"), "{message}");
        assert!(message.ends_with('…') && message.chars().count() == 301);
    }
}
