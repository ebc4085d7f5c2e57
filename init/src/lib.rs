//! rehost-init: the pid 1 that rehost puts inside images, and the one parser of service
//! definitions (systemd units, SysV LSB headers, OpenRC and upstart jobs) that both the
//! inventory and the init use.
