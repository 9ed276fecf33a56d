//! Operator switches read while a following pass streams the log.
//!
//! A pass reads the tables' flags (enabled, force full load) when it starts,
//! and a following pass then streams for a window of up to 30 s. So that a
//! switch is honoured within about a second, the flags that would change what
//! the next pass does are read again every [`EVERY`] while the window streams,
//! and the window ends as soon as one of them changed: the next pass, which a
//! continuous pipeline starts at once, applies it. The window ends as at its
//! deadline, between batches: what was read is applied, the checkpoint is the
//! last committed batch's, and the stream stays open at that position.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use siphon_core::{Flag, NewTables, Result, StateStore, StreamId, TableName};

use super::backfill::Backfill;
use super::Table;

/// How often the switches are read while the log streams: one state store
/// read per watched table and flag.
const EVERY: Duration = Duration::from_secs(1);

/// Tables a pass left out whose switch, once turned on, changes the next
/// pass: the window of the log ends when one is.
#[derive(Debug, Clone, Default)]
pub(crate) struct LeftOut {
    /// Paused (disabled, or new while `new_tables: paused`): the pass read them
    /// as not enabled, so enabling one ends the window.
    pub(crate) paused: Vec<StreamId>,
    /// `full` tables left alone because they hold a complete copy: the pass
    /// read no forced reload for them, so forcing one ends the window.
    pub(crate) copied: Vec<StreamId>,
}

/// What a following pass watches while its window streams.
#[derive(Debug)]
pub(super) struct Watch {
    new_tables: NewTables,
    left_out: LeftOut,
    /// Tables of the pass that do not stream (stopped by an error): their
    /// forced-reload flag as first read, since the pass did not necessarily
    /// read it; a reload asked for from then on ends the window.
    stopped: HashMap<StreamId, bool>,
    last: Option<Instant>,
    /// The last read failed (said once until one succeeds).
    failing: bool,
    ended: bool,
}

impl Watch {
    /// Watches the pass's streaming and stopped tables and those it left out.
    pub(super) fn new(new_tables: NewTables, left_out: LeftOut) -> Watch {
        Watch {
            new_tables,
            left_out,
            stopped: HashMap::new(),
            last: None,
            failing: false,
            ended: false,
        }
    }

    /// Whether a switch changed: the window ends, and stays ended for this
    /// pass (also when the stream is opened again within it).
    pub(super) fn ended(&self) -> bool {
        self.ended
    }

    /// Reads the switches when [`EVERY`] has passed since the last read (at
    /// once the first time); returns whether the window ends now. `routes`
    /// are the tables that stream; those `backfill` copies for a forced
    /// reload keep their flag set until the copy is complete. A
    /// failed read is logged and the window goes on: the next pass reads the
    /// switches anyway.
    pub(super) async fn check<St: StateStore>(
        &mut self,
        pipeline: &str,
        state: &St,
        tables: &[Table],
        routes: &HashMap<TableName, usize>,
        backfill: Option<&Backfill>,
    ) -> bool {
        if self.ended {
            return true;
        }
        if self.last.is_some_and(|t| t.elapsed() < EVERY) {
            return false;
        }
        self.last = Some(Instant::now());
        let reloading = backfill.map(Backfill::reloading).unwrap_or_default();
        match self.changed(state, tables, routes, &reloading).await {
            Ok(None) => self.failing = false,
            Ok(Some(why)) => {
                tracing::info!(
                    pipeline,
                    "{why}: the pass ends its window of the log now, and the next pass applies it"
                );
                self.ended = true;
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(pipeline, error = %e, "could not read the tables' switches while streaming; the next pass reads them");
                }
                self.failing = true;
            }
        }
        self.ended
    }

    /// The first switch found changed, said for the log.
    async fn changed<St: StateStore>(
        &mut self,
        state: &St,
        tables: &[Table],
        routes: &HashMap<TableName, usize>,
        reloading: &HashSet<StreamId>,
    ) -> Result<Option<String>> {
        for &i in routes.values() {
            let stream = &tables[i].stream;
            if !self.enabled(state, stream).await? {
                return Ok(Some(format!("table {stream} was paused")));
            }
            if !reloading.contains(stream) && forced(state, stream).await? {
                return Ok(Some(format!("a reload of table {stream} was asked for")));
            }
        }
        for t in tables.iter().filter(|t| t.error.is_some()) {
            let now = forced(state, &t.stream).await?;
            let before = *self.stopped.entry(t.stream.clone()).or_insert(now);
            if now && !before {
                return Ok(Some(format!(
                    "a reload of stopped table {} was asked for",
                    t.stream
                )));
            }
        }
        for stream in &self.left_out.paused {
            if self.enabled(state, stream).await? {
                return Ok(Some(format!("table {stream} was enabled")));
            }
        }
        for stream in &self.left_out.copied {
            if forced(state, stream).await? {
                return Ok(Some(format!("a reload of table {stream} was asked for")));
            }
        }
        Ok(None)
    }

    /// Whether the table runs: its flag, else the pipeline's `new_tables`.
    async fn enabled<St: StateStore>(&self, state: &St, stream: &StreamId) -> Result<bool> {
        Ok(match state.flag(stream, Flag::Enabled).await? {
            Some(v) => v,
            None => self.new_tables == NewTables::Enabled,
        })
    }
}

/// Whether a reload of the table is asked for.
async fn forced<St: StateStore>(state: &St, stream: &StreamId) -> Result<bool> {
    Ok(state.flag(stream, Flag::ForceFullLoad).await? == Some(true))
}
