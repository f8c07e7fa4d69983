//! A Server-Sent Events response: keep-alive comments, and the headers that keep
//! proxies from buffering or caching it.

use std::convert::Infallible;

use axum::http::HeaderValue;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{Stream, StreamExt};

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
