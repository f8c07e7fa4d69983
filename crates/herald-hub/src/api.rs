//! The REST routes of SPEC section 5, and who may call them.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use herald_protocol::{
    BatchFormat, Draft, RunCancelRequested, RunId, RunStatus, Timestamp, TypeFilter, parse_batch,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
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
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(max_body))
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

/// The body, or 413 when it is over the limit.
pub(crate) fn body_bytes(
    hub: &Hub,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!(
                "the body is over the limit of {} bytes",
                hub.config().max_body_bytes
            ))
        } else {
            ApiError::bad_request("invalid_body", e.body_text())
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
        StoreError::Conflict => {
            ApiError::conflict("run_exists", format!("a run `{run}` exists already"))
        }
        StoreError::Finished => ApiError::conflict(
            "run_finished",
            format!("run `{run}` has finished and takes no more events"),
        ),
        StoreError::Unavailable(_) | StoreError::Db(_) => db_error(e),
    }
}

/// A store failure that is no client's doing: 503 while the database is unreachable
/// (a load balancer or the SDK tries again), 500 otherwise; both logged.
pub(crate) fn db_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Unavailable(_) => {
            tracing::warn!(error = %e, "the database is unreachable");
            ApiError::unavailable("the hub cannot reach its database just now; try again")
        }
        other => ApiError::internal(other),
    }
}

/// `POST /v1/runs` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRun {
    id: Option<String>,
    name: String,
    parent: Option<String>,
    heartbeat_timeout_s: Option<f64>,
    ttl_s: Option<f64>,
    /// Type patterns to keep, comma-separated or as a list.
    #[schema(value_type = Option<Object>)]
    track: Option<Value>,
    #[schema(value_type = Option<Object>)]
    meta: Option<Map<String, Value>>,
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

#[utoipa::path(post, path = "/v1/runs", request_body = CreateRun,
    responses((status = 201, description = "created: {id, write_token, read_token, urls}"),
              (status = 400, description = "bad input"), (status = 401), (status = 403),
              (status = 409, description = "the id is taken")))]
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
    let urls = json!({
        "run": format!("{base}/v1/runs/{id}"),
        "events": format!("{base}/v1/runs/{id}/events"),
        "stream": format!("{base}/v1/runs/{id}/stream"),
        "ws": format!("{}/v1/runs/{id}/ws", base.replacen("http", "ws", 1)),
        "dashboard": format!("{base}/runs/{id}?token={read_token}"),
    });
    let body =
        json!({"id": id, "write_token": write_token, "read_token": read_token, "urls": urls});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[utoipa::path(post, path = "/v1/runs/{id}/events",
    params(("id" = String, Path, description = "run id")),
    request_body(content = Vec<Object>, description = "a JSON array of events, or NDJSON (application/x-ndjson)"),
    responses((status = 200, description = "{appended, duplicates, last_seq, cancel_requested}"),
              (status = 400, description = "an event is invalid: index and field named"),
              (status = 401), (status = 403), (status = 404),
              (status = 409, description = "the run has finished"), (status = 413),
              (status = 429, description = "the run is over its rate limit: nothing stored; `Retry-After` says when to send it again")))]
pub(crate) async fn append(
    State(hub): State<Hub>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = run_for(&hub, &headers, &id, None, Need::Write).await?;
    let body = body_bytes(&hub, body)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    // NDJSON by its media type; anything else is read as a JSON array, so that a
    // plain `curl -d` (which says form-urlencoded) works too.
    let format = match content_type.split(';').next().unwrap_or("").trim() {
        "application/x-ndjson" | "application/jsonl" | "application/x-jsonlines" => {
            BatchFormat::Ndjson
        }
        _ => BatchFormat::JsonArray,
    };
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("invalid_json", "the body is not UTF-8"))?;
    let drafts = parse_batch(text, format, &id)?;
    if drafts.len() > hub.config().max_batch {
        return Err(ApiError::too_large(format!(
            "{} events in one batch, over the limit of {}",
            drafts.len(),
            hub.config().max_batch
        )));
    }
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
        .append(&id, drafts, true)
        .await
        .map_err(|e| store_error(&id, e))?;
    hub.limiter().charge(&id, events, hub.now());
    Ok(Json(json!({
        "appended": appended.events.len(),
        "duplicates": appended.duplicates,
        "filtered": appended.filtered,
        "last_seq": appended.last_seq,
        "cancel_requested": appended.state.cancel_requested,
    })))
}

/// `?token=` on routes a browser may open directly.
#[derive(Deserialize, Default)]
pub(crate) struct TokenQuery {
    token: Option<String>,
}

#[utoipa::path(get, path = "/v1/runs/{id}", params(("id" = String, Path, description = "run id")),
    responses((status = 200, description = "the run's state (SPEC section 4)"), (status = 401), (status = 403), (status = 404)))]
pub(crate) async fn get_run(
    State(hub): State<Hub>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let id = run_for(&hub, &headers, &id, query.token.as_deref(), Need::Read).await?;
    let record = hub
        .store()
        .run(&id)
        .await
        .map_err(|e| store_error(&id, e))?;
    let state = record.state.at(hub.now());
    Ok(Json(
        serde_json::to_value(state).map_err(ApiError::internal)?,
    ))
}

/// `POST /v1/runs/{id}/cancel` body (optional).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelBody {
    reason: Option<String>,
}

#[utoipa::path(post, path = "/v1/runs/{id}/cancel", params(("id" = String, Path, description = "run id")),
    request_body(content = Option<CancelBody>),
    responses((status = 200, description = "{cancel_requested: true, last_seq}"), (status = 401), (status = 403),
              (status = 404), (status = 409, description = "the run has finished")))]
pub(crate) async fn cancel(
    State(hub): State<Hub>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = run_for(&hub, &headers, &id, None, Need::Write).await?;
    let body = body_bytes(&hub, body)?;
    let body: CancelBody = if body.iter().all(u8::is_ascii_whitespace) {
        CancelBody::default()
    } else {
        json_body(&body)?
    };
    let draft = Draft::new(
        hub.now(),
        RunCancelRequested {
            reason: body.reason,
        },
    );
    let appended = hub
        .append(&id, vec![draft], false)
        .await
        .map_err(|e| store_error(&id, e))?;
    Ok(Json(
        json!({"cancel_requested": true, "last_seq": appended.last_seq}),
    ))
}

#[utoipa::path(delete, path = "/v1/runs/{id}", params(("id" = String, Path, description = "run id")),
    responses((status = 204, description = "deleted"), (status = 401), (status = 403), (status = 404)))]
pub(crate) async fn delete_run(
    State(hub): State<Hub>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let id = run_for(&hub, &headers, &id, None, Need::Admin).await?;
    let generation = hub
        .store()
        .delete(&id)
        .await
        .map_err(|e| store_error(&id, e))?;
    hub.deleted(&id, generation);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/runs` query.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only runs with this status.
    status: Option<String>,
    /// Only children of this run.
    parent: Option<String>,
    /// At most this many (default 50, at most 500).
    limit: Option<u32>,
    /// Only runs created before this RFC 3339 time (the `next_before` of a page).
    before: Option<String>,
}

#[utoipa::path(get, path = "/v1/runs", params(ListQuery),
    responses((status = 200, description = "{runs: [state], next_before}"), (status = 400), (status = 401), (status = 403)))]
pub(crate) async fn list_runs(
    State(hub): State<Hub>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
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
        .then(|| records.last().map(|r| r.created_at.to_string()))
        .flatten();
    let runs: Vec<Value> = records
        .iter()
        .map(|r| serde_json::to_value(r.state.at(now)))
        .collect::<Result<_, _>>()
        .map_err(ApiError::internal)?;
    Ok(Json(json!({"runs": runs, "next_before": next_before})))
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "{status: ok}")))]
pub(crate) async fn healthz(State(hub): State<Hub>) -> Result<Json<Value>, ApiError> {
    hub.store().count_by_status().await.map_err(db_error)?;
    Ok(Json(json!({"status": "ok"})))
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text")))]
pub(crate) async fn metrics(State(hub): State<Hub>) -> Result<Response, ApiError> {
    let runs = hub.store().count_by_status().await.map_err(db_error)?;
    let text = hub.metrics().render(&runs);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

pub(crate) async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}
