//! `herald ls`: the runs on a hub, newest first, as a table, or as the hub's JSON with
//! `--json`.

use std::io::{self, Write};

use herald::escape_controls;
use herald_protocol::RunState;
use herald_protocol::api::RunsPage;

use crate::args::{LsArgs, RunStatusArg};
use crate::client::{Client, HubError, HubErrorKind, ListQuery};
use crate::commands::show;

/// Widest name shown in the table; longer ones are cut.
const NAME_WIDTH: usize = 32;

pub(crate) fn run(args: &LsArgs) -> anyhow::Result<u8> {
    let client = Client::new(&args.hub);
    let body = client.list(&ListQuery {
        status: args.status.map(status_str),
        parent: args.parent.as_ref(),
        limit: args.limit,
    })?;
    let mut out = io::stdout().lock();
    if args.json {
        writeln!(out, "{}", body.trim_end())?;
        return Ok(0);
    }
    let listing: RunsPage = serde_json::from_str(&body).map_err(|e| {
        HubError::new(
            client.url(),
            HubErrorKind::BadReply(format!("the list of runs: {e}")),
        )
    })?;
    out.write_all(table(&listing.runs, show::now()).as_bytes())?;
    Ok(0)
}

fn status_str(status: RunStatusArg) -> &'static str {
    match status {
        RunStatusArg::Running => "running",
        RunStatusArg::Stalled => "stalled",
        RunStatusArg::Succeeded => "succeeded",
        RunStatusArg::Failed => "failed",
        RunStatusArg::Cancelled => "cancelled",
    }
}

/// The table of `runs` (as the hub sent them, seen at its `now`), aligned in columns.
/// Names are the producers' text: shown with their controls escaped, so that a name
/// cannot rewrite the user's terminal (`--json` keeps them exact).
fn table(runs: &[RunState], now: herald_protocol::Timestamp) -> String {
    let header = ["ID", "NAME", "STATUS", "PROGRESS", "ELAPSED", "LAST EVENT"].map(str::to_owned);
    let rows: Vec<[String; 6]> = runs
        .iter()
        .map(|run| {
            [
                run.id.to_string(),
                show::cut(&escape_controls(show::name(run)), NAME_WIDTH),
                run.status.as_str().to_owned(),
                run.percent.map_or("-".to_owned(), show::percent),
                show::duration(run.elapsed_s),
                show::age(run.last_event_at, now),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = width - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use herald_protocol::{RunId, Timestamp, parse_event};

    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let started = parse_event(
            r#"{"v":1,"event":"run.started","run":"r-1","seq":1,"ts":"2026-01-01T00:00:00Z","name":"nightly import"}"#,
        )
        .unwrap();
        let progress = parse_event(
            r#"{"v":1,"event":"progress","run":"r-1","seq":2,"ts":"2026-01-01T00:00:05Z","done":1,"total":4,"elapsed_s":5}"#,
        )
        .unwrap();
        let a = herald_protocol::fold(RunId::new("r-1").unwrap(), [&started, &progress]);
        let b = RunState::new(RunId::new("run-two").unwrap());
        let text = table(&[a.at(t0.add_seconds(65.0)), b], t0.add_seconds(65.0));
        assert_eq!(
            text,
            "ID       NAME            STATUS   PROGRESS  ELAPSED  LAST EVENT\n\
             r-1      nightly import  running  25%       1m05s    1m00s ago\n\
             run-two  run-two         running  -         0.0s     -\n"
        );
    }
}
