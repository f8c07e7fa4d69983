//! Ingest: events per second through the hub (HTTP, the append's transaction, the
//! state fold, the fan-out), against bare SQLite insert loops of the same rows.
//!
//! The rows are what the hub itself stores: each producer draft is parsed and stamped
//! with its `seq` exactly as the hub does, before any clock starts. The bare loops
//! insert them into the hub's tables (its own migrations) with the hub's settings (WAL,
//! `synchronous=NORMAL`, foreign keys on), one `BEGIN IMMEDIATE` transaction per batch,
//! in a fresh file beside the hub's: once through rusqlite (a synchronous loop, the
//! limit) and once through sqlx (the driver the hub uses, to tell the driver's share
//! from the hub's).
//!
//! With a PostgreSQL server, the same producers also go through hubs on a fresh
//! PostgreSQL database: one hub, and two hubs (hub processes of their own on one
//! database, the producers split between them, as behind a load balancer), in the same
//! interleaved rounds as the SQLite figures. Their limit is a bare PostgreSQL loop: the
//! same producers, one connection and one run each, concurrently, issuing the store's
//! statements for each append (the run's row locked, the events inserted, the run's
//! row updated, the notification) on the hub's own tables.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use herald_hub::SQLITE_MIGRATIONS;
use herald_protocol::{RunId, Timestamp, parse_draft_str};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

use super::client::{append, create_run, h2c_client, http_client};
use super::pg::TempDatabase;
use super::process::{HubProcess, cpu_percent, cpu_time};
use super::{Percentiles, Scale};

/// Longest one ingest phase may take.
const PHASE_TIMEOUT: Duration = Duration::from_secs(180);

const INSERT_RUN: &str = "INSERT INTO runs (id, name, heartbeat_timeout_s, ttl_s, created_us, \
     last_received_us, last_producer_us, state) VALUES (?1, ?1, 60, 86400, 0, 0, 0, '{}')";
const INSERT_EVENT: &str =
    "INSERT INTO events (run_id, seq, event_id, body) VALUES (?1, ?2, ?3, ?4)";

/// How an ingest figure was produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestPath {
    /// rusqlite, one synchronous loop: the limit.
    BareRusqlite,
    /// sqlx, the hub's driver, one connection.
    BareSqlx,
    /// The hub in its own process, over HTTP from several client connections.
    Hub,
    /// The same hub, every producer's requests on one HTTP/2 connection (cleartext,
    /// prior knowledge).
    HubH2c,
    /// sqlx on PostgreSQL, the store's statements, one connection per producer.
    BarePostgres,
    /// `hubs` hub processes on one PostgreSQL database, the producers split between
    /// them.
    HubPostgres {
        /// How many.
        hubs: usize,
    },
}

/// One ingest figure.
#[derive(Clone, Debug)]
pub struct IngestRow {
    /// How.
    pub path: IngestPath,
    /// Events per request or per transaction.
    pub batch: usize,
    /// Events stored.
    pub events: usize,
    /// Wall time from the first transaction or request to the last reply.
    pub wall: Duration,
    /// The slowest and fastest rates over the rounds, events/s (with several rounds).
    pub range: Option<(f64, f64)>,
    /// Round trips of the hub's append requests (hub rows only).
    pub request_latency: Option<Percentiles>,
    /// CPU of the hub process, % of one core (hub rows only); of all of them together
    /// with several hubs.
    pub hub_cpu: Option<f64>,
    /// CPU of the PostgreSQL server's backends serving the hubs, % of one core
    /// (PostgreSQL rows, when the server's processes can be read).
    pub db_cpu: Option<f64>,
    /// CPU of the load generator, % of one core (hub rows only).
    pub load_cpu: Option<f64>,
}

impl IngestRow {
    /// Events stored per second.
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Each producer's events: the drafts it posts and the rows the hub stores for them.
struct Workload {
    runs: Vec<String>,
    /// Per run, the producer's draft JSON texts.
    drafts: Vec<Vec<String>>,
    /// Per run, the stored event JSON texts, `seq` from 1.
    rows: Vec<Vec<String>>,
}

/// `events` progress events spread evenly over `producers` runs (rounded up).
fn workload(producers: usize, events: usize, tag: &str) -> anyhow::Result<Workload> {
    let per_run = events.div_ceil(producers);
    // An hour ago: a hub refuses times far from its own clock, so a fixed date would
    // be refused once it is a week old.
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_micros() as i64;
    let base_us = now_us - 3_600_000_000;
    let now = Timestamp::from_unix_micros(now_us);
    let mut w = Workload {
        runs: Vec::new(),
        drafts: Vec::new(),
        rows: Vec::new(),
    };
    for p in 0..producers {
        let run = format!("ingest-{tag}-{p}");
        let run_id = RunId::new(run.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut drafts = Vec::with_capacity(per_run);
        let mut rows = Vec::with_capacity(per_run);
        for i in 0..per_run {
            let ts = Timestamp::from_unix_micros(base_us + i as i64 * 1000);
            let draft = format!(
                r#"{{"event":"progress","ts":"{ts}","stage":"embed","done":{},"total":{per_run},"unit":"docs","elapsed_s":{:.3}}}"#,
                i + 1,
                (i + 1) as f64 * 0.001,
            );
            let stored = parse_draft_str(&draft, &run_id)
                .map_err(|e| anyhow::anyhow!("generated draft: {e}"))?
                .stamp(run_id.clone(), i as u64 + 1, now);
            rows.push(stored.to_json());
            drafts.push(draft);
        }
        w.runs.push(run);
        w.drafts.push(drafts);
        w.rows.push(rows);
    }
    Ok(w)
}

/// Transactions in the order the bare loops commit them: producers take turns, as
/// their requests interleave at the hub.
fn transactions(w: &Workload, batch: usize) -> Vec<(&str, u64, &[String])> {
    let chunks: Vec<Vec<&[String]>> = w.rows.iter().map(|r| r.chunks(batch).collect()).collect();
    let mut out = Vec::new();
    let most = chunks.iter().map(Vec::len).max().unwrap_or(0);
    for c in 0..most {
        for (r, run_chunks) in chunks.iter().enumerate() {
            if let Some(chunk) = run_chunks.get(c) {
                out.push((w.runs[r].as_str(), (c * batch) as u64 + 1, *chunk));
            }
        }
    }
    out
}

/// Bare SQLite through rusqlite.
fn bare_rusqlite(db: &Path, w: &Workload, batch: usize) -> anyhow::Result<Duration> {
    let mut conn = rusqlite::Connection::open(db)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    ensure!(mode.eq_ignore_ascii_case("wal"), "journal mode is {mode}");
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
    for migration in SQLITE_MIGRATIONS {
        conn.execute_batch(migration)?;
    }
    for run in &w.runs {
        conn.execute(INSERT_RUN, [run])?;
    }
    let txs = transactions(w, batch);
    let start = Instant::now();
    for (run, first_seq, rows) in txs {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(INSERT_EVENT)?;
            for (i, body) in rows.iter().enumerate() {
                insert.execute(rusqlite::params![
                    run,
                    first_seq as i64 + i as i64,
                    None::<&str>,
                    body
                ])?;
            }
        }
        tx.commit()?;
        ensure!(
            start.elapsed() < PHASE_TIMEOUT,
            "bare SQLite loop over time"
        );
    }
    Ok(start.elapsed())
}

/// Most rows in one `INSERT` of the sqlx loop, as in the hub's store.
const INSERT_CHUNK: usize = 64;

/// `INSERT INTO events ... VALUES (?, ?, ?, ?), ...` for `rows` rows.
fn insert_rows_sql(rows: usize) -> String {
    format!(
        "INSERT INTO events (run_id, seq, event_id, body) VALUES {}",
        vec!["(?, ?, ?, ?)"; rows].join(", ")
    )
}

/// Bare SQLite through sqlx with the statements the hub's store issues for the rows
/// (`BEGIN IMMEDIATE`, multi-row `INSERT`s of a power of two rows, `COMMIT`), without
/// the hub's reading and writing of the run row.
async fn bare_sqlx(db: &Path, w: &Workload, batch: usize) -> anyhow::Result<Duration> {
    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .connect()
        .await?;
    for migration in SQLITE_MIGRATIONS {
        sqlx::raw_sql(migration).execute(&mut conn).await?;
    }
    for run in &w.runs {
        sqlx::query(INSERT_RUN).bind(run).execute(&mut conn).await?;
    }
    let txs = transactions(w, batch);
    let start = Instant::now();
    for (run, first_seq, rows) in txs {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await?;
        let mut done = 0;
        while done < rows.len() {
            let n = 1 << (rows.len() - done).min(INSERT_CHUNK).ilog2();
            let sql = insert_rows_sql(n);
            let mut insert = sqlx::query(&sql);
            for (i, body) in rows[done..done + n].iter().enumerate() {
                insert = insert
                    .bind(run)
                    .bind(first_seq as i64 + (done + i) as i64)
                    .bind(None::<&str>)
                    .bind(body);
            }
            insert.execute(&mut conn).await?;
            done += n;
        }
        sqlx::query("COMMIT").execute(&mut conn).await?;
        ensure!(start.elapsed() < PHASE_TIMEOUT, "bare sqlx loop over time");
    }
    let elapsed = start.elapsed();
    conn.close().await?;
    Ok(elapsed)
}

/// How the producers reach the hub.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Http {
    /// HTTP/1.1, a keep-alive connection per producer.
    One,
    /// HTTP/2 over cleartext, one connection that all producers share.
    H2c,
}

/// The hub in its own process over a fresh file.
async fn through_hub(
    db: &Path,
    w: &Workload,
    batch: usize,
    http: Http,
) -> anyhow::Result<IngestRow> {
    let hub = HubProcess::start(db).await?;
    let row = through_hubs(std::slice::from_ref(&hub), None, w, batch, http).await;
    hub.stop().await;
    row
}

/// The store's statements for each append, without HTTP, parsing, the fold or the
/// cache: per producer a connection and a run of its own, all producers at once, on a
/// fresh database with the hub's tables (its migrations, applied by opening the store).
async fn bare_postgres(admin_url: &str, w: &Workload, batch: usize) -> anyhow::Result<Duration> {
    let db = TempDatabase::create(admin_url).await?;
    let wall = async {
        drop(
            herald_hub::PostgresStore::connect(&db.url)
                .await
                .context("applying the hub's migrations")?,
        );
        let mut conns = Vec::new();
        for run in &w.runs {
            let mut conn = sqlx::PgConnection::connect(&db.url).await?;
            sqlx::query(
                "INSERT INTO runs (id, name, heartbeat_timeout_s, ttl_s, created_us, \
                 last_received_us, last_producer_us, state) VALUES ($1, $1, 60, 86400, 0, 0, 0, '{}')",
            )
            .bind(run)
            .execute(&mut conn)
            .await?;
            conns.push(conn);
        }
        let start = Instant::now();
        let mut producers = tokio::task::JoinSet::new();
        for ((mut conn, run), rows) in conns.into_iter().zip(w.runs.clone()).zip(w.rows.clone()) {
            producers.spawn(async move {
                for (c, chunk) in rows.chunks(batch).enumerate() {
                    let first = (c * batch) as i64 + 1;
                    let seqs: Vec<i64> = (first..first + chunk.len() as i64).collect();
                    let ids: Vec<Option<&str>> = vec![None; chunk.len()];
                    let mut tx = conn.begin().await?;
                    sqlx::query("SELECT last_seq FROM runs WHERE id = $1 FOR UPDATE")
                        .bind(&run)
                        .fetch_one(&mut *tx)
                        .await?;
                    // The store's one write statement (`WRITE_BATCH` in the hub's
                    // store/postgres.rs): rows, summary and notification at once.
                    sqlx::query(
                        "WITH inserted AS ( \
                             INSERT INTO events (run_id, seq, event_id, body) \
                             SELECT $1, * FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::TEXT[])), \
                         updated AS ( \
                             UPDATE runs SET last_seq = $5, state = $6 WHERE id = $1) \
                         SELECT pg_notify('herald_runs', $1)",
                    )
                    .bind(&run)
                    .bind(&seqs)
                    .bind(&ids)
                    .bind(chunk)
                    .bind(seqs[seqs.len() - 1])
                    .bind("{}")
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    ensure!(
                        start.elapsed() < PHASE_TIMEOUT,
                        "bare PostgreSQL loop over time"
                    );
                }
                conn.close().await?;
                Ok::<_, anyhow::Error>(())
            });
        }
        while let Some(res) = producers.join_next().await {
            res.context("a producer task failed")??;
        }
        Ok::<_, anyhow::Error>(start.elapsed())
    }
    .await;
    db.drop_now().await?;
    wall
}

/// `hubs` hub processes on a fresh PostgreSQL database of the server at `admin_url`.
async fn through_postgres(
    admin_url: &str,
    hubs: usize,
    w: &Workload,
    batch: usize,
) -> anyhow::Result<IngestRow> {
    let db = TempDatabase::create(admin_url).await?;
    let row = async {
        let mut processes = Vec::with_capacity(hubs);
        for _ in 0..hubs {
            processes.push(HubProcess::start_on(&db.url).await?);
        }
        let row = through_hubs(&processes, Some(&db), w, batch, Http::One).await;
        for hub in processes {
            hub.stop().await;
        }
        row
    }
    .await;
    db.drop_now().await?;
    row
}

/// Runs the workload through `hubs`, producer `p` on hub `p % hubs.len()` (with a
/// connection of its own over HTTP/1.1), from the first request to the last reply.
async fn through_hubs(
    hubs: &[HubProcess],
    db: Option<&TempDatabase>,
    w: &Workload,
    batch: usize,
    http: Http,
) -> anyhow::Result<IngestRow> {
    let bases: Vec<String> = hubs.iter().map(HubProcess::base_url).collect();
    let setup = http_client()?;
    for (p, run) in w.runs.iter().enumerate() {
        create_run(&setup, &bases[p % bases.len()], run).await?;
    }
    // Request bodies are built before the clock starts: the load generator's CPU
    // during the phase is HTTP alone.
    let bodies: Vec<Vec<(usize, String)>> = w
        .drafts
        .iter()
        .map(|d| {
            d.chunks(batch)
                .map(|c| (c.len(), format!("[{}]", c.join(","))))
                .collect()
        })
        .collect();
    let hubs_cpu = || -> anyhow::Result<Duration> {
        hubs.iter()
            .try_fold(Duration::ZERO, |total, hub| Ok(total + hub.cpu()?))
    };
    let db_cpu0 = match db {
        Some(db) => Some(db.cpu_now().await?),
        None => None,
    };
    let hub_cpu0 = hubs_cpu()?;
    // Over HTTP/2 the producers share one client, so one connection: it is opened
    // before the clock starts, as each HTTP/1.1 producer's is on its first request.
    let shared = match http {
        Http::One => None,
        Http::H2c => {
            let client = h2c_client()?;
            let res = client
                .get(format!("{}/healthz", bases[0]))
                .timeout(super::client::REQUEST_TIMEOUT)
                .send()
                .await
                .context("the hub over HTTP/2")?;
            ensure!(
                res.version() == reqwest::Version::HTTP_2,
                "the hub answered over {:?}, not HTTP/2",
                res.version()
            );
            Some(client)
        }
    };
    let load_cpu0 = cpu_time("self")?;
    let start = Instant::now();
    let mut producers = tokio::task::JoinSet::new();
    for (p, (run, bodies)) in w.runs.iter().cloned().zip(bodies).enumerate() {
        let base = bases[p % bases.len()].clone();
        let expected_last = w.rows[0].len() as u64;
        let shared = shared.clone();
        producers.spawn(async move {
            let client = match shared {
                Some(client) => client,
                None => http_client()?,
            };
            let mut latencies = Vec::with_capacity(bodies.len());
            let mut last_seq = 0;
            for (n, body) in bodies {
                let sent = Instant::now();
                let reply = append(&client, &base, &run, body).await?;
                latencies.push(sent.elapsed());
                let appended = reply.appended;
                ensure!(
                    appended == n as u64,
                    "run {run}: {appended} of {n} appended"
                );
                last_seq = reply.last_seq;
                ensure!(start.elapsed() < PHASE_TIMEOUT, "hub ingest over time");
            }
            ensure!(
                last_seq == expected_last,
                "run {run} ends at seq {last_seq}, not {expected_last}"
            );
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(res) = producers.join_next().await {
        latencies.extend(res.context("a producer task failed")??);
    }
    let wall = start.elapsed();
    let hub_cpu = cpu_percent(hub_cpu0, hubs_cpu()?, wall);
    let load_cpu = cpu_percent(load_cpu0, cpu_time("self")?, wall);
    let db_cpu = match (db, db_cpu0) {
        (Some(db), Some(before)) => db
            .cpu_since(&before)
            .await
            .map(|used| cpu_percent(Duration::ZERO, used, wall)),
        _ => None,
    };
    Ok(IngestRow {
        path: match (db, http) {
            (Some(_), _) => IngestPath::HubPostgres { hubs: hubs.len() },
            (None, Http::One) => IngestPath::Hub,
            (None, Http::H2c) => IngestPath::HubH2c,
        },
        batch,
        events: w.rows.iter().map(Vec::len).sum(),
        wall,
        range: None,
        request_latency: Some(Percentiles::of_durations(&latencies)),
        hub_cpu: Some(hub_cpu),
        db_cpu,
        load_cpu: Some(load_cpu),
    })
}

/// Every ingest row: for batches of 1 and of `scale.batch`, the two bare loops and
/// the hub, each over a fresh file in `dir`, in `scale.rounds` interleaved rounds;
/// each row is the round of median rate, with the slowest and fastest rates beside it.
/// With `postgres` (the server's maintenance database), each round also runs one hub
/// and two hubs on a fresh PostgreSQL database.
pub(crate) async fn run(
    dir: &Path,
    scale: &Scale,
    postgres: Option<&str>,
) -> anyhow::Result<Vec<IngestRow>> {
    if scale.clients == 0 || scale.batch == 0 || scale.rounds == 0 {
        bail!("ingest needs a client, a batch of at least one event and a round");
    }
    let mut rows = Vec::new();
    for (batch, events) in [
        (1, scale.single_events),
        (scale.batch, scale.batched_events),
    ] {
        let w = workload(scale.clients, events, &batch.to_string())?;
        let events = w.rows.iter().map(Vec::len).sum();
        let bare = |path, wall| IngestRow {
            path,
            batch,
            events,
            wall,
            range: None,
            request_latency: None,
            hub_cpu: None,
            db_cpu: None,
            load_cpu: None,
        };
        // Row groups: the two bare loops, the hub, the hub over HTTP/2 if asked for
        // (run right after the hub over HTTP/1.1 in each round), then PostgreSQL's.
        let h2c = 3;
        let pg = 3 + usize::from(scale.h2c);
        let mut rounds: Vec<Vec<IngestRow>> =
            vec![Vec::new(); pg + 3 * usize::from(postgres.is_some())];
        for round in 0..scale.rounds {
            let db = dir.join(format!("bare-rusqlite-{batch}-{round}.db"));
            let wall = tokio::task::block_in_place(|| bare_rusqlite(&db, &w, batch))
                .context("bare SQLite loop (rusqlite)")?;
            rounds[0].push(bare(IngestPath::BareRusqlite, wall));
            let db = dir.join(format!("bare-sqlx-{batch}-{round}.db"));
            let wall = bare_sqlx(&db, &w, batch)
                .await
                .context("bare SQLite loop (sqlx)")?;
            rounds[1].push(bare(IngestPath::BareSqlx, wall));
            let db = dir.join(format!("hub-ingest-{batch}-{round}.db"));
            rounds[2].push(
                through_hub(&db, &w, batch, Http::One)
                    .await
                    .with_context(|| format!("hub ingest, {batch} per request"))?,
            );
            if scale.h2c {
                let db = dir.join(format!("hub-h2c-{batch}-{round}.db"));
                rounds[h2c].push(
                    through_hub(&db, &w, batch, Http::H2c)
                        .await
                        .with_context(|| format!("hub ingest over HTTP/2, {batch} per request"))?,
                );
            }
            if let Some(admin_url) = postgres {
                let wall = bare_postgres(admin_url, &w, batch)
                    .await
                    .context("bare PostgreSQL loop")?;
                rounds[pg].push(bare(IngestPath::BarePostgres, wall));
                for (i, hubs) in [1, 2].into_iter().enumerate() {
                    rounds[pg + 1 + i].push(
                        through_postgres(admin_url, hubs, &w, batch)
                            .await
                            .with_context(|| {
                                format!("{hubs} hubs on PostgreSQL, {batch} per request")
                            })?,
                    );
                }
            }
        }
        for mut of_path in rounds {
            of_path.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
            let range = (of_path[0].rate(), of_path[of_path.len() - 1].rate());
            let mut median = of_path.swap_remove(of_path.len() / 2);
            median.range = (scale.rounds > 1).then_some(range);
            rows.push(median);
        }
    }
    Ok(rows)
}
