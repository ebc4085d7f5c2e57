//! `rehost deploy`: what runs an image on another engine (Docker, Podman, Compose,
//! Kubernetes), decided from the image's own configuration: its init mode, exposed ports,
//! volumes, stop signal, health check and labels. The renderers in the submodules only
//! write a [`Deployment`] in each target's syntax.
//!
//! What a mode needs from an engine is the same [`ModeProfile`] the bundled runtime uses,
//! minus what every engine gives by default.

mod compose;
mod containerd;
mod docker;
mod kubernetes;
mod yaml;

pub use docker::shell_line;
pub use yaml::to_yaml;

use crate::modes::{ImageInit, ModeProfile, ModeProfiles};
use oci::contract::{
    parse_http_checks, parse_port_services, InitMode, HTTP_CHECKS_LABEL, PORT_SERVICES_LABEL,
    SYSTEMD_MOUNTS_ANNOTATION,
};
use oci::image::ImageConfig;

/// Where the image is to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    Docker,
    Podman,
    Compose,
    Kubernetes,
    /// containerd's `ctr`.
    Containerd,
}

/// A name that is not a [`Target`].
#[derive(Debug, thiserror::Error)]
#[error("unknown target `{0}` (docker, podman, compose, kubernetes, containerd)")]
pub struct UnknownTarget(pub String);

impl std::str::FromStr for Target {
    type Err = UnknownTarget;
    fn from_str(s: &str) -> Result<Self, UnknownTarget> {
        Ok(match s {
            "docker" => Target::Docker,
            "podman" => Target::Podman,
            "compose" | "docker-compose" => Target::Compose,
            "kubernetes" | "k8s" => Target::Kubernetes,
            "containerd" | "ctr" => Target::Containerd,
            _ => return Err(UnknownTarget(s.to_string())),
        })
    }
}

/// `CGROUP2_SUPER_MAGIC` of statfs(2).
const CGROUP2_MAGIC: i64 = 0x6367_7270;

/// The cgroup version of the hosts the image will run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CgroupVersion {
    #[serde(rename = "v1")]
    V1,
    #[serde(rename = "v2")]
    V2,
}

impl CgroupVersion {
    /// This machine's: v2 when /sys/fs/cgroup is a cgroup2 mount (v1 and hybrid hosts
    /// have a tmpfs there).
    pub fn of_this_host() -> CgroupVersion {
        match rustix::fs::statfs("/sys/fs/cgroup") {
            Ok(fs) if fs.f_type == CGROUP2_MAGIC => CgroupVersion::V2,
            _ => CgroupVersion::V1,
        }
    }
}

impl std::str::FromStr for CgroupVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "1" | "v1" => Ok(CgroupVersion::V1),
            "2" | "v2" => Ok(CgroupVersion::V2),
            _ => Err(format!("unknown cgroup version `{s}` (v1, v2)")),
        }
    }
}

/// How the container sees the cgroup tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CgroupSetting {
    /// The engine's default.
    Default,
    /// v1: the host's tree bound read-only, which systemd needs to see. (Docker before
    /// 25 binds it non-recursively, so systemd still makes `init.scope` and slices under
    /// the container's own cgroups; Docker removes them with the container.)
    HostReadOnly,
    /// v2: a cgroup namespace of the container's own, which the image's rehost-init
    /// makes writable (CAP_SYS_ADMIN) before systemd starts; the engine removes it with
    /// the container.
    PrivateNamespace,
}

/// A port the image serves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Port {
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// The service the plan expects on it.
    pub service: Option<String>,
}

/// A check of the container from outside, for the engines that run one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Probe {
    /// A command inside the container that exits 0.
    Exec { command: Vec<String> },
    /// The port accepts a TCP connection.
    Tcp { port: u16 },
    /// An HTTP GET answers 2xx or 3xx.
    Http { port: u16, path: String },
}

/// Everything the renderers write, decided once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Deployment {
    /// The container's (and Kubernetes objects') name: DNS-1123, from the image's name.
    pub name: String,
    /// The reference the engine pulls.
    pub image: String,
    /// The server's host name, which its services may expect.
    pub hostname: Option<String>,
    pub mode: InitMode,
    pub cgroup_version: CgroupVersion,
    pub cgroup: CgroupSetting,
    pub ports: Vec<Port>,
    /// The plan's data directories: a volume each, so the data outlives the container.
    pub volumes: Vec<String>,
    /// Fresh tmpfs mounts the init expects (/run, /run/lock).
    pub tmpfs: Vec<String>,
    /// Capabilities beyond every engine's default set.
    pub cap_add: Vec<String>,
    /// The image's StopSignal (engines read it from the image; compose and Kubernetes
    /// are told again for older engines).
    pub stop_signal: Option<String>,
    /// Seconds the init gets to stop its services before SIGKILL.
    pub stop_timeout: u32,
    /// Whether the container is ready: every service the plan keeps is up.
    pub readiness: Option<Probe>,
    /// Whether the container still serves: the plan's HTTP check, else its first port.
    pub liveness: Option<Probe>,
    /// What the user must know about this target (printed as comments).
    pub notes: Vec<String>,
}

/// The capabilities Docker, containerd (and so Kubernetes) and Podman give every
/// container: a mode needs only what is beyond these.
const ENGINE_CAPABILITIES: [&str; 11] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Seconds an init gets to stop: Docker's default 10 s is short for a database that
/// flushes on shutdown.
const STOP_TIMEOUT: u32 = 30;

impl Deployment {
    /// What running `config`'s image as `image` (a reference the target pulls) needs on
    /// hosts with `cgroup_version`.
    pub fn of(config: &ImageConfig, image: &str, cgroup_version: CgroupVersion) -> Deployment {
        let run = &config.config;
        let init = ImageInit::of(run);
        let mode = InitMode::default_for(&init);
        let profile: Option<ModeProfile> = init.built_for.and_then(|m| m.profile(&init, &[]).ok());
        let services = run
            .labels
            .get(PORT_SERVICES_LABEL)
            .map(|l| parse_port_services(l))
            .unwrap_or_default();
        let ports: Vec<Port> = run
            .exposed_ports
            .keys()
            .filter_map(|p| {
                let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                let proto = proto.to_ascii_lowercase();
                if proto != "tcp" && proto != "udp" {
                    return None;
                }
                let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
                let service = services
                    .iter()
                    .find(|(p, pr, _)| *p == port && *pr == proto)
                    .map(|(_, _, s)| s.clone());
                Some(Port {
                    port,
                    protocol: proto,
                    service,
                })
            })
            .collect();
        let volumes = run
            .volumes
            .keys()
            .filter(|v| safe_path(v))
            .cloned()
            .collect();
        let mut notes = Vec::new();
        let (tmpfs, cgroup, mut cap_add) = match &profile {
            Some(p) => mode_needs(p, run, cgroup_version),
            None => (Vec::new(), CgroupSetting::Default, Vec::new()),
        };
        cap_add.retain(|c| !ENGINE_CAPABILITIES.contains(&c.as_str()));
        let http = run
            .labels
            .get(HTTP_CHECKS_LABEL)
            .map(|l| parse_http_checks(l))
            .unwrap_or_default();
        let first_tcp = ports.iter().find(|p| p.protocol == "tcp").map(|p| p.port);
        let liveness = match (http.first(), first_tcp) {
            (Some((port, path)), _) => Some(Probe::Http {
                port: *port,
                path: path.clone(),
            }),
            (None, Some(port)) => Some(Probe::Tcp { port }),
            _ => None,
        };
        let readiness = match mode {
            // rehost-init's status: 0 only when every kept service is up (the image's
            // own Docker health check runs the same command).
            InitMode::Rehost => Some(Probe::Exec {
                command: vec![init.init_path.clone(), "status".into()],
            }),
            InitMode::Systemd => Some(Probe::Exec {
                command: vec!["systemctl".into(), "is-system-running".into()],
            }),
            _ => first_tcp.map(|port| Probe::Tcp { port }),
        };
        if init.built_for.is_none() {
            notes.push(
                "the image has no rehost layer (no io.rehost.init.mode label): it runs its own \
                 command, with nothing added for an init"
                    .into(),
            );
        }
        Deployment {
            name: dns_name(run.labels.get(oci::contract::IMAGE_NAME_LABEL), image),
            image: image.to_string(),
            hostname: run
                .labels
                .get(oci::contract::SOURCE_HOST_LABEL)
                .filter(|h| safe_hostname(h))
                .map(|h| h.to_ascii_lowercase()),
            mode,
            cgroup_version,
            cgroup,
            ports,
            volumes,
            tmpfs,
            cap_add,
            stop_signal: run.stop_signal.clone().filter(|s| safe_word(s)),
            stop_timeout: STOP_TIMEOUT,
            readiness,
            liveness,
            notes,
        }
    }

    /// What the target runs, as text: a shell command line, a compose file, or
    /// Kubernetes manifests.
    pub fn render(&self, target: Target) -> String {
        let mut out = String::new();
        for note in self.notes_for(target) {
            out.push_str(&format!("# {note}\n"));
        }
        match target {
            Target::Docker | Target::Podman => {
                out.push_str(&shell_line(&docker::run_args(self, target)));
                out.push('\n');
            }
            Target::Containerd => {
                out.push_str(&shell_line(&containerd::run_args(self)));
                out.push('\n');
            }
            Target::Compose => out.push_str(&to_yaml(&compose::file(self))),
            Target::Kubernetes => {
                for (i, doc) in kubernetes::objects(self).iter().enumerate() {
                    if i > 0 {
                        out.push_str("---\n");
                    }
                    out.push_str(&to_yaml(doc));
                }
            }
        }
        out
    }
}

impl Deployment {
    /// What the user must know when running it on `target`.
    pub fn notes_for(&self, target: Target) -> Vec<String> {
        let mut notes = self.notes.clone();
        if target == Target::Containerd {
            notes.extend(containerd::notes(self));
        }
        let podman_systemd = target == Target::Podman && self.mode == InitMode::Systemd;
        if self.cgroup == CgroupSetting::PrivateNamespace && !podman_systemd {
            notes.push(
                "systemd needs a writable cgroup tree: on cgroup v2 the container has a cgroup \
                 namespace of its own, which the image's rehost-init makes writable (this \
                 takes CAP_SYS_ADMIN) before systemd starts; nothing above it is touched"
                    .into(),
            );
        }
        if self.mode == InitMode::SbinInit {
            notes.push(
                "sbin-init mode: SysV init halts with reboot(2), which takes CAP_SYS_BOOT; in a \
                 container the kernel then ends init as by SIGINT, so the engine reports \
                 exit 130 for a clean halt (137 would be a SIGKILL)"
                    .into(),
            );
        }
        notes
    }
}

/// The mounts, cgroup setting and capabilities `profile` needs on `cgroup_version`
/// hosts, from what the bundled runtime gives the same mode.
fn mode_needs(
    profile: &ModeProfile,
    run: &oci::image::RunConfig,
    cgroup_version: CgroupVersion,
) -> (Vec<String>, CgroupSetting, Vec<String>) {
    let mut tmpfs = Vec::new();
    if profile.run_tmpfs && profile.mode.boots_a_system() {
        tmpfs = vec!["/run".to_string(), "/run/lock".to_string()];
    }
    // The image's own list of what systemd expects (tmpfs entries only: the cgroup
    // entry is decided here per version).
    if let Some(label) = run.labels.get(SYSTEMD_MOUNTS_ANNOTATION) {
        for item in label.split(',') {
            if let Some(path) = item.strip_prefix("tmpfs:") {
                if safe_path(path) && !tmpfs.iter().any(|t| t == path) {
                    tmpfs.push(path.to_string());
                }
            }
        }
    }
    let mut caps: Vec<String> = profile
        .capabilities
        .iter()
        .map(|c| c.to_string().trim_start_matches("CAP_").to_string())
        .collect();
    let cgroup = if profile.cgroup_writable {
        match cgroup_version {
            CgroupVersion::V1 => CgroupSetting::HostReadOnly,
            CgroupVersion::V2 => {
                caps.push("SYS_ADMIN".into());
                CgroupSetting::PrivateNamespace
            }
        }
    } else {
        CgroupSetting::Default
    };
    (tmpfs, cgroup, caps)
}

/// An absolute path of plain characters: what goes into a command line or a manifest
/// from an image config that anyone may have written.
fn safe_path(p: &str) -> bool {
    p.starts_with('/')
        && p.len() <= 4096
        && !p.split('/').any(|c| c == "..")
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+@/".contains(&b))
}

/// A host name of DNS labels (the server's own, from the image's label).
fn safe_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn safe_word(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+')
}

/// A DNS-1123 label from the image's name (or the reference's repository): lowercase
/// letters, digits and `-`, at most 63, starting and ending with a letter or digit.
fn dns_name(label: Option<&String>, image: &str) -> String {
    let from_ref = || {
        let repo = image.split(['@']).next().unwrap_or(image);
        let last = repo.rsplit('/').next().unwrap_or(repo);
        last.split(':').next().unwrap_or(last).to_string()
    };
    let raw = label.cloned().unwrap_or_else(from_ref);
    let raw = raw.rsplit('/').next().unwrap_or(&raw).to_ascii_lowercase();
    let mut name: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name.truncate(63);
    let name = name.trim_matches('-').to_string();
    if name.is_empty() {
        "rehost".into()
    } else {
        name
    }
}

/// A volume's name: the container's name and the path, as a DNS-1123 label.
fn volume_name(container: &str, path: &str) -> String {
    let mut v = format!("{container}{}", path.replace(['/', '_', '.'], "-"));
    v = v.to_ascii_lowercase();
    v.retain(|c| c.is_ascii_alphanumeric() || c == '-');
    while v.contains("--") {
        v = v.replace("--", "-");
    }
    v.truncate(63);
    v.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests;
