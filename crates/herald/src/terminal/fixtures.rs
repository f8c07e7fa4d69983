//! Events and times for the terminal's tests: fixed timestamps and short constructors
//! for the event bodies the screens are made of.

use herald_protocol::{
    AgentIteration, AgentPreparingResponse, Event, EventBody, ItemFinished, ItemStarted, Log,
    LogLevel, Progress, RunFinished, RunId, RunOutcome, RunStarted, RunState, StageFinished,
    StageStarted, StepOutcome, TextDelta, Timestamp, ToolFinished, ToolOutcome, ToolStarted,
};

/// `secs` seconds after a fixed moment.
pub(super) fn at(secs: f64) -> Timestamp {
    Timestamp::from_unix_micros(1_700_000_000_000_000).add_seconds(secs)
}

/// The event `seq` of `run` at `secs`.
pub(super) fn event(
    run: &str,
    parent: Option<&str>,
    seq: u64,
    secs: f64,
    body: EventBody,
) -> Event {
    Event {
        run: RunId::new(run).expect("test run ids are valid"),
        seq,
        ts: at(secs),
        id: None,
        parent: parent.map(|p| RunId::new(p).expect("test run ids are valid")),
        body,
    }
}

/// The state of `run` after `events`, each at its second.
pub(super) fn fold(run: &str, parent: Option<&str>, events: Vec<(f64, EventBody)>) -> RunState {
    let mut state = RunState::new(RunId::new(run).expect("test run ids are valid"));
    for (seq, (secs, body)) in (1..).zip(events) {
        state.apply(&event(run, parent, seq, secs, body));
    }
    state
}

pub(super) fn run_started(name: &str, total_steps: Option<u64>) -> EventBody {
    RunStarted {
        name: name.to_owned(),
        total_steps,
        meta: None,
        stages: None,
    }
    .into()
}

pub(super) fn run_finished(status: RunOutcome, error: Option<&str>) -> EventBody {
    RunFinished {
        status,
        result: None,
        error: error.map(str::to_owned),
    }
    .into()
}

pub(super) fn stage_started(stage: &str, total: Option<u64>) -> EventBody {
    StageStarted {
        stage: stage.to_owned(),
        total,
        unit: None,
        total_weight: None,
    }
    .into()
}

pub(super) fn stage_finished(
    stage: &str,
    status: StepOutcome,
    elapsed_s: f64,
    error: Option<&str>,
) -> EventBody {
    StageFinished {
        stage: stage.to_owned(),
        status,
        error: error.map(str::to_owned),
        elapsed_s,
    }
    .into()
}

/// A count of `stage`; set `rate` and `eta_s` with struct update syntax.
pub(super) fn progress(stage: &str, done: u64, total: Option<u64>, unit: Option<&str>) -> Progress {
    Progress {
        stage: Some(stage.to_owned()),
        call_id: None,
        done,
        total,
        unit: unit.map(str::to_owned),
        message: None,
        percent: None,
        rate: None,
        eta_s: None,
        elapsed_s: 0.0,
        done_weight: None,
        total_weight: None,
        eta_low_s: None,
        eta_high_s: None,
    }
}

pub(super) fn item_started(stage: &str, item: &str, label: Option<&str>) -> EventBody {
    ItemStarted {
        item: item.to_owned(),
        stage: Some(stage.to_owned()),
        label: label.map(str::to_owned),
    }
    .into()
}

pub(super) fn item_finished(
    stage: &str,
    item: &str,
    status: StepOutcome,
    error: Option<&str>,
) -> EventBody {
    ItemFinished {
        item: item.to_owned(),
        stage: Some(stage.to_owned()),
        status,
        error: error.map(str::to_owned),
        elapsed_s: None,
        weight: None,
    }
    .into()
}

pub(super) fn log(level: LogLevel, message: &str) -> EventBody {
    Log {
        level,
        message: message.to_owned(),
    }
    .into()
}

pub(super) fn iteration(iteration: u64) -> EventBody {
    AgentIteration { iteration }.into()
}

pub(super) fn text(text: &str) -> EventBody {
    TextDelta {
        text: text.to_owned(),
        call_id: None,
    }
    .into()
}

pub(super) fn tool_started(call_id: &str, tool: &str, feedback: Option<&str>) -> EventBody {
    ToolStarted {
        call_id: call_id.to_owned(),
        tool: tool.to_owned(),
        input: None,
        feedback: feedback.map(str::to_owned),
    }
    .into()
}

pub(super) fn tool_finished(
    call_id: &str,
    tool: &str,
    status: ToolOutcome,
    error: Option<&str>,
) -> EventBody {
    ToolFinished {
        call_id: call_id.to_owned(),
        tool: tool.to_owned(),
        status,
        output: None,
        error: error.map(str::to_owned),
        elapsed_s: None,
    }
    .into()
}

pub(super) fn preparing_response() -> EventBody {
    AgentPreparingResponse {}.into()
}
