//! The distribution and its version, from the release files a distribution ships
//! (os-release first, then the older lsb-release and `*-release` files).

use super::fs::Root;
use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Os {
    /// `debian`, `centos`, `alpine`, `ubuntu`… (os-release's ID), `unknown` when no file tells.
    pub id: String,
    pub name: String,
    /// The version as the distribution writes it (`12`, `7.9.2009`, `3.19.1`, `14.04`).
    pub version: Option<String>,
    pub pretty_name: String,
    /// The family whose profile applies: debian, ubuntu, rhel, alpine, suse, arch, or
    /// the id itself.
    pub family: String,
    /// The file the facts came from.
    pub from: Option<String>,
}

pub fn detect(root: &Root) -> Os {
    for path in ["etc/os-release", "usr/lib/os-release"] {
        if let Some(text) = root.read_text(path) {
            let get = |key: &str| shell_value(&text, key);
            let id = get("ID").unwrap_or_else(|| "linux".into()).to_lowercase();
            let like = get("ID_LIKE").unwrap_or_default().to_lowercase();
            let name = get("NAME").unwrap_or_else(|| id.clone());
            let version = get("VERSION_ID");
            let pretty = get("PRETTY_NAME")
                .unwrap_or_else(|| format!("{name} {}", version.clone().unwrap_or_default()));
            return Os {
                family: family(&id, &like),
                id,
                name,
                version,
                pretty_name: pretty.trim().to_string(),
                from: Some(format!("/{path}")),
            };
        }
    }
    if let Some(text) = root.read_text("etc/lsb-release") {
        let id = shell_value(&text, "DISTRIB_ID").unwrap_or_default();
        if !id.is_empty() {
            let version = shell_value(&text, "DISTRIB_RELEASE");
            let pretty = shell_value(&text, "DISTRIB_DESCRIPTION")
                .unwrap_or_else(|| format!("{id} {}", version.clone().unwrap_or_default()));
            let lower = id.to_lowercase();
            return Os {
                family: family(&lower, ""),
                id: lower,
                name: id,
                version,
                pretty_name: pretty,
                from: Some("/etc/lsb-release".into()),
            };
        }
    }
    // One-line release files: "CentOS Linux release 7.9.2009 (Core)", "3.19.1", "12.5".
    const RELEASE_FILES: &[(&str, &str, &str)] = &[
        ("etc/centos-release", "centos", "CentOS"),
        ("etc/redhat-release", "rhel", "Red Hat Enterprise Linux"),
        ("etc/fedora-release", "fedora", "Fedora"),
        ("etc/SuSE-release", "suse", "SUSE"),
        ("etc/alpine-release", "alpine", "Alpine Linux"),
        ("etc/gentoo-release", "gentoo", "Gentoo"),
        ("etc/arch-release", "arch", "Arch Linux"),
        ("etc/debian_version", "debian", "Debian GNU/Linux"),
    ];
    for (path, id, name) in RELEASE_FILES {
        if let Some(text) = root.read_text(path) {
            let line = text.lines().next().unwrap_or("").trim().to_string();
            let version = line
                .split_whitespace()
                .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
                .map(|w| {
                    w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                        .to_string()
                });
            let pretty = if line.is_empty() || line.starts_with(|c: char| c.is_ascii_digit()) {
                format!("{name} {}", version.clone().unwrap_or_default())
            } else {
                line
            };
            return Os {
                id: id.to_string(),
                name: name.to_string(),
                version,
                pretty_name: pretty.trim().to_string(),
                family: family(id, ""),
                from: Some(format!("/{path}")),
            };
        }
    }
    root.finding(
        "/etc/os-release",
        "no os-release, lsb-release or other release file: the distribution is unknown",
    );
    Os {
        id: "unknown".into(),
        name: "unknown".into(),
        version: None,
        pretty_name: "unknown distribution".into(),
        family: "unknown".into(),
        from: None,
    }
}

/// The profile family of a distribution id (with os-release's ID_LIKE as a fallback).
pub fn family(id: &str, like: &str) -> String {
    let of = |word: &str| -> Option<&'static str> {
        Some(match word {
            "ubuntu" => "ubuntu",
            "debian" | "raspbian" | "devuan" => "debian",
            "rhel" | "centos" | "fedora" | "rocky" | "almalinux" | "ol" | "amzn" | "scientific"
            | "redhat" | "cloudlinux" => "rhel",
            "alpine" => "alpine",
            "suse" | "sles" | "opensuse" | "opensuse-leap" | "opensuse-tumbleweed" => "suse",
            "arch" | "manjaro" => "arch",
            _ => return None,
        })
    };
    if let Some(f) = of(id) {
        return f.into();
    }
    // ID_LIKE lists the closest first.
    like.split_whitespace()
        .find_map(of)
        .map(str::to_string)
        .unwrap_or_else(|| id.to_string())
}

/// `KEY=value` from a shell-style file, quotes removed.
pub fn shell_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.trim().split_once('=')?;
        (k.trim() == key).then(|| unquote(v.trim()))
    })
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].replace("\\\"", "\"");
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::super::fs::testing::MemSource;
    use super::*;

    #[test]
    fn centos_release_without_os_release() {
        let src = MemSource::new().file(
            "etc/redhat-release",
            "CentOS Linux release 7.9.2009 (Core)\n",
        );
        let os = detect(&Root::new(&src));
        assert_eq!(os.family, "rhel");
        assert_eq!(os.version.as_deref(), Some("7.9.2009"));
        assert_eq!(os.pretty_name, "CentOS Linux release 7.9.2009 (Core)");
    }

    #[test]
    fn missing_release_files_are_a_finding() {
        let src = MemSource::new().dir("etc");
        let root = Root::new(&src);
        let os = detect(&root);
        assert_eq!(os.id, "unknown");
        assert_eq!(root.take_findings().len(), 1);
    }

    #[test]
    fn id_like_gives_the_family() {
        assert_eq!(family("linuxmint", "ubuntu debian"), "ubuntu");
        assert_eq!(family("rocky", "rhel centos fedora"), "rhel");
        assert_eq!(family("nixos", ""), "nixos");
    }
}
