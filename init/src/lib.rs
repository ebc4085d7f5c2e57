//! rehost-init: the pid 1 that rehost puts inside images, and the one parser of service
//! definitions (systemd units, SysV LSB headers, OpenRC and upstart jobs) that both the
//! inventory and the init use.
//!
//! The library half is [`units`]: it reads service definitions through the small
//! [`units::FileSystem`] trait (so the converter can feed it from any `Source`, and the init
//! from the live root) and returns plain structs. It depends on nothing but `std`.

pub mod units;
