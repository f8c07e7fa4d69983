//! The last word of a process told to stop: with [`Progress::finish_on_signals`], a
//! SIGINT, SIGTERM or SIGHUP finishes every open run as `cancelled` ("terminated by
//! SIGTERM"), delivers that to the sinks within the flush deadline, and then ends the
//! process as the signal's default action would, so its exit status still says which
//! signal ended it.
//!
//! One thread per process (`herald-signals`, started by the first opt-in) waits for
//! the signals through `signal-hook`'s self-pipe; the handler itself only writes to
//! that pipe. No async runtime is involved. Every [`Progress`] that opted in is kept
//! here by a weak reference, so opting in keeps nothing alive. A second signal while
//! the first is being handled (a user pressing Ctrl-C again, a supervisor that lost
//! patience) ends the process at once, from the handler.
//!
//! Once the first opt-in has installed the handlers, they stay for the life of the
//! process, as tokio's and every other signal-hook user's do: the default action is
//! only ever taken through them. So after opting in, these signals always end the
//! process, also once every run is over and every [`Progress`] dropped.

use std::io;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::dispatch::{Shared, lock};
use crate::progress::Progress;

/// Every [`Progress`] that opted in, while it lives.
static OPTED_IN: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());
/// Whether the listener started, or why it could not.
static LISTENER: OnceLock<Result<(), (io::ErrorKind, String)>> = OnceLock::new();

impl Progress {
    /// Opts in to finishing this reporter's open runs when the process is told to
    /// stop: on SIGINT, SIGTERM or SIGHUP, every run still open is finished as
    /// `cancelled` with the error `"terminated by SIGTERM"` (naming the signal), the
    /// sinks get it within the flush deadline (5 s) and are closed (bars end on a line
    /// of their own, the terminal as it was), and then the process ends as the signal's
    /// default action would: killed by that signal, exit status 128 + N in a shell.
    ///
    /// Without it, a signal ends the process where it stands: JSON Lines just stop,
    /// and a hub marks the run stalled when its heartbeat timeout passes.
    ///
    /// This takes over these three signals for the rest of the process (signal
    /// handlers cannot be handed back): each one always ends it, after finishing
    /// whatever runs are open. A program that shuts down gracefully on a signal of its
    /// own accord should not opt in, and should finish its runs itself with
    /// [`Run::cancelled`](crate::Run::cancelled). A second signal during the
    /// finishing ends the process at once. Calling this again, or from several
    /// reporters, is fine. It starts one plain thread per process and no async
    /// runtime.
    ///
    /// ```no_run
    /// let progress = herald::Progress::from_env()?;
    /// progress.finish_on_signals()?;
    /// let run = progress.run("nightly import");
    /// // Killed now by `kill -TERM`, the run ends `cancelled`: "terminated by SIGTERM".
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// When the signal handlers cannot be installed; on platforms other than Unix,
    /// always (`ErrorKind::Unsupported`).
    pub fn finish_on_signals(&self) -> io::Result<()> {
        let started = LISTENER.get_or_init(|| listen().map_err(|e| (e.kind(), e.to_string())));
        if let Err((kind, e)) = started {
            return Err(io::Error::new(
                *kind,
                format!("cannot listen for signals: {e}"),
            ));
        }
        let mut opted_in = lock(&OPTED_IN);
        opted_in.retain(|shared| shared.strong_count() > 0);
        let me = Arc::downgrade(&self.shared);
        if !opted_in.iter().any(|shared| shared.ptr_eq(&me)) {
            opted_in.push(me);
        }
        Ok(())
    }
}

/// Finishes the open runs of every reporter that opted in, with the error
/// `"terminated by <signal>"`, each delivered and closed within its flush deadline;
/// the reporters are closed side by side, so the wait is one deadline at most.
///
/// Returns the reporters, for the caller to hold until the process ends: dropping
/// the last one would wait for its background thread, a second deadline.
#[cfg_attr(not(unix), allow(dead_code))]
fn finish_everything(signal: &str) -> Vec<Arc<Shared>> {
    let reason = format!("terminated by {signal}");
    let reporters: Vec<Arc<Shared>> = lock(&OPTED_IN).iter().filter_map(Weak::upgrade).collect();
    std::thread::scope(|scope| {
        for shared in &reporters {
            let reason = reason.as_str();
            scope.spawn(move || shared.cancel_open_runs(reason));
        }
    });
    reporters
}

#[cfg(unix)]
fn listen() -> io::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};

    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;
    use signal_hook::low_level::{emulate_default_handler, signal_name};

    const SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];
    // Registered before the listener's own action, so that it runs first in the
    // handler: from the second signal on, the default action is taken right there.
    let again = Arc::new(AtomicBool::new(false));
    for signal in SIGNALS {
        signal_hook::flag::register_conditional_default(signal, again.clone())?;
    }
    // Without a listener, the signals must still end the process.
    let listener_gone = || again.store(true, Ordering::SeqCst);
    let mut signals = Signals::new(SIGNALS).inspect_err(|_| listener_gone())?;
    let first = again.clone();
    std::thread::Builder::new()
        .name("herald-signals".into())
        .spawn(move || {
            let Some(signal) = signals.forever().next() else {
                return;
            };
            first.store(true, Ordering::SeqCst);
            let _reporters = finish_everything(signal_name(signal).unwrap_or("a signal"));
            // Resets the signal to its default disposition and raises it: the
            // process ends as if no handler had been there.
            let _ = emulate_default_handler(signal);
        })
        .inspect_err(|_| listener_gone())?;
    Ok(())
}

#[cfg(not(unix))]
fn listen() -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "finishing runs on signals needs Unix signals",
    ))
}
