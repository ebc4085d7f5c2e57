//! `systemctl` against rehost-init: the verbs scripts and operators use, with systemctl's
//! output shapes and exit codes (LSB's for `status`: 0 running, 3 not running, 4 unknown;
//! `is-active` 0 when one is active, else 3; 5 when a job names a unit that does not exist).
//! Verbs that only edit unit files (`enable`, `mask`, …) run the image's own systemctl,
//! which does them without a running systemd.

use super::{ask, exec_real, journalctl, time};
use crate::control::{Answer, JobResult, Request, UnitInfo, Verb, Whom};
use crate::units::{systemd, HostRoot};

/// What the command line asked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Args {
    pub verb: String,
    pub units: Vec<String>,
    pub quiet: bool,
    pub no_block: bool,
    pub legend: bool,
    pub all: bool,
    pub value: bool,
    pub properties: Vec<String>,
    pub signal: Option<String>,
    pub whom: Option<String>,
    pub types: Vec<String>,
    pub states: Vec<String>,
    pub lines: Option<usize>,
    pub now: bool,
    pub user: bool,
}

/// Parses systemctl's command line (options may come anywhere).
pub fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        legend: true,
        ..Args::default()
    };
    let mut positional = Vec::new();
    let mut it = args.iter();
    let value_of = |flag: &str, inline: Option<&str>, it: &mut std::slice::Iter<String>| {
        inline
            .map(str::to_string)
            .or_else(|| it.next().cloned())
            .ok_or_else(|| format!("option '{flag}' requires an argument"))
    };
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v)),
            _ => (arg.as_str(), None),
        };
        match flag {
            "--no-pager" | "--no-ask-password" | "--system" | "-l" | "--full" | "--force"
            | "-f" | "--no-reload" | "--runtime" | "--show-types" => {}
            "--user" | "--global" => a.user = true,
            "-q" | "--quiet" => a.quiet = true,
            "--no-block" => a.no_block = true,
            "--no-legend" | "--plain" => a.legend = flag != "--no-legend" && a.legend,
            "-a" | "--all" => a.all = true,
            "--value" => a.value = true,
            "--now" => a.now = true,
            "-p" | "--property" => {
                let v = value_of(flag, inline, &mut it)?;
                a.properties
                    .extend(v.split(',').filter(|p| !p.is_empty()).map(str::to_string));
            }
            "-s" | "--signal" => a.signal = Some(value_of(flag, inline, &mut it)?),
            "--kill-whom" | "--kill-who" => a.whom = Some(value_of(flag, inline, &mut it)?),
            "-t" | "--type" => {
                let v = value_of(flag, inline, &mut it)?;
                a.types.extend(v.split(',').map(str::to_string));
            }
            "--state" => {
                let v = value_of(flag, inline, &mut it)?;
                a.states.extend(v.split(',').map(str::to_string));
            }
            "-n" | "--lines" => {
                let v = value_of(flag, inline, &mut it)?;
                a.lines = Some(v.parse().map_err(|_| format!("invalid lines: {v}"))?);
            }
            f if f.starts_with("-p") && f.len() > 2 => {
                a.properties.extend(
                    f[2..]
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(str::to_string),
                );
            }
            f if f.starts_with('-') && f.len() > 1 => {
                return Err(format!("unrecognized option '{f}'"))
            }
            _ => positional.push(arg.clone()),
        }
    }
    let mut positional = positional.into_iter();
    a.verb = positional.next().unwrap_or_else(|| "list-units".into());
    a.units = positional.collect();
    Ok(a)
}

/// Runs systemctl; returns the exit code.
pub fn run(args: &[String]) -> i32 {
    let a = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("systemctl: {e}");
            return 1;
        }
    };
    if a.user {
        eprintln!("systemctl: there is no user manager in a rehost container (--user)");
        return 1;
    }
    let needs_units = [
        "start",
        "stop",
        "restart",
        "reload",
        "try-restart",
        "condrestart",
        "reload-or-restart",
        "force-reload",
        "try-reload-or-restart",
        "is-active",
        "is-failed",
        "is-enabled",
        "kill",
        "cat",
        "set-environment",
        "unset-environment",
    ];
    if needs_units.contains(&a.verb.as_str()) && a.units.is_empty() {
        eprintln!("Too few arguments.");
        return 1;
    }
    if let Some(verb) = Verb::parse(&a.verb) {
        return job(verb, &a);
    }
    match a.verb.as_str() {
        "status" => status(&a),
        "is-active" => is_active(&a),
        "is-failed" => is_failed(&a),
        "is-enabled" => is_enabled(&a),
        "show" => show(&a),
        "cat" => cat(&a),
        "list-units" => list_units(&a),
        "list-unit-files" => list_unit_files(&a),
        "list-timers" => list_timers(&a),
        "kill" => kill(&a),
        "set-environment" => simple(Request::SetEnvironment {
            assignments: a.units.clone(),
        }),
        "unset-environment" => simple(Request::UnsetEnvironment {
            names: a.units.clone(),
        }),
        "show-environment" => match ask("systemctl", &Request::ShowEnvironment) {
            Ok(Answer::Environment { assignments }) => {
                for l in assignments {
                    println!("{l}");
                }
                0
            }
            Ok(_) => unexpected(),
            Err(c) => c,
        },
        "daemon-reload" | "daemon-reexec" => simple(Request::DaemonReload),
        "is-system-running" => match units(&[]) {
            Ok((_, system)) => {
                if !a.quiet {
                    println!("{system}");
                }
                i32::from(system != "running")
            }
            Err(c) => c,
        },
        "enable" | "disable" | "reenable" | "mask" | "unmask" | "preset" | "link" | "revert" => {
            eprintln!(
                "systemctl: {} edits the image's unit files; rehost-init starts the services /etc/rehost/init.toml lists, from the next container start",
                a.verb
            );
            let code = exec_real_status("systemctl", args);
            if code == 0 && a.now {
                let verb = if a.verb == "enable" || a.verb == "reenable" {
                    Verb::Start
                } else {
                    Verb::Stop
                };
                return job(verb, &a);
            }
            code
        }
        other => {
            eprintln!("Unknown command verb '{other}'.");
            1
        }
    }
}

/// Runs the image's own systemctl and returns its code (it edits files without a manager).
fn exec_real_status(tool: &str, args: &[String]) -> i32 {
    let real = format!("{}/{tool}", super::REAL_DIR);
    if !std::path::Path::new(&real).exists() {
        return exec_real(tool, args);
    }
    match std::process::Command::new(&real).args(args).status() {
        Ok(s) => s.code().unwrap_or(1),
        Err(e) => {
            eprintln!("{tool}: cannot run {real}: {e}");
            1
        }
    }
}

fn unexpected() -> i32 {
    eprintln!("systemctl: rehost-init gave an unexpected answer");
    1
}

fn simple(req: Request) -> i32 {
    match ask("systemctl", &req) {
        Ok(_) => 0,
        Err(c) => c,
    }
}

fn units(names: &[String]) -> Result<(Vec<UnitInfo>, String), i32> {
    match ask(
        "systemctl",
        &Request::Units {
            names: names.to_vec(),
        },
    )? {
        Answer::Units { units, system } => Ok((units, system)),
        _ => Err(unexpected()),
    }
}

/// The unit a name asks for, among those known.
fn find<'a>(units: &'a [UnitInfo], asked: &str) -> Option<&'a UnitInfo> {
    let bare = |n: &str| n.strip_suffix(".service").unwrap_or(n).to_string();
    units.iter().find(|u| {
        u.name == asked
            || bare(&u.name) == bare(asked)
            || u.names.iter().any(|n| bare(n) == bare(asked))
    })
}

/// `nginx` → `nginx.service`, as systemctl completes names.
pub fn unit_name(asked: &str) -> String {
    if asked.contains('.') {
        asked.to_string()
    } else {
        format!("{asked}.service")
    }
}

/// The exit code of jobs, printing systemctl's lines for those that did not succeed.
pub fn job_code(verb: Verb, results: &[JobResult]) -> i32 {
    let mut code = 0;
    for r in results {
        let unit = unit_name(&r.name);
        match r.outcome.as_str() {
            "done" | "queued" => {}
            "not-found" => {
                eprintln!("Failed to {} {unit}: {}", verb.as_str(), r.message);
                code = code.max(5);
            }
            _ => {
                if r.message.starts_with("Job for") {
                    eprintln!("{}", r.message);
                } else {
                    eprintln!("Failed to {} {unit}: {}", verb.as_str(), r.message);
                }
                code = code.max(1);
            }
        }
    }
    code
}

fn job(verb: Verb, a: &Args) -> i32 {
    match ask(
        "systemctl",
        &Request::Job {
            verb,
            names: a.units.clone(),
            wait: !a.no_block,
        },
    ) {
        Ok(Answer::Jobs { results }) => job_code(verb, &results),
        Ok(_) => unexpected(),
        Err(c) => c,
    }
}

fn kill(a: &Args) -> i32 {
    let signal = match a.signal.as_deref() {
        None => libc::SIGTERM,
        Some(s) => match crate::supervisor::signals::parse(s)
            .or_else(|| s.parse().ok())
            .or_else(|| crate::supervisor::signals::parse(&format!("SIG{s}")))
        {
            Some(n) => n,
            None => {
                eprintln!("Failed to parse signal string {s}.");
                return 1;
            }
        },
    };
    let whom = match a.whom.as_deref() {
        None | Some("all") | Some("control") => Whom::All,
        Some("main") => Whom::Main,
        Some(w) => {
            eprintln!("'{w}' is not a valid --kill-whom= value.");
            return 1;
        }
    };
    match ask(
        "systemctl",
        &Request::Kill {
            names: a.units.clone(),
            signal,
            whom,
        },
    ) {
        Ok(Answer::Jobs { results }) => {
            let mut code = 0;
            for r in results.iter().filter(|r| r.outcome != "done") {
                eprintln!("Failed to kill unit {}: {}", unit_name(&r.name), r.message);
                code = 1;
            }
            code
        }
        Ok(_) => unexpected(),
        Err(c) => c,
    }
}

/// Prints each unit's active state; exits 0 when one of them is in `wanted`, else `otherwise`.
fn state_query(a: &Args, wanted: &[&str], otherwise: i32) -> i32 {
    let Ok((known, _)) = units(&a.units) else {
        return 4;
    };
    let mut any = false;
    for n in &a.units {
        let state = find(&known, n).map_or("inactive", |u| u.active.as_str());
        any |= wanted.contains(&state);
        if !a.quiet {
            println!("{state}");
        }
    }
    if any {
        0
    } else {
        otherwise
    }
}

fn is_active(a: &Args) -> i32 {
    state_query(a, &["active", "reloading"], 3)
}

fn is_failed(a: &Args) -> i32 {
    state_query(a, &["failed"], 1)
}

fn is_enabled(a: &Args) -> i32 {
    let Ok((known, _)) = units(&a.units) else {
        return 4;
    };
    let mut code = 1;
    for n in &a.units {
        let state = match find(&known, n) {
            Some(u) => u.unit_file_state.clone(),
            None if exists_in_image(n) => "disabled".into(),
            None => {
                eprintln!(
                    "Failed to get unit file state for {}: No such file or directory",
                    unit_name(n)
                );
                return 4;
            }
        };
        if state == "enabled" || state == "static" {
            code = 0;
        }
        if !a.quiet {
            println!("{state}");
        }
    }
    code
}

fn exists_in_image(asked: &str) -> bool {
    let root = HostRoot::new("/");
    let bare = asked.strip_suffix(".service").unwrap_or(asked);
    let opts = systemd::LoadOptions::default();
    matches!(
        systemd::lookup(&root, &unit_name(asked), &opts),
        Ok(systemd::Lookup::Found(_))
    ) || std::path::Path::new(&format!("/etc/init.d/{bare}")).exists()
}

/// `systemctl show`'s properties of a unit, in systemctl's order.
pub fn properties(u: &UnitInfo) -> Vec<(&'static str, String)> {
    let ts = |t: Option<u64>| t.map(time::timestamp).unwrap_or_default();
    let mut names = vec![u.name.clone()];
    names.extend(u.names.iter().cloned());
    vec![
        ("Type", u.service_type.clone()),
        ("Result", u.result.clone()),
        ("NRestarts", u.restarts.to_string()),
        ("MainPID", u.main_pid.unwrap_or(0).to_string()),
        ("ExecMainPID", u.main_pid.unwrap_or(0).to_string()),
        ("Id", u.name.clone()),
        ("Names", names.join(" ")),
        ("Description", u.description.clone()),
        ("LoadState", "loaded".into()),
        ("ActiveState", u.active.clone()),
        ("SubState", u.sub.clone()),
        ("UnitFileState", u.unit_file_state.clone()),
        ("ActiveEnterTimestamp", ts(u.active_enter)),
        ("InactiveEnterTimestamp", ts(u.inactive_enter)),
        ("CanReload", if u.can_reload { "yes" } else { "no" }.into()),
    ]
}

/// `systemctl show` of one unit (`None`: not found), filtered by `-p`.
pub fn render_show(asked: &str, u: Option<&UnitInfo>, props: &[String], value: bool) -> String {
    let all = match u {
        Some(u) => properties(u),
        None => vec![
            ("Id", unit_name(asked)),
            ("LoadState", "not-found".into()),
            ("ActiveState", "inactive".into()),
            ("SubState", "dead".into()),
            ("UnitFileState", String::new()),
        ],
    };
    let mut out = String::new();
    for (k, v) in all {
        if !props.is_empty() && !props.iter().any(|p| p == k) {
            continue;
        }
        if value {
            out.push_str(&format!("{v}\n"));
        } else {
            out.push_str(&format!("{k}={v}\n"));
        }
    }
    out
}

fn show(a: &Args) -> i32 {
    let Ok((known, _)) = units(&a.units) else {
        return 1;
    };
    let mut blocks = Vec::new();
    for n in &a.units {
        blocks.push(render_show(n, find(&known, n), &a.properties, a.value));
    }
    print!("{}", blocks.join("\n"));
    0
}

/// `systemctl status` of one unit.
pub fn render_status(u: &UnitInfo, now: u64) -> String {
    let dot = match u.active.as_str() {
        "active" | "reloading" => "●",
        "failed" => "×",
        _ => "○",
    };
    let title = if u.description.is_empty() {
        u.name.clone()
    } else {
        format!("{} - {}", u.name, u.description)
    };
    let mut out = format!("{dot} {title}\n");
    let source = match u.kind.as_str() {
        "systemd" => String::new(),
        k => format!("; {k} script"),
    };
    out.push_str(&format!(
        "     Loaded: loaded ({}{source})\n",
        u.unit_file_state
    ));
    let since = match (u.active.as_str(), u.active_enter, u.inactive_enter) {
        ("active" | "reloading", Some(t), _) => {
            format!(" since {}; {}", time::timestamp(t), time::ago(t, now))
        }
        (_, _, Some(t)) if u.active != "activating" => {
            format!(" since {}; {}", time::timestamp(t), time::ago(t, now))
        }
        _ => String::new(),
    };
    let why = if u.active == "failed" && u.result != "success" {
        format!(" (Result: {})", u.result)
    } else {
        String::new()
    };
    out.push_str(&format!(
        "     Active: {}{why} ({}){since}\n",
        u.active, u.sub
    ));
    if let Some(t) = &u.triggers {
        out.push_str(&format!("    Trigger: {t}\n"));
    }
    if let Some(pid) = u.main_pid {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        out.push_str(&format!("   Main PID: {pid} ({})\n", comm.trim()));
    }
    out
}

fn status(a: &Args) -> i32 {
    let Ok((known, system)) = units(&a.units) else {
        return 4;
    };
    if a.units.is_empty() {
        println!("● {}", hostname());
        println!("    State: {system}");
        println!("    Units: {} supervised by rehost-init", known.len());
        return 0;
    }
    let now = time::now();
    let mut code = 0;
    let mut blocks = Vec::new();
    for n in &a.units {
        match find(&known, n) {
            Some(u) => {
                let mut b = render_status(u, now);
                let lines = journalctl::last_lines(&u.name, a.lines.unwrap_or(10));
                if !lines.is_empty() {
                    b.push('\n');
                    for l in lines {
                        b.push_str(&l);
                        b.push('\n');
                    }
                }
                blocks.push(b);
                if u.active != "active" && u.active != "reloading" {
                    code = code.max(3);
                }
            }
            None => {
                eprintln!("Unit {} could not be found.", unit_name(n));
                code = 4;
            }
        }
    }
    print!("{}", blocks.join("\n"));
    code
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

fn cat(a: &Args) -> i32 {
    let root = HostRoot::new("/");
    let opts = systemd::LoadOptions::default();
    let mut code = 0;
    let mut first = true;
    for n in &a.units {
        let name = unit_name(n);
        let bare = name.strip_suffix(".service").unwrap_or(&name);
        let mut paths = Vec::new();
        match systemd::lookup(&root, &name, &opts) {
            Ok(systemd::Lookup::Found(u)) => {
                paths.push(u.fragment_path.clone());
                paths.extend(u.dropins);
            }
            _ if std::path::Path::new(&format!("/etc/init.d/{bare}")).exists() => {
                paths.push(format!("/etc/init.d/{bare}"));
            }
            _ => {
                eprintln!("No files found for {name}.");
                code = 1;
                continue;
            }
        }
        for p in paths {
            if !first {
                println!();
            }
            first = false;
            println!("# {p}");
            match std::fs::read_to_string(&p) {
                Ok(t) => print!("{t}"),
                Err(e) => {
                    eprintln!("{p}: {e}");
                    code = 1;
                }
            }
        }
    }
    code
}

/// `systemctl list-units`' table.
pub fn render_list_units(units: &[UnitInfo], legend: bool) -> String {
    let w = units.iter().map(|u| u.name.len()).max().unwrap_or(4).max(4);
    let mut out = String::new();
    if legend {
        out.push_str(&format!(
            "  {:w$} LOAD   ACTIVE   SUB      DESCRIPTION\n",
            "UNIT"
        ));
    }
    for u in units {
        out.push_str(&format!(
            "  {:w$} loaded {:8} {:8} {}\n",
            u.name, u.active, u.sub, u.description
        ));
    }
    if legend {
        out.push_str(&format!(
            "\nLOAD   = Reflects whether the unit definition was properly loaded.\nACTIVE = The high-level unit activation state, i.e. generalization of SUB.\nSUB    = The low-level unit activation state, values depend on unit type.\n{} loaded units listed.\n",
            units.len()
        ));
    }
    out
}

fn kind_of(u: &UnitInfo) -> &str {
    match u.name.rsplit_once('.') {
        Some((_, k)) if u.kind == "systemd" => k,
        _ => "service",
    }
}

fn list_units(a: &Args) -> i32 {
    let Ok((known, _)) = units(&[]) else {
        return 1;
    };
    let chosen: Vec<UnitInfo> = known
        .into_iter()
        .filter(|u| a.types.is_empty() || a.types.iter().any(|t| t == kind_of(u)))
        .filter(|u| {
            if a.states.is_empty() {
                a.all || u.active != "inactive"
            } else {
                a.states.iter().any(|s| *s == u.active || *s == u.sub)
            }
        })
        .filter(|u| {
            a.units.is_empty()
                || a.units.iter().any(|p| {
                    crate::model::glob(p.as_bytes(), u.name.as_bytes()) || unit_name(p) == u.name
                })
        })
        .collect();
    print!("{}", render_list_units(&chosen, a.legend));
    0
}

fn list_unit_files(a: &Args) -> i32 {
    let Ok((known, _)) = units(&[]) else {
        return 1;
    };
    let w = known.iter().map(|u| u.name.len()).max().unwrap_or(9).max(9);
    if a.legend {
        println!("{:w$} STATE", "UNIT FILE");
    }
    for u in known
        .iter()
        .filter(|u| a.types.is_empty() || a.types.iter().any(|t| t == kind_of(u)))
    {
        println!("{:w$} {}", u.name, u.unit_file_state);
    }
    if a.legend {
        println!("\n{} unit files listed.", known.len());
    }
    0
}

fn list_timers(a: &Args) -> i32 {
    let Ok((known, _)) = units(&[]) else {
        return 1;
    };
    let now = time::now();
    let timers: Vec<&UnitInfo> = known.iter().filter(|u| u.triggers.is_some()).collect();
    let left = |t: Option<u64>| match t {
        Some(t) if t >= now => format!("{}s left", t - now),
        _ => "-".to_string(),
    };
    let passed = |t: Option<u64>| t.map(|t| time::ago(t, now)).unwrap_or("-".into());
    let ts = |t: Option<u64>| t.map(time::timestamp).unwrap_or("-".into());
    if a.legend {
        println!(
            "{:28} {:12} {:28} {:14} {:24} ACTIVATES",
            "NEXT", "LEFT", "LAST", "PASSED", "UNIT"
        );
    }
    for u in &timers {
        println!(
            "{:28} {:12} {:28} {:14} {:24} {}",
            ts(u.next_elapse),
            left(u.next_elapse),
            ts(u.last_trigger),
            passed(u.last_trigger),
            u.name,
            u.triggers.as_deref().unwrap_or("")
        );
    }
    if a.legend {
        println!("\n{} timers listed.", timers.len());
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn nginx() -> UnitInfo {
        UnitInfo {
            name: "nginx.service".into(),
            kind: "systemd".into(),
            description: "A high performance web server".into(),
            active: "active".into(),
            sub: "running".into(),
            unit_file_state: "enabled".into(),
            result: "success".into(),
            main_pid: Some(42),
            active_enter: Some(1_796_055_601),
            service_type: "forking".into(),
            can_reload: true,
            ..UnitInfo::default()
        }
    }

    #[test]
    fn options_come_anywhere() {
        let a = parse(&args("--no-pager restart -q nginx ssh --no-block")).unwrap();
        assert_eq!(a.verb, "restart");
        assert_eq!(a.units, ["nginx", "ssh"]);
        assert!(a.quiet && a.no_block);
        let a = parse(&args("show nginx -p MainPID,ActiveState --value")).unwrap();
        assert_eq!(a.properties, ["MainPID", "ActiveState"]);
        assert!(a.value);
        let a = parse(&args("show nginx --property=SubState")).unwrap();
        assert_eq!(a.properties, ["SubState"]);
        let a = parse(&args("kill -s HUP rsyslog.service")).unwrap();
        assert_eq!(a.signal.as_deref(), Some("HUP"));
        assert_eq!(parse(&[]).unwrap().verb, "list-units");
        assert!(parse(&args("start --bogus x")).is_err());
        assert!(parse(&args("show -p")).is_err());
    }

    #[test]
    fn show_prints_key_value_lines_or_values() {
        let u = nginx();
        assert_eq!(
            render_show(
                "nginx",
                Some(&u),
                &["MainPID".into(), "ActiveState".into()],
                false
            ),
            "MainPID=42\nActiveState=active\n"
        );
        assert_eq!(
            render_show("nginx", Some(&u), &["SubState".into()], true),
            "running\n"
        );
        assert_eq!(
            render_show("nosuch", None, &["LoadState".into()], false),
            "LoadState=not-found\n"
        );
        let all = render_show("nginx", Some(&u), &[], false);
        assert!(all.contains("Id=nginx.service\n"));
        assert!(all.contains("ActiveEnterTimestamp=Mon 2026-11-30 16:20:01 UTC\n"));
    }

    #[test]
    fn status_has_systemctls_shape() {
        let text = render_status(&nginx(), 1_796_055_601 + 61);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "● nginx.service - A high performance web server");
        assert_eq!(lines[1], "     Loaded: loaded (enabled)");
        assert_eq!(
            lines[2],
            "     Active: active (running) since Mon 2026-11-30 16:20:01 UTC; 1min 1s ago"
        );
        assert!(lines[3].starts_with("   Main PID: 42 ("));
        let mut failed = nginx();
        failed.active = "failed".into();
        failed.sub = "failed".into();
        failed.result = "exit-code".into();
        failed.main_pid = None;
        failed.inactive_enter = Some(1_796_055_601);
        let text = render_status(&failed, 1_796_055_601);
        assert!(text.starts_with("× nginx.service"));
        assert!(text.contains("     Active: failed (Result: exit-code) (failed) since"));
    }

    #[test]
    fn job_exit_codes_follow_systemctl() {
        let r = |o: &str| JobResult {
            name: "x".into(),
            outcome: o.into(),
            message: "m".into(),
        };
        assert_eq!(job_code(Verb::Start, &[r("done")]), 0);
        assert_eq!(job_code(Verb::Start, &[r("queued")]), 0);
        assert_eq!(job_code(Verb::Start, &[r("failed")]), 1);
        assert_eq!(job_code(Verb::Start, &[r("not-found")]), 5);
        assert_eq!(job_code(Verb::Reload, &[r("not-applicable"), r("done")]), 1);
    }

    #[test]
    fn list_units_table() {
        let t = render_list_units(&[nginx()], true);
        assert!(t.starts_with("  UNIT          LOAD   ACTIVE   SUB      DESCRIPTION\n"));
        assert!(
            t.contains("  nginx.service loaded active   running  A high performance web server\n")
        );
        assert!(t.ends_with("1 loaded units listed.\n"));
        assert_eq!(
            render_list_units(&[nginx()], false),
            "  nginx.service loaded active   running  A high performance web server\n"
        );
    }
}
