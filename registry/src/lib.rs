//! rehost's registry client: images to and from OCI registries.
//!
//! - [`push()`]: an image layout or archive to `registry/repo:tag`, each blob checked first
//!   (HEAD) and skipped when the registry has it, mounted from another repository when
//!   asked, else streamed from disk in one PATCH (one PUT where the registry takes no
//!   chunks); the manifest sent as the very bytes on disk, so its
//!   digest in the registry is the one `convert` printed;
//! - [`pull()`]: a reference back into an image layout or archive, every blob checked
//!   against its digest.
//!
//! Built on oci-client (one HTTP stack: reqwest). Its async runtime stays inside this
//! crate, the only async code of rehost: [`push()`] and [`pull()`] are plain blocking
//! functions. It may depend on `oci` (image types, the layout reader and writer), and on
//! no other rehost crate.

pub mod auth;
mod client;
mod error;
mod memory;
mod pull;
mod push;
mod referrer;
mod upload;

pub use client::ConnectOptions;
pub use error::{RegistryError, Result};
pub use memory::BlobMemory;
pub use pull::{config, pull, PullOptions, PullSummary};
pub use push::{push, BlobAction, BlobReport, PushEvent, PushOptions, PushSummary};
pub use referrer::{attach, Attached};

/// A runtime for one command; small, since the work is I/O.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| RegistryError::io("tokio runtime", e))
}
