//! Evolving an existing PostgreSQL target table to a new shape of its source
//! table: renamed columns renamed, added ones added (and their existing rows
//! filled from the source later), widened types widened, columns dropped at
//! the source kept with their values but no longer NOT NULL (rows arrive
//! without them), and changes that cannot be applied safely refused with the
//! statement to run.
//!
//! Which target column holds which source column is kept in
//! `public.siphon_columns`, by the source's column id (PostgreSQL's `attnum`),
//! so a rename is told from a drop and an add even across runs. Columns of a
//! source without column ids (MySQL, MariaDB) are kept there too, by name
//! under a negative id, with the source's declared type the target last took
//! and whether a column added to a table that held rows waits to be filled.
//! Their types are compared with the target's by what PostgreSQL holds: a
//! target column that cannot hold the source's values now is widened when
//! that keeps every value it has; a type the source narrowed or changed since
//! the target last took it (in the log or while siphon was stopped) is
//! refused with the statement to run.

use siphon_core::typemap::{self, Engine};
use siphon_core::{
    Column, DataType, Error, Result, Row, SchemaOptions, TableName, TableSchema, TypeKind,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Transaction};

use super::{PostgresSink, TargetTable};
use crate::conn::{column_list, ident, pg_err, qualified};
use crate::schema::{self, PgTable};
use crate::source::Param;

/// The table of source column ids per target table.
const COLUMNS: &str = "siphon_columns";

/// A source column as the target last took it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    source_id: i64,
    name: String,
    native_type: String,
    key_pos: Option<i32>,
    filled: bool,
}

/// Creates `public.siphon_columns` when missing; first runs that race take turns.
async fn ensure_columns_table(client: &Client) -> Result<()> {
    client
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtext('siphon.{COLUMNS}')); \
             CREATE TABLE IF NOT EXISTS public.{COLUMNS} (tbl text NOT NULL, source_id int8 NOT NULL, \
             name text NOT NULL, native_type text NOT NULL, key_pos int4, filled bool NOT NULL DEFAULT true, \
             PRIMARY KEY (tbl, source_id)); COMMIT"
        ))
        .await
        .map_err(|e| pg_err(e, "creating the siphon_columns table"))
}

async fn known_columns(tx: &Transaction<'_>, tbl: &str) -> Result<Vec<Known>> {
    let rows = tx
        .query(
            &format!(
                "SELECT source_id, name, native_type, key_pos, filled FROM public.{COLUMNS} WHERE tbl = $1"
            ),
            &[&tbl],
        )
        .await
        .map_err(|e| pg_err(e, "reading siphon_columns"))?;
    Ok(rows
        .iter()
        .map(|r| Known {
            source_id: r.get(0),
            name: r.get(1),
            native_type: r.get(2),
            key_pos: r.get(3),
            filled: r.get(4),
        })
        .collect())
}

/// The id under which a column added to a table from a source without column
/// ids waits in `siphon_columns` to be filled: negative, so it never meets a
/// source's id, and the same for the same name (FNV-1a of its name).
fn waiting_id(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    -((h >> 1) as i64) - 1
}

/// A column of PostgreSQL type `native`, as [`Column::widens_to`] compares it.
fn pg_column(native: &str) -> Column {
    Column {
        name: String::new(),
        data_type: DataType::new(typemap::parse_native(Engine::Postgres, native), true),
        native_type: native.to_string(),
        generated: false,
        source_id: None,
    }
}

/// Whether every value of PostgreSQL column `from` fits `to` unchanged:
/// [`Column::widens_to`], and a `char(n)` into a `varchar(m)` of `m >= n`
/// (its padding is not part of the value, as at a MySQL source).
fn pg_widens(from: &Column, to: &Column) -> bool {
    from.widens_to(to)
        || matches!(
            (&from.data_type.kind, &to.data_type.kind),
            (TypeKind::FixedText { len }, TypeKind::Text { max_len: Some(m) }) if m >= len
        )
}

/// A source's declared type as messages show it: a MySQL one without its
/// character set and collation.
fn declared_type(origin: Engine, declared: &str) -> &str {
    match origin {
        Engine::Mysql => typemap::mysql_type_only(declared).trim(),
        _ => declared,
    }
}

/// How a refusal names the other fix: copying the table again. The sink is
/// not told the pipeline's name, so the command is named with what to add.
fn copy_again(table: &TableName) -> String {
    format!(
        "drop the target table and copy it again with `siphon sync resync`, giving the pipeline's \
         name and `--table {table}`"
    )
}

/// Widens target column `column` of table `q` (`target`) from `from` to
/// `ty`, as the source did, and says so in the log.
async fn widen(
    tx: &Transaction<'_>,
    target: &TableName,
    q: &str,
    column: &str,
    from: &str,
    ty: &str,
) -> Result<()> {
    tx.batch_execute(&format!(
        "ALTER TABLE {q} ALTER COLUMN {c} TYPE {ty} USING {c}::{ty}",
        c = ident(column)
    ))
    .await
    .map_err(|e| pg_err(e, "widening a column").table(target).column(column))?;
    tracing::info!(table = %target, column, from, to = %ty, "widened a column on the target as at the source");
    Ok(())
}

/// The error for a change siphon does not make on the target by itself.
fn refused(target: &TableName, column: Option<&str>, what: &str) -> Error {
    let e = Error::bad_input(what.to_string()).table(target);
    match column {
        Some(c) => e.column(c),
        None => e,
    }
}

/// Brings the existing target table `target` (found as `found`) to the shape
/// of `table`, in one transaction, and records the source's column ids.
/// Returns whether the table changed. Columns added to a table that was not
/// `created` just now are recorded as waiting to be filled.
pub(super) async fn evolve(
    client: &mut Client,
    table: &TableSchema,
    schema: &str,
    found: &PgTable,
    options: &SchemaOptions,
    created: bool,
) -> Result<bool> {
    let target = &found.schema.name;
    let ids = !table.columns.is_empty() && table.columns.iter().all(|c| c.source_id.is_some());
    let q = qualified(Some(schema), &table.name.name);
    let tbl = target.key();
    // Columns this prepare adds to rows that a source without column ids
    // logged nowhere: recorded to be filled, when rows can be found by key.
    let waits = !ids
        && !created
        && table.row_key().is_some()
        && table
            .columns
            .iter()
            .any(|c| !c.generated && !found.schema.columns.iter().any(|f| f.name == c.name));
    if !table.columns.is_empty() {
        let exists: bool = client
            .query_one(
                &format!("SELECT to_regclass('public.{COLUMNS}') IS NOT NULL"),
                &[],
            )
            .await
            .map_err(|e| pg_err(e, "reading siphon_columns"))?
            .get(0);
        if !exists {
            ensure_columns_table(client).await?;
        }
    }
    let werr = |e| pg_err(e, "changing the target table").table(target);
    let tx = client.transaction().await.map_err(werr)?;
    let known = match ids {
        true => known_columns(&tx, &tbl).await?,
        false => Vec::new(),
    };
    // A source without column ids: what the target last took of each
    // column, by name; nothing for a table created just now.
    let took: Vec<Known> = match ids || created || table.columns.is_empty() {
        true => Vec::new(),
        false => known_columns(&tx, &tbl)
            .await?
            .into_iter()
            .filter(|k| k.source_id < 0)
            .collect(),
    };
    let took_of = |name: &str| took.iter().find(|k| k.name == name);
    // Columns of a source without ids added now that wait to be filled.
    let mut waiting: Vec<&str> = Vec::new();
    let known_of = |id: Option<i64>| known.iter().find(|k| Some(k.source_id) == id);
    let mut names: Vec<String> = found
        .schema
        .columns
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let mut changed = false;
    let mut unfilled = Vec::new();
    let need_evolve = |column: &str, what: &str| -> Result<()> {
        match options.evolve {
            true => Ok(()),
            false => Err(refused(
                target,
                Some(column),
                &format!("{what}; change the target table alike, or set `schema.evolve: true`"),
            )),
        }
    };

    // Renamed at the source: the same column id under another name.
    for col in &table.columns {
        if names.contains(&col.name) {
            continue;
        }
        let Some(k) = known_of(col.source_id) else {
            continue;
        };
        if k.name == col.name || !names.contains(&k.name) || table.column_index(&k.name).is_some() {
            continue;
        }
        need_evolve(
            &col.name,
            &format!("the source renamed column {} to {}", k.name, col.name),
        )?;
        tx.batch_execute(&format!(
            "ALTER TABLE {q} RENAME COLUMN {} TO {}",
            ident(&k.name),
            ident(&col.name)
        ))
        .await
        .map_err(werr)?;
        tracing::info!(table = %target, from = %k.name, to = %col.name, "renamed a column on the target as at the source");
        for n in names.iter_mut().filter(|n| **n == k.name) {
            *n = col.name.clone();
        }
        changed = true;
    }

    // Added at the source.
    for col in &table.columns {
        if names.contains(&col.name) {
            continue;
        }
        need_evolve(&col.name, "the target table lacks this source column")?;
        let ty = typemap::native_type(Engine::Postgres, table.origin, col);
        tx.batch_execute(&format!(
            "ALTER TABLE {q} ADD COLUMN {} {ty}",
            ident(&col.name)
        ))
        .await
        .map_err(|e| pg_err(e, "adding a column").table(target).column(&col.name))?;
        names.push(col.name.clone());
        if !created && !col.generated {
            unfilled.extend(col.source_id);
        }
        if waits && !col.generated {
            waiting.push(&col.name);
        }
        changed = true;
    }

    // Retyped at the source since the target last took the column.
    for col in &table.columns {
        let Some(k) = known_of(col.source_id) else {
            continue;
        };
        if k.native_type == col.native_type || table.origin != Engine::Postgres {
            continue;
        }
        let Some(j) = found
            .schema
            .columns
            .iter()
            .position(|c| c.name == col.name || c.name == k.name)
        else {
            continue;
        };
        let have = &found.schema.columns[j];
        let ty = typemap::native_type(Engine::Postgres, table.origin, col);
        if have.native_type == ty || col.widens_to(have) {
            // The target column holds every value already.
            continue;
        }
        if !have.widens_to(col) {
            return Err(refused(
                target,
                Some(&col.name),
                &format!(
                    "the source changed column {} from {} to {}, which could lose or refuse values on the target, \
                     so siphon leaves that to you: run `ALTER TABLE {q} ALTER COLUMN {} TYPE {ty} USING {}::{ty}` on \
                     the target, or {}",
                    col.name,
                    have.native_type,
                    ty,
                    ident(&col.name),
                    ident(&col.name),
                    copy_again(&table.name)
                ),
            ));
        }
        need_evolve(
            &col.name,
            &format!("the source widened column {} to {ty}", col.name),
        )?;
        widen(&tx, target, &q, &col.name, &have.native_type, &ty).await?;
        changed = true;
    }

    // Retyped at a source without column ids, matched by name: compared by
    // what PostgreSQL holds, as the module says.
    for col in table.columns.iter().filter(|c| !c.generated && !ids) {
        let Some(have) = found
            .schema
            .columns
            .iter()
            .find(|c| c.name == col.name && !c.generated)
        else {
            continue;
        };
        let ty = typemap::native_type(Engine::Postgres, table.origin, col);
        let (want, held) = (pg_column(&ty), pg_column(&have.native_type));
        if want.data_type.kind == held.data_type.kind {
            continue;
        }
        // The source's type when the target last took it, if it changed since.
        let before = took_of(&col.name).filter(|k| k.native_type != col.native_type);
        let was = before.map(|k| {
            let source = Column {
                data_type: DataType::new(typemap::parse_native(table.origin, &k.native_type), true),
                native_type: k.native_type.clone(),
                ..col.clone()
            };
            pg_column(&typemap::native_type(
                Engine::Postgres,
                table.origin,
                &source,
            ))
        });
        let narrowed = was.as_ref().is_some_and(|w| !pg_widens(w, &want));
        if !narrowed && pg_widens(&want, &held) {
            // The target column holds every value already.
            continue;
        }
        if narrowed || !pg_widens(&held, &want) {
            if before.is_none() {
                // Not the source's doing (the target was made so): as it is.
                continue;
            }
            let verb = match pg_widens(&want, &held) {
                true => "narrowed",
                false => "changed",
            };
            let shown = |t| declared_type(table.origin, t);
            let from = before.map_or(have.native_type.as_str(), |k| shown(&k.native_type));
            return Err(refused(
                target,
                Some(&col.name),
                &format!(
                    "the source {verb} column {} from {from} to {} (the target column is {}), which could \
                     lose or refuse values on the target, so siphon leaves that to you: run `ALTER TABLE {q} \
                     ALTER COLUMN {c} TYPE {ty} USING {c}::{ty}` on the target, or {}",
                    col.name,
                    shown(&col.native_type),
                    have.native_type,
                    copy_again(&table.name),
                    c = ident(&col.name),
                ),
            ));
        }
        need_evolve(
            &col.name,
            &format!(
                "the source widened column {} to {}",
                col.name, col.native_type
            ),
        )?;
        widen(&tx, target, &q, &col.name, &have.native_type, &ty).await?;
        changed = true;
    }

    // Dropped at the source: the target keeps the column and its values, and
    // takes rows without it. Known by the column's id, or, at a source
    // without ids, by the name the target last took it under.
    let by_id = known.iter().filter(|k| {
        !table
            .columns
            .iter()
            .any(|c| c.source_id == Some(k.source_id))
    });
    let by_name = took
        .iter()
        .filter(|k| table.column_index(&k.name).is_none());
    for k in by_id.chain(by_name) {
        let here = found
            .schema
            .columns
            .iter()
            .find(|c| c.name == k.name && !c.data_type.nullable);
        if let Some(c) = here {
            if table.column_index(&c.name).is_none()
                && !found
                    .schema
                    .primary_key
                    .iter()
                    .any(|&i| found.schema.columns[i].name == c.name)
            {
                tx.batch_execute(&format!(
                    "ALTER TABLE {q} ALTER COLUMN {} DROP NOT NULL",
                    ident(&c.name)
                ))
                .await
                .map_err(werr)?;
                tracing::info!(table = %target, column = %c.name, "the source dropped a column: the target keeps it and its values, and takes rows without it");
                changed = true;
            }
        }
    }

    // Another primary key at the source.
    let key_ids: Vec<i64> = table
        .primary_key
        .iter()
        .filter_map(|&i| table.columns[i].source_id)
        .collect();
    let mut was: Vec<&Known> = known.iter().filter(|k| k.key_pos.is_some()).collect();
    was.sort_by_key(|k| k.key_pos);
    let was: Vec<i64> = was.iter().map(|k| k.source_id).collect();
    let source_key: Vec<&str> = table
        .primary_key
        .iter()
        .map(|&i| table.columns[i].name.as_str())
        .collect();
    let target_key: Vec<String> = found
        .schema
        .primary_key
        .iter()
        .map(|&i| names.get(i).cloned().unwrap_or_default())
        .collect();
    if !was.is_empty() && was != key_ids && source_key != target_key {
        let constraint: Option<String> = tx
            .query_opt(
                "SELECT conname::text FROM pg_constraint WHERE conrelid = $1::text::regclass AND contype = 'p'",
                &[&q],
            )
            .await
            .map_err(werr)?
            .map(|r| r.get(0));
        let drop = constraint
            .map(|c| format!("DROP CONSTRAINT {}, ", ident(&c)))
            .unwrap_or_default();
        return Err(refused(
            target,
            source_key.first().copied(),
            &format!(
                "the source's primary key is now ({}), the target's is ({}), and siphon writes rows by key: run \
                 `ALTER TABLE {q} {drop}ADD PRIMARY KEY ({})` on the target, or {}",
                source_key.join(", "),
                target_key.join(", "),
                column_list(source_key.iter().copied()),
                copy_again(&table.name)
            ),
        ));
    }

    if ids {
        let rows: Vec<Known> = table
            .columns
            .iter()
            .enumerate()
            .filter_map(|(i, col)| {
                let id = col.source_id?;
                Some(Known {
                    source_id: id,
                    name: col.name.clone(),
                    native_type: col.native_type.clone(),
                    key_pos: table
                        .primary_key
                        .iter()
                        .position(|&k| k == i)
                        .map(|p| p as i32),
                    filled: !unfilled.contains(&id) && known_of(Some(id)).is_none_or(|k| k.filled),
                })
            })
            .collect();
        // Written again only when it changed: most prepares change nothing.
        let same = rows.len() == known.len()
            && rows
                .iter()
                .all(|r| known_of(Some(r.source_id)).is_some_and(|k| k == r));
        if !same {
            tx.execute(
                &format!("DELETE FROM public.{COLUMNS} WHERE tbl = $1"),
                &[&tbl],
            )
            .await
            .map_err(werr)?;
            let insert = format!(
                "INSERT INTO public.{COLUMNS} (tbl, source_id, name, native_type, key_pos, filled) \
                 VALUES ($1, $2, $3, $4, $5, $6)"
            );
            for r in &rows {
                tx.execute(
                    &insert,
                    &[
                        &tbl,
                        &r.source_id,
                        &r.name,
                        &r.native_type,
                        &r.key_pos,
                        &r.filled,
                    ],
                )
                .await
                .map_err(werr)?;
            }
        }
    }
    if !ids && !table.columns.is_empty() {
        let rows: Vec<Known> = table
            .columns
            .iter()
            .filter(|c| !c.generated)
            .map(|col| Known {
                source_id: waiting_id(&col.name),
                name: col.name.clone(),
                native_type: col.native_type.clone(),
                key_pos: None,
                filled: !waiting.contains(&col.name.as_str())
                    && took_of(&col.name).is_none_or(|k| k.filled),
            })
            .collect();
        // Written again only when it changed, as above.
        let same = rows.len() == took.len() && rows.iter().all(|r| took.contains(r));
        if !same {
            tx.execute(
                &format!("DELETE FROM public.{COLUMNS} WHERE tbl = $1 AND source_id < 0"),
                &[&tbl],
            )
            .await
            .map_err(werr)?;
            let insert = format!(
                "INSERT INTO public.{COLUMNS} (tbl, source_id, name, native_type, key_pos, filled) \
                 VALUES ($1, $2, $3, $4, NULL, $5)"
            );
            for r in &rows {
                tx.execute(
                    &insert,
                    &[&tbl, &r.source_id, &r.name, &r.native_type, &r.filled],
                )
                .await
                .map_err(werr)?;
            }
        }
    }
    tx.commit().await.map_err(werr)?;
    Ok(changed)
}

impl PostgresSink {
    /// See [`siphon_core::Sink::unfilled`].
    pub(super) async fn unfilled_columns(&self, table: &TableSchema) -> Result<Vec<usize>> {
        let client = self.client.lock().await;
        let t = self.target(table)?;
        let exists: Option<bool> = client
            .query_one(
                &format!("SELECT to_regclass('public.{COLUMNS}') IS NOT NULL"),
                &[],
            )
            .await
            .map_err(|e| pg_err(e, "reading siphon_columns"))?
            .get(0);
        if exists != Some(true) {
            return Ok(Vec::new());
        }
        let tbl = target_name(&t, table).key();
        let waiting: Vec<(i64, String)> = client
            .query(
                &format!(
                    "SELECT source_id, name FROM public.{COLUMNS} WHERE tbl = $1 AND NOT filled"
                ),
                &[&tbl],
            )
            .await
            .map_err(|e| pg_err(e, "reading siphon_columns"))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        // By id, or, for a source without ids, by name under a negative id.
        let waits = |c: &siphon_core::Column| match c.source_id {
            Some(id) => waiting.iter().any(|(w, _)| *w == id),
            None => waiting.iter().any(|(w, n)| *w < 0 && *n == c.name),
        };
        Ok(table
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| waits(c))
            .map(|(i, _)| i)
            .collect())
    }

    /// See [`siphon_core::Sink::fill`]: one UPDATE per 1,000 rows, by key.
    pub(super) async fn fill_columns(
        &self,
        table: &TableSchema,
        columns: &[usize],
        rows: Vec<Row>,
        done: bool,
    ) -> Result<()> {
        let t = self.target(table)?;
        let mut client = self.client.lock().await;
        let werr = |e| pg_err(e, &format!("filling added columns of {}", table.name));
        let tx = client.transaction().await.map_err(werr)?;
        if !columns.is_empty() {
            let cols: Vec<usize> = t.key.iter().chain(columns).copied().collect();
            let sets: Vec<String> = columns
                .iter()
                .map(|&i| format!("{c} = v.{c}", c = ident(&t.columns[i])))
                .collect();
            let on: Vec<String> = t
                .key
                .iter()
                .map(|&i| format!("t.{c} = v.{c}", c = ident(&t.columns[i])))
                .collect();
            let alias = column_list(cols.iter().map(|&i| t.columns[i].as_str()));
            for part in rows.chunks(1000) {
                let mut params = Vec::with_capacity(part.len() * cols.len());
                let mut tuples = Vec::with_capacity(part.len());
                for row in part {
                    let mut tuple = Vec::with_capacity(cols.len());
                    for &i in &cols {
                        params.push(Param(&row[i], &t.types[i]));
                        tuple.push(format!("${}::{}", params.len(), t.types[i].name));
                    }
                    tuples.push(format!("({})", tuple.join(", ")));
                }
                let sql = format!(
                    "UPDATE {} t SET {} FROM (VALUES {}) AS v ({alias}) WHERE {}",
                    t.name,
                    sets.join(", "),
                    tuples.join(", "),
                    on.join(" AND ")
                );
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                tx.execute(&sql, &refs).await.map_err(werr)?;
            }
        }
        if done {
            let ids: Vec<i64> = columns
                .iter()
                .filter_map(|&i| table.columns[i].source_id)
                .collect();
            tx.execute(
                &format!(
                    "UPDATE public.{COLUMNS} SET filled = true WHERE tbl = $1 AND source_id = ANY($2)"
                ),
                &[&target_name(&t, table).key(), &ids],
            )
            .await
            .map_err(werr)?;
            // Columns of a source without ids, kept by name.
            let names: Vec<&str> = columns
                .iter()
                .filter(|&&i| table.columns[i].source_id.is_none())
                .map(|&i| table.columns[i].name.as_str())
                .collect();
            if !names.is_empty() {
                tx.execute(
                    &format!(
                        "UPDATE public.{COLUMNS} SET filled = true WHERE tbl = $1 AND source_id < 0 AND name = ANY($2)"
                    ),
                    &[&target_name(&t, table).key(), &names],
                )
                .await
                .map_err(werr)?;
            }
        }
        tx.commit().await.map_err(werr)
    }
}

/// The target table's name as `siphon_columns` keys it.
fn target_name(_t: &TargetTable, table: &TableSchema) -> TableName {
    TableName::new(
        Some(table.name.schema.as_deref().unwrap_or("public")),
        &table.name.name,
    )
}

/// Reads the target table again after it changed.
pub(super) async fn reread(client: &Client, name: &TableName) -> Result<PgTable> {
    schema::find(client, name)
        .await?
        .ok_or_else(|| Error::internal("the target table is missing").table(name))
}
