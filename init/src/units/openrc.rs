//! OpenRC service scripts (`#!/sbin/openrc-run`): the variables that describe a
//! command-style service (`command`, `command_args`, `pidfile`, `command_background`,
//! `command_user`, …), the `depend()` function, which functions the script overrides,
//! and runlevel membership (`/etc/runlevels/NAME/`).

use super::shell;
use super::{text, FileSystem, ParseError};
use std::collections::BTreeMap;

/// The `depend()` declarations of a script.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Depend {
    /// `need`: hard dependencies.
    pub need: Vec<String>,
    /// `use`: start these first when they are in the runlevel.
    pub uses: Vec<String>,
    /// `want`: start these too.
    pub want: Vec<String>,
    /// `after`: ordering.
    pub after: Vec<String>,
    /// `before`: ordering.
    pub before: Vec<String>,
    /// `provide`: virtual names this script provides (`net`, `logger`).
    pub provide: Vec<String>,
    /// `keyword`: e.g. `-docker`, `-lxc` (skip in containers).
    pub keyword: Vec<String>,
}

/// An OpenRC service script.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpenRcScript {
    /// The service name (the script's file name).
    pub name: String,
    /// The path of the script inside the root.
    pub path: String,
    /// `command=` after expansion.
    pub command: Option<String>,
    /// `command_args=` split into words.
    pub command_args: Vec<String>,
    /// `command_args_foreground=` split into words (used by supervisors).
    pub command_args_foreground: Vec<String>,
    /// `command_background=`: the daemon does not fork; OpenRC backgrounds it.
    pub command_background: bool,
    /// `pidfile=`.
    pub pidfile: Option<String>,
    /// `command_user=` (`user` or `user:group`).
    pub command_user: Option<String>,
    /// `directory=`: working directory.
    pub directory: Option<String>,
    /// `output_log=`.
    pub output_log: Option<String>,
    /// `error_log=`.
    pub error_log: Option<String>,
    /// `supervisor=` (`supervise-daemon`, `s6`).
    pub supervisor: Option<String>,
    /// `retry=` (stop schedule, as written).
    pub retry: Option<String>,
    /// `description=`.
    pub description: Option<String>,
    /// `depend()`.
    pub depend: Depend,
    /// Functions the script defines that change how it starts or stops (`start`, `stop`,
    /// `start_pre`, `start_post`, `stop_pre`, `stop_post`, `reload`, …). When `start` is
    /// among them the script is not command-style: run it as `SCRIPT start`.
    pub functions: Vec<String>,
    /// Every top-level variable assignment (script and its `/etc/conf.d` file).
    pub variables: BTreeMap<String, String>,
}

impl OpenRcScript {
    /// Whether the script can be run from its variables alone (it sets `command` and does
    /// not define its own `start()`).
    pub fn is_command_style(&self) -> bool {
        self.command.is_some() && !self.functions.iter().any(|f| f == "start")
    }
}

/// Whether a script is an OpenRC script (its `#!` line names `openrc-run` or `runscript`).
pub fn is_openrc(contents: &str) -> bool {
    let first = contents.lines().next().unwrap_or("");
    first.starts_with("#!") && (first.contains("openrc-run") || first.contains("runscript"))
}

/// Parses the script `name` at `path`, with the contents of its `/etc/conf.d/NAME` file
/// (read first, as OpenRC sources it before the script's own body runs its functions).
pub fn parse(
    name: &str,
    path: &str,
    contents: &str,
    conf_d: Option<&str>,
) -> Result<OpenRcScript, ParseError> {
    let mut base = BTreeMap::new();
    base.insert("RC_SVCNAME".to_string(), name.to_string());
    base.insert("SVCNAME".to_string(), name.to_string());
    let mut vars = base.clone();
    if let Some(c) = conf_d {
        vars.extend(shell::assignments(c, &base));
    }
    let script_vars = shell::assignments(contents, &vars);
    vars.extend(script_vars);
    // conf.d values override defaults the script sets with `: ${x:=...}` or plain
    // assignment guarded by the conf file; a plain assignment in the script wins, as in sh.
    let get = |k: &str| vars.get(k).filter(|v| !v.is_empty()).cloned();
    let words = |k: &str| -> Result<Vec<String>, ParseError> {
        match vars.get(k) {
            Some(v) => shell::split(v, &vars)
                .ok_or_else(|| ParseError::new(path, 0, format!("unterminated quote in {k}"))),
            None => Ok(Vec::new()),
        }
    };
    let truthy = |k: &str| {
        matches!(
            vars.get(k).map(|v| v.to_ascii_lowercase()).as_deref(),
            Some("yes" | "true" | "1")
        )
    };
    let functions = functions(contents);
    Ok(OpenRcScript {
        name: name.to_string(),
        path: path.to_string(),
        command: get("command"),
        command_args: words("command_args")?,
        command_args_foreground: words("command_args_foreground")?,
        command_background: truthy("command_background"),
        pidfile: get("pidfile"),
        command_user: get("command_user"),
        directory: get("directory"),
        output_log: get("output_log"),
        error_log: get("error_log"),
        supervisor: get("supervisor"),
        retry: get("retry"),
        description: get("description"),
        depend: depend(contents),
        functions,
        variables: vars
            .into_iter()
            .filter(|(k, _)| k != "RC_SVCNAME" && k != "SVCNAME")
            .collect(),
    })
}

/// Reads `/etc/init.d/NAME` and `/etc/conf.d/NAME` and parses them.
pub fn load(fs: &dyn FileSystem, name: &str) -> Result<OpenRcScript, ParseError> {
    let path = format!("/etc/init.d/{name}");
    let bytes = fs
        .read(&path)
        .map_err(|e| ParseError::new(&path, 0, format!("cannot read: {e}")))?;
    let conf = fs
        .read(&format!("/etc/conf.d/{name}"))
        .ok()
        .map(|b| text(&b));
    parse(name, &path, &text(&bytes), conf.as_deref())
}

/// Names of the functions defined at the top level (`name() {` or `name()\n{`).
fn functions(contents: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in contents.lines() {
        let t = l.trim_start();
        let t = t.strip_prefix("function ").unwrap_or(t);
        if let Some(i) = t.find("()") {
            let name = t[..i].trim();
            if !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !out.iter().any(|n| n == name)
            {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// The body of `depend()`: lines `need net`, `use logger dns`, `after firewall`, ….
fn depend(contents: &str) -> Depend {
    let mut d = Depend::default();
    let mut inside = false;
    let mut depth = 0i32;
    for l in contents.lines() {
        let t = l.trim();
        if !inside {
            if t.starts_with("depend()")
                || t.starts_with("depend ()")
                || t.starts_with("function depend")
            {
                inside = true;
                depth = t.matches('{').count() as i32 - t.matches('}').count() as i32;
                // A one-line body: `depend() { need net; }`.
                if let Some(body) = t.split_once('{').map(|(_, b)| b.trim_end_matches('}')) {
                    add_depend_line(&mut d, body);
                }
                if depth <= 0 && t.contains('}') {
                    break;
                }
            }
            continue;
        }
        depth += t.matches('{').count() as i32 - t.matches('}').count() as i32;
        add_depend_line(&mut d, t.trim_end_matches('}'));
        if depth <= 0 && t.contains('}') {
            break;
        }
    }
    d
}

fn add_depend_line(d: &mut Depend, line: &str) {
    for stmt in line.split(';') {
        let mut w = stmt.split_whitespace();
        let Some(kw) = w.next() else { continue };
        let rest: Vec<String> = w.map(str::to_string).collect();
        let target = match kw {
            "need" => &mut d.need,
            "use" => &mut d.uses,
            "want" => &mut d.want,
            "after" => &mut d.after,
            "before" => &mut d.before,
            "provide" => &mut d.provide,
            "keyword" => &mut d.keyword,
            _ => continue,
        };
        target.extend(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NGINX: &str = r#"#!/sbin/openrc-run
name="nginx"
description="Web server"
cfgfile=${cfgfile:-/etc/nginx/nginx.conf}
command=/usr/sbin/nginx
command_args="-c $cfgfile -g 'daemon off;'"
command_background=yes
pidfile="/run/${RC_SVCNAME}.pid"
command_user="www:www"

depend() {
	need net
	use dns logger netmount
	after firewall; before local
}

reload() {
	ebegin "Reloading $name"
	eend $?
}
"#;

    #[test]
    fn parses_command_style_script() {
        let s = parse(
            "nginx",
            "/etc/init.d/nginx",
            NGINX,
            Some("cfgfile=/srv/n.conf\n"),
        )
        .unwrap();
        assert!(s.is_command_style());
        assert_eq!(s.command.as_deref(), Some("/usr/sbin/nginx"));
        assert_eq!(s.command_args, ["-c", "/srv/n.conf", "-g", "daemon off;"]);
        assert!(s.command_background);
        assert_eq!(s.pidfile.as_deref(), Some("/run/nginx.pid"));
        assert_eq!(s.command_user.as_deref(), Some("www:www"));
        assert_eq!(s.depend.need, ["net"]);
        assert_eq!(s.depend.uses, ["dns", "logger", "netmount"]);
        assert_eq!(s.depend.after, ["firewall"]);
        assert_eq!(s.depend.before, ["local"]);
        assert_eq!(s.functions, ["depend", "reload"]);
        assert!(is_openrc(NGINX));
    }

    #[test]
    fn custom_start_is_not_command_style() {
        let s = parse("x", "/etc/init.d/x", "#!/sbin/openrc-run\ncommand=/bin/x\nstart() {\n  /bin/x &\n}\ndepend() { need localmount; }\n", None).unwrap();
        assert!(!s.is_command_style());
        assert_eq!(s.depend.need, ["localmount"]);
    }
}
