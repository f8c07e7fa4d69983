//! `GET /openapi.json`: the OpenAPI 3.1 description of the routes, generated from the
//! handlers' annotations and from the body types of `herald_protocol::api`, so it cannot
//! drift from the code.
//!
//! The annotations say what is particular to a route (its success reply, a `409`, a
//! `429`). What follows from a route's shape is added here, by one set of rules, so no
//! route can forget it: a per-run route answers `404`, a route that takes a body `413` and
//! `415`, a route that needs a token `401` and `403`, and every error has the one error
//! body. A stricter reader than a person checks the result: schemathesis, run against a
//! live hub by the hub's tests (`tests/hub/schemathesis.rs`).

use axum::Json;
use axum::extract::State;
use herald_protocol::api::{
    Appended, CancelRun, Cancelled, CreateRun, Created, ErrorBody, EventsPage, Health, RunsPage,
};
use herald_protocol::{RunState, event_schema};
use serde_json::{Map, Value, json};
use utoipa::OpenApi;

use crate::hub::Hub;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "herald hub",
        description = "Runs, events and live streams of long-running agents and pipelines. \
            Every error is `{\"error\": {\"code\", \"message\", \"index\"?, \"field\"?}}`."
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
    components(schemas(
        CreateRun,
        Created,
        Appended,
        EventsPage,
        RunsPage,
        CancelRun,
        Cancelled,
        Health,
        ErrorBody,
        RunState,
        crate::cursor::TypePatterns,
        crate::stream::StreamView,
        crate::stream::StreamFormat
    ))
)]
struct Doc;

/// The document. On an open hub (`open`: no admin token) every route also works without
/// a token, and the document says so.
pub(crate) fn document(open: bool) -> Value {
    let mut doc = serde_json::to_value(Doc::openapi()).unwrap_or_default();
    add_streaming_routes(&mut doc["paths"]);
    let schemas = &mut doc["components"]["schemas"];
    add_event_schemas(schemas);
    doc["components"]["securitySchemes"] = json!({
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "The hub's admin token (every route), or a run's write token \
                (append, cancel) or read token (state, poll, streams) for that run alone"
        },
        "readToken": {
            "type": "apiKey",
            "in": "query",
            "name": "token",
            "description": "A run's read token, for clients that cannot set headers (EventSource)"
        }
    });
    // The bodies of a cancel and of an AG-UI attach are optional: utoipa has no way to
    // say so of a body that is not an `Option`, and `null` is not a body the hub takes.
    doc["paths"]["/v1/runs/{id}/cancel"]["post"]["requestBody"]["required"] = json!(false);
    doc["paths"]["/v1/runs/{id}/stream"]["post"]["requestBody"]["required"] = json!(false);
    describe_run_streams(&mut doc["paths"]["/v1/runs/{id}/stream"]);
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in item {
                complete(path, method, operation, open);
            }
        }
    }
    doc
}

/// The WebSocket upgrade and the runs stream, which utoipa's annotations cannot
/// describe.
fn add_streaming_routes(paths: &mut Value) {
    let run_id = json!({"name": "id", "in": "path", "required": true, "description": "run id",
                        "schema": {"$ref": "#/components/schemas/RunId"}});
    let after = json!({"name": "after", "in": "query", "required": false,
                       "description": "Events after this `seq`, at most the run's last",
                       "schema": {"type": "integer", "format": "int64", "minimum": 0}});
    let types = json!({"name": "types", "in": "query", "required": false,
                       "description": "Type patterns, comma-separated (`tool.*,run.*`)",
                       "schema": {"$ref": "#/components/schemas/TypePatterns"}});
    paths["/v1/runs/{id}/ws"] = json!({
        "get": {
            "summary": "WebSocket of the run's events as JSON text messages; send {\"after\": SEQ} to resume",
            "parameters": [run_id, after, types],
            "security": [{"bearerAuth": []}, {"readToken": []}],
            "responses": {
                "101": {"description": "switching protocols: the run's events follow as text messages"},
                "400": {"description": "a parameter is invalid, the cursor is past the run's last event, \
                                        or the request is not a WebSocket upgrade (`not_a_websocket`)"}
            }
        }
    });
    let status = json!({"name": "status", "in": "query", "required": false,
                        "description": "Only runs with this status",
                        "schema": {"$ref": "#/components/schemas/RunStatus"}});
    let parent = json!({"name": "parent", "in": "query", "required": false,
                        "description": "Only children of this run",
                        "schema": {"$ref": "#/components/schemas/RunId"}});
    paths["/v1/runs/stream"] = json!({
        "get": {
            "summary": "Server-Sent Events of run states as they change: `event: run` with a run's state, \
                        `event: deleted` with `{\"id\"}`",
            "parameters": [status, parent],
            "security": [{"bearerAuth": []}],
            "responses": {
                "200": {"description": "the latest runs' states, then each change",
                        "content": {"text/event-stream": {"schema": {"anyOf": [
                            sse_message(json!({"const": "run"}), json!(false), schema_ref("RunState")),
                            sse_message(json!({"const": "deleted"}), json!(false), json!({
                                "type": "object", "required": ["id"],
                                "properties": {"id": schema_ref("RunId")}
                            })),
                        ]}}}}
            }
        }
    });
}

/// The messages of a run's stream, which utoipa cannot describe: in OpenAPI 3.1 the
/// schema of `text/event-stream` is that of one message (`event`, `id`, `data`), and
/// `contentSchema` says what the JSON in `data` is.
fn describe_run_streams(item: &mut Value) {
    let digits = json!({"type": "string", "pattern": "^[0-9]+$"});
    let events = json!({"anyOf": [
        // herald's events: `event` is the event's type.
        sse_message(json!({"type": "string", "not": {"enum": ["state", "message"]}}),
                    digits.clone(), schema_ref("Event")),
        // `view=state`.
        sse_message(json!({"const": "state"}), digits, schema_ref("RunState")),
        // `format=ag-ui`: AG-UI's events, whose schemas are AG-UI's; `id` is `SEQ.INDEX`.
        agui_message(),
    ]});
    item["get"]["responses"]["200"]["content"]["text/event-stream"]["schema"] = events;
    item["post"]["responses"]["200"]["content"]["text/event-stream"]["schema"] = agui_message();
}

/// One Server-Sent Events message: `event` and `id` as given (`false`: absent), and
/// `data` holding JSON of `data`'s schema.
fn sse_message(event: Value, id: Value, data: Value) -> Value {
    let mut properties = Map::new();
    properties.insert("event".to_owned(), event);
    if id != json!(false) {
        properties.insert("id".to_owned(), id);
    }
    properties.insert(
        "data".to_owned(),
        json!({"type": "string", "contentMediaType": "application/json", "contentSchema": data}),
    );
    json!({"type": "object", "required": ["data"], "properties": properties})
}

/// An AG-UI event message: no `event:` line (a client reads the default, `message`).
fn agui_message() -> Value {
    sse_message(
        json!({"const": "message"}),
        json!({"type": "string", "pattern": "^[0-9]+\\.[0-9]+$"}),
        json!({"type": "object", "required": ["type"],
               "properties": {"type": {"type": "string"}}}),
    )
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The event schema generated by schemars from the protocol's types, in place of the
/// envelope-only one utoipa can express (see `herald_protocol::api`), and `Draft`, an
/// event as a producer posts it.
fn add_event_schemas(schemas: &mut Value) {
    let mut event = event_schema();
    let Some(fields) = event.as_object_mut() else {
        return;
    };
    fields.remove("$schema");
    // The schemas the event schema shares (`LogLevel`, ...) become components: a `$ref`
    // to `#/$defs/...` would resolve against the whole document.
    if let Some(Value::Object(defs)) = fields.remove("$defs") {
        for (name, mut def) in defs {
            to_components(&mut def);
            if schemas.get(&name).is_none() {
                schemas[name] = def;
            }
        }
    }
    to_components(&mut event);
    schemas["Draft"] = draft_of(&event);
    schemas["Event"] = event;
}

/// Points `#/$defs/NAME` references at `#/components/schemas/NAME`.
fn to_components(schema: &mut Value) {
    match schema {
        Value::Object(fields) => {
            if let Some(Value::String(target)) = fields.get_mut("$ref")
                && let Some(name) = target.strip_prefix("#/$defs/")
            {
                *target = format!("#/components/schemas/{name}");
            }
            fields.values_mut().for_each(to_components);
        }
        Value::Array(items) => items.iter_mut().for_each(to_components),
        _ => {}
    }
}

/// An event as posted: the hub fills in `v`, `run` and `seq`, and `ts` when it is
/// missing. (An event may repeat its run's id in `run`; the schema leaves that out, as
/// it cannot say that the id must be the one in the path.)
fn draft_of(event: &Value) -> Value {
    let mut draft = event.clone();
    draft["title"] = json!("herald event, as posted");
    draft["description"] =
        json!("An event as a producer posts it: without `v`, `run` and `seq`, and `ts` optional");
    if let Some(variants) = draft["oneOf"].as_array_mut() {
        for variant in variants {
            if let Some(properties) = variant["properties"].as_object_mut() {
                for hub_filled in ["v", "run", "seq"] {
                    properties.remove(hub_filled);
                }
            }
            if let Some(required) = variant["required"].as_array_mut() {
                required.retain(|f| !matches!(f.as_str(), Some("v" | "run" | "seq" | "ts")));
            }
            // A producer may send `null` for either, as for no value.
            for nullable in ["id", "parent"] {
                let field = &mut variant["properties"][nullable];
                if field.is_object() {
                    *field = json!({"anyOf": [field.take(), {"type": "null"}]});
                }
            }
        }
    }
    draft
}

/// Adds the statuses that follow from the route's shape, each with the error body, and
/// the error body to every error status an annotation named without one.
fn complete(path: &str, method: &str, operation: &mut Value, open: bool) {
    let secured = operation["security"].as_array().is_some_and(|s| {
        s.iter()
            .any(|r| r.as_object().is_some_and(|r| !r.is_empty()))
    });
    let has_query = operation["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
    let has_body = operation.get("requestBody").is_some();
    let per_run = path.contains("{id}");
    let writes = path.starts_with("/v1/")
        && matches!(method, "post" | "delete")
        && !path.ends_with("/stream");

    let mut add = vec![
        (
            403,
            "refused: a token that does not open this, or on a hub without an admin token a request from another origin or host",
        ),
        (414, "the URI is over the hub's limit"),
        (500, "the hub failed; its log says why"),
        (
            503,
            "the hub cannot serve this now (its database is unreachable, or it is stopping); try again",
        ),
    ];
    if secured {
        add.push((401, "no token, or one this hub does not know"));
    }
    if per_run {
        add.push((
            400,
            "a parameter or the run id is invalid: `field` names it",
        ));
        add.push((404, "no such run"));
    }
    if has_query {
        add.push((400, "a parameter is invalid: `field` names it"));
    }
    if has_body {
        add.push((400, "the body is invalid: `field` names what is wrong"));
        add.push((413, "the body is over the hub's limit"));
        add.push((415, "the body is not sent as `application/json`"));
    }
    if writes {
        add.push((
            507,
            "the hub's disk is full: nothing was stored; try again later",
        ));
    }
    let responses = &mut operation["responses"];
    for (status, description) in add {
        let status = status.to_string();
        if responses.get(&status).is_none() {
            responses[&status] = json!({"description": description});
        }
    }
    if let Some(responses) = responses.as_object_mut() {
        for (status, response) in responses.iter_mut() {
            let is_error = status.starts_with('4') || status.starts_with('5');
            if is_error && response.get("content").is_none() {
                response["content"] = error_content();
            }
        }
        // In status order, for people reading the document.
        let mut sorted: Vec<(String, Value)> = std::mem::take(responses).into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        responses.extend(sorted);
    }
    if open && secured {
        // On an open hub no token is needed: `{}` is a requirement every request meets.
        if let Some(security) = operation["security"].as_array_mut() {
            security.insert(0, json!({}));
        }
    }
}

fn error_content() -> Value {
    let mut content = Map::new();
    content.insert(
        "application/json".to_owned(),
        json!({"schema": {"$ref": "#/components/schemas/ErrorBody"}}),
    );
    Value::Object(content)
}

/// `GET /openapi.json`.
pub(crate) async fn handler(State(hub): State<Hub>) -> Json<Value> {
    Json(document(hub.config().admin_token.is_none()))
}
