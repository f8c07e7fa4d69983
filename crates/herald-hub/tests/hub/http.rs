//! The hub's HTTP surface before any route: bodies must say they are JSON; an open hub
//! answers only loopback names (`Host`) and pages it allows (`Origin`); and what is
//! answered outside the routes (405, a path that is not UTF-8, what hyper cannot
//! parse) has the error body of docs/http-api.md#errors too. On SQLite only: none of it reaches the store.

use std::time::Duration;

use herald_hub::{Hub, HubConfig, SqliteStore};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::util::{
    ADMIN, Case, RawConn, StoreKind, TestHub, check, error_body, logs, send, within,
};

/// Bodies every POST route takes, typed as a browser may send them without a
/// preflight, or not typed at all: each must be refused with 415.
fn untyped_bodies(token: Option<&str>) -> Vec<Case> {
    let mut cases = Vec::new();
    for (what, path, body) in [
        (
            "create",
            "/v1/runs",
            r#"{"name": "from a web page"}"#.to_owned(),
        ),
        ("append", "/v1/runs/target/events", logs("x", 1).to_string()),
        (
            "cancel",
            "/v1/runs/target/cancel",
            r#"{"reason": "x"}"#.to_owned(),
        ),
        (
            "AG-UI",
            "/v1/runs/target/stream?format=ag-ui",
            "{}".to_owned(),
        ),
    ] {
        let mut typed: Vec<Case> = [
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json; charset=iso-8859-1",
        ]
        .into_iter()
        .map(|content_type| Case::new(what, Method::POST, path).raw(body.clone(), content_type))
        .collect();
        typed.push(Case::new(what, Method::POST, path).untyped(body.clone()));
        if path == "/v1/runs" {
            // NDJSON is the append's alone.
            typed.push(
                Case::new(what, Method::POST, path).raw(body.clone(), "application/x-ndjson"),
            );
        }
        cases.extend(typed.into_iter().map(|case| {
            let case = case.expect(415, "unsupported_media_type");
            match token {
                Some(token) => case.token(token),
                None => case,
            }
        }));
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_must_say_they_are_json_and_nothing_else_is_stored() {
    for with_token in [false, true] {
        let hub = if with_token {
            TestHub::with_admin(StoreKind::Sqlite).await
        } else {
            TestHub::open(StoreKind::Sqlite).await
        };
        let target = hub.create_named("target").await;
        // The admin token opens every route, so that only the media type is wrong.
        let token = hub.admin.clone();
        check(&hub, untyped_bodies(token.as_deref())).await;

        // A missing Content-Type is named as missing, a wrong one by its value.
        let (status, body) = send(
            hub.request(Method::POST, "/v1/runs", token.as_deref())
                .header("content-type", "text/plain")
                .body(r#"{"name": "n"}"#),
        )
        .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let message = error_body(&body, "unsupported_media_type")["message"].to_string();
        assert!(
            message.contains("text/plain") && message.contains("application/json"),
            "{message}"
        );

        // Nothing of it was stored: no new run, no event, no cancel.
        let (_, list) = hub
            .call(Method::GET, "/v1/runs", token.as_deref(), None)
            .await;
        assert_eq!(list["runs"].as_array().map(Vec::len), Some(1), "{list}");
        assert!(hub.all_events(&target).await.is_empty());
        assert_eq!(hub.state(&target).await["cancel_requested"], false);

        // What does say JSON is taken, with a UTF-8 charset or none; a cancel without
        // a body needs no media type.
        let (status, body) = send(
            hub.request(Method::POST, "/v1/runs", token.as_deref())
                .header("content-type", "Application/JSON; charset=utf-8")
                .body(r#"{"name": "typed"}"#),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        hub.append(&target, logs("m", 1)).await;
        let (status, body) = hub
            .call(
                Method::POST,
                "/v1/runs/target/cancel",
                Some(&target.write_token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_hub_answers_only_requests_sent_to_loopback_names() {
    let hub = TestHub::open(StoreKind::Sqlite).await;
    let port = hub.url.rsplit(':').next().expect("a port").to_owned();
    // A page whose name was rebound to 127.0.0.1 sends its own name in `Host`.
    for host in [
        format!("evil.test:{port}"),
        "evil.test".to_owned(),
        format!("127.0.0.1.nip.io:{port}"),
        format!("localhost.evil.test:{port}"),
    ] {
        for (method, path, body) in [
            (Method::GET, "/v1/runs", None),
            (Method::GET, "/healthz", None),
            (Method::POST, "/v1/runs", Some(json!({"name": "rebound"}))),
        ] {
            let mut req = hub
                .request(method.clone(), path, None)
                .header("host", &host);
            if let Some(body) = body {
                req = req.json(&body);
            }
            let (status, reply) = send(req).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} to {host}");
            let error = error_body(&reply, "host_not_allowed");
            assert!(error["message"].to_string().contains(&host), "{reply}");
        }
    }
    let (_, list) = hub.call(Method::GET, "/v1/runs", None, None).await;
    assert_eq!(list["runs"], json!([]), "nothing was created");

    // Every name of loopback is fine, with any port.
    for host in [
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "127.0.0.2:1".to_owned(),
    ] {
        let (status, body) = send(
            hub.request(Method::GET, "/v1/runs", None)
                .header("host", &host),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
    }

    // With an admin token, tokens protect the hub, whatever name it is reached by.
    let guarded = TestHub::with_admin(StoreKind::Sqlite).await;
    let (status, body) = send(
        guarded
            .request(Method::GET, "/v1/runs", Some(ADMIN))
            .header("host", "hub.example.com"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_hub_refuses_pages_of_origins_it_does_not_allow() {
    let hub = TestHub::start(
        StoreKind::Sqlite,
        HubConfig {
            cors_origins: vec!["http://front.test:3000".to_owned()],
            ..HubConfig::default()
        },
        None,
    )
    .await;
    let run = hub.create_named("r").await;
    hub.append(&run, logs("m", 1)).await;
    for origin in [
        "http://evil.test",
        "null",
        "http://127.0.0.1:1",
        "https://front.test:3000",
    ] {
        let cases = vec![
            Case::new("list", Method::GET, "/v1/runs"),
            Case::new("state", Method::GET, "/v1/runs/r"),
            Case::new("poll", Method::GET, "/v1/runs/r/events"),
            Case::new("stream", Method::GET, "/v1/runs/r/stream"),
            Case::new("create", Method::POST, "/v1/runs").json(json!({"name": "n"})),
            Case::new("append", Method::POST, "/v1/runs/r/events").json(logs("x", 1)),
            // A browser sends a bodiless POST without a preflight too.
            Case::new("cancel", Method::POST, "/v1/runs/r/cancel"),
            Case::new("delete", Method::DELETE, "/v1/runs/r"),
        ]
        .into_iter()
        .map(|case| {
            case.header("origin", origin)
                .expect(403, "origin_not_allowed")
        })
        .collect();
        check(&hub, cases).await;
    }
    // A WebSocket is not under CORS at all: the browser lets any page open one.
    let (status, body) = ws_from(&hub, "r", "http://evil.test").await;
    assert_eq!(status, 403);
    error_body(&body, "origin_not_allowed");

    // Nothing was changed.
    assert_eq!(hub.all_events(&run).await.len(), 1);
    assert_eq!(hub.state(&run).await["cancel_requested"], false);

    // The hub's own pages (its own origin) and the origins named for CORS are fine.
    for origin in [
        hub.url.clone(),
        "http://front.test:3000".to_owned(),
        "HTTP://Front.Test:3000".to_owned(),
    ] {
        let (status, body) = send(
            hub.request(Method::POST, "/v1/runs/r/cancel", None)
                .header("origin", &origin)
                .json(&json!({"reason": "from a page"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{origin}: {body}");
        let (status, body) = send(
            hub.request(Method::GET, "/v1/runs/r", None)
                .header("origin", &origin),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{origin}: {body}");
    }
    let (status, _) = ws_from(&hub, "r", &hub.url).await;
    assert_eq!(status, 101, "the dashboard's own WebSocket");

    // With an admin token, a page needs a token, and its origin is CORS's business.
    let guarded = TestHub::with_admin(StoreKind::Sqlite).await;
    let (status, body) = send(
        guarded
            .request(Method::GET, "/v1/runs", Some(ADMIN))
            .header("origin", "http://evil.test"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The status and JSON body of a WebSocket handshake on run `run` from a page of
/// `origin`, over a raw connection (101 has no body: `Null`).
async fn ws_from(hub: &TestHub, run: &str, origin: &str) -> (u16, serde_json::Value) {
    let mut conn = RawConn::open(&hub.url).await;
    let host = hub.url.trim_start_matches("http://");
    let request = format!(
        "GET /v1/runs/{run}/ws HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    assert!(conn.write(request.as_bytes()).await);
    let response = conn.response("the handshake's answer").await;
    let body = if response.body.is_empty() {
        serde_json::Value::Null
    } else {
        response.json()
    };
    (response.status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_outside_the_routes_have_the_error_body_too() {
    let hub = TestHub::open(StoreKind::Sqlite).await;
    hub.create_named("r").await;
    let cases = vec![
        Case::new("a path that is not UTF-8", Method::GET, "/v1/runs/%FF")
            .expect(400, "invalid_path")
            .field("id"),
        Case::new(
            "... on a route under it",
            Method::GET,
            "/v1/runs/%C3%28/events",
        )
        .expect(400, "invalid_path")
        .field("id"),
        Case::new("... of a stream", Method::GET, "/v1/runs/%FF/stream")
            .expect(400, "invalid_path")
            .field("id"),
        Case::new("... of a WebSocket", Method::GET, "/v1/runs/%FF/ws")
            .expect(400, "invalid_path")
            .field("id"),
        Case::new("... posted to", Method::POST, "/v1/runs/%FF/events")
            .json(logs("m", 1))
            .expect(400, "invalid_path")
            .field("id"),
        Case::new("... of an asset", Method::GET, "/assets/%FF.js")
            .expect(400, "invalid_path")
            .field("file"),
        Case::new("PUT on the runs", Method::PUT, "/v1/runs")
            .json(json!({"name": "n"}))
            .expect(405, "method_not_allowed"),
        Case::new(
            "DELETE on a run's events",
            Method::DELETE,
            "/v1/runs/r/events",
        )
        .expect(405, "method_not_allowed"),
        Case::new("PATCH on a run", Method::PATCH, "/v1/runs/r").expect(405, "method_not_allowed"),
        Case::new("POST on /healthz", Method::POST, "/healthz").expect(405, "method_not_allowed"),
    ];
    check(&hub, cases).await;

    // 405 keeps its `Allow` header.
    let resp = within(
        "the answer",
        hub.request(Method::PUT, "/v1/runs/r", None).send(),
    )
    .await
    .expect("the hub answers");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = resp.headers()["allow"].to_str().expect("text").to_owned();
    assert!(allow.contains("GET") && allow.contains("DELETE"), "{allow}");

    // What hyper refuses before any route: a URI over its 64 KiB, more headers than it
    // takes, a request line or header that is not HTTP. Sent raw: no client would.
    let host = hub.url.trim_start_matches("http://").to_owned();
    for (what, request, status, code) in [
        (
            "a URI over 64 KiB",
            format!(
                "GET /v1/runs/{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
                "x".repeat(70_000)
            ),
            414,
            "uri_too_long",
        ),
        (
            // Many headers rather than long ones: the whole request is read before the
            // hub refuses it, so closing cannot reset the connection under its answer.
            "more headers than the hub takes",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: {host}\r\n{}\r\n",
                (0..150)
                    .map(|i| format!("X-H{i}: v\r\n"))
                    .collect::<String>()
            ),
            431,
            "headers_too_large",
        ),
        (
            "a request line that is not HTTP",
            "GET /\x01 nonsense\r\n\r\n".to_owned(),
            400,
            "malformed_request",
        ),
        (
            "a header without a colon",
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nno colon here\r\n\r\n"),
            400,
            "malformed_request",
        ),
    ] {
        let mut conn = RawConn::open(&hub.url).await;
        // The hub may answer and close before all of a huge request is written.
        let _ = conn.write(request.as_bytes()).await;
        let response = conn.response(what).await;
        assert_eq!(response.status, status, "{what}");
        assert_eq!(
            response.header("content-type"),
            Some("application/json"),
            "{what}"
        );
        error_body(&response.json(), code);
    }
    // The hub still serves.
    let (status, _) = hub.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_hub_refuses_to_serve_with_a_weak_admin_token() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = SqliteStore::open(&dir.path().join("herald.db"))
        .await
        .expect("the store opens");
    let store: std::sync::Arc<dyn herald_hub::Store> = std::sync::Arc::new(store);
    for token in [
        "",
        "   \t  \n          ",
        "secret",
        "fifteen-chars!!",
        "ünïcödé-12345",
    ] {
        let hub = Hub::new(
            store.clone(),
            HubConfig {
                admin_token: Some(token.to_owned()),
                ..HubConfig::default()
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let res = within(
            "serve to refuse",
            herald_hub::serve(listener, hub, std::future::pending()),
        )
        .await;
        let err = res.expect_err(&format!("the token {token:?} is refused"));
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("16"), "{err}");
    }
    // Sixteen characters will do.
    let hub = Hub::new(
        store,
        HubConfig {
            admin_token: Some("sixteen-chars-ok".to_owned()),
            ..HubConfig::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let served = tokio::spawn(herald_hub::serve(
        listener,
        hub,
        tokio::time::sleep(Duration::from_millis(1)),
    ));
    within("the hub to serve and stop", served)
        .await
        .expect("the task ran")
        .expect("a token of 16 characters is taken");
}
