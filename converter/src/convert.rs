//! `convert`: a source and its plan into one OCI image, from end to end. The plan is the
//! only input that decides anything (what is left out, which init runs, which services
//! are kept, ports, volumes, hooks); the options say where and how to write.

use crate::error::{Error, Result};
use crate::image::cut::Cut;
use crate::image::layer::{build_layer, BuiltLayer, LayerOptions, LayerStats, Progress};
use crate::image::packages::{build_layers, OwnedInServer};
use crate::image::rich::{HookPhase, RichInputs};
use crate::image::Compression;
use crate::inventory::fs::Root;
use crate::inventory::ownership::PackageDb;
use crate::plan::{InitMode, Plan};
use crate::profile::{ExcludeRule, Excludes};
use crate::source::recorded::{Reads, Recorder, Replay};
use crate::source::Source;
use oci::contract::{IMAGE_NAME_LABEL, LAYER_ANNOTATION, VERSION_LABEL};
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
    /// How the server's files are cut into layers; `None`: by package when the source
    /// has a package database rehost reads, else one layer.
    pub layers: Option<Layering>,
    /// The most layers the image may have, the rehost layer included.
    pub max_layers: usize,
}

/// How the server's files are cut into layers (`--layers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layering {
    /// The whole tree in one layer.
    One,
    /// Package files in layers by package, shared by servers with the same packages;
    /// the rest in the server's own layer.
    Packages,
}

/// A name that is not a [`Layering`].
#[derive(Debug, thiserror::Error)]
#[error("unknown layering `{0}` (packages, one)")]
pub struct UnknownLayering(pub String);

impl std::str::FromStr for Layering {
    type Err = UnknownLayering;
    fn from_str(s: &str) -> std::result::Result<Self, UnknownLayering> {
        match s {
            "one" => Ok(Layering::One),
            "packages" => Ok(Layering::Packages),
            _ => Err(UnknownLayering(s.to_string())),
        }
    }
}

/// What a layer of the image holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerRole {
    /// Files of packages, checked against the package database.
    Packages,
    /// The server's own files (all of them with `--layers one`).
    Server,
    /// rehost's: init, hooks, masks, identity scrubbing.
    Rehost,
}

impl LayerRole {
    fn as_str(self) -> &'static str {
        match self {
            LayerRole::Packages => "packages",
            LayerRole::Server => "server",
            LayerRole::Rehost => "rehost",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerSummary {
    pub role: LayerRole,
    /// A package layer's group: a package's name, or `bin N`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A package layer's packages, `NAME=VERSION`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// Regular files written with their content.
    pub files: u64,
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
    /// How the server's files were cut into layers.
    pub layering: Layering,
    /// With layers by package: the package files that went into the server's own layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owned_in_server: Option<OwnedInServer>,
    pub stats: LayerStats,
    /// What the rehost layer holds, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rich: Option<RichSummary>,
    /// A remote capture: the bytes received, and those reused from an interrupted run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<crate::source::remote::chunks::Received>,
    /// The plan and the package database were read from the reads the server recorded
    /// and sent with its tree, not from the tree received.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub prepared_from_record: bool,
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

/// What a conversion reads of the source before its walk: the plan (the operator's, or
/// the one `inspect` would write) and, for layers by package, the package database and
/// its cut. Each reads hundreds of files of its own and they do not depend on each
/// other, so they are read at once, on two cores: the walk cannot start before both.
pub struct Prepared {
    pub plan: Plan,
    packages: Option<(PackageDb, Cut)>,
    /// Read from what the source recorded ahead of its tree ([`Source::recorded`]).
    pub from_record: bool,
}

/// What decides [`prepare`]'s reads besides the source: a remote capture sends it to
/// the server, which makes the same reads ahead of the tree.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PrepareOptions {
    /// The operator's plan; none: the plan is derived. The server needs it for the
    /// rehost layer's plan's reads, which follow from it.
    pub plan: Option<Plan>,
    pub layers: Option<Layering>,
    pub max_layers: usize,
    /// The flags' changes to the plan, which decide what the rehost layer's
    /// plan reads ([`record_prepare`]); [`prepare`] itself does not use them.
    #[serde(default)]
    pub amendments: crate::plan::amend::Amendments,
}

/// Reads what [`convert`] needs before its walk ([`Prepared`]); `given` is the
/// operator's plan, else the plan is derived with `profiles`. A source that recorded
/// these reads ahead of its tree is read from that record, unless the record misses a
/// read (then from the source itself).
pub fn prepare(
    source: &dyn Source,
    given: Option<Plan>,
    profiles: &[String],
    options: &ConvertOptions,
) -> Result<Prepared> {
    let reads = PrepareOptions {
        plan: given.clone(),
        layers: options.layers,
        max_layers: options.max_layers,
        amendments: Default::default(),
    };
    if let Some(recorded) = source.recorded() {
        let replay = Replay::new(recorded, source.describe());
        let prepared = prepare_from(&replay, given.clone(), profiles, &reads);
        if !replay.missed() {
            return prepared.map(|p| Prepared {
                from_record: true,
                ..p
            });
        }
        tracing::info!(
            "{}: the reads recorded ahead of the tree miss one; reading the tree",
            source.describe()
        );
    }
    prepare_from(source, given, profiles, &reads)
}

/// On the server: makes the reads a conversion makes before its walk and records them;
/// none when they outgrow the record's cap. Those are [`prepare`]'s, then those of the
/// rehost layer's plan (with the flags' amendments) and of the architecture's
/// detection, which [`convert`] makes before its walk. Their results are the client's
/// to compute; only the reads matter here.
pub fn record_prepare(source: &dyn Source, options: &PrepareOptions) -> Option<Reads> {
    let recorder = Recorder::new(source);
    let derive = options.plan.is_none().then_some(&[][..]);
    let (derived, _) = read_before_walk(&recorder, derive, options);
    if let Some(Ok(mut plan)) = derived.or_else(|| options.plan.clone().map(Ok)) {
        // This program is as static as the rehost-init the client ships: it stands in
        // for it, which is checked but not read from the tree.
        let exe = std::env::current_exe();
        if let (Ok(()), Ok(init_binary)) = (plan.amend(&options.amendments), exe) {
            if plan.init.mode != InitMode::None {
                let inputs = RichInputs {
                    init_binary,
                    hooks: Vec::new(),
                    source_host: String::new(),
                    source_kind: crate::source::SourceKind::Ssh,
                    capture_time: 0,
                };
                let _ = crate::image::rich::plan(&recorder, &plan, &inputs);
            }
        }
    }
    let _ = crate::inventory::arch::detect(&recorder);
    recorder.finish()
}

fn prepare_from(
    source: &dyn Source,
    given: Option<Plan>,
    profiles: &[String],
    options: &PrepareOptions,
) -> Result<Prepared> {
    let derive = given.is_none().then_some(profiles);
    let (derived, packages) = read_before_walk(source, derive, options);
    let plan = match given {
        Some(plan) => plan,
        None => derived.expect("derived when not given")?,
    };
    Ok(Prepared {
        plan,
        packages: packages?,
        from_record: false,
    })
}

type PackagesRead = Result<Option<(PackageDb, Cut)>>;

/// The plan derived with `derive`'s profiles (none: not derived) and the package
/// database, read at once.
fn read_before_walk(
    source: &dyn Source,
    derive: Option<&[String]>,
    options: &PrepareOptions,
) -> (Option<Result<Plan>>, PackagesRead) {
    std::thread::scope(|scope| {
        let packages = scope.spawn(|| package_db(source, options));
        let plan = derive.map(|profiles| Plan::derive(source, profiles));
        let packages = packages
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (plan, packages)
    })
}

/// Builds the image of `source` that the prepared plan describes.
pub fn convert(
    source: &dyn Source,
    prepared: Prepared,
    options: &ConvertOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Summary> {
    let Prepared {
        plan,
        packages,
        from_record,
    } = prepared;
    let plan = &plan;
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
    let layer_options = LayerOptions {
        compression: options.compression,
        threads: options.threads,
        source_date_epoch: options.source_date_epoch,
    };
    let (pieces, stats, owned_in_server) = match packages {
        None => {
            let layer = build_layer(source, &excludes, &layer_options, &out, progress)?;
            let stats = layer.stats.clone();
            (vec![Piece::server(layer)], stats, None)
        }
        Some((db, cut)) => {
            let built = build_layers(source, &excludes, &layer_options, &db, &cut, &out, progress)?;
            let mut pieces: Vec<Piece> = built
                .packages
                .into_iter()
                .map(|p| Piece {
                    layer: p.layer,
                    role: LayerRole::Packages,
                    group: Some(p.group),
                    packages: p.packages,
                })
                .collect();
            pieces.push(Piece::server(built.server));
            (pieces, built.stats, Some(built.owned_in_server))
        }
    };
    let layering = match owned_in_server {
        Some(_) => Layering::Packages,
        None => Layering::One,
    };

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
    let mut diff_ids: Vec<String> = pieces.iter().map(|p| p.layer.diff_id.clone()).collect();
    let mut history: Vec<History> = pieces
        .iter()
        .map(|p| match p.role {
            LayerRole::Packages => History {
                created: created.clone(),
                created_by: Some("rehost convert --layers packages".into()),
                comment: Some(format!(
                    "packages ({}): {}",
                    p.group.as_deref().unwrap_or_default(),
                    p.packages.join(" ")
                )),
            },
            _ => History {
                created: created.clone(),
                created_by: Some(format!("rehost convert ({})", source.describe())),
                comment: Some(match layering {
                    Layering::One => "the server's filesystem".into(),
                    Layering::Packages => {
                        "the server's own files: not from a package, or changed".into()
                    }
                }),
            },
        })
        .collect();
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
    let mut pieces = pieces;
    if let (Some(planned), Some(built)) = (&rich, rich_layer) {
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
        pieces.push(Piece {
            layer: built,
            role: LayerRole::Rehost,
            group: None,
            packages: Vec::new(),
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
        layers: pieces
            .iter()
            .map(|p| Descriptor {
                media_type: p.layer.media_type.clone(),
                digest: p.layer.digest.clone(),
                size: p.layer.size,
                // Which layers are the server's, for `rehost sbom`; with one layer the
                // manifest stays as it always was.
                annotations: match layering {
                    Layering::One => BTreeMap::new(),
                    Layering::Packages => {
                        BTreeMap::from([(LAYER_ANNOTATION.into(), p.role.as_str().into())])
                    }
                },
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
        layers: pieces
            .into_iter()
            .map(|p| LayerSummary {
                role: p.role,
                group: p.group,
                packages: p.packages,
                files: p.layer.stats.files,
                digest: p.layer.digest,
                diff_id: p.layer.diff_id,
                size: p.layer.size,
                uncompressed_size: p.layer.stats.tar_bytes,
                media_type: p.layer.media_type,
            })
            .collect(),
        layering,
        owned_in_server,
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
        stats,
        received: source.received(),
        prepared_from_record: from_record,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One layer of the image and what it holds.
struct Piece {
    layer: BuiltLayer,
    role: LayerRole,
    group: Option<String>,
    packages: Vec<String>,
}

impl Piece {
    fn server(layer: BuiltLayer) -> Piece {
        Piece {
            layer,
            role: LayerRole::Server,
            group: None,
            packages: Vec::new(),
        }
    }
}

/// The package database and its cut into layers, when the image is layered by package.
fn package_db(source: &dyn Source, options: &PrepareOptions) -> PackagesRead {
    if options.layers == Some(Layering::One) {
        return Ok(None);
    }
    let db = PackageDb::read(&Root::new(source)).filter(|db| !db.packages.is_empty());
    let db = match (db, options.layers) {
        (Some(db), _) => db,
        (None, Some(Layering::Packages)) => {
            return Err(Error::Profile {
                path: "--layers packages".into(),
                reason: format!(
                    "{}: no package database rehost reads (dpkg, apk); use --layers one",
                    source.describe()
                ),
            })
        }
        (None, _) => return Ok(None),
    };
    let cut = Cut::new(&db.packages, options.max_layers).map_err(|e| Error::Profile {
        path: "--max-layers".into(),
        reason: e.to_string(),
    })?;
    Ok(Some((db, cut)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::fs::testing::MemSource;
    use crate::source::{Skips, Visit};

    /// A small Debian server: its release, users, a daemon's init script and
    /// configuration, and dpkg's database.
    fn server() -> MemSource {
        MemSource::new()
            .file("etc/os-release", "ID=debian\nVERSION_ID=12\nPRETTY_NAME=\"Debian 12\"\n")
            .file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n")
            .file("etc/group", "root:x:0:\nwww-data:x:33:\n")
            .file("etc/hostname", "web1\n")
            .file("etc/init.d/nginx", "#!/bin/sh\n### BEGIN INIT INFO\n# Provides: nginx\n# Default-Start: 2 3 4 5\n### END INIT INFO\nDAEMON=/usr/sbin/nginx\n")
            .link("etc/rc2.d/S01nginx", "../init.d/nginx")
            .file("etc/nginx/nginx.conf", "http { server { listen 8080; } }\n")
            .file("usr/sbin/nginx", "a")
            .file("var/lib/dpkg/status", "Package: nginx\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.22\n")
            .file("var/lib/dpkg/info/nginx.list", "/.\n/usr\n/usr/sbin/nginx\n")
            .file("var/lib/dpkg/info/nginx.md5sums", "0cc175b9c0f1b6a831c399e269772661  usr/sbin/nginx\n")
    }

    /// A source that sent `reads` ahead of its tree, as a remote server does.
    struct Sent<'a> {
        tree: &'a dyn Source,
        reads: Reads,
    }

    impl Source for Sent<'_> {
        fn describe(&self) -> String {
            self.tree.describe()
        }
        fn walk(&self, visit: &mut Visit<'_>) -> Result<Skips> {
            self.tree.walk(visit)
        }
        fn metadata(&self, path: &[u8]) -> Result<crate::entry::Entry> {
            self.tree.metadata(path)
        }
        fn read_dir(&self, path: &[u8]) -> Result<Vec<Vec<u8>>> {
            self.tree.read_dir(path)
        }
        fn open(&self, path: &[u8]) -> Result<Box<dyn std::io::Read + Send + '_>> {
            self.tree.open(path)
        }
        fn recorded(&self) -> Option<&Reads> {
            Some(&self.reads)
        }
    }

    fn options(layers: Option<Layering>) -> ConvertOptions {
        ConvertOptions {
            source: PathBuf::from("/srv/web1"),
            output: PathBuf::from("/nonexistent/out"),
            format: OutputFormat::Oci,
            tag: "latest".into(),
            force: false,
            compression: Compression::None,
            threads: 1,
            source_date_epoch: None,
            init_binary: None,
            hooks: Vec::new(),
            layers,
            max_layers: 10,
        }
    }

    fn packages(p: &Prepared) -> Option<Vec<String>> {
        p.packages.as_ref().map(|(db, _)| {
            db.packages
                .iter()
                .map(|p| format!("{}={}", p.name, p.version))
                .collect()
        })
    }

    #[test]
    fn a_prepare_from_the_record_gives_what_the_tree_gives_and_a_miss_reads_the_tree() {
        let tree = server();
        let options = options(None);
        let direct = prepare(&tree, None, &[], &options).unwrap();
        assert!(!direct.from_record);
        assert_eq!(packages(&direct), Some(vec!["nginx=1.22".to_string()]));
        assert!(!direct.plan.services.is_empty(), "{:?}", direct.plan);

        let wanted = PrepareOptions {
            plan: None,
            layers: None,
            max_layers: 10,
            amendments: Default::default(),
        };
        // Recorded where the tree is, sent, read back here.
        let reads = record_prepare(&tree, &wanted).expect("a prepare's reads are kept");
        let sent = Sent {
            tree: &tree,
            reads: Reads::decode(&reads.encode()).unwrap(),
        };
        let ahead = prepare(&sent, None, &[], &options).unwrap();
        assert!(ahead.from_record);
        assert_eq!(ahead.plan, direct.plan);
        assert_eq!(packages(&ahead), packages(&direct));

        // Recorded with the operator's plan: it is given here too, and read from the
        // record.
        let given = PrepareOptions {
            plan: Some(direct.plan.clone()),
            ..wanted.clone()
        };
        let partial = record_prepare(&tree, &given).unwrap();
        let sent = Sent {
            tree: &tree,
            reads: partial.clone(),
        };
        let ahead = prepare(&sent, Some(direct.plan.clone()), &[], &options).unwrap();
        assert!(ahead.from_record);
        assert_eq!(packages(&ahead), packages(&direct));
        // That record asked to derive the plan misses the plan's reads, and the tree
        // itself is read.
        let sent = Sent {
            tree: &tree,
            reads: partial,
        };
        let fallen = prepare(&sent, None, &[], &options).unwrap();
        assert!(!fallen.from_record);
        assert_eq!(fallen.plan, direct.plan);
        assert_eq!(packages(&fallen), packages(&direct));

        // An empty record, and layers by package asked of a record made for one layer.
        for reads in [
            Reads::default(),
            record_prepare(
                &tree,
                &PrepareOptions {
                    layers: Some(Layering::One),
                    ..wanted.clone()
                },
            )
            .unwrap(),
        ] {
            let sent = Sent { tree: &tree, reads };
            let fallen = prepare(&sent, None, &[], &options).unwrap();
            assert!(!fallen.from_record);
            assert_eq!(packages(&fallen), packages(&direct));
        }
    }
}
