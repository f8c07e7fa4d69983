//! Who may call what: the one place that decides it, reached by handlers as axum
//! extractors. A handler that takes [`ReadRun`], [`WriteRun`] or [`AdminRun`] runs only
//! for a caller allowed to do that on the run its path names; one that takes [`Admin`]
//! only for the admin token; [`Body`] is the request body within the hub's limits, and
//! [`Params`] the query string, or the error naming the parameter at fault.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use herald_protocol::RunId;
use herald_protocol::api::ApiErrorCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::auth::{self, Scope};
use crate::error::{ApiError, db_error};
use crate::hub::Hub;
use crate::server::BodyTimedOut;

/// What a route needs of the caller.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
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
async fn authorize(
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

pub(crate) fn parse_run_id(id: &str) -> Result<RunId, ApiError> {
    RunId::new(id).map_err(|e| ApiError::invalid_field("id", format!("`{id}` is an {e}")))
}

/// `?token=` on routes a browser may open directly (EventSource cannot set headers).
#[derive(Deserialize, Default)]
struct TokenQuery {
    token: Option<String>,
}

/// The run a per-run route names, parsed from the path, once the caller may do `need`
/// on it. Only a read may present its token as `?token=`.
async fn run_for(parts: &mut Parts, hub: &Hub, need: Need) -> Result<RunId, ApiError> {
    let Path(id) = Path::<String>::from_request_parts(parts, hub).await?;
    let id = parse_run_id(&id)?;
    let query_token = match need {
        Need::Read => Query::<TokenQuery>::try_from_uri(&parts.uri)?.0.token,
        Need::Write | Need::Admin => None,
    };
    authorize(hub, &parts.headers, query_token.as_deref(), Some(&id), need).await?;
    Ok(id)
}

/// The run of a per-run route the caller may read: with any token of the run (a read
/// token also as `?token=`) or the admin token.
pub(crate) struct ReadRun(pub(crate) RunId);

/// The run of a per-run route the caller may change (append, cancel): with the run's
/// write token or the admin token.
pub(crate) struct WriteRun(pub(crate) RunId);

/// The run of a per-run route only the admin may call (delete).
pub(crate) struct AdminRun(pub(crate) RunId);

/// A caller with the hub's admin token (create, list, the runs stream).
pub(crate) struct Admin;

/// Each per-run extractor: the run, once the caller may do its need on it.
macro_rules! run_extractors {
    ($($extractor:ident: $need:expr),* $(,)?) => {$(
        impl FromRequestParts<Hub> for $extractor {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, hub: &Hub) -> Result<Self, ApiError> {
                run_for(parts, hub, $need).await.map($extractor)
            }
        }
    )*};
}

run_extractors!(ReadRun: Need::Read, WriteRun: Need::Write, AdminRun: Need::Admin);

impl FromRequestParts<Hub> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Hub) -> Result<Self, ApiError> {
        authorize(hub, &parts.headers, None, None, Need::Admin).await?;
        Ok(Admin)
    }
}

/// A route's query parameters; a 400 naming the one at fault. Taken before the
/// access extractors, so that a malformed query is told before a token is checked.
pub(crate) struct Params<T>(pub(crate) T);

impl<T: DeserializeOwned + Send> FromRequestParts<Hub> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Hub) -> Result<Self, ApiError> {
        let Query(query) = Query::<T>::from_request_parts(parts, hub).await?;
        Ok(Params(query))
    }
}

/// The request body, read whole within the hub's limits.
pub(crate) struct Body(pub(crate) Bytes);

impl FromRequest<Hub> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, hub: &Hub) -> Result<Self, ApiError> {
        body_bytes(hub, Bytes::from_request(req, hub).await).map(Body)
    }
}

/// The body, or 413 when it is over the limit, or 408 when it did not arrive in time.
fn body_bytes(hub: &Hub, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if let Some(limit) = BodyTimedOut::among(&e) {
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
