//! The REST routes of docs/http-api.md, and who may call them.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_protocol::api::{
    ApiErrorCode, Appended, CancelRun, Cancelled, CreateRun, Created, ErrorBody, Health,
    MAX_TRACK_CHARS, MAX_TRACK_ITEM_CHARS, MAX_TRACK_ITEMS, RunUrls, RunsPage,
};
use herald_protocol::{
    BatchFormat, Draft, MAX_EVENT_BYTES, RunCancelRequested, RunId, RunState, RunStatus, Timestamp,
    TypeFilter, parse_batch,
};
use serde::Deserialize;
use serde_json::Value;

use crate::access::{Admin, AdminRun, Body, Params, ReadRun, WriteRun, parse_run_id};
use crate::auth::{self, Scope};
use crate::error::{ApiError, db_error, json_body, store_error};
use crate::hub::Hub;
use crate::store::{Author, NewRun, RunFilter, StoreError};

/// Longest heartbeat timeout and time to live a run may ask for: a year.
const MAX_SECONDS: f64 = 366.0 * 86_400.0;
/// Longest run name, in bytes.
const MAX_NAME_BYTES: usize = 1024;
/// How far ahead of the hub's clock an event's `ts` may be: an hour. A producer's
/// clock synchronized or merely drifting is seconds off; one an hour or more ahead is
/// misconfigured (a time zone taken for UTC), and its times would make every view
/// wrong, so it is told at once rather than shown runs that started in the future.
const MAX_TS_AHEAD_S: f64 = 3600.0;
/// How far behind the hub's clock an event's `ts` may be: a week. Events reach a hub
/// late when a producer's outbox waited out an outage, or when yesterday's log is
/// replayed into it; nothing real is older, and a time of year 1 only makes an
/// absurd `elapsed_s`.
const MAX_TS_BEHIND_S: f64 = 7.0 * 86_400.0;

fn seconds(field: &str, value: Option<f64>, default: f64) -> Result<f64, ApiError> {
    match value {
        None => Ok(default),
        Some(s) if s.is_finite() && s > 0.0 && s <= MAX_SECONDS => Ok(s),
        Some(s) => Err(ApiError::invalid_field(
            field,
            format!("`{field}` must be a number of seconds above 0 and at most a year, not {s}"),
        )),
    }
}

fn base_url(hub: &Hub, headers: &HeaderMap) -> String {
    if let Some(url) = &hub.config().public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// A generated run id: the time and random hex.
fn generate_run_id(now: Timestamp) -> RunId {
    let suffix = &auth::generate(Scope::Read)[3..11];
    let stamp = now.as_datetime().format("%Y%m%dT%H%M%SZ");
    RunId::new(format!("run-{stamp}-{suffix}")).expect("generated ids use the run id charset")
}

#[utoipa::path(post, path = "/v1/runs", request_body = CreateRun, security(("bearerAuth" = [])),
    responses((status = 201, description = "the run is created", body = Created),
              (status = 400, description = "a field is invalid: `field` names it", body = ErrorBody),
              (status = 409, description = "a run with this id exists", body = ErrorBody)))]
pub(crate) async fn create_run(
    State(hub): State<Hub>,
    _: Admin,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let body: CreateRun = json_body(&body)?;
    let now = hub.now();
    let id = match body.id {
        Some(id) => parse_run_id(&id)?,
        None => generate_run_id(now),
    };
    check_name(&body.name)?;
    let parent = body
        .parent
        .map(|p| {
            RunId::new(p)
                .map_err(|e| ApiError::invalid_field("parent", format!("`parent` is an {e}")))
        })
        .transpose()?;
    let track = body.track.map(parse_track).transpose()?.flatten();
    if let Some(meta) = &body.meta {
        check_meta(meta)?;
    }
    let write_token = auth::generate(Scope::Write);
    let read_token = auth::generate(Scope::Read);
    let run = NewRun {
        id: id.clone(),
        name: body.name,
        parent,
        heartbeat_timeout_s: seconds(
            "heartbeat_timeout_s",
            body.heartbeat_timeout_s,
            hub.config().default_heartbeat_timeout_s,
        )?,
        ttl_s: seconds("ttl_s", body.ttl_s, hub.config().default_ttl_s)?,
        track,
        meta: body.meta,
        write_hash: auth::hash(&write_token),
        read_hash: auth::hash(&read_token),
        created_at: now,
    };
    let record = hub
        .store()
        .create_run(&run)
        .await
        .map_err(|e| store_error(&id, e))?;
    // A run created again under an old id starts with a full bucket, not the old one's.
    hub.limiter().forget(&id);
    hub.created(&record);
    let urls = run_urls(&base_url(&hub, &headers), &id, &read_token);
    let body = Created {
        id,
        write_token,
        read_token,
        urls,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// A run's `name`: 1 to [`MAX_NAME_BYTES`] bytes, not only spaces, without NUL.
fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(ApiError::invalid_field(
            "name",
            "`name` must be 1 to 1024 bytes",
        ));
    }
    // PostgreSQL's text cannot hold NUL; refused whichever the store, so that a run
    // that one hub takes no other refuses. (Other control characters are kept: a
    // command line as a name may hold a newline; views escape what they show.)
    if name.contains('\0') {
        return Err(ApiError::invalid_field(
            "name",
            "`name` must not contain NUL (\\u0000)",
        ));
    }
    Ok(())
}

/// A run's `track`: type patterns as one comma-separated string or a list of them;
/// `None` for `null`.
fn parse_track(track: Value) -> Result<Option<TypeFilter>, ApiError> {
    let track = match track {
        Value::Null => None,
        Value::String(s) => Some(s),
        Value::Array(items) if items.len() > MAX_TRACK_ITEMS => {
            return Err(ApiError::invalid_field(
                "track",
                format!("`track` may list at most {MAX_TRACK_ITEMS} patterns"),
            ));
        }
        Value::Array(items)
            if items
                .iter()
                .filter_map(Value::as_str)
                .any(|p| p.chars().count() > MAX_TRACK_ITEM_CHARS) =>
        {
            return Err(ApiError::invalid_field(
                "track",
                format!(
                    "each pattern of `track` must be at most {MAX_TRACK_ITEM_CHARS} characters"
                ),
            ));
        }
        Value::Array(items) => Some(
            items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        "track",
                        "`track` must be a string or a list of strings",
                    )
                })?
                .join(","),
        ),
        _ => {
            return Err(ApiError::invalid_field(
                "track",
                "`track` must be a string or a list of strings",
            ));
        }
    };
    if track
        .as_ref()
        .is_some_and(|t| t.chars().count() > MAX_TRACK_CHARS)
    {
        return Err(ApiError::invalid_field(
            "track",
            format!("`track` must be at most {MAX_TRACK_CHARS} characters"),
        ));
    }
    if track
        .as_ref()
        .is_some_and(|t| t.chars().any(char::is_control))
    {
        // No event type has one; PostgreSQL's text cannot hold NUL.
        return Err(ApiError::invalid_field(
            "track",
            "`track` must not contain control characters",
        ));
    }
    track
        .map(|t| {
            t.parse::<TypeFilter>()
                .map_err(|e| ApiError::invalid_field("track", e.to_string()))
        })
        .transpose()
}

/// A run's `meta`: stored with the run, so bounded as the `meta` of a `run.started`
/// event is.
fn check_meta(meta: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
    let bytes = serde_json::to_vec(meta).map_or(usize::MAX, |json| json.len());
    if bytes > MAX_EVENT_BYTES {
        return Err(ApiError::event_too_large(format!(
            "`meta` is {bytes} bytes of JSON, over the limit of {MAX_EVENT_BYTES} \
                 that an event's is held to"
        ))
        .with_field("meta"));
    }
    Ok(())
}

/// Where a run just created is found: its routes, and its dashboard page with the
/// read token.
fn run_urls(base: &str, id: &RunId, read_token: &str) -> RunUrls {
    RunUrls {
        run: format!("{base}/v1/runs/{id}"),
        events: format!("{base}/v1/runs/{id}/events"),
        stream: format!("{base}/v1/runs/{id}/stream"),
        ws: format!("{}/v1/runs/{id}/ws", base.replacen("http", "ws", 1)),
        dashboard: format!("{base}/runs/{id}?token={read_token}"),
    }
}

#[utoipa::path(post, path = "/v1/runs/{id}/events", params(("id" = RunId, Path, description = "run id")),
    security(("bearerAuth" = [])),
    request_body(content = Vec<Draft>, description = "A JSON array of events, or NDJSON (`Content-Type: application/x-ndjson`, one event a line): each without `v`, `run` and `seq`, which the hub fills in"),
    responses((status = 200, description = "the batch is stored, whole and durably", body = Appended),
              (status = 400, description = "an event is invalid: `index` and `field` name it; nothing is stored", body = ErrorBody),
              (status = 409, description = "the run has finished", body = ErrorBody),
              (status = 413, description = "the body, an event or the batch is over its limit", body = ErrorBody),
              (status = 429, description = "the run is over its rate limit: nothing is stored; `Retry-After` says when to send it again", body = ErrorBody,
               headers(("Retry-After" = u64, description = "seconds")))))]
pub(crate) async fn append(
    State(hub): State<Hub>,
    WriteRun(id): WriteRun,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Json<Appended>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    // NDJSON by its media type; `guard` let in only that and JSON's.
    let format = match content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "application/x-ndjson" | "application/jsonl" | "application/x-jsonlines" => {
            BatchFormat::Ndjson
        }
        _ => BatchFormat::JsonArray,
    };
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request(ApiErrorCode::InvalidJson, "the body is not UTF-8"))?;
    let drafts = parse_batch(text, format, &id)?;
    if drafts.len() > hub.config().max_batch {
        return Err(ApiError::too_large(format!(
            "{} events in one batch, over the limit of {}",
            drafts.len(),
            hub.config().max_batch
        )));
    }
    check_times(&drafts, hub.now())?;
    let events = drafts.len();
    if let Err(wait_s) = hub.limiter().check(&id, events, hub.now()) {
        hub.metrics().rate_limited();
        return Err(ApiError::rate_limited(
            format!(
                "run `{id}` is over its limit of {} events a second; nothing of this batch \
                 was stored: send it again in {wait_s:.1} s",
                hub.config().rate_limit.map_or(0.0, |l| l.events_per_s)
            ),
            wait_s,
        ));
    }
    let appended = hub
        .append(&id, drafts, Author::Producer)
        .await
        .map_err(|e| {
            if matches!(e, StoreError::Full(_)) {
                hub.metrics().disk_full();
            }
            store_error(&id, e)
        })?;
    hub.limiter().charge(&id, events, hub.now());
    Ok(Json(Appended {
        appended: appended.events.len() as u64,
        duplicates: appended.duplicates,
        filtered: appended.filtered,
        last_seq: appended.last_seq,
        cancel_requested: appended.state.cancel_requested,
    }))
}

/// Refuses a batch with an event whose `ts` is further from the hub's clock (`now`)
/// than [`MAX_TS_BEHIND_S`] or [`MAX_TS_AHEAD_S`], naming its index. Retention and stall
/// detection read the hub's clock alone, but views show the producer's times, and a
/// run that started in year 1 or in 9999 shows nothing true.
fn check_times(drafts: &[Draft], now: Timestamp) -> Result<(), ApiError> {
    let earliest = now.add_seconds(-MAX_TS_BEHIND_S);
    let latest = now.add_seconds(MAX_TS_AHEAD_S);
    for (index, draft) in drafts.iter().enumerate() {
        let Some(ts) = draft.ts else { continue };
        let off = if ts > latest {
            "ahead of"
        } else if ts < earliest {
            "behind"
        } else {
            continue;
        };
        return Err(ApiError::invalid_field(
            "ts",
            format!(
                "event {index}: `ts` {ts} is too far {off} the hub's clock ({now}); the hub \
                 takes times from 7 days before its clock to 1 hour after it (or leave \
                 `ts` out for the hub's own)"
            ),
        )
        .with_index(index));
    }
    Ok(())
}

#[utoipa::path(get, path = "/v1/runs/{id}", params(("id" = RunId, Path, description = "run id")),
    security(("bearerAuth" = []), ("readToken" = [])),
    responses((status = 200, description = "the run's state", body = RunState)))]
pub(crate) async fn get_run(
    State(hub): State<Hub>,
    ReadRun(id): ReadRun,
) -> Result<Json<RunState>, ApiError> {
    let record = hub
        .store()
        .run(&id)
        .await
        .map_err(|e| store_error(&id, e))?;
    Ok(Json(record.state.at(hub.now())))
}

#[utoipa::path(post, path = "/v1/runs/{id}/cancel", params(("id" = RunId, Path, description = "run id")),
    security(("bearerAuth" = [])),
    request_body(content = CancelRun, description = "optional: an empty body is `{}`"),
    responses((status = 200, description = "`run.cancel_requested` is stored", body = Cancelled),
              (status = 409, description = "the run has finished", body = ErrorBody)))]
pub(crate) async fn cancel(
    State(hub): State<Hub>,
    WriteRun(id): WriteRun,
    Body(body): Body,
) -> Result<Json<Cancelled>, ApiError> {
    let body: CancelRun = if body.iter().all(u8::is_ascii_whitespace) {
        CancelRun::default()
    } else {
        json_body(&body)?
    };
    let now = hub.now();
    let draft = Draft::new(
        now,
        RunCancelRequested {
            reason: body.reason,
        },
    );
    // The event must be readable once stored: the store refuses it otherwise, but
    // here the field to blame is known. Measured at the longest `seq` it could get.
    let bytes = draft
        .clone()
        .stamp(id.clone(), u64::MAX, now)
        .to_json()
        .len();
    if bytes > MAX_EVENT_BYTES {
        return Err(ApiError::event_too_large(format!(
            "`reason` makes the run.cancel_requested event {bytes} bytes, over the limit \
             of {MAX_EVENT_BYTES}"
        ))
        .with_field("reason"));
    }
    let appended = hub
        .append(&id, vec![draft], Author::Hub)
        .await
        .map_err(|e| store_error(&id, e))?;
    Ok(Json(Cancelled {
        cancel_requested: true,
        last_seq: appended.last_seq,
    }))
}

#[utoipa::path(delete, path = "/v1/runs/{id}", params(("id" = RunId, Path, description = "run id")),
    security(("bearerAuth" = [])),
    responses((status = 204, description = "the run and its events are deleted")))]
pub(crate) async fn delete_run(
    State(hub): State<Hub>,
    AdminRun(id): AdminRun,
) -> Result<StatusCode, ApiError> {
    let generation = hub
        .store()
        .delete(&id)
        .await
        .map_err(|e| store_error(&id, e))?;
    hub.deleted(&id, generation);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/runs` query. The fields the hub checks itself are strings here, so that its
/// errors name them; their parameters say what they take.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only runs with this status.
    #[param(value_type = Option<RunStatus>)]
    status: Option<String>,
    /// Only children of this run.
    #[param(value_type = Option<RunId>)]
    parent: Option<String>,
    /// At most this many (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// Only runs created before this time (the `next_before` of a page).
    #[param(value_type = Option<Timestamp>)]
    before: Option<String>,
}

#[utoipa::path(get, path = "/v1/runs", params(ListQuery), security(("bearerAuth" = [])),
    responses((status = 200, description = "the runs, newest first", body = RunsPage)))]
pub(crate) async fn list_runs(
    State(hub): State<Hub>,
    _: Admin,
    Params(query): Params<ListQuery>,
) -> Result<Json<RunsPage>, ApiError> {
    let filter = RunFilter {
        status: query
            .status
            .map(|s| {
                s.parse::<RunStatus>()
                    .map_err(|e| ApiError::invalid_field("status", e))
            })
            .transpose()?,
        parent: query
            .parent
            .map(|p| {
                parse_run_id(&p).map_err(|_| ApiError::invalid_field("parent", "not a run id"))
            })
            .transpose()?,
        before: query
            .before
            .map(|b| {
                b.parse::<Timestamp>()
                    .map_err(|e| ApiError::invalid_field("before", format!("`before` is {e}")))
            })
            .transpose()?,
        limit: match query.limit {
            None => 50,
            Some(n @ 1..=500) => n,
            Some(n) => {
                return Err(ApiError::invalid_field(
                    "limit",
                    format!("`limit` must be from 1 to 500, not {n}"),
                ));
            }
        },
    };
    // One run more than the page, to tell whether another page follows.
    let page_len = filter.limit as usize;
    let mut records = hub
        .store()
        .list(&RunFilter {
            limit: filter.limit + 1,
            ..filter
        })
        .await
        .map_err(db_error)?;
    let more = records.len() > page_len;
    records.truncate(page_len);
    let now = hub.now();
    let next_before = more.then(|| records.last().map(|r| r.created_at)).flatten();
    let runs = records.iter().map(|r| r.state.at(now)).collect();
    Ok(Json(RunsPage { runs, next_before }))
}

#[utoipa::path(get, path = "/healthz", security(()),
    responses((status = 200, description = "the hub answers and reaches its database", body = Health)))]
pub(crate) async fn healthz(State(hub): State<Hub>) -> Result<Json<Health>, ApiError> {
    hub.store().count_by_status().await.map_err(db_error)?;
    Ok(Json(Health {
        status: "ok".to_owned(),
    }))
}

#[utoipa::path(get, path = "/metrics", security(()),
    responses((status = 200, description = "Prometheus text metrics", body = String, content_type = "text/plain; version=0.0.4")))]
pub(crate) async fn metrics(State(hub): State<Hub>) -> Result<Response, ApiError> {
    let runs = hub.store().count_by_status().await.map_err(db_error)?;
    let text = hub.metrics().render(&runs, hub.store().unreadable_events());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
