//! When a timer fires next, from its calendar events (wall clock) and its monotonic
//! settings (relative to the init's start, and to the last start/stop of its service).

use crate::service::TimerDef;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the schedule depends on.
#[derive(Debug, Clone, Copy)]
pub struct TimerClock {
    /// When the init started.
    pub boot: Instant,
    /// Now.
    pub now: Instant,
    /// Now on the wall clock, seconds since the epoch.
    pub wall: i64,
    /// When the timer last fired.
    pub last_fired: Option<Instant>,
    /// When its service last became active.
    pub unit_active: Option<Instant>,
    /// When its service last became inactive.
    pub unit_inactive: Option<Instant>,
}

/// Wall-clock seconds since the epoch.
pub fn wall_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The next instant the timer elapses, or `None` if it never will again. Monotonic
/// settings fire once per reference point (`OnBootSec=` once; `OnUnitActiveSec=` once per
/// activation), as in systemd.
pub fn next_elapse(t: &TimerDef, c: &TimerClock) -> Option<Instant> {
    let fired_after = |at: Instant| c.last_fired.is_none_or(|f| at > f);
    let mut best: Option<Instant> = None;
    let mut consider = |at: Instant| {
        if best.is_none_or(|b| at < b) {
            best = Some(at);
        }
    };
    for d in &t.on_boot {
        let at = c.boot + *d;
        if fired_after(at) && c.last_fired.is_none_or(|f| f < at) {
            consider(at);
        }
    }
    for (base, list) in [
        (c.unit_active, &t.on_unit_active),
        (c.unit_inactive, &t.on_unit_inactive),
    ] {
        if let Some(base) = base {
            for d in list {
                let at = base + *d;
                if fired_after(at) {
                    consider(at);
                }
            }
        }
    }
    for spec in &t.calendar {
        // Calendar events are found from the later of now and the last firing, so one event
        // never fires twice.
        let from = match c.last_fired {
            Some(f) if f > c.now => c.wall + f.duration_since(c.now).as_secs() as i64,
            _ => c.wall,
        };
        if let Some(next) = spec.next_after(from) {
            consider(c.now + Duration::from_secs((next - c.wall).max(0) as u64));
        }
    }
    best
}

/// Where systemd keeps a persistent timer's last trigger (the file's mtime): the same
/// file, so the stamps of the server, of systemd mode and of rehost mode are one.
pub fn stamp_path(timer: &str) -> String {
    format!("/var/lib/systemd/timers/stamp-{timer}")
}

/// The last trigger of a persistent timer, in seconds since the epoch.
pub fn last_stamp(timer: &str) -> Option<i64> {
    let m = std::fs::metadata(stamp_path(timer)).ok()?;
    m.modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs() as i64)
}

/// Records a trigger now.
pub fn touch_stamp(timer: &str) -> std::io::Result<()> {
    let p = stamp_path(timer);
    if let Some(dir) = std::path::Path::new(&p).parent() {
        std::fs::create_dir_all(dir)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&p)?;
    f.set_modified(SystemTime::now())
}

/// Whether a calendar event of `t` fell between the last trigger `last` and `now` (both
/// seconds since the epoch): a persistent timer then fires at once.
pub fn missed(t: &TimerDef, last: i64, now: i64) -> bool {
    t.calendar
        .iter()
        .any(|c| c.next_after(last).is_some_and(|next| next <= now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::calendar::{days_from_civil, CalendarSpec};

    fn timer(cal: &[&str], boot: &[u64], active: &[u64]) -> TimerDef {
        TimerDef {
            calendar: cal
                .iter()
                .map(|c| CalendarSpec::parse(c).unwrap())
                .collect(),
            on_boot: boot.iter().map(|s| Duration::from_secs(*s)).collect(),
            on_unit_active: active.iter().map(|s| Duration::from_secs(*s)).collect(),
            on_unit_inactive: vec![],
            unit: "x.service".into(),
            persistent: false,
        }
    }

    #[test]
    fn a_persistent_timer_catches_up_on_a_missed_event() {
        let mut t = timer(&["daily"], &[], &[]);
        t.persistent = true;
        let day = 86_400;
        let midnight = days_from_civil(2026, 11, 30) * day;
        // Last run the day before yesterday: today's midnight was missed.
        assert!(missed(&t, midnight - 2 * day + 10, midnight + 3600));
        // Last run after today's midnight: nothing missed.
        assert!(!missed(&t, midnight + 10, midnight + 3600));
    }

    #[test]
    fn boot_and_unit_active_timers() {
        let boot = Instant::now();
        let t = timer(&[], &[60], &[3600]);
        let mut c = TimerClock {
            boot,
            now: boot,
            wall: 0,
            last_fired: None,
            unit_active: None,
            unit_inactive: None,
        };
        assert_eq!(next_elapse(&t, &c), Some(boot + Duration::from_secs(60)));
        // Fired at boot+60, the unit ran: next is an hour after its activation.
        c.now = boot + Duration::from_secs(61);
        c.last_fired = Some(boot + Duration::from_secs(60));
        c.unit_active = Some(boot + Duration::from_secs(60));
        assert_eq!(next_elapse(&t, &c), Some(boot + Duration::from_secs(3660)));
        // A boot-only timer never fires twice.
        let once = timer(&[], &[60], &[]);
        assert_eq!(next_elapse(&once, &c), None);
    }

    #[test]
    fn calendar_timers_use_the_wall_clock() {
        let now = Instant::now();
        let wall = days_from_civil(2024, 5, 15) * 86400 + 23 * 3600 + 59 * 60 + 30; // 23:59:30
        let t = timer(&["daily"], &[], &[]);
        let c = TimerClock {
            boot: now,
            now,
            wall,
            last_fired: None,
            unit_active: None,
            unit_inactive: None,
        };
        assert_eq!(next_elapse(&t, &c), Some(now + Duration::from_secs(30)));
    }
}
