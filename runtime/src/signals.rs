//! Deferring SIGINT, SIGQUIT, SIGTERM and SIGHUP while a container runs attached, so
//! rehost outlives the container and cleans up after it (Ctrl-C and Ctrl-\ on the
//! caller's terminal signal us with the engine). A handler (not SIG_IGN) is used because
//! handlers reset to the default in the programs we start, ignored signals would not.

use std::sync::atomic::{AtomicI32, Ordering};

static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// Installed guards: nested ones (verify starting a container) restore nothing early.
static DEPTH: AtomicI32 = AtomicI32::new(0);

extern "C" fn note(sig: libc::c_int) {
    RECEIVED.store(sig, Ordering::SeqCst);
}

const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP];

/// Restores the default dispositions when dropped.
pub struct Deferred(());

impl Deferred {
    pub fn install() -> Deferred {
        DEPTH.fetch_add(1, Ordering::SeqCst);
        for sig in SIGNALS {
            // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
            unsafe {
                libc::signal(
                    sig,
                    note as extern "C" fn(libc::c_int) as libc::sighandler_t,
                );
            }
        }
        Deferred(())
    }

    /// The last signal received while installed (0 for none).
    pub fn received() -> i32 {
        RECEIVED.load(Ordering::SeqCst)
    }

    /// As `received`, and forgets it: a second Ctrl-C is seen as one more.
    pub fn take() -> i32 {
        RECEIVED.swap(0, Ordering::SeqCst)
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        if DEPTH.fetch_sub(1, Ordering::SeqCst) > 1 {
            return;
        }
        for sig in SIGNALS {
            // SAFETY: restoring the default disposition.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
}
