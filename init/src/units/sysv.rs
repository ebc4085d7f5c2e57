//! SysV init scripts: the LSB comment header (`### BEGIN INIT INFO` … `### END INIT INFO`)
//! and the `/etc/rcN.d/[SK]NNname` links that order them.

use super::{shell, text, FileSystem, ParseError};
use std::collections::BTreeMap;

/// The LSB header of an init script.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LsbHeader {
    /// `Provides:` facility names (usually the script's own name).
    pub provides: Vec<String>,
    /// `Required-Start:` facilities (`$network`, `$remote_fs`, `sshd`).
    pub required_start: Vec<String>,
    /// `Required-Stop:`.
    pub required_stop: Vec<String>,
    /// `Should-Start:`: ordering only, when present.
    pub should_start: Vec<String>,
    /// `Should-Stop:`.
    pub should_stop: Vec<String>,
    /// `X-Start-Before:`.
    pub start_before: Vec<String>,
    /// `X-Stop-After:`.
    pub stop_after: Vec<String>,
    /// `Default-Start:` runlevels (`2 3 4 5`, `S`).
    pub default_start: Vec<String>,
    /// `Default-Stop:` runlevels.
    pub default_stop: Vec<String>,
    /// `Short-Description:`.
    pub short_description: Option<String>,
    /// `Description:` (continuation lines joined with spaces).
    pub description: Option<String>,
    /// `X-Interactive:`.
    pub interactive: bool,
    /// Other keywords, as written.
    pub other: Vec<(String, String)>,
}

/// Parses the LSB header of script `path`. `Ok(None)` when the script has none;
/// an error when the block is opened but never closed.
pub fn parse_lsb(path: &str, contents: &str) -> Result<Option<LsbHeader>, ParseError> {
    let mut lines = contents.lines().enumerate();
    let start = loop {
        match lines.next() {
            Some((i, l)) if l.trim() == "### BEGIN INIT INFO" => break i + 1,
            Some(_) => continue,
            None => return Ok(None),
        }
    };
    let mut fields: Vec<(String, String)> = Vec::new();
    for (_, l) in lines.by_ref() {
        let t = l.trim_end();
        if t.trim() == "### END INIT INFO" {
            return Ok(Some(build(fields)));
        }
        let Some(body) = t.strip_prefix('#') else {
            continue;
        };
        // A continuation line starts with a tab or at least two spaces after the `#`.
        if body.starts_with('\t') || body.starts_with("  ") {
            if let Some(last) = fields.last_mut() {
                if !last.1.is_empty() {
                    last.1.push(' ');
                }
                last.1.push_str(body.trim());
            }
            continue;
        }
        if let Some((k, v)) = body.trim().split_once(':') {
            fields.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Err(ParseError::new(
        path,
        start,
        "### BEGIN INIT INFO without ### END INIT INFO",
    ))
}

fn build(fields: Vec<(String, String)>) -> LsbHeader {
    let mut h = LsbHeader::default();
    for (k, v) in fields {
        let words = || v.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        match k.as_str() {
            "Provides" => h.provides = words(),
            "Required-Start" => h.required_start = words(),
            "Required-Stop" => h.required_stop = words(),
            "Should-Start" => h.should_start = words(),
            "Should-Stop" => h.should_stop = words(),
            "X-Start-Before" => h.start_before = words(),
            "X-Stop-After" => h.stop_after = words(),
            "Default-Start" => h.default_start = words(),
            "Default-Stop" => h.default_stop = words(),
            "Short-Description" => h.short_description = Some(v),
            "Description" => h.description = Some(v),
            "X-Interactive" => h.interactive = v.eq_ignore_ascii_case("true"),
            _ => h.other.push((k, v)),
        }
    }
    h
}

/// An init script in `/etc/init.d` with its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitScript {
    /// The script's file name (`ssh`).
    pub name: String,
    /// Its path inside the root.
    pub path: String,
    /// Its LSB header, if any.
    pub lsb: Option<LsbHeader>,
}

/// Reads `/etc/init.d/NAME`.
pub fn load(fs: &dyn FileSystem, name: &str) -> Result<InitScript, ParseError> {
    let path = format!("/etc/init.d/{name}");
    let bytes = fs
        .read(&path)
        .map_err(|e| ParseError::new(&path, 0, format!("cannot read: {e}")))?;
    let lsb = parse_lsb(&path, &text(&bytes))?;
    Ok(InitScript {
        name: name.to_string(),
        path,
        lsb,
    })
}

/// The tools of init scripts that take a pid file after `-p` (`--pidfile` is read anywhere).
const PIDFILE_TOOLS: &[&str] = &[
    "start-stop-daemon",
    "start_daemon",
    "killproc",
    "pidofproc",
    "status_of_proc",
    "daemon",
    "status",
];

/// The variables scripts keep their pid file in.
const PIDFILE_VARIABLES: &[&str] = &["PIDFILE", "PID_FILE", "PIDFile", "pidfile", "PID"];

/// The pid files an init script names, most likely first: a chkconfig-style
/// `# pidfile:` header, the `--pidfile FILE` / `-p FILE` arguments of its daemon tools
/// (`start-stop-daemon`, `start_daemon`, `killproc`, `status_of_proc`), then `PIDFILE=`-style
/// variables. Variables assigned at the top level are expanded; a value computed at run time
/// (`$(…)`) is not, and is left out. Only absolute paths ending in `.pid` are kept (the
/// header's and the variables' whatever they end in).
pub fn pid_files(contents: &str) -> Vec<String> {
    let vars = shell::assignments(contents, &BTreeMap::new());
    let mut out: Vec<String> = Vec::new();
    let mut add = |p: &str, any_name: bool| {
        let plain = p.starts_with('/') && !p.contains(['$', '(', ')', '`', '*', ' ']);
        if plain && (any_name || p.ends_with(".pid")) && !out.iter().any(|o| o == p) {
            out.push(p.to_string());
        }
    };
    for l in contents.lines() {
        let t = l.trim_start();
        if let Some(v) = t
            .strip_prefix('#')
            .map(str::trim_start)
            .and_then(|r| r.strip_prefix("pidfile:"))
        {
            add(v.trim(), true);
        }
    }
    for line in shell::logical_lines(contents) {
        let t = line.trim_start();
        if t.starts_with('#') {
            continue;
        }
        let Some(words) = shell::split(t, &vars) else {
            continue;
        };
        let tool = words.iter().any(|w| PIDFILE_TOOLS.contains(&w.as_str()));
        for (i, w) in words.iter().enumerate() {
            let next = words.get(i + 1).map(String::as_str);
            if let Some(v) = w.strip_prefix("--pidfile=") {
                add(v, false);
            } else if w == "--pidfile" || (tool && w == "-p") {
                if let Some(v) = next {
                    add(v.trim_end_matches(';'), false);
                }
            }
        }
    }
    for name in PIDFILE_VARIABLES {
        if let Some(v) = vars.get(*name) {
            add(v, *name != "PID");
        }
    }
    out
}

/// Lists the scripts in `/etc/init.d` (skipping `README`, `skeleton`, `rc`, `rcS` and
/// dot-files and backups), sorted by name.
pub fn scripts(fs: &dyn FileSystem) -> Vec<String> {
    let mut names: Vec<String> = fs
        .read_dir("/etc/init.d")
        .unwrap_or_default()
        .into_iter()
        .filter(|n| {
            !n.starts_with('.')
                && !matches!(
                    n.as_str(),
                    "README"
                        | "skeleton"
                        | "rc"
                        | "rcS"
                        | "functions"
                        | ".depend.boot"
                        | ".depend.start"
                        | ".depend.stop"
                )
                && !n.ends_with('~')
                && !n.ends_with(".dpkg-old")
                && !n.ends_with(".dpkg-dist")
        })
        .collect();
    names.sort();
    names
}

/// One `/etc/rcN.d` link.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RcLink {
    /// The runlevel (`2`, `S`).
    pub runlevel: String,
    /// `true` for `S` (start) links, `false` for `K` (kill) links.
    pub start: bool,
    /// The two-digit priority (lower runs first).
    pub priority: u32,
    /// The script name the link points at (`ssh`).
    pub script: String,
}

/// Parses a link name `S02ssh` / `K01nginx` of runlevel `runlevel`.
pub fn parse_rc_link(runlevel: &str, name: &str) -> Option<RcLink> {
    let start = match name.as_bytes().first()? {
        b'S' => true,
        b'K' => false,
        _ => return None,
    };
    let digits: String = name[1..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    if digits.is_empty() {
        return None;
    }
    let script = name[1 + digits.len()..].to_string();
    if script.is_empty() {
        return None;
    }
    Some(RcLink {
        runlevel: runlevel.to_string(),
        start,
        priority: digits.parse().ok()?,
        script,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSH: &str = "#! /bin/sh\n\n### BEGIN INIT INFO\n# Provides:\t\tsshd\n# Required-Start:\t$remote_fs $syslog\n# Required-Stop:\t$remote_fs $syslog\n# Default-Start:\t2 3 4 5\n# Default-Stop:\t\t\n# Short-Description: OpenBSD Secure Shell server\n# Description: long\n#   text here\n# X-Vendor: me\n### END INIT INFO\n\nset -e\n";

    #[test]
    fn parses_lsb_header() {
        let h = parse_lsb("/etc/init.d/ssh", SSH).unwrap().unwrap();
        assert_eq!(h.provides, ["sshd"]);
        assert_eq!(h.required_start, ["$remote_fs", "$syslog"]);
        assert_eq!(h.default_start, ["2", "3", "4", "5"]);
        assert!(h.default_stop.is_empty());
        assert_eq!(
            h.short_description.as_deref(),
            Some("OpenBSD Secure Shell server")
        );
        assert_eq!(h.description.as_deref(), Some("long text here"));
        assert_eq!(h.other, [("X-Vendor".to_string(), "me".to_string())]);
        assert_eq!(parse_lsb("x", "#!/bin/sh\necho hi\n").unwrap(), None);
        let e = parse_lsb("/etc/init.d/x", "### BEGIN INIT INFO\n# Provides: x\n").unwrap_err();
        assert_eq!(e.line, 1);
    }

    #[test]
    fn finds_the_pid_files_a_script_names() {
        // Debian's nginx: the variable is set in an `if`, used by start-stop-daemon.
        let nginx = "#!/bin/sh\nDAEMON=/usr/sbin/nginx\nPID=$(awk '/pid/' /etc/nginx/nginx.conf)\nif [ -z \"$PID\" ]; then\n\tPID=/run/nginx.pid\nfi\nstart() {\n\tstart-stop-daemon --start --quiet --pidfile $PID --exec $DAEMON\n\tstart-stop-daemon --stop --pidfile \"${PID}.oldbin\"\n}\n";
        assert_eq!(pid_files(nginx), ["/run/nginx.pid"]);
        // Debian's ssh: a literal argument.
        let ssh = "#!/bin/sh\nstart-stop-daemon --start --quiet --oknodo --chuid 0:0 --pidfile /run/sshd.pid --exec /usr/sbin/sshd -- $SSHD_OPTS\n";
        assert_eq!(pid_files(ssh), ["/run/sshd.pid"]);
        // Debian's cron: LSB functions with -p and a PIDFILE variable.
        let cron =
            "#!/bin/sh\nPIDFILE=/var/run/crond.pid\nstart_daemon -p $PIDFILE /usr/sbin/cron\n";
        assert_eq!(pid_files(cron), ["/var/run/crond.pid"]);
        // Red Hat style: the chkconfig header, and --pidfile=.
        let rh = "#!/bin/sh\n# chkconfig: 2345 55 25\n# pidfile: /var/run/httpd/httpd.pid\ndaemon --pidfile=/var/run/other.pid /usr/sbin/x\n";
        assert_eq!(
            pid_files(rh),
            ["/var/run/httpd/httpd.pid", "/var/run/other.pid"]
        );
        // Nothing a script computes at run time, nothing relative, no -p of other tools.
        let odd =
            "#!/bin/sh\nPIDFILE=$(mktemp)\nls -p x.pid\nstart-stop-daemon --pidfile run/x.pid\n";
        assert!(pid_files(odd).is_empty(), "{:?}", pid_files(odd));
    }

    #[test]
    fn parses_rc_links() {
        assert_eq!(
            parse_rc_link("2", "S01ssh"),
            Some(RcLink {
                runlevel: "2".into(),
                start: true,
                priority: 1,
                script: "ssh".into()
            })
        );
        assert_eq!(parse_rc_link("2", "K10x").map(|l| l.start), Some(false));
        assert_eq!(parse_rc_link("2", "README"), None);
        assert_eq!(parse_rc_link("2", "S01"), None);
    }
}
