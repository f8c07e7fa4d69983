//! herald for agents over MCP, checked by a client nobody here wrote: the official MCP
//! Python SDK (`mcp`, pinned in python/requirements-dev.txt), driving `herald mcp` over
//! stdio and the hub's `/mcp` over streamable HTTP, against real runs of `herald demo`
//! on a real `herald serve`. The agent's side is `tests/mcp/client.py`; each test here
//! sets a hub and runs up, runs one of its scenarios and checks that it passed.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::hubs::{ADMIN, TestHub, TestRun, cmd, wait_for};
use crate::pyenv;
use crate::serve::{HubProcess, create_run, http_client};

const BIN: &str = env!("CARGO_BIN_EXE_herald");
/// The longest a scenario may take (it bounds itself at 120 s too).
const SCENARIO_DEADLINE: Duration = Duration::from_secs(150);

fn script() -> PathBuf {
    pyenv::workspace().join("crates/herald-cli/tests/mcp/client.py")
}

/// The client running `scenario` with `cfg`, or `None` where there is no Python (and
/// `CI` is not `true`: then `pyenv` fails the test).
fn client(scenario: &str, cfg: &Value) -> Option<Command> {
    let python = pyenv::python()?;
    let mut command = Command::new(python);
    command
        .arg("-W")
        .arg("ignore::DeprecationWarning")
        .arg(script())
        .arg(scenario)
        .arg(cfg.to_string());
    for var in ["HERALD_URL", "HERALD_TOKEN", "HERALD_RUN"] {
        command.env_remove(var);
    }
    Some(command)
}

/// Runs `scenario` to its end and fails the test unless it passed.
#[track_caller]
fn check(scenario: &str, cfg: &Value) {
    let Some(mut command) = client(scenario, cfg) else {
        return;
    };
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    let (stdout, stderr) = collect(&mut child);
    let status = wait_within(&mut child, SCENARIO_DEADLINE, scenario);
    let out = stdout.recv().unwrap_or_default();
    let err = stderr.recv().unwrap_or_default();
    assert!(
        status.success() && out.contains(&format!("ok {scenario}")),
        "scenario {scenario} failed ({status}):\n{out}\n{err}"
    );
}

fn collect(child: &mut Child) -> (mpsc::Receiver<String>, mpsc::Receiver<String>) {
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            let _ = tx.send(text);
        });
        rx
    };
    (
        read(Box::new(child.stdout.take().expect("piped stdout"))),
        read(Box::new(child.stderr.take().expect("piped stderr"))),
    )
}

fn wait_within(child: &mut Child, deadline: Duration, what: &str) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting for python") {
            return status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("scenario {what} took longer than {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A finished demo run (20 documents, document 7 failing), by its id.
fn finished_demo(hub: &TestHub) -> String {
    let out = hub
        .herald(&[
            "demo",
            "--token",
            ADMIN,
            "--items",
            "20",
            "--speed",
            "50",
            "--fail-at",
            "7",
            "--json",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("herald demo runs");
    let result: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("demo printed no result ({e}): {out:?}"));
    result["run"].as_str().expect("the demo's run").to_owned()
}

/// A demo that runs for minutes, killed on drop.
struct SlowDemo {
    child: Child,
    run: String,
}

impl SlowDemo {
    fn start(hub: &TestHub) -> SlowDemo {
        let before: Vec<String> = running(hub);
        let child = hub
            .herald(&[
                "demo", "--token", ADMIN, "--items", "2000", "--speed", "1", "--json",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("herald demo starts");
        let mut run = None;
        wait_for("the slow demo's run on the hub", || {
            run = running(hub).into_iter().find(|id| !before.contains(id));
            run.is_some()
        });
        SlowDemo {
            child,
            run: run.expect("found"),
        }
    }
}

impl Drop for SlowDemo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn running(hub: &TestHub) -> Vec<String> {
    let (status, page) = hub.get("/v1/runs?status=running");
    assert_eq!(status, 200, "{page}");
    page["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["id"].as_str().expect("an id").to_owned())
        .collect()
}

fn tools_config(hub: &TestHub) -> (Value, SlowDemo) {
    let finished = finished_demo(hub);
    let slow = SlowDemo::start(hub);
    let cfg = json!({
        "herald": BIN,
        "hub": hub.url,
        "token": ADMIN,
        "finished_run": finished,
        "slow_run": slow.run,
    });
    (cfg, slow)
}

#[test]
fn every_tool_over_stdio_through_herald_mcp() {
    let hub = TestHub::with_token(ADMIN);
    let (cfg, _slow) = tools_config(&hub);
    check("stdio-tools", &cfg);
}

#[test]
fn every_tool_over_streamable_http_at_the_hub_s_mcp() {
    let hub = TestHub::with_token(ADMIN);
    let (cfg, _slow) = tools_config(&hub);
    check("http-tools", &cfg);
}

#[test]
fn wait_for_run_runs_as_an_mcp_task_at_the_hub_s_mcp() {
    let hub = TestHub::with_token(ADMIN);
    let (mut cfg, _slow) = tools_config(&hub);
    // A token the hub knows that did not create the tasks.
    let other = hub.create(json!({"name": "other"}));
    cfg["other_token"] = json!(other.read_token);
    check("http-tasks", &cfg);
}

#[test]
fn herald_mcp_carries_mcp_tasks_between_its_host_and_the_hub() {
    let hub = TestHub::with_token(ADMIN);
    let (mut cfg, _slow) = tools_config(&hub);
    let other = hub.create(json!({"name": "other"}));
    cfg["other_token"] = json!(other.read_token);
    check("stdio-tasks", &cfg);
}

#[test]
fn start_command_runs_as_an_mcp_task_for_the_command_s_life() {
    let hub = TestHub::with_token(ADMIN);
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let cfg = json!({
        "herald": BIN,
        "hub": hub.url,
        "token": ADMIN,
        "tmp": tmp.path().to_str().expect("a UTF-8 path"),
    });
    check("exec-tasks", &cfg);
}

#[test]
fn start_command_runs_a_command_as_herald_exec_does_only_with_allow_exec() {
    // Without --allow-exec it is neither listed nor callable: `stdio-tools` checks that.
    let hub = TestHub::with_token(ADMIN);
    let cwd = tempfile::tempdir().expect("a temporary directory");
    let cwd = cwd.path().canonicalize().expect("a real path");
    // herald mcp's TMPDIR: its output directory goes there, and away when it exits.
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let tmp = tmp.path().canonicalize().expect("a real path");
    let cfg = json!({
        "herald": BIN,
        "hub": hub.url,
        "token": ADMIN,
        "cwd": cwd.to_str().expect("a UTF-8 path"),
        "tmp": tmp.to_str().expect("a UTF-8 path"),
    });
    check("exec", &cfg);
    assert_eq!(entries(&tmp), Vec::<String>::new(), "left behind in TMPDIR");
}

/// The names in `dir`.
fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("reading the directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn herald_mcp_ended_by_a_signal_removes_start_command_s_output_too() {
    let hub = TestHub::with_token(ADMIN);
    for (flags, signal) in [
        (&["--allow-exec"][..], "TERM"),
        (&["--allow-exec"][..], "INT"),
        (&[][..], "TERM"),
    ] {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let mut child = Command::new(BIN)
            .args(["mcp", "--hub", &hub.url])
            .args(flags)
            .env("HERALD_TOKEN", ADMIN)
            .env("TMPDIR", tmp.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("herald mcp starts");
        // Its answer to `initialize` means its setup, the directory included, is done.
        let mut stdin = child.stdin.take().expect("piped stdin");
        writeln!(
            stdin,
            r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"test","version":"1"}}}}}}"#
        )
        .expect("writing to herald mcp");
        let mut answer = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut answer)
            .expect("reading herald mcp's answer");
        assert!(answer.contains(r#""id":1"#), "{answer}");
        let made = entries(tmp.path());
        if flags.is_empty() {
            assert_eq!(made, Vec::<String>::new(), "without --allow-exec");
        } else {
            assert!(
                made.len() == 1 && made[0].starts_with("herald-mcp-"),
                "{made:?}"
            );
        }
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let status = wait_within(&mut child, Duration::from_secs(20), "herald mcp");
        drop(stdin);
        use std::os::unix::process::ExitStatusExt as _;
        let number = if signal == "TERM" { 15 } else { 2 };
        assert_eq!(status.signal(), Some(number), "{status}");
        assert_eq!(
            entries(tmp.path()),
            Vec::<String>::new(),
            "{flags:?} {signal}"
        );
    }
}

/// Two runs, the first started, and the config the token and resource scenarios take.
fn two_runs(hub: &TestHub) -> (Value, TestRun) {
    let mine = hub.create(json!({"name": "mine"}));
    let other = hub.create(json!({"name": "other"}));
    hub.append(
        &mine,
        json!([{"event": "run.started", "name": "mine"}, {"event": "stage.started", "stage": "work", "total": 10}]),
    );
    let cfg = json!({
        "herald": BIN,
        "hub": hub.url,
        "token": ADMIN,
        "run": mine.id,
        "other_run": other.id,
        "read_token": mine.read_token,
        "write_token": mine.write_token,
    });
    (cfg, mine)
}

#[test]
fn the_hub_s_mcp_keeps_its_token_rules() {
    let hub = TestHub::with_token(ADMIN);
    let (cfg, _) = two_runs(&hub);
    check("tokens", &cfg);
}

#[test]
fn a_run_s_resource_is_read_and_its_subscribers_hear_of_changes() {
    let hub = TestHub::with_token(ADMIN);
    let (cfg, _) = two_runs(&hub);
    check("http-resources", &cfg);
    check("stdio-resources", &cfg);
}

#[test]
fn a_2026_07_28_client_listens_for_a_run_s_changes() {
    let hub = TestHub::with_token(ADMIN);
    let (cfg, _) = two_runs(&hub);
    check("http-listen", &cfg);
}

#[test]
fn herald_mcp_keeps_serving_while_the_hub_restarts() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().to_str().expect("a UTF-8 path").to_owned();
    let log = dir.path().join("hub.log");
    let start = |addr: &str| {
        HubProcess::launch(
            &["--addr", addr, "--data-dir", &data, "--token", ADMIN],
            &log,
        )
    };
    let mut hub = Some(start("127.0.0.1:0"));
    let url = hub.as_ref().expect("a hub").url.clone();
    let addr = url.trim_start_matches("http://").to_owned();
    let created = create_run(&http_client(), &url, Some(ADMIN), &json!({"name": "kept"}));
    let run = created["id"].as_str().expect("a run id").to_owned();

    let cfg = json!({
        "herald": BIN,
        "hub": url,
        "token": ADMIN,
        "run": run,
        "write_token": created["write_token"],
    });
    let Some(mut command) = client("restart", &cfg) else {
        return;
    };
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    let mut to_client = child.stdin.take().expect("piped stdin");
    let from_client = BufReader::new(child.stdout.take().expect("piped stdout"));
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in from_client.lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let stderr = {
        let mut pipe = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
            let _ = tx.send(text);
        });
        rx
    };
    let mut said = Vec::new();
    let ok = loop {
        let Ok(line) = lines.recv_timeout(SCENARIO_DEADLINE) else {
            break false;
        };
        said.push(line.clone());
        match line.as_str() {
            "stop the hub" => {
                hub.take().expect("a hub").kill();
                writeln!(to_client, "stopped").expect("the client listens");
            }
            "start the hub" => {
                hub = Some(start(&addr));
                writeln!(to_client, "started").expect("the client listens");
            }
            "ok restart" => break true,
            _ => {}
        }
    };
    let status = wait_within(&mut child, SCENARIO_DEADLINE, "restart");
    let err = stderr.recv().unwrap_or_default();
    assert!(
        ok && status.success(),
        "scenario restart failed ({status}):\n{}\n{err}",
        said.join("\n")
    );
}

/// What a JSON-RPC client that sends garbage gets, over stdio and over HTTP.
#[test]
fn malformed_json_rpc_gets_the_standard_errors() {
    let hub = TestHub::start();
    let mut mcp = cmd(&["mcp", "--hub", &hub.url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("herald mcp starts");
    let mut stdin = mcp.stdin.take().expect("piped stdin");
    let stdout = BufReader::new(mcp.stdout.take().expect("piped stdout"));
    let (tx, replies) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let ask = |stdin: &mut std::process::ChildStdin, line: &str| -> Value {
        writeln!(stdin, "{line}").expect("herald mcp reads");
        let reply = replies
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no answer to {line}"));
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("not JSON ({e}): {reply}"))
    };
    let reply = ask(&mut stdin, "{not json");
    assert_eq!(reply["error"]["code"], -32700, "{reply}");
    let reply = ask(&mut stdin, r#"{"jsonrpc":"2.0","id":7}"#);
    assert_eq!(reply["error"]["code"], -32600, "{reply}");
    assert_eq!(reply["id"], 7, "{reply}");
    let reply = ask(
        &mut stdin,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#,
    );
    assert_eq!(reply["result"]["protocolVersion"], "2025-11-25", "{reply}");
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )
    .expect("herald mcp reads");
    let reply = ask(
        &mut stdin,
        r#"{"jsonrpc":"2.0","id":2,"method":"no/such/method"}"#,
    );
    assert_eq!(reply["error"]["code"], -32601, "{reply}");
    let reply = ask(
        &mut stdin,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_run"}}"#,
    );
    assert_eq!(reply["result"]["isError"], true, "{reply}");
    let reply = ask(
        &mut stdin,
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{}}"#,
    );
    assert_eq!(reply["error"]["code"], -32602, "{reply}");
    // Still serving after all that.
    let reply = ask(
        &mut stdin,
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#,
    );
    assert_eq!(
        reply["result"]["tools"].as_array().map(Vec::len),
        Some(5),
        "{reply}"
    );
    drop(stdin);
    let _ = wait_within(
        &mut mcp,
        Duration::from_secs(10),
        "herald mcp after stdin closed",
    );

    let client = reqwest::blocking::Client::new();
    let post = |body: &str| {
        let res = client
            .post(format!("{}/mcp", hub.url))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream")
            .body(body.to_owned())
            .send()
            .expect("the hub answers");
        let status = res.status().as_u16();
        (status, res.text().unwrap_or_default())
    };
    for (body, code) in [
        ("{not json", -32700),
        ("[1, 2]", -32600),
        (r#"{"id": 1}"#, -32600),
    ] {
        let (status, reply) = post(body);
        assert_eq!(status, 400, "{reply}");
        let reply: Value = serde_json::from_str(&reply).expect("a JSON-RPC error");
        assert_eq!(reply["error"]["code"], code, "{body}: {reply}");
    }
}
