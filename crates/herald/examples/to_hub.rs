//! Reports a small job to a herald hub, as any program would, and stops early when
//! someone cancels the run through the hub (`herald cancel RUN`).
//!
//! ```sh
//! herald serve --addr 127.0.0.1:7311 &
//! HERALD_URL=http://127.0.0.1:7311 cargo run -p herald --example to_hub
//! ```

use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(hub) = herald::HubOptions::from_env() else {
        return Err("set HERALD_URL to the hub's address".into());
    };
    let progress = herald::Progress::new([herald::Target::hub(hub), herald::Target::stderr_bars()]);
    let run = progress.run("to-hub example");
    let stage = run.stage("count").unit("steps");
    let cancellation = run.cancellation();
    for step in stage.try_iter(0..20) {
        // Cancelling is advisory: the program stops where it is safe to, here between
        // steps, waiting for the next one at most 50 ms.
        if cancellation.wait_timeout(Duration::from_millis(50)) {
            // Everything started is finished before the run, or it would be left open.
            step.skip();
            stage.skip();
            run.cancelled(Some("asked to stop"));
            return Ok(());
        }
    }
    stage.finish();
    println!("run {}", run.id());
    run.finish();
    let stats = progress.stats();
    eprintln!(
        "dropped: {} ticks, {} milestones",
        stats.hub_dropped_ticks, stats.hub_dropped_milestones
    );
    Ok(())
}
