//! Live bars as a person sees them: a three-stage job over 100 documents, one of which
//! fails, with a sub-agent that calls a tool and streams its answer in the last stage.
//!
//! ```text
//! cargo run -p herald --example bars
//! HERALD_PROGRESS=json cargo run -p herald --example bars   # the same as JSON Lines
//! ```

use std::thread::sleep;
use std::time::Duration;

use herald::{LlmUsage, Progress, RunOptions};

fn main() -> Result<(), herald::ConfigError> {
    let progress = Progress::from_env()?;
    let options = RunOptions {
        total_steps: Some(3),
        ..RunOptions::default()
    };
    let run = progress.run_with("analysis", options);
    let docs: Vec<String> = (1..=100).map(|n| format!("report-{n:03}.pdf")).collect();

    let fetch = run.stage("fetch").total(docs.len()).unit("docs");
    for _ in fetch.iter_labeled(&docs, |doc| Some(doc.to_string())) {
        sleep(ms(15));
    }
    fetch.finish();

    let classify = run.stage("classify").total(docs.len()).unit("docs");
    for (n, doc) in (1..).zip(&docs) {
        let item = classify.item_labeled(n.to_string(), Some(doc));
        // Uneven latencies, as a model's are.
        sleep(ms(20 + (n * 37 % 11) * 6));
        if n == 42 {
            item.fail("the model returned no label");
        } else {
            item.finish();
        }
    }
    classify.finish();
    run.warn("3 documents were empty and got the label `other`");

    let summarize = run.stage("summarize").total(3).unit("sections");
    let agent = run.child("summarizer");
    for (turn, section) in (1..).zip(["findings", "risks", "next steps"]) {
        let item = summarize.item_labeled(section, Some(&format!("section: {section}")));
        agent.iteration(turn);
        let feedback = format!("Searching the docs for {section}");
        let tool = agent.tool("search_docs", None, Some(&feedback));
        sleep(ms(900));
        tool.finish(None);
        let call = agent.llm_call(Some("simulated"), Some("sim-large"));
        for word in
            "The reports agree on the main points, with a few exceptions noted below.".split(' ')
        {
            call.text(format!("{word} "));
            sleep(ms(60));
        }
        call.finish(LlmUsage::default());
        item.finish();
    }
    agent.preparing_response();
    sleep(ms(800));
    agent.response("Three sections written.", Some(3));
    agent.finish();
    summarize.finish();

    run.finish_with(&serde_json::json!({"documents": docs.len(), "failed": 1}));
    Ok(())
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
