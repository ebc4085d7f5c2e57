//! A fixed-size cache of decoded (decompressed) clusters, filled ahead of the reader by
//! a small pool of worker threads.
//!
//! Why: a converter walks the filesystem and reads one file after another on a single
//! thread, and on an image written by `mkfs -d` and `qemu-img convert -c` (or a
//! streamOptimized VMDK) the data of consecutive files lies in consecutive clusters.
//! Inflating each cluster on that thread serializes the whole conversion behind the
//! decompressor; when a compressed cluster is read, the next few are handed to workers,
//! so by the time the reader gets there they are already in the cache.
//!
//! Read-ahead is best effort and never changes what is read: a worker's failure is
//! dropped, and the reader, finding the cluster absent, decodes it itself and reports
//! the error with the cluster's place. A reader needing a cluster a worker is decoding
//! waits for it instead of decoding it twice; the worker always clears its mark, even if
//! the decoder panics, so nobody waits forever.
//!
//! Memory: the cache holds a fixed number of clusters, the job queue a fixed number of
//! jobs, and each worker one cluster in progress.

use crate::device::BufferCache;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use flate2::{Decompress, FlushDecompress};
use std::cell::RefCell;
use std::collections::HashSet;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;

/// Decodes the cluster stored at `key` (`len` bytes there, when the format knows it).
pub type Decoder = dyn Fn(u64, usize) -> io::Result<Vec<u8>> + Send + Sync;

/// Clusters scheduled ahead of the one being read.
pub const WINDOW: u64 = 16;
/// Most workers per image, whatever the machine.
const MAX_WORKERS: usize = 4;

pub struct ClusterCache {
    shared: Arc<Shared>,
    pool: OnceLock<Option<Pool>>,
    workers: usize,
    /// Guest clusters up to here (exclusive) are already scheduled.
    scheduled_end: Mutex<u64>,
}

struct Shared {
    decode: Box<Decoder>,
    state: Mutex<State>,
    ready: Condvar,
    closed: AtomicBool,
}

struct State {
    cache: BufferCache,
    /// Keys a worker is decoding now.
    pending: HashSet<u64>,
}

struct Pool {
    jobs: Sender<(u64, usize)>,
    handles: Vec<JoinHandle<()>>,
}

impl ClusterCache {
    /// A cache of `capacity` clusters, with as many read-ahead workers as the machine
    /// has cores (none on a single core, where they would only compete with the reader).
    pub fn new(capacity: usize, decode: Box<Decoder>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = if cores > 1 { cores.min(MAX_WORKERS) } else { 0 };
        Self::with_workers(capacity, workers, decode)
    }

    pub fn with_workers(capacity: usize, workers: usize, decode: Box<Decoder>) -> Self {
        ClusterCache {
            shared: Arc::new(Shared {
                decode,
                state: Mutex::new(State {
                    cache: BufferCache::new(capacity),
                    pending: HashSet::new(),
                }),
                ready: Condvar::new(),
                closed: AtomicBool::new(false),
            }),
            pool: OnceLock::new(),
            workers,
            scheduled_end: Mutex::new(0),
        }
    }

    /// The decoded cluster at `key`: from the cache, from a worker that is decoding it,
    /// or decoded here.
    pub fn get(&self, key: u64, len: usize) -> io::Result<Arc<Vec<u8>>> {
        let mut state = self.shared.lock();
        loop {
            if let Some(c) = state.cache.get(key) {
                return Ok(c);
            }
            if !state.pending.contains(&key) {
                break;
            }
            state = self
                .shared
                .ready
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        // Marked pending while decoding here too, so a worker does not start the same.
        state.pending.insert(key);
        drop(state);
        let guard = PendingGuard {
            shared: &self.shared,
            key,
        };
        let out = Arc::new((self.shared.decode)(key, len)?);
        self.shared.lock().cache.put(key, out.clone());
        drop(guard);
        Ok(out)
    }

    /// The guest clusters after `guest` not yet scheduled: the caller maps them and
    /// passes the compressed ones to [`Self::prefetch`]. Empty when there are no workers.
    pub fn ahead_of(&self, guest: u64) -> Range<u64> {
        if self.workers == 0 {
            return 0..0;
        }
        let target = guest.saturating_add(1 + WINDOW);
        let mut end = self.scheduled_end.lock().unwrap_or_else(|e| e.into_inner());
        // Still inside the scheduled window: top it up. Elsewhere (a jump): start anew.
        let start = if *end > guest && *end <= target {
            *end
        } else {
            guest + 1
        };
        *end = target;
        start..target
    }

    /// Hands clusters to the workers, skipping those already cached or under way.
    /// Never blocks: when the queue is full, the rest is left to the reader.
    pub fn prefetch(&self, jobs: impl IntoIterator<Item = (u64, usize)>) {
        let Some(pool) = self.pool() else { return };
        for (key, len) in jobs {
            {
                let state = self.shared.lock();
                if state.pending.contains(&key) || state.cache.get(key).is_some() {
                    continue;
                }
            }
            match pool.jobs.try_send((key, len)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }

    fn pool(&self) -> Option<&Pool> {
        self.pool
            .get_or_init(|| {
                if self.workers == 0 {
                    return None;
                }
                let (tx, rx) = bounded(WINDOW as usize);
                let mut handles = Vec::new();
                for i in 0..self.workers {
                    let shared = self.shared.clone();
                    let rx = rx.clone();
                    let spawned = std::thread::Builder::new()
                        .name(format!("rehost-readahead-{i}"))
                        .spawn(move || work(&shared, &rx));
                    // No thread: read-ahead is only an optimization, read without it.
                    match spawned {
                        Ok(h) => handles.push(h),
                        Err(_) => break,
                    }
                }
                if handles.is_empty() {
                    return None;
                }
                Some(Pool { jobs: tx, handles })
            })
            .as_ref()
    }
}

impl Drop for ClusterCache {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        if let Some(Some(pool)) = self.pool.take() {
            drop(pool.jobs);
            for h in pool.handles {
                let _ = h.join();
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere never leaves the cache inconsistent (each update is one call).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Clears a pending mark and wakes the waiters, however the decoding ended.
struct PendingGuard<'a> {
    shared: &'a Shared,
    key: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.lock().pending.remove(&self.key);
        self.shared.ready.notify_all();
    }
}

fn work(shared: &Shared, jobs: &Receiver<(u64, usize)>) {
    while let Ok((key, len)) = jobs.recv() {
        if shared.closed.load(Ordering::Relaxed) {
            return;
        }
        {
            let mut state = shared.lock();
            if state.pending.contains(&key) || state.cache.get(key).is_some() {
                continue;
            }
            state.pending.insert(key);
        }
        let guard = PendingGuard { shared, key };
        // A failure is the reader's to report, with its context; a panic likewise ends
        // only this job.
        let decoded =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (shared.decode)(key, len)));
        if let Ok(Ok(data)) = decoded {
            shared.lock().cache.put(key, Arc::new(data));
        }
        drop(guard);
    }
}

/// Inflates a deflate stream (a zlib one with `zlib_header`) into at most `max` bytes.
/// The decompressor is kept per thread and reset for each cluster: a fresh one would
/// allocate its state and window every time. The output is not zeroed first.
pub fn inflate(input: &[u8], zlib_header: bool, max: usize) -> io::Result<Vec<u8>> {
    thread_local! {
        static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
    }
    INFLATER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = match slot.as_mut() {
            Some(d) => {
                d.reset(zlib_header);
                d
            }
            None => slot.insert(Decompress::new(zlib_header)),
        };
        let mut out = Vec::with_capacity(max);
        d.decompress_vec(input, &mut out, FlushDecompress::Finish)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Cluster `k` decodes to 64 bytes of `k as u8`; `bad` fails, `slow` takes a while.
    fn decoder(bad: u64, calls: Arc<AtomicUsize>) -> Box<Decoder> {
        Box::new(move |key, len| {
            calls.fetch_add(1, Ordering::Relaxed);
            if key == bad {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("cluster {key} is corrupt"),
                ));
            }
            if key % 7 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(vec![key as u8; len])
        })
    }

    #[test]
    fn parallel_readers_with_read_ahead_get_the_right_data() {
        let calls = Arc::new(AtomicUsize::new(0));
        // Room for every cluster: with evictions, how often one is decoded again depends
        // on how the threads happen to interleave (a bound on it failed 1 run in 100).
        let cache = ClusterCache::with_workers(512, 3, decoder(u64::MAX, calls.clone()));
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let cache = &cache;
                s.spawn(move || {
                    for k in (0..300u64).map(|i| (i * (t + 1)) % 300) {
                        cache.prefetch(cache.ahead_of(k).map(|g| (g, 64)));
                        let c = cache.get(k, 64).unwrap();
                        assert_eq!(*c, vec![k as u8; 64], "cluster {k}");
                    }
                });
            }
        });
        // Read-ahead went past the end; each cluster was decoded about once, not once per
        // reader (two readers missing the same cluster at the same moment may both decode).
        assert!(calls.load(Ordering::Relaxed) < 2 * 300);
    }

    #[test]
    fn read_ahead_fills_the_cache_before_the_reader_arrives() {
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = ClusterCache::with_workers(64, 2, decoder(u64::MAX, calls.clone()));
        cache.get(0, 8).unwrap();
        cache.prefetch(cache.ahead_of(0).map(|g| (g, 8)));
        // Reading them now decodes nothing more than the workers did.
        for k in 1..=WINDOW {
            assert_eq!(*cache.get(k, 8).unwrap(), vec![k as u8; 8]);
        }
        assert_eq!(calls.load(Ordering::Relaxed), 1 + WINDOW as usize);
        // Sequential reading only schedules what is new.
        assert_eq!(cache.ahead_of(1), WINDOW + 1..WINDOW + 2);
        // A jump starts a new window.
        assert_eq!(cache.ahead_of(100), 101..101 + WINDOW);
    }

    #[test]
    fn a_corrupt_cluster_read_ahead_still_fails_clearly_for_the_reader() {
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = ClusterCache::with_workers(64, 2, decoder(5, calls));
        cache.prefetch(cache.ahead_of(0).map(|g| (g, 8)));
        for _ in 0..3 {
            let err = cache.get(5, 8).unwrap_err();
            assert_eq!(err.to_string(), "cluster 5 is corrupt");
        }
        assert_eq!(*cache.get(6, 8).unwrap(), vec![6u8; 8]);
    }

    #[test]
    fn a_panicking_decoder_never_leaves_a_reader_waiting() {
        let cache = ClusterCache::with_workers(
            8,
            2,
            Box::new(|key, _| {
                if key == 3 {
                    panic!("decoder bug");
                }
                Ok(vec![1])
            }),
        );
        cache.prefetch([(3, 1), (4, 1)]);
        // The worker's panic is caught; the reader decodes itself and its panic is its own.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.get(3, 1)));
        assert!(r.is_err());
        // And the mark was cleared: the next reader does not wait forever.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.get(3, 1)));
        assert!(r.is_err());
        assert_eq!(*cache.get(4, 1).unwrap(), vec![1]);
    }

    #[test]
    fn dropping_the_cache_stops_its_workers() {
        let cache = ClusterCache::with_workers(
            8,
            2,
            Box::new(|_, _| {
                std::thread::sleep(Duration::from_millis(5));
                Ok(vec![0])
            }),
        );
        cache.prefetch((0..WINDOW).map(|k| (k, 1)));
        drop(cache); // joins the workers: returns, with jobs still queued
    }

    #[test]
    fn inflate_reuses_its_state_across_streams_of_both_kinds() {
        use std::io::Write;
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(&data).unwrap();
        let raw = raw.finish().unwrap();
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(&data).unwrap();
        let zlib = zlib.finish().unwrap();
        for _ in 0..2 {
            assert_eq!(inflate(&raw, false, data.len()).unwrap(), data);
            assert_eq!(inflate(&zlib, true, data.len()).unwrap(), data);
            // Capped at `max`, and garbage is an error, not a panic.
            assert_eq!(inflate(&zlib, true, 10).unwrap(), data[..10]);
            assert!(inflate(&[0xff; 64], true, 100).is_err());
        }
    }

    #[test]
    fn without_workers_nothing_is_scheduled() {
        let cache = ClusterCache::with_workers(8, 0, Box::new(|_, _| Ok(vec![0])));
        assert!(cache.ahead_of(3).is_empty());
        cache.prefetch([(1, 1)]);
        assert_eq!(*cache.get(1, 1).unwrap(), vec![0]);
    }
}
