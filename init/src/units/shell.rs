//! The small part of POSIX shell syntax that service definitions use outside of code:
//! variable assignments (`command_args="-f ${RC_SVCNAME}.conf"`) and word splitting with
//! quotes. Command substitution and control flow are not evaluated; callers that meet them
//! run the script through `/bin/sh` instead.

use std::collections::BTreeMap;

/// Splits `text` into words the way `sh` does for a simple command: whitespace separates
/// words, single quotes keep everything, double quotes keep everything but `$` expansion
/// and `\"`, a backslash quotes the next character. `$NAME` and `${NAME}` are replaced from
/// `vars` (unknown names expand to nothing). Returns `None` for an unterminated quote.
pub fn split(text: &str, vars: &BTreeMap<String, String>) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        x => cur.push(x),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            x @ ('"' | '\\' | '$' | '`') => cur.push(x),
                            '\n' => {}
                            x => {
                                cur.push('\\');
                                cur.push(x);
                            }
                        },
                        '$' => cur.push_str(&expand_var(&mut chars, vars)),
                        x => cur.push(x),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(x) => cur.push(x),
                }
            }
            '$' => {
                // Unquoted expansion is split into words again, as in sh.
                let value = expand_var(&mut chars, vars);
                let mut parts = value.split_whitespace().peekable();
                if value.starts_with(char::is_whitespace) && in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
                while let Some(p) = parts.next() {
                    cur.push_str(p);
                    in_word = true;
                    if parts.peek().is_some() {
                        words.push(std::mem::take(&mut cur));
                    }
                }
                if value.ends_with(char::is_whitespace) && in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            x => {
                in_word = true;
                cur.push(x);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Some(words)
}

/// Expands `$NAME` / `${NAME}` / `${NAME:-default}` after the `$` has been read.
fn expand_var(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    vars: &BTreeMap<String, String>,
) -> String {
    if chars.peek() == Some(&'{') {
        chars.next();
        let mut inner = String::new();
        for c in chars.by_ref() {
            if c == '}' {
                break;
            }
            inner.push(c);
        }
        if let Some((name, default)) = inner.split_once(":-") {
            return match vars.get(name) {
                Some(v) if !v.is_empty() => v.clone(),
                _ => default.to_string(),
            };
        }
        if let Some((name, default)) = inner.split_once('-') {
            return vars
                .get(name)
                .cloned()
                .unwrap_or_else(|| default.to_string());
        }
        return vars.get(&inner).cloned().unwrap_or_default();
    }
    let mut name = String::new();
    while let Some(&c) = chars.peek() {
        if c.is_ascii_alphanumeric() || c == '_' {
            name.push(c);
            chars.next();
        } else {
            break;
        }
    }
    if name.is_empty() {
        return "$".to_string();
    }
    vars.get(&name).cloned().unwrap_or_default()
}

/// Reads the simple top-level assignments `NAME=value` of a shell script (as in
/// `/etc/default/foo`, `/etc/conf.d/foo` or the header of an OpenRC script), expanding
/// earlier assignments and `base` into later ones. Lines inside functions, and lines
/// that are not plain assignments, are skipped. `export NAME=value` counts.
pub fn assignments(script: &str, base: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut vars = base.clone();
    let mut depth = 0usize;
    for line in logical_lines(script) {
        let t = line.trim();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        let opens = t.matches('{').count();
        let closes = t.matches('}').count();
        let is_func = t.contains("()") && t.ends_with('{');
        if depth == 0 && !is_func {
            let t = t.strip_prefix("export ").unwrap_or(t).trim();
            if let Some((name, value)) = t.split_once('=') {
                if !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit())
                {
                    if let Some(words) = split(value, &vars) {
                        // `a=b c` assigns `b` then runs `c`; we only keep the assignment.
                        vars.insert(
                            name.to_string(),
                            words.into_iter().next().unwrap_or_default(),
                        );
                    }
                }
            }
        }
        if is_func || depth > 0 {
            depth = (depth + opens).saturating_sub(closes);
        }
    }
    vars.into_iter()
        .filter(|(k, v)| base.get(k) != Some(v))
        .collect()
}

/// Joins lines ending in a backslash and keeps quoted strings that span lines together.
pub fn logical_lines(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for line in script.lines() {
        if !cur.is_empty() {
            cur.push('\n');
        }
        cur.push_str(line);
        // Track whether a quote opened on this line is still open.
        let mut escaped = false;
        for c in line.chars() {
            match (quote, c) {
                (_, '\\') if quote != Some('\'') && !escaped => {
                    escaped = true;
                    continue;
                }
                (None, '#') if !escaped => break,
                (None, '\'' | '"') if !escaped => quote = Some(c),
                (Some(q), c) if c == q && !escaped => quote = None,
                _ => {}
            }
            escaped = false;
        }
        if quote.is_some() {
            continue;
        }
        if let Some(stripped) = cur.strip_suffix('\\') {
            cur = stripped.to_string();
            continue;
        }
        out.push(std::mem::take(&mut cur));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn splits_words_with_quotes_and_vars() {
        let v = vars(&[("A", "x y"), ("B", "z")]);
        assert_eq!(
            split(r#"one "two three" 'f$B' $A "$A" ${B}q"#, &v).unwrap(),
            ["one", "two three", "f$B", "x", "y", "x y", "zq"]
        );
        assert_eq!(split(r"a\ b", &v).unwrap(), ["a b"]);
        assert_eq!(split("\"open", &v), None);
        assert_eq!(split("${C:-dflt}", &v).unwrap(), ["dflt"]);
    }

    #[test]
    fn reads_assignments_but_not_function_bodies() {
        let script = "#!/sbin/openrc-run\nname=\"web\"\ncommand=/usr/bin/$name\nexport LANG=C\nstart() {\n  command=/bin/false\n}\nargs=\"-a \\\n -b\"\n";
        let a = assignments(script, &BTreeMap::new());
        assert_eq!(a["command"], "/usr/bin/web");
        assert_eq!(a["LANG"], "C");
        assert_eq!(a["args"], "-a  -b");
    }
}
