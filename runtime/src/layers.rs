//! The layer cache: each layer unpacked once, in overlayfs lower-layer form, in a
//! directory named by its digest. A layer is unpacked under a temporary name and renamed
//! into place only once both its blob digest and its uncompressed diff_id matched, so the
//! cache never holds a layer that looks valid and is not.

use crate::error::{Error, IoContext, Result};
use crate::image::Image;
use crate::unpack::{self, Whiteouts};
use oci::digest::HashingReader;
use oci::image::Descriptor;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Unpacks the layer `desc` (whose uncompressed digest is `diff_id`) of `image` into the
/// existing directory `dir`, then checks both digests. On a mismatch the caller discards
/// `dir`.
pub fn unpack_checked(
    image: &Image,
    desc: &Descriptor,
    diff_id: &str,
    dir: &Path,
    whiteouts: Whiteouts,
) -> Result<unpack::Stats> {
    let mut blob = HashingReader::new(image.blob(desc)?);
    let stats;
    let diff;
    {
        let decompressed: Box<dyn Read + '_> = match desc.media_type.rsplit_once('+') {
            Some((_, "gzip")) => Box::new(flate2::read::GzDecoder::new(&mut blob)),
            Some((_, "zstd")) => Box::new(zstd::Decoder::new(&mut blob).at(&image.path)?),
            None if desc.media_type.ends_with(".tar") || desc.media_type.ends_with("tar") => {
                Box::new(&mut blob)
            }
            _ => {
                return Err(Error::BadImage {
                    path: image.path.clone(),
                    reason: format!(
                        "layer {}: unsupported media type `{}`",
                        desc.digest, desc.media_type
                    ),
                })
            }
        };
        let mut tar = HashingReader::new(decompressed);
        stats = unpack::unpack(&mut tar, dir, whiteouts, &desc.digest)?;
        // The tar reader stops at the end-of-archive blocks: hash the padding too.
        io::copy(&mut tar, &mut io::sink()).map_err(|e| Error::Entry {
            layer: desc.digest.clone(),
            entry: "(end of archive)".into(),
            reason: e.to_string(),
        })?;
        diff = tar.digest();
    }
    io::copy(&mut blob, &mut io::sink()).at(&image.path)?;
    let actual = blob.digest();
    if actual != desc.digest {
        return Err(Error::Digest {
            digest: desc.digest.clone(),
            what: "blob digest",
            expected: desc.digest.clone(),
            actual,
        });
    }
    if diff != diff_id {
        return Err(Error::Digest {
            digest: desc.digest.clone(),
            what: "uncompressed digest (diff_id)",
            expected: diff_id.into(),
            actual: diff,
        });
    }
    Ok(stats)
}

/// The cache of unpacked layers under `root`.
pub struct LayerCache {
    dir: PathBuf,
}

impl LayerCache {
    pub fn new(state_root: &Path) -> Self {
        LayerCache {
            dir: state_root.join("layers/sha256"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The unpacked directory of each layer of `image`, bottom first, unpacking the
    /// missing ones.
    pub fn ensure(&self, image: &Image) -> Result<Vec<PathBuf>> {
        fs::create_dir_all(&self.dir).at(&self.dir)?;
        let mut dirs = Vec::new();
        for (desc, diff_id) in image
            .manifest
            .layers
            .iter()
            .zip(&image.config.rootfs.diff_ids)
        {
            let hex = desc
                .digest
                .strip_prefix("sha256:")
                .filter(|_| oci::digest::is_valid(&desc.digest))
                .ok_or_else(|| Error::BadImage {
                    path: image.path.clone(),
                    reason: format!("invalid layer digest `{}`", desc.digest),
                })?;
            let target = self.dir.join(hex);
            if !target.is_dir() {
                self.unpack_into_cache(image, desc, diff_id, &target)?;
            }
            dirs.push(target);
        }
        Ok(dirs)
    }

    fn unpack_into_cache(
        &self,
        image: &Image,
        desc: &Descriptor,
        diff_id: &str,
        target: &Path,
    ) -> Result<()> {
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            &desc.digest[7..19],
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp).at(&tmp)?;
        let guard = RemoveOnDrop(tmp.clone());
        tracing::info!("unpacking layer {}", desc.digest);
        unpack_checked(image, desc, diff_id, &tmp, Whiteouts::Overlay)?;
        match fs::rename(&tmp, target) {
            Ok(()) => {
                std::mem::forget(guard);
                Ok(())
            }
            // Another rehost unpacked the same layer meanwhile: keep theirs.
            Err(_) if target.is_dir() => Ok(()),
            Err(e) => Err(Error::io(target, e)),
        }
    }
}

/// Removes a directory tree when dropped (a half-unpacked layer, a failed start).
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
