//! IMAGE arguments of `run` and `verify`: a local OCI layout or archive, or a registry
//! reference, pulled first into a temporary layout under the runtime's directory (its
//! layers then land in the layer cache, keyed by digest, like any other image's).

use crate::push::RegistryArgs;
use anyhow::{Context, Result};
use converter::image::OutputFormat;
use converter::registry::{self, PullOptions};
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

/// Whether `arg` names a registry: `HOST[:PORT]/REPO…` where HOST has a dot or a port,
/// or is `localhost` (as Docker tells a registry from a Docker Hub user name). Anything
/// else is a local path, so a missing file gets its own clear error.
fn is_registry_reference(arg: &str) -> bool {
    let Some((host, rest)) = arg.split_once('/') else {
        return false;
    };
    !rest.is_empty()
        && (host.contains('.') || host.contains(':') || host == "localhost")
        && !host.starts_with('.')
        && registry::parse_reference(arg).is_ok()
}

/// The path part of `PATH[:TAG]`, as the runtime splits it.
fn local_path(arg: &str) -> &Path {
    if Path::new(arg).exists() {
        return Path::new(arg);
    }
    Path::new(arg.rsplit_once(':').map_or(arg, |(p, _)| p))
}

pub fn resolve(arg: &str, registry: &RegistryArgs, root: &Path) -> Result<LocalImage> {
    if local_path(arg).exists() || !is_registry_reference(arg) {
        return Ok(LocalImage {
            reference: arg.to_string(),
            pulled: None,
        });
    }
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

#[cfg(test)]
mod tests {
    use super::is_registry_reference;

    #[test]
    fn registry_references_are_told_from_paths() {
        assert!(is_registry_reference("127.0.0.1:5000/fleet/web01:v1"));
        assert!(is_registry_reference("registry.example/fleet/web01@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
        assert!(is_registry_reference("localhost/web01"));
        assert!(!is_registry_reference("web01.oci"));
        assert!(!is_registry_reference("images/web01.oci"));
        assert!(!is_registry_reference("./out/web01.oci:v1"));
        assert!(!is_registry_reference("/srv/images/web01.oci"));
    }
}
