//! The last word of a process told to stop: while the guard that
//! [`Progress::finish_on_signals`] returns lives, a SIGINT, SIGTERM or SIGHUP finishes
//! every open run as `cancelled` ("terminated by SIGTERM"), delivers that to the sinks
//! within the flush deadline, and then ends the process as the signal's default action
//! would, so its exit status still says which signal ended it.
//!
//! One thread (`herald-signals`, started by the first guard) waits for the signals
//! through `signal-hook`'s self-pipe; the handler itself only writes to that pipe. No
//! async runtime is involved. Every [`Progress`] that opted in is kept here by a weak
//! reference, so opting in keeps nothing alive. A second signal while the first is
//! being handled (a user pressing Ctrl-C again, a supervisor that lost patience) ends
//! the process at once, from the handler.
//!
//! When the last guard is dropped, herald's registrations are removed (the iterator's
//! handle closed, the second-signal defaults unregistered) and the thread ends: a
//! program that shuts down gracefully after its run (`herald demo --serve` keeps its
//! hub up until Ctrl-C) gets the signals back for handlers of its own, such as
//! tokio's `ctrl_c`. signal-hook cannot restore a signal's default disposition, so a
//! program with no handler of its own should hold the guard until it exits.

use std::io;
use std::sync::{Arc, Mutex, Weak};

use crate::dispatch::Shared;
use crate::lock::lock;
use crate::progress::Progress;

/// The reporters that opted in, and the listener while any guard lives.
static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next_guard: 0,
    opted_in: Vec::new(),
    listener: None,
});

struct Registry {
    next_guard: u64,
    /// Each live guard's id and reporter.
    opted_in: Vec<(u64, Weak<Shared>)>,
    listener: Option<Listener>,
}

/// Keeps [`Progress::finish_on_signals`] in force while it lives: dropping it (the
/// last of them, when several reporters opted in) gives SIGINT, SIGTERM and SIGHUP
/// back to the program.
#[must_use = "dropping the guard at once gives the signals back at once"]
pub struct SignalGuard {
    id: u64,
}

impl std::fmt::Debug for SignalGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalGuard").finish_non_exhaustive()
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        let listener = {
            let mut registry = lock(&REGISTRY);
            registry.opted_in.retain(|(id, _)| *id != self.id);
            if registry.opted_in.is_empty() {
                registry.listener.take()
            } else {
                None
            }
        };
        // Outside the lock: a signal being handled right now takes it to find the
        // reporters to finish.
        if let Some(listener) = listener {
            listener.stop();
        }
    }
}

impl Progress {
    /// Opts in to finishing this reporter's open runs when the process is told to
    /// stop, for as long as the returned guard lives: on SIGINT, SIGTERM or SIGHUP,
    /// every run still open is finished as `cancelled` with the error
    /// `"terminated by SIGTERM"` (naming the signal), the sinks get it within the flush
    /// deadline (5 s) and are closed (bars end on a line of their own, the terminal as
    /// it was), and then the process ends as the signal's default action would: killed
    /// by that signal, exit status 128 + N in a shell.
    ///
    /// Without it, a signal ends the process where it stands: JSON Lines just stop,
    /// and a hub marks the run stalled when its heartbeat timeout passes.
    ///
    /// While the guard lives, these three signals always end the process, after
    /// finishing whatever runs are open; a second signal during the finishing ends it
    /// at once. Dropping the guard (the last one, when several reporters opted in)
    /// removes herald's handlers, so that a program that goes on after its run, and
    /// stops gracefully on a signal of its own accord (a server's tokio `ctrl_c`),
    /// gets the signals back. Signal handlers cannot be uninstalled, only emptied: a
    /// program with no handler of its own should keep the guard until it exits, or a
    /// signal would then do nothing. Calling this again, or from several reporters, is
    /// fine. It starts one plain thread per process and no async runtime.
    ///
    /// ```no_run
    /// let progress = herald::Progress::from_env()?;
    /// let _signals = progress.finish_on_signals()?;
    /// let run = progress.run("nightly import");
    /// // Killed now by `kill -TERM`, the run ends `cancelled`: "terminated by SIGTERM".
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// When the signal handlers cannot be installed; on platforms other than Unix,
    /// always (`ErrorKind::Unsupported`).
    pub fn finish_on_signals(&self) -> io::Result<SignalGuard> {
        let mut registry = lock(&REGISTRY);
        if registry.listener.is_none() {
            let listener = Listener::start()
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen for signals: {e}")))?;
            registry.listener = Some(listener);
        }
        registry.next_guard += 1;
        let id = registry.next_guard;
        registry.opted_in.push((id, Arc::downgrade(&self.shared)));
        Ok(SignalGuard { id })
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
    let mut reporters: Vec<Arc<Shared>> = lock(&REGISTRY)
        .opted_in
        .iter()
        .filter_map(|(_, shared)| shared.upgrade())
        .collect();
    // One reporter may have opted in twice.
    reporters.sort_by_key(Arc::as_ptr);
    reporters.dedup_by(|a, b| Arc::ptr_eq(a, b));
    std::thread::scope(|scope| {
        for shared in &reporters {
            let reason = reason.as_str();
            scope.spawn(move || shared.cancel_open_runs(reason));
        }
    });
    reporters
}

/// herald's registrations for the three signals, and the thread that hears them.
#[cfg(unix)]
struct Listener {
    /// Closes the self-pipe's registrations and ends the thread's wait.
    handle: signal_hook::iterator::Handle,
    /// The second signal's defaults, taken in the handler itself.
    defaults: Vec<signal_hook::SigId>,
}

#[cfg(unix)]
impl Listener {
    fn start() -> io::Result<Listener> {
        use std::sync::atomic::{AtomicBool, Ordering};

        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        use signal_hook::iterator::Signals;
        use signal_hook::low_level::{emulate_default_handler, signal_name};

        const SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];
        // Registered before the listener's own action, so that it runs first in the
        // handler: from the second signal on, the default action is taken right there.
        let again = Arc::new(AtomicBool::new(false));
        let mut defaults = Vec::new();
        let undo = |defaults: &[signal_hook::SigId]| {
            for id in defaults {
                signal_hook::low_level::unregister(*id);
            }
        };
        for signal in SIGNALS {
            match signal_hook::flag::register_conditional_default(signal, again.clone()) {
                Ok(id) => defaults.push(id),
                Err(e) => {
                    undo(&defaults);
                    return Err(e);
                }
            }
        }
        let mut signals = Signals::new(SIGNALS).inspect_err(|_| undo(&defaults))?;
        let handle = signals.handle();
        let first = again.clone();
        let spawned = std::thread::Builder::new()
            .name("herald-signals".into())
            .spawn(move || {
                // `None` once the last guard closed the handle.
                let Some(signal) = signals.forever().next() else {
                    return;
                };
                first.store(true, Ordering::SeqCst);
                let _reporters = finish_everything(signal_name(signal).unwrap_or("a signal"));
                // Resets the signal to its default disposition and raises it: the
                // process ends as if no handler had been there.
                let _ = emulate_default_handler(signal);
            });
        if let Err(e) = spawned {
            handle.close();
            undo(&defaults);
            return Err(e);
        }
        Ok(Listener { handle, defaults })
    }

    /// Removes every registration; the thread sees the handle closed and ends.
    fn stop(self) {
        self.handle.close();
        for id in self.defaults {
            signal_hook::low_level::unregister(id);
        }
    }
}

#[cfg(not(unix))]
struct Listener;

#[cfg(not(unix))]
impl Listener {
    fn start() -> io::Result<Listener> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "finishing runs on signals needs Unix signals",
        ))
    }

    fn stop(self) {}
}
