//! What an interrupt must undo. Work in progress that lives outside the process (a
//! temporary layout beside the output, a mount, a loop device) registers how to undo
//! it; [`on_interrupt`] makes SIGINT, SIGTERM and SIGHUP run every undo still
//! registered, then end the process as the signal would have. Finished work drops its
//! registration, so nothing it made is touched.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Mutex;

type Undo = Box<dyn FnOnce() + Send>;

static PENDING: Mutex<Vec<(u64, Undo)>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(0);
/// The write end of the pipe the signal handler wakes the cleaning thread with.
static WAKE: AtomicI32 = AtomicI32::new(-1);

/// A registered undo; dropping it forgets the undo (the work finished or was undone).
#[must_use = "dropping the registration forgets the undo at once"]
pub struct Registered(u64);

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut pending) = PENDING.lock() {
            pending.retain(|(id, _)| *id != self.0);
        }
    }
}

/// Registers `undo`, to run if the process is interrupted before the registration drops.
pub fn register(undo: impl FnOnce() + Send + 'static) -> Registered {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut pending) = PENDING.lock() {
        pending.push((id, Box::new(undo)));
    }
    Registered(id)
}

/// Registers the removal of a temporary directory (or file) and all it holds.
pub fn remove_on_interrupt(path: PathBuf) -> Registered {
    register(move || {
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            let _ = std::fs::remove_dir_all(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    })
}

/// Runs every registered undo, newest first.
pub fn run_all() {
    let pending = match PENDING.lock() {
        Ok(mut p) => std::mem::take(&mut *p),
        Err(_) => return,
    };
    for (_, undo) in pending.into_iter().rev() {
        undo();
    }
}

extern "C" fn wake(sig: libc::c_int) {
    let fd = WAKE.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = sig as u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is one valid byte.
        unsafe {
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
    }
}

/// From now on SIGINT, SIGTERM and SIGHUP run the registered undos and end the process
/// with 128 + the signal's number. Handlers (not blocked signals) are used, so the
/// programs rehost starts get the default dispositions back when they exec.
pub fn on_interrupt() {
    if WAKE.load(Ordering::SeqCst) >= 0 {
        return;
    }
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return;
    }
    WAKE.store(fds[1], Ordering::SeqCst);
    let read_end = fds[0];
    std::thread::spawn(move || {
        let mut byte = 0u8;
        loop {
            // SAFETY: reads one byte into a valid buffer.
            let n = unsafe { libc::read(read_end, (&mut byte as *mut u8).cast(), 1) };
            if n == 1 {
                break;
            }
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        let sig = byte as libc::c_int;
        eprintln!("rehost: interrupted; removing what was half made");
        run_all();
        std::process::exit(128 + sig);
    });
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only calls write(2), which is async-signal-safe.
        unsafe {
            libc::signal(
                sig,
                wake as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}
