//! How soon a silent program hears a cancel: a run that reports its start and then
//! nothing, against a real hub in this process (`herald_hub::serve` over SQLite), is
//! cancelled through the hub's API, and the time from just before the request to the
//! moment `Run::cancellation` wakes a waiting thread is measured, trial after trial.
//!
//! The SDK's hub sink follows each open run's cancel state with a long poll; before
//! it did, only append replies carried a cancel, and a silent run appends nothing but
//! its keep-alive heartbeat, every 10 s.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald::protocol::RunId;
use herald::{HubOptions, Progress, RunOptions, Target};

use crate::sdk_cost::hubs::LocalHub;

/// How long a run stays silent on the hub before it is cancelled: the follower has
/// long since had its poll in flight, as it has for a program that went quiet.
const SILENT_FOR: Duration = Duration::from_millis(300);
/// A cancel not heard within this is a failed trial.
const GIVE_UP: Duration = Duration::from_secs(15);

/// The latencies of `trials` cancels, in trial order.
pub fn measure(trials: usize) -> anyhow::Result<Vec<Duration>> {
    let hub = LocalHub::start()?;
    let progress = Progress::new([Target::hub(HubOptions::new(&hub.url(), None))]);
    let mut latencies = Vec::with_capacity(trials);
    for trial in 0..trials {
        let id = RunId::new(format!("cancel-latency-{trial}")).expect("a run id");
        let run = progress.run_with(
            "silent",
            RunOptions {
                id: Some(id.clone()),
                ..RunOptions::default()
            },
        );
        let appeared = Instant::now();
        while hub.run_state(&id).is_err() {
            if appeared.elapsed() > GIVE_UP {
                bail!("run {id} never reached the hub");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(SILENT_FOR);
        let cancellation = run.cancellation();
        let (heard_tx, heard) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let woke = cancellation.wait_timeout(GIVE_UP);
            let _ = heard_tx.send(woke.then(Instant::now));
        });
        let asked = Instant::now();
        hub.cancel(&id)?;
        let at = heard
            .recv()
            .context("the waiting thread ended")?
            .with_context(|| format!("trial {trial}: no cancel heard within {GIVE_UP:?}"))?;
        let _ = waiter.join();
        latencies.push(at.saturating_duration_since(asked));
        run.cancelled(Some("measured"));
    }
    drop(progress);
    hub.stop();
    Ok(latencies)
}

/// The `q` quantile (0 to 1) of `sorted`, by the nearest rank.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
