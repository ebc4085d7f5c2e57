//! `rehost push IMAGE REF`

use crate::flags::RegistryArgs;
use crate::output;
use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use registry::{self, BlobAction, PushEvent, PushOptions};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    rehost push web01.oci registry.example:5000/fleet/web01:v1\n  \
    rehost push web01.tar registry.example/fleet/web01:v1 --tag latest --mount-from fleet/base\n  \
    echo \"$TOKEN\" | rehost push web01.oci registry.example/fleet/web01:v1 --username ci --password-stdin\n\n\
    Blobs the registry already has are not sent again; an interrupted push can simply be \
    run again. The manifest is sent as the bytes on disk: its digest in the registry is \
    the one `rehost convert` printed.")]
pub struct Args {
    /// The image: an OCI layout directory or OCI archive; IMAGE:TAG picks one of several.
    image: String,
    /// Where to: REGISTRY/REPOSITORY:TAG (e.g. 127.0.0.1:5000/fleet/web01:v1).
    reference: String,
    /// Also tag the manifest TAG in the same repository (repeatable).
    #[arg(long, short = 't', value_name = "TAG")]
    tag: Vec<String>,
    /// Mount blobs from this repository of the same registry instead of uploading them.
    /// Without it, blobs an earlier push sent to another repository of the registry are
    /// mounted from there (remembered in ~/.cache/rehost/pushed-blobs.json).
    #[arg(long, value_name = "REPOSITORY")]
    mount_from: Option<String>,
    /// Neither mount blobs from where earlier pushes sent them nor remember this push.
    #[arg(long)]
    no_blob_memory: bool,
    /// Also attach the image's SBOM (spdx or cyclonedx, as `rehost sbom` writes it) as an
    /// OCI referrer: by the registry's referrers API, or the `sha256-HEX` tag schema.
    #[arg(long, value_name = "FORMAT")]
    sbom: Option<converter::sbom::Format>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Print the summary as JSON on standard output.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, quiet: bool) -> Result<ExitCode> {
    let (image, image_tag) = oci::reference::split_image_arg(&args.image);
    let options = PushOptions {
        connect: args.registry.connect_options()?,
        mount_from: args.mount_from.clone(),
        extra_tags: args.tag.clone(),
        image_tag,
        memory: (!args.no_blob_memory).then(memory_path).flatten(),
    };
    let bars = Bars::new(quiet || args.json);
    let progress = bars.clone();
    let summary = registry::push(
        &image,
        &args.reference,
        &options,
        Arc::new(move |event| progress.event(event)),
    )
    .with_context(|| format!("pushing {} to {}", image.display(), args.reference))?;
    bars.finish();
    let attached = match args.sbom {
        Some(format) => {
            let (doc, subject, created) = crate::sbom::document(&args.image, format)?;
            let artifact_type = match format {
                converter::sbom::Format::Spdx => "application/spdx+json",
                converter::sbom::Format::CycloneDx => "application/vnd.cyclonedx+json",
            };
            let annotations = std::collections::BTreeMap::from([(
                "org.opencontainers.image.created".to_string(),
                created,
            )]);
            Some(
                registry::attach(
                    &args.reference,
                    &subject,
                    artifact_type,
                    &serde_json::to_vec_pretty(&doc)?,
                    annotations,
                    &options.connect,
                )
                .with_context(|| format!("attaching the SBOM to {}", args.reference))?,
            )
        }
        None => None,
    };

    if args.json {
        let mut v = serde_json::to_value(&summary)?;
        if let Some(a) = &attached {
            v["sbom"] = serde_json::to_value(a)?;
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if quiet {
        return Ok(ExitCode::SUCCESS);
    }
    for blob in &summary.blobs {
        let what = match blob.action {
            BlobAction::Uploaded => "uploaded",
            BlobAction::Skipped => "exists  ",
            BlobAction::Mounted => "mounted ",
        };
        println!("{what}  {} ({})", blob.digest, output::bytes(blob.size));
    }
    if summary.tags.is_empty() {
        println!(
            "pushed    {}@{}",
            summary.repository, summary.manifest_digest
        );
    } else {
        println!(
            "pushed    {}:{}",
            summary.repository,
            summary.tags.join(&format!(", {}:", summary.repository))
        );
    }
    println!("manifest  {}", summary.manifest_digest);
    if let Some(a) = &attached {
        println!(
            "sbom      {} ({}, by the {})",
            a.digest, a.artifact_type, a.indexed_by
        );
    }
    println!(
        "bytes     {} uploaded, {} already there, {} mounted",
        output::bytes(summary.bytes_uploaded),
        output::bytes(summary.bytes_skipped),
        output::bytes(summary.bytes_mounted)
    );
    println!("time      {:.1} s", summary.seconds);
    Ok(ExitCode::SUCCESS)
}

/// Where pushes remember their blobs: the user's cache directory (none when the home
/// directory does not exist: nothing is made outside it).
fn memory_path() -> Option<std::path::PathBuf> {
    let cache = match std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => {
            let home = std::path::PathBuf::from(std::env::var_os("HOME")?);
            if !home.is_dir() {
                return None;
            }
            home.join(".cache")
        }
    };
    Some(cache.join("rehost").join("pushed-blobs.json"))
}

/// One bar per blob being sent and one for the whole push, on a terminal only.
#[derive(Clone)]
struct Bars {
    inner: Option<Arc<Mutex<BarsInner>>>,
}

struct BarsInner {
    multi: MultiProgress,
    total: ProgressBar,
    /// Each blob's bar, its size, and whether the bar is shown yet.
    blobs: HashMap<String, (ProgressBar, u64, bool)>,
}

impl Bars {
    fn new(hidden: bool) -> Self {
        if hidden || !std::io::stderr().is_terminal() {
            return Bars { inner: None };
        }
        let multi = MultiProgress::new();
        let total = multi.add(ProgressBar::new(0));
        total.set_style(
            ProgressStyle::with_template(
                "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        total.set_message("total");
        Bars {
            inner: Some(Arc::new(Mutex::new(BarsInner {
                multi,
                total,
                blobs: HashMap::new(),
            }))),
        }
    }

    fn event(&self, event: PushEvent) {
        let Some(inner) = &self.inner else { return };
        let mut inner = inner.lock().expect("progress lock");
        match event {
            PushEvent::Blobs(list) => {
                inner.total.set_length(list.iter().map(|(_, s)| s).sum());
                for (digest, size) in list {
                    // Hidden until it joins the MultiProgress: a bar drawing on its own
                    // would leave a stray line.
                    let bar =
                        ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::hidden());
                    bar.set_style(
                        ProgressStyle::with_template("{msg:>12} [{bar:30}] {bytes}/{total_bytes}")
                            .expect("template")
                            .progress_chars("=> "),
                    );
                    bar.set_message(digest[7..19].to_string());
                    inner.blobs.insert(digest, (bar, size, false));
                }
            }
            PushEvent::Sent { digest, bytes } => {
                let BarsInner {
                    multi,
                    total,
                    blobs,
                } = &mut *inner;
                if let Some((bar, _, shown)) = blobs.get_mut(&digest) {
                    if !*shown {
                        *shown = true;
                        multi.add(bar.clone());
                    }
                    bar.inc(bytes);
                }
                total.inc(bytes);
            }
            PushEvent::Restart { digest, sent } => {
                if let Some((bar, _, _)) = inner.blobs.get(&digest) {
                    bar.set_position(0);
                }
                let pos = inner.total.position().saturating_sub(sent);
                inner.total.set_position(pos);
            }
            PushEvent::Done { digest, .. } => {
                if let Some((bar, size, shown)) = inner.blobs.remove(&digest) {
                    // Skipped and mounted blobs count as done without being sent.
                    if bar.position() == 0 {
                        inner.total.inc(size);
                    }
                    // Finished bars stay in the MultiProgress, cleared: removing them
                    // mid-draw leaves stale lines on some terminals.
                    let _ = shown;
                    bar.finish_and_clear();
                }
            }
            PushEvent::Tagging(reference) => inner.total.set_message(format!("tag {reference}")),
        }
    }

    fn finish(&self) {
        if let Some(inner) = &self.inner {
            let inner = inner.lock().expect("progress lock");
            inner.total.finish_and_clear();
            let _ = inner.multi.clear();
        }
    }
}
