//! `push`: an image on disk to a registry, without sending any blob twice.

use crate::client::{self, connect, describe, status_and_message, ConnectOptions, Connection};
use crate::error::{RegistryError, Result};
use crate::upload;
use bytes::{Bytes, BytesMut};
use futures_util::{stream, Stream, StreamExt, TryStreamExt};
use oci::image::Descriptor;
use oci::layout::{BlobLocation, Layout};
use oci::reference::{parse as parse_reference, sibling, with_tag};
use oci_client::errors::OciDistributionError;
use oci_client::{Reference, RegistryOperation};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncReadExt;

/// Blobs are read and sent in pieces of this size: memory stays bounded whatever the
/// blob's size.
const PIECE: usize = 4 << 20;

#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub connect: ConnectOptions,
    /// Another repository on the same registry to mount blobs from.
    pub mount_from: Option<String>,
    /// More tags for the same manifest, in the same repository.
    pub extra_tags: Vec<String>,
    /// The image in the layout, when it holds several.
    pub image_tag: Option<String>,
    /// Where blobs were pushed before ([`crate::BlobMemory`]): a blob another repository
    /// of the same registry holds is mounted from there. `None`: remember nothing.
    pub memory: Option<PathBuf>,
}

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlobAction {
    /// Sent from disk.
    Uploaded,
    /// The registry already had it.
    Skipped,
    /// Mounted from another repository of the registry (`--mount-from`, or where an
    /// earlier push sent it).
    Mounted,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BlobReport {
    pub digest: String,
    pub size: u64,
    pub action: BlobAction,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PushSummary {
    pub image: PathBuf,
    /// `registry/repository`.
    pub repository: String,
    pub tags: Vec<String>,
    pub manifest_digest: String,
    pub blobs: Vec<BlobReport>,
    pub bytes_uploaded: u64,
    pub bytes_skipped: u64,
    pub bytes_mounted: u64,
    pub plain_http: bool,
    pub seconds: f64,
}

/// What a push reports as it goes, for progress bars.
#[derive(Debug, Clone)]
pub enum PushEvent {
    /// The blobs to consider, with their sizes.
    Blobs(Vec<(String, u64)>),
    /// `bytes` more of the blob were sent.
    Sent {
        digest: String,
        bytes: u64,
    },
    /// An upload failed and starts over: forget what was sent of it.
    Restart {
        digest: String,
        sent: u64,
    },
    Done {
        digest: String,
        action: BlobAction,
    },
    /// The manifest is being tagged.
    Tagging(String),
}

pub type PushProgress = Arc<dyn Fn(PushEvent) + Send + Sync>;

/// Pushes the image at `image` to `reference` (and the extra tags).
pub fn push(
    image: &Path,
    reference: &str,
    options: &PushOptions,
    progress: PushProgress,
) -> Result<PushSummary> {
    let started = Instant::now();
    let target = parse_reference(reference)?;
    let local = Layout::open(image)?;
    let manifest = local.manifest(options.image_tag.as_deref())?;
    if let Some(wanted) = target.digest() {
        if wanted != manifest.descriptor.digest {
            return Err(RegistryError::BadContent {
                reference: reference.into(),
                reason: format!(
                    "names another digest than the image's manifest ({})",
                    manifest.descriptor.digest
                ),
            });
        }
    }
    let mut tags = vec![target.clone()];
    for tag in &options.extra_tags {
        tags.push(with_tag(&target, tag)?);
    }
    let mount_from = options
        .mount_from
        .as_deref()
        .map(|repo| sibling(&target, repo))
        .transpose()?;

    // The config and layers, each once (an image may repeat a layer).
    let mut blobs: Vec<Descriptor> = Vec::new();
    for d in std::iter::once(&manifest.manifest.config).chain(&manifest.manifest.layers) {
        if !blobs.iter().any(|b| b.digest == d.digest) {
            blobs.push(d.clone());
        }
    }
    let locations = blobs
        .iter()
        .map(|d| local.blob(d))
        .collect::<oci::Result<Vec<_>>>()?;

    let mut memory = crate::BlobMemory::load(options.memory.as_deref());
    let registry = target.resolve_registry().to_string();
    // Per blob: where to mount it from, the operator's choice first.
    let sources: Vec<Vec<Reference>> = blobs
        .iter()
        .map(|d| {
            let remembered = memory
                .holder(&registry, target.repository(), &d.digest)
                .and_then(|repo| sibling(&target, &repo).ok());
            mount_from.iter().cloned().chain(remembered).collect()
        })
        .collect();

    let summary = super::runtime()?.block_on(async {
        let conn = connect(&target, &options.connect, RegistryOperation::Push).await?;
        progress(PushEvent::Blobs(
            blobs.iter().map(|d| (d.digest.clone(), d.size)).collect(),
        ));
        let jobs = options.connect.jobs.max(1);
        let mut reports: Vec<BlobReport> = stream::iter(blobs.iter().zip(locations).zip(&sources))
            .map(|((desc, loc), from)| push_blob(&conn, &target, desc, loc, from, progress.clone()))
            .buffer_unordered(jobs)
            .try_collect()
            .await?;
        // Report in the manifest's order, not in the order the uploads finished.
        reports.sort_by_key(|r| blobs.iter().position(|b| b.digest == r.digest));

        for tag in &tags {
            progress(PushEvent::Tagging(tag.whole()));
            push_manifest(&conn, tag, &manifest.bytes, &manifest.media_type).await?;
        }
        // The registry computes the digest of what it stored: it must be ours.
        let stored = client::retry("manifest", || {
            conn.client.fetch_manifest_digest(&target, &conn.auth)
        })
        .await
        .map_err(|e| manifest_error(&target, &e))?;
        if stored != manifest.descriptor.digest {
            return Err(RegistryError::BadContent {
                reference: target.whole(),
                reason: format!(
                    "the registry stored the manifest as {stored}, not {}",
                    manifest.descriptor.digest
                ),
            });
        }

        let sum = |a: BlobAction| {
            reports
                .iter()
                .filter(|r| r.action == a)
                .map(|r| r.size)
                .sum()
        };
        Ok(PushSummary {
            image: local.path().to_path_buf(),
            repository: format!("{}/{}", target.registry(), target.repository()),
            tags: tags
                .iter()
                .filter_map(|t| t.tag().filter(|t| !t.is_empty()).map(str::to_string))
                .collect(),
            manifest_digest: manifest.descriptor.digest.clone(),
            bytes_uploaded: sum(BlobAction::Uploaded),
            bytes_skipped: sum(BlobAction::Skipped),
            bytes_mounted: sum(BlobAction::Mounted),
            blobs: reports,
            plain_http: conn.plain_http,
            seconds: started.elapsed().as_secs_f64(),
        })
    })?;
    memory.remember(
        &registry,
        target.repository(),
        summary.blobs.iter().map(|b| b.digest.as_str()),
    );
    memory.save();
    Ok(summary)
}

pub(crate) fn blob_error(
    conn: &Connection,
    digest: &str,
    e: &OciDistributionError,
) -> RegistryError {
    let (status, message) = status_and_message(e);
    RegistryError::Blob {
        digest: digest.into(),
        registry: conn.registry.clone(),
        status: status.map_or(String::new(), |c| format!("{}: ", client::status_text(c))),
        message,
    }
}

fn manifest_error(reference: &Reference, e: &OciDistributionError) -> RegistryError {
    let (status, message) = status_and_message(e);
    RegistryError::Manifest {
        reference: reference.whole(),
        status: status.map_or(String::new(), |c| format!("{}: ", client::status_text(c))),
        message,
    }
}

async fn push_blob(
    conn: &Connection,
    target: &Reference,
    desc: &Descriptor,
    loc: BlobLocation,
    mount_from: &[Reference],
    progress: PushProgress,
) -> Result<BlobReport> {
    let digest = desc.digest.as_str();
    let report = |action| {
        progress(PushEvent::Done {
            digest: digest.into(),
            action,
        });
        Ok(BlobReport {
            digest: digest.into(),
            size: desc.size,
            action,
        })
    };
    let exists = client::retry(digest, || conn.client.blob_exists(target, digest))
        .await
        .map_err(|e| blob_error(conn, digest, &e))?;
    if exists {
        return report(BlobAction::Skipped);
    }
    for source in mount_from {
        match conn.client.mount_blob(target, source, digest).await {
            Ok(()) => return report(BlobAction::Mounted),
            // The registry may not have it there, or not mount across repositories:
            // then it is uploaded like any other.
            Err(e) => tracing::debug!(
                "{digest}: not mounted from {}: {}",
                source.whole(),
                describe(&e)
            ),
        }
    }

    let mut monolithic = false;
    let mut attempt = 1;
    loop {
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let body = file_stream(
            loc.clone(),
            digest.to_string(),
            progress.clone(),
            sent.clone(),
        )
        .await
        .map_err(|e| RegistryError::io(&loc.path, e))?;
        let result = if monolithic {
            conn.monolithic
                .push_blob_stream(target, body, digest, Some(desc.size))
                .await
                .map(|_| ())
        } else {
            upload::streamed_upload(conn, target, digest, body).await
        };
        let err = match result {
            Ok(_) => return report(BlobAction::Uploaded),
            Err(e) => e,
        };
        let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
        if sent > 0 {
            progress(PushEvent::Restart {
                digest: digest.into(),
                sent,
            });
        }
        if let OciDistributionError::IoError(io) = &err {
            if io.kind() == std::io::ErrorKind::InvalidData {
                return Err(RegistryError::io(
                    &loc.path,
                    std::io::Error::new(io.kind(), io.to_string()),
                ));
            }
        }
        // Registries that take no chunks say so with one of these; then one PUT does it.
        let chunks_refused = matches!(&err, OciDistributionError::SpecViolationError(_))
            || matches!(status_and_message(&err).0, Some(405 | 416 | 501));
        if !monolithic && chunks_refused {
            tracing::info!("{digest}: the registry refuses chunked uploads, sending it whole");
            monolithic = true;
            continue;
        }
        if attempt < client::ATTEMPTS && client::is_transient(&err) {
            let wait = std::time::Duration::from_millis(500 << (attempt - 1));
            tracing::warn!(
                "blob {digest}: {} (retrying in {:.1} s)",
                describe(&err),
                wait.as_secs_f32()
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
            continue;
        }
        return Err(blob_error(conn, digest, &err));
    }
}

/// The blob's bytes from disk, a piece at a time, counted as they go.
async fn file_stream(
    loc: BlobLocation,
    digest: String,
    progress: PushProgress,
    sent: Arc<std::sync::atomic::AtomicU64>,
) -> std::io::Result<impl Stream<Item = Result<Bytes, OciDistributionError>> + Send + 'static> {
    // Opened as the layout reader opens it: confined to the layout, a regular file.
    let file = tokio::fs::File::from_std(loc.open()?);
    let state = (file, loc.len);
    Ok(stream::try_unfold(state, move |(mut file, remaining)| {
        let digest = digest.clone();
        let progress = progress.clone();
        let sent = sent.clone();
        async move {
            if remaining == 0 {
                return Ok(None);
            }
            let want = remaining.min(PIECE as u64) as usize;
            let mut buf = BytesMut::with_capacity(want);
            while buf.len() < want {
                let n = (&mut file)
                    .take((want - buf.len()) as u64)
                    .read_buf(&mut buf)
                    .await?;
                if n == 0 {
                    return Err(OciDistributionError::IoError(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("blob {digest} ends before its size"),
                    )));
                }
            }
            sent.fetch_add(want as u64, std::sync::atomic::Ordering::Relaxed);
            progress(PushEvent::Sent {
                digest,
                bytes: want as u64,
            });
            Ok(Some((buf.freeze(), (file, remaining - want as u64))))
        }
    }))
}

async fn push_manifest(
    conn: &Connection,
    reference: &Reference,
    bytes: &[u8],
    media_type: &str,
) -> Result<()> {
    let content_type = reqwest::header::HeaderValue::from_str(media_type).map_err(|_| {
        RegistryError::BadContent {
            reference: reference.whole(),
            reason: format!("invalid media type `{media_type}`"),
        }
    })?;
    let body = Bytes::copy_from_slice(bytes);
    client::retry("manifest", || {
        conn.client
            .push_manifest_raw(reference, body.clone(), content_type.clone())
    })
    .await
    .map_err(|e| manifest_error(reference, &e))?;
    Ok(())
}
