//! What an IMAGE argument names: a registry reference (`registry/repo:tag`,
//! `registry/repo@sha256:…`), parsed the way Docker does, or a local layout or archive,
//! `PATH[:TAG]`.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// A parsed registry reference. The registry client takes this very type.
pub use oci_spec::distribution::Reference;

/// Parses a reference the way Docker does (`repo` alone means Docker Hub's
/// `library/repo`; no tag means `latest`).
pub fn parse(text: &str) -> Result<Reference> {
    text.parse::<Reference>().map_err(|e| Error::BadReference {
        reference: text.into(),
        reason: e.to_string(),
    })
}

/// The same repository, another tag.
pub fn with_tag(reference: &Reference, tag: &str) -> Result<Reference> {
    parse(&format!(
        "{}/{}:{tag}",
        reference.registry(),
        reference.repository()
    ))
}

/// Another repository on the same registry (for cross-repository mounts).
pub fn sibling(reference: &Reference, repository: &str) -> Result<Reference> {
    parse(&format!("{}/{}", reference.registry(), repository))
}

/// Whether `arg` names a registry: `HOST[:PORT]/REPO…` where HOST has a dot or a port,
/// or is `localhost` (as Docker tells a registry from a Docker Hub user name). Anything
/// else is a local path, so a missing file gets its own clear error.
pub fn is_registry_reference(arg: &str) -> bool {
    let Some((host, rest)) = arg.split_once('/') else {
        return false;
    };
    !rest.is_empty()
        && (host.contains('.') || host.contains(':') || host == "localhost")
        && !host.starts_with('.')
        && parse(arg).is_ok()
}

/// Splits a local `IMAGE[:TAG]`: the whole argument when it exists, else the part before
/// the last `:` when that exists (a tag has no `/`).
pub fn split_image_arg(arg: &str) -> (PathBuf, Option<String>) {
    if Path::new(arg).exists() {
        return (PathBuf::from(arg), None);
    }
    if let Some((path, tag)) = arg.rsplit_once(':') {
        if !tag.is_empty() && !tag.contains('/') && Path::new(path).exists() {
            return (PathBuf::from(path), Some(tag.to_string()));
        }
    }
    (PathBuf::from(arg), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_keep_registry_port_and_tag() {
        let r = parse("127.0.0.1:5000/fleet/web01:v1").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "fleet/web01");
        assert_eq!(r.tag(), Some("v1"));
        let t = with_tag(&r, "v2").unwrap();
        assert_eq!(t.whole(), "127.0.0.1:5000/fleet/web01:v2");
        let s = sibling(&r, "base/debian").unwrap();
        assert_eq!(s.repository(), "base/debian");
    }

    #[test]
    fn bad_references_are_refused_with_the_text() {
        let err = parse("Not A Reference").unwrap_err().to_string();
        assert!(err.contains("Not A Reference"), "{err}");
    }

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

    #[test]
    fn image_arguments_may_name_a_tag() {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("web01.oci");
        std::fs::create_dir(&layout).unwrap();
        let text = layout.to_str().unwrap();
        assert_eq!(split_image_arg(text), (layout.clone(), None));
        assert_eq!(
            split_image_arg(&format!("{text}:v1")),
            (layout.clone(), Some("v1".into()))
        );
        let missing = format!("{}/none:v1", dir.path().display());
        assert_eq!(split_image_arg(&missing), (PathBuf::from(&missing), None));
    }
}
