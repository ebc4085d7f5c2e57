//! The fleet report as one self-contained HTML page: no script, no fetched style or font,
//! so it opens from a file, a CI artifact or a mail attachment alike.

use super::report::{xml, Report, Status};
use crate::output;

const STYLE: &str = "
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #1d2330; }
h1 { font-size: 1.5em; margin: 0 0 .2em; }
.totals { color: #4a5468; margin-bottom: 1.5em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .45em .7em; border-bottom: 1px solid #d8dde6; vertical-align: top; }
th { background: #eef1f6; }
td.num { text-align: right; white-space: nowrap; }
.ok { color: #17753a; font-weight: 600; }
.failed { color: #b42318; font-weight: 600; }
.why { color: #b42318; }
.kept { color: #4a5468; font-weight: normal; }
.received { color: #4a5468; font-size: .9em; white-space: normal; max-width: 15em; margin-left: auto; }
.services { font-family: ui-monospace, monospace; font-size: .9em; }
.bar { background: #e6e9ef; height: .7em; width: 8em; border-radius: .35em; overflow: hidden; }
.bar span { display: block; height: 100%; background: #3b6fd8; }
";

pub fn page(report: &Report, title: &str) -> String {
    let t = &report.totals;
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str(&format!(
        "<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        xml(title)
    ));
    h.push_str(&format!("<h1>{}</h1>\n", xml(title)));
    h.push_str(&format!(
        "<p class=\"totals\">{} hosts: {} ok ({} kept from an earlier run), {} failed. \
         Images {} in all; a registry holding them stores {}.</p>\n",
        t.hosts,
        t.ok,
        t.kept,
        t.failed,
        output::bytes(t.image_bytes),
        output::bytes(t.stored_bytes)
    ));
    h.push_str(
        "<table id=\"fleet\">\n<thead><tr><th>Host</th><th>Result</th><th>Init</th>\
         <th>Services</th><th>Verify</th><th>Image</th><th>Shared with the fleet</th>\
         <th>Registry</th></tr></thead>\n<tbody>\n",
    );
    for host in &report.hosts {
        let r = &host.result;
        let result = match (r.status, r.ran) {
            (Status::Ok, true) => "<span class=\"ok\">ok</span>".to_string(),
            (Status::Ok, false) => {
                "<span class=\"ok\">ok</span> <span class=\"kept\">(kept)</span>".to_string()
            }
            (Status::Failed, _) => format!(
                "<span class=\"failed\">failed: {}</span><div class=\"why\">{}</div>",
                xml(r.failed_step.as_deref().unwrap_or("")),
                xml(r.reason.as_deref().unwrap_or(""))
            ),
        };
        let verify = match &r.verify {
            None => "-".to_string(),
            Some(v) if v.passed => format!(
                "{} checks passed; ready in {:.1} s",
                v.checks, v.seconds_to_ready
            ),
            Some(v) => format!("{} of {} checks failed", v.failed.len(), v.checks),
        };
        let size = r.image.as_ref().map_or(0, |i| i.bytes());
        let share = if size == 0 {
            0.0
        } else {
            host.shared_bytes as f64 * 100.0 / size as f64
        };
        // A remote host's capture: what crossed the network, what a cut run had kept.
        let received = r
            .image
            .as_ref()
            .and_then(|i| i.received)
            .map_or(String::new(), |got| {
                let mut line = format!("received {} over ssh", output::bytes(got.bytes));
                if got.reused_bytes > 0 {
                    line += &format!(", {} reused", output::bytes(got.reused_bytes));
                }
                if got.built_while_arriving {
                    line += "; built as it arrived";
                }
                format!("<div class=\"received\">{}</div>", xml(&line))
            });
        h.push_str(&format!(
            "<tr><td>{name}<div class=\"kept\">{source}</div></td><td>{result}</td><td>{mode}</td>\
             <td class=\"services\">{services}</td><td>{verify}</td><td class=\"num\">{size}{received}</td>\
             <td><div class=\"bar\"><span style=\"width:{share:.0}%\"></span></div>{shared} ({share:.0}%)</td>\
             <td class=\"services\">{pushed}</td></tr>\n",
            name = xml(&r.name),
            source = xml(&r.source),
            mode = xml(r.mode.as_deref().unwrap_or("-")),
            services = r
                .services
                .iter()
                .map(|s| xml(s))
                .collect::<Vec<_>>()
                .join("<br>"),
            size = if size == 0 { "-".into() } else { output::bytes(size) },
            shared = output::bytes(host.shared_bytes),
            pushed = r.pushed.as_ref().map_or("-".into(), |p| xml(&p.reference)),
        ));
    }
    h.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    h
}
