//! `herald events RUN`: a run's events as JSON Lines on stdout, exactly as the hub
//! stores them, page after page; with `--follow`, on until the run finishes.
//!
//! `--follow` long-polls `GET /v1/runs/{id}/events?wait=` rather than reading the SSE
//! stream: following is then the same loop as paging, with the same `after` cursor, so
//! a dropped connection resumes exactly where the last printed event left off; each
//! request is bounded in time; and a plain blocking client needs no SSE parser. The
//! hub answers a long poll the moment an event exists, so nothing is lost in latency.

use std::io::{self, Write};
use std::time::Duration;

use crate::args::EventsArgs;
use crate::client::{Client, Poll};

/// Events asked for per request.
pub(crate) const PAGE: u32 = 500;
/// How long one long poll waits for a new event (the hub allows up to 60 s).
pub(crate) const LONG_POLL: Duration = Duration::from_secs(25);

pub(crate) fn run(args: &EventsArgs) -> anyhow::Result<u8> {
    let client = Client::new(&args.hub);
    let mut out = io::stdout().lock();
    let mut after = args.after;
    // Set once the hub said the run has finished: the events after the cursor are then
    // final, and one more pass without waiting takes the rest.
    let mut run_over = false;
    loop {
        let page = client.poll(
            &args.run,
            &Poll {
                after,
                limit: PAGE,
                types: args.types.as_deref(),
                wait: (args.follow && !run_over).then_some(LONG_POLL),
            },
        )?;
        let mut saw_finish = false;
        for event in &page.events {
            writeln!(out, "{}", event.to_json())?;
            after = event.seq;
            saw_finish |= event.event_type() == "run.finished";
        }
        out.flush()?;
        if page.events.len() as u32 >= PAGE {
            continue;
        }
        if !args.follow || saw_finish || run_over {
            return Ok(0);
        }
        run_over = page.status.is_terminal();
    }
}
