//! `siphon connection …` and `siphon sync …`: editing the catalog and table flags,
//! and removing a pipeline with what it holds on its source and target.
//! `connection test` is in [`check`], `sync tables` in [`tables`].

mod check;
mod tables;

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::Subcommand;
use siphon_core::{
    Error, Flag, LogSource, Mode, NewTables, PipelineSpec, Result, Sink, Source, StateStore,
    StreamId, StreamState, TableName,
};

use crate::config::{
    redact, resolve_url, validate_endpoints, validate_pipeline, validate_source, ConnUrl,
};
use crate::connect::{open_sink, open_source, AnySink, AnySource};

#[derive(Debug, Subcommand)]
pub enum ConnectionCommand {
    /// Adds or replaces a connection; the URL is stored as written, `${VAR}` unexpanded (read when the connection is opened). Without NAME or URL on a terminal, asks for them.
    Add {
        /// Connection name, as pipelines' `--source` and `--target` name it.
        #[arg(required = true)]
        name: Option<String>,
        /// postgres://user:password@host:5432/db, mysql://user:password@host:3306/db (MySQL or MariaDB; mariadb:// too) or sqlite://path.db (a relative path is taken from the working directory).
        #[arg(required = true)]
        url: Option<String>,
    },
    /// Lists connections, secrets hidden.
    List,
    /// Opens a connection and says what answered (the server and its version) and what it can be, then each setting and privilege replication needs there: ok, or missing with its fix (exit status 0 when it answers: only cdc needs them).
    Test {
        /// Connection to test.
        name: String,
        /// One JSON document (the REST API's `POST /api/v1/connections/{name}/test` answer).
        #[arg(long)]
        json: bool,
    },
    /// Removes a connection.
    Remove {
        /// Connection to remove.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Adds or replaces a pipeline. Without NAME, --source or --target on a terminal, asks for what is missing: source and target from the connections, the mode, the tables from the source's.
    Add {
        /// Pipeline name.
        #[arg(required = true)]
        name: Option<String>,
        /// Source connection name.
        #[arg(long, required = true)]
        source: Option<String>,
        /// Target connection name.
        #[arg(long, required = true)]
        target: Option<String>,
        /// How the tables are kept in step [default: full].
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// Globs of tables to replicate (`schema.table` or bare names, `*` and `?`) [default: all].
        #[arg(long, num_args = 1.., value_name = "GLOB")]
        tables: Vec<String>,
        /// Globs of tables to leave out.
        #[arg(long, num_args = 1.., value_name = "GLOB")]
        exclude: Vec<String>,
        /// Incremental cursor column (required for `incremental`).
        #[arg(long, value_name = "COLUMN")]
        cursor: Option<String>,
    },
    /// Lists pipelines, their tables, each table's state and pending flags (paused, resync requested).
    List,
    /// Lists the source tables a pipeline's `tables` and `exclude` globs select, with each one's mode, and every other source table with why it is left out.
    Tables {
        /// Pipeline name.
        name: String,
    },
    /// Enables a paused pipeline (its tables resume from their checkpoints, each as its own switch says), or one table; says whether a paused cdc table is copied again.
    Enable {
        /// Pipeline name.
        name: String,
        /// One table the pipeline selects (`schema.table`, or the bare name when only one table has it) [default: the pipeline itself].
        #[arg(long, value_name = "TABLE")]
        table: Option<String>,
    },
    /// Pauses a pipeline (a running service stops its pass in flight, closes its connections and gives up its lease; tables discovered meanwhile wait too), or one table.
    Disable {
        /// Pipeline name.
        name: String,
        /// One table the pipeline selects (`schema.table`, or the bare name when only one table has it) [default: the pipeline itself].
        #[arg(long, value_name = "TABLE")]
        table: Option<String>,
    },
    /// Makes the next run reload a pipeline's tables (or one table) from scratch.
    Resync {
        /// Pipeline name.
        name: String,
        /// One table the pipeline selects (`schema.table`, or the bare name when only one table has it) [default: all].
        #[arg(long, value_name = "TABLE")]
        table: Option<String>,
    },
    /// Removes a pipeline: drops its replication slot and publication on the source, forgets its checkpoints on the target, then removes it from the catalog.
    Remove {
        /// Pipeline name.
        name: String,
        /// Do not ask for confirmation (needed when there is no terminal to ask on).
        #[arg(long, short = 'y')]
        yes: bool,
        /// Keep the replication slot and publication on the source (their names are printed, with how to drop them later).
        #[arg(long)]
        keep_slot: bool,
        /// Remove the pipeline from the catalog even when its source or target cannot be reached (what is left behind is printed).
        #[arg(long)]
        force: bool,
    },
    /// Moves the target's copies of the sequences owned by a pipeline's tables (serial and identity columns) forward to the source's positions (PostgreSQL to PostgreSQL).
    Sequences {
        /// Pipeline name.
        name: String,
    },
}

/// A pipeline's mode on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// Copy every row on each run.
    Full,
    /// Poll a cursor column for rows changed since the last run.
    Incremental,
    /// Follow the source's change log (PostgreSQL, MySQL and MariaDB sources).
    Cdc,
    /// Two-way sync: not available in this version (refused).
    Merge,
    /// Copy the table again in full when its row count differs from the
    /// target's (for tables with neither a cursor column nor a change log).
    #[value(name = "row_count", alias = "row-count")]
    RowCount,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Full => Mode::Full,
            ModeArg::Incremental => Mode::Incremental,
            ModeArg::Cdc => Mode::Cdc,
            ModeArg::Merge => Mode::Merge,
            ModeArg::RowCount => Mode::RowCount,
        }
    }
}

/// Runs a `siphon connection` command.
pub async fn connection<St: StateStore>(state: &St, cmd: ConnectionCommand) -> Result<ExitCode> {
    match cmd {
        ConnectionCommand::Add { name, url } => {
            let (name, url) = match (name, url) {
                (Some(name), Some(url)) => (name, url),
                (name, url) => crate::prompt::connection(name, url)?,
            };
            ConnUrl::check_stored(&format!("connections.{name}"), &url)?;
            let cwd = std::env::current_dir().map_err(|e| {
                Error::config("cannot read the working directory, which relative paths need")
                    .source(e)
            })?;
            let url = resolve_url(&url, &cwd);
            // A replaced connection must not make a pipeline read and write one database.
            let mut connections = state.connections().await?;
            connections.insert(name.clone(), url.clone());
            for (p, spec) in state.pipelines().await? {
                if spec.source != name && spec.target != name {
                    continue;
                }
                if let (Some(s), Some(t)) =
                    (connections.get(&spec.source), connections.get(&spec.target))
                {
                    validate_endpoints(&p, &spec, s, t)?;
                }
            }
            state.put_connection(&name, &url).await?;
            println!("connection {name} saved: {}", redact(&url));
        }
        ConnectionCommand::List => {
            for (name, url) in state.connections().await? {
                println!("{name:<20} {}", redact(&url));
            }
        }
        ConnectionCommand::Test { name, json } => check::test(state, &name, json).await?,
        ConnectionCommand::Remove { name } => {
            let users: Vec<String> = state
                .pipelines()
                .await?
                .into_iter()
                .filter(|(_, p)| p.source == name || p.target == name)
                .map(|(n, _)| n)
                .collect();
            if !users.is_empty() {
                return Err(Error::config(format!(
                    "connection `{name}` is used by pipeline(s) {}: remove them (`siphon sync remove`) \
                     or point them at another connection first; nothing was removed",
                    users.join(", ")
                )));
            }
            if !state.remove_connection(&name).await? {
                return Err(Error::config(format!("unknown connection `{name}`")));
            }
            println!("connection {name} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The stored pipeline `name`, or a config error.
async fn pipeline<St: StateStore>(state: &St, name: &str) -> Result<PipelineSpec> {
    let mut all = state.pipelines().await?;
    all.remove(name).ok_or_else(|| {
        Error::config(format!(
            "unknown pipeline `{name}`; defined: {}",
            if all.is_empty() {
                "none".to_string()
            } else {
                all.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        ))
    })
}

/// A connection's URL, expanded to open it.
fn url_of(connections: &BTreeMap<String, String>, pipeline: &str, conn: &str) -> Result<ConnUrl> {
    let written = connections.get(conn).ok_or_else(|| {
        Error::config(format!(
            "pipelines.{pipeline}: connection `{conn}` is not defined"
        ))
    })?;
    ConnUrl::parse(&format!("connections.{conn}"), written)
}

/// The tables a pipeline selects, as its source lists them now.
async fn selected_tables(
    connections: &BTreeMap<String, String>,
    name: &str,
    spec: &PipelineSpec,
) -> Result<Vec<TableName>> {
    let source = open_source(&spec.source, &url_of(connections, name, &spec.source)?).await?;
    Ok(source
        .discover(&spec.filter())
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect())
}

/// `names` for a message, the first 50 of them.
fn listing(names: &[TableName]) -> String {
    let mut shown: Vec<String> = names.iter().take(50).map(|t| t.to_string()).collect();
    if names.len() > 50 {
        shown.push(format!("and {} more", names.len() - 50));
    }
    shown.join(", ")
}

/// The table `wanted` names among those a pipeline selects: its key
/// ([`TableName::key`]: `schema.table`, with each part double-quoted when a part
/// holds `.` or `"`), its `schema.table` form when no other table reads the same,
/// or a bare name that only one of them has.
fn pick(pipeline: &str, wanted: &str, tables: &[TableName]) -> Result<TableName> {
    if let Some(t) = tables.iter().find(|t| t.key() == wanted) {
        return Ok(t.clone());
    }
    let shown: Vec<&TableName> = tables.iter().filter(|t| t.to_string() == wanted).collect();
    match shown.as_slice() {
        [t] => return Ok((*t).clone()),
        [] => {}
        several => {
            let keys: Vec<String> = several.iter().map(|t| format!("'{}'", t.key())).collect();
            return Err(Error::config(format!(
                "--table {wanted}: several tables of pipeline `{pipeline}` read `{wanted}`: \
                 name one with its parts quoted: {}",
                keys.join(", ")
            )));
        }
    }
    let bare: Vec<TableName> = tables
        .iter()
        .filter(|t| t.schema.is_some() && t.name == wanted)
        .cloned()
        .collect();
    match bare.len() {
        1 => return Ok(bare[0].clone()),
        0 => {}
        _ => {
            return Err(Error::config(format!(
                "--table {wanted}: several tables of pipeline `{pipeline}` have this name: {}; \
                 write it as schema.table",
                listing(&bare)
            )))
        }
    }
    Err(Error::config(format!(
        "--table {wanted}: pipeline `{pipeline}` does not select this table; it selects: {}",
        if tables.is_empty() {
            "no table (check its `tables` and `exclude` globs against the source)".to_string()
        } else {
            listing(tables)
        }
    )))
}

/// The streams a command acts on: one table the pipeline selects, or all of them.
pub(crate) async fn streams<St: StateStore>(
    state: &St,
    name: &str,
    spec: &PipelineSpec,
    table: Option<&str>,
) -> Result<Vec<StreamId>> {
    let connections = state.connections().await?;
    let tables = selected_tables(&connections, name, spec).await?;
    Ok(match table {
        Some(t) => vec![StreamId::new(name, &pick(name, t, &tables)?)],
        None => tables.iter().map(|t| StreamId::new(name, t)).collect(),
    })
}

/// Whether a table is paused now: its flag, or the pipeline's `new_tables`.
async fn paused<St: StateStore>(state: &St, spec: &PipelineSpec, s: &StreamId) -> Result<bool> {
    Ok(match state.flag(s, Flag::Enabled).await? {
        Some(enabled) => !enabled,
        None => spec.new_tables == NewTables::Paused,
    })
}

/// Runs a `siphon sync` command.
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
            let asked = match (name, source, target) {
                (Some(name), Some(source), Some(target)) => crate::prompt::SyncAnswers {
                    name,
                    source,
                    target,
                    mode: mode.unwrap_or(ModeArg::Full),
                    tables,
                    cursor,
                },
                (name, source, target) => {
                    crate::prompt::sync(
                        state,
                        crate::prompt::SyncAnswers {
                            name: name.unwrap_or_default(),
                            source: source.unwrap_or_default(),
                            target: target.unwrap_or_default(),
                            mode: mode.unwrap_or(ModeArg::Full),
                            tables,
                            cursor,
                        },
                        mode.is_some(),
                    )
                    .await?
                }
            };
            let crate::prompt::SyncAnswers {
                name,
                source,
                target,
                mode,
                tables,
                cursor,
            } = asked;
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
            validate_source(&name, &spec, &connections[&spec.source])?;
            validate_endpoints(
                &name,
                &spec,
                &connections[&spec.source],
                &connections[&spec.target],
            )?;
            state.put_pipeline(&name, &spec).await?;
            println!("pipeline {name} saved");
        }
        SyncCommand::List => list(state).await?,
        SyncCommand::Tables { name } => {
            let spec = pipeline(state, &name).await?;
            tables::show(state, &name, &spec).await?
        }
        SyncCommand::Enable { name, table: None } => switch(state, &name, true).await?,
        SyncCommand::Disable { name, table: None } => switch(state, &name, false).await?,
        SyncCommand::Enable { name, table } => {
            set(state, &name, table.as_deref(), Flag::Enabled, true).await?
        }
        SyncCommand::Disable { name, table } => {
            set(state, &name, table.as_deref(), Flag::Enabled, false).await?
        }
        SyncCommand::Resync { name, table } => {
            set(state, &name, table.as_deref(), Flag::ForceFullLoad, true).await?;
            // A failed table runs again at once, its retries counted afresh.
            let spec = pipeline(state, &name).await?;
            for s in streams(state, &name, &spec, table.as_deref()).await? {
                siphon_engine::clear_attempts(state, &s).await?;
            }
        }
        SyncCommand::Remove {
            name,
            yes,
            keep_slot,
            force,
        } => return remove(state, &name, yes, keep_slot, force).await,
        SyncCommand::Sequences { name } => super::sequences::sync(state, &name).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `sync list`: each pipeline, then each table it selects (as its source lists
/// them, and any that ran before) with its pending flags and its state.
async fn list<St: StateStore>(state: &St) -> Result<()> {
    let states = state.stream_states().await?;
    let connections = state.connections().await?;
    let pipelines = state.pipelines().await?;
    if pipelines.is_empty() {
        println!("no pipelines: add one with `siphon sync add`, or write it in siphon.yaml and run `siphon apply`");
    }
    for (name, p) in pipelines {
        println!(
            "{name}: {} -> {}  mode {}  tables {:?}  schedule {}{}",
            p.source,
            p.target,
            p.mode,
            p.tables,
            p.schedule,
            if p.enabled {
                ""
            } else {
                "  PAUSED (the whole pipeline: `siphon sync enable` resumes it)"
            }
        );
        let mut tables: Vec<TableName> = states
            .iter()
            .filter(|(s, _)| s.pipeline == name && s.table.name != "*")
            .map(|(s, _)| s.table.clone())
            .collect();
        match selected_tables(&connections, &name, &p).await {
            Ok(found) => tables.extend(found),
            Err(e) => println!(
                "  (the source's tables cannot be listed, so only tables that ran are shown: {e})"
            ),
        }
        tables.sort();
        tables.dedup();
        for t in tables {
            let s = StreamId::new(&name, &t);
            let mut flags = Vec::new();
            if paused(state, &p, &s).await? {
                flags.push("paused");
            }
            if state.flag(&s, Flag::ForceFullLoad).await? == Some(true) {
                flags.push("resync requested");
            }
            let now = states
                .iter()
                .find(|(x, _)| *x == s)
                .map_or("not run yet".to_string(), |(_, st)| st.to_string());
            let flags = if flags.is_empty() {
                "-".to_string()
            } else {
                flags.join(", ")
            };
            println!("  {:<30} {flags:<28} {now}", t.to_string());
        }
    }
    Ok(())
}

/// `sync enable|disable NAME`: the pipeline's own switch, in the catalog. The
/// tables keep theirs, so enabling the pipeline again brings back exactly the
/// tables that ran before it was paused; a running service honours it within
/// a few seconds. The source need not be reachable.
async fn switch<St: StateStore>(state: &St, name: &str, enabled: bool) -> Result<()> {
    let mut spec = pipeline(state, name).await?;
    let was = spec.enabled;
    if was != enabled {
        spec.enabled = enabled;
        state.put_pipeline(name, &spec).await?;
    }
    let log = spec.mode == Mode::Cdc
        || spec
            .tables_config
            .values()
            .any(|c| c.mode == Some(Mode::Cdc));
    match (was, enabled) {
        (true, false) => {
            println!(
                "pipeline {name}: paused; a running service stops its pass in flight at the next \
                 batch, closes its connections and runs nothing of it until `siphon sync enable {name}`"
            );
            if log {
                println!("pipeline {name}: {}", siphon::kept_log_warning());
            }
        }
        (false, false) => println!("pipeline {name}: already paused"),
        (false, true) => {
            println!(
                "pipeline {name}: enabled; its tables resume from their checkpoints{}",
                if log {
                    " (cdc tables from their position in the source's log)"
                } else {
                    ""
                }
            );
        }
        (true, true) => println!("pipeline {name}: already enabled"),
    }
    if enabled {
        // Tables paused by their own switch stay so: say which.
        let paused_tables: Vec<StreamId> = {
            let mut out = Vec::new();
            for (s, _) in state.stream_states().await? {
                if s.pipeline == name
                    && s.table.name != "*"
                    && state.flag(&s, Flag::Enabled).await? == Some(false)
                {
                    out.push(s);
                }
            }
            out
        };
        for s in paused_tables {
            println!(
                "{s}: stays paused by its own switch (`siphon sync enable {name} --table {}`)",
                s.table
            );
        }
    }
    Ok(())
}

/// Sets a flag on one table or all the pipeline selects; enabling a paused `cdc`
/// table also says whether the next run copies it again.
async fn set<St: StateStore>(
    state: &St,
    name: &str,
    table: Option<&str>,
    flag: Flag,
    value: bool,
) -> Result<()> {
    let spec = pipeline(state, name).await?;
    let mut resumed = Vec::new();
    for s in streams(state, name, &spec, table).await? {
        let mode = spec.table_config(&s.table).mode.unwrap_or(spec.mode);
        if flag == Flag::Enabled && value && mode == Mode::Cdc && paused(state, &spec, &s).await? {
            resumed.push(s.clone());
        }
        state.set_flag(&s, flag, value).await?;
        println!("{s}: {} = {value}", flag.as_str());
    }
    if !resumed.is_empty() {
        say_reload(state, name, &spec, &resumed).await?;
    }
    Ok(())
}

/// For paused `cdc` tables just enabled: whether the next run copies each one
/// again. A pass that runs while a `cdc` table is paused resets its checkpoint
/// (the pipeline's log moves on without it, so its changes are not kept): such a
/// table is snapshotted again. One that no pass skipped goes on from its checkpoint.
async fn say_reload<St: StateStore>(
    state: &St,
    name: &str,
    spec: &PipelineSpec,
    enabled: &[StreamId],
) -> Result<()> {
    let states = state.stream_states().await?;
    let connections = state.connections().await?;
    let sink = match url_of(&connections, name, &spec.target) {
        Ok(url) => open_sink(&spec.target, &url).await,
        Err(e) => Err(e),
    };
    for s in enabled {
        let was_skipped = states
            .iter()
            .any(|(x, st)| x == s && *st == StreamState::Paused);
        let ran = states.iter().any(|(x, _)| x == s);
        let checkpoint = match &sink {
            Ok(sink) => Some(sink.checkpoint(s).await.map(|c| c.is_some())),
            Err(_) => None,
        };
        let reloads = match checkpoint {
            Some(Ok(has)) => !has,
            _ => was_skipped,
        };
        let why = if reloads && !ran {
            "it has not been copied yet: the next run copies it (snapshot), then streams its changes"
        } else if reloads {
            "the next run copies it again (snapshot), then streams: a run went on while it was \
             paused, which reset its checkpoint, because the changes made while a cdc table is \
             paused are not kept"
        } else {
            "the next run streams it from its checkpoint, without copying it again: no run went \
             on while it was paused, so the source's log still holds its changes"
        };
        println!("{s}: {why}");
    }
    Ok(())
}

/// `sync remove`: asks first (unless `yes`), drops the pipeline's slot and
/// publication (unless `keep_slot`), forgets its checkpoints on the target, then
/// removes it from the catalog. Nothing is removed when the source or target
/// cannot be reached, unless `force`.
pub(crate) async fn remove<St: StateStore>(
    state: &St,
    name: &str,
    yes: bool,
    keep_slot: bool,
    force: bool,
) -> Result<ExitCode> {
    let spec = pipeline(state, name).await?;
    let connections = state.connections().await?;
    let slot = siphon_postgres::log_name(name);
    let written_source = connections.get(&spec.source).map(String::as_str);
    let has_log = written_source.is_some_and(|u| {
        ConnUrl::check_stored("source", u)
            .map(|k| k.is_none_or(|k| k.log))
            .unwrap_or(true)
    });
    let drop_slot = has_log && !keep_slot;
    let (src, dst) = (&spec.source, &spec.target);

    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Error::config(format!(
                "sync remove {name}: asks for confirmation, and there is no terminal to ask on; \
                 run `siphon sync remove {name} --yes` to remove it without asking"
            )));
        }
        let mut plan = vec![format!("Remove pipeline `{name}`?")];
        if drop_slot {
            plan.push(format!(
                "  - drop replication slot and publication `{slot}` on `{src}`"
            ));
        }
        plan.push(format!(
            "  - forget its checkpoints on `{dst}` (its tables are copied again if a pipeline of this name is added)"
        ));
        plan.push("  - remove it, its flags and its table states from the catalog".into());
        eprint!("{}\nType yes to go on: ", plan.join("\n"));
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "yes" | "Y" | "YES") {
            println!("nothing was removed");
            return Ok(ExitCode::FAILURE);
        }
    }

    let manual_drop =
        format!("SELECT pg_drop_replication_slot('{slot}'); DROP PUBLICATION {slot};");
    let mut left = Vec::new();
    let unreachable = |role: &str, conn: &str, e: Error| {
        Error::new(
            e.kind(),
            format!(
                "sync remove {name}: cannot reach {role} `{conn}` ({e}); nothing was removed: try \
                 again when it can be reached, or add --force to remove the pipeline from the \
                 catalog anyway"
            ),
        )
    };
    let source: Option<AnySource> = if drop_slot {
        let opened = match url_of(&connections, name, src) {
            Ok(url) => open_source(src, &url).await,
            Err(e) => Err(e),
        };
        match opened {
            Ok(s) => Some(s),
            Err(e) if force => {
                left.push(format!(
                    "replication slot and publication `{slot}` on `{src}` ({e}); when it can be \
                     reached, drop them there: {manual_drop}"
                ));
                None
            }
            Err(e) => return Err(unreachable("source", src, e)),
        }
    } else {
        None
    };
    let target_url = url_of(&connections, name, dst);
    // A SQLite target that was never written holds no checkpoint: do not create it.
    // An event target holds none either (they are the state store's copies).
    let never_written = target_url.as_ref().is_ok_and(|u| {
        u.is(&siphon::FILE)
            || (u.is(&siphon::SQLITE)
                && siphon_sqlite::path_from_url(u.expose()).is_ok_and(|p| !p.exists()))
    });
    let sink: Option<AnySink> = if never_written {
        None
    } else {
        let opened = match target_url {
            Ok(url) => open_sink(dst, &url).await,
            Err(e) => Err(e),
        };
        match opened {
            Ok(s) => Some(s),
            Err(e) if force => {
                left.push(format!(
                    "the checkpoints of `{name}` on `{dst}` ({e}); when it can be reached, \
                     delete them there: DELETE FROM siphon_checkpoints WHERE pipeline = '{name}';"
                ));
                None
            }
            Err(e) => return Err(unreachable("target", dst, e)),
        }
    };

    let mut tables: Vec<TableName> = state
        .stream_states()
        .await?
        .into_iter()
        .filter(|(s, _)| s.pipeline == name)
        .map(|(s, _)| s.table)
        .collect();
    if let Some(pg) = source
        .as_ref()
        .and_then(AnySource::downcast_ref::<siphon_postgres::PostgresSource>)
    {
        // Dropping a slot a running `siphon run` streams from ends its session,
        // and that run then creates the slot, the publication and the copies
        // again for a pipeline no longer in the catalog.
        let holder = pg.log_in_use(name).await?;
        match holder {
            Some(h) if !force => {
                return Err(Error::config(format!(
                    "sync remove {name}: the pipeline is running: its replication slot `{slot}` on \
                     `{src}` is in use by {h}; stop that `siphon run` first (Ctrl-C), then remove \
                     the pipeline; nothing was removed (--force removes it anyway, and a run that \
                     goes on creates the slot again)"
                )));
            }
            Some(h) => left.push(format!(
                "{h} was streaming from slot `{slot}`: if it is a `siphon run` that goes on, it \
                 creates the slot again; stop it, then drop them: {manual_drop}"
            )),
            None => {}
        }
    }
    if let Some(source) = &source {
        source.drop_log(name).await.map_err(|e| {
            Error::new(
                e.kind(),
                format!(
                    "sync remove {name}: dropping replication slot and publication `{slot}` on \
                     `{src}` failed ({e}); nothing else was removed"
                ),
            )
        })?;
        println!("dropped replication slot and publication {slot} on {src}");
        if let Ok(found) = source.discover(&spec.filter()).await {
            tables.extend(found.into_iter().map(|t| t.name));
        }
    }
    if let Some(sink) = &sink {
        tables.push(siphon_engine::log_stream(name).table);
        tables.sort();
        tables.dedup();
        for t in &tables {
            sink.reset(&StreamId::new(name, t)).await?;
        }
        println!("forgot the checkpoints of {name} on {dst}");
    }
    state.remove_pipeline(name).await?;
    println!("pipeline {name} removed, with its flags, table states and checkpoint copies");
    if has_log && keep_slot {
        println!(
            "kept replication slot and publication {slot} on {src}: the slot keeps WAL on the \
             source until it is dropped ({manual_drop}), and a pipeline added later as `{name}` \
             would use them"
        );
    }
    for l in &left {
        println!("left behind: {l}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_named_by_its_key_when_another_reads_the_same() {
        let tables = [
            TableName::new(Some("a"), "b.c"),
            TableName::new(Some("a.b"), "c"),
            TableName::new(Some("public"), "orders"),
        ];
        assert_eq!(pick("p", r#""a.b"."c""#, &tables).unwrap(), tables[1]);
        assert_eq!(pick("p", r#""a"."b.c""#, &tables).unwrap(), tables[0]);
        assert_eq!(pick("p", "public.orders", &tables).unwrap(), tables[2]);
        assert_eq!(pick("p", "orders", &tables).unwrap(), tables[2]);
        let err = pick("p", "a.b.c", &tables).unwrap_err().to_string();
        assert!(err.contains(r#"'"a"."b.c"', '"a.b"."c"'"#), "{err}");
    }
}
