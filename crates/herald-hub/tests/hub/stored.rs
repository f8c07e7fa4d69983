//! Nothing the hub stores may break reading it back: every field that ends up stored is
//! bounded as events are, checked before storing; and a stored event that cannot be
//! read all the same (written by an older hub, edited by hand, damaged) is a
//! `custom.unreadable` marker at its `seq`, never a run that answers 500.

use herald_hub::HubConfig;
use herald_protocol::{EventBody, MAX_EVENT_BYTES};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::STORE;
use crate::util::{Case, StoreKind, TestDb, TestHub, check, logs, seqs, types, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stored_field_is_bounded_before_it_is_stored() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("r").await;
    hub.append(&run, logs("m", 1)).await;
    let events = "/v1/runs/r/events";
    // A draft of exactly the limit: it passes the protocol's check as posted, but the
    // envelope the hub adds (`v`, `run`, `seq`, `ts`) would store it over the limit.
    let head = r#"{"event":"log","level":"info","message":""#;
    let full = "x".repeat(MAX_EVENT_BYTES - head.len() - 2);
    let at_the_limit = json!({"event": "log", "level": "info", "message": full});
    assert_eq!(at_the_limit.to_string().len(), MAX_EVENT_BYTES);
    let track = vec!["log"; 300].join(",");
    let meta: Map<String, Value> = (0..2000)
        .map(|i| (format!("key{i}"), json!("v".repeat(32))))
        .collect();
    let cases = vec![
        Case::new(
            "cancel: a reason over the event limit",
            Method::POST,
            "/v1/runs/r/cancel",
        )
        .json(json!({"reason": "r".repeat(70_000)}))
        .expect(413, "event_too_large")
        .field("reason"),
        Case::new(
            "create: meta over the event limit",
            Method::POST,
            "/v1/runs",
        )
        .json(json!({"name": "n", "meta": meta}))
        .expect(413, "event_too_large")
        .field("meta"),
        Case::new("create: track over its limit", Method::POST, "/v1/runs")
            .json(json!({"name": "n", "track": track}))
            .expect(400, "invalid_field")
            .field("track"),
        Case::new(
            "create: track listing too many patterns",
            Method::POST,
            "/v1/runs",
        )
        .json(json!({"name": "n", "track": vec!["log"; 17]}))
        .expect(400, "invalid_field")
        .field("track"),
        Case::new(
            "create: track listing a pattern too long",
            Method::POST,
            "/v1/runs",
        )
        .json(json!({"name": "n", "track": ["log", format!("custom.{}", "a".repeat(54))]}))
        .expect(400, "invalid_field")
        .field("track"),
        Case::new(
            "append: an event over the limit once stored",
            Method::POST,
            events,
        )
        .json(json!([{"event": "log", "level": "info", "message": "small"}, at_the_limit]))
        .expect(413, "event_too_large")
        .index(1),
    ];
    check(&hub, cases).await;

    // Nothing of them was stored, and the run reads as before.
    let stored = hub.all_events(&run).await;
    assert_eq!(seqs(&stored), [1]);
    let state = hub.state(&run).await;
    assert_eq!(state["cancel_requested"], false, "{state}");
    let (status, reply) = hub.call(Method::GET, "/v1/runs", None, None).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["runs"].as_array().map(Vec::len), Some(1), "{reply}");

    // Just under the limit is taken, and reads back.
    let reason = "r".repeat(MAX_EVENT_BYTES - 200);
    let (status, reply) = hub
        .call(
            Method::POST,
            "/v1/runs/r/cancel",
            Some(&run.write_token),
            Some(json!({ "reason": reason })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let stored = hub.all_events(&run).await;
    match &stored[1].body {
        EventBody::RunCancelRequested(c) => assert_eq!(c.reason.as_deref(), Some(&*reason)),
        other => panic!("not the cancel: {other:?}"),
    }
}

/// Overwrites the stored body of event `seq` of `run` in `db`, behind the hub's back:
/// with `body` as text, or (SQLite only, `None`) with a blob that is no text at all.
async fn damage(db: &TestDb, run: &str, seq: i64, body: Option<&str>) {
    match STORE {
        StoreKind::Sqlite => {
            let path = db.url().strip_prefix("sqlite://").expect("a SQLite URL");
            let conn = rusqlite::Connection::open(path).expect("the file opens");
            conn.busy_timeout(std::time::Duration::from_secs(10))
                .expect("a busy timeout");
            let blob: &[u8] = &[0xff, 0xfe, 0x00, 0x01];
            let changed = match body {
                Some(body) => conn.execute(
                    "UPDATE events SET body = ?1 WHERE run_id = ?2 AND seq = ?3",
                    rusqlite::params![body, run, seq],
                ),
                None => conn.execute(
                    "UPDATE events SET body = ?1 WHERE run_id = ?2 AND seq = ?3",
                    rusqlite::params![blob, run, seq],
                ),
            };
            assert_eq!(changed.expect("the row is updated"), 1);
        }
        StoreKind::Postgres => {
            use sqlx::Connection;
            let mut conn = within("connecting", sqlx::PgConnection::connect(db.url()))
                .await
                .expect("the database connects");
            let changed = sqlx::query("UPDATE events SET body = $1 WHERE run_id = $2 AND seq = $3")
                .bind(body.expect("text: PostgreSQL's column holds nothing else"))
                .bind(run)
                .bind(seq)
                .execute(&mut conn)
                .await
                .expect("the row is updated")
                .rows_affected();
            assert_eq!(changed, 1);
        }
    }
}

/// The fields of the `custom.unreadable` marker `event` at `seq`.
#[track_caller]
fn marker(event: &herald_protocol::Event, seq: u64) -> Map<String, Value> {
    assert_eq!((event.seq, event.event_type()), (seq, "custom.unreadable"));
    match &event.body {
        EventBody::Custom(custom) => custom.fields.clone(),
        other => panic!("not a custom event: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_event_that_cannot_be_read_back_is_a_marker_and_the_run_goes_on() {
    let db = TestDb::new(STORE).await;
    let mut hub = TestHub::on(&db, HubConfig::default(), None).await;
    let run = hub.create_named("p").await;
    hub.append(
        &run,
        json!([{"event": "run.started", "name": "p"},
               {"event": "log", "level": "info", "message": "a"},
               {"event": "log", "level": "info", "message": "b"},
               {"event": "log", "level": "info", "message": "c"}]),
    )
    .await;
    hub.stop().await;
    drop(hub);

    // What the issue found: a cancel stored over the limit by a hub without the check.
    let ts = "2026-12-01T00:00:00.000000Z";
    let too_large = format!(
        r#"{{"v":1,"event":"run.cancel_requested","run":"p","seq":3,"ts":"{ts}","reason":"{}"}}"#,
        "x".repeat(70_000)
    );
    damage(
        &db,
        "p",
        2,
        Some(r#"{"v":1,"event":"log","run":"p","seq":2,"ts"#),
    )
    .await;
    damage(&db, "p", 3, Some(&too_large)).await;
    let misplaced = format!(
        r#"{{"v":1,"event":"log","run":"p","seq":9,"ts":"{ts}","level":"info","message":"c"}}"#
    );
    match STORE {
        StoreKind::Sqlite => damage(&db, "p", 4, None).await,
        StoreKind::Postgres => damage(&db, "p", 4, Some(&misplaced)).await,
    }

    // A hub started afresh: no cached state, everything is read from the rows.
    let hub = TestHub::on(&db, HubConfig::default(), None).await;
    let state = hub.state(&run).await;
    assert_eq!(
        (state["last_seq"].as_u64(), state["event_count"].as_u64()),
        (Some(4), Some(4)),
        "{state}"
    );
    assert_eq!(state["name"], "p");

    let events = hub.all_events(&run).await;
    assert_eq!(seqs(&events), [1, 2, 3, 4], "seq stays dense");
    assert_eq!(
        types(&events),
        [
            "run.started",
            "custom.unreadable",
            "custom.unreadable",
            "custom.unreadable"
        ]
    );
    let bad_json = marker(&events[1], 2);
    assert!(
        bad_json["reason"]
            .as_str()
            .is_some_and(|r| r.contains("JSON")),
        "{bad_json:?}"
    );
    let over = marker(&events[2], 3);
    assert_eq!(over["event_type"], "run.cancel_requested");
    assert_eq!(over["bytes"], too_large.len());
    assert!(
        over["reason"]
            .as_str()
            .is_some_and(|r| r.contains("over the limit")),
        "{over:?}"
    );
    assert_eq!(events[2].ts.to_string(), ts, "the time the row holds");
    let fourth = marker(&events[3], 4);
    let expected = match STORE {
        StoreKind::Sqlite => "blob",
        StoreKind::Postgres => "seq 9",
    };
    assert!(
        fourth["reason"]
            .as_str()
            .is_some_and(|r| r.contains(expected)),
        "{fourth:?}"
    );

    // Every way of reading it goes past the markers, and the run takes events.
    let mut sse = hub.stream(&run, "", None).await;
    let mut ws = hub
        .ws("p", "after=1", Some(&run.read_token))
        .await
        .expect("a socket");
    let mut agui = hub.stream(&run, "format=ag-ui", None).await;
    for seq in 1..=4 {
        assert_eq!(sse.event().await.seq, seq);
    }
    for seq in 2..=4 {
        assert_eq!(ws.event().await.seq, seq);
    }
    let reply = hub.append(&run, logs("after", 1)).await;
    assert_eq!(reply["last_seq"], 5);
    assert_eq!(sse.event().await.event_type(), "log");
    assert_eq!(ws.event().await.seq, 5);
    let mut customs = 0;
    while customs < 3 {
        let message = agui.message().await.expect("the AG-UI stream goes on");
        let data = message.json();
        assert_ne!(data["type"], "RUN_ERROR", "{data}");
        if data["type"] == "CUSTOM" && data["name"] == "custom.unreadable" {
            customs += 1;
        }
    }
    let (status, reply) = hub.call(Method::GET, "/v1/runs", None, None).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(hub.state(&run).await["last_seq"], 5);
    assert_eq!(hub.metric("herald_events_unreadable_total").await, 3.0);

    // And once more after a restart, now with an event after the markers.
    let mut hub = hub;
    hub.stop().await;
    drop(hub);
    let hub = TestHub::on(&db, HubConfig::default(), None).await;
    assert_eq!(hub.state(&run).await["event_count"], 5);
    hub.append(
        &run,
        json!([{"event": "run.finished", "status": "succeeded"}]),
    )
    .await;
    assert_eq!(seqs(&hub.all_events(&run).await), [1, 2, 3, 4, 5, 6]);
    assert_eq!(hub.state(&run).await["status"], "succeeded");
}

/// Runs `sql` on `db` behind the hub's back.
async fn execute(db: &TestDb, sql: &str) {
    match STORE {
        StoreKind::Sqlite => {
            let path = db.url().strip_prefix("sqlite://").expect("a SQLite URL");
            let conn = rusqlite::Connection::open(path).expect("the file opens");
            conn.busy_timeout(std::time::Duration::from_secs(10))
                .expect("a busy timeout");
            conn.execute_batch(sql).expect("the statement runs");
        }
        StoreKind::Postgres => {
            use sqlx::Connection;
            let mut conn = within("connecting", sqlx::PgConnection::connect(db.url()))
                .await
                .expect("the database connects");
            sqlx::raw_sql(sql)
                .execute(&mut conn)
                .await
                .expect("the statement runs");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_row_cannot_be_read_back_does_not_take_the_list_down() {
    let db = TestDb::new(STORE).await;
    let hub = TestHub::on(&db, HubConfig::default(), None).await;
    for id in ["fine", "summary", "broken"] {
        let run = hub.create_named(id).await;
        hub.append(&run, logs("m", 2)).await;
    }
    // A stored summary that is not JSON, and a status no hub writes.
    execute(
        &db,
        "UPDATE runs SET state = '{\"id\":' WHERE id = 'summary'",
    )
    .await;
    execute(
        &db,
        "UPDATE runs SET status = 'exploded' WHERE id = 'broken'",
    )
    .await;

    let (status, reply) = hub.call(Method::GET, "/v1/runs", None, None).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let listed: Vec<(&str, &str)> = reply["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [("summary", "summary"), ("fine", "fine")],
        "the broken run left out, the other listed with its initial state"
    );
    let mut runs = hub.sse("/v1/runs/stream", None, &[]).await;
    assert_eq!(runs.status, StatusCode::OK);
    assert_eq!(runs.message().await.expect("a run").json()["id"], "fine");
    hub.hub.sweep().await.expect("the sweep runs");
    // The run itself still answers: its state is folded from its events, never read
    // from the stored summary.
    let state = hub
        .state(&crate::util::Run {
            id: "summary".into(),
            write_token: String::new(),
            read_token: String::new(),
        })
        .await;
    assert_eq!(state["event_count"], 2, "{state}");
}

/// The ETA fields of a state and of its stages, which every view must agree on.
fn etas(state: &Value) -> Value {
    let fields = |v: &Value| json!([v["eta_s"], v["eta_low_s"], v["eta_high_s"], v["overdue"]]);
    let stages: Vec<Value> = state["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(fields)
        .collect();
    json!({"run": fields(state), "stages": stages})
}

/// The run `id` as `GET /v1/runs` lists it, and as the runs stream first sends it.
async fn listed(hub: &TestHub, id: &str) -> (Value, Value) {
    let (status, reply) = hub
        .call(Method::GET, "/v1/runs", hub.admin.as_deref(), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let listed = reply["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{id} listed in {reply}"))
        .clone();
    let mut sse = hub.sse("/v1/runs/stream", hub.admin.as_deref(), &[]).await;
    assert_eq!(sse.status, StatusCode::OK);
    let message = sse.message().await.expect("a message");
    assert_eq!(message.event.as_deref(), Some("run"), "{message:?}");
    (listed, message.json())
}

/// The runs list (`GET /v1/runs`, the runs stream), read from the stored summaries, and
/// the run's page (`GET /v1/runs/{id}`), from the folded state, give the same ETA at the
/// same hub clock while a unit is overdue: held, not counted down to zero; and so
/// after a restart. A summary stored before the ETA's basis was kept still reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_and_the_run_agree_on_an_overdue_eta_also_after_a_restart() {
    let db = TestDb::new(STORE).await;
    let clock = crate::util::manual_clock();
    let config = HubConfig {
        sweep_interval: std::time::Duration::from_secs(3600),
        ..HubConfig::default()
    };
    let mut hub = TestHub::on(&db, config.clone(), Some(clock.clone())).await;
    let run = hub.create_named("slow").await;
    hub.append(
        &run,
        json!([{"event": "run.started", "name": "slow", "total_steps": 2},
               {"event": "stage.started", "stage": "a", "total": 10}]),
    )
    .await;
    for done in 1..=5 {
        hub.advance(1.0);
        hub.append(
            &run,
            json!([{"event": "progress", "stage": "a", "done": done, "total": 10,
                      "elapsed_s": done as f64}]),
        )
        .await;
    }
    let fresh = hub.state(&run).await;
    let eta_then = fresh["stages"][0]["eta_s"]
        .as_f64()
        .expect("an ETA after 5 units");
    assert!(eta_then > 3.0, "5 of 10 at 1/s: {fresh}");

    // The sixth unit runs 20 s, twenty typical gaps: overdue.
    hub.advance(20.0);
    let page = hub.state(&run).await;
    let stage = &page["stages"][0];
    assert_eq!(stage["overdue"]["running_s"], 20.0, "{page}");
    let held = stage["eta_s"].as_f64().expect("an ETA");
    assert!(held > 0.0 && held < eta_then, "held after two gaps: {page}");
    assert!(
        page["eta_s"].as_f64().expect("the run's ETA") >= held,
        "{page}"
    );
    let (list, stream) = listed(&hub, "slow").await;
    assert_eq!(
        etas(&list),
        etas(&page),
        "GET /v1/runs against the run's page"
    );
    assert_eq!(
        etas(&stream),
        etas(&page),
        "the runs stream against the run's page"
    );
    assert_eq!(list, page, "the whole state");

    // A restart: the run's page folds the events anew, the list reads the summary.
    hub.stop().await;
    drop(hub);
    let hub = TestHub::on(&db, config, Some(clock.clone())).await;
    hub.advance(5.0);
    let page = hub.state(&run).await;
    assert_eq!(page["stages"][0]["overdue"]["running_s"], 25.0, "{page}");
    assert_eq!(page["stages"][0]["eta_s"], held, "still held: {page}");
    let (list, stream) = listed(&hub, "slow").await;
    assert_eq!(etas(&list), etas(&page), "after a restart, GET /v1/runs");
    assert_eq!(
        etas(&stream),
        etas(&page),
        "after a restart, the runs stream"
    );

    // A summary stored by a hub that kept no basis reads, and counts down as it did.
    let strip = match STORE {
        StoreKind::Sqlite => {
            "UPDATE runs SET state = json_remove(state, '$.stages[0].eta_basis') \
             WHERE id = 'slow'"
        }
        StoreKind::Postgres => {
            "UPDATE runs SET state = (state::jsonb #- '{stages,0,eta_basis}')::text \
             WHERE id = 'slow'"
        }
    };
    execute(&db, strip).await;
    let (list, _) = listed(&hub, "slow").await;
    let stage = &list["stages"][0];
    assert_eq!(stage["done"], 5, "{list}");
    assert_eq!(stage.get("eta_basis"), None, "{list}");
    // Without its basis it counts straight down (5 s left, 25 s ago): what the list
    // showed before, and what the checks above would catch.
    assert_eq!(stage["eta_s"], 0.0, "{list}");
    assert_eq!(stage.get("overdue"), None, "{list}");
}
