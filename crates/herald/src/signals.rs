//! What sinks tell the program: that someone asked a run to stop (seen by the hub
//! sink), what a sink had to drop, and herald's own warnings.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use herald_protocol::RunId;

use crate::lock::lock;

/// Shared by a [`Progress`](crate::Progress), its handles and its sinks.
#[derive(Default)]
pub(crate) struct Signals {
    cancels: Mutex<HashMap<RunId, Arc<CancelState>>>,
    /// Ticks a hub sink dropped because its buffer was full while the hub was away.
    pub(crate) hub_dropped_ticks: AtomicU64,
    /// Milestones a hub sink dropped: buffer full of milestones, or refused by the hub.
    pub(crate) hub_dropped_milestones: AtomicU64,
    /// Events a hub acknowledged: stored, or found stored already (a retry).
    pub(crate) hub_acknowledged: AtomicU64,
    /// herald's own warnings, waiting for the background loop to show them.
    notices: Mutex<Vec<Notice>>,
    /// Wakes the background loop for a notice: an idle loop sleeps until it has
    /// something to do, and a notice is something.
    wake: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

/// A warning of herald's own (the hub cannot be reached, it refused events), about
/// one run or none.
pub(crate) struct Notice {
    pub(crate) run: Option<RunId>,
    pub(crate) message: String,
}

impl Signals {
    /// The cancellation state of `run`, created on first use.
    pub(crate) fn cancel(&self, run: &RunId) -> Arc<CancelState> {
        lock(&self.cancels).entry(run.clone()).or_default().clone()
    }

    /// Records that someone asked `run` to stop, waking whoever waits for it.
    pub(crate) fn request_cancel(&self, run: &RunId) {
        self.cancel(run).request();
    }

    /// Queues a warning of herald's own for the background loop, which shows it
    /// where the program's progress goes: above the bars, as a `log` event in JSON
    /// Lines, or on a stderr that carries neither. Never printed from here: a line
    /// written past the sinks would be erased by the bars or break a JSON stream.
    pub(crate) fn notice(&self, run: Option<&RunId>, message: String) {
        lock(&self.notices).push(Notice {
            run: run.cloned(),
            message,
        });
        if let Some(wake) = self.wake.get() {
            wake();
        }
    }

    /// Sets how a notice wakes the background loop (once, when the loop starts).
    pub(crate) fn on_notice(&self, wake: impl Fn() + Send + Sync + 'static) {
        let _ = self.wake.set(Box::new(wake));
    }

    /// The warnings queued so far.
    pub(crate) fn take_notices(&self) -> Vec<Notice> {
        std::mem::take(&mut *lock(&self.notices))
    }
}

/// Whether a run was asked to stop, and who is waiting to hear it.
#[derive(Default)]
pub(crate) struct CancelState {
    requested: AtomicBool,
    lock: Mutex<Vec<Waker>>,
    cond: Condvar,
}

impl CancelState {
    fn request(&self) {
        if self.requested.swap(true, Ordering::AcqRel) {
            return;
        }
        let wakers = std::mem::take(&mut *lock(&self.lock));
        self.cond.notify_all();
        for waker in wakers {
            waker.wake();
        }
    }

    pub(crate) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }
}

/// A run's cancellation request, to check, wait for, or `.await` (it is a future that
/// needs no particular runtime). Created by [`Run::cancellation`](crate::Run::cancellation).
///
/// Cancellation is advisory (docs/http-api.md#post-v1runsidcancel): the program decides how to stop, usually
/// by finishing its run with [`Run::cancelled`](crate::Run::cancelled).
#[derive(Clone)]
pub struct Cancellation {
    pub(crate) state: Arc<CancelState>,
}

impl Cancellation {
    /// Whether cancellation was requested.
    pub fn is_requested(&self) -> bool {
        self.state.is_requested()
    }

    /// Blocks until cancellation is requested or `timeout` passes; `true` if it was.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let guard = lock(&self.state.lock);
        let (_guard, _) = self
            .state
            .cond
            .wait_timeout_while(guard, timeout, |_| !self.state.is_requested())
            .unwrap_or_else(|e| e.into_inner());
        self.state.is_requested()
    }
}

impl Future for Cancellation {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.is_requested() {
            return Poll::Ready(());
        }
        let mut wakers = lock(&self.state.lock);
        // Checked again under the lock that `request` takes, so a request between the
        // first check and the registration cannot be missed.
        if self.state.is_requested() {
            return Poll::Ready(());
        }
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl std::fmt::Debug for Cancellation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancellation")
            .field("requested", &self.is_requested())
            .finish()
    }
}
