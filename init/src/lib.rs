//! rehost-init: the pid 1 that rehost puts inside images, and the one parser of service
//! definitions (systemd units, SysV LSB headers, OpenRC and upstart jobs) that both the
//! inventory and the init use. It depends on no other rehost crate: it is small, and
//! built static to ship inside images.
//!
//! - [`units`]: the parsers. They read service definitions through the small
//!   [`units::FileSystem`] trait (so the converter can feed them from any `Source`, and the
//!   init from the live root) and return plain structs. They depend on nothing but `std`.
//! - [`discover`]: which services an image's own init would start.
//! - [`config`]: `/etc/rehost/init.toml`, written by `rehost convert`, read by the init.
//! - [`service`], [`order`], [`users`], [`supervisor`]: the init itself.

pub mod config;
pub mod discover;
pub mod order;
pub mod service;
pub mod supervisor;
pub mod units;
pub mod users;

/// Logs one line from rehost-init to stderr, prefixed with `rehost-init:`.
pub fn log(msg: &str) {
    supervisor::log_line(msg);
}
