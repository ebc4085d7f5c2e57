//! systemd calendar events (`OnCalendar=`): `daily`, `Mon..Fri *-*-* 02:30`,
//! `*:0/15`, `2024-*-01 00:00:00 UTC`, and finding the next time one elapses.
//!
//! Times are UTC seconds since the epoch; a container's clock is UTC unless the image says
//! otherwise, and the init does not read time zone files. A trailing `UTC` is accepted;
//! other time zone names are rejected rather than silently misread.

use std::fmt;

/// One component's allowed values: a list of `(first, last, step)` ranges, or any value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    ranges: Option<Vec<(u32, u32, u32)>>,
}

impl Field {
    fn any() -> Field {
        Field { ranges: None }
    }

    fn single(v: u32) -> Field {
        Field {
            ranges: Some(vec![(v, v, 1)]),
        }
    }

    fn matches(&self, v: u32) -> bool {
        match &self.ranges {
            None => true,
            Some(r) => r
                .iter()
                .any(|&(a, b, s)| v >= a && v <= b && (v - a).is_multiple_of(s.max(1))),
        }
    }

    /// Parses `*`, `5`, `1,15`, `1..5`, `0/15`, `*/2`, `1..20/3`, with values in `lo..=hi`.
    fn parse(text: &str, lo: u32, hi: u32) -> Option<Field> {
        if text == "*" {
            return Some(Field::any());
        }
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => (r, Some(s.parse::<u32>().ok().filter(|s| *s > 0)?)),
                None => (part, None),
            };
            let (a, b) = if range == "*" {
                (lo, hi)
            } else if let Some((a, b)) = range.split_once("..") {
                (a.parse().ok()?, b.parse().ok()?)
            } else {
                let a: u32 = range.parse().ok()?;
                (a, if step.is_some() { hi } else { a })
            };
            if a < lo || b > hi || a > b {
                return None;
            }
            ranges.push((a, b, step.unwrap_or(1)));
        }
        Some(Field {
            ranges: Some(ranges),
        })
    }
}

/// A parsed calendar event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarSpec {
    text: String,
    /// Allowed weekdays, bit 0 = Monday; all set when unrestricted.
    weekdays: u8,
    year: Field,
    month: Field,
    day: Field,
    hour: Field,
    minute: Field,
    second: Field,
}

/// An `OnCalendar=` expression that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarError(pub String);

impl fmt::Display for CalendarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid calendar expression {:?}", self.0)
    }
}

impl std::error::Error for CalendarError {}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn weekday_index(w: &str) -> Option<u32> {
    let w = w.to_ascii_lowercase();
    DAYS.iter()
        .position(|d| {
            w.starts_with(d)
                && (w.len() == 3
                    || "monday tuesday wednesday thursday friday saturday sunday".contains(&w))
        })
        .map(|p| p as u32)
}

impl CalendarSpec {
    /// Parses an expression. Shorthands: `minutely`, `hourly`, `daily`, `weekly`, `monthly`,
    /// `quarterly`, `semiannually`, `yearly`/`annually`.
    pub fn parse(text: &str) -> Result<CalendarSpec, CalendarError> {
        let err = || CalendarError(text.to_string());
        let expanded = match text.trim() {
            "minutely" => "*-*-* *:*:00",
            "hourly" => "*-*-* *:00:00",
            "daily" => "*-*-* 00:00:00",
            "weekly" => "Mon *-*-* 00:00:00",
            "monthly" => "*-*-01 00:00:00",
            "quarterly" => "*-01,04,07,10-01 00:00:00",
            "semiannually" => "*-01,07-01 00:00:00",
            "yearly" | "annually" => "*-01-01 00:00:00",
            t => t,
        };
        let mut words: Vec<&str> = expanded.split_whitespace().collect();
        if words.last().is_some_and(|w| w.eq_ignore_ascii_case("UTC")) {
            words.pop();
        }
        let mut spec = CalendarSpec {
            text: text.to_string(),
            weekdays: 0x7f,
            year: Field::any(),
            month: Field::any(),
            day: Field::any(),
            hour: Field::single(0),
            minute: Field::single(0),
            second: Field::single(0),
        };
        let mut idx = 0;
        // Weekdays come first when the first word starts with a letter.
        if let Some(w) = words.first() {
            if w.starts_with(|c: char| c.is_ascii_alphabetic()) {
                spec.weekdays = 0;
                for part in w.split(',') {
                    let (a, b) = match part.split_once("..") {
                        Some((a, b)) => (
                            weekday_index(a).ok_or_else(err)?,
                            weekday_index(b).ok_or_else(err)?,
                        ),
                        None => {
                            let d = weekday_index(part).ok_or_else(err)?;
                            (d, d)
                        }
                    };
                    if a > b {
                        return Err(err());
                    }
                    for d in a..=b {
                        spec.weekdays |= 1 << d;
                    }
                }
                idx = 1;
            }
        }
        let mut saw_date = false;
        let mut saw_time = false;
        for w in &words[idx..] {
            if w.contains(':') && !saw_time {
                let parts: Vec<&str> = w.split(':').collect();
                if parts.len() < 2 || parts.len() > 3 {
                    return Err(err());
                }
                spec.hour = Field::parse(parts[0], 0, 23).ok_or_else(err)?;
                spec.minute = Field::parse(parts[1], 0, 59).ok_or_else(err)?;
                spec.second = match parts.get(2) {
                    // Fractions of seconds are accepted and dropped.
                    Some(s) => {
                        Field::parse(s.split('.').next().unwrap_or(s), 0, 59).ok_or_else(err)?
                    }
                    None => Field::single(0),
                };
                saw_time = true;
            } else if w.contains('-') && !saw_date && !saw_time {
                let parts: Vec<&str> = w.split('-').collect();
                let (y, m, d) = match parts.len() {
                    3 => (parts[0], parts[1], parts[2]),
                    2 => ("*", parts[0], parts[1]),
                    _ => return Err(err()),
                };
                spec.year = Field::parse(y, 1970, 2199).ok_or_else(err)?;
                spec.month = Field::parse(m, 1, 12).ok_or_else(err)?;
                spec.day = Field::parse(d, 1, 31).ok_or_else(err)?;
                saw_date = true;
            } else {
                return Err(err());
            }
        }
        if idx == 0 && !saw_date && !saw_time {
            return Err(err());
        }
        Ok(spec)
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The first time strictly after `after` (UTC seconds since the epoch) at which the event
    /// elapses, or `None` when it never does again (looking ahead 200 years).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let start = after + 1;
        let mut day = start.div_euclid(86400);
        let first_sod = start.rem_euclid(86400) as u32;
        let last_day = day + 366 * 200;
        let mut sod_floor = first_sod;
        while day <= last_day {
            let (y, m, d) = civil_from_days(day);
            let wd = ((day + 3).rem_euclid(7)) as u32; // 1970-01-01 was a Thursday (index 3).
            if y > 2199 {
                return None;
            }
            if self.year.matches(y as u32)
                && self.month.matches(m)
                && self.day.matches(d)
                && self.weekdays & (1 << wd) != 0
            {
                if let Some(sod) = self.first_time_of_day(sod_floor) {
                    return Some(day * 86400 + sod as i64);
                }
            }
            day += 1;
            sod_floor = 0;
        }
        None
    }

    fn first_time_of_day(&self, floor: u32) -> Option<u32> {
        for h in (floor / 3600)..24 {
            if !self.hour.matches(h) {
                continue;
            }
            for m in 0..60 {
                if !self.minute.matches(m) {
                    continue;
                }
                for s in 0..60 {
                    let t = h * 3600 + m * 60 + s;
                    if t >= floor && self.second.matches(s) {
                        return Some(t);
                    }
                }
            }
        }
        None
    }
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
        days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
    }

    #[test]
    fn civil_roundtrip() {
        for day in [-1000, 0, 59, 60, 11016, 19723, 20000, 50000] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(
            days_from_civil(2024, 2, 29) - days_from_civil(2024, 2, 28),
            1
        );
    }

    #[test]
    fn shorthands_and_next() {
        let now = t(2024, 5, 15, 13, 7, 42); // a Wednesday
        let next = |s: &str| CalendarSpec::parse(s).unwrap().next_after(now).unwrap();
        assert_eq!(next("daily"), t(2024, 5, 16, 0, 0, 0));
        assert_eq!(next("hourly"), t(2024, 5, 15, 14, 0, 0));
        assert_eq!(next("minutely"), t(2024, 5, 15, 13, 8, 0));
        assert_eq!(next("weekly"), t(2024, 5, 20, 0, 0, 0));
        assert_eq!(next("monthly"), t(2024, 6, 1, 0, 0, 0));
        assert_eq!(next("yearly"), t(2025, 1, 1, 0, 0, 0));
        assert_eq!(next("quarterly"), t(2024, 7, 1, 0, 0, 0));
        assert_eq!(next("*:0/15"), t(2024, 5, 15, 13, 15, 0));
        assert_eq!(next("*:*:0/20"), t(2024, 5, 15, 13, 8, 0));
        assert_eq!(next("Mon..Fri 02:30"), t(2024, 5, 16, 2, 30, 0));
        assert_eq!(next("Sat,Sun *-*-* 08:00"), t(2024, 5, 18, 8, 0, 0));
        assert_eq!(next("*-02-29 12:00:00"), t(2028, 2, 29, 12, 0, 0));
        assert_eq!(next("2024-05-15 13:07:43 UTC"), now + 1);
        assert_eq!(
            CalendarSpec::parse("2024-05-15 13:07:42")
                .unwrap()
                .next_after(now),
            None
        );
    }

    #[test]
    fn past_and_bad_expressions() {
        let now = t(2024, 5, 15, 13, 7, 42);
        assert_eq!(
            CalendarSpec::parse("2020-01-01").unwrap().next_after(now),
            None
        );
        for bad in [
            "",
            "sometimes",
            "25:00",
            "*-13-01",
            "Funday",
            "1/0:00",
            "Mon..Fri 02:30 Europe/Paris",
        ] {
            assert!(CalendarSpec::parse(bad).is_err(), "{bad} should not parse");
        }
    }
}
