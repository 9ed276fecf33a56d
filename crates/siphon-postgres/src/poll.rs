//! How far incremental polling by a timestamp cursor may read: rows of
//! transactions still open on the source are left for a later pass.
//!
//! A poll reads rows in `(cursor, key)` order after a watermark. A transaction
//! that is still open when a poll runs may commit later a row whose cursor value
//! is below the watermark that poll reaches, and no later poll would read it. A
//! cursor set from the server's clock while writing (`DEFAULT now()`,
//! `clock_timestamp()`, a trigger) is never earlier than its transaction's start,
//! so a poll that reads only rows below the start of the oldest transaction open
//! in the database reads every row of every transaction that can still commit
//! in a later pass. Where the server cannot show every open transaction, a pass
//! re-reads [`DEFAULT_LOOKBACK`] behind its watermark instead.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use siphon_core::{Result, TableSchema};
use tokio_postgres::Client;

use crate::conn::pg_err;

/// The window a pass re-reads by a timestamp cursor with no `lookback` of its
/// own, when the source cannot show every open transaction.
pub(crate) const DEFAULT_LOOKBACK: Duration = Duration::from_secs(5 * 60);

/// What a poll may read now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bound {
    /// Rows whose cursor is at or after this instant (ISO 8601 text in UTC, as
    /// the server wrote it) wait for a later poll; `None` when no transaction is
    /// open in the database. See [`Bound::sql`].
    pub before: Option<String>,
    /// Whether every transaction that can still commit was seen. When not, the
    /// watermarks a poll makes say so, and a pass re-reads a window behind them.
    pub exact: bool,
}

impl Bound {
    /// The bound as a `timestamptz` SQL expression for a cursor column declared
    /// `native_type`, when there is one. A column with fewer fractional digits
    /// rounds a transaction's start to the nearest unit, down by half a unit at
    /// most: the bound is moved down by one unit, so that rounding never puts an
    /// open transaction's row below it.
    pub fn sql(&self, native_type: &str) -> Option<String> {
        let at = self.before.as_deref()?;
        let unit = 10u64.pow(6 - fraction_digits(native_type));
        // The server wrote `at` as ISO 8601 text: quoting it is enough.
        Some(format!(
            "('{}'::timestamptz - interval '{unit} microseconds')",
            at.replace('\'', "''")
        ))
    }
}

/// The fractional digits of seconds a `timestamp` or `timestamptz` column
/// declared `native_type` keeps (`timestamp(0) with time zone`: 0), 6 at most.
pub(crate) fn fraction_digits(native_type: &str) -> u32 {
    native_type
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(p, _)| p.trim().parse::<u32>().ok())
        .unwrap_or(6)
        .min(6)
}

/// Reads the bound before the rows: a transaction that commits in between is
/// then either seen open (its rows wait) or visible to the poll that follows.
/// The source's own connection is left out, and so are other databases.
pub(crate) async fn bound(client: &Client, table: &TableSchema) -> Result<Bound> {
    let row = client
        .query_one(
            "SELECT to_char(min(a.xact_start) FILTER (WHERE a.backend_type = 'client backend') \
                            AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
                    count(*) FILTER (WHERE a.usesysid IS NOT NULL AND NOT pg_has_role(a.usesysid, 'USAGE') \
                                     AND NOT pg_has_role('pg_read_all_stats', 'USAGE')), \
                    (SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()), \
                    pg_is_in_recovery(), current_database()::text \
             FROM pg_stat_activity a \
             WHERE a.pid <> pg_backend_pid() \
               AND a.datid = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .map_err(|e| {
            pg_err(e, "reading the open transactions that bound polling").table(&table.name)
        })?;
    let before: Option<String> = row.get(0);
    let hidden: i64 = row.get(1);
    let prepared: i64 = row.get(2);
    let standby: bool = row.get(3);
    let database: String = row.get(4);
    let why_not = if standby {
        Some("the source is a standby, which cannot show the primary's transactions".to_string())
    } else if hidden > 0 {
        Some(format!(
            "{hidden} session(s) of other roles hide their transactions from the source role; \
             GRANT pg_read_all_stats to it for exact polling"
        ))
    } else if prepared > 0 {
        Some(format!(
            "{prepared} prepared transaction(s) may commit rows of any age"
        ))
    } else {
        None
    };
    announce(&database, table, why_not.as_deref());
    Ok(Bound {
        before,
        exact: why_not.is_none(),
    })
}

/// For each database and table key, why polling it was last said to be
/// inexact (`None`: exact).
type Said = HashMap<(String, String), Option<String>>;

/// Logs which guarantee polling a table gives, once, and again when it changes.
fn announce(database: &str, table: &TableSchema, why_not: Option<&str>) {
    static SAID: OnceLock<Mutex<Said>> = OnceLock::new();
    let key = (database.to_string(), table.name.key());
    let now = why_not.map(str::to_string);
    let mut said = SAID
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if said.get(&key) == Some(&now) {
        return;
    }
    match why_not {
        None => tracing::info!(
            table = %table.name,
            "timestamp polling reads a row once no transaction that may have written it is open"
        ),
        Some(why) => tracing::warn!(
            table = %table.name,
            lookback = ?DEFAULT_LOOKBACK,
            "timestamp polling cannot see every open transaction ({why}); each pass reads again \
             the rows of the {} minutes before its watermark; set `lookback` to choose the window",
            DEFAULT_LOOKBACK.as_secs() / 60
        ),
    }
    said.insert(key, now);
}

/// Logs once per table that polling by a `sequence` or `version` cursor
/// without `lookback` misses a value that commits after a higher one was read.
pub(crate) fn unbounded(table: &TableSchema, column: &str) {
    static SAID: OnceLock<Mutex<std::collections::HashSet<String>>> = OnceLock::new();
    let mut said = SAID
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if said.insert(table.name.key()) {
        tracing::info!(
            table = %table.name,
            column,
            "polling by a sequence or version cursor reads each value once: a transaction that \
             commits a value lower than one already read (values taken by concurrent transactions \
             commit in any order) is not copied; set `lookback` to a number of values to read again"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_coarser_column_moves_the_bound_down_by_its_unit() {
        let b = Bound {
            before: Some("2026-12-01 20:00:00.4+00".into()),
            exact: true,
        };
        let at = "'2026-12-01 20:00:00.4+00'::timestamptz";
        for (native, unit) in [
            ("timestamp with time zone", 1),
            ("timestamp(6) without time zone", 1),
            ("timestamp(3) with time zone", 1000),
            ("timestamp(0) without time zone", 1_000_000),
        ] {
            assert_eq!(
                b.sql(native).unwrap(),
                format!("({at} - interval '{unit} microseconds')")
            );
        }
        let none = Bound {
            before: None,
            exact: true,
        };
        assert_eq!(none.sql("timestamptz"), None);
    }
}
