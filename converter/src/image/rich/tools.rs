//! The service commands of the image (`systemctl`, `service`, `invoke-rc.d`, `journalctl`,
//! and OpenRC's and upstart's where the image has them) become links to rehost-init, which answers them itself in rehost mode and runs the
//! image's own copy, kept under [`REAL_DIR`], when pid 1 is another init (systemd mode).
//! The links replace the files where they are, not earlier in `PATH`: cron jobs and init
//! scripts call them with their own short `PATH`. An LSB init-functions hook sends an
//! init script run by hand through rehost-init, as Debian's systemd hook does.

use super::items::{Item, Items};
use crate::entry::Kind;
use crate::inventory::fs::Root;
use rehost_init::tools::{OWN_INIT_TOOLS, REAL_DIR, TOOLS};

/// The largest tool copied (systemctl is well under 2 MiB).
const MAX_TOOL: u64 = 64 << 20;

/// Where each tool is found on the usual layouts, preferred first.
fn places(tool: &str) -> &'static [&'static str] {
    match tool {
        "systemctl" | "journalctl" => &["/usr/bin", "/bin"],
        "rc-service" | "rc-status" | "rc-update" => &["/sbin", "/usr/sbin", "/bin", "/usr/bin"],
        _ => &["/usr/sbin", "/sbin"],
    }
}

fn absolute(resolved: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(resolved))
}

/// Adds the links, the copies of the image's own tools and the init-functions hook.
pub fn install(fs: &Root<'_>, init_path: &str, items: &mut Items) {
    let mut made_real_dir = false;
    for tool in TOOLS.iter().chain(OWN_INIT_TOOLS) {
        let everywhere = TOOLS.contains(tool);
        // Every real place the tool is (one file seen through /bin and /usr/bin counts once).
        let mut found: Vec<String> = Vec::new();
        for dir in places(tool) {
            let Some(d) = fs.resolve(dir, true) else {
                continue;
            };
            let path = format!("{}/{tool}", absolute(&d)).replace("//", "/");
            if fs.lstat(&path).is_some() && !found.contains(&path) {
                found.push(path);
            }
        }
        if let Some(first) = found.first() {
            let own = fs
                .stat(first)
                .filter(|e| e.kind == Kind::File)
                .and_then(|_| {
                    let resolved = fs.resolve(first, true)?;
                    fs.source().read_to_vec(&resolved, MAX_TOOL).ok()
                });
            if let Some(bytes) = own {
                if !made_real_dir {
                    items.insert("/usr/lib/rehost".into(), Item::Dir(0o755));
                    items.insert(REAL_DIR.into(), Item::Dir(0o755));
                    made_real_dir = true;
                }
                items.insert(format!("{REAL_DIR}/{tool}"), Item::bytes(0o755, bytes));
            }
            for p in &found {
                items.insert(p.clone(), Item::Symlink(init_path.to_string()));
            }
        } else if let Some(d) = places(tool)
            .iter()
            .filter(|_| everywhere)
            .find_map(|d| fs.resolve(d, true))
        {
            // The image has none of its own (systemctl on a SysV server): scripts that call
            // it still work in rehost mode.
            if fs.is_dir(absolute(&d)) {
                items.insert(
                    format!("{}/{tool}", absolute(&d)).replace("//", "/"),
                    Item::Symlink(init_path.to_string()),
                );
            }
        }
    }
    if let Some(d) = fs.resolve("/lib/lsb/init-functions.d", true) {
        if fs.is_dir(absolute(&d)) {
            items.insert(
                format!("{}/01-rehost", absolute(&d)),
                Item::bytes(0o644, init_functions_hook(init_path)),
            );
        }
    }
}

/// Sourced by every LSB init script (through /lib/lsb/init-functions) before it acts.
fn init_functions_hook(init_path: &str) -> String {
    format!(
        r#"# rehost: in a rehost-mode container, an init script run by hand goes through
# rehost-init, so the service it supervises is the one started, stopped or reloaded (as
# the 40-systemd hook does under systemd). The scripts rehost-init runs itself carry
# their service's name in REHOST_SERVICE and run as they are.
case "$1" in
  start|stop|restart|reload|force-reload|try-restart|status)
    _rehost_name=${{0##*/}}
    _rehost_name=${{_rehost_name#[SK][0-9][0-9]}}
    if [ -S /run/rehost/control.sock ] && [ -z "${{_REHOST_REDIRECTED:-}}" ] \
      && [ "${{REHOST_SERVICE:-}}" != "$_rehost_name" ] \
      && [ "${{REHOST_SERVICE:-}}" != "$_rehost_name.service" ]; then
      _REHOST_REDIRECTED=1 exec {init_path} service "$_rehost_name" "$1"
    fi
    ;;
esac
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_names_the_init_and_guards_against_loops() {
        let h = init_functions_hook("/usr/sbin/rehost-init");
        assert!(h.contains("exec /usr/sbin/rehost-init service \"$_rehost_name\" \"$1\""));
        assert!(h.contains("REHOST_SERVICE"));
        assert!(h.contains("_REHOST_REDIRECTED"));
    }
}
