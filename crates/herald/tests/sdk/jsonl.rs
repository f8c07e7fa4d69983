//! The JSON Lines sink: every line one whole, self-describing event, which parses back
//! and folds to the state the SDK had.

use std::io::Write;
use std::sync::{Arc, Mutex};

use herald::protocol::{RunState, RunStatus, parse_event};
use herald::{Progress, Target};

/// A writer whose bytes the test can read after the reporter is gone.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn lines_parse_back_and_fold_to_the_final_state() {
    let out = Shared::default();
    let progress = Progress::new([Target::json_writer(out.clone())]);
    let run = progress.run("jsonl");
    let stage = run.stage("s").total(4);
    for i in stage.iter(0..4) {
        if i == 2 {
            run.warn("halfway");
        }
    }
    stage.finish();
    run.finish();
    drop(progress);

    let bytes = out.0.lock().unwrap().clone();
    let text = String::from_utf8(bytes).unwrap();
    let mut events = Vec::new();
    for line in text.lines() {
        assert!(
            line.starts_with(r#"{"v":1,"event":""#),
            "not self-describing: {line}"
        );
        events.push(parse_event(line).unwrap_or_else(|e| panic!("{e}: {line}")));
    }
    let state = herald::protocol::fold(events[0].run.clone(), &events);
    assert_eq!(state.status, RunStatus::Succeeded);
    assert_eq!(state.items.succeeded, 4);
    assert_eq!(state.logs[0].message, "halfway");
    assert_eq!(state.last_seq, events.len() as u64);
    let round_trip: RunState =
        serde_json::from_value(serde_json::to_value(&state).unwrap()).unwrap();
    assert_eq!(round_trip.items, state.items);
}

#[test]
fn a_file_target_appends_and_a_bad_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("progress.jsonl");
    std::fs::write(&path, "kept\n").unwrap();
    let options = herald::ProgressOptions {
        mode: herald::ProgressMode::None,
        file: Some(path.clone()),
        fd: None,
        hub: None,
    };
    let progress = Progress::from_options(&options).unwrap();
    progress.run("to-file").finish();
    drop(progress);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("kept\n"));
    assert_eq!(text.lines().count(), 3, "{text}");

    let bad = herald::ProgressOptions {
        file: Some(dir.path().join("missing-dir/progress.jsonl")),
        ..options
    };
    let err = Progress::from_options(&bad).unwrap_err().to_string();
    assert!(err.contains("cannot open progress file"), "{err}");
    assert!(err.contains("missing-dir"), "{err}");
}

#[test]
fn progress_modes_parse_and_reject_typos() {
    for (s, mode) in [
        ("auto", herald::ProgressMode::Auto),
        ("bars", herald::ProgressMode::Bars),
        ("json", herald::ProgressMode::Json),
        ("none", herald::ProgressMode::None),
    ] {
        assert_eq!(s.parse::<herald::ProgressMode>().unwrap(), mode);
    }
    let err = "jsno"
        .parse::<herald::ProgressMode>()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("jsno") && err.contains("auto, bars, json or none"),
        "{err}"
    );
}

#[test]
fn a_hub_url_without_its_scheme_is_a_clear_error_before_any_work() {
    for url in ["localhost:7311", "http://", "ftp://hub"] {
        let options = herald::ProgressOptions {
            mode: herald::ProgressMode::None,
            hub: Some(herald::HubOptions::new(url, None)),
            ..herald::ProgressOptions::default()
        };
        let err = Progress::from_options(&options).unwrap_err().to_string();
        assert!(
            err.contains("is not an http:// or https:// URL"),
            "{url}: {err}"
        );
    }
}

/// Set in the child processes of the tests below.
const CHILD: &str = "HERALD_JSONL_TEST_CHILD";

/// A loopback URL where nothing listens: connections are refused at once.
fn refusing_hub() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

#[test]
fn herald_s_own_warnings_are_log_events_in_a_json_stream() {
    const NAME: &str = "jsonl::herald_s_own_warnings_are_log_events_in_a_json_stream";
    if std::env::var_os(CHILD).is_some() {
        let progress = Progress::from_env().unwrap();
        let run = progress.run("unreported");
        run.info("working");
        // Until the parent has seen the hub sink's warning.
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::stdin().lock(), &mut line).unwrap();
        run.finish();
        return;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("HERALD_PROGRESS", "json")
        .env("HERALD_URL", refusing_hub())
        .env_remove("HERALD_PROGRESS_FILE")
        .env_remove("HERALD_PROGRESS_FD")
        .env_remove("HERALD_TOKEN")
        .env_remove("HERALD_RUN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(stderr) {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let warned = |line: &str| line.contains("cannot report to the hub");
    while !lines.iter().any(|l: &String| warned(l)) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("no warning within 20 s:\n{}", lines.join("\n")),
        }
    }
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    lines.extend(rx.iter());
    // Only JSON on the JSON stream; the warning is one of its events.
    let events: Vec<_> = lines
        .iter()
        .map(|l| parse_event(l).unwrap_or_else(|e| panic!("not an event ({e}): {l}")))
        .collect();
    let warning = events
        .iter()
        .find_map(|e| match &e.body {
            herald::protocol::EventBody::Log(log) if warned(&log.message) => Some(log),
            _ => None,
        })
        .expect("the warning as a log event");
    assert_eq!(warning.level, herald::protocol::LogLevel::Warn);
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
}

/// Every line `progress` wrote as an event, with the line itself.
fn lines_of(out: &Shared) -> Vec<(String, herald::protocol::Event)> {
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .map(|l| {
            let event = parse_event(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (l.to_owned(), event)
        })
        .collect()
}

#[test]
fn times_never_go_back_and_numbers_are_rounded() {
    let out = Shared::default();
    let policy = herald::SinkPolicy::every_tick();
    let progress = Progress::new([Target::sink(
        herald::JsonLines::new(out.clone()).with_policy(policy),
    )]);
    let run = progress.run("ordered");
    // Several threads report at once, and stages finish right after counting: the
    // last count of each is sampled after its finish was stamped.
    std::thread::scope(|scope| {
        for t in 0..4 {
            let run = &run;
            scope.spawn(move || {
                for n in 0..20 {
                    let stage = run.stage(&format!("s{t}-{n}")).total(7).unit("docs");
                    stage.inc(3);
                    run.info(format!("{t}/{n}"));
                    stage.inc(4);
                    stage.finish();
                }
            });
        }
    });
    let slow = run.stage("slow").total(2_048);
    slow.inc(1);
    progress.flush();
    slow.inc(1);
    slow.finish();
    run.finish();
    drop(progress);

    let lines = lines_of(&out);
    let times: Vec<i64> = lines.iter().map(|(_, e)| e.ts.unix_micros()).collect();
    for (i, pair) in times.windows(2).enumerate() {
        assert!(
            pair[0] <= pair[1],
            "ts went back after line {}:\n{}\n{}",
            i + 1,
            lines[i].0,
            lines[i + 1].0
        );
    }
    let mut numbers = 0;
    for (line, _) in &lines {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        for (key, value) in value.as_object().unwrap() {
            let Some(x) = value.as_f64().filter(|_| value.is_f64()) else {
                continue;
            };
            let step = match key.as_str() {
                "percent" => 10.0,
                k if k.ends_with("_s") => 1000.0,
                _ => continue,
            };
            numbers += 1;
            assert_eq!((x * step).round() / step, x, "{key} unrounded in {line}");
        }
    }
    assert!(numbers > 100, "only {numbers} numbers checked");
    // 1 of 2048 is 0.0488%: a tenth of a point at most.
    assert!(
        lines.iter().any(
            |(l, _)| l.contains(r#""stage":"slow","done":1,"total":2048"#)
                && l.contains(r#""percent":0.0"#)
        ),
        "no rounded percent for the slow stage"
    );
    // Each stage announced its unit from the start.
    let units: Vec<Option<String>> = lines
        .iter()
        .filter_map(|(_, e)| match &e.body {
            herald::protocol::EventBody::StageStarted(s) if s.stage != "slow" => {
                Some(s.unit.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(units.len(), 80);
    assert!(
        units.iter().all(|u| u.as_deref() == Some("docs")),
        "{units:?}"
    );
}
