//! Reading an image on disk: an OCI image layout directory, or the same layout in one
//! tar file (an oci-archive). An archive is read in place: its blobs are byte ranges of
//! the tar file, found once by walking the headers, so nothing is extracted or copied.

use crate::digest;
use crate::error::{Error, Result};
use crate::image::{Descriptor, Index, Manifest, ANNOTATION_REF_NAME};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Manifests and indexes are small; anything bigger is not one.
const MAX_JSON: u64 = 16 << 20;

/// Where a blob's bytes are: a file, from `offset`, `len` bytes long.
#[derive(Debug, Clone)]
pub struct BlobLocation {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
}

/// An image layout on disk, directory or archive.
pub struct Layout {
    path: PathBuf,
    /// For an archive: every regular file in it, by its name.
    members: Option<HashMap<String, (u64, u64)>>,
}

/// One image of the layout, chosen by tag, with its manifest exactly as on disk.
pub struct LayoutManifest {
    pub descriptor: Descriptor,
    pub bytes: Vec<u8>,
    pub manifest: Manifest,
    pub media_type: String,
}

impl Layout {
    pub fn open(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let members = if meta.is_dir() {
            None
        } else {
            Some(index_archive(path)?)
        };
        let image = Layout {
            path: path.to_path_buf(),
            members,
        };
        let marker = image.read_small("oci-layout").map_err(|_| {
            Error::layout(
                path,
                "not an OCI image layout or archive (no oci-layout file)",
            )
        })?;
        if !String::from_utf8_lossy(&marker).contains("imageLayoutVersion") {
            return Err(Error::layout(path, "oci-layout file is not valid"));
        }
        Ok(image)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the member `name` (e.g. `blobs/sha256/…`) is.
    fn locate(&self, name: &str) -> Result<BlobLocation> {
        match &self.members {
            None => {
                let path = self.path.join(name);
                let len = std::fs::metadata(&path)
                    .map_err(|e| Error::io(&path, e))?
                    .len();
                Ok(BlobLocation {
                    path,
                    offset: 0,
                    len,
                })
            }
            Some(members) => {
                let (offset, len) = members.get(name).ok_or_else(|| {
                    Error::layout(&self.path, format!("{name}: not in the archive"))
                })?;
                Ok(BlobLocation {
                    path: self.path.clone(),
                    offset: *offset,
                    len: *len,
                })
            }
        }
    }

    fn read_small(&self, name: &str) -> Result<Vec<u8>> {
        let loc = self.locate(name)?;
        if loc.len > MAX_JSON {
            return Err(Error::layout(
                &self.path,
                format!("{name}: too large ({} bytes)", loc.len),
            ));
        }
        let mut file = File::open(&loc.path).map_err(|e| Error::io(&loc.path, e))?;
        file.seek(SeekFrom::Start(loc.offset))
            .map_err(|e| Error::io(&loc.path, e))?;
        let mut buf = Vec::with_capacity(loc.len as usize);
        file.take(loc.len)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(&loc.path, e))?;
        if buf.len() as u64 != loc.len {
            return Err(Error::layout(&self.path, format!("{name}: truncated")));
        }
        Ok(buf)
    }

    /// Where the blob `digest` is; checks the digest's form and that the size matches.
    pub fn blob(&self, desc: &Descriptor) -> Result<BlobLocation> {
        if !digest::is_valid(&desc.digest) {
            return Err(Error::layout(
                &self.path,
                format!("invalid digest `{}`", desc.digest),
            ));
        }
        let loc = self.locate(&format!("blobs/sha256/{}", &desc.digest[7..]))?;
        if loc.len != desc.size {
            return Err(Error::layout(
                &self.path,
                format!(
                    "blob {} is {} bytes, its descriptor says {}",
                    desc.digest, loc.len, desc.size
                ),
            ));
        }
        Ok(loc)
    }

    /// A stream of the blob `digest`'s bytes, unchecked: the caller hashes what it reads.
    pub fn open_blob(&self, digest: &str) -> Result<std::io::Take<File>> {
        if !digest::is_valid(digest) {
            return Err(Error::layout(
                &self.path,
                format!("invalid digest `{digest}`"),
            ));
        }
        let loc = self.locate(&format!("blobs/sha256/{}", &digest[7..]))?;
        let mut file = File::open(&loc.path).map_err(|e| Error::io(&loc.path, e))?;
        file.seek(SeekFrom::Start(loc.offset))
            .map_err(|e| Error::io(&loc.path, e))?;
        Ok(file.take(loc.len))
    }

    /// A small blob (a manifest or config), read whole and checked against its digest.
    pub fn read_blob(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        self.blob(desc)?;
        let bytes = self.read_small(&format!("blobs/sha256/{}", &desc.digest[7..]))?;
        if digest::of(&bytes) != desc.digest {
            return Err(Error::layout(
                &self.path,
                format!("blob {} does not match its digest", desc.digest),
            ));
        }
        Ok(bytes)
    }

    /// The image tagged `tag`, or the only one when `tag` is None.
    pub fn manifest(&self, tag: Option<&str>) -> Result<LayoutManifest> {
        let index_bytes = self.read_small("index.json")?;
        let index: Index = serde_json::from_slice(&index_bytes)
            .map_err(|e| Error::layout(&self.path, format!("index.json: {e}")))?;
        let tag_of = |d: &Descriptor| d.annotations.get(ANNOTATION_REF_NAME).cloned();
        let found: Vec<&Descriptor> = index
            .manifests
            .iter()
            .filter(|d| tag.is_none_or(|t| tag_of(d).as_deref() == Some(t)))
            .collect();
        let descriptor = match (found.as_slice(), tag) {
            ([one], _) => (*one).clone(),
            ([], Some(t)) => {
                return Err(Error::layout(&self.path, format!("no image tagged `{t}`")))
            }
            ([], None) => return Err(Error::layout(&self.path, "holds no image")),
            _ => {
                return Err(Error::layout(
                    &self.path,
                    "holds several images: name one as IMAGE:TAG",
                ))
            }
        };
        let bytes = self.read_blob(&descriptor)?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            Error::layout(
                &self.path,
                format!(
                    "manifest {}: not an image manifest ({e})",
                    descriptor.digest
                ),
            )
        })?;
        let media_type = manifest
            .media_type
            .clone()
            .unwrap_or_else(|| descriptor.media_type.clone());
        Ok(LayoutManifest {
            descriptor,
            bytes,
            manifest,
            media_type,
        })
    }
}

/// Every regular file of a tar archive: name → (data offset, size). Only headers are read.
fn index_archive(path: &Path) -> Result<HashMap<String, (u64, u64)>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut archive = tar::Archive::new(file);
    let bad =
        |e: std::io::Error| Error::layout(path, format!("not an OCI image layout or archive: {e}"));
    let mut members = HashMap::new();
    for entry in archive.entries_with_seek().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let name = name.trim_start_matches("./").to_string();
        members.insert(name, (entry.raw_file_position(), entry.size()));
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_a_layout_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let err = Layout::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("not an OCI image layout"), "{err}");
        let file = dir.path().join("junk.tar");
        std::fs::write(&file, b"definitely not a tar archive, far too short").unwrap();
        let err = Layout::open(&file).err().unwrap().to_string();
        assert!(err.contains("junk.tar"), "{err}");
    }
}
