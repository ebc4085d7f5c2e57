//! One host's run: inspect, convert, verify, push, each as the `rehost` subcommand of the
//! same name in its own process.
//!
//! A process per step keeps hosts apart: one host's panic, hang or leaked descriptor ends
//! that step of that host only, each step's standard error goes to the host's log, and the
//! steps' `--json` outputs are the contract the report is built from.

use super::file::{Fleet, Host};
use super::report::{HostResult, ImageSummary, Pushed, Status, VerifySummary};
use anyhow::{Context, Result};
use oci::digest::HashingWriter;
use serde_json::Value;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Where a host's plan, image, logs and reports lie: OUTPUT/NAME/.
pub fn dir(fleet: &Fleet, host: &Host) -> PathBuf {
    fleet.output.join(&host.name)
}

pub fn image_path(fleet: &Fleet, host: &Host) -> PathBuf {
    dir(fleet, host).join("image.oci")
}

/// Where `push` sends the host: REGISTRY/NAME:TAG.
pub fn reference(fleet: &Fleet, host: &Host) -> Option<String> {
    fleet
        .registry
        .as_ref()
        .map(|r| format!("{r}/{}:{}", host.name, fleet.tag))
}

/// What a run decides from: the host's settings and plan, where it goes, and the source as
/// far as it can be read cheaply.
pub struct Fingerprint {
    hasher: HashingWriter<std::io::Sink>,
}

impl Fingerprint {
    pub fn of_settings(fleet: &Fleet, host: &Host) -> Result<Fingerprint> {
        let mut hasher = HashingWriter::new(std::io::sink());
        let settings = serde_json::json!({
            "rehost": env!("CARGO_PKG_VERSION"),
            "host": host,
            "reference": reference(fleet, host),
            "sbom": fleet.sbom,
        });
        hasher.write_all(settings.to_string().as_bytes())?;
        if let Some(plan) = &host.plan {
            let text = std::fs::read(plan)
                .with_context(|| format!("reading the plan {}", plan.display()))?;
            hasher.write_all(&text)?;
        }
        Ok(Fingerprint { hasher })
    }

    /// A local source: an archive or disk image by its size and time, a directory by the
    /// names, types, owners, sizes and times of everything in it (one stat per entry, on
    /// its own filesystem, as convert walks it).
    pub fn add_local(&mut self, path: &Path) -> Result<()> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("reading the source {}", path.display()))?;
        if !meta.is_dir() {
            writeln!(
                self.hasher,
                "file {} {}",
                meta.len(),
                meta.mtime_nsec_total()
            )?;
            return Ok(());
        }
        let device = meta.dev();
        // Depth first, each directory's names sorted: the same tree always hashes the same.
        let mut pending = vec![PathBuf::new()];
        while let Some(rel) = pending.pop() {
            let mut names: Vec<OsString> = match std::fs::read_dir(path.join(&rel)) {
                Ok(entries) => entries.flatten().map(|e| e.file_name()).collect(),
                Err(e) => {
                    writeln!(self.hasher, "unreadable {} {e}", rel.display())?;
                    continue;
                }
            };
            names.sort();
            let mut subdirs = Vec::new();
            for name in names {
                let child = rel.join(&name);
                let Ok(m) = std::fs::symlink_metadata(path.join(&child)) else {
                    writeln!(self.hasher, "vanished {}", child.display())?;
                    continue;
                };
                write!(
                    self.hasher,
                    "{}\0{:o}\0{}\0{}\0{}\0{}",
                    child.display(),
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.len(),
                    m.mtime_nsec_total()
                )?;
                if m.file_type().is_symlink() {
                    if let Ok(target) = std::fs::read_link(path.join(&child)) {
                        write!(self.hasher, "\0{}", target.display())?;
                    }
                }
                self.hasher.write_all(b"\n")?;
                if m.is_dir() && m.dev() == device {
                    subdirs.push(child);
                }
            }
            pending.extend(subdirs.into_iter().rev());
        }
        Ok(())
    }

    /// A remote source: what inspect found (its walk's sizes included). A change that
    /// moves no size and no inventory goes unseen; `--redo` converts anyway.
    pub fn add_inventory(&mut self, inventory: &Value) -> Result<()> {
        self.hasher.write_all(inventory.to_string().as_bytes())?;
        Ok(())
    }

    pub fn finish(self) -> String {
        self.hasher.finish().0
    }
}

trait MtimeNsec {
    fn mtime_nsec_total(&self) -> i128;
}

impl MtimeNsec for std::fs::Metadata {
    fn mtime_nsec_total(&self) -> i128 {
        self.mtime() as i128 * 1_000_000_000 + self.mtime_nsec() as i128
    }
}

/// Runs one host to the end, or to its first failed step. `previous` is the host's result
/// from an earlier run: with the same fingerprint and an image still there, it is kept.
pub fn run(
    fleet: &Fleet,
    host: &Host,
    previous: Option<&HostResult>,
    redo: bool,
    say: &dyn Fn(&str),
) -> HostResult {
    let started = Instant::now();
    let mut result = HostResult::new(host);
    let outcome = Runner {
        fleet,
        host,
        dir: dir(fleet, host),
        say,
    }
    .steps(&mut result, previous, redo);
    match outcome {
        Ok(Some(kept)) => return HostResult { ran: false, ..kept },
        Ok(None) => result.status = Status::Ok,
        Err(failure) => {
            result.status = Status::Failed;
            result.failed_step = Some(failure.step.to_string());
            result.reason = Some(failure.reason);
        }
    }
    result.seconds = started.elapsed().as_secs_f64();
    result
}

struct Failure {
    step: &'static str,
    reason: String,
}

fn failed(step: &'static str) -> impl Fn(anyhow::Error) -> Failure {
    move |e| Failure {
        step,
        reason: format!("{e:#}"),
    }
}

struct Runner<'a> {
    fleet: &'a Fleet,
    host: &'a Host,
    dir: PathBuf,
    say: &'a dyn Fn(&str),
}

impl Runner<'_> {
    /// `Ok(Some(previous))` when the host is already done.
    fn steps(
        &self,
        result: &mut HostResult,
        previous: Option<&HostResult>,
        redo: bool,
    ) -> std::result::Result<Option<HostResult>, Failure> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))
            .map_err(failed("prepare"))?;
        let image = image_path(self.fleet, self.host);
        let done = |fp: &str| {
            previous.filter(|p| {
                !redo && p.status == Status::Ok && p.fingerprint == fp && image.is_dir()
            })
        };
        let fingerprint =
            Fingerprint::of_settings(self.fleet, self.host).map_err(failed("inspect"))?;
        // A local source is fingerprinted before anything runs; a remote one by what its
        // inspect finds.
        let pending = match &self.host.local {
            Some(local) => {
                (self.say)("reading the source's metadata");
                let mut fingerprint = fingerprint;
                fingerprint.add_local(local).map_err(failed("inspect"))?;
                let fp = fingerprint.finish();
                if let Some(kept) = done(&fp) {
                    return Ok(Some(kept.clone()));
                }
                Pending::Known(fp)
            }
            None => Pending::NeedsInventory(fingerprint),
        };

        // inspect: the plan, unless the fleet file gives one.
        let plan = match &self.host.plan {
            Some(plan) => plan.clone(),
            None => self.dir.join("plan.toml"),
        };
        (self.say)("inspecting");
        let mut args: Vec<OsString> = vec!["inspect".into(), self.source(), "--json".into()];
        if self.host.plan.is_none() {
            args.extend(["--plan".into(), plan.clone().into(), "--force".into()]);
        }
        let report = self.rehost("inspect", args)?;
        // What inspect found, for the operator (the plan says only what it decided).
        let found = self.dir.join("inspect.json");
        std::fs::write(
            &found,
            serde_json::to_vec_pretty(&report).unwrap_or_default(),
        )
        .with_context(|| format!("writing {}", found.display()))
        .map_err(failed("inspect"))?;
        let fp = match pending {
            Pending::Known(fp) => fp,
            Pending::NeedsInventory(mut fingerprint) => {
                fingerprint
                    .add_inventory(&report["inventory"])
                    .map_err(failed("inspect"))?;
                let fp = fingerprint.finish();
                if let Some(kept) = done(&fp) {
                    return Ok(Some(kept.clone()));
                }
                fp
            }
        };
        result.fingerprint = fp;

        (self.say)("converting");
        let mut args: Vec<OsString> = vec![
            "convert".into(),
            self.source(),
            "-o".into(),
            image.clone().into(),
            "--force".into(),
            "--json".into(),
            "--tag".into(),
            format!("{}:{}", self.host.name, self.fleet.tag).into(),
            "--plan".into(),
            plan.clone().into(),
        ];
        let amend = &self.host.settings.amend;
        if let Some(init) = &amend.init {
            args.extend(["--init".into(), init.into()]);
        }
        for (flag, values) in [
            ("--service", &amend.service),
            ("--drop", &amend.drop),
            ("--critical", &amend.critical),
            ("--optional", &amend.optional),
            ("--expose", &amend.expose),
            ("--volume", &amend.volume),
            ("--exclude", &amend.exclude),
        ] {
            for v in values {
                args.extend([flag.into(), v.into()]);
            }
        }
        let layering = &self.host.settings.convert;
        if let Some(layers) = &layering.layers {
            args.extend(["--layers".into(), layers.into()]);
        }
        if let Some(n) = layering.max_layers {
            args.extend(["--max-layers".into(), n.to_string().into()]);
        }
        let converted = self.rehost("convert", args)?;
        result.mode = converted["rich"]["mode"].as_str().map(str::to_string);
        result.services = strings(&converted["rich"]["kept"]);
        result.image = Some(ImageSummary::from_convert(&image, &converted));

        let verify = &self.host.settings.verify;
        if verify.skip != Some(true) {
            (self.say)("verifying");
            let mut args: Vec<OsString> = vec![
                "verify".into(),
                image.clone().into(),
                "--plan".into(),
                plan.into(),
                "--json".into(),
                "--junit".into(),
                self.dir.join("verify.xml").into(),
            ];
            if let Some(t) = verify.timeout {
                args.extend(["--timeout".into(), t.to_string().into()]);
            }
            for p in &verify.port {
                args.extend(["--port".into(), p.to_string().into()]);
            }
            for (flag, values) in [("--http", &verify.http), ("--check", &verify.check)] {
                for v in values {
                    args.extend([flag.into(), v.into()]);
                }
            }
            let (code, report) = self.rehost_json("verify", args)?;
            let summary = VerifySummary::from_report(&report);
            let passed = code == Some(0) && summary.passed;
            result.verify = Some(summary);
            if !passed {
                // Failed checks, or, when verify could not check at all, its error.
                let why = result
                    .verify
                    .as_ref()
                    .map(|v| v.failed.join("; "))
                    .filter(|w| !w.is_empty())
                    .unwrap_or_else(|| self.last_error("verify"));
                return Err(Failure {
                    step: "verify",
                    reason: why,
                });
            }
        }

        if let Some(reference) = reference(self.fleet, self.host) {
            (self.say)(&format!("pushing to {reference}"));
            let mut args: Vec<OsString> = vec![
                "push".into(),
                image.into(),
                reference.clone().into(),
                "--json".into(),
            ];
            if self.fleet.insecure {
                args.push("--insecure".into());
            }
            if let Some(format) = &self.fleet.sbom {
                args.extend(["--sbom".into(), format.into()]);
            }
            let pushed = self.rehost("push", args)?;
            result.pushed = Some(Pushed::from_push(reference, &pushed));
        }
        Ok(None)
    }

    fn source(&self) -> OsString {
        match &self.host.local {
            Some(p) => p.clone().into(),
            None => self.host.source.clone().into(),
        }
    }

    /// A step that must succeed; its JSON output.
    fn rehost(
        &self,
        step: &'static str,
        args: Vec<OsString>,
    ) -> std::result::Result<Value, Failure> {
        match self.rehost_json(step, args)? {
            (Some(0), json) => Ok(json),
            (_, _) => Err(Failure {
                step,
                reason: self.last_error(step),
            }),
        }
    }

    /// Runs `rehost ARGS`: its exit code and JSON output (Null when it printed none).
    /// Standard error goes to the host's log, one file per step.
    fn rehost_json(
        &self,
        step: &'static str,
        args: Vec<OsString>,
    ) -> std::result::Result<(Option<i32>, Value), Failure> {
        let exe = std::env::current_exe()
            .context("finding this program")
            .map_err(failed(step))?;
        let log = self.log(step);
        let stderr = std::fs::File::create(&log)
            .with_context(|| format!("creating the log {}", log.display()))
            .map_err(failed(step))?;
        let out = Command::new(exe)
            .args(&args)
            .stdin(Stdio::null())
            .stderr(stderr)
            .output()
            .with_context(|| format!("running rehost {step}"))
            .map_err(failed(step))?;
        let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        Ok((out.status.code(), json))
    }

    fn log(&self, step: &str) -> PathBuf {
        self.dir.join(format!("{step}.log"))
    }

    /// The step's one-line error, from the end of its log.
    fn last_error(&self, step: &str) -> String {
        let text = read_tail(&self.log(step), 64 * 1024);
        text.lines()
            .rev()
            .find(|l| l.starts_with("rehost: error: "))
            .map(|l| l.trim_start_matches("rehost: error: ").to_string())
            .or_else(|| {
                text.lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| format!("rehost {step} failed with no message"))
    }
}

enum Pending {
    Known(String),
    NeedsInventory(Fingerprint),
}

/// The last `max` bytes of a file, as text.
fn read_tail(path: &Path, max: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut bytes = Vec::new();
    let _ = file.take(max).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
