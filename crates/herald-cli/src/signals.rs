//! SIGINT, SIGTERM and SIGHUP for the commands that act on them: `exec` passes them on
//! to its command, and `watch` leaves the terminal tidy; both then end by the signal
//! they got, as the default action would, so that a shell or a supervisor sees it (a
//! script looping over `herald exec` stops on Ctrl-C). A plain thread reads them
//! through signal-hook's self-pipe; no async runtime.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use signal_hook::low_level::{emulate_default_handler, signal_name};

/// The signals that ask a process to stop.
pub(crate) const STOP: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// `SIGTERM`, or `signal 42` for one without a name.
pub(crate) fn name(signal: i32) -> String {
    signal_name(signal).map_or_else(|| format!("signal {signal}"), str::to_owned)
}

/// Whether `signal` is one that asks a process to stop, rather than one of a crash or
/// of `kill -9`.
pub(crate) fn is_stop(signal: i32) -> bool {
    STOP.contains(&signal)
}

/// Ends the process by `signal`: its default disposition restored, then raised.
/// Returns only if that did not end it, for the caller to exit with 128 + `signal`.
pub(crate) fn end_by(signal: i32) {
    let _ = emulate_default_handler(signal);
}

/// Calls `each` on a thread of its own with every stop signal the process gets, until
/// it returns `false`. From then on the signals take no action unless another handler
/// (such as [`on_stop`]'s) does: a caller that stops listening ends the process.
pub(crate) fn listen(mut each: impl FnMut(i32) -> bool + Send + 'static) -> io::Result<()> {
    let mut signals = Signals::new(STOP)?;
    std::thread::Builder::new()
        .name("herald-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if !each(signal) {
                    return;
                }
            }
        })?;
    Ok(())
}

/// On the first stop signal, calls `last` with it on a thread of its own and then ends
/// the process by that signal (`last` may end it itself, to do so while it still holds
/// a lock); a second one while `last` runs ends it at once.
pub(crate) fn on_stop(last: impl FnOnce(i32) + Send + 'static) -> io::Result<()> {
    // Registered before the listener, so that it runs first in the handler.
    let again = Arc::new(AtomicBool::new(false));
    for signal in STOP {
        signal_hook::flag::register_conditional_default(signal, again.clone())?;
    }
    let first = again.clone();
    let mut last = Some(last);
    listen(move |signal| {
        first.store(true, Ordering::SeqCst);
        if let Some(last) = last.take() {
            last(signal);
        }
        end_by(signal);
        false
    })
    // Without a listener, the signals must still end the process.
    .inspect_err(|_| again.store(true, Ordering::SeqCst))
}
