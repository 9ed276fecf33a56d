//! Applying a batch of changes: each run of changes of one kind to one table is
//! one statement through the table's staging table, in order, in one
//! transaction with the checkpoint; a batch the target lacks the resources for
//! is applied in parts, the checkpoint with the last.

use std::collections::HashMap;
use std::ops::Range;

use siphon_core::{
    key_bytes, ApplyStats, Batch, Change, Checkpoint, Error, ErrorKind, Op, Result, Row,
    TableSchema,
};
use tokio_postgres::error::DbError;
use tokio_postgres::Transaction;

use super::staging::Staging;
use super::{copy_data, copy_into, write_checkpoint, PostgresSink, TargetTable};
use crate::conn::{column_list, ident, pg_err};

impl PostgresSink {
    /// Applies a batch in order with its checkpoint: in one transaction, or,
    /// when the target lacks the resources for it (SQLSTATE class 53, or 54000),
    /// in halves, each in a transaction of its own and split again as needed,
    /// down to single changes. Only the last part writes the checkpoint, so the
    /// checkpoint still moves only once every change before it is committed;
    /// parts committed before a failure are applied again on the batch's next
    /// try, which converges (upserts and deletes by key).
    pub(super) async fn apply_changes(
        &self,
        batch: Batch,
        checkpoint: &Checkpoint,
    ) -> Result<ApplyStats> {
        let changes = &batch.changes;
        let mut stats = ApplyStats::default();
        // Parts still to apply, the next one last.
        let mut todo: Vec<Range<usize>> = Vec::new();
        todo.push(0..changes.len());
        // Changes a part may hold: half of the last part that failed, so that
        // the parts after it are not tried whole first.
        let mut limit = changes.len().max(1);
        while let Some(part) = todo.pop() {
            if part.len() > limit {
                let size = part.len().div_ceil(part.len().div_ceil(limit));
                let starts = (part.start..part.end).step_by(size).rev();
                todo.extend(starts.map(|s| s..(s + size).min(part.end)));
                continue;
            }
            let last = part.end == changes.len();
            let applied = self
                .apply_part(&changes[part.clone()], last.then_some(checkpoint))
                .await;
            let err = match applied {
                Ok(s) => {
                    stats += s;
                    continue;
                }
                Err(e) => e,
            };
            // The transaction rolled back, with what it did to staging tables.
            self.staging.clear();
            let Some(db) = shortage(&err) else {
                return Err(err);
            };
            if part.len() <= 1 {
                let table = changes.get(part.start).map(|c| &c.table);
                return Err(cannot_fit(db, table.map(|t| &**t)).source(err));
            }
            tracing::warn!(
                changes = part.len(),
                error = %db.message(),
                code = db.code().code(),
                "the target lacks the resources for a batch; applying it in two parts"
            );
            limit = part.len() / 2;
            let mid = part.start + limit;
            todo.push(mid..part.end);
            todo.push(part.start..mid);
        }
        Ok(stats)
    }

    /// The order `changes` are applied in: as given, or, when foreign keys and
    /// triggers do not fire for this connection (`session_replication_role =
    /// replica`), grouped by table in the order tables first appear, each
    /// table's changes in their order. Tables then no longer depend on one
    /// another within the transaction, and a batch of transactions that each
    /// touch several tables (pgbench's) takes a statement per table and kind
    /// instead of one per change.
    fn order<'c>(&self, changes: &'c [Change]) -> Vec<&'c Change> {
        if !self.replica {
            return changes.iter().collect();
        }
        let mut groups: Vec<(&siphon_core::TableName, Vec<&'c Change>)> = Vec::new();
        for c in changes {
            match groups.iter_mut().find(|(n, _)| **n == c.table.name) {
                Some((_, g)) => g.push(c),
                None => groups.push((&c.table.name, vec![c])),
            }
        }
        groups.into_iter().flat_map(|(_, g)| g).collect()
    }

    /// Applies `changes` in order (see [`PostgresSink::order`]), and the
    /// checkpoint when given, in one transaction.
    async fn apply_part(
        &self,
        changes: &[Change],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<ApplyStats> {
        let mut client = self.client.lock().await;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_err(e, "starting a transaction"))?;
        self.staging.begin();
        let mut stats = ApplyStats::default();
        let changes = self.order(changes);
        let mut i = 0;
        while i < changes.len() {
            let table = &changes[i].table;
            let t = self.target(table)?;
            if t.key.is_empty() {
                // A table without a key: its rows are found by value, one by one.
                let mut j = i;
                while j < changes.len()
                    && std::sync::Arc::ptr_eq(&changes[j].table, table)
                    && matches!(
                        changes[j].op,
                        Op::Insert(_) | Op::Update { .. } | Op::Delete(_)
                    )
                {
                    j += 1;
                }
                if j > i {
                    stats +=
                        super::exact::apply(&tx, &t, table, &changes[i..j], &self.staging).await?;
                    i = j;
                    continue;
                }
            }
            let upserting = matches!(changes[i].op, Op::Insert(_) | Op::Update { .. });
            let deleting = matches!(changes[i].op, Op::Delete(_));
            // A run of changes of one kind to one table goes in one statement.
            let mut j = i;
            let mut rows: Vec<&Row> = Vec::new();
            while j < changes.len() && std::sync::Arc::ptr_eq(&changes[j].table, table) {
                match (&changes[j].op, upserting, deleting) {
                    (Op::Insert(r) | Op::Update { after: r, .. }, true, _) => rows.push(r),
                    (Op::Delete(r), _, true) => rows.push(r),
                    _ => break,
                }
                j += 1;
            }
            match &changes[i].op {
                Op::Insert(_) | Op::Update { .. } => {
                    let (ins, upd) = upsert(&tx, &t, table, &rows, &self.staging).await?;
                    stats.inserted += ins;
                    stats.updated += upd;
                }
                Op::Delete(_) => {
                    stats.deleted += delete(&tx, &t, table, &rows, &self.staging).await?
                }
                Op::Truncate => {
                    let n = tx
                        .query_one(&format!("SELECT count(*) FROM {}", t.name), &[])
                        .await
                        .map_err(|e| pg_err(e, "counting rows"))?
                        .get::<_, i64>(0);
                    crate::objects::empty_table(&tx, &t.name, self.replica, &table.name).await?;
                    stats.emptied += n as u64;
                    j = i + 1;
                }
                Op::Schema(_) => {
                    return Err(
                        Error::internal("schema changes are applied through prepare")
                            .table(&table.name),
                    )
                }
            }
            i = j.max(i + 1);
        }
        if let Some(checkpoint) = checkpoint {
            write_checkpoint(&tx, &self.write_checkpoint, checkpoint).await?;
        }
        tx.commit().await.map_err(|e| pg_err(e, "committing"))?;
        Ok(stats)
    }
}

/// The server's error when `err` says the target lacked resources for what
/// was asked (SQLSTATE class 53: memory, disk, connections, a configured
/// limit; or 54000, a limit of PostgreSQL itself), so that less at once may
/// succeed.
fn shortage(err: &Error) -> Option<&DbError> {
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        if let Some(pg) = c.downcast_ref::<tokio_postgres::Error>() {
            let db = pg.as_db_error()?;
            let code = db.code().code();
            return (code.starts_with("53") || code == "54000").then_some(db);
        }
        cause = c.source();
    }
    None
}

/// The error for a single change the target lacks the resources to apply,
/// naming its table and what to change.
fn cannot_fit(db: &DbError, table: Option<&TableSchema>) -> Error {
    let code = db.code().code();
    let fix = match code {
        "53200" if db.message().contains("shared memory") => {
            "raise max_locks_per_transaction in the target server's postgresql.conf (a restart \
             applies it), or end the sessions that hold many locks there"
        }
        "53200" => "give the target server more memory, or lower its work_mem",
        "53100" => "free disk space on the target server",
        "53300" => {
            "raise max_connections on the target server, or lower the pipeline's max_parallel"
        }
        "53400" => "raise the limit the server names in its postgresql.conf",
        _ => {
            "change the value at the source, or the target column or index that cannot hold it \
             (e.g. index a hash of a long text)"
        }
    };
    let hint = db
        .hint()
        .map(|h| format!(" (the server says: {h})"))
        .unwrap_or_default();
    let err = Error::new(
        ErrorKind::Database,
        format!(
            "the target lacks the resources to apply even one change: {} (SQLSTATE {code}){hint}; {fix}",
            db.message()
        ),
    );
    match table {
        Some(t) => err.table(&t.name),
        None => err,
    }
}

/// Inserts rows, updating those whose key exists. Rows whose key repeats keep the
/// last one. On a table with a unique key or index beside its row key, the
/// rows' keys are deleted first and the rows inserted whole: the rows are the
/// table's state at one point of the source (a run of changes applied in
/// order), which satisfies every unique index, where writing them one by one
/// collides with a row that gives its value up later in the run. Returns
/// (inserted, updated).
pub(super) async fn upsert(
    tx: &Transaction<'_>,
    t: &TargetTable,
    table: &TableSchema,
    rows: &[&Row],
    staging: &Staging,
) -> Result<(u64, u64)> {
    let mut last: HashMap<Vec<u8>, usize> = HashMap::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        last.insert(key_bytes(r, &t.key), i);
    }
    let rows: Vec<&Row> = if last.len() == rows.len() {
        // No key repeats: every row is kept, in order.
        rows.to_vec()
    } else {
        let mut keep: Vec<usize> = last.into_values().collect();
        keep.sort_unstable();
        keep.into_iter().map(|i| rows[i]).collect()
    };
    let replaced = match table.unique_besides(&t.key) {
        true => delete(tx, t, table, &rows, staging).await?,
        false => 0,
    };
    let werr = |e| pg_err(e, &format!("writing {}", table.name)).table(&table.name);
    let cols = column_list(t.write.iter().map(|&i| t.columns[i].as_str()));
    let (data, format) = copy_data(t, &rows, &t.write, table)?;
    let stage = staging.stage(tx, t, data.len()).await.map_err(werr)?;
    let copy = staging
        .statement(
            tx,
            &format!(
                "COPY {stage} ({cols}) FROM STDIN (FORMAT {})",
                format.as_sql()
            ),
        )
        .await
        .map_err(werr)?;
    copy_into(tx, &copy, data).await.map_err(werr)?;
    let (inserted, updated) = merge_stage(tx, t, &stage, &cols, staging)
        .await
        .map_err(werr)?;
    // Rows whose keys were deleted first count as updated.
    let replaced = replaced.min(inserted);
    Ok((inserted - replaced, updated + replaced))
}

/// Inserts the staged rows into the table, updating those whose key exists,
/// and empties the staging table. Returns (inserted, updated).
pub(super) async fn merge_stage(
    tx: &Transaction<'_>,
    t: &TargetTable,
    stage: &str,
    cols: &str,
    staging: &Staging,
) -> std::result::Result<(u64, u64), tokio_postgres::Error> {
    let keys = column_list(t.key.iter().map(|&i| t.columns[i].as_str()));
    let sets: Vec<String> = t
        .write
        .iter()
        .filter(|i| !t.key.contains(i))
        .map(|&i| format!("{c} = EXCLUDED.{c}", c = ident(&t.columns[i])))
        .collect();
    let action = if sets.is_empty() {
        "NOTHING".to_string()
    } else {
        format!("UPDATE SET {}", sets.join(", "))
    };
    let sql = if t.partitioned {
        crate::partition::merge_sql(&t.name, cols, stage, &keys, &action)
    } else {
        // Reads the staged rows by deleting them: the staging table is empty
        // for the next run without another statement.
        format!(
            "WITH s AS (DELETE FROM {stage} RETURNING {cols}), \
             w AS (INSERT INTO {} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM s ON CONFLICT ({keys}) DO {action} \
             RETURNING (xmax = 0) AS inserted) SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM w",
            t.name
        )
    };
    let r = tx
        .query_one(&staging.statement(tx, &sql).await?, &[])
        .await?;
    if t.partitioned {
        let empty = staging
            .statement(tx, &format!("DELETE FROM {stage}"))
            .await?;
        tx.execute(&empty, &[]).await?;
    }
    Ok((r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64))
}

/// Deletes rows by key through the table's staging table.
async fn delete(
    tx: &Transaction<'_>,
    t: &TargetTable,
    table: &TableSchema,
    rows: &[&Row],
    staging: &Staging,
) -> Result<u64> {
    let werr = |e| pg_err(e, &format!("deleting from {}", table.name)).table(&table.name);
    let keys = column_list(t.key.iter().map(|&i| t.columns[i].as_str()));
    let (data, format) = copy_data(t, rows, &t.key, table)?;
    let stage = staging.stage(tx, t, data.len()).await.map_err(werr)?;
    let copy = staging
        .statement(
            tx,
            &format!(
                "COPY {stage} ({keys}) FROM STDIN (FORMAT {})",
                format.as_sql()
            ),
        )
        .await
        .map_err(werr)?;
    copy_into(tx, &copy, data).await.map_err(werr)?;
    let on: Vec<String> = t
        .key
        .iter()
        .map(|&i| format!("t.{c} = s.{c}", c = ident(&t.columns[i])))
        .collect();
    // Empties the staging table in the same statement.
    let sql = format!(
        "WITH s AS (DELETE FROM {stage} RETURNING {keys}) DELETE FROM {} t USING s WHERE {}",
        t.name,
        on.join(" AND ")
    );
    let stmt = staging.statement(tx, &sql).await.map_err(werr)?;
    tx.execute(&stmt, &[]).await.map_err(werr)
}
