//! upstart jobs (`/etc/init/NAME.conf`): `start on` / `stop on` conditions, the main
//! process (`exec` or `script … end script`), the pre/post process stanzas, and the
//! stanzas that change how the job runs (`respawn`, `expect`, `env`, `setuid`, `chdir`, …).

use super::{text, FileSystem, ParseError};

/// How a process stanza is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Process {
    /// `exec COMMAND ARGS…`: the command line as written (upstart runs it through `/bin/sh -e -c`
    /// when it holds shell syntax, directly otherwise).
    Exec(String),
    /// `script … end script`: a shell script body (run with `/bin/sh -e`).
    Script(String),
}

/// An upstart job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Job {
    /// The job name (the file name without `.conf`).
    pub name: String,
    /// `description`.
    pub description: Option<String>,
    /// `start on` condition, as written (whitespace normalised).
    pub start_on: Option<String>,
    /// `stop on` condition.
    pub stop_on: Option<String>,
    /// The main process.
    pub main: Option<Process>,
    /// `pre-start`.
    pub pre_start: Option<Process>,
    /// `post-start`.
    pub post_start: Option<Process>,
    /// `pre-stop`.
    pub pre_stop: Option<Process>,
    /// `post-stop`.
    pub post_stop: Option<Process>,
    /// `task`: runs to completion rather than staying up.
    pub task: bool,
    /// `respawn`.
    pub respawn: bool,
    /// `respawn limit COUNT INTERVAL` (`None` also for `respawn limit unlimited`).
    pub respawn_limit: Option<(u32, u32)>,
    /// `expect fork|daemon|stop`.
    pub expect: Option<String>,
    /// `env KEY=VALUE` lines, in order.
    pub env: Vec<(String, String)>,
    /// `setuid`.
    pub setuid: Option<String>,
    /// `setgid`.
    pub setgid: Option<String>,
    /// `chdir`.
    pub chdir: Option<String>,
    /// `umask`.
    pub umask: Option<u32>,
    /// `kill signal`.
    pub kill_signal: Option<String>,
    /// `kill timeout` in seconds.
    pub kill_timeout: Option<u32>,
    /// `normal exit` statuses and signals.
    pub normal_exit: Vec<String>,
    /// `manual`: not started by events.
    pub manual: bool,
    /// `console` (`log`, `output`, `none`).
    pub console: Option<String>,
    /// Stanzas not interpreted (`limit`, `oom`, `nice`, `instance`, …): (stanza, rest).
    pub other: Vec<(String, String)>,
}

/// Parses the job `name` from the contents of its `.conf` file (`path` names it in errors).
pub fn parse(name: &str, path: &str, contents: &str) -> Result<Job, ParseError> {
    let mut job = Job {
        name: name.to_string(),
        ..Job::default()
    };
    let lines: Vec<&str> = contents.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let lineno = i + 1;
        let mut line = strip_comment(lines[i]).trim().to_string();
        i += 1;
        if line.is_empty() {
            continue;
        }
        // Conditions may continue over lines while parentheses are open or a line ends in `\`.
        while (line.matches('(').count() > line.matches(')').count() || line.ends_with('\\'))
            && i < lines.len()
        {
            if line.ends_with('\\') {
                line.pop();
            }
            line.push(' ');
            line.push_str(strip_comment(lines[i]).trim());
            i += 1;
        }
        let (stanza, rest) = match line.split_once(char::is_whitespace) {
            Some((s, r)) => (s.to_string(), r.trim().to_string()),
            None => (line.clone(), String::new()),
        };
        let mut read_script = |i: &mut usize| -> Result<String, ParseError> {
            let mut body = String::new();
            while *i < lines.len() {
                let l = lines[*i];
                *i += 1;
                if l.trim() == "end script" {
                    return Ok(body);
                }
                body.push_str(l);
                body.push('\n');
            }
            Err(ParseError::new(path, lineno, "script without end script"))
        };
        let process = |rest: &str,
                       i: &mut usize,
                       read_script: &mut dyn FnMut(&mut usize) -> Result<String, ParseError>|
         -> Result<Process, ParseError> {
            let (kind, cmd) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            match kind {
                "exec" => Ok(Process::Exec(cmd.trim().to_string())),
                "script" => Ok(Process::Script(read_script(i)?)),
                _ => Err(ParseError::new(
                    path,
                    lineno,
                    format!("expected exec or script after the process stanza, found {rest:?}"),
                )),
            }
        };
        match stanza.as_str() {
            "description" => job.description = Some(unquote(&rest)),
            "author" | "version" | "emits" | "usage" => {}
            "start" | "stop" => {
                let cond = rest.strip_prefix("on").map(str::trim).ok_or_else(|| {
                    ParseError::new(path, lineno, format!("expected `{stanza} on`"))
                })?;
                let cond = cond.split_whitespace().collect::<Vec<_>>().join(" ");
                if stanza == "start" {
                    job.start_on = Some(cond);
                } else {
                    job.stop_on = Some(cond);
                }
            }
            "exec" => job.main = Some(Process::Exec(rest)),
            "script" => job.main = Some(Process::Script(read_script(&mut i)?)),
            "pre-start" => job.pre_start = Some(process(&rest, &mut i, &mut read_script)?),
            "post-start" => job.post_start = Some(process(&rest, &mut i, &mut read_script)?),
            "pre-stop" => job.pre_stop = Some(process(&rest, &mut i, &mut read_script)?),
            "post-stop" => job.post_stop = Some(process(&rest, &mut i, &mut read_script)?),
            "task" => job.task = true,
            "respawn" => {
                if let Some(limit) = rest.strip_prefix("limit") {
                    let nums: Vec<u32> = limit
                        .split_whitespace()
                        .filter_map(|w| w.parse().ok())
                        .collect();
                    if nums.len() == 2 {
                        job.respawn_limit = Some((nums[0], nums[1]));
                    }
                } else {
                    job.respawn = true;
                }
            }
            "expect" => job.expect = Some(rest),
            "env" => {
                let (k, v) = rest.split_once('=').unwrap_or((&rest, ""));
                job.env.push((k.trim().to_string(), unquote(v.trim())));
            }
            "setuid" => job.setuid = Some(rest),
            "setgid" => job.setgid = Some(rest),
            "chdir" => job.chdir = Some(rest),
            "umask" => job.umask = u32::from_str_radix(&rest, 8).ok(),
            "kill" => {
                if let Some(s) = rest.strip_prefix("signal") {
                    job.kill_signal = Some(s.trim().to_string());
                } else if let Some(t) = rest.strip_prefix("timeout") {
                    job.kill_timeout = t.trim().parse().ok();
                }
            }
            "normal" => {
                job.normal_exit = rest
                    .strip_prefix("exit")
                    .unwrap_or(&rest)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            }
            "manual" => job.manual = true,
            "console" => job.console = Some(rest),
            _ => job.other.push((stanza, rest)),
        }
    }
    Ok(job)
}

/// Reads and parses `/etc/init/NAME.conf`, applying `/etc/init/NAME.override` when present
/// (its stanzas replace the job's, as upstart does).
pub fn load(fs: &dyn FileSystem, name: &str) -> Result<Job, ParseError> {
    let path = format!("/etc/init/{name}.conf");
    let bytes = fs
        .read(&path)
        .map_err(|e| ParseError::new(&path, 0, format!("cannot read: {e}")))?;
    let mut contents = text(&bytes);
    if let Ok(o) = fs.read(&format!("/etc/init/{name}.override")) {
        contents.push('\n');
        contents.push_str(&text(&o));
    }
    parse(name, &path, &contents)
}

/// The job names in `/etc/init` (files ending in `.conf`), sorted.
pub fn jobs(fs: &dyn FileSystem) -> Vec<String> {
    let mut v: Vec<String> = fs
        .read_dir("/etc/init")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| n.strip_suffix(".conf").map(str::to_string))
        .collect();
    v.sort();
    v
}

fn strip_comment(l: &str) -> &str {
    let mut quote = None;
    for (i, c) in l.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if q == c => quote = None,
            (None, '#') => return &l[..i],
            _ => {}
        }
    }
    l
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')))
    {
        s[1..s.len() - 1].to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_job() {
        let j = parse(
            "ssh",
            "/etc/init/ssh.conf",
            "# ssh\ndescription \"OpenSSH server\"\n\nstart on (filesystem\n          or runlevel [2345])\nstop on runlevel [!2345]\n\nrespawn\nrespawn limit 10 5\numask 022\nenv SSH_SIGSTOP=1\nexpect stop\nconsole none\n\npre-start script\n    test -x /usr/sbin/sshd || { stop; exit 0; }\nend script\n\nexec /usr/sbin/sshd -D # foreground\n",
        )
        .unwrap();
        assert_eq!(j.description.as_deref(), Some("OpenSSH server"));
        assert_eq!(
            j.start_on.as_deref(),
            Some("(filesystem or runlevel [2345])")
        );
        assert_eq!(j.stop_on.as_deref(), Some("runlevel [!2345]"));
        assert!(j.respawn);
        assert_eq!(j.respawn_limit, Some((10, 5)));
        assert_eq!(j.umask, Some(0o22));
        assert_eq!(j.env, [("SSH_SIGSTOP".to_string(), "1".to_string())]);
        assert_eq!(j.expect.as_deref(), Some("stop"));
        assert_eq!(j.main, Some(Process::Exec("/usr/sbin/sshd -D".into())));
        assert_eq!(
            j.pre_start,
            Some(Process::Script(
                "    test -x /usr/sbin/sshd || { stop; exit 0; }\n".into()
            ))
        );
    }

    #[test]
    fn script_main_and_errors() {
        let j = parse("t", "t", "task\nscript\n  echo hi\nend script\n").unwrap();
        assert!(j.task);
        assert_eq!(j.main, Some(Process::Script("  echo hi\n".into())));
        assert!(parse("t", "t", "script\n echo\n").is_err());
        assert!(parse("t", "t", "pre-start bogus\n").is_err());
    }
}
