//! `rehost sbom IMAGE --format spdx|cyclonedx`

use anyhow::{bail, Context, Result};
use converter::inventory::{self, InspectOptions};
use converter::sbom::{self, Format, Subject};
use converter::source::ArchiveSource;
use oci::contract::{IMAGE_NAME_LABEL, LAYER_ANNOTATION};
use oci::image::ANNOTATION_CONTAINERD_IMAGE_NAME;
use oci::layout::Layout;
use oci::reference::split_image_arg;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    rehost sbom web01.oci --format spdx -o web01.spdx.json\n  \
    rehost sbom web01.tar:v1 --format cyclonedx -o web01.cdx.json\n\n\
    The packages come from the server's own package database in the image (dpkg, apk), \
    each with its package URL; the places holding files no package installed, and the \
    package files changed since installation, are listed too.")]
pub struct Args {
    /// The image: an OCI layout or archive, PATH[:TAG].
    image: String,
    /// spdx (SPDX 2.3 JSON) or cyclonedx (CycloneDX 1.5 JSON).
    #[arg(long, default_value = "spdx", value_name = "FORMAT")]
    format: Format,
    /// Write to FILE (whole or not at all) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let text = serde_json::to_string_pretty(&document(&args.image, args.format)?.0)? + "\n";
    match &args.output {
        Some(file) => {
            let tmp = file.with_extension("rehost-tmp");
            std::fs::write(&tmp, &text)
                .with_context(|| format!("{}: cannot write", tmp.display()))?;
            std::fs::rename(&tmp, file)
                .with_context(|| format!("{}: cannot write", file.display()))?;
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The SBOM of the image `image` names (PATH[:TAG]), and the image's manifest
/// descriptor and creation time (for `push --sbom`).
pub fn document(
    image: &str,
    format: Format,
) -> Result<(serde_json::Value, oci::image::Descriptor, String)> {
    let (path, tag) = split_image_arg(image);
    let layout = Layout::open(&path)?;
    let chosen = layout.manifest(tag.as_deref())?;
    let config = layout.config(&chosen.manifest)?;
    // The server's tree is the image's first layer, or, layered by package, the layers
    // marked as its packages' and its own; the layers above are rehost's.
    let layers = &chosen.manifest.layers;
    let marked: Vec<&oci::image::Descriptor> = layers
        .iter()
        .filter(|l| {
            l.annotations
                .get(LAYER_ANNOTATION)
                .is_some_and(|a| a == "packages" || a == "server")
        })
        .collect();
    let source = match (marked.as_slice(), layers.first()) {
        ([], None) => bail!("{}: the image has no layer", path.display()),
        ([], Some(first)) => {
            let blob = layout.open_blob(first)?;
            let name = Path::new(&first.digest).to_path_buf();
            ArchiveSource::from_stream(&name, Box::new(blob)).with_context(|| {
                format!("{}: reading its layer {}", path.display(), first.digest)
            })?
        }
        (marked, _) => {
            let mut stream: Box<dyn std::io::Read> = Box::new(std::io::empty());
            for layer in marked {
                stream = Box::new(std::io::Read::chain(stream, layout.open_blob(layer)?));
            }
            ArchiveSource::from_layers(&path, stream)
                .with_context(|| format!("{}: reading its server's layers", path.display()))?
        }
    };
    let inv = inventory::inspect(&source, &InspectOptions { walk: true });
    let subject = Subject {
        name: chosen
            .descriptor
            .annotations
            .get(ANNOTATION_CONTAINERD_IMAGE_NAME)
            .or_else(|| config.config.labels.get(IMAGE_NAME_LABEL))
            .cloned()
            .unwrap_or_else(|| path.display().to_string()),
        digest: chosen.descriptor.digest.clone(),
        created: config
            .created
            .clone()
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".into()),
    };
    let Some(doc) = sbom::document(format, &subject, &inv) else {
        bail!(
            "{}: no package database that rehost reads in the image (dpkg, apk)",
            path.display()
        );
    };
    let mut descriptor = chosen.descriptor;
    descriptor.annotations.clear();
    descriptor.platform = None;
    descriptor.media_type = chosen.media_type;
    Ok((doc, descriptor, subject.created))
}
