//! `ssh://` sources: `rehost inspect ssh://…`, and the progress of a capture. The
//! helper's side on the server is the converter's (`converter::source::remote::helper`),
//! and a convert of `ssh://…` needs nothing here: the converter opens it as a source.

use crate::inspect;
use anyhow::{Context, Result};
use converter::profile::Profile;
use converter::report;
use converter::source::remote::helper::{InspectAnswer, InspectRequest};
use converter::source::remote::progress::Transfer;
use converter::source::remote::{self, Running, Session, SshUrl, Started};
use std::io::Read;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// A remote capture's progress on the command's spinner: what the server has sent
/// (files, bytes, the rate and the time left) and, as the image is built while the tree
/// arrives, the content built here. Both the transfer's reports and the build update it.
#[derive(Clone)]
pub struct Shown {
    bar: indicatif::ProgressBar,
    state: Arc<Mutex<(Transfer, u64)>>,
}

impl Shown {
    /// Starts showing `source`'s transfer on `bar`; none when it is not remote.
    pub fn start(bar: &indicatif::ProgressBar, source: &std::path::Path) -> Option<Shown> {
        if !remote::is_remote(source) {
            return None;
        }
        let shown = Shown {
            bar: bar.clone(),
            state: Arc::new(Mutex::new((Transfer::default(), 0))),
        };
        let hook = shown.clone();
        remote::progress::on_progress(move |t| hook.update(|state| state.0 = *t));
        Some(shown)
    }

    /// The image's build has taken in `bytes` of file content.
    pub fn built(&self, bytes: u64) {
        self.update(|state| state.1 = bytes);
    }

    fn update(&self, change: impl FnOnce(&mut (Transfer, u64))) {
        if let Ok(mut state) = self.state.lock() {
            change(&mut state);
            self.bar.set_message(line(&state.0, state.1));
        }
    }
}

/// The progress line: the transfer, then the build. The total comes from a walk the
/// server makes beside the stream: until it is known, what has come so far.
fn line(t: &Transfer, built: u64) -> String {
    let bytes = crate::output::bytes(t.bytes);
    let rate = crate::output::bytes(t.rate() as u64);
    let sent = match t.total_files {
        0 => format!("receiving: {} files, {bytes}, {rate}/s", t.files),
        total if t.files >= total && t.bytes >= t.total_bytes => {
            format!("received: {total} files, {bytes}")
        }
        total => format!(
            "receiving: {} of {total} files, {bytes} of {}, {rate}/s{}",
            t.files,
            crate::output::bytes(t.total_bytes),
            t.eta()
                .map(|d| format!(", {} s left", d.as_secs()))
                .unwrap_or_default()
        ),
    };
    match built {
        0 => sent,
        n => format!("{sent}; {} built", crate::output::bytes(n)),
    }
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
    let request = InspectRequest {
        path: url.path.clone(),
        name: url.to_string(),
        json: args.json,
        walk: !args.no_walk,
        profiles,
        include_mounts: args.include_mount.clone(),
    };
    let (mut session, started) =
        Session::start(&url, &helper, &serde_json::json!({ "inspect": request }))?;
    bar.set_message(format!("reading {url}"));
    let (report, plan, review) = match started {
        Started::Helper(mut running) => {
            let mut stdout = running.stdout();
            let mut answer = Vec::new();
            let read = (&mut stdout)
                .take(InspectAnswer::MAX + 1)
                .read_to_end(&mut answer);
            if answer.len() as u64 > InspectAnswer::MAX {
                // Not read to its end: it may not have one.
                running.abandon();
                return Err(converter::error::Error::Remote {
                    host: url.destination(),
                    reason: format!(
                        "the helper's answer is over {} MiB",
                        InspectAnswer::MAX >> 20
                    ),
                }
                .into());
            }
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
        Started::Unusable(why) => {
            tracing::warn!("{}: {why}", url.destination());
            remote::warn_fallback(&url);
            let captured = remote::capture_with_tar(&mut session)?;
            let profiles = args
                .profile
                .iter()
                .map(|p| Profile::load(p))
                .collect::<Result<Vec<_>, _>>()?;
            let examined = report::examine(&captured, &profiles, !args.no_walk)?;
            let review = converter::plan::review(&examined.inventory);
            (
                report::render(&examined, args.json).context("writing the report")?,
                examined.plan,
                review,
            )
        }
    };
    drop(session);
    bar.finish_and_clear();
    inspect::finish(&args, quiet, &report, &plan, &review)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_progress_line_shows_the_transfer_then_the_build() {
        let mut t = Transfer {
            files: 100,
            bytes: 4 << 20,
            elapsed: Duration::from_secs(2),
            ..Transfer::default()
        };
        // Before the server has measured its tree, and before anything is built.
        assert_eq!(line(&t, 0), "receiving: 100 files, 4.0 MiB, 2.0 MiB/s");
        t.total_files = 400;
        t.total_bytes = 16 << 20;
        assert_eq!(
            line(&t, 3 << 20),
            "receiving: 100 of 400 files, 4.0 MiB of 16.0 MiB, 2.0 MiB/s, 6 s left; \
             3.0 MiB built"
        );
        // All sent: the build goes on.
        t.files = 400;
        t.bytes = 16 << 20;
        assert_eq!(
            line(&t, 15 << 20),
            "received: 400 files, 16.0 MiB; 15.0 MiB built"
        );
    }
}
