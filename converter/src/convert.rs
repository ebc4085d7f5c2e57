//! `convert`: a source and its plan into one OCI image, from end to end. The plan is the
//! only input that decides anything (what is left out, which init runs, which services
//! are kept, ports, volumes, hooks); the options say where and how to write.

use crate::error::{Error, Result};
use crate::image::layer::{build_layer, LayerOptions, LayerStats, Progress};
use crate::image::rich::{HookPhase, RichInputs};
use crate::image::Compression;
use crate::plan::{InitMode, Plan};
use crate::profile::{ExcludeRule, Excludes};
use crate::source::Source;
use oci::contract::{IMAGE_NAME_LABEL, VERSION_LABEL};
use oci::image::{self, Descriptor, History, ImageConfig, Manifest, RootFs};
use oci::layout::{LayoutWriter, OutputFormat};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where and how to write the image: nothing here decides what the image holds.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// The SOURCE as given (for the capture time and to keep the output out of a live root).
    pub source: PathBuf,
    pub output: PathBuf,
    pub format: OutputFormat,
    /// `NAME:TAG`, `NAME` or `TAG`; the tag names the image in the layout.
    pub tag: String,
    pub force: bool,
    pub compression: Compression,
    pub threads: usize,
    pub source_date_epoch: Option<i64>,
    /// The rehost-init to ship; `None`: the static one beside this program.
    pub init_binary: Option<PathBuf>,
    /// The user's hook scripts.
    pub hooks: Vec<(HookPhase, PathBuf)>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerSummary {
    pub digest: String,
    pub diff_id: String,
    /// The blob's (compressed) size.
    pub size: u64,
    /// This layer's own uncompressed tar stream.
    pub uncompressed_size: u64,
    pub media_type: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub source: String,
    pub output: PathBuf,
    pub format: OutputFormat,
    pub tag: String,
    pub architecture: String,
    pub manifest_digest: String,
    pub config_digest: String,
    pub layers: Vec<LayerSummary>,
    pub stats: LayerStats,
    /// What the rehost layer holds, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rich: Option<RichSummary>,
    /// A remote capture: the bytes received, and those reused from an interrupted run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<crate::source::remote::chunks::Received>,
    pub seconds: f64,
}

/// The rehost layer, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RichSummary {
    pub mode: String,
    pub init: String,
    pub kept: Vec<String>,
    pub critical: Vec<String>,
    /// Kept services whose failure does not make the container degraded.
    pub optional: Vec<String>,
    pub dropped: Vec<String>,
    pub scrubbed: Vec<String>,
}

/// Splits `NAME:TAG` into its parts; a reference with no tag gets `latest`.
pub fn split_tag(reference: &str) -> (Option<&str>, &str) {
    match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (Some(name).filter(|n| !n.is_empty()), tag),
        _ if reference.contains('/') || reference.contains('.') => (Some(reference), "latest"),
        _ => (None, reference),
    }
}

/// Builds the image of `source` that `plan` describes.
pub fn convert(
    source: &dyn Source,
    plan: &Plan,
    options: &ConvertOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Summary> {
    let started = Instant::now();
    let (name, tag) = split_tag(&options.tag);
    // A name is checked before anything is written: containerd refuses a bad one later.
    let full_reference = name
        .map(|n| oci::reference::parse(&format!("{n}:{tag}")).map(|r| r.whole()))
        .transpose()?;
    if options.format == OutputFormat::DockerArchive && full_reference.is_none() {
        return Err(Error::Profile {
            path: "--format docker-archive".into(),
            reason: format!("docker load names the image from the archive: give --tag NAME:{tag}"),
        });
    }
    // The rehost layer is planned first: a plan it cannot follow fails before any writing.
    let capture_time = options
        .source_date_epoch
        .unwrap_or_else(|| source_mtime(&options.source));
    let rich = match plan.init.mode {
        InitMode::None => None,
        _ => {
            let inputs = RichInputs {
                init_binary: match &options.init_binary {
                    Some(p) => p.clone(),
                    None => crate::image::rich::binary::find()?,
                },
                hooks: options.hooks.clone(),
                source_host: String::new(),
                source_kind: crate::source::kind_of(&options.source)?,
                capture_time,
            };
            Some(crate::image::rich::plan(source, plan, &inputs)?)
        }
    };
    let out = LayoutWriter::create(&options.output, options.format, options.force)?;
    let mut rules: Vec<ExcludeRule> = plan.excludes();
    if let Some(own) = own_output(&options.source, &options.output, out.work_dir()) {
        rules.insert(0, own);
    }
    let excludes = Excludes::new(&rules, &[])?;

    let architecture =
        crate::inventory::arch::detect(source).unwrap_or_else(|| host_architecture().into());
    let layer = build_layer(
        source,
        &excludes,
        &LayerOptions {
            compression: options.compression,
            threads: options.threads,
            source_date_epoch: options.source_date_epoch,
        },
        &out,
        progress,
    )?;

    let rich_layer = match &rich {
        Some(planned) => Some(crate::image::rich::write(
            &planned.items,
            source,
            &out,
            options.compression,
            options.threads,
            capture_time,
            options.source_date_epoch,
        )?),
        None => None,
    };
    // Dated by the capture, never by the clock: the same input keeps the same digest.
    let created = Some(image::rfc3339(capture_time));
    let mut labels = BTreeMap::new();
    if let Some(name) = name {
        labels.insert(IMAGE_NAME_LABEL.to_string(), name.to_string());
    }
    labels.insert(
        VERSION_LABEL.to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    let mut run = image::RunConfig::default();
    let mut diff_ids = vec![layer.diff_id.clone()];
    let mut history = vec![History {
        created: created.clone(),
        created_by: Some(format!("rehost convert ({})", source.describe())),
        comment: Some("the server's filesystem".into()),
    }];
    let mut manifest_annotations = BTreeMap::new();
    for p in &plan.port {
        run.exposed_ports
            .insert(format!("{}/{}", p.port, p.protocol), image::Empty {});
    }
    let port_services = oci::contract::port_services_label(
        plan.port
            .iter()
            .filter_map(|p| Some((p.port, p.protocol.as_str(), p.service.as_deref()?))),
    );
    if !port_services.is_empty() {
        labels.insert(
            oci::contract::PORT_SERVICES_LABEL.to_string(),
            port_services,
        );
    }
    // The plan's HTTP checks, so that `rehost deploy` makes probes of them.
    let http = plan.checks()?.http;
    if !http.is_empty() {
        labels.insert(
            oci::contract::HTTP_CHECKS_LABEL.to_string(),
            oci::contract::http_checks_label(http.iter().map(|h| (h.port, h.path.as_str()))),
        );
    }
    for v in &plan.volume {
        run.volumes.insert(v.path.clone(), image::Empty {});
    }
    if let (Some(planned), Some(built)) = (&rich, &rich_layer) {
        run.entrypoint = Some(planned.entrypoint.clone());
        run.stop_signal = Some(planned.stop_signal.clone());
        run.healthcheck = planned.healthcheck.clone();
        run.env =
            vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()];
        run.env.extend(planned.env.iter().cloned());
        labels.extend(planned.labels.clone());
        manifest_annotations = planned.annotations.clone();
        diff_ids.push(built.diff_id.clone());
        history.push(History {
            created: created.clone(),
            created_by: Some(format!("rehost convert --init {}", planned.config.mode)),
            comment: Some("the rehost layer: init, hooks, masks, identity scrubbing".into()),
        });
    }
    run.labels = labels;
    let config = ImageConfig {
        created: created.clone(),
        architecture: architecture.clone(),
        os: "linux".into(),
        config: run,
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids,
        },
        history,
    };
    let config_json = serde_json::to_vec(&config).expect("config serializes");
    let config_desc = out.add_bytes(image::MEDIA_CONFIG, &config_json)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(image::MEDIA_MANIFEST.into()),
        config: config_desc.clone(),
        layers: std::iter::once(&layer)
            .chain(rich_layer.as_ref())
            .map(|l| Descriptor {
                media_type: l.media_type.clone(),
                digest: l.digest.clone(),
                size: l.size,
                annotations: BTreeMap::new(),
                platform: None,
            })
            .collect(),
        annotations: manifest_annotations,
    };
    let manifest_json = serde_json::to_vec(&manifest).expect("manifest serializes");
    let mut manifest_desc = out.add_bytes(image::MEDIA_MANIFEST, &manifest_json)?;
    manifest_desc.platform = Some(image::Platform {
        architecture: architecture.clone(),
        os: "linux".into(),
    });
    if let Some(full) = full_reference {
        manifest_desc
            .annotations
            .insert(image::ANNOTATION_CONTAINERD_IMAGE_NAME.into(), full);
    }
    out.commit(manifest_desc.clone(), tag)?;
    source.image_written();

    Ok(Summary {
        source: source.describe(),
        output: options.output.clone(),
        format: options.format,
        tag: tag.to_string(),
        architecture,
        manifest_digest: manifest_desc.digest,
        config_digest: config_desc.digest,
        layers: std::iter::once(&layer)
            .chain(rich_layer.as_ref())
            .map(|l| LayerSummary {
                digest: l.digest.clone(),
                diff_id: l.diff_id.clone(),
                size: l.size,
                uncompressed_size: l.stats.tar_bytes,
                media_type: l.media_type.clone(),
            })
            .collect(),
        rich: rich.map(|p| RichSummary {
            mode: p.config.mode.as_str().into(),
            init: p.init_path.clone(),
            kept: p.kept.iter().map(|e| e.name.clone()).collect(),
            critical: p
                .kept
                .iter()
                .filter(|e| e.critical)
                .map(|e| e.name.clone())
                .collect(),
            optional: p
                .kept
                .iter()
                .filter(|e| e.optional)
                .map(|e| e.name.clone())
                .collect(),
            dropped: p.dropped.clone(),
            scrubbed: p.scrubbed.clone(),
        }),
        stats: layer.stats,
        received: source.received(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// When the output is written inside the source (converting `/` to a file under it),
/// the output must not go into its own image.
fn own_output(source: &Path, output: &Path, work_dir: &Path) -> Option<ExcludeRule> {
    let root = source.canonicalize().ok()?;
    let mut paths = Vec::new();
    for p in [
        work_dir.to_path_buf(),
        work_dir.with_extension("tar"),
        output.to_path_buf(),
    ] {
        let parent = p.parent().and_then(|d| d.canonicalize().ok())?;
        let full = parent.join(p.file_name()?);
        if let Ok(rel) = full.strip_prefix(&root) {
            paths.push(format!("/{}", globset::escape(&rel.to_string_lossy())));
        }
    }
    (!paths.is_empty()).then(|| ExcludeRule {
        reason: "rehost's own output".into(),
        paths,
    })
}

/// The capture time when none is given: the source's own modification time (a file's,
/// or a directory's), so the same source gives the same image.
/// When the server was captured, for `created` and `io.rehost.captured`: a file or
/// directory source is dated by its own mtime, so the same input gives the same digests.
/// A stream (`-`) or a remote server (`ssh://`) has no file to date it by; what is read
/// is the server as it is now, so the capture's start is its date (SOURCE_DATE_EPOCH
/// makes those reproducible too).
fn source_mtime(source: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    let text = source.to_string_lossy();
    if text == "-" || text.starts_with("ssh://") {
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
    }
    std::fs::metadata(source).map(|m| m.mtime()).unwrap_or(0)
}

pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Reads `SOURCE_DATE_EPOCH`-style values.
pub fn parse_epoch(text: &str) -> Result<i64> {
    text.trim().parse().map_err(|_| Error::Profile {
        path: "--source-date-epoch".into(),
        reason: format!("`{text}` is not a number of seconds since 1970"),
    })
}
