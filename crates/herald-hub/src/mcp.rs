//! `/mcp`: herald for agents, as an MCP server over streamable HTTP (docs/mcp.md).
//!
//! The tools (`list_runs`, `get_run`, `wait_for_run`, `get_events`, `cancel_run`) and the
//! resources (`herald://runs/{id}`, subscribable) live here once. `herald mcp` serves
//! them over stdio by bridging to this endpoint, adding only `start_command`, which
//! must run where it runs.
//!
//! Each call goes through the REST handlers of `api` and `stream` with the headers
//! of the HTTP request that carried it, so a tool sees exactly what the same token
//! sees over REST: the same `authorize`, the same validation, the same store and
//! `RunState`. A refusal becomes a tool error (`isError: true`) with the REST error's
//! message, never a protocol error.
//!
//! The revisions served are 2025-11-25 and older (sessions, `initialize`,
//! `resources/subscribe`) and 2026-07-28 (stateless, tasks, `subscriptions/listen`);
//! docs/mcp.md says which is tested how.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Uri, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use herald_protocol::api::{ApiErrorCode, Cancelled, EventsPage, RunsPage};
use herald_protocol::{Event, RunId, RunState, RunStatus};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ContentBlock,
    CreateTaskResult, GetTaskParams, GetTaskResult, Implementation, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ProgressToken, ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, ResourceTemplate, ResourceUpdatedNotification,
    ResourceUpdatedNotificationParam, ServerCapabilities, ServerConfig, ServerNotification,
    SubscribeRequestParams, SubscriptionFilter, Tool, ToolAnnotations, UnsubscribeRequestParams,
    UpdateTaskParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::task_manager::{TaskExit, TaskManager, TaskOptions};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::access::{Admin, Body, Params, ReadRun, WriteRun};
use crate::api::{self, ListQuery};
use crate::error::ApiError;
use crate::error::db_error;
use crate::feed::Feed;
use crate::stream::PollQuery;
use crate::{Hub, auth, stream};

/// Default and longest wait of `wait_for_run`, in seconds: under the minute after
/// which MCP hosts give up on a tool call.
const WAIT_DEFAULT_S: f64 = 30.0;
/// See [`WAIT_DEFAULT_S`].
const WAIT_MAX_S: f64 = 50.0;
/// Fewest seconds between two progress notifications of one `wait_for_run`, and
/// between two `notifications/resources/updated` of one subscription.
const NOTIFY_INTERVAL: Duration = Duration::from_millis(250);
/// Failed items and tools in flight listed in a tool's result.
const LISTED: usize = 5;
/// Longest error message quoted in a tool's text.
const MAX_QUOTE_CHARS: usize = 120;
/// The URI scheme and path of a run's resource.
const RUN_URI: &str = "herald://runs/";

/// The `/mcp` service over `hub`, and the check that refuses a request without a
/// token the hub knows (when the hub has an admin token) before MCP sees it.
pub(crate) fn router(hub: Hub) -> axum::Router<Hub> {
    let config = StreamableHttpServerConfig::default()
        // The hub's `guard` checks `Host` and `Origin` on an open hub already, and a
        // hub with tokens serves any name it is reached by.
        .disable_allowed_hosts()
        .with_max_request_body_bytes(hub.config().max_body_bytes)
        .with_sse_keep_alive(Some(hub.config().keep_alive))
        .with_cancellation_token(hub.shutdown_token().child_token());
    let factory_hub = hub.clone();
    // One store of tasks for every session and stateless request of this hub.
    let tasks = Tasks::default();
    let service = StreamableHttpService::new(
        move || Ok(Mcp::new(factory_hub.clone(), tasks.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(hub, token_known))
}

/// Lets a request through when the hub is open or its token is the admin token or
/// any run's; what the token may do is decided per call.
async fn token_known(State(hub): State<Hub>, req: Request, next: Next) -> Response {
    let ending = req.method() == axum::http::Method::DELETE;
    match Admin::checked(&hub, req.headers()).await {
        Ok(Admin) => {}
        Err(e) if e.status() == axum::http::StatusCode::FORBIDDEN => {}
        Err(e) => {
            let mut res = e.into_response();
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
            return res;
        }
    }
    let req = if req.method() == axum::http::Method::POST {
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, hub.config().max_body_bytes).await {
            Ok(bytes) => bytes,
            Err(_) => {
                return ApiError::too_large(format!(
                    "the body is over the limit of {} bytes, or was cut short",
                    hub.config().max_body_bytes
                ))
                .into_response();
            }
        };
        if let Some(refusal) = jsonrpc_refusal(&bytes) {
            return (axum::http::StatusCode::BAD_REQUEST, axum::Json(refusal)).into_response();
        }
        Request::from_parts(parts, axum::body::Body::from(bytes))
    } else {
        req
    };
    let mut res = next.run(req).await;
    // rmcp answers a session's end with 202; MCP clients (the Python SDK's) expect the
    // 200 or 204 of a DELETE that is done.
    if ending && res.status() == axum::http::StatusCode::ACCEPTED {
        *res.status_mut() = axum::http::StatusCode::NO_CONTENT;
    }
    res
}

/// One MCP session's handler.
#[derive(Clone)]
struct Mcp {
    hub: Hub,
    /// Open resource subscriptions, by URI.
    subscriptions: Arc<Mutex<HashMap<String, CancellationToken>>>,
    tasks: Tasks,
}

/// The MCP tasks (SEP-2663) of `/mcp`: rmcp's store, and the `Authorization` each was
/// created with, which alone may read or cancel it (another token is told the task
/// is unknown, as a hub that never had it would say).
#[derive(Clone, Default)]
struct Tasks {
    manager: TaskManager,
    owners: Arc<Mutex<HashMap<String, Option<axum::http::HeaderValue>>>>,
}

impl Tasks {
    /// Checks that `headers` carry the token that created `task`.
    fn owned(&self, task: &str, headers: &HeaderMap) -> Result<(), ErrorData> {
        let owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        match owners.get(task) {
            Some(owner) if owner.as_ref() == headers.get(axum::http::header::AUTHORIZATION) => {
                Ok(())
            }
            _ => Err(ErrorData::invalid_params(
                format!("no task `{task}` (unknown, expired, or another token's)"),
                None,
            )),
        }
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        // The last clone of a session's handler: its subscriptions end with it.
        if Arc::strong_count(&self.subscriptions) == 1 {
            let subs = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
            for token in subs.values() {
                token.cancel();
            }
        }
    }
}

/// `list_runs` arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListRunsArgs {
    /// Only runs with this status: running, stalled, succeeded, failed or cancelled.
    status: Option<String>,
    /// At most this many runs, newest first (default 20, at most 500).
    limit: Option<u32>,
}

/// `get_run` and `wait_for_run` arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RunArgs {
    /// The run's id.
    run: String,
}

/// `wait_for_run` arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WaitArgs {
    /// The run's id.
    run: String,
    /// Longest wait in seconds (default 30, at most 50); call again while it is
    /// still running.
    timeout_s: Option<f64>,
}

/// `get_events` arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct EventsArgs {
    /// The run's id.
    run: String,
    /// Events after this cursor (`seq`; 0, the default, is from the start): the
    /// `next_cursor` of the previous call.
    after: Option<u64>,
    /// Only these event types: comma-separated patterns (`item.*,log`).
    types: Option<String>,
    /// At most this many events (default 50, at most 1000).
    limit: Option<u32>,
}

/// `cancel_run` arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CancelArgs {
    /// The run's id.
    run: String,
    /// Why, for whoever reads the run.
    reason: Option<String>,
}

/// A run as a tool reports it: what an agent needs to decide, not the whole state
/// (that is the resource `herald://runs/{id}`).
#[derive(Serialize, JsonSchema)]
struct RunView {
    id: String,
    name: String,
    /// running, stalled, succeeded, failed or cancelled.
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    percent: Option<f64>,
    elapsed_s: f64,
    /// Seconds left in the current stage, once it can be estimated.
    #[serde(skip_serializing_if = "Option::is_none")]
    eta_s: Option<f64>,
    /// The stage running now.
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<StageView>,
    items: ItemsView,
    /// The latest failed items (at most 5).
    failed_items: Vec<FailedItem>,
    /// Tool calls running now (at most 5).
    tools_in_flight: Vec<ToolView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    cancel_requested: bool,
    /// The run's result, once it finished with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    /// The `seq` of its last event.
    last_seq: u64,
}

#[derive(Serialize, JsonSchema)]
struct StageView {
    name: String,
    done: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<String>,
}

#[derive(Serialize, JsonSchema)]
struct ItemsView {
    succeeded: u64,
    failed: u64,
    skipped: u64,
    running: u64,
}

#[derive(Serialize, JsonSchema)]
struct FailedItem {
    item: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize, JsonSchema)]
struct ToolView {
    tool: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    feedback: Option<String>,
}

/// `get_run`'s result.
#[derive(Serialize, JsonSchema)]
struct GetRunOutput {
    run: RunView,
}

/// `list_runs`'s result.
#[derive(Serialize, JsonSchema)]
struct ListRunsOutput {
    runs: Vec<RunView>,
    /// More runs match than were listed.
    more: bool,
}

/// `wait_for_run`'s result.
#[derive(Serialize, JsonSchema)]
struct WaitOutput {
    /// Why the wait ended: `finished`, `stalled`, or `timeout` (still running: call
    /// again).
    outcome: String,
    waited_s: f64,
    run: RunView,
}

/// `get_events`'s result.
#[derive(Serialize, JsonSchema)]
struct EventsOutput {
    /// The events, as the protocol writes them.
    events: Vec<Value>,
    /// Pass as `after` to read on.
    next_cursor: u64,
    /// The `seq` of the run's last event.
    last_seq: u64,
    status: String,
}

/// `cancel_run`'s result.
#[derive(Serialize, JsonSchema)]
struct CancelOutput {
    run: String,
    cancel_requested: bool,
    last_seq: u64,
}

/// The tools `/mcp` serves, with their schemas; `herald mcp` lists the same.
pub fn tools() -> Vec<Tool> {
    let read_only = ToolAnnotations::new()
        .read_only(true)
        .destructive(false)
        .open_world(false);
    vec![
        Tool::new(
            "list_runs",
            "List runs on the herald hub, newest first, with status, percent, stage and ETA.",
            Map::new(),
        )
        .with_input_schema::<ListRunsArgs>()
        .with_output_schema::<ListRunsOutput>()
        .with_annotations(read_only.clone()),
        Tool::new(
            "get_run",
            "A run's status, percent, stage, ETA, failed items with their errors, tools in \
             flight and last error.",
            Map::new(),
        )
        .with_input_schema::<RunArgs>()
        .with_output_schema::<GetRunOutput>()
        .with_annotations(read_only.clone()),
        Tool::new(
            "wait_for_run",
            "Wait until a run finishes or stalls, at most timeout_s (default 30, max 50). \
             On a timeout the result says it is still running: call again. Sends progress \
             notifications while waiting when given a progress token.",
            Map::new(),
        )
        .with_input_schema::<WaitArgs>()
        .with_output_schema::<WaitOutput>()
        .with_annotations(read_only.clone()),
        Tool::new(
            "get_events",
            "A run's events after a cursor (0: from the start), optionally only some types \
             (`item.*,log`), and the cursor to read on from.",
            Map::new(),
        )
        .with_input_schema::<EventsArgs>()
        .with_output_schema::<EventsOutput>()
        .with_annotations(read_only),
        Tool::new(
            "cancel_run",
            "Ask a run to stop (advisory: the run decides how). Needs the admin token or \
             the run's write token.",
            Map::new(),
        )
        .with_input_schema::<CancelArgs>()
        .with_output_schema::<CancelOutput>()
        .with_annotations(
            ToolAnnotations::new()
                .read_only(false)
                .destructive(true)
                .idempotent(true)
                .open_world(false),
        ),
    ]
}

/// The server's description for `initialize`, shared with `herald mcp`.
pub fn server_config(instructions: &str) -> ServerConfig {
    ServerConfig::new(
        ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_resources_subscribe()
            // `wait_for_run` as a task, for the clients that declare the extension.
            .enable_tasks()
            .build(),
    )
    .with_protocol_version(ProtocolVersion::V_2025_11_25)
    .with_server_info(Implementation::new("herald", env!("CARGO_PKG_VERSION")))
    .with_instructions(instructions)
}

/// The protocol revisions served: those with the `initialize` handshake, and
/// 2026-07-28.
pub fn protocol_versions() -> Cow<'static, [ProtocolVersion]> {
    Cow::Borrowed(&[
        ProtocolVersion::V_2025_11_25,
        ProtocolVersion::V_2025_06_18,
        ProtocolVersion::V_2025_03_26,
        // The tasks extension's clients speak 2026-07-28 (stateless requests), which
        // rmcp serves beside the sessions of the older revisions.
        ProtocolVersion::V_2026_07_28,
    ])
}

/// What the server tells the model about itself.
pub const INSTRUCTIONS: &str = "herald tracks long-running jobs (runs). Use list_runs to \
find one, get_run for its state, wait_for_run to block until it ends (call again while \
it says still running), get_events to read what happened, cancel_run to stop it. The \
resource herald://runs/{id} is a run's whole state as JSON.";

/// The run a `herald://runs/{id}` URI names.
fn run_of_uri(uri: &str) -> Option<&str> {
    uri.strip_prefix(RUN_URI).filter(|id| !id.is_empty())
}

impl Mcp {
    fn new(hub: Hub, tasks: Tasks) -> Mcp {
        Mcp {
            hub,
            subscriptions: Arc::default(),
            tasks,
        }
    }

    /// `wait_for_run` as a task: answered at once with the task, which ends with the
    /// call's result, or cancelled by `tasks/cancel` (the wait, not the run).
    fn wait_task(&self, headers: HeaderMap, args: WaitArgs) -> CallToolResponse {
        let waiter = Mcp::new(self.hub.clone(), self.tasks.clone());
        let owner = headers.get(axum::http::header::AUTHORIZATION).cloned();
        let stop = self.hub.shutdown_token().child_token();
        let task = self.tasks.manager.spawn(
            TaskOptions::new()
                .with_poll_interval_ms(500)
                .with_status_message(format!("waiting for run {}", args.run)),
            move |ctx| {
                Box::pin(async move {
                    let waited = waiter.wait_for_run(&headers, args, None, &stop);
                    tokio::select! {
                        res = waited => Ok(tool_result(res)),
                        () = ctx.cancelled() => Err(TaskExit::Cancelled),
                    }
                })
            },
        );
        let mut owners = self.tasks.owners.lock().unwrap_or_else(|e| e.into_inner());
        // Forget the owners of tasks rmcp has let go (their TTL passed).
        owners.retain(|id, _| self.tasks.manager.get_task(id).is_ok());
        owners.insert(task.task_id.clone(), owner);
        CallToolResponse::Task(CreateTaskResult::new(task))
    }

    async fn list_runs(&self, headers: &HeaderMap, args: ListRunsArgs) -> Result<Value, ApiError> {
        let limit = args.limit.unwrap_or(20);
        let listed = match Admin::checked(&self.hub, headers).await {
            Ok(admin) => self.list_page(admin, &args, limit).await,
            Err(e) => Err(e),
        };
        let (runs, more) = match listed {
            // The list says where the next page starts only when there is one.
            Ok(page) => (page.runs, page.next_before.is_some()),
            // A run's own token lists its run.
            Err(e) if e.status() == axum::http::StatusCode::FORBIDDEN => {
                let run = self.token_run(headers).await?.ok_or(e)?;
                let state = self.get_state(headers, run.as_str()).await?;
                let wanted = args
                    .status
                    .as_deref()
                    .map(str::parse::<RunStatus>)
                    .transpose()
                    .map_err(|e| ApiError::invalid_field("status", e))?;
                let runs = match wanted {
                    Some(s) if s != state.status => Vec::new(),
                    _ => vec![state],
                };
                (runs, false)
            }
            Err(e) => return Err(e),
        };
        let mut text = match (runs.len(), &args.status) {
            (0, None) => "no runs".to_owned(),
            (0, Some(status)) => format!("no {status} runs"),
            (n, _) => format!("{n} run{}:", if n == 1 { "" } else { "s" }),
        };
        for state in &runs {
            text.push_str("\n- ");
            text.push_str(&summary(state));
        }
        if more {
            text.push_str("\n(more runs match: raise `limit`)");
        }
        let out = ListRunsOutput {
            runs: runs.iter().map(view).collect(),
            more,
        };
        Ok(structured(text, &out))
    }

    /// A page of `GET /v1/runs` with `list_runs`'s status, `limit` and `before`.
    async fn list_page(
        &self,
        admin: Admin,
        args: &ListRunsArgs,
        limit: u32,
    ) -> Result<RunsPage, ApiError> {
        let mut query = format!("/?limit={limit}");
        if let Some(status) = &args.status {
            query.push_str("&status=");
            query.push_str(&urlencode(status));
        }
        let uri: Uri = query.parse().map_err(ApiError::internal)?;
        let Query(query) = Query::<ListQuery>::try_from_uri(&uri)?;
        let page = api::list_runs(State(self.hub.clone()), admin, Params(query)).await?;
        Ok(page.0)
    }

    /// The run a run token belongs to (`None` for no token, or the admin token).
    async fn token_run(&self, headers: &HeaderMap) -> Result<Option<RunId>, ApiError> {
        let Some(token) = auth::presented(headers, None) else {
            return Ok(None);
        };
        let found = self
            .hub
            .store()
            .token(&auth::hash(&token))
            .await
            .map_err(db_error)?;
        Ok(found.map(|(run, _)| run))
    }

    async fn get_state(&self, headers: &HeaderMap, run: &str) -> Result<RunState, ApiError> {
        let run = ReadRun::checked(&self.hub, headers, run).await?;
        let state = api::get_run(State(self.hub.clone()), run).await?;
        Ok(state.0)
    }

    async fn get_run(&self, headers: &HeaderMap, args: RunArgs) -> Result<Value, ApiError> {
        run_arg(&args.run)?;
        let state = self.get_state(headers, &args.run).await?;
        Ok(structured(
            summary(&state),
            &GetRunOutput { run: view(&state) },
        ))
    }

    /// Waits for the run; `progress` is where to send `notifications/progress` (the
    /// client's token and the peer), and `stop` ends the wait early (the client went).
    async fn wait_for_run(
        &self,
        headers: &HeaderMap,
        args: WaitArgs,
        progress: Option<(ProgressToken, Peer<RoleServer>)>,
        stop: &CancellationToken,
    ) -> Result<Value, ApiError> {
        run_arg(&args.run)?;
        let timeout_s = wait_timeout(args.timeout_s)?;
        let started = tokio::time::Instant::now();
        let deadline = started + Duration::from_secs_f64(timeout_s);
        let mut state = self.get_state(headers, &args.run).await?;
        let feed = self.hub.feed(&state.id, state.last_seq);
        let mut changed = feed.subscribe();
        let mut told = String::new();
        let mut told_progress = -1.0_f64;
        let mut outcome = loop {
            if state.status.is_terminal() {
                break "finished";
            }
            if state.status == RunStatus::Stalled {
                break "stalled";
            }
            if let Some((token, peer)) = &progress {
                let line = summary(&state);
                if line != told {
                    // MCP wants each notification's progress above the last: a line
                    // that changed while the percent did not moves it a hair.
                    let percent = state.percent.unwrap_or(0.0);
                    let progress = if percent > told_progress {
                        percent
                    } else {
                        told_progress + 0.001
                    };
                    let mut note = ProgressNotificationParam::new(token.clone(), progress)
                        .with_message(line.clone());
                    if progress <= 100.0 {
                        note = note.with_total(100.0);
                    }
                    // A client gone away ends the call below, through `ct`.
                    let _ = peer.notify_progress(note).await;
                    told = line;
                    told_progress = progress;
                }
            }
            changed.borrow_and_update();
            tokio::select! {
                res = changed.changed() => {
                    if res.is_err() {
                        break "timeout";
                    }
                }
                () = tokio::time::sleep_until(deadline) => break "timeout",
                () = stop.cancelled() => break "timeout",
                () = self.hub.shutdown_token().cancelled() => break "timeout",
            }
            // At most a few looks a second, however fast the run appends.
            let rest = deadline.saturating_duration_since(tokio::time::Instant::now());
            tokio::time::sleep(NOTIFY_INTERVAL.min(rest)).await;
            state = self.get_state(headers, &args.run).await?;
        };
        if outcome == "timeout" {
            // It may have ended in the last moment.
            state = self.get_state(headers, &args.run).await?;
            if state.status.is_terminal() {
                outcome = "finished";
            } else if state.status == RunStatus::Stalled {
                outcome = "stalled";
            }
        }
        let waited_s = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        let text = match outcome {
            "timeout" => format!(
                "still running after waiting {}: {}; call wait_for_run again",
                duration(waited_s),
                summary(&state)
            ),
            _ => summary(&state),
        };
        let out = WaitOutput {
            outcome: outcome.to_owned(),
            waited_s,
            run: view(&state),
        };
        Ok(structured(text, &out))
    }

    async fn get_events(&self, headers: &HeaderMap, args: EventsArgs) -> Result<Value, ApiError> {
        run_arg(&args.run)?;
        let after = args.after.unwrap_or(0);
        let limit = args.limit.unwrap_or(50);
        let mut query = format!("/?after={after}&limit={limit}");
        if let Some(types) = &args.types {
            query.push_str("&types=");
            query.push_str(&urlencode(types));
        }
        let uri: Uri = query.parse().map_err(ApiError::internal)?;
        let Query(query) = Query::<PollQuery>::try_from_uri(&uri)?;
        let run = ReadRun::checked(&self.hub, headers, &args.run).await?;
        let res = stream::poll(State(self.hub.clone()), Params(query), run)
            .await
            .map_err(cursor_is_after)?;
        // The poll writes its page straight from the stored events; read it back.
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .map_err(ApiError::internal)?;
        let page: EventsPage = serde_json::from_slice(&body).map_err(ApiError::internal)?;
        let next_cursor = page.events.last().map_or(after, |e| e.seq);
        let mut text = format!(
            "run {}: {} event{} after {after} (last seq {}, {})",
            args.run,
            page.events.len(),
            if page.events.len() == 1 { "" } else { "s" },
            page.last_seq,
            page.status.as_str()
        );
        for event in &page.events {
            text.push('\n');
            text.push_str(&event_line(event));
        }
        if next_cursor < page.last_seq {
            let _ = write!(text, "\nnext cursor: {next_cursor}");
        }
        let out = EventsOutput {
            events: page
                .events
                .iter()
                .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
                .collect(),
            next_cursor,
            last_seq: page.last_seq,
            status: page.status.as_str().to_owned(),
        };
        Ok(structured(text, &out))
    }

    async fn cancel_run(&self, headers: &HeaderMap, args: CancelArgs) -> Result<Value, ApiError> {
        run_arg(&args.run)?;
        let body =
            serde_json::to_vec(&json!({ "reason": args.reason })).map_err(ApiError::internal)?;
        let run = WriteRun::checked(&self.hub, headers, &args.run).await?;
        let Cancelled { last_seq, .. } = api::cancel(
            State(self.hub.clone()),
            run,
            Body(axum::body::Bytes::from(body)),
        )
        .await?
        .0;
        let text = format!(
            "cancel requested for run {}: the run decides how to stop; wait_for_run tells \
             when it has",
            args.run
        );
        let out = CancelOutput {
            run: args.run,
            cancel_requested: true,
            last_seq,
        };
        Ok(structured(text, &out))
    }
}

/// A tool's `run` argument, refused by that name when it is no run id (the REST
/// routes call it `id`, which no tool takes).
fn run_arg(run: &str) -> Result<(), ApiError> {
    RunId::new(run)
        .map(drop)
        .map_err(|e| ApiError::invalid_field("run", format!("`run` `{run}` is an {e}")))
}

/// A cursor past the run's last event, said of `get_events`'s `after`.
fn cursor_is_after(e: ApiError) -> ApiError {
    if e.body().error.code == ApiErrorCode::CursorOutOfRange {
        e.with_field("after")
    } else {
        e
    }
}

/// `wait_for_run`'s `timeout_s`: the default, or seconds from 0 to [`WAIT_MAX_S`];
/// anything else (negative, above the longest wait, not finite) is refused, naming it.
fn wait_timeout(timeout_s: Option<f64>) -> Result<f64, ApiError> {
    match timeout_s {
        None => Ok(WAIT_DEFAULT_S),
        Some(t) if t.is_finite() && (0.0..=WAIT_MAX_S).contains(&t) => Ok(t),
        Some(t) => Err(ApiError::invalid_field(
            "timeout_s",
            format!(
                "`timeout_s` must be seconds from 0 to {WAIT_MAX_S}, not {t}: call again to \
                 wait longer"
            ),
        )),
    }
}

/// The headers of the HTTP request that carried an MCP request.
fn headers_of(extensions: &rmcp::model::Extensions) -> HeaderMap {
    extensions
        .get::<Parts>()
        .map(|parts| parts.headers.clone())
        .unwrap_or_default()
}

/// A tool's text and `structuredContent`, before they become a result.
fn structured(text: String, out: &impl Serialize) -> Value {
    json!({ "text": text, "structured": out })
}

fn parse_args<T: DeserializeOwned>(args: Option<Map<String, Value>>) -> Result<T, String> {
    let value = Value::Object(args.unwrap_or_default());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("invalid arguments: {}", e.inner())
        } else {
            format!("invalid argument `{path}`: {}", e.inner())
        }
    })
}

/// What a REST refusal says, naming its field when the sentence does not.
fn refusal(e: &ApiError) -> String {
    let body = e.body().error;
    match body.field {
        Some(field) if !body.message.contains(&format!("`{field}`")) => {
            format!("invalid `{field}`: {}", body.message)
        }
        _ => body.message,
    }
}

/// The JSON-RPC error answering `message` when it is not a JSON-RPC message at all
/// (`-32700` for JSON that does not parse, `-32600` for JSON that is no request,
/// notification or response), or `None` for one to hand to MCP. rmcp drops such a
/// message without a word on stdio and answers `415` in plain text over HTTP; JSON-RPC
/// says to answer, with `id` null where it cannot be told.
pub fn jsonrpc_refusal(message: &[u8]) -> Option<Value> {
    let refuse = |id: Value, code: i64, message: String| {
        Some(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}))
    };
    let value: Value = match serde_json::from_slice(message) {
        Ok(value) => value,
        Err(e) => return refuse(Value::Null, -32700, format!("parse error: {e}")),
    };
    let Some(object) = value.as_object() else {
        return refuse(
            Value::Null,
            -32600,
            "invalid request: a JSON-RPC message is an object (MCP has no batches)".into(),
        );
    };
    let id = object
        .get("id")
        .filter(|id| id.is_string() || id.is_number())
        .cloned()
        .unwrap_or(Value::Null);
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return refuse(
            id,
            -32600,
            "invalid request: `jsonrpc` must be \"2.0\"".into(),
        );
    }
    let request = object.get("method").is_some_and(Value::is_string);
    let response = !id.is_null() && (object.contains_key("result") || object.contains_key("error"));
    if !request && !response {
        return refuse(
            id,
            -32600,
            "invalid request: a request or notification needs a `method` string".into(),
        );
    }
    // rmcp reads a known method whose parameters it cannot read as an unknown one
    // (`-32601`); the parameters these methods cannot go without are checked here.
    let needs = match object.get("method").and_then(Value::as_str) {
        Some("tools/call") => "name",
        Some("resources/read" | "resources/subscribe" | "resources/unsubscribe") => "uri",
        _ => return None,
    };
    if !object
        .get("params")
        .and_then(|p| p.get(needs))
        .is_some_and(Value::is_string)
    {
        return refuse(
            id,
            -32602,
            format!("invalid params: `params.{needs}` must be a string"),
        );
    }
    None
}

/// A tool error: `isError: true`, with a sentence the model reads.
pub fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

/// A tool's answer as MCP carries it: the text and `structuredContent`, or the tool
/// error that says why not.
fn tool_result(res: Result<Value, ApiError>) -> CallToolResult {
    match res {
        Ok(mut value) => {
            let text = value["text"].as_str().unwrap_or_default().to_owned();
            let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
            result.structured_content = Some(value["structured"].take());
            result
        }
        Err(e) => tool_error(refusal(&e)),
    }
}

impl ServerHandler for Mcp {
    fn get_info(&self) -> ServerConfig {
        server_config(INSTRUCTIONS)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        protocol_versions()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let headers = headers_of(&context.extensions);
        let args = request.arguments;
        let res = match request.name.as_ref() {
            "list_runs" => match parse_args(args) {
                Ok(a) => self.list_runs(&headers, a).await,
                Err(e) => return Ok(tool_error(e).into()),
            },
            "get_run" => match parse_args(args) {
                Ok(a) => self.get_run(&headers, a).await,
                Err(e) => return Ok(tool_error(e).into()),
            },
            "wait_for_run" => match parse_args(args) {
                // A client of the tasks extension gets the wait as a task.
                Ok(a)
                    if context
                        .client_capabilities()
                        .is_some_and(|caps| caps.supports_tasks()) =>
                {
                    return Ok(self.wait_task(headers, a));
                }
                Ok(a) => {
                    let progress = context
                        .meta
                        .get_progress_token()
                        .map(|token| (token, context.peer.clone()));
                    self.wait_for_run(&headers, a, progress, &context.ct).await
                }
                Err(e) => return Ok(tool_error(e).into()),
            },
            "get_events" => match parse_args(args) {
                Ok(a) => self.get_events(&headers, a).await,
                Err(e) => return Ok(tool_error(e).into()),
            },
            "cancel_run" => match parse_args(args) {
                Ok(a) => self.cancel_run(&headers, a).await,
                Err(e) => return Ok(tool_error(e).into()),
            },
            "start_command" => {
                return Ok(tool_error(
                    "start_command runs a command where the MCP server runs: only `herald mcp \
                     --allow-exec` offers it, not the hub's /mcp",
                )
                .into());
            }
            other => {
                return Err(ErrorData::invalid_params(
                    format!(
                        "no tool `{other}`: the tools are list_runs, get_run, wait_for_run, get_events, cancel_run"
                    ),
                    None,
                ));
            }
        };
        Ok(tool_result(res).into())
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        self.tasks
            .owned(&request.task_id, &headers_of(&context.extensions))?;
        Ok(GetTaskResult::new(
            self.tasks.manager.get_task(&request.task_id)?,
        ))
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // No tool here asks for input: answers are acknowledged and ignored.
        self.tasks
            .owned(&request.task_id, &headers_of(&context.extensions))?;
        self.tasks
            .manager
            .update_task(&request.task_id, std::iter::empty())
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.tasks
            .owned(&request.task_id, &headers_of(&context.extensions))?;
        self.tasks.manager.cancel_task(&request.task_id)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let headers = headers_of(&context.extensions);
        let listed = self
            .list_runs(
                &headers,
                ListRunsArgs {
                    status: None,
                    limit: Some(50),
                },
            )
            .await
            .map_err(|e| ErrorData::internal_error(e.message().to_owned(), None))?;
        let resources = listed["structured"]["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|run| {
                let id = run["id"].as_str()?;
                let name = run["name"].as_str().unwrap_or(id);
                let mut resource = Resource::new(format!("{RUN_URI}{id}"), name.to_owned())
                    .with_description(format!("run {id}: its state as JSON"));
                resource.mime_type = Some("application/json".into());
                Some(resource)
            })
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let mut template = ResourceTemplate::new("herald://runs/{id}", "run")
            .with_description("A run's whole state as JSON; subscribe to hear when it changes");
        template.mime_type = Some("application/json".into());
        Ok(ListResourceTemplatesResult::with_all_items(vec![template]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let headers = headers_of(&context.extensions);
        let state = self.resource_state(&headers, &request.uri).await?;
        let json = serde_json::to_string(&state)
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let contents = ResourceContents::TextResourceContents {
            uri: request.uri,
            mime_type: Some("application/json".into()),
            text: json,
            meta: None,
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    /// 2026-07-28's subscriptions: of what a client asks, the runs' resources (herald
    /// sends no other notification). Whether the caller may read each run is checked
    /// in `listen`, which has the request's token.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let runs = requested
            .resource_subscriptions
            .iter()
            .flatten()
            .filter(|uri| run_of_uri(uri).is_some());
        Some(
            SubscriptionFilter::builder()
                .resource_subscriptions(runs.cloned())
                .build(),
        )
    }

    /// One `subscriptions/listen` stream: `notifications/resources/updated` for each
    /// accepted run while it changes (at most one per `NOTIFY_INTERVAL`), until the
    /// client cancels the request or the hub shuts down. A run the token may not read
    /// ends the request with the same error `resources/read` gives.
    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let headers = headers_of(&context.request_context().extensions);
        // Each run once, however often the request names it (rmcp acknowledges the
        // request's list as it came): one watch per run, not per mention.
        let uris: std::collections::BTreeSet<String> = context
            .accepted()
            .resource_subscriptions
            .iter()
            .flatten()
            .cloned()
            .collect();
        let mut watches = tokio::task::JoinSet::new();
        for uri in uris {
            let state = self.resource_state(&headers, &uri).await?;
            if state.status.is_terminal() {
                continue; // it will not change again
            }
            let feed = self.hub.feed(&state.id, state.last_seq);
            let changed = feed.subscribe();
            let sink = context.sink().clone();
            let send = move |note| {
                let sink = sink.clone();
                async move {
                    let note = ServerNotification::ResourceUpdatedNotification(
                        ResourceUpdatedNotification::new(note),
                    );
                    sink.send(note).await.is_ok()
                }
            };
            watches.spawn(notify_changes(feed, changed, uri, send));
        }
        let shutdown = self.hub.shutdown_token().clone();
        tokio::select! {
            () = context.cancelled() => {}
            () = shutdown.cancelled() => {}
        }
        // Dropping `watches` stops them.
        Ok(())
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let headers = headers_of(&context.extensions);
        let state = self.resource_state(&headers, &request.uri).await?;
        let token = CancellationToken::new();
        {
            let mut subs = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(old) = subs.insert(request.uri.clone(), token.clone()) {
                old.cancel();
            }
        }
        if state.status.is_terminal() {
            return Ok(()); // it will not change again
        }
        let feed = self.hub.feed(&state.id, state.last_seq);
        let changed = feed.subscribe();
        let peer = context.peer.clone();
        let send = move |note| {
            let peer = peer.clone();
            async move { peer.notify_resource_updated(note).await.is_ok() }
        };
        let shutdown = self.hub.shutdown_token().clone();
        let watch = notify_changes(feed, changed, request.uri, send);
        tokio::spawn(async move {
            tokio::select! {
                () = watch => {}
                () = token.cancelled() => {}
                () = shutdown.cancelled() => {}
            }
        });
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let mut subs = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(token) = subs.remove(&request.uri) {
            token.cancel();
        }
        Ok(())
    }
}

/// Sends `notify` each time the run behind `feed` changes (`changed` is its watch, taken
/// when the client subscribed, so that no change since is missed), at most once per
/// `NOTIFY_INTERVAL`, until a send fails or the feed ends: the one watch behind both
/// `resources/subscribe` and `subscriptions/listen`. It holds the feed, which lives
/// while someone does.
async fn notify_changes<F, Fut>(
    feed: Arc<Feed>,
    mut changed: watch::Receiver<u64>,
    uri: String,
    mut notify: F,
) where
    F: FnMut(ResourceUpdatedNotificationParam) -> Fut,
    Fut: Future<Output = bool>,
{
    let _feed = feed;
    while changed.changed().await.is_ok() {
        if !notify(ResourceUpdatedNotificationParam::new(uri.clone())).await {
            return;
        }
        tokio::time::sleep(NOTIFY_INTERVAL).await;
    }
}

impl Mcp {
    /// The state a resource URI names, as the caller may see it.
    async fn resource_state(&self, headers: &HeaderMap, uri: &str) -> Result<RunState, ErrorData> {
        let Some(run) = run_of_uri(uri) else {
            return Err(ErrorData::invalid_params(
                format!("`{uri}` is not a herald resource: they are herald://runs/{{id}}"),
                None,
            ));
        };
        self.get_state(headers, run).await.map_err(|e| {
            let data = Some(json!({ "uri": uri, "status": e.status().as_u16() }));
            if e.status() == axum::http::StatusCode::NOT_FOUND {
                ErrorData::resource_not_found(e.message().to_owned(), data)
            } else {
                ErrorData::invalid_params(e.message().to_owned(), data)
            }
        })
    }
}

/// The fields of a state a tool reports.
fn view(state: &RunState) -> RunView {
    let stage = state.current_stage().map(|s| StageView {
        name: s.name.clone(),
        done: s.progress.done,
        total: s.progress.total,
        unit: s.progress.unit.clone(),
    });
    RunView {
        id: state.id.to_string(),
        name: state.name.clone(),
        status: state.status.as_str().to_owned(),
        percent: state.percent.map(|p| (p * 10.0).round() / 10.0),
        elapsed_s: (state.elapsed_s * 10.0).round() / 10.0,
        eta_s: state.eta_s.map(f64::round),
        stage,
        items: ItemsView {
            succeeded: state.items.succeeded,
            failed: state.items.failed,
            skipped: state.items.skipped,
            running: state.items.running,
        },
        failed_items: state
            .failed_items
            .iter()
            .rev()
            .take(LISTED)
            .map(|f| FailedItem {
                item: f.item.clone(),
                error: f.error.clone(),
            })
            .collect(),
        tools_in_flight: state
            .tools
            .in_flight
            .iter()
            .take(LISTED)
            .map(|t| ToolView {
                tool: t.tool.clone(),
                feedback: t.feedback.clone(),
            })
            .collect(),
        last_error: state.last_error.as_ref().map(|e| e.message.clone()),
        cancel_requested: state.cancel_requested,
        result: state.result.clone(),
        last_seq: state.last_seq,
    }
}

/// A run in one line an agent reads in few tokens, e.g. `run X (demo): failed after
/// 52 s, 200 items (199 succeeded, 1 failed: doc-007: malformed JSON)`.
pub(crate) fn summary(state: &RunState) -> String {
    let mut s = format!("run {} ({})", state.id, quote(&state.name, 60));
    let status = state.status.as_str();
    if state.status.is_terminal() {
        let _ = write!(s, ": {status} after {}", duration(state.elapsed_s));
    } else {
        let _ = write!(s, ": {status}");
        if let Some(p) = state.percent {
            let _ = write!(s, " {p:.0}%");
        }
        if let Some(stage) = state.current_stage() {
            let _ = write!(
                s,
                ", stage {} {}",
                quote(&stage.name, 40),
                stage.progress.done
            );
            if let Some(total) = stage.progress.total {
                let _ = write!(s, "/{total}");
            }
            if let Some(unit) = &stage.progress.unit {
                let _ = write!(s, " {}", quote(unit, 20));
            }
        }
        if let Some(eta) = state.eta_s {
            let _ = write!(s, ", ETA {}", duration(eta));
        }
        let _ = write!(s, ", elapsed {}", duration(state.elapsed_s));
    }
    let items = &state.items;
    if state.status.is_terminal() && !state.stages.is_empty() {
        // Where each stage got to says more than one count over all of them.
        s.push_str("; stages");
        for (i, stage) in state.stages.iter().take(LISTED).enumerate() {
            s.push_str(if i == 0 { " " } else { ", " });
            let _ = write!(s, "{} {}", quote(&stage.name, 30), stage.progress.done);
            if let Some(total) = stage.progress.total {
                let _ = write!(s, "/{total}");
            }
        }
        if state.stages.len() > LISTED {
            let _ = write!(s, " and {} more", state.stages.len() - LISTED);
        }
    } else if state.stages.is_empty() && items.succeeded + items.skipped > 0 {
        let _ = write!(s, ", {} items done", items.succeeded + items.skipped);
    }
    if items.running > 0 && !state.status.is_terminal() {
        let _ = write!(s, ", {} items running", items.running);
    }
    if items.failed > 0 {
        let _ = write!(
            s,
            "; {} item{} failed",
            items.failed,
            if items.failed == 1 { "" } else { "s" }
        );
        if let Some(f) = state.failed_items.last() {
            let _ = write!(s, ", the latest {}", quote(&f.item, 40));
            if let Some(e) = &f.error {
                let _ = write!(s, ": {}", quote(e, MAX_QUOTE_CHARS));
            }
        }
    }
    if !state.status.is_terminal() && !state.tools.in_flight.is_empty() {
        let _ = write!(s, "; tools running: ");
        for (i, t) in state.tools.in_flight.iter().take(3).enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&quote(&t.tool, 40));
            if let Some(f) = &t.feedback {
                let _ = write!(s, " ({})", quote(f, 60));
            }
        }
    }
    if let Some(e) = &state.last_error {
        let quoted_already = state
            .failed_items
            .last()
            .and_then(|f| f.error.as_deref())
            .is_some_and(|f| f == e.message);
        if !quoted_already && state.status != RunStatus::Succeeded {
            let _ = write!(s, "; last error: {}", quote(&e.message, MAX_QUOTE_CHARS));
        }
    }
    if state.cancel_requested && !state.status.is_terminal() {
        s.push_str("; cancel requested");
    }
    if state.status == RunStatus::Stalled {
        s.push_str("; silent past its heartbeat timeout");
    }
    s
}

/// One event in a line: its `seq`, type and fields, cut short.
fn event_line(event: &Event) -> String {
    let mut json: Value = serde_json::from_str(&event.to_json()).unwrap_or(Value::Null);
    if let Some(map) = json.as_object_mut() {
        for key in ["v", "run", "seq", "event", "id"] {
            map.remove(key);
        }
    }
    let fields = quote(&json.to_string(), 160);
    format!("{} {} {fields}", event.seq, event.event_type())
}

/// `text` on one line, at most `max` characters.
fn quote(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Seconds as a person says them: `52 s`, `3 min 12 s`, `1 h 4 min`.
fn duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// Percent-encodes a query value.
fn urlencode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'*' | b',') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Folds `events` (bodies without the envelope) into a run's state and checks its
    /// line.
    #[track_caller]
    fn check(events: &[Value], expected: &str) {
        let events: Vec<Event> = events
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let mut event = json!({
                    "v": 1,
                    "run": "r1",
                    "seq": i + 1,
                    "ts": format!("2026-01-01T00:00:{:02}Z", i * 10),
                });
                event
                    .as_object_mut()
                    .expect("an object")
                    .extend(body.as_object().expect("an object").clone());
                herald_protocol::parse_event(&event.to_string()).expect("an event")
            })
            .collect();
        let state = herald_protocol::fold(RunId::new("r1").expect("an id"), &events);
        assert_eq!(summary(&state), expected);
    }

    #[test]
    fn a_run_reads_in_one_line() {
        let started = json!({"event": "run.started", "name": "triage"});
        let stage = json!({"event": "stage.started", "stage": "classify", "total": 4});
        let ok = json!({"event": "item.finished", "item": "doc-1", "stage": "classify", "status": "succeeded"});
        let failed = json!({"event": "item.finished", "item": "doc-2", "stage": "classify", "status": "failed", "error": "malformed JSON"});
        check(
            &[started.clone(), stage.clone(), ok.clone()],
            "run r1 (triage): running 25%, stage classify 1/4, elapsed 20 s",
        );
        check(
            &[
                started,
                stage,
                ok,
                failed,
                json!({"event": "run.finished", "status": "failed", "error": "1 of 4 failed"}),
            ],
            "run r1 (triage): failed after 40 s; stages classify 2/4; 1 item failed, the \
             latest doc-2: malformed JSON; last error: 1 of 4 failed",
        );
    }

    #[test]
    fn what_is_not_json_rpc_gets_its_standard_error() {
        let code = |m: &str| jsonrpc_refusal(m.as_bytes()).map(|r| r["error"]["code"].clone());
        assert_eq!(code("{not json"), Some(json!(-32700)));
        assert_eq!(code("[]"), Some(json!(-32600)));
        assert_eq!(
            code(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#),
            Some(json!(-32600))
        );
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1}"#), Some(json!(-32600)));
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), None);
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            None
        );
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#), None);
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#),
            Some(json!(-32602))
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#),
            None
        );
        let refusal = jsonrpc_refusal(br#"{"jsonrpc":"2.0","id":7}"#).expect("refused");
        assert_eq!(refusal["id"], 7);
    }

    #[test]
    fn wait_timeouts_out_of_range_are_refused_by_name() {
        assert_eq!(wait_timeout(None).expect("the default"), WAIT_DEFAULT_S);
        assert_eq!(wait_timeout(Some(0.0)).expect("no wait"), 0.0);
        assert_eq!(
            wait_timeout(Some(WAIT_MAX_S)).expect("the longest"),
            WAIT_MAX_S
        );
        for bad in [-1.0, -0.001, WAIT_MAX_S + 0.5, f64::NAN, f64::INFINITY] {
            let refused = refusal(&wait_timeout(Some(bad)).expect_err("out of range"));
            assert!(refused.contains("`timeout_s`"), "{bad}: {refused}");
        }
    }

    #[test]
    fn a_cursor_past_the_end_is_refused_as_after() {
        let e = crate::cursor::check_cursor(9, 4).expect_err("past the end");
        let refused = refusal(&cursor_is_after(e));
        assert!(refused.starts_with("invalid `after`:"), "{refused}");
        assert!(refused.contains("resume from at most 4"), "{refused}");
    }

    #[test]
    fn run_ids_that_are_none_are_refused_as_run() {
        assert!(run_arg("demo-1").is_ok());
        for bad in ["", "a b", "../x"] {
            let refused = refusal(&run_arg(bad).expect_err("no run id"));
            assert!(refused.starts_with("`run`"), "{bad:?}: {refused}");
        }
    }

    #[test]
    fn arguments_of_the_wrong_kind_are_refused_by_name() {
        let args = |v: Value| v.as_object().cloned();
        let err = parse_args::<WaitArgs>(args(json!({"run": "r1", "timeout_s": "NaN"})))
            .err()
            .expect("refused");
        assert!(err.contains("`timeout_s`"), "{err}");
        // A negative number parses; the range check refuses it.
        let ok =
            parse_args::<WaitArgs>(args(json!({"run": "r1", "timeout_s": -1}))).expect("a number");
        assert!(wait_timeout(ok.timeout_s).is_err());
        let err = parse_args::<ListRunsArgs>(args(json!({"limit": -1})))
            .err()
            .expect("refused");
        assert!(err.contains("`limit`"), "{err}");
        let err = parse_args::<ListRunsArgs>(args(json!({"limit": 1e12})))
            .err()
            .expect("refused");
        assert!(err.contains("`limit`"), "{err}");
        let err = parse_args::<EventsArgs>(args(json!({"run": "r1", "after": -3})))
            .err()
            .expect("refused");
        assert!(err.contains("`after`"), "{err}");
        let err = parse_args::<RunArgs>(args(json!({})))
            .err()
            .expect("refused");
        assert!(err.contains("run"), "{err}");
        let err = parse_args::<RunArgs>(args(json!({"run": "r1", "rnu": 1})))
            .err()
            .expect("refused");
        assert!(err.contains("rnu"), "{err}");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(0.4), "0 s");
        assert_eq!(duration(52.2), "52 s");
        assert_eq!(duration(192.0), "3 min 12 s");
        assert_eq!(duration(3840.0), "1 h 4 min");
    }

    #[test]
    fn quotes_are_one_line_and_bounded() {
        assert_eq!(quote("a\nb", 10), "a b");
        assert_eq!(quote("abcdef", 4), "abc…");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(urlencode("item.*,log"), "item.*,log");
        assert_eq!(urlencode("a b&c=d"), "a%20b%26c%3Dd");
    }

    #[test]
    fn every_tool_declares_object_schemas() {
        for tool in tools() {
            assert_eq!(tool.input_schema["type"], "object", "{}", tool.name);
            let output = tool.output_schema.expect("an output schema");
            assert_eq!(output["type"], "object", "{}", tool.name);
        }
    }
}
