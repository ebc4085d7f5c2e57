//! Dependency ordering: which services must be up before another starts, resolved across
//! names, aliases and LSB facilities, with cycles broken (and reported) so that the
//! order is always usable. Stopping uses the same graph backwards.

use crate::service::{ServiceDef, FACILITIES};
use std::collections::{BTreeMap, BTreeSet};

/// The resolved ordering of a set of services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// For each service (by index), the services that must have started before it starts.
    pub after: Vec<BTreeSet<usize>>,
    /// For each service, the services it requires (it fails if they fail).
    pub requires: Vec<BTreeSet<usize>>,
    /// For each service, the services stopped when it is stopped: those that require it
    /// (`Requires=`, `BindsTo=`, `.requires/` links) and those part of it (`PartOf=`).
    pub stopped_with: Vec<BTreeSet<usize>>,
    /// For each service, the services bound to it (`BindsTo=`): stopped whenever it
    /// stops, whatever stopped it.
    pub bound: Vec<BTreeSet<usize>>,
    /// For each service, the services it pulls in (`Wants=`, `Requires=`, `BindsTo=`,
    /// `.wants/` and `.requires/` links).
    pub pulls: Vec<BTreeSet<usize>>,
    /// A start order consistent with `after` (each service after everything it waits for).
    pub start_order: Vec<usize>,
    /// Problems found: unknown required services, broken cycles.
    pub warnings: Vec<String>,
}

/// Maps every name a service answers to (its own, its aliases, `ssh` for `ssh.service`,
/// the LSB facilities it provides) to its index.
fn names(defs: &[ServiceDef]) -> BTreeMap<String, Vec<usize>> {
    let mut map: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, d) in defs.iter().enumerate() {
        let mut all: Vec<String> = d.provides.clone();
        all.push(d.name.clone());
        for p in d.provides.iter().chain(std::iter::once(&d.name)) {
            if let Some(stem) = p.strip_suffix(".service") {
                all.push(stem.to_string());
            } else if !p.contains('.') {
                all.push(format!("{p}.service"));
            }
        }
        for (facility, providers) in FACILITIES {
            if all.iter().any(|n| providers.contains(&n.as_str())) {
                all.push(facility.to_string());
            }
        }
        for n in all {
            let v = map.entry(n).or_default();
            if !v.contains(&i) {
                v.push(i);
            }
        }
    }
    map
}

/// Resolves the `After=`/`Before=`/`Requires=` names of `defs` against each other.
/// Names of things that are not run here (targets, sockets, dropped services, facilities
/// like `$network` that a container always has) impose nothing; a required service that
/// is not here is reported in the warnings.
pub fn resolve(defs: &[ServiceDef]) -> Order {
    let map = names(defs);
    let n = defs.len();
    let mut after = vec![BTreeSet::new(); n];
    let mut requires = vec![BTreeSet::new(); n];
    let mut stopped_with = vec![BTreeSet::new(); n];
    let mut bound = vec![BTreeSet::new(); n];
    let mut pulls = vec![BTreeSet::new(); n];
    let mut warnings = Vec::new();
    let lookup = |name: &str| map.get(name).cloned().unwrap_or_default();
    for (i, d) in defs.iter().enumerate() {
        for a in &d.after {
            after[i].extend(lookup(a).into_iter().filter(|&j| j != i));
        }
        for b in &d.before {
            for j in lookup(b) {
                if j != i {
                    after[j].insert(i);
                }
            }
        }
        for r in &d.requires {
            let found = lookup(r);
            if found.is_empty() {
                if !r.ends_with(".target") && !r.starts_with('$') {
                    warnings.push(format!(
                        "{} requires {r}, which is not run here; ignored",
                        d.name
                    ));
                }
            } else {
                requires[i].extend(found.into_iter().filter(|&j| j != i));
            }
        }
        for &j in &requires[i] {
            stopped_with[j].insert(i);
        }
        for p in &d.part_of {
            for j in lookup(p).into_iter().filter(|&j| j != i) {
                stopped_with[j].insert(i);
            }
        }
        for b in &d.binds_to {
            for j in lookup(b).into_iter().filter(|&j| j != i) {
                bound[j].insert(i);
            }
        }
        for w in d.wants.iter().chain(&d.requires).chain(&d.linked) {
            pulls[i].extend(lookup(w).into_iter().filter(|&j| j != i));
        }
    }
    // Kahn's algorithm, lowest index first so the order is deterministic; a cycle is broken
    // by dropping the waits of its lowest-index member.
    let mut remaining: BTreeSet<usize> = (0..n).collect();
    let mut start_order = Vec::with_capacity(n);
    while !remaining.is_empty() {
        let ready = remaining
            .iter()
            .copied()
            .find(|&i| after[i].iter().all(|j| !remaining.contains(j)));
        let next = match ready {
            Some(i) => i,
            None => {
                let i = *remaining.iter().next().expect("not empty");
                let dropped: Vec<String> = after[i]
                    .iter()
                    .filter(|j| remaining.contains(j))
                    .map(|&j| defs[j].name.clone())
                    .collect();
                warnings.push(format!(
                    "ordering cycle: {} no longer waits for {}",
                    defs[i].name,
                    dropped.join(", ")
                ));
                after[i].retain(|j| !remaining.contains(j));
                i
            }
        };
        remaining.remove(&next);
        start_order.push(next);
    }
    Order {
        after,
        requires,
        stopped_with,
        bound,
        pulls,
        start_order,
        warnings,
    }
}

impl Order {
    /// Every service that stops when `i` is stopped, transitively (`i` not included), in
    /// index order.
    pub fn stop_closure(&self, i: usize) -> Vec<usize> {
        let mut seen = BTreeSet::from([i]);
        let mut todo = vec![i];
        while let Some(j) = todo.pop() {
            for &k in &self.stopped_with[j] {
                if seen.insert(k) {
                    todo.push(k);
                }
            }
        }
        seen.remove(&i);
        seen.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServiceKind;

    fn def(name: &str, after: &[&str], before: &[&str], provides: &[&str]) -> ServiceDef {
        let mut d = ServiceDef::new(name, ServiceKind::Systemd);
        d.after = after.iter().map(|s| s.to_string()).collect();
        d.before = before.iter().map(|s| s.to_string()).collect();
        d.provides.extend(provides.iter().map(|s| s.to_string()));
        d
    }

    fn names_in_order(defs: &[ServiceDef], o: &Order) -> Vec<String> {
        o.start_order
            .iter()
            .map(|&i| defs[i].name.clone())
            .collect()
    }

    #[test]
    fn orders_by_after_before_aliases_and_facilities() {
        let defs = vec![
            def(
                "nginx.service",
                &["network.target", "syslog.service"],
                &[],
                &[],
            ),
            def("ssh", &["$syslog", "$remote_fs"], &[], &["sshd"]),
            def("rsyslog.service", &[], &[], &["syslog.service"]),
            def("early.service", &[], &["nginx.service"], &[]),
        ];
        let o = resolve(&defs);
        assert_eq!(
            names_in_order(&defs, &o),
            ["rsyslog.service", "ssh", "early.service", "nginx.service"]
        );
        assert_eq!(o.after[0], BTreeSet::from([2, 3]));
        assert_eq!(o.after[1], BTreeSet::from([2]));
        assert!(o.warnings.is_empty());
    }

    #[test]
    fn breaks_cycles_and_reports_missing_requirements() {
        let mut defs = vec![
            def("a.service", &["b.service"], &[], &[]),
            def("b.service", &["a.service"], &[], &[]),
            def("c.service", &["b.service"], &[], &[]),
        ];
        defs[2].requires = vec!["gone.service".into(), "sockets.target".into()];
        let o = resolve(&defs);
        assert_eq!(
            names_in_order(&defs, &o),
            ["a.service", "b.service", "c.service"]
        );
        assert_eq!(o.warnings.len(), 2, "{:?}", o.warnings);
        assert!(o.warnings.iter().any(|w| w.contains("cycle")));
        assert!(o.warnings.iter().any(|w| w.contains("gone.service")));
    }

    #[test]
    fn stop_propagates_along_requires_binds_to_and_part_of() {
        let mut defs = vec![
            def("db.service", &[], &[], &[]),
            def("app.service", &["db.service"], &[], &[]),
            def("web.service", &["app.service"], &[], &[]),
            def("postfix.service", &[], &[], &[]),
            def("postfix@-.service", &[], &["postfix.service"], &[]),
            def("side.service", &[], &[], &[]),
        ];
        defs[1].requires = vec!["db.service".into()];
        defs[2].requires = vec!["app".into()];
        defs[2].binds_to = vec!["app".into()];
        defs[3].linked = vec!["postfix@-.service".into()];
        defs[4].part_of = vec!["postfix.service".into()];
        defs[5].wants = vec!["db.service".into()];
        let o = resolve(&defs);
        // Stopping the database stops what requires it, and what requires that; a unit
        // that only wants it keeps running.
        assert_eq!(o.stop_closure(0), [1, 2]);
        assert_eq!(o.stop_closure(3), [4]);
        assert!(o.stop_closure(4).is_empty());
        assert_eq!(o.bound[1], BTreeSet::from([2]));
        assert_eq!(o.pulls[3], BTreeSet::from([4]));
        assert_eq!(o.pulls[5], BTreeSet::from([0]));
        // postfix@- starts before the wrapper that pulls it in.
        let order = names_in_order(&defs, &o);
        let at = |n: &str| order.iter().position(|x| x == n).unwrap();
        assert!(at("postfix@-.service") < at("postfix.service"), "{order:?}");
    }
}
