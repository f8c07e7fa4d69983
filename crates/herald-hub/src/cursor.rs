//! A reader's position in a run's events, for every way of reading them (the long
//! poll, SSE, the WebSocket, AG-UI): one [`Cursor`], and one reading of where a stream
//! resumes (`?after=`, `Last-Event-ID`) and of its `types=` filter.
//!
//! The cursor is the `seq` of the last event delivered, a queue of events fetched but
//! not yet delivered, and the run's [`Feed`] to wait on. It moves only when an event is
//! delivered, so a resumed stream continues exactly after it: no gap, no duplicate. A
//! cursor past the run's last event is an error, never a silent wait for events that
//! may not come.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::http::HeaderMap;
use herald_protocol::api::ApiErrorCode;
use herald_protocol::{EventBody, RunId, TypeFilter};
use tokio::sync::watch;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::error::{ApiError, store_error};
use crate::feed::{Feed, FeedEvent};
use crate::hub::Hub;
use crate::metrics::SubscriberGuard;
use crate::store::{RunRecord, StoreError};

/// Events fetched from the store or the feed at once.
const FETCH: usize = 256;

/// A reader's position in one run's events.
pub(crate) struct Cursor {
    hub: Hub,
    run: RunId,
    /// The `seq` of the last event delivered.
    after: u64,
    /// The `seq` of the last event fetched into `pending`.
    fetched: u64,
    pending: VecDeque<Arc<FeedEvent>>,
    filter: Option<TypeFilter>,
    feed: Arc<Feed>,
    changed: watch::Receiver<u64>,
    /// `run.finished` has been delivered: nothing can follow.
    done: bool,
    /// Look the run up before waiting: before the first wait, and after a wake that
    /// brought no event (deleting a run wakes its subscribers that way). Not after
    /// delivering events, or every subscriber would query the store on every event.
    verify: bool,
    _subscriber: SubscriberGuard,
}

impl Cursor {
    /// Opens a cursor after `after`; an error if `after` is past the run's last event.
    pub(crate) async fn open(
        hub: &Hub,
        run: &RunId,
        after: u64,
        filter: Option<TypeFilter>,
    ) -> Result<Cursor, ApiError> {
        let record = hub
            .store()
            .run(run)
            .await
            .map_err(|e| store_error(run, e))?;
        Cursor::on(hub, &record, after, filter)
    }

    /// [`Cursor::open`] on a run just read.
    pub(crate) fn on(
        hub: &Hub,
        record: &RunRecord,
        after: u64,
        filter: Option<TypeFilter>,
    ) -> Result<Cursor, ApiError> {
        let run = &record.state.id;
        check_cursor(after, record.last_seq)?;
        let feed = hub.feed(run, record.last_seq);
        let changed = feed.subscribe();
        Ok(Cursor {
            hub: hub.clone(),
            run: run.clone(),
            after,
            fetched: after,
            pending: VecDeque::new(),
            filter,
            feed,
            changed,
            done: record.finished() && after >= record.last_seq,
            verify: true,
            _subscriber: hub.metrics().subscriber(),
        })
    }

    /// Moves the cursor (a WebSocket client's `{"after": SEQ}`).
    pub(crate) async fn seek(&mut self, after: u64) -> Result<(), ApiError> {
        let record = self
            .hub
            .store()
            .run(&self.run)
            .await
            .map_err(|e| store_error(&self.run, e))?;
        check_cursor(after, record.last_seq)?;
        self.after = after;
        self.fetched = after;
        self.pending.clear();
        self.done = record.finished() && after >= record.last_seq;
        Ok(())
    }

    /// Whether `run.finished` was delivered: nothing can follow.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The next matching event already fetched, delivering (and skipping) as it goes.
    fn pop(&mut self) -> Option<Arc<FeedEvent>> {
        while let Some(event) = self.pending.pop_front() {
            self.after = event.seq;
            if matches!(event.body, EventBody::RunFinished(_)) {
                self.done = true;
                self.pending.clear();
            }
            if self
                .filter
                .as_ref()
                .is_none_or(|f| f.matches(event.event_type()))
            {
                return Some(event);
            }
        }
        None
    }

    /// The next matching event if one is already fetched, without waiting or reading:
    /// what a writer sends in the same write as the event [`Cursor::next`] gave it.
    pub(crate) fn ready(&mut self) -> Option<Arc<FeedEvent>> {
        self.pop()
    }

    /// Fetches what follows the fetched position: from the feed's ring when it holds
    /// it, from the store otherwise. Cancel-safe: state changes only after the await.
    async fn fill(&mut self) -> Result<(), StoreError> {
        self.changed.borrow_and_update();
        match self.feed.after(self.fetched, FETCH, &mut self.pending) {
            Some(n) if n > 0 => {}
            // The ring runs up to the feed's last seq and the cursor has all of it:
            // nothing is new, and the store need not be asked.
            Some(_) if self.feed.last_seq() <= self.fetched => {}
            _ => {
                let events = self
                    .hub
                    .store()
                    .events(&self.run, self.fetched, FETCH as u32)
                    .await?;
                self.pending.extend(events.into_iter().map(FeedEvent::new));
            }
        }
        if let Some(last) = self.pending.back() {
            self.fetched = last.seq;
        }
        Ok(())
    }

    /// Waits until the run may have new events; `false` when the hub is stopping.
    async fn wait(&mut self) -> bool {
        tokio::select! {
            res = self.changed.changed() => res.is_ok(),
            () = self.hub.shutdown_token().cancelled() => false,
        }
    }

    /// The next matching event, waiting for it; `None` once `run.finished` was
    /// delivered, or when the run is gone or the hub is stopping.
    pub(crate) async fn next(&mut self) -> Option<Arc<FeedEvent>> {
        loop {
            if let Some(event) = self.pop() {
                return Some(event);
            }
            if self.done || self.hub.shutdown_token().is_cancelled() {
                return None;
            }
            if let Err(e) = self.fill().await {
                tracing::warn!(run = %self.run, error = %e, "stream read failed");
                return None;
            }
            if !self.pending.is_empty() {
                self.verify = false;
                continue;
            }
            if self.verify && !self.still_exists().await {
                return None;
            }
            if !self.wait().await {
                return None;
            }
            self.verify = true;
        }
    }

    /// Up to `limit` matching events (the long poll): those there are, or, when there
    /// are none yet, the first to come within `wait_s` seconds; none when the wait is
    /// over or the hub is stopping. A run deleted while waited on is `404`.
    pub(crate) async fn page(
        &mut self,
        limit: usize,
        wait_s: f64,
    ) -> Result<Vec<Arc<FeedEvent>>, ApiError> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs_f64(wait_s);
        let mut woke = false;
        let mut events = Vec::new();
        loop {
            while events.len() < limit {
                match self.pop() {
                    Some(event) => events.push(event),
                    None => break,
                }
            }
            if events.len() >= limit || self.done {
                return Ok(events);
            }
            self.fill().await.map_err(|e| store_error(&self.run, e))?;
            if !self.pending.is_empty() {
                continue;
            }
            if !events.is_empty() || wait_s == 0.0 {
                return Ok(events);
            }
            // A wake that brings no event is how a deleted run's waiters are told.
            if woke && !self.still_exists().await {
                return Err(ApiError::run_not_found(self.run.as_str()));
            }
            tokio::select! {
                _ = self.changed.changed() => woke = true,
                () = tokio::time::sleep_until(deadline) => return Ok(events),
                () = self.hub.shutdown_token().cancelled() => return Ok(events),
            }
        }
    }

    async fn still_exists(&self) -> bool {
        !matches!(
            self.hub.store().run(&self.run).await,
            Err(StoreError::NotFound)
        )
    }
}

pub(crate) fn check_cursor(after: u64, last_seq: u64) -> Result<(), ApiError> {
    if after > last_seq {
        return Err(ApiError::bad_request(
            ApiErrorCode::CursorOutOfRange,
            format!(
                "the cursor {after} is past the run's last event ({last_seq}); resume from at most {last_seq}"
            ),
        ));
    }
    Ok(())
}

/// The `types=` of a stream: `None` for every event.
pub(crate) fn parse_types(types: Option<&str>) -> Result<Option<TypeFilter>, ApiError> {
    types
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<TypeFilter>()
                .map_err(|e| ApiError::invalid_field("types", e.to_string()))
        })
        .transpose()
}

/// The schema of `types=`: comma-separated type patterns, or nothing for every event.
/// The handlers read the parameter as a string, to name it in their errors.
pub(crate) struct TypePatterns;

impl PartialSchema for TypePatterns {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!(
                "^$|{}",
                herald_protocol::api::type_patterns_regex()
            )))
            .description(Some(
                "Type patterns, comma-separated: an event type (`text.delta`), a family \
                 (`tool.*`) or `*`",
            ))
            .into()
    }
}

impl ToSchema for TypePatterns {}

/// The `Last-Event-ID` an EventSource resumes with, read by `parse`; a 400 saying
/// `expected` when it is not one of the stream's ids.
pub(crate) fn last_event_id<T>(
    headers: &HeaderMap,
    parse: impl FnOnce(&str) -> Option<T>,
    expected: &str,
) -> Result<Option<T>, ApiError> {
    headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(parse)
                .ok_or_else(|| ApiError::bad_request(ApiErrorCode::InvalidCursor, expected))
        })
        .transpose()
}
