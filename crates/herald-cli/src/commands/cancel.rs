//! `herald cancel RUN` and `herald rm RUN...`: ask a run to stop, or delete runs.
//!
//! Each prints the id of the run it acted on, one a line, as `docker stop` and
//! `docker rm` do, so that a script can tell what was done.

use std::io::{self, Write};

use crate::args::{CancelArgs, RmArgs};
use crate::client::Client;

pub(crate) fn cancel(args: &CancelArgs) -> anyhow::Result<u8> {
    let client = Client::new(&args.hub);
    client.cancel(&args.run, args.reason.as_deref())?;
    writeln!(io::stdout().lock(), "{}", args.run)?;
    Ok(0)
}

/// Deletes every run named, going on past one that fails, and fails if any did.
pub(crate) fn rm(args: &RmArgs) -> anyhow::Result<u8> {
    let client = Client::new(&args.hub);
    let mut failed = 0;
    for run in &args.runs {
        match client.delete(run) {
            Ok(()) => writeln!(io::stdout().lock(), "{run}")?,
            Err(e) if args.runs.len() > 1 => {
                eprintln!("herald: {e}");
                failed += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} runs not deleted", args.runs.len());
    }
    Ok(0)
}
