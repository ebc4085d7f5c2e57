//! rehost's bundled rich runtime: an OCI image becomes a rootfs (cached, digest-checked
//! layers under overlayfs) and an OCI runtime config for a rich mode; an engine runs the
//! bundle; `verify` boots it and checks every service.
//!
//! It reads images through the `oci` crate only (the layout reader, the image contract):
//! it never depends on `converter` or `registry`, so it carries no async code; a
//! registry reference is pulled by the command before the runtime sees it.

pub mod confined;
pub mod console;
pub mod container;
pub mod deploy;
pub mod embedded;
pub mod engine;
pub mod error;
pub mod image;
pub mod layers;
pub mod modes;
pub mod ports;
pub mod private_dir;
pub mod rootfs;
pub mod sidecar;
pub mod signals;
pub mod spec;
pub mod tail;
pub mod unpack;
pub mod verify;

pub use container::{default_root, RunRequest, Runtime};
pub use error::{Error, Result};
pub use image::Image;
pub use modes::InitMode;
pub use ports::PortMapping;
