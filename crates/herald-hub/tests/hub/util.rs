//! A hub on a real listener (`127.0.0.1:0`) over a real database (a fresh SQLite file, or
//! a fresh PostgreSQL database), and the clients the tests talk to it with: JSON over
//! HTTP, Server-Sent Events read by hand from the byte stream, and a WebSocket.
//!
//! Nothing here sleeps and hopes: every wait has a deadline and names what it waited
//! for when it runs out.

use std::collections::VecDeque;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herald_hub::{Hub, HubConfig, ManualClock, Store, Wake};
use herald_protocol::{Event, Timestamp, parse_event};
use herald_testkit::{pg, sse};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any one wait in a test may take before the test fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// The admin token of hubs started with [`TestHub::with_admin`].
pub(crate) const ADMIN: &str = "test-admin-token";

/// Awaits `fut`, failing the test if it takes longer than [`DEADLINE`].
#[track_caller]
pub(crate) fn within<T>(what: &str, fut: impl Future<Output = T>) -> impl Future<Output = T> {
    let location = std::panic::Location::caller();
    let what = what.to_owned();
    async move {
        match tokio::time::timeout(DEADLINE, fut).await {
            Ok(value) => value,
            Err(_) => panic!("{location}: gave up after {DEADLINE:?} waiting for {what}"),
        }
    }
}

/// Checks `cond` until it holds, failing the test after [`DEADLINE`].
pub(crate) async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The store a hub runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

impl StoreKind {
    /// The store of the suite's copy whose `module_path!()` is `path`: `...::sqlite` or
    /// `...::postgres`, the names `hub.rs` includes `suite.rs` under. Evaluated in a
    /// `const`, so that a copy under any other name does not compile.
    pub(crate) const fn of_module(path: &str) -> StoreKind {
        if ends_with(path, "::sqlite") {
            StoreKind::Sqlite
        } else if ends_with(path, "::postgres") {
            StoreKind::Postgres
        } else {
            panic!("the suite is included as `mod sqlite` or `mod postgres`")
        }
    }
}

/// `str::ends_with`, which is not `const`.
const fn ends_with(s: &str, suffix: &str) -> bool {
    let (s, suffix) = (s.as_bytes(), suffix.as_bytes());
    if suffix.len() > s.len() {
        return false;
    }
    let start = s.len() - suffix.len();
    let mut i = 0;
    while i < suffix.len() {
        if s[start + i] != suffix[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The PostgreSQL server the tests create their databases on, as a URL to its
/// maintenance database; `HERALD_TEST_POSTGRES_URL` overrides it.
pub(crate) fn postgres_admin_url() -> String {
    pg::admin_url()
}

/// A fresh, empty database for one test, deleted when the last clone is dropped: a
/// SQLite file in a temp dir, or a PostgreSQL database `herald_test_<pid>_<n>`. Several
/// hubs may be started on one (see [`TestHub::on`]).
#[derive(Clone)]
pub(crate) struct TestDb {
    inner: Arc<DbInner>,
}

struct DbInner {
    kind: StoreKind,
    /// What [`herald_hub::open_store`] opens.
    url: String,
    /// The PostgreSQL database, dropped with the last clone.
    pg: Option<pg::TempDatabase>,
    /// The SQLite file's folder, removed when dropped.
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh database on `kind`. For PostgreSQL, fails the test, saying what is
    /// missing and how to start it, when the server cannot be reached.
    pub(crate) async fn new(kind: StoreKind) -> TestDb {
        TestDb::create(kind, None).await
    }

    /// A fresh database on `kind` whose data lives in `dir`, a folder the test chose
    /// (on a small file system, say): a SQLite file in it, or a PostgreSQL database in
    /// `tablespace`, which the caller created at `dir`.
    pub(crate) async fn new_in(kind: StoreKind, dir: &std::path::Path, tablespace: &str) -> TestDb {
        TestDb::create(kind, Some((dir, tablespace))).await
    }

    async fn create(kind: StoreKind, place: Option<(&std::path::Path, &str)>) -> TestDb {
        let inner = match kind {
            StoreKind::Sqlite => {
                let (dir, path) = match place {
                    Some((dir, _)) => (None, dir.join("herald.db")),
                    None => {
                        let dir = tempfile::tempdir().expect("a temp dir");
                        let path = dir.path().join("herald.db");
                        (Some(dir), path)
                    }
                };
                DbInner {
                    kind,
                    url: format!("sqlite://{}", path.display()),
                    pg: None,
                    _dir: dir,
                }
            }
            StoreKind::Postgres => {
                let db = pg::TempDatabase::create("herald_test", place.map(|(_, t)| t))
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                DbInner {
                    kind,
                    url: db.url().to_owned(),
                    pg: Some(db),
                    _dir: None,
                }
            }
        };
        TestDb {
            inner: Arc::new(inner),
        }
    }

    /// `sqlite://PATH` or `postgres://...`.
    pub(crate) fn url(&self) -> &str {
        &self.inner.url
    }

    /// The PostgreSQL database's name (empty for SQLite).
    pub(crate) fn name(&self) -> &str {
        self.inner.pg.as_ref().map_or("", |db| db.name())
    }

    /// How many hubs' notification listeners have `LISTEN`ed on this PostgreSQL
    /// database (0 for SQLite).
    pub(crate) async fn listeners_listening(&self) -> i64 {
        if self.inner.kind != StoreKind::Postgres {
            return 0;
        }
        let mut conn = PgConnection::connect(&postgres_admin_url())
            .await
            .expect("the PostgreSQL server takes a connection");
        let count = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'herald-listener' \
             AND datname = $1 AND state = 'idle' AND query ILIKE 'LISTEN%'",
        )
        .bind(self.name())
        .fetch_one(&mut conn)
        .await
        .expect("pg_stat_activity reads");
        let _ = conn.close().await;
        count
    }
}

impl Drop for DbInner {
    fn drop(&mut self) {
        // `WITH (FORCE)` ends the connections hubs that are still stopping may hold.
        if let Some(Err(e)) = self.pg.take().map(|db| db.drop_blocking()) {
            // Not a panic: this may run while a failed test unwinds.
            eprintln!("warning: dropping a test database: {e}");
        }
    }
}

/// A connection to the PostgreSQL server's maintenance database, for creating, dropping
/// and inspecting test databases; fails the test, saying how to start the server, when
/// it cannot connect.
pub(crate) async fn postgres_admin() -> PgConnection {
    pg::connect(&postgres_admin_url())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A manual clock at 2030-01-01, for hubs whose tests drive time.
pub(crate) fn manual_clock() -> Arc<ManualClock> {
    let start: Timestamp = "2030-01-01T00:00:00Z".parse().expect("a timestamp");
    Arc::new(ManualClock::new(start))
}

/// The first of `names` found on `PATH`.
pub(crate) fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// For a test whose tools are missing (a browser, Node.js): under `CI=true` it fails
/// with `why`; elsewhere it says on stderr that the test did not run, and why, and the
/// caller returns.
#[track_caller]
pub(crate) fn cannot_run(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}");
    }
    // Straight to the process's stderr: the test harness captures `eprintln!` of a
    // passing test, and this must be seen.
    let _ = writeln!(
        std::io::stderr().lock(),
        "{} DID NOT RUN: {why}",
        std::thread::current().name().unwrap_or("a test")
    );
}

/// A hub serving on `127.0.0.1:<free port>`, stopped when dropped.
pub(crate) struct TestHub {
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    /// The hub itself, for [`Hub::sweep`].
    pub(crate) hub: Hub,
    /// The clock the hub reads, when the test drives time.
    pub(crate) clock: Option<Arc<ManualClock>>,
    /// The token sent with admin requests (create, list, delete), if the hub has one.
    pub(crate) admin: Option<String>,
    /// The database it serves, which it keeps alive.
    pub(crate) db: TestDb,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestHub {
    /// An open hub (no admin token) with the default settings, on a fresh database.
    pub(crate) async fn open(store: StoreKind) -> TestHub {
        TestHub::start(store, HubConfig::default(), None).await
    }

    /// A hub that needs [`ADMIN`] to create, list and delete runs.
    pub(crate) async fn with_admin(store: StoreKind) -> TestHub {
        let config = HubConfig {
            admin_token: Some(ADMIN.to_owned()),
            ..HubConfig::default()
        };
        TestHub::start(store, config, None).await
    }

    /// A hub reading time from a [`ManualClock`] (see [`TestHub::clock`]). Its own
    /// sweeper is slowed to once an hour of real time, so that only the test sweeps.
    pub(crate) async fn with_clock(store: StoreKind, config: HubConfig) -> TestHub {
        let config = HubConfig {
            sweep_interval: Duration::from_secs(3600),
            ..config
        };
        TestHub::start(store, config, Some(manual_clock())).await
    }

    /// A hub with `config` on a fresh database.
    pub(crate) async fn start(
        store: StoreKind,
        config: HubConfig,
        clock: Option<Arc<ManualClock>>,
    ) -> TestHub {
        TestHub::on(&TestDb::new(store).await, config, clock).await
    }

    /// A hub with `config` on `db`, which other hubs may serve too, each through a store
    /// of its own.
    ///
    /// A PostgreSQL store's listener sends [`Wake::All`] once it listens; the hub is
    /// served only after that, so that this first wake-up (which makes runs streams send
    /// their list again) cannot land in the middle of a test.
    pub(crate) async fn on(
        db: &TestDb,
        config: HubConfig,
        clock: Option<Arc<ManualClock>>,
    ) -> TestHub {
        let listening_before = db.listeners_listening().await;
        let store = herald_hub::open_store(db.url())
            .await
            .unwrap_or_else(|e| panic!("the store at {} opens: {e}", db.url()));
        // Subscribed as soon as the store is open, which on a busy machine can still be
        // after the listener connected and sent its first wake-up: then the database
        // shows one more listener `LISTEN`ing, and that wake-up went out before the hub
        // served anything. (One sent just after that check lands in the test, and is
        // harmless: feeds catch up from their cursors, and runs streams send only what
        // they have not sent.)
        if let Some(mut wakes) = store.wakes() {
            within("the store's listener to listen", async {
                tokio::select! {
                    wake = wakes.recv() => {
                        assert_eq!(wake.ok(), Some(Wake::All), "the listener's first wake-up");
                    }
                    () = async {
                        while db.listeners_listening().await <= listening_before {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    } => {}
                }
            })
            .await;
        }
        TestHub::serving(db, store, config, clock).await
    }

    /// A hub with `config` over `store`, a store on `db` (perhaps one the test wraps).
    pub(crate) async fn serving(
        db: &TestDb,
        store: Arc<dyn Store>,
        config: HubConfig,
        clock: Option<Arc<ManualClock>>,
    ) -> TestHub {
        let admin = config.admin_token.clone();
        let hub = match &clock {
            Some(clock) => Hub::with_clock(store, config, clock.clone()),
            None => Hub::new(store, config),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port on loopback");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(herald_hub::serve(listener, hub.clone(), async move {
            let _ = stopped.await;
        }));
        TestHub {
            url,
            hub,
            clock,
            admin,
            db: db.clone(),
            client: reqwest::Client::new(),
            stop: Some(stop),
            served: Some(served),
        }
    }

    /// Starts a graceful shutdown; the future resolves when the hub has stopped.
    pub(crate) fn stop(&mut self) -> impl Future<Output = ()> + use<> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = self.served.take();
        async move {
            if let Some(served) = served {
                within("the hub to stop", served)
                    .await
                    .expect("the serve task ran")
                    .expect("the hub served without error");
            }
        }
    }

    /// Moves the hub's manual clock forward.
    pub(crate) fn advance(&self, secs: f64) {
        self.clock
            .as_ref()
            .expect("a hub started with_clock")
            .advance(secs);
    }

    /// A request to `path` (which starts with `/`), with `token` as a bearer token.
    pub(crate) fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let req = self.client.request(method, format!("{}{path}", self.url));
        match token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// Sends a request and reads its status and JSON body (`Value::Null` when empty).
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.request(method, path, token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        send(req).await
    }

    /// Creates a run from `body` (with the admin token if the hub has one); 201 expected.
    pub(crate) async fn create(&self, body: Value) -> Run {
        let (status, reply) = self
            .call(Method::POST, "/v1/runs", self.admin.as_deref(), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "creating a run: {reply}");
        Run {
            id: reply["id"].as_str().expect("an id").to_owned(),
            write_token: reply["write_token"]
                .as_str()
                .expect("a write token")
                .to_owned(),
            read_token: reply["read_token"]
                .as_str()
                .expect("a read token")
                .to_owned(),
        }
    }

    /// Creates a run with id `id`.
    pub(crate) async fn create_named(&self, id: &str) -> Run {
        self.create(json!({"id": id, "name": id})).await
    }

    /// Appends `events` (a JSON array) with the run's write token; 200 expected.
    pub(crate) async fn append(&self, run: &Run, events: Value) -> Value {
        let (status, reply) = self
            .call(
                Method::POST,
                &format!("/v1/runs/{}/events", run.id),
                Some(&run.write_token),
                Some(events),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "appending to {}: {reply}", run.id);
        reply
    }

    /// Polls `/v1/runs/{id}/events?QUERY` with the run's read token; 200 expected.
    pub(crate) async fn poll(&self, run: &Run, query: &str) -> Polled {
        let (status, reply) = self
            .call(
                Method::GET,
                &format!("/v1/runs/{}/events?{query}", run.id),
                Some(&run.read_token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "polling {}: {reply}", run.id);
        Polled {
            events: reply["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|e| parse_event(&e.to_string()).expect("a stored event"))
                .collect(),
            last_seq: reply["last_seq"].as_u64().expect("last_seq"),
            status: reply["status"].as_str().expect("status").to_owned(),
        }
    }

    /// Every event of the run, paging through the poll route.
    pub(crate) async fn all_events(&self, run: &Run) -> Vec<Event> {
        let mut events: Vec<Event> = Vec::new();
        loop {
            let after = events.last().map_or(0, |e| e.seq);
            let page = self
                .poll(run, &format!("after={after}&limit=1000"))
                .await
                .events;
            if page.is_empty() {
                return events;
            }
            events.extend(page);
        }
    }

    /// The run's state, with its read token; 200 expected.
    pub(crate) async fn state(&self, run: &Run) -> Value {
        let (status, reply) = self
            .call(
                Method::GET,
                &format!("/v1/runs/{}", run.id),
                Some(&run.read_token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "state of {}: {reply}", run.id);
        reply
    }

    /// The `/metrics` text.
    pub(crate) async fn metrics(&self) -> String {
        let resp = self
            .request(Method::GET, "/metrics", None)
            .send()
            .await
            .expect("the hub answers");
        assert_eq!(resp.status(), StatusCode::OK);
        resp.text().await.expect("a body")
    }

    /// The value of the metric sample named exactly `name` (with its labels).
    pub(crate) async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| {
                let (key, value) = line.rsplit_once(' ')?;
                (key == name).then(|| value.parse().expect("a number"))
            })
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
    }

    /// Opens an SSE stream at `path` (with the query), with headers `extra`.
    pub(crate) async fn sse(&self, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Sse {
        let mut req = self
            .request(Method::GET, path, token)
            .header("accept", "text/event-stream");
        for (name, value) in extra {
            req = req.header(*name, *value);
        }
        let resp = within(&format!("the answer to GET {path}"), req.send())
            .await
            .expect("the hub answers");
        Sse::from_response(resp)
    }

    /// Opens a run's event stream with its read token, after `last_event_id` if given.
    pub(crate) async fn stream(&self, run: &Run, query: &str, last_event_id: Option<u64>) -> Sse {
        let id = last_event_id.map(|id| id.to_string());
        let extra: Vec<(&str, &str)> = id.iter().map(|id| ("last-event-id", id.as_str())).collect();
        self.sse(
            &format!("/v1/runs/{}/stream?{query}", run.id),
            Some(&run.read_token),
            &extra,
        )
        .await
    }

    /// Opens a run's WebSocket at `?query` with `token` as a bearer token.
    pub(crate) async fn ws(
        &self,
        run_id: &str,
        query: &str,
        token: Option<&str>,
    ) -> Result<Ws, (StatusCode, Value)> {
        let url = format!(
            "{}/v1/runs/{run_id}/ws?{query}",
            self.url.replacen("http", "ws", 1)
        );
        let mut req = url.into_client_request().expect("a WebSocket request");
        if let Some(token) = token {
            req.headers_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("a header value"),
            );
        }
        match within(
            "the WebSocket handshake",
            tokio_tungstenite::connect_async(req),
        )
        .await
        {
            Ok((socket, _)) => Ok(Ws { socket }),
            Err(tungstenite::Error::Http(resp)) => {
                let status = StatusCode::from_u16(resp.status().as_u16()).expect("a status");
                let body = resp.body().as_deref().unwrap_or_default();
                let body = serde_json::from_slice(body).unwrap_or_else(|e| {
                    panic!(
                        "the refusal ({status}) is not JSON ({e}): {}",
                        String::from_utf8_lossy(body)
                    )
                });
                Err((status, body))
            }
            Err(e) => panic!("the WebSocket handshake failed: {e}"),
        }
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Sends `req` and reads the status and the JSON body (`Value::Null` when empty).
pub(crate) async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = within("the hub's answer", req.send())
        .await
        .expect("the hub answers");
    let status = resp.status();
    let bytes = within("the body", resp.bytes()).await.expect("a body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "the body of a {status} is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    (status, body)
}

/// A plain TCP connection to a hub, for what an HTTP client would not send: half a
/// request, a body a byte at a time, a URI over 64 KiB, nothing at all.
pub(crate) struct RawConn {
    pub(crate) stream: TcpStream,
    read: Vec<u8>,
}

impl RawConn {
    /// Connects to the hub at `url` (`http://HOST:PORT`).
    pub(crate) async fn open(url: &str) -> RawConn {
        let addr = url.trim_start_matches("http://");
        let stream = within("connecting", TcpStream::connect(addr))
            .await
            .expect("the hub's port takes connections");
        RawConn {
            stream,
            read: Vec::new(),
        }
    }

    /// Writes `bytes`; `false` if the hub has closed the connection.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> bool {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.is_ok()
    }

    /// Reads until the hub closes the connection, failing the test after
    /// [`DEADLINE`]; all that was read.
    pub(crate) async fn until_closed(&mut self, what: &str) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        within(what, async {
            let mut buf = [0u8; 4096];
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return std::mem::take(&mut self.read),
                    Ok(n) => self.read.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await
    }

    /// Reads one response with a `Content-Length` body, failing the test after
    /// [`DEADLINE`].
    pub(crate) async fn response(&mut self, what: &str) -> RawResponse {
        use tokio::io::AsyncReadExt;
        within(what, async {
            let mut buf = [0u8; 4096];
            loop {
                if let Some(response) = RawResponse::parse(&mut self.read) {
                    return response;
                }
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => panic!(
                        "the connection closed inside a response: {:?}",
                        String::from_utf8_lossy(&self.read)
                    ),
                    Ok(n) => self.read.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await
    }

    /// Whether anything arrives within `wait`: for what must not happen, so `wait` is
    /// the longest the test gives it, not a time anything is expected to take.
    pub(crate) async fn says_nothing_for(&mut self, wait: Duration) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 4096];
        // A socket's read is cancel-safe: nothing is lost when the wait runs out.
        match tokio::time::timeout(wait, self.stream.read(&mut buf)).await {
            Err(_) => true,
            Ok(Ok(n)) => {
                self.read.extend_from_slice(&buf[..n]);
                false
            }
            Ok(Err(_)) => false,
        }
    }
}

/// A response read off a [`RawConn`].
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    /// Header names in lower case.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl RawResponse {
    /// Takes a whole response off the front of `read`, if it holds one.
    fn parse(read: &mut Vec<u8>) -> Option<RawResponse> {
        let end = read.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8(read[..end].to_vec()).expect("a UTF-8 head");
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().expect("a status");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(0, |(_, v)| v.parse().expect("a length"));
        if read.len() < end + 4 + len {
            return None;
        }
        let body = read[end + 4..end + 4 + len].to_vec();
        read.drain(..end + 4 + len);
        Some(RawResponse {
            status,
            headers,
            body,
        })
    }

    /// The value of header `name` (lower case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body of a {} is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A run as created: its id and tokens.
#[derive(Clone, Debug)]
pub(crate) struct Run {
    pub(crate) id: String,
    pub(crate) write_token: String,
    pub(crate) read_token: String,
}

/// A poll's answer.
#[derive(Debug)]
pub(crate) struct Polled {
    pub(crate) events: Vec<Event>,
    pub(crate) last_seq: u64,
    pub(crate) status: String,
}

/// The `seq`s of `events`.
pub(crate) fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// The types of `events`.
pub(crate) fn types(events: &[Event]) -> Vec<&str> {
    events.iter().map(Event::event_type).collect()
}

/// `n` `log` events with messages `{prefix}0..`.
pub(crate) fn logs(prefix: &str, n: usize) -> Value {
    (0..n)
        .map(|i| json!({"event": "log", "level": "info", "message": format!("{prefix}{i}")}))
        .collect()
}

/// A `run.finished` event.
pub(crate) fn finished(status: &str) -> Value {
    json!({"event": "run.finished", "status": status})
}

/// Checks that `body` is the error body of docs/http-api.md#errors with `code`, and returns its `error` object.
#[track_caller]
pub(crate) fn error_body<'a>(body: &'a Value, code: &str) -> &'a serde_json::Map<String, Value> {
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("not an error body: {body}"));
    assert_eq!(
        body.as_object().map(serde_json::Map::len),
        Some(1),
        "only `error` at the top: {body}"
    );
    for key in error.keys() {
        assert!(
            ["code", "message", "index", "field"].contains(&key.as_str()),
            "unexpected key `{key}` in {body}"
        );
    }
    assert_eq!(error["code"], code, "error code in {body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a message in {body}"
    );
    if let Some(index) = error.get("index") {
        assert!(index.is_u64(), "index is a number in {body}");
    }
    if let Some(field) = error.get("field") {
        assert!(field.is_string(), "field is a string in {body}");
    }
    error
}

/// A request body.
pub(crate) enum Body {
    None,
    Json(Value),
    /// Text with its content type.
    Raw(String, &'static str),
    /// Text without a content type.
    Untyped(String),
}

/// One request and the error it must get.
pub(crate) struct Case {
    what: &'static str,
    token: Option<String>,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Body,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
    index: Option<u64>,
}

impl Case {
    pub(crate) fn new(what: &'static str, method: Method, path: impl Into<String>) -> Case {
        Case {
            what,
            token: None,
            method,
            path: path.into(),
            headers: Vec::new(),
            body: Body::None,
            status: 400,
            code: "",
            field: None,
            index: None,
        }
    }

    pub(crate) fn token(self, token: &str) -> Case {
        Case {
            token: Some(token.to_owned()),
            ..self
        }
    }

    pub(crate) fn json(self, body: Value) -> Case {
        Case {
            body: Body::Json(body),
            ..self
        }
    }

    pub(crate) fn raw(self, body: impl Into<String>, content_type: &'static str) -> Case {
        Case {
            body: Body::Raw(body.into(), content_type),
            ..self
        }
    }

    /// A body sent without `Content-Type`.
    pub(crate) fn untyped(self, body: impl Into<String>) -> Case {
        Case {
            body: Body::Untyped(body.into()),
            ..self
        }
    }

    /// A header sent with the request.
    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Case {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn expect(self, status: u16, code: &'static str) -> Case {
        Case {
            status,
            code,
            ..self
        }
    }

    pub(crate) fn field(self, field: &'static str) -> Case {
        Case {
            field: Some(field),
            ..self
        }
    }

    pub(crate) fn index(self, index: u64) -> Case {
        Case {
            index: Some(index),
            ..self
        }
    }
}

/// The one place that sends the cases: each must get its status and the error body of docs/http-api.md#errors
/// with its code, field and index.
pub(crate) async fn check(hub: &TestHub, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in cases {
        let mut req = hub.request(case.method.clone(), &case.path, case.token.as_deref());
        for (name, value) in &case.headers {
            req = req.header(*name, value);
        }
        req = match case.body {
            Body::None => req,
            Body::Json(body) => req.json(&body),
            Body::Raw(text, content_type) => req.header("content-type", content_type).body(text),
            Body::Untyped(text) => req.body(text),
        };
        let (status, body) = send(req).await;
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_eq!(status.as_u16(), case.status, "status; body {body}");
            let error = error_body(&body, case.code);
            assert_eq!(
                error.get("field").and_then(Value::as_str),
                case.field,
                "field in {body}"
            );
            assert_eq!(
                error.get("index").and_then(Value::as_u64),
                case.index,
                "index in {body}"
            );
        }));
        if let Err(panic) = res {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!(
                "{} ({} {}): {message}",
                case.what, case.method, case.path
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// One thing read from an SSE stream.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Frame {
    /// A comment line (`: text`), such as a keep-alive.
    Comment(String),
    /// A message, dispatched by a blank line.
    Message(SseMessage),
}

/// A dispatched SSE message.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct SseMessage {
    pub(crate) id: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

impl From<sse::Frame> for Frame {
    fn from(frame: sse::Frame) -> Frame {
        match frame {
            sse::Frame::Comment(text) => Frame::Comment(text),
            sse::Frame::Message(m) => Frame::Message(SseMessage {
                id: m.id,
                event: m.event,
                data: m.data,
            }),
        }
    }
}

impl SseMessage {
    /// The data as a stored event.
    #[track_caller]
    pub(crate) fn as_event(&self) -> Event {
        let event = parse_event(&self.data)
            .unwrap_or_else(|e| panic!("data is not an event ({e}): {}", self.data));
        assert_eq!(self.id, Some(event.seq.to_string()), "id: is the seq");
        assert_eq!(
            self.event.as_deref(),
            Some(event.event_type()),
            "event: is the type"
        );
        event
    }

    /// The data as JSON.
    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("data is not JSON ({e}): {}", self.data))
    }
}

/// A Server-Sent Events response, read by `herald_testkit::sse` (as the bench reads
/// them) off its bytes as they arrive.
pub(crate) struct Sse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    resp: Option<reqwest::Response>,
    reader: sse::SseReader,
    frames: VecDeque<Frame>,
}

impl Sse {
    /// The stream of a response already sent.
    pub(crate) fn from_response(resp: reqwest::Response) -> Sse {
        Sse {
            status: resp.status(),
            headers: resp.headers().clone(),
            resp: Some(resp),
            reader: sse::SseReader::default(),
            frames: VecDeque::new(),
        }
    }

    /// The next comment or message, waiting up to [`DEADLINE`]; `None` when the stream
    /// has ended. What is not the hub's SSE fails the test.
    pub(crate) async fn frame(&mut self) -> Option<Frame> {
        within("the next SSE frame", async {
            loop {
                if let Some(frame) = self.frames.pop_front() {
                    return Some(frame);
                }
                let resp = self.resp.as_mut()?;
                match resp.chunk().await.expect("the stream reads") {
                    Some(chunk) => {
                        let frames = self.reader.push(&chunk).unwrap_or_else(|e| panic!("{e}"));
                        self.frames.extend(frames.into_iter().map(Frame::from));
                    }
                    None => {
                        self.resp = None;
                        assert!(
                            !self.reader.is_mid_line(),
                            "the stream ended inside a line: {:?}",
                            String::from_utf8_lossy(self.reader.pending())
                        );
                        return None;
                    }
                }
            }
        })
        .await
    }

    /// The next message, skipping comments; `None` when the stream has ended.
    pub(crate) async fn message(&mut self) -> Option<SseMessage> {
        loop {
            match self.frame().await? {
                Frame::Comment(_) => continue,
                Frame::Message(message) => return Some(message),
            }
        }
    }

    /// The next message as a stored event; panics if the stream ended.
    pub(crate) async fn event(&mut self) -> Event {
        self.message()
            .await
            .expect("an event, not the end of the stream")
            .as_event()
    }

    /// Every message up to the end of the stream.
    pub(crate) async fn rest(&mut self) -> Vec<SseMessage> {
        let mut messages = Vec::new();
        while let Some(message) = self.message().await {
            messages.push(message);
        }
        messages
    }
}

/// A WebSocket on a run.
pub(crate) struct Ws {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    /// The next text message as JSON, skipping pings; `None` when the hub closed.
    pub(crate) async fn next(&mut self) -> Option<Value> {
        within("the next WebSocket message", async {
            loop {
                match self.socket.next().await? {
                    Ok(WsMessage::Text(text)) => {
                        return Some(serde_json::from_str(text.as_str()).expect("JSON text"));
                    }
                    Ok(WsMessage::Close(_)) | Err(_) => return None,
                    Ok(WsMessage::Binary(_)) => panic!("a binary message"),
                    Ok(_) => {}
                }
            }
        })
        .await
    }

    /// The next message as a stored event.
    pub(crate) async fn event(&mut self) -> Event {
        let value = self.next().await.expect("an event, not the end");
        parse_event(&value.to_string()).unwrap_or_else(|e| panic!("not an event ({e}): {value}"))
    }

    /// Sends a text message.
    pub(crate) async fn send(&mut self, text: &str) {
        self.send_message(WsMessage::text(text)).await;
    }

    /// Sends a message of any kind.
    pub(crate) async fn send_message(&mut self, message: WsMessage) {
        within("sending on the WebSocket", self.socket.send(message))
            .await
            .expect("the socket is open");
    }

    /// The code and reason of the hub's close frame, skipping other messages; fails
    /// the test if the socket ends without one.
    pub(crate) async fn close_frame(&mut self) -> (u16, String) {
        within("the hub's close frame", async {
            loop {
                match self.socket.next().await {
                    Some(Ok(WsMessage::Close(Some(frame)))) => {
                        return (u16::from(frame.code), frame.reason.to_string());
                    }
                    Some(Ok(WsMessage::Close(None))) => panic!("a close frame without a code"),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => panic!("the socket failed before a close frame: {e}"),
                    None => panic!("the socket ended without a close frame"),
                }
            }
        })
        .await
    }
}
