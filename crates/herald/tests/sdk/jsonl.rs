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
