//! The service-definition parsers of `rehost_init` read through their `FileSystem` trait;
//! this adapter gives them any [`Source`], resolving symlinks inside the source (an absolute
//! link in a captured tree points into the tree, never at the host).

use crate::entry::Kind;
use crate::source::Source;
use rehost_init::units::FileSystem;
use std::io;

/// A [`Source`] seen as a root filesystem with absolute paths.
pub struct SourceFs<'a>(pub &'a dyn Source);

fn rel(path: &str) -> Vec<u8> {
    path.trim_start_matches('/').as_bytes().to_vec()
}

fn to_io(e: crate::Error) -> io::Error {
    let kind = if e.is_vanished() {
        io::ErrorKind::NotFound
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, e.to_string())
}

impl SourceFs<'_> {
    /// The path of `path` inside the source with every symlink resolved inside it.
    pub fn resolve(&self, path: &str, follow_last: bool) -> io::Result<String> {
        let mut done: Vec<String> = Vec::new();
        let mut todo: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_string)
            .collect();
        todo.reverse();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                done.pop();
                continue;
            }
            done.push(c);
            if todo.is_empty() && !follow_last {
                break;
            }
            let here = done.join("/");
            let Ok(meta) = self.0.metadata(here.as_bytes()) else {
                continue;
            };
            if meta.kind == Kind::Symlink {
                links += 1;
                if links > 40 {
                    return Err(io::Error::other(format!(
                        "/{path}: too many levels of symbolic links"
                    )));
                }
                done.pop();
                let target = String::from_utf8_lossy(&meta.link).into_owned();
                if target.starts_with('/') {
                    done.clear();
                }
                let mut more: Vec<String> = target
                    .split('/')
                    .filter(|c| !c.is_empty() && *c != ".")
                    .map(str::to_string)
                    .collect();
                more.reverse();
                todo.extend(more);
            }
        }
        Ok(format!("/{}", done.join("/")))
    }
}

impl FileSystem for SourceFs<'_> {
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        let p = self.resolve(path, true)?;
        // Service definitions are small; anything huge is not one.
        self.0.read_to_vec(&rel(&p), 4 << 20).map_err(to_io)
    }

    fn read_dir(&self, path: &str) -> io::Result<Vec<String>> {
        let p = self.resolve(path, true)?;
        let names = self.0.read_dir(&rel(&p)).map_err(to_io)?;
        Ok(names
            .into_iter()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .collect())
    }

    fn read_link(&self, path: &str) -> io::Result<Option<String>> {
        let p = self.resolve(path, false)?;
        let meta = self.0.metadata(&rel(&p)).map_err(to_io)?;
        Ok((meta.kind == Kind::Symlink).then(|| String::from_utf8_lossy(&meta.link).into_owned()))
    }

    fn exists(&self, path: &str) -> bool {
        self.resolve(path, false)
            .is_ok_and(|p| self.0.metadata(&rel(&p)).is_ok())
    }
}
