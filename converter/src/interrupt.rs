//! Undoing what must not outlive rehost (a mount, a loop device, a temporary directory)
//! when the user interrupts it. Whoever makes such a thing registers its undoing with
//! [`on_interrupt`] and keeps the returned [`Registration`] while it exists; on SIGINT,
//! SIGTERM or SIGHUP the registered cleanups run, newest first, and then the process
//! dies of that signal as it would have without them.
//!
//! The signal handler itself only writes the signal's number to a pipe (the one thing a
//! handler may safely do); a watcher thread reads it and runs the cleanups.

use std::collections::BTreeMap;
use std::sync::{Mutex, Once};

type Cleanup = Box<dyn FnOnce() + Send>;

static CLEANUPS: Mutex<BTreeMap<u64, Cleanup>> = Mutex::new(BTreeMap::new());
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static INSTALL: Once = Once::new();
/// The pipe's write end, for the handler.
static PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// A cleanup registered to run on an interrupt; dropping it unregisters the cleanup
/// without running it (its owner undid the thing itself).
#[must_use = "the cleanup is unregistered when this is dropped"]
pub struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        lock().remove(&self.0);
    }
}

/// Runs `cleanup` if the process is interrupted while the registration is kept.
pub fn on_interrupt(cleanup: impl FnOnce() + Send + 'static) -> Registration {
    INSTALL.call_once(install);
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    lock().insert(id, Box::new(cleanup));
    Registration(id)
}

fn lock() -> std::sync::MutexGuard<'static, BTreeMap<u64, Cleanup>> {
    // A cleanup that panicked leaves the map as it was: still usable.
    CLEANUPS.lock().unwrap_or_else(|e| e.into_inner())
}

extern "C" fn handler(signal: libc::c_int) {
    let fd = PIPE.load(std::sync::atomic::Ordering::Relaxed);
    let byte = signal as u8;
    // SAFETY: write(2) is async-signal-safe; the buffer is a local byte.
    unsafe {
        libc::write(fd, (&byte as *const u8).cast(), 1);
    }
}

fn install() {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills the two-element array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        tracing::warn!(
            "cannot watch for interrupts: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    let [read_end, write_end] = fds;
    PIPE.store(write_end, std::sync::atomic::Ordering::Relaxed);
    let spawned = std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(move || watch(read_end));
    if spawned.is_err() {
        return;
    }
    for signal in SIGNALS {
        // SAFETY: a zeroed sigaction with a handler that only calls write(2).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// Waits for a signal, runs the cleanups, then dies of the signal.
fn watch(read_end: libc::c_int) {
    let mut byte = 0u8;
    loop {
        // SAFETY: reads one byte into a local.
        let n = unsafe { libc::read(read_end, (&mut byte as *mut u8).cast(), 1) };
        if n == 1 {
            break;
        }
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return;
    }
    let signal = byte as libc::c_int;
    // The map stays locked to the end: a registration dropped meanwhile by another
    // thread waits, and so cannot undo the same thing twice.
    let mut cleanups = lock();
    while let Some((_, cleanup)) = cleanups.pop_last() {
        cleanup();
    }
    // SAFETY: restores the default action and raises the signal: the process ends as
    // it would have without the handler (a shell sees 128 + the signal).
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
    // A signal whose default is not to end the process: end it all the same.
    std::process::exit(128 + signal);
}
