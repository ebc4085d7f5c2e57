//! The flags several commands share: where the runtime keeps containers and which
//! engine runs them, and how to reach a registry.

use anyhow::{bail, Context, Result};
use registry::ConnectOptions;
use runtime::Runtime;
use std::io::BufRead;
use std::path::PathBuf;

/// Where containers live and which engine runs them.
#[derive(clap::Args, Clone)]
pub struct RuntimeArgs {
    /// The runtime's directory: layer cache and containers [default: /var/lib/rehost as root].
    #[arg(long, env = "REHOST_ROOT", value_name = "DIR", global = true)]
    pub root: Option<PathBuf>,
    /// The engine that runs new containers: embedded (youki's libcontainer inside
    /// rehost, nothing to install), or an external OCI runtime handed the same bundle:
    /// runc or a path to a compatible program. A container keeps the engine it was made with.
    #[arg(
        long,
        env = "REHOST_OCI_RUNTIME",
        default_value = "embedded",
        value_name = "embedded|runc|PATH",
        global = true
    )]
    pub oci_runtime: String,
}

impl RuntimeArgs {
    pub fn runtime(&self) -> Runtime {
        Runtime::new(
            self.root.clone().unwrap_or_else(runtime::default_root),
            &self.oci_runtime,
        )
    }
}

/// How to reach and log in to a registry (shared by push and pull).
#[derive(clap::Args, Clone)]
pub struct RegistryArgs {
    /// User name for the registry (with --password-stdin). Without it, the credentials
    /// from `docker login` / `podman login` (config.json, auth.json, credential helpers)
    /// are used when there are some.
    #[arg(long, value_name = "USER", requires = "password_stdin")]
    username: Option<String>,
    /// Read the password (or token) from standard input.
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Trust this certificate authority (PEM) too, for a registry with a private CA.
    #[arg(long, value_name = "FILE")]
    ca_cert: Vec<PathBuf>,
    /// Allow plain HTTP and unverified certificates (always allowed for localhost).
    #[arg(long)]
    insecure: bool,
    /// Blobs sent or fetched at once.
    #[arg(long, default_value_t = 3, value_name = "N")]
    jobs: usize,
}

impl RegistryArgs {
    pub fn connect_options(&self) -> Result<ConnectOptions> {
        let credentials = match &self.username {
            Some(user) => {
                let mut password = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut password)
                    .context("reading the password from standard input")?;
                let password = password.trim_end_matches(['\r', '\n']).to_string();
                if password.is_empty() {
                    bail!("--password-stdin: standard input holds no password");
                }
                Some((user.clone(), password))
            }
            None => None,
        };
        Ok(ConnectOptions {
            insecure: self.insecure,
            ca_certs: self.ca_cert.clone(),
            credentials,
            jobs: self.jobs.max(1),
        })
    }
}
