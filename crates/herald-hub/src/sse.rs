//! A Server-Sent Events response: keep-alive comments, and the headers that keep
//! proxies from buffering or caching it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};

use crate::cursor::Cursor;
use crate::hub::Hub;

fn sse_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

pub(crate) fn sse_of(hub: &Hub, stream: impl Stream<Item = SseEvent> + Send + 'static) -> Response {
    let keep_alive = KeepAlive::new().interval(hub.config().keep_alive);
    sse_headers(
        Sse::new(stream.map(Ok::<_, Infallible>))
            .keep_alive(keep_alive)
            .into_response(),
    )
}

/// A run's events as Server-Sent Events: each message written once per feed and
/// shared by its subscribers ([`crate::feed::FeedEvent::sse_message`]), with a
/// keep-alive comment after each `keep_alive` of silence, as [`sse_of`] sends.
pub(crate) fn sse_frames(hub: &Hub, cursor: Cursor) -> Response {
    let messages = stream::unfold(cursor, |mut cursor| async move {
        let event = cursor.next().await?;
        Some((event.sse_message(), cursor))
    });
    let body = Body::from_stream(KeepAliveFrames {
        messages: Box::pin(messages),
        keep_alive: hub.config().keep_alive,
        timer: Box::pin(tokio::time::sleep(hub.config().keep_alive)),
        last_sent: tokio::time::Instant::now(),
    });
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    sse_headers(response)
}

/// What a quiet SSE stream sends to keep its connection open: an empty comment.
const KEEP_ALIVE_COMMENT: &[u8] = b": \n\n";

/// Ready SSE messages, and a keep-alive comment after each `keep_alive` without one.
///
/// The timer is not reset for every message (a timer-wheel update per subscriber per
/// event): when it fires, it is set again for `keep_alive` after the last message if
/// one was sent since, and only sends the comment if none was.
struct KeepAliveFrames {
    messages: Pin<Box<dyn Stream<Item = Bytes> + Send>>,
    keep_alive: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    last_sent: tokio::time::Instant,
}

impl Stream for KeepAliveFrames {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.messages.as_mut().poll_next(cx) {
            Poll::Ready(Some(message)) => {
                this.last_sent = tokio::time::Instant::now();
                return Poll::Ready(Some(Ok(message)));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        loop {
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let due = this.last_sent + this.keep_alive;
            if due > tokio::time::Instant::now() {
                this.timer.as_mut().reset(due);
                continue;
            }
            this.last_sent = tokio::time::Instant::now();
            this.timer.as_mut().reset(this.last_sent + this.keep_alive);
            return Poll::Ready(Some(Ok(Bytes::from_static(KEEP_ALIVE_COMMENT))));
        }
    }
}
