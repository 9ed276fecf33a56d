//! `strategy: swap` on PostgreSQL: a full load goes into a shadow table made
//! with the target's definition (`LIKE … INCLUDING ALL`, plus its owner,
//! grants, outgoing foreign keys, table comment and storage options), and one
//! transaction drops the target, renames the shadow in its place and gives
//! its indexes and constraints their old names, so readers see the old copy or
//! the new one and never an empty or half-loaded table.
//!
//! A table that views depend on, that foreign keys reference, that has
//! triggers, row security or publication entries, or that is partitioned or a
//! partition, is refused: dropping it would drop or break those.

use std::sync::Arc;

use siphon_core::{Checkpoint, Error, Result, TableName, TableSchema};
use tokio_postgres::{Client, GenericClient};

use super::{schema_of, write_checkpoint, PostgresSink, TargetTable};
use crate::conn::{ident, pg_err, qualified};

/// The longest identifier PostgreSQL keeps.
const MAX_IDENT: usize = 63;

/// The shadow table's name for a target table: `<name>_siphon_new`, or a
/// hashed name when that would be too long.
fn shadow_name(table: &str) -> String {
    let name = format!("{table}_siphon_new");
    if name.len() <= MAX_IDENT {
        name
    } else {
        let h = xxhash_rust::xxh3::xxh3_64(table.as_bytes());
        format!("siphon_new_{h:016x}")
    }
}

/// `'text'` as an SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Rows of one text column.
async fn texts(client: &impl GenericClient, sql: &str, table: &str) -> Result<Vec<String>> {
    let rows = client
        .query(sql, &[&table])
        .await
        .map_err(|e| pg_err(e, "reading the target table's dependants"))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// Why the table cannot be swapped, or `None`. `table` is its quoted name.
async fn refusal(client: &impl GenericClient, table: &str) -> Result<Option<String>> {
    let views = texts(
        client,
        "SELECT DISTINCT v.oid::regclass::text FROM pg_depend d \
         JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class \
         WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass \
         AND d.refobjid = $1::text::regclass AND v.oid <> $1::text::regclass ORDER BY 1",
        table,
    )
    .await?;
    if !views.is_empty() {
        return Ok(Some(format!(
            "views depend on it ({}), and swapping drops the table they read",
            views.join(", ")
        )));
    }
    let fks = texts(
        client,
        "SELECT conname || ' on ' || conrelid::regclass::text FROM pg_constraint \
         WHERE contype = 'f' AND confrelid = $1::text::regclass ORDER BY 1",
        table,
    )
    .await?;
    if !fks.is_empty() {
        return Ok(Some(format!(
            "foreign keys reference it ({}), and swapping drops the table they reference",
            fks.join(", ")
        )));
    }
    let other = texts(
        client,
        "SELECT CASE WHEN c.relkind = 'p' THEN 'it is a partitioned table' \
                     WHEN c.relispartition THEN 'it is a partition of another table' \
                     WHEN c.relrowsecurity THEN 'it has row level security' END \
         FROM pg_class c WHERE c.oid = $1::text::regclass \
           AND (c.relkind = 'p' OR c.relispartition OR c.relrowsecurity) \
         UNION ALL \
         SELECT 'it has triggers (' || string_agg(tgname, ', ') || ') a swap would not carry' \
         FROM pg_trigger WHERE tgrelid = $1::text::regclass AND NOT tgisinternal HAVING count(*) > 0 \
         UNION ALL \
         SELECT 'publications list it (' || string_agg(p.pubname, ', ') || ') and would lose it' \
         FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid \
         WHERE r.prrelid = $1::text::regclass HAVING count(*) > 0",
        table,
    )
    .await?;
    Ok(other.into_iter().next())
}

/// Statements that give the shadow what `LIKE … INCLUDING ALL` leaves out:
/// the owner, grants, the table comment, storage options and replica
/// identity `full`.
async fn carry_over(client: &Client, table: &str, shadow: &str) -> Result<Vec<String>> {
    let row = client
        .query_one(
            "SELECT pg_get_userbyid(c.relowner)::text, obj_description(c.oid, 'pg_class'), \
                    array_to_string(c.reloptions, ', '), c.relreplident::text \
             FROM pg_class c WHERE c.oid = $1::text::regclass",
            &[&table],
        )
        .await
        .map_err(|e| pg_err(e, "reading the target table's definition"))?;
    let mut out = vec![format!(
        "ALTER TABLE {shadow} OWNER TO {}",
        ident(&row.get::<_, String>(0))
    )];
    if let Some(c) = row.get::<_, Option<String>>(1) {
        out.push(format!("COMMENT ON TABLE {shadow} IS {}", literal(&c)));
    }
    if let Some(o) = row.get::<_, Option<String>>(2).filter(|o| !o.is_empty()) {
        out.push(format!("ALTER TABLE {shadow} SET ({o})"));
    }
    if row.get::<_, String>(3) == "f" {
        out.push(format!("ALTER TABLE {shadow} REPLICA IDENTITY FULL"));
    }
    let grants = client
        .query(
            "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)::text) END, \
                    a.privilege_type, a.is_grantable \
             FROM pg_class c, aclexplode(c.relacl) a \
             WHERE c.oid = $1::text::regclass AND a.grantee <> c.relowner",
            &[&table],
        )
        .await
        .map_err(|e| pg_err(e, "reading the target table's grants"))?;
    for g in grants {
        out.push(format!(
            "GRANT {} ON {shadow} TO {}{}",
            g.get::<_, String>(1),
            g.get::<_, String>(0),
            if g.get::<_, bool>(2) {
                " WITH GRANT OPTION"
            } else {
                ""
            }
        ));
    }
    Ok(out)
}

impl PostgresSink {
    /// See [`siphon_core::Sink::swap_refusal`].
    pub(super) async fn refuse_swap(&self, table: &TableSchema) -> Result<Option<String>> {
        let t = self.target(table)?;
        let client = self.client.lock().await;
        refusal(&*client, &t.name).await
    }

    /// See [`siphon_core::Sink::open_shadow`].
    pub(super) async fn shadow_open(
        &self,
        table: &TableSchema,
        resume: Option<&TableName>,
    ) -> Result<(TableSchema, bool)> {
        let t = self.target(table)?;
        let schema = schema_of(table);
        let name = shadow_name(&table.name.name);
        let shadow_q = qualified(Some(&schema), &name);
        let client = self.client.lock().await;
        let exists = client
            .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&shadow_q])
            .await
            .map_err(|e| pg_err(e, "looking for the shadow table").table(&table.name))?
            .get::<_, bool>(0);
        let resumed = exists && resume.is_some_and(|r| r.name == name);
        if !resumed {
            let persistence = client
                .query_one(
                    "SELECT relpersistence::text FROM pg_class WHERE oid = $1::text::regclass",
                    &[&t.name],
                )
                .await
                .map_err(|e| pg_err(e, "reading the target table").table(&table.name))?
                .get::<_, String>(0);
            let unlogged = if persistence == "u" { "UNLOGGED " } else { "" };
            let mut ddl = vec![
                format!("DROP TABLE IF EXISTS {shadow_q}"),
                format!(
                    "CREATE {unlogged}TABLE {shadow_q} (LIKE {} INCLUDING ALL)",
                    t.name
                ),
            ];
            ddl.extend(carry_over(&client, &t.name, &shadow_q).await?);
            let sql = ddl.join(";\n");
            client
                .batch_execute(&format!("BEGIN;\n{sql};\nCOMMIT"))
                .await
                .map_err(|e| pg_err(e, "creating the shadow table").table(&table.name))?;
        }
        let mut shadow = table.clone();
        shadow.name = TableName::new(table.name.schema.as_deref(), &name);
        let st = TargetTable {
            name: shadow_q,
            ..TargetTable::clone(&t)
        };
        self.tables
            .lock()
            .map_err(|_| Error::internal("table cache poisoned"))?
            .insert(shadow.name.clone(), Arc::new(st));
        Ok((shadow, resumed))
    }

    /// See [`siphon_core::Sink::drop_shadow`].
    pub(super) async fn shadow_drop(&self, shadow: &TableName) -> Result<()> {
        let schema = shadow.schema.clone().unwrap_or_else(|| "public".into());
        let q = qualified(Some(&schema), &shadow.name);
        let client = self.client.lock().await;
        client
            .batch_execute(&format!("DROP TABLE IF EXISTS {q}"))
            .await
            .map_err(|e| pg_err(e, "dropping the shadow table").table(shadow))?;
        self.forget(shadow);
        Ok(())
    }

    fn forget(&self, table: &TableName) {
        if let Ok(mut m) = self.tables.lock() {
            m.remove(table);
        }
        if let Ok(mut m) = self.native_copy.lock() {
            m.remove(table);
        }
    }

    /// See [`siphon_core::Sink::swap_in`].
    pub(super) async fn shadow_swap_in(
        &self,
        table: &TableSchema,
        shadow: &TableSchema,
        checkpoint: &Checkpoint,
    ) -> Result<u64> {
        let t = self.target(table)?;
        let s = self.target(shadow)?;
        let schema = schema_of(table);
        let mut client = self.client.lock().await;
        let err = |e| pg_err(e, "swapping the new copy in").table(&table.name);
        // Work that needs no lock on the target: statistics and the foreign
        // keys the target has to other tables, checked against the new rows.
        // Those a resumed swap added already are left as they are.
        let fks = client
            .query(
                "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint o \
                 WHERE contype = 'f' AND conrelid = $1::text::regclass AND NOT EXISTS \
                   (SELECT 1 FROM pg_constraint n WHERE n.conrelid = $2::text::regclass AND n.conname = o.conname)",
                &[&t.name, &s.name],
            )
            .await
            .map_err(err)?;
        for fk in &fks {
            let add = format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {}",
                s.name,
                ident(&fk.get::<_, String>(0)),
                fk.get::<_, String>(1)
            );
            client.batch_execute(&add).await.map_err(err)?;
        }
        client
            .batch_execute(&format!("ANALYZE {}", s.name))
            .await
            .map_err(err)?;
        let tx = client.transaction().await.map_err(err)?;
        lock_for_swap(&tx, &t.name)
            .await
            .map_err(|e| e.table(&table.name))?;
        if let Some(why) = refusal(&tx, &t.name).await? {
            return Err(Error::bad_input(format!(
                "the new copy was loaded but cannot be swapped in: {why}; fix that, or set `strategy: truncate`"
            ))
            .table(&table.name));
        }
        let replaced = tx
            .query_one(&format!("SELECT count(*) FROM {}", t.name), &[])
            .await
            .map_err(err)?
            .get::<_, i64>(0) as u64;
        let mut steps = Vec::new();
        // Sequences owned by the old table's columns (serial) move to the new one;
        // identity sequences are new, and continue from the old ones' values.
        let owned = tx
            .query(
                "SELECT s.oid::regclass::text, a.attname::text, d.deptype::text, s.relname::text, \
                        coalesce(pg_get_serial_sequence($2::text, a.attname), ''), \
                        format_type(ps.seqtypid, NULL) FROM pg_depend d \
                 JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
                 JOIN pg_sequence ps ON ps.seqrelid = s.oid \
                 JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
                 WHERE d.classid = 'pg_class'::regclass AND d.refobjid = $1::text::regclass \
                   AND d.deptype IN ('a', 'i')",
                &[&t.name, &s.name],
            )
            .await
            .map_err(err)?;
        let mut seq_renames = Vec::new();
        for o in &owned {
            let (seq, col, kind) = (
                o.get::<_, String>(0),
                o.get::<_, String>(1),
                o.get::<_, String>(2),
            );
            let (old_name, new_seq) = (o.get::<_, String>(3), o.get::<_, String>(4));
            if kind == "i" && !new_seq.is_empty() {
                // `LIKE … INCLUDING ALL` makes every identity sequence bigint
                // (PostgreSQL 15), whatever the column's type: give it the old one's.
                steps.push(format!(
                    "ALTER SEQUENCE {new_seq} AS {}",
                    o.get::<_, String>(5)
                ));
                // The new identity sequence takes the old one's name once it is gone.
                seq_renames.push(format!(
                    "ALTER SEQUENCE {new_seq} RENAME TO {}",
                    ident(&old_name)
                ));
            }
            if kind == "a" {
                steps.push(format!(
                    "ALTER SEQUENCE {seq} OWNED BY {}.{}",
                    s.name,
                    ident(&col)
                ));
            } else {
                steps.push(format!(
                    "SELECT setval(pg_get_serial_sequence({}, {}), v, true) \
                     FROM pg_sequence_last_value({}::regclass) v WHERE v IS NOT NULL",
                    literal(&s.name),
                    literal(&col),
                    literal(&seq)
                ));
            }
        }
        // Index and constraint names come back after the rename, matched by
        // definition.
        let index_sql = "SELECT ic.relname::text, regexp_replace(pg_get_indexdef(i.indexrelid), '^.* USING ', ''), \
                                coalesce(c.conname::text, '') \
                         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
                         LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid \
                         WHERE i.indrelid = $1::text::regclass ORDER BY 1";
        let old_ix = tx.query(index_sql, &[&t.name]).await.map_err(err)?;
        let new_ix = tx.query(index_sql, &[&s.name]).await.map_err(err)?;
        let mut renames = Vec::new();
        let mut taken = vec![false; new_ix.len()];
        for o in &old_ix {
            let def = o.get::<_, String>(1);
            let Some(j) =
                (0..new_ix.len()).find(|&j| !taken[j] && new_ix[j].get::<_, String>(1) == def)
            else {
                continue;
            };
            taken[j] = true;
            let (old_name, old_con) = (o.get::<_, String>(0), o.get::<_, String>(2));
            let (new_name, new_con) =
                (new_ix[j].get::<_, String>(0), new_ix[j].get::<_, String>(2));
            renames.push(if !old_con.is_empty() && !new_con.is_empty() {
                format!(
                    "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
                    t.name,
                    ident(&new_con),
                    ident(&old_con)
                )
            } else {
                format!(
                    "ALTER INDEX {} RENAME TO {}",
                    qualified(Some(&schema), &new_name),
                    ident(&old_name)
                )
            });
        }
        steps.push(format!("DROP TABLE {}", t.name));
        steps.push(format!(
            "ALTER TABLE {} RENAME TO {}",
            s.name,
            ident(&table.name.name)
        ));
        steps.extend(renames);
        steps.extend(seq_renames);
        for step in &steps {
            tx.batch_execute(step).await.map_err(err)?;
        }
        write_checkpoint(&tx, &self.write_checkpoint, checkpoint).await?;
        tx.commit().await.map_err(err)?;
        drop(client);
        // Statements prepared on the old table are planned again on the new one;
        // the shadow's are gone with its name.
        self.forget(&shadow.name);
        if let Ok(mut m) = self.native_copy.lock() {
            m.remove(&table.name);
        }
        self.staging.clear();
        Ok(replaced)
    }
}

/// How long one request for the swap's lock may wait. A request that waits
/// queues every later reader of the table behind it, so it gives up soon and
/// lets them in before asking again.
const LOCK_TRY: &str = "2s";

/// How many times the swap asks for its lock before it gives up (about five
/// minutes of tries); the loaded shadow stays, and the next run swaps it in.
const LOCK_TRIES: u32 = 100;

/// Takes the exclusive lock the swap needs on `table` inside `tx`, without
/// stalling the table's readers behind a long transaction that holds it: each
/// request waits at most [`LOCK_TRY`], and between requests readers go on.
async fn lock_for_swap(tx: &tokio_postgres::Transaction<'_>, table: &str) -> Result<()> {
    let err = |e| pg_err(e, "locking the table to swap the new copy in");
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{LOCK_TRY}'; SAVEPOINT siphon_swap_lock"
    ))
    .await
    .map_err(err)?;
    let lock = format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE");
    for attempt in 1..=LOCK_TRIES {
        match tx.batch_execute(&lock).await {
            Ok(()) => {
                tx.batch_execute("RELEASE SAVEPOINT siphon_swap_lock; SET LOCAL lock_timeout = 0")
                    .await
                    .map_err(err)?;
                return Ok(());
            }
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT siphon_swap_lock")
                    .await
                    .map_err(err)?;
                if attempt == 1 || attempt % 10 == 0 {
                    tracing::warn!(
                        table,
                        attempt,
                        "the new copy is loaded; waiting for other transactions on the table to end before swapping it in"
                    );
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(e) => return Err(err(e)),
        }
    }
    Err(Error::new(
        siphon_core::ErrorKind::Database,
        format!(
            "other transactions held {table} through {LOCK_TRIES} tries to swap the new copy in; \
             the new copy stays loaded and the next run swaps it in (see pg_stat_activity for long transactions)"
        ),
    ))
}
