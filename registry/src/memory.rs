//! Where each blob was pushed before: per registry, the repository that holds it. A push
//! to another repository of the same registry mounts the blob from there
//! (`POST /v2/REPO/blobs/uploads/?mount=DIGEST&from=OTHER`) instead of uploading it
//! again; a fleet's shared layers then cross the network once per registry.
//!
//! It is a cache: a file that is missing, unreadable, too large or malformed is an empty
//! memory, and a memory that cannot be saved only costs uploads later. The registry has
//! the last word: a refused mount falls back to an upload.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file is read whole: past this size it is ignored (and rewritten smaller).
const MAX_FILE: u64 = 32 << 20;
/// Blobs remembered per registry; the oldest are forgotten first.
const MAX_PER_REGISTRY: usize = 100_000;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Stored {
    /// registry → digest → where.
    registries: BTreeMap<String, BTreeMap<String, Place>>,
    /// Increases with every push, to forget the oldest first.
    clock: u64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Place {
    repository: String,
    /// The [`Stored::clock`] of the push that last sent or found it there.
    seen: u64,
}

/// The memory of one push: loaded at its start, saved at its end.
#[derive(Debug)]
pub struct BlobMemory {
    path: Option<PathBuf>,
    stored: Stored,
}

impl BlobMemory {
    /// The memory kept in `path`; `None`: remember nothing.
    pub fn load(path: Option<&Path>) -> BlobMemory {
        let stored = path
            .and_then(|p| {
                let meta = std::fs::metadata(p).ok()?;
                if !meta.is_file() || meta.len() > MAX_FILE {
                    return None;
                }
                serde_json::from_slice(&std::fs::read(p).ok()?).ok()
            })
            .unwrap_or_default();
        BlobMemory {
            path: path.map(Path::to_path_buf),
            stored,
        }
    }

    /// A repository of `registry`, other than `repository`, that held `digest`.
    pub fn holder(&self, registry: &str, repository: &str, digest: &str) -> Option<String> {
        let place = self.stored.registries.get(registry)?.get(digest)?;
        (place.repository != repository).then(|| place.repository.clone())
    }

    /// `repository` of `registry` now holds `digests`.
    pub fn remember<'a>(
        &mut self,
        registry: &str,
        repository: &str,
        digests: impl IntoIterator<Item = &'a str>,
    ) {
        self.stored.clock += 1;
        let seen = self.stored.clock;
        let blobs = self
            .stored
            .registries
            .entry(registry.to_string())
            .or_default();
        for d in digests {
            blobs.insert(
                d.to_string(),
                Place {
                    repository: repository.to_string(),
                    seen,
                },
            );
        }
        if blobs.len() > MAX_PER_REGISTRY {
            let mut by_age: Vec<(u64, String)> =
                blobs.iter().map(|(d, p)| (p.seen, d.clone())).collect();
            by_age.sort_unstable();
            for (_, d) in by_age.iter().take(blobs.len() - MAX_PER_REGISTRY) {
                blobs.remove(d);
            }
        }
    }

    /// Writes the memory (whole, or not at all); a failure is only logged.
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
            std::fs::write(&tmp, serde_json::to_vec(&self.stored)?)?;
            std::fs::rename(&tmp, path)
        };
        if let Err(e) = write() {
            tracing::warn!("{}: cannot remember the pushed blobs: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BlobMemory;

    #[test]
    fn a_blob_is_found_in_another_repository_of_the_same_registry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.json");
        let mut m = BlobMemory::load(Some(&path));
        m.remember("r:5000", "fleet/web01", ["sha256:a", "sha256:b"]);
        m.save();
        let m = BlobMemory::load(Some(&path));
        assert_eq!(
            m.holder("r:5000", "fleet/web02", "sha256:a").as_deref(),
            Some("fleet/web01")
        );
        assert_eq!(m.holder("r:5000", "fleet/web01", "sha256:a"), None);
        assert_eq!(m.holder("other:5000", "fleet/web02", "sha256:a"), None);
        assert_eq!(m.holder("r:5000", "fleet/web02", "sha256:c"), None);
    }

    #[test]
    fn a_bad_file_is_an_empty_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.json");
        std::fs::write(&path, b"{not json").unwrap();
        let m = BlobMemory::load(Some(&path));
        assert_eq!(m.holder("r", "x", "sha256:a"), None);
        // A directory where the file should be: nothing is read, saving fails quietly.
        let m = BlobMemory::load(Some(dir.path()));
        m.save();
    }

    #[test]
    fn the_oldest_are_forgotten_first() {
        let mut m = BlobMemory::load(None);
        let many: Vec<String> = (0..super::MAX_PER_REGISTRY)
            .map(|i| format!("sha256:{i}"))
            .collect();
        m.remember("r", "old", many.iter().map(String::as_str));
        m.remember("r", "new", ["sha256:fresh"]);
        assert_eq!(m.holder("r", "x", "sha256:fresh").as_deref(), Some("new"));
        let kept = (0..super::MAX_PER_REGISTRY)
            .filter(|i| m.holder("r", "x", &format!("sha256:{i}")).is_some())
            .count();
        assert_eq!(kept, super::MAX_PER_REGISTRY - 1);
    }
}
