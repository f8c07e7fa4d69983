//! A real hub for the tests of the commands that talk to one: `herald serve` on
//! `127.0.0.1:0` with its own data directory, killed when the test ends; plain HTTP to
//! set runs up and look at them; and `herald` commands run with a deadline.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use herald_protocol::{Event, parse_event};
use serde_json::{Value, json};

use crate::util::herald;

/// The longest any one command in these tests may take.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// The admin token of hubs started with [`TestHub::with_token`]: 16 characters at
/// least, or `herald serve` refuses it.
pub(crate) const ADMIN: &str = "cli-tests-admin-token";

/// A `herald` command with no hub settings from the environment of the test run.
pub(crate) fn cmd(args: &[&str]) -> Command {
    let mut cmd = herald(args);
    for var in ["HERALD_URL", "HERALD_TOKEN", "HERALD_RUN"] {
        cmd.env_remove(var);
    }
    cmd
}

/// A hub process; killed on drop.
pub(crate) struct TestHub {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    /// Its data directory, unless the test keeps it (see [`TestHub::on_data_dir`]).
    _dir: Option<tempfile::TempDir>,
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    admin: Option<String>,
    agent: ureq::Agent,
}

/// A run as `POST /v1/runs` made it.
pub(crate) struct TestRun {
    pub(crate) id: String,
    pub(crate) write_token: String,
    pub(crate) read_token: String,
}

impl TestHub {
    /// An open hub, as on loopback by default.
    pub(crate) fn start() -> TestHub {
        TestHub::launch(None, &[], None)
    }

    /// A hub with the admin token `token`.
    pub(crate) fn with_token(token: &str) -> TestHub {
        TestHub::launch(Some(token), &[], None)
    }

    /// An open hub with more `herald serve` flags.
    pub(crate) fn with_flags(flags: &[&str]) -> TestHub {
        TestHub::launch(None, flags, None)
    }

    /// An open hub over the data directory `data`, which outlives it: a hub started
    /// on it again finds what this one stored.
    pub(crate) fn on_data_dir(data: &Path) -> TestHub {
        TestHub::launch(None, &[], Some(data))
    }

    fn launch(admin: Option<&str>, flags: &[&str], data: Option<&Path>) -> TestHub {
        let dir = match data {
            Some(_) => None,
            None => Some(tempfile::tempdir().expect("a temporary directory")),
        };
        let data = data.or(dir.as_ref().map(tempfile::TempDir::path));
        let mut command = cmd(&["serve", "--addr", "127.0.0.1:0", "--data-dir"]);
        command.arg(data.expect("a data directory")).args(flags);
        if let Some(token) = admin {
            command.args(["--token", token]);
        }
        let mut child = command
            .env("HERALD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("herald serve starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (tx, rx) = mpsc::channel();
        let reader = thread::spawn(move || {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = tx.send(line);
            stdout
        });
        let line = match rx.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("herald serve said nothing for {DEADLINE:?}");
            }
        };
        let stdout = reader.join().expect("the reader thread");
        let url = line
            .trim()
            .strip_prefix("herald hub listening on ")
            .unwrap_or_else(|| panic!("herald serve did not say where it listens: {line:?}"))
            .to_owned();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(DEADLINE))
            .build()
            .new_agent();
        TestHub {
            child,
            _stdout: stdout,
            _dir: dir,
            url,
            admin: admin.map(str::to_owned),
            agent,
        }
    }

    /// `herald ARGS` against this hub (`HERALD_URL`), with no token unless given.
    pub(crate) fn herald(&self, args: &[&str]) -> Command {
        let mut command = cmd(args);
        command.env("HERALD_URL", &self.url);
        command
    }

    fn auth(&self, token: Option<&str>) -> Option<String> {
        token
            .map(str::to_owned)
            .or_else(|| self.admin.clone())
            .map(|t| format!("Bearer {t}"))
    }

    /// `GET path` with the admin token (if any): the status and the JSON body.
    pub(crate) fn get(&self, path: &str) -> (u16, Value) {
        let mut req = self.agent.get(format!("{}{path}", self.url));
        if let Some(auth) = self.auth(None) {
            req = req.header("Authorization", auth);
        }
        let mut res = req.call().expect("the hub answers");
        let status = res.status().as_u16();
        let text = res.body_mut().read_to_string().expect("a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `POST path` with `body` and `token` (or the admin token): the status and body.
    pub(crate) fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self.agent.post(format!("{}{path}", self.url));
        if let Some(auth) = self.auth(token) {
            req = req.header("Authorization", auth);
        }
        let mut res = req.send_json(body).expect("the hub answers");
        let status = res.status().as_u16();
        let text = res.body_mut().read_to_string().expect("a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a run from `body` (`{"name": ...}` and more).
    pub(crate) fn create(&self, body: Value) -> TestRun {
        let (status, reply) = self.post("/v1/runs", None, &body);
        assert_eq!(status, 201, "creating a run: {reply}");
        TestRun {
            id: reply["id"].as_str().unwrap().to_owned(),
            write_token: reply["write_token"].as_str().unwrap().to_owned(),
            read_token: reply["read_token"].as_str().unwrap().to_owned(),
        }
    }

    /// Appends `events` (a JSON array) to `run` with its write token.
    pub(crate) fn append(&self, run: &TestRun, events: Value) {
        let path = format!("/v1/runs/{}/events", run.id);
        let (status, reply) = self.post(&path, Some(&run.write_token), &events);
        assert_eq!(status, 200, "appending: {reply}");
    }

    /// The run's state.
    pub(crate) fn state(&self, run: &str) -> Value {
        let (status, state) = self.get(&format!("/v1/runs/{run}"));
        assert_eq!(status, 200, "the state of {run}: {state}");
        state
    }

    /// Every event of the run.
    pub(crate) fn events(&self, run: &str) -> Vec<Event> {
        let (status, page) = self.get(&format!("/v1/runs/{run}/events?limit=1000"));
        assert_eq!(status, 200, "the events of {run}: {page}");
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| parse_event(&e.to_string()).expect("an event"))
            .collect()
    }

    /// The newest run with this name, once there is one.
    pub(crate) fn run_named(&self, name: &str) -> Value {
        let mut found = None;
        wait_for(&format!("a run named {name:?}"), || {
            let (_, list) = self.get("/v1/runs");
            found = list["runs"]
                .as_array()
                .and_then(|runs| runs.iter().find(|r| r["name"] == json!(name)).cloned());
            found.is_some()
        });
        found.unwrap()
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `done` holds, checking every 20 ms; panics after [`DEADLINE`].
#[track_caller]
pub(crate) fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "no {what} within {DEADLINE:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A command running in the background, its output collected as it comes.
pub(crate) struct Running {
    child: Child,
    stdout: mpsc::Receiver<Vec<u8>>,
    stderr: mpsc::Receiver<Vec<u8>>,
    out: Vec<u8>,
    err: Vec<u8>,
    started: Instant,
}

impl Running {
    pub(crate) fn spawn(mut command: Command) -> Running {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("herald runs");
        let stdout = pipe(child.stdout.take().unwrap());
        let stderr = pipe(child.stderr.take().unwrap());
        Running {
            child,
            stdout,
            stderr,
            out: Vec::new(),
            err: Vec::new(),
            started: Instant::now(),
        }
    }

    fn collect(&mut self) {
        self.out.extend(self.stdout.try_iter().flatten());
        self.err.extend(self.stderr.try_iter().flatten());
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it printed on stdout so far.
    pub(crate) fn stdout_so_far(&mut self) -> String {
        self.collect();
        String::from_utf8_lossy(&self.out).into_owned()
    }

    /// Whether it has ended.
    pub(crate) fn has_ended(&mut self) -> bool {
        self.child.try_wait().expect("waiting for herald").is_some()
    }

    /// Waits for it to end, at most [`DEADLINE`] after it started; kills it and
    /// panics past that.
    pub(crate) fn finish(self) -> Output {
        self.finish_within(DEADLINE)
    }

    /// Waits for it to end, at most `deadline` after it started (for a command that
    /// takes long by design); kills it and panics past that.
    pub(crate) fn finish_within(mut self, deadline: Duration) -> Output {
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for herald") {
                // The pipes close with the process (and whatever it left running);
                // take what is left in them.
                let until = self.started + deadline;
                for (rx, buf) in [(&self.stdout, &mut self.out), (&self.stderr, &mut self.err)] {
                    while let Ok(chunk) =
                        rx.recv_timeout(until.saturating_duration_since(Instant::now()))
                    {
                        buf.extend(chunk);
                    }
                }
                return Output {
                    status,
                    stdout: std::mem::take(&mut self.out),
                    stderr: std::mem::take(&mut self.err),
                };
            }
            if self.started.elapsed() > deadline {
                let _ = self.child.kill();
                self.collect();
                panic!(
                    "herald did not end within {deadline:?}; stderr so far:\n{}",
                    String::from_utf8_lossy(&self.err)
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pipe(mut from: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = vec![0; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs `command` to its end, within [`DEADLINE`].
pub(crate) fn run_within(command: Command) -> Output {
    Running::spawn(command).finish()
}

/// stderr as text, checked for the marks of a crash.
pub(crate) fn stderr_of(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "herald panicked:\n{stderr}");
    stderr
}

/// stdout's lines as events.
pub(crate) fn stdout_events(out: &Output) -> Vec<Event> {
    crate::util::events(&out.stdout)
}
