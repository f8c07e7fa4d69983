//! `eta-replay`: ETA quality of herald and its peers, as Markdown tables.
//!
//! - `eta-replay`: scores the synthetic suite.
//! - `eta-replay FILE.jsonl...`: scores recorded traces (one `{"t": seconds since the
//!   start, "done": n, "total": N}` per completion).
//! - `eta-replay --seeds N`: herald's standing on the synthetic suite drawn with seeds
//!   0 to N-1, to check that the suite's verdict is not an accident of one draw.
//!
//! Exit codes: 0 on success (a closed stdout included), 1 when a file cannot be read or
//! parsed, 2 on a usage error.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use herald_bench::eta::{Trace, TraceReport, render, render_seeds, score_peers, synthetic_suite};

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
        _ => render(&score_all(&args)?),
    };
    let mut stdout = io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The synthetic suite with no paths, else the traces in `paths`, scored.
fn score_all(paths: &[String]) -> anyhow::Result<Vec<TraceReport>> {
    let traces = if paths.is_empty() {
        synthetic_suite()
    } else {
        paths
            .iter()
            .map(|p| read_trace(Path::new(p)))
            .collect::<anyhow::Result<_>>()?
    };
    Ok(traces.iter().map(score_peers).collect())
}

fn read_trace(path: &Path) -> anyhow::Result<Trace> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    Trace::from_jsonl(name, &text).with_context(|| format!("{}", path.display()))
}
