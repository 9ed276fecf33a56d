//! `siphon sync tables NAME`: which of the source's tables the pipeline
//! selects and how each runs, and why each other one is left out, by the
//! engine's own rules: the globs ([`TableFilter`]), the key a mode needs
//! ([`TableSchema::require_row_key`]), what the source's log can carry
//! ([`LogSource::check_log_table`]) and the tables' switches.

use siphon_core::{
    Flag, LogSource, Mode, NewTables, PipelineSpec, Result, Source, StateStore, StreamId,
    TableFilter, TableSchema,
};

use super::url_of;
use crate::connect::open_source;

/// A filter of one glob, so each glob's own verdict comes from the rule the
/// engine selects with.
fn one(glob: &str) -> TableFilter {
    TableFilter {
        include: vec![glob.to_string()],
        exclude: Vec::new(),
    }
}

/// Why a table the globs select cannot run in `mode`, or `None` when it can.
async fn problem(
    source: &crate::connect::AnySource,
    spec: &PipelineSpec,
    table: &TableSchema,
    mode: Mode,
) -> Option<String> {
    let config = spec.table_config(&table.name);
    match mode {
        // Copied whole, by key or by the source's order without one.
        Mode::Full | Mode::RowCount => None,
        Mode::Incremental => {
            if let Err(e) = table.require_row_key() {
                return Some(format!("no key to poll by: {e}"));
            }
            match config.cursor.or_else(|| spec.cursor.clone()) {
                None => Some(
                    "needs a cursor column: set `cursor` on the pipeline or in its tables_config"
                        .into(),
                ),
                Some(c) if table.column_index(&c).is_none() => Some(format!(
                    "its cursor column `{c}` is not a column of the table"
                )),
                Some(_) => None,
            }
        }
        Mode::Cdc => source
            .check_log_table(table)
            .await
            .err()
            .map(|e| format!("the log cannot carry it: {e}")),
        Mode::Merge => Some("not available in this version".into()),
    }
}

/// Prints the tables pipeline `name` selects on its source, then the others
/// with why each is left out.
pub async fn show<St: StateStore>(state: &St, name: &str, spec: &PipelineSpec) -> Result<()> {
    let connections = state.connections().await?;
    let source = open_source(&spec.source, &url_of(&connections, name, &spec.source)?).await?;
    let every = source.discover(&one("*")).await?;
    println!(
        "pipeline {name}: {} -> {}, mode {}, tables {:?}{}{}",
        spec.source,
        spec.target,
        spec.mode,
        spec.tables,
        if spec.exclude.is_empty() {
            String::new()
        } else {
            format!(", exclude {:?}", spec.exclude)
        },
        if spec.enabled {
            ""
        } else {
            " (the whole pipeline is paused: `siphon sync enable` resumes it)"
        }
    );
    let mut selected = Vec::new();
    let mut left_out = Vec::new();
    for table in &every {
        let t = &table.name;
        let Some(by) = spec.tables.iter().find(|g| one(g).matches(t)) else {
            left_out.push((
                t.to_string(),
                format!(
                    "matched by no glob of `tables` ({})",
                    spec.tables.join(", ")
                ),
            ));
            continue;
        };
        if let Some(ex) = spec.exclude.iter().find(|g| one(g).matches(t)) {
            left_out.push((t.to_string(), format!("excluded by `{ex}`")));
            continue;
        }
        let mode = spec.table_config(t).mode.unwrap_or(spec.mode);
        if let Some(why) = problem(&source, spec, table, mode).await {
            left_out.push((t.to_string(), format!("{mode}: {why}")));
            continue;
        }
        let stream = StreamId::new(name, t);
        let paused = match state.flag(&stream, Flag::Enabled).await? {
            Some(enabled) => !enabled,
            None => spec.new_tables == NewTables::Paused,
        };
        let mut notes = vec![format!("selected by `{by}`")];
        if paused {
            notes.push(format!(
                "paused (`siphon sync enable {name} --table {t}` resumes it)"
            ));
        }
        selected.push((t.to_string(), mode, notes.join(", ")));
    }
    let width = every
        .iter()
        .map(|t| t.name.to_string().len())
        .max()
        .unwrap_or(0)
        .max(10);
    println!("selected ({}):", selected.len());
    for (t, mode, notes) in &selected {
        println!("  {t:<width$}  {:<12} {notes}", mode.to_string());
    }
    println!("left out ({}):", left_out.len());
    for (t, why) in &left_out {
        println!("  {t:<width$}  {why}");
    }
    Ok(())
}
