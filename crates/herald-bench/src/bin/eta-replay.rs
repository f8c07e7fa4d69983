//! `eta-replay`: ETA quality of herald and its peers, as Markdown tables.
//!
//! - `eta-replay`: scores the real suite (`traces/real/`, recorded from real commands)
//!   and the synthetic suite, apart.
//! - `eta-replay FILE.jsonl...`: scores recorded traces (one `{"t": seconds since the
//!   start, "done": n, "total": N}` per completion, and `"weight"`, `"total_weight"`
//!   for weighted work).
//! - `eta-replay --seeds N`: herald's standing on the synthetic suite drawn with seeds
//!   0 to N-1, to check that the suite's verdict is not an accident of one draw.
//!
//! Exit codes: 0 on success (a closed stdout included), 1 when a file cannot be read or
//! parsed, 2 on a usage error.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use herald_bench::eta::{
    TraceReport, read_trace, real_suite, render, render_seeds, score_peers, synthetic_suite,
};

const USAGE: &str = "usage: eta-replay [FILE.jsonl... | --seeds N]";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            if err
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("eta-replay: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["-h" | "--help"] => format!("{USAGE}\n"),
        ["--seeds", n] => match n.parse::<u64>() {
            Ok(n) if n > 0 => render_seeds(n),
            _ => {
                eprintln!("eta-replay: --seeds takes a positive count, not `{n}`\n{USAGE}");
                return Ok(ExitCode::from(2));
            }
        },
        _ if args.iter().any(|a| a.starts_with('-')) => {
            eprintln!("eta-replay: unknown option\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
        [] => {
            let real = score(real_suite()?);
            let weighted: Vec<_> = real_suite()?
                .iter()
                .filter(|t| t.is_weighted())
                .map(|t| score_peers(&t.unweighted()))
                .collect();
            format!(
                "## Real suite\n\n{}\n### The weighted real traces counted in units (weights ignored)\n\n{}\n## Synthetic suite\n\n{}",
                render(&real),
                render(&weighted),
                render(&score(synthetic_suite())),
            )
        }
        _ => render(&score(
            args.iter()
                .map(|p| read_trace(Path::new(p)))
                .collect::<anyhow::Result<_>>()?,
        )),
    };
    let mut stdout = io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn score(traces: Vec<herald_bench::eta::Trace>) -> Vec<TraceReport> {
    traces.iter().map(score_peers).collect()
}
