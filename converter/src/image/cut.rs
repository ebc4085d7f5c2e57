//! How a server's packages are cut into layers, the same way on every server.
//!
//! Two servers share a layer only when its bytes are the same, so which layer a package
//! goes to must depend on the package alone, never on what else the server holds: a
//! package as large as [`LARGE`] by its own installed size gets a layer of its own; the
//! others go into a fixed number of bins, chosen by a stable hash of the package's name.
//! Two servers whose packages in a bin are the same, at the same versions, share that
//! bin's layer.
//!
//! The one place where the server shows: when it has more large packages than the layer
//! budget holds, the bar for a layer of one's own doubles until they fit, so servers
//! with about as many large packages keep the same bar (and share those layers).

use crate::inventory::ownership::Package;

/// The default maximum number of layers of an image, the rehost layer included: well
/// under what overlay-based engines stack (about 125), as bootc chose.
pub const DEFAULT_MAX_LAYERS: usize = 64;

/// A package this large (its own installed size) gets a layer of its own, when the
/// budget holds all of them; else the bar doubles until it does.
pub const LARGE: u64 = 1 << 20;

/// Layers that are not packages': the server's own and the rehost layer.
const RESERVED: usize = 2;

/// What a budget of layers cannot hold.
#[derive(Debug, thiserror::Error)]
#[error("{0} layers is too few for layers by package: they need at least 3 (the packages', the server's own and rehost's)")]
pub struct TooFewLayers(pub usize);

/// One layer's worth of packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The package's name for a large package's own layer, `bin N` for a bin.
    pub name: String,
    /// Indexes into the packages the cut was made from.
    pub packages: Vec<usize>,
}

/// The packages cut into groups, one layer each (an empty group gives no layer).
#[derive(Debug, Clone)]
pub struct Cut {
    pub groups: Vec<Group>,
    /// Package index → its group.
    of_package: Vec<usize>,
}

impl Cut {
    /// Cuts `packages` for images of at most `max_layers` layers.
    pub fn new(packages: &[Package], max_layers: usize) -> Result<Cut, TooFewLayers> {
        let budget = max_layers
            .checked_sub(RESERVED)
            .filter(|b| *b > 0)
            .ok_or(TooFewLayers(max_layers))?;
        // Depends on the flag alone: the bin of a package is the same on every server.
        let bins = (budget * 3 / 8).max(1);
        let own_layers = budget - bins;

        // The large packages by name (a multi-arch package is one name), largest first.
        let mut large: Vec<(u64, &str)> = Vec::new();
        for p in packages.iter().filter(|p| p.installed_size >= LARGE) {
            match large.iter_mut().find(|(_, n)| *n == p.name) {
                Some(l) => l.0 = l.0.max(p.installed_size),
                None => large.push((p.installed_size, &p.name)),
            }
        }
        let mut bar = LARGE;
        while large.len() > own_layers {
            bar = bar.saturating_mul(2);
            large.retain(|(size, _)| *size >= bar);
        }
        let mut own: Vec<&str> = large.into_iter().map(|(_, n)| n).collect();
        own.sort_unstable();

        let mut groups: Vec<Group> = own
            .iter()
            .map(|n| Group {
                name: n.to_string(),
                packages: Vec::new(),
            })
            .chain((0..bins).map(|i| Group {
                name: format!("bin {i}"),
                packages: Vec::new(),
            }))
            .collect();
        let of_package = packages
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let g = match own.binary_search(&p.name.as_str()) {
                    Ok(at) => at,
                    Err(_) => own.len() + bin_of(&p.name, bins),
                };
                groups[g].packages.push(i);
                g
            })
            .collect();
        Ok(Cut { groups, of_package })
    }

    /// The group of package `index`.
    pub fn group_of(&self, index: usize) -> usize {
        self.of_package[index]
    }
}

/// A stable hash of the name (the first bytes of its MD5), so the bin is the same in
/// every build of rehost on every machine.
fn bin_of(name: &str, bins: usize) -> usize {
    use md5::Digest;
    let sum = md5::Md5::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&sum[..8]);
    (u64::from_be_bytes(first) % bins as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, size: u64) -> Package {
        Package {
            name: name.into(),
            version: "1".into(),
            architecture: "amd64".into(),
            installed_size: size,
        }
    }

    fn groups_of(cut: &Cut, packages: &[Package]) -> Vec<(String, String)> {
        packages
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), cut.groups[cut.group_of(i)].name.clone()))
            .collect()
    }

    /// A package's layer does not move when the server has other packages besides.
    #[test]
    fn a_package_keeps_its_layer_whatever_else_is_installed() {
        let small: Vec<Package> = (0..200).map(|i| pkg(&format!("lib{i}"), 10_000)).collect();
        let mut one = small.clone();
        one.push(pkg("libc6", 13 << 20));
        let mut other: Vec<Package> = small.iter().rev().cloned().collect();
        other.push(pkg("postgresql", 50 << 20));
        other.push(pkg("libc6", 13 << 20));
        let a = Cut::new(&one, DEFAULT_MAX_LAYERS).unwrap();
        let b = Cut::new(&other, DEFAULT_MAX_LAYERS).unwrap();
        let in_a: std::collections::BTreeMap<_, _> = groups_of(&a, &one).into_iter().collect();
        for (name, group) in groups_of(&b, &other) {
            if name != "postgresql" {
                assert_eq!(in_a[&name], group, "{name}");
            }
        }
        assert_eq!(in_a["libc6"], "libc6");
        // 23 bins for 64 layers: the small packages spread over all of them.
        let bins: std::collections::BTreeSet<_> =
            groups_of(&a, &one).into_iter().map(|(_, g)| g).collect();
        assert_eq!(bins.len(), 24, "{bins:?}");
    }

    #[test]
    fn the_budget_holds_whatever_the_packages() {
        let many: Vec<Package> = (0..60)
            .map(|i| pkg(&format!("big{i}"), (3 + i as u64) << 20))
            .collect();
        for max in [3, 4, 10, 64, 125] {
            let cut = Cut::new(&many, max).unwrap();
            assert!(cut.groups.len() + RESERVED <= max, "{max}");
        }
        // 60 above 1 MiB, 47 above 16 MiB: the bar doubled to 32 MiB, where 31 fit.
        let cut = Cut::new(&many, 64).unwrap();
        assert!(cut.groups.iter().any(|g| g.name == "big59"));
        assert!(cut.groups.iter().any(|g| g.name == "big29"));
        assert!(!cut.groups.iter().any(|g| g.name == "big28"));
        assert!(Cut::new(&many, 2).is_err());
    }
}
