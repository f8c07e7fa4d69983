//! `GET /openapi.json`: the OpenAPI 3 description of the routes, generated from the
//! handlers' annotations, so it cannot drift from the code.

use serde_json::Value;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "herald hub",
        description = "Runs, events and live streams of long-running agents and pipelines (SPEC section 5)."
    ),
    paths(
        crate::api::create_run,
        crate::api::list_runs,
        crate::api::get_run,
        crate::api::delete_run,
        crate::api::append,
        crate::api::cancel,
        crate::api::healthz,
        crate::api::metrics,
        crate::stream::poll,
        crate::stream::sse,
        crate::stream::sse_post,
    ),
    components(schemas(crate::api::CreateRun, crate::api::CancelBody))
)]
struct Doc;

/// The document, with the routes utoipa cannot annotate (WebSocket upgrade, the runs
/// stream) added by hand.
pub(crate) fn document() -> Value {
    let mut doc = serde_json::to_value(Doc::openapi()).unwrap_or_default();
    let paths = &mut doc["paths"];
    paths["/v1/runs/{id}/ws"] = serde_json::json!({
        "get": {
            "summary": "WebSocket of the run's events as JSON text messages; send {\"after\": SEQ} to resume",
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                           {"name": "after", "in": "query", "schema": {"type": "integer"}},
                           {"name": "types", "in": "query", "schema": {"type": "string"}},
                           {"name": "token", "in": "query", "schema": {"type": "string"}}],
            "responses": {"101": {"description": "switching protocols"}, "400": {"description": "bad cursor"},
                          "401": {"description": "no or invalid token"}, "403": {"description": "token of another run"},
                          "404": {"description": "unknown run"}}
        }
    });
    paths["/v1/runs/stream"] = serde_json::json!({
        "get": {
            "summary": "Server-Sent Events of run states as they change (`event: run`, `event: deleted`)",
            "parameters": [{"name": "status", "in": "query", "schema": {"type": "string"}},
                           {"name": "parent", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "text/event-stream"}, "401": {"description": "no or invalid token"}}
        }
    });
    doc
}
