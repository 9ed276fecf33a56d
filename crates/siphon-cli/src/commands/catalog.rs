//! `siphon connection …` and `siphon sync …`: editing the catalog and table flags.

use std::process::ExitCode;

use clap::Subcommand;
use siphon_core::{
    Error, Flag, Mode, PipelineSpec, Result, Source, StateStore, StreamId, TableName,
};

use crate::config::{redact, validate_pipeline, ConnUrl};
use crate::connect::open_source;

#[derive(Debug, Subcommand)]
pub enum ConnectionCommand {
    /// Adds or replaces a connection (`${VAR}` is kept unexpanded).
    Add { name: String, url: String },
    /// Lists connections, passwords hidden.
    List,
    /// Removes a connection.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Adds or replaces a pipeline.
    Add {
        name: String,
        #[arg(long)]
        source: String,
        #[arg(long)]
        target: String,
        #[arg(long, value_enum, default_value = "full")]
        mode: ModeArg,
        /// Table globs [default: all].
        #[arg(long, num_args = 1..)]
        tables: Vec<String>,
        #[arg(long, num_args = 1..)]
        exclude: Vec<String>,
        /// Incremental cursor column.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Lists pipelines and the state of their tables.
    List,
    /// Enables a pipeline's tables (or one table).
    Enable {
        name: String,
        #[arg(long)]
        table: Option<String>,
    },
    /// Pauses a pipeline's tables (or one table).
    Disable {
        name: String,
        #[arg(long)]
        table: Option<String>,
    },
    /// Makes the next run truncate and reload a pipeline's tables (or one table).
    Resync {
        name: String,
        #[arg(long)]
        table: Option<String>,
    },
    /// Removes a pipeline from the catalog.
    Remove { name: String },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    Full,
    Incremental,
    Cdc,
    Merge,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Full => Mode::Full,
            ModeArg::Incremental => Mode::Incremental,
            ModeArg::Cdc => Mode::Cdc,
            ModeArg::Merge => Mode::Merge,
        }
    }
}

pub async fn connection<St: StateStore>(state: &St, cmd: ConnectionCommand) -> Result<ExitCode> {
    match cmd {
        ConnectionCommand::Add { name, url } => {
            ConnUrl::parse(&format!("connections.{name}"), &url)?;
            state.put_connection(&name, &url).await?;
            println!("connection {name} saved");
        }
        ConnectionCommand::List => {
            for (name, url) in state.connections().await? {
                println!("{name:<20} {}", redact(&url));
            }
        }
        ConnectionCommand::Remove { name } => {
            if !state.remove_connection(&name).await? {
                return Err(Error::config(format!("unknown connection `{name}`")));
            }
            println!("connection {name} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The streams a command acts on: one table, or every table the pipeline selects.
async fn streams<St: StateStore>(
    state: &St,
    name: &str,
    table: Option<String>,
) -> Result<Vec<StreamId>> {
    let spec = state
        .pipelines()
        .await?
        .remove(name)
        .ok_or_else(|| Error::config(format!("unknown pipeline `{name}`")))?;
    if let Some(t) = table {
        return Ok(vec![StreamId::new(name, &TableName::parse(&t))]);
    }
    let connections = state.connections().await?;
    let written = connections.get(&spec.source).ok_or_else(|| {
        Error::config(format!(
            "pipelines.{name}: connection `{}` is not defined",
            spec.source
        ))
    })?;
    let source = open_source(
        &spec.source,
        &ConnUrl::parse(&format!("connections.{}", spec.source), written)?,
    )
    .await?;
    Ok(source
        .discover(&spec.filter())
        .await?
        .iter()
        .map(|t| StreamId::new(name, &t.name))
        .collect())
}

pub async fn sync<St: StateStore>(state: &St, cmd: SyncCommand) -> Result<ExitCode> {
    match cmd {
        SyncCommand::Add {
            name,
            source,
            target,
            mode,
            tables,
            exclude,
            cursor,
        } => {
            let mut spec: PipelineSpec =
                serde_json::from_value(serde_json::json!({"source": source, "target": target}))
                    .map_err(|e| Error::internal("building a pipeline").source(e))?;
            spec.mode = mode.into();
            if !tables.is_empty() {
                spec.tables = tables;
            }
            spec.exclude = exclude;
            spec.cursor = cursor;
            let connections = state.connections().await?;
            for c in [&spec.source, &spec.target] {
                if !connections.contains_key(c) {
                    return Err(Error::config(format!(
                        "unknown connection `{c}`; add it with `siphon connection add`"
                    )));
                }
            }
            validate_pipeline(&name, &spec)?;
            state.put_pipeline(&name, &spec).await?;
            println!("pipeline {name} saved");
        }
        SyncCommand::List => {
            let states = state.stream_states().await?;
            for (name, p) in state.pipelines().await? {
                println!(
                    "{name}: {} -> {}  mode {}  tables {:?}  schedule {}",
                    p.source, p.target, p.mode, p.tables, p.schedule
                );
                for (s, st) in states.iter().filter(|(s, _)| s.pipeline == name) {
                    println!("  {:<30} {st}", s.table.to_string());
                }
            }
        }
        SyncCommand::Enable { name, table } => {
            set(state, &name, table, Flag::Enabled, true).await?
        }
        SyncCommand::Disable { name, table } => {
            set(state, &name, table, Flag::Enabled, false).await?
        }
        SyncCommand::Resync { name, table } => {
            set(state, &name, table, Flag::ForceFullLoad, true).await?
        }
        SyncCommand::Remove { name } => {
            if !state.remove_pipeline(&name).await? {
                return Err(Error::config(format!("unknown pipeline `{name}`")));
            }
            println!("pipeline {name} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn set<St: StateStore>(
    state: &St,
    name: &str,
    table: Option<String>,
    flag: Flag,
    value: bool,
) -> Result<()> {
    for s in streams(state, name, table).await? {
        state.set_flag(&s, flag, value).await?;
        println!("{s}: {} = {value}", flag.as_str());
    }
    Ok(())
}
