//! Reading an image on disk: an OCI image layout directory, or the same layout in one
//! tar file (an oci-archive). An archive is read in place: its blobs are byte ranges of
//! the tar file, found once by walking the headers, so nothing is extracted or copied.
//!
//! A layout is input like any other: every file of a directory layout is opened confined
//! to it (`openat2` with `RESOLVE_BENEATH`: a symlink that leaves the layout is an error),
//! must be a regular file (opened without blocking: a FIFO is refused, not waited on), and
//! JSON documents are read up to [`MAX_JSON`] bytes.

use crate::digest;
use crate::error::{Error, Result};
use crate::image::{Descriptor, ImageConfig, Index, Manifest, ANNOTATION_REF_NAME, MAX_JSON};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Where a blob's bytes are: a file, from `offset`, `len` bytes long.
#[derive(Debug, Clone)]
pub struct BlobLocation {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
    /// For a directory layout: the layout and the member's name in it, to open it again
    /// confined.
    member: Option<(PathBuf, String)>,
}

impl BlobLocation {
    /// The file, positioned at the blob's first byte, opened as the layout reader opens
    /// it (confined, regular files only).
    pub fn open(&self) -> io::Result<File> {
        let mut file = match &self.member {
            Some((root, name)) => open_member(root, name)?,
            None => open_regular(&self.path)?,
        };
        file.seek(SeekFrom::Start(self.offset))?;
        Ok(file)
    }
}

/// The regular file `name` of the layout directory `root`: never through a symlink that
/// leaves it, never blocking on a FIFO.
fn open_member(root: &Path, name: &str) -> io::Result<File> {
    let dir = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let fd = rustix::fs::openat2(
        &dir,
        name,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| match e {
        rustix::io::Errno::XDEV => io::Error::other("a symlink that leaves the layout"),
        e => e.into(),
    })?;
    regular(fd)
}

/// The regular file `path` (an archive the user named), opened without blocking.
fn open_regular(path: &Path) -> io::Result<File> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    regular(fd)
}

fn regular(fd: std::os::fd::OwnedFd) -> io::Result<File> {
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(File::from(fd))
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
            let file = open_regular(path).map_err(|e| Error::io(path, e))?;
            Some(index_archive(file, path)?)
        };
        let image = Layout {
            path: path.to_path_buf(),
            members,
        };
        let marker = image.read_small("oci-layout").map_err(|e| match e {
            // A file that is there but cannot be read says why.
            Error::Io { ref source, .. } if source.kind() != io::ErrorKind::NotFound => e,
            Error::Layout { ref reason, .. } if !reason.ends_with("not in the archive") => e,
            _ => Error::layout(
                path,
                "not an OCI image layout or archive (no oci-layout file)",
            ),
        })?;
        if !String::from_utf8_lossy(&marker).contains("imageLayoutVersion") {
            return Err(Error::layout(path, "oci-layout file is not valid"));
        }
        Ok(image)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The member `name` (e.g. `blobs/sha256/…`): where it is, and the file opened at its
    /// first byte.
    fn open_at(&self, name: &str) -> Result<(File, BlobLocation)> {
        match &self.members {
            None => {
                let path = self.path.join(name);
                let file = open_member(&self.path, name).map_err(|e| Error::io(&path, e))?;
                let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
                let loc = BlobLocation {
                    path,
                    offset: 0,
                    len,
                    member: Some((self.path.clone(), name.to_string())),
                };
                Ok((file, loc))
            }
            Some(members) => {
                let (offset, len) = members.get(name).ok_or_else(|| {
                    Error::layout(&self.path, format!("{name}: not in the archive"))
                })?;
                let loc = BlobLocation {
                    path: self.path.clone(),
                    offset: *offset,
                    len: *len,
                    member: None,
                };
                let file = loc.open().map_err(|e| Error::io(&self.path, e))?;
                Ok((file, loc))
            }
        }
    }

    /// A JSON document of the layout, whole: at most [`MAX_JSON`] bytes.
    fn read_small(&self, name: &str) -> Result<Vec<u8>> {
        let (file, loc) = self.open_at(name)?;
        if loc.len > MAX_JSON {
            return Err(Error::layout(
                &self.path,
                format!(
                    "{name}: {} bytes, more than the {} MiB a manifest, config or index may have",
                    loc.len,
                    MAX_JSON >> 20
                ),
            ));
        }
        let mut buf = Vec::with_capacity(loc.len as usize);
        file.take(loc.len)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(&loc.path, e))?;
        if buf.len() as u64 != loc.len {
            return Err(Error::layout(&self.path, format!("{name}: truncated")));
        }
        Ok(buf)
    }

    /// Where the blob `desc` is; checks the digest's form and that the size matches.
    pub fn blob(&self, desc: &Descriptor) -> Result<BlobLocation> {
        self.open_blob_at(desc).map(|(_, loc)| loc)
    }

    fn open_blob_at(&self, desc: &Descriptor) -> Result<(File, BlobLocation)> {
        if !digest::is_valid(&desc.digest) {
            return Err(Error::layout(
                &self.path,
                format!("invalid digest `{}`", desc.digest),
            ));
        }
        let (file, loc) = self.open_at(&format!("blobs/sha256/{}", &desc.digest[7..]))?;
        if loc.len != desc.size {
            return Err(Error::layout(
                &self.path,
                format!(
                    "blob {} is {} bytes, its descriptor says {}",
                    desc.digest, loc.len, desc.size
                ),
            ));
        }
        Ok((file, loc))
    }

    /// A stream of the blob `desc`'s bytes, its size checked (no byte past the
    /// descriptor's size is read); the caller hashes what it reads.
    pub fn open_blob(&self, desc: &Descriptor) -> Result<std::io::Take<File>> {
        let (file, _) = self.open_blob_at(desc)?;
        Ok(file.take(desc.size))
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
        let descriptor = select(&self.path, &self.read_small("index.json")?, tag)?;
        let bytes = self.read_blob(&descriptor)?;
        let manifest = parse_manifest(&self.path, &descriptor, &bytes)?;
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

    /// The config of `manifest`, read, checked against its digest and parsed.
    pub fn config(&self, manifest: &Manifest) -> Result<ImageConfig> {
        parse_config(
            &self.path,
            &manifest.config,
            &self.read_blob(&manifest.config)?,
        )
    }
}

/// The entry of the index `index` (index.json's bytes, of the layout at `path`) tagged
/// `tag`, or its only entry when `tag` is None.
pub fn select(path: &Path, index: &[u8], tag: Option<&str>) -> Result<Descriptor> {
    let index: Index = serde_json::from_slice(index)
        .map_err(|e| Error::layout(path, format!("index.json: {e}")))?;
    let tag_of = |d: &Descriptor| d.annotations.get(ANNOTATION_REF_NAME).cloned();
    let found: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| tag.is_none_or(|t| tag_of(d).as_deref() == Some(t)))
        .collect();
    match (found.as_slice(), tag) {
        ([one], _) => Ok((*one).clone()),
        ([], Some(t)) => Err(Error::layout(path, format!("no image tagged `{t}`"))),
        ([], None) => Err(Error::layout(path, "holds no image")),
        _ => Err(Error::layout(
            path,
            "holds several images: name one as IMAGE:TAG",
        )),
    }
}

/// The image manifest `bytes` (described by `desc`, of the layout at `path`), parsed.
pub fn parse_manifest(path: &Path, desc: &Descriptor, bytes: &[u8]) -> Result<Manifest> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::layout(
            path,
            format!("manifest {}: not an image manifest ({e})", desc.digest),
        )
    })
}

/// The image config `bytes` (described by `desc`, of the layout at `path`), parsed.
pub fn parse_config(path: &Path, desc: &Descriptor, bytes: &[u8]) -> Result<ImageConfig> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::layout(path, format!("config {}: {e}", desc.digest)))
}

/// Every regular file of a tar archive: name → (data offset, size). Only headers are read.
fn index_archive(file: File, path: &Path) -> Result<HashMap<String, (u64, u64)>> {
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut archive = crate::tar::Reader::seekable(file);
    let bad = |e: crate::tar::TarError| {
        Error::layout(path, format!("not an OCI image layout or archive: {e}"))
    };
    let mut members = HashMap::new();
    while let Some(entry) = archive.next_entry().map_err(bad)? {
        if entry.kind != crate::tar::EntryType::File || entry.sparse.is_some() {
            continue;
        }
        if entry.data_offset.saturating_add(entry.size) > len {
            return Err(Error::layout(
                path,
                "cut short (a member ends past the file's end)",
            ));
        }
        let name = String::from_utf8_lossy(&entry.path).into_owned();
        let name = name.trim_start_matches("./").to_string();
        members.insert(name, (entry.data_offset, entry.size));
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

    /// A one-image layout written by hand: (layout dir, manifest descriptor).
    fn small_layout(dir: &Path) -> Descriptor {
        let put = |b: &[u8]| {
            let d = digest::of(b);
            std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
            std::fs::write(dir.join("blobs/sha256").join(&d[7..]), b).unwrap();
            Descriptor {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                digest: d,
                size: b.len() as u64,
                annotations: Default::default(),
                platform: None,
            }
        };
        let config = put(
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        );
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[]}}"#,
            config.digest, config.size
        );
        let desc = put(manifest.as_bytes());
        std::fs::write(
            dir.join("index.json"),
            format!(
                r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
                serde_json::to_string(&desc).unwrap()
            ),
        )
        .unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        desc
    }

    fn fifo(path: &Path) {
        let _ = std::fs::remove_file(path);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
    }

    fn manifest_error(dir: &Path) -> String {
        match Layout::open(dir).and_then(|l| l.manifest(None)) {
            Ok(_) => panic!("{}: read", dir.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn fifos_links_out_and_huge_documents_are_refused_without_blocking() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("l");
        let desc = small_layout(&dir);
        Layout::open(&dir).unwrap().manifest(None).unwrap();
        let manifest = dir.join("blobs/sha256").join(&desc.digest[7..]);

        fifo(&dir.join("index.json"));
        let e = manifest_error(&dir);
        assert!(e.ends_with("index.json: not a regular file"), "{e}");

        std::fs::remove_file(dir.join("index.json")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("index.json")).unwrap();
        let e = manifest_error(&dir);
        assert!(
            e.ends_with("index.json: a symlink that leaves the layout"),
            "{e}"
        );

        small_layout(&dir);
        std::fs::remove_file(dir.join("index.json")).unwrap();
        std::fs::write(dir.join("index.json"), vec![b' '; 5 << 20]).unwrap();
        let e = manifest_error(&dir);
        assert!(
            e.contains("index.json: 5242880 bytes, more than the 4 MiB"),
            "{e}"
        );

        small_layout(&dir);
        fifo(&manifest);
        let e = manifest_error(&dir);
        assert!(e.ends_with("not a regular file"), "{e}");

        fifo(&dir.join("oci-layout"));
        let e = Layout::open(&dir).err().unwrap().to_string();
        assert!(e.ends_with("oci-layout: not a regular file"), "{e}");

        // An archive that is a FIFO is refused too, not waited on.
        let archive = t.path().join("image.tar");
        fifo(&archive);
        let e = Layout::open(&archive).err().unwrap().to_string();
        assert!(e.ends_with("image.tar: not a regular file"), "{e}");
    }

    #[test]
    fn a_blob_longer_than_its_descriptor_is_refused_and_never_read_past_it() {
        let t = tempfile::tempdir().unwrap();
        let desc = small_layout(t.path());
        let layout = Layout::open(t.path()).unwrap();
        let mut short = desc.clone();
        short.size -= 1;
        let e = layout.open_blob(&short).err().unwrap().to_string();
        assert!(e.contains("its descriptor says"), "{e}");
        let mut all = Vec::new();
        layout
            .open_blob(&desc)
            .unwrap()
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all.len() as u64, desc.size);
    }
}
