//! Times as systemctl and journalctl print them (UTC, as a container without a time zone
//! database shows them).

use crate::units::calendar::civil_from_days;

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn parts(secs: u64) -> (i64, u32, u32, u64, u64, u64, &'static str) {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    (
        y,
        m,
        d,
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        DAYS[(days % 7) as usize],
    )
}

/// `Mon 2026-11-30 16:20:01 UTC`.
pub fn timestamp(secs: u64) -> String {
    let (y, m, d, h, mi, s, wd) = parts(secs);
    format!("{wd} {y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// `Nov 30 16:20:01`, journalctl's short format.
pub fn short(secs: u64) -> String {
    let (_, m, d, h, mi, s, _) = parts(secs);
    format!("{} {d:02} {h:02}:{mi:02}:{s:02}", MONTHS[(m - 1) as usize])
}

/// `5min ago`, `2h 3min ago`, as systemctl status says it.
pub fn ago(secs: u64, now: u64) -> String {
    let d = now.saturating_sub(secs);
    let s = match d {
        0..=59 => format!("{d}s"),
        60..=3599 => format!("{}min {}s", d / 60, d % 60),
        3600..=86_399 => format!("{}h {}min", d / 3600, d / 60 % 60),
        _ => format!("{} days", d / 86_400),
    };
    format!("{s} ago")
}

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// journalctl's `--since`/`--until` forms: `YYYY-MM-DD [HH:MM[:SS]]`, `HH:MM[:SS]` (today),
/// `today`, `yesterday`, `now`, `-5min`/`-2h`/`-1d` (ago), `@SECONDS`. UTC.
pub fn parse_since(text: &str, now: u64) -> Option<u64> {
    let t = text.trim();
    let today = now - now % 86_400;
    match t {
        "now" => return Some(now),
        "today" => return Some(today),
        "yesterday" => return Some(today.saturating_sub(86_400)),
        _ => {}
    }
    if let Some(s) = t.strip_prefix('@') {
        return s.parse().ok();
    }
    if let Some(ago) = t.strip_prefix('-') {
        let ago = ago.trim().strip_suffix(" ago").unwrap_or(ago.trim());
        let split = ago.find(|c: char| !c.is_ascii_digit()).unwrap_or(ago.len());
        let n: u64 = ago[..split].parse().ok()?;
        let unit = match ago[split..].trim() {
            "" | "s" | "sec" | "second" | "seconds" => 1,
            "m" | "min" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            _ => return None,
        };
        return Some(now.saturating_sub(n.checked_mul(unit)?));
    }
    let (date, clock) = match t.split_once(' ') {
        Some((d, c)) => (Some(d), Some(c)),
        None if t.contains('-') => (Some(t), None),
        None => (None, Some(t)),
    };
    let day = match date {
        Some(d) => {
            let mut it = d.splitn(3, '-');
            let y: i64 = it.next()?.parse().ok()?;
            let m: u32 = it.next()?.parse().ok()?;
            let dd: u32 = it.next()?.parse().ok()?;
            if !(1..=12).contains(&m) || !(1..=31).contains(&dd) {
                return None;
            }
            let days = crate::units::calendar::days_from_civil(y, m, dd);
            u64::try_from(days).ok()? * 86_400
        }
        None => today,
    };
    let secs = match clock {
        Some(c) => {
            let mut it = c.split(':');
            let h: u64 = it.next()?.parse().ok()?;
            let m: u64 = it.next()?.parse().ok()?;
            let s: u64 = it.next().map(|s| s.parse().ok()).unwrap_or(Some(0))?;
            if h > 23 || m > 59 || s > 60 || it.next().is_some() {
                return None;
            }
            h * 3600 + m * 60 + s
        }
        None => 0,
    };
    Some(day + secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        // 2026-11-30 16:20:01 UTC was a Monday.
        let t = 1_796_055_601;
        assert_eq!(timestamp(t), "Mon 2026-11-30 16:20:01 UTC");
        assert_eq!(short(t), "Nov 30 16:20:01");
        assert_eq!(ago(t, t + 301), "5min 1s ago");
        assert_eq!(ago(t, t + 7), "7s ago");
    }

    #[test]
    fn since_forms() {
        let now = 1_796_055_601;
        assert_eq!(parse_since("@12", now), Some(12));
        assert_eq!(parse_since("-5min", now), Some(now - 300));
        assert_eq!(parse_since("-2h", now), Some(now - 7200));
        assert_eq!(parse_since("2026-11-30 16:20:01", now), Some(now));
        assert_eq!(
            parse_since("2026-11-30", now),
            Some(now - 16 * 3600 - 20 * 60 - 1)
        );
        assert_eq!(parse_since("16:20", now), Some(now - 1));
        assert_eq!(
            parse_since("today", now),
            Some(now - 16 * 3600 - 20 * 60 - 1)
        );
        assert_eq!(parse_since("2026-13-01", now), None);
        assert_eq!(parse_since("soon", now), None);
        assert_eq!(parse_since("-99999999999999999999d", now), None);
    }
}
