//! `herald emit`: one event from a shell script into a run.
//!
//! The event is written the way a shell makes easy: its type, then `KEY=VALUE` fields
//! (`herald emit progress stage=fetch done=3 total=10`), as httpie takes a request
//! body. A value is text, unless the event needs a number or a boolean there: then
//! `done=3` is the number 3. `KEY:=JSON` gives any JSON (`meta:='{"a":1}'`,
//! `canary:=true` in a custom event, whose fields have no declared type). A whole event
//! may be given as a JSON object instead, or many as JSON Lines on stdin (`-`).
//!
//! Every event is checked with the protocol crate before anything is sent, so a
//! mistake is named (field and all) with exit code 2 without a hub. The one field a
//! shell cannot easily know, `elapsed_s`, is filled in from the run when it is needed
//! and not given.

use std::io::{self, Read};
use std::time::Duration;

use herald_protocol::{Draft, ErrorCode, EventBody, EventError, RunId, RunState, parse_draft_str};
use serde_json::{Map, Value};

use crate::UsageError;
use crate::args::EmitArgs;
use crate::client::Client;
use crate::commands::show;

/// Event types whose `elapsed_s` is required; `emit` fills it in when absent.
const NEEDS_ELAPSED: [&str; 3] = ["progress", "heartbeat", "stage.finished"];

/// An event ready to send, and whether its `elapsed_s` still has to be filled in.
#[derive(Debug)]
struct Prepared {
    draft: Draft,
    fill_elapsed: bool,
}

/// How long `emit` waits in all for a hub that answers 429 (or 503, for events that
/// all have an `--id`).
const EMIT_PATIENCE: Duration = Duration::from_secs(30);

pub(crate) fn run(args: &EmitArgs) -> anyhow::Result<u8> {
    let run = args.run.clone().ok_or_else(|| {
        UsageError(
            "no run to report into: pass --run RUN or set HERALD_RUN (`herald exec` sets it for its command)"
                .into(),
        )
    })?;
    let mut prepared = prepare(args, &run, &mut io::stdin().lock())?;
    let client = Client::new(&args.hub);
    if prepared.iter().any(|p| p.fill_elapsed) {
        let state = client.state(&run)?;
        for p in &mut prepared {
            if p.fill_elapsed {
                fill_elapsed(&mut p.draft, &state);
            }
        }
    }
    let drafts: Vec<Draft> = prepared.into_iter().map(|p| p.draft).collect();
    // A hub limiting the run's rate (or without its database for a moment, when the
    // events have ids) says how long to wait; a script's emit waits rather than fails,
    // within reason.
    let reply = client.append_waiting(&run, &drafts, EMIT_PATIENCE)?;
    if reply.cancel_requested {
        // Advisory, as everywhere: the script decides whether to stop.
        eprintln!("herald: run {run}: cancel requested");
    }
    Ok(0)
}

/// The events the arguments describe, checked; `stdin` is read for `-`.
fn prepare(
    args: &EmitArgs,
    run: &RunId,
    stdin: &mut dyn Read,
) -> Result<Vec<Prepared>, UsageError> {
    let event = args.event.as_str();
    if event == "-" {
        if !args.fields.is_empty() || args.id.is_some() {
            return Err(UsageError(
                "with `-` the events come whole from stdin: give no FIELD or --id".into(),
            ));
        }
        let mut text = String::new();
        stdin
            .read_to_string(&mut text)
            .map_err(|e| UsageError(format!("cannot read events from stdin: {e}")))?;
        let mut events = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let map = object(line).map_err(|e| UsageError(format!("stdin line {}: {e}", i + 1)))?;
            events.push(
                check(map, run).map_err(|e| UsageError(format!("stdin line {}: {e}", i + 1)))?,
            );
        }
        if events.is_empty() {
            return Err(UsageError("no events on stdin".into()));
        }
        return Ok(events);
    }
    let mut map = if event.trim_start().starts_with('{') {
        if !args.fields.is_empty() {
            return Err(UsageError(
                "a whole event in JSON takes no FIELD arguments: put the fields in the JSON".into(),
            ));
        }
        object(event).map_err(UsageError)?
    } else {
        return typed(event, &args.fields, args.id.as_deref(), run).map(|p| vec![p]);
    };
    if let Some(id) = &args.id {
        if map.contains_key("id") {
            return Err(UsageError(
                "the event has an `id` already: give it there or with --id, not both".into(),
            ));
        }
        map.insert("id".into(), Value::String(id.clone()));
    }
    check(map, run).map(|p| vec![p]).map_err(UsageError)
}

/// A JSON object from its text.
fn object(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("an event must be a JSON object".into()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

/// Checks one event given as a JSON object.
fn check(mut map: Map<String, Value>, run: &RunId) -> Result<Prepared, String> {
    let fill_elapsed = placeholder_elapsed(&mut map);
    let text = Value::Object(map).to_string();
    let draft = parse_draft_str(&text, run).map_err(|e| describe(&e))?;
    Ok(Prepared {
        draft: stamped(draft),
        fill_elapsed,
    })
}

/// One value as typed: `KEY=VALUE` (text, or what the event needs) or `KEY:=JSON`.
struct Field {
    key: String,
    value: Value,
    /// Typed as text, and may still become the JSON it spells (`3`, `true`).
    text: bool,
}

fn parse_field(arg: &str) -> Result<Field, UsageError> {
    let Some((key, value)) = arg.split_once('=') else {
        return Err(UsageError(format!(
            "`{arg}` is not a field: write KEY=VALUE (or KEY:=JSON)"
        )));
    };
    let (key, json) = match key.strip_suffix(':') {
        Some(key) => (key, true),
        None => (key, false),
    };
    if key.is_empty() {
        return Err(UsageError(format!("`{arg}` names no field before `=`")));
    }
    if key == "event" {
        return Err(UsageError(
            "the event's type is the first argument, not a field".into(),
        ));
    }
    let value = if json {
        serde_json::from_str(value).map_err(|e| {
            UsageError(format!(
                "field `{key}`: `{value}` is not JSON ({e}); for text write {key}={value}"
            ))
        })?
    } else {
        Value::String(value.to_owned())
    };
    Ok(Field {
        key: key.to_owned(),
        value,
        text: !json,
    })
}

/// Builds and checks an event from its type and `KEY=VALUE` fields.
fn typed(
    event: &str,
    fields: &[String],
    id: Option<&str>,
    run: &RunId,
) -> Result<Prepared, UsageError> {
    let mut given: Vec<Field> = Vec::new();
    for arg in fields {
        let field = parse_field(arg)?;
        if given.iter().any(|f| f.key == field.key) {
            return Err(UsageError(format!("field `{}` is given twice", field.key)));
        }
        given.push(field);
    }
    if let Some(id) = id {
        if given.iter().any(|f| f.key == "id") {
            return Err(UsageError(
                "give the idempotency key as --id or as id=KEY, not both".into(),
            ));
        }
        given.push(Field {
            key: "id".into(),
            value: Value::String(id.to_owned()),
            text: false,
        });
    }
    // Each round either accepts the event or turns one field typed as text into the
    // number or boolean it spells, where the protocol says that field needs one; so
    // there are at most as many rounds as fields.
    loop {
        let mut map = Map::new();
        map.insert("event".into(), Value::String(event.to_owned()));
        for f in &given {
            map.insert(f.key.clone(), f.value.clone());
        }
        let fill_elapsed = placeholder_elapsed(&mut map);
        let text = Value::Object(map).to_string();
        let err = match parse_draft_str(&text, run) {
            Ok(draft) => {
                return Ok(Prepared {
                    draft: stamped(draft),
                    fill_elapsed,
                });
            }
            Err(err) => err,
        };
        let retyped = (err.code == ErrorCode::InvalidField)
            .then_some(err.field.as_deref())
            .flatten()
            .and_then(|name| given.iter_mut().find(|f| f.text && f.key == name))
            .and_then(|f| {
                let Value::String(s) = &f.value else {
                    return None;
                };
                let value = serde_json::from_str::<Value>(s)
                    .ok()
                    .filter(|v| !v.is_string())?;
                f.value = value;
                f.text = false;
                Some(())
            });
        if retyped.is_none() {
            let mut message = describe(&err);
            if err.code == ErrorCode::UnknownEvent {
                message.push_str(
                    " (the types are those of the protocol, docs/protocol.md, such as log, progress, stage.started, or custom.NAME)",
                );
            } else if err.code == ErrorCode::InvalidField {
                message.push_str(" (KEY=VALUE gives text or a number; KEY:=JSON gives any JSON)");
            }
            return Err(UsageError(message));
        }
    }
}

/// The protocol's error, said as a bad event.
fn describe(err: &EventError) -> String {
    format!("bad event: {err}")
}

/// Puts a placeholder `elapsed_s` into an event that needs one and has none, so that
/// the rest of it can be checked before the run is asked for the real value.
fn placeholder_elapsed(map: &mut Map<String, Value>) -> bool {
    let needs = map
        .get("event")
        .and_then(Value::as_str)
        .is_some_and(|t| NEEDS_ELAPSED.contains(&t));
    if needs && !map.contains_key("elapsed_s") {
        map.insert("elapsed_s".into(), Value::from(0.0));
        return true;
    }
    false
}

/// The event with the producer's time, now, unless it gave one.
fn stamped(draft: Draft) -> Draft {
    Draft {
        ts: Some(draft.ts.unwrap_or_else(show::now)),
        ..draft
    }
}

/// Sets `elapsed_s` from the run's state: the stage's time for a stage's event, the
/// tool call's for a tool's progress, the run's otherwise.
fn fill_elapsed(draft: &mut Draft, state: &RunState) {
    // A call's time is the run's less how long after the run's start the call began.
    let call_elapsed = |call_id: &str| {
        let call = state.tools.in_flight.iter().find(|t| t.call_id == call_id);
        call.map_or(state.elapsed_s, |call| {
            let began = state
                .started_at
                .map_or(0.0, |start| call.started_at.seconds_since(start));
            (state.elapsed_s - began).max(0.0)
        })
    };
    let stage_elapsed = |name: &str| {
        state
            .stages
            .iter()
            .find(|s| s.name == name)
            .map_or(state.elapsed_s, |s| s.elapsed_s)
    };
    match &mut draft.body {
        EventBody::Progress(p) => {
            p.elapsed_s = match (&p.call_id, &p.stage) {
                (Some(call_id), _) => call_elapsed(call_id),
                (None, stage) => stage.as_deref().map_or(state.elapsed_s, stage_elapsed),
            };
        }
        EventBody::StageFinished(s) => s.elapsed_s = stage_elapsed(&s.stage),
        EventBody::Heartbeat(h) => h.elapsed_s = state.elapsed_s,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::HubArgs;

    fn args(event: &str, fields: &[&str]) -> EmitArgs {
        EmitArgs {
            event: event.into(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            run: None,
            id: None,
            hub: HubArgs {
                url: "http://127.0.0.1:1".into(),
                token: None,
            },
        }
    }

    /// Prepares the event and returns it without `ts` as JSON, or the error's message.
    #[track_caller]
    fn check(event: &str, fields: &[&str], expected: Result<&str, &str>) {
        let run = RunId::new("r1").unwrap();
        let got = prepare(&args(event, fields), &run, &mut io::empty()).map(|p| {
            let mut value = serde_json::to_value(&p[0].draft).unwrap();
            value.as_object_mut().unwrap().shift_remove("ts");
            value.to_string()
        });
        match (got, expected) {
            (Ok(got), Ok(expected)) => assert_eq!(got, expected),
            (Err(got), Err(expected)) => assert!(
                got.0.contains(expected),
                "`{}` does not say `{expected}`",
                got.0
            ),
            (got, expected) => panic!("got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn fields_take_the_type_the_event_needs() {
        check(
            "log",
            &["level=info", "message=42"],
            Ok(r#"{"event":"log","level":"info","message":"42"}"#),
        );
        check(
            "progress",
            &["stage=fetch", "done=3", "total=10"],
            Ok(r#"{"event":"progress","stage":"fetch","done":3,"total":10,"elapsed_s":0.0}"#),
        );
        check(
            "custom.deploy",
            &["version=1.4", "canary:=true", "hosts:=[\"a\"]"],
            Ok(r#"{"event":"custom.deploy","version":"1.4","canary":true,"hosts":["a"]}"#),
        );
        check(
            r#"{"event":"heartbeat","note":"still here"}"#,
            &[],
            Ok(r#"{"event":"heartbeat","elapsed_s":0.0,"note":"still here"}"#),
        );
    }

    #[test]
    fn mistakes_are_named() {
        check("progress", &["done=many"], Err("`done`"));
        check("log", &["level=info"], Err("`message`"));
        check("log", &["level=loud", "message=x"], Err("`level`"));
        check("deploy", &[], Err("unknown event type `deploy`"));
        check("log", &["level"], Err("`level` is not a field"));
        check("log", &["=x"], Err("names no field"));
        check("log", &["a=1", "a=2"], Err("given twice"));
        check("log", &["meta:={"], Err("is not JSON"));
        check("{not json", &[], Err("not valid JSON"));
        check("[1]", &[], Err("unknown event type `[1]`"));
        check(r#"{"event":"log"}"#, &["level=info"], Err("no FIELD"));
    }
}
