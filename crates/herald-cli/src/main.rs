//! The `herald` binary: parses arguments and hands them to the library.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc, not glibc's malloc: a hub's memory for 10,000 closed streams goes back to
/// the system within seconds, where glibc keeps almost all of it (ARCHITECTURE.md,
/// "Allocator").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = herald_cli::args::Cli::parse();
    herald_cli::main(cli)
}
