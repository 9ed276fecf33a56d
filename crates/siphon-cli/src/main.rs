//! The `siphon` binary: parses the command line and wires connectors, the state
//! store and the engine together.

mod commands;
mod config;
mod connect;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use siphon_core::ErrorKind;

/// Keeps tables in a target database in step with a source database.
#[derive(Debug, Parser)]
#[command(name = "siphon", version, about, propagate_version = true)]
struct Cli {
    /// State store URL [default: sqlite://.siphon/state.db, or the config file's `state`].
    #[arg(long, global = true, env = "SIPHON_STATE")]
    state: Option<String>,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Embedded demo: builds a SQLite source, syncs it fully, changes it, syncs incrementally, verifies.
    Quickstart {
        /// Folder for the demo's files (emptied first).
        #[arg(long, default_value = "siphon-quickstart")]
        dir: PathBuf,
        /// Rows in the demo's orders table.
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
    },
    /// Runs pipelines: once (`--once`), or on their schedules until stopped (Ctrl-C stops gracefully).
    Run {
        /// Config file to apply first.
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Pipelines to run [default: all].
        pipelines: Vec<String>,
        /// One pass and exit: full tables copied, incremental tables polled until no new rows.
        #[arg(long)]
        once: bool,
    },
    /// Loads a config file's connections and pipelines into the state store.
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Named database endpoints.
    #[command(subcommand)]
    Connection(commands::catalog::ConnectionCommand),
    /// Pipelines ("syncs") and their tables.
    #[command(subcommand)]
    Sync(commands::catalog::SyncCommand),
}

fn init_logs(verbose: u8, default: &str) {
    let level = match verbose {
        0 => default,
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = matches!(cli.command, Command::Quickstart { .. });
    init_logs(cli.verbose, if quiet { "warn" } else { "info" });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            if e.kind() == ErrorKind::Config {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn dispatch(cli: Cli) -> siphon_core::Result<ExitCode> {
    let state_flag = cli.state;
    match cli.command {
        Command::Quickstart { dir, rows } => commands::quickstart::run(&dir, rows).await,
        Command::Apply { file } => {
            let file = config::ConfigFile::load(&file)?;
            let state = commands::open_state(state_flag.as_deref(), file.state.as_deref()).await?;
            commands::run::apply(&state, &file).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            file,
            pipelines,
            once,
        } => {
            let file = file.map(|f| config::ConfigFile::load(&f)).transpose()?;
            let state = commands::open_state(
                state_flag.as_deref(),
                file.as_ref().and_then(|f| f.state.as_deref()),
            )
            .await?;
            if let Some(f) = &file {
                commands::run::apply(&state, f).await?;
            }
            commands::run::run(std::sync::Arc::new(state), &pipelines, once).await
        }
        Command::Connection(c) => {
            let state = commands::open_state(state_flag.as_deref(), None).await?;
            commands::catalog::connection(&state, c).await
        }
        Command::Sync(c) => {
            let state = commands::open_state(state_flag.as_deref(), None).await?;
            commands::catalog::sync(&state, c).await
        }
    }
}
