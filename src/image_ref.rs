//! IMAGE arguments of `run` and `verify`: a local OCI layout or archive, or a registry
//! reference, pulled first into a temporary layout under the runtime's directory (its
//! layers then land in the layer cache, keyed by digest, like any other image's).

use crate::flags::RegistryArgs;
use anyhow::{Context, Result};
use oci::layout::OutputFormat;
use oci::reference::{is_registry_reference, split_image_arg};
use registry::{self, PullOptions};
use std::path::{Path, PathBuf};

/// An image ready to open; a pulled one is removed when this is dropped.
pub struct LocalImage {
    /// What to hand to the runtime: `PATH` or `PATH:TAG`.
    pub reference: String,
    pulled: Option<PathBuf>,
}

impl Drop for LocalImage {
    fn drop(&mut self) {
        if let Some(dir) = &self.pulled {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub fn resolve(arg: &str, registry: &RegistryArgs, root: &Path) -> Result<LocalImage> {
    if split_image_arg(arg).0.exists() || !is_registry_reference(arg) {
        return Ok(LocalImage {
            reference: arg.to_string(),
            pulled: None,
        });
    }
    // The pull lands under the runtime's directory: private before anything is written.
    runtime::private_dir::ensure(root)?;
    let dir = root.join("pulls");
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let out = dir.join(format!("image-{}", std::process::id()));
    let options = PullOptions {
        connect: registry.connect_options()?,
        output: out.clone(),
        format: OutputFormat::Oci,
        force: true,
        tag: None,
    };
    eprintln!("rehost: pulling {arg}");
    let image = LocalImage {
        reference: out.display().to_string(),
        pulled: Some(out),
    };
    registry::pull(arg, &options, &|_, _| {}).with_context(|| format!("pulling {arg}"))?;
    Ok(image)
}
