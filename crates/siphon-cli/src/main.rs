//! The `siphon` binary: parses the command line and wires connectors, the state
//! store and the engine together.

mod commands;
mod config;
mod connect;
mod logfile;
mod logs;
mod pidfile;
mod progress;
mod prompt;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use siphon_core::{Error, ErrorKind, StateStore};

/// siphon keeps tables in a target database in step with a source database: full
/// loads, incremental polling by a cursor column, and log-based change data capture.
///
/// Full loads are chunked by key and resume after a crash; incremental runs read
/// the rows whose cursor moved; `row_count` copies a table again when its row count
/// changes; `cdc` follows PostgreSQL's logical replication or the MySQL/MariaDB binlog.
/// Connections and pipelines are written in a config file (`./siphon.yaml` is used
/// when present) or added with `siphon connection` and `siphon sync`; `siphon run`
/// runs them. Start with `siphon quickstart`.
#[derive(Debug, Parser)]
#[command(name = "siphon", version, propagate_version = true)]
struct Cli {
    /// State store URL [default: the config file's `state`, else sqlite://.siphon/state.db].
    #[arg(long, global = true, env = "SIPHON_STATE", value_name = "URL")]
    state: Option<String>,
    /// More log output: -v info, -vv debug (default: warnings and errors); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// How log lines look: `text` for people, `json` (one object a line) for log collectors; the service's log files too.
    #[arg(long, global = true, value_enum, env = logs::LOG_FORMAT_ENV, default_value = "text", value_name = "FORMAT")]
    log_format: logs::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Embedded demo: builds a SQLite source, syncs it fully, changes it, syncs incrementally, verifies.
    Quickstart {
        /// Folder for the demo's files: created when missing; must be empty or a previous quickstart's.
        #[arg(long, default_value = "siphon-quickstart")]
        dir: PathBuf,
        /// Rows in the demo's orders table.
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
    },
    /// Runs pipelines: once (`--once`), or on their schedules until stopped (Ctrl-C stops gracefully).
    Run {
        /// Config file to apply first; its pipelines are the ones run [default: ./siphon.yaml when present].
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<PathBuf>,
        /// Pipelines to run [default: the config file's, else every stored pipeline].
        #[arg(value_name = "PIPELINE")]
        pipelines: Vec<String>,
        /// One pass and exit: full tables copied, incremental tables polled until no new rows, cdc streamed to the source's current position.
        #[arg(long)]
        once: bool,
    },
    /// Loads a config file's connections and pipelines into the state store.
    Apply {
        /// Config file to load [default: ./siphon.yaml].
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Named database endpoints.
    #[command(subcommand)]
    Connection(commands::catalog::ConnectionCommand),
    /// Pipelines ("syncs") and their tables.
    #[command(subcommand)]
    Sync(commands::catalog::SyncCommand),
    /// Each pipeline and table from the state store: state, rows/s, last checkpoint, snapshot progress, last error, lease holder, recent runs.
    Status {
        /// One JSON document for scripts, with each table's recent runs (its shape is stable).
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// A full-screen view read again every 2 s; `q` quits. Needs a terminal.
        #[arg(long)]
        watch: bool,
        /// Pipelines to show [default: every stored pipeline].
        #[arg(value_name = "PIPELINE")]
        pipelines: Vec<String>,
    },
    /// The service: runs every stored pipeline on its schedule, in the foreground or as a daemon.
    #[command(subcommand)]
    Service(commands::service::ServiceCommand),
}

/// Logs go to stderr: warnings and errors by default, `-v` info, `-vv` debug,
/// `RUST_LOG` overrides. Colours only when stderr is a terminal.
fn init_logs(verbose: u8) {
    stderr_logs(match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    });
}

/// Logs to stderr at `level` (`RUST_LOG` overrides) in the `--log-format`
/// chosen; colours only when stderr is a terminal and `NO_COLOR` is unset.
pub(crate) fn stderr_logs(level: &str) {
    logs::to_stderr(level);
}

/// The arguments that are asked for interactively when missing and standard
/// input is a terminal: `(command, subcommand, arguments)`.
const ASKED: &[(&str, &str, &[&str])] = &[
    ("connection", "add", &["name", "url"]),
    ("sync", "add", &["name", "source", "target"]),
];

/// Parses the command line. On a terminal, the arguments the prompts ask for
/// are not required; elsewhere a missing one is a usage error (exit status 2).
fn parse() -> Cli {
    let mut command = Cli::command();
    if prompt::interactive() {
        for (group, sub, args) in ASKED {
            command = command.mut_subcommand(*group, |g| {
                g.mut_subcommand(*sub, |mut c| {
                    for a in *args {
                        c = c.mut_arg(*a, |arg| arg.required(false));
                    }
                    c
                })
            });
        }
    }
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Exit status when stdout is closed under siphon (128 + SIGPIPE, as a shell
/// reports a tool that a closed pipe ended).
const CLOSED_STDOUT: i32 = 141;

/// A reader that closes siphon's stdout (`siphon sync list | head`) ends siphon
/// quietly, as it ends other command-line tools, instead of with a panic
/// message: printing to a closed pipe panics in `println!`. Committed work is
/// not affected, since every chunk commits with its checkpoint.
fn end_quietly_when_stdout_closes() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("os error 32") {
            std::process::exit(CLOSED_STDOUT);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    end_quietly_when_stdout_closes();
    let cli = parse();
    logs::choose(cli.log_format);
    match &cli.command {
        Command::Service(c) if commands::service::logs_itself(c) => {}
        _ => init_logs(cli.verbose),
    }
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
            if logs::format() == logs::LogFormat::Json {
                // For log collectors: the error as a log line, like the others.
                tracing::error!(kind = ?e.kind(), "{e}");
            } else {
                eprintln!("error: {e}");
            }
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
            let Some((path, file)) = commands::config_file(file)? else {
                return Err(Error::config(format!(
                    "apply: no config file: pass one with -f FILE, or write {}",
                    commands::DEFAULT_CONFIG
                )));
            };
            let state = commands::open_state(state_flag.as_deref(), file.state.as_deref()).await?;
            file.check_shared(
                &path,
                &state.connections().await?,
                &state.pipelines().await?,
            )?;
            commands::run::apply(&state, &file).await?;
            println!(
                "applied {}: {} connections, {} pipelines",
                path.display(),
                file.connections.len(),
                file.pipelines.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            file,
            pipelines,
            once,
        } => {
            let file = commands::config_file(file)?;
            let state = commands::open_state(
                state_flag.as_deref(),
                file.as_ref().and_then(|(_, f)| f.state.as_deref()),
            )
            .await?;
            let mut names = pipelines;
            if let Some((path, f)) = &file {
                f.check_shared(path, &state.connections().await?, &state.pipelines().await?)?;
                commands::run::apply(&state, f).await?;
                if names.is_empty() {
                    if f.pipelines.is_empty() {
                        return Err(Error::config(format!(
                            "{} defines no pipelines: add them under `pipelines:`, or name stored \
                             pipelines to run",
                            path.display()
                        )));
                    }
                    names = f.pipelines.keys().cloned().collect();
                }
            }
            commands::run::run(std::sync::Arc::new(state), &names, once).await
        }
        Command::Connection(c) => {
            let state = commands::open_catalog_state(state_flag.as_deref()).await?;
            commands::catalog::connection(&state, c).await
        }
        Command::Sync(c) => {
            let state = commands::open_catalog_state(state_flag.as_deref()).await?;
            commands::catalog::sync(&state, c).await
        }
        Command::Status {
            json,
            watch,
            pipelines,
        } => {
            let state = commands::open_catalog_state(state_flag.as_deref()).await?;
            commands::status::run(&state, json, watch, &pipelines).await
        }
        Command::Service(c) => commands::service::run(state_flag.as_deref(), cli.verbose, c).await,
    }
}
