//! Signals: SIGTERM/SIGINT counted, for the accept loop and the drain.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

/// SIGTERM/SIGINT received so far.
static SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_sig: libc::c_int) {
    // Only an atomic add: async-signal-safe.
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

pub(super) fn install_signal_handlers() -> io::Result<()> {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: `sigaction` is given a zero-initialised struct (a valid
        // value for this plain C struct) with an empty mask and a handler that
        // only touches an atomic; no Rust state is shared with the handler
        // beyond that static.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

pub(super) fn signals() -> usize {
    SIGNALS.load(Ordering::SeqCst)
}
