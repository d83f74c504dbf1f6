//! The `snapshotter` binary: `snapshotter run --config FILE`, the snapshot daemon in the
//! foreground (`docs/snapshotter.md`).
//!
//! Exit codes as `authorizer run`: 0 after a clean stop (SIGTERM/SIGINT, a last snapshot
//! written), 2 on a configuration error (one line per problem, each naming its key), 1 on any
//! other failure (one line naming the thing and what to do). Must never: print a secret or a
//! record's content.

#![forbid(unsafe_code)]

mod daemon;
mod metrics;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use authorizer::config::SnapshotterConfig;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "snapshotter",
    version,
    about = "Follows the authorizer's log with the same ledger and writes snapshots of the state"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground until SIGTERM or SIGINT.
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// The configuration file (the authorizer's format; `[network]`, `[hsm]` and `[pan_key]`
    /// are not read).
    #[arg(long)]
    config: PathBuf,
}

fn main() -> ExitCode {
    let Command::Run(args) = Cli::parse().command;
    let config = match SnapshotterConfig::load(&args.config) {
        Ok(config) => config,
        Err(errors) => {
            let mut err = std::io::stderr().lock();
            for p in &errors.problems {
                let _ = writeln!(err, "snapshotter: {p}");
            }
            return ExitCode::from(2);
        }
    };
    authorizer::daemon::logging::init(config.log_format, &config.instance_id);
    match daemon::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("snapshotter: {message}");
            ExitCode::from(1)
        }
    }
}
