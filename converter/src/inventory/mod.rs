//! The inventory: facts about a server, read from its [`Source`](crate::source::Source).
//! Facts only: what rehost will do about them is the [plan](crate::plan)'s business.
//!
//! Everything is read through [`fs::Root`], which resolves paths inside the source and
//! turns unreadable or nonsensical files into [`Finding`]s, so a bad file costs one
//! line of the report and never the report.

pub mod arch;
pub mod cron;
pub mod details;
pub mod fs;
pub mod identity;
pub mod md5_lanes;
pub mod os;
pub mod ownership;
pub mod packages;
pub mod ports;
pub mod rpmdb;
pub mod secrets;
pub mod services;
pub mod size;
pub mod users;
pub mod volumes;

pub use fs::Finding;
pub use rehost_init::model::{InitKind, InitSystem};
pub use services::{Origin, Service};

use crate::source::Source;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// What was inspected (a path and its kind).
    pub source: String,
    pub os: os::Os,
    /// The OCI architecture name, from the ELF header of a system binary.
    pub architecture: Option<String>,
    pub packages: Option<packages::Packages>,
    /// Which package owns each file, and what is not from a package (dpkg and apk;
    /// with the walk only).
    pub ownership: Option<ownership::Ownership>,
    pub init: InitSystem,
    /// The enabled services, by name.
    pub services: Vec<Service>,
    pub scheduled: Vec<cron::Job>,
    pub ports: Vec<ports::Port>,
    /// Whether the ports come from a running system's socket tables.
    pub ports_live: bool,
    /// Accounts with a login shell.
    pub users: Vec<users::User>,
    /// Directories that should become volumes.
    pub data_dirs: Vec<volumes::DataDir>,
    pub identity: Vec<identity::IdentityFile>,
    pub secrets: Vec<secrets::Secret>,
    /// `None` when the size walk was not asked for.
    pub size: Option<size::Size>,
    /// What could not be read or understood, and where.
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone)]
pub struct InspectOptions {
    /// Walk every entry's metadata for sizes, sparse files and keys outside the
    /// usual places (no content is read).
    pub walk: bool,
}

impl Default for InspectOptions {
    fn default() -> Self {
        InspectOptions { walk: true }
    }
}

/// Reads the facts of a server. Only a source that cannot be walked at all is an
/// error; anything else that goes wrong is a finding.
pub fn inspect(source: &dyn Source, options: &InspectOptions) -> Inventory {
    let root = fs::Root::new(source);
    let os = os::detect(&root);
    let architecture = arch::detect(source);
    if architecture.is_none() {
        root.finding(
            "/usr/bin/env",
            "no system binary with an ELF header: the architecture is unknown",
        );
    }
    let mut packages = packages::detect(&root);
    let init = InitSystem::detect(&root);
    let mut services = services::collect(&root, &init);
    details::fill(&root, &mut services);
    services::mark_started(&root, &init, &mut services);
    let scheduled = cron::collect(&root, &services);
    let ports_live = ports::is_live(&root);
    let ports = ports::collect(&root, &services);
    let users = users::collect(&root);
    let identity = identity::collect(&root);

    let db = if options.walk {
        ownership::PackageDb::read(&root)
    } else {
        None
    };
    let mut tally = db.as_ref().map(ownership::Tally::new);
    let facts = if options.walk {
        match size::walk(source, tally.as_mut()) {
            Ok(f) => Some(f),
            Err(e) => {
                root.finding(source.describe(), format!("size walk stopped: {e}"));
                None
            }
        }
    } else {
        None
    };
    // Without the walk, the usual places of keys are still looked at.
    let candidates = match &facts {
        Some(f) => f.key_candidates.clone(),
        None => usual_key_places(&root),
    };
    let secrets = secrets::collect(&root, &users::homes(&root), &candidates);
    let data_dirs = volumes::collect(&root, facts.as_ref());
    let ownership = tally.filter(|_| facts.is_some()).map(|t| t.finish(source));
    // rpm's count comes from its binary database, which only the ownership read parses.
    if let (Some(p), Some(o)) = (&mut packages, &ownership) {
        if p.count.is_none() && p.manager == o.manager {
            p.count = Some(o.packages as u64);
        }
    }

    Inventory {
        source: source.describe(),
        os,
        architecture,
        packages,
        ownership,
        init,
        services,
        scheduled,
        ports,
        ports_live,
        users,
        data_dirs,
        identity,
        secrets,
        size: facts.map(|f| f.size),
        findings: root.take_findings(),
    }
}

/// Key files in the places they usually are, for an inventory without the walk.
fn usual_key_places(root: &fs::Root) -> Vec<Vec<u8>> {
    let mut dirs: Vec<String> = vec![
        "etc/ssh".into(),
        "etc/ssl/private".into(),
        "etc/pki/tls/private".into(),
    ];
    for home in users::homes(root) {
        dirs.push(format!("{}/.ssh", home.trim_start_matches('/')));
    }
    let mut out = Vec::new();
    for dir in dirs {
        for name in root.list(&dir) {
            if secrets::may_hold_key(&name) {
                out.push([dir.as_bytes(), b"/", &name].concat());
            }
        }
    }
    out
}
