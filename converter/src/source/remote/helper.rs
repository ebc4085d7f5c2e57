//! The helper: rehost's side on the server, run there as `rehost-helper __remote`
//! (or `rehost __remote`, the same code). It reads one request from its standard input
//! (after its own bytes, which the start command took: see `Session::start`), answers
//! it on standard output, and exits at once when standard input ends (rehost went away:
//! Ctrl-C, a dropped connection).
//!
//! It lives in the converter, not the command line, so that `rehost-helper` (this
//! crate's binary: no registry, runtime or TLS code) is a third of the full rehost's
//! size: it crosses the network on every run.

use super::{chunks, progress, CaptureRequest, Ledger, LedgerItem, LEDGER_PREFIX, PROBE_ANSWER};
use crate::entry::{Entry, Extent};
use crate::error::{Error, IoContext, Result};
use crate::image::layer::TreeParts;
use crate::plan::Plan;
use crate::profile::{ExcludeRule, Excludes, Profile};
use crate::report;
use crate::source::{OpenOptions, Skipped, Skips, Source, Visit};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

/// What the helper is asked for an inspect (as `{"inspect": …}`).
#[derive(Serialize, Deserialize)]
pub struct InspectRequest {
    pub path: String,
    /// The name the report gives the source (the ssh:// address).
    pub name: String,
    pub json: bool,
    pub walk: bool,
    /// Profiles by built-in name, or by file name with the file's text.
    pub profiles: Vec<(String, Option<String>)>,
    pub include_mounts: Vec<PathBuf>,
}

/// What the helper answers an inspect with.
#[derive(Serialize, Deserialize)]
pub struct InspectAnswer {
    /// The report as [`report::render`] writes it.
    pub report: String,
    pub plan: Plan,
    /// The plan file's review notes ([`crate::plan::review`]).
    #[serde(default)]
    pub review: Vec<String>,
}

impl InspectAnswer {
    /// The most of an answer read: a server's report and plan are a few MiB at most,
    /// and what the server sends is not trusted to end.
    pub const MAX: u64 = 64 << 20;
}

/// `ARGS` are those after `__remote`: `--probe` answers that the helper runs and is
/// ours; none serves the request on standard input; `--relay SOCKET`, `--from SOCKET`
/// and `--refused SOCKET WORDS` serve a run whose sudo wants a terminal
/// ([`super::relay`]).
pub fn main(args: Vec<std::ffi::OsString>) -> ExitCode {
    if args.iter().any(|a| a == "--probe") {
        println!("{PROBE_ANSWER}");
        return ExitCode::SUCCESS;
    }
    if let Some(socket) = option(&args, "--refused") {
        let words = args.iter().skip_while(|a| *a != "--refused").nth(2);
        return super::relay::report_refusal(
            Path::new(socket),
            words.map(|w| w.as_encoded_bytes()).unwrap_or_default(),
        );
    }
    // `--from SOCKET`: run as root by a sudo that wanted a terminal, this helper takes
    // its streams and request from the relay (see [`super::relay`]).
    let from = option(&args, "--from");
    let line = match from {
        Some(socket) => super::relay::take_over(Path::new(socket)),
        None => super::session::read_request(&mut std::io::stdin().lock()),
    };
    let line = match line {
        Ok(line) => line,
        Err(e) => {
            eprintln!("rehost helper: reading the request: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(socket) = option(&args, "--relay") {
        return super::relay::serve(Path::new(socket), &line);
    }
    std::thread::spawn(|| {
        let mut rest = [0u8; 64];
        // Nothing more is sent: a read returns only at the end.
        while matches!(std::io::stdin().read(&mut rest), Ok(n) if n > 0) {}
        std::process::exit(3);
    });
    match serve(&line) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "rehost helper: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The value after `name` in `args`.
fn option<'a>(args: &'a [std::ffi::OsString], name: &str) -> Option<&'a std::ffi::OsStr> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).map(|v| v.as_os_str())
}

fn serve(line: &[u8]) -> std::result::Result<(), String> {
    let request: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("the request is not JSON: {e}"))?;
    if let Some(capture) = request.get("capture") {
        let capture: CaptureRequest = serde_json::from_value(capture.clone())
            .map_err(|e| format!("a bad capture request: {e}"))?;
        return serve_capture(capture).map_err(|e| chained(&e));
    }
    if let Some(inspect) = request.get("inspect") {
        let request: InspectRequest = serde_json::from_value(inspect.clone())
            .map_err(|e| format!("a bad inspect request: {e}"))?;
        return serve_inspect(request);
    }
    Err("an unknown request".into())
}

/// The error and those of its causes its text does not already hold, on one line.
fn chained(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(&format!(": {more}"));
        }
        cause = c.source();
    }
    text
}

fn serve_inspect(request: InspectRequest) -> std::result::Result<(), String> {
    let source = crate::source::open(
        request.path.as_ref(),
        &OpenOptions {
            include_mounts: request.include_mounts.clone(),
            hide: helper_directory().into_iter().collect(),
            ..OpenOptions::default()
        },
    )
    .map_err(|e| chained(&e))?;
    let profiles = request
        .profiles
        .iter()
        .map(|(name, text)| match text {
            Some(text) => Profile::parse(name, text),
            None => Profile::builtin(name),
        })
        .collect::<Result<Vec<_>>>()
        .map_err(|e| chained(&e))?;
    let mut examined =
        report::examine(source.as_ref(), &profiles, request.walk).map_err(|e| chained(&e))?;
    examined.inventory.source = request.name.clone();
    examined.plan.source = request.name.clone();
    let report = report::render(&examined, request.json).map_err(|e| chained(&e))?;
    let answer = InspectAnswer {
        report: String::from_utf8_lossy(&report).into_owned(),
        review: crate::plan::review(&examined.inventory),
        plan: examined.plan,
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &answer)
        .map_err(|e| e.to_string())
        .and_then(|()| out.flush().map_err(|e| e.to_string()))
}

/// The private directory the client sent this helper to, which the server's tree must
/// not show: its name is the one the session gives it (`rehost.XXXXXXXX`), so an
/// installed `rehost` run as the helper hides nothing.
fn helper_directory() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    dir.file_name()?
        .to_str()?
        .starts_with("rehost.")
        .then(|| dir.to_path_buf())
}

/// Answers a capture request: the tree on standard output, then the ledger on standard
/// error.
fn serve_capture(request: CaptureRequest) -> Result<()> {
    let root = Path::new(&request.path);
    let source = crate::source::open(
        root,
        &OpenOptions {
            include_mounts: request.include_mounts.clone(),
            hide: helper_directory().into_iter().collect(),
            ..OpenOptions::default()
        },
    )?;
    let mut names: Vec<String> = request
        .filter
        .profiles
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let mut rules: Vec<ExcludeRule> = request
        .filter
        .profiles
        .iter()
        .flat_map(|p| p.exclude.clone())
        .collect();
    if request.filter.family_profiles {
        let family =
            crate::inventory::os::detect(&crate::inventory::fs::Root::new(source.as_ref())).family;
        for p in Profile::for_family(&family)? {
            if !names.contains(&p.name) {
                names.push(p.name.clone());
                rules.extend(p.exclude);
            }
        }
    }
    let excludes = Excludes::new(&rules, &request.filter.excludes)?;
    let lenient = Lenient {
        inner: source,
        root: root.to_path_buf(),
        unreadable: Mutex::new(Skips::default()),
        grown: Mutex::new(Skips::default()),
        sparse_sizes: Mutex::new(HashMap::new()),
    };
    let mut reporter = progress::Reporter::new();
    let mut report = |p: crate::image::layer::Progress| reporter.report(p.entries, p.bytes);
    let grown = || lenient.grown.lock().map_or(0, |g| g.total());
    // Chunks signed by what decides their bytes besides the tree: this format and the
    // filter.
    let context = serde_json::to_vec(&(
        env!("CARGO_PKG_VERSION"),
        &request.filter,
        &request.include_mounts,
        &request.path,
    ))
    .expect("the request serializes");
    let measured = std::sync::atomic::AtomicBool::new(false);
    let (walked, parts) = std::thread::scope(|scope| {
        // What the capture will send, for the progress's total and time left: measured
        // by a walk of its own beside the stream, which does not wait for it. It walks
        // the tree under `Lenient`, which keeps only the stream's own sparse files. It
        // stops when the stream ends, whichever way: an error is not held back by it.
        let measure = || progress::measure(lenient.inner.as_ref(), &excludes, &measured);
        scope.spawn(move || {
            if let Ok(Some((files, bytes))) = measure() {
                eprintln!("{}total {files} {bytes}", progress::PREFIX);
            }
        });
        let _stop = progress::SetOnDrop(&measured);
        // The reads a conversion makes before its walk, recorded beside the walk's start
        // and sent before its first chunk.
        let record = request.prepare.map(|options| {
            let (ready, record) = std::sync::mpsc::channel();
            let sent = AsSent::new(lenient.inner.as_ref(), root, &request.include_mounts);
            scope.spawn(move || {
                if let Some(reads) = crate::convert::record_prepare(&sent, &options) {
                    let _ = ready.send(super::pack_record(&reads));
                }
            });
            record
        });
        let stdout = std::io::stdout().lock();
        let buffered = std::io::BufWriter::with_capacity(1 << 20, stdout);
        let mut chunker = chunks::Chunker::new(
            TreeParts::new(&lenient, &excludes),
            root,
            &context,
            &request.have,
            buffered,
            &grown,
            &mut report,
        )?;
        if let Some(record) = record {
            chunker.send_record(record);
        }
        let walked = lenient.walk(&mut |entry| chunker.push(entry))?;
        let (out, parts) = chunker.finish()?;
        drop(out);
        Ok::<_, Error>((walked, parts))
    })?;
    let mut stats = parts.stats;
    stats.skipped.append(walked);
    reporter.finish();
    let unreadable = lenient.unreadable.into_inner().unwrap_or_default();
    let grown = lenient.grown.into_inner().unwrap_or_default();
    // An unreadable file reaches the builder as one that vanished: say why. Both lists
    // keep their first entries, so every unreadable file listed is found here.
    let why: HashMap<&str, &str> = unreadable
        .listed()
        .iter()
        .map(|u| (u.path.as_str(), u.reason.as_str()))
        .collect();
    let mut all = Skips::default();
    all.extend(stats.skipped.listed().iter().map(|s| {
        Skipped {
            path: s.path.clone(),
            reason: why
                .get(s.path.as_str())
                .map_or(s.reason.clone(), |r| r.to_string()),
        }
    }));
    all.add_unlisted(stats.skipped.total() - stats.skipped.listed().len() as u64);
    all.append(grown);
    let ledger = Ledger {
        skipped_total: all.total(),
        skipped: all
            .listed()
            .iter()
            .map(|s| LedgerItem {
                path: s.path.clone(),
                reason: s.reason.clone(),
            })
            .collect(),
    };
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "{LEDGER_PREFIX}{}",
        serde_json::to_string(&ledger).expect("the ledger serializes")
    )
    .at("standard error")?;
    Ok(())
}

/// The tree as the capture sends it, for the record of a prepare's reads: the walk of a
/// live root gives other filesystems' mount points (not included) and the kernel's
/// virtual trees as empty directories, so what lies below them is not there. Else a
/// prepare here would see, say, the live socket tables, which the tree sent lacks.
struct AsSent<'a> {
    inner: &'a dyn Source,
    root: PathBuf,
    /// The filesystems a live root's walk gives (none: not a live root, all of them).
    devices: Option<std::collections::HashSet<u64>>,
    /// Directory → whether its entries are sent.
    dirs: Mutex<HashMap<Vec<u8>, bool>>,
}

impl<'a> AsSent<'a> {
    fn new(inner: &'a dyn Source, root: &Path, include_mounts: &[PathBuf]) -> Self {
        use std::os::unix::fs::MetadataExt;
        let live = crate::source::kind_of(root).ok() == Some(crate::source::SourceKind::LiveRoot);
        let devices = live.then(|| {
            std::iter::once(root.to_path_buf())
                .chain(
                    include_mounts
                        .iter()
                        .map(|m| root.join(m.strip_prefix("/").unwrap_or(m))),
                )
                .filter_map(|p| std::fs::metadata(p).ok().map(|m| m.dev()))
                .collect()
        });
        AsSent {
            inner,
            root: root.to_path_buf(),
            devices,
            dirs: Mutex::new(HashMap::new()),
        }
    }

    fn sent(&self, path: &[u8]) -> Result<()> {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::MetadataExt;
        let Some(devices) = &self.devices else {
            return Ok(());
        };
        let Some(slash) = path.iter().rposition(|&b| b == b'/') else {
            return Ok(()); // the root's own entries are all given
        };
        let dir = &path[..slash];
        let top = dir.split(|&b| b == b'/').next().unwrap_or_default();
        let known = self.dirs.lock().ok().and_then(|d| d.get(dir).copied());
        let given = match known {
            Some(given) => given,
            None => {
                let given = !crate::source::dir::VIRTUAL.contains(&top)
                    && std::fs::metadata(self.root.join(std::ffi::OsStr::from_bytes(dir)))
                        .is_ok_and(|m| devices.contains(&m.dev()));
                if let Ok(mut d) = self.dirs.lock() {
                    d.insert(dir.to_vec(), given);
                }
                given
            }
        };
        match given {
            true => Ok(()),
            false => Err(Error::NotFound(format!(
                "/{}",
                String::from_utf8_lossy(path)
            ))),
        }
    }
}

impl Source for AsSent<'_> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn walk(&self, visit: &mut Visit<'_>) -> Result<Skips> {
        self.inner.walk(visit)
    }

    fn metadata(&self, path: &[u8]) -> Result<Entry> {
        self.sent(path)?;
        self.inner.metadata(path)
    }

    fn read_dir(&self, path: &[u8]) -> Result<Vec<Vec<u8>>> {
        // A directory whose entries are not sent lists as empty, as the walk gives it.
        let mut child = path.to_vec();
        child.extend_from_slice(b"/x");
        let child = if path.is_empty() {
            &b"x"[..]
        } else {
            &child[..]
        };
        match self.sent(child) {
            Ok(()) => self.inner.read_dir(path),
            Err(_) => self.inner.metadata(path).map(|_| Vec::new()),
        }
    }

    fn open(&self, path: &[u8]) -> Result<Box<dyn Read + Send + '_>> {
        self.sent(path)?;
        self.inner.open(path)
    }
}

/// A live tree in which a file that cannot be opened is left out and listed, not the
/// end of the capture, and a file that grows while it is read is listed.
struct Lenient {
    inner: Box<dyn Source>,
    root: PathBuf,
    unreadable: Mutex<Skips>,
    grown: Mutex<Skips>,
    /// The size the walk saw of each sparse file not opened yet: its extents do not say
    /// it (a hole may end it), and growth is measured against it. The builder opens a
    /// file just after the walk gives it, so this holds one or two.
    sparse_sizes: Mutex<HashMap<Vec<u8>, u64>>,
}

impl Lenient {
    /// More than this many sparse files given and not opened (left out by the
    /// excludes): the older ones never will be.
    const PENDING_SPARSE: usize = 64;
}

impl Lenient {
    fn note(&self, path: &[u8], error: Error) -> Error {
        if error.is_vanished() {
            return error;
        }
        let shown = format!("/{}", String::from_utf8_lossy(path));
        let reason = match &error {
            Error::Io { source, .. } => format!("unreadable: {source}"),
            other => format!("unreadable: {other}"),
        };
        if let Ok(mut list) = self.unreadable.lock() {
            list.push(Skipped {
                path: shown.clone(),
                reason,
            });
        }
        Error::NotFound(shown)
    }
}

impl Source for Lenient {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn walk(&self, visit: &mut Visit<'_>) -> Result<Skips> {
        self.inner.walk(&mut |entry: Entry| {
            if entry.sparse.is_some() {
                if let Ok(mut sizes) = self.sparse_sizes.lock() {
                    if sizes.len() >= Self::PENDING_SPARSE {
                        sizes.clear();
                    }
                    sizes.insert(entry.path.clone(), entry.size);
                }
            }
            visit(entry)
        })
    }

    fn metadata(&self, path: &[u8]) -> Result<Entry> {
        self.inner.metadata(path)
    }

    fn read_dir(&self, path: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.inner.read_dir(path)
    }

    fn open(&self, path: &[u8]) -> Result<Box<dyn Read + Send + '_>> {
        let inner = self.inner.open(path).map_err(|e| self.note(path, e))?;
        Ok(Box::new(Watched {
            inner,
            read: 0,
            seen: None,
            path: path.to_vec(),
            tree: self,
        }))
    }

    fn open_extents(&self, path: &[u8], extents: &[Extent]) -> Result<Box<dyn Read + Send + '_>> {
        let seen = self
            .sparse_sizes
            .lock()
            .ok()
            .and_then(|mut sizes| sizes.remove(path));
        let inner = self
            .inner
            .open_extents(path, extents)
            .map_err(|e| self.note(path, e))?;
        Ok(Box::new(Watched {
            inner,
            read: 0,
            seen,
            path: path.to_vec(),
            tree: self,
        }))
    }
}

/// A file being read: when the builder is done with it (it reads the size the walk
/// saw), a file now longer than that grew during the capture, and is listed.
struct Watched<'a> {
    inner: Box<dyn Read + Send + 'a>,
    read: u64,
    /// A sparse file's size as the walk saw it (its data is less than its size); none:
    /// the bytes read are that size.
    seen: Option<u64>,
    path: Vec<u8>,
    tree: &'a Lenient,
}

impl Read for Watched<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl Drop for Watched<'_> {
    fn drop(&mut self) {
        use std::os::unix::ffi::OsStrExt;
        let full = self.tree.root.join(std::ffi::OsStr::from_bytes(&self.path));
        let Ok(now) = std::fs::symlink_metadata(full) else {
            return;
        };
        let size = self.seen.unwrap_or(self.read);
        if now.len() > size {
            if let Ok(mut list) = self.tree.grown.lock() {
                list.push(Skipped {
                    path: format!("/{}", String::from_utf8_lossy(&self.path)),
                    reason: format!(
                        "grew while reading (kept its first {} bytes, now {})",
                        size,
                        now.len()
                    ),
                });
            }
        }
    }
}
