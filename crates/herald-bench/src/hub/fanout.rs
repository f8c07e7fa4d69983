//! Publish-to-subscriber latency: many SSE (or WebSocket) subscribers on one run,
//! events appended one at a time at a modest rate, each carrying its send time.
//!
//! Three processes: the hub (`hub-load serve`), the subscribers (`hub-load subscribe`,
//! all streams in one process) and the sender (the load generator itself). A latency is
//! the subscriber's receive time minus the sender's send time, both read from the
//! system clock, taken just before the append request is sent and as soon as the chunk
//! holding the event is read: the append's HTTP round trip and transaction, the
//! fan-out, the SSE write and the subscriber's read are all in it. The same runs with
//! WebSocket subscribers (`GET /v1/runs/{id}/ws`), each event a text message.
//!
//! With a PostgreSQL server the same runs on a fresh PostgreSQL database with one hub,
//! and with two hub processes on it: the sender appends through hub A, the subscribers
//! follow hub B, so an event reaches them through A's transaction, PostgreSQL's
//! notification to B, and B's read of the store.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use herald_testkit::sse::{Frame, SseReader};

use super::client::{append, create_run, http_client, int_field, now_us};
use super::pg::TempDatabase;
use super::process::{ChildProcess, HubProcess, cpu_percent, cpu_time, raise_open_files_limit};
use super::raw_sse::RawSse;
use super::{Percentiles, Scale};

/// Streams opened at once, so as not to overflow the hub's accept backlog.
const CONNECT_CONCURRENCY: usize = 64;
/// The run every subscriber follows (one per round: `fanout-N`).
const RUN: &str = "fanout";

/// How the subscribers follow the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `GET /v1/runs/{id}/stream`, Server-Sent Events.
    Sse,
    /// `GET /v1/runs/{id}/ws`, a WebSocket.
    Ws,
}

impl Transport {
    /// The name in the report and on `hub-load subscribe`'s command line.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Sse => "SSE",
            Transport::Ws => "WebSocket",
        }
    }

    /// `sse` or `ws`, on `hub-load subscribe`'s command line.
    pub fn arg(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::Ws => "ws",
        }
    }

    /// The transport `arg` names.
    pub fn parse(arg: &str) -> Option<Transport> {
        match arg {
            "sse" => Some(Transport::Sse),
            "ws" => Some(Transport::Ws),
            _ => None,
        }
    }
}

/// What the subscriber process reports when its streams have ended.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SubscriberSummary {
    /// Streams opened.
    pub(crate) streams: usize,
    /// Streams that saw `run.finished`.
    pub(crate) finished: usize,
    /// Streams whose `id`s went 1, 2, 3... with no gap or repeat.
    pub(crate) in_order: usize,
    /// Pings received over all streams.
    pub(crate) pings: usize,
    /// Receive time minus send time over all pings, in microseconds.
    pub(crate) latency_us: Percentiles,
    /// CPU time of the subscriber process from `ready` to the end, in milliseconds.
    pub(crate) cpu_ms: u64,
}

/// The fan-out figures.
#[derive(Clone, Debug)]
pub struct FanoutReport {
    /// Which hubs, on which database.
    pub setup: String,
    /// How the subscribers follow the run.
    pub transport: Transport,
    /// SSE subscribers on the run.
    pub subscribers: usize,
    /// Events sent.
    pub events: usize,
    /// Events sent per second.
    pub rate: f64,
    /// Deliveries (subscriber × event) received.
    pub deliveries: usize,
    /// Publish-to-subscriber latency, in microseconds.
    pub latency_us: Percentiles,
    /// The sender's append round trips, in microseconds.
    pub append_us: Percentiles,
    /// CPU of the hub process (of both, with two), % of one core, while events flowed.
    pub hub_cpu: f64,
    /// CPU of the PostgreSQL server's backends serving the hubs, % of one core, when
    /// they can be read.
    pub db_cpu: Option<f64>,
    /// CPU of the subscriber process, % of one core, over the same time.
    pub subscriber_cpu: f64,
    /// The wall time over which those were measured.
    pub wall: Duration,
}

/// Runs `scale.latency_rounds` rounds of the fan-out measurement, each on a run of its
/// own, against a hub over a fresh file in `dir`.
pub(crate) async fn run(
    dir: &Path,
    scale: &Scale,
    transport: Transport,
) -> anyhow::Result<Vec<FanoutReport>> {
    let hub = HubProcess::start(&dir.join(format!("hub-fanout-{}.db", transport.arg()))).await?;
    let report = rounds(
        std::slice::from_ref(&hub),
        None,
        scale,
        "1 hub, SQLite",
        transport,
    )
    .await;
    hub.stop().await;
    report
}

async fn rounds(
    hubs: &[HubProcess],
    db: Option<&TempDatabase>,
    scale: &Scale,
    setup: &str,
    transport: Transport,
) -> anyhow::Result<Vec<FanoutReport>> {
    let mut reports = Vec::with_capacity(scale.latency_rounds);
    for round in 0..scale.latency_rounds {
        let run = format!("{RUN}-{round}");
        reports.push(
            measure(hubs, db, scale, setup, transport, &run)
                .await
                .with_context(|| format!("round {}", round + 1))?,
        );
    }
    Ok(reports)
}

/// Runs it against `hubs` hub processes on a fresh database of the PostgreSQL server at
/// `admin_url`: appends through the first, subscribers on the last.
pub(crate) async fn run_postgres(
    admin_url: &str,
    hubs: usize,
    scale: &Scale,
) -> anyhow::Result<Vec<FanoutReport>> {
    let db = TempDatabase::create(admin_url).await?;
    let report = async {
        let mut processes = Vec::with_capacity(hubs);
        for _ in 0..hubs {
            processes.push(HubProcess::start_on(&db.url).await?);
        }
        let setup = if hubs == 1 {
            "1 hub, PostgreSQL".to_owned()
        } else {
            format!("{hubs} hubs, PostgreSQL: append to A, subscribers on B")
        };
        let report = rounds(&processes, Some(&db), scale, &setup, Transport::Sse).await;
        for hub in processes {
            hub.stop().await;
        }
        report
    }
    .await;
    db.drop_now().await?;
    report
}

/// The measurement: the sender appends through `hubs[0]`, the subscribers follow
/// `hubs[last]`; CPU is of all of them.
async fn measure(
    hubs: &[HubProcess],
    db: Option<&TempDatabase>,
    scale: &Scale,
    setup: &str,
    transport: Transport,
    run: &str,
) -> anyhow::Result<FanoutReport> {
    ensure!(
        scale.subscribers > 0 && scale.pings > 0,
        "fanout needs subscribers and events"
    );
    let (Some(sender_hub), Some(subscribed_hub)) = (hubs.first(), hubs.last()) else {
        bail!("fanout needs a hub");
    };
    let base = sender_hub.base_url();
    let client = http_client()?;
    create_run(&client, &base, run).await?;
    let url = match transport {
        Transport::Sse => format!("{}/v1/runs/{run}/stream", subscribed_hub.base_url()),
        Transport::Ws => format!(
            "ws://{}/v1/runs/{run}/ws",
            subscribed_hub.base_url().trim_start_matches("http://")
        ),
    };
    let timeout_s = (scale.pings as f64 / scale.ping_rate + 60.0).ceil() as u64;
    let mut subscribers = ChildProcess::spawn(&[
        "subscribe",
        "--transport",
        transport.arg(),
        "--url",
        &url,
        "--count",
        &scale.subscribers.to_string(),
        "--timeout-s",
        &timeout_s.to_string(),
    ])?;
    let ready = subscribers.line(Duration::from_secs(120)).await?;
    ensure!(
        ready == format!("ready {}", scale.subscribers),
        "the subscribers said `{ready}`"
    );

    let hubs_cpu = || -> anyhow::Result<Duration> {
        hubs.iter()
            .try_fold(Duration::ZERO, |total, hub| Ok(total + hub.cpu()?))
    };
    let db_cpu0 = match db {
        Some(db) => Some(db.cpu_now().await?),
        None => None,
    };
    let hub_cpu0 = hubs_cpu()?;
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / scale.ping_rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut append_us = Vec::with_capacity(scale.pings);
    for _ in 0..scale.pings {
        tick.tick().await;
        let sent_us = now_us();
        let sent = Instant::now();
        let body = format!(r#"[{{"event":"custom.ping","sent_us":{sent_us}}}]"#);
        let reply = append(&client, &base, run, body).await?;
        append_us.push(sent.elapsed().as_micros() as u64);
        ensure!(reply.appended == 1, "a ping was not appended: {reply:?}");
        ensure!(
            start.elapsed() < Duration::from_secs(timeout_s),
            "fanout over time"
        );
    }
    let finished = r#"[{"event":"run.finished","status":"succeeded"}]"#.to_owned();
    append(&client, &base, run, finished).await?;
    let line = subscribers
        .line(Duration::from_secs(timeout_s))
        .await
        .context("waiting for the subscribers' summary")?;
    let wall = start.elapsed();
    let hub_cpu = cpu_percent(hub_cpu0, hubs_cpu()?, wall);
    let db_cpu = match (db, db_cpu0) {
        (Some(db), Some(before)) => db
            .cpu_since(&before)
            .await
            .map(|used| cpu_percent(Duration::ZERO, used, wall)),
        _ => None,
    };
    subscribers.stop(Duration::from_secs(10)).await;

    let summary: SubscriberSummary =
        serde_json::from_str(&line).with_context(|| format!("the subscribers said `{line}`"))?;
    let expected = scale.subscribers * scale.pings;
    ensure!(
        summary.pings == expected
            && summary.finished == scale.subscribers
            && summary.in_order == scale.subscribers,
        "deliveries do not add up: {} pings of {expected}, {} of {} streams finished, {} in order",
        summary.pings,
        summary.finished,
        scale.subscribers,
        summary.in_order
    );
    Ok(FanoutReport {
        setup: setup.to_owned(),
        transport,
        subscribers: scale.subscribers,
        events: scale.pings,
        rate: scale.ping_rate,
        deliveries: summary.pings,
        latency_us: summary.latency_us,
        append_us: Percentiles::of(&mut append_us),
        hub_cpu,
        db_cpu,
        subscriber_cpu: summary.cpu_ms as f64 / 1000.0 / wall.as_secs_f64() * 100.0,
        wall,
    })
}

/// What one stream saw.
#[derive(Default)]
struct StreamOutcome {
    latencies_us: Vec<u64>,
    finished: bool,
    in_order: bool,
}

async fn follow(mut stream: RawSse, deadline: tokio::time::Instant) -> StreamOutcome {
    let mut outcome = StreamOutcome {
        in_order: true,
        ..StreamOutcome::default()
    };
    let mut reader = SseReader::default();
    let mut next_seq = 1;
    let mut chunk = Vec::new();
    // One timer for the whole stream, not one per read: a timer per read was a
    // timer-wheel insertion and removal per delivery in the subscribers' process.
    let expired = tokio::time::sleep_until(deadline);
    tokio::pin!(expired);
    while !outcome.finished {
        let read = tokio::select! {
            biased;
            read = stream.next(&mut chunk) => read,
            () = &mut expired => break,
        };
        let received_us = now_us();
        match read {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
        // What is not the hub's SSE ends the stream, as a cut would.
        let Ok(frames) = reader.push(&chunk) else {
            break;
        };
        for frame in frames {
            let Frame::Message(message) = frame else {
                continue;
            };
            if message.id.and_then(|id| id.parse::<u64>().ok()) == Some(next_seq) {
                next_seq += 1;
            } else {
                outcome.in_order = false;
            }
            match message.event.as_deref().unwrap_or("message") {
                "custom.ping" => {
                    if let Some(sent_us) = int_field(&message.data, "sent_us") {
                        outcome
                            .latencies_us
                            .push(received_us.saturating_sub(sent_us));
                    }
                }
                "run.finished" => outcome.finished = true,
                _ => {}
            }
        }
    }
    outcome
}

/// What one WebSocket saw: each text message is one event's JSON.
async fn follow_ws(mut socket: WsStream, deadline: tokio::time::Instant) -> StreamOutcome {
    use tokio_tungstenite::tungstenite::Message;
    let mut outcome = StreamOutcome {
        in_order: true,
        ..StreamOutcome::default()
    };
    let mut next_seq = 1;
    let expired = tokio::time::sleep_until(deadline);
    tokio::pin!(expired);
    while !outcome.finished {
        let message = tokio::select! {
            biased;
            message = socket.next() => message,
            () = &mut expired => break,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break,
        };
        let received_us = now_us();
        if int_field(&text, "seq") == Some(next_seq) {
            next_seq += 1;
        } else {
            outcome.in_order = false;
        }
        if text.contains(r#""event":"custom.ping""#) {
            if let Some(sent_us) = int_field(&text, "sent_us") {
                outcome
                    .latencies_us
                    .push(received_us.saturating_sub(sent_us));
            }
        } else if text.contains(r#""event":"run.finished""#) {
            outcome.finished = true;
        }
    }
    outcome
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A subscriber's open connection, answered by the hub.
enum Opened {
    Sse(RawSse),
    Ws(Box<WsStream>),
}

/// The subscribers' WebSocket read buffer. tungstenite zero-fills its read buffer's
/// free part (128 KiB by default) on every read, which made the subscribers' process
/// spend more than half its CPU in `memset`; the hub's messages are a few hundred bytes.
const WS_READ_BUFFER: usize = 16 * 1024;

async fn open_ws(url: &str) -> anyhow::Result<WsStream> {
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
    let config = WebSocketConfig::default().read_buffer_size(WS_READ_BUFFER);
    let (socket, response) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .context("opening a WebSocket")?;
    ensure!(
        response.status() == reqwest::StatusCode::SWITCHING_PROTOCOLS,
        "opening a WebSocket: {}",
        response.status()
    );
    Ok(socket)
}

/// `hub-load subscribe --transport sse|ws --url URL --count N --timeout-s S`: opens N
/// SSE streams (or WebSockets) on URL,
/// prints `ready N` once the hub has answered every one, follows them until each has
/// seen `run.finished` (or S seconds pass), then prints a [`SubscriberSummary`] as one
/// JSON line.
pub fn subscribe_main(
    transport: Transport,
    url: &str,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let limit = raise_open_files_limit();
    ensure!(
        count as u64 + 64 <= limit,
        "{count} streams need more open files than the limit of {limit}: raise `ulimit -n`"
    );
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + timeout;
        let responses: Vec<anyhow::Result<Opened>> = futures_util::stream::iter(0..count)
            .map(|_| async {
                Ok(match transport {
                    Transport::Sse => Opened::Sse(RawSse::open(url).await?),
                    Transport::Ws => Opened::Ws(Box::new(open_ws(url).await?)),
                })
            })
            .buffer_unordered(CONNECT_CONCURRENCY)
            .collect()
            .await;
        let responses = responses.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
        let cpu0 = cpu_time("self")?;
        println!("ready {count}");
        let mut streams = tokio::task::JoinSet::new();
        for response in responses {
            match response {
                Opened::Sse(response) => streams.spawn(follow(response, deadline)),
                Opened::Ws(socket) => streams.spawn(follow_ws(*socket, deadline)),
            };
        }
        let mut summary = SubscriberSummary {
            streams: count,
            finished: 0,
            in_order: 0,
            pings: 0,
            latency_us: Percentiles::default(),
            cpu_ms: 0,
        };
        let mut latencies = Vec::new();
        while let Some(outcome) = streams.join_next().await {
            let outcome = outcome.context("a stream task failed")?;
            summary.finished += usize::from(outcome.finished);
            summary.in_order += usize::from(outcome.in_order);
            summary.pings += outcome.latencies_us.len();
            latencies.extend(outcome.latencies_us);
        }
        summary.cpu_ms = cpu_time("self")?.saturating_sub(cpu0).as_millis() as u64;
        summary.latency_us = Percentiles::of(&mut latencies);
        println!("{}", serde_json::to_string(&summary)?);
        Ok(())
    })
}
