//! The image builder: the tree streamed into a tar layer (or into layers by package), compressed in parallel, and
//! written with its config and manifest as an OCI image layout (through the `oci` crate's
//! tar and layout writers).

pub mod acl;
pub mod compress;
pub mod cut;
pub mod gzip;
pub mod layer;
pub mod packages;
pub mod rich;
mod spool;

pub use compress::{Compression, UnknownCompression};
pub use layer::{build_layer, BuiltLayer, LayerOptions, LayerStats, Progress};
