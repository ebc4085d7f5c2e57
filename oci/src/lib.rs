//! rehost's OCI crate: what an image is, on disk and by name, shared by the builder
//! (`converter`), the registry client (`registry`) and the runtime (`runtime`).
//!
//! - [`image`]: the OCI image types (descriptor, manifest, config, index);
//! - [`digest`]: sha256 digests of what streams through;
//! - [`layout`]: the one reader and writer of OCI image layouts and oci-archives;
//! - [`tar`]: the one tar reader and writer of layers and archives;
//! - [`cleanup`]: what an interrupt must undo;
//! - [`entry`]: one filesystem entry, as sources describe it and tar carries it;
//! - [`text`]: untrusted text fit for a one-line message;
//! - [`reference`]: image references (`registry/repo:tag`) and local `PATH[:TAG]`;
//! - [`contract`]: what builder and runtime agree on inside an image (labels, the
//!   init's path, the init modes).
//!
//! It depends on no other rehost crate and holds no async code.

pub mod cleanup;
pub mod contract;
pub mod digest;
pub mod entry;
pub mod error;
pub mod image;
pub mod layout;
pub mod reference;
pub mod tar;
pub mod text;

pub use error::{Error, Result};
