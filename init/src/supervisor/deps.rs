//! How services affect each other once started: stopping one stops the services that
//! require it, are bound to it or are part of it; one ending for any reason stops those
//! bound to it; and a oneshot wrapper (`postfix.service`, `postgresql.service`: `/bin/true`
//! that stays "active") is shown by the services it pulls in, which do the work.

use super::{log, State, Supervisor};
use crate::units::systemd::ServiceType;

impl Supervisor {
    /// Stops `i` and, first, every service that goes down with it (`Requires=`,
    /// `BindsTo=`, `PartOf=`, transitively). At shutdown the ordering stops everything and
    /// nothing is propagated.
    pub(super) fn stop(&mut self, i: usize) {
        self.svcs[i].stop_requested = true;
        if self.shutdown_started.is_none() {
            for j in self.order.stop_closure(i) {
                let s = &self.svcs[j];
                if (s.state.running() || s.state == State::AutoRestart) && !s.stop_requested {
                    log(&format!(
                        "{}: stopping, with {}",
                        s.def.name, self.svcs[i].def.name
                    ));
                    self.svcs[j].stop_requested = true;
                    self.stop_one(j);
                }
            }
        }
        self.stop_one(i);
    }

    /// After `i` ended for good (stopped, failed, not restarting): the services bound to it
    /// stop too.
    pub(super) fn stop_bound(&mut self, i: usize) {
        if self.shutdown_started.is_some() || self.svcs[i].state == State::AutoRestart {
            return;
        }
        let bound: Vec<usize> = self.order.bound[i].iter().copied().collect();
        for j in bound {
            let s = &self.svcs[j];
            if s.state.running() && !s.stop_requested {
                log(&format!(
                    "{}: stopping, as {} it is bound to stopped",
                    s.def.name, self.svcs[i].def.name
                ));
                self.stop(j);
            }
        }
    }

    /// The state and result `rehost-init status` shows for `i`: its own, except for an
    /// active oneshot wrapper (`RemainAfterExit=yes`) that pulls services in, which is as
    /// up as they are: failed when one failed, starting while one is not up yet.
    pub(super) fn shown_state(&self, i: usize) -> (State, String) {
        let s = &self.svcs[i];
        let own = (s.state, s.result.clone());
        let wrapper = s.def.service.service_type == ServiceType::Oneshot
            && s.def.service.remain_after_exit
            && s.state == State::Active;
        if !wrapper {
            return own;
        }
        let pulled = self.order.pulls[i]
            .iter()
            .map(|&j| &self.svcs[j])
            .filter(|p| p.def.autostart && p.def.timer.is_none());
        let mut shown = own;
        for p in pulled {
            match p.state {
                State::Failed => return (State::Failed, format!("{} failed", p.def.name)),
                State::Inactive if p.attempted => {
                    return (State::Inactive, format!("{} is stopped", p.def.name))
                }
                State::Inactive | State::Starting | State::AutoRestart | State::Stopping => {
                    shown = (State::Starting, format!("waiting for {}", p.def.name));
                }
                State::Active | State::Exited | State::Waiting | State::Skipped => {}
            }
        }
        shown
    }
}
