//! `siphon sync sequences NAME`: moves the target's copies of the sequences
//! owned by a pipeline's tables (serial and identity columns) forward to the
//! source's positions.

use siphon_core::{Error, Result, StateStore};

use crate::config::ConnUrl;

/// Connects to the pipeline's PostgreSQL source and target and moves every
/// sequence owned by a column of the tables it selects forward on the target
/// (never backward), printing each one's position. Both ends must be
/// PostgreSQL.
pub async fn sync<St: StateStore>(state: &St, name: &str) -> Result<()> {
    let pipelines = state.pipelines().await?;
    let spec = pipelines.get(name).ok_or_else(|| {
        Error::config(format!("unknown pipeline `{name}`; see `siphon sync list`"))
    })?;
    let connections = state.connections().await?;
    let url = |conn: &str| -> Result<ConnUrl> {
        let written = connections.get(conn).ok_or_else(|| {
            Error::config(format!(
                "pipeline {name}: connection `{conn}` is not defined; add it with `siphon connection add`"
            ))
        })?;
        let url = ConnUrl::parse(&format!("connections.{conn}"), written)?;
        if !url.is(&siphon::POSTGRES) {
            return Err(Error::config(format!(
                "pipeline {name}: connection `{conn}` ({url}) is not PostgreSQL; `sync sequences` moves \
                 PostgreSQL sequences, so both the source and the target must be postgres:// connections"
            )));
        }
        Ok(url)
    };
    let source = url(&spec.source)?;
    let target = url(&spec.target)?;
    let moved = siphon_postgres::sync_sequences(
        source.expose(),
        target.expose(),
        &spec.filter(),
        spec.target_schema.as_deref(),
    )
    .await?;
    if moved.is_empty() {
        println!("pipeline {name}: its tables own no sequences");
    }
    for (table, sequence, position) in moved {
        match position {
            Some(p) => println!("{table}: {sequence} at {p}"),
            None => println!("{table}: {sequence} unused on both sides, left as it is"),
        }
    }
    Ok(())
}
