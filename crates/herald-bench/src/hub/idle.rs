//! Memory per idle stream: the hub's resident memory before and after many SSE
//! streams are opened on runs that stay silent.
//!
//! The hub runs in its own process, so its `VmRSS` is its own. Before the baseline is
//! read, a few dozen streams are opened and closed, so that what every hub pays once
//! (the SQLite reader connections, the runs' feeds and cached states, the runtime's
//! worker buffers) is in the baseline and not charged to the streams. After the
//! streams close, the RSS is read once it stops falling (within a deadline), since an
//! allocator may give memory back gradually rather than at once.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use futures_util::StreamExt;

use super::Scale;
use super::client::{create_run, http_client, metric};
use super::process::{HubProcess, raise_open_files_limit};

/// Streams opened at once, so as not to overflow the hub's accept backlog.
const CONNECT_CONCURRENCY: usize = 100;
/// Streams opened and closed before the baseline.
const WARM_UP_STREAMS: usize = 64;
/// How long the hub is left alone before a reading.
const SETTLE: Duration = Duration::from_secs(3);
/// Longest wait for the hub to count its subscribers.
const COUNT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait, after the streams closed, for the hub's RSS to stop falling: an
/// allocator may return freed memory gradually (jemalloc's decay is 10 s by default).
const RETURN_TIMEOUT: Duration = Duration::from_secs(30);
/// The RSS has stopped falling once it fell by no more than [`RETURN_STEADY_KIB`]
/// over this long.
const RETURN_STEADY: Duration = Duration::from_secs(3);
/// What counts as not falling any more over [`RETURN_STEADY`], in KiB.
const RETURN_STEADY_KIB: u64 = 256;
/// How often the RSS is read while waiting for it to stop falling.
const RSS_POLL: Duration = Duration::from_millis(250);

/// The idle-stream figures.
#[derive(Clone, Debug)]
pub struct IdleReport {
    /// Streams held open.
    pub streams: usize,
    /// Runs they were spread over (round robin).
    pub runs: usize,
    /// Hub RSS before, KiB.
    pub before_kib: u64,
    /// Hub RSS as soon as every stream was open, KiB.
    pub open_kib: u64,
    /// Hub RSS after the streams sat idle for a few seconds, KiB.
    pub settled_kib: u64,
    /// Hub RSS after every stream was closed again, once it stopped falling (or at
    /// the deadline), KiB.
    pub closed_kib: u64,
    /// How long after the last stream closed the RSS stopped falling.
    pub returned_after: Duration,
}

impl IdleReport {
    /// (settled − before) / streams, in KiB.
    pub fn per_stream_kib(&self) -> f64 {
        self.settled_kib.saturating_sub(self.before_kib) as f64 / self.streams.max(1) as f64
    }

    /// The share of what the streams took that the hub gave back once they closed:
    /// (settled − closed) / (settled − before), from 0 to 1.
    pub fn returned(&self) -> f64 {
        let took = self.settled_kib.saturating_sub(self.before_kib);
        if took == 0 {
            return 1.0;
        }
        (self.settled_kib.saturating_sub(self.closed_kib) as f64 / took as f64).min(1.0)
    }
}

async fn open_streams(
    client: &reqwest::Client,
    urls: &[String],
    count: usize,
) -> anyhow::Result<Vec<reqwest::Response>> {
    let responses: Vec<anyhow::Result<reqwest::Response>> = futures_util::stream::iter(0..count)
        .map(|i| async move {
            let res = client
                .get(&urls[i % urls.len()])
                .header("accept", "text/event-stream")
                .send()
                .await
                .context("opening a stream")?;
            if res.status() != reqwest::StatusCode::OK {
                bail!("opening a stream: {}", res.status());
            }
            Ok(res)
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    responses.into_iter().collect()
}

/// Waits until the hub counts `n` open subscribers.
async fn subscribers_reach(client: &reqwest::Client, base: &str, n: usize) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + COUNT_TIMEOUT;
    loop {
        let open = metric(client, base, "herald_subscribers").await?;
        if open as usize == n {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the hub counts {open} subscribers after {COUNT_TIMEOUT:?}, not {n}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the idle-stream measurement against a hub over a fresh file in `dir` (one per
/// `round`).
pub(crate) async fn run(dir: &Path, scale: &Scale, round: usize) -> anyhow::Result<IdleReport> {
    ensure!(
        scale.streams > 0 && scale.stream_runs > 0,
        "idle needs streams and runs"
    );
    let limit = raise_open_files_limit();
    ensure!(
        scale.streams as u64 + 256 <= limit,
        "{} streams need more open files than the limit of {limit}: raise `ulimit -n`",
        scale.streams
    );
    let hub = HubProcess::start(&dir.join(format!("hub-idle-{round}.db"))).await?;
    let base = hub.base_url();
    let client = http_client()?;
    let mut urls = Vec::new();
    for r in 0..scale.stream_runs {
        let run = format!("idle-{r}");
        create_run(&client, &base, &run).await?;
        urls.push(format!("{base}/v1/runs/{run}/stream"));
    }

    let warm = open_streams(&client, &urls, WARM_UP_STREAMS).await?;
    subscribers_reach(&client, &base, WARM_UP_STREAMS).await?;
    drop(warm);
    subscribers_reach(&client, &base, 0).await?;
    tokio::time::sleep(SETTLE).await;
    let before_kib = hub.rss_kib()?;

    // A client of its own, so the streams' connections are not the ones `/metrics`
    // is asked on.
    let streams_client = http_client()?;
    let streams = open_streams(&streams_client, &urls, scale.streams).await?;
    subscribers_reach(&client, &base, scale.streams).await?;
    let open_kib = hub.rss_kib()?;
    tokio::time::sleep(SETTLE).await;
    let settled_kib = hub.rss_kib()?;

    drop(streams);
    subscribers_reach(&client, &base, 0).await?;
    let (closed_kib, returned_after) = rss_once_steady(&hub).await?;
    hub.stop().await;
    Ok(IdleReport {
        streams: scale.streams,
        runs: scale.stream_runs,
        before_kib,
        open_kib,
        settled_kib,
        closed_kib,
        returned_after,
    })
}

/// The hub's RSS once it has stopped falling (by at most [`RETURN_STEADY_KIB`] over
/// [`RETURN_STEADY`]), or at [`RETURN_TIMEOUT`]; and how long that took.
async fn rss_once_steady(hub: &HubProcess) -> anyhow::Result<(u64, Duration)> {
    let start = tokio::time::Instant::now();
    // Readings of the last `RETURN_STEADY`, oldest first.
    let mut recent: std::collections::VecDeque<(tokio::time::Instant, u64)> =
        std::collections::VecDeque::new();
    loop {
        let now = tokio::time::Instant::now();
        let rss = hub.rss_kib()?;
        recent.push_back((now, rss));
        while recent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RETURN_STEADY)
        {
            recent.pop_front();
        }
        let steady = now.duration_since(start) >= RETURN_STEADY
            && recent
                .front()
                .is_some_and(|(_, oldest)| oldest.saturating_sub(rss) <= RETURN_STEADY_KIB);
        if steady || now.duration_since(start) >= RETURN_TIMEOUT {
            // The time it stopped falling: the start of the steady window.
            let since = recent.front().map_or(now, |(at, _)| *at);
            return Ok((rss, since.duration_since(start)));
        }
        tokio::time::sleep(RSS_POLL).await;
    }
}
