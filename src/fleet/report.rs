//! What a fleet run found, host by host, and what the hosts' images share: the table, the
//! JSON, the JUnit file and the state the next run resumes from.

use super::file::Host;
use crate::output;
use anyhow::{Context, Result};
use converter::source::remote::chunks::Received;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostResult {
    pub name: String,
    pub source: String,
    pub status: Status,
    /// false: done by an earlier run and kept, its source unchanged.
    #[serde(default)]
    pub ran: bool,
    /// prepare, inspect, convert, verify or push.
    pub failed_step: Option<String>,
    /// One line: the step's error, or the checks verify failed.
    pub reason: Option<String>,
    pub fingerprint: String,
    /// The init at pid 1 (rehost, systemd, sbin-init…).
    pub mode: Option<String>,
    /// The services kept in the image.
    pub services: Vec<String>,
    pub verify: Option<VerifySummary>,
    pub image: Option<ImageSummary>,
    pub pushed: Option<Pushed>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifySummary {
    pub passed: bool,
    pub checks: usize,
    /// "KIND NAME: DETAIL" of each failed check.
    pub failed: Vec<String>,
    pub seconds_to_ready: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageSummary {
    pub path: PathBuf,
    pub manifest_digest: String,
    /// Compressed layers, bottom first.
    pub layers: Vec<Layer>,
    /// A remote host's capture: what crossed the network, what a cut run's chunks
    /// saved, and whether the image was built as the tree arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<Received>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Layer {
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pushed {
    pub reference: String,
    pub manifest_digest: String,
    pub bytes_uploaded: u64,
    pub bytes_mounted: u64,
    pub bytes_skipped: u64,
    /// The SBOM attached as the image's referrer (`sbom = …` in the fleet file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom_digest: Option<String>,
}

impl HostResult {
    pub fn new(host: &Host) -> HostResult {
        HostResult {
            name: host.name.clone(),
            source: host.source.clone(),
            status: Status::Failed,
            ran: true,
            failed_step: None,
            reason: None,
            fingerprint: String::new(),
            mode: None,
            services: Vec::new(),
            verify: None,
            image: None,
            pushed: None,
            seconds: 0.0,
        }
    }
}

impl VerifySummary {
    /// From `rehost verify --json`'s report.
    pub fn from_report(report: &Value) -> VerifySummary {
        let checks = report["checks"].as_array().cloned().unwrap_or_default();
        let failed = checks
            .iter()
            .filter(|c| c["passed"].as_bool() != Some(true))
            .map(|c| {
                format!(
                    "{} {}: {}",
                    c["kind"].as_str().unwrap_or("check"),
                    c["name"].as_str().unwrap_or(""),
                    c["detail"].as_str().unwrap_or("")
                )
            })
            .collect();
        VerifySummary {
            passed: report["passed"].as_bool() == Some(true),
            checks: checks.len(),
            failed,
            seconds_to_ready: report["seconds_to_ready"].as_f64().unwrap_or(0.0),
        }
    }
}

impl ImageSummary {
    /// From `rehost convert --json`'s summary.
    pub fn from_convert(path: &Path, summary: &Value) -> ImageSummary {
        let layers = summary["layers"]
            .as_array()
            .map(|ls| {
                ls.iter()
                    .map(|l| Layer {
                        digest: l["digest"].as_str().unwrap_or_default().to_string(),
                        size: l["size"].as_u64().unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default();
        ImageSummary {
            path: path.to_path_buf(),
            manifest_digest: summary["manifest_digest"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            layers,
            received: serde_json::from_value(summary["received"].clone()).ok(),
        }
    }

    pub fn bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

impl Pushed {
    /// From `rehost push --json`'s summary.
    pub fn from_push(reference: String, summary: &Value) -> Pushed {
        let n = |k: &str| summary[k].as_u64().unwrap_or(0);
        Pushed {
            reference,
            manifest_digest: summary["manifest_digest"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            bytes_uploaded: n("bytes_uploaded"),
            bytes_mounted: n("bytes_mounted"),
            bytes_skipped: n("bytes_skipped"),
            sbom_digest: summary["sbom"]["digest"].as_str().map(str::to_string),
        }
    }
}

/// The state file: every host's last result, which the next run resumes from.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub hosts: BTreeMap<String, HostResult>,
}

/// Our own file, but a corrupt or huge one must not take the fleet down with a panic.
const MAX_STATE_BYTES: u64 = 64 << 20;

impl State {
    pub fn load(path: &Path) -> Result<State> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if !meta.is_file() || meta.len() > MAX_STATE_BYTES {
            anyhow::bail!(
                "{} is not a fleet state file (remove it, or pass --redo)",
                path.display()
            );
        }
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not a fleet state file (remove it, or pass --redo)",
                path.display()
            )
        })
    }

    /// Whole or not at all: a run cut while saving keeps the previous state.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomically(path, &serde_json::to_vec_pretty(self)?)
    }
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The whole fleet: each host, and what their images have in common.
#[derive(Debug, Serialize)]
pub struct Report {
    pub hosts: Vec<HostReport>,
    pub totals: Totals,
}

#[derive(Debug, Serialize)]
pub struct HostReport {
    #[serde(flatten)]
    pub result: HostResult,
    /// Compressed bytes of this image's layers that another host's image has too.
    pub shared_bytes: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub hosts: usize,
    pub ok: usize,
    pub failed: usize,
    /// Done by an earlier run and kept.
    pub kept: usize,
    /// Every image's layers, added up.
    pub image_bytes: u64,
    /// What a registry holding them all stores: each distinct layer once.
    pub stored_bytes: u64,
}

impl Report {
    pub fn new(results: Vec<HostResult>) -> Report {
        // How many images hold each layer.
        let mut holders: HashMap<&str, usize> = HashMap::new();
        let mut sizes: HashMap<&str, u64> = HashMap::new();
        for image in results.iter().filter_map(|r| r.image.as_ref()) {
            let mut seen = std::collections::HashSet::new();
            for l in &image.layers {
                if seen.insert(l.digest.as_str()) {
                    *holders.entry(&l.digest).or_default() += 1;
                    sizes.insert(&l.digest, l.size);
                }
            }
        }
        let mut totals = Totals {
            hosts: results.len(),
            stored_bytes: sizes.values().sum(),
            ..Totals::default()
        };
        let shared: Vec<u64> = results
            .iter()
            .map(|r| {
                r.image.as_ref().map_or(0, |i| {
                    i.layers
                        .iter()
                        .filter(|l| holders.get(l.digest.as_str()).copied().unwrap_or(0) > 1)
                        .map(|l| l.size)
                        .sum()
                })
            })
            .collect();
        for r in &results {
            match r.status {
                Status::Ok => totals.ok += 1,
                Status::Failed => totals.failed += 1,
            }
            if !r.ran {
                totals.kept += 1;
            }
            totals.image_bytes += r.image.as_ref().map_or(0, ImageSummary::bytes);
        }
        Report {
            hosts: results
                .into_iter()
                .zip(shared)
                .map(|(result, shared_bytes)| HostReport {
                    result,
                    shared_bytes,
                })
                .collect(),
            totals,
        }
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut rows = vec![[
            "HOST".to_string(),
            "RESULT".into(),
            "INIT".into(),
            "SERVICES".into(),
            "IMAGE".into(),
            "SHARED".into(),
            "WHY".into(),
        ]];
        for h in &self.hosts {
            let r = &h.result;
            let result = match (r.status, r.ran) {
                (Status::Ok, true) => "ok".to_string(),
                (Status::Ok, false) => "ok (kept)".to_string(),
                (Status::Failed, _) => {
                    format!("FAILED {}", r.failed_step.as_deref().unwrap_or(""))
                }
            };
            rows.push([
                r.name.clone(),
                result,
                r.mode.clone().unwrap_or_else(|| "-".into()),
                r.services.len().to_string(),
                r.image
                    .as_ref()
                    .map_or("-".into(), |i| output::bytes(i.bytes())),
                output::bytes(h.shared_bytes),
                r.reason.clone().unwrap_or_default(),
            ]);
        }
        let widths: Vec<usize> = (0..6)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c < 6 {
                    line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
                } else {
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        let t = &self.totals;
        out.push_str(&format!(
            "{} hosts: {} ok ({} kept from an earlier run), {} failed. Images {} in all; a registry holding them stores {}.\n",
            t.hosts,
            t.ok,
            t.kept,
            t.failed,
            output::bytes(t.image_bytes),
            output::bytes(t.stored_bytes)
        ));
        out
    }

    /// JUnit XML: one test case per host, failed with its step and reason.
    pub fn junit(&self) -> String {
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        x.push_str(&format!(
            "<testsuites>\n  <testsuite name=\"rehost fleet\" tests=\"{}\" failures=\"{}\" time=\"{:.1}\">\n",
            self.totals.hosts,
            self.totals.failed,
            self.hosts.iter().map(|h| h.result.seconds).sum::<f64>()
        ));
        for h in &self.hosts {
            let r = &h.result;
            x.push_str(&format!(
                "    <testcase classname=\"fleet\" name=\"{}\" time=\"{:.1}\"",
                xml(&r.name),
                r.seconds
            ));
            match r.status {
                Status::Ok if r.ran => x.push_str("/>\n"),
                Status::Ok => x.push_str(
                    ">\n      <system-out>done by an earlier run; its source is unchanged</system-out>\n    </testcase>\n",
                ),
                Status::Failed => x.push_str(&format!(
                    ">\n      <failure message=\"{}: {}\"/>\n    </testcase>\n",
                    xml(r.failed_step.as_deref().unwrap_or("")),
                    xml(r.reason.as_deref().unwrap_or(""))
                )),
            }
        }
        x.push_str("  </testsuite>\n</testsuites>\n");
        x
    }
}

/// Text for XML and HTML: what comes from a server may hold anything.
pub fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, layers: &[(&str, u64)], status: Status) -> HostResult {
        HostResult {
            name: name.into(),
            source: format!("/srv/{name}"),
            status,
            ran: true,
            failed_step: (status == Status::Failed).then(|| "verify".into()),
            reason: (status == Status::Failed).then(|| "http 8080/: <refused> & gone".into()),
            fingerprint: "f".into(),
            mode: Some("rehost".into()),
            services: vec!["nginx".into()],
            verify: None,
            image: Some(ImageSummary {
                path: PathBuf::from("/x"),
                manifest_digest: "sha256:m".into(),
                layers: layers
                    .iter()
                    .map(|(d, s)| Layer {
                        digest: d.to_string(),
                        size: *s,
                    })
                    .collect(),
                received: None,
            }),
            pushed: None,
            seconds: 1.0,
        }
    }

    #[test]
    fn shared_bytes_are_the_layers_another_image_has() {
        let report = Report::new(vec![
            result("a", &[("base", 100), ("a-own", 10)], Status::Ok),
            result("b", &[("base", 100), ("b-own", 20)], Status::Ok),
            result("c", &[("c-own", 5)], Status::Failed),
        ]);
        let shared: Vec<u64> = report.hosts.iter().map(|h| h.shared_bytes).collect();
        assert_eq!(shared, [100, 100, 0]);
        assert_eq!(report.totals.image_bytes, 235);
        assert_eq!(report.totals.stored_bytes, 135);
        assert_eq!((report.totals.ok, report.totals.failed), (2, 1));
        let junit = report.junit();
        assert!(junit.contains("failures=\"1\""));
        assert!(junit.contains("verify: http 8080/: &lt;refused&gt; &amp; gone"));
        assert!(report.table().contains("FAILED verify"));
    }
}
