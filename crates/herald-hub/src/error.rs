//! The hub's one error type. Client mistakes get their status and a body naming the
//! problem (`{"error": {"code", "message", "index"?, "field"?}}`); internal failures get
//! a generic body and are logged.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_protocol::BatchError;
use herald_protocol::api::{ApiErrorCode, ErrorBody, ErrorDetail};

/// What went wrong with a request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ApiErrorCode,
    message: String,
    index: Option<usize>,
    field: Option<String>,
    /// Seconds for `Retry-After`, on a 429.
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

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> ApiError {
        match e {
            JsonRejection::JsonDataError(e) => {
                // serde names the field in its message: "missing field `name`" or
                // "name: invalid type ...".
                let detail =
                    std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string());
                let mut err = ApiError::bad_request(ApiErrorCode::InvalidField, detail.clone());
                err.field = field_of(&detail);
                err
            }
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::bad_request(ApiErrorCode::InvalidJson, e.body_text())
            }
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ApiErrorCode::UnsupportedMediaType,
                "send the body as JSON, with Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::too_large("the body is over the hub's size limit")
            }
            other => ApiError::bad_request(ApiErrorCode::InvalidBody, other.body_text()),
        }
    }
}

/// Parses a JSON request body, whatever its Content-Type says (a plain `curl -d` says
/// form-urlencoded); errors name the field.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(m, _)| m)
            .to_owned();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad_request(
                ApiErrorCode::InvalidJson,
                format!("the body is not valid JSON: {message}"),
            );
        }
        let field = field_of(&message).or_else(|| (path != ".").then_some(path));
        let mut err = ApiError::bad_request(ApiErrorCode::InvalidField, message);
        err.field = field;
        err
    })
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> ApiError {
        let detail = e.body_text();
        let mut err = ApiError::bad_request(ApiErrorCode::InvalidQuery, detail.clone());
        err.field = field_of(&detail);
        err
    }
}

/// The field a serde message names: "missing field `x`", "unknown variant ..., expected"
/// or "x: invalid type".
fn field_of(message: &str) -> Option<String> {
    for marker in ["missing field `", "unknown field `"] {
        if let Some(rest) = message.split(marker).nth(1) {
            return rest.split('`').next().map(str::to_owned);
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                index: self.index.map(|i| i as u64),
                field: self.field,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
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
        assert_eq!(field_of("something else entirely"), None);
    }
}
