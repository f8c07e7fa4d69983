//! `GET /v1/runs/{id}/ws`: the run's events as JSON text messages.

use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::STORE;
use crate::util::{RawConn, TestHub, error_body, finished, logs, seqs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sends_events_resumes_and_closes_after_the_run() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("w").await;
    hub.append(&run, logs("m", 3)).await;

    let mut ws = hub
        .ws(&run.id, "", Some(&run.read_token))
        .await
        .expect("a socket");
    let first = ws.event().await;
    assert_eq!((first.seq, first.event_type()), (1, "log"));
    assert_eq!(first.run.as_str(), "w");
    assert_eq!(ws.event().await.seq, 2);
    assert_eq!(ws.event().await.seq, 3);

    // Live events.
    hub.append(&run, logs("live", 1)).await;
    assert_eq!(ws.event().await.seq, 4);

    // `{"after": SEQ}` moves the cursor back.
    ws.send(r#"{"after": 1}"#).await;
    let replayed = [ws.event().await, ws.event().await, ws.event().await];
    assert_eq!(seqs(&replayed), [2, 3, 4]);

    hub.append(&run, json!([finished("cancelled")])).await;
    let last = ws.event().await;
    assert_eq!((last.seq, last.event_type()), (5, "run.finished"));
    assert_eq!(ws.next().await, None, "closed after run.finished");

    // `?after=` on connect.
    let mut ws = hub
        .ws(&run.id, "after=3", Some(&run.read_token))
        .await
        .expect("a socket");
    assert_eq!(ws.event().await.seq, 4);
    assert_eq!(ws.event().await.seq, 5);
    assert_eq!(ws.next().await, None);

    // At the end of a finished run it closes at once.
    let mut ws = hub
        .ws(&run.id, "after=5", Some(&run.read_token))
        .await
        .expect("a socket");
    assert_eq!(ws.next().await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_filters_by_type() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("wf").await;
    let mut ws = hub
        .ws(&run.id, "types=tool.*", None)
        .await
        .expect("a socket");
    hub.append(
        &run,
        json!([
            {"event": "log", "level": "info", "message": "m"},
            {"event": "tool.started", "call_id": "c", "tool": "t"},
            finished("succeeded"),
        ]),
    )
    .await;
    let event = ws.event().await;
    assert_eq!((event.seq, event.event_type()), (2, "tool.started"));
    assert_eq!(ws.next().await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_hub_cannot_act_on_ends_the_socket_with_a_close_frame_saying_why() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("wc").await;
    hub.append(&run, logs("m", 2)).await;
    for (what, message, code, error) in [
        (
            "not JSON",
            WsMessage::text("hello"),
            1008,
            Some(("invalid_message", None)),
        ),
        (
            "not a resume",
            WsMessage::text(r#"{"before": 1}"#),
            1008,
            Some(("invalid_message", Some("before"))),
        ),
        (
            "a key given twice",
            WsMessage::text(r#"{"after": 0, "after": 2}"#),
            1008,
            Some(("invalid_message", Some("after"))),
        ),
        (
            "a cursor past the end",
            WsMessage::text(r#"{"after": 99}"#),
            1008,
            Some(("cursor_out_of_range", None)),
        ),
        ("binary", WsMessage::binary(vec![1, 2, 3]), 1003, None),
        (
            "over the size limit",
            WsMessage::text(format!(
                r#"{{"after": 1, "pad": "{}"}}"#,
                "x".repeat(10_000)
            )),
            1002,
            None,
        ),
    ] {
        let mut ws = hub.ws(&run.id, "", None).await.expect("a socket");
        assert_eq!(ws.event().await.seq, 1);
        assert_eq!(ws.event().await.seq, 2);
        ws.send_message(message).await;
        if let Some((error_code, field)) = error {
            let body = ws
                .next()
                .await
                .unwrap_or_else(|| panic!("{what}: an error message first"));
            let error = error_body(&body, error_code);
            assert_eq!(
                error.get("field").and_then(|f| f.as_str()),
                field,
                "{what}: {body}"
            );
        }
        let (got, reason) = ws.close_frame().await;
        assert_eq!(got, code, "{what}: {reason}");
        assert!(
            !reason.is_empty() && reason.len() <= 123,
            "{what}: {reason:?}"
        );
    }

    // A client that breaks the protocol (an unmasked frame) is told so too.
    let mut conn = RawConn::open(&hub.url).await;
    let host = hub.url.trim_start_matches("http://");
    let handshake = format!(
        "GET /v1/runs/{}/ws?after=2 HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        run.id
    );
    assert!(conn.write(handshake.as_bytes()).await);
    assert_eq!(conn.response("the handshake").await.status, 101);
    assert!(
        conn.write(&[0x81, 0x05, b'h', b'e', b'l', b'l', b'o'])
            .await
    );
    let frame = conn.until_closed("the hub to close the socket").await;
    assert!(frame.len() >= 4, "a close frame: {frame:?}");
    assert_eq!(frame[0], 0x88, "a final close frame: {frame:?}");
    assert_eq!(
        u16::from_be_bytes([frame[2], frame[3]]),
        1002,
        "{:?}",
        String::from_utf8_lossy(&frame[4..])
    );
}
