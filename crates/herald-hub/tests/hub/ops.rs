//! `/healthz`, `/metrics` and `/openapi.json`, and CORS for pages of other origins.

use herald_hub::HubConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::STORE;
use crate::util::{TestHub, finished, logs, send, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_without_a_token() {
    let hub = TestHub::with_admin(STORE).await;
    let (status, body) = hub.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_runs_events_subscribers_and_append_latency() {
    let hub = TestHub::open(STORE).await;
    let text = hub.metrics().await;
    for name in [
        "herald_runs{status=\"running\"}",
        "herald_events_appended_total",
        "herald_subscribers",
        "herald_append_seconds_bucket{le=\"+Inf\"}",
        "herald_append_seconds_sum",
        "herald_append_seconds_count",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "no {name} in:\n{text}"
        );
    }
    assert_eq!(hub.metric("herald_runs{status=\"running\"}").await, 0.0);

    let a = hub.create_named("a").await;
    let b = hub.create_named("b").await;
    hub.append(&a, logs("m", 3)).await;
    hub.append(
        &a,
        json!([{"event": "log", "level": "info", "message": "x", "id": "x"}]),
    )
    .await;
    hub.append(
        &a,
        json!([{"event": "log", "level": "info", "message": "x", "id": "x"}]),
    )
    .await;
    hub.append(&b, json!([finished("succeeded")])).await;
    assert_eq!(hub.metric("herald_runs{status=\"running\"}").await, 1.0);
    assert_eq!(hub.metric("herald_runs{status=\"succeeded\"}").await, 1.0);
    assert_eq!(hub.metric("herald_events_appended_total").await, 5.0);
    assert_eq!(hub.metric("herald_events_duplicate_total").await, 1.0);
    assert_eq!(
        hub.metric("herald_append_seconds_bucket{le=\"+Inf\"}")
            .await,
        4.0
    );
    assert_eq!(hub.metric("herald_append_seconds_count").await, 4.0);
    // The buckets are cumulative.
    let text = hub.metrics().await;
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("herald_append_seconds_bucket"))
        .map(|l| {
            l.rsplit_once(' ')
                .expect("a sample")
                .1
                .parse()
                .expect("a number")
        })
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");

    // Subscribers are counted while they are open.
    assert_eq!(hub.metric("herald_subscribers").await, 0.0);
    let sse = hub.stream(&a, "", None).await;
    let ws = hub.ws("a", "", None).await.expect("a socket");
    wait_until("two subscribers", || async {
        hub.metric("herald_subscribers").await == 2.0
    })
    .await;
    drop(sse);
    drop(ws);
    wait_until("the subscribers to be gone", || async {
        hub.metric("herald_subscribers").await == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_describes_every_route() {
    let hub = TestHub::with_admin(STORE).await;
    let (status, doc) = send(hub.request(Method::GET, "/openapi.json", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string());
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/v1/runs", &["post", "get"][..]),
        ("/v1/runs/{id}/events", &["post", "get"]),
        ("/v1/runs/{id}", &["get", "delete"]),
        ("/v1/runs/{id}/stream", &["get", "post"]),
        ("/v1/runs/{id}/ws", &["get"]),
        ("/v1/runs/{id}/cancel", &["post"]),
        ("/v1/runs/stream", &["get"]),
        ("/healthz", &["get"]),
        ("/metrics", &["get"]),
    ] {
        let entry: &Value = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is missing from {:?}", paths.keys()));
        for method in methods {
            assert!(
                entry[*method]["responses"].is_object(),
                "{method} {path} has no responses: {entry}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_lets_the_named_origins_in_and_no_others() {
    let config = HubConfig {
        admin_token: Some(crate::util::ADMIN.to_owned()),
        cors_origins: vec!["http://front.test:3000".to_owned()],
        ..HubConfig::default()
    };
    let hub = TestHub::start(STORE, config, None).await;
    let preflight = |origin: &'static str| {
        hub.request(Method::OPTIONS, "/v1/runs/r/stream?format=ag-ui", None)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let allowed = preflight("http://front.test:3000")
        .await
        .expect("the hub answers");
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let header = |resp: &reqwest::Response, name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_lowercase)
    };
    assert_eq!(
        header(&allowed, "access-control-allow-origin").as_deref(),
        Some("http://front.test:3000")
    );
    let headers = header(&allowed, "access-control-allow-headers").unwrap_or_default();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );
    assert!(header(&allowed, "access-control-allow-methods").is_some_and(|m| m.contains("post")));
    assert_eq!(header(&allowed, "access-control-allow-credentials"), None);

    let refused = preflight("http://evil.test")
        .await
        .expect("the hub answers");
    assert_eq!(header(&refused, "access-control-allow-origin"), None);

    // A simple request from the origin gets the header too, and 429's Retry-After is
    // readable by the page.
    let resp = hub
        .request(Method::GET, "/healthz", None)
        .header("origin", "http://front.test:3000")
        .send()
        .await
        .expect("the hub answers");
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some("http://front.test:3000")
    );
    assert!(
        header(&resp, "access-control-expose-headers").is_some_and(|h| h.contains("retry-after"))
    );

    // On an open hub, `*` is refused (any page could read and change its runs) and
    // named origins are still let in, whatever their case.
    let open = TestHub::start(
        STORE,
        HubConfig {
            cors_origins: vec!["*".to_owned(), "HTTP://Front.Test:3000".to_owned()],
            ..HubConfig::default()
        },
        None,
    )
    .await;
    for (origin, allowed) in [
        ("http://evil.test", None),
        ("http://front.test:3000", Some("http://front.test:3000")),
    ] {
        let resp = open
            .request(Method::GET, "/healthz", None)
            .header("origin", origin)
            .send()
            .await
            .expect("the hub answers");
        assert_eq!(
            header(&resp, "access-control-allow-origin").as_deref(),
            allowed,
            "{origin}"
        );
    }

    // Without origins, no CORS at all.
    let plain = TestHub::with_admin(STORE).await;
    let resp = plain
        .request(Method::GET, "/healthz", None)
        .header("origin", "http://front.test:3000")
        .send()
        .await
        .expect("the hub answers");
    assert_eq!(header(&resp, "access-control-allow-origin"), None);
}
