//! Reports a small job to a herald hub, as any program would.
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
    let stage = run.stage("count").total(20).unit("steps");
    for _ in stage.iter(0..20) {
        std::thread::sleep(Duration::from_millis(50));
        if run.cancel_requested() {
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
