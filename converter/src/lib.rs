//! rehost's converter: everything between a server's filesystem and an OCI image.
//!
//! - [`source`]: one read-only view of a filesystem, whatever holds it (directory,
//!   live root, archive);
//! - [`profile`]: the data-driven defaults (excludes and their reasons);
//! - [`image`]: the image builder (tar layers, compression, OCI layout);
//! - [`registry`]: images to and from OCI registries (push, pull).

pub mod convert;
pub mod entry;
pub mod error;
pub mod image;
pub mod inventory;
pub mod plan;
pub mod profile;
pub mod registry;
pub mod source;

pub use entry::{Entry, Kind};
pub use error::{Error, Result};
