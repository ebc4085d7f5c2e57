//! `ssh://` sources: `rehost inspect ssh://…` here, and the helper's side on the server
//! (`rehost __remote`, hidden: the static rehost sent there runs it).
//!
//! A convert of `ssh://…` needs nothing here: the converter opens it as a source.

use crate::inspect::{self, Examined};
use anyhow::{Context, Result};
use converter::plan::Plan;
use converter::profile::Profile;
use converter::source::remote::{self, Helper, Running, Session, SshUrl};
use converter::source::{self, OpenOptions};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Shows a remote capture's progress on the command's spinner: files, bytes, the rate
/// and the time left.
pub fn show_transfer(bar: &indicatif::ProgressBar, source: &std::path::Path) {
    if !remote::is_remote(source) {
        return;
    }
    let bar = bar.clone();
    remote::progress::on_progress(move |t| {
        let left = t
            .eta()
            .map(|d| format!(", {} s left", d.as_secs()))
            .unwrap_or_default();
        bar.set_message(format!(
            "receiving: {} of {} files, {} of {}, {}/s{left}",
            t.files,
            t.total_files,
            crate::output::bytes(t.bytes),
            crate::output::bytes(t.total_bytes),
            crate::output::bytes(t.rate() as u64),
        ));
    });
}

/// What the helper is asked for an inspect.
#[derive(Serialize, Deserialize)]
struct InspectRequest {
    path: String,
    /// The name the report gives the source (the ssh:// address).
    name: String,
    json: bool,
    walk: bool,
    /// Profiles by built-in name, or by file name with the file's text.
    profiles: Vec<(String, Option<String>)>,
    include_mounts: Vec<PathBuf>,
}

/// What the helper answers an inspect with.
#[derive(Serialize, Deserialize)]
struct InspectAnswer {
    report: String,
    plan: Plan,
    /// The plan file's review notes ([`converter::plan::review`]).
    #[serde(default)]
    review: Vec<String>,
}

/// `rehost inspect ssh://…`: the inventory, the plan and the size are made on the
/// server, where the live socket table is; the plan file is written here.
pub fn inspect(args: inspect::Args, quiet: bool) -> Result<ExitCode> {
    let address = args.source.to_string_lossy().into_owned();
    let url = SshUrl::parse(&address)?;
    let helper = remote::find_helper()?;
    let profiles = args
        .profile
        .iter()
        .map(|p| {
            let path = std::path::Path::new(p);
            if path.is_file() {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Ok((p.clone(), Some(text)))
            } else {
                Profile::builtin(p)?;
                Ok((p.clone(), None))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let bar = crate::output::spinner(quiet || args.json);
    bar.set_message(format!("connecting to {}", url.destination()));
    let (mut session, ready) = Session::open(&url, &helper)?;
    bar.set_message(format!("reading {url}"));
    let (report, plan, review) = match ready {
        Helper::Ready => {
            let request = InspectRequest {
                path: url.path.clone(),
                name: url.to_string(),
                json: args.json,
                walk: !args.no_walk,
                profiles,
                include_mounts: args.include_mount.clone(),
            };
            let mut running = session.run_helper(&serde_json::json!({ "inspect": request }))?;
            let mut stdout = running.stdout();
            let mut answer = Vec::new();
            let read = stdout.read_to_end(&mut answer);
            let (status, said) = running.finish(Some(stdout))?;
            if !status.success() || read.is_err() {
                return Err(
                    Running::error(&url.destination(), status, &said, "the inspection").into(),
                );
            }
            session.helper_removed();
            let answer: InspectAnswer =
                serde_json::from_slice(&answer).context("the helper's answer is unreadable")?;
            (answer.report.into_bytes(), answer.plan, answer.review)
        }
        Helper::Unusable(why) => {
            tracing::warn!("{}: {why}", url.destination());
            remote::warn_fallback(&url);
            let captured = remote::capture_with_tar(&session)?;
            let profiles = args
                .profile
                .iter()
                .map(|p| Profile::load(p))
                .collect::<Result<Vec<_>, _>>()?;
            let examined = inspect::examine(&captured, &profiles, !args.no_walk)?;
            let review = converter::plan::review(&examined.inventory);
            (
                inspect::render(&examined, args.json)?,
                examined.plan,
                review,
            )
        }
    };
    drop(session);
    bar.finish_and_clear();
    inspect::finish(&args, quiet, &report, &plan, &review)
}

/// On the server: `rehost __remote [--probe]`. The request is the first line of
/// standard input; the end of standard input means rehost went away (Ctrl-C, a dropped
/// connection), and the helper exits at once.
pub fn helper_main(args: Vec<std::ffi::OsString>) -> ExitCode {
    if args.iter().any(|a| a == "--probe") {
        println!("{}", remote::PROBE_ANSWER);
        return ExitCode::SUCCESS;
    }
    let mut line = Vec::new();
    let mut stdin = std::io::stdin().lock();
    if let Err(e) = stdin.read_until(b'\n', &mut line) {
        eprintln!("rehost helper: reading the request: {e}");
        return ExitCode::FAILURE;
    }
    drop(stdin);
    std::thread::spawn(|| {
        let mut rest = [0u8; 64];
        // Nothing more is sent: a read returns only at the end.
        while matches!(std::io::stdin().read(&mut rest), Ok(n) if n > 0) {}
        std::process::exit(3);
    });
    let result = serve(&line);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut text = format!("{err}");
            for cause in err.chain().skip(1) {
                text.push_str(&format!(": {cause}"));
            }
            let _ = writeln!(std::io::stderr(), "rehost helper: {text}");
            ExitCode::FAILURE
        }
    }
}

fn serve(line: &[u8]) -> Result<()> {
    let request: serde_json::Value =
        serde_json::from_slice(line).context("the request is not JSON")?;
    if let Some(capture) = request.get("capture") {
        let capture: remote::CaptureRequest =
            serde_json::from_value(capture.clone()).context("a bad capture request")?;
        return Ok(remote::serve_capture(capture)?);
    }
    if let Some(inspect) = request.get("inspect") {
        let request: InspectRequest =
            serde_json::from_value(inspect.clone()).context("a bad inspect request")?;
        return serve_inspect(request);
    }
    anyhow::bail!("an unknown request")
}

fn serve_inspect(request: InspectRequest) -> Result<()> {
    let source = source::open(
        request.path.as_ref(),
        &OpenOptions {
            include_mounts: request.include_mounts.clone(),
            hide: remote::helper_directory().into_iter().collect(),
            ..OpenOptions::default()
        },
    )?;
    let profiles = request
        .profiles
        .iter()
        .map(|(name, text)| match text {
            Some(text) => Profile::parse(name, text),
            None => Profile::builtin(name),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut examined: Examined = inspect::examine(source.as_ref(), &profiles, request.walk)?;
    examined.inventory.source = request.name.clone();
    examined.plan.source = request.name.clone();
    let report = String::from_utf8_lossy(&inspect::render(&examined, request.json)?).into_owned();
    let answer = InspectAnswer {
        report,
        review: converter::plan::review(&examined.inventory),
        plan: examined.plan,
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &answer)?;
    out.flush()?;
    Ok(())
}
