//! One model of a service, whatever defined it: systemd units are read as they are; SysV,
//! OpenRC and upstart definitions are translated into the same settings (a SysV script is a
//! forking service whose start command is `SCRIPT start`, an upstart `respawn` is
//! `Restart=always`, …) so the supervisor has one state machine.

use crate::config::{ServiceEntry, ServiceKind};
use crate::units::calendar::CalendarSpec;
use crate::units::systemd::{
    self, Condition, ExecCommand, ExecFlags, KillMode, RestartPolicy, Service, ServiceType,
};
use crate::units::timespan::TimeSpan;
use crate::units::{openrc, sysv, upstart, FileSystem, ParseError};
use std::collections::BTreeSet;
use std::time::Duration;

/// A timer: when to start which service.
#[derive(Debug, Clone)]
pub struct TimerDef {
    /// `OnCalendar=` events.
    pub calendar: Vec<CalendarSpec>,
    /// After the init started (`OnBootSec=`, `OnStartupSec=`, and `OnActiveSec=`, since the
    /// timer becomes active when the init starts).
    pub on_boot: Vec<Duration>,
    /// After the service last started (`OnUnitActiveSec=`).
    pub on_unit_active: Vec<Duration>,
    /// After the service last stopped (`OnUnitInactiveSec=`).
    pub on_unit_inactive: Vec<Duration>,
    /// The service it starts.
    pub unit: String,
    /// `Persistent=`: a calendar event missed while the container was down fires at start.
    pub persistent: bool,
}

/// Where a socket unit listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `ListenStream=[ADDR:]PORT`.
    Tcp(std::net::SocketAddr),
    /// `ListenDatagram=[ADDR:]PORT`.
    Udp(std::net::SocketAddr),
    /// `ListenStream=/path` (or `@abstract`).
    Unix(String),
}

/// A socket unit: where it listens and what it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketDef {
    /// Its listening sockets, in the order the service gets them.
    pub listen: Vec<Listen>,
    /// `Accept=yes`: one instance of a template per connection.
    pub accept: bool,
    /// The service it starts (`Service=`, or its own name; a template with `Accept=yes`).
    pub service: String,
    /// `SocketMode=` of file-system sockets.
    pub mode: u32,
    /// `MaxConnections=` (instances at once, with `Accept=yes`).
    pub max_connections: u32,
}

/// Parses one `ListenStream=`/`ListenDatagram=` value: `PORT`, `ADDR:PORT`, `[ADDR6]:PORT`,
/// `/path` or `@abstract`.
pub fn parse_listen(value: &str, datagram: bool) -> Option<Listen> {
    let v = value.trim();
    if v.starts_with('/') || v.starts_with('@') {
        return (!datagram).then(|| Listen::Unix(v.to_string()));
    }
    let addr: std::net::SocketAddr = if let Ok(port) = v.parse::<u16>() {
        std::net::SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), port)
    } else {
        v.parse().ok()?
    };
    Some(if datagram {
        Listen::Udp(addr)
    } else {
        Listen::Tcp(addr)
    })
}

/// A service (or timer) ready for the supervisor.
#[derive(Debug, Clone)]
pub struct ServiceDef {
    /// Its name as configured (`ssh.service`, `cron`).
    pub name: String,
    /// What defined it.
    pub kind: ServiceKind,
    /// Other names it answers to (aliases, LSB `Provides:`, OpenRC `provide`).
    pub provides: Vec<String>,
    /// One-line description.
    pub description: Option<String>,
    /// Start after these (names as written).
    pub after: Vec<String>,
    /// Start before these.
    pub before: Vec<String>,
    /// Hard requirements.
    pub requires: Vec<String>,
    /// Soft requirements.
    pub wants: Vec<String>,
    /// Stopped when these stop for any reason (`BindsTo=`; also in `requires`).
    pub binds_to: Vec<String>,
    /// Stopped and restarted with these (`PartOf=`).
    pub part_of: Vec<String>,
    /// The units its `.wants/` and `.requires/` links pull in (those of `.requires/` are
    /// in `requires` too).
    pub linked: Vec<String>,
    /// Not configured itself: started because this configured unit (or one it pulled in)
    /// wants or requires it.
    pub pulled_in_by: Option<String>,
    /// `Condition*=` / `Assert*=` checks.
    pub conditions: Vec<Condition>,
    /// Start attempts allowed within [`start_limit_interval`](Self::start_limit_interval).
    pub start_limit_burst: u32,
    /// The window of the restart budget.
    pub start_limit_interval: Duration,
    /// How to run it.
    pub service: Service,
    /// For timers: the schedule. Timers run nothing themselves.
    pub timer: Option<TimerDef>,
    /// For socket units: where to listen. They run nothing themselves either.
    pub socket: Option<SocketDef>,
    /// Settings present in the definition that the supervisor does not implement.
    pub unsupported: Vec<String>,
    /// From the configuration.
    pub critical: bool,
    /// From the configuration: its failure does not make the container degraded.
    pub optional: bool,
    /// Started at boot (false for services only a timer starts).
    pub autostart: bool,
}

/// The LSB facilities a container still has meaning for, and the services that provide them.
pub const FACILITIES: &[(&str, &[&str])] = &[
    (
        "$syslog",
        &[
            "rsyslog",
            "syslog-ng",
            "sysklogd",
            "syslogd",
            "busybox-syslogd",
            "inetutils-syslogd",
            "rsyslog.service",
            "syslog.service",
            "logger",
        ],
    ),
    (
        "$named",
        &["bind9", "named", "dnsmasq", "unbound", "nscd", "dns"],
    ),
    ("$time", &["ntp", "chrony", "openntpd", "ntpd"]),
    ("$portmap", &["rpcbind", "portmap"]),
    ("$mail-transport-agent", &["postfix", "exim4", "sendmail"]),
];

impl ServiceDef {
    /// A service with systemd's defaults and nothing to run, answering to its own name.
    pub fn new(name: &str, kind: ServiceKind) -> ServiceDef {
        ServiceDef {
            name: name.to_string(),
            kind,
            provides: vec![name.to_string()],
            description: None,
            after: vec![],
            before: vec![],
            requires: vec![],
            wants: vec![],
            binds_to: vec![],
            part_of: vec![],
            linked: vec![],
            pulled_in_by: None,
            conditions: vec![],
            start_limit_burst: 5,
            start_limit_interval: Duration::from_secs(10),
            service: Service {
                timeout_start: TimeSpan::Finite(Duration::from_secs(90)),
                timeout_stop: TimeSpan::Finite(Duration::from_secs(90)),
                kill_signal: "SIGTERM".into(),
                send_sigkill: true,
                restart_sec: Duration::from_millis(100),
                ..Service::default()
            },
            timer: None,
            socket: None,
            unsupported: vec![],
            critical: false,
            optional: false,
            autostart: true,
        }
    }
}

fn cmd(argv: Vec<String>) -> ExecCommand {
    ExecCommand {
        flags: ExecFlags::default(),
        path: argv[0].clone(),
        argv,
    }
}

/// Loads the definition of one configured service from the root.
pub fn load(fs: &dyn FileSystem, entry: &ServiceEntry) -> Result<ServiceDef, ParseError> {
    let mut def = match entry.kind {
        ServiceKind::Systemd => load_systemd(fs, &entry.name)?,
        ServiceKind::Sysv => load_sysv(fs, &entry.name)?,
        ServiceKind::Openrc => load_openrc(fs, &entry.name)?,
        ServiceKind::Upstart => load_upstart(fs, &entry.name)?,
    };
    def.critical = entry.critical;
    def.optional = entry.optional;
    Ok(def)
}

/// Adds the services the loaded ones pull in, transitively: those their `Wants=`,
/// `Requires=` and `BindsTo=` name and those their `.wants/` and `.requires/` links name
/// (generators' included), template instances too (`postfix@-.service` for the
/// `postfix.service` wrapper). Only services are pulled in: targets, sockets and other
/// unit kinds stay the image init's. Names matching `machine_only`, masked units and
/// units no file defines are left out quietly (a missing `Requires=` is reported by the
/// ordering); a unit that cannot be parsed is given back, for the log.
pub fn pull_in(
    fs: &dyn FileSystem,
    defs: &mut Vec<ServiceDef>,
    machine_only: &[String],
) -> Vec<ParseError> {
    let mut problems = Vec::new();
    let mut tried: BTreeSet<String> = BTreeSet::new();
    let mut i = 0;
    while i < defs.len() {
        if defs[i].kind != ServiceKind::Systemd {
            i += 1;
            continue;
        }
        let parent = defs[i].name.clone();
        let wanted: Vec<String> = defs[i]
            .wants
            .iter()
            .chain(&defs[i].requires)
            .chain(&defs[i].linked)
            .cloned()
            .collect();
        for w in wanted {
            let known = defs.iter().any(|d| d.name == w || d.provides.contains(&w));
            if !w.ends_with(".service")
                || known
                || crate::model::is_machine_only(&w, machine_only)
                || !tried.insert(w.clone())
            {
                continue;
            }
            let defined = match systemd::lookup(fs, &w, &load_options()) {
                Ok(systemd::Lookup::Found(_)) => true,
                Ok(_) => w
                    .strip_suffix(".service")
                    .is_some_and(|stem| fs.exists(&format!("/etc/init.d/{stem}"))),
                Err(e) => {
                    problems.push(e);
                    false
                }
            };
            if !defined {
                continue;
            }
            match load_systemd(fs, &w) {
                Ok(mut d) => {
                    d.pulled_in_by = Some(parent.clone());
                    defs.push(d);
                }
                Err(e) => problems.push(e),
            }
        }
        i += 1;
    }
    problems
}

fn load_options() -> systemd::LoadOptions {
    systemd::LoadOptions {
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string()),
        machine_id: None,
    }
}

fn load_systemd(fs: &dyn FileSystem, name: &str) -> Result<ServiceDef, ParseError> {
    let opts = load_options();
    let unit = match systemd::lookup(fs, name, &opts)? {
        systemd::Lookup::Found(u) => u,
        systemd::Lookup::Masked(p) => {
            return Err(ParseError::new(name, 0, format!("unit is masked ({p})")))
        }
        systemd::Lookup::NotFound => {
            // As systemd's sysv generator does: `foo.service` may be /etc/init.d/foo.
            if let Some(stem) = name.strip_suffix(".service") {
                if fs.exists(&format!("/etc/init.d/{stem}")) {
                    let mut def = load_sysv(fs, stem)?;
                    def.name = name.to_string();
                    return Ok(def);
                }
            }
            return Err(ParseError::new(name, 0, "no such unit on the search path"));
        }
    };
    let mut def = ServiceDef::new(name, ServiceKind::Systemd);
    let us = unit.unit_section();
    let install = unit.install();
    def.provides.extend(install.alias.iter().cloned());
    if unit.fragment_name != name && !unit.fragment_name.contains("@.") {
        def.provides.push(unit.fragment_name.clone());
    }
    def.description = us.description.clone();
    def.after = us.after.clone();
    def.before = us.before.clone();
    def.requires = us.requires.clone();
    def.requires.extend(us.requisite.iter().cloned());
    def.wants = us.wants.clone();
    def.binds_to = us.binds_to.clone();
    def.part_of = us.part_of.clone();
    for (unit, dep) in crate::model::systemd::dependency_links(fs, name) {
        if dep == crate::model::systemd::LinkDependency::Requires {
            def.requires.push(unit.clone());
        }
        def.linked.push(unit);
    }
    def.conditions = us.conditions.clone();
    if let Some(b) = us.start_limit_burst {
        def.start_limit_burst = b;
    }
    if let Some(i) = us.start_limit_interval {
        // `StartLimitIntervalSec=0` or infinity turns rate limiting off.
        def.start_limit_interval = i.finite().unwrap_or(Duration::ZERO);
    }
    def.unsupported = unit
        .unsupported_keys()
        .into_iter()
        .map(|(s, k)| format!("[{s}] {k}="))
        .collect();
    let unit_name = unit.unit_name();
    match unit_name.suffix.as_str() {
        "service" => {
            def.service = unit.service();
            for (k, v, at) in &def.service.invalid {
                def.unsupported.push(format!("{k}={v} (invalid, at {at})"));
            }
        }
        "timer" => {
            let t = unit.timer();
            let mut calendar = Vec::new();
            for c in &t.on_calendar {
                calendar.push(
                    CalendarSpec::parse(c)
                        .map_err(|e| ParseError::new(&unit.fragment_path, 0, e.to_string()))?,
                );
            }
            let mut on_boot = t.on_boot.clone();
            on_boot.extend(t.on_active.iter().copied());
            def.timer = Some(TimerDef {
                calendar,
                on_boot,
                on_unit_active: t.on_unit_active,
                on_unit_inactive: t.on_unit_inactive,
                persistent: t.persistent,
                unit: unit.timer_target(),
            });
        }
        "socket" => {
            let f = &unit.file;
            let mut listen = Vec::new();
            for (key, datagram) in [("ListenStream", false), ("ListenDatagram", true)] {
                for v in f.get_all("Socket", key) {
                    match parse_listen(v, datagram) {
                        Some(l) => listen.push(l),
                        None => def.unsupported.push(format!("{key}={v}")),
                    }
                }
            }
            if listen.is_empty() {
                return Err(ParseError::new(
                    name,
                    0,
                    "a socket unit with no ListenStream= or ListenDatagram= rehost-init can open",
                ));
            }
            let accept = f.get_bool("Socket", "Accept").unwrap_or(false);
            let stem = name.strip_suffix(".socket").unwrap_or(name);
            let service = match f.get("Socket", "Service") {
                Some(s) => s.to_string(),
                None if accept => format!("{stem}@.service"),
                None => format!("{stem}.service"),
            };
            def.socket = Some(SocketDef {
                listen,
                accept,
                service,
                mode: f
                    .get("Socket", "SocketMode")
                    .and_then(|m| u32::from_str_radix(m, 8).ok())
                    .unwrap_or(0o666),
                max_connections: f
                    .get("Socket", "MaxConnections")
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(64)
                    .min(1024),
            });
            // Keys rehost-init does not implement are named once, as for services.
            def.unsupported.retain(|k| {
                ![
                    "ListenStream",
                    "ListenDatagram",
                    "Accept",
                    "Service",
                    "SocketMode",
                    "MaxConnections",
                ]
                .iter()
                .any(|known| k == &format!("[Socket] {known}="))
            });
        }
        other => {
            return Err(ParseError::new(
                name,
                0,
                format!(".{other} units are not supported (only .service, .socket and .timer)"),
            ))
        }
    }
    Ok(def)
}

fn lsb_deps(def: &mut ServiceDef, lsb: &sysv::LsbHeader) {
    def.provides.extend(lsb.provides.iter().cloned());
    def.after.extend(lsb.required_start.iter().cloned());
    def.after.extend(lsb.should_start.iter().cloned());
    def.before.extend(lsb.start_before.iter().cloned());
    def.description = lsb.short_description.clone();
}

/// A SysV script runs as `SCRIPT start` / `SCRIPT stop`: a forking service that stays
/// active after its start command exits, whose daemon is found by its pid file or marker.
fn script_service(def: &mut ServiceDef, path: &str) {
    let s = &mut def.service;
    s.service_type = ServiceType::Forking;
    s.remain_after_exit = true;
    s.exec_start = vec![cmd(vec![path.to_string(), "start".into()])];
    s.exec_stop = vec![cmd(vec![path.to_string(), "stop".into()])];
    s.exec_reload = vec![cmd(vec![path.to_string(), "reload".into()])];
    s.timeout_start = TimeSpan::Finite(Duration::from_secs(300));
    s.timeout_stop = TimeSpan::Finite(Duration::from_secs(30));
}

fn load_sysv(fs: &dyn FileSystem, name: &str) -> Result<ServiceDef, ParseError> {
    let script = sysv::load(fs, name)?;
    let mut def = ServiceDef::new(name, ServiceKind::Sysv);
    if let Some(lsb) = &script.lsb {
        lsb_deps(&mut def, lsb);
    }
    script_service(&mut def, &script.path);
    Ok(def)
}

fn load_openrc(fs: &dyn FileSystem, name: &str) -> Result<ServiceDef, ParseError> {
    let s = openrc::load(fs, name)?;
    let mut def = ServiceDef::new(name, ServiceKind::Openrc);
    def.description = s.description.clone();
    def.provides.extend(s.depend.provide.iter().cloned());
    def.requires.extend(s.depend.need.iter().cloned());
    def.wants.extend(s.depend.want.iter().cloned());
    for list in [
        &s.depend.need,
        &s.depend.uses,
        &s.depend.want,
        &s.depend.after,
    ] {
        def.after.extend(list.iter().cloned());
    }
    def.before.extend(s.depend.before.iter().cloned());
    if !s.is_command_style() {
        script_service(&mut def, &s.path);
        return Ok(def);
    }
    let mut argv = vec![s.command.clone().unwrap_or_default()];
    argv.extend(s.command_args.iter().cloned());
    let svc = &mut def.service;
    svc.exec_start = vec![cmd(argv)];
    if s.command_background || s.supervisor.is_some() {
        svc.service_type = ServiceType::Simple;
        svc.exec_start[0]
            .argv
            .extend(s.command_args_foreground.iter().cloned());
    } else {
        svc.service_type = ServiceType::Forking;
        svc.pid_file = s.pidfile.clone();
    }
    if let Some(u) = &s.command_user {
        let (user, group) = match u.split_once(':') {
            Some((u, g)) => (u.to_string(), Some(g.to_string())),
            None => (u.clone(), None),
        };
        svc.user = Some(user);
        svc.group = group;
    }
    svc.working_directory = s.directory.clone().map(|d| (d, false));
    for f in [
        "start",
        "stop",
        "start_pre",
        "start_post",
        "stop_pre",
        "stop_post",
    ] {
        if s.functions.iter().any(|x| x == f) && f != "start" {
            // The hooks are shell functions of the script: run them through openrc-run.
            let c = cmd(vec![s.path.clone(), f.replace('_', "-")]);
            let mut c = c;
            c.flags.ignore_failure = f.ends_with("post");
            match f {
                "start_pre" => svc.exec_start_pre.push(c),
                "start_post" => svc.exec_start_post.push(c),
                "stop_pre" | "stop" => svc.exec_stop.push(c),
                _ => svc.exec_stop_post.push(c),
            }
        }
    }
    if s.functions.iter().any(|f| f == "reload") {
        svc.exec_reload = vec![cmd(vec![s.path.clone(), "reload".into()])];
    }
    Ok(def)
}

fn upstart_command(p: &upstart::Process) -> ExecCommand {
    match p {
        upstart::Process::Exec(line) => {
            let meta = line.contains(|c| "|&;<>()$`\\\"'*?[#~=%".contains(c));
            match (meta, systemd::split_words(line)) {
                (false, Some(words)) if !words.is_empty() => cmd(words),
                _ => cmd(vec![
                    "/bin/sh".into(),
                    "-e".into(),
                    "-c".into(),
                    format!("exec {line}"),
                ]),
            }
        }
        upstart::Process::Script(body) => cmd(vec![
            "/bin/sh".into(),
            "-e".into(),
            "-c".into(),
            body.clone(),
        ]),
    }
}

fn load_upstart(fs: &dyn FileSystem, name: &str) -> Result<ServiceDef, ParseError> {
    let job = upstart::load(fs, name)?;
    let mut def = ServiceDef::new(name, ServiceKind::Upstart);
    def.description = job.description.clone();
    // `start on started X` / `starting X` orders after X.
    if let Some(cond) = &job.start_on {
        let words: Vec<&str> = cond
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
            .filter(|w| !w.is_empty())
            .collect();
        for w in words.windows(2) {
            if w[0] == "started" || w[0] == "starting" {
                def.after.push(w[1].to_string());
            }
        }
    }
    let svc = &mut def.service;
    svc.service_type = match (job.task, job.expect.as_deref()) {
        (true, _) => ServiceType::Oneshot,
        (false, Some("fork" | "daemon")) => ServiceType::Forking,
        _ => ServiceType::Simple,
    };
    if let Some(m) = &job.main {
        svc.exec_start = vec![upstart_command(m)];
    }
    let hooks = [
        (&job.pre_start, &mut svc.exec_start_pre),
        (&job.post_start, &mut svc.exec_start_post),
        (&job.pre_stop, &mut svc.exec_stop),
        (&job.post_stop, &mut svc.exec_stop_post),
    ];
    for (p, list) in hooks {
        if let Some(p) = p {
            list.push(upstart_command(p));
        }
    }
    if job.respawn {
        svc.restart = RestartPolicy::Always;
        let (count, secs) = job.respawn_limit.unwrap_or((10, 5));
        def.start_limit_burst = count;
        def.start_limit_interval = Duration::from_secs(secs.into());
    }
    svc.environment = job.env.clone();
    svc.user = job.setuid.clone();
    svc.group = job.setgid.clone();
    svc.working_directory = job.chdir.clone().map(|d| (d, false));
    svc.umask = job.umask;
    if let Some(s) = &job.kill_signal {
        svc.kill_signal = s.clone();
    }
    if let Some(t) = job.kill_timeout {
        svc.timeout_stop = TimeSpan::Finite(Duration::from_secs(t.into()));
    }
    svc.success_exit_status = job
        .normal_exit
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    svc.kill_mode = KillMode::ControlGroup;
    def.unsupported = job
        .other
        .iter()
        .map(|(s, _)| format!("stanza {s}"))
        .collect();
    Ok(def)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::units::tests_support::root_with;

    fn entry(name: &str, kind: ServiceKind) -> ServiceEntry {
        ServiceEntry {
            name: name.into(),
            kind,
            critical: true,
            optional: false,
        }
    }

    #[test]
    fn translates_each_kind() {
        let (_d, root) = root_with(&[
            ("/etc/init.d/ssh", "#!/bin/sh\n### BEGIN INIT INFO\n# Provides: sshd\n# Required-Start: $remote_fs $syslog\n### END INIT INFO\n"),
            ("/etc/init.d/web", "#!/sbin/openrc-run\ncommand=/usr/bin/web\ncommand_args=\"-p 80\"\npidfile=/run/web.pid\ndepend() {\n need net\n}\n"),
            ("/etc/init/job.conf", "start on started ssh\nrespawn\nrespawn limit 3 60\nexec /usr/bin/job --x\n"),
            ("/lib/systemd/system/t.timer", "[Timer]\nOnCalendar=daily\nOnBootSec=5min\n"),
            ("/lib/systemd/system/bad.socket", "[Socket]\nListenStream=22\n"),
        ]);
        let s = load(&root, &entry("ssh", ServiceKind::Sysv)).unwrap();
        assert_eq!(s.provides, ["ssh", "sshd"]);
        assert_eq!(s.after, ["$remote_fs", "$syslog"]);
        assert_eq!(s.service.exec_start[0].argv, ["/etc/init.d/ssh", "start"]);
        assert!(s.critical);
        let w = load(&root, &entry("web", ServiceKind::Openrc)).unwrap();
        assert_eq!(w.service.service_type, ServiceType::Forking);
        assert_eq!(w.service.exec_start[0].argv, ["/usr/bin/web", "-p", "80"]);
        assert_eq!(w.requires, ["net"]);
        let j = load(&root, &entry("job", ServiceKind::Upstart)).unwrap();
        assert_eq!(j.after, ["ssh"]);
        assert_eq!(j.service.restart, RestartPolicy::Always);
        assert_eq!(
            (j.start_limit_burst, j.start_limit_interval),
            (3, Duration::from_secs(60))
        );
        assert_eq!(j.service.exec_start[0].argv, ["/usr/bin/job", "--x"]);
        let t = load(&root, &entry("t.timer", ServiceKind::Systemd)).unwrap();
        let td = t.timer.unwrap();
        assert_eq!(td.unit, "t.service");
        assert_eq!(td.on_boot, [Duration::from_secs(300)]);
        let sock = load(&root, &entry("bad.socket", ServiceKind::Systemd)).unwrap();
        let sd = sock.socket.unwrap();
        assert_eq!(sd.service, "bad.service");
        assert_eq!(sd.listen, [parse_listen("22", false).unwrap()]);
        assert!(load(&root, &entry("t.target", ServiceKind::Systemd)).is_err());
        assert!(load(&root, &entry("none.service", ServiceKind::Systemd)).is_err());
        // systemd's view of a SysV script.
        let g = load(&root, &entry("ssh.service", ServiceKind::Systemd)).unwrap();
        assert_eq!(
            (g.name.as_str(), g.kind),
            ("ssh.service", ServiceKind::Sysv)
        );
        assert_eq!(g.service.exec_start[0].argv, ["/etc/init.d/ssh", "start"]);
    }

    #[test]
    fn pulls_in_wanted_units_and_template_instances() {
        let (d, root) = root_with(&[
            (
                "/lib/systemd/system/postfix.service",
                "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n",
            ),
            (
                "/lib/systemd/system/postfix@.service",
                "[Unit]\nPartOf=postfix.service\nBefore=postfix.service\nWants=network-online.target\n\
                 [Service]\nType=forking\nExecStart=/usr/sbin/postmulti -i %i -p start\n",
            ),
            (
                "/lib/systemd/system/app.service",
                "[Unit]\nWants=helper.service gone.service getty@tty1.service masked.service\n\
                 BindsTo=db.service\n[Service]\nExecStart=/app\n",
            ),
            (
                "/lib/systemd/system/helper.service",
                "[Service]\nExecStart=/helper\n",
            ),
            ("/lib/systemd/system/db.service", "[Service]\nExecStart=/db\n"),
            ("/lib/systemd/system/getty@.service", "[Service]\nExecStart=/getty\n"),
            ("/etc/systemd/system/masked.service", ""),
        ]);
        // What postfix's generator writes at boot.
        let wants = d
            .as_path()
            .join("run/systemd/generator/postfix.service.wants");
        std::fs::create_dir_all(&wants).unwrap();
        std::os::unix::fs::symlink(
            "/lib/systemd/system/postfix@.service",
            wants.join("postfix@-.service"),
        )
        .unwrap();
        let mut defs = vec![
            load(&root, &entry("postfix.service", ServiceKind::Systemd)).unwrap(),
            load(&root, &entry("app.service", ServiceKind::Systemd)).unwrap(),
        ];
        let problems = pull_in(&root, &mut defs, &["getty*".to_string()]);
        assert!(problems.is_empty(), "{problems:?}");
        let names: Vec<(&str, Option<&str>)> = defs
            .iter()
            .map(|d| (d.name.as_str(), d.pulled_in_by.as_deref()))
            .collect();
        assert_eq!(
            names,
            [
                ("postfix.service", None),
                ("app.service", None),
                ("postfix@-.service", Some("postfix.service")),
                ("helper.service", Some("app.service")),
                ("db.service", Some("app.service")),
            ]
        );
        let instance = &defs[2];
        assert_eq!(
            instance.service.exec_start[0].argv,
            ["/usr/sbin/postmulti", "-i", "-", "-p", "start"]
        );
        assert_eq!(instance.part_of, ["postfix.service"]);
        assert!(!instance.critical);
        assert_eq!(defs[1].binds_to, ["db.service"]);
        assert_eq!(defs[0].linked, ["postfix@-.service"]);
    }
}
