//! What the terminal shows, as plain functions of run states and the time: the live
//! area ([`render`]: a header per open run, its stages, its current item, tools and
//! text), the lines printed above it when something happens ([`messages`]), and what a
//! finished run leaves on screen ([`summary`]).
//!
//! No I/O and no clock: the driver in `terminal.rs` passes `now` and the screen's size,
//! so every screen can be tested with fixed timestamps.

use herald_protocol::{
    Counter, Event, EventBody, LogLevel, RunState, RunStatus, StageState, StageStatus, StepOutcome,
    Timestamp, ToolCallStatus, ToolOutcome, ToolProgress,
};

use super::text::{self, Line, Style};

/// Widest bar, in columns.
const MAX_BAR: usize = 30;
/// The narrowest bar the text beside it gives way to: below it, the least telling
/// columns drop first ([`Detail`]).
const MIN_BAR: usize = 10;
/// The narrowest bar at all: when even the essential text leaves less, there is none.
const MIN_SHRUNK_BAR: usize = 4;
/// Stage names are padded to align the bars, up to this many columns (a quarter of a
/// narrow screen, at least 8): longer ones are cut.
const MAX_NAME: usize = 24;
/// The frames of the spinner a counter without a total shows, one per 100 ms.
const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
/// Indentation of a child run under its parent, per level, at most `MAX_DEPTH` levels.
const INDENT: &str = "  ";
const MAX_DEPTH: usize = 4;

/// The size of the live area and how to write it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frame {
    /// Columns: no line is wider.
    pub(crate) width: usize,
    /// Lines: the area never has more.
    pub(crate) max_lines: usize,
    /// Whether to write colors.
    pub(crate) color: bool,
}

/// The live area for the open `runs` at `now`: lines without newlines or cursor
/// movement, each at most `frame.width` columns, at most `frame.max_lines` of them.
///
/// Each run gets a header line and, below it, a line per stage (the running one with a
/// bar and its current item), its tools in flight and the last line of its streamed
/// text. Child runs follow their parent, indented. What does not fit collapses: the
/// least telling lines first (finished stages, oldest first), counted in `... and N
/// more stages`; when not even the headers fit, `... and N more runs`.
pub(crate) fn render(runs: &[RunState], now: Timestamp, frame: &Frame) -> Vec<String> {
    let states: Vec<RunState> = runs.iter().map(|run| run.at(now)).collect();
    let blocks: Vec<Block> = tree_order(&states)
        .into_iter()
        .map(|(idx, depth)| {
            let width = frame.width.saturating_sub(INDENT.len() * depth);
            run_block(&states[idx], now, width, depth)
        })
        .collect();
    fit(&blocks, frame.max_lines)
        .iter()
        .map(|line| line.finish(frame.width, frame.color))
        .collect()
}

/// The lines to print above the bars for `event`, which `state` now includes: log
/// lines at info and above, failures (items, stages, tools, the run), a stall and a
/// cancel request. Each line is whole (not cut): it is printed once and scrolls away
/// with the output, so wrapping tears nothing, and a cut would lose the error's end.
/// `run_name` prefixes each line when several runs share the screen.
pub(crate) fn messages(
    event: &Event,
    state: &RunState,
    run_name: Option<&str>,
    color: bool,
) -> Vec<String> {
    let (icon, what, detail): (Line, Line, Option<&str>) = match &event.body {
        EventBody::Log(log) => {
            let icon = match log.level {
                LogLevel::Debug => return Vec::new(),
                LogLevel::Info => styled(Style::Dim, "•"),
                LogLevel::Warn => styled(Style::Yellow, "⚠"),
                LogLevel::Error => styled(Style::Red, "✖"),
            };
            (icon, Line::new(), Some(log.message.as_str()))
        }
        EventBody::ItemFinished(item) if item.status == StepOutcome::Failed => {
            let label = state
                .failed_items
                .iter()
                .rev()
                .find(|f| f.seq == event.seq)
                .and_then(|f| f.label.as_deref());
            let mut line = Line::new();
            if let Some(stage) = &item.stage {
                line.push(Style::Dim, &format!("{stage}: "));
            }
            line.plain(&format!("item {}", item.item));
            if let Some(label) = label {
                line.plain(&format!(" ({label})"));
            }
            line.push(Style::Red, " failed");
            (styled(Style::Red, "✖"), line, item.error.as_deref())
        }
        EventBody::StageFinished(stage) if stage.status == StepOutcome::Failed => {
            let mut line = Line::new();
            line.plain(&format!("stage {}", stage.stage))
                .push(Style::Red, " failed");
            (styled(Style::Red, "✖"), line, stage.error.as_deref())
        }
        EventBody::ToolFinished(tool) if tool.status == ToolOutcome::Failed => {
            let mut line = Line::new();
            line.plain(&format!("tool {}", tool.tool))
                .push(Style::Red, " failed");
            (styled(Style::Red, "✖"), line, tool.error.as_deref())
        }
        EventBody::RunStalled(stalled) => {
            let mut line = Line::new();
            line.push(
                Style::Yellow,
                &format!(
                    "no news for {}: the run looks stalled",
                    text::duration(stalled.silent_for_s)
                ),
            );
            (styled(Style::Yellow, "⚠"), line, None)
        }
        EventBody::RunCancelRequested(cancel) => {
            let mut line = Line::new();
            line.push(Style::Yellow, "cancel requested");
            (styled(Style::Yellow, "⚠"), line, cancel.reason.as_deref())
        }
        _ => return Vec::new(),
    };
    let mut head = Line::new();
    if let Some(name) = run_name {
        head.push(Style::Dim, &format!("[{name}] "));
    }
    // A multi-line message keeps its lines; the later ones are indented under the
    // first so that they read as one message.
    let mut details = detail.unwrap_or_default().lines();
    let mut first = head.clone();
    first.extend(icon).plain(" ");
    let said = !what.is_empty();
    first.extend(what);
    if let Some(detail) = details.next() {
        if said {
            first.plain(": ");
        }
        first.plain(detail);
    }
    let mut out = vec![first.finish(usize::MAX, color)];
    for part in details {
        let mut more = head.clone();
        out.push(more.plain("  ").plain(part).finish(usize::MAX, color));
    }
    out
}

/// What a finished run leaves on screen: `✔ name succeeded in 1m05s · 99 items ok, 1
/// failed`, the run's own error, and a line per stage. Whole lines, as [`messages`].
pub(crate) fn summary(state: &RunState, color: bool) -> Vec<String> {
    let mut head = Line::new();
    let (icon, style) = match state.status {
        RunStatus::Succeeded => ("✔", Style::Green),
        RunStatus::Failed => ("✖", Style::Red),
        RunStatus::Cancelled => ("⊘", Style::Yellow),
        RunStatus::Running | RunStatus::Stalled => ("●", Style::Cyan),
    };
    let elapsed = text::duration(state.elapsed_s);
    let how = match state.status {
        RunStatus::Succeeded => format!(" succeeded in {elapsed}"),
        status => format!(" {} after {elapsed}", status.as_str()),
    };
    head.push(style, icon)
        .plain(" ")
        .push(Style::Bold, run_name(state))
        .push(style, &how);
    let items = &state.items;
    if items.succeeded + items.failed + items.skipped > 0 {
        head.sep().plain(&format!(
            "{} ok",
            text::counted(items.succeeded, "item", "items")
        ));
        if items.failed > 0 {
            head.plain(", ")
                .push(Style::Red, &format!("{} failed", text::count(items.failed)));
        }
        if items.skipped > 0 {
            head.plain(&format!(", {} skipped", text::count(items.skipped)));
        }
    }
    let tools = &state.tools;
    if tools.succeeded + tools.failed > 0 {
        let calls = tools.succeeded + tools.failed;
        head.sep()
            .plain(&text::counted(calls, "tool call", "tool calls"));
    }
    let mut out = vec![head.finish(usize::MAX, color)];
    // Errors of items, stages and tools were printed when they happened; the run's
    // own (from `fail`, or a cancel's reason) is only here. A cancel is no error: it
    // gives its reason.
    let cancelled = state.status == RunStatus::Cancelled;
    if let Some(error) = state.last_error.as_ref().filter(|e| e.source == "run") {
        for (k, part) in error.message.lines().enumerate() {
            let mut line = Line::new();
            line.plain("  ");
            if k == 0 && cancelled {
                line.push(Style::Yellow, "reason: ");
            } else if k == 0 {
                line.push(Style::Red, "error: ");
            }
            out.push(line.plain(part).finish(usize::MAX, color));
        }
    }
    let name_width = name_column(&state.stages);
    for stage in &state.stages {
        // The stages the cancel stopped (the reducer ends them `failed`, without an
        // error of their own, when the run ends) say they were cancelled.
        let stopped = cancelled && stage.error.is_none() && stage.finished_at == state.finished_at;
        let mut line = Line::new();
        if stopped && stage.status == StageStatus::Failed {
            line.plain("  ").extend(cancelled_stage(stage, name_width));
        } else {
            line.plain("  ").extend(finished_stage(stage, name_width));
        }
        out.push(line.finish(usize::MAX, color));
    }
    out
}

/// `⊘ classify  cancelled after 3.2s at 40/100`: a stage the run's cancel stopped.
fn cancelled_stage(stage: &StageState, name_width: usize) -> Line {
    let counter = &stage.progress;
    let unit = counter.unit.as_deref();
    let mut line = Line::new();
    line.push(Style::Yellow, "⊘")
        .plain(" ")
        .plain(&stage.name)
        .pad_to(2 + name_width)
        .plain("  ")
        .push(
            Style::Yellow,
            &format!("cancelled after {}", text::duration(stage.elapsed_s)),
        );
    match counter.total {
        Some(total) => {
            line.plain(&format!(
                " at {}",
                text::fraction(counter.done, total, unit)
            ));
        }
        None if counter.done > 0 => {
            line.plain(&format!(" at {}", text::amount(counter.done, unit)));
        }
        None => {}
    }
    line
}

/// The line a stage leaves when it ends, for output that cannot redraw (stderr not a
/// terminal): `✔ fetch 100 docs done in 8.2s`. Failed stages are reported by
/// [`messages`] instead.
pub(crate) fn stage_done(
    stage: &StageState,
    run_name: Option<&str>,
    color: bool,
) -> Option<String> {
    if stage.status == StageStatus::Failed {
        return None;
    }
    let mut line = Line::new();
    if let Some(name) = run_name {
        line.push(Style::Dim, &format!("[{name}] "));
    }
    Some(
        line.extend(finished_stage(stage, 0))
            .finish(usize::MAX, color),
    )
}

/// The line a run's start leaves, for output that cannot redraw.
pub(crate) fn started(state: &RunState, color: bool) -> String {
    let mut line = Line::new();
    line.push(Style::Cyan, "●")
        .plain(" ")
        .push(Style::Bold, run_name(state))
        .plain(" started");
    line.finish(usize::MAX, color)
}

/// One run's lines before fitting: its header, and the body lines with how much each
/// is worth keeping when space is short.
struct Block {
    header: Line,
    body: Vec<Body>,
    /// Levels of indentation, under its parent runs.
    depth: usize,
}

impl Block {
    /// `line` indented to this block's depth.
    fn indented(&self, line: &Line) -> Line {
        let mut out = Line::new();
        out.plain(&INDENT.repeat(self.depth)).extend(line.clone());
        out
    }
}

struct Body {
    line: Line,
    keep: Keep,
    /// The stage this line shows, for counting what a collapse hides.
    stage: Option<StageStatus>,
}

/// How much a body line is worth keeping, least first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Keep {
    /// Stages announced and not started.
    Pending,
    /// Finished stages.
    Finished,
    /// The last line of streamed text.
    Text,
    /// Failed stages, the model call in flight.
    Notable,
    /// What is happening now: current item, tools in flight, preparing the response.
    Current,
    /// Running stages.
    Running,
}

/// The blocks' lines within `max_lines`: every header, then the body lines worth most
/// across all runs (among equals, the most recent: later runs, later lines), in their
/// order, and for each run that hides stages beside lines it shows, a line counting
/// them. When not even the headers fit, the first runs are shown and the last line
/// counts the others.
fn fit(blocks: &[Block], max_lines: usize) -> Vec<Line> {
    if max_lines == 0 {
        return Vec::new();
    }
    let (shown, hidden_runs) = if blocks.len() <= max_lines {
        (blocks, 0)
    } else {
        (&blocks[..max_lines - 1], blocks.len() - (max_lines - 1))
    };
    let slots = max_lines - shown.len() - usize::from(hidden_runs > 0);
    let mut rank: Vec<(usize, usize)> = shown
        .iter()
        .enumerate()
        .flat_map(|(b, block)| (0..block.body.len()).map(move |i| (b, i)))
        .collect();
    rank.sort_by_key(|&(b, i)| std::cmp::Reverse((shown[b].body[i].keep, b, i)));
    let top = |n: usize| {
        let mut kept: Vec<Vec<bool>> = shown.iter().map(|b| vec![false; b.body.len()]).collect();
        for &(b, i) in &rank[..n] {
            kept[b][i] = true;
        }
        kept
    };
    let counted = |block: &Block, kept: &[bool]| {
        kept.contains(&true) && !hidden_stages(block, kept).is_empty()
    };
    // As many lines as fit together with a line per run counting the stages it hides;
    // when not even one line leaves room for its count, the lines without counts.
    let most = rank.len().min(slots);
    let (kept, with_counts) = (1..=most)
        .rev()
        .map(|n| (n, top(n)))
        .find(|(n, kept)| {
            n + shown
                .iter()
                .zip(kept)
                .filter(|(b, k)| counted(b, k))
                .count()
                <= slots
        })
        .map_or_else(|| (top(most), false), |(_, kept)| (kept, true));
    let mut out = Vec::new();
    for (block, kept) in shown.iter().zip(&kept) {
        out.push(block.indented(&block.header));
        let lines = block.body.iter().zip(kept).filter(|(_, k)| **k);
        out.extend(lines.map(|(body, _)| block.indented(&body.line)));
        if with_counts && counted(block, kept) {
            out.push(block.indented(&more_stages(&hidden_stages(block, kept))));
        }
    }
    if hidden_runs > 0 {
        let mut line = Line::new();
        let runs = if hidden_runs == 1 { "run" } else { "runs" };
        line.push(Style::Dim, &format!("... and {hidden_runs} more {runs}"));
        out.push(line);
    }
    out
}

/// The statuses of the stages `block` does not show.
fn hidden_stages(block: &Block, kept: &[bool]) -> Vec<StageStatus> {
    block
        .body
        .iter()
        .zip(kept)
        .filter(|(_, kept)| !**kept)
        .filter_map(|(body, _)| body.stage)
        .collect()
}

/// `... and 24 more stages (23 done, 1 failed)`.
fn more_stages(hidden: &[StageStatus]) -> Line {
    let n = |status| hidden.iter().filter(|&&s| s == status).count();
    let parts: Vec<String> = [
        (n(StageStatus::Succeeded), "done"),
        (n(StageStatus::Failed), "failed"),
        (n(StageStatus::Skipped), "skipped"),
        (n(StageStatus::Running), "running"),
    ]
    .into_iter()
    .filter(|(k, _)| *k > 0)
    .map(|(k, what)| format!("{k} {what}"))
    .collect();
    let noun = if hidden.len() == 1 { "stage" } else { "stages" };
    let mut line = Line::new();
    line.plain("  ").push(
        Style::Dim,
        &format!(
            "... and {} more {noun} ({})",
            hidden.len(),
            parts.join(", ")
        ),
    );
    line
}

/// The order runs are drawn in, with each one's depth: every child right after its
/// parent when the parent is open too, one level deeper.
fn tree_order(states: &[RunState]) -> Vec<(usize, usize)> {
    let parents: Vec<Option<usize>> = states
        .iter()
        .map(|s| {
            let parent = s.parent.as_ref()?;
            states.iter().position(|o| &o.id == parent && o.id != s.id)
        })
        .collect();
    let mut order = Vec::with_capacity(states.len());
    let mut placed = vec![false; states.len()];
    let roots = (0..states.len()).filter(|&i| parents[i].is_none());
    // Runs in a parent cycle (a malformed stream) have no root: they come last.
    for idx in roots.chain(0..states.len()) {
        place(idx, 0, &parents, &mut placed, &mut order);
    }
    order
}

fn place(
    idx: usize,
    depth: usize,
    parents: &[Option<usize>],
    placed: &mut [bool],
    order: &mut Vec<(usize, usize)>,
) {
    if std::mem::replace(&mut placed[idx], true) {
        return;
    }
    order.push((idx, depth.min(MAX_DEPTH)));
    for child in (0..parents.len()).filter(|&c| parents[c] == Some(idx)) {
        place(child, depth + 1, parents, placed, order);
    }
}

/// The run's name, or its id when it has none.
pub(crate) fn run_name(state: &RunState) -> &str {
    if state.name.is_empty() {
        state.id.as_str()
    } else {
        &state.name
    }
}

fn styled(style: Style, text: &str) -> Line {
    let mut line = Line::new();
    line.push(style, text);
    line
}

/// One open run's header and body, `width` columns wide.
fn run_block(state: &RunState, now: Timestamp, width: usize, depth: usize) -> Block {
    Block {
        header: header(state, width),
        body: body(state, now, width),
        depth,
    }
}

/// A run name is cut to this many columns before the header drops anything else.
const MIN_RUN_NAME: usize = 12;

/// `● analysis · stage 2/3 · 46% · 1 failed · 1m05s`, in at most `width` columns when
/// it can be: a long name is cut first (down to [`MIN_RUN_NAME`]), then the parts drop
/// in this order: the agent's turn, the stage number, the percent, the elapsed time;
/// failures, a stall and a cancel request stay.
fn header(state: &RunState, width: usize) -> Line {
    let stalled = state.status == RunStatus::Stalled;
    // Each part with its style and how late it drops (higher stays longer), in the
    // order shown.
    let mut parts: Vec<(Style, String, u8)> = Vec::new();
    if stalled {
        parts.push((Style::Yellow, "stalled".to_owned(), 9));
    }
    if state.cancel_requested {
        parts.push((Style::Yellow, "cancel requested".to_owned(), 8));
    }
    if let Some(steps) = state.total_steps.filter(|&n| n > 0) {
        let at = (state.stages.len() as u64).clamp(1, steps);
        parts.push((Style::Plain, format!("stage {at}/{steps}"), 2));
        if let Some(p) = state.percent {
            parts.push((Style::Plain, text::percent(p).trim_start().to_owned(), 3));
        }
    }
    if let Some(turn) = state.agent.iteration {
        parts.push((Style::Plain, format!("turn {turn}"), 1));
    }
    if state.items.failed > 0 {
        let failed = format!("{} failed", text::count(state.items.failed));
        parts.push((Style::Red, failed, 7));
    }
    parts.push((Style::Plain, text::duration(state.elapsed_s), 4));
    // The whole run's ETA, when it has stages (without, its one counter line shows
    // it): the stages' lines show their own.
    if let Some(eta) = state.eta_s.filter(|_| !state.stages.is_empty()) {
        let eta = text::eta_text(eta, state.eta_low_s, state.eta_high_s);
        parts.push((Style::Plain, format!("run {eta}"), 5));
    }
    let name = text::escape_controls(run_name(state));
    let rest = |parts: &[(Style, String, u8)]| {
        parts
            .iter()
            .map(|(_, text, _)| 3 + text::columns(&text::escape_controls(text)))
            .sum::<usize>()
    };
    // The icon and its space, then the name in what the parts leave.
    let mut room = width.saturating_sub(2 + rest(&parts));
    while room < MIN_RUN_NAME.min(text::columns(&name)) {
        let Some(drop) = parts
            .iter()
            .enumerate()
            .filter(|(_, (_, _, keep))| *keep < 7)
            .min_by_key(|(_, (_, _, keep))| *keep)
            .map(|(i, _)| i)
        else {
            break;
        };
        parts.remove(drop);
        room = width.saturating_sub(2 + rest(&parts));
    }
    let mut line = Line::new();
    line.push(if stalled { Style::Yellow } else { Style::Cyan }, "●")
        .plain(" ")
        .push(Style::Bold, &text::head(&name, room.max(MIN_RUN_NAME)));
    for (style, text, _) in &parts {
        line.sep().push(*style, text);
    }
    line
}

fn body(state: &RunState, now: Timestamp, width: usize) -> Vec<Body> {
    let mut body = Vec::new();
    let name_width = name_column(&state.stages).min((width / 4).max(8));
    // A run that counts without stages shows its counter as a stage without a name.
    let running = state
        .stages
        .iter()
        .filter(|s| s.status == StageStatus::Running);
    let counters: Vec<(&Counter, f64)> = running
        .map(|s| (&s.progress, s.elapsed_s))
        .chain(state.progress.as_ref().map(|c| (c, state.elapsed_s)))
        .collect();
    // One layout for all the run's bars, so that they line up.
    let layout = layout(&counters, width, name_width);
    let spin = spinner(now);
    for stage in &state.stages {
        let (line, keep) = match stage.status {
            StageStatus::Running => {
                let line = counter_line(
                    &stage.progress,
                    Some(&stage.name),
                    stage.elapsed_s,
                    name_width,
                    layout,
                    spin,
                );
                (line, Keep::Running)
            }
            StageStatus::Failed => (finished_stage(stage, name_width), Keep::Notable),
            StageStatus::Succeeded | StageStatus::Skipped => {
                (finished_stage(stage, name_width), Keep::Finished)
            }
        };
        let mut indented = Line::new();
        indented.plain("  ").extend(line);
        body.push(Body {
            line: indented,
            keep,
            stage: Some(stage.status),
        });
        if stage.status == StageStatus::Running {
            body.extend(current_item(state, Some(&stage.name), now));
        }
    }
    if let Some(counter) = &state.progress {
        let mut line = Line::new();
        line.plain("  ").extend(counter_line(
            counter,
            None,
            state.elapsed_s,
            name_width,
            layout,
            spin,
        ));
        body.push(Body {
            line,
            keep: Keep::Running,
            stage: None,
        });
    }
    body.extend(current_item(state, None, now));
    if let Some(steps) = state.total_steps {
        let pending = steps.saturating_sub(state.stages.len() as u64);
        if pending > 0 {
            let noun = if pending == 1 { "stage" } else { "stages" };
            let mut line = Line::new();
            line.plain("  ")
                .push(Style::Dim, &format!("○ {pending} more {noun} to come"));
            body.push(Body {
                line,
                keep: Keep::Pending,
                stage: None,
            });
        }
    }
    body.extend(agent_lines(state, now, width));
    body
}

/// Columns of the stage name column: the longest name, within reason.
fn name_column(stages: &[StageState]) -> usize {
    stages
        .iter()
        .map(|s| text::columns(&text::escape_controls(&s.name)))
        .max()
        .unwrap_or(0)
        .min(MAX_NAME)
}

/// What a counter line shows of itself on a screen too narrow for all of it: the
/// columns drop in this order (the least telling first), each only when the bar would
/// otherwise be narrower than [`MIN_BAR`]; then the bar shrinks, down to
/// [`MIN_SHRUNK_BAR`], before the ETA drops too, and last the bar itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Detail {
    /// Everything: count, rate, elapsed time, ETA.
    All,
    /// Without the rate.
    NoRate,
    /// Without the stage's elapsed time either (the run's header has the run's).
    NoElapsed,
    /// Without the count beside a bar (its percent stays); a counter without a total
    /// keeps it, as it has nothing else.
    NoCount,
    /// Without the ETA: the bar and its percent.
    NoEta,
}

/// How a run's counter lines are laid out: what they show, and how wide their bars
/// are (0 for none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    detail: Detail,
    bar: usize,
}

/// The layout of `counters` (each with its elapsed time) on lines `width` wide.
///
/// Measured with the widest text each column can take (`1023 MiB`, `59m59s`) rather
/// than the text it has now, so that a bar neither twitches nor comes and goes as its
/// numbers grow.
fn layout(counters: &[(&Counter, f64)], width: usize, name_width: usize) -> Layout {
    let any_bar = counters.iter().any(|(c, _)| c.total.is_some());
    let widest = |detail| {
        counters
            .iter()
            .map(|(c, elapsed)| reserved_width(c, *elapsed, name_width, detail))
            .max()
            .unwrap_or(0)
    };
    // Beside the bar: the line's indent, the text, and a space after the bar.
    let room = |detail| width.saturating_sub(2 + widest(detail) + 1);
    let levels = [
        Detail::All,
        Detail::NoRate,
        Detail::NoElapsed,
        Detail::NoCount,
    ];
    if !any_bar {
        let detail = levels
            .into_iter()
            .find(|&d| 2 + widest(d) <= width)
            .unwrap_or(Detail::NoEta);
        return Layout { detail, bar: 0 };
    }
    for detail in levels {
        if room(detail) >= MIN_BAR {
            let bar = room(detail).min(MAX_BAR);
            return Layout { detail, bar };
        }
    }
    for detail in [Detail::NoCount, Detail::NoEta] {
        if room(detail) >= MIN_SHRUNK_BAR {
            let bar = room(detail).min(MAX_BAR);
            return Layout { detail, bar };
        }
    }
    Layout {
        detail: Detail::NoEta,
        bar: 0,
    }
}

/// The spinner's frame at `now`, for counters without a total.
fn spinner(now: Timestamp) -> &'static str {
    SPINNER[(now.unix_micros() / 100_000).rem_euclid(SPINNER.len() as i64) as usize]
}

/// One column of a counter line: its text, and the widest it can get.
struct Column {
    text: String,
    widest: usize,
}

/// The columns after a counter's name and bar, as `detail` shows them: the percent and
/// count (or the count alone, without a total), the rate, the elapsed time and the ETA.
fn columns(counter: &Counter, elapsed_s: f64, detail: Detail) -> Vec<Column> {
    let unit = counter.unit.as_deref();
    let bytes = text::is_bytes(unit);
    let mut out = Vec::new();
    match counter.total {
        Some(total) => {
            let percent = counter
                .percent
                .unwrap_or(if total == 0 { 100.0 } else { 0.0 });
            out.push(Column {
                text: text::percent(percent),
                widest: 4,
            });
            if detail < Detail::NoCount {
                let text = text::fraction(counter.done, total, unit);
                let widest = text::fraction_widest(total, unit).max(text::columns(&text));
                out.push(Column { text, widest });
            }
        }
        None => {
            let text = if unit.is_none() {
                format!("{} done", text::count(counter.done))
            } else {
                text::amount(counter.done, unit)
            };
            // `999` becomes `1.0k`, and bytes take at most `1023 MiB`.
            let widest = text::columns(&text).max(if bytes { 8 } else { 5 });
            out.push(Column { text, widest });
        }
    }
    if let Some(rate) = counter.rate.filter(|_| detail < Detail::NoRate) {
        // A weighted counter's rate is of weight, not of its units.
        let per = if counter.total_weight.is_some() {
            None
        } else {
            unit
        };
        let text = text::rate(rate, per);
        let widest = text::columns(&text).max(if bytes { 10 } else { 7 });
        out.push(Column { text, widest });
    }
    if detail < Detail::NoElapsed {
        let text = text::duration(elapsed_s);
        let widest = text::columns(&text).max(6);
        out.push(Column { text, widest });
    }
    // At its total, a stage waiting to be finished has nothing left to estimate.
    let complete = counter.total.is_some_and(|total| counter.done >= total);
    if let Some(eta) = counter
        .eta_s
        .filter(|_| !complete && detail < Detail::NoEta)
    {
        let text = text::eta_text(eta, counter.eta_low_s, counter.eta_high_s);
        let widest = text::columns(&text).max(10);
        out.push(Column { text, widest });
    }
    out
}

/// The widest a counter line can get without its bar, as `detail` shows it.
fn reserved_width(counter: &Counter, elapsed_s: f64, name_width: usize, detail: Detail) -> usize {
    // The icon, and the name column with its gap.
    let mut width = 2 + if name_width > 0 { name_width + 2 } else { 0 };
    let columns = columns(counter, elapsed_s, detail);
    for (i, column) in columns.iter().enumerate() {
        width += column.widest;
        width += match i {
            0 => 0,
            // Between the percent and the count beside a bar.
            1 if counter.total.is_some() => 2,
            _ => 3,
        };
    }
    width
}

/// `▸ classify  ████████░░░░  40%  40/100 docs · 3.1/s · 13s · ETA 19s`, or with no
/// total, `⠙ crawl  42 docs · 3.1/s · 13s` (a spinner for its icon): a running counter
/// with its elapsed time and, once known, its ETA, as `layout` says. Failures are
/// counted in the run's header, which has room.
fn counter_line(
    counter: &Counter,
    name: Option<&str>,
    elapsed_s: f64,
    name_width: usize,
    layout: Layout,
    spin: &str,
) -> Line {
    let mut line = Line::new();
    let icon = if counter.total.is_some() { "▸" } else { spin };
    line.push(Style::Cyan, icon).plain(" ");
    if let Some(name) = name {
        line.plain(&text::head(name, name_width))
            .pad_to(2 + name_width)
            .plain("  ");
    }
    let bar = layout.bar;
    if let (Some(total), true) = (counter.total, bar > 0) {
        let percent = counter
            .percent
            .unwrap_or(if total == 0 { 100.0 } else { 0.0 });
        let filled = ((percent.clamp(0.0, 100.0) / 100.0) * bar as f64).floor() as usize;
        line.push(Style::Cyan, &"█".repeat(filled))
            .push(Style::Dim, &"░".repeat(bar - filled))
            .plain(" ");
    }
    for (i, column) in columns(counter, elapsed_s, layout.detail)
        .into_iter()
        .enumerate()
    {
        match i {
            0 => {}
            1 if counter.total.is_some() => {
                line.plain("  ");
            }
            _ => {
                line.sep();
            }
        }
        line.plain(&column.text);
    }
    if let Some(o) = counter.overdue.filter(|_| layout.detail < Detail::NoEta) {
        line.sep()
            .push(Style::Yellow, &text::overdue_text(o.running_s, o.typical_s));
    }
    if let Some(message) = &counter.message {
        line.sep().push(Style::Dim, message);
    }
    line
}

/// `✔ fetch     100 docs done in 8.2s`, `✖ classify  failed after 3.2s at 40/100: why`,
/// `↷ summarize skipped`.
fn finished_stage(stage: &StageState, name_width: usize) -> Line {
    let counter = &stage.progress;
    let unit = counter.unit.as_deref();
    // How far it got: `40/100 docs` short of its total, `100 docs` at it, and nothing
    // for a stage that counted nothing.
    let count = match counter.total {
        Some(total) if total != counter.done => Some(text::fraction(counter.done, total, unit)),
        None if counter.done == 0 => None,
        _ => Some(text::amount(counter.done, unit)),
    };
    let elapsed = text::duration(stage.elapsed_s);
    let (icon, style) = match stage.status {
        StageStatus::Succeeded => ("✔", Style::Green),
        StageStatus::Failed => ("✖", Style::Red),
        StageStatus::Skipped => ("↷", Style::Dim),
        StageStatus::Running => ("▸", Style::Yellow),
    };
    let mut line = Line::new();
    line.push(style, icon)
        .plain(" ")
        .plain(&stage.name)
        .pad_to(2 + name_width)
        .plain("  ");
    match stage.status {
        StageStatus::Succeeded => {
            if let Some(count) = &count {
                line.plain(count).plain(" ");
            }
            line.plain(&format!("done in {elapsed}"));
        }
        StageStatus::Skipped => {
            line.push(Style::Dim, "skipped");
        }
        // Running: only in a finished run's summary, for a stage that never finished.
        StageStatus::Failed | StageStatus::Running => {
            let what = if stage.status == StageStatus::Failed {
                "failed"
            } else {
                "stopped"
            };
            line.push(style, &format!("{what} after {elapsed}"));
            if let Some(count) = &count {
                line.plain(&format!(" at {count}"));
            }
            if let Some(error) = &stage.error {
                line.plain(": ").plain(error);
            }
        }
    }
    if stage.status != StageStatus::Failed && stage.items_failed > 0 {
        line.sep().push(
            Style::Red,
            &format!("{} failed", text::count(stage.items_failed)),
        );
    }
    line
}

/// `↳ Quarterly report.pdf · 2.1s (+3 more)`: the item of `stage` started last, and how
/// many more of the stage run beside it.
fn current_item(state: &RunState, stage: Option<&str>, now: Timestamp) -> Option<Body> {
    let mut items = state
        .running_items
        .iter()
        .filter(|i| i.stage.as_deref() == stage);
    let latest = items.next_back()?;
    let others = items.count();
    let mut line = Line::new();
    line.plain("    ").push(Style::Dim, "↳ ");
    match &latest.label {
        Some(label) => line.plain(label),
        None => line.plain(&format!("item {}", latest.item)),
    };
    line.sep().push(
        Style::Dim,
        &text::duration(now.seconds_since(latest.started_at)),
    );
    if others > 0 {
        line.push(Style::Dim, &format!(" (+{others} more)"));
    }
    Some(Body {
        line,
        keep: Keep::Current,
        stage: None,
    })
}

/// Tools in flight with their feedback, "preparing response", the model call in
/// flight, and the end of the streamed text's last line, on lines `width` wide.
fn agent_lines(state: &RunState, now: Timestamp, width: usize) -> Vec<Body> {
    let mut out = Vec::new();
    let mut push = |line: Line, keep| {
        out.push(Body {
            line,
            keep,
            stage: None,
        })
    };
    for tool in &state.tools.in_flight {
        let mut line = Line::new();
        line.plain("  ")
            .push(Style::Cyan, "⚙")
            .plain(" ")
            .push(Style::Bold, &tool.tool);
        // What the call says it is doing now outranks what it said when it started.
        let progress = tool.progress.as_ref();
        let feedback = progress
            .and_then(|p| p.message.as_ref())
            .or(tool.feedback.as_ref());
        match (feedback, tool.status) {
            (Some(feedback), _) => {
                line.plain(": ").plain(feedback);
                if feedback.ends_with(char::is_alphanumeric) {
                    line.plain("…");
                }
            }
            (None, ToolCallStatus::Selected) => {
                line.push(Style::Dim, ": selected");
            }
            (None, _) => {}
        }
        if let Some(progress) = progress {
            line.sep().plain(&tool_count(progress));
        }
        line.sep().push(
            Style::Dim,
            &text::duration(now.seconds_since(tool.started_at)),
        );
        push(line, Keep::Current);
    }
    if state.agent.preparing_response {
        let mut line = Line::new();
        line.plain("  ")
            .push(Style::Cyan, "✎")
            .plain(" preparing response…");
        push(line, Keep::Current);
    } else if state.tools.in_flight.is_empty() && !state.llm.in_flight.is_empty() {
        let mut line = Line::new();
        let model = state.llm.model.as_deref().unwrap_or("the model");
        line.plain("  ")
            .push(Style::Cyan, "◌")
            .plain(&format!(" calling {model}…"));
        push(line, Keep::Notable);
    }
    if let Some(last) = state
        .text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
    {
        // Text grows at its end: cut from the start, so the newest words show. Cut
        // as shown, escapes and all, so that the cut is measured in real columns.
        let mut line = Line::new();
        line.plain("  ").push(Style::Dim, "❯ ");
        let last = text::escape_controls(last);
        line.plain(&text::tail(&last, width.saturating_sub(line.width())));
        push(line, Keep::Text);
    }
    out
}

/// A tool call's own count: `42%  5/12 pages`, `40%  7 pages` when it gave a percent
/// without a total, or `7 pages`.
fn tool_count(progress: &ToolProgress) -> String {
    let unit = progress.unit.as_deref();
    let amount = match progress.total {
        Some(total) => text::fraction(progress.done, total, unit),
        None => text::amount(progress.done, unit),
    };
    match progress.percent {
        Some(p) => format!("{}  {amount}", text::percent(p).trim_start()),
        None => amount,
    }
}

#[cfg(test)]
mod tests {
    use herald_protocol::{Progress, StepOutcome};

    use super::super::fixtures::*;
    use super::*;

    /// Asserts the live area of `runs` at `secs`, `width` columns by `max_lines`, is
    /// `expected` (a leading newline ignored), and that no line is wider than `width`.
    #[track_caller]
    fn check(runs: &[RunState], secs: f64, width: usize, max_lines: usize, expected: &str) {
        let frame = Frame {
            width,
            max_lines,
            color: false,
        };
        let lines = render(runs, at(secs), &frame);
        let actual = lines.join("\n");
        let expected = expected.strip_prefix('\n').unwrap_or(expected);
        assert_eq!(
            actual, expected,
            "\n--- rendered ---\n{actual}\n----------------\n"
        );
        for line in &lines {
            assert!(text::columns(line) <= width, "wider than {width}: {line:?}");
        }
    }

    #[test]
    fn a_wide_range_is_shown_and_the_run_has_its_own_eta() {
        // The producer says 3 to 5 minutes for its stage, the first of two: the run's
        // ETA adds a second stage as long as this one (elapsed plus ETA).
        let run = fold(
            "r1",
            None,
            vec![
                (0.0, run_started("sync", Some(2))),
                (0.0, stage_started("upload", Some(100))),
                (
                    10.0,
                    Progress {
                        rate: Some(0.25),
                        eta_s: Some(240.0),
                        eta_low_s: Some(180.0),
                        eta_high_s: Some(300.0),
                        ..progress("upload", 10, Some(100), None)
                    }
                    .into(),
                ),
            ],
        );
        // 8m10s, between 7m10s and 9m10s: too narrow a range to show.
        check(
            &[run],
            10.0,
            100,
            10,
            "
● sync · stage 1/2 · 5% · 10s · run ETA 8m10s
  ▸ upload  ███░░░░░░░░░░░░░░░░░░░░░░░░░░░  10%  10/100 · 15/min · 10s · ETA 3–5 min
  ○ 1 more stage to come",
        );
    }

    #[test]
    fn an_overdue_item_is_said_so_beside_the_eta() {
        // One item a second for 20 s, then nothing for a minute.
        let mut events = vec![
            (0.0, run_started("crawl", None)),
            (0.0, stage_started("fetch", Some(100))),
        ];
        for i in 1..=20u32 {
            events.push((
                f64::from(i),
                item_finished("fetch", &format!("p{i}"), StepOutcome::Succeeded, None),
            ));
        }
        let run = fold("r1", None, events);
        // The ETA itself is the estimator's to choose; the note is the view's.
        let frame = Frame {
            width: 160,
            max_lines: 10,
            color: false,
        };
        let lines = render(std::slice::from_ref(&run), at(80.0), &frame);
        assert!(
            lines[1].ends_with(" · current item running 1m00s, typically 1.0s"),
            "{lines:#?}"
        );
        // Before it is overdue, nothing is said.
        let lines = render(&[run], at(20.5), &frame);
        assert!(!lines[1].contains("current item"), "{lines:#?}");
    }

    #[test]
    fn a_run_without_stages_is_its_header() {
        let run = fold("r1", None, vec![(0.0, run_started("quiet", None))]);
        check(&[run], 65.0, 80, 10, "● quiet · 1m05s");
    }

    #[test]
    fn a_run_id_stands_in_for_a_missing_name() {
        let run = fold(
            "job-7",
            None,
            vec![(0.0, log(herald_protocol::LogLevel::Info, "hi"))],
        );
        check(&[run], 2.0, 80, 10, "● job-7 · 2.0s");
    }

    #[test]
    fn unknown_totals_count_without_a_bar() {
        let run = fold(
            "r1",
            None,
            vec![
                (0.0, run_started("crawl", None)),
                (0.0, stage_started("discover", None)),
                (
                    13.0,
                    Progress {
                        rate: Some(3.12),
                        ..progress("discover", 42, None, Some("docs"))
                    }
                    .into(),
                ),
            ],
        );
        check(
            &[run],
            13.0,
            80,
            10,
            "
● crawl · 13s
  ⠋ discover  42 docs · 3.1/s · 13s",
        );
    }

    /// A download mid-way, with everything a counter line can show.
    fn download() -> RunState {
        fold(
            "r1",
            None,
            vec![
                (0.0, run_started("mirror", None)),
                (0.0, stage_started("download", Some(5 << 30))),
                (
                    600.0,
                    Progress {
                        rate: Some(2.5 * 1024.0 * 1024.0),
                        eta_s: Some(1_260.0),
                        ..progress("download", 3 << 29, Some(5 << 30), Some("B"))
                    }
                    .into(),
                ),
            ],
        )
    }

    #[test]
    fn narrow_screens_drop_columns_in_order_and_keep_a_bar_down_to_40() {
        let at = |width, expected: &str| {
            let expected = format!("● mirror · 10m00s\n{expected}");
            check(&[download()], 600.0, width, 10, &expected);
        };
        at(
            120,
            "  ▸ download  █████████░░░░░░░░░░░░░░░░░░░░░  30%  1.5 GiB/5.0 GiB · 2.5 MiB/s · 10m00s · ETA 21m00s",
        );
        // Narrower, the bar gives way first, down to 10 columns.
        at(
            100,
            "  ▸ download  ████████░░░░░░░░░░░░░░░░░░░░  30%  1.5 GiB/5.0 GiB · 2.5 MiB/s · 10m00s · ETA 21m00s",
        );
        // Then the rate goes, then the stage's elapsed time (the header has the run's).
        at(
            80,
            "  ▸ download  ██████░░░░░░░░░░░░░░░  30%  1.5 GiB/5.0 GiB · 10m00s · ETA 21m00s",
        );
        at(
            60,
            "  ▸ download  ███░░░░░░░  30%  1.5 GiB/5.0 GiB · ETA 21m00s",
        );
        // Then the count (the percent stays), and the bar shrinks below 10...
        at(40, "  ▸ download  ██░░░░░░░  30%  ETA 21m00s");
        // ... before the ETA goes too.
        at(34, "  ▸ download  ████░░░░░░░░░░░  30%");
    }

    #[test]
    fn a_bar_keeps_its_width_as_its_numbers_grow() {
        // From a few bytes to nearly 5 GiB, at a steady 2.5 MiB/s.
        let rate = 2.5 * 1024.0 * 1024.0;
        let total = 5u64 << 30;
        let widths: Vec<usize> = [1u64, 100, 1 << 20, 3 << 29, total - (1 << 20)]
            .iter()
            .map(|&done| {
                let run = fold(
                    "r1",
                    None,
                    vec![
                        (0.0, run_started("mirror", None)),
                        (0.0, stage_started("download", Some(total))),
                        (
                            9.0,
                            Progress {
                                rate: Some(rate),
                                eta_s: Some((total - done) as f64 / rate),
                                ..progress("download", done, Some(total), Some("B"))
                            }
                            .into(),
                        ),
                    ],
                );
                let frame = Frame {
                    width: 80,
                    max_lines: 10,
                    color: false,
                };
                let lines = render(&[run], at(9.0), &frame);
                lines[1].chars().filter(|&c| c == '█' || c == '░').count()
            })
            .collect();
        assert!(
            widths.iter().all(|&w| w == widths[0] && w > 0),
            "{widths:?}"
        );
    }

    #[test]
    fn a_stage_s_message_follows_its_numbers_and_the_text_of_a_new_call_its_own_line() {
        let run = fold(
            "r1",
            None,
            vec![
                (0.0, run_started("mirror", None)),
                (0.0, stage_started("download", Some(10))),
                (
                    2.0,
                    Progress {
                        message: Some("b.tar.gz".into()),
                        ..progress("download", 4, Some(10), None)
                    }
                    .into(),
                ),
                (
                    2.0,
                    herald_protocol::LlmRequest {
                        call_id: "c1".into(),
                        provider: None,
                        model: None,
                    }
                    .into(),
                ),
                (2.0, text("The first answer ends here.")),
                (
                    2.5,
                    herald_protocol::LlmRequest {
                        call_id: "c2".into(),
                        provider: None,
                        model: None,
                    }
                    .into(),
                ),
                (2.5, text("A second")),
            ],
        );
        check(
            &[run],
            3.0,
            100,
            10,
            "
● mirror · 3.0s
  ▸ download  ████████████░░░░░░░░░░░░░░░░░░  40%  4/10 · 2.0/s · 3.0s · ETA 0–5s · b.tar.gz
  ◌ calling the model…
  ❯ A second",
        );
    }

    #[test]
    fn a_narrow_header_cuts_the_name_then_drops_the_least_telling_parts() {
        let run = fold(
            "r1",
            None,
            vec![
                (0.0, run_started("demo: triage 200 documents", Some(4))),
                (0.0, stage_started("fetch", Some(10))),
                (1.0, item_started("fetch", "1", None)),
                (
                    2.0,
                    item_finished("fetch", "1", StepOutcome::Failed, Some("404")),
                ),
            ],
        );
        let header = |width| {
            let frame = Frame {
                width,
                max_lines: 1,
                color: false,
            };
            render(std::slice::from_ref(&run), at(65.0), &frame).remove(0)
        };
        assert_eq!(
            header(80),
            "● demo: triage 200 documents · stage 1/4 · 2% · 1 failed · 1m05s"
        );
        assert_eq!(
            header(60),
            "● demo: triage 200 docu… · stage 1/4 · 2% · 1 failed · 1m05s"
        );
        assert_eq!(header(40), "● demo: triage… · 2% · 1 failed · 1m05s");
        assert_eq!(header(30), "● demo: triage 200… · 1 failed");
    }

    #[test]
    fn a_total_of_zero_is_complete() {
        let run = fold(
            "r1",
            None,
            vec![
                (0.0, run_started("sync", None)),
                (0.0, stage_started("upload", Some(0))),
            ],
        );
        check(
            &[run],
            1.0,
            80,
            10,
            "
● sync · 1.0s
  ▸ upload  ██████████████████████████████ 100%  0/0 · 1.0s",
        );
    }

    #[test]
    fn huge_numbers_and_long_durations_read_short() {
        let run = fold(
            "r1",
            None,
            vec![
                (0.0, run_started("backfill", None)),
                (0.0, stage_started("rows", Some(3_400_000_000))),
                (
                    7_380.0,
                    Progress {
                        rate: Some(123_456.0),
                        eta_s: Some(20_000.0),
                        ..progress("rows", 1_234_567_890, Some(3_400_000_000), None)
                    }
                    .into(),
                ),
                (7_380.0, stage_started("bytes", Some(5 << 30))),
                (
                    7_380.0,
                    progress("bytes", 3 << 29, Some(5 << 30), Some("B")).into(),
                ),
            ],
        );
        check(
            &[run],
            7_380.0,
            100,
            10,
            "
● backfill · 2h03m
  ▸ rows   ██████████░░░░░░░░░░░░░░░░░░░░  36%  1.2G/3.4G · 123k/s · 2h03m · ETA 5h33m
  ▸ bytes  █████████░░░░░░░░░░░░░░░░░░░░░  30%  1.5 GiB/5.0 GiB · 0.0s",
        );
    }

    #[test]
    fn a_run_counting_without_stages_gets_a_bar_of_its_own() {
        let run = fold(
            "r1",
            None,
            vec![
                (0.0, run_started("download", None)),
                (
                    4.0,
                    Progress {
                        stage: None,
                        eta_s: Some(6.0),
                        rate: Some(2.5 * 1024.0 * 1024.0),
                        ..progress("", 10 << 20, Some(25 << 20), Some("B"))
                    }
                    .into(),
                ),
            ],
        );
        check(
            &[run],
            4.0,
            100,
            10,
            "
● download · 4.0s
  ▸ ████████████░░░░░░░░░░░░░░░░░░  40%  10.0 MiB/25.0 MiB · 2.5 MiB/s · 4.0s · ETA 6.0s",
        );
    }

    #[test]
    fn failed_and_skipped_stages_say_so() {
        let run = fold(
            "r1",
            None,
            vec![
                (0.0, run_started("deploy", None)),
                (0.0, stage_started("build", Some(10))),
                (3.0, progress("build", 4, Some(10), None).into()),
                (
                    3.0,
                    stage_finished("build", StepOutcome::Failed, 3.0, Some("linker error")),
                ),
                (3.0, stage_started("push", None)),
                (3.0, stage_finished("push", StepOutcome::Skipped, 0.0, None)),
            ],
        );
        check(
            &[run],
            4.0,
            80,
            10,
            "
● deploy · 4.0s
  ✖ build  failed after 3.0s at 4/10: linker error
  ↷ push   skipped",
        );
    }

    #[test]
    fn more_runs_than_fit_collapse_into_one_line() {
        let runs: Vec<RunState> = (1..=6)
            .map(|n| {
                let id = format!("r{n}");
                fold(
                    &id,
                    None,
                    vec![(0.0, run_started(&format!("job {n}"), None))],
                )
            })
            .collect();
        check(
            &runs,
            1.0,
            80,
            4,
            "
● job 1 · 1.0s
● job 2 · 1.0s
● job 3 · 1.0s
... and 3 more runs",
        );
    }

    #[test]
    fn a_child_s_tool_in_flight_outranks_its_parent_s_finished_stages() {
        let parent = fold(
            "p1",
            None,
            vec![
                (0.0, run_started("analysis", None)),
                (0.0, stage_started("fetch", None)),
                (
                    1.0,
                    stage_finished("fetch", StepOutcome::Succeeded, 1.0, None),
                ),
                (1.0, stage_started("classify", None)),
                (
                    2.0,
                    stage_finished("classify", StepOutcome::Succeeded, 1.0, None),
                ),
                (2.0, stage_started("summarize", Some(3))),
                (
                    2.0,
                    item_started("summarize", "1", Some("section: findings")),
                ),
            ],
        );
        let child = fold(
            "c1",
            Some("p1"),
            vec![
                (2.0, run_started("summarizer", None)),
                (
                    2.5,
                    tool_started("t1", "search_docs", Some("Searching the docs")),
                ),
            ],
        );
        check(
            &[parent, child],
            3.0,
            80,
            6,
            "
● analysis · 3.0s
  ▸ summarize  ░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░   0%  0/3 · 1.0s
    ↳ section: findings · 1.0s
  ... and 2 more stages (2 done)
  ● summarizer · 1.0s
    ⚙ search_docs: Searching the docs… · 0.5s",
        );
    }

    #[test]
    fn a_tool_shows_its_own_progress_on_its_row() {
        let tool_progress = |done, total, message: Option<&str>| Progress {
            stage: None,
            call_id: Some("t1".into()),
            message: message.map(str::to_owned),
            ..progress("ignored", done, total, Some("pages"))
        };
        let run = fold(
            "r1",
            None,
            vec![
                (0.0, run_started("agent", None)),
                (1.0, tool_started("t1", "crawl", Some("Crawling the site"))),
                (2.0, tool_progress(3, Some(12), Some("Page 3 of 12")).into()),
                (2.5, tool_progress(5, None, None).into()),
            ],
        );
        check(
            &[run],
            3.0,
            80,
            6,
            "
● agent · 3.0s
  ⚙ crawl: Page 3 of 12… · 41%  5/12 pages · 2.0s",
        );
    }

    #[test]
    fn a_stalled_run_and_a_cancel_request_are_flagged() {
        let run = fold(
            "r1",
            None,
            vec![
                (0.0, run_started("slow", None)),
                (
                    60.0,
                    herald_protocol::RunStalled { silent_for_s: 60.0 }.into(),
                ),
                (
                    61.0,
                    herald_protocol::RunCancelRequested { reason: None }.into(),
                ),
            ],
        );
        check(
            &[run],
            62.0,
            80,
            10,
            "● slow · stalled · cancel requested · 1m02s",
        );
    }
}
