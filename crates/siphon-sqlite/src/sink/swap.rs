//! `strategy: swap` on SQLite: a full load goes into a shadow table with the
//! target's columns, declared types and keys; one transaction then replaces
//! the target's rows with the shadow's and drops the shadow. The target table
//! itself stays (its indexes, triggers and the views that read it), and
//! readers of the WAL-mode file see the old rows until that transaction
//! commits, then the new ones.

use siphon_core::{Checkpoint, Error, Result, TableName, TableSchema};

use super::{write_checkpoint, SqliteSink};
use crate::conn::{column_list, db_err, quote};
use crate::schema::{create_table_sql, describe, exists};

/// The shadow table's name for a target table.
fn shadow_name(table: &str) -> String {
    format!("{table}_siphon_new")
}

impl SqliteSink {
    /// See [`siphon_core::Sink::open_shadow`].
    pub(super) async fn shadow_open(
        &self,
        table: &TableSchema,
        resume: Option<&TableName>,
    ) -> Result<(TableSchema, bool)> {
        let path = self.db.path().to_path_buf();
        let target = table.name.name.clone();
        let name = shadow_name(&target);
        let resume = resume.is_some_and(|r| r.name == name);
        let shadow = name.clone();
        let resumed = self
            .db
            .run(move |c| {
                if resume && exists(c, &path, &shadow)? {
                    return Ok(true);
                }
                let mut def = describe(c, &path, &target)?.ok_or_else(|| {
                    Error::bad_input("the target table is missing").table(&target)
                })?;
                def.name = TableName::new(None, &shadow);
                let sql = format!(
                    "DROP TABLE IF EXISTS {};\n{}",
                    quote(&shadow),
                    create_table_sql(&def)
                );
                c.execute_batch(&sql)
                    .map_err(|e| db_err(&path, "creating the shadow table", e).table(&target))?;
                Ok(false)
            })
            .await?;
        let mut shadow = table.clone();
        shadow.name = TableName::new(table.name.schema.as_deref(), &name);
        Ok((shadow, resumed))
    }

    /// See [`siphon_core::Sink::swap_in`].
    pub(super) async fn shadow_swap_in(
        &self,
        table: &TableSchema,
        shadow: &TableSchema,
        checkpoint: &Checkpoint,
    ) -> Result<u64> {
        let path = self.db.path().to_path_buf();
        let (target, from) = (quote(&table.name.name), quote(&shadow.name.name));
        let cols = column_list(table.columns.iter().map(|c| c.name.as_str()));
        let cp = checkpoint.clone();
        let name = table.name.clone();
        let wal = self.wal.clone();
        self.db
            .run(move |c| {
                let err = |e| db_err(&path, "swapping the new copy in", e).table(&name);
                let tx = c.transaction().map_err(err)?;
                let replaced = tx
                    .execute(&format!("DELETE FROM {target}"), [])
                    .map_err(err)?;
                tx.execute(
                    &format!("INSERT INTO {target} ({cols}) SELECT {cols} FROM {from}"),
                    [],
                )
                .map_err(err)?;
                tx.execute_batch(&format!("DROP TABLE {from}"))
                    .map_err(err)?;
                write_checkpoint(&tx, &cp).map_err(err)??;
                tx.commit().map_err(err)?;
                if let Some(wal) = &wal {
                    wal.committed(c);
                }
                Ok(replaced as u64)
            })
            .await
    }

    /// See [`siphon_core::Sink::drop_shadow`].
    pub(super) async fn shadow_drop(&self, shadow: &TableName) -> Result<()> {
        let path = self.db.path().to_path_buf();
        let q = quote(&shadow.name);
        let name = shadow.clone();
        self.db
            .run(move |c| {
                c.execute_batch(&format!("DROP TABLE IF EXISTS {q}"))
                    .map_err(|e| db_err(&path, "dropping the shadow table", e).table(&name))
            })
            .await
    }
}
