//! The default hook scripts rehost puts in every image, and the glue that runs the hooks
//! when the image's own init (systemd, SysV) is pid 1.

/// prestart: a fresh machine id for every container (the source's was emptied).
pub const MACHINE_ID: &str = r#"#!/bin/sh
# rehost default prestart hook: this container gets its own machine id; the source
# server's /etc/machine-id was emptied when the image was built.
f=/etc/machine-id
if [ ! -s "$f" ] && [ -r /proc/sys/kernel/random/uuid ]; then
    id=$(tr -d '-' < /proc/sys/kernel/random/uuid)
    if ! printf '%s\n' "$id" > "$f" 2>/dev/null; then
        echo "rehost: cannot write $f (read-only root?); keeping it empty" >&2
    fi
fi
exit 0
"#;

/// prestart: SSH host keys of its own for every container (the source's were not shipped).
pub const SSH_HOST_KEYS: &str = r#"#!/bin/sh
# rehost default prestart hook: the source server's SSH host keys were not shipped in
# the image (every container would impersonate the server); generate this container's.
[ -d /etc/ssh ] || exit 0
command -v ssh-keygen >/dev/null 2>&1 || exit 0
for k in /etc/ssh/ssh_host_*_key; do
    [ -e "$k" ] && exit 0
done
echo "rehost: generating SSH host keys" >&2
exec ssh-keygen -A
"#;

/// systemd mode: runs the poststop hooks when systemd stops this unit, which is ordered
/// before sysinit.target and so stops after every ordinary service.
pub const SYSTEMD_UNIT: &str = r#"# rehost: runs /etc/rehost/hooks/poststop.d when the container stops
# (systemd is pid 1; rehost-init ran the prestart hooks before handing over to it).
[Unit]
Description=rehost container hooks
DefaultDependencies=no
Conflicts=shutdown.target
Before=sysinit.target shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
ExecStop=@INIT@ hooks poststop
TimeoutStopSec=90

[Install]
WantedBy=sysinit.target
"#;

/// sbin-init mode (SysV): an init script whose stop action runs the poststop hooks, linked
/// last among the kill scripts of runlevels 0 and 6.
pub const SYSV_SCRIPT: &str = r#"#!/bin/sh
### BEGIN INIT INFO
# Provides:          rehost-hooks
# Required-Start:
# Required-Stop:     $all
# Default-Start:
# Default-Stop:      0 6
# Short-Description: rehost container hooks (poststop)
### END INIT INFO
# rehost: /sbin/init is pid 1; rehost-init ran the prestart hooks before handing over.
case "$1" in
    stop) exec @INIT@ hooks poststop ;;
    *) exit 0 ;;
esac
"#;
