//! Layer compression that uses every core while the walk goes on.
//!
//! gzip is compressed the way pigz does it: the tar stream is cut into blocks, each
//! block is deflated on a worker with the previous block's last 32 KiB as its
//! dictionary and ended with a sync flush, and the pieces are written in order as one
//! gzip member. The output is a standard gzip stream and the same for the same input,
//! whatever the number of workers. zstd uses the library's own multithreading.

use crossbeam_channel::{bounded, Receiver, Sender};
use flate2::{Compress, FlushCompress, Status};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::thread::JoinHandle;

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

/// Wraps `out` in a compressing writer. `finish` on the result flushes everything.
pub fn writer<W: Write + Send + 'static>(
    out: W,
    compression: Compression,
    threads: usize,
) -> io::Result<Box<dyn FinishWrite<W>>> {
    Ok(match compression {
        Compression::Gzip => Box::new(ParallelGzip::new(out, GZIP_LEVEL, threads)),
        Compression::Zstd => {
            let mut enc = zstd::stream::Encoder::new(out, 3)?;
            enc.multithread(threads as u32)?;
            // Smaller jobs than the default (4x the window) keep memory well under 64 MiB.
            enc.set_parameter(zstd::stream::raw::CParameter::JobSize(2 << 20))?;
            enc.include_checksum(false)?;
            Box::new(enc)
        }
        Compression::None => Box::new(Plain(out)),
    })
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

/// Measured on the debian-systemd fixture: level 4 costs 20% less CPU than 6 for a
/// layer 1.6% larger, still smaller than umoci's.
const GZIP_LEVEL: u32 = 4;
const BLOCK_SIZE: usize = 1 << 20;
const DICT_SIZE: usize = 32 * 1024;

struct Job {
    seq: u64,
    data: Vec<u8>,
    dict: Vec<u8>,
    last: bool,
}

struct Done {
    seq: u64,
    last: bool,
    len: u64,
    deflated: io::Result<Vec<u8>>,
    crc: crc32fast::Hasher,
}

pub struct ParallelGzip<W: Write + Send + 'static> {
    block: Vec<u8>,
    dict: Vec<u8>,
    seq: u64,
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<io::Result<W>>>,
}

impl<W: Write + Send + 'static> ParallelGzip<W> {
    pub fn new(out: W, level: u32, threads: usize) -> Self {
        let threads = threads.max(1);
        let (job_tx, job_rx) = bounded::<Job>(threads * 2);
        let (done_tx, done_rx) = bounded::<Done>(threads * 2);
        let workers = (0..threads)
            .map(|_| {
                let rx = job_rx.clone();
                let tx = done_tx.clone();
                std::thread::spawn(move || deflate_jobs(rx, tx, level))
            })
            .collect();
        drop(done_tx);
        let writer = std::thread::spawn(move || write_in_order(out, done_rx));
        ParallelGzip {
            block: Vec::with_capacity(BLOCK_SIZE),
            dict: Vec::new(),
            seq: 0,
            jobs: Some(job_tx),
            workers,
            writer: Some(writer),
        }
    }

    fn send(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_SIZE));
        let dict = std::mem::replace(
            &mut self.dict,
            data[data.len().saturating_sub(DICT_SIZE)..].to_vec(),
        );
        let job = Job {
            seq: self.seq,
            data,
            dict,
            last,
        };
        self.seq += 1;
        let sent = self
            .jobs
            .as_ref()
            .map(|tx| tx.send(job).is_ok())
            .unwrap_or(false);
        if !sent {
            return Err(self.fail());
        }
        Ok(())
    }

    /// The writer thread stopped early: take its error.
    fn fail(&mut self) -> io::Error {
        self.jobs = None;
        match self.writer.take().map(|h| h.join()) {
            Some(Ok(Err(e))) => e,
            _ => io::Error::other("compression stopped"),
        }
    }
}

impl<W: Write + Send + 'static> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK_SIZE - self.block.len();
        let n = room.min(buf.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK_SIZE {
            self.send(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> FinishWrite<W> for ParallelGzip<W> {
    fn finish_into(mut self: Box<Self>) -> io::Result<W> {
        self.send(true)?;
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        match self.writer.take().map(|h| h.join()) {
            Some(Ok(result)) => result,
            _ => Err(io::Error::other("compression thread failed")),
        }
    }
}

fn deflate_jobs(rx: Receiver<Job>, tx: Sender<Done>, level: u32) {
    for job in rx {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&job.data);
        let deflated = deflate_block(&job, level);
        if tx
            .send(Done {
                seq: job.seq,
                last: job.last,
                len: job.data.len() as u64,
                deflated,
                crc,
            })
            .is_err()
        {
            return;
        }
    }
}

fn deflate_block(job: &Job, level: u32) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(flate2::Compression::new(level), false);
    if !job.dict.is_empty() {
        c.set_dictionary(&job.dict).map_err(io::Error::other)?;
    }
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(job.data.len() / 2 + 1024);
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let status = c
            .compress_vec(&job.data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let done_input = c.total_in() as usize == job.data.len();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is in and output had room to spare.
            Status::Ok | Status::BufError
                if !job.last && done_input && out.capacity() > out.len() =>
            {
                break
            }
            _ => {}
        }
    }
    Ok(out)
}

fn write_in_order<W: Write>(mut out: W, rx: Receiver<Done>) -> io::Result<W> {
    // gzip header: no name, no time, unknown OS: the same bytes everywhere.
    out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    let mut crc = crc32fast::Hasher::new();
    let mut total: u64 = 0;
    let mut saw_last = false;
    for done in rx {
        pending.insert(done.seq, done);
        while let Some(done) = pending.remove(&next) {
            out.write_all(&done.deflated?)?;
            total += done.len;
            crc.combine(&done.crc);
            saw_last |= done.last;
            next += 1;
        }
    }
    if !saw_last || !pending.is_empty() {
        return Err(io::Error::other("compression ended early"));
    }
    out.write_all(&crc.finalize().to_le_bytes())?;
    out.write_all(&(total as u32).to_le_bytes())?;
    out.flush()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn roundtrip(data: &[u8], threads: usize) -> Vec<u8> {
        let mut w = writer(Vec::new(), Compression::Gzip, threads).unwrap();
        for chunk in data.chunks(70_000) {
            w.write_all(chunk).unwrap();
        }
        let gz = w.finish_into().unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        gz
    }

    #[test]
    fn parallel_gzip_is_standard_and_deterministic() {
        let data: Vec<u8> = (0..3_500_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 7919) as u8)
            .collect();
        let one = roundtrip(&data, 1);
        let four = roundtrip(&data, 4);
        assert_eq!(one, four, "output must not depend on the number of workers");
        assert!(one.len() < data.len() / 4);
        roundtrip(b"", 2);
        roundtrip(&vec![7u8; BLOCK_SIZE * 2], 2);
    }
}
