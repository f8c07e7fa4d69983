//! `herald mcp`: MCP over stdio for an agent's host, bridged to a hub's `/mcp`.
//!
//! The tools and resources are the hub's (`herald_hub`'s `mcp` module, docs/mcp.md):
//! this process is an MCP server on stdin/stdout and an MCP client of the hub's
//! streamable HTTP endpoint with the configured token, and carries each request,
//! and the hub's progress and resource notifications, from one to the other. It adds
//! one tool of its own, `start_command` (only with `--allow-exec`), because a
//! command must run where `herald mcp` runs: it starts `herald exec` in the
//! background, so the command runs exactly as `herald exec` runs one.
//!
//! The connection to the hub is made on first use and again after it failed: while
//! the hub is down each call is a tool error that says so, and the next call after it
//! is back opens a new session (subscriptions are renewed in it).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use herald_protocol::RunId;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams,
    CancelTaskRequest, ClientCapabilities, ClientConfig, ClientRequest, ContentBlock,
    CreateTaskResult, GetTaskParams, GetTaskRequest, GetTaskResult, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ProgressToken, ProtocolVersion, ReadResourceRequestParams,
    ReadResourceResponse, RequestMetaObject, ResourceUpdatedNotificationParam, ResultType,
    ServerConfig, ServerResult, SubscribeRequestParams, Tool, ToolAnnotations,
    UnsubscribeRequestParams, UpdateTaskParams, UpdateTaskRequest,
};
use rmcp::service::{
    NotificationContext, PeerRequestOptions, RequestContext, RunningService, ServiceError,
};
use rmcp::task_manager::{TaskExit, TaskManager, TaskOptions};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ErrorData, Peer, RoleClient, RoleServer, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::Mutex as AsyncMutex;

use crate::args::McpArgs;

/// Longest wait for the hub to answer the handshake of a new session.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a lost session with the hub is looked for while the host has
/// subscriptions.
const KEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait for `herald exec` to create a command's run on the hub.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// `start_command` arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct StartArgs {
    /// The program and its arguments, e.g. ["cargo", "test"].
    command: Vec<String>,
    /// The run's name; by default the command line.
    name: Option<String>,
    /// The directory to run it in; by default herald mcp's own.
    cwd: Option<String>,
    /// Stop the command (with its process group) when it is silent this many seconds.
    idle_timeout_s: Option<f64>,
}

/// `start_command`'s result.
#[derive(serde::Serialize, JsonSchema)]
struct StartOutput {
    /// The run's id: pass it to wait_for_run or get_run.
    run: String,
    /// The process id of the `herald exec` that runs it.
    pid: u32,
    /// The file that gets the command's stdout and stderr, in a directory of this
    /// `herald mcp`'s own that is removed when it exits.
    output: String,
    /// Only when start_command ran as an MCP task, in the task's result: the run's
    /// state once it has finished, as get_run gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    finished: Option<Value>,
}

fn start_tool() -> Tool {
    Tool::new(
        "start_command",
        "Run a command on this machine as a herald run, in the background, as `herald exec` \
         does (heartbeats; its process group stopped on idle timeout or cancel). Returns \
         the run id at once: follow it with wait_for_run, stop it with cancel_run.",
        Map::new(),
    )
    .with_input_schema::<StartArgs>()
    .with_output_schema::<StartOutput>()
    .with_annotations(
        ToolAnnotations::new()
            .read_only(false)
            .destructive(true)
            .open_world(true),
    )
}

/// Runs `herald mcp` until its host closes stdin.
pub(crate) fn run(args: &McpArgs) -> anyhow::Result<u8> {
    // On stderr, which MCP leaves to the server's logs; rmcp's warnings about each
    // error answered would drown the rest.
    let filter = tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error,herald_cli=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
    // reqwest's rustls is built without a provider: ring, the one ureq links.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: &McpArgs) -> anyhow::Result<u8> {
    let downstream = Arc::new(OnceLock::new());
    // The started commands' output files, removed with the directory when the host
    // closes stdin (this function returns) or a signal ends `herald mcp`.
    let outputs = if args.allow_exec {
        let dir = tempfile::Builder::new()
            .prefix("herald-mcp-")
            .tempdir()
            .context("creating the directory for start_command's output")?;
        let path = dir.path().to_path_buf();
        crate::signals::on_stop(move |_| {
            let _ = std::fs::remove_dir_all(&path);
        })
        .context("handling signals")?;
        Some(dir)
    } else {
        None
    };
    let bridge = Bridge {
        hub: args.hub.url.trim_end_matches('/').to_owned(),
        token: args.hub.token.clone(),
        outputs: outputs.as_ref().map(|dir| dir.path().to_path_buf()),
        herald: std::env::current_exe().context("finding the herald binary")?,
        upstream: Arc::new(AsyncMutex::new(None)),
        downstream: Arc::clone(&downstream),
        tokens: Arc::default(),
        subscriptions: Arc::new(Mutex::new(BTreeSet::new())),
        tasks: TaskManager::new(),
    };
    // rmcp reads its messages from one end of a pipe that `stdin_filter` fills, and
    // writes to one that `stdout_writer` empties, so that what is not JSON-RPC gets
    // its JSON-RPC error (rmcp would drop it unanswered).
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let (from_rmcp, to_rmcp) = tokio::io::split(ours);
    let (refusals_tx, refusals) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(stdin_filter(to_rmcp, refusals_tx));
    let writer = tokio::spawn(stdout_writer(from_rmcp, refusals));
    let bridge_for_keeper = bridge.clone();
    let running = bridge
        .serve(tokio::io::split(theirs))
        .await
        .context("starting MCP on stdin/stdout")?;
    let _ = downstream.set(running.peer().clone());
    let keeper = tokio::spawn(keep_subscriptions(bridge_for_keeper));
    running.waiting().await.context("serving MCP")?;
    keeper.abort();
    reader.abort();
    let _ = writer.await;
    if let Some(dir) = outputs {
        let path = dir.path().to_path_buf();
        if let Err(e) = dir.close() {
            tracing::warn!(dir = %path.display(), error = %e, "removing start_command's output");
        }
    }
    Ok(0)
}

/// While the host has subscriptions, opens a new session with the hub when the last
/// one ended (the hub went away), so that they are renewed without waiting for a call.
async fn keep_subscriptions(bridge: Bridge) {
    let mut tick = tokio::time::interval(KEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if lock(&bridge.subscriptions).is_empty() {
            continue;
        }
        let open = bridge
            .upstream
            .lock()
            .await
            .as_ref()
            .is_some_and(|running| !running.is_closed());
        if !open {
            // A failure is said by the next call; this only tries again.
            if let Err(e) = bridge.connect().await {
                tracing::debug!(error = %e, "no session with the hub for the subscriptions");
            }
        }
    }
}

/// Passes each line of stdin on to rmcp, or answers it with its JSON-RPC error.
async fn stdin_filter(
    mut to_rmcp: impl tokio::io::AsyncWrite + Unpin,
    refusals: tokio::sync::mpsc::UnboundedSender<Value>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(refusal) = herald_hub::mcp_jsonrpc_refusal(line.as_bytes()) {
            let _ = refusals.send(refusal);
            continue;
        }
        let sent = async {
            to_rmcp.write_all(line.as_bytes()).await?;
            to_rmcp.write_all(b"\n").await?;
            to_rmcp.flush().await
        };
        if sent.await.is_err() {
            break;
        }
    }
    // Closing rmcp's input ends the service, as a closed stdin would.
    let _ = to_rmcp.shutdown().await;
}

/// Writes rmcp's messages and the refusals to stdout, whole lines each.
async fn stdout_writer(
    from_rmcp: impl tokio::io::AsyncRead + Unpin,
    mut refusals: tokio::sync::mpsc::UnboundedReceiver<Value>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut lines = tokio::io::BufReader::new(from_rmcp).lines();
    let mut stdout = tokio::io::stdout();
    loop {
        let line = tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => line,
                _ => return,
            },
            Some(refusal) = refusals.recv() => refusal.to_string(),
        };
        let written = async {
            stdout.write_all(line.as_bytes()).await?;
            stdout.write_all(b"\n").await?;
            stdout.flush().await
        };
        if written.await.is_err() {
            return;
        }
    }
}

/// The MCP server on stdio.
#[derive(Clone)]
struct Bridge {
    /// The hub's base URL.
    hub: String,
    token: Option<String>,
    /// Where started commands' output goes; `Some` exactly with `--allow-exec`.
    outputs: Option<PathBuf>,
    /// This binary, to start `herald exec` with.
    herald: PathBuf,
    upstream: Arc<AsyncMutex<Option<RunningService<RoleClient, Upstream>>>>,
    downstream: Arc<OnceLock<Peer<RoleServer>>>,
    tokens: Tokens,
    /// Resources the host subscribed to, renewed in each new session with the hub.
    subscriptions: Arc<Mutex<BTreeSet<String>>>,
    /// `start_command`'s tasks (SEP-2663); the hub keeps those of its own tools.
    tasks: TaskManager,
}

/// The MCP client of the hub: passes the hub's notifications on to the host.
struct Upstream {
    downstream: Arc<OnceLock<Peer<RoleServer>>>,
    tokens: Tokens,
}

/// The host's progress token of each call in flight, by the token rmcp gave the call
/// to the hub.
type Tokens = Arc<Mutex<HashMap<ProgressToken, ProgressToken>>>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClientHandler for Upstream {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("herald-mcp", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        // The host's own progress token went to the hub with its call, so the
        // notification goes back as it came.
        let mut params = params;
        // The call's token may be recorded a moment after the hub's first word on it.
        let mut theirs = None;
        for _ in 0..20 {
            theirs = lock(&self.tokens).get(&params.progress_token).cloned();
            if theirs.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let Some(theirs) = theirs else {
            return;
        };
        params.progress_token = theirs;
        match self.downstream.get() {
            Some(peer) => {
                if let Err(e) = peer.notify_progress(params).await {
                    tracing::warn!(error = %e, "passing on a progress notification failed");
                }
            }
            None => tracing::warn!("a progress notification before the host is connected"),
        }
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let Some(peer) = self.downstream.get() {
            let _ = peer.notify_resource_updated(params).await;
        }
    }
}

/// Why a request could not be carried to the hub.
enum Failure {
    /// The hub answered with an MCP error: passed on as it is.
    Mcp(ErrorData),
    /// The hub could not be reached, or the session broke.
    Unreachable(String),
}

impl Bridge {
    fn endpoint(&self) -> String {
        format!("{}/mcp", self.hub)
    }

    fn unreachable(&self, why: &str) -> String {
        format!(
            "the herald hub at {} cannot be reached ({why}); is `herald serve` running \
             there? herald mcp goes on and tries again on the next call",
            self.hub
        )
    }

    /// A session with the hub: the open one, or a new one.
    async fn connect(&self) -> Result<Peer<RoleClient>, String> {
        let mut upstream = self.upstream.lock().await;
        if let Some(running) = upstream.as_ref()
            && !running.is_closed()
        {
            return Ok(running.peer().clone());
        }
        *upstream = None;
        let mut config = StreamableHttpClientTransportConfig::with_uri(self.endpoint())
            // A session the hub no longer knows (it restarted) fails the call, and
            // `forward` opens a new one itself: rmcp's own recovery would not renew
            // the subscriptions.
            .reinit_on_expired_session(false);
        if let Some(token) = &self.token {
            config = config.auth_header(token.clone());
        }
        let transport = StreamableHttpClientTransport::from_config(config);
        let client = Upstream {
            downstream: Arc::clone(&self.downstream),
            tokens: Arc::clone(&self.tokens),
        };
        let running = match tokio::time::timeout(CONNECT_TIMEOUT, client.serve(transport)).await {
            Ok(Ok(running)) => running,
            Ok(Err(e)) => return Err(self.unreachable(&reason(&e))),
            Err(_) => return Err(self.unreachable("no answer within 10 s")),
        };
        let peer = running.peer().clone();
        tracing::debug!(hub = %self.hub, "opened a session with the hub");
        let uris: Vec<String> = self
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        for uri in uris {
            tracing::debug!(%uri, "renewing a subscription");
            #[allow(deprecated)]
            let renewed = tokio::time::timeout(
                CONNECT_TIMEOUT,
                peer.subscribe(SubscribeRequestParams::new(uri.clone())),
            )
            .await;
            match renewed {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(%uri, error = %e, "renewing a subscription failed"),
                Err(_) => tracing::warn!(%uri, "renewing a subscription: no answer within 10 s"),
            }
        }
        *upstream = Some(running);
        Ok(peer)
    }

    /// Sends one request to the hub, once more on a new session if the first one
    /// failed on the way (a hub restarted since the session opened).
    async fn forward<T, F, Fut>(&self, send: F) -> Result<T, Failure>
    where
        F: Fn(Peer<RoleClient>) -> Fut,
        Fut: Future<Output = Result<T, ServiceError>>,
    {
        let mut last = String::new();
        for _ in 0..2 {
            let peer = self.connect().await.map_err(Failure::Unreachable)?;
            match send(peer).await {
                Ok(value) => return Ok(value),
                Err(ServiceError::McpError(e)) => return Err(Failure::Mcp(e)),
                Err(e) => {
                    last = reason(&e);
                    // Closed for good: the next attempt opens a new session.
                    if let Some(mut running) = self.upstream.lock().await.take() {
                        let _ = running.close_with_timeout(Duration::from_secs(1)).await;
                    }
                }
            }
        }
        Err(Failure::Unreachable(self.unreachable(&last)))
    }

    /// Carries `request` to the hub as it is, for its answer.
    async fn forward_request(&self, request: ClientRequest) -> Result<ServerResult, ErrorData> {
        self.forward(|peer| {
            let request = request.clone();
            async move { peer.send_request(request).await }
        })
        .await
        .map_err(|f| self.protocol_error(f))
    }

    fn protocol_error(&self, failure: Failure) -> ErrorData {
        match failure {
            Failure::Mcp(e) => e,
            Failure::Unreachable(message) => ErrorData::internal_error(message, None),
        }
    }

    /// `start_command` as a task: the command's whole life. It ends with
    /// `wait_for_run`'s result once the run has finished; `tasks/cancel` cancels the
    /// run (herald exec then stops the command) and the task.
    fn command_task(&self, args: StartArgs) -> CallToolResponse {
        let bridge = self.clone();
        let task = self.tasks.spawn(
            // Kept as long as this herald mcp: a command may run for hours.
            TaskOptions::new()
                .with_ttl_ms(None)
                .with_poll_interval_ms(1000)
                .with_status_message("starting the command"),
            move |ctx| {
                Box::pin(async move {
                    let started = bridge.start_command(args).await;
                    let run = match &started.structured_content {
                        Some(out) if started.is_error != Some(true) => {
                            out["run"].as_str().unwrap_or_default().to_owned()
                        }
                        _ => return Ok(started),
                    };
                    ctx.set_status_message(started_text(&started));
                    loop {
                        tokio::select! {
                            waited = bridge.wait_once(&run) => {
                                if let Some(waited) = waited {
                                    return Ok(command_result(started, waited));
                                }
                            }
                            () = ctx.cancelled() => {
                                bridge.cancel(&run).await;
                                return Err(TaskExit::Cancelled);
                            }
                        }
                    }
                })
            },
        );
        CallToolResponse::Task(CreateTaskResult::new(task))
    }

    /// One `wait_for_run` on the hub: its result once the run has finished, `None`
    /// while it runs (or the hub cannot be reached, after a second's pause).
    async fn wait_once(&self, run: &str) -> Option<CallToolResult> {
        let args = json_object(json!({ "run": run, "timeout_s": 50 }));
        let waited = self
            .forward(|peer| {
                let params =
                    CallToolRequestParams::new("wait_for_run").with_arguments(args.clone());
                async move { peer.call_tool(params).await }
            })
            .await;
        match waited {
            Ok(result)
                if result.is_error == Some(true)
                    || result
                        .structured_content
                        .as_ref()
                        .is_some_and(|out| out["outcome"] == "finished") =>
            {
                Some(result)
            }
            Ok(_) => None,
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                None
            }
        }
    }

    /// Asks the hub to cancel `run`, for `tasks/cancel` of its command's task.
    async fn cancel(&self, run: &str) {
        let args = json_object(json!({ "run": run, "reason": "tasks/cancel" }));
        let cancelled = self
            .forward(|peer| {
                let params = CallToolRequestParams::new("cancel_run").with_arguments(args.clone());
                async move { peer.call_tool(params).await }
            })
            .await;
        if cancelled.is_err() {
            tracing::warn!(%run, "cancelling the run of a cancelled task failed");
        }
    }

    async fn start_command(&self, args: StartArgs) -> CallToolResult {
        match self.start(args).await {
            Ok(result) => result,
            Err(message) => herald_hub::mcp_tool_error(message),
        }
    }

    async fn start(&self, args: StartArgs) -> Result<CallToolResult, String> {
        if args.command.is_empty() || args.command[0].is_empty() {
            return Err(
                "invalid argument `command`: give the program and its arguments, \
                        e.g. [\"make\", \"test\"]"
                    .into(),
            );
        }
        let cwd = match &args.cwd {
            Some(dir) if !Path::new(dir).is_dir() => {
                return Err(format!(
                    "invalid argument `cwd`: `{dir}` is not a directory here"
                ));
            }
            Some(dir) => Some(PathBuf::from(dir)),
            None => None,
        };
        let idle = match args.idle_timeout_s {
            None => None,
            Some(s) if s.is_finite() && s > 0.0 && s <= 366.0 * 86_400.0 => Some(s),
            Some(s) => {
                return Err(format!(
                    "invalid argument `idle_timeout_s`: seconds above 0, not {s}"
                ));
            }
        };
        let Some(outputs) = &self.outputs else {
            return Err("start_command needs `herald mcp --allow-exec`".into());
        };
        let run = new_run_id();
        let output = outputs.join(format!("{run}.log"));
        let log = std::fs::File::create(&output)
            .map_err(|e| format!("cannot create {}: {e}", output.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", output.display()))?;
        let mut cmd = tokio::process::Command::new(&self.herald);
        cmd.arg("exec")
            .arg("--id")
            .arg(run.as_str())
            .arg("--hub")
            .arg(&self.hub);
        if let Some(name) = &args.name {
            cmd.arg("--name").arg(name);
        }
        if let Some(s) = idle {
            cmd.arg("--idle-timeout").arg(format!("{s}"));
        }
        cmd.arg("--").args(&args.command);
        if let Some(token) = &self.token {
            cmd.env("HERALD_TOKEN", token);
        }
        if let Some(dir) = &cwd {
            cmd.current_dir(dir);
        }
        // Not this process's stdin and stdout: they carry MCP. A group of its own, so
        // that what stops the host's group does not stop the command.
        cmd.stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `herald exec`: {e}"))?;
        let pid = child.id().unwrap_or(0);
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let mut exited = None;
        loop {
            let state = self
                .forward(|peer| {
                    let params = CallToolRequestParams::new("get_run")
                        .with_arguments(json_object(json!({ "run": run.as_str() })));
                    async move { peer.call_tool(params).await }
                })
                .await;
            if let Ok(result) = &state
                && result.is_error != Some(true)
            {
                break;
            }
            if let Some(status) = exited {
                let said = std::fs::read_to_string(&output).unwrap_or_default();
                return Err(format!(
                    "`herald exec` ended ({status}) before run {run} appeared on the hub: {}",
                    said.trim()
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "run {run} did not appear on the hub within 10 s; the command may be \
                     running unreported (pid {pid}, output in {})",
                    output.display()
                ));
            }
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                continue;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Reaped when it ends, whenever that is.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let text = format!(
            "started run {run}: `{}` (output in {}, removed when herald mcp exits); \
             follow it with wait_for_run",
            args.command.join(" "),
            output.display()
        );
        let out = StartOutput {
            run: run.to_string(),
            pid,
            output: output.display().to_string(),
            finished: None,
        };
        let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
        result.structured_content = serde_json::to_value(&out).ok();
        Ok(result)
    }
}

/// The innermost cause of `e`, for a model to read: "Connection refused (os error
/// 111)" rather than the transport's Rust types.
fn reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    // rmcp names its transport's type in brackets.
    match (text.find(" ["), text.rfind("] ")) {
        (Some(open), Some(close)) if open < close => {
            format!("{}{}", &text[..open], &text[close + 1..])
        }
        _ => text,
    }
}

/// Has the hub answer as the host declared (a task for a client of the tasks
/// extension), not as this bridge's session with it declared.
fn with_host_capabilities(meta: &mut Option<RequestMetaObject>, host: &RequestContext<RoleServer>) {
    meta.get_or_insert_default()
        .set_client_capabilities(host.client_capabilities().unwrap_or_default());
}

/// A command task's result: `start_command`'s, with the run's final state from
/// `wait_for_run` (or the tool error that wait ended with).
fn command_result(started: CallToolResult, waited: CallToolResult) -> CallToolResult {
    if waited.is_error == Some(true) {
        return waited;
    }
    let text = format!("{}\n{}", started_text(&started), started_text(&waited));
    let mut out = started.structured_content.unwrap_or_default();
    out["finished"] = waited
        .structured_content
        .map_or(Value::Null, |mut w| w["run"].take());
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(out);
    result
}

/// A tool result's text.
fn started_text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn json_object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A run id for a command: the time and random hex.
fn new_run_id() -> RunId {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let suffix: u32 = rand::random();
    RunId::new(format!("cmd-{secs}-{suffix:08x}")).expect("the run id charset")
}

impl ServerHandler for Bridge {
    fn get_info(&self) -> ServerConfig {
        herald_hub::mcp_server_config(herald_hub::MCP_INSTRUCTIONS)
    }

    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        herald_hub::mcp_protocol_versions()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = herald_hub::mcp_tools();
        if self.outputs.is_some() {
            tools.push(start_tool());
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        let mut tools = herald_hub::mcp_tools();
        if self.outputs.is_some() {
            tools.push(start_tool());
        }
        tools.into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name == "start_command" {
            if self.outputs.is_none() {
                return Err(ErrorData::invalid_params(
                    "no tool `start_command`: herald mcp offers it only when started with \
                     --allow-exec",
                    None,
                ));
            }
            let value = Value::Object(request.arguments.unwrap_or_default());
            let as_task = context
                .client_capabilities()
                .is_some_and(|caps| caps.supports_tasks());
            return Ok(
                match serde_path_to_error::deserialize::<_, StartArgs>(value) {
                    Ok(args) if as_task => return Ok(self.command_task(args)),
                    Ok(args) => self.start_command(args).await,
                    Err(e) => herald_hub::mcp_tool_error(format!(
                        "invalid argument `{}`: {}",
                        e.path(),
                        e.inner()
                    )),
                }
                .into(),
            );
        }
        // rmcp gives the call to the hub a progress token of its own: the hub's
        // notifications under it go back to the host under the host's.
        let host_token = context.meta.get_progress_token();
        let mut request = request;
        with_host_capabilities(&mut request.meta, &context);
        let res = self
            .forward(|peer| {
                let params = request.clone();
                let host_token = host_token.clone();
                let tokens = Arc::clone(&self.tokens);
                async move {
                    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
                    let handle = peer
                        .send_request_with_option(request, PeerRequestOptions::no_options())
                        .await?;
                    let ours = handle.progress_token.clone();
                    if let Some(theirs) = host_token {
                        lock(&tokens).insert(ours.clone(), theirs);
                    }
                    let res = handle.await_response().await;
                    lock(&tokens).remove(&ours);
                    match res? {
                        ServerResult::CallToolResult(mut result) => {
                            // The hub leaves it out on this older session; rmcp leaves it
                            // out again for a host of an older revision.
                            result.result_type.get_or_insert(ResultType::COMPLETE);
                            Ok(result.into())
                        }
                        ServerResult::CreateTaskResult(task) => Ok(CallToolResponse::Task(task)),
                        _ => Err(ServiceError::UnexpectedResponse),
                    }
                }
            })
            .await;
        Ok(match res {
            Ok(response) => response,
            Err(Failure::Mcp(e)) => return Err(e),
            Err(Failure::Unreachable(message)) => herald_hub::mcp_tool_error(message).into(),
        })
    }

    async fn get_task(
        &self,
        mut request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        if let Ok(task) = self.tasks.get_task(&request.task_id) {
            return Ok(GetTaskResult::new(task));
        }
        with_host_capabilities(&mut request.meta, &context);
        let request = ClientRequest::GetTaskRequest(GetTaskRequest::new(request));
        match self.forward_request(request).await? {
            ServerResult::GetTaskResult(result) => Ok(result),
            _ => Err(ErrorData::internal_error(
                "the hub answered tasks/get with something else",
                None,
            )),
        }
    }

    async fn update_task(
        &self,
        mut request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if self.tasks.get_task(&request.task_id).is_ok() {
            return self.tasks.update_task(&request.task_id, std::iter::empty());
        }
        with_host_capabilities(&mut request.meta, &context);
        let request = ClientRequest::UpdateTaskRequest(UpdateTaskRequest::new(request));
        self.forward_request(request).await.map(|_| ())
    }

    async fn cancel_task(
        &self,
        mut request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if self.tasks.get_task(&request.task_id).is_ok() {
            return self.tasks.cancel_task(&request.task_id);
        }
        with_host_capabilities(&mut request.meta, &context);
        let request = ClientRequest::CancelTaskRequest(CancelTaskRequest::new(request));
        self.forward_request(request).await.map(|_| ())
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        self.forward(|peer| {
            let params = request.clone();
            async move { peer.list_resources(params).await }
        })
        .await
        .map_err(|f| self.protocol_error(f))
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        self.forward(|peer| {
            let params = request.clone();
            async move { peer.list_resource_templates(params).await }
        })
        .await
        .map_err(|f| self.protocol_error(f))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.forward(|peer| {
            let params = request.clone();
            async move { peer.read_resource(params).await }
        })
        .await
        .map(Into::into)
        .map_err(|f| self.protocol_error(f))
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.forward(|peer| {
            let params = request.clone();
            async move { peer.subscribe(params).await }
        })
        .await
        .map_err(|f| self.protocol_error(f))?;
        self.subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(request.uri);
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&request.uri);
        self.forward(|peer| {
            let params = request.clone();
            async move { peer.unsubscribe(params).await }
        })
        .await
        .map_err(|f| self.protocol_error(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_command_declares_object_schemas() {
        let tool = start_tool();
        assert_eq!(tool.input_schema["type"], "object");
        assert_eq!(tool.input_schema["required"], json!(["command"]));
        assert_eq!(
            tool.output_schema.expect("an output schema")["type"],
            "object"
        );
    }

    #[test]
    fn a_reason_leaves_out_rust_types() {
        let e = std::io::Error::other(
            "Send message error Transport [a::b<c::d>] error: Connection refused",
        );
        assert_eq!(
            reason(&e),
            "Send message error Transport error: Connection refused"
        );
    }

    #[test]
    fn command_run_ids_are_run_ids() {
        let id = new_run_id();
        assert!(id.as_str().starts_with("cmd-"), "{id}");
    }
}
