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
        start_order,
        warnings,
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
}
