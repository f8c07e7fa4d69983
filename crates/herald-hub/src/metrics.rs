//! Prometheus text metrics: runs by status, events appended, appends refused by the rate
//! limit or a full disk, stored events that could not be read back, open subscribers,
//! and a histogram of append latency.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald_protocol::RunStatus;

/// Upper bounds of the append latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The hub's counters.
#[derive(Default)]
pub(crate) struct Metrics {
    events_appended: AtomicU64,
    duplicates: AtomicU64,
    appends: AtomicU64,
    rate_limited: AtomicU64,
    disk_full: AtomicU64,
    subscribers: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_sum_us: AtomicU64,
}

impl Metrics {
    pub(crate) fn appended(&self, events: u64, duplicates: u64, took: Duration) {
        self.events_appended.fetch_add(events, Ordering::Relaxed);
        self.duplicates.fetch_add(duplicates, Ordering::Relaxed);
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an append refused by the rate limit.
    pub(crate) fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an append refused because the store's disk is full.
    pub(crate) fn disk_full(&self) {
        self.disk_full.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an open subscriber until the guard is dropped.
    pub(crate) fn subscriber(self: &std::sync::Arc<Self>) -> SubscriberGuard {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        SubscriberGuard(self.clone())
    }

    /// The metrics as Prometheus text, with `runs` counted by status and `unreadable`,
    /// the stored events the store found it could not read back.
    pub(crate) fn render(&self, runs: &[(RunStatus, u64)], unreadable: u64) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP herald_runs Runs stored, by status.");
        let _ = writeln!(out, "# TYPE herald_runs gauge");
        for status in [
            RunStatus::Running,
            RunStatus::Stalled,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ] {
            let n = runs
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "herald_runs{{status=\"{}\"}} {n}", status.as_str());
        }
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        };
        counter(
            &mut out,
            "herald_events_appended_total",
            "Events stored.",
            &self.events_appended,
        );
        counter(
            &mut out,
            "herald_events_duplicate_total",
            "Events skipped as repeated ids.",
            &self.duplicates,
        );
        counter(
            &mut out,
            "herald_appends_rate_limited_total",
            "Appends refused with 429: the run was over its rate limit.",
            &self.rate_limited,
        );
        counter(
            &mut out,
            "herald_appends_disk_full_total",
            "Appends refused with 507: the store's disk was full.",
            &self.disk_full,
        );
        counter(
            &mut out,
            "herald_events_unreadable_total",
            "Stored events that could not be read back, served as custom.unreadable markers (each counted once per process).",
            &AtomicU64::new(unreadable),
        );
        let _ = writeln!(
            out,
            "# HELP herald_subscribers Open polls, streams and sockets."
        );
        let _ = writeln!(out, "# TYPE herald_subscribers gauge");
        let _ = writeln!(
            out,
            "herald_subscribers {}",
            self.subscribers.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP herald_append_seconds Time to store a batch of events."
        );
        let _ = writeln!(out, "# TYPE herald_append_seconds histogram");
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.latency_buckets) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "herald_append_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let total = self.appends.load(Ordering::Relaxed);
        let _ = writeln!(out, "herald_append_seconds_bucket{{le=\"+Inf\"}} {total}");
        let sum = self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "herald_append_seconds_sum {sum}");
        let _ = writeln!(out, "herald_append_seconds_count {total}");
        out
    }
}

/// An open subscriber, counted while it lives.
pub(crate) struct SubscriberGuard(std::sync::Arc<Metrics>);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}
