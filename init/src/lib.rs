//! rehost-init: the pid 1 that rehost puts inside images, and the one parser of service
//! definitions (systemd units, SysV LSB headers, OpenRC and upstart jobs) that both the
//! inventory and the init use. It depends on no other rehost crate: it is small, and
//! built static to ship inside images.
//!
//! - [`units`]: the parsers. They read service definitions through the small
//!   [`model::FileSystem`] trait (so the converter can feed them from any `Source`, and the
//!   init from the live root) and return plain structs. They depend on nothing but `std`.
//! - [`model`]: the one model of what a root runs, for every init family: init detection,
//!   the default target or runlevel, enablement (systemd links, rc links, OpenRC
//!   runlevels, upstart `start on`), and the one resolver of paths inside a root.
//! - [`config`]: `/etc/rehost/init.toml`, written by `rehost convert`, read by the init.
//! - [`service`], [`order`], [`users`], [`supervisor`], [`generators`], [`tmpfiles`]: the
//!   init itself.

pub mod cgroupfs;
pub mod config;
pub mod console;
pub mod control;
pub mod generators;
pub mod model;
pub mod order;
pub mod service;
pub mod supervisor;
pub mod tmpfiles;
pub mod tools;
pub mod units;
pub mod users;

/// Logs one line from rehost-init to stderr, prefixed with `rehost-init:`.
pub fn log(msg: &str) {
    supervisor::log_line(msg);
}
