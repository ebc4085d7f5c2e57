//! rehost's bundled rich runtime: an OCI image becomes a rootfs (cached, digest-checked
//! layers under overlayfs) and an OCI runtime config for a rich mode; an engine runs the
//! bundle; `verify` boots it and checks every service.

pub mod error;
pub mod image;
pub mod layers;
pub mod rootfs;
pub mod unpack;

pub use error::{Error, Result};
pub use image::Image;
