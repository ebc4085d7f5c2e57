//! Layer compression that uses every core while the walk goes on: gzip in blocks on a
//! pool of workers ([`super::gzip`]), zstd with the library's own multithreading.

use super::gzip::{self, ParallelGzip};
use std::io::{self, Write};
use std::sync::Arc;

/// How a layer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    /// The OCI media type of a layer compressed this way.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }
}

/// A name that is not a [`Compression`] (what `--compression` was given).
#[derive(Debug, thiserror::Error)]
#[error("unknown compression `{0}` (gzip, zstd, none)")]
pub struct UnknownCompression(pub String);

impl std::str::FromStr for Compression {
    type Err = UnknownCompression;
    fn from_str(s: &str) -> Result<Self, UnknownCompression> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "none" => Ok(Compression::None),
            _ => Err(UnknownCompression(s.to_string())),
        }
    }
}

/// Wraps `out` in a compressing writer with workers of its own. `finish` on the result
/// flushes everything.
pub fn writer<W: Write + Send + 'static>(
    out: W,
    compression: Compression,
    threads: usize,
) -> io::Result<Box<dyn FinishWrite<W>>> {
    Compressors::new(compression, threads).writer(out)
}

/// How the layers of one image are compressed, and the gzip workers that the layers
/// written at once share (layers by package write dozens during one walk).
pub struct Compressors {
    compression: Compression,
    threads: usize,
    gzip: Option<Arc<gzip::Pool>>,
}

impl Compressors {
    pub fn new(compression: Compression, threads: usize) -> Compressors {
        let gzip = (compression == Compression::Gzip)
            .then(|| Arc::new(gzip::Pool::new(gzip::LEVEL, threads)));
        Compressors {
            compression,
            threads,
            gzip,
        }
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The shared gzip workers, when the compression is gzip.
    pub fn gzip_pool(&self) -> Option<&Arc<gzip::Pool>> {
        self.gzip.as_ref()
    }

    /// Wraps `out` in a compressing writer; `finish` on the result flushes everything.
    pub fn writer<W: Write + Send + 'static>(&self, out: W) -> io::Result<Box<dyn FinishWrite<W>>> {
        Ok(match (self.compression, &self.gzip) {
            (Compression::Gzip, pool) => {
                let pool = pool
                    .clone()
                    .unwrap_or_else(|| Arc::new(gzip::Pool::new(gzip::LEVEL, self.threads)));
                Box::new(ParallelGzip::on(pool, out)?)
            }
            (Compression::Zstd, _) => {
                let mut enc = zstd::stream::Encoder::new(out, 3)?;
                enc.multithread(self.threads as u32)?;
                // Smaller jobs than the default (4x the window) keep memory well under 64 MiB.
                enc.set_parameter(zstd::stream::raw::CParameter::JobSize(2 << 20))?;
                enc.include_checksum(false)?;
                Box::new(enc)
            }
            (Compression::None, _) => Box::new(Plain(out)),
        })
    }
}

/// A writer that must be finished to write its trailer, giving back the inner writer.
pub trait FinishWrite<W>: Write + Send {
    fn finish_into(self: Box<Self>) -> io::Result<W>;
}

impl<W: Write + Send> FinishWrite<W> for zstd::stream::Encoder<'static, W> {
    fn finish_into(self: Box<Self>) -> io::Result<W> {
        (*self).finish()
    }
}

struct Plain<W>(W);

impl<W: Write> Write for Plain<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write + Send> FinishWrite<W> for Plain<W> {
    fn finish_into(self: Box<Self>) -> io::Result<W> {
        let mut me = *self;
        me.0.flush()?;
        Ok(me.0)
    }
}
