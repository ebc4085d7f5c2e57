//! Text from an image or a registry, made fit for one line of a message: control
//! characters (escape sequences, newlines) escaped so nothing reaches the terminal raw,
//! and cut to a length a person reads.

/// `text` on one line: control characters escaped (`\n`, `\u{1b}`), at most `max`
/// characters, `…` marking a cut.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn control_characters_are_escaped_and_long_text_cut() {
        assert_eq!(one_line("a\x1b[2Jb\nc\0", 80), "a\\u{1b}[2Jb\\nc\\u{0}");
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(one_line("ééé", 3), "ééé");
    }
}
