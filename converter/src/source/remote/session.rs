//! One OpenSSH connection to a server, multiplexed (ControlMaster) for every command
//! of a run, and the static helper rehost sends there.
//!
//! The system's `ssh` is used, so the operator's `~/.ssh/config`, agent, `ProxyJump`
//! and `known_hosts` apply as they do for their own `ssh`. Everything rehost leaves
//! on the server lives in one private directory made by `mktemp -d`; the command that
//! runs the helper removes it when the helper ends (also when the connection drops:
//! the helper then sees its standard input close and exits), and dropping the
//! [`Session`] removes it again and closes the connection.

use super::url::SshUrl;
use crate::error::{Error, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the helper writes on its standard error before its ledger (one JSON line).
pub const LEDGER_PREFIX: &str = "\u{1e}rehost-ledger ";

/// The hidden subcommand of `rehost` that serves a remote run on the server.
pub const HELPER_SUBCOMMAND: &str = "__remote";

/// What the helper answers to `--probe`: it runs, and it is ours.
pub const PROBE_ANSWER: &str = "rehost-helper";

/// What starts each answer of the setup script.
pub(crate) const SETUP_MARK: &str = "rehost-setup:";

/// The most kept of what sudo or the probe says after its answer.
const SAID_CAP: usize = 64 << 10;

/// The most answers kept from the start script (it gives four).
const ANSWERS: usize = 16;

/// The empty lines between the helper's bytes and its request: `head -c` may read past
/// its count (busybox's reads through stdio, a buffer of a few KiB), and what it takes
/// must be padding, never the request.
const PADDING: usize = 64 << 10;

/// The relay's socket in the helper's directory (see [`super::relay`]).
const RELAY_SOCKET: &str = "s";

/// The options of the server's tar that keep what the helper keeps, in the order the
/// fallback tries them. GNU tar before 1.27 (SLES 11, CentOS 6) has no `--xattrs`, and
/// busybox's few of them.
const TAR_OPTIONS: [&str; 8] = [
    "--numeric-owner",
    "--one-file-system",
    "--sparse",
    "--sparse-version=1.0",
    "--xattrs",
    "--xattrs-include=*",
    "--acls",
    "--format=posix",
];

/// The line before the options the server's tar lacks.
pub(crate) const TAR_LACKS: &str = "rehost-setup:tar-lacks";

/// The line before the request, after the padding.
const REQUEST_MARK: &str = "rehost-request";

/// The most a request may take: the kept chunks' signatures of a large server.
pub(crate) const REQUEST_CAP: u64 = 256 << 20;

/// The request of a start command, read by the helper from its standard input: past
/// what is left of the padding (see [`PADDING`]), the mark, then the request's line.
pub fn read_request(r: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut skipped = 0;
    loop {
        if !next_line(r, &mut line, REQUEST_MARK.len() + 1)? {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the input ended before the request",
            ));
        }
        if line == REQUEST_MARK.as_bytes() {
            break;
        }
        skipped += line.len() + 1;
        if skipped > 2 * PADDING {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no request after the padding",
            ));
        }
    }
    let mut request = Vec::new();
    r.take(REQUEST_CAP).read_until(b'\n', &mut request)?;
    Ok(request)
}

pub struct Session {
    url: SshUrl,
    /// Holds the control socket and the master's messages.
    local: tempfile::TempDir,
    master: Option<Child>,
    /// The private directory on the server that holds the helper.
    remote_dir: Option<String>,
    sudo: bool,
    /// The server's sudo wants a terminal (see [`super::relay`]).
    terminal: bool,
}

/// How the start went: the helper runs on the server, or it cannot.
pub enum Started {
    /// Its output is the answer to the request.
    Helper(Running),
    /// It cannot (noexec temporary directory, another architecture): why.
    Unusable(String),
}

impl Session {
    /// Opens the master connection; returns once it is authenticated.
    fn connect(url: &SshUrl) -> Result<Session> {
        sweep_stale(&std::env::temp_dir());
        let local = tempfile::Builder::new()
            .prefix(LOCAL_PREFIX)
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let owner = local.path().join(OWNER);
        std::fs::write(&owner, std::process::id().to_string()).map_err(|e| Error::io(&owner, e))?;
        let log_path = local.path().join("master.log");
        let log = std::fs::File::create(&log_path).map_err(|e| Error::io(&log_path, e))?;
        let mut session = Session {
            url: url.clone(),
            local,
            master: None,
            remote_dir: None,
            sudo: false,
            terminal: false,
        };
        let mut master = ssh_command();
        master
            .args(["-o", "ControlMaster=yes", "-o", "ControlPersist=no", "-N"])
            .args(session.common_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = master
            .spawn()
            .map_err(|e| session.fail(format!("cannot run ssh: {e}")))?;
        session.master = Some(child);
        let control = session.control();
        loop {
            if control.exists() {
                return Ok(session);
            }
            let master = session.master.as_mut().expect("set above");
            if let Ok(Some(status)) = master.try_wait() {
                session.master = None;
                let said = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(session.fail(format!(
                    "cannot connect ({}){}",
                    describe_status(status),
                    last_lines(&said, ": ")
                )));
            }
            // The socket appears once the master is authenticated: every run waits here.
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn url(&self) -> &SshUrl {
        &self.url
    }

    pub(crate) fn fail(&self, reason: String) -> Error {
        Error::Remote {
            host: self.url.destination(),
            reason,
        }
    }

    fn control(&self) -> PathBuf {
        self.local.path().join("control")
    }

    fn common_args(&self) -> Vec<String> {
        let mut args = vec![
            "-o".to_string(),
            format!("ControlPath={}", self.control().display()),
        ];
        if let Some(port) = self.url.port {
            args.extend(["-p".into(), port.to_string()]);
        }
        args.push("--".into());
        args.push(self.url.destination());
        args
    }

    /// `ssh` running `script` with `/bin/sh` on the server, through the master.
    fn remote(&self, script: &str) -> Command {
        let mut cmd = ssh_command();
        cmd.args(["-o", "ControlMaster=no", "-T"])
            .args(self.common_args())
            .arg(command_line(script));
        cmd
    }

    /// The second command of a run whose sudo wants a terminal: with one (`-tt`), it
    /// runs the helper in `dir` through `sudo -n`, and that helper takes the run over
    /// from the relay the first command runs ([`super::relay`]). When sudo still
    /// refuses, the helper (as this user) gives the relay its words. The shell outlives
    /// a hangup (a dropped connection); the first command removes `dir`.
    fn start_partner(&self, dir: &str) -> Result<Child> {
        let socket = quote(&format!("{dir}/{RELAY_SOCKET}"));
        let helper = quote(&format!("{dir}/rehost"));
        let script = format!(
            "trap '' HUP; o=$(sudo -n {helper} {HELPER_SUBCOMMAND} --from {socket} 2>&1 </dev/null); \
             rc=$?; [ $rc = 0 ] || {helper} {HELPER_SUBCOMMAND} --refused {socket} \"$o\" </dev/null; exit $rc"
        );
        self.with_terminal(&script)
            .spawn()
            .map_err(|e| self.fail(format!("cannot run ssh: {e}")))
    }

    /// `ssh` running `script` on the server through the master, in a terminal (for a
    /// sudo that wants one); what it says there is not read.
    fn with_terminal(&self, script: &str) -> Command {
        let mut cmd = ssh_command();
        cmd.args(["-o", "ControlMaster=no", "-tt"])
            .args(self.common_args())
            .arg(command_line(script))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// Connects, becomes root (or finds a passwordless sudo), sends the static helper to
    /// a new private directory on the server, checks that it runs there and starts it
    /// on `request`. All of it is one command over the connection: each command costs a
    /// round trip and a remote shell, and the helper's compressed copy is checked here
    /// while the connection is being made.
    pub fn start(
        url: &SshUrl,
        helper: &Path,
        request: &serde_json::Value,
    ) -> Result<(Session, Started)> {
        let copy = {
            let helper = helper.to_path_buf();
            std::thread::spawn(move || compressed_copy(&helper))
        };
        let mut session = Session::connect(url)?;
        let copy = copy.join().ok().flatten();
        let started = session.start_helper(helper, copy, request)?;
        Ok((session, started))
    }

    /// The start script: root or sudo; the helper, the first `sent` bytes of standard
    /// input, into a new private directory (in the temporary directory, or the user's
    /// home when the helper cannot run there); the probe; then the helper itself, which
    /// reads its request from the rest of standard input and is removed when it ends.
    /// Each answer before the helper's output is a line starting with [`SETUP_MARK`]
    /// (a noisy shell startup file may print other lines); `ready` is the last.
    ///
    /// With `relay` (a sudo that wants a terminal), it does not become root: the helper
    /// it runs is the relay, which hands the run to a root helper started with a
    /// terminal ([`Session::start_partner`]).
    fn start_script(size: u64, sent: usize, gzip: bool, relay: bool) -> String {
        let (check, unpack) = match gzip {
            true => (
                format!(
                    "command -v gzip >/dev/null 2>&1 || {{ echo '{SETUP_MARK}no-gzip'; exit 0; }}"
                ),
                " | gzip -dc",
            ),
            false => (":".to_string(), ""),
        };
        // The size check catches an upload cut short, which must not be run. `$su` is
        // unquoted on purpose: empty, or `sudo -n` as two words.
        let (root, run) = match relay {
            false => (
                format!(
                    "if [ \"$(id -u)\" != 0 ]; then \
                     if s=$(sudo -n true 2>&1 </dev/null); then echo '{SETUP_MARK}sudo'; su='sudo -n'; \
                     else echo '{SETUP_MARK}refused'; printf '%s\\n' \"$s\"; exit 0; fi; fi"
                ),
                format!("$su \"$d/rehost\" {HELPER_SUBCOMMAND}"),
            ),
            true => (
                ":".to_string(),
                format!("\"$d/rehost\" {HELPER_SUBCOMMAND} --relay \"$d/{RELAY_SOCKET}\""),
            ),
        };
        [
            "umask 077".to_string(),
            "su=".to_string(),
            root,
            check,
            "d=$(mktemp -d \"${TMPDIR:-/tmp}/rehost.XXXXXXXX\") || exit 1".to_string(),
            format!(
                "if head -c {sent}{unpack} > \"$d/rehost\" && [ \"$(wc -c < \"$d/rehost\")\" -eq {size} ] \
                 && chmod 700 \"$d/rehost\"; then echo \"{SETUP_MARK}dir $d\"; else rm -rf \"$d\"; exit 1; fi"
            ),
            // The answer anywhere in what the probe says: sudo may warn first (one
            // that cannot resolve the server's own name does).
            format!(
                "ok() {{ p=$($2 \"$1/rehost\" {HELPER_SUBCOMMAND} --probe 2>&1 </dev/null) \
                 && case \"$p\" in *{PROBE_ANSWER}*) true;; *) false;; esac; }}"
            ),
            // A noexec temporary directory (CIS-hardened servers mount /tmp, /var/tmp
            // and /dev/shm so): the user's home, where root must run it too.
            format!(
                "if ! ok \"$d\"; then q=$p; \
                 if h=$(mktemp -d \"${{HOME:-/nonexistent}}/rehost.XXXXXXXX\" 2>/dev/null) \
                 && cp \"$d/rehost\" \"$h/rehost\" && ok \"$h\" \"$su\"; \
                 then rm -rf \"$d\"; d=$h; echo \"{SETUP_MARK}dir $d\"; \
                 else rm -rf \"$d\" ${{h:+\"$h\"}}; echo '{SETUP_MARK}unusable'; printf '%s\\n' \"$q\"; exit 0; fi; fi"
            ),
            format!("echo '{SETUP_MARK}ready'"),
            "cd / || { rm -rf \"$d\"; exit 1; }".to_string(),
            run,
            "rc=$?".to_string(),
            "rm -rf \"$d\"".to_string(),
            "exit $rc".to_string(),
        ]
        .join("; ")
    }

    /// What the start command reads: the helper (gzip-compressed when the server has
    /// gzip: every Unix does, and it halves what each run sends before the tree), then
    /// [`PADDING`] empty lines, [`REQUEST_MARK`] and the request (see [`read_request`]).
    fn start_input(upload: &[u8], request: &serde_json::Value) -> Vec<u8> {
        let mut input = Vec::with_capacity(upload.len() + PADDING + 4096);
        input.extend_from_slice(upload);
        input.resize(upload.len() + PADDING, b'\n');
        input.extend_from_slice(REQUEST_MARK.as_bytes());
        input.push(b'\n');
        serde_json::to_writer(&mut input, request).expect("a request serializes");
        input.push(b'\n');
        input
    }

    fn start_helper(
        &mut self,
        helper: &Path,
        mut copy: Option<Vec<u8>>,
        request: &serde_json::Value,
    ) -> Result<Started> {
        let size = std::fs::metadata(helper)
            .map_err(|e| Error::io(helper, e))?
            .len();
        let mut gzip = true;
        // Set once sudo refused for want of a terminal (see [`super::relay`]).
        let mut relay = false;
        loop {
            let upload = match (gzip, &copy) {
                (true, Some(bytes)) => bytes.clone(),
                (true, None) => {
                    let file = std::fs::File::open(helper).map_err(|e| Error::io(helper, e))?;
                    let mut bytes = Vec::new();
                    flate2::read::GzEncoder::new(file, flate2::Compression::fast())
                        .read_to_end(&mut bytes)
                        .map_err(|e| Error::io(helper, e))?;
                    copy = Some(bytes.clone());
                    bytes
                }
                (false, _) => std::fs::read(helper).map_err(|e| Error::io(helper, e))?,
            };
            let script = Self::start_script(size, upload.len(), gzip, relay);
            let mut running = self.spawn(&script, Self::start_input(&upload, request))?;
            let mut out = running.stdout.take().expect("piped");
            let mut answers: Vec<String> = Vec::new();
            // What sudo or the probe said, after their answer.
            let mut rest = String::new();
            let mut line = Vec::new();
            while let Ok(true) = next_line(&mut out, &mut line, Said::LINE) {
                let text = String::from_utf8_lossy(&line);
                match text.strip_prefix(SETUP_MARK) {
                    Some(a) if answers.len() < ANSWERS => answers.push(a.to_string()),
                    Some(_) => {}
                    None if rest.len() < SAID_CAP
                        && answers
                            .last()
                            .is_some_and(|a| a == "refused" || a == "unusable") =>
                    {
                        rest.push_str(&text);
                        rest.push('\n');
                    }
                    None => {}
                }
                match answers.last().map(String::as_str) {
                    Some("ready") if relay && running.partner.is_none() => {
                        // The relay waits: the root helper is started with a terminal.
                        let Some(dir) = usable_dir(&answers) else {
                            break;
                        };
                        match self.start_partner(&dir) {
                            Ok(partner) => running.partner = Some(partner),
                            Err(e) => {
                                running.abandon();
                                return Err(e);
                            }
                        }
                    }
                    Some("ready") if !relay => break,
                    Some("taken") => break,
                    _ => {}
                }
            }
            self.sudo = relay || answers.iter().any(|a| a == "sudo");
            self.terminal = relay;
            // The last one: the helper moves to the user's home from a noexec one.
            let dir = answers
                .iter()
                .rev()
                .find_map(|a| a.strip_prefix("dir "))
                .map(|d| d.trim().to_string());
            if let Some(dir) = &dir {
                if usable_dir(&answers).is_none() {
                    running.abandon();
                    return Err(self.fail(format!("mktemp gave an unusable directory `{dir}`")));
                }
            }
            if answers.last().map(String::as_str) == Some(if relay { "taken" } else { "ready" }) {
                // The helper's output follows its answer.
                running.stdout = Some(out);
                self.remote_dir = dir;
                return Ok(Started::Helper(running));
            }
            let (status, said) = running.finish(Some(out))?;
            if answers.iter().any(|a| a == "refused") {
                if !relay && wants_terminal(&rest) {
                    relay = true;
                    continue;
                }
                let user = self.url.user.clone().unwrap_or_else(|| "this user".into());
                return Err(self.fail(sudo_refusal(&rest, &user)));
            }
            if answers.iter().any(|a| a == "no-gzip") {
                gzip = false;
                continue;
            }
            let text = Vec::from(said.last).join("\n");
            if status.code() == Some(255) {
                return Err(self.fail(format!(
                    "the connection was lost while sending the helper{}",
                    last_lines(&text, ": ")
                )));
            }
            match (status.success(), dir) {
                // The script removed the directory.
                (true, Some(dir)) if answers.iter().any(|a| a == "unusable") => {
                    return Ok(Started::Unusable(format!(
                        "the rehost helper cannot run in {dir}{}",
                        last_lines(&rest, ": ")
                    )))
                }
                _ => {
                    return Err(self.fail(format!(
                        "sending the helper failed ({}){}",
                        describe_status(status),
                        last_lines(&text, ": ")
                    )))
                }
            }
        }
    }

    /// The helper's run ended well, so its command removed the helper's directory: the
    /// session need not remove it again (a round trip).
    pub fn helper_removed(&mut self) {
        self.remote_dir = None;
    }

    /// The server's own tar of `path` (the fallback when the helper cannot run),
    /// compressed with gzip when the server has it. Each of [`TAR_OPTIONS`] is tried
    /// first (with those already kept, on an empty archive): an old tar runs without
    /// those it lacks, and says which on its standard error ([`TAR_LACKS`]).
    pub fn run_tar(&mut self, path: &str) -> Result<Running> {
        let tar = format!(
            "cd {} || exit 1; set -f; o=; l=; for f in {}; do \
             if tar -c -f /dev/null $o $f -T /dev/null >/dev/null 2>&1; then o=\"$o $f\"; else l=\"$l $f\"; fi; done; \
             [ -z \"$l\" ] || echo \"{TAR_LACKS}$l\" >&2; \
             z=cat; command -v gzip >/dev/null 2>&1 && z='gzip -1'; \
             {}tar -c -f - $o . | $z",
            quote(path),
            TAR_OPTIONS.join(" "),
            if self.sudo { "sudo -n " } else { "" },
        );
        if !self.terminal {
            return self.spawn(&tar, Vec::new());
        }
        self.run_tar_with_terminal(&tar)
    }

    /// The fallback's tar through a sudo that wants a terminal: tar runs in a second
    /// command that has one (`ssh -tt`), into two FIFOs in a private directory that
    /// this command reads, with no terminal between them. Once this command's input
    /// ends (the run read all of it, or rehost went away), the FIFOs are opened for
    /// writing once, so that a read still waiting for the second command ends.
    fn run_tar_with_terminal(&mut self, tar: &str) -> Result<Running> {
        let script = [
            "umask 077".to_string(),
            "d=$(mktemp -d \"${TMPDIR:-/tmp}/rehost.XXXXXXXX\") || exit 1".to_string(),
            "mkfifo \"$d/o\" \"$d/e\" || { rm -rf \"$d\"; exit 1; }".to_string(),
            format!("echo \"{SETUP_MARK}dir $d\""),
            "exec 3<&0".to_string(),
            // (`&` ends a command as `;` does: no `;` after it.)
            "(cat <&3; : >\"$d/o\"; : >\"$d/e\") >/dev/null 2>&1 & cat \"$d/e\" >&2 & e=$!"
                .to_string(),
            "cat \"$d/o\"".to_string(),
            "wait $e".to_string(),
            "rm -rf \"$d\"".to_string(),
        ]
        .join("; ");
        let mut running = self.spawn(&script, Vec::new())?;
        let mut out = running.stdout.take().expect("piped");
        let mut line = Vec::new();
        let mut answers = Vec::new();
        while answers.is_empty() && matches!(next_line(&mut out, &mut line, Said::LINE), Ok(true)) {
            if let Some(a) = String::from_utf8_lossy(&line).strip_prefix(SETUP_MARK) {
                answers.push(a.to_string());
            }
        }
        let Some(dir) = usable_dir(&answers) else {
            let (status, said) = running.finish(Some(out))?;
            return Err(Running::error(
                &self.url.destination(),
                status,
                &said,
                "making the directory for the server's tar",
            ));
        };
        let fifos = format!(
            "{{ {tar}; }} 2>{} >{}",
            quote(&format!("{dir}/e")),
            quote(&format!("{dir}/o"))
        );
        match self.with_terminal(&fifos).spawn() {
            Ok(partner) => running.partner = Some(partner),
            Err(e) => {
                running.abandon();
                return Err(self.fail(format!("cannot run ssh: {e}")));
            }
        }
        running.stdout = Some(out);
        self.remote_dir = Some(dir);
        Ok(running)
    }

    /// Runs `script` on the server with `input` on its standard input, written by a
    /// thread (the script's output is read meanwhile, so neither side waits on a full
    /// pipe) that then holds the input open: the helper exits when it closes.
    fn spawn(&self, script: &str, input: Vec<u8>) -> Result<Running> {
        let mut cmd = self.remote(script);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| self.fail(format!("cannot run ssh: {e}")))?;
        let mut pipe = child.stdin.take().expect("piped");
        // A script that stops reading early (sudo refused) only ends the copy.
        let input = std::thread::spawn(move || pipe.write_all(&input).ok().map(|()| pipe));
        let stderr = child.stderr.take().expect("piped");
        let host = self.url.destination();
        let messages = std::thread::spawn(move || collect_stderr(stderr, &host));
        Ok(Running {
            stdout: child.stdout.take().map(BufReader::new),
            child,
            input: Some(input),
            messages,
            host: self.url.destination(),
            partner: None,
        })
    }

    fn remove_dir(&mut self) {
        if let Some(dir) = self.remote_dir.take() {
            let _ = self
                .remote(&format!("rm -rf {}", quote(&dir)))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.master.is_none() {
            return;
        }
        self.remove_dir();
        // The master ends on SIGTERM as on `ssh -O exit`, closing the connection (every
        // command run through it has ended by now), without another round trip.
        if let Some(mut master) = self.master.take() {
            // Our own child, not reaped yet: its pid is still ours.
            if let Some(pid) = rustix::process::Pid::from_raw(master.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while matches!(master.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = master.kill();
            let _ = master.wait();
        }
    }
}

/// A command running on the server: its output stream, and what it said.
pub struct Running {
    child: Child,
    /// Writes the command's input, then holds it open (see [`Session::spawn`]).
    input: Option<JoinHandle<Option<ChildStdin>>>,
    stdout: Option<BufReader<ChildStdout>>,
    messages: JoinHandle<Said>,
    host: String,
    /// The command that runs the helper through a sudo that wants a terminal, beside
    /// this one, which carries the run ([`Session::start_partner`]).
    partner: Option<Child>,
}

/// What a remote command wrote on its standard error.
#[derive(Debug, Default)]
pub struct Said {
    /// The helper's ledger line (JSON), when it got that far.
    pub ledger: Option<String>,
    /// The first [`Said::LINES`] other lines, each cut at [`Said::LINE`] bytes.
    pub lines: Vec<String>,
    /// How many lines were said after those.
    pub more: u64,
    /// The last few lines, whose words an error quotes.
    pub last: std::collections::VecDeque<String>,
}

impl Said {
    /// The server is not trusted to stop talking: what is kept of it is capped.
    pub const LINES: usize = super::Skips::LISTED;
    pub const LINE: usize = 8192;
    /// The ledger lists at most [`Skips::LISTED`](super::Skips::LISTED) paths, each
    /// at most a few KiB even escaped: far under this.
    pub const LEDGER: usize = 32 << 20;
    const LAST: usize = 3;
}

impl Running {
    pub fn stdout(&mut self) -> BufReader<ChildStdout> {
        self.stdout.take().expect("taken once")
    }

    /// Closes the command's input once it is written (at once when the command is
    /// gone: the write then fails).
    fn close_input(&mut self) {
        if let Some(input) = self.input.take() {
            let _ = input.join();
        }
    }

    /// Waits for the command, after its output was read; an error says what the server
    /// said or that the connection went.
    pub fn finish(mut self, stdout: Option<BufReader<ChildStdout>>) -> Result<(ExitStatus, Said)> {
        // The rest of the stream (the compressor's end) must be read, or the helper
        // would block on a full pipe and never exit.
        if let Some(mut out) = stdout.or(self.stdout.take()) {
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        }
        self.close_input();
        let status = self.child.wait().map_err(|e| Error::Remote {
            host: self.host.clone(),
            reason: format!("waiting for ssh: {e}"),
        })?;
        let said = self.messages.join().unwrap_or_default();
        if let Some(mut partner) = self.partner.take() {
            // Its helper has ended with this command: its sudo and shell follow.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while matches!(partner.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = partner.kill();
            let _ = partner.wait();
        }
        Ok((status, said))
    }

    /// Stops the command before its output is read to the end: its ssh ends, so the
    /// server's side sees its input close and exits.
    pub fn abandon(mut self) {
        if let Some(mut partner) = self.partner.take() {
            // Its terminal hangs up: sudo passes that on to the helper.
            let _ = partner.kill();
            let _ = partner.wait();
        }
        drop(self.stdout.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.close_input();
        let _ = self.messages.join();
    }

    /// The error for a run that failed: the server's own words when there are some.
    pub fn error(host: &str, status: ExitStatus, said: &Said, what: &str) -> Error {
        let text = Vec::from(said.last.clone()).join("\n");
        let reason = if status.code() == Some(255) && said.ledger.is_none() {
            format!(
                "the connection was lost during {what}{}",
                last_lines(&text, ": ")
            )
        } else {
            format!(
                "{what} failed ({}){}",
                describe_status(status),
                last_lines(&text, ": ")
            )
        };
        Error::Remote {
            host: host.to_string(),
            reason,
        }
    }
}

fn collect_stderr(stderr: impl Read, host: &str) -> Said {
    let mut said = Said::default();
    let started = std::time::Instant::now();
    let mut transfer = super::progress::Transfer::default();
    let mut reader = BufReader::new(stderr);
    let mut raw = Vec::new();
    while let Ok(true) = next_line(&mut reader, &mut raw, Said::LEDGER) {
        if let Some(ledger) = raw.strip_prefix(LEDGER_PREFIX.as_bytes()) {
            said.ledger = Some(String::from_utf8_lossy(ledger).trim_end().to_string());
            continue;
        }
        raw.truncate(Said::LINE);
        let line = String::from_utf8_lossy(&raw).trim_end().to_string();
        if let Some(report) = line.strip_prefix(super::progress::PREFIX) {
            super::progress::received(report, &mut transfer, started);
        } else if !line.is_empty() {
            tracing::info!("{host}: {line}");
            if said.last.len() == Said::LAST {
                said.last.pop_front();
            }
            said.last.push_back(line.clone());
            if said.lines.len() < Said::LINES {
                said.lines.push(line);
            } else {
                said.more += 1;
            }
        }
    }
    said
}

/// Reads the next line, without its newline, into `line`: at most `cap` bytes of it, the
/// rest read and dropped. False at the end (or on a read error: the end of what is said).
fn next_line(r: &mut impl BufRead, line: &mut Vec<u8>, cap: usize) -> std::io::Result<bool> {
    line.clear();
    let mut any = false;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(any);
        }
        any = true;
        let end = buf.iter().position(|&b| b == b'\n');
        let upto = end.unwrap_or(buf.len());
        let room = cap.saturating_sub(line.len());
        line.extend_from_slice(&buf[..upto.min(room)]);
        r.consume(end.map_or(upto, |e| e + 1));
        if end.is_some() {
            return Ok(true);
        }
    }
}

/// What to tell the operator when `sudo -n` refuses, from what sudo said.
/// Whether sudo refused for want of a terminal (`Defaults requiretty`).
fn wants_terminal(said: &str) -> bool {
    said.contains("must have a tty") || said.contains("requiretty")
}

/// The directory an answer names, when it is one a script may quote.
fn usable_dir(answers: &[String]) -> Option<String> {
    let dir = answers
        .iter()
        .rev()
        .find_map(|a| a.strip_prefix("dir "))?
        .trim();
    (dir.starts_with('/') && !dir.contains('\'')).then(|| dir.to_string())
}

fn sudo_refusal(said: &str, user: &str) -> String {
    if wants_terminal(said) {
        // CentOS and RHEL 6 and 7 ship `Defaults requiretty`.
        return format!(
            "not root, and sudo on the server wants a terminal (`Defaults requiretty` in \
             sudoers), which the connection could not give it: add `Defaults:{user} \
             !requiretty` there, or connect as root{}",
            last_lines(said, "; sudo said: ")
        );
    }
    format!(
        "not root, and `sudo -n` refuses (it wants a password, or this user may not use sudo): \
         rehost needs root or passwordless sudo on the server{}",
        last_lines(said, "; sudo said: ")
    )
}

/// The local directory of a session: its control socket, the master's messages, and
/// the pid of the rehost that owns it.
const LOCAL_PREFIX: &str = "rehost-ssh.";
const OWNER: &str = "owner";

/// Removes the local directories of sessions whose rehost is gone (killed with SIGKILL:
/// nothing ran to remove them; their ssh master ended with it, by its parent-death
/// signal). A directory without an owner file is left alone: it may be being made.
fn sweep_stale(tmp: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.as_encoded_bytes().starts_with(LOCAL_PREFIX.as_bytes()) {
            continue;
        }
        let dir = e.path();
        // Only our own user's, and only directories (never through a link).
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        use std::os::unix::fs::MetadataExt;
        if !meta.is_dir() || meta.uid() != unsafe { libc::geteuid() } {
            continue;
        }
        let Ok(owner) = std::fs::read_to_string(dir.join(OWNER)) else {
            continue;
        };
        let Ok(pid) = owner.trim().parse::<i32>() else {
            continue;
        };
        if pid > 0 && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// The system's `ssh`, ended by the kernel if rehost dies first (killed, not just
/// Ctrl-C, which the whole process group gets): a master left running would keep the
/// server's session, and the helper, alive.
fn ssh_command() -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("ssh");
    // SAFETY: prctl is async-signal-safe and touches only the child being made.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// The command ssh asks the server to run: `script` by `/bin/sh`, whatever the user's
/// login shell (which runs this line): one line, since csh and tcsh refuse a newline
/// inside quotes.
fn command_line(script: &str) -> String {
    debug_assert!(!script.contains('\n'), "a script of one line: {script}");
    format!("/bin/sh -c {}", quote(script))
}

/// Quotes a string for a POSIX shell.
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (_, Some(s)) => format!("killed by signal {s}"),
        _ => "failed".into(),
    }
}

/// The last few non-empty lines of a message, joined, after `lead`; nothing if empty.
fn last_lines(text: &str, lead: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(3)..];
    format!("{lead}{}", tail.join("; "))
}

/// The helper gzip-compressed, kept in the user's cache under the digest of its bytes:
/// compressing twenty megabytes cost each run more CPU than the rest of its setup, so it
/// is done once per helper (at the default level: once, the smaller copy is worth it).
/// What runs as root on the server must be this helper: the copy is checked on every
/// use (uncompressed and hashed: a tenth of compressing it) and sent from memory, so
/// nothing can change it in between; a copy that fails goes and is made again. Only the
/// latest helper's copy is kept. None without a cache or on any failure: the caller
/// then compresses on the way.
fn compressed_copy(helper: &Path) -> Option<Vec<u8>> {
    kept_copy(&super::chunks::cache_home()?.join("helper"), helper)
}

fn kept_copy(dir: &Path, helper: &Path) -> Option<Vec<u8>> {
    use std::io::Seek;
    let mut file = std::fs::File::open(helper).ok()?;
    let size = file.metadata().ok()?.len();
    let digest = sha256_of(&mut file)?;
    let path = dir.join(format!("{}.gz", hex::encode(&digest[..16])));
    // gzip never grows its input by more than a few bytes per 16 KiB block.
    let bound = size + size / 256 + 1024;
    if let Ok(kept) = std::fs::File::open(&path) {
        let mut bytes = Vec::new();
        if kept.take(bound + 1).read_to_end(&mut bytes).is_ok()
            && bytes.len() as u64 <= bound
            && sha256_of(&mut flate2::read::MultiGzDecoder::new(&bytes[..])) == Some(digest)
        {
            return Some(bytes);
        }
        let _ = std::fs::remove_file(&path);
    }
    file.rewind().ok()?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::copy(&mut file, &mut gz).ok()?;
    let bytes = gz.finish().ok()?;
    // The helper may have been rebuilt since its digest was taken.
    if sha256_of(&mut flate2::read::MultiGzDecoder::new(&bytes[..])) != Some(digest) {
        return None;
    }
    std::fs::create_dir_all(dir).ok()?;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let _ = std::fs::remove_file(e.path());
    }
    let mut tmp = tempfile::NamedTempFile::new_in(dir).ok()?;
    tmp.write_all(&bytes).ok()?;
    tmp.persist(&path).ok()?;
    Some(bytes)
}

fn sha256_of(r: &mut impl Read) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match r.read(&mut buf).ok()? {
            0 => return Some(hasher.finalize().into()),
            n => hasher.update(&buf[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_helper_says_is_kept_to_its_caps_and_its_ledger_whole() {
        let mut text = Vec::new();
        // One endless line, many lines, then the ledger and a last word.
        text.extend(std::iter::repeat_n(b'y', 1 << 20));
        text.push(b'\n');
        for i in 0..3000 {
            text.extend(format!("tar: ./f{i}: vanished\n").bytes());
        }
        let ledger = format!(
            "{{\"skipped\":[{{\"path\":\"/{}\",\"reason\":\"r\"}}]}}",
            "p".repeat(100_000)
        );
        text.extend(format!("{LEDGER_PREFIX}{ledger}\nthe end\n").bytes());
        let said = collect_stderr(std::io::Cursor::new(text), "host");
        assert_eq!(said.lines.len(), Said::LINES);
        assert_eq!(said.lines[0].len(), Said::LINE);
        assert_eq!(said.lines[1], "tar: ./f0: vanished");
        assert_eq!(said.more, 3002 - Said::LINES as u64);
        assert_eq!(said.ledger.as_deref(), Some(ledger.as_str()));
        assert_eq!(said.last.back().map(String::as_str), Some("the end"));
        assert_eq!(said.last.len(), 3);
    }

    #[test]
    fn a_line_is_cut_at_its_cap_and_the_next_one_read_whole() {
        let mut r = std::io::BufReader::with_capacity(
            7,
            std::io::Cursor::new(b"abcdefghij\nkl\nm".to_vec()),
        );
        let mut line = Vec::new();
        assert!(next_line(&mut r, &mut line, 4).unwrap());
        assert_eq!(line, b"abcd");
        assert!(next_line(&mut r, &mut line, 4).unwrap());
        assert_eq!(line, b"kl");
        assert!(next_line(&mut r, &mut line, 4).unwrap());
        assert_eq!(line, b"m");
        assert!(!next_line(&mut r, &mut line, 4).unwrap());
    }

    /// The start command run here as sshd runs it, by the user's login shell (`login`)
    /// with `tools` (a directory of commands, or the system's) as its PATH: the helper
    /// (a stand-in that answers the probe and keeps its input) is unpacked, probed and
    /// run, and reads its request past whatever `head` took; its directory is gone after.
    /// With `noexec_tmp`, the stand-in will not run from the temporary directory (as
    /// from a noexec one): it runs from the user's home.
    fn run_start_script(login: &[&str], tools: &str, gzip: bool, noexec_tmp: bool) {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, home) = (dir.path().join("tmp"), dir.path().join("home"));
        std::fs::create_dir(&tmp).unwrap();
        std::fs::create_dir(&home).unwrap();
        let kept = dir.path().join("input");
        let helper = dir.path().join("helper");
        let refuse = match noexec_tmp {
            true => {
                "case \"$0\" in \"$TMPDIR\"/*) echo \"$0: Permission denied\"; exit 126;; esac\n"
            }
            false => "",
        };
        std::fs::write(
            &helper,
            format!(
                "#!/bin/sh\n{refuse}[ \"$2\" = --probe ] && {{ echo {PROBE_ANSWER}; exit 0; }}\ncat > '{}'\n",
                kept.display()
            ),
        )
        .unwrap();
        let bytes = std::fs::read(&helper).unwrap();
        let upload = match gzip {
            true => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&bytes).unwrap();
                gz.finish().unwrap()
            }
            false => bytes.clone(),
        };
        let request = serde_json::json!({"capture": {"path": "/", "have": vec!["ab"; 50]}});
        let script = Session::start_script(bytes.len() as u64, upload.len(), gzip, false);
        let mut child = Command::new(login[0])
            .args(&login[1..])
            .arg("-c")
            .arg(command_line(&script))
            .env_clear()
            .env("PATH", tools)
            .env("TMPDIR", &tmp)
            .env("HOME", &home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // All of it at once: a `head` that reads past its count finds the rest there.
        // (A script that answers before the upload stops reading: the write fails.)
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(&Session::start_input(&upload, &request));
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{login:?}: {said}");
        // No directory of the helper's (fish makes its own dotfiles in the home).
        let empty = |d: &Path| {
            !std::fs::read_dir(d).unwrap().any(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("rehost.")
            })
        };
        if gzip && !tools.split(':').any(|d| Path::new(d).join("gzip").exists()) {
            // No gzip there: the answer asks for the helper as it is, before any upload.
            assert!(said.ends_with(&format!("{SETUP_MARK}no-gzip\n")), "{said}");
            assert!(!kept.exists() && empty(&tmp) && empty(&home));
            return;
        }
        let dirs: Vec<&str> = said
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{SETUP_MARK}dir ")))
            .collect();
        let ran_in = match noexec_tmp {
            true => &home,
            false => &tmp,
        };
        assert!(
            dirs.last()
                .is_some_and(|d| Path::new(d).starts_with(ran_in)),
            "{login:?}: {said}"
        );
        assert!(said.ends_with(&format!("{SETUP_MARK}ready\n")), "{said}");
        let input = std::fs::read(&kept).unwrap();
        let got = read_request(&mut std::io::Cursor::new(&input)).unwrap();
        assert_eq!(got, format!("{request}\n").into_bytes(), "{login:?}");
        assert!(
            empty(&tmp) && empty(&home),
            "{login:?}: the helper's directory stays"
        );
    }

    #[test]
    fn the_start_command_runs_the_helper_on_its_request_from_any_login_shell_and_tools() {
        // csh and tcsh refuse a newline inside quotes: the command is one line. fish
        // reads `\\` and `\'` inside single quotes as escapes.
        let (tcsh, fish) = (which("tcsh"), which("fish"));
        for login in ["/bin/sh", tcsh.to_str().unwrap(), fish.to_str().unwrap()] {
            for noexec_tmp in [false, true] {
                run_start_script(&[login], "/usr/bin:/bin", true, noexec_tmp);
            }
        }
        // Busybox's head reads a stdio buffer (4 KiB) past its count: the padding's.
        let busybox = which("busybox");
        let tools = tempfile::tempdir().unwrap();
        for tool in [
            "sh", "head", "gzip", "mktemp", "wc", "chmod", "rm", "id", "cat", "cp",
        ] {
            std::os::unix::fs::symlink(&busybox, tools.path().join(tool)).unwrap();
        }
        let busybox = busybox.to_str().unwrap();
        let path = tools.path().to_str().unwrap();
        run_start_script(&[busybox, "sh"], path, true, false);
        run_start_script(&[busybox, "sh"], path, true, true);
        run_start_script(&[busybox, "sh"], path, false, false);
        std::fs::remove_file(tools.path().join("gzip")).unwrap();
        run_start_script(&[busybox, "sh"], path, true, false);
    }

    /// A tool the tests need, from PATH: a test fails without it.
    fn which(tool: &str) -> PathBuf {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{tool} is not installed (scripts/install-deps installs it)"))
    }

    #[test]
    fn the_request_is_read_past_what_head_left_of_the_padding() {
        let request = serde_json::json!({"capture": {"path": "/"}});
        let input = Session::start_input(b"HELPER", &request);
        let want = format!("{request}\n").into_bytes();
        // `head -c 6` read exactly, or read on into the padding (a stdio buffer's worth).
        for eaten in [6, 6 + 1, 6 + 4096, 6 + PADDING] {
            let got = read_request(&mut std::io::Cursor::new(&input[eaten..])).unwrap();
            assert_eq!(got, want, "{eaten} bytes taken by head");
        }
        // Cut before the request, or no mark at all: an error, not a request.
        let cut = &input[..6 + PADDING + 3];
        assert!(read_request(&mut std::io::Cursor::new(cut)).is_err());
        let unmarked = vec![b'\n'; 3 * PADDING];
        assert!(read_request(&mut std::io::Cursor::new(unmarked)).is_err());
    }
    #[test]
    fn a_sudo_that_wants_a_terminal_is_named() {
        let said = "sudo: sorry, you must have a tty to run sudo\n";
        let line = sudo_refusal(said, "deploy");
        assert!(line.contains("Defaults:deploy !requiretty"), "{line}");
        let line = sudo_refusal("sudo: a password is required\n", "deploy");
        assert!(line.contains("passwordless sudo"), "{line}");
    }

    #[test]
    fn the_helper_is_compressed_once_checked_on_each_use_and_a_new_one_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("helper");
        let helper = dir.path().join("rehost");
        std::fs::write(&helper, b"one helper ".repeat(1000)).unwrap();
        let unpacked = |bytes: &[u8]| {
            let mut got = Vec::new();
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut got)
                .unwrap();
            got
        };
        let copy = kept_copy(&kept, &helper).unwrap();
        assert!(
            unpacked(&copy) == std::fs::read(&helper).unwrap(),
            "the copy differs"
        );
        let file = std::fs::read_dir(&kept)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert!(
            std::fs::read(&file).unwrap() == copy,
            "the copy is not kept"
        );
        assert!(kept_copy(&kept, &helper) == Some(copy.clone()));

        // A kept copy that is not this helper's is never sent: it is made again.
        let mut other = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        other.write_all(b"not the helper").unwrap();
        std::fs::write(&file, other.finish().unwrap()).unwrap();
        assert!(kept_copy(&kept, &helper) == Some(copy.clone()));
        assert!(std::fs::read(&file).unwrap() == copy, "the bad copy stays");

        std::fs::write(&helper, b"another helper").unwrap();
        let other = kept_copy(&kept, &helper).unwrap();
        assert_eq!(unpacked(&other), b"another helper");
        assert_eq!(
            std::fs::read_dir(&kept).unwrap().count(),
            1,
            "old copies stay"
        );
    }
}
