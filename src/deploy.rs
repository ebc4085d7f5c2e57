//! `rehost deploy IMAGE --to TARGET`

use crate::flags::RegistryArgs;
use anyhow::{bail, Context, Result};
use oci::image::{ImageConfig, ANNOTATION_CONTAINERD_IMAGE_NAME};
use oci::layout::Layout;
use oci::reference::{is_registry_reference, split_image_arg};
use runtime::deploy::{CgroupVersion, Deployment, Target};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    rehost push web01.oci registry.example:5000/fleet/web01:v1\n  \
    rehost deploy registry.example:5000/fleet/web01:v1 --to docker\n  \
    rehost deploy web01.oci --ref registry.example:5000/fleet/web01:v1 --to kubernetes -o web01.yaml\n\n\
    The output runs the image as converted: its init mode's mounts, cgroup setting,\n\
    capabilities and stop signal; its ports published; a named volume (Kubernetes: a\n\
    PersistentVolumeClaim, filled from the image once) for each data directory of its plan;\n\
    probes from rehost-init's status, the ports and the plan's HTTP checks.")]
pub struct Args {
    /// The image: an OCI layout or archive (PATH[:TAG]), or a registry reference
    /// (REGISTRY/REPOSITORY:TAG), read without its layers.
    image: String,
    /// Where it will run: docker (a `docker run` line), podman (a `podman run` line),
    /// compose (a Compose file), kubernetes (a Deployment, Service and claims) or
    /// containerd (a `ctr run` line).
    #[arg(long, value_name = "TARGET")]
    to: Target,
    /// The reference the target pulls (default: IMAGE when it is a reference, else the
    /// name `convert --tag` gave it).
    #[arg(long = "ref", value_name = "REF")]
    reference: Option<String>,
    /// The cgroup version of the hosts it will run on: v1 (also hybrid) or v2 (default:
    /// this machine's).
    #[arg(long, value_name = "VERSION")]
    cgroup: Option<CgroupVersion>,
    /// Write to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print what was decided, and the output, as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let (config, named) = read_config(&args)?;
    let image = match args.reference.clone().or(named) {
        Some(r) => r,
        None => bail!(
            "{}: the image has no name to pull it by: give --ref REGISTRY/REPOSITORY:TAG \
             (where `rehost push` sent it)",
            args.image
        ),
    };
    let reference = oci::reference::parse(&image)
        .with_context(|| format!("--ref {image}: not an image reference"))?
        .whole();
    let cgroup = args.cgroup.unwrap_or_else(CgroupVersion::of_this_host);
    let deployment = Deployment::of(&config, &reference, cgroup);
    let text = deployment.render(args.to);
    let out = if args.json {
        let v = serde_json::json!({
            "target": args.to,
            "deployment": deployment,
            "output": text,
        });
        serde_json::to_string_pretty(&v)? + "\n"
    } else {
        text
    };
    match &args.output {
        Some(path) => write_file(path, &out)?,
        None => print!("{out}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The image's config, and the reference it is named by (a registry reference itself;
/// a layout's name from `convert --tag NAME:TAG`).
fn read_config(args: &Args) -> Result<(ImageConfig, Option<String>)> {
    let (path, tag) = split_image_arg(&args.image);
    if path.exists() || !is_registry_reference(&args.image) {
        let layout = Layout::open(&path)?;
        let chosen = layout.manifest(tag.as_deref())?;
        let config = layout.config(&chosen.manifest)?;
        let name = chosen
            .descriptor
            .annotations
            .get(ANNOTATION_CONTAINERD_IMAGE_NAME)
            .cloned();
        return Ok((config, name));
    }
    let (_, config) = registry::config(&args.image, &args.registry.connect_options()?)
        .with_context(|| format!("reading {}", args.image))?;
    Ok((config, Some(args.image.clone())))
}

/// Written whole or not at all.
fn write_file(path: &std::path::Path, text: &str) -> Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.rehost-tmp", name.to_string_lossy()));
    std::fs::write(&tmp, text).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))
}
