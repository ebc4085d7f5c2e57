//! Image references: `registry/repo:tag`, `registry/repo@sha256:…`.

use super::error::{RegistryError, Result};
use oci_client::Reference;

/// Parses a reference the way Docker does (`repo` alone means Docker Hub's
/// `library/repo`; no tag means `latest`).
pub fn parse_reference(text: &str) -> Result<Reference> {
    text.parse::<Reference>()
        .map_err(|e| RegistryError::BadReference {
            reference: text.into(),
            reason: e.to_string(),
        })
}

/// The same repository, another tag.
pub(crate) fn with_tag(reference: &Reference, tag: &str) -> Result<Reference> {
    let text = format!("{}/{}:{tag}", reference.registry(), reference.repository());
    parse_reference(&text)
}

/// Another repository on the same registry (for cross-repository mounts).
pub(crate) fn sibling(reference: &Reference, repository: &str) -> Result<Reference> {
    let text = format!("{}/{}", reference.registry(), repository);
    parse_reference(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_keep_registry_port_and_tag() {
        let r = parse_reference("127.0.0.1:5000/fleet/web01:v1").unwrap();
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
        let err = parse_reference("Not A Reference").unwrap_err().to_string();
        assert!(err.contains("Not A Reference"), "{err}");
    }
}
