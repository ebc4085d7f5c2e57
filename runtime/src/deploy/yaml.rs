//! A small YAML writer for the documents `deploy` makes: block style, every string in
//! JSON's double-quoted form (valid YAML), so no value from an image config can change a
//! document's structure.

use serde_json::Value;

/// `value` as a YAML document (a mapping or sequence at the top).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    block(value, 0, &mut out);
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => serde_json::to_string(s).expect("a string serializes"),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        _ => unreachable!("collections are written as blocks"),
    }
}

fn is_block(v: &Value) -> bool {
    matches!(v, Value::Array(a) if !a.is_empty()) || matches!(v, Value::Object(o) if !o.is_empty())
}

fn key(k: &str) -> String {
    let plain = !k.is_empty()
        && k.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b));
    if plain {
        k.to_string()
    } else {
        scalar(&Value::String(k.to_string()))
    }
}

/// Writes a collection at `indent` spaces; a scalar on its own line.
fn block(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (k, v) in o {
                if is_block(v) {
                    out.push_str(&format!("{pad}{}:\n", key(k)));
                    let inner = if matches!(v, Value::Array(_)) {
                        indent
                    } else {
                        indent + 2
                    };
                    block(v, inner, out);
                } else {
                    out.push_str(&format!("{pad}{}: {}\n", key(k), scalar(v)));
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                if is_block(item) {
                    // The item's first line follows the dash; the rest is indented under it.
                    let mut inner = String::new();
                    block(item, indent + 2, &mut inner);
                    let rest = inner.trim_start_matches(' ');
                    out.push_str(&format!("{pad}- {rest}"));
                } else {
                    out.push_str(&format!("{pad}- {}\n", scalar(item)));
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}
