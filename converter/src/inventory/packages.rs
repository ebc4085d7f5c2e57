//! The package manager and how many packages it has installed, read from its database
//! files where their format is plain text (dpkg, apk, pacman); rpm's databases are
//! binary and only named.

use super::fs::Root;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Packages {
    /// dpkg, rpm, apk, pacman.
    pub manager: String,
    /// Installed packages, when the database can be read without running the manager.
    pub count: Option<u64>,
    pub database: String,
}

pub fn detect(root: &Root) -> Option<Packages> {
    if root.is_file("var/lib/dpkg/status") {
        let mut count = 0;
        let read = root.for_each_line("var/lib/dpkg/status", |line| {
            if let Some(status) = line.strip_prefix("Status:") {
                if status.split_whitespace().last() == Some("installed") {
                    count += 1;
                }
            }
        });
        return Some(Packages {
            manager: "dpkg".into(),
            count: read.then_some(count),
            database: "/var/lib/dpkg/status".into(),
        });
    }
    if root.is_file("lib/apk/db/installed") {
        let mut count = 0;
        let read = root.for_each_line("lib/apk/db/installed", |line| {
            if line.starts_with("P:") {
                count += 1;
            }
        });
        return Some(Packages {
            manager: "apk".into(),
            count: read.then_some(count),
            database: "/lib/apk/db/installed".into(),
        });
    }
    for db in [
        "var/lib/rpm/rpmdb.sqlite",
        "usr/lib/sysimage/rpm/rpmdb.sqlite",
        "var/lib/rpm/Packages",
        "var/lib/rpm/Packages.db",
    ] {
        if root.is_file(db) {
            return Some(Packages {
                manager: "rpm".into(),
                count: None,
                database: format!("/{db}"),
            });
        }
    }
    if root.is_dir("var/lib/pacman/local") {
        let count = root
            .list("var/lib/pacman/local")
            .iter()
            .filter(|n| n.as_slice() != b"ALPM_DB_VERSION")
            .count() as u64;
        return Some(Packages {
            manager: "pacman".into(),
            count: Some(count),
            database: "/var/lib/pacman/local".into(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::fs::testing::MemSource;
    use super::*;

    #[test]
    fn counts_installed_dpkg_packages_only() {
        let status = "Package: a\nStatus: install ok installed\n\nPackage: b\nStatus: deinstall ok config-files\n\nPackage: c\nStatus: install ok installed\n";
        let src = MemSource::new().file("var/lib/dpkg/status", status);
        let p = detect(&Root::new(&src)).unwrap();
        assert_eq!((p.manager.as_str(), p.count), ("dpkg", Some(2)));
    }
}
