//! systemd unit files: the ini-like syntax, unit names and templates, search paths,
//! aliases and masks, drop-in directories, specifiers, `Exec*=` command lines, and typed
//! views of the `[Unit]`, `[Service]`, `[Timer]` and `[Install]` sections.
//!
//! Typical use:
//!
//! ```no_run
//! use rehost_init::model::{self, HostRoot};
//! use rehost_init::units::systemd;
//! let root = HostRoot::new("/srv/rootfs");
//! for enabled in model::boot_entries(&root, &[]) {
//!     if let Ok(Some(unit)) = systemd::load(&root, &enabled.name, &systemd::LoadOptions::default()) {
//!         let service = unit.service();
//!         println!("{} runs {:?}", unit.name, service.exec_start.first().map(|c| &c.argv));
//!     }
//! }
//! ```

use super::timespan::{self, TimeSpan};
use super::{text, FileSystem, ParseError};
use std::collections::BTreeMap;
use std::time::Duration;

/// The system unit search path, highest priority first: the model's.
pub use crate::model::systemd::search_path;

/// One `Key=value` line of a unit file (after joining continuation lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key, as written (`ExecStart`).
    pub key: String,
    /// The value with surrounding whitespace removed; quoting is left for the typed views.
    pub value: String,
    /// Which file this line came from (the unit file or a drop-in).
    pub file: String,
    /// 1-based line number in that file.
    pub line: usize,
}

/// One `[Section]` with its entries in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    /// The section name without brackets (`Service`).
    pub name: String,
    /// The entries, in order; later entries of the same key add to or override earlier ones.
    pub entries: Vec<Entry>,
}

/// The raw contents of one or more unit files (a unit and its drop-ins merged in order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitFile {
    /// Sections in order of first appearance; a section that appears again is merged.
    pub sections: Vec<Section>,
}

impl UnitFile {
    /// Parses the text of one unit file or drop-in. `path` names it in errors.
    ///
    /// Handles `#`/`;` comments, `[Section]` headers, `Key=value` lines and lines ending in
    /// a backslash, which continue on the next line (the backslash becomes a space and
    /// comment lines inside the continuation are skipped, as systemd does).
    pub fn parse(path: &str, contents: &str) -> Result<UnitFile, ParseError> {
        let mut file = UnitFile::default();
        file.merge(path, contents)?;
        Ok(file)
    }

    /// Parses `contents` (a drop-in) and adds its entries after the ones already here.
    pub fn merge(&mut self, path: &str, contents: &str) -> Result<(), ParseError> {
        let mut current: Option<usize> = None;
        let mut pending: Option<(String, usize)> = None;
        for (i, raw) in contents.lines().enumerate() {
            let lineno = i + 1;
            let line = raw.trim();
            if let Some((ref mut acc, _)) = pending {
                if line.starts_with('#') || line.starts_with(';') {
                    continue;
                }
                if let Some(more) = line.strip_suffix('\\') {
                    acc.push(' ');
                    acc.push_str(more);
                    continue;
                }
                acc.push(' ');
                acc.push_str(line);
                let (acc, start) = pending.take().unwrap();
                self.push_line(path, start, &acc, current)?;
                continue;
            }
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                let name = line
                    .strip_prefix('[')
                    .and_then(|l| l.strip_suffix(']'))
                    .ok_or_else(|| {
                        ParseError::new(path, lineno, format!("malformed section header {line:?}"))
                    })?;
                current = Some(self.section_index(name));
                continue;
            }
            if let Some(start) = line.strip_suffix('\\') {
                pending = Some((start.to_string(), lineno));
                continue;
            }
            self.push_line(path, lineno, line, current)?;
        }
        if let Some((acc, start)) = pending {
            self.push_line(path, start, &acc, current)?;
        }
        Ok(())
    }

    fn section_index(&mut self, name: &str) -> usize {
        match self.sections.iter().position(|s| s.name == name) {
            Some(i) => i,
            None => {
                self.sections.push(Section {
                    name: name.to_string(),
                    entries: Vec::new(),
                });
                self.sections.len() - 1
            }
        }
    }

    fn push_line(
        &mut self,
        path: &str,
        lineno: usize,
        line: &str,
        current: Option<usize>,
    ) -> Result<(), ParseError> {
        let (key, value) = line.split_once('=').ok_or_else(|| {
            ParseError::new(path, lineno, format!("expected Key=value, found {line:?}"))
        })?;
        let key = key.trim();
        if key.is_empty() {
            return Err(ParseError::new(path, lineno, "empty key"));
        }
        let section = current.ok_or_else(|| {
            ParseError::new(path, lineno, format!("{key}= outside of any [section]"))
        })?;
        self.sections[section].entries.push(Entry {
            key: key.to_string(),
            value: value.trim().to_string(),
            file: path.to_string(),
            line: lineno,
        });
        Ok(())
    }

    /// The section called `name`, if present.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The last value of `key` in `section` (for single-valued settings; an empty
    /// assignment counts and means "reset to default", returned as `None`).
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        let e = self
            .section(section)?
            .entries
            .iter()
            .rev()
            .find(|e| e.key == key)?;
        if e.value.is_empty() {
            None
        } else {
            Some(&e.value)
        }
    }

    /// Every value of a list-valued `key` in `section`, in order, where an empty assignment
    /// clears what came before it (`ExecStart=` in a drop-in replaces the command).
    pub fn get_all(&self, section: &str, key: &str) -> Vec<&str> {
        let mut out = Vec::new();
        if let Some(s) = self.section(section) {
            for e in s.entries.iter().filter(|e| e.key == key) {
                if e.value.is_empty() {
                    out.clear();
                } else {
                    out.push(e.value.as_str());
                }
            }
        }
        out
    }

    /// Like [`get_all`](Self::get_all) but each value is itself a whitespace-separated list
    /// (`After=a.service b.service`), flattened.
    pub fn get_words(&self, section: &str, key: &str) -> Vec<String> {
        self.get_all(section, key)
            .into_iter()
            .flat_map(|v| split_words(v).unwrap_or_default())
            .collect()
    }

    /// The boolean `key` in `section`, or `None` when absent or not a boolean.
    pub fn get_bool(&self, section: &str, key: &str) -> Option<bool> {
        self.get(section, key).and_then(parse_bool)
    }

    /// The time span `key` in `section` (bare numbers are seconds).
    pub fn get_span(&self, section: &str, key: &str) -> Option<TimeSpan> {
        self.get(section, key).and_then(timespan::parse_sec)
    }
}

/// Parses a systemd boolean (`yes`/`no`, `true`/`false`, `on`/`off`, `1`/`0`).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

/// The parts of a unit name: `getty@tty1.service` is prefix `getty`, instance `tty1`,
/// suffix `service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitName {
    /// The whole name.
    pub name: String,
    /// Before the `@` (or the whole stem when there is no `@`).
    pub prefix: String,
    /// After the `@`: `Some("")` for a template (`getty@.service`), `None` for a plain unit.
    pub instance: Option<String>,
    /// The unit type (`service`, `timer`, `target`, `socket`, …).
    pub suffix: String,
}

impl UnitName {
    /// Splits a unit name; `None` when it has no type suffix.
    pub fn parse(name: &str) -> Option<UnitName> {
        let (stem, suffix) = name.rsplit_once('.')?;
        if stem.is_empty() || suffix.is_empty() || name.contains('/') {
            return None;
        }
        let (prefix, instance) = match stem.split_once('@') {
            Some((p, i)) => (p.to_string(), Some(i.to_string())),
            None => (stem.to_string(), None),
        };
        Some(UnitName {
            name: name.to_string(),
            prefix,
            instance,
            suffix: suffix.to_string(),
        })
    }

    /// The template this instance comes from (`getty@.service`), if it is an instance.
    pub fn template(&self) -> Option<String> {
        match &self.instance {
            Some(i) if !i.is_empty() => Some(format!("{}@.{}", self.prefix, self.suffix)),
            _ => None,
        }
    }
}

/// Undoes systemd's unit-name escaping: `-` is `/`, `\xNN` a byte (used by `%I`, `%P`).
pub fn unescape_name(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'-' {
            out.push(b'/');
        } else if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
            if let Ok(v) = u8::from_str_radix(&s[i + 2..i + 4], 16) {
                out.push(v);
                i += 4;
                continue;
            }
            out.push(b[i]);
        } else {
            out.push(b[i]);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the loader needs to expand specifiers it cannot find in the files.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Value of `%H`/`%l` (left unexpanded when `None`).
    pub hostname: Option<String>,
    /// Value of `%m` (left unexpanded when `None`).
    pub machine_id: Option<String>,
}

/// A unit loaded from the search path: its name, where it came from, and its merged contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The name it was asked for (an instance name for templates).
    pub name: String,
    /// The name of the file that defines it, when different (an alias target or a template).
    pub fragment_name: String,
    /// The path of the unit file inside the root.
    pub fragment_path: String,
    /// The drop-in files applied, in order.
    pub dropins: Vec<String>,
    /// Contents of the unit and its drop-ins, with specifiers expanded.
    pub file: UnitFile,
}

/// The result of looking a unit up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// No file defines it.
    NotFound,
    /// It is masked (a link to `/dev/null`, or an empty file) at this path.
    Masked(String),
    /// Found and parsed.
    Found(Unit),
}

/// Finds where `name` is defined: the first search-path directory holding `name` (or, for an
/// instance, its template). Follows alias symlinks to another unit name. Returns the path,
/// the name of the defining file, and whether it is masked.
fn find_fragment(fs: &dyn FileSystem, name: &str) -> Option<(String, String, bool)> {
    let parsed = UnitName::parse(name)?;
    let mut candidates = vec![name.to_string()];
    if let Some(t) = parsed.template() {
        candidates.push(t);
    }
    for cand in &candidates {
        for dir in search_path() {
            let path = format!("{dir}/{cand}");
            if !fs.exists(&path) {
                continue;
            }
            let mut cur_path = path.clone();
            let mut cur_name = cand.clone();
            // Follow symlinks: to /dev/null = masked, to another unit file = alias.
            for _ in 0..16 {
                match fs.read_link(&cur_path) {
                    Ok(Some(target)) => {
                        if target == "/dev/null" {
                            return Some((path, cur_name, true));
                        }
                        let abs = if target.starts_with('/') {
                            target.clone()
                        } else {
                            let parent = cur_path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                            format!("{parent}/{target}")
                        };
                        if let Some(base) = abs.rsplit('/').next() {
                            if UnitName::parse(base).is_some() {
                                cur_name = base.to_string();
                            }
                        }
                        cur_path = abs;
                    }
                    _ => break,
                }
            }
            // An empty unit file is masked too.
            let masked = fs.read(&cur_path).map(|b| b.is_empty()).unwrap_or(false);
            return Some((cur_path, cur_name, masked));
        }
    }
    None
}

/// The drop-in files for a unit, in the order systemd applies them: every `*.conf` in
/// `NAME.d/` (and the template's `PREFIX@.TYPE.d/`, and the type-wide `TYPE.d/`) across the
/// search path, a file in a higher-priority directory hiding one with the same name lower
/// down, sorted by file name.
pub fn dropins(fs: &dyn FileSystem, name: &str, aliases: &[&str]) -> Vec<String> {
    let Some(parsed) = UnitName::parse(name) else {
        return Vec::new();
    };
    let mut dirs = vec![format!("{}.d", parsed.suffix)];
    if let Some(t) = parsed.template() {
        dirs.push(format!("{t}.d"));
    }
    for a in aliases {
        dirs.push(format!("{a}.d"));
    }
    dirs.push(format!("{name}.d"));
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    // Lowest priority first so higher ones overwrite.
    for base in search_path().rev() {
        for d in &dirs {
            let dir = format!("{base}/{d}");
            if let Ok(mut names) = fs.read_dir(&dir) {
                names.sort();
                for n in names.into_iter().filter(|n| n.ends_with(".conf")) {
                    by_name.insert(n.clone(), format!("{dir}/{n}"));
                }
            }
        }
    }
    by_name.into_values().collect()
}

/// Loads unit `name` (`ssh.service`, `getty@tty1.service`) from the root: finds its file on
/// the search path (following aliases, recognising masks), applies its drop-ins, and expands
/// specifiers (`%n %N %p %P %i %I %f %j %J %t %S %C %L %E %T %V %h %u %U %g %G %H %l %m %%`).
pub fn lookup(fs: &dyn FileSystem, name: &str, opts: &LoadOptions) -> Result<Lookup, ParseError> {
    if UnitName::parse(name).is_none() {
        return Err(ParseError::new(
            name,
            0,
            "not a unit name (expected NAME.TYPE)",
        ));
    }
    let Some((path, fragment_name, masked)) = find_fragment(fs, name) else {
        return Ok(Lookup::NotFound);
    };
    if masked {
        return Ok(Lookup::Masked(path));
    }
    let bytes = fs
        .read(&path)
        .map_err(|e| ParseError::new(&path, 0, format!("cannot read: {e}")))?;
    let mut file = UnitFile::parse(&path, &text(&bytes))?;
    let alias: Vec<&str> = if fragment_name != name && !fragment_name.contains("@.") {
        vec![fragment_name.as_str()]
    } else {
        vec![]
    };
    let drops = dropins(fs, name, &alias);
    for d in &drops {
        let bytes = fs
            .read(d)
            .map_err(|e| ParseError::new(d, 0, format!("cannot read: {e}")))?;
        file.merge(d, &text(&bytes))?;
    }
    let ctx = Specifiers::new(name, &path, opts);
    for s in &mut file.sections {
        for e in &mut s.entries {
            e.value = ctx.expand(&e.value);
        }
    }
    Ok(Lookup::Found(Unit {
        name: name.to_string(),
        fragment_name,
        fragment_path: path,
        dropins: drops,
        file,
    }))
}

/// [`lookup`] for callers that treat "not found" and "masked" alike: `Ok(None)` for both.
pub fn load(
    fs: &dyn FileSystem,
    name: &str,
    opts: &LoadOptions,
) -> Result<Option<Unit>, ParseError> {
    match lookup(fs, name, opts)? {
        Lookup::Found(u) => Ok(Some(u)),
        _ => Ok(None),
    }
}

struct Specifiers {
    map: BTreeMap<char, String>,
}

impl Specifiers {
    fn new(name: &str, path: &str, opts: &LoadOptions) -> Self {
        let parsed = UnitName::parse(name).expect("checked by caller");
        let stem = name.rsplit_once('.').map(|(s, _)| s).unwrap_or(name);
        let instance = parsed.instance.clone().unwrap_or_default();
        let mut m = BTreeMap::new();
        m.insert('n', name.to_string());
        m.insert('N', stem.to_string());
        m.insert('p', parsed.prefix.clone());
        m.insert('P', unescape_name(&parsed.prefix));
        m.insert('i', instance.clone());
        m.insert('I', unescape_name(&instance));
        let f = if instance.is_empty() {
            unescape_name(&parsed.prefix)
        } else {
            unescape_name(&instance)
        };
        m.insert(
            'f',
            if f.starts_with('/') {
                f
            } else {
                format!("/{f}")
            },
        );
        let j = parsed
            .prefix
            .rsplit('-')
            .next()
            .unwrap_or(&parsed.prefix)
            .to_string();
        m.insert('J', unescape_name(&j));
        m.insert('j', j);
        m.insert('t', "/run".into());
        m.insert('S', "/var/lib".into());
        m.insert('C', "/var/cache".into());
        m.insert('L', "/var/log".into());
        m.insert('E', "/etc".into());
        m.insert('T', "/tmp".into());
        m.insert('V', "/var/tmp".into());
        // The system manager runs as root: these are root's, as in systemd.
        m.insert('h', "/root".into());
        m.insert('u', "root".into());
        m.insert('U', "0".into());
        m.insert('g', "root".into());
        m.insert('G', "0".into());
        m.insert('s', "/bin/sh".into());
        m.insert('y', path.to_string());
        m.insert(
            'Y',
            path.rsplit_once('/')
                .map(|(d, _)| d.to_string())
                .unwrap_or_default(),
        );
        if let Some(h) = &opts.hostname {
            m.insert('H', h.clone());
            m.insert('l', h.split('.').next().unwrap_or(h).to_string());
        }
        if let Some(id) = &opts.machine_id {
            m.insert('m', id.clone());
        }
        Specifiers { map: m }
    }

    fn expand(&self, v: &str) -> String {
        if !v.contains('%') {
            return v.to_string();
        }
        let mut out = String::with_capacity(v.len());
        let mut chars = v.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some(s) => match self.map.get(&s) {
                    Some(val) => out.push_str(val),
                    None => {
                        out.push('%');
                        out.push(s);
                    }
                },
                None => out.push('%'),
            }
        }
        out
    }
}

/// Splits a value into words with systemd's quoting: whitespace separates, `"…"` and `'…'`
/// quote, and C-style escapes (`\n`, `\t`, `\\`, `\"`, `\xNN`, `\NNN`, `\s`) are decoded.
/// Returns `None` for an unterminated quote.
pub fn split_words(v: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, ' ' | '\t' | '\n') => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => {
                in_word = true;
                let e = chars.next()?;
                match e {
                    'n' => cur.push('\n'),
                    't' => cur.push('\t'),
                    'r' => cur.push('\r'),
                    'a' => cur.push('\x07'),
                    'b' => cur.push('\x08'),
                    'f' => cur.push('\x0c'),
                    'v' => cur.push('\x0b'),
                    's' => cur.push(' '),
                    'x' => {
                        let h: String = [chars.next()?, chars.next()?].iter().collect();
                        cur.push(u8::from_str_radix(&h, 16).ok()? as char);
                    }
                    '0'..='7' => {
                        let o: String = [e, chars.next()?, chars.next()?].iter().collect();
                        cur.push(u8::from_str_radix(&o, 8).ok()? as char);
                    }
                    other => cur.push(other),
                }
            }
            (_, c) => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if quote.is_some() {
        return None;
    }
    if in_word {
        words.push(cur);
    }
    Some(words)
}

/// The flags in front of an `Exec*=` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExecFlags {
    /// `-`: a failing exit status is ignored.
    pub ignore_failure: bool,
    /// `@`: the second word is argv\[0\] (the first is the program).
    pub argv0: bool,
    /// `+`: runs with full privileges (no User=/Group=, no sandboxing).
    pub privileged: bool,
    /// `!`: runs without the credential changes of `User=`, `Group=` and
    /// `SupplementaryGroups=` (as root), sandboxing still applied.
    pub ambient: bool,
    /// `!!`: like `!` only on systems without ambient capabilities (Linux has them: the
    /// command runs as `User=`).
    pub ambient_fallback: bool,
    /// `:`: no environment variable substitution.
    pub no_env_expand: bool,
}

/// One command of an `Exec*=` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCommand {
    /// The prefix flags.
    pub flags: ExecFlags,
    /// The program to run (an absolute path, or a bare name looked up in `/usr/bin` etc.).
    pub path: String,
    /// The arguments, argv\[0\] included, before environment substitution.
    pub argv: Vec<String>,
}

impl ExecCommand {
    /// Parses one `Exec*=` value, which may hold several commands separated by a lone `;`.
    pub fn parse_line(value: &str) -> Option<Vec<ExecCommand>> {
        let words = split_words(value)?;
        let mut out = Vec::new();
        for group in words.split(|w| w == ";") {
            if group.is_empty() {
                continue;
            }
            let mut first = group[0].as_str();
            let mut flags = ExecFlags::default();
            loop {
                if let Some(r) = first.strip_prefix("!!") {
                    flags.ambient_fallback = true;
                    first = r;
                } else if let Some(r) = first.strip_prefix('-') {
                    flags.ignore_failure = true;
                    first = r;
                } else if let Some(r) = first.strip_prefix('@') {
                    flags.argv0 = true;
                    first = r;
                } else if let Some(r) = first.strip_prefix('+') {
                    flags.privileged = true;
                    first = r;
                } else if let Some(r) = first.strip_prefix('!') {
                    flags.ambient = true;
                    first = r;
                } else if let Some(r) = first.strip_prefix(':') {
                    flags.no_env_expand = true;
                    first = r;
                } else {
                    break;
                }
            }
            if first.is_empty() {
                return None;
            }
            let path = first.to_string();
            let argv: Vec<String> = if flags.argv0 {
                group[1..].to_vec()
            } else {
                std::iter::once(path.clone())
                    .chain(group[1..].iter().cloned())
                    .collect()
            };
            if argv.is_empty() {
                return None;
            }
            out.push(ExecCommand { flags, path, argv });
        }
        Some(out)
    }

    /// The arguments with environment variables substituted as systemd does: a word that is
    /// exactly `$NAME` becomes the value split at whitespace (possibly zero words); `${NAME}`
    /// anywhere is replaced by the value as part of its word; `$$` is a literal `$`.
    /// Nothing is substituted when the command has the `:` prefix.
    pub fn expand_argv(&self, env: &BTreeMap<String, String>) -> Vec<String> {
        if self.flags.no_env_expand {
            return self.argv.clone();
        }
        let mut out = Vec::new();
        for a in &self.argv {
            if let Some(name) = a.strip_prefix('$') {
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    if let Some(v) = env.get(name) {
                        out.extend(v.split_whitespace().map(str::to_string));
                    }
                    continue;
                }
            }
            out.push(expand_braced(a, env));
        }
        out
    }
}

fn expand_braced(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            match r.find('}') {
                Some(end) => {
                    out.push_str(env.get(&r[..end]).map(String::as_str).unwrap_or(""));
                    rest = &r[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Parses `Environment=` values: each is a list of (possibly quoted) `NAME=value`
/// assignments. Later assignments win; an empty `Environment=` clears the list.
pub fn parse_environment(values: &[&str]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for v in values {
        for w in split_words(v).unwrap_or_default() {
            if let Some((k, val)) = w.split_once('=') {
                out.retain(|(old, _)| old != k);
                out.push((k.to_string(), val.to_string()));
            }
        }
    }
    out
}

/// Parses an environment file (`EnvironmentFile=`): `NAME=value` lines, `#`/`;` comments,
/// single and double quotes, backslash continuation lines, an optional `export ` prefix.
pub fn parse_environment_file(contents: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut lines = contents.lines();
    while let Some(line) = lines.next() {
        let mut line = line.trim().to_string();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        while line.ends_with('\\') {
            line.pop();
            match lines.next() {
                Some(n) => line.push_str(n.trim_start()),
                None => break,
            }
        }
        let line = line.strip_prefix("export ").unwrap_or(&line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let v = v.trim();
        let value = if (v.starts_with('"') && v.ends_with('"') && v.len() >= 2)
            || (v.starts_with('\'') && v.ends_with('\'') && v.len() >= 2)
        {
            let inner = &v[1..v.len() - 1];
            if v.starts_with('"') {
                inner.replace("\\\"", "\"").replace("\\\\", "\\")
            } else {
                inner.to_string()
            }
        } else {
            // Unquoted: a trailing comment is not part of the value.
            v.split(" #").next().unwrap_or(v).trim_end().to_string()
        };
        out.retain(|(old, _)| old != k);
        out.push((k.to_string(), value));
    }
    out
}

/// `Type=` of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServiceType {
    /// `simple` (the default when `ExecStart=` is set): started as soon as forked.
    #[default]
    Simple,
    /// `exec`: started once the program has been executed.
    Exec,
    /// `forking`: started when the start command exits; the daemon is its child.
    Forking,
    /// `oneshot`: started (or done) when the command exits.
    Oneshot,
    /// `notify`: started when the program sends `READY=1` on `$NOTIFY_SOCKET`.
    Notify,
    /// `notify-reload`: as `notify`, reloads with a signal.
    NotifyReload,
    /// `dbus`: started when a bus name is taken (treated as `simple` without a bus).
    Dbus,
    /// `idle`: as `simple`, started after other jobs.
    Idle,
}

impl ServiceType {
    /// The name as `Type=` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::Simple => "simple",
            ServiceType::Exec => "exec",
            ServiceType::Forking => "forking",
            ServiceType::Oneshot => "oneshot",
            ServiceType::Notify => "notify",
            ServiceType::NotifyReload => "notify-reload",
            ServiceType::Dbus => "dbus",
            ServiceType::Idle => "idle",
        }
    }

    fn parse(v: &str) -> Option<ServiceType> {
        Some(match v {
            "simple" => ServiceType::Simple,
            "exec" => ServiceType::Exec,
            "forking" => ServiceType::Forking,
            "oneshot" => ServiceType::Oneshot,
            "notify" => ServiceType::Notify,
            "notify-reload" => ServiceType::NotifyReload,
            "dbus" => ServiceType::Dbus,
            "idle" => ServiceType::Idle,
            _ => return None,
        })
    }
}

/// `Restart=` of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// `no` (default).
    #[default]
    No,
    /// `always`.
    Always,
    /// `on-success`: only after a clean exit.
    OnSuccess,
    /// `on-failure`: after an unclean exit code, a signal, a timeout.
    OnFailure,
    /// `on-abnormal`: after a signal or a timeout.
    OnAbnormal,
    /// `on-abort`: after an uncaught signal.
    OnAbort,
    /// `on-watchdog`: after a watchdog timeout.
    OnWatchdog,
}

impl RestartPolicy {
    fn parse(v: &str) -> Option<RestartPolicy> {
        Some(match v {
            "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "on-success" => RestartPolicy::OnSuccess,
            "on-failure" => RestartPolicy::OnFailure,
            "on-abnormal" => RestartPolicy::OnAbnormal,
            "on-abort" => RestartPolicy::OnAbort,
            "on-watchdog" => RestartPolicy::OnWatchdog,
            _ => return None,
        })
    }
}

/// `KillMode=` of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KillMode {
    /// `control-group` (default): every process of the service.
    #[default]
    ControlGroup,
    /// `mixed`: the stop signal to the main process, SIGKILL to the rest.
    Mixed,
    /// `process`: only the main process.
    Process,
    /// `none`: nothing is killed.
    None,
}

/// A `Condition*=` or `Assert*=` check of the `[Unit]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The key without the `Condition`/`Assert` prefix (`PathExists`).
    pub kind: String,
    /// `Assert*` (failure is an error) rather than `Condition*` (failure skips the unit).
    pub assert: bool,
    /// A leading `!`: the check is negated.
    pub negate: bool,
    /// A leading `|`: a triggering condition (any one of them suffices).
    pub trigger: bool,
    /// The argument (a path, a word).
    pub value: String,
}

/// The typed `[Unit]` section: ordering, requirements, conditions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitSection {
    /// `Description=`.
    pub description: Option<String>,
    /// `After=`: start after these (ordering only).
    pub after: Vec<String>,
    /// `Before=`: start before these (ordering only).
    pub before: Vec<String>,
    /// `Requires=` and `BindsTo=`: these must start too; if they fail, this one does not start.
    pub requires: Vec<String>,
    /// `Wants=`: start these too, failures are fine.
    pub wants: Vec<String>,
    /// `Requisite=`: must already be started.
    pub requisite: Vec<String>,
    /// `Conflicts=`.
    pub conflicts: Vec<String>,
    /// `PartOf=`.
    pub part_of: Vec<String>,
    /// `BindsTo=` (also in [`requires`](Self::requires)): stop when they stop, for any reason.
    pub binds_to: Vec<String>,
    /// `OnFailure=`: units to start when this one fails.
    pub on_failure: Vec<String>,
    /// `Condition*=` / `Assert*=` checks, in order.
    pub conditions: Vec<Condition>,
    /// `DefaultDependencies=` (default yes).
    pub default_dependencies: bool,
    /// `StartLimitIntervalSec=` (also accepted from `[Service] StartLimitInterval=`).
    pub start_limit_interval: Option<TimeSpan>,
    /// `StartLimitBurst=` (also accepted from `[Service]`).
    pub start_limit_burst: Option<u32>,
}

/// The typed `[Service]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Service {
    /// `Type=`; without it: `simple` if there is an `ExecStart=`, `oneshot` otherwise.
    pub service_type: ServiceType,
    /// `RemainAfterExit=`.
    pub remain_after_exit: bool,
    /// `ExecCondition=`.
    pub exec_condition: Vec<ExecCommand>,
    /// `ExecStartPre=`.
    pub exec_start_pre: Vec<ExecCommand>,
    /// `ExecStart=`.
    pub exec_start: Vec<ExecCommand>,
    /// `ExecStartPost=`.
    pub exec_start_post: Vec<ExecCommand>,
    /// `ExecReload=`.
    pub exec_reload: Vec<ExecCommand>,
    /// `ExecStop=`.
    pub exec_stop: Vec<ExecCommand>,
    /// `ExecStopPost=`.
    pub exec_stop_post: Vec<ExecCommand>,
    /// `Environment=`, in order, later names winning.
    pub environment: Vec<(String, String)>,
    /// `EnvironmentFile=`: (path, optional) — optional when written with a leading `-`.
    pub environment_files: Vec<(String, bool)>,
    /// `User=`.
    pub user: Option<String>,
    /// `Group=`.
    pub group: Option<String>,
    /// `SupplementaryGroups=`.
    pub supplementary_groups: Vec<String>,
    /// `WorkingDirectory=`: (path, optional); `~` means the user's home.
    pub working_directory: Option<(String, bool)>,
    /// `PIDFile=`.
    pub pid_file: Option<String>,
    /// `Restart=`.
    pub restart: RestartPolicy,
    /// `RestartSec=` (default 100 ms).
    pub restart_sec: Duration,
    /// `TimeoutStartSec=` (or `TimeoutSec=`); default 90 s.
    pub timeout_start: TimeSpan,
    /// `TimeoutStopSec=` (or `TimeoutSec=`); default 90 s.
    pub timeout_stop: TimeSpan,
    /// `KillMode=`.
    pub kill_mode: KillMode,
    /// `KillSignal=` as written (`SIGTERM`, `SIGQUIT`, `15`); default `SIGTERM`.
    pub kill_signal: String,
    /// `SendSIGKILL=` (default yes).
    pub send_sigkill: bool,
    /// `RuntimeDirectory=` (relative to /run).
    pub runtime_directory: Vec<String>,
    /// `StateDirectory=` (relative to /var/lib).
    pub state_directory: Vec<String>,
    /// `LogsDirectory=` (relative to /var/log).
    pub logs_directory: Vec<String>,
    /// `CacheDirectory=` (relative to /var/cache).
    pub cache_directory: Vec<String>,
    /// `ConfigurationDirectory=` (relative to /etc).
    pub configuration_directory: Vec<String>,
    /// `RuntimeDirectoryMode=`, `StateDirectoryMode=`, … (each 0755 by default).
    pub directory_modes: DirectoryModes,
    /// `UMask=`.
    pub umask: Option<u32>,
    /// `Nice=`.
    pub nice: Option<i32>,
    /// `LimitNOFILE=` (soft, hard).
    pub limit_nofile: Option<(u64, u64)>,
    /// `SuccessExitStatus=` exit codes counted as success besides 0.
    pub success_exit_status: Vec<i32>,
    /// `RestartPreventExitStatus=`.
    pub restart_prevent_exit_status: Vec<i32>,
    /// `PermissionsStartOnly=` (legacy): pre/post commands run privileged.
    pub permissions_start_only: bool,
    /// `SyslogIdentifier=`.
    pub syslog_identifier: Option<String>,
    /// `StandardInput=` as written (`socket` for a socket unit's instances).
    pub standard_input: Option<String>,
    /// `StandardOutput=` as written.
    pub standard_output: Option<String>,
    /// `StandardError=` as written.
    pub standard_error: Option<String>,
    /// `NotifyAccess=`.
    pub notify_access: Option<String>,
    /// Settings whose syntax could not be understood: (key, value, where).
    pub invalid: Vec<(String, String, String)>,
}

/// The typed `[Timer]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Timer {
    /// `OnCalendar=` expressions as written (parse them with [`super::calendar`]).
    pub on_calendar: Vec<String>,
    /// `OnBootSec=` and `OnStartupSec=` (in a container both mean "after the init started").
    pub on_boot: Vec<Duration>,
    /// `OnActiveSec=`: after the timer itself was started.
    pub on_active: Vec<Duration>,
    /// `OnUnitActiveSec=`: after the unit it fires was last started.
    pub on_unit_active: Vec<Duration>,
    /// `OnUnitInactiveSec=`: after the unit it fires last stopped.
    pub on_unit_inactive: Vec<Duration>,
    /// `Unit=`; default: the timer's name with `.service`.
    pub unit: Option<String>,
    /// `Persistent=`.
    pub persistent: bool,
    /// `RandomizedDelaySec=`.
    pub randomized_delay: Option<Duration>,
}

/// The typed `[Install]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Install {
    /// `WantedBy=`.
    pub wanted_by: Vec<String>,
    /// `RequiredBy=`.
    pub required_by: Vec<String>,
    /// `Alias=`.
    pub alias: Vec<String>,
    /// `Also=`.
    pub also: Vec<String>,
    /// `DefaultInstance=`.
    pub default_instance: Option<String>,
}

/// A timeout of 0 is no timeout.
fn no_limit_at_zero(t: TimeSpan) -> TimeSpan {
    match t {
        TimeSpan::Finite(d) if d.is_zero() => TimeSpan::Infinity,
        other => other,
    }
}

/// The modes of the directories a service gets (`RuntimeDirectoryMode=` and the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryModes {
    /// `RuntimeDirectoryMode=`.
    pub runtime: u32,
    /// `StateDirectoryMode=`.
    pub state: u32,
    /// `CacheDirectoryMode=`.
    pub cache: u32,
    /// `LogsDirectoryMode=`.
    pub logs: u32,
    /// `ConfigurationDirectoryMode=`.
    pub configuration: u32,
}

impl Default for DirectoryModes {
    fn default() -> Self {
        DirectoryModes {
            runtime: 0o755,
            state: 0o755,
            cache: 0o755,
            logs: 0o755,
            configuration: 0o755,
        }
    }
}

/// Keys of each section that the typed views read. The init logs every other key once.
pub const KNOWN_KEYS: &[(&str, &[&str])] = &[
    (
        "Unit",
        &[
            "Description",
            "Documentation",
            "After",
            "Before",
            "Requires",
            "BindsTo",
            "Wants",
            "Requisite",
            "Conflicts",
            "PartOf",
            "OnFailure",
            "DefaultDependencies",
            "StartLimitIntervalSec",
            "StartLimitInterval",
            "StartLimitBurst",
            "SourcePath",
            "IgnoreOnIsolate",
            "RefuseManualStart",
            "RefuseManualStop",
            "AllowIsolate",
            "StopWhenUnneeded",
        ],
    ),
    (
        "Service",
        &[
            "Type",
            "RemainAfterExit",
            "ExecCondition",
            "ExecStartPre",
            "ExecStart",
            "ExecStartPost",
            "ExecReload",
            "ExecStop",
            "ExecStopPost",
            "Environment",
            "EnvironmentFile",
            "User",
            "Group",
            "SupplementaryGroups",
            "WorkingDirectory",
            "PIDFile",
            "Restart",
            "RestartSec",
            "TimeoutSec",
            "TimeoutStartSec",
            "TimeoutStopSec",
            "KillMode",
            "KillSignal",
            "SendSIGKILL",
            "RuntimeDirectory",
            "StateDirectory",
            "LogsDirectory",
            "CacheDirectory",
            "ConfigurationDirectory",
            "RuntimeDirectoryMode",
            "StateDirectoryMode",
            "LogsDirectoryMode",
            "CacheDirectoryMode",
            "ConfigurationDirectoryMode",
            "UMask",
            "Nice",
            "LimitNOFILE",
            "SuccessExitStatus",
            "RestartPreventExitStatus",
            "PermissionsStartOnly",
            "SyslogIdentifier",
            "StandardInput",
            "StandardOutput",
            "StandardError",
            "NotifyAccess",
            "StartLimitInterval",
            "StartLimitBurst",
            "GuessMainPID",
        ],
    ),
    (
        "Timer",
        &[
            "OnCalendar",
            "OnBootSec",
            "OnStartupSec",
            "OnActiveSec",
            "OnUnitActiveSec",
            "OnUnitInactiveSec",
            "Unit",
            "Persistent",
            "RandomizedDelaySec",
            "AccuracySec",
        ],
    ),
    (
        "Install",
        &["WantedBy", "RequiredBy", "Alias", "Also", "DefaultInstance"],
    ),
];

impl Unit {
    /// The parsed name of this unit.
    pub fn unit_name(&self) -> UnitName {
        UnitName::parse(&self.name).expect("checked when loaded")
    }

    /// The typed `[Unit]` section.
    pub fn unit_section(&self) -> UnitSection {
        let f = &self.file;
        let mut requires = f.get_words("Unit", "Requires");
        requires.extend(f.get_words("Unit", "BindsTo"));
        let mut conditions = Vec::new();
        if let Some(s) = f.section("Unit") {
            for e in &s.entries {
                let (assert, kind) = if let Some(k) = e.key.strip_prefix("Condition") {
                    (false, k)
                } else if let Some(k) = e.key.strip_prefix("Assert") {
                    (true, k)
                } else {
                    continue;
                };
                if e.value.is_empty() {
                    conditions.retain(|c: &Condition| c.kind != kind);
                    continue;
                }
                let mut v = e.value.as_str();
                let trigger = v.starts_with('|');
                v = v.trim_start_matches('|');
                let negate = v.starts_with('!');
                v = v.trim_start_matches('!');
                conditions.push(Condition {
                    kind: kind.to_string(),
                    assert,
                    negate,
                    trigger,
                    value: v.to_string(),
                });
            }
        }
        let interval = f
            .get_span("Unit", "StartLimitIntervalSec")
            .or_else(|| f.get_span("Unit", "StartLimitInterval"))
            .or_else(|| f.get_span("Service", "StartLimitInterval"));
        let burst = f
            .get("Unit", "StartLimitBurst")
            .or_else(|| f.get("Service", "StartLimitBurst"))
            .and_then(|v| v.parse().ok());
        UnitSection {
            description: f.get("Unit", "Description").map(str::to_string),
            after: f.get_words("Unit", "After"),
            before: f.get_words("Unit", "Before"),
            requires,
            wants: f.get_words("Unit", "Wants"),
            requisite: f.get_words("Unit", "Requisite"),
            conflicts: f.get_words("Unit", "Conflicts"),
            part_of: f.get_words("Unit", "PartOf"),
            binds_to: f.get_words("Unit", "BindsTo"),
            on_failure: f.get_words("Unit", "OnFailure"),
            conditions,
            default_dependencies: f.get_bool("Unit", "DefaultDependencies").unwrap_or(true),
            start_limit_interval: interval,
            start_limit_burst: burst,
        }
    }

    /// The typed `[Service]` section (defaults where a key is absent; a value that cannot be
    /// parsed keeps the default and is listed in [`Service::invalid`]).
    pub fn service(&self) -> Service {
        let f = &self.file;
        let mut invalid = Vec::new();
        let mut bad = |key: &str, value: &str| {
            let at = f
                .section("Service")
                .and_then(|s| s.entries.iter().rev().find(|e| e.key == key))
                .map(|e| format!("{}:{}", e.file, e.line))
                .unwrap_or_default();
            invalid.push((key.to_string(), value.to_string(), at));
        };
        let mut exec = |key: &str| -> Vec<ExecCommand> {
            let mut out = Vec::new();
            for v in f.get_all("Service", key) {
                match ExecCommand::parse_line(v) {
                    Some(cmds) => out.extend(cmds),
                    None => bad(key, v),
                }
            }
            out
        };
        let exec_condition = exec("ExecCondition");
        let exec_start_pre = exec("ExecStartPre");
        let exec_start = exec("ExecStart");
        let exec_start_post = exec("ExecStartPost");
        let exec_reload = exec("ExecReload");
        let exec_stop = exec("ExecStop");
        let exec_stop_post = exec("ExecStopPost");
        let service_type = match f.get("Service", "Type") {
            Some(t) => ServiceType::parse(t).unwrap_or_else(|| {
                bad("Type", t);
                ServiceType::Simple
            }),
            None if exec_start.is_empty() => ServiceType::Oneshot,
            None => ServiceType::Simple,
        };
        let span = |key: &str, bad: &mut dyn FnMut(&str, &str)| -> Option<TimeSpan> {
            let v = f.get("Service", key)?;
            let s = timespan::parse_sec(v);
            if s.is_none() {
                bad(key, v);
            }
            s
        };
        let timeout = span("TimeoutSec", &mut bad);
        let default_timeout = TimeSpan::Finite(Duration::from_secs(90));
        // `0` turns a timeout off, as `infinity` does (postgresql@.service has
        // `TimeoutStartSec=0`, redis-server.service `TimeoutStopSec=0`).
        let timeout = timeout.map(no_limit_at_zero);
        let timeout_start = span("TimeoutStartSec", &mut bad)
            .map(no_limit_at_zero)
            .or(timeout)
            .unwrap_or(default_timeout);
        let timeout_stop = span("TimeoutStopSec", &mut bad)
            .map(no_limit_at_zero)
            .or(timeout)
            .unwrap_or(default_timeout);
        let restart_sec = span("RestartSec", &mut bad)
            .and_then(TimeSpan::finite)
            .unwrap_or(Duration::from_millis(100));
        let restart = match f.get("Service", "Restart") {
            Some(v) => RestartPolicy::parse(v).unwrap_or_else(|| {
                bad("Restart", v);
                RestartPolicy::No
            }),
            None => RestartPolicy::No,
        };
        let kill_mode = match f.get("Service", "KillMode") {
            Some("control-group") | None => KillMode::ControlGroup,
            Some("mixed") => KillMode::Mixed,
            Some("process") => KillMode::Process,
            Some("none") => KillMode::None,
            Some(v) => {
                bad("KillMode", v);
                KillMode::ControlGroup
            }
        };
        let optional_path = |v: &str| match v.strip_prefix('-') {
            Some(p) => (p.to_string(), true),
            None => (v.to_string(), false),
        };
        let dirs = |key: &str| f.get_words("Service", key);
        let mode = |key: &str| {
            f.get("Service", key)
                .and_then(|v| u32::from_str_radix(v, 8).ok())
        };
        let statuses = |key: &str| -> Vec<i32> {
            f.get_words("Service", key)
                .iter()
                .filter_map(|w| w.parse().ok())
                .collect()
        };
        let limit_nofile = f.get("Service", "LimitNOFILE").and_then(|v| {
            let parse = |x: &str| {
                if x == "infinity" {
                    Some(u64::MAX)
                } else {
                    x.parse().ok()
                }
            };
            match v.split_once(':') {
                Some((s, h)) => Some((parse(s)?, parse(h)?)),
                None => parse(v).map(|n| (n, n)),
            }
        });
        Service {
            service_type,
            remain_after_exit: f.get_bool("Service", "RemainAfterExit").unwrap_or(false),
            exec_condition,
            exec_start_pre,
            exec_start,
            exec_start_post,
            exec_reload,
            exec_stop,
            exec_stop_post,
            environment: parse_environment(&f.get_all("Service", "Environment")),
            environment_files: f
                .get_all("Service", "EnvironmentFile")
                .into_iter()
                .map(optional_path)
                .collect(),
            user: f.get("Service", "User").map(str::to_string),
            group: f.get("Service", "Group").map(str::to_string),
            supplementary_groups: f.get_words("Service", "SupplementaryGroups"),
            working_directory: f.get("Service", "WorkingDirectory").map(optional_path),
            pid_file: f.get("Service", "PIDFile").map(str::to_string),
            restart,
            restart_sec,
            timeout_start,
            timeout_stop,
            kill_mode,
            kill_signal: f
                .get("Service", "KillSignal")
                .unwrap_or("SIGTERM")
                .to_string(),
            send_sigkill: f.get_bool("Service", "SendSIGKILL").unwrap_or(true),
            runtime_directory: dirs("RuntimeDirectory"),
            state_directory: dirs("StateDirectory"),
            logs_directory: dirs("LogsDirectory"),
            cache_directory: dirs("CacheDirectory"),
            configuration_directory: dirs("ConfigurationDirectory"),
            directory_modes: {
                let d = DirectoryModes::default();
                DirectoryModes {
                    runtime: mode("RuntimeDirectoryMode").unwrap_or(d.runtime),
                    state: mode("StateDirectoryMode").unwrap_or(d.state),
                    cache: mode("CacheDirectoryMode").unwrap_or(d.cache),
                    logs: mode("LogsDirectoryMode").unwrap_or(d.logs),
                    configuration: mode("ConfigurationDirectoryMode").unwrap_or(d.configuration),
                }
            },
            umask: mode("UMask"),
            nice: f.get("Service", "Nice").and_then(|v| v.parse().ok()),
            limit_nofile,
            success_exit_status: statuses("SuccessExitStatus"),
            restart_prevent_exit_status: statuses("RestartPreventExitStatus"),
            permissions_start_only: f
                .get_bool("Service", "PermissionsStartOnly")
                .unwrap_or(false),
            syslog_identifier: f.get("Service", "SyslogIdentifier").map(str::to_string),
            standard_input: f.get("Service", "StandardInput").map(str::to_string),
            standard_output: f.get("Service", "StandardOutput").map(str::to_string),
            standard_error: f.get("Service", "StandardError").map(str::to_string),
            notify_access: f.get("Service", "NotifyAccess").map(str::to_string),
            invalid,
        }
    }

    /// The typed `[Timer]` section.
    pub fn timer(&self) -> Timer {
        let f = &self.file;
        let spans = |key: &str| -> Vec<Duration> {
            f.get_all("Timer", key)
                .into_iter()
                .filter_map(|v| timespan::parse_sec(v)?.finite())
                .collect()
        };
        let mut on_boot = spans("OnBootSec");
        on_boot.extend(spans("OnStartupSec"));
        Timer {
            on_calendar: f
                .get_all("Timer", "OnCalendar")
                .into_iter()
                .map(str::to_string)
                .collect(),
            on_boot,
            on_active: spans("OnActiveSec"),
            on_unit_active: spans("OnUnitActiveSec"),
            on_unit_inactive: spans("OnUnitInactiveSec"),
            unit: f.get("Timer", "Unit").map(str::to_string),
            persistent: f.get_bool("Timer", "Persistent").unwrap_or(false),
            randomized_delay: f
                .get_span("Timer", "RandomizedDelaySec")
                .and_then(TimeSpan::finite),
        }
    }

    /// The unit a timer fires: `Unit=`, or the timer's own name with `.service`.
    pub fn timer_target(&self) -> String {
        self.timer().unit.unwrap_or_else(|| {
            let n = self.unit_name();
            let stem = self
                .name
                .strip_suffix(&format!(".{}", n.suffix))
                .unwrap_or(&self.name);
            format!("{stem}.service")
        })
    }

    /// The typed `[Install]` section.
    pub fn install(&self) -> Install {
        let f = &self.file;
        Install {
            wanted_by: f.get_words("Install", "WantedBy"),
            required_by: f.get_words("Install", "RequiredBy"),
            alias: f.get_words("Install", "Alias"),
            also: f.get_words("Install", "Also"),
            default_instance: f.get("Install", "DefaultInstance").map(str::to_string),
        }
    }

    /// Every `(section, key)` present in the files that the typed views do not read, each
    /// once, in file order (sections other than `Unit`/`Service`/`Timer`/`Install`, such as
    /// `[Socket]`, are listed key by key too). X- keys, which systemd itself ignores, are skipped.
    pub fn unsupported_keys(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for s in &self.file.sections {
            let known = KNOWN_KEYS
                .iter()
                .find(|(n, _)| *n == s.name)
                .map(|(_, k)| *k)
                .unwrap_or(&[]);
            for e in &s.entries {
                if e.key.starts_with("X-") || known.contains(&e.key.as_str()) {
                    continue;
                }
                if s.name == "Unit"
                    && (e.key.starts_with("Condition") || e.key.starts_with("Assert"))
                {
                    continue;
                }
                let pair = (s.name.clone(), e.key.clone());
                if !out.contains(&pair) {
                    out.push(pair);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::tests_support::tempdir;
    use crate::units::HostRoot;
    use std::fs;

    fn unit(text: &str) -> Unit {
        Unit {
            name: "t.service".into(),
            fragment_name: "t.service".into(),
            fragment_path: "/t.service".into(),
            dropins: vec![],
            file: UnitFile::parse("t.service", text).unwrap(),
        }
    }

    #[test]
    fn zero_timeouts_directory_modes_and_root_prefixes() {
        let s = unit("[Service]\nExecStart=/x\nTimeoutStartSec=0\n").service();
        assert_eq!(s.timeout_start, TimeSpan::Infinity);
        assert_eq!(s.timeout_stop, TimeSpan::Finite(Duration::from_secs(90)));
        let s = unit(
            "[Service]\nExecStart=/x\nTimeoutSec=0\nRuntimeDirectoryMode=2755\nStateDirectoryMode=0700\n\
             ExecStartPost=!/etc/mysql/debian-start\nExecStartPost=!!/y\n",
        )
        .service();
        assert_eq!(
            (s.timeout_start, s.timeout_stop),
            (TimeSpan::Infinity, TimeSpan::Infinity)
        );
        assert_eq!(
            s.directory_modes,
            DirectoryModes {
                runtime: 0o2755,
                state: 0o700,
                ..DirectoryModes::default()
            }
        );
        assert!(s.exec_start_post[0].flags.ambient);
        assert!(s.exec_start_post[1].flags.ambient_fallback);
        assert!(!s.exec_start_post[1].flags.ambient);
    }

    #[test]
    fn parses_sections_comments_and_continuations() {
        let f = UnitFile::parse(
            "x",
            "# c\n[Unit]\nDescription=Demo \\\n  service\nAfter=a.service b.service\n; other\nAfter=c.service\n[Service]\nExecStart=/bin/echo one \\\n# skipped comment\n two\n",
        )
        .unwrap();
        assert_eq!(f.get("Unit", "Description"), Some("Demo  service"));
        assert_eq!(
            f.get_words("Unit", "After"),
            ["a.service", "b.service", "c.service"]
        );
        assert_eq!(f.get("Service", "ExecStart"), Some("/bin/echo one  two"));
    }

    #[test]
    fn reports_bad_lines_with_place() {
        let e = UnitFile::parse("/etc/x.service", "[Unit]\nnonsense\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/x.service:2: expected Key=value, found \"nonsense\""
        );
        assert!(UnitFile::parse("y", "Key=1\n").is_err());
        assert!(UnitFile::parse("y", "[Unit\n").is_err());
    }

    #[test]
    fn empty_assignment_resets_lists() {
        let u = unit("[Service]\nExecStart=/bin/a\nExecStart=\nExecStart=/bin/b x\n");
        let s = u.service();
        assert_eq!(s.exec_start.len(), 1);
        assert_eq!(s.exec_start[0].argv, ["/bin/b", "x"]);
    }

    #[test]
    fn exec_prefixes_and_quoting() {
        let c = ExecCommand::parse_line(
            r#"-@/usr/sbin/daemon daemon-name "two words" 'single' a\tb ; +/bin/true"#,
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        assert!(c[0].flags.ignore_failure && c[0].flags.argv0);
        assert_eq!(c[0].path, "/usr/sbin/daemon");
        assert_eq!(c[0].argv, ["daemon-name", "two words", "single", "a\tb"]);
        assert!(c[1].flags.privileged);
        assert_eq!(c[1].argv, ["/bin/true"]);
        let c = ExecCommand::parse_line("!!:/bin/x $A").unwrap();
        assert!(c[0].flags.ambient_fallback && c[0].flags.no_env_expand);
        assert_eq!(ExecCommand::parse_line("/bin/x \"open"), None);
    }

    #[test]
    fn environment_expansion_in_exec() {
        let env: BTreeMap<String, String> = [("OPTS", "-a -b"), ("DIR", "/srv")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let c = &ExecCommand::parse_line("/bin/d $OPTS ${DIR}/x $MISSING $$HOME").unwrap()[0];
        assert_eq!(
            c.expand_argv(&env),
            ["/bin/d", "-a", "-b", "/srv/x", "$HOME"]
        );
        let c = &ExecCommand::parse_line(":/bin/d $OPTS").unwrap()[0];
        assert_eq!(c.expand_argv(&env), ["/bin/d", "$OPTS"]);
    }

    #[test]
    fn environment_settings_and_files() {
        let u = unit("[Service]\nEnvironment=A=1 \"B=two words\"\nEnvironment=A=3\nEnvironmentFile=-/etc/default/x\nEnvironmentFile=/etc/y\n");
        let s = u.service();
        assert_eq!(
            s.environment,
            [
                ("B".to_string(), "two words".to_string()),
                ("A".to_string(), "3".to_string())
            ]
        );
        assert_eq!(
            s.environment_files,
            [
                ("/etc/default/x".to_string(), true),
                ("/etc/y".to_string(), false)
            ]
        );
        let e = parse_environment_file(
            "# c\nexport A=1\nB=\"x y\"\nC='$z'\nD=plain # note\nE=a\\\nb\nbad line\n",
        );
        assert_eq!(
            e,
            [
                ("A", "1"),
                ("B", "x y"),
                ("C", "$z"),
                ("D", "plain"),
                ("E", "ab")
            ]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
        );
    }

    #[test]
    fn typed_service_defaults_and_values() {
        let s = unit("[Service]\nExecStart=/bin/x\n").service();
        assert_eq!(s.service_type, ServiceType::Simple);
        assert_eq!(s.timeout_stop, TimeSpan::Finite(Duration::from_secs(90)));
        assert_eq!(
            unit("[Service]\nExecStop=/bin/x\n").service().service_type,
            ServiceType::Oneshot
        );
        let u = unit(
            "[Unit]\nStartLimitBurst=3\nStartLimitIntervalSec=10\nConditionPathExists=!/etc/nope\n[Service]\nType=forking\nPIDFile=/run/x.pid\nRestart=on-failure\nRestartSec=2\nTimeoutSec=5\nTimeoutStopSec=infinity\nKillMode=mixed\nKillSignal=SIGQUIT\nRuntimeDirectory=a b\nUser=www-data\nWorkingDirectory=-/srv\nType=bogus\nPrivateTmp=yes\n",
        );
        let s = u.service();
        assert_eq!(
            s.service_type,
            ServiceType::Simple,
            "an invalid Type= falls back and is reported"
        );
        assert_eq!(s.invalid[0].0, "Type");
        assert_eq!(s.restart, RestartPolicy::OnFailure);
        assert_eq!(s.restart_sec, Duration::from_secs(2));
        assert_eq!(s.timeout_start, TimeSpan::Finite(Duration::from_secs(5)));
        assert_eq!(s.timeout_stop, TimeSpan::Infinity);
        assert_eq!(s.kill_mode, KillMode::Mixed);
        assert_eq!(s.runtime_directory, ["a", "b"]);
        assert_eq!(s.working_directory, Some(("/srv".to_string(), true)));
        let us = u.unit_section();
        assert_eq!(us.start_limit_burst, Some(3));
        assert_eq!(
            us.start_limit_interval,
            Some(TimeSpan::Finite(Duration::from_secs(10)))
        );
        assert_eq!(
            us.conditions[0],
            Condition {
                kind: "PathExists".into(),
                assert: false,
                negate: true,
                trigger: false,
                value: "/etc/nope".into()
            }
        );
        assert_eq!(
            u.unsupported_keys(),
            [("Service".to_string(), "PrivateTmp".to_string())]
        );
    }

    #[test]
    fn timers() {
        let mut u = unit(
            "[Timer]\nOnCalendar=daily\nOnBootSec=15min\nOnUnitActiveSec=1h\nPersistent=true\n",
        );
        u.name = "backup.timer".into();
        let t = u.timer();
        assert_eq!(t.on_calendar, ["daily"]);
        assert_eq!(t.on_boot, [Duration::from_secs(900)]);
        assert_eq!(t.on_unit_active, [Duration::from_secs(3600)]);
        assert_eq!(u.timer_target(), "backup.service");
    }

    #[test]
    fn unit_names() {
        let n = UnitName::parse("getty@tty1.service").unwrap();
        assert_eq!(
            (n.prefix.as_str(), n.instance.as_deref(), n.suffix.as_str()),
            ("getty", Some("tty1"), "service")
        );
        assert_eq!(n.template().as_deref(), Some("getty@.service"));
        assert_eq!(UnitName::parse("noext"), None);
        assert_eq!(unescape_name("dev-disk-by\\x2dlabel"), "dev/disk/by-label");
    }

    fn write(root: &std::path::Path, p: &str, s: &str) {
        let full = root.join(p.trim_start_matches('/'));
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(full, s).unwrap();
    }

    #[test]
    fn loads_templates_dropins_aliases_masks_and_specifiers() {
        let dir = tempdir();
        let r = dir.as_path();
        write(r, "/lib/systemd/system/web@.service", "[Unit]\nDescription=web %i\n[Service]\nExecStart=/usr/bin/web --name %n --inst %I --pct 100%%\nUser=nobody\n");
        write(
            r,
            "/lib/systemd/system/web@.service.d/10-a.conf",
            "[Service]\nEnvironment=A=lib\n",
        );
        write(
            r,
            "/etc/systemd/system/web@.service.d/10-a.conf",
            "[Service]\nEnvironment=A=etc\n",
        );
        write(
            r,
            "/etc/systemd/system/web@blue.service.d/20-b.conf",
            "[Service]\nExecStart=\nExecStart=/usr/bin/web2 %p\n",
        );
        write(
            r,
            "/lib/systemd/system/real.service",
            "[Service]\nExecStart=/bin/real\n",
        );
        fs::create_dir_all(r.join("etc/systemd/system/multi-user.target.wants")).unwrap();
        std::os::unix::fs::symlink(
            "/lib/systemd/system/real.service",
            r.join("etc/systemd/system/alias.service"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/dev/null", r.join("etc/systemd/system/gone.service")).unwrap();
        std::os::unix::fs::symlink(
            "/lib/systemd/system/real.service",
            r.join("etc/systemd/system/multi-user.target.wants/real.service"),
        )
        .unwrap();
        let root = HostRoot::new(r);
        let opts = LoadOptions::default();

        let u = load(&root, "web@blue.service", &opts).unwrap().unwrap();
        assert_eq!(u.fragment_name, "web@.service");
        assert_eq!(
            u.dropins,
            [
                "/etc/systemd/system/web@.service.d/10-a.conf",
                "/etc/systemd/system/web@blue.service.d/20-b.conf"
            ]
        );
        assert_eq!(u.unit_section().description.as_deref(), Some("web blue"));
        let s = u.service();
        assert_eq!(s.environment, [("A".to_string(), "etc".to_string())]);
        assert_eq!(s.exec_start[0].argv, ["/usr/bin/web2", "web"]);
        let u = load(&root, "web@red.service", &opts).unwrap().unwrap();
        assert_eq!(
            u.service().exec_start[0].argv,
            [
                "/usr/bin/web",
                "--name",
                "web@red.service",
                "--inst",
                "red",
                "--pct",
                "100%"
            ]
        );

        let a = load(&root, "alias.service", &opts).unwrap().unwrap();
        assert_eq!(a.fragment_name, "real.service");
        assert_eq!(a.service().exec_start[0].argv, ["/bin/real"]);
        assert!(matches!(
            lookup(&root, "gone.service", &opts).unwrap(),
            Lookup::Masked(_)
        ));
        assert_eq!(
            lookup(&root, "none.service", &opts).unwrap(),
            Lookup::NotFound
        );
        assert!(lookup(&root, "bad", &opts).is_err());
        // What enables units is the model's: real.service, wanted by multi-user.target.
        let enabled = crate::model::systemd::enabled(&root, &mut Vec::new());
        let wanted: Vec<(&str, &str)> = enabled
            .iter()
            .flat_map(|s| {
                s.enabled_by.iter().filter_map(move |l| {
                    let (dir, _) = l.rsplit_once('/')?;
                    let target = dir.rsplit('/').next()?.strip_suffix(".wants")?;
                    Some((target, s.name.as_str()))
                })
            })
            .collect();
        assert_eq!(wanted, [("multi-user.target", "real.service")]);
    }
}
