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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Entry, Kind};
    use crate::image::Compression;
    use oci::layout::OutputFormat;
    use std::io::Read;

    fn file(i: usize, len: usize) -> (Entry, Vec<u8>) {
        let mut entry = Entry::new(format!("usr/lib/f{i}").into_bytes(), Kind::File);
        entry.mode = 0o644;
        let content: Vec<u8> = (0..len)
            .map(|j| (j % 251) as u8 ^ (j / 997 + i) as u8)
            .collect();
        entry.size = content.len() as u64;
        (entry, content)
    }

    /// Writes `files` into a spool; with `changed`, a changed file is written and taken
    /// back after each of them.
    fn layer(
        layout: &LayoutWriter,
        compressors: &Compressors,
        files: &[(Entry, Vec<u8>)],
        changed: Option<&(Entry, Vec<u8>)>,
    ) -> BuiltLayer {
        let mut spool = Spool::create(layout, compressors).unwrap();
        for (entry, content) in files {
            TarWriter::new(spool.tar())
                .append(entry, Some(&mut content.as_slice()))
                .unwrap();
            spool.settle().unwrap();
            if let Some((entry, content)) = changed {
                let mark = spool.mark();
                TarWriter::new(spool.tar())
                    .append(entry, Some(&mut content.as_slice()))
                    .unwrap();
                spool.take_back(mark).unwrap();
            }
        }
        spool
            .close()
            .unwrap()
            .finish(LayerStats::default())
            .unwrap()
    }

    /// A layer with entries taken back is the layer written without them: its tar (the
    /// diff_id, over the blob's content) and its compressed blob, whatever the
    /// compression.
    #[test]
    fn a_taken_back_entry_leaves_no_trace() {
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("out.oci");
        let layout = LayoutWriter::create(&out, OutputFormat::Oci, true).unwrap();
        let files: Vec<_> = (0..7).map(|i| file(i, 400_000 + i * 50_000)).collect();
        let changed = file(99, 1_500_000);
        for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let compressors = Compressors::new(compression, 2);
            let straight = layer(&layout, &compressors, &files, None);
            let taken = layer(&layout, &compressors, &files, Some(&changed));
            assert_eq!(straight.digest, taken.digest, "{compression:?}");
            assert_eq!(straight.diff_id, taken.diff_id, "{compression:?}");
            let blob = std::fs::read(
                layout
                    .work_dir()
                    .join("blobs/sha256")
                    .join(&taken.digest["sha256:".len()..]),
            )
            .unwrap();
            let mut tar = Vec::new();
            match compression {
                Compression::Gzip => {
                    flate2::read::GzDecoder::new(&blob[..])
                        .read_to_end(&mut tar)
                        .unwrap();
                }
                Compression::Zstd => tar = zstd::decode_all(&blob[..]).unwrap(),
                Compression::None => tar = blob,
            }
            assert_eq!(oci::digest::of(&tar), taken.diff_id, "{compression:?}");
            let mut reader = oci::tar::Reader::new(&tar[..]);
            let mut names = Vec::new();
            while let Some(header) = reader.next_entry().unwrap() {
                names.push(header.path.clone());
            }
            assert_eq!(
                names,
                files
                    .iter()
                    .map(|(e, _)| e.path.clone())
                    .collect::<Vec<_>>()
            );
        }
    }
}
