//! OCI image layouts: a directory, or the same layout in one tar file (an oci-archive).
//! One writer ([`LayoutWriter`]: temporary name, renamed into place) and one reader
//! ([`Layout`]: directory or archive read in place, blobs streamed and checked).

mod read;
mod write;

pub use read::{parse_config, parse_manifest, select, BlobLocation, Layout, LayoutManifest};
pub use write::{BlobWriter, LayoutWriter, OutputFormat, UnknownFormat};
