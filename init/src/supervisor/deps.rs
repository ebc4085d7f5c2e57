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
                    "{}: stopping, bound to {}, which stopped",
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

#[cfg(test)]
mod tests {
    use super::super::{Options, Supervisor};
    use super::*;
    use crate::config::{Mode, ServiceKind};
    use crate::service::ServiceDef;
    use std::time::Duration;

    fn def(name: &str) -> ServiceDef {
        let mut d = ServiceDef::new(name, ServiceKind::Systemd);
        d.service.exec_start = vec![];
        d
    }

    /// A supervisor of `defs` that has started nothing and publishes nothing.
    fn supervisor(defs: Vec<ServiceDef>) -> Supervisor {
        let opts = Options {
            mode: Mode::Rehost,
            cmd: vec![],
            stop_timeout: Duration::from_secs(5),
            forward_all: false,
            status_path: None,
        };
        Supervisor::new(defs, opts, -1)
    }

    fn states(s: &Supervisor) -> Vec<State> {
        s.svcs.iter().map(|s| s.state).collect()
    }

    #[test]
    fn stopping_a_requirement_stops_its_dependents_only() {
        let mut defs = vec![
            def("db.service"),
            def("app.service"),
            def("web.service"),
            def("side.service"),
            def("bound.service"),
        ];
        defs[1].requires = vec!["db.service".into()];
        defs[2].part_of = vec!["app.service".into()];
        defs[3].wants = vec!["db.service".into()];
        defs[4].binds_to = vec!["side.service".into()];
        defs[4].requires = vec!["side.service".into()];
        let mut s = supervisor(defs);
        for svc in &mut s.svcs {
            svc.state = State::Active;
            svc.attempted = true;
        }
        // Nothing runs: each stop completes at once.
        s.stop(0);
        use State::{Active, Inactive};
        assert_eq!(states(&s), [Inactive, Inactive, Inactive, Active, Active]);
        // A unit bound to another stops when that one ends, whatever ended it.
        s.svcs[3].state = State::Failed;
        s.stop_bound(3);
        assert_eq!(s.svcs[4].state, Inactive);
    }

    #[test]
    fn a_oneshot_wrapper_is_as_up_as_what_it_pulls_in() {
        let mut wrapper = def("postfix.service");
        wrapper.service.service_type = ServiceType::Oneshot;
        wrapper.service.remain_after_exit = true;
        wrapper.linked = vec!["postfix@-.service".into()];
        let mut instance = def("postfix@-.service");
        instance.pulled_in_by = Some("postfix.service".into());
        let mut s = supervisor(vec![wrapper, instance]);
        s.svcs[0].state = State::Active;
        s.svcs[1].state = State::Active;
        assert_eq!(s.shown_state(0).0, State::Active);
        s.svcs[1].state = State::Starting;
        assert_eq!(s.shown_state(0).0, State::Starting);
        s.svcs[1].state = State::Failed;
        assert_eq!(
            s.shown_state(0),
            (State::Failed, "postfix@-.service failed".to_string())
        );
        // Its own state is its own when it is down itself.
        s.svcs[0].state = State::Inactive;
        assert_eq!(s.shown_state(0).0, State::Inactive);
    }
}
