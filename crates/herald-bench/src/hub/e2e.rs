//! End to end: from a program's call on an SDK handle, through the SDK's hub sink
//! (default settings), the hub, to an SSE subscriber of the run.
//!
//! The program runs in this process on a thread of its own, with
//! `Progress::new([Target::hub(HubOptions::new(url, None))])`, as a program that was
//! given `HERALD_URL` would; the hub is `hub-load serve` in a process of its own; the
//! subscriber is a task of this process reading `GET /v1/runs/{id}/stream`. Both ends
//! read the same monotonic clock: a latency runs from just before the call (`item.fail()`,
//! `item.finish()`, or the `inc` that moves a stage 10 points) to the moment the
//! subscriber reads the chunk holding the event it causes. Trials take turns: the
//! program waits until the subscriber has seen one before it starts the next, after a
//! random pause (0 to 50 ms, seeded), so that calls fall at every phase of the SDK's
//! 50 ms turn.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures_util::StreamExt;
use herald::{HubOptions, Progress, Target};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use herald_testkit::sse::{Frame, SseReader};

use super::client::{REQUEST_TIMEOUT, http_client};
use super::process::HubProcess;
use super::{Percentiles, Scale};

/// Longest a trial may take before the measurement fails.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the run to appear on the hub.
const RUN_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest random pause between trials.
const MAX_PAUSE_MS: u64 = 50;
/// A tick trial's stage: `inc(TICK_STEP)` of `TICK_TOTAL` is 10 points, the hub
/// sink's default `min_percent`.
const TICK_TOTAL: u64 = 100;
const TICK_STEP: u64 = 10;

/// What the program does in a trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum E2eKind {
    /// `item.fail(...)`: an `item.finished` with status `failed`.
    Failure,
    /// `item.finish()`: an `item.finished` that succeeded, another milestone.
    Milestone,
    /// `stage.inc(10)` of a stage of 100: a `progress` tick, sampled by the SDK.
    Tick,
}

impl E2eKind {
    /// Every kind, in the order a round runs them.
    pub const ALL: [E2eKind; 3] = [E2eKind::Failure, E2eKind::Milestone, E2eKind::Tick];

    /// The row label in the report.
    pub fn label(self) -> &'static str {
        match self {
            E2eKind::Failure => "`item.fail()` (milestone, an error)",
            E2eKind::Milestone => "`item.finish()` (milestone)",
            E2eKind::Tick => "`stage.inc()` across 10 points (tick)",
        }
    }
}

/// One kind's figures: percentiles of each round.
#[derive(Clone, Debug)]
pub struct E2eRow {
    /// What was measured.
    pub kind: E2eKind,
    /// Each round's latencies, in microseconds.
    pub rounds: Vec<Percentiles>,
}

/// The end-to-end figures.
#[derive(Clone, Debug)]
pub struct E2eReport {
    /// Trials of each kind per round.
    pub trials: usize,
    /// One row per kind.
    pub rows: Vec<E2eRow>,
}

/// What the subscriber saw, with when it read it.
enum Seen {
    /// An `item.finished` of this item.
    Item(String),
    /// A `progress` of this stage at this count.
    Progress(String, u64),
    /// The stream ended.
    End,
}

/// Runs `scale.latency_rounds` rounds against a hub over a fresh file in `dir`, each a
/// run of its own in a fresh `Progress`.
pub(crate) async fn run(dir: &Path, scale: &Scale) -> anyhow::Result<E2eReport> {
    ensure!(
        scale.e2e_trials > 0 && scale.latency_rounds > 0,
        "e2e needs trials and rounds"
    );
    let hub = HubProcess::start(&dir.join("hub-e2e.db")).await?;
    let base = hub.base_url();
    let mut rows: Vec<E2eRow> = E2eKind::ALL
        .iter()
        .map(|&kind| E2eRow {
            kind,
            rounds: Vec::new(),
        })
        .collect();
    let result = async {
        for round in 0..scale.latency_rounds {
            let latencies = one_round(&base, scale.e2e_trials, round as u64)
                .await
                .with_context(|| format!("round {}", round + 1))?;
            for (row, mut sample) in rows.iter_mut().zip(latencies) {
                row.rounds.push(Percentiles::of(&mut sample));
            }
        }
        anyhow::Ok(())
    }
    .await;
    hub.stop().await;
    result?;
    Ok(E2eReport {
        trials: scale.e2e_trials,
        rows,
    })
}

/// One round: a program's run with `trials` trials of each kind; the latencies of
/// each kind, in microseconds, in the order of [`E2eKind::ALL`].
async fn one_round(base: &str, trials: usize, seed: u64) -> anyhow::Result<Vec<Vec<u64>>> {
    let (seen_tx, seen_rx) = mpsc::channel::<(Seen, Instant)>();
    let (run_tx, run_rx) = tokio::sync::oneshot::channel::<String>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let url = base.to_owned();
    let program =
        tokio::task::spawn_blocking(move || program(&url, trials, seed, run_tx, ready_rx, seen_rx));
    let subscriber = async {
        let run = run_rx.await.context("the program ended before its run")?;
        let client = http_client()?;
        wait_for_run(&client, base, &run).await?;
        let res = client
            .get(format!("{base}/v1/runs/{run}/stream"))
            .header("accept", "text/event-stream")
            .send()
            .await
            .context("opening the stream")?;
        ensure!(
            res.status() == reqwest::StatusCode::OK,
            "opening the stream: {}",
            res.status()
        );
        let _ = ready_tx.send(());
        follow(res, &seen_tx).await;
        let _ = seen_tx.send((Seen::End, Instant::now()));
        anyhow::Ok(())
    };
    let (program, subscriber) = tokio::join!(program, subscriber);
    subscriber?;
    program.context("the program's thread panicked")?
}

/// Waits until the hub has the run (the hub sink creates it on its first request).
async fn wait_for_run(client: &reqwest::Client, base: &str, run: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let res = client
            .get(format!("{base}/v1/runs/{run}"))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await?;
        if res.status().is_success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the run {run} is not on the hub after {RUN_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads the stream until `run.finished`, passing on what the trials wait for.
async fn follow(res: reqwest::Response, seen: &mpsc::Sender<(Seen, Instant)>) {
    let mut body = res.bytes_stream();
    let mut reader = SseReader::default();
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(TRIAL_TIMEOUT * 2, body.next()).await {
        let at = Instant::now();
        // What is not the hub's SSE ends the stream, as a cut would.
        let Ok(frames) = reader.push(&chunk) else {
            return;
        };
        for frame in frames {
            let Frame::Message(message) = frame else {
                continue;
            };
            let data: Value = serde_json::from_str(&message.data).unwrap_or(Value::Null);
            let text = |k: &str| data[k].as_str().map(str::to_owned);
            let what = match message.event.as_deref().unwrap_or("message") {
                "item.finished" => text("item").map(Seen::Item),
                "progress" => text("stage")
                    .zip(data["done"].as_u64())
                    .map(|(s, d)| Seen::Progress(s, d)),
                "run.finished" => return,
                _ => None,
            };
            if let Some(what) = what {
                let _ = seen.send((what, at));
            }
        }
    }
}

/// The program: a run, then trials of every kind, each waiting for the subscriber to
/// see it.
fn program(
    url: &str,
    trials: usize,
    seed: u64,
    run_tx: tokio::sync::oneshot::Sender<String>,
    ready: mpsc::Receiver<()>,
    seen: mpsc::Receiver<(Seen, Instant)>,
) -> anyhow::Result<Vec<Vec<u64>>> {
    let progress = Progress::new([Target::hub(HubOptions::new(url, None))]);
    let run = progress.run("e2e");
    let _ = run_tx.send(run.id().to_string());
    ready
        .recv_timeout(RUN_TIMEOUT * 2)
        .context("the subscriber never opened its stream")?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pause =
        || std::thread::sleep(Duration::from_millis(rng.random_range(0..=MAX_PAUSE_MS)));
    let wait_for = |matches: &dyn Fn(&Seen) -> bool| -> anyhow::Result<Instant> {
        let deadline = Instant::now() + TRIAL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match seen.recv_timeout(left) {
                Ok((Seen::End, _)) => bail!("the stream ended during a trial"),
                Ok((what, at)) if matches(&what) => return Ok(at),
                Ok(_) => {}
                Err(_) => bail!("the subscriber saw nothing within {TRIAL_TIMEOUT:?}"),
            }
        }
    };
    let mut out = Vec::new();
    for kind in E2eKind::ALL {
        let mut sample = Vec::with_capacity(trials);
        match kind {
            E2eKind::Failure | E2eKind::Milestone => {
                let stage = run.stage(&format!("{kind:?}").to_lowercase());
                for i in 0..trials {
                    let name = format!("{kind:?}-{i}");
                    let item = stage.item(name.clone());
                    pause();
                    let start = Instant::now();
                    if kind == E2eKind::Failure {
                        item.fail("boom");
                    } else {
                        item.finish();
                    }
                    let at = wait_for(&|s| matches!(s, Seen::Item(n) if *n == name))?;
                    sample.push(at.saturating_duration_since(start).as_micros() as u64);
                }
                stage.finish();
            }
            E2eKind::Tick => {
                let per_stage = (TICK_TOTAL / TICK_STEP) as usize;
                for s in 0..trials.div_ceil(per_stage) {
                    let name = format!("ticks-{s}");
                    let stage = run.stage(&name).total(TICK_TOTAL);
                    let mut done = 0;
                    for _ in 0..per_stage.min(trials - sample.len()) {
                        pause();
                        let start = Instant::now();
                        stage.inc(TICK_STEP);
                        done += TICK_STEP;
                        let at = wait_for(
                            &|s| matches!(s, Seen::Progress(st, d) if *st == name && *d >= done),
                        )?;
                        sample.push(at.saturating_duration_since(start).as_micros() as u64);
                    }
                    stage.finish();
                }
            }
        }
        out.push(sample);
    }
    run.finish();
    drop(progress);
    Ok(out)
}
