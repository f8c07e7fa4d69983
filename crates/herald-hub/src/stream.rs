//! Reading a run as it happens: the long poll, Server-Sent Events (events or state),
//! the WebSocket, and the stream of all runs' states.
//!
//! All of them read a run's events through a [`Cursor`].

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt as _, stream};
use herald_protocol::api::{ApiErrorCode, ErrorBody, EventsPage};
use herald_protocol::{RunId, RunState, RunStatus};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{broadcast, watch};

use crate::access::{Admin, Body, Params, ReadRun, parse_run_id};
use crate::agui;
use crate::cursor::{Cursor, last_event_id, parse_types};
use crate::error::{ApiError, db_error, json_body, store_error};
use crate::feed::Feed;
use crate::feed::FeedEvent;
use crate::hub::{Hub, RunChange, ShownRuns};
use crate::metrics::SubscriberGuard;
use crate::sse::{sse_frames, sse_of};
use crate::store::{RunFilter, StoreError};

/// Longest long poll, in seconds; longer waits are cut to this.
const MAX_WAIT_S: f64 = 60.0;
/// At most four state messages a second on `view=state`.
const STATE_INTERVAL: Duration = Duration::from_millis(250);

/// `GET /v1/runs/{id}/events` query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct PollQuery {
    /// Events after this `seq` (default 0), at most the run's last.
    #[param(minimum = 0)]
    after: Option<u64>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Type patterns, comma-separated (`tool.*,run.*`).
    #[param(value_type = Option<crate::cursor::TypePatterns>)]
    types: Option<String>,
    /// Wait up to this many seconds for a new event (longer waits are cut to 60).
    #[param(minimum = 0)]
    wait: Option<f64>,
    /// A read token, for clients that cannot set headers: the `readToken` scheme.
    #[param(ignore)]
    /// Read by [`ReadRun`]; named here so that `deny_unknown_fields` takes it.
    #[serde(rename = "token")]
    _token: Option<String>,
}

#[utoipa::path(get, path = "/v1/runs/{id}/events", params(("id" = RunId, Path, description = "run id"), PollQuery),
    security(("bearerAuth" = []), ("readToken" = [])),
    responses((status = 200, description = "the events after the cursor; with `wait`, once there is one or the wait is over", body = EventsPage),
              (status = 400, description = "a parameter is invalid, or the cursor is past the run's last event (`cursor_out_of_range`)", body = ErrorBody)))]
pub(crate) async fn poll(
    State(hub): State<Hub>,
    Params(query): Params<PollQuery>,
    ReadRun(id): ReadRun,
) -> Result<Response, ApiError> {
    let limit = match query.limit {
        None => 100,
        Some(n @ 1..=1000) => n as usize,
        Some(n) => {
            return Err(ApiError::invalid_field(
                "limit",
                format!("`limit` must be from 1 to 1000, not {n}"),
            ));
        }
    };
    let wait = match query.wait {
        None => 0.0,
        Some(w) if w.is_finite() && w >= 0.0 => w.min(MAX_WAIT_S),
        Some(w) => {
            return Err(ApiError::invalid_field(
                "wait",
                format!("`wait` must be seconds from 0, not {w}"),
            ));
        }
    };
    let filter = parse_types(query.types.as_deref())?;
    let mut cursor = Cursor::open(&hub, &id, query.after.unwrap_or(0), filter).await?;
    let events = cursor.page(limit, wait).await?;
    let record = hub
        .store()
        .run(&id)
        .await
        .map_err(|e| store_error(&id, e))?;
    let page = PageOf {
        events: &events,
        last_seq: record.last_seq,
        status: record.status,
    };
    Ok(Json(page).into_response())
}

/// An [`EventsPage`] written from the events the cursor holds, not from copies of
/// them: the same JSON (`a_page_of_borrowed_events_is_an_events_page` holds it to it).
#[derive(Serialize)]
struct PageOf<'a> {
    #[serde(serialize_with = "shared_events")]
    events: &'a [Arc<FeedEvent>],
    last_seq: u64,
    status: RunStatus,
}

fn shared_events<S: serde::Serializer>(
    events: &&[Arc<FeedEvent>],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(events.iter().map(|e| &***e))
}

/// `GET /v1/runs/{id}/stream` query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SseQuery {
    /// Events after this `seq`, at most the run's last; `Last-Event-ID` takes precedence.
    #[param(minimum = 0)]
    after: Option<u64>,
    /// Type patterns, comma-separated; not with `format=ag-ui`.
    #[param(value_type = Option<crate::cursor::TypePatterns>)]
    types: Option<String>,
    /// `state` for the run's state instead of its events; not with `format=ag-ui`.
    #[param(value_type = Option<StreamView>)]
    view: Option<String>,
    /// `ag-ui` for the AG-UI event protocol instead of herald's events.
    #[param(value_type = Option<StreamFormat>)]
    format: Option<String>,
    /// A read token (EventSource cannot set headers): the `readToken` scheme.
    #[param(ignore)]
    /// Read by [`ReadRun`]; named here so that `deny_unknown_fields` takes it.
    #[serde(rename = "token")]
    _token: Option<String>,
}

/// What `view=` takes.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Only its schema is used: the handler reads the string.
pub(crate) enum StreamView {
    #[schema(rename = "events")]
    Events,
    #[schema(rename = "state")]
    State,
}

/// What `format=` takes.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Only its schema is used: the handler reads the string.
pub(crate) enum StreamFormat {
    #[schema(rename = "ag-ui")]
    AgUi,
}

#[utoipa::path(get, path = "/v1/runs/{id}/stream", params(("id" = RunId, Path, description = "run id"), SseQuery),
    security(("bearerAuth" = []), ("readToken" = [])),
    responses((status = 200, description = "Server-Sent Events: `id: SEQ`, `event: TYPE`, `data: EVENT`; with `view=state`, `event: state` and the run's state; with `format=ag-ui`, AG-UI's events as `data:` lines",
               content_type = "text/event-stream", body = String),
              (status = 204, description = "the run has finished and the cursor is at its end: nothing more will come"),
              (status = 400, description = "a parameter is invalid, the cursor or `Last-Event-ID` is not one of the stream's, or `types`/`view` was given with `format=ag-ui`", body = ErrorBody)))]
pub(crate) async fn sse(
    State(hub): State<Hub>,
    Params(query): Params<SseQuery>,
    ReadRun(id): ReadRun,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match query.format.as_deref() {
        None => {}
        Some(agui::FORMAT) => return agui_stream(hub, id, &headers, &query).await,
        Some(other) => {
            return Err(ApiError::invalid_field(
                "format",
                format!(
                    "unknown format `{other}`: use `{}`, or leave it out for herald's own events",
                    agui::FORMAT
                ),
            ));
        }
    }
    let last_event_id = last_event_id(
        &headers,
        |s| s.trim().parse::<u64>().ok(),
        "Last-Event-ID must be the seq of an event",
    )?;
    let after = last_event_id.or(query.after).unwrap_or(0);
    match query.view.as_deref() {
        None | Some("events") => {}
        Some("state") => return state_stream(hub, id).await,
        Some(other) => {
            return Err(ApiError::invalid_field(
                "view",
                format!("unknown view `{other}`: use `state`, or leave it out for events"),
            ));
        }
    }
    let cursor = Cursor::open(&hub, &id, after, parse_types(query.types.as_deref())?).await?;
    if cursor.is_done() {
        // EventSource reconnects after a stream ends; 204 is how it is told to stop.
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(sse_frames(&hub, cursor))
}

#[utoipa::path(post, path = "/v1/runs/{id}/stream",
    params(("id" = RunId, Path, description = "run id"),
           ("format" = StreamFormat, Query, description = "`ag-ui`: a POST on a run's stream is AG-UI's (herald's own events are a GET)"),
           ("after" = Option<u64>, Query, minimum = 0, description = "Resume after this event's messages, at most the run's last")),
    security(("bearerAuth" = []), ("readToken" = [])),
    request_body(content = agui::RunAgentInput, description = "AG-UI's RunAgentInput (an empty body is `{}`); its ids are ignored: the run is the one in the path"),
    responses((status = 200, description = "Server-Sent Events of AG-UI events (`data: <json>`), from the run's first event to its end",
               content_type = "text/event-stream", body = String),
              (status = 400, description = "`format` is not `ag-ui`, `types` or `view` was given, the cursor is not one of the stream's, or the body is not a RunAgentInput", body = ErrorBody)))]
/// `POST /v1/runs/{id}/stream?format=ag-ui`: how AG-UI's `HttpAgent` attaches to a run
/// (docs/http-api.md#ag-ui). herald's own stream is a `GET`.
pub(crate) async fn sse_post(
    State(hub): State<Hub>,
    Params(query): Params<SseQuery>,
    ReadRun(id): ReadRun,
    headers: HeaderMap,
    body: Result<Body, ApiError>,
) -> Result<Response, ApiError> {
    if query.format.as_deref() != Some(agui::FORMAT) {
        return Err(ApiError::invalid_field(
            "format",
            format!(
                "a POST on a run's stream is AG-UI's: add ?format={} (herald's own events are a GET)",
                agui::FORMAT
            ),
        ));
    }
    agui::check_input(&body?.0)?;
    agui_stream(hub, id, &headers, &query).await
}

/// `format=ag-ui`, after the token was checked: the whole run (herald's filters are
/// refused), resumed after `Last-Event-ID` or `?after=`.
async fn agui_stream(
    hub: Hub,
    id: RunId,
    headers: &HeaderMap,
    query: &SseQuery,
) -> Result<Response, ApiError> {
    if query.types.is_some() {
        return Err(agui::refuse("types"));
    }
    if query.view.is_some() {
        return Err(agui::refuse("view"));
    }
    let last_event_id = last_event_id(
        headers,
        agui::Resume::parse,
        "Last-Event-ID must be the id of a message of this stream (SEQ.INDEX)",
    )?;
    let after = query.after.map(agui::Resume::after);
    let record = hub
        .store()
        .run(&id)
        .await
        .map_err(|e| store_error(&id, e))?;
    agui::stream(hub, record, last_event_id.or(after)).await
}

/// `view=state`: the run's state on connect and after changes, at most four a second,
/// ending after the state that shows the run finished.
async fn state_stream(hub: Hub, id: RunId) -> Result<Response, ApiError> {
    let record = hub
        .store()
        .run(&id)
        .await
        .map_err(|e| store_error(&id, e))?;
    let feed = hub.feed(&id, record.last_seq);
    struct Watch {
        hub: Hub,
        id: RunId,
        feed: Arc<Feed>,
        changed: watch::Receiver<u64>,
        first: Option<RunState>,
        /// The `last_seq` of the last state sent.
        sent_seq: u64,
        sent_last: bool,
        _subscriber: SubscriberGuard,
    }
    let watch = Watch {
        changed: feed.subscribe(),
        feed,
        first: Some(record.state),
        sent_seq: 0,
        sent_last: false,
        _subscriber: hub.metrics().subscriber(),
        hub: hub.clone(),
        id,
    };
    let states = stream::unfold(watch, |mut w| async move {
        let _ = &w.feed;
        if w.sent_last {
            return None;
        }
        let state = match w.first.take() {
            Some(state) => state,
            None => {
                tokio::time::sleep(STATE_INTERVAL).await;
                // Send what changed since the last state sent, including what changed
                // during the pause; wait only when nothing did.
                loop {
                    w.changed.borrow_and_update();
                    let record = w.hub.store().run(&w.id).await.ok()?;
                    if record.finished() || record.last_seq > w.sent_seq {
                        break record.state;
                    }
                    tokio::select! {
                        res = w.changed.changed() => res.ok()?,
                        () = w.hub.shutdown_token().cancelled() => return None,
                    }
                }
            }
        };
        w.sent_last = state.status.is_terminal();
        w.sent_seq = state.last_seq;
        let state = state.at(w.hub.now());
        let data = serde_json::to_string(&state).ok()?;
        Some((
            SseEvent::default()
                .event("state")
                .id(state.last_seq.to_string())
                .data(data),
            w,
        ))
    });
    Ok(sse_of(&hub, states))
}

/// `GET /v1/runs/{id}/ws` query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WsQuery {
    after: Option<u64>,
    types: Option<String>,
    /// Read by [`ReadRun`]; named here so that `deny_unknown_fields` takes it.
    #[serde(rename = "token")]
    _token: Option<String>,
}

/// A client's message on the WebSocket.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Resume {
    after: u64,
}

pub(crate) async fn ws(
    State(hub): State<Hub>,
    Params(query): Params<WsQuery>,
    ReadRun(id): ReadRun,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let cursor = Cursor::open(
        &hub,
        &id,
        query.after.unwrap_or(0),
        parse_types(query.types.as_deref())?,
    )
    .await?;
    // Checked last, so that a plain GET learns about the run and its token first, and
    // in the hub's JSON error body rather than axum's text.
    let upgrade =
        upgrade.map_err(|e| ApiError::bad_request(ApiErrorCode::NotAWebsocket, e.body_text()))?;
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .read_buffer_size(WS_READ_BUFFER)
        .on_upgrade(move |socket| websocket(socket, cursor)))
}

/// Largest message a client may send: a resume (`{"after": SEQ}`) is a few bytes.
const MAX_CLIENT_MESSAGE: usize = 4096;

/// The WebSocket's read buffer. tungstenite zero-fills the free part of its read
/// buffer (up to this size) every time it tries to read, and the socket's loop tries
/// after every event it sends: at the default of 128 KiB that fill was a third of the
/// hub's CPU with 1,000 WebSockets (BENCHMARKS.md, "Issue 18: fan-out"), and it made
/// each socket's buffer resident. A client's messages fit in 4 KiB; a longer frame
/// still arrives whole (tungstenite reserves room for a frame once it knows its size).
const WS_READ_BUFFER: usize = MAX_CLIENT_MESSAGE;

async fn websocket(mut socket: WebSocket, mut cursor: Cursor) {
    loop {
        tokio::select! {
            event = cursor.next() => match event {
                Some(event) => {
                    // Every event already fetched goes out with one flush (one write),
                    // not one per event: `send` would flush each.
                    let mut event = Some(event);
                    while let Some(next) = event.take() {
                        if socket.feed(ws_text(&next)).await.is_err() {
                            return;
                        }
                        event = cursor.ready();
                    }
                    if socket.flush().await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            },
            message = socket.recv() => {
                let refused = match message {
                    Some(Ok(Message::Text(text))) => match resume(&mut cursor, text.as_str()).await {
                        Ok(()) => continue,
                        Err(e) => e,
                    },
                    Some(Ok(Message::Binary(_))) => Refusal {
                        code: close_code::UNSUPPORTED,
                        reason: "binary messages are not understood: send {\"after\": SEQ} as text".into(),
                        error: None,
                    },
                    Some(Ok(Message::Close(_))) | None => return,
                    Some(Ok(_)) => continue,
                    // The client broke the protocol (an unmasked frame, a text message that
                    // is not UTF-8, one over the size limit): tell it so, if it still
                    // listens.
                    Some(Err(e)) => Refusal {
                        code: close_code::PROTOCOL,
                        reason: format!("WebSocket protocol error: {e}"),
                        error: None,
                    },
                };
                refused.send(&mut socket).await;
                return;
            }
        }
    }
}

/// An event as a WebSocket text message: the feed's shared JSON, UTF-8 by construction.
fn ws_text(event: &FeedEvent) -> Message {
    let text =
        Utf8Bytes::try_from(event.json()).unwrap_or_else(|_| Utf8Bytes::from(event.to_json()));
    Message::Text(text)
}

/// Why the hub ends a WebSocket a client broke: the close frame's code and reason,
/// after the error body of docs/http-api.md#errors as a last text message when there is one.
struct Refusal {
    code: u16,
    reason: String,
    error: Option<ApiError>,
}

impl Refusal {
    async fn send(self, socket: &mut WebSocket) {
        if let Some(error) = &self.error {
            let _ = socket.send(Message::text(error.body_text())).await;
        }
        // A close frame's reason has room for 123 bytes.
        let mut reason = self.reason;
        if reason.len() > 123 {
            let mut end = 120;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
            reason.push_str("...");
        }
        let frame = CloseFrame {
            code: self.code,
            reason: reason.into(),
        };
        let _ = socket.send(Message::Close(Some(frame))).await;
    }
}

/// Moves the cursor as a client's `{"after": SEQ}` asks; anything else ends the socket
/// (policy violation, 1008), the error naming what was wrong.
async fn resume(cursor: &mut Cursor, text: &str) -> Result<(), Refusal> {
    let res = match json_body::<Resume>(text.as_bytes()) {
        Ok(resume) => cursor.seek(resume.after).await,
        Err(e) => Err(ApiError::invalid_message(e)),
    };
    res.map_err(|e| Refusal {
        code: close_code::POLICY,
        reason: format!("{}: {}", e.code(), e.message()),
        error: Some(e),
    })
}

/// `GET /v1/runs/stream` query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunsStreamQuery {
    status: Option<String>,
    parent: Option<String>,
}

/// `GET /v1/runs/stream`: `event: run` with a run's state whenever it changes (first
/// the latest runs), `event: deleted` with `{"id"}` when one is deleted.
///
/// A change reaches the stream from this hub's own writes and, through the store's
/// wake-ups, from other hubs', read from the store some time after it happened. So the
/// stream keeps what it told of each run and sends only news (see
/// [`ShownRuns::changed`]): never a state older than or equal to one it sent, nor one
/// of a run it said was deleted, unless the run was created again. Only a resync sends
/// its list again whole.
pub(crate) async fn runs_stream(
    State(hub): State<Hub>,
    _: Admin,
    Params(query): Params<RunsStreamQuery>,
) -> Result<Response, ApiError> {
    let filter = RunFilter {
        status: query
            .status
            .map(|s| s.parse().map_err(|e| ApiError::invalid_field("status", e)))
            .transpose()?,
        parent: query
            .parent
            .map(|p| {
                parse_run_id(&p).map_err(|_| ApiError::invalid_field("parent", "not a run id"))
            })
            .transpose()?,
        before: None,
        limit: 100,
    };
    struct Runs {
        hub: Hub,
        filter: RunFilter,
        changes: broadcast::Receiver<RunChange>,
        backlog: VecDeque<SseEvent>,
        /// Runs in this client's list: one that stops matching the filter is sent once
        /// more, so the client sees it leave (e.g. a running run that finished).
        shown: HashSet<RunId>,
        /// What this client was told of each run, its list included.
        told: ShownRuns,
        _subscriber: SubscriberGuard,
    }
    // Subscribed before the list is read, so that no change falls between the two.
    let changes = hub.changes();
    let mut runs = Runs {
        backlog: VecDeque::new(),
        changes,
        filter,
        shown: HashSet::new(),
        told: ShownRuns::default(),
        _subscriber: hub.metrics().subscriber(),
        hub: hub.clone(),
    };
    (runs.backlog, runs.shown) = snapshot(&hub, &runs.filter, &mut runs.told).await?;
    let messages = stream::unfold(runs, |mut r| async move {
        loop {
            if let Some(message) = r.backlog.pop_front() {
                return Some((message, r));
            }
            let change = tokio::select! {
                change = r.changes.recv() => change,
                () = r.hub.shutdown_token().cancelled() => return None,
            };
            match change {
                Ok(RunChange::State { state, generation }) => {
                    if !r.told.changed(&state.id, generation, Some(state.last_seq)) {
                        continue;
                    }
                    let keep = r.filter.status.is_none_or(|s| s == state.status)
                        && r.filter
                            .parent
                            .as_ref()
                            .is_none_or(|p| state.parent.as_ref() == Some(p));
                    let left = !keep && r.shown.remove(&state.id);
                    if keep {
                        r.shown.insert(state.id.clone());
                    }
                    if keep || left {
                        let state = state.at(r.hub.now());
                        let data = serde_json::to_string(&state).ok()?;
                        return Some((SseEvent::default().event("run").data(data), r));
                    }
                }
                Ok(RunChange::Deleted { id, generation }) => {
                    if !r.told.changed(&id, generation, None) {
                        continue;
                    }
                    r.shown.remove(&id);
                    let data = json!({"id": id}).to_string();
                    return Some((SseEvent::default().event("deleted").data(data), r));
                }
                // Fell behind, or changes were missed: send the current list again
                // rather than guess.
                Ok(RunChange::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    (r.backlog, r.shown) = resync(&r.hub, &r.filter, &r.shown, &mut r.told)
                        .await
                        .ok()?
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(sse_of(&hub, messages))
}

/// The current list again, after changes may have been missed: first, for each run
/// that was `shown` and is not in the list any more, `event: deleted` if it is gone or
/// its state once more if it is not (it left the filter, or newer runs pushed it out
/// of the list), so a client drops what was deleted meanwhile; then the list. What is
/// sent is recorded in `told`.
async fn resync(
    hub: &Hub,
    filter: &RunFilter,
    shown: &HashSet<RunId>,
    told: &mut ShownRuns,
) -> Result<(VecDeque<SseEvent>, HashSet<RunId>), ApiError> {
    let (list, listed) = snapshot(hub, filter, told).await?;
    let mut messages = VecDeque::with_capacity(list.len());
    for id in shown.difference(&listed) {
        match hub.store().run(id).await {
            Err(StoreError::NotFound) => {
                // Whatever this client was told of the run was read before this read,
                // so that creation, or a later one it was not told of, is gone.
                if let Some(generation) = told.generation(id) {
                    told.changed(id, generation, None);
                }
                let data = json!({"id": id}).to_string();
                messages.push_back(SseEvent::default().event("deleted").data(data));
            }
            Ok(record) => {
                told.changed(id, record.generation, Some(record.last_seq));
                let data = serde_json::to_string(&record.state.at(hub.now()))
                    .map_err(ApiError::internal)?;
                messages.push_back(SseEvent::default().event("run").data(data));
            }
            Err(e) => return Err(db_error(e)),
        }
    }
    messages.extend(list);
    Ok((messages, listed))
}

/// The current list as `event: run` messages, oldest first, and the runs in it; each
/// state is recorded in `told`, so that a change read before the list is not sent after
/// it.
async fn snapshot(
    hub: &Hub,
    filter: &RunFilter,
    told: &mut ShownRuns,
) -> Result<(VecDeque<SseEvent>, HashSet<RunId>), ApiError> {
    let records = hub.store().list(filter).await.map_err(db_error)?;
    let now = hub.now();
    let mut messages = VecDeque::with_capacity(records.len());
    for record in records.iter().rev() {
        told.changed(&record.id, record.generation, Some(record.last_seq));
        let data = serde_json::to_string(&record.state.at(now)).map_err(ApiError::internal)?;
        messages.push_back(SseEvent::default().event("run").data(data));
    }
    Ok((messages, records.into_iter().map(|r| r.id).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_protocol::{Draft, Log, LogLevel, Timestamp};

    #[test]
    fn a_page_of_borrowed_events_is_an_events_page() {
        let run = RunId::new("r").expect("a run id");
        let at = Timestamp::from_unix_micros(1_700_000_000_000_000);
        let events: Vec<Arc<FeedEvent>> = (1..=3)
            .map(|seq| {
                let log = Log {
                    level: LogLevel::Info,
                    message: format!("line {seq}"),
                };
                FeedEvent::new(Draft::new(at, log).stamp(run.clone(), seq, at))
            })
            .collect();
        let borrowed = PageOf {
            events: &events,
            last_seq: 7,
            status: RunStatus::Running,
        };
        let owned = EventsPage {
            events: events
                .iter()
                .map(|e| herald_protocol::Event::clone(e))
                .collect(),
            last_seq: 7,
            status: RunStatus::Running,
        };
        assert_eq!(
            serde_json::to_string(&borrowed).expect("serializes"),
            serde_json::to_string(&owned).expect("serializes")
        );
    }
}
