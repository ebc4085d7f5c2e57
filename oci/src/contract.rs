//! The image contract: what the builder writes into an image and the runtime reads back.
//! Both sides name these constants, never the strings, so they cannot drift apart.

use serde::{Deserialize, Serialize};

/// Where `rehost convert` installs rehost-init inside an image, and where the runtime
/// starts it.
pub const INIT_PATH: &str = "/usr/sbin/rehost-init";

/// Label: the init mode the image was converted for ([`InitMode::as_str`]).
pub const MODE_LABEL: &str = "io.rehost.init.mode";
/// Label: the image's own inits that run the poststop hooks (`systemd`, `sysv`,
/// `openrc`, comma-separated).
pub const HOOKS_LABEL: &str = "io.rehost.init.hooks";
/// Label: the services rehost-init is configured to keep, comma-separated.
pub const SERVICES_LABEL: &str = "io.rehost.init.services";
/// Label: the kind of source the image was converted from (`directory`, `live-root`,
/// `archive`, `disk-image`, `ssh`).
pub const SOURCE_LABEL: &str = "io.rehost.source";
/// Label: the host name of the server the image was converted from.
pub const SOURCE_HOST_LABEL: &str = "io.rehost.source.host";
/// Label: when the server was captured (RFC 3339).
pub const CAPTURED_LABEL: &str = "io.rehost.captured";
/// Label: the digest of the plan the image was built from.
pub const PLAN_DIGEST_LABEL: &str = "io.rehost.plan.digest";
/// Label: the image's name as given to `convert`.
pub const IMAGE_NAME_LABEL: &str = "io.rehost.image.name";
/// Label: the rehost version that built the image.
pub const VERSION_LABEL: &str = "io.rehost.version";
/// Label: the service the plan expects on each exposed port, as `PORT/PROTO=SERVICE`
/// pairs, comma-separated ([`port_services_label`], [`parse_port_services`]), so that
/// verify names the service whose port does not listen.
pub const PORT_SERVICES_LABEL: &str = "io.rehost.port.services";
/// Label: the plan's HTTP checks, as `PORT/PATH` items, comma-separated
/// ([`http_checks_label`], [`parse_http_checks`]): probes for `rehost deploy`.
pub const HTTP_CHECKS_LABEL: &str = "io.rehost.checks.http";
/// Layer annotation (in the manifest): what a layer holds, `packages`, `server` or
/// `rehost`, on images layered by package (an image of one layer has none).
pub const LAYER_ANNOTATION: &str = "io.rehost.layer";
/// Label and manifest annotation: the mounts systemd expects in a systemd-mode container.
pub const SYSTEMD_MOUNTS_ANNOTATION: &str = "io.rehost.systemd.mounts";

/// What runs as pid 1 in a container of the image: decided by the plan, recorded in
/// the image ([`MODE_LABEL`]), chosen again with `rehost run --init`.
///
/// Names: [`InitMode::as_str`] is the name of flags, labels, the runtime's state and
/// reports (`rehost`, `sbin-init`), and of serde. Plans spell rehost-init's mode
/// `rehost-init` ([`serialize_plan_name`]); every reader also takes that, and the init
/// family names `sysv` and `openrc` for `sbin-init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitMode {
    /// The image's own systemd (`/sbin/init`) as pid 1.
    Systemd,
    /// rehost-init supervising the kept services from their own definitions.
    #[serde(alias = "rehost-init")]
    Rehost,
    /// The image's own `/sbin/init` (SysV init or OpenRC) as pid 1, hooks run by
    /// rehost-init around it.
    #[serde(alias = "sysv", alias = "openrc")]
    SbinInit,
    /// rehost-init as a minimal reaper around the image's one command.
    DumbInit,
    /// The image's entrypoint and command as pid 1, like any OCI runtime: no rehost
    /// layer in the image.
    None,
}

impl InitMode {
    /// The name in flags and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            InitMode::Systemd => "systemd",
            InitMode::Rehost => "rehost",
            InitMode::SbinInit => "sbin-init",
            InitMode::DumbInit => "dumb-init",
            InitMode::None => "none",
        }
    }

    /// The name as a plan writes it.
    pub fn plan_name(self) -> &'static str {
        match self {
            InitMode::Rehost => "rehost-init",
            other => other.as_str(),
        }
    }

    /// pid 1 boots a whole system (not one command): its terminal is a console to
    /// watch, and Ctrl-C on it stops the container rather than reaching a program.
    pub fn boots_a_system(self) -> bool {
        matches!(
            self,
            InitMode::Systemd | InitMode::Rehost | InitMode::SbinInit
        )
    }
}

/// Writes a mode as a plan spells it ([`InitMode::plan_name`]), for
/// `#[serde(serialize_with)]` on a plan's field.
pub fn serialize_plan_name<S: serde::Serializer>(mode: &InitMode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(mode.plan_name())
}

/// The [`PORT_SERVICES_LABEL`] value for `(port, protocol, service)` triples.
pub fn port_services_label<'a>(ports: impl IntoIterator<Item = (u16, &'a str, &'a str)>) -> String {
    ports
        .into_iter()
        .map(|(port, proto, service)| format!("{port}/{proto}={service}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads a [`PORT_SERVICES_LABEL`] value: `(port, protocol, service)` triples; malformed
/// pairs (the label is the image's, anyone may have written it) are skipped.
pub fn parse_port_services(label: &str) -> Vec<(u16, String, String)> {
    label
        .split(',')
        .filter_map(|pair| {
            let (port, service) = pair.trim().split_once('=')?;
            let (port, proto) = port.split_once('/').unwrap_or((port, "tcp"));
            let service = service.trim();
            if service.is_empty() {
                return None;
            }
            Some((port.parse().ok()?, proto.to_string(), service.to_string()))
        })
        .collect()
}

/// The [`HTTP_CHECKS_LABEL`] value for `(port, path)` pairs; a comma in a path is
/// percent-encoded, as a URL may have it.
pub fn http_checks_label<'a>(checks: impl IntoIterator<Item = (u16, &'a str)>) -> String {
    checks
        .into_iter()
        .map(|(port, path)| format!("{port}{}", path.replace(',', "%2C")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads an [`HTTP_CHECKS_LABEL`] value: `(port, path)` pairs; malformed items, and paths
/// that are not plain printable ASCII starting with `/`, are skipped.
pub fn parse_http_checks(label: &str) -> Vec<(u16, String)> {
    label
        .split(',')
        .filter_map(|item| {
            let item = item.trim();
            let slash = item.find('/')?;
            let (port, path) = item.split_at(slash);
            let printable = path.bytes().all(|b| b.is_ascii_graphic());
            (printable && path.len() <= 1024)
                .then(|| Some((port.parse().ok()?, path.to_string())))?
        })
        .collect()
}

/// An init mode name that is none of [`InitMode`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown init mode `{0}` (systemd, rehost, sbin-init, dumb-init, none)")]
pub struct UnknownInitMode(pub String);

impl std::str::FromStr for InitMode {
    type Err = UnknownInitMode;
    fn from_str(s: &str) -> Result<Self, UnknownInitMode> {
        Ok(match s {
            "systemd" => InitMode::Systemd,
            "rehost" | "rehost-init" => InitMode::Rehost,
            "sbin-init" => InitMode::SbinInit,
            "dumb-init" => InitMode::DumbInit,
            "none" => InitMode::None,
            _ => return Err(UnknownInitMode(s.to_string())),
        })
    }
}

impl std::fmt::Display for InitMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::InitMode;

    #[test]
    fn every_mode_reads_back_from_its_names() {
        for m in [
            InitMode::Systemd,
            InitMode::Rehost,
            InitMode::SbinInit,
            InitMode::DumbInit,
            InitMode::None,
        ] {
            assert_eq!(m.as_str().parse::<InitMode>().unwrap(), m);
            assert_eq!(m.plan_name().parse::<InitMode>().unwrap(), m);
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{m}\""));
            assert_eq!(serde_json::from_str::<InitMode>(&json).unwrap(), m);
            let plan = format!("\"{}\"", m.plan_name());
            assert_eq!(serde_json::from_str::<InitMode>(&plan).unwrap(), m);
            let mut written = Vec::new();
            super::serialize_plan_name(&m, &mut serde_json::Serializer::new(&mut written)).unwrap();
            assert_eq!(String::from_utf8(written).unwrap(), plan);
        }
        let sysv: InitMode = serde_json::from_str("\"openrc\"").unwrap();
        assert_eq!(sysv, InitMode::SbinInit);
        assert!("upstart".parse::<InitMode>().is_err());
    }

    #[test]
    fn port_services_read_back() {
        let label = super::port_services_label([(22, "tcp", "ssh"), (53, "udp", "bind9")]);
        assert_eq!(label, "22/tcp=ssh,53/udp=bind9");
        assert_eq!(
            super::parse_port_services(&label),
            [
                (22, "tcp".to_string(), "ssh".to_string()),
                (53, "udp".to_string(), "bind9".to_string())
            ]
        );
        assert_eq!(
            super::parse_port_services("x=y,,80=,99999/tcp=a,80=web"),
            [(80, "tcp".to_string(), "web".to_string())]
        );
    }

    #[test]
    fn http_checks_read_back() {
        let label = super::http_checks_label([(80, "/"), (8080, "/health,x")]);
        assert_eq!(label, "80/,8080/health%2Cx");
        assert_eq!(
            super::parse_http_checks(&label),
            [(80, "/".to_string()), (8080, "/health%2Cx".to_string())]
        );
        assert!(super::parse_http_checks("x/,80,99999/,80/a b,80/'").len() == 1);
    }

    #[test]
    fn plan_names_of_sbin_init_read_back() {
        let sysv: InitMode = serde_json::from_str("\"openrc\"").unwrap();
        assert_eq!(sysv, InitMode::SbinInit);
        assert!("upstart".parse::<InitMode>().is_err());
    }
}
