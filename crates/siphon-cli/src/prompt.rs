//! Interactive prompts for `connection add` and `sync add` when a required
//! argument is missing and standard input is a terminal: names and URLs are
//! typed, the source and target chosen from the stored connections, the mode
//! from the modes, and the tables from the source's own (discovered through
//! the connector registry). Without a terminal the command fails with its
//! usage instead, as clap reports a missing argument.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use dialoguer::theme::SimpleTheme;
use dialoguer::{Input, MultiSelect, Select};
use siphon_core::{Error, Result, Source, StateStore, TableFilter};

use crate::commands::catalog::ModeArg;
use crate::config::ConnUrl;
use crate::connect::open_source;

/// Whether prompts may be shown: standard input is a terminal.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// A prompt that could not be shown or answered (the terminal closed).
fn prompt_err(e: dialoguer::Error) -> Error {
    Error::config("could not read the answer from the terminal").source(e)
}

/// The usage error for a command whose required arguments are missing and
/// that has no terminal to ask on (exit status 2).
fn no_terminal(command: &str, missing: &[&str]) -> Error {
    Error::config(format!(
        "{command}: missing {}, and standard input is not a terminal to ask on: pass {}",
        missing.join(", "),
        if missing.len() == 1 { "it" } else { "them" }
    ))
}

/// A line of text, not empty.
fn ask(prompt: &str) -> Result<String> {
    Input::<String>::with_theme(&SimpleTheme)
        .with_prompt(prompt)
        .validate_with(|s: &String| {
            if s.trim().is_empty() {
                Err("type a value")
            } else {
                Ok(())
            }
        })
        .interact_text()
        .map(|s| s.trim().to_string())
        .map_err(prompt_err)
}

/// `connection add` with `name` or `url` missing: asks for each missing one
/// (the URL checked as it is typed, as storing it checks it).
pub fn connection(name: Option<String>, url: Option<String>) -> Result<(String, String)> {
    if !interactive() {
        let mut missing = Vec::new();
        if name.is_none() {
            missing.push("NAME");
        }
        if url.is_none() {
            missing.push("URL");
        }
        return Err(no_terminal("connection add", &missing));
    }
    let name = match name {
        Some(n) => n,
        None => ask("Connection name")?,
    };
    let url = match url {
        Some(u) => u,
        None => {
            let key = format!("connections.{name}");
            Input::<String>::with_theme(&SimpleTheme)
                .with_prompt(
                    "URL (postgres://user:password@host:5432/db, mysql://…, sqlite://file.db)",
                )
                .validate_with(move |s: &String| {
                    ConnUrl::check_stored(&key, s.trim())
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
                .interact_text()
                .map(|s| s.trim().to_string())
                .map_err(prompt_err)?
        }
    };
    Ok((name, url))
}

/// What `sync add` was given, and then answered: an empty `name`, `source`
/// or `target`, or empty `tables`, is asked for.
#[derive(Debug, Clone)]
pub struct SyncAnswers {
    /// Pipeline name.
    pub name: String,
    /// Source connection.
    pub source: String,
    /// Target connection.
    pub target: String,
    /// The pipeline's mode.
    pub mode: ModeArg,
    /// Table globs (chosen tables' names when asked).
    pub tables: Vec<String>,
    /// Incremental cursor column.
    pub cursor: Option<String>,
}

/// The modes offered, in order, with what each does.
const MODES: &[(ModeArg, &str)] = &[
    (ModeArg::Full, "full: copy every row on each run"),
    (
        ModeArg::Incremental,
        "incremental: poll a cursor column for changed rows",
    ),
    (
        ModeArg::Cdc,
        "cdc: follow the source's change log (PostgreSQL, MySQL, MariaDB)",
    ),
    (
        ModeArg::RowCount,
        "row_count: copy again when the row counts differ",
    ),
];

/// One of `names`, by a select list, `prompt` above it.
fn choose(prompt: &str, names: &[String]) -> Result<String> {
    let i = Select::with_theme(&SimpleTheme)
        .with_prompt(prompt)
        .items(names)
        .default(0)
        .interact()
        .map_err(prompt_err)?;
    Ok(names[i].clone())
}

/// Stored connections that can take `role` (`source` or `target`).
fn able(connections: &BTreeMap<String, String>, source: bool) -> Vec<String> {
    connections
        .iter()
        .filter(|(name, url)| {
            match ConnUrl::check_stored(&format!("connections.{name}"), url) {
                Ok(Some(c)) => {
                    let caps = c.capabilities();
                    if source {
                        caps.source
                    } else {
                        caps.sink
                    }
                }
                // A variable stands for the scheme: it may be either.
                Ok(None) => true,
                Err(_) => false,
            }
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// `sync add` with its name, source or target missing: asks for each
/// missing one, then for the mode (unless `mode_given`), the tables (unless
/// globs were given: a multi-select of the source's tables) and, for
/// `incremental`, the cursor column.
pub async fn sync<St: StateStore>(
    state: &St,
    mut a: SyncAnswers,
    mode_given: bool,
) -> Result<SyncAnswers> {
    if !interactive() {
        let mut missing = Vec::new();
        for (value, what) in [
            (&a.name, "NAME"),
            (&a.source, "--source"),
            (&a.target, "--target"),
        ] {
            if value.is_empty() {
                missing.push(what);
            }
        }
        return Err(no_terminal("sync add", &missing));
    }
    let connections = state.connections().await?;
    if a.name.is_empty() {
        a.name = ask("Pipeline name")?;
    }
    if a.source.is_empty() {
        let sources = able(&connections, true);
        if sources.is_empty() {
            return Err(Error::config(
                "sync add: no stored connection can be a source: add one with `siphon connection add`",
            ));
        }
        a.source = choose("Source connection", &sources)?;
    }
    if a.target.is_empty() {
        let targets: Vec<String> = able(&connections, false)
            .into_iter()
            .filter(|t| *t != a.source)
            .collect();
        if targets.is_empty() {
            return Err(Error::config(format!(
                "sync add: no stored connection other than `{}` can be a target: add one with \
                 `siphon connection add`",
                a.source
            )));
        }
        a.target = choose("Target connection", &targets)?;
    }
    if !mode_given {
        let shown: Vec<&str> = MODES.iter().map(|(_, s)| *s).collect();
        let i = Select::with_theme(&SimpleTheme)
            .with_prompt("Mode")
            .items(&shown)
            .default(0)
            .interact()
            .map_err(prompt_err)?;
        a.mode = MODES[i].0;
    }
    if a.tables.is_empty() {
        let written = connections.get(&a.source).ok_or_else(|| {
            Error::config(format!(
                "unknown connection `{}`; add it with `siphon connection add`",
                a.source
            ))
        })?;
        let url = ConnUrl::parse(&format!("connections.{}", a.source), written)?;
        let source = open_source(&a.source, &url).await?;
        let all = TableFilter {
            include: vec!["*".into()],
            exclude: Vec::new(),
        };
        let names: Vec<String> = source
            .discover(&all)
            .await?
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        if names.is_empty() {
            return Err(Error::config(format!(
                "sync add: source `{}` has no table to replicate",
                a.source
            )));
        }
        loop {
            let chosen = MultiSelect::with_theme(&SimpleTheme)
                .with_prompt("Tables (space to choose, enter to confirm)")
                .items(&names)
                .interact()
                .map_err(prompt_err)?;
            if !chosen.is_empty() {
                a.tables = chosen.into_iter().map(|i| names[i].clone()).collect();
                break;
            }
            eprintln!("choose at least one table (space), then press enter");
        }
    }
    if a.mode == ModeArg::Incremental && a.cursor.is_none() {
        a.cursor = Some(ask("Cursor column (a timestamp or growing number)")?);
    }
    Ok(a)
}
