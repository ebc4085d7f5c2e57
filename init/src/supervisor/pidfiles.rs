//! Following a service's main process when the supervisor did not start it directly: the
//! daemon an init script or a forking service leaves behind. Its pid comes from the pid file
//! it writes (`PIDFile=`, the pid file its script names, else `/run/NAME.pid`), read again
//! at a modest interval so that a daemon restarted by its own script (`/etc/init.d/nginx
//! restart` run by hand) is followed to its new pid, and a daemon that died is noticed even
//! when it is not our child (no SIGCHLD comes for it).

use super::Outcome;
use crate::config::ServiceKind;
use crate::service::ServiceDef;
use crate::units::{openrc, sysv, FileSystem};
use std::time::{Duration, Instant};

/// How often a followed service's pid file and main process are looked at.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// The first look after a service became active: daemons often write their pid file a
/// moment after their start command returned.
pub const FIRST_LOOK: Duration = Duration::from_millis(200);
/// How long a service whose main process ended waits for its pid file to name a new one
/// (its script is restarting it) before it is over.
pub const GRACE: Duration = Duration::from_secs(3);
/// Init scripts larger than this are not searched for pid files.
const MAX_SCRIPT: usize = 1 << 20;

/// The pid files a service's daemon writes, most likely first: `PIDFile=`; for an init
/// script (SysV, or an OpenRC script run as `SCRIPT start`), the ones the script names;
/// then, for scripts, the conventional `/run/NAME.pid` and `/var/run/NAME.pid` of its name
/// and the names it provides.
pub fn discover(fs: &dyn FileSystem, def: &ServiceDef) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |p: String| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    if let Some(p) = &def.service.pid_file {
        add(p.clone());
    }
    let Some(script) = init_script(def) else {
        return out;
    };
    let text = fs
        .read(&script)
        .ok()
        .filter(|b| b.len() <= MAX_SCRIPT)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if def.kind == ServiceKind::Openrc {
        let name = script.trim_start_matches("/etc/init.d/");
        if let Some(p) = openrc::load(fs, name).ok().and_then(|s| s.pidfile) {
            add(p);
        }
    }
    for p in sysv::pid_files(&text) {
        add(p);
    }
    let stem = def.name.strip_suffix(".service").unwrap_or(&def.name);
    let names = std::iter::once(stem).chain(
        def.provides
            .iter()
            .map(|p| p.strip_suffix(".service").unwrap_or(p)),
    );
    for n in names {
        if n.is_empty() || n.starts_with('$') || n.contains('/') {
            continue;
        }
        add(format!("/run/{n}.pid"));
        add(format!("/var/run/{n}.pid"));
    }
    out
}

/// The init script a service runs as `SCRIPT start`, if that is how it runs.
fn init_script(def: &ServiceDef) -> Option<String> {
    if !matches!(def.kind, ServiceKind::Sysv | ServiceKind::Openrc) {
        return None;
    }
    let argv = &def.service.exec_start.first()?.argv;
    match argv.as_slice() {
        [script, action] if action == "start" && script.starts_with("/etc/init.d/") => {
            Some(script.clone())
        }
        _ => None,
    }
}

/// What one look at a followed service found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing changed.
    Same,
    /// A pid file names another live process: the service's main process from now on.
    Adopt(i32),
    /// The main process is gone and no pid file names a live one: wait [`GRACE`].
    Lost,
    /// Gone for longer than [`GRACE`]: the service is over, with this outcome.
    Gone(Outcome),
}

/// The following of one service.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// The pid files, most likely first (empty: only the main process is watched).
    pub paths: Vec<String>,
    /// When the main process was found gone, and how it ended.
    lost: Option<(Instant, Outcome)>,
    /// When to look next (`None`: not followed now).
    pub next: Option<Instant>,
}

impl Watch {
    /// Following `paths`.
    pub fn new(paths: Vec<String>) -> Watch {
        Watch {
            paths,
            ..Watch::default()
        }
    }

    /// Whether the service's main process is found through pid files.
    pub fn by_pid_file(&self) -> bool {
        !self.paths.is_empty()
    }

    /// The live process the first readable pid file names (`read` reads one, giving only
    /// a live pid: [`super::procs::read_pid_file`]).
    pub fn named(&self, read: &dyn Fn(&str) -> Option<i32>) -> Option<i32> {
        self.paths.iter().find_map(|p| read(p)).filter(|&p| p > 1)
    }

    /// Whether the main process was found gone and the grace is running.
    pub fn losing(&self) -> bool {
        self.lost.is_some()
    }

    /// Starts following (the service became active).
    pub fn arm(&mut self, now: Instant) {
        self.lost = None;
        self.next = Some(now + FIRST_LOOK);
    }

    /// Stops following (the service is stopping or over).
    pub fn disarm(&mut self) {
        self.lost = None;
        self.next = None;
    }

    /// The main process ended (reaped with `outcome`, or found gone): the grace starts,
    /// and the next look comes soon.
    pub fn lose(&mut self, now: Instant, outcome: Outcome) {
        if self.lost.is_none() {
            self.lost = Some((now, outcome));
        }
        self.next = Some(now + FIRST_LOOK);
    }

    /// Looks at the service whose main process is `main`: `alive` says whether a pid
    /// lives, `read` reads a pid file (a live pid or nothing). Schedules the next look.
    pub fn check(
        &mut self,
        main: Option<i32>,
        now: Instant,
        alive: &dyn Fn(i32) -> bool,
        read: &dyn Fn(&str) -> Option<i32>,
    ) -> Verdict {
        self.next = Some(now + INTERVAL);
        let verdict = match (self.named(read), main) {
            (Some(p), m) if m != Some(p) => Verdict::Adopt(p),
            (Some(_), _) => Verdict::Same,
            (None, Some(m)) if alive(m) => Verdict::Same,
            (None, Some(_)) => {
                self.lose(now, Outcome::Vanished);
                return Verdict::Lost;
            }
            (None, None) => match self.lost {
                Some((at, outcome)) if now >= at + GRACE => {
                    self.disarm();
                    return Verdict::Gone(outcome);
                }
                Some((at, _)) => {
                    self.next = Some((now + FIRST_LOOK).min(at + GRACE));
                    return Verdict::Same;
                }
                None => Verdict::Same,
            },
        };
        self.lost = None;
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::HostRoot;

    use crate::units::tests_support::root_with;

    fn load(root: &HostRoot, name: &str, kind: ServiceKind) -> ServiceDef {
        let entry = crate::config::ServiceEntry {
            name: name.into(),
            kind,
            critical: false,
            optional: false,
        };
        crate::service::load(root, &entry).unwrap()
    }

    #[test]
    fn pid_files_come_from_the_definition_then_the_conventions() {
        let (_d, root) = root_with(&[
            ("/etc/init.d/ssh", "#!/bin/sh\n### BEGIN INIT INFO\n# Provides: sshd\n### END INIT INFO\nstart-stop-daemon --start --pidfile /run/sshd.pid --exec /usr/sbin/sshd\n"),
            ("/etc/init.d/plain", "#!/bin/sh\n/usr/sbin/plaind\n"),
            ("/etc/init.d/web", "#!/sbin/openrc-run\ncommand=/usr/bin/web\npidfile=/run/web/web.pid\nstart() {\n  /usr/bin/web &\n}\n"),
            ("/lib/systemd/system/fork.service", "[Service]\nType=forking\nPIDFile=/run/fork.pid\nExecStart=/usr/sbin/forkd\n"),
            ("/lib/systemd/system/simple.service", "[Service]\nExecStart=/usr/sbin/simpled\n"),
        ]);
        let ssh = discover(&root, &load(&root, "ssh", ServiceKind::Sysv));
        assert_eq!(
            ssh,
            [
                "/run/sshd.pid",
                "/run/ssh.pid",
                "/var/run/ssh.pid",
                "/var/run/sshd.pid"
            ]
        );
        let plain = discover(&root, &load(&root, "plain", ServiceKind::Sysv));
        assert_eq!(plain, ["/run/plain.pid", "/var/run/plain.pid"]);
        let web = discover(&root, &load(&root, "web", ServiceKind::Openrc));
        assert_eq!(web[0], "/run/web/web.pid");
        let fork = discover(&root, &load(&root, "fork.service", ServiceKind::Systemd));
        assert_eq!(fork, ["/run/fork.pid"]);
        let simple = discover(&root, &load(&root, "simple.service", ServiceKind::Systemd));
        assert!(simple.is_empty());
    }

    /// A fake process table and pid files for [`Watch::check`].
    struct World {
        alive: Vec<i32>,
        files: Vec<(&'static str, i32)>,
    }

    impl World {
        fn check(&self, w: &mut Watch, main: Option<i32>, now: Instant) -> Verdict {
            let alive = |p: i32| self.alive.contains(&p);
            let read = |path: &str| {
                self.files
                    .iter()
                    .find(|(f, _)| *f == path)
                    .map(|(_, p)| *p)
                    .filter(|p| alive(*p))
            };
            w.check(main, now, &alive, &read)
        }
    }

    #[test]
    fn a_daemon_restarted_by_its_script_is_followed_and_a_dead_one_is_over() {
        let t0 = Instant::now();
        let mut w = Watch::new(vec!["/run/nginx.pid".into()]);
        w.arm(t0);
        // The pid file appears after the start command returned: adopted.
        let mut world = World {
            alive: vec![100],
            files: vec![("/run/nginx.pid", 100)],
        };
        assert_eq!(world.check(&mut w, None, t0), Verdict::Adopt(100));
        assert_eq!(world.check(&mut w, Some(100), t0), Verdict::Same);
        // Restarted by hand: the old one is gone, the pid file names the new one.
        world.alive = vec![200];
        world.files = vec![("/run/nginx.pid", 200)];
        assert_eq!(world.check(&mut w, Some(100), t0), Verdict::Adopt(200));
        // A stale pid file (its pid dead) names nothing; the main process still runs.
        world.files = vec![("/run/nginx.pid", 999)];
        assert_eq!(world.check(&mut w, Some(200), t0), Verdict::Same);
        // Killed: lost, then over once the grace has passed without a new one.
        world.alive.clear();
        assert_eq!(world.check(&mut w, Some(200), t0), Verdict::Lost);
        let later = t0 + GRACE / 2;
        assert_eq!(world.check(&mut w, None, later), Verdict::Same);
        assert!(w.next.unwrap() <= t0 + GRACE);
        assert_eq!(
            world.check(&mut w, None, t0 + GRACE),
            Verdict::Gone(Outcome::Vanished)
        );
        assert_eq!(w.next, None);
    }

    #[test]
    fn a_reaped_main_process_waits_the_grace_for_its_successor() {
        let t0 = Instant::now();
        let mut w = Watch::new(vec!["/run/sshd.pid".into()]);
        w.arm(t0);
        let mut world = World {
            alive: vec![],
            files: vec![],
        };
        // Reaped with a signal: `restart` stopped it, the new one comes a moment later.
        w.lose(t0, Outcome::Signal(9));
        assert_eq!(world.check(&mut w, None, t0 + GRACE / 3), Verdict::Same);
        world.alive = vec![300];
        world.files = vec![("/run/sshd.pid", 300)];
        assert_eq!(
            world.check(&mut w, None, t0 + GRACE / 2),
            Verdict::Adopt(300)
        );
        // Died again, for good: over with the outcome it was reaped with.
        world.alive.clear();
        w.lose(t0 + GRACE, Outcome::Signal(9));
        assert_eq!(
            world.check(&mut w, None, t0 + GRACE * 2),
            Verdict::Gone(Outcome::Signal(9))
        );
    }

    #[test]
    fn a_main_process_without_pid_file_is_watched_for_its_death() {
        let t0 = Instant::now();
        let mut w = Watch::new(Vec::new());
        w.arm(t0);
        let world = World {
            alive: vec![42],
            files: vec![],
        };
        assert_eq!(world.check(&mut w, Some(42), t0), Verdict::Same);
        let dead = World {
            alive: vec![],
            files: vec![],
        };
        assert_eq!(dead.check(&mut w, Some(42), t0), Verdict::Lost);
        assert_eq!(
            dead.check(&mut w, None, t0 + GRACE),
            Verdict::Gone(Outcome::Vanished)
        );
        // Never had one, never lost one: nothing to say.
        let mut idle = Watch::new(Vec::new());
        assert_eq!(dead.check(&mut idle, None, t0), Verdict::Same);
    }
}
