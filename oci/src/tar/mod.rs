//! Tar as OCI layers and archives carry it: the one deterministic writer (PAX, long names,
//! xattrs, PAX 1.0 sparse files).

pub mod sparse;
mod write;

pub use write::{ExtentReader, TarWriter};
