//! `herald::tracing` (feature `tracing`): a `tracing` layer that turns a program's
//! marked spans into herald runs, stages, items and tool calls, and its events into
//! `log` lines, so that code instrumented with `tracing` gets bars, JSON Lines and the
//! hub from one line:
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! let progress = herald::Progress::from_env()?;
//! tracing_subscriber::registry()
//!     .with(herald::tracing::layer(&progress))
//!     .init();
//! # Ok::<(), herald::ConfigError>(())
//! ```
//!
//! # The rule
//!
//! A span is herald's when it has a field `herald` whose value is `"run"`, `"stage"`,
//! `"item"` or `"tool"` (`#[instrument(fields(herald = "stage", total = 3))]`). There
//! is no name convention: a span's name is what people read (`#[instrument]` names it
//! after the function, `name = "..."` overrides it), so it names the run, the stage or
//! the tool and marks nothing. Every other span is passed through: a marked span
//! belongs to its nearest marked ancestor, whatever lies between.
//!
//! - A span is *started* when it is first entered and *finished* when it closes.
//! - `run`: a run of its own. Its `total` field is the number of stages.
//! - `stage`: a stage of the nearest run above it. `total` and `unit` are the stage's;
//!   recording `done` (`Span::current().record("done", n)`) sets the count, recording
//!   `total` changes the total. An event with a field `herald.inc = n` anywhere inside
//!   counts `n` more units, as does [`SpanExt::herald_stage`]'s handle, which no filter
//!   stands between; each item finished counts one by itself.
//! - `item`: an item of the nearest stage above it, with the field `item` or `id` as
//!   its id (else `1`, `2`, ... in the stage's order) and `label` as its label. An item
//!   span with no stage above it is not reported.
//! - `tool`: a tool call of the nearest run above it, named by its `tool` field or else
//!   the span's name, with `input` (JSON when the text parses as JSON), `call_id` and
//!   `feedback`; a recorded `output` becomes the call's output.
//! - A marked span *fails* when it closes after an `ERROR` event inside it (the event
//!   `#[instrument(err)]` emits; its `error` field or else its message is the reason),
//!   or when a non-empty field `error` was recorded on it. It succeeds otherwise.
//! - A stage, item or tool span with no run above it attaches to the run started last
//!   that is still open; with none open, it is not reported.
//! - Every `tracing` event inside a run's span, and any event while a run is open,
//!   becomes a `log` of that run: TRACE and DEBUG are `debug`, INFO `info`, WARN `warn`,
//!   ERROR `error`; the message comes first, then the other fields as `key=value`.
//!   Events on herald's own threads (named `herald-*`) are left out: they are the SDK's
//!   own work, which reported would report itself without end.

use std::fmt;
use std::sync::Mutex;

use ::tracing::field::{Field, Visit};
use ::tracing::span::{Attributes, Id, Record};
use ::tracing::{Dispatch, Event, Level, Span, Subscriber};
use ::tracing_subscriber::layer::{Context, Layer};
use ::tracing_subscriber::registry::{LookupSpan, SpanRef};
use herald_protocol::LogLevel;
use serde_json::{Map, Value};

use crate::handles::{Item, Run, RunOptions, Stage, ToolCall};
use crate::lock::lock;
use crate::progress::Progress;

/// The field that marks a span as herald's.
const MARK: &str = "herald";
/// The event field that counts units of the nearest stage.
const INC: &str = "herald.inc";

/// The layer that reports marked spans and events to `progress`: see the module's
/// documentation for the rule.
pub fn layer(progress: &Progress) -> HeraldLayer {
    HeraldLayer {
        progress: progress.clone(),
        open: Mutex::new(Vec::new()),
        find: None,
    }
}

/// A `tracing_subscriber` layer reporting to herald. Created by [`layer`].
pub struct HeraldLayer {
    progress: Progress,
    /// The runs whose spans are open, oldest first, with their span ids: where events
    /// and marked spans outside any run span go.
    open: Mutex<Vec<(Id, Run)>>,
    /// Finds the handles above a span through the subscriber this layer was added to,
    /// whose type only [`Layer::on_layer`] knows: what [`SpanExt`] calls.
    find: Option<fn(&HeraldLayer, &Dispatch, &Id) -> Found>,
}

/// The nearest run and stage above a span.
#[derive(Default)]
struct Found {
    run: Option<Run>,
    stage: Option<Stage>,
}

fn find<S>(layer: &HeraldLayer, dispatch: &Dispatch, id: &Id) -> Found
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(span) = dispatch.downcast_ref::<S>().and_then(|s| s.span(id)) else {
        return Found::default();
    };
    let stage = span
        .scope()
        .find_map(|s| match &s.extensions().get::<Node>()?.handle {
            Handle::Stage { stage, .. } => Some(stage.clone()),
            _ => None,
        });
    Found {
        run: layer.run_above(Some(span)),
        stage,
    }
}

/// What a `tracing` span offers herald's reporting, in the manner of
/// tracing-indicatif's `IndicatifSpanExt`: the handles of the nearest marked spans above
/// it, to count ticks or report what spans cannot say.
///
/// ```no_run
/// use herald::tracing::SpanExt;
///
/// # fn work() {}
/// #[tracing::instrument(fields(herald = "stage", total = 1000))]
/// fn crunch() {
///     let stage = tracing::Span::current().herald_stage();
///     for _ in 0..1000 {
///         work();
///         if let Some(stage) = &stage {
///             stage.inc(1);
///         }
///     }
/// }
/// ```
///
/// Unlike an event with `herald.inc`, this goes to the layer directly, so no filter in
/// front of it can drop the count. Both return `None` when the span is not recorded,
/// no herald layer is installed, or no marked span above reported anywhere.
pub trait SpanExt {
    /// The stage of the nearest stage span at or above this one.
    fn herald_stage(&self) -> Option<Stage>;
    /// The run of the nearest marked span at or above this one, else the run started
    /// last that is still open.
    fn herald_run(&self) -> Option<Run>;
}

impl SpanExt for Span {
    fn herald_stage(&self) -> Option<Stage> {
        found(self).stage
    }

    fn herald_run(&self) -> Option<Run> {
        found(self).run
    }
}

fn found(span: &Span) -> Found {
    span.with_subscriber(|(id, dispatch)| {
        let layer = dispatch.downcast_ref::<HeraldLayer>()?;
        Some((layer.find?)(layer, dispatch, id))
    })
    .flatten()
    .unwrap_or_default()
}

impl fmt::Debug for HeraldLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeraldLayer")
            .field("open_runs", &lock(&self.open).len())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Run,
    Stage,
    Item,
    Tool,
}

impl Kind {
    fn parse(mark: &str) -> Option<Kind> {
        match mark {
            "run" => Some(Kind::Run),
            "stage" => Some(Kind::Stage),
            "item" => Some(Kind::Item),
            "tool" => Some(Kind::Tool),
            _ => None,
        }
    }
}

/// What the layer keeps in a marked span's extensions.
struct Node {
    kind: Kind,
    fields: Map<String, Value>,
    /// Why the span fails when it closes, if it does.
    error: Option<String>,
    /// The run the span reports into, once started.
    run: Option<Run>,
    handle: Handle,
}

enum Handle {
    /// Not entered yet.
    Pending,
    /// Started, but with nowhere to report (no run, or an item outside a stage).
    Detached,
    Run,
    Stage {
        stage: Stage,
        /// The ids given to items that name none.
        next_item: u64,
    },
    Item(Item),
    Tool(ToolCall),
}

/// Collects fields as JSON values.
#[derive(Default)]
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
}

/// A field's value as text: strings as they are, anything else as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn count(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The reason a recorded `error` field gives, when it gives one.
fn error_field(fields: &Map<String, Value>) -> Option<String> {
    fields
        .get("error")
        .map(text)
        .filter(|e| !e.is_empty() && e != "false")
}

/// Whether the caller is one of the SDK's own threads, which are all named `herald-*`.
fn on_heralds_thread() -> bool {
    std::thread::current()
        .name()
        .is_some_and(|name| name.starts_with("herald-"))
}

fn log_level(level: &Level) -> LogLevel {
    match *level {
        Level::ERROR => LogLevel::Error,
        Level::WARN => LogLevel::Warn,
        Level::INFO => LogLevel::Info,
        _ => LogLevel::Debug,
    }
}

impl HeraldLayer {
    /// The run started last whose span is still open.
    fn latest_run(&self) -> Option<Run> {
        lock(&self.open).last().map(|(_, run)| run.clone())
    }

    /// The run of the nearest started marked span from `span` up, else the latest
    /// open run.
    fn run_above<S>(&self, span: Option<SpanRef<'_, S>>) -> Option<Run>
    where
        S: for<'a> LookupSpan<'a>,
    {
        span.into_iter()
            .flat_map(|s| s.scope())
            .find_map(|s| s.extensions().get::<Node>().and_then(|n| n.run.clone()))
            .or_else(|| self.latest_run())
    }

    /// Starts the marked span `span` on its first entry.
    fn start<S>(&self, span: &SpanRef<'_, S>)
    where
        S: for<'a> LookupSpan<'a>,
    {
        // The span's own extensions stay locked until its handle is in place, so that
        // threads entering it at once start it once. Only ancestors are looked up
        // meanwhile, and no lock is ever taken from a parent down to a child.
        let mut ext = span.extensions_mut();
        let Some(node) = ext.get_mut::<Node>() else {
            return;
        };
        if !matches!(node.handle, Handle::Pending) {
            return;
        }
        let (kind, fields) = (node.kind, &node.fields);
        let name = span.name();
        let parent = span.parent();
        let (run, handle) = match kind {
            Kind::Run => {
                let options = RunOptions {
                    total_steps: fields.get("total").and_then(count),
                    ..RunOptions::default()
                };
                let run = self.progress.run_with(name, options);
                lock(&self.open).push((span.id(), run.clone()));
                (Some(run), Handle::Run)
            }
            Kind::Stage => match self.run_above(parent) {
                Some(run) => {
                    let mut stage = run.stage(name);
                    if let Some(total) = fields.get("total").and_then(count) {
                        stage = stage.total(total);
                    }
                    if let Some(unit) = fields.get("unit") {
                        stage = stage.unit(&text(unit));
                    }
                    // Announces the stage now, with its total, as a span's entry is its
                    // start; a recorded `done` is the count it starts from.
                    stage.inc(0);
                    if let Some(done) = fields.get("done").and_then(count) {
                        stage.set(done);
                    }
                    (
                        Some(run),
                        Handle::Stage {
                            stage,
                            next_item: 1,
                        },
                    )
                }
                None => (None, Handle::Detached),
            },
            Kind::Item => {
                let above = parent.into_iter().flat_map(|s| s.scope()).find_map(|s| {
                    let mut ext = s.extensions_mut();
                    let node = ext.get_mut::<Node>()?;
                    match &mut node.handle {
                        Handle::Stage { stage, next_item } => {
                            let n = *next_item;
                            *next_item += 1;
                            Some((stage.clone(), node.run.clone(), n))
                        }
                        _ => None,
                    }
                });
                match above {
                    Some((stage, run, n)) => {
                        let id = fields
                            .get("item")
                            .or_else(|| fields.get("id"))
                            .map_or_else(|| n.to_string(), text);
                        let label = fields.get("label").map(text);
                        let item = stage.item_labeled(id, label.as_deref());
                        (run, Handle::Item(item))
                    }
                    None => (None, Handle::Detached),
                }
            }
            Kind::Tool => match self.run_above(parent) {
                Some(run) => {
                    let tool = fields.get("tool").map_or_else(|| name.to_owned(), text);
                    let input = fields.get("input").map(|v| match v {
                        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| v.clone()),
                        other => other.clone(),
                    });
                    let feedback = fields.get("feedback").map(text);
                    let call = match fields.get("call_id") {
                        Some(id) => run.tool_with_id(&text(id), &tool, input, feedback.as_deref()),
                        None => run.tool(&tool, input, feedback.as_deref()),
                    };
                    (Some(run), Handle::Tool(call))
                }
                None => (None, Handle::Detached),
            },
        };
        node.run = run;
        node.handle = handle;
    }
}

impl<S> Layer<S> for HeraldLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_layer(&mut self, _subscriber: &mut S) {
        self.find = Some(find::<S>);
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let Some(kind) = fields
            .0
            .get(MARK)
            .and_then(Value::as_str)
            .and_then(Kind::parse)
        else {
            return;
        };
        let Some(span) = ctx.span(id) else { return };
        let error = error_field(&fields.0);
        span.extensions_mut().insert(Node {
            kind,
            fields: fields.0,
            error,
            run: None,
            handle: Handle::Pending,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        let Some(node) = ext.get_mut::<Node>() else {
            return;
        };
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(error) = error_field(&fields.0) {
            node.error = Some(error);
        }
        if let Handle::Stage { stage, .. } = &node.handle {
            if let Some(total) = fields.0.get("total").and_then(count) {
                stage.set_total(total);
            }
            if let Some(done) = fields.0.get("done").and_then(count) {
                stage.set(done);
            }
        }
        node.fields.extend(fields.0);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            self.start(&span);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // Reporting nowhere, an event is not worth formatting. And an event from one of
        // herald's own threads (`herald-progress`, `herald-hub-sink`, ...) is the SDK's
        // own work, e.g. its HTTP client's logs through `tracing-log`: reported, each
        // would be delivered by the same thread and log again, without end.
        if !self.progress.shared.enabled() || on_heralds_thread() {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut fields = fields.0;
        let scope = ctx.event_scope(event);

        if let Some(n) = fields.shift_remove(INC).as_ref().and_then(count) {
            let stage = ctx.event_scope(event).into_iter().flatten().find_map(|s| {
                match &s.extensions().get::<Node>()?.handle {
                    Handle::Stage { stage, .. } => Some(stage.clone()),
                    _ => None,
                }
            });
            if let Some(stage) = stage {
                stage.inc(n);
            }
            if fields.is_empty() {
                return;
            }
        }

        let level = *event.metadata().level();
        if level == Level::ERROR {
            // The nearest marked span fails for this reason when it closes, as
            // `#[instrument(err)]` reports a function's `Err`.
            let reason = fields
                .get("error")
                .or_else(|| fields.get("message"))
                .map_or_else(|| event.metadata().name().to_owned(), text);
            if let Some(s) = ctx
                .event_scope(event)
                .into_iter()
                .flatten()
                .find(|s| s.extensions().get::<Node>().is_some())
                && let Some(node) = s.extensions_mut().get_mut::<Node>()
            {
                node.error.get_or_insert(reason);
            }
        }

        let run = self.run_above(scope.and_then(|mut s| s.next()));
        let Some(run) = run else { return };
        let mut message = fields
            .shift_remove("message")
            .map(|m| text(&m))
            .unwrap_or_default();
        for (key, value) in &fields {
            if !message.is_empty() {
                message.push(' ');
            }
            message.push_str(key);
            message.push('=');
            message.push_str(&text(value));
        }
        run.log(log_level(&level), message);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(node) = span.extensions_mut().remove::<Node>() else {
            return;
        };
        let error = node.error;
        match node.handle {
            Handle::Pending | Handle::Detached => {}
            Handle::Run => {
                let run = {
                    let mut open = lock(&self.open);
                    let at = open.iter().position(|(open_id, _)| *open_id == id);
                    at.map(|at| open.remove(at).1)
                };
                if let Some(run) = run {
                    match error {
                        Some(error) => run.fail(error),
                        None => run.finish(),
                    }
                }
            }
            Handle::Stage { stage, .. } => match error {
                Some(error) => stage.fail(error),
                None => stage.finish(),
            },
            Handle::Item(item) => match error {
                Some(error) => item.fail(error),
                None => item.finish(),
            },
            Handle::Tool(call) => match error {
                Some(error) => call.fail(error),
                None => call.finish(node.fields.get("output").cloned()),
            },
        }
    }
}

// A subscriber is shared by every thread: assert at compile time that the layer can be.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<HeraldLayer>();
};
