//! The restart budget (`StartLimitBurst=` starts within `StartLimitIntervalSec=`): a service
//! that needs more starts than that is failing, not flapping, and is given up on.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Start times within the current window.
#[derive(Debug, Clone)]
pub struct Budget {
    burst: u32,
    interval: Duration,
    starts: VecDeque<Instant>,
}

impl Budget {
    /// A budget of `burst` starts per `interval`; an interval or burst of zero means unlimited.
    pub fn new(burst: u32, interval: Duration) -> Budget {
        Budget {
            burst,
            interval,
            starts: VecDeque::new(),
        }
    }

    /// Records a start at `now` and says whether it is within the budget. A start refused
    /// is not recorded.
    pub fn try_start(&mut self, now: Instant) -> bool {
        if self.burst == 0 || self.interval.is_zero() {
            return true;
        }
        while let Some(&t) = self.starts.front() {
            if now.duration_since(t) >= self.interval {
                self.starts.pop_front();
            } else {
                break;
            }
        }
        if self.starts.len() as u32 >= self.burst {
            return false;
        }
        self.starts.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_burst_then_refuses_until_window_passes() {
        let t0 = Instant::now();
        let mut b = Budget::new(3, Duration::from_secs(10));
        assert!(b.try_start(t0));
        assert!(b.try_start(t0 + Duration::from_secs(1)));
        assert!(b.try_start(t0 + Duration::from_secs(2)));
        assert!(!b.try_start(t0 + Duration::from_secs(3)));
        assert!(!b.try_start(t0 + Duration::from_secs(9)));
        // The first start leaves the window at t0+10.
        assert!(b.try_start(t0 + Duration::from_secs(10)));
        assert!(!b.try_start(t0 + Duration::from_secs(10)));
        let mut unlimited = Budget::new(0, Duration::from_secs(10));
        assert!((0..100).all(|_| unlimited.try_start(t0)));
    }
}
