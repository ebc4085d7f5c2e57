//! A disk image opens no file but the one given. The files an image names itself (a
//! qcow2 backing file, a VMDK extent) are the image's input, not the user's: one that
//! names `/etc/shadow` would copy a host file into the converted image. So such a file
//! is opened only when, with every symlink resolved, it lies inside the image's own
//! directory or a directory the user allowed, and only when it is a regular file: a
//! FIFO would block the reader forever, a device would be read without end.

use std::fs::{File, FileType};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// What a disk image may open besides itself.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Directories whose files an image may name as backing files or extents, beyond
    /// the image's own directory.
    pub allow_backing: Vec<PathBuf>,
}

/// The directories an image's backing files and extents must lie in, resolved.
pub(crate) struct Confinement {
    roots: Vec<PathBuf>,
}

impl Confinement {
    /// The image's own directory and the allowed ones, each with its symlinks resolved.
    pub fn new(image: &Path, options: &OpenOptions) -> io::Result<Self> {
        let own = match image.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut roots = vec![own.canonicalize()?];
        for dir in &options.allow_backing {
            let resolved = dir.canonicalize().map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("allowed backing directory {}: {e}", dir.display()),
                )
            })?;
            if !resolved.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "allowed backing directory {} is not a directory",
                        dir.display()
                    ),
                ));
            }
            roots.push(resolved);
        }
        Ok(Confinement { roots })
    }

    /// Opens the file `named` by the image file `by` (relative names are relative to
    /// `by`'s directory), `what` saying what it is for messages ("backing file"). Gives
    /// its resolved path and the open file.
    pub fn open(&self, by: &Path, named: &Path, what: &str) -> io::Result<(PathBuf, File)> {
        let full = match by.parent() {
            Some(dir) if named.is_relative() => dir.join(named),
            _ => named.to_path_buf(),
        };
        let resolved = full
            .canonicalize()
            .map_err(|e| io::Error::new(e.kind(), format!("{what} {}: {e}", named.display())))?;
        if !self.roots.iter().any(|root| resolved.starts_with(root)) {
            let shown = if resolved == named {
                named.display().to_string()
            } else {
                format!("{} (resolving to {})", named.display(), resolved.display())
            };
            let allow = resolved.parent().unwrap_or(Path::new("/"));
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{what} {shown} lies outside the image's directory: refused (allow it with --allow-backing {})",
                    allow.display()
                ),
            ));
        }
        // The resolved path has no symlink left; one appearing now is not followed.
        let file = open_regular(&resolved, false)
            .map_err(|e| io::Error::new(e.kind(), format!("{what} {}: {e}", named.display())))?;
        Ok((resolved, file))
    }
}

/// Opens a file for reading only if it is a regular file, without ever blocking: the
/// type is checked before the open (a device is never opened) and again on the open
/// file, which is opened non-blocking (a FIFO swapped in meanwhile cannot hang it).
/// `follow`: whether a symlink as the last component is followed.
pub fn open_regular(path: &Path, follow: bool) -> io::Result<File> {
    let before = if follow {
        std::fs::metadata(path)?
    } else {
        std::fs::symlink_metadata(path)?
    };
    not_regular(before.file_type())?;
    let mut flags = libc::O_NONBLOCK;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    not_regular(file.metadata()?.file_type())?;
    // Reads of a regular file never block; clear the flag all the same, so the file
    // behaves as an ordinary open one.
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function owns, with no pointers.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(file)
}

fn not_regular(t: FileType) -> io::Result<()> {
    let kind = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_symlink() {
        "a symlink"
    } else {
        "not a file"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{kind}, not a regular file: refused"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile_dir("fifo");
        let fifo = dir.join("f");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = open_regular(&fifo, true).unwrap_err();
        assert!(err.to_string().contains("a FIFO"), "{err}");
    }

    #[test]
    fn a_name_outside_the_roots_is_refused_even_through_a_symlink() {
        let dir = tempfile_dir("roots");
        std::fs::create_dir_all(dir.join("img")).unwrap();
        std::fs::create_dir_all(dir.join("out")).unwrap();
        std::fs::write(dir.join("out/secret"), b"x").unwrap();
        std::fs::write(dir.join("img/inside"), b"x").unwrap();
        std::os::unix::fs::symlink("../out/secret", dir.join("img/link")).unwrap();
        let image = dir.join("img/top");
        let c = Confinement::new(&image, &OpenOptions::default()).unwrap();
        assert!(c.open(&image, Path::new("inside"), "backing file").is_ok());
        for bad in ["link", "../out/secret"] {
            let err = c.open(&image, Path::new(bad), "backing file").unwrap_err();
            assert!(err.to_string().contains("--allow-backing"), "{err}");
        }
        let abs = dir.join("out/secret");
        assert!(c.open(&image, &abs, "backing file").is_err());
        let allowed = OpenOptions {
            allow_backing: vec![dir.join("out")],
        };
        let c = Confinement::new(&image, &allowed).unwrap();
        assert!(c.open(&image, Path::new("link"), "backing file").is_ok());
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("diskimage-confine-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
