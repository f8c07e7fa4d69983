//! `herald serve` as a real process: restarts keep runs and tokens, SIGKILL loses no
//! acknowledged event, and settings the hub refuses. The process helpers here serve the
//! PostgreSQL tests (`postgres.rs`) too.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_protocol::{Event, parse_event};
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::util::herald;

/// How long any one wait may take before the test fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

/// `herald serve` with a clean environment: only the flags say how it runs.
pub(crate) fn serve(args: &[&str]) -> Command {
    let mut cmd = herald(&["serve"]);
    cmd.args(args);
    for var in [
        "HERALD_ADDR",
        "HERALD_DATA_DIR",
        "HERALD_DATABASE_URL",
        "HERALD_TOKEN",
        "HERALD_LOG",
        "HERALD_HEADER_TIMEOUT",
        "HERALD_BODY_TIMEOUT",
        "HERALD_IDLE_TIMEOUT",
        "HERALD_MAX_CONNECTIONS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Waits for `child` to exit, failing the test (and killing it) after [`DEADLINE`].
pub(crate) fn wait_exit(child: &mut Child, what: &str) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("the child can be waited on") {
            return status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gave up after {DEADLINE:?} waiting for {what} to exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` to its end, which must come within [`DEADLINE`].
pub(crate) fn run_to_end(mut cmd: Command, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("herald starts");
    wait_exit(&mut child, what);
    child.wait_with_output().expect("its output")
}

/// A `herald serve` process, killed if the test ends with it still running.
pub(crate) struct HubProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
}

impl HubProcess {
    /// Starts a hub on a free loopback port over `data_dir`, with the admin `token`.
    fn start(data_dir: &Path, token: Option<&str>) -> HubProcess {
        let dir = data_dir.to_str().expect("a UTF-8 path");
        let mut args = vec!["--addr", "127.0.0.1:0", "--data-dir", dir];
        if let Some(token) = token {
            args.extend(["--token", token]);
        }
        HubProcess::launch(&args, &data_dir.join("hub.log"))
    }

    /// Starts `herald serve ARGS` (which must pick a free loopback port), appending
    /// its log to `log`, and waits until it says where it listens.
    pub(crate) fn launch(args: &[&str], log_path: &Path) -> HubProcess {
        HubProcess::spawn(serve(args), log_path)
    }

    /// Starts `cmd`, a `herald serve` that picks a free loopback port, as [`launch`]
    /// does.
    ///
    /// [`launch`]: HubProcess::launch
    pub(crate) fn spawn(mut cmd: Command, log_path: &Path) -> HubProcess {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .expect("a log file");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("herald serve starts");
        let stdout = child.stdout.take().expect("its stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep reading, so that the hub never writes to a closed pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(log_path).unwrap_or_default();
                panic!("herald serve printed no address ({e}); its log:\n{log}");
            }
        };
        let url = line
            .strip_prefix("herald hub listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        HubProcess { child, url }
    }

    /// Asks the hub to stop with SIGTERM and waits for its exit.
    pub(crate) fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
        wait_exit(&mut self.child, "herald serve after SIGTERM")
    }

    /// Kills the hub with SIGKILL, as a crash or the OOM killer would.
    pub(crate) fn kill(mut self) {
        self.child.kill().expect("the hub can be killed");
        self.child.wait().expect("the hub is reaped");
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) fn http_client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

/// Sends a JSON request and reads the status and body.
pub(crate) fn call(
    client: &Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> reqwest::Result<(StatusCode, Value)> {
    let mut req = client.request(method, url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    let resp = req.send()?;
    let status = resp.status();
    let text = resp.text()?;
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    Ok((status, body))
}

/// Creates a run from `body` through the hub at `url` with `token`; 201 expected, the
/// reply (id, tokens) returned.
pub(crate) fn create_run(client: &Client, url: &str, token: Option<&str>, body: &Value) -> Value {
    let (status, created) = call(
        client,
        reqwest::Method::POST,
        &format!("{url}/v1/runs"),
        token,
        Some(body),
    )
    .expect("the hub answers");
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

/// Every event of `run`, paging through the poll route.
pub(crate) fn all_events(client: &Client, url: &str, run: &str, token: Option<&str>) -> Vec<Event> {
    let mut events: Vec<Event> = Vec::new();
    loop {
        let after = events.last().map_or(0, |e| e.seq);
        let (status, body) = call(
            client,
            reqwest::Method::GET,
            &format!("{url}/v1/runs/{run}/events?after={after}&limit=1000"),
            token,
            None,
        )
        .expect("the hub answers");
        assert_eq!(status, StatusCode::OK, "{body}");
        let page = body["events"].as_array().expect("events");
        if page.is_empty() {
            return events;
        }
        events.extend(
            page.iter()
                .map(|e| parse_event(&e.to_string()).expect("a stored event")),
        );
    }
}

pub(crate) fn logs(prefix: &str, n: usize) -> Value {
    (0..n)
        .map(|i| json!({"event": "log", "level": "info", "message": format!("{prefix}{i}"), "id": format!("{prefix}{i}")}))
        .collect()
}

#[test]
fn runs_and_tokens_survive_a_restart() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let admin = "restart-admin-token";
    let client = http_client();
    let hub = HubProcess::start(dir.path(), Some(admin));
    let created = create_run(
        &client,
        &hub.url,
        Some(admin),
        &json!({"id": "kept", "name": "Kept across restarts"}),
    );
    let write = created["write_token"].as_str().expect("a write token");
    let read = created["read_token"].as_str().expect("a read token");
    let events_url = format!("{}/v1/runs/kept/events", hub.url);
    let (status, reply) = call(
        &client,
        reqwest::Method::POST,
        &events_url,
        Some(write),
        Some(&logs("before-", 3)),
    )
    .expect("the hub answers");
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["last_seq"], 3);

    let status = hub.terminate();
    assert!(status.success(), "SIGTERM is a clean stop: {status}");

    let hub = HubProcess::start(dir.path(), Some(admin));
    let (status, state) = call(
        &client,
        reqwest::Method::GET,
        &format!("{}/v1/runs/kept", hub.url),
        Some(read),
        None,
    )
    .expect("the hub answers");
    assert_eq!(
        status,
        StatusCode::OK,
        "the read token still works: {state}"
    );
    assert_eq!(state["name"], "Kept across restarts");
    assert_eq!(state["last_seq"], 3);
    let events = all_events(&client, &hub.url, "kept", Some(read));
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);

    // The write token appends after the stored events; a repeated id is still known.
    let mut batch = logs("before-", 1);
    batch
        .as_array_mut()
        .expect("an array")
        .extend(logs("after-", 1).as_array().expect("an array").clone());
    let (status, reply) = call(
        &client,
        reqwest::Method::POST,
        &format!("{}/v1/runs/kept/events", hub.url),
        Some(write),
        Some(&batch),
    )
    .expect("the hub answers");
    assert_eq!(
        status,
        StatusCode::OK,
        "the write token still works: {reply}"
    );
    assert_eq!(reply["appended"], 1);
    assert_eq!(reply["duplicates"], 1);
    assert_eq!(reply["last_seq"], 4);

    let (status, list) = call(
        &client,
        reqwest::Method::GET,
        &format!("{}/v1/runs", hub.url),
        Some(admin),
        None,
    )
    .expect("the hub answers");
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["runs"][0]["id"], "kept");
    let (status, _) = call(
        &client,
        reqwest::Method::GET,
        &format!("{}/v1/runs", hub.url),
        Some("not-the-admin"),
        None,
    )
    .expect("the hub answers");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(hub.terminate().success());
}

/// What the appending client saw.
#[derive(Default)]
struct Acks {
    /// Each acknowledged batch's number and the `last_seq` of its reply.
    batches: Vec<(usize, u64)>,
    /// The batch whose request failed when the hub died.
    in_flight: Option<usize>,
}

const BATCH: usize = 5;

fn batch(number: usize) -> Value {
    logs(&format!("b{number}-"), BATCH)
}

#[test]
fn sigkill_during_appends_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().expect("a temp dir");
    check_sigkill_loses_nothing(|| HubProcess::start(dir.path(), None));
}

/// Appends batches to a run through a hub that `start` starts, kills the hub with
/// SIGKILL in the middle, starts it again on the same database, and checks that every
/// acknowledged batch is stored once, where its reply said, with `seq` dense, and that
/// the batch in flight can be retried without a duplicate.
pub(crate) fn check_sigkill_loses_nothing(start: impl Fn() -> HubProcess) {
    let hub = start();
    let client = http_client();
    create_run(
        &client,
        &hub.url,
        None,
        &json!({"id": "crash", "name": "crash"}),
    );

    let acks = Arc::new(Mutex::new(Acks::default()));
    let appender = std::thread::spawn({
        let acks = acks.clone();
        let url = format!("{}/v1/runs/crash/events", hub.url);
        move || {
            let client = http_client();
            for number in 0.. {
                match call(
                    &client,
                    reqwest::Method::POST,
                    &url,
                    None,
                    Some(&batch(number)),
                ) {
                    Ok((status, reply)) => {
                        assert_eq!(status, StatusCode::OK, "{reply}");
                        let last_seq = reply["last_seq"].as_u64().expect("last_seq");
                        acks.lock()
                            .expect("the lock")
                            .batches
                            .push((number, last_seq));
                    }
                    Err(_) => {
                        acks.lock().expect("the lock").in_flight = Some(number);
                        return;
                    }
                }
            }
        }
    });
    let started = Instant::now();
    while acks.lock().expect("the lock").batches.len() < 100 {
        assert!(
            started.elapsed() < DEADLINE && !appender.is_finished(),
            "the appender did not get 100 batches in"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    hub.kill();
    appender.join().expect("the appender ran");
    let acks = Arc::into_inner(acks)
        .expect("the only owner")
        .into_inner()
        .expect("the lock");
    let in_flight = acks.in_flight.expect("a request failed when the hub died");

    let hub = start();
    let events = all_events(&client, &hub.url, "crash", None);
    let stored = events.len();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=stored as u64).collect::<Vec<_>>(),
        "seq is dense"
    );
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e.id.as_deref().expect("an id"))
        .collect();
    let unique: std::collections::HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "each id once");
    for (number, last_seq) in &acks.batches {
        let expected: Vec<String> = (0..BATCH).map(|i| format!("b{number}-{i}")).collect();
        let at = *last_seq as usize;
        assert!(
            at <= stored,
            "batch {number} acknowledged at seq {last_seq} is lost"
        );
        assert_eq!(
            ids[at - BATCH..at],
            expected,
            "batch {number} at seq {last_seq}"
        );
    }
    // Only the batch in flight may have been stored without an acknowledgement.
    let acked_events = acks.batches.len() * BATCH;
    assert!(
        stored == acked_events || stored == acked_events + BATCH,
        "{stored} events stored, {acked_events} acknowledged"
    );

    // The producer retries the batch it got no answer for: stored exactly once.
    let (status, reply) = call(
        &client,
        reqwest::Method::POST,
        &format!("{}/v1/runs/crash/events", hub.url),
        None,
        Some(&batch(in_flight)),
    )
    .expect("the hub answers");
    assert_eq!(status, StatusCode::OK, "{reply}");
    let committed_before = stored > acked_events;
    assert_eq!(
        reply["duplicates"],
        if committed_before { BATCH } else { 0 },
        "{reply}"
    );
    assert_eq!(reply["last_seq"], acked_events + BATCH);
    let events = all_events(&client, &hub.url, "crash", None);
    assert_eq!(events.len(), acked_events + BATCH);
    assert_eq!(
        events.last().map(|e| e.seq),
        Some((acked_events + BATCH) as u64)
    );
    hub.kill();
}

#[test]
fn serve_refuses_an_open_hub_beyond_loopback() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let dir = dir.path().to_str().expect("a UTF-8 path");
    let out = run_to_end(
        serve(&["--addr", "0.0.0.0:0", "--data-dir", dir]),
        "herald serve on 0.0.0.0 without a token",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "it never listened");
    assert!(
        stderr.contains("--token") && stderr.contains("HERALD_TOKEN") && stderr.contains("0.0.0.0"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
}

#[test]
fn serve_says_clearly_which_databases_it_takes() {
    let out = run_to_end(
        serve(&[
            "--addr",
            "127.0.0.1:0",
            "--db",
            "mysql://herald:hunter2@localhost/herald",
        ]),
        "herald serve --db mysql://",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "it never listened");
    assert!(
        stderr.contains("--db") && stderr.contains("sqlite://") && stderr.contains("postgres://"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the password is shown: {stderr}"
    );

    // The environment variable is read like the flag.
    let out = run_to_end(
        {
            let mut cmd = serve(&["--addr", "127.0.0.1:0"]);
            cmd.env("HERALD_DATABASE_URL", "redis://localhost");
            cmd
        },
        "herald serve with HERALD_DATABASE_URL=redis://",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("redis://localhost"), "{stderr}");

    let out = run_to_end(
        serve(&["--addr", "localhost"]),
        "herald serve --addr localhost",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("HOST:PORT"), "{stderr}");
}

#[test]
fn serve_limits_a_run_s_ingest_as_rate_limit_says() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().to_str().expect("a UTF-8 path");
    // 5 events a second: bursts of 25.
    let hub = HubProcess::launch(
        &[
            "--addr",
            "127.0.0.1:0",
            "--data-dir",
            data,
            "--rate-limit",
            "5",
        ],
        &dir.path().join("hub.log"),
    );
    let client = http_client();
    let created = create_run(&client, &hub.url, None, &json!({"name": "flood"}));
    let events = format!(
        "{}/v1/runs/{}/events",
        hub.url,
        created["id"].as_str().expect("an id")
    );
    let token = created["write_token"].as_str();
    let append = |batch: &Value| {
        call(&client, reqwest::Method::POST, &events, token, Some(batch)).expect("the hub answers")
    };
    assert_eq!(append(&logs("a", 25)).0, StatusCode::OK);
    let (status, body) = append(&logs("b", 25));
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    drop(hub);

    for bad in ["fast", "0", "-3", "inf"] {
        let flag = format!("--rate-limit={bad}");
        let out = run_to_end(
            serve(&["--addr", "127.0.0.1:0", "--data-dir", data, &flag]),
            "herald serve with a bad --rate-limit",
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(
            stderr.contains("--rate-limit") && stderr.contains("off"),
            "{stderr}"
        );
    }
}

#[test]
fn serve_takes_only_origins_as_cors_origins() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().to_str().expect("a UTF-8 path");
    for (flags, named) in [
        (&["--cors-origin", "front.test"][..], "front.test"),
        (
            &["--cors-origin", "https://front.test/app/"],
            "https://front.test/app/",
        ),
        (&["--cors-origin", "*"], "--token"),
    ] {
        let mut args = vec!["--addr", "127.0.0.1:0", "--data-dir", data];
        args.extend(flags);
        let out = run_to_end(serve(&args), "herald serve with a bad --cors-origin");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(
            stderr.contains("--cors-origin") && stderr.contains(named),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "it never listened");
    }

    // Origins from the environment, comma-separated, and `*` with a token.
    let mut cmd = serve(&[
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        data,
        "--token",
        "cors-admin-token-16",
    ]);
    cmd.env("HERALD_CORS_ORIGINS", "http://localhost:3000,*");
    let hub = HubProcess::spawn(cmd, &dir.path().join("hub.log"));
    let resp = http_client()
        .get(format!("{}/healthz", hub.url))
        .header("origin", "http://anywhere.test")
        .send()
        .expect("the hub answers");
    assert_eq!(
        resp.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("*")
    );
}

#[test]
fn serve_refuses_an_admin_token_a_person_could_guess() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().to_str().expect("a UTF-8 path");
    let base = ["--addr", "127.0.0.1:0", "--data-dir", data];
    for (how, token) in [
        ("--token", "secret"),
        ("--token", "k3y"),
        ("--token", "fifteen-chars!!"),
        ("--token", "                    "),
        ("--token", "\t\n"),
        ("HERALD_TOKEN", "hunter2"),
        ("HERALD_TOKEN", "   "),
    ] {
        let mut cmd = serve(&base);
        if how == "--token" {
            cmd.args(["--token", token]);
        } else {
            cmd.env("HERALD_TOKEN", token);
        }
        let out = run_to_end(cmd, "herald serve with a weak token");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{how} {token:?}: {stderr}");
        assert!(out.stdout.is_empty(), "it never listened");
        assert!(
            stderr.contains("--token") && stderr.contains("HERALD_TOKEN") && stderr.contains("16"),
            "{stderr}"
        );
        if !token.trim().is_empty() {
            assert!(!stderr.contains(token), "the token is shown: {stderr}");
        }
        assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
    }
    // Sixteen characters will do.
    let mut args = base.to_vec();
    args.extend(["--token", "sixteen-chars-ok"]);
    let hub = HubProcess::launch(&args, &dir.path().join("hub.log"));
    let (status, _) = call(
        &http_client(),
        reqwest::Method::GET,
        &format!("{}/v1/runs", hub.url),
        Some("sixteen-chars-ok"),
        None,
    )
    .expect("the hub answers");
    assert_eq!(status, StatusCode::OK);
}

/// Waits until `log_path` holds a line containing `needle`, failing the test after
/// [`DEADLINE`]; the log's text.
fn wait_for_log(log_path: &Path, needle: &str) -> String {
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        if log.contains(needle) {
            return log;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "gave up after {DEADLINE:?} waiting for `{needle}` in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_caps_connections_and_times_them_out_as_its_flags_and_environment_say() {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().to_str().expect("a UTF-8 path");
    let log_path = dir.path().join("hub.log");
    let mut cmd = serve(&[
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        data,
        "--max-connections",
        "2",
        "--header-timeout",
        "1h",
    ]);
    cmd.env("HERALD_IDLE_TIMEOUT", "300ms");
    let hub = HubProcess::spawn(cmd, &log_path);
    let addr = hub.url.trim_start_matches("http://").to_owned();
    let connect = || {
        let stream = TcpStream::connect(&addr).expect("the hub's port takes connections");
        stream
            .set_read_timeout(Some(DEADLINE))
            .expect("a read timeout");
        stream
    };
    // Two connections that say nothing take both places; three more wait, each with a
    // request.
    let silent = [connect(), connect()];
    let mut waiting: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut stream = connect();
            write!(stream, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("a request");
            stream
        })
        .collect();
    wait_for_log(&log_path, "connections are open, the most the hub takes");

    // The silent ones leave: the waiting ones are served.
    drop(silent);
    for stream in &mut waiting {
        let mut answer = [0u8; 12];
        stream.read_exact(&mut answer).expect("an answer");
        assert_eq!(
            &answer,
            b"HTTP/1.1 200",
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    // Served and kept alive, each is closed after the idle timeout of the environment
    // (the flags' header timeout is an hour).
    let started = Instant::now();
    for stream in &mut waiting {
        let mut rest = Vec::new();
        stream
            .read_to_end(&mut rest)
            .expect("the hub closes the connection");
    }
    assert!(started.elapsed() < DEADLINE, "closed by the idle timeout");

    // The next connection finds room, and the log says the episode ended, having said
    // once that it began.
    let (status, _) = call(
        &http_client(),
        reqwest::Method::GET,
        &format!("{}/healthz", hub.url),
        None,
        None,
    )
    .expect("the hub answers");
    assert_eq!(status, StatusCode::OK);
    let log = wait_for_log(&log_path, "below the cap again");
    assert_eq!(
        log.matches("the most the hub takes").count(),
        1,
        "one line for the episode, not one per connection:\n{log}"
    );
    drop(hub);

    for (flag, value) in [
        ("--header-timeout", "0"),
        ("--body-timeout", "soon"),
        ("--idle-timeout", "-1s"),
        ("--max-connections", "0"),
    ] {
        let flag_value = format!("{flag}={value}");
        let out = run_to_end(
            serve(&["--addr", "127.0.0.1:0", "--data-dir", data, &flag_value]),
            "herald serve with a bad setting",
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag_value}: {stderr}");
        assert!(stderr.contains(flag), "{stderr}");
    }
}

#[test]
fn serve_keeps_its_connection_cap_under_the_limit_of_open_files() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().to_str().expect("a UTF-8 path");
    let log_path = dir.path().join("hub.log");
    // 256 files, of which 100 are left for the database and the rest: 156 connections.
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "ulimit -n 256 && exec \"$0\" serve --addr 127.0.0.1:0 --data-dir \"$1\" --header-timeout 1s",
        env!("CARGO_BIN_EXE_herald"),
        data,
    ]);
    for var in [
        "HERALD_ADDR",
        "HERALD_DATABASE_URL",
        "HERALD_TOKEN",
        "HERALD_LOG",
        "HERALD_MAX_CONNECTIONS",
        "HERALD_HEADER_TIMEOUT",
    ] {
        cmd.env_remove(var);
    }
    let hub = HubProcess::spawn(cmd, &log_path);
    wait_for_log(&log_path, "max_connections=156");

    // More silent connections than the hub has files: before the cap and the header
    // timeout, they took every file and `/healthz` never answered again.
    let addr = hub.url.trim_start_matches("http://").to_owned();
    let silent: Vec<std::net::TcpStream> = (0..300)
        .map(|_| std::net::TcpStream::connect(&addr).expect("the backlog takes it"))
        .collect();
    let client = Client::builder()
        .timeout(DEADLINE)
        .build()
        .expect("an HTTP client");
    let (status, body) = call(
        &client,
        reqwest::Method::GET,
        &format!("{}/healthz", hub.url),
        None,
        None,
    )
    .expect("the hub answers once the silent connections time out");
    assert_eq!(status, StatusCode::OK, "{body}");
    drop(silent);
}
