//! Progress of a remote capture: the helper measures what it will send (one metadata
//! walk, with the excludes), then reports what it has sent; here that becomes files,
//! bytes, the rate and the time left, for whoever shows it.

use crate::entry::Kind;
use crate::error::{Error, Result};
use crate::profile::Excludes;
use crate::source::Source;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the helper writes on standard error before a progress line.
pub const PREFIX: &str = "\u{1e}rehost-progress ";

/// A capture under way.
#[derive(Debug, Clone, Copy, Default)]
pub struct Transfer {
    pub files: u64,
    pub bytes: u64,
    /// What the whole capture holds (0 until the helper has measured it).
    pub total_files: u64,
    pub total_bytes: u64,
    pub elapsed: Duration,
}

impl Transfer {
    /// Bytes of content a second, so far.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.bytes as f64 / secs
        } else {
            0.0
        }
    }

    /// The time left at the rate so far, once there is one.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.rate();
        (rate > 0.0 && self.total_bytes >= self.bytes)
            .then(|| Duration::from_secs_f64((self.total_bytes - self.bytes) as f64 / rate))
    }
}

type Hook = Box<dyn Fn(&Transfer) + Send + Sync>;

static HOOK: Mutex<Option<Hook>> = Mutex::new(None);

/// Calls `hook` with each progress report of the remote captures that follow (the
/// command shows it; a library user may ignore it).
pub fn on_progress(hook: impl Fn(&Transfer) + Send + Sync + 'static) {
    if let Ok(mut h) = HOOK.lock() {
        *h = Some(Box::new(hook));
    }
}

/// Here: folds one progress line of the helper into `transfer` and tells the hook.
pub(crate) fn received(line: &str, transfer: &mut Transfer, started: Instant) {
    let mut words = line.split_whitespace();
    let total = words.next() == Some("total");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [files, bytes] = numbers[..] else {
        return;
    };
    if total {
        transfer.total_files = files;
        transfer.total_bytes = bytes;
    } else {
        transfer.files = files;
        transfer.bytes = bytes;
    }
    transfer.elapsed = started.elapsed();
    if let Ok(hook) = HOOK.lock() {
        if let Some(hook) = hook.as_ref() {
            hook(transfer);
        }
    }
}

/// On the server: the files and content bytes the capture will send. `None` when
/// `stop` was set before the walk ended (the stream ended first, or failed).
pub(crate) fn measure(
    source: &dyn Source,
    excludes: &Excludes,
    stop: &AtomicBool,
) -> Result<Option<(u64, u64)>> {
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut cut: Option<Vec<u8>> = None;
    let mut inodes = HashSet::new();
    let walked = source.walk(&mut |entry| {
        if stop.load(Ordering::Relaxed) {
            return Err(Error::NotFound("the measure is no longer wanted".into()));
        }
        if let Some(prefix) = &cut {
            if entry.path.starts_with(prefix) && entry.path.get(prefix.len()) == Some(&b'/') {
                return Ok(());
            }
            cut = None;
        }
        if excludes.reason(&entry.path).is_some() {
            cut = Some(entry.path.clone());
            return Ok(());
        }
        if entry.kind == Kind::File && entry.inode.is_none_or(|i| inodes.insert(i)) {
            files += 1;
            bytes += entry.size;
        }
        Ok(())
    });
    match walked {
        _ if stop.load(Ordering::Relaxed) => Ok(None),
        Ok(_) => Ok(Some((files, bytes))),
        Err(e) => Err(e),
    }
}

/// Sets its flag when dropped: on every way out of the scope that holds it.
pub(crate) struct SetOnDrop<'a>(pub &'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// On the server: a progress line at most every quarter second.
pub(crate) struct Reporter {
    last: Option<Instant>,
    /// What the last call said, and whether it was written.
    said: (u64, u64),
    written: bool,
}

impl Reporter {
    pub fn new() -> Self {
        Reporter {
            last: None,
            said: (0, 0),
            written: true,
        }
    }

    pub fn report(&mut self, files: u64, bytes: u64) {
        self.said = (files, bytes);
        self.written = false;
        if self
            .last
            .is_some_and(|l| l.elapsed() < Duration::from_millis(250))
        {
            return;
        }
        self.write();
    }

    /// At the end: the last report, if it was held back, so the line shows all sent.
    pub fn finish(&mut self) {
        if !self.written {
            self.write();
        }
    }

    fn write(&mut self) {
        self.last = Some(Instant::now());
        self.written = true;
        eprintln!("{PREFIX}{} {}", self.said.0, self.said.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_and_the_time_left_follow_the_reports() {
        let started = Instant::now() - Duration::from_secs(2);
        let mut t = Transfer::default();
        received("total 10 4000", &mut t, started);
        assert_eq!((t.total_files, t.total_bytes), (10, 4000));
        assert_eq!(t.eta(), None, "no rate before the first bytes");
        received("5 1000", &mut t, started);
        assert_eq!((t.files, t.bytes), (5, 1000));
        // 1000 bytes in about 2 s: about 6 s for the 3000 left.
        let left = t.eta().unwrap().as_secs_f64();
        assert!((5.0..=6.5).contains(&left), "{left}");
        received("garbage", &mut t, started);
        assert_eq!(t.bytes, 1000);
    }

    /// The measure counts what the stream sends (no excluded tree, a file of several
    /// names once), and gives up as soon as the stream no longer needs it.
    #[test]
    fn the_measure_counts_what_is_sent_and_stops_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("skip/deep")).unwrap();
        std::fs::write(root.join("etc/a"), b"12345").unwrap();
        std::fs::hard_link(root.join("etc/a"), root.join("etc/b")).unwrap();
        std::fs::write(root.join("skip/deep/c"), vec![0u8; 1000]).unwrap();
        let source = crate::source::DirSource::new(root, Default::default()).unwrap();
        let excludes = Excludes::new(&[], &["/skip".to_string()]).unwrap();
        let stop = AtomicBool::new(false);
        assert_eq!(measure(&source, &excludes, &stop).unwrap(), Some((1, 5)));
        drop(SetOnDrop(&stop));
        assert_eq!(measure(&source, &excludes, &stop).unwrap(), None);
    }
}
