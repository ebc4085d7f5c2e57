//! Reading an image to run: an OCI image layout directory or an OCI archive (the same
//! layout in one tar), optionally `:TAG`, through the one layout reader of the `oci`
//! crate. Archives are read in place and blobs streamed from there.

use crate::error::{Error, Result};
use oci::image::{Descriptor, ImageConfig, Manifest};
use oci::layout::Layout;
use oci::reference::split_image_arg;
use std::io::Read;
use std::path::PathBuf;

/// An image opened for running.
pub struct Image {
    /// The path the user named (without the tag).
    pub path: PathBuf,
    pub manifest_digest: String,
    pub manifest: Manifest,
    pub config: ImageConfig,
    layout: Layout,
}

impl Image {
    /// Opens `PATH` or `PATH:TAG`. A path that exists as written is taken whole, so
    /// paths containing `:` still work.
    pub fn open(reference: &str) -> Result<Image> {
        let (path, tag) = split_image_arg(reference);
        let layout = Layout::open(&path)?;
        let chosen = layout.manifest(tag.as_deref())?;
        let bad = |reason: String| Error::BadImage {
            path: path.clone(),
            reason,
        };
        let config = layout.config(&chosen.manifest)?;
        if config.rootfs.diff_ids.len() != chosen.manifest.layers.len() {
            return Err(bad(format!(
                "config lists {} layers, manifest {}",
                config.rootfs.diff_ids.len(),
                chosen.manifest.layers.len()
            )));
        }
        Ok(Image {
            path,
            manifest_digest: chosen.descriptor.digest,
            manifest: chosen.manifest,
            config,
            layout,
        })
    }

    /// A stream of the blob's bytes, no more than its descriptor's size; the caller
    /// hashes what it reads.
    pub fn blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(self.layout.open_blob(desc)?))
    }
}
