//! index.json, manifests and configs come from a layout or a registry: the layout reader's
//! parsers (the index and the choice of an image in it, the manifest, the config) must end
//! in a value or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oci::image::Descriptor;
use oci::layout::{parse_config, parse_manifest, select};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.oci");
    let chosen = select(path, data, None);
    let _ = select(path, data, Some("v1"));
    let desc = chosen.unwrap_or(Descriptor {
        media_type: String::new(),
        digest: "sha256:00".into(),
        size: data.len() as u64,
        annotations: Default::default(),
        platform: None,
    });
    if let Ok(manifest) = parse_manifest(path, &desc, data) {
        let _ = manifest.layers.len();
    }
    let _ = parse_config(path, &desc, data);
});
