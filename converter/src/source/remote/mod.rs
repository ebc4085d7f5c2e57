//! A remote server as a source: `ssh://[USER@]HOST[:PORT][/PATH]`, read agentlessly.
//!
//! rehost sends a static helper (`rehost-helper`, [`helper`]) over one multiplexed
//! OpenSSH connection into a private temporary directory, runs it as root (or through
//! `sudo -n`), and removes it at the end. On the server the helper walks the tree,
//! applies the profiles' and the user's excludes (excluded bytes never cross the
//! network) and streams what is kept as one tar, zstd-compressed, with the same
//! encoding as a layer.
//! Here the stream is read once into an [`ArchiveSource`], so the rest of rehost reads
//! a remote server as it reads an archive. The stream comes in chunks, kept here as
//! they arrive, so that a run cut by a dropped connection resumes ([`chunks`]).
//!
//! Files that vanish, shrink or cannot be read on the live server do not end the run:
//! they are listed (path and why) in the ledger the helper sends after the tree, which
//! the walk reports as skipped entries.
//!
//! When the helper cannot run (a noexec `/tmp`, another architecture), the server's
//! own `tar` sends the whole tree instead, and a warning says what is lost (and a cut
//! run of it starts over).

pub mod chunks;
pub mod helper;
pub mod progress;
mod session;
mod url;

pub use session::{Helper, Running, Said, Session, HELPER_SUBCOMMAND, LEDGER_PREFIX, PROBE_ANSWER};
pub use url::{SshUrl, SCHEME};

use super::recorded::Reads;
use super::{ArchiveSource, OpenOptions, Skipped, Skips, Source, Visit};
use crate::entry::{Entry, Extent};
use crate::error::{Error, Result};
use crate::image::rich::binary::is_static;
use crate::profile::{ExcludeRule, Profile};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Whether SOURCE names a remote server.
pub fn is_remote(source: &Path) -> bool {
    source
        .as_os_str()
        .as_encoded_bytes()
        .starts_with(SCHEME.as_bytes())
}

/// What the server applies before sending anything: the excludes of a convert.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Filter {
    /// The profiles' rules, by profile name, in order.
    pub profiles: Vec<NamedRules>,
    /// The user's own globs (`--exclude`).
    pub excludes: Vec<String>,
    /// Add the profiles of the server's distribution family, as a local convert does.
    pub family_profiles: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamedRules {
    pub name: String,
    pub exclude: Vec<ExcludeRule>,
}

impl Filter {
    /// What a plan leaves out, and the user's own globs.
    pub fn of_plan(plan: &crate::plan::Plan, excludes: &[String]) -> Self {
        Filter {
            profiles: vec![NamedRules {
                name: "plan".into(),
                exclude: plan.excludes(),
            }],
            excludes: excludes.to_vec(),
            family_profiles: false,
        }
    }

    /// What the plan derived from the profiles named (none: `base` and the server's
    /// family's, found on the server) will leave out, and the user's own globs.
    pub fn of_profiles(
        names: &[String],
        no_default_excludes: bool,
        excludes: &[String],
    ) -> crate::Result<Self> {
        let profiles = if no_default_excludes {
            Vec::new()
        } else if names.is_empty() {
            vec![Profile::builtin("base")?]
        } else {
            names
                .iter()
                .map(|n| Profile::load(n))
                .collect::<crate::Result<_>>()?
        };
        Ok(Self::new(
            &profiles,
            excludes,
            names.is_empty() && !no_default_excludes,
        ))
    }

    pub fn new(profiles: &[Profile], excludes: &[String], family_profiles: bool) -> Self {
        Filter {
            profiles: profiles
                .iter()
                .map(|p| NamedRules {
                    name: p.name.clone(),
                    exclude: p.exclude.clone(),
                })
                .collect(),
            excludes: excludes.to_vec(),
            family_profiles,
        }
    }
}

/// What the helper is asked for a capture (the first line of its input, as
/// `{"capture": …}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaptureRequest {
    /// The directory on the server.
    pub path: String,
    pub filter: Filter,
    pub include_mounts: Vec<PathBuf>,
    /// The signatures of the chunks kept here from an interrupted run.
    #[serde(default)]
    pub have: Vec<String>,
    /// Record the reads of a prepare with these options and send them with the tree.
    #[serde(default)]
    pub prepare: Option<crate::convert::PrepareOptions>,
}

/// What the helper reports after the tree.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ledger {
    /// Entries not sent, and why (vanished, unreadable, sockets, other filesystems…):
    /// the first [`Skips::LISTED`] of them.
    pub skipped: Vec<LedgerItem>,
    /// How many entries were not sent, listed or not.
    #[serde(default)]
    pub skipped_total: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerItem {
    pub path: String,
    pub reason: String,
}

/// Captures a remote server's tree: connects, runs the helper (or the server's tar),
/// reads the stream, cleans up.
pub fn open(address: &str, options: &OpenOptions) -> Result<Box<dyn Source>> {
    let url = SshUrl::parse(address)?;
    let helper = find_helper()?;
    let (mut session, ready) = Session::open(&url, &helper)?;
    let captured = match ready {
        Helper::Ready => capture(&mut session, options)?,
        Helper::Unusable(why) => {
            tracing::warn!("{}: {why}", url.destination());
            warn_fallback(&url);
            capture_with_tar(&session)?
        }
    };
    drop(session);
    Ok(Box::new(captured))
}

/// The warning for a capture by the server's own tar: what it loses.
pub fn warn_fallback(url: &SshUrl) {
    tracing::warn!(
        "{}: falling back to the server's tar: the whole tree crosses the network and excludes \
         apply here; ports come from daemons' configuration, not the live socket table; \
         nanosecond times and files tar cannot read are lost (tar's warnings are kept as skipped); \
         a run cut short cannot resume",
        url.destination()
    );
}

fn capture(session: &mut Session, options: &OpenOptions) -> Result<RemoteSource> {
    let url = session.url().clone();
    let cache = chunks::Cache::open(&format!(
        "{}:{}{}",
        url.destination(),
        url.port.unwrap_or(22),
        url.path
    ));
    let request = CaptureRequest {
        path: url.path.clone(),
        filter: options.filter.clone(),
        include_mounts: options.include_mounts.clone(),
        have: cache
            .as_ref()
            .map(chunks::Cache::signatures)
            .unwrap_or_default(),
        prepare: options.prepare,
    };
    let request = serde_json::json!({ "capture": request });
    let mut running = session.run_helper(&request)?;
    let stdout = running.stdout();
    let name = PathBuf::from(url.to_string());
    let mut reader = Shared::new(stdout);
    let counts = std::sync::Arc::new(Mutex::new(chunks::Received::default()));
    let receiver = chunks::Receiver::new(reader.clone(), cache.clone(), counts.clone());
    let record = receiver.record();
    let archive = ArchiveSource::from_stream(&name, Box::new(receiver));
    let (status, said) = running.finish(reader.detach())?;
    let host = url.destination();
    if !status.success() || said.ledger.is_none() {
        return Err(Running::error(&host, status, &said, "the capture"));
    }
    session.helper_removed();
    let archive = archive?;
    let ledger: Ledger =
        serde_json::from_str(said.ledger.as_deref().unwrap_or_default()).map_err(|e| {
            Error::Remote {
                host: host.clone(),
                reason: format!("the helper's ledger is unreadable: {e}"),
            }
        })?;
    let listed = ledger.skipped.len() as u64;
    let mut skips: Skips = ledger
        .skipped
        .into_iter()
        .map(|i| Skipped {
            path: i.path,
            reason: i.reason,
        })
        .collect();
    skips.add_unlisted(ledger.skipped_total.saturating_sub(listed));
    let received = counts.lock().map(|c| *c).unwrap_or_default();
    let record = record.lock().ok().and_then(|mut r| r.take());
    let recorded = record
        .map(|bytes| unpack_record(&bytes))
        .transpose()
        .map_err(|reason| Error::Remote {
            host: host.clone(),
            reason: format!("the helper's record of its reads is unreadable: {reason}"),
        })?;
    Ok(RemoteSource {
        inner: archive,
        name: url.to_string(),
        ledger: skips,
        received: Some(received),
        cache,
        recorded,
    })
}

/// The fallback: the server's tar of the whole tree; its warnings become the ledger.
pub fn capture_with_tar(session: &Session) -> Result<RemoteSource> {
    let url = session.url().clone();
    let mut running = session.run_tar(&url.path)?;
    let stdout = running.stdout();
    let name = PathBuf::from(url.to_string());
    let mut reader = Shared::new(stdout);
    let archive = ArchiveSource::from_stream(&name, Box::new(reader.clone()));
    let (status, said) = running.finish(reader.detach())?;
    // GNU tar exits 1 when files changed or vanished while it read them: kept, listed.
    if !(status.success() || status.code() == Some(1)) {
        return Err(Running::error(
            &url.destination(),
            status,
            &said,
            "the server's tar",
        ));
    }
    let archive = archive?;
    let mut ledger: Skips = said
        .lines
        .iter()
        .filter_map(|l| l.strip_prefix("tar: "))
        .filter_map(|l| l.split_once(": "))
        .map(|(path, why)| Skipped {
            path: format!("/{}", path.trim_start_matches("./")),
            reason: why.to_string(),
        })
        .collect();
    // The lines past those kept: tar's warnings, nearly all.
    ledger.add_unlisted(said.more);
    Ok(RemoteSource {
        inner: archive,
        name: url.to_string(),
        ledger,
        received: None,
        cache: None,
        recorded: None,
    })
}

/// The helper's record of its reads, as it sends it: compressed, capped.
pub(crate) fn pack_record(reads: &Reads) -> Vec<u8> {
    zstd::bulk::compress(&reads.encode(), 3).expect("compressing in memory")
}

fn unpack_record(bytes: &[u8]) -> std::result::Result<Reads, String> {
    let plain = zstd::bulk::decompress(bytes, Reads::MAX).map_err(|e| e.to_string())?;
    Reads::decode(&plain)
}

/// A captured server: the tree it sent, named by its address, with its ledger.
pub struct RemoteSource {
    inner: ArchiveSource,
    name: String,
    ledger: Skips,
    /// What came over the network and what was reused (none for the server's tar).
    received: Option<chunks::Received>,
    /// The chunks kept to resume, dropped once the image is written.
    cache: Option<chunks::Cache>,
    /// What a prepare read on the server, sent with the tree.
    recorded: Option<Reads>,
}

impl Source for RemoteSource {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn walk(&self, visit: &mut Visit<'_>) -> Result<Skips> {
        let mut skipped = self.inner.walk(visit)?;
        skipped.append(self.ledger.clone());
        Ok(skipped)
    }

    fn metadata(&self, path: &[u8]) -> Result<Entry> {
        self.inner.metadata(path)
    }

    fn read_dir(&self, path: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.inner.read_dir(path)
    }

    fn open(&self, path: &[u8]) -> Result<Box<dyn Read + Send + '_>> {
        self.inner.open(path)
    }

    fn open_extents(&self, path: &[u8], extents: &[Extent]) -> Result<Box<dyn Read + Send + '_>> {
        self.inner.open_extents(path, extents)
    }

    fn received(&self) -> Option<chunks::Received> {
        self.received
    }

    fn recorded(&self) -> Option<&Reads> {
        self.recorded.as_ref()
    }

    fn image_written(&self) {
        if let Some(cache) = &self.cache {
            cache.clear();
        }
    }
}

/// The stream of a running command, read by the archive reader and then drained by
/// [`Running::finish`].
#[derive(Clone)]
struct Shared(std::sync::Arc<Mutex<Option<std::process::ChildStdout>>>);

impl Shared {
    fn new(out: std::process::ChildStdout) -> Self {
        Shared(std::sync::Arc::new(Mutex::new(Some(out))))
    }

    fn detach(&mut self) -> Option<std::process::ChildStdout> {
        self.0.lock().ok()?.take()
    }
}

impl Read for Shared {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.lock().ok().as_mut().and_then(|o| o.as_mut()) {
            Some(out) => out.read(buf),
            None => Ok(0),
        }
    }
}

/// The static helper to send: `REHOST_HELPER`; a static `rehost-helper` beside this
/// program, or where scripts/build-static leaves it (`target/static/`); else this
/// program when it is static (the full rehost serves too, three times bigger).
pub fn find_helper() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("REHOST_HELPER") {
        let path = PathBuf::from(path);
        return match is_static(&path)? {
            true => Ok(path),
            false => Err(Error::BadSource {
                path,
                reason: "REHOST_HELPER is dynamically linked; build the static helper with scripts/build-static".into(),
            }),
        };
    }
    let exe = std::env::current_exe().map_err(|e| Error::io("the rehost executable", e))?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let candidates = [
        dir.join("rehost-helper"),
        dir.join("../static/rehost-helper"),
        dir.join("static/rehost-helper"),
        exe.clone(),
    ];
    for c in &candidates {
        if is_static(c).unwrap_or(false) {
            return Ok(c.clone());
        }
    }
    Err(Error::BadSource {
        path: exe,
        reason: "no static helper to send to the server (build it with scripts/build-static, or set REHOST_HELPER)".into(),
    })
}
