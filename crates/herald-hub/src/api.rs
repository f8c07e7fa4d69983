//! The REST routes of docs/http-api.md, and who may call them.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
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
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::auth::{self, Scope};
use crate::error::{ApiError, json_body};
use crate::store::{NewRun, RunFilter, StoreError};
use crate::{Hub, stream};

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

pub(crate) fn router(hub: Hub) -> Router {
    let max_body = hub.config().max_body_bytes;
    let cors = cors(
        &hub.config().cors_origins,
        hub.config().admin_token.is_none(),
    );
    let router = Router::new()
        .route("/v1/runs", post(create_run).get(list_runs))
        .route("/v1/runs/stream", get(stream::runs_stream))
        .route("/v1/runs/{id}", get(get_run).delete(delete_run))
        .route("/v1/runs/{id}/events", post(append).get(stream::poll))
        .route("/v1/runs/{id}/stream", get(stream::sse).post(stream::sse_post))
        .route("/v1/runs/{id}/ws", get(stream::ws))
        .route("/v1/runs/{id}/cancel", post(cancel))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/", get(crate::dashboard::page))
        .route("/runs/{id}", get(crate::dashboard::page))
        .route("/assets/{file}", get(crate::dashboard::asset))
        .merge(crate::mcp::router(hub.clone()))
        // After every route: it applies to those registered before it.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            hub.clone(),
            crate::guard::guard,
        ))
        .layer(
            // Log method and path only: a `?token=` must never reach a log.
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
                })
                // One line per request, with its status and latency.
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        );
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
    .with_state(hub)
}

/// CORS for `origins` (`*`: any), so that pages served elsewhere, an AG-UI front end
/// say, can call the API with a bearer token; none when `origins` is empty. No
/// cookies are involved (`allow_credentials` stays off), so a page must hold a token;
/// on an open hub (`open`) that would let any page read and change its runs, so `*`
/// is refused there and only named origins are let in. Private network access is
/// allowed too, for a page on a public origin reaching a hub on this machine.
fn cors(origins: &[String], open: bool) -> Option<CorsLayer> {
    let mut allowed = Vec::new();
    let mut any = false;
    for origin in origins {
        // Browsers send the scheme and host in lower case.
        let origin = origin.trim().to_ascii_lowercase();
        if origin == "*" {
            if open {
                tracing::error!("CORS for any origin refused: the hub has no admin token");
            } else {
                any = true;
            }
            continue;
        }
        match header::HeaderValue::from_str(&origin) {
            Ok(value) => allowed.push(value),
            Err(_) => tracing::error!(%origin, "not a CORS origin; ignored"),
        }
    }
    let allow = match (any, allowed.is_empty()) {
        (true, _) => AllowOrigin::any(),
        (false, false) => AllowOrigin::list(allowed),
        (false, true) => return None,
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                header::HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([header::RETRY_AFTER])
            .allow_private_network(true)
            .max_age(std::time::Duration::from_secs(3600)),
    )
}

async fn fallback(req: Request) -> ApiError {
    ApiError::route_not_found(req.uri().path())
}

/// A route's path with a method it does not take; axum adds the `Allow` header.
async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::method_not_allowed(req.method().as_str(), req.uri().path())
}

/// What a route needs of the caller.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// The admin token (create, list, delete).
    Admin,
    /// The run's write token or the admin token (append, cancel).
    Write,
    /// Any token of the run, or the admin token (state, poll, stream).
    Read,
}

/// Checks the caller's token for `need` on `run`. An open hub (no admin token) lets
/// everything through. `query_token` is the `?token=` of EventSource, which may carry
/// a read token only.
pub(crate) async fn authorize(
    hub: &Hub,
    headers: &HeaderMap,
    query_token: Option<&str>,
    run: Option<&RunId>,
    need: Need,
) -> Result<(), ApiError> {
    let Some(admin) = hub.config().admin_token.as_deref() else {
        return Ok(());
    };
    let from_query =
        auth::presented(headers, None).is_none() && query_token.is_some_and(|t| !t.is_empty());
    let Some(token) = auth::presented(headers, query_token) else {
        return Err(ApiError::unauthorized(
            "this hub needs a token: send `Authorization: Bearer <token>`",
        ));
    };
    let presented_hash = auth::hash(&token);
    if auth::same(&presented_hash, &auth::hash(admin)) {
        if from_query {
            return Err(ApiError::unauthorized(
                "only a run's read token may be passed as ?token=",
            ));
        }
        return Ok(());
    }
    let found = hub.store().token(&presented_hash).await.map_err(db_error)?;
    let Some((token_run, scope)) = found else {
        return Err(ApiError::unauthorized("the token is not valid on this hub"));
    };
    if from_query && scope != Scope::Read {
        return Err(ApiError::unauthorized(
            "only a run's read token may be passed as ?token=",
        ));
    }
    match (need, run) {
        (Need::Admin, _) | (_, None) => {
            Err(ApiError::forbidden("this needs the hub's admin token"))
        }
        (_, Some(run)) if &token_run != run => Err(ApiError::forbidden(format!(
            "the token belongs to another run, not to `{run}`"
        ))),
        (Need::Write, Some(_)) if scope == Scope::Read => Err(ApiError::forbidden(
            "a read token cannot change a run: use its write token",
        )),
        _ => Ok(()),
    }
}

/// The body, or 413 when it is over the limit, or 408 when it did not arrive in time.
pub(crate) fn body_bytes(
    hub: &Hub,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if let Some(limit) = crate::server::BodyTimedOut::among(&e) {
            ApiError::body_timeout(limit)
        } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!(
                "the body is over the limit of {} bytes",
                hub.config().max_body_bytes
            ))
        } else {
            ApiError::bad_request(ApiErrorCode::InvalidBody, e.body_text())
        }
    })
}

pub(crate) fn parse_run_id(id: &str) -> Result<RunId, ApiError> {
    RunId::new(id).map_err(|e| ApiError::invalid_field("id", format!("`{id}` is an {e}")))
}

/// The run a per-run route names, once the caller may do `need` on it: the one place
/// that parses the id from the path and checks the token.
pub(crate) async fn run_for(
    hub: &Hub,
    headers: &HeaderMap,
    id: &str,
    query_token: Option<&str>,
    need: Need,
) -> Result<RunId, ApiError> {
    let id = parse_run_id(id)?;
    authorize(hub, headers, query_token, Some(&id), need).await?;
    Ok(id)
}

pub(crate) fn store_error(run: &RunId, e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::run_not_found(run.as_str()),
        StoreError::Conflict => ApiError::conflict(
            ApiErrorCode::RunExists,
            format!("a run `{run}` exists already"),
        ),
        StoreError::Finished => ApiError::conflict(
            ApiErrorCode::RunFinished,
            format!("run `{run}` has finished and takes no more events"),
        ),
        StoreError::EventTooLarge { index, bytes } => ApiError::event_too_large(format!(
            "event {index} would be stored (with `v`, `run`, `seq` and `ts`) as {bytes} \
             bytes, over the limit of {MAX_EVENT_BYTES}; nothing of the batch was stored"
        ))
        .with_index(index),
        StoreError::Unavailable(_) | StoreError::Full(_) | StoreError::Db(_) => db_error(e),
    }
}

/// A store failure that is no client's doing: 503 while the database is unreachable
/// (a load balancer or the SDK tries again), 507 while its disk is full (the same
/// request is taken once space is freed), 500 otherwise; all logged.
pub(crate) fn db_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Unavailable(_) => {
            tracing::warn!(error = %e, "the database is unreachable");
            ApiError::unavailable("the hub cannot reach its database just now; try again")
        }
        StoreError::Full(_) => {
            tracing::error!(error = %e, "the database's disk is full: writes are refused");
            ApiError::insufficient_storage(
                "the hub's disk is full: nothing of this request was stored; \
                 send it again once space is freed",
            )
        }
        other => ApiError::internal(other),
    }
}

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
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&hub, &headers, None, None, Need::Admin).await?;
    let body: CreateRun = json_body(&body_bytes(&hub, body)?)?;
    let now = hub.now();
    let id = match body.id {
        Some(id) => parse_run_id(&id)?,
        None => generate_run_id(now),
    };
    if body.name.trim().is_empty() || body.name.len() > MAX_NAME_BYTES {
        return Err(ApiError::invalid_field(
            "name",
            "`name` must be 1 to 1024 bytes",
        ));
    }
    // PostgreSQL's text cannot hold NUL; refused whichever the store, so that a run
    // that one hub takes no other refuses. (Other control characters are kept: a
    // command line as a name may hold a newline; views escape what they show.)
    if body.name.contains('\0') {
        return Err(ApiError::invalid_field(
            "name",
            "`name` must not contain NUL (\\u0000)",
        ));
    }
    let parent = body
        .parent
        .map(|p| {
            RunId::new(p)
                .map_err(|e| ApiError::invalid_field("parent", format!("`parent` is an {e}")))
        })
        .transpose()?;
    let track = match body.track {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Array(items)) if items.len() > MAX_TRACK_ITEMS => {
            return Err(ApiError::invalid_field(
                "track",
                format!("`track` may list at most {MAX_TRACK_ITEMS} patterns"),
            ));
        }
        Some(Value::Array(items))
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
        Some(Value::Array(items)) => Some(
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
        Some(_) => {
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
    let track = track
        .map(|t| {
            t.parse::<TypeFilter>()
                .map_err(|e| ApiError::invalid_field("track", e.to_string()))
        })
        .transpose()?;
    // Stored with the run, so bounded as the `meta` of a `run.started` event is.
    if let Some(meta) = &body.meta {
        let bytes = serde_json::to_vec(meta).map_or(usize::MAX, |json| json.len());
        if bytes > MAX_EVENT_BYTES {
            return Err(ApiError::event_too_large(format!(
                "`meta` is {bytes} bytes of JSON, over the limit of {MAX_EVENT_BYTES} \
                 that an event's is held to"
            ))
            .with_field("meta"));
        }
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
    let base = base_url(&hub, &headers);
    let urls = RunUrls {
        run: format!("{base}/v1/runs/{id}"),
        events: format!("{base}/v1/runs/{id}/events"),
        stream: format!("{base}/v1/runs/{id}/stream"),
        ws: format!("{}/v1/runs/{id}/ws", base.replacen("http", "ws", 1)),
        dashboard: format!("{base}/runs/{id}?token={read_token}"),
    };
    let body = Created {
        id,
        write_token,
        read_token,
        urls,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
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
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Appended>, ApiError> {
    let Path(id) = id?;
    let id = run_for(&hub, &headers, &id, None, Need::Write).await?;
    let body = body_bytes(&hub, body)?;
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
    let appended = hub.append(&id, drafts, true).await.map_err(|e| {
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

/// `?token=` on routes a browser may open directly.
#[derive(Deserialize, Default)]
pub(crate) struct TokenQuery {
    token: Option<String>,
}

#[utoipa::path(get, path = "/v1/runs/{id}", params(("id" = RunId, Path, description = "run id")),
    security(("bearerAuth" = []), ("readToken" = [])),
    responses((status = 200, description = "the run's state", body = RunState)))]
pub(crate) async fn get_run(
    State(hub): State<Hub>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Json<RunState>, ApiError> {
    let Path(id) = id?;
    let Query(query) = query?;
    let id = run_for(&hub, &headers, &id, query.token.as_deref(), Need::Read).await?;
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
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Cancelled>, ApiError> {
    let Path(id) = id?;
    let id = run_for(&hub, &headers, &id, None, Need::Write).await?;
    let body = body_bytes(&hub, body)?;
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
        .append(&id, vec![draft], false)
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
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id?;
    let id = run_for(&hub, &headers, &id, None, Need::Admin).await?;
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
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<RunsPage>, ApiError> {
    authorize(&hub, &headers, None, None, Need::Admin).await?;
    let Query(query) = query?;
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
    let records = hub.store().list(&filter).await.map_err(db_error)?;
    let now = hub.now();
    let next_before = (records.len() as u32 == filter.limit)
        .then(|| records.last().map(|r| r.created_at))
        .flatten();
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

pub(crate) async fn openapi(State(hub): State<Hub>) -> Json<Value> {
    Json(crate::openapi::document(hub.config().admin_token.is_none()))
}
