//! The router: every route of docs/http-api.md, the layers every request passes
//! (the guard, the body limit, the trace), the fallbacks, and CORS.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{Method, header};
use axum::routing::{get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::error::ApiError;
use crate::hub::Hub;
use crate::{api, dashboard, guard, openapi, stream};

pub(crate) fn router(hub: Hub) -> Router {
    let max_body = hub.config().max_body_bytes;
    let cors = cors(
        &hub.config().cors_origins,
        hub.config().admin_token.is_none(),
    );
    let router = Router::new()
        .route("/v1/runs", post(api::create_run).get(api::list_runs))
        .route("/v1/runs/stream", get(stream::runs_stream))
        .route("/v1/runs/{id}", get(api::get_run).delete(api::delete_run))
        .route("/v1/runs/{id}/events", post(api::append).get(stream::poll))
        .route("/v1/runs/{id}/stream", get(stream::sse).post(stream::sse_post))
        .route("/v1/runs/{id}/ws", get(stream::ws))
        .route("/v1/runs/{id}/cancel", post(api::cancel))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/openapi.json", get(openapi::handler))
        .route("/", get(dashboard::page))
        .route("/runs/{id}", get(dashboard::page))
        .route("/assets/{file}", get(dashboard::asset))
        // After every route: it applies to those registered before it.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            hub.clone(),
            guard::guard,
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
