//! The `herald` binary: parses arguments and hands them to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = herald_cli::args::Cli::parse();
    herald_cli::main(cli)
}
