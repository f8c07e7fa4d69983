//! Tokens: the admin token, each run's write and read tokens, `?token=` for
//! EventSource, and the open hub on loopback.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::STORE;
use crate::util::{ADMIN, Case, Run, TestHub, check, error_body, logs, seqs, types};

/// The ids of the hub's runs, sorted, as the admin sees them.
async fn run_ids(hub: &TestHub, token: Option<&str>) -> Vec<String> {
    let (status, body) = hub.call(Method::GET, "/v1/runs", token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut ids: Vec<String> = body["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["id"].as_str().expect("an id").to_owned())
        .collect();
    ids.sort();
    ids
}

/// Checks that `run` is deleted: its state is not found, even by the admin (or on an
/// open hub).
async fn assert_deleted(hub: &TestHub, run: &Run, token: Option<&str>) {
    let path = format!("/v1/runs/{}", run.id);
    let (status, body) = hub.call(Method::GET, &path, token, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    error_body(&body, "run_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_token_each_token_opens_only_its_own() {
    let hub = TestHub::with_admin(STORE).await;
    let a = hub.create_named("a").await;
    let b = hub.create_named("b").await;
    hub.append(&a, logs("a", 2)).await;
    hub.append(&b, logs("b", 2)).await;
    let new_run = json!({"name": "n"});

    let mut cases = vec![
        // No token, or one the hub does not know: 401.
        Case::new("create without a token", Method::POST, "/v1/runs")
            .json(new_run.clone())
            .expect(401, "unauthorized"),
        Case::new("create with an unknown token", Method::POST, "/v1/runs")
            .json(new_run.clone())
            .token("hw_0000")
            .expect(401, "unauthorized"),
        Case::new("list without a token", Method::GET, "/v1/runs").expect(401, "unauthorized"),
        Case::new("delete without a token", Method::DELETE, "/v1/runs/a")
            .expect(401, "unauthorized"),
        Case::new("state without a token", Method::GET, "/v1/runs/a").expect(401, "unauthorized"),
        Case::new("state with an unknown token", Method::GET, "/v1/runs/a")
            .token("nope")
            .expect(401, "unauthorized"),
        Case::new("poll without a token", Method::GET, "/v1/runs/a/events")
            .expect(401, "unauthorized"),
        Case::new("stream without a token", Method::GET, "/v1/runs/a/stream")
            .expect(401, "unauthorized"),
        Case::new("append without a token", Method::POST, "/v1/runs/a/events")
            .json(logs("x", 1))
            .expect(401, "unauthorized"),
        Case::new("cancel without a token", Method::POST, "/v1/runs/a/cancel")
            .expect(401, "unauthorized"),
        // `?token=` carries read tokens only.
        Case::new(
            "write token as ?token=",
            Method::GET,
            format!("/v1/runs/a/stream?token={}", a.write_token),
        )
        .expect(401, "unauthorized"),
        Case::new(
            "admin token as ?token=",
            Method::GET,
            format!("/v1/runs/a/stream?token={ADMIN}"),
        )
        .expect(401, "unauthorized"),
        Case::new(
            "write token as ?token= on a poll",
            Method::GET,
            format!("/v1/runs/a/events?token={}", a.write_token),
        )
        .expect(401, "unauthorized"),
        Case::new(
            "unknown ?token=",
            Method::GET,
            "/v1/runs/a/stream?token=hr_1234",
        )
        .expect(401, "unauthorized"),
        // A run's tokens do not administer the hub: 403.
        Case::new("create with a write token", Method::POST, "/v1/runs")
            .json(new_run.clone())
            .token(&a.write_token)
            .expect(403, "forbidden"),
        Case::new("list with a read token", Method::GET, "/v1/runs")
            .token(&a.read_token)
            .expect(403, "forbidden"),
        Case::new(
            "delete with its own write token",
            Method::DELETE,
            "/v1/runs/a",
        )
        .token(&a.write_token)
        .expect(403, "forbidden"),
        // A read token does not change its run.
        Case::new(
            "append with a read token",
            Method::POST,
            "/v1/runs/a/events",
        )
        .json(logs("x", 1))
        .token(&a.read_token)
        .expect(403, "forbidden"),
        Case::new(
            "cancel with a read token",
            Method::POST,
            "/v1/runs/a/cancel",
        )
        .token(&a.read_token)
        .expect(403, "forbidden"),
        Case::new(
            "another run's read token as ?token=",
            Method::GET,
            format!("/v1/runs/b/stream?token={}", a.read_token),
        )
        .expect(403, "forbidden"),
    ];
    // A token of run a opens nothing of run b.
    for token in [&a.read_token, &a.write_token] {
        for (what, method, path) in [
            ("b's state", Method::GET, "/v1/runs/b"),
            ("b's poll", Method::GET, "/v1/runs/b/events"),
            ("b's stream", Method::GET, "/v1/runs/b/stream"),
            (
                "b's state stream",
                Method::GET,
                "/v1/runs/b/stream?view=state",
            ),
            ("b's append", Method::POST, "/v1/runs/b/events"),
            ("b's cancel", Method::POST, "/v1/runs/b/cancel"),
            ("b's delete", Method::DELETE, "/v1/runs/b"),
        ] {
            let case = Case::new(what, method.clone(), path)
                .token(token)
                .expect(403, "forbidden");
            cases.push(if method == Method::POST && path.ends_with("events") {
                case.json(logs("x", 1))
            } else {
                case
            });
        }
    }
    check(&hub, cases).await;
    for token in [&a.read_token, &a.write_token] {
        let (status, body) = hub.ws("b", "", Some(token)).await.err().expect("refused");
        assert_eq!(status, StatusCode::FORBIDDEN);
        error_body(&body, "forbidden");
    }
    let (status, _) = hub.ws("b", "", None).await.err().expect("refused");
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Nothing refused was stored: no run created or deleted, no event appended, no
    // cancel requested, on either run.
    assert_eq!(run_ids(&hub, Some(ADMIN)).await, ["a", "b"]);
    for run in [&a, &b] {
        assert_eq!(seqs(&hub.all_events(run).await), [1, 2], "{}", run.id);
        assert_eq!(
            hub.state(run).await["cancel_requested"],
            false,
            "{}",
            run.id
        );
    }

    // What each token does open.
    assert_eq!(hub.state(&a).await["last_seq"], 2);
    assert_eq!(seqs(&hub.poll(&a, "").await.events), [1, 2]);
    assert_eq!(hub.append(&a, logs("c", 1)).await["last_seq"], 3);
    let (status, _) = hub
        .call(
            Method::POST,
            "/v1/runs/a/cancel",
            Some(&a.write_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // The cancel is stored: an event, and the state says so.
    let events = hub.all_events(&a).await;
    assert_eq!(types(&events[2..]), ["log", "run.cancel_requested"]);
    assert_eq!(hub.state(&a).await["cancel_requested"], true);
    let mut ws = hub
        .ws("a", "", Some(&a.read_token))
        .await
        .expect("a socket");
    assert_eq!(ws.event().await.seq, 1);
    let mut ws = hub
        .ws("a", &format!("token={}", a.read_token), None)
        .await
        .expect("a socket");
    assert_eq!(ws.event().await.seq, 1);

    // EventSource cannot set headers: the read token goes in the query.
    let mut sse = hub
        .sse(
            &format!("/v1/runs/a/stream?token={}", a.read_token),
            None,
            &[],
        )
        .await;
    assert_eq!(sse.status, StatusCode::OK);
    assert_eq!(sse.event().await.seq, 1);
    let (status, body) = hub
        .call(
            Method::GET,
            &format!("/v1/runs/a/events?token={}", a.read_token),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The admin token opens everything.
    let (status, body) = hub
        .call(Method::GET, "/v1/runs/b/events", Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = hub.call(Method::GET, "/v1/runs", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["runs"].as_array().map(Vec::len), Some(2));
    let (status, _) = hub
        .call(
            Method::POST,
            "/v1/runs/b/events",
            Some(ADMIN),
            Some(logs("admin", 1)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seqs(&hub.all_events(&b).await), [1, 2, 3], "stored");
    let (status, _) = hub
        .call(Method::DELETE, "/v1/runs/b", Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_deleted(&hub, &b, Some(ADMIN)).await;
    assert_eq!(run_ids(&hub, Some(ADMIN)).await, ["a"]);

    // A deleted run's tokens are gone with it.
    let (status, body) = hub
        .call(Method::GET, "/v1/runs/b", Some(&b.read_token), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_hub_needs_no_token_anywhere() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("free").await;
    let no_token = |method: Method, path: &str, body: Option<serde_json::Value>| {
        let hub = &hub;
        let path = path.to_owned();
        async move { hub.call(method, &path, None, body).await }
    };
    let (status, _) = no_token(Method::POST, "/v1/runs/free/events", Some(logs("m", 2))).await;
    assert_eq!(status, StatusCode::OK);
    for path in ["/v1/runs", "/v1/runs/free", "/v1/runs/free/events"] {
        let (status, body) = no_token(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let mut sse = hub.sse("/v1/runs/free/stream", None, &[]).await;
    assert_eq!(sse.event().await.seq, 1);
    let mut states = hub.sse("/v1/runs/free/stream?view=state", None, &[]).await;
    assert_eq!(
        states.message().await.expect("a state").json()["last_seq"],
        2
    );
    let mut runs = hub.sse("/v1/runs/stream", None, &[]).await;
    assert_eq!(runs.message().await.expect("a run").json()["id"], "free");
    let mut ws = hub.ws("free", "", None).await.expect("a socket");
    assert_eq!(ws.event().await.seq, 1);
    let (status, _) = no_token(Method::POST, "/v1/runs/free/cancel", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hub.state(&run).await["cancel_requested"], true, "stored");
    let (status, _) = no_token(Method::DELETE, "/v1/runs/free", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_deleted(&hub, &run, None).await;
    assert_eq!(run_ids(&hub, None).await, Vec::<String>::new());
}
