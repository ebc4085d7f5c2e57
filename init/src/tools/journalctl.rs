//! `journalctl -u UNIT [-n N] [-f] [--since T] [--until T]` on the output rehost-init keeps
//! per unit (see [`crate::supervisor::output`]). Lines print in journalctl's short format.

use super::{systemctl::unit_name, time};
use crate::control::JOURNAL_DIR;
use crate::supervisor::output::{journal_path, MAX_JOURNAL};
use std::io::{Read, Seek, SeekFrom, Write};

/// What the command line asked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Args {
    pub units: Vec<String>,
    pub lines: Option<usize>,
    pub follow: bool,
    pub since: Option<u64>,
    pub until: Option<u64>,
    pub cat: bool,
}

/// Parses journalctl's command line.
pub fn parse(args: &[String], now: u64) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = args.iter().peekable();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let value = |it: &mut std::iter::Peekable<std::slice::Iter<String>>| {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("option '{flag}' requires an argument"))
        };
        match flag.as_str() {
            "-u" | "--unit" => a.units.push(value(&mut it)?),
            "-f" | "--follow" => a.follow = true,
            "-e" | "--pager-end" => a.lines = a.lines.or(Some(1000)),
            "-n" | "--lines" => {
                // `-n` alone is 10, as journalctl's.
                let v = match &inline {
                    Some(v) => Some(v.clone()),
                    None => it.next_if(|n| n.parse::<usize>().is_ok()).cloned(),
                };
                a.lines = Some(match v {
                    Some(v) => v.parse().map_err(|_| format!("invalid lines: {v}"))?,
                    None => 10,
                });
            }
            "-S" | "--since" | "-U" | "--until" => {
                let v = value(&mut it)?;
                let t = time::parse_since(&v, now)
                    .ok_or_else(|| format!("Failed to parse timestamp: {v}"))?;
                if flag == "-S" || flag == "--since" {
                    a.since = Some(t);
                } else {
                    a.until = Some(t);
                }
            }
            "-o" | "--output" => a.cat = value(&mut it)? == "cat",
            "--no-pager" | "-q" | "--quiet" | "-b" | "--boot" | "-x" | "--catalog" | "-l"
            | "--full" | "--no-hostname" | "--system" => {}
            f if f.starts_with("-n") && f[2..].parse::<usize>().is_ok() => {
                a.lines = f[2..].parse().ok();
            }
            f if f.starts_with("-u") && f.len() > 2 => a.units.push(f[2..].to_string()),
            f if f.starts_with('-') => return Err(format!("unrecognized option '{f}'")),
            _ => return Err(format!("matches are not supported: {arg}; use -u UNIT")),
        }
    }
    Ok(a)
}

/// One kept line: (microseconds since the epoch, identifier, text).
fn split(line: &str) -> Option<(u64, &str, &str)> {
    let (micros, rest) = line.split_once(' ')?;
    let (ident, text) = rest.split_once(": ").unwrap_or((rest, ""));
    Some((micros.parse().ok()?, ident, text))
}

/// A kept line in journalctl's short format.
pub fn render(line: &str, host: &str, cat: bool) -> Option<String> {
    let (micros, ident, text) = split(line)?;
    Some(if cat {
        text.to_string()
    } else {
        format!("{} {host} {ident}: {text}", time::short(micros / 1_000_000))
    })
}

fn read_capped(path: &str) -> String {
    let mut text = String::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(2 * MAX_JOURNAL).read_to_string(&mut text);
    }
    text
}

/// The kept lines of one unit, oldest first (the rotated file, then the current one).
fn kept(unit: &str) -> Vec<String> {
    let path = journal_path(unit);
    let mut text = read_capped(&format!("{path}.1"));
    text.push_str(&read_capped(&path));
    text.lines().map(str::to_string).collect()
}

fn journal_name(asked: &str) -> String {
    // The journal is kept under the name rehost-init runs the unit by: `nginx.service`
    // for a unit, `nginx` for a script.
    let unit = unit_name(asked);
    if std::path::Path::new(&journal_path(&unit)).exists() {
        unit
    } else {
        asked.strip_suffix(".service").unwrap_or(asked).to_string()
    }
}

/// The last `n` lines of `unit`, formatted (for `systemctl status`).
pub fn last_lines(unit: &str, n: usize) -> Vec<String> {
    let host = host();
    let lines = kept(&journal_name(unit));
    let skip = lines.len().saturating_sub(n);
    lines[skip..]
        .iter()
        .filter_map(|l| render(l, &host, false))
        .collect()
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Runs journalctl; returns the exit code.
pub fn run(args: &[String]) -> i32 {
    let a = match parse(args, time::now()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("journalctl: {e}");
            return 1;
        }
    };
    let units: Vec<String> = if a.units.is_empty() {
        // Every unit's lines, by time.
        std::fs::read_dir(JOURNAL_DIR)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.strip_suffix(".log").map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default()
    } else {
        a.units.iter().map(|u| journal_name(u)).collect()
    };
    if let Err(e) = std::fs::read_dir(JOURNAL_DIR) {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            eprintln!("No journal files were opened due to insufficient permissions.");
            return 1;
        }
    }
    let mut lines: Vec<String> = units.iter().flat_map(|u| kept(u)).collect();
    lines.sort_by_key(|l| split(l).map(|(t, _, _)| t).unwrap_or(0));
    let in_window = |l: &String| {
        split(l).is_some_and(|(t, _, _)| {
            let s = t / 1_000_000;
            a.since.is_none_or(|x| s >= x) && a.until.is_none_or(|x| s <= x)
        })
    };
    let lines: Vec<&String> = lines.iter().filter(|l| in_window(l)).collect();
    let skip = a.lines.map_or(0, |n| lines.len().saturating_sub(n));
    let host = host();
    let mut out = std::io::stdout().lock();
    if lines.is_empty() && !a.follow {
        let _ = writeln!(out, "-- No entries --");
    }
    for l in &lines[skip..] {
        if let Some(r) = render(l, &host, a.cat) {
            if writeln!(out, "{r}").is_err() {
                return 0;
            }
        }
    }
    let _ = out.flush();
    if a.follow {
        follow(&units, &host, a.cat);
    }
    0
}

/// Prints what is added to the units' journals until killed.
fn follow(units: &[String], host: &str, cat: bool) {
    let mut offsets: Vec<(String, u64)> = units
        .iter()
        .map(|u| {
            let p = journal_path(u);
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            (p, len)
        })
        .collect();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(250));
        for (path, offset) in offsets.iter_mut() {
            let Ok(mut f) = std::fs::File::open(&*path) else {
                continue;
            };
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if len < *offset {
                // Rotated: the new file is read from its start.
                *offset = 0;
            }
            if len == *offset || f.seek(SeekFrom::Start(*offset)).is_err() {
                continue;
            }
            let mut text = String::new();
            let _ = (&mut f).take(len - *offset).read_to_string(&mut text);
            // Only whole lines; the rest is read next time.
            let whole = text.rfind('\n').map_or(0, |p| p + 1);
            *offset += whole as u64;
            let mut out = std::io::stdout().lock();
            for l in text[..whole].lines() {
                if let Some(r) = render(l, host, cat) {
                    if writeln!(out, "{r}").is_err() {
                        return;
                    }
                }
            }
            let _ = out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn command_lines() {
        let now = 1_796_055_601;
        let a = parse(&args("-u nginx -n 5 --no-pager"), now).unwrap();
        assert_eq!(a.units, ["nginx"]);
        assert_eq!(a.lines, Some(5));
        let a = parse(&args("-n -u ssh -f"), now).unwrap();
        assert_eq!(a.lines, Some(10));
        assert!(a.follow);
        let a = parse(&args("--unit=cron --since=-5min -n20"), now).unwrap();
        assert_eq!(a.since, Some(now - 300));
        assert_eq!(a.lines, Some(20));
        assert!(parse(&args("--since yesterdayish"), now).is_err());
        assert!(parse(&args("_PID=1"), now).is_err());
    }

    #[test]
    fn lines_render_in_the_short_format() {
        let l = "1796055601123456 nginx: listening on 80";
        assert_eq!(
            render(l, "web1", false).unwrap(),
            "Nov 30 16:20:01 web1 nginx: listening on 80"
        );
        assert_eq!(render(l, "web1", true).unwrap(), "listening on 80");
        assert_eq!(render("garbage", "h", false), None);
    }
}
