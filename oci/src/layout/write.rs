//! OCI image layouts on disk: written under a temporary name and renamed into place,
//! so an interrupted run never leaves a layout that looks valid; and read back.

use crate::digest::{self, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::image::{
    Descriptor, Index, Manifest, ANNOTATION_CONTAINERD_IMAGE_NAME, ANNOTATION_REF_NAME, MEDIA_INDEX,
};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// Docker's index of a `docker save` archive.
const DOCKER_MANIFEST: &str = "manifest.json";

/// How the output is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputFormat {
    /// An OCI image layout directory.
    Oci,
    /// The same layout in one tar file.
    OciArchive,
    /// The oci-archive plus Docker's `manifest.json`, which `docker load` reads (Docker
    /// before 25 reads nothing else; 25 and later write both, as this does).
    DockerArchive,
}

/// A name that is not an [`OutputFormat`] (what `--format` was given).
#[derive(Debug, thiserror::Error)]
#[error("unknown format `{0}` (oci, oci-archive, docker-archive)")]
pub struct UnknownFormat(pub String);

impl std::str::FromStr for OutputFormat {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        match s {
            "oci" | "oci-dir" => Ok(OutputFormat::Oci),
            "oci-archive" => Ok(OutputFormat::OciArchive),
            "docker-archive" => Ok(OutputFormat::DockerArchive),
            _ => Err(UnknownFormat(s.to_string())),
        }
    }
}

/// Writes one image layout. Everything goes into a hidden temporary directory beside
/// the target; [`LayoutWriter::commit`] renames it into place. Dropped without a
/// commit, it removes the temporary directory.
pub struct LayoutWriter {
    target: PathBuf,
    tmp: PathBuf,
    format: OutputFormat,
    force: bool,
    committed: bool,
    blobs: std::sync::atomic::AtomicU64,
    /// Removes the temporary layout (and archive) if rehost is interrupted.
    _on_interrupt: [crate::cleanup::Registration; 2],
}

impl LayoutWriter {
    pub fn create(target: &Path, format: OutputFormat, force: bool) -> Result<Self> {
        if fs::symlink_metadata(target).is_ok() && !force {
            return Err(Error::OutputExists(target.to_path_buf()));
        }
        let name = target
            .file_name()
            .ok_or_else(|| Error::Layout {
                path: target.to_path_buf(),
                reason: "not a file or directory name".into(),
            })?
            .to_string_lossy()
            .into_owned();
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(Error::Layout {
                path: parent,
                reason: "the output's directory does not exist".into(),
            });
        }
        let tmp = parent.join(format!(".{name}.rehost-tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let on_interrupt = [
            crate::cleanup::remove_on_interrupt(tmp.clone()),
            crate::cleanup::remove_on_interrupt(tmp.with_extension("tar")),
        ];
        fs::create_dir_all(tmp.join("blobs/sha256")).at(&tmp)?;
        fs::write(tmp.join("oci-layout"), OCI_LAYOUT).at(&tmp)?;
        Ok(LayoutWriter {
            target: target.to_path_buf(),
            tmp,
            format,
            force,
            committed: false,
            blobs: Default::default(),
            _on_interrupt: on_interrupt,
        })
    }

    /// The temporary directory, to exclude it when the source contains the output.
    pub fn work_dir(&self) -> &Path {
        &self.tmp
    }

    /// A writer for a new blob; [`BlobWriter::commit`] names it by its digest.
    pub fn blob(&self) -> Result<BlobWriter> {
        self.blob_buffered(1 << 20)
    }

    /// A writer for a new blob written in large pieces (a compressor's blocks), without
    /// a buffer of its own: dozens of such blobs may be open at once.
    pub fn blob_unbuffered(&self) -> Result<BlobWriter> {
        self.blob_buffered(0)
    }

    fn blob_buffered(&self, capacity: usize) -> Result<BlobWriter> {
        let n = self
            .blobs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.tmp.join(format!("blobs/sha256/.incoming-{n}"));
        let file = File::create(&path).at(&path)?;
        Ok(BlobWriter {
            dir: self.tmp.join("blobs/sha256"),
            path,
            writer: HashingWriter::new(BufWriter::with_capacity(capacity, file)),
        })
    }

    /// Stores bytes as a blob and describes them.
    pub fn add_bytes(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let digest = digest::of(bytes);
        let path = self.blob_path(&digest);
        fs::write(&path, bytes).at(&path)?;
        Ok(Descriptor {
            media_type: media_type.into(),
            digest,
            size: bytes.len() as u64,
            annotations: BTreeMap::new(),
            platform: None,
        })
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.tmp
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// Writes index.json naming the manifest by `tag` and moves the layout into place.
    pub fn commit(mut self, manifest: Descriptor, tag: &str) -> Result<()> {
        let mut entry = manifest;
        entry
            .annotations
            .insert(ANNOTATION_REF_NAME.into(), tag.into());
        let index = Index {
            schema_version: 2,
            media_type: Some(MEDIA_INDEX.into()),
            manifests: vec![entry],
            annotations: BTreeMap::new(),
        };
        let json = serde_json::to_vec(&index).expect("index serializes");
        let path = self.tmp.join("index.json");
        fs::write(&path, json).at(&path)?;
        match self.format {
            OutputFormat::Oci => self.replace_target(&self.tmp.clone())?,
            OutputFormat::OciArchive | OutputFormat::DockerArchive => {
                if self.format == OutputFormat::DockerArchive {
                    let path = self.tmp.join(DOCKER_MANIFEST);
                    fs::write(&path, self.docker_manifest(&index.manifests[0])?).at(&path)?;
                }
                let archive = self.tmp.with_extension("tar");
                write_archive(&self.tmp, &archive)?;
                let result = self.replace_target(&archive);
                if result.is_err() {
                    let _ = fs::remove_file(&archive);
                }
                result?;
                let _ = fs::remove_dir_all(&self.tmp);
            }
        }
        self.committed = true;
        Ok(())
    }

    /// Docker's `manifest.json` for the image `entry` names: the config and layers as
    /// paths in the archive, and the image's name from the containerd annotation (none:
    /// `docker load` then prints only the image's ID).
    fn docker_manifest(&self, entry: &Descriptor) -> Result<Vec<u8>> {
        let path = self.blob_path(&entry.digest);
        let bytes = fs::read(&path).at(&path)?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Layout {
            path: path.clone(),
            reason: format!("not an image manifest: {e}"),
        })?;
        let blob =
            |d: &Descriptor| format!("blobs/sha256/{}", d.digest.trim_start_matches("sha256:"));
        let docker = serde_json::json!([{
            "Config": blob(&manifest.config),
            "RepoTags": entry.annotations.get(ANNOTATION_CONTAINERD_IMAGE_NAME).into_iter().collect::<Vec<_>>(),
            "Layers": manifest.layers.iter().map(blob).collect::<Vec<_>>(),
        }]);
        Ok(serde_json::to_vec(&docker).expect("manifest.json serializes"))
    }

    /// Renames `ready` onto the target; with --force, the old target goes only once the
    /// new one is in place.
    fn replace_target(&self, ready: &Path) -> Result<()> {
        let old = self.tmp.with_extension("old");
        let had_old = self.force && fs::symlink_metadata(&self.target).is_ok();
        if had_old {
            fs::rename(&self.target, &old).at(&self.target)?;
        }
        if let Err(e) = fs::rename(ready, &self.target) {
            if had_old {
                let _ = fs::rename(&old, &self.target);
            }
            return Err(Error::io(&self.target, e));
        }
        if had_old {
            let _ = fs::remove_dir_all(&old).or_else(|_| fs::remove_file(&old));
        }
        Ok(())
    }
}

impl Drop for LayoutWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
            let _ = fs::remove_file(self.tmp.with_extension("tar"));
        }
    }
}

/// A blob being written: hashed as it goes, renamed to its digest when committed.
pub struct BlobWriter {
    dir: PathBuf,
    path: PathBuf,
    writer: HashingWriter<BufWriter<File>>,
}

impl BlobWriter {
    /// The file being written, for error messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn writer(&mut self) -> &mut HashingWriter<BufWriter<File>> {
        &mut self.writer
    }

    pub fn into_writer(self) -> (PathBuf, PathBuf, HashingWriter<BufWriter<File>>) {
        (self.dir, self.path, self.writer)
    }

    /// Finishes a blob written through [`BlobWriter::into_writer`].
    pub fn commit_parts(
        dir: &Path,
        path: &Path,
        writer: HashingWriter<BufWriter<File>>,
    ) -> Result<(String, u64)> {
        let (digest, size, buf) = writer.finish();
        let file = buf
            .into_inner()
            .map_err(|e| Error::io(path, e.into_error()))?;
        file.sync_all().at(path)?;
        let target = dir.join(digest.trim_start_matches("sha256:"));
        fs::rename(path, &target).at(&target)?;
        Ok((digest, size))
    }
}

/// Writes a layout directory as one tar file (the oci-archive format).
fn write_archive(dir: &Path, archive: &Path) -> Result<()> {
    let file = File::create(archive).at(archive)?;
    let mut builder = ::tar::Builder::new(BufWriter::new(file));
    builder.mode(::tar::HeaderMode::Deterministic);
    let mut names = vec![PathBuf::from("oci-layout"), PathBuf::from("index.json")];
    if dir.join(DOCKER_MANIFEST).exists() {
        names.push(PathBuf::from(DOCKER_MANIFEST));
    }
    let blobs = dir.join("blobs/sha256");
    let mut digests: Vec<_> = fs::read_dir(&blobs)
        .at(&blobs)?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    digests.sort();
    builder
        .append_dir("blobs", dir.join("blobs"))
        .and_then(|_| builder.append_dir("blobs/sha256", &blobs))
        .at(archive)?;
    names.extend(
        digests
            .into_iter()
            .map(|d| Path::new("blobs/sha256").join(d)),
    );
    for name in names {
        builder
            .append_path_with_name(dir.join(&name), &name)
            .at(archive)?;
    }
    let out = builder.into_inner().at(archive)?;
    out.into_inner()
        .map_err(|e| Error::io(archive, e.into_error()))?
        .sync_all()
        .at(archive)?;
    Ok(())
}
