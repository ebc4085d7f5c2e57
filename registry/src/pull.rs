//! `pull`: a reference from a registry into an image layout or archive, every blob
//! checked against its digest, written under a temporary name until complete.

use crate::client::{self, connect, status_and_message, ConnectOptions, Connection};
use crate::error::{RegistryError, Result};
use futures_util::StreamExt;
use oci::digest;
use oci::image::{
    Descriptor, ImageConfig, Index, Manifest, Platform, MAX_JSON, MEDIA_INDEX, MEDIA_MANIFEST,
};
use oci::layout::{BlobWriter, LayoutWriter, OutputFormat};
use oci::reference::parse as parse_reference;
use oci_client::errors::OciDistributionError;
use oci_client::{Reference, RegistryOperation};
use reqwest::header::{ACCEPT, AUTHORIZATION};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

#[derive(Debug, Clone)]
pub struct PullOptions {
    pub connect: ConnectOptions,
    pub output: PathBuf,
    pub format: OutputFormat,
    /// Replace the output if it exists.
    pub force: bool,
    /// The image's name in the layout (default: the reference's tag).
    pub tag: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PulledBlob {
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PullSummary {
    pub reference: String,
    pub output: PathBuf,
    pub format: OutputFormat,
    pub tag: String,
    pub manifest_digest: String,
    pub blobs: Vec<PulledBlob>,
    pub bytes_downloaded: u64,
    pub seconds: f64,
}

/// Pulls `reference` into `options.output`. `progress` gets the byte count as it grows.
/// This is also what `rehost verify REF` uses to get an image to verify.
pub fn pull(
    reference: &str,
    options: &PullOptions,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<PullSummary> {
    let started = Instant::now();
    let source = parse_reference(reference)?;
    let writer = LayoutWriter::create(&options.output, options.format, options.force)?;
    super::runtime()?.block_on(async {
        let conn = connect(&source, &options.connect, RegistryOperation::Pull).await?;
        let (bytes, media_type, digest) = fetch_image_manifest(&conn, &source).await?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::BadContent {
                reference: source.whole(),
                reason: format!("not an image manifest: {e}"),
            })?;
        if manifest.config.size > MAX_JSON {
            return Err(RegistryError::BadContent {
                reference: source.whole(),
                reason: format!(
                    "its config is {} bytes, more than the {} MiB a config may have (refused)",
                    manifest.config.size,
                    MAX_JSON >> 20
                ),
            });
        }
        let mut blobs: Vec<&Descriptor> = Vec::new();
        for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
            if !blobs.iter().any(|b| b.digest == d.digest) {
                blobs.push(d);
            }
        }
        let total: u64 = blobs.iter().map(|d| d.size).sum();
        let mut done = 0u64;
        let mut config = Vec::new();
        for desc in &blobs {
            // The config is small: kept to name the image's platform in index.json.
            let keep = (desc.digest == manifest.config.digest).then_some(&mut config);
            pull_blob(&conn, &source, &writer, desc, keep, &mut |n| {
                done = done.wrapping_add(n);
                progress(done, total);
            })
            .await?;
        }
        let mut descriptor = writer.add_bytes(&media_type, &bytes)?;
        if let Ok(c) = serde_json::from_slice::<ImageConfig>(&config) {
            if !c.architecture.is_empty() && !c.os.is_empty() {
                descriptor.platform = Some(Platform {
                    architecture: c.architecture,
                    os: c.os,
                });
            }
        }
        debug_assert_eq!(descriptor.digest, digest);
        let tag = options
            .tag
            .clone()
            .or_else(|| source.tag().map(str::to_string))
            .unwrap_or_else(|| "latest".into());
        writer.commit(descriptor, &tag)?;
        Ok(PullSummary {
            reference: source.whole(),
            output: options.output.clone(),
            format: options.format,
            tag,
            manifest_digest: digest,
            blobs: blobs
                .iter()
                .map(|d| PulledBlob {
                    digest: d.digest.clone(),
                    size: d.size,
                })
                .collect(),
            bytes_downloaded: total,
            seconds: started.elapsed().as_secs_f64(),
        })
    })
}

/// An image's manifest digest and config, read from the registry without its layers (for
/// `rehost deploy REF`); the config is bounded by [`MAX_JSON`] and checked against its
/// digest.
pub fn config(reference: &str, options: &ConnectOptions) -> Result<(String, ImageConfig)> {
    let source = parse_reference(reference)?;
    super::runtime()?.block_on(async {
        let conn = connect(&source, options, RegistryOperation::Pull).await?;
        let (bytes, _, digest) = fetch_image_manifest(&conn, &source).await?;
        let bad = |reason: String| RegistryError::BadContent {
            reference: source.whole(),
            reason,
        };
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("not an image manifest: {e}")))?;
        let desc = &manifest.config;
        if desc.size > MAX_JSON || !digest::is_valid(&desc.digest) {
            return Err(bad(format!(
                "its config descriptor ({}, {} bytes) is refused",
                desc.digest, desc.size
            )));
        }
        let mut body = conn
            .client
            .pull_blob_stream(&source, desc.digest.as_str())
            .await
            .map_err(|e| bad(format!("its config: {}", client::describe(&e))))?;
        let mut config = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| bad(format!("its config: {e}")))?;
            if (config.len() + chunk.len()) as u64 > desc.size {
                return Err(bad(
                    "the registry sent a config longer than its descriptor".into()
                ));
            }
            config.extend_from_slice(&chunk);
        }
        if digest::of(&config) != desc.digest {
            return Err(bad(
                "the registry sent a config that does not match its digest".into(),
            ));
        }
        let config = serde_json::from_slice(&config)
            .map_err(|e| bad(format!("its config is not an image config: {e}")))?;
        Ok((digest, config))
    })
}

fn manifest_error(reference: &Reference, e: &OciDistributionError) -> RegistryError {
    let (status, message) = status_and_message(e);
    RegistryError::Manifest {
        reference: reference.whole(),
        status: status.map_or(String::new(), |c| format!("{}: ", client::status_text(c))),
        message,
    }
}

/// The image manifest's bytes, media type and digest; through an index, the entry for
/// this machine's platform.
async fn fetch_image_manifest(
    conn: &Connection,
    reference: &Reference,
) -> Result<(Vec<u8>, String, String)> {
    let accepted = [MEDIA_MANIFEST, DOCKER_MANIFEST, MEDIA_INDEX, DOCKER_LIST];
    let mut current = reference.clone();
    for _ in 0..2 {
        let bytes = client::retry("manifest", || get_manifest(conn, &current, &accepted))
            .await
            .map_err(|e| manifest_error(&current, &e))?
            .ok_or_else(|| RegistryError::BadContent {
                reference: current.whole(),
                reason: format!(
                    "the registry sent a manifest of more than {} MiB (refused)",
                    MAX_JSON >> 20
                ),
            })?;
        let digest = digest::of(&bytes);
        if let Some(expected) = current.digest() {
            if expected != digest {
                return Err(RegistryError::BadContent {
                    reference: current.whole(),
                    reason: format!("the registry sent a manifest whose digest is {digest}"),
                });
            }
        }
        #[derive(serde::Deserialize)]
        struct Probe {
            #[serde(rename = "mediaType", default)]
            media_type: Option<String>,
            #[serde(default)]
            manifests: Option<serde_json::Value>,
        }
        let probe: Probe =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::BadContent {
                reference: current.whole(),
                reason: format!("the manifest is not JSON: {e}"),
            })?;
        let is_index = probe.manifests.is_some()
            || matches!(probe.media_type.as_deref(), Some(MEDIA_INDEX | DOCKER_LIST));
        if !is_index {
            let media_type = probe.media_type.unwrap_or_else(|| MEDIA_MANIFEST.into());
            return Ok((bytes.to_vec(), media_type, digest));
        }
        let index: Index =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::BadContent {
                reference: current.whole(),
                reason: format!("not an image index: {e}"),
            })?;
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        let entry = index
            .manifests
            .iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == arch)
            })
            .ok_or_else(|| RegistryError::BadContent {
                reference: current.whole(),
                reason: format!("the image index has no linux/{arch} image"),
            })?;
        current = reference.clone_with_digest(entry.digest.clone());
    }
    Err(RegistryError::BadContent {
        reference: reference.whole(),
        reason: "an image index that points to another index".into(),
    })
}

/// The manifest `reference` names, read up to [`MAX_JSON`] bytes: `None` when the
/// registry sends more (announced or not), which is no manifest (containerd's limit).
/// A request of our own: oci-client reads a manifest whole, however long it is.
async fn get_manifest(
    conn: &Connection,
    reference: &Reference,
    accepted: &[&str],
) -> Result<Option<Vec<u8>>, OciDistributionError> {
    let auth = client::authorization(conn, reference, RegistryOperation::Pull).await?;
    let url = client::manifest_url(conn, reference);
    let mut req = conn.http.get(url).header(ACCEPT, accepted.join(", "));
    if let Some(h) = auth {
        req = req.header(AUTHORIZATION, h);
    }
    let mut resp = req.send().await?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(client::unexpected(resp).await);
    }
    if resp.content_length().is_some_and(|n| n > MAX_JSON) {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if (bytes.len() + chunk.len()) as u64 > MAX_JSON {
            return Ok(None);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Some(bytes))
}

/// One blob into the layout, streamed; started over on a dropped connection. No byte
/// past the descriptor's size is written: the registry sending more is an error there.
async fn pull_blob(
    conn: &Connection,
    reference: &Reference,
    writer: &LayoutWriter,
    desc: &Descriptor,
    mut keep: Option<&mut Vec<u8>>,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let blob_error = |e: &OciDistributionError| {
        let (status, message) = status_and_message(e);
        RegistryError::Blob {
            digest: desc.digest.clone(),
            registry: conn.registry.clone(),
            status: status.map_or(String::new(), |c| format!("{}: ", client::status_text(c))),
            message,
        }
    };
    if !digest::is_valid(&desc.digest) {
        return Err(RegistryError::BadContent {
            reference: reference.whole(),
            reason: format!("invalid blob digest `{}`", desc.digest),
        });
    }
    let mut attempt = 1;
    loop {
        let (dir, path, mut out) = writer.blob()?.into_writer();
        let mut got = 0u64;
        if let Some(k) = keep.as_deref_mut() {
            k.clear();
        }
        let mut longer = false;
        let result: Result<(), OciDistributionError> = async {
            let mut body = conn
                .client
                .pull_blob_stream(reference, desc.digest.as_str())
                .await?;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                if got + chunk.len() as u64 > desc.size {
                    longer = true;
                    return Ok(());
                }
                out.write_all(&chunk)?;
                if let Some(k) = keep.as_deref_mut() {
                    k.extend_from_slice(&chunk);
                }
                got += chunk.len() as u64;
                progress(chunk.len() as u64);
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) if longer => {
                drop(out);
                let _ = std::fs::remove_file(&path);
                return Err(RegistryError::Blob {
                    digest: desc.digest.clone(),
                    registry: conn.registry.clone(),
                    status: String::new(),
                    message: format!(
                        "the registry sent more than the {} bytes its descriptor says (refused)",
                        desc.size
                    ),
                });
            }
            Ok(()) => {
                let (found, size) = BlobWriter::commit_parts(&dir, &path, out)?;
                if found != desc.digest || size != desc.size {
                    let _ = std::fs::remove_file(dir.join(&found[7..]));
                    return Err(RegistryError::Blob {
                        digest: desc.digest.clone(),
                        registry: conn.registry.clone(),
                        status: String::new(),
                        message: format!("received {size} bytes whose digest is {found}"),
                    });
                }
                return Ok(());
            }
            Err(e) => {
                drop(out);
                let _ = std::fs::remove_file(&path);
                progress(0u64.wrapping_sub(got));
                if attempt < client::ATTEMPTS && client::is_transient(&e) {
                    let wait = std::time::Duration::from_millis(500 << (attempt - 1));
                    tracing::warn!("blob {}: {} (retrying)", desc.digest, client::describe(&e));
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    continue;
                }
                return Err(blob_error(&e));
            }
        }
    }
}
