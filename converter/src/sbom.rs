//! Software bills of materials of a server, from the inventory's package ownership:
//! SPDX 2.3 JSON and CycloneDX 1.5 JSON. Each lists the installed packages (with a
//! package URL), the places that hold files no package installed, and the package files
//! changed since installation, so the document also says what a scanner cannot vouch for.

use crate::inventory::ownership::{Ownership, Package};
use crate::inventory::Inventory;
use serde_json::{json, Value};

/// The document's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Spdx,
    CycloneDx,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "spdx" | "spdx-json" => Ok(Format::Spdx),
            "cyclonedx" | "cyclonedx-json" => Ok(Format::CycloneDx),
            _ => Err(format!("unknown SBOM format `{s}` (spdx, cyclonedx)")),
        }
    }
}

/// What the document describes.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The image's name (`web01:v1`).
    pub name: String,
    /// The image's manifest digest: names the document and makes it reproducible.
    pub digest: String,
    /// RFC 3339, the image's creation time.
    pub created: String,
}

/// The document for `subject`, from `inv` (which needs its package ownership).
pub fn document(format: Format, subject: &Subject, inv: &Inventory) -> Option<Value> {
    let o = inv.ownership.as_ref()?;
    Some(match format {
        Format::Spdx => spdx(subject, inv, o),
        Format::CycloneDx => cyclonedx(subject, inv, o),
    })
}

/// A package URL (purl): `pkg:deb/debian/nginx@1.22.1-9?arch=amd64`.
pub fn purl(manager: &str, distro: &str, p: &Package) -> String {
    let kind = match manager {
        "dpkg" => "deb",
        other => other,
    };
    // rpm's epoch is a qualifier of its purl, not part of the version.
    let (epoch, version) = match p.version.split_once(':') {
        Some((e, v)) if kind == "rpm" && e.bytes().all(|b| b.is_ascii_digit()) => (Some(e), v),
        _ => (None, p.version.as_str()),
    };
    let mut out = format!(
        "pkg:{kind}/{}/{}@{}",
        encode(distro),
        encode(&p.name),
        encode(version)
    );
    let mut qualifiers = Vec::new();
    if !p.architecture.is_empty() {
        qualifiers.push(format!("arch={}", encode(&p.architecture)));
    }
    if let Some(e) = epoch {
        qualifiers.push(format!("epoch={e}"));
    }
    if !qualifiers.is_empty() {
        out.push('?');
        out.push_str(&qualifiers.join("&"));
    }
    out
}

/// Percent-encodes all but the characters a purl component may hold as they are.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An SPDX identifier's tail: letters, digits, `.` and `-` only.
fn spdx_id(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn changed_of<'a>(o: &'a Ownership, package: &str) -> Vec<&'a str> {
    o.changed
        .iter()
        .filter(|c| c.package == package)
        .map(|c| c.path.as_str())
        .collect()
}

fn spdx(subject: &Subject, inv: &Inventory, o: &Ownership) -> Value {
    let hex = subject.digest.trim_start_matches("sha256:");
    let mut packages = vec![json!({
        "name": subject.name,
        "SPDXID": "SPDXRef-Image",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{ "algorithm": "SHA256", "checksumValue": hex }],
        "comment": format!(
            "{}; {} files from no package ({} bytes), {} package files changed since installation",
            inv.os.pretty_name, o.unowned.files, o.unowned.bytes, o.changed_files
        ),
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    for (i, p) in o.installed.iter().enumerate() {
        let id = format!("SPDXRef-Package-{i}-{}", spdx_id(&p.name));
        let mut pkg = json!({
            "name": p.name,
            "SPDXID": id,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl(&o.manager, &inv.os.id, p),
            }],
        });
        let changed = changed_of(o, &p.name);
        if !changed.is_empty() {
            pkg["comment"] = json!(format!(
                "changed since installation: {}",
                changed.join(", ")
            ));
        }
        packages.push(pkg);
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    for (i, place) in o.unowned.largest_directories.iter().enumerate() {
        let id = format!("SPDXRef-Unpackaged-{i}");
        packages.push(json!({
            "name": place.path,
            "SPDXID": id,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "OTHER",
            "comment": format!("not from a package: {} bytes of files no package installed", place.bytes),
        }));
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": subject.name,
        "documentNamespace": format!("https://spdx.org/spdxdocs/rehost-{}-{hex}", spdx_id(&subject.name)),
        "creationInfo": {
            "created": subject.created,
            "creators": [format!("Tool: rehost-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

fn cyclonedx(subject: &Subject, inv: &Inventory, o: &Ownership) -> Value {
    let hex = subject.digest.trim_start_matches("sha256:");
    // A UUID from the digest: the same image gives the same serial number.
    let serial = format!(
        "urn:uuid:{}-{}-4{}-8{}-{}",
        &hex.get(0..8).unwrap_or("00000000"),
        &hex.get(8..12).unwrap_or("0000"),
        &hex.get(13..16).unwrap_or("000"),
        &hex.get(17..20).unwrap_or("000"),
        &hex.get(20..32).unwrap_or("000000000000"),
    );
    let mut components: Vec<Value> = o
        .installed
        .iter()
        .map(|p| {
            let purl = purl(&o.manager, &inv.os.id, p);
            let mut c = json!({
                "type": "library",
                "bom-ref": purl,
                "name": p.name,
                "version": p.version,
                "purl": purl,
            });
            let changed = changed_of(o, &p.name);
            if !changed.is_empty() {
                c["properties"] = changed
                    .iter()
                    .map(|path| json!({ "name": "rehost:changed-file", "value": path }))
                    .collect();
            }
            c
        })
        .collect();
    for (i, place) in o.unowned.largest_directories.iter().enumerate() {
        components.push(json!({
            "type": "file",
            "bom-ref": format!("unpackaged-{i}"),
            "name": place.path,
            "description": "files no package installed",
            "properties": [{ "name": "rehost:unpackaged-bytes", "value": place.bytes.to_string() }],
        }));
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": serial,
        "version": 1,
        "metadata": {
            "timestamp": subject.created,
            "tools": { "components": [{
                "type": "application",
                "name": "rehost",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": {
                "type": "container",
                "bom-ref": "image",
                "name": subject.name,
                "hashes": [{ "alg": "SHA-256", "content": hex }],
                "description": inv.os.pretty_name,
            },
            "properties": [
                { "name": "rehost:unpackaged-files", "value": o.unowned.files.to_string() },
                { "name": "rehost:unpackaged-bytes", "value": o.unowned.bytes.to_string() },
                { "name": "rehost:changed-package-files", "value": o.changed_files.to_string() },
            ],
        },
        "components": components,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_encode_what_they_must() {
        let p = Package {
            name: "libc6".into(),
            version: "1:2.36+deb12u4".into(),
            architecture: "amd64".into(),
            installed_size: 0,
        };
        assert_eq!(
            purl("dpkg", "debian", &p),
            "pkg:deb/debian/libc6@1%3A2.36%2Bdeb12u4?arch=amd64"
        );
    }
}
