//! A package layer's tar, spooled into an unnamed temporary file while the walk goes on.
//!
//! A package file is checked against its package's digest while it is written, so it is
//! read once; when it turns out changed, its entry is taken back: the file is cut back
//! to where the entry began and the diff_id's hash goes back to that point. What comes
//! before the last entry kept does not change any more, so gzip's shared workers
//! compress it during the walk, block by block, reading it from the file
//! ([`super::gzip::FileFeed`]); zstd and no compression read the whole tar after the walk.
//! Memory is a write buffer per layer: the tar itself waits in the file.

use super::compress::Compressors;
use super::gzip::{FileFeed, BLOCK_SIZE};
use super::layer::{BuiltLayer, LayerBlob, LayerStats};
use crate::error::{Error, IoContext, Result};
use oci::digest::{self, HashingWriter};
use oci::layout::{BlobWriter, LayoutWriter};
use oci::tar::TarWriter;
use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// Where errors about the temporary file point.
const WHAT: &str = "a package layer's temporary file";

type Tar = HashingWriter<BufWriter<File>>;
type BlobFile = HashingWriter<BufWriter<File>>;

pub struct Spool<'a> {
    layout: &'a LayoutWriter,
    compressors: &'a Compressors,
    /// The tar, hashed as it is written (its diff_id).
    tar: Tar,
    /// The same file, for gzip's workers to read blocks from.
    file: Arc<File>,
    /// gzip's blob, opened with the first block given to the workers.
    gzip: Option<GzipBlob>,
}

struct GzipBlob {
    feed: FileFeed<BlobFile>,
    dir: PathBuf,
    tmp: PathBuf,
    path: PathBuf,
}

/// The point before an entry, to take it back: [`Spool::take_back`].
pub struct Mark(digest::Mark);

impl<'a> Spool<'a> {
    pub fn create(layout: &'a LayoutWriter, compressors: &'a Compressors) -> Result<Self> {
        let file = tempfile::tempfile_in(layout.work_dir()).at(layout.work_dir())?;
        let reader = file.try_clone().at(WHAT)?;
        Ok(Spool {
            layout,
            compressors,
            tar: HashingWriter::new(BufWriter::with_capacity(64 << 10, file)),
            file: Arc::new(reader),
            gzip: None,
        })
    }

    /// Writes entries: `TarWriter::new(spool.tar())`.
    pub fn tar(&mut self) -> &mut Tar {
        &mut self.tar
    }

    pub fn is_empty(&self) -> bool {
        self.tar.written() == 0
    }

    pub fn mark(&self) -> Mark {
        Mark(self.tar.mark())
    }

    /// Takes back everything written since `mark`.
    pub fn take_back(&mut self, mark: Mark) -> Result<()> {
        let at = mark.0.position();
        debug_assert!(self.gzip.as_ref().map_or(0, |g| g.feed.given()) <= at);
        self.tar.rewind(mark.0);
        let buf = self.tar.get_mut();
        buf.flush().at(WHAT)?;
        buf.get_ref().set_len(at).at(WHAT)?;
        buf.seek(SeekFrom::Start(at)).at(WHAT)?;
        Ok(())
    }

    /// Says that everything written so far stays: its whole blocks go to gzip's workers.
    pub fn settle(&mut self) -> Result<()> {
        let Some(pool) = self.compressors.gzip_pool() else {
            return Ok(());
        };
        let len = self.tar.written();
        let given = self.gzip.as_ref().map_or(0, |g| g.feed.given());
        if len - given < BLOCK_SIZE as u64 {
            return Ok(());
        }
        self.tar.flush().at(WHAT)?;
        let gzip = match &mut self.gzip {
            Some(gzip) => gzip,
            None => self
                .gzip
                .insert(GzipBlob::open(self.layout, pool, &self.file)?),
        };
        gzip.feed.give(len).at(&gzip.path)
    }

    /// Ends the tar: with gzip, its last block goes to the workers, which compress it
    /// while other layers end too.
    pub fn close(mut self) -> Result<Closed<'a>> {
        TarWriter::new(&mut self.tar).finish().at(WHAT)?;
        let (diff_id, tar_bytes, buf) = self.tar.finish();
        let file = buf
            .into_inner()
            .map_err(|e| Error::io(WHAT, e.into_error()))?;
        let end = match (self.compressors.gzip_pool(), self.gzip) {
            (Some(pool), gzip) => {
                let mut gzip = match gzip {
                    Some(gzip) => gzip,
                    None => GzipBlob::open(self.layout, pool, &self.file)?,
                };
                gzip.feed.give_last(tar_bytes).at(&gzip.path)?;
                End::Gzip(gzip)
            }
            (None, _) => End::Later(file),
        };
        Ok(Closed {
            layout: self.layout,
            compressors: self.compressors,
            diff_id,
            tar_bytes,
            end,
        })
    }
}

impl GzipBlob {
    fn open(
        layout: &LayoutWriter,
        pool: &Arc<super::gzip::Pool>,
        file: &Arc<File>,
    ) -> Result<GzipBlob> {
        // Written a deflated block at a time: a buffer would only hold memory.
        let blob = layout.blob_unbuffered()?;
        let path = blob.path().to_path_buf();
        let (dir, tmp, writer) = blob.into_writer();
        let feed = FileFeed::new(pool.clone(), file.clone(), writer).at(&path)?;
        Ok(GzipBlob {
            feed,
            dir,
            tmp,
            path,
        })
    }
}

/// A package layer's tar, ended, being compressed.
pub struct Closed<'a> {
    layout: &'a LayoutWriter,
    compressors: &'a Compressors,
    diff_id: String,
    tar_bytes: u64,
    end: End,
}

enum End {
    Gzip(GzipBlob),
    /// The tar, to compress now.
    Later(File),
}

impl Closed<'_> {
    /// The layer, once compressed; `stats` are its entries'.
    pub fn finish(self, mut stats: LayerStats) -> Result<BuiltLayer> {
        stats.tar_bytes = self.tar_bytes;
        match self.end {
            End::Gzip(gzip) => {
                let writer = gzip.feed.finish().at(&gzip.path)?;
                let (digest, size) = BlobWriter::commit_parts(&gzip.dir, &gzip.tmp, writer)?;
                Ok(BuiltLayer {
                    digest,
                    diff_id: self.diff_id,
                    size,
                    media_type: self.compressors.compression().layer_media_type().into(),
                    stats,
                })
            }
            End::Later(mut file) => {
                file.rewind().at(WHAT)?;
                LayerBlob::from_tar(
                    self.layout,
                    self.compressors,
                    &mut io::BufReader::with_capacity(1 << 20, file),
                    self.diff_id,
                    stats,
                )
            }
        }
    }
}
