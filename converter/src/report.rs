//! The inspect report: what inspect finds and decides about one source, and how the
//! user reads it (text or JSON). It is here, not in the command line, because for an
//! `ssh://` source the helper makes it on the server, where the live socket table is.

use crate::inventory::{self, InspectOptions, Inventory};
use crate::plan::{Action, Plan};
use crate::profile::Profile;
use crate::Result;
use serde::Serialize;
use std::io::Write;

/// What inspect finds and decides about one source.
pub struct Examined {
    pub inventory: Inventory,
    pub plan: Plan,
    /// Bytes of content the image will hold after the plan's excludes (with the walk).
    pub image_bytes: Option<u64>,
}

#[derive(Serialize)]
struct Report<'a> {
    inventory: &'a Inventory,
    plan: &'a Plan,
    /// Bytes of content the image will hold after the plan's excludes (without --no-walk).
    image_bytes: Option<u64>,
}

/// The inventory, the plan (from `profiles`, or from `base` and the distribution
/// family's own when none) and, with the walk, the image's size.
pub fn examine(
    source: &dyn crate::source::Source,
    profiles: &[Profile],
    walk: bool,
) -> Result<Examined> {
    let inventory = inventory::inspect(source, &InspectOptions { walk });
    let profiles = Profile::or_family(profiles.to_vec(), &inventory.os.family)?;
    let plan = Plan::decide(&inventory, &profiles);
    let image_bytes = if walk {
        Some(plan.image_bytes(source)?)
    } else {
        None
    };
    Ok(Examined {
        inventory,
        plan,
        image_bytes,
    })
}

/// The report as the user reads it: text, or JSON.
pub fn render(examined: &Examined, json: bool) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    if json {
        let report = Report {
            inventory: &examined.inventory,
            plan: &examined.plan,
            image_bytes: examined.image_bytes,
        };
        serde_json::to_writer_pretty(&mut out, &report)?;
        out.push(b'\n');
    } else {
        print_report(
            &mut out,
            &examined.inventory,
            &examined.plan,
            examined.image_bytes,
        )?;
    }
    Ok(out)
}

/// A size as people read it: `512 B`, `3.2 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn print_report(
    out: &mut dyn Write,
    inv: &Inventory,
    plan: &Plan,
    image_bytes: Option<u64>,
) -> std::io::Result<()> {
    writeln!(out, "source      {}", inv.source)?;
    writeln!(
        out,
        "system      {} ({}), {}",
        inv.os.pretty_name,
        inv.os.family,
        inv.architecture
            .as_deref()
            .unwrap_or("architecture unknown")
    )?;
    if let Some(p) = &inv.packages {
        match p.count {
            Some(n) => writeln!(out, "packages    {n} ({})", p.manager)?,
            None => writeln!(
                out,
                "packages    {} (database {} not read)",
                p.manager, p.database
            )?,
        }
    }
    if let Some(o) = &inv.ownership {
        writeln!(
            out,
            "not from a package  {} files, {} ({} files owned by {} packages)",
            o.unowned.files,
            bytes(o.unowned.bytes),
            o.owned_files,
            o.packages
        )?;
        for d in o.unowned.largest_directories.iter().take(5) {
            writeln!(out, "            {:>10}  {}", bytes(d.bytes), d.path)?;
        }
        if o.changed_files > 0 {
            writeln!(
                out,
                "changed package files  {} (--json lists {}):",
                o.changed_files,
                o.changed.len()
            )?;
            for c in o.changed.iter().take(10) {
                let what = if c.conffile { "conffile" } else { "file" };
                writeln!(out, "            {} ({what} of {})", c.path, c.package)?;
            }
        }
    }
    writeln!(
        out,
        "init        {}{} — {}",
        inv.init.kind.name(),
        inv.init
            .default
            .as_deref()
            .map(|d| format!(", default {d}"))
            .unwrap_or_default(),
        inv.init.evidence
    )?;
    writeln!(
        out,
        "image init  {} — {}",
        plan.init.mode.plan_name(),
        plan.init.reason
    )?;

    writeln!(out, "\nservices ({} enabled)", inv.services.len())?;
    for decision in &plan.services {
        let service = inv.services.iter().find(|s| s.name == decision.name);
        let mark = match (decision.action, decision.review) {
            (_, true) => "?",
            (Action::Keep, _) => "+",
            (Action::Drop, _) => "-",
            (Action::Mask, _) => "x",
        };
        let marker = match (decision.critical, decision.optional) {
            (true, _) => " (critical)",
            (_, true) => " (optional)",
            _ => "",
        };
        writeln!(
            out,
            "  {mark} {:<28} {:<5} {}{marker}",
            decision.name,
            decision.action.name(),
            decision.reason
        )?;
        if let Some(s) = service {
            if let Some(d) = &s.description {
                writeln!(out, "      {d}")?;
            }
            let mut what = Vec::new();
            if let Some(c) = &s.command {
                what.push(c.clone());
            }
            if let Some(u) = &s.user {
                what.push(format!("user {u}"));
            }
            if let Some(t) = &s.service_type {
                what.push(format!("type {t}"));
            }
            if let Some(r) = &s.restart {
                what.push(format!("restart {r}"));
            }
            if !what.is_empty() {
                writeln!(out, "      {}", what.join(", "))?;
            }
            if s.started_by_default == Some(false) {
                writeln!(
                    out,
                    "      (enabled, but the default target does not start it)"
                )?;
            }
            for c in &s.failed_conditions {
                writeln!(out, "      condition fails: {c}")?;
            }
        }
    }

    if !inv.scheduled.is_empty() {
        writeln!(out, "\nscheduled ({})", inv.scheduled.len())?;
        for job in &inv.scheduled {
            writeln!(
                out,
                "  {:<14} {:<12} {:<8} {}",
                job.schedule,
                job.kind,
                job.user.as_deref().unwrap_or("-"),
                job.command
            )?;
        }
    }
    writeln!(
        out,
        "\nports ({})",
        if inv.ports_live {
            "listening now"
        } else {
            "from configuration"
        }
    )?;
    if inv.ports.is_empty() {
        writeln!(out, "  none found")?;
    }
    for p in &inv.ports {
        writeln!(
            out,
            "  {:<9} {:<16} {:<20} {}",
            format!("{}/{}", p.port, p.protocol),
            p.address.as_deref().unwrap_or("*"),
            p.service.as_deref().or(p.process.as_deref()).unwrap_or("-"),
            p.from
        )?;
    }
    writeln!(out, "\nusers with a login shell ({})", inv.users.len())?;
    for u in &inv.users {
        writeln!(
            out,
            "  {:<16} uid {:<6} {} {}",
            u.name, u.uid, u.home, u.shell
        )?;
    }
    if !inv.data_dirs.is_empty() {
        writeln!(out, "\ndata directories (volumes)")?;
        for d in &inv.data_dirs {
            writeln!(out, "  {:<28} {:>10}  {}", d.path, bytes(d.bytes), d.holds)?;
        }
    }
    writeln!(out, "\nhost identity ({} files)", inv.identity.len())?;
    for decision in &plan.identity {
        writeln!(
            out,
            "  {:<44} {:<10} {}",
            decision.path,
            decision.action.name(),
            decision.reason
        )?;
    }
    writeln!(
        out,
        "\nsecrets ({}, content never shown)",
        inv.secrets.len()
    )?;
    for s in &inv.secrets {
        writeln!(
            out,
            "  {:<44} {}{}",
            s.path,
            s.kind,
            s.detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        )?;
    }
    if let Some(size) = &inv.size {
        writeln!(
            out,
            "\nsize        {} in {} files, {} directories, {} symlinks",
            bytes(size.total_bytes),
            size.files,
            size.directories,
            size.symlinks
        )?;
        if size.apparent_bytes != size.total_bytes {
            writeln!(
                out,
                "            {} apparent ({} sparse files)",
                bytes(size.apparent_bytes),
                size.sparse_files.len()
            )?;
        }
        if let Some(kept) = image_bytes {
            writeln!(
                out,
                "            {} in the image, after the plan's excludes",
                bytes(kept)
            )?;
        }
        writeln!(out, "  largest files:")?;
        for f in size.largest_files.iter().take(5) {
            writeln!(out, "    {:>10}  {}", bytes(f.bytes), f.path)?;
        }
        writeln!(out, "  largest directories:")?;
        for d in size.largest_directories.iter().take(5) {
            writeln!(out, "    {:>10}  {}", bytes(d.bytes), d.path)?;
        }
    }
    writeln!(out, "\nplan")?;
    for rule in &plan.exclude {
        writeln!(
            out,
            "  exclude   {} ({})",
            rule.paths.join(" "),
            rule.reason
        )?;
    }
    for v in &plan.volume {
        writeln!(out, "  volume    {} ({})", v.path, v.reason)?;
    }
    for p in &plan.port {
        writeln!(out, "  expose    {}/{} ({})", p.port, p.protocol, p.reason)?;
    }
    for h in &plan.hook {
        writeln!(
            out,
            "  hook      {} {} ({})",
            h.when.name(),
            h.run,
            h.reason
        )?;
    }
    for c in &plan.check {
        writeln!(out, "  check     {} ({})", c.describe(), c.reason)?;
    }
    if !inv.findings.is_empty() {
        writeln!(out, "\nfindings ({})", inv.findings.len())?;
        for f in &inv.findings {
            writeln!(out, "  {}: {}", f.path, f.problem)?;
        }
    }
    Ok(())
}
