//! The hub's one error type. Client mistakes get their status and a body naming the
//! problem (`{"error": {"code", "message", "index"?, "field"?}}`); internal failures get
//! a generic body and are logged.

use axum::Json;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_protocol::api::{ApiErrorCode, ErrorBody, ErrorDetail};
use herald_protocol::{BatchError, MAX_EVENT_BYTES, RunId};

use crate::store::StoreError;

/// The `Retry-After` of a 507, in seconds: space may come back at any moment (a log
/// rotated, a file deleted), but it is freed by someone, not by the hub, so there is no
/// point asking every fraction of a second.
const INSUFFICIENT_STORAGE_RETRY_S: u64 = 5;

/// What went wrong with a request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ApiErrorCode,
    message: String,
    index: Option<usize>,
    field: Option<String>,
    /// Seconds for `Retry-After`, on a 429 or a 507.
    retry_after_s: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: ApiErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            index: None,
            field: None,
            retry_after_s: None,
        }
    }

    /// 400: the input is wrong.
    pub fn bad_request(code: ApiErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 400 naming a field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            field: Some(field.to_owned()),
            ..ApiError::bad_request(ApiErrorCode::InvalidField, message)
        }
    }

    /// 401: no token, or one the hub does not know.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ApiErrorCode::Unauthorized,
            message,
        )
    }

    /// 403: a valid token that does not open this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, ApiErrorCode::Forbidden, message)
    }

    /// 404: no such run.
    pub fn run_not_found(id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ApiErrorCode::RunNotFound,
            format!("no run `{id}`"),
        )
    }

    /// 404: no such route.
    pub fn route_not_found(path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ApiErrorCode::NotFound,
            format!("no route {path}"),
        )
    }

    /// 409: the run id is taken, or the run already finished.
    pub fn conflict(code: ApiErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    /// 413: the body is over the limit.
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ApiErrorCode::BodyTooLarge,
            message,
        )
    }

    /// 413: an event would be stored over the protocol's size limit (name the field
    /// or the event's index with [`ApiError::with_field`], [`ApiError::with_index`]).
    pub fn event_too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ApiErrorCode::EventTooLarge,
            message,
        )
    }

    /// 507: the store's disk is full. Nothing was stored; the same request is taken
    /// once space is freed, so clients are told to try again (`Retry-After`).
    pub fn insufficient_storage(message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after_s: Some(INSUFFICIENT_STORAGE_RETRY_S),
            ..ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                ApiErrorCode::InsufficientStorage,
                message,
            )
        }
    }

    /// This error, naming the field at fault.
    pub fn with_field(self, field: &str) -> ApiError {
        ApiError {
            field: Some(field.to_owned()),
            ..self
        }
    }

    /// This error, naming the index of the event at fault in its batch.
    pub fn with_index(self, index: usize) -> ApiError {
        ApiError {
            index: Some(index),
            ..self
        }
    }

    /// 403: an open hub's request sent to a name that is not loopback's (`Host`), as a
    /// page does after rebinding its own name to this machine's address.
    pub(crate) fn host_not_allowed(host: &str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ApiErrorCode::HostNotAllowed,
            format!(
                "this hub has no admin token, so it answers only requests sent to \
                 localhost, 127.0.0.1 or [::1], not to `{host}`"
            ),
        )
    }

    /// 403: an open hub's request from a web page of an origin it does not allow.
    pub(crate) fn origin_not_allowed(origin: &str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ApiErrorCode::OriginNotAllowed,
            format!(
                "pages of `{origin}` may not call this hub: it has no admin token, so only \
                 its own pages and the origins it names for CORS (--cors-origin) may"
            ),
        )
    }

    /// 405: the route exists, the method does not; the `Allow` header lists those that
    /// do.
    pub(crate) fn method_not_allowed(method: &str, path: &str) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ApiErrorCode::MethodNotAllowed,
            format!("{path} does not take {method}: the Allow header lists what it takes"),
        )
    }

    /// 408: the body did not arrive in time.
    pub(crate) fn body_timeout(limit: std::time::Duration) -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ApiErrorCode::BodyTimeout,
            format!(
                "the body did not arrive within {} s of the request's headers",
                limit.as_secs_f64()
            ),
        )
    }

    /// 415: a body that does not say it is JSON (`Content-Type`); `accepted` lists the
    /// media types the route takes.
    pub(crate) fn unsupported_media_type(content_type: Option<&str>, accepted: &str) -> ApiError {
        let message = match content_type {
            Some(given) => format!("the body's Content-Type is `{given}`: send it as {accepted}"),
            None => format!("the body has no Content-Type: send it as {accepted}"),
        };
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiErrorCode::UnsupportedMediaType,
            message,
        )
    }

    /// What hyper answers on its own, before any route, to a request it cannot parse:
    /// 400 (a malformed request line or header), 414 or 431; `None` for other statuses.
    pub(crate) fn unparsable_request(status: StatusCode) -> Option<ApiError> {
        let (code, message) = match status {
            StatusCode::BAD_REQUEST => (
                ApiErrorCode::MalformedRequest,
                "the request is not well-formed HTTP",
            ),
            StatusCode::URI_TOO_LONG => (
                ApiErrorCode::UriTooLong,
                "the request's URI is over the hub's limit of 65534 bytes",
            ),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
                ApiErrorCode::HeadersTooLarge,
                "the request has more headers, or longer ones, than the hub takes",
            ),
            _ => return None,
        };
        Some(ApiError::new(status, code, message))
    }

    /// 500: the hub failed; the details go to the log, not to the client.
    pub fn internal(err: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %err, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ApiErrorCode::Internal,
            "the hub failed to answer; see its log",
        )
    }

    /// 503: the hub cannot serve this now: it is shutting down, or its database is
    /// unreachable.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiErrorCode::Unavailable,
            message,
        )
    }

    /// 429: over a rate limit; the same request is taken after `retry_after_s`
    /// seconds (sent as `Retry-After`, rounded up, at least 1).
    pub fn rate_limited(message: impl Into<String>, retry_after_s: f64) -> ApiError {
        ApiError {
            retry_after_s: Some(retry_after_s.ceil().max(1.0) as u64),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ApiErrorCode::RateLimited,
                message,
            )
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The code of the error body of docs/http-api.md#errors (`invalid_field`).
    pub(crate) fn code(&self) -> ApiErrorCode {
        self.code
    }

    /// The sentence of the error body of docs/http-api.md#errors.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// 400 `invalid_message`: a WebSocket client's message is not a resume, for the
    /// reason `e` gives (its field kept).
    pub(crate) fn invalid_message(e: ApiError) -> ApiError {
        ApiError {
            code: ApiErrorCode::InvalidMessage,
            message: format!("send {{\"after\": SEQ}} to resume: {}", e.message),
            ..e
        }
    }
}

impl From<BatchError> for ApiError {
    fn from(e: BatchError) -> ApiError {
        let status = if e.error.code == herald_protocol::ErrorCode::EventTooLarge {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError {
            status,
            code: e.error.code.into(),
            message: e.to_string(),
            index: e.index,
            field: e.error.field.clone(),
            retry_after_s: None,
        }
    }
}

/// Parses a JSON request body (its media type was checked before the route, see
/// `guard`); errors name the field. A key given twice, at any depth, is refused as in
/// events (`duplicate_key`), rather than one of the two kept.
/// The error a store failure on `run` is to its caller: a missing run, a conflict,
/// an event over the limit, or (see [`db_error`]) a failure that is no client's doing.
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

pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request(ApiErrorCode::InvalidJson, "the body is not UTF-8"))?;
    let value = herald_protocol::parse_json(text).map_err(|error| {
        ApiError::from(BatchError {
            index: None,
            error: herald_protocol::EventError {
                // "not valid JSON: ..." becomes "the body is not valid JSON: ...".
                message: match error.code {
                    herald_protocol::ErrorCode::InvalidJson => {
                        format!("the body is {}", strip_position(&error.message))
                    }
                    _ => error.message,
                },
                ..error
            },
        })
    })?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let message = strip_position(&message).to_owned();
        let field = field_of(&message).or_else(|| (path != ".").then_some(path));
        let mut err = ApiError::bad_request(ApiErrorCode::InvalidField, message);
        err.field = field;
        err
    })
}

/// serde_json's message without the " at line L column C" it ends with.
fn strip_position(message: &str) -> &str {
    message.rsplit_once(" at line ").map_or(message, |(m, _)| m)
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> ApiError {
        match e {
            PathRejection::FailedToDeserializePathParams(e) => {
                let (field, message) = match e.kind() {
                    ErrorKind::InvalidUtf8InPathParam { key } => (
                        Some(key.clone()),
                        format!("the path's `{key}` is not UTF-8 once percent-decoded"),
                    ),
                    _ => (None, e.body_text()),
                };
                ApiError {
                    field,
                    ..ApiError::bad_request(ApiErrorCode::InvalidPath, message)
                }
            }
            // A route that reads a parameter it does not have: the hub's mistake.
            other => ApiError::internal(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> ApiError {
        let detail = e.body_text();
        let mut err = ApiError::bad_request(ApiErrorCode::InvalidQuery, detail.clone());
        err.field = field_of(&detail);
        err
    }
}

/// The field a serde message names: "missing field `x`", "duplicate field `x`",
/// "unknown field `x`, expected ...", or "x: invalid type".
fn field_of(message: &str) -> Option<String> {
    for marker in ["missing field `", "duplicate field `", "unknown field `"] {
        if let Some((_, rest)) = message.split_once(marker) {
            // An unknown field is the client's text, which may hold a backquote: it
            // ends where serde's list of the known ones starts.
            let end = rest.rfind("`, expected").or_else(|| rest.find('`'))?;
            return Some(rest[..end].to_owned());
        }
    }
    let head = message
        .rsplit("Failed to deserialize query string: ")
        .next()
        .unwrap_or(message);
    let head = head
        .rsplit("Failed to deserialize the JSON body into the target type: ")
        .next()
        .unwrap_or(head);
    let (field, _) = head.split_once(": ")?;
    let field = field.trim();
    (!field.is_empty() && !field.contains(' ')).then(|| field.to_owned())
}

impl ApiError {
    /// The error body of docs/http-api.md.
    pub(crate) fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
                index: self.index.map(|i| i as u64),
                field: self.field.clone(),
            },
        }
    }
}

impl ApiError {
    /// [`ApiError::body`] as JSON text, for answers written outside axum's `Json`.
    pub(crate) fn body_text(&self) -> String {
        serde_json::to_string(&self.body()).unwrap_or_else(|_| String::from("{}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(secs) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

#[cfg(test)]
mod tests {
    use super::field_of;

    #[test]
    fn fields_are_found_in_serde_messages() {
        assert_eq!(
            field_of("missing field `name` at line 1 column 2").as_deref(),
            Some("name")
        );
        assert_eq!(
            field_of("Failed to deserialize query string: limit: invalid digit found in string")
                .as_deref(),
            Some("limit")
        );
        assert_eq!(
            field_of("Failed to deserialize query string: duplicate field `after`").as_deref(),
            Some("after")
        );
        assert_eq!(
            field_of(
                "Failed to deserialize query string: a`b: unknown field `a`b`, expected one of \
                 `after`, `limit`"
            )
            .as_deref(),
            Some("a`b")
        );
        assert_eq!(field_of("something else entirely"), None);
    }
}
