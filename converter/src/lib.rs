//! rehost's converter: everything between a server's filesystem and an OCI image.
//!
//! - [`source`]: one read-only view of a filesystem, whatever holds it (directory,
//!   live root, archive, disk image);
//! - [`inventory`]: what the server is and runs;
//! - [`plan`]: the decisions about it, the builder's input;
//! - [`profile`]: the data-driven defaults (excludes and their reasons);
//! - [`image`]: the image builder (tar layers, compression, the rich layer);
//! - [`report`]: the inspect report (also made on a server by the ssh helper).
//!
//! It may depend on `oci` (image types, the tar and layout writers), `diskimage` (disk
//! formats and ext4, under the disk source's adapter) and `init` (the service model);
//! never on `registry` or `runtime`, and it holds no async code.

pub mod convert;
pub mod error;
pub mod image;
pub mod inventory;
pub mod plan;
pub mod profile;
pub mod report;
pub mod sbom;
pub mod source;

pub use error::{Error, Result};
/// The sources' entries are the `oci` crate's, which the tar writer takes as they are.
pub use oci::entry::{self, Entry, Kind};
