//! Bounded tails of what a container writes: a command's output, pid 1's log. A chatty
//! container writes without end; what a person reads of it (the last lines of a failure)
//! is at its end, so the runtime keeps the last [`TAIL`] bytes and drops the rest as it
//! reads, whatever the size.

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The most bytes kept of one stream.
pub const TAIL: usize = 64 << 10;

/// The last `max` bytes of `reader`, read to its end.
pub fn read_tail(mut reader: impl Read, max: usize) -> io::Result<Vec<u8>> {
    let mut kept: VecDeque<u8> = VecDeque::with_capacity(max.min(TAIL));
    let mut buf = [0u8; 16 << 10];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[n.saturating_sub(max)..n];
        let over = (kept.len() + chunk.len()).saturating_sub(max);
        kept.drain(..over.min(kept.len()));
        kept.extend(chunk);
    }
    Ok(kept.into())
}

/// The last `max` bytes of the file `path` (empty when it does not exist).
pub fn file_tail(path: &Path, max: usize) -> io::Result<Vec<u8>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(max as u64)))?;
    read_tail(file, max)
}

/// Runs `cmd` to its end, as `Command::output` does, keeping only the last [`TAIL`] bytes
/// of its stdout and of its stderr.
pub fn output(cmd: &mut Command) -> io::Result<Output> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let out = child.stdout.take();
    let err = child.stderr.take();
    let (stdout, stderr) = std::thread::scope(|s| {
        let e = s.spawn(|| err.map_or(Ok(Vec::new()), |r| read_tail(r, TAIL)));
        let o = out.map_or(Ok(Vec::new()), |r| read_tail(r, TAIL));
        (o, e.join().unwrap_or_else(|_| Ok(Vec::new())))
    });
    let status = child.wait()?;
    Ok(Output {
        status,
        stdout: stdout?,
        stderr: stderr?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_end_is_kept() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(read_tail(&data[..], 1000).unwrap(), &data[99_000..]);
        assert_eq!(read_tail(&data[..10], 1000).unwrap(), &data[..10]);
        let t = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(t.path(), &data).unwrap();
        assert_eq!(file_tail(t.path(), 10).unwrap(), &data[99_990..]);
    }

    #[test]
    fn a_command_that_writes_without_end_costs_a_tail() {
        let out = output(
            Command::new("sh").args(["-c", "head -c 100000000 /dev/zero; echo end; echo oops >&2"]),
        )
        .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout.len(), TAIL);
        assert!(out.stdout.ends_with(b"\0end\n"));
        assert_eq!(out.stderr, b"oops\n");
    }
}
