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
mod relay;
mod session;
mod url;

use session::TAR_LACKS;
pub use session::{
    Running, Said, Session, Started, HELPER_SUBCOMMAND, LEDGER_PREFIX, PROBE_ANSWER,
};
pub use url::{SshUrl, SCHEME};

use super::archive::{ArchiveStream, Window};
use super::recorded::{Content, Reads};
use super::{ArchiveSource, OpenOptions, Skipped, Skips, Source, Visit};
use crate::entry::{Entry, Extent};
use crate::error::{Error, Result};
use crate::image::rich::binary::is_static;
use crate::profile::{ExcludeRule, Profile};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

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

/// Opens a remote server's tree: connects, runs the helper and reads the record it
/// sends first; the tree itself is read as the walk goes ([`RemoteSource`]). With the
/// server's tar instead, the whole tree is read here.
pub fn open(address: &str, options: &OpenOptions) -> Result<Box<dyn Source>> {
    let url = SshUrl::parse(address)?;
    let helper = find_helper()?;
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
        prepare: options.prepare.clone(),
    };
    let request = serde_json::json!({ "capture": request });
    let (mut session, started) = Session::start(&url, &helper, &request)?;
    let source = match started {
        Started::Helper(running) => start_capture(session, running, cache)?,
        Started::Unusable(why) => {
            tracing::warn!("{}: {why}", url.destination());
            warn_fallback(&url);
            let captured = capture_with_tar(&mut session)?;
            drop(session);
            captured
        }
    };
    Ok(Box::new(source))
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

/// Reads the start of the helper's capture stream: the record of the reads a prepare
/// makes there, which the helper sends before the tree.
fn start_capture(
    session: Session,
    mut running: Running,
    cache: Option<chunks::Cache>,
) -> Result<RemoteSource> {
    let url = session.url().clone();
    let stdout = running.stdout();
    let name = PathBuf::from(url.to_string());
    let reader = ReadAhead::new(stdout);
    let counts = std::sync::Arc::new(Mutex::new(chunks::Received::default()));
    let receiver = chunks::Receiver::new(reader, cache.clone(), counts.clone());
    let record = receiver.record();
    let mut arriving = Arriving {
        stream: None,
        running: Some(running),
        session,
        counts,
    };
    // The stream's first bytes hold the record, when one was asked for.
    let stream = match ArchiveStream::new(&name, Box::new(receiver)) {
        Ok(stream) => stream,
        Err(e) => {
            return Err(arriving
                .conclude(Err(e))
                .err()
                .unwrap_or_else(|| Error::Remote {
                    host: url.destination(),
                    reason: "the capture's stream ended before its tree".into(),
                }))
        }
    };
    arriving.stream = Some(stream);
    let record = record.lock().ok().and_then(|mut r| r.take());
    let recorded = record
        .map(|bytes| unpack_record(&bytes))
        .transpose()
        .map_err(|reason| Error::Remote {
            host: url.destination(),
            reason: format!("the helper's record of its reads is unreadable: {reason}"),
        })?;
    Ok(RemoteSource {
        name: url.to_string(),
        arriving: Mutex::new(Some(Box::new(arriving))),
        window: Window::default(),
        captured: OnceLock::new(),
        cache,
        recorded,
    })
}

/// A capture whose tree is still on its way.
struct Arriving {
    /// Its tree (none only while it is being opened).
    stream: Option<ArchiveStream<'static>>,
    running: Option<Running>,
    session: Session,
    counts: std::sync::Arc<Mutex<chunks::Received>>,
}

impl Arriving {
    /// The stream read to its end (`tree`: the archive it made, or why not): waits for
    /// the helper, reads its ledger, and gives the whole capture.
    fn conclude(&mut self, tree: Result<ArchiveSource>) -> Result<Captured> {
        let host = self.session.url().destination();
        let running = self.running.take().expect("concluded once");
        // The stream itself is read to its end by its [`ReadAhead`].
        let (status, said) = running.finish(None)?;
        if !status.success() || said.ledger.is_none() {
            return Err(Running::error(&host, status, &said, "the capture"));
        }
        self.session.helper_removed();
        let archive = tree?;
        let ledger: Ledger = serde_json::from_str(said.ledger.as_deref().unwrap_or_default())
            .map_err(|e| Error::Remote {
                host: host.clone(),
                reason: format!("the helper's ledger is unreadable: {e}"),
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
        let received = self.counts.lock().map(|c| *c).unwrap_or_default();
        Ok(Captured {
            archive,
            ledger: skips,
            received: Some(received),
        })
    }

    /// The whole tree, read at once (something needed it before the walk).
    fn receive(mut self: Box<Self>) -> Result<Captured> {
        let stream = self.stream.take().expect("opened");
        let tree = stream.finish();
        self.conclude(tree)
    }

    /// The tree read by `visit` as it arrives.
    fn walk(mut self: Box<Self>, window: &Window, visit: &mut Visit<'_>) -> Result<Captured> {
        let stream = self.stream.take().expect("opened");
        let mut visitor_failed = false;
        let tree = stream.walk(window, &mut |entry| {
            visit(entry).inspect_err(|_| visitor_failed = true)
        });
        match tree {
            // The build failed here: the rest of the stream is not waited for.
            Err(e) if visitor_failed => Err(e),
            tree => self.conclude(tree),
        }
    }
}

impl Drop for Arriving {
    fn drop(&mut self) {
        // Not read to its end (the conversion failed, or never walked): the helper is
        // stopped before the session removes its directory.
        if let Some(running) = self.running.take() {
            running.abandon();
        }
    }
}

/// The fallback: the server's tar of the whole tree; its warnings become the ledger.
pub fn capture_with_tar(session: &mut Session) -> Result<RemoteSource> {
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
    // Its command removed the directory it had (see `Session::run_tar`).
    session.helper_removed();
    // No archive, and the server said why (a sudo that refused, in a terminal).
    let archive = archive.map_err(|e| match said.last.is_empty() {
        true => e,
        false => Error::Remote {
            host: url.destination(),
            reason: format!(
                "the server's tar sent no archive: {}",
                Vec::from(said.last.clone()).join("; ")
            ),
        },
    })?;
    if let Some(lacks) = said.lines.iter().find_map(|l| l.strip_prefix(TAR_LACKS)) {
        tracing::warn!(
            "{}: the server's tar has no {}: {}",
            url.destination(),
            lacks.trim(),
            tar_losses(lacks)
        );
    }
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
        name: url.to_string(),
        arriving: Mutex::new(None),
        window: Window::default(),
        captured: OnceLock::from(Captured {
            archive,
            ledger,
            received: None,
        }),
        cache: None,
        recorded: None,
    })
}

/// What a tar without `lacks` (options of the fallback's, space-separated) loses.
fn tar_losses(lacks: &str) -> String {
    let lacks: Vec<&str> = lacks.split_whitespace().collect();
    let lost: Vec<&str> = [
        (
            "--xattrs",
            "extended attributes (file capabilities, SELinux labels) are lost",
        ),
        ("--acls", "ACLs are lost"),
        ("--sparse", "sparse files arrive whole"),
        (
            "--one-file-system",
            "the filesystems mounted below the path are read too",
        ),
        (
            "--format=posix",
            "names and numbers past its own format's limits are lost",
        ),
    ]
    .into_iter()
    .filter(|(option, _)| lacks.contains(option))
    .map(|(_, loss)| loss)
    .collect();
    match lost.is_empty() {
        true => "nothing else is lost".into(),
        false => lost.join("; "),
    }
}

/// The helper's record of its reads, as it sends it: compressed, capped.
pub(crate) fn pack_record(reads: &Reads) -> Vec<u8> {
    zstd::bulk::compress(&reads.encode(), 3).expect("compressing in memory")
}

fn unpack_record(bytes: &[u8]) -> std::result::Result<Reads, String> {
    // Grown as it decompresses, up to the cap (not reserved at the cap up front).
    let mut plain = Vec::new();
    zstd::stream::read::Decoder::new(bytes)
        .and_then(|d| d.take(Reads::MAX as u64 + 1).read_to_end(&mut plain))
        .map_err(|e| e.to_string())?;
    if plain.len() > Reads::MAX {
        return Err(format!("more than {} bytes", Reads::MAX));
    }
    Reads::decode(&plain)
}

/// A captured tree: what the server sent, and its ledger.
struct Captured {
    archive: ArchiveSource,
    ledger: Skips,
    /// What came over the network and what was reused (none for the server's tar).
    received: Option<chunks::Received>,
}

/// A server's tree, named by its address. Its stream is read by the first walk as the
/// entries arrive, so the image is built while the rest is on its way; a read before
/// that walk is answered from the record of the server's reads when it holds the
/// answer, else it reads the whole tree first (as an archive is read). Later reads go
/// to the received archive.
pub struct RemoteSource {
    name: String,
    /// The capture not read yet; none once read, or while the walk reads it.
    arriving: Mutex<Option<Box<Arriving>>>,
    /// What the walk may read meanwhile.
    window: Window,
    captured: OnceLock<Captured>,
    /// The chunks kept to resume, dropped once the image is written.
    cache: Option<chunks::Cache>,
    /// What a prepare read on the server, sent before the tree.
    recorded: Option<Reads>,
}

impl RemoteSource {
    /// The received tree for a read of `path`, reading it whole first if no walk has.
    fn captured_for(&self, path: &[u8]) -> Result<&Captured> {
        if self.arriving() {
            tracing::debug!(
                "{}: /{} is not in the record: the whole tree is read before the walk",
                self.name,
                String::from_utf8_lossy(path)
            );
        }
        self.captured()
    }

    /// The received tree, reading it whole first if no walk has.
    fn captured(&self) -> Result<&Captured> {
        if let Some(c) = self.captured.get() {
            return Ok(c);
        }
        let arriving = self.arriving.lock().map_err(|_| self.busy())?.take();
        match arriving {
            Some(arriving) => {
                let captured = arriving.receive()?;
                Ok(self.captured.get_or_init(|| captured))
            }
            None => self.captured.get().ok_or_else(|| self.busy()),
        }
    }

    fn busy(&self) -> Error {
        Error::Remote {
            host: self.name.clone(),
            reason: "a read outside what the walk holds while the tree arrives".into(),
        }
    }

    /// Whether the tree is still to come (no walk has read it, nothing needed it whole).
    fn arriving(&self) -> bool {
        self.captured.get().is_none() && self.arriving.lock().is_ok_and(|a| a.is_some())
    }

    /// Whether a walk is reading the tree now.
    fn walking(&self) -> bool {
        self.captured.get().is_none() && self.arriving.lock().is_ok_and(|a| a.is_none())
    }
}

impl Source for RemoteSource {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn walk(&self, visit: &mut Visit<'_>) -> Result<Skips> {
        let arriving = self.arriving.lock().map_err(|_| self.busy())?.take();
        let captured = match arriving {
            Some(arriving) => {
                let mut captured = arriving.walk(&self.window, visit)?;
                if let Some(r) = &mut captured.received {
                    r.built_while_arriving = true;
                }
                let mut skipped = captured.archive.skipped();
                skipped.append(captured.ledger.clone());
                self.captured.get_or_init(|| captured);
                return Ok(skipped);
            }
            None => self.captured()?,
        };
        let mut skipped = captured.archive.walk(visit)?;
        skipped.append(captured.ledger.clone());
        Ok(skipped)
    }

    fn metadata(&self, path: &[u8]) -> Result<Entry> {
        if self.walking() {
            return self.window.metadata(path).ok_or_else(|| self.busy());
        }
        if self.arriving() {
            if let Some(answer) = self.recorded.as_ref().and_then(|r| r.metadata(path)) {
                return answer;
            }
        }
        self.captured_for(path)?.archive.metadata(path)
    }

    fn read_dir(&self, path: &[u8]) -> Result<Vec<Vec<u8>>> {
        if self.arriving() {
            if let Some(answer) = self.recorded.as_ref().and_then(|r| r.read_dir(path)) {
                return answer;
            }
        }
        self.captured_for(path)?.archive.read_dir(path)
    }

    fn open(&self, path: &[u8]) -> Result<Box<dyn Read + Send + '_>> {
        if self.walking() {
            return self.window.open(path).unwrap_or_else(|| Err(self.busy()));
        }
        if self.arriving() {
            if let Some(answer) = self.recorded.as_ref().and_then(|r| r.content(path)) {
                return answer.map(|content| {
                    Box::new(FromRecord {
                        content,
                        at: 0,
                        path: path.to_vec(),
                        tree: self,
                        rest: None,
                    }) as _
                });
            }
        }
        self.captured_for(path)?.archive.open(path)
    }

    fn open_extents(&self, path: &[u8], extents: &[Extent]) -> Result<Box<dyn Read + Send + '_>> {
        if self.walking() {
            let whole = self.window.open(path).unwrap_or_else(|| Err(self.busy()))?;
            return Ok(Box::new(super::ExtentsOf::new(whole, extents)));
        }
        self.captured_for(path)?.archive.open_extents(path, extents)
    }

    fn received(&self) -> Option<chunks::Received> {
        self.captured.get().and_then(|c| c.received)
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

/// A file read before the walk from the record of the server's reads: past the bytes
/// the server read, from the whole tree (read first).
struct FromRecord<'s> {
    content: Content,
    at: usize,
    path: Vec<u8>,
    tree: &'s RemoteSource,
    rest: Option<Box<dyn Read + Send + 's>>,
}

impl Read for FromRecord<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(rest) = &mut self.rest {
            return rest.read(buf);
        }
        let left = &self.content.bytes[self.at..];
        if !left.is_empty() || self.content.whole || buf.is_empty() {
            let n = left.len().min(buf.len());
            buf[..n].copy_from_slice(&left[..n]);
            self.at += n;
            return Ok(n);
        }
        let tree = self.tree;
        let mut rest = tree
            .captured()
            .and_then(|c| c.archive.open(&self.path))
            .map_err(std::io::Error::other)?;
        std::io::copy(&mut (&mut rest).take(self.at as u64), &mut std::io::sink())?;
        self.rest = Some(rest);
        self.read(buf)
    }
}

/// The helper's stream, read from the connection by a thread of its own as fast as it
/// comes, up to [`ReadAhead::HELD`] bytes ahead of the walk: the walk's pace varies
/// (a chunk reused from the cache is built at the CPU's speed, with nothing to
/// receive), and the link must not wait for it meanwhile. When the walk stops reading,
/// the thread reads the rest to its end, so the helper never blocks on a full pipe.
struct ReadAhead {
    blocks: crossbeam_channel::Receiver<std::io::Result<Vec<u8>>>,
    block: std::io::Cursor<Vec<u8>>,
}

impl ReadAhead {
    const BLOCK: usize = 256 << 10;
    const HELD: usize = 32 << 20;

    fn new(mut out: impl Read + Send + 'static) -> Self {
        let (send, blocks) = crossbeam_channel::bounded(Self::HELD / Self::BLOCK);
        std::thread::spawn(move || loop {
            let mut block = vec![0u8; Self::BLOCK];
            let read = match out.read(&mut block) {
                Ok(0) => break,
                Ok(n) => {
                    block.truncate(n);
                    Ok(block)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = read.is_err();
            if send.send(read).is_err() {
                let _ = std::io::copy(&mut out, &mut std::io::sink());
                break;
            }
            if failed {
                break;
            }
        });
        ReadAhead {
            blocks,
            block: std::io::Cursor::new(Vec::new()),
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.block.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            match self.blocks.recv() {
                Ok(block) => self.block = std::io::Cursor::new(block?),
                // The stream ended.
                Err(_) => return Ok(0),
            }
        }
    }
}

/// The stream of a running command, read by the archive reader and then drained by
/// [`Running::finish`].
#[derive(Clone)]
struct Shared(std::sync::Arc<Mutex<Option<Output>>>);

/// A remote command's output.
type Output = std::io::BufReader<std::process::ChildStdout>;

impl Shared {
    fn new(out: Output) -> Self {
        Shared(std::sync::Arc::new(Mutex::new(Some(out))))
    }

    fn detach(&mut self) -> Option<Output> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_unpacks_as_packed_and_a_bad_or_oversized_one_is_refused() {
        let reads = Reads::default();
        assert_eq!(unpack_record(&pack_record(&reads)), Ok(reads));
        assert!(unpack_record(b"not zstd").is_err());
        // Past the cap once decompressed: refused, whatever it holds.
        let big = zstd::bulk::compress(&vec![0u8; Reads::MAX + 1], 1).unwrap();
        let err = unpack_record(&big).unwrap_err();
        assert!(err.contains("more than"), "{err}");
    }
}
