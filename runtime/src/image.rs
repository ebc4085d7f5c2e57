//! Reading an image to run: an OCI image layout directory or an OCI archive (the same
//! layout in one tar), optionally `:TAG`. Archives are read in place: one pass over the
//! tar headers finds each blob's offset, and blobs are streamed from there.

use crate::error::{Error, IoContext, Result};
use converter::image::digest;
use converter::image::oci::{Descriptor, ImageConfig, Index, Manifest, ANNOTATION_REF_NAME};
use converter::image::Layout;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// An image opened for running.
pub struct Image {
    /// The path the user named (without the tag).
    pub path: PathBuf,
    pub manifest_digest: String,
    pub manifest: Manifest,
    pub config: ImageConfig,
    store: BlobStore,
}

enum BlobStore {
    Dir(Layout),
    /// Offset and size of each member of the archive, by name.
    Archive(HashMap<String, (u64, u64)>),
}

impl Image {
    /// Opens `PATH` or `PATH:TAG`. A path that exists as written is taken whole, so
    /// paths containing `:` still work.
    pub fn open(reference: &str) -> Result<Image> {
        let (path, tag) = split_tag(reference);
        let meta = std::fs::metadata(&path).at(&path)?;
        let store = if meta.is_dir() {
            BlobStore::Dir(Layout::open(&path)?)
        } else {
            BlobStore::Archive(archive_members(&path)?)
        };
        let mut image = Image {
            path,
            manifest_digest: String::new(),
            manifest: Manifest {
                schema_version: 2,
                media_type: None,
                config: empty_descriptor(),
                layers: Vec::new(),
                annotations: Default::default(),
            },
            config: ImageConfig::default(),
            store,
        };
        let index: Index = serde_json::from_slice(&image.read_member("index.json")?)
            .map_err(|e| image.bad(format!("index.json: {e}")))?;
        let desc = select(&index, tag.as_deref()).map_err(|r| image.bad(r))?;
        image.manifest = serde_json::from_slice(&image.read_blob(&desc.digest)?)
            .map_err(|e| image.bad(format!("manifest {}: {e}", desc.digest)))?;
        image.manifest_digest = desc.digest;
        image.config = serde_json::from_slice(&image.read_blob(&image.manifest.config.digest)?)
            .map_err(|e| image.bad(format!("config {}: {e}", image.manifest.config.digest)))?;
        if image.config.rootfs.diff_ids.len() != image.manifest.layers.len() {
            return Err(image.bad(format!(
                "config lists {} layers, manifest {}",
                image.config.rootfs.diff_ids.len(),
                image.manifest.layers.len()
            )));
        }
        Ok(image)
    }

    fn bad(&self, reason: String) -> Error {
        Error::BadImage {
            path: self.path.clone(),
            reason,
        }
    }

    /// A stream of the blob's bytes, unchecked: the caller hashes what it reads.
    pub fn blob(&self, digest: &str) -> Result<Box<dyn Read + Send>> {
        if !digest::is_valid(digest) {
            return Err(self.bad(format!("invalid digest `{digest}`")));
        }
        match &self.store {
            BlobStore::Dir(layout) => {
                let path = layout.blob_path(digest)?;
                Ok(Box::new(File::open(&path).at(&path)?))
            }
            BlobStore::Archive(_) => self.member(&format!("blobs/sha256/{}", &digest[7..])),
        }
    }

    /// A small blob, read whole and checked against its digest.
    fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.blob(digest)?.read_to_end(&mut bytes).at(&self.path)?;
        let actual = digest::of(&bytes);
        if actual != digest {
            return Err(Error::Digest {
                digest: digest.into(),
                what: "blob digest",
                expected: digest.into(),
                actual,
            });
        }
        Ok(bytes)
    }

    fn read_member(&self, name: &str) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        match &self.store {
            BlobStore::Dir(layout) => {
                let path = layout.root.join(name);
                return std::fs::read(&path).at(path);
            }
            BlobStore::Archive(_) => self.member(name)?.read_to_end(&mut bytes).at(&self.path)?,
        };
        Ok(bytes)
    }

    fn member(&self, name: &str) -> Result<Box<dyn Read + Send>> {
        let BlobStore::Archive(members) = &self.store else {
            unreachable!("only archives have members")
        };
        let &(offset, size) = members
            .get(name)
            .ok_or_else(|| self.bad(format!("the archive has no `{name}`")))?;
        let mut file = File::open(&self.path).at(&self.path)?;
        file.seek(SeekFrom::Start(offset)).at(&self.path)?;
        Ok(Box::new(file.take(size)))
    }
}

fn split_tag(reference: &str) -> (PathBuf, Option<String>) {
    if Path::new(reference).exists() {
        return (reference.into(), None);
    }
    match reference.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') && !path.is_empty() => {
            (path.into(), Some(tag.to_string()))
        }
        _ => (reference.into(), None),
    }
}

fn empty_descriptor() -> Descriptor {
    Descriptor {
        media_type: String::new(),
        digest: String::new(),
        size: 0,
        annotations: Default::default(),
        platform: None,
    }
}

/// The manifest named `tag`, or the only one.
fn select(index: &Index, tag: Option<&str>) -> std::result::Result<Descriptor, String> {
    let found: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| {
            tag.is_none_or(|t| {
                d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) == Some(t)
            })
        })
        .collect();
    match (found.as_slice(), tag) {
        ([one], _) => Ok((*one).clone()),
        ([], Some(t)) => Err(format!("no image tagged `{t}`")),
        ([], None) => Err("holds no image".into()),
        _ => Err("holds several images: name one with :TAG".into()),
    }
}

/// One pass over an archive's headers (seeking over the data): where each member is.
fn archive_members(path: &Path) -> Result<HashMap<String, (u64, u64)>> {
    let file = File::open(path).at(path)?;
    let bad = |e: std::io::Error| Error::BadImage {
        path: path.to_path_buf(),
        reason: format!("not an OCI archive: {e}"),
    };
    let mut archive = tar::Archive::new(file);
    let mut members = HashMap::new();
    for entry in archive.entries_with_seek().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes())
            .trim_start_matches("./")
            .to_string();
        members.insert(name, (entry.raw_file_position(), entry.size()));
    }
    if !members.contains_key("oci-layout") {
        return Err(Error::BadImage {
            path: path.to_path_buf(),
            reason: "not an OCI image layout or archive (no oci-layout)".into(),
        });
    }
    Ok(members)
}
