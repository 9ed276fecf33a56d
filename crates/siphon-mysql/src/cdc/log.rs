//! The binlog as siphon's change log of a MySQL or MariaDB source
//! ([`LogSource`]): start checks, positions, resuming, and the stream.

use std::sync::Arc;

use siphon_core::{
    Error, LogSource, Position, Result, Resume, Row, Source, TableFilter, TableName, TableSchema,
    Value,
};

use super::{Known, MySqlChangeStream, Rediscover};
use crate::source::MySqlSource;

impl Rediscover for MySqlSource {
    async fn rediscover(&self, table: &TableName) -> Result<Option<Known>> {
        let filter = TableFilter {
            include: vec![table.to_string()],
            exclude: Vec::new(),
        };
        let found = self.discover(&filter).await?;
        let Some(schema) = found.into_iter().find(|t| t.name == *table) else {
            return Ok(None);
        };
        let mut conn = self.config.connect("source").await?;
        self.known_table(&mut conn, Arc::new(schema))
            .await
            .map(Some)
    }

    async fn current_row(
        &self,
        table: &TableSchema,
        key: &[usize],
        values: &[Value],
    ) -> Result<Option<Row>> {
        let marks: Vec<String> = key
            .iter()
            .map(|&i| crate::source::placeholder(&table.columns[i]))
            .collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE ({}) = ({})",
            crate::source::select_list(table),
            crate::source::table_sql(table),
            crate::schema::key_list(table, key),
            marks.join(", ")
        );
        let params = values
            .iter()
            .zip(key)
            .map(|(v, &i)| {
                crate::types::encode(v)
                    .map_err(|e| e.table(&table.name).column(&table.columns[i].name))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self.rows(table, &sql, params).await?.into_iter().next())
    }
}

/// The foreign keys [`LogSource::prepare_log`] has warned of in this process.
static CASCADES_SAID: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

impl LogSource for MySqlSource {
    type Stream = MySqlChangeStream;

    /// A table needs a row key (a primary key, or a UNIQUE index on NOT NULL
    /// columns): the binlog carries whole old rows, but a table without a
    /// key can only be copied at an exact binlog position
    /// ([`LogSource::pin_snapshot`]), which this source does not do yet.
    /// A spatial table ([`crate::schema::refuse_spatial`]) and a MariaDB
    /// system-versioned table ([`crate::schema::refuse_system_versioned`])
    /// are refused.
    async fn check_log_table(&self, table: &TableSchema) -> Result<()> {
        crate::schema::refuse_spatial(table)?;
        let mut conn = self.conn().await?;
        crate::schema::refuse_system_versioned(&mut conn, table).await?;
        drop(conn);
        if table.row_key().is_none() {
            return Err(Error::bad_input(
                "the table has no primary key and no UNIQUE index on NOT NULL columns, so its \
                 streamed changes could be applied twice over its copy: add a primary key, or \
                 replicate the table with `mode: full` or `row_count`",
            )
            .table(&table.name));
        }
        Ok(())
    }

    /// Checks the server (binlog on, ROW format, FULL images, no
    /// compression, the user's privileges), warns of foreign keys whose
    /// actions the binlog never carries ([`crate::schema::cascades`]), and returns the binlog's head
    /// ([`MySqlSource::binlog_head`]): every transaction before it has
    /// committed, so a table copied after this call holds it, and every later
    /// one is in the binlog after the head.
    ///
    /// There is no reader to create on the server (the binlog is the
    /// server's, kept by its own retention), so every call returns the head
    /// anew. The oldest position the binlog still holds would serve as well
    /// by the trait's words, but a table copied now would then replay the
    /// whole retained binlog, written partly against the table's older
    /// shapes, which its current columns cannot decode. Whether a checkpoint
    /// can still be resumed is [`LogSource::resume`]'s to say.
    async fn prepare_log(&self, pipeline: &str, tables: &[TableSchema]) -> Result<Position> {
        self.check_binlog().await?;
        // information_schema must say how each column is logged.
        let arcs: Vec<Arc<TableSchema>> = tables.iter().cloned().map(Arc::new).collect();
        self.known_tables(&arcs).await?;
        let mut conn = self.config.connect("source").await?;
        for c in crate::schema::cascades(&mut conn, tables).await? {
            // Once per process and foreign key, not on every pass.
            let said = format!("{pipeline}\u{0}{}\u{0}{}", c.child, c.constraint);
            if !CASCADES_SAID
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(said)
            {
                continue;
            }
            tracing::warn!(
                pipeline,
                table = %c.child,
                constraint = %c.constraint,
                "the foreign key `{}` of {} has {} towards {}: the server changes those rows \
                 itself and never writes them to the binlog, so the target keeps them as they \
                 were; delete or update the child rows explicitly in the application, or copy \
                 the table again now and then (`siphon sync resync {pipeline} --table {}`)",
                c.constraint,
                c.child,
                c.actions.join(" and "),
                c.parent,
                c.child
            );
        }
        drop(conn);
        let head = self.binlog_head().await?;
        tracing::info!(pipeline, server = %self.server, position = ?head, "binlog ready");
        Ok(head.to_position())
    }

    async fn log_head(&self) -> Result<Position> {
        Ok(self.binlog_head().await?.to_position())
    }

    async fn stream(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        from: &Position,
    ) -> Result<MySqlChangeStream> {
        self.open_binlog(pipeline, tables, from, self.clone()).await
    }

    /// Nothing to drop: a binlog reader leaves nothing on the server.
    async fn drop_log(&self, _pipeline: &str) -> Result<()> {
        Ok(())
    }

    /// `None`: the server keeps binlogs by its own retention, not for siphon.
    async fn retained_log(&self, _pipeline: &str) -> Result<Option<u64>> {
        Ok(None)
    }

    async fn resume(
        &self,
        pipeline: &str,
        from: &Position,
        tables: &[TableSchema],
    ) -> Result<Resume> {
        self.resume_binlog(pipeline, from, tables).await
    }
}
