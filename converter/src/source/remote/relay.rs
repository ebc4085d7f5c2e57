//! A server whose sudo wants a terminal (`Defaults requiretty`, as CentOS and RHEL 7
//! long shipped): `sudo -n` refuses in a command without one, and a command with one
//! (`ssh -tt`) cannot carry the capture, since a terminal rewrites bytes and merges the
//! error stream into the output.
//!
//! So the run takes two commands through the same connection. The first, without a
//! terminal, uploads the helper as usual and runs it as the operator's user as a relay:
//! it reads the request, then waits on a socket in the private directory. The second,
//! with a terminal, runs `sudo -n` on the helper, which connects to that socket and is
//! handed the request and the first command's own standard input, output and error (the
//! descriptors themselves, `SCM_RIGHTS`). From then on the root helper reads and writes
//! the first command's streams directly: no byte is copied, and the run goes on exactly
//! as a run that needed no terminal. The relay waits for the helper's end, so the first
//! command (which removes the directory) ends after it.
//!
//! A sudo that still refuses gets its words to the relay the same way: the helper, run
//! as the operator's user this time (`__remote --refused SOCKET WORDS`), connects and
//! sends them, and the relay answers `refused` with them, as the first command does
//! when sudo refuses there. Nothing is written on the server's disk for that, so
//! nothing can race the first command's removal of the directory.

use super::session::{REQUEST_CAP, SETUP_MARK};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The most the relay waits for the root helper (sudo may ask a directory service).
const WAIT: Duration = Duration::from_secs(120);

/// How the relay ends when no root helper came: the client went, or the wait ran out.
const NO_TAKER: u8 = 4;

/// The most of sudo's words the relay passes on.
const WORDS: u64 = 4096;

/// The relay (`__remote --relay SOCKET`): `request` is what it read from its standard
/// input. Hands the request and its three standard streams to the first root process
/// that connects to `socket`, then waits for that process's end.
pub fn serve(socket: &Path, request: &[u8]) -> ExitCode {
    let listener = match UnixListener::bind(socket) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rehost helper: listening on {}: {e}", socket.display());
            return ExitCode::FAILURE;
        }
    };
    let code = relay(&listener, request);
    // Whatever comes later finds no one.
    let _ = std::fs::remove_file(socket);
    code
}

fn relay(listener: &UnixListener, request: &[u8]) -> ExitCode {
    let me = rustix::process::getuid();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let stdin = std::io::stdin();
        let mut fds = [
            PollFd::new(listener, PollFlags::IN),
            PollFd::new(&stdin, PollFlags::IN),
        ];
        let tick = Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        if poll(&mut fds, Some(&tick)).is_err() {
            continue;
        }
        // Nothing more comes on standard input: readable means it ended (the client
        // went away before the root helper came).
        if !fds[1].revents().is_empty() {
            return ExitCode::from(NO_TAKER);
        }
        if fds[0].revents().is_empty() {
            continue;
        }
        let Ok((stream, _)) = listener.accept() else {
            continue;
        };
        // Root's helper gets the streams; this user's brings sudo's refusal. The
        // directory is this user's, mode 0700: no one else reaches the socket.
        match rustix::net::sockopt::socket_peercred(&stream) {
            Ok(cred) if cred.uid.is_root() => {}
            Ok(cred) if cred.uid == me => {
                let mut words = Vec::new();
                let _ = (&stream).take(WORDS).read_to_end(&mut words);
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{SETUP_MARK}refused");
                let _ = out.write_all(&words);
                let _ = writeln!(out);
                let _ = out.flush();
                return ExitCode::from(NO_TAKER);
            }
            _ => continue,
        }
        return match hand_over(&stream, request) {
            Ok(()) => {
                // The helper holds the streams now; this process waits for its end.
                let _ = std::io::copy(&mut &stream, &mut std::io::sink());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rehost helper: handing the run to sudo's helper: {e}");
                ExitCode::FAILURE
            }
        };
    }
    ExitCode::from(NO_TAKER)
}

/// The terminal's command when sudo refused (`__remote --refused SOCKET WORDS`):
/// gives the relay sudo's words. A relay already gone (the run ended) is no error.
pub fn report_refusal(socket: &Path, words: &[u8]) -> ExitCode {
    if let Ok(mut stream) = UnixStream::connect(socket) {
        let _ = stream.write_all(&words[..words.len().min(WORDS as usize)]);
    }
    ExitCode::SUCCESS
}

/// Answers `taken` (the stream follows, written by the root helper), then sends the
/// request with the three standard streams.
fn hand_over(stream: &UnixStream, request: &[u8]) -> std::io::Result<()> {
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{SETUP_MARK}taken")?;
        out.flush()?;
    }
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let streams = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()];
    send(stream, &streams, request)?;
    // Only the helper writes on them from now on.
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    rustix::stdio::dup2_stdin(&null)?;
    rustix::stdio::dup2_stdout(&null)?;
    rustix::stdio::dup2_stderr(&null)?;
    Ok(())
}

/// The request's length, with `fds` attached, then the request.
fn send(
    mut stream: &UnixStream,
    fds: &[std::os::fd::BorrowedFd<'_>],
    request: &[u8],
) -> std::io::Result<()> {
    let header = (request.len() as u64).to_be_bytes();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(std::io::Error::other("too many descriptors"));
    }
    let sent = sendmsg(
        stream,
        &[IoSlice::new(&header)],
        &mut control,
        SendFlags::empty(),
    )?;
    stream.write_all(&header[sent..])?;
    stream.write_all(request)
}

/// The root helper's side (`__remote --from SOCKET`): connects to the relay, takes its
/// streams as its own standard input, output and error, and gives the request.
pub fn take_over(socket: &Path) -> std::io::Result<Vec<u8>> {
    let stream = UnixStream::connect(socket)?;
    let (streams, request) = receive(&stream)?;
    let [stdin, stdout, stderr] = <[OwnedFd; 3]>::try_from(streams)
        .map_err(|_| std::io::Error::other("the relay did not send three streams"))?;
    rustix::stdio::dup2_stdin(&stdin)?;
    rustix::stdio::dup2_stdout(&stdout)?;
    rustix::stdio::dup2_stderr(&stderr)?;
    // Open until this process ends: the relay waits for that.
    std::mem::forget(stream);
    Ok(request)
}

fn receive(mut stream: &UnixStream) -> std::io::Result<(Vec<OwnedFd>, Vec<u8>)> {
    let mut header = [0u8; 8];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = recvmsg(
        stream,
        &mut [IoSliceMut::new(&mut header)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    stream.read_exact(&mut header[got.bytes..])?;
    let len = u64::from_be_bytes(header);
    if len > REQUEST_CAP {
        return Err(std::io::Error::other(format!(
            "a request of {len} bytes (at most {REQUEST_CAP})"
        )));
    }
    let mut request = Vec::with_capacity(len as usize);
    stream.take(len).read_to_end(&mut request)?;
    if request.len() as u64 != len {
        return Err(std::io::Error::other("the request was cut short"));
    }
    Ok((fds, request))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn the_streams_and_the_request_cross_the_socket_and_stay_the_same_streams() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut read, write) = std::io::pipe().unwrap();
        let (other_read, _other_write) = std::io::pipe().unwrap();
        let request = b"{\"capture\":{}}\n".repeat(10_000);
        let sender = {
            let request = request.clone();
            std::thread::spawn(move || {
                send(
                    &a,
                    &[write.as_fd(), other_read.as_fd(), write.as_fd()],
                    &request,
                )
                .unwrap();
            })
        };
        let (fds, got) = receive(&b).unwrap();
        sender.join().unwrap();
        assert_eq!(got, request);
        assert_eq!(fds.len(), 3);
        assert!(fds.iter().all(|fd| fd.as_raw_fd() > 2));
        // The first descriptor received is the pipe's writing end itself.
        let mut pipe = std::fs::File::from(fds.into_iter().next().unwrap());
        pipe.write_all(b"through").unwrap();
        drop(pipe);
        let mut text = [0u8; 7];
        read.read_exact(&mut text).unwrap();
        assert_eq!(&text, b"through");
    }

    #[test]
    fn a_request_over_the_cap_or_cut_short_is_refused() {
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(&(REQUEST_CAP + 1).to_be_bytes()).unwrap();
        assert!(receive(&b).unwrap_err().to_string().contains("at most"));
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(&10u64.to_be_bytes()).unwrap();
        (&a).write_all(b"short").unwrap();
        drop(a);
        assert!(receive(&b).unwrap_err().to_string().contains("cut short"));
    }
}
