//! `herald demo`: a real multi-stage job — fetch, classify and summarize N documents,
//! then write a report with an agent loop — against the simulated model of `sim.rs`,
//! or with `--llm` a real model writing the report (`llm_agent.rs`).
//!
//! It reports through the SDK exactly as a user's program would, and uses every kind
//! of event a producer writes: stages, items (from several threads), progress,
//! heartbeats, logs, model calls with streamed tokens, tool calls with feedback, the
//! agent loop's iterations, and a custom event. The job's result goes to stdout (JSON
//! with `--json`); progress goes to stderr or where `--progress*` sends it.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use herald::protocol::ChatMessage;
use herald::protocol::RunId;
use herald::{
    HubOptions, LlmUsage, Progress, ProgressMode, ProgressOptions, Run, RunOptions, Stage,
};
use serde_json::{Value, json};

use crate::UsageError;
use crate::args::{DemoArgs, ProgressArgs, ProgressModeArg};
use crate::llm_agent::{self, LlmSettings};
use crate::serve::Embedded;
use crate::sim::Sim;

/// Documents fetched and classified at once.
const WORKERS: u64 = 4;
/// Documents summarized per model call.
pub(crate) const SUMMARY_BATCH: usize = 10;

/// The settings `herald demo` runs with, resolved from its arguments.
struct Settings {
    items: u64,
    speed: f64,
    fail_at: Option<u64>,
    json: bool,
    seed: u64,
}

/// Resolves the progress flags (already merged with their environment variables by
/// clap) into the SDK's options.
pub(crate) fn progress_options(args: &ProgressArgs) -> ProgressOptions {
    ProgressOptions {
        mode: match args.progress {
            None | Some(ProgressModeArg::Auto) => ProgressMode::Auto,
            Some(ProgressModeArg::Bars) => ProgressMode::Bars,
            Some(ProgressModeArg::Json) => ProgressMode::Json,
            Some(ProgressModeArg::None) => ProgressMode::None,
        },
        file: args.progress_file.clone(),
        fd: args.progress_fd,
        hub: None,
    }
}

/// A fresh run id for the demo: the time and random hex.
fn demo_run_id() -> RunId {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    RunId::new(format!("demo-{stamp}-{:08x}", rand::random::<u32>())).expect("the run id charset")
}

/// A document as it moves through the job.
pub(crate) struct Doc {
    pub(crate) id: u64,
    pub(crate) title: String,
    pub(crate) label: Option<&'static str>,
    pub(crate) error: Option<String>,
}

pub(crate) fn run(progress_args: &ProgressArgs, args: &DemoArgs) -> anyhow::Result<u8> {
    let settings = Settings {
        items: args.items,
        speed: args.speed,
        fail_at: args.fail_at,
        json: args.json,
        seed: args.seed,
    };
    if let Some(n) = settings.fail_at
        && n > settings.items
    {
        return Err(UsageError(format!(
            "--fail-at {n} is past the last document (--items {})",
            settings.items
        ))
        .into());
    }
    let llm = args
        .llm
        .map(|provider| LlmSettings::from_env(provider, args.model.as_deref()))
        .transpose()?;
    let embedded = if args.serve {
        Some(Embedded::start(args.data_dir.clone())?)
    } else {
        None
    };
    let mut options = progress_options(progress_args);
    let hub_url = embedded
        .as_ref()
        .map(|e| e.url.clone())
        .or_else(|| args.hub.clone());
    // Under `herald exec`, the job reports into the run exec made for it.
    let attach = std::env::var("HERALD_RUN")
        .ok()
        .filter(|_| embedded.is_none() && hub_url.is_some())
        .map(|r| RunId::new(r).map_err(|e| UsageError(format!("HERALD_RUN: {e}"))))
        .transpose()?;
    let run_id = attach.clone().unwrap_or_else(demo_run_id);
    if let Some(url) = &hub_url {
        let token = if embedded.is_some() {
            None
        } else {
            args.token.as_deref()
        };
        let mut hub = HubOptions::new(url, token);
        hub.attach = attach;
        options.hub = Some(hub);
        eprintln!("herald: run {run_id} reports to the hub at {url}");
        eprintln!("herald:   dashboard: {url}/runs/{run_id}");
        eprintln!("herald:   state:  {url}/v1/runs/{run_id}");
        eprintln!("herald:   AG-UI:  {url}/v1/runs/{run_id}/stream?format=ag-ui");
        eprintln!("herald:   follow: herald watch {run_id} --hub {url}");
    }
    let progress = Progress::from_options(&options).map_err(|e| UsageError(e.to_string()))?;
    // Stopped mid-way (Ctrl-C, `kill`, a closed terminal), the run still gets its last
    // word, `cancelled` and naming the signal, in its JSON Lines and on its hub. The
    // SDK then ends the process by that signal. After the run the guard is dropped, so
    // that `--serve` stops its hub gracefully on Ctrl-C.
    let signals = progress
        .finish_on_signals()
        .context("listening for signals")?;
    let started = Instant::now();
    let run = progress.run_with(
        &format!("demo: triage {} documents", settings.items),
        RunOptions {
            id: Some(run_id),
            total_steps: Some(4),
            meta: Some(
                json!({"items": settings.items, "speed": settings.speed, "seed": settings.seed})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
            ..RunOptions::default()
        },
    );
    let run_id = run.id().to_string();
    let _heartbeat = run.heartbeat_every(Duration::from_secs(2));
    run.system_message(
        "You triage business documents: label each one, summarize them, and report the risks.",
    );

    let mut docs = fetch(&run, &settings);
    classify(&run, &settings, &mut docs);
    let summaries = summarize(&run, &settings, &docs);
    let (report, llm_report) = match &llm {
        None => (write_report(&run, &settings, &docs, &summaries), None),
        Some(llm) => match write_llm_report(&run, llm, &settings, &docs, &summaries) {
            Ok(report) => (report.text.clone(), Some(report)),
            Err(e) => {
                run.fail(format!("{e:#}"));
                return Err(e);
            }
        },
    };

    let failed: Vec<Value> = docs
        .iter()
        .filter_map(|d| {
            d.error
                .as_ref()
                .map(|e| json!({"doc": d.title, "error": e}))
        })
        .collect();
    let mut labels: BTreeMap<&str, u64> = BTreeMap::new();
    for label in docs.iter().filter_map(|d| d.label) {
        *labels.entry(label).or_default() += 1;
    }
    let status = if failed.is_empty() {
        "succeeded"
    } else {
        "failed"
    };
    let mut result = json!({
        "run": run_id,
        "status": status,
        "documents": settings.items,
        "classified": labels,
        "failed": failed,
        "report": report,
        "elapsed_s": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    });
    if let Some(r) = &llm_report {
        result["llm"] = json!({"model": r.model, "turns": r.turns, "tool_calls": r.tool_calls});
    }
    if failed.is_empty() {
        run.finish_with(&result);
    } else {
        let first = docs
            .iter()
            .find_map(|d| d.error.as_ref().map(|e| format!("{}: {e}", d.title)));
        run.fail(format!(
            "{} of {} documents failed; first: {}",
            failed.len(),
            settings.items,
            first.unwrap_or_default()
        ));
    }
    let stats = progress.stats();
    drop(progress);
    drop(signals);
    if stats.hub_dropped_ticks + stats.hub_dropped_milestones > 0 {
        eprintln!(
            "herald: the hub missed {} ticks and {} milestones of this run (it was unreachable for too long)",
            stats.hub_dropped_ticks, stats.hub_dropped_milestones
        );
    }
    print_result(&result, settings.json)?;
    if let Some(embedded) = embedded
        && std::io::stdin().is_terminal()
    {
        eprintln!(
            "herald: the hub keeps serving at {}; Ctrl-C to stop",
            embedded.url
        );
        embedded.serve_until_interrupted()?;
    }
    Ok(if failed.is_empty() {
        0
    } else {
        crate::EXIT_FAILED
    })
}

/// Runs `work` for each document on `WORKERS` threads, each with its own simulated
/// model, reporting each document as an item of `stage`.
fn parallel<T: Send>(
    stage: &Stage,
    settings: &Settings,
    salt: u64,
    docs: &[u64],
    work: impl Fn(&mut Sim, u64, &herald::Item) -> Result<T, String> + Sync,
) -> Vec<(u64, Result<T, String>)> {
    let next = AtomicU64::new(0);
    let results = Mutex::new(Vec::with_capacity(docs.len()));
    std::thread::scope(|scope| {
        for worker in 0..WORKERS {
            let (next, results, work) = (&next, &results, &work);
            scope.spawn(move || {
                let mut sim = Sim::new(settings.seed ^ (salt << 8) ^ worker, settings.speed);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(&doc) = docs.get(i) else { break };
                    let item = stage.item_labeled(format!("doc-{doc:03}"), None);
                    let res = work(&mut sim, doc, &item);
                    match &res {
                        Ok(_) => item.finish(),
                        Err(e) => item.fail(e),
                    }
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((doc, res));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(doc, _)| *doc);
    results
}

fn fetch(run: &Run, settings: &Settings) -> Vec<Doc> {
    let stage = run.stage("fetch").total(settings.items).unit("docs");
    let ids: Vec<u64> = (1..=settings.items).collect();
    let retries = AtomicU64::new(0);
    let fetched = parallel(&stage, settings, 1, &ids, |sim, doc, _item| {
        sim.wait_fetch();
        if sim.chance(0.02) {
            retries.fetch_add(1, Ordering::Relaxed);
            run.warn(format!("doc-{doc:03}: server answered 503, retrying"));
            sim.wait_fetch();
        }
        Ok(sim.title(doc))
    });
    let mut cache = serde_json::Map::new();
    cache.insert("fetched".into(), json!(settings.items));
    cache.insert("retries".into(), json!(retries.load(Ordering::Relaxed)));
    if let Err(e) = run.custom("fetch_stats", cache) {
        run.warn(e.to_string());
    }
    run.info(format!(
        "fetched {} documents ({} retried)",
        settings.items,
        retries.load(Ordering::Relaxed)
    ));
    stage.finish();
    fetched
        .into_iter()
        .map(|(id, title)| Doc {
            id,
            title: title.unwrap_or_default(),
            label: None,
            error: None,
        })
        .collect()
}

fn classify(run: &Run, settings: &Settings, docs: &mut [Doc]) {
    let stage = run.stage("classify").total(docs.len()).unit("docs");
    let ids: Vec<u64> = docs.iter().map(|d| d.id).collect();
    let results = parallel(&stage, settings, 2, &ids, |sim, doc, _item| {
        let call = run.llm_call(Some("simulated"), Some("sim-small"));
        sim.wait_first_token();
        if settings.fail_at == Some(doc) {
            call.finish(LlmUsage {
                stop_reason: Some("end_turn".into()),
                input_tokens: Some(900),
                output_tokens: Some(7),
                ..LlmUsage::default()
            });
            return Err("the model answered `{\"label\": invoice` (malformed JSON)".to_owned());
        }
        let label = sim.label();
        call.finish(LlmUsage {
            stop_reason: Some("end_turn".into()),
            input_tokens: Some(850 + doc % 200),
            output_tokens: Some(5),
            ..LlmUsage::default()
        });
        Ok(label)
    });
    let mut failed = 0;
    for (doc, res) in results {
        let Some(d) = docs.iter_mut().find(|d| d.id == doc) else {
            continue;
        };
        match res {
            Ok(label) => d.label = Some(label),
            Err(e) => {
                failed += 1;
                d.error = Some(e);
            }
        }
    }
    if failed > 0 {
        stage.fail(format!("{failed} document(s) could not be classified"));
    } else {
        stage.finish();
    }
}

fn summarize(run: &Run, settings: &Settings, docs: &[Doc]) -> Vec<String> {
    let ready: Vec<&Doc> = docs.iter().filter(|d| d.error.is_none()).collect();
    let stage = run.stage("summarize").total(ready.len()).unit("docs");
    let mut sim = Sim::new(settings.seed ^ 3, settings.speed);
    let mut summaries = Vec::new();
    for batch in ready.chunks(SUMMARY_BATCH) {
        let items: Vec<_> = batch
            .iter()
            .map(|d| stage.item_labeled(format!("doc-{:03}", d.id), Some(&d.title)))
            .collect();
        let call = run.llm_call(Some("simulated"), Some("sim-large"));
        sim.wait_first_token();
        let first = batch.first().map_or(0, |d| d.id);
        let last = batch.last().map_or(0, |d| d.id);
        let text = format!("Docs {first}-{last}: {}.\n", sim.findings(2));
        stream(&call, &mut sim, &text);
        call.finish(LlmUsage {
            stop_reason: Some("end_turn".into()),
            input_tokens: Some(4_000),
            output_tokens: Some(32),
            ..LlmUsage::default()
        });
        for item in items {
            item.finish();
        }
        summaries.push(text.trim_end().to_owned());
    }
    stage.finish();
    summaries
}

fn write_report(run: &Run, settings: &Settings, docs: &[Doc], summaries: &[String]) -> String {
    let stage = run.stage("report");
    stage.inc(0);
    let mut sim = Sim::new(settings.seed ^ 4, settings.speed);

    run.iteration(1);
    run.history(vec![
        ChatMessage {
            role: "system".into(),
            content: json!("You triage business documents."),
        },
        ChatMessage {
            role: "user".into(),
            content: json!(format!(
                "Write a risk report from {} summaries.",
                summaries.len()
            )),
        },
    ]);
    let call = run.llm_call(Some("simulated"), Some("sim-large"));
    sim.wait_first_token();
    call.finish(LlmUsage {
        stop_reason: Some("tool_use".into()),
        input_tokens: Some(6_000),
        output_tokens: Some(40),
        ..LlmUsage::default()
    });

    let query = json!({"query": "risks OR late OR unclear", "limit": 20});
    let selected = run.tool_selected("search_summaries", Some(query.clone()));
    let search = run.tool_with_id(
        &selected,
        "search_summaries",
        Some(query),
        Some("Searching the summaries for risks"),
    );
    // Building the search index is slow and says nothing else: a heartbeat with a note
    // tells watchers what it is doing, and the heartbeat guard repeats it while silent.
    run.heartbeat(Some("building the search index"));
    sim.sleep(2.5);
    let hits = summaries
        .iter()
        .filter(|s| s.contains("risks") || s.contains("late"))
        .count();
    search.finish(Some(json!({"hits": hits})));

    let counts = run.tool(
        "count_labels",
        Some(json!({"field": "label"})),
        Some("Counting documents per label"),
    );
    sim.sleep(0.2);
    let labelled = docs.iter().filter(|d| d.label.is_some()).count();
    counts.finish(Some(json!({"labelled": labelled})));

    run.iteration(2);
    run.preparing_response();
    let call = run.llm_call(Some("simulated"), Some("sim-large"));
    sim.wait_first_token();
    let report = format!(
        "{labelled} documents labelled; {hits} summaries mention risks. Most urgent: {}.",
        sim.findings(3)
    );
    stream(&call, &mut sim, &report);
    call.finish(LlmUsage {
        stop_reason: Some("end_turn".into()),
        input_tokens: Some(6_500),
        output_tokens: Some(48),
        ..LlmUsage::default()
    });
    run.response(&report, Some(2));
    stage.inc(1);
    stage.finish();
    report
}

/// The `report` stage with a real model (`--llm`): the agent loop of `llm_agent.rs`.
fn write_llm_report(
    run: &Run,
    llm: &LlmSettings,
    settings: &Settings,
    docs: &[Doc],
    summaries: &[String],
) -> anyhow::Result<llm_agent::Report> {
    let stage = run.stage("report");
    stage.inc(0);
    let report = llm_agent::write_report(run, llm, settings.speed, docs, summaries);
    match &report {
        Ok(_) => {
            stage.inc(1);
            stage.finish();
        }
        Err(e) => stage.fail(format!("{e:#}")),
    }
    report
}

/// Streams `text` word by word as the model's tokens, at the model's pace.
fn stream(call: &herald::LlmCall, sim: &mut Sim, text: &str) {
    for token in text.split_inclusive(' ') {
        sim.wait_token();
        call.text(token);
    }
}

fn print_result(result: &Value, as_json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if as_json {
        serde_json::to_writer(&mut out, result).context("writing the result")?;
        writeln!(out).context("writing the result")?;
        return Ok(());
    }
    let failed = result["failed"].as_array().map_or(0, Vec::len);
    writeln!(
        out,
        "run {}: {} — {} documents in {:.1}s, {} failed",
        result["run"].as_str().unwrap_or_default(),
        result["status"].as_str().unwrap_or_default(),
        result["documents"],
        result["elapsed_s"].as_f64().unwrap_or_default(),
        failed,
    )?;
    if let Some(labels) = result["classified"].as_object() {
        let line: Vec<String> = labels.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(out, "labels: {}", line.join(" · "))?;
    }
    for f in result["failed"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "failed: {}: {}",
            f["doc"].as_str().unwrap_or_default(),
            f["error"].as_str().unwrap_or_default()
        )?;
    }
    writeln!(
        out,
        "report: {}",
        result["report"].as_str().unwrap_or_default()
    )?;
    Ok(())
}
