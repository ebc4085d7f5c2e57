//! The image builder: the tree streamed into a tar layer, compressed in parallel, and
//! written with its config and manifest as an OCI image layout.

pub mod acl;
pub mod compress;
pub mod digest;
pub mod layer;
pub mod layout;
pub mod oci;
pub mod rich;
pub mod tar;

pub use compress::Compression;
pub use layer::{build_layer, BuiltLayer, LayerOptions, LayerStats, Progress};
pub use layout::{Layout, LayoutWriter, OutputFormat};
