//! Attaching a document (an SBOM) to an image in a registry as an OCI referrer: an
//! artifact manifest whose `subject` is the image's manifest. A registry with the
//! referrers API indexes it itself (it answers the PUT with `OCI-Subject`); for one
//! without, the referrers tag schema's index, tagged `sha256-HEX` of the image's digest,
//! gets the artifact's descriptor, as OCI distribution 1.1 says.

use crate::client::{self, authorization, connect, ConnectOptions, Connection};
use crate::error::{RegistryError, Result};
use oci::digest;
use oci::image::{Descriptor, Index, MAX_JSON, MEDIA_INDEX, MEDIA_MANIFEST};
use oci::reference::parse as parse_reference;
use oci_client::{Reference, RegistryOperation};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use std::collections::BTreeMap;

/// The empty config of an artifact manifest.
const MEDIA_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const EMPTY: &[u8] = b"{}";

/// What was attached, and how the registry indexed it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attached {
    /// The artifact manifest's digest.
    pub digest: String,
    pub artifact_type: String,
    /// `referrers-api`, or `tag-schema` (the `sha256-HEX` index was written).
    pub indexed_by: String,
}

/// Attaches `document` (of media type `artifact_type`) to the image `reference` names,
/// whose manifest is `subject`.
pub fn attach(
    reference: &str,
    subject: &Descriptor,
    artifact_type: &str,
    document: &[u8],
    annotations: BTreeMap<String, String>,
    options: &ConnectOptions,
) -> Result<Attached> {
    let target = parse_reference(reference)?;
    super::runtime()?.block_on(async {
        let conn = connect(&target, options, RegistryOperation::Push).await?;
        for bytes in [EMPTY, document] {
            let d = digest::of(bytes);
            let exists = client::retry(&d, || conn.client.blob_exists(&target, &d))
                .await
                .map_err(|e| crate::push::blob_error(&conn, &d, &e))?;
            if !exists {
                client::retry(&d, || conn.monolithic.push_blob(&target, bytes.to_vec(), &d))
                    .await
                    .map_err(|e| crate::push::blob_error(&conn, &d, &e))?;
            }
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "artifactType": artifact_type,
            "config": { "mediaType": MEDIA_EMPTY, "digest": digest::of(EMPTY), "size": EMPTY.len() },
            "layers": [{
                "mediaType": artifact_type,
                "digest": digest::of(document),
                "size": document.len(),
            }],
            "subject": { "mediaType": subject.media_type, "digest": subject.digest, "size": subject.size },
            "annotations": annotations,
        });
        let bytes = serde_json::to_vec(&manifest).expect("a manifest serializes");
        let manifest_digest = digest::of(&bytes);
        let by_digest = target.clone_with_digest(manifest_digest.clone());
        let headers = put_manifest(&conn, &by_digest, &bytes, MEDIA_MANIFEST).await?;
        let indexed_by = if headers.contains_key("oci-subject") {
            "referrers-api"
        } else {
            let descriptor = Descriptor {
                media_type: MEDIA_MANIFEST.into(),
                digest: manifest_digest.clone(),
                size: bytes.len() as u64,
                annotations: BTreeMap::new(),
                platform: None,
            };
            add_to_tag_index(&conn, &target, subject, descriptor, artifact_type).await?;
            "tag-schema"
        };
        Ok(Attached {
            digest: manifest_digest,
            artifact_type: artifact_type.into(),
            indexed_by: indexed_by.into(),
        })
    })
}

/// The referrers tag schema: the index tagged `sha256-HEX` gets `artifact` (and keeps
/// what it listed).
async fn add_to_tag_index(
    conn: &Connection,
    target: &Reference,
    subject: &Descriptor,
    artifact: Descriptor,
    artifact_type: &str,
) -> Result<()> {
    let tag = subject.digest.replace(':', "-");
    let tagged = Reference::with_tag(
        target.registry().to_string(),
        target.repository().to_string(),
        tag,
    );
    let mut index = match get_index(conn, &tagged).await? {
        Some(i) => i,
        None => Index {
            schema_version: 2,
            media_type: Some(MEDIA_INDEX.into()),
            manifests: Vec::new(),
            annotations: BTreeMap::new(),
        },
    };
    if !index.manifests.iter().any(|m| m.digest == artifact.digest) {
        // The index's descriptors carry `artifactType`, which `Descriptor` has no field
        // for: the index is written as JSON with it added.
        index.manifests.push(artifact);
    }
    let mut value = serde_json::to_value(&index).expect("an index serializes");
    if let Some(list) = value["manifests"].as_array_mut() {
        for m in list.iter_mut() {
            if m.get("artifactType").is_none() {
                m["artifactType"] = artifact_type.into();
            }
        }
    }
    let bytes = serde_json::to_vec(&value).expect("an index serializes");
    put_manifest(conn, &tagged, &bytes, MEDIA_INDEX).await?;
    Ok(())
}

/// The index tagged `reference`, `None` when there is none.
async fn get_index(conn: &Connection, reference: &Reference) -> Result<Option<Index>> {
    let fail = |message: String| RegistryError::Manifest {
        reference: reference.whole(),
        status: String::new(),
        message,
    };
    let auth = authorization(conn, reference, RegistryOperation::Pull)
        .await
        .map_err(|e| fail(client::describe(&e)))?;
    let url = client::manifest_url(conn, reference);
    let mut req = conn.http.get(url).header(ACCEPT, MEDIA_INDEX);
    if let Some(h) = auth {
        req = req.header(AUTHORIZATION, h);
    }
    let resp = req.send().await.map_err(|e| fail(e.to_string()))?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    if resp.content_length().is_some_and(|n| n > MAX_JSON) {
        return Err(fail("the referrers index is too large (refused)".into()));
    }
    let bytes = resp.bytes().await.map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > MAX_JSON {
        return Err(fail("the referrers index is too large (refused)".into()));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| fail(format!("the referrers index is not an index: {e}")))
}

/// PUTs a manifest, giving the response's headers.
async fn put_manifest(
    conn: &Connection,
    reference: &Reference,
    bytes: &[u8],
    media_type: &str,
) -> Result<reqwest::header::HeaderMap> {
    let fail = |status: String, message: String| RegistryError::Manifest {
        reference: reference.whole(),
        status,
        message,
    };
    let auth = authorization(conn, reference, RegistryOperation::Push)
        .await
        .map_err(|e| fail(String::new(), client::describe(&e)))?;
    let url = client::manifest_url(conn, reference);
    let mut req = conn
        .http
        .put(url)
        .header(CONTENT_TYPE, media_type)
        .body(bytes.to_vec());
    if let Some(h) = auth {
        req = req.header(AUTHORIZATION, h);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| fail(String::new(), e.to_string()))?;
    if !resp.status().is_success() {
        let status = format!("{}: ", resp.status());
        let body = resp.text().await.unwrap_or_default();
        return Err(fail(status, oci::text::one_line(&body, 300)));
    }
    Ok(resp.headers().clone())
}
