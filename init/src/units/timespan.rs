//! systemd time spans (`90`, `1min 30s`, `250ms`, `infinity`) as used by `RestartSec=`,
//! `TimeoutStopSec=`, `OnBootSec=` and friends.

use std::time::Duration;

/// A parsed time span: a duration, or `infinity` (no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeSpan {
    /// A finite duration.
    Finite(Duration),
    /// `infinity`: wait forever / no limit.
    #[default]
    Infinity,
}

impl TimeSpan {
    /// The finite duration, or `None` for infinity.
    pub fn finite(self) -> Option<Duration> {
        match self {
            TimeSpan::Finite(d) => Some(d),
            TimeSpan::Infinity => None,
        }
    }
}

/// Parses a time span; a bare number is in `default_unit` (seconds for almost every key).
/// Returns `None` when the text is not a time span.
pub fn parse(text: &str, default_unit: Duration) -> Option<TimeSpan> {
    let t = text.trim();
    if t == "infinity" {
        return Some(TimeSpan::Infinity);
    }
    if t.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let number: f64 = rest[..num_end].parse().ok()?;
        rest = rest[num_end..].trim_start();
        let unit_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let scale = if unit.is_empty() {
            default_unit
        } else {
            unit_duration(unit)?
        };
        // A span past what a Duration holds is refused, as systemd refuses it (ERANGE),
        // instead of overflowing (a unit's `TimeoutSec=77777777777777777777` did).
        let part = Duration::try_from_secs_f64(scale.as_secs_f64() * number).ok()?;
        total = total.checked_add(part)?;
    }
    Some(TimeSpan::Finite(total))
}

/// Parses a time span whose bare numbers are seconds.
pub fn parse_sec(text: &str) -> Option<TimeSpan> {
    parse(text, Duration::from_secs(1))
}

fn unit_duration(unit: &str) -> Option<Duration> {
    let secs = |s: u64| Some(Duration::from_secs(s));
    match unit {
        "us" | "usec" | "µs" => Some(Duration::from_micros(1)),
        "ms" | "msec" => Some(Duration::from_millis(1)),
        "s" | "sec" | "second" | "seconds" => secs(1),
        "m" | "min" | "minute" | "minutes" => secs(60),
        "h" | "hr" | "hour" | "hours" => secs(3600),
        "d" | "day" | "days" => secs(86400),
        "w" | "week" | "weeks" => secs(7 * 86400),
        "M" | "month" | "months" => secs(2_629_800),
        "y" | "year" | "years" => secs(31_557_600),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        let s = |x| parse_sec(x).and_then(TimeSpan::finite);
        assert_eq!(s("90"), Some(Duration::from_secs(90)));
        assert_eq!(s("1min 30s"), Some(Duration::from_secs(90)));
        assert_eq!(s("1min30s"), Some(Duration::from_secs(90)));
        assert_eq!(s("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(s("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(s("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_sec("infinity"), Some(TimeSpan::Infinity));
        assert_eq!(parse_sec("soon"), None);
        assert_eq!(parse_sec("5 parsecs"), None);
    }

    /// Found by fuzzing: a span too large for a Duration panicked rehost-init.
    #[test]
    fn an_overflowing_span_is_refused_not_a_panic() {
        assert_eq!(parse_sec("77777777777777777777"), None);
        assert_eq!(parse_sec("18446744073709551615s 1s"), None);
        assert_eq!(parse_sec("9999999999999y"), None);
    }
}
