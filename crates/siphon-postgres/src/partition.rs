//! Partitioned tables: reading a table's partition tree, recreating it on a
//! PostgreSQL target, checking that its partitions can be logged, and saying
//! which selected names are partitions or relations siphon does not copy.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use siphon_core::typemap::Engine;
use siphon_core::{Error, Partition, Partitioning, Result, TableFilter, TableName, TableSchema};
use tokio_postgres::Client;

use crate::conn::{pg_err, qualified};

/// The partition key and partitions of the relation `oid`, or `None` when it
/// is not a partitioned table. Sub-partitioned partitions carry their own.
pub(crate) async fn read(
    client: &Client,
    oid: u32,
    name: &TableName,
) -> Result<Option<Partitioning>> {
    let err = |e| pg_err(e, "reading the partitions").table(name);
    let key: Option<String> = client
        .query_one("SELECT pg_get_partkeydef($1::oid)", &[&oid])
        .await
        .map_err(err)?
        .get(0);
    let Some(key) = key else {
        return Ok(None);
    };
    let rows = client
        .query(
            "SELECT c.oid, c.relname::text, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::oid ORDER BY 2",
            &[&oid],
        )
        .await
        .map_err(err)?;
    let mut partitions = Vec::with_capacity(rows.len());
    for r in rows {
        partitions.push(Partition {
            name: r.get(1),
            bound: r.get(2),
            partitioning: Box::pin(read(client, r.get(0), name)).await?,
        });
    }
    Ok(Some(Partitioning { key, partitions }))
}

/// The `PARTITION BY` clause that ends `CREATE TABLE` for `t` on a PostgreSQL
/// target: empty unless `t` is a partitioned table read from PostgreSQL.
pub(crate) fn partition_by(t: &TableSchema) -> String {
    match (&t.partitioning, t.origin) {
        (Some(p), Engine::Postgres) => format!(" PARTITION BY {}", p.key),
        _ => String::new(),
    }
}

/// The statements that create `t`'s partitions (and theirs, depth first) in
/// `schema`, after `t` itself was created with [`partition_by`]. Each is a
/// plain `CREATE TABLE`: a name already taken by another table fails loudly
/// rather than leave a range without a partition.
pub(crate) fn create_partitions(t: &TableSchema, schema: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(p), Engine::Postgres) = (&t.partitioning, t.origin) {
        partitions_of(&t.name.name, p, schema, &mut out);
    }
    out
}

fn partitions_of(parent: &str, p: &Partitioning, schema: &str, out: &mut Vec<String>) {
    for part in &p.partitions {
        let sub = part
            .partitioning
            .as_ref()
            .map(|s| format!(" PARTITION BY {}", s.key))
            .unwrap_or_default();
        out.push(format!(
            "CREATE TABLE {} PARTITION OF {} {}{sub}",
            qualified(Some(schema), &part.name),
            qualified(Some(schema), parent),
            part.bound
        ));
        if let Some(s) = &part.partitioning {
            partitions_of(&part.name, s, schema, out);
        }
    }
}

/// The upsert of staged rows into a partitioned `target`, returning
/// (inserted, updated) as the sink's other upsert does. PostgreSQL cannot
/// return `xmax` from a partitioned table, so the rows whose key exists are
/// counted first, in the statement's own snapshot (staged keys are unique).
pub(crate) fn merge_sql(target: &str, cols: &str, stage: &str, keys: &str, action: &str) -> String {
    let updates = action.starts_with("UPDATE");
    format!(
        "WITH old AS (SELECT count(*) AS n FROM {target} t JOIN {stage} s USING ({keys})), \
         w AS (INSERT INTO {target} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM {stage} ON CONFLICT ({keys}) \
         DO {action} RETURNING 1) \
         SELECT (SELECT count(*) FROM w) - {}, {} FROM old",
        if updates { "old.n" } else { "0" },
        if updates { "old.n" } else { "0::int8" },
    )
}

/// Creates on an existing partitioned target table the partitions the source
/// has and it lacks (a source that gains a partition each month), when the
/// target is partitioned by the same key. Nothing else on the target changes;
/// rows for a new partition that already sit in the target's default partition
/// (written before the partition existed there) move into it. A partition that
/// cannot be created (its range overlaps one the target has) is warned about
/// once, with the reason.
pub(crate) async fn add_missing(client: &Client, t: &TableSchema, schema: &str) -> Result<()> {
    let (Some(p), Engine::Postgres) = (&t.partitioning, t.origin) else {
        return Ok(());
    };
    let root = qualified(Some(schema), &t.name.name);
    let rows = client
        .query(
            "SELECT c.relname::text, pg_get_partkeydef(c.oid) FROM pg_partition_tree($1::text::regclass) p \
             JOIN pg_class c ON c.oid = p.relid",
            &[&root],
        )
        .await
        .map_err(|e| pg_err(e, "reading the target's partitions").table(&t.name))?;
    let key = rows
        .iter()
        .find(|r| r.get::<_, String>(0) == t.name.name)
        .and_then(|r| r.get::<_, Option<String>>(1));
    if key.as_deref() != Some(p.key.as_str()) {
        return Ok(());
    }
    let have: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
    let mut ddl = Vec::new();
    missing_of(&t.name.name, p, schema, &have, &mut ddl);
    for (parent, stmt) in ddl {
        let mut result = client.batch_execute(&stmt).await;
        if result
            .as_ref()
            .is_err_and(|e| e.code() == Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION))
        {
            result = through_default(client, schema, &parent, &stmt).await;
        }
        if let Err(e) = result {
            let e = pg_err(e, "adding a partition the source has");
            if first_time(&stmt) {
                tracing::warn!(table = %t.name, error = %e, "{stmt} failed: rows for it are written to the default partition, or fail without one; create it on the target");
            }
        }
    }
    Ok(())
}

/// The statements that create the partitions of `p` missing from `have`,
/// with their sub-partitions; the partitions of a partition the target has
/// are looked at in turn.
fn missing_of(
    parent: &str,
    p: &Partitioning,
    schema: &str,
    have: &HashSet<String>,
    out: &mut Vec<(String, String)>,
) {
    for part in &p.partitions {
        if have.contains(&part.name) {
            if let Some(sub) = &part.partitioning {
                missing_of(&part.name, sub, schema, have, out);
            }
            continue;
        }
        let one = Partitioning {
            key: p.key.clone(),
            partitions: vec![part.clone()],
        };
        let mut stmts = Vec::new();
        partitions_of(parent, &one, schema, &mut stmts);
        // One statement, so a sub-partitioned partition is added whole or not at all.
        out.push((parent.to_string(), stmts.join("; ")));
    }
}

/// Runs `stmt`, which adds a partition to `parent`, when rows for the new
/// partition sit in `parent`'s default partition (PostgreSQL then refuses
/// it): in one transaction the default partition's rows are set aside, the
/// partition is added, and the rows are inserted through `parent` again, so
/// each lands where it now belongs.
async fn through_default(
    client: &Client,
    schema: &str,
    parent: &str,
    stmt: &str,
) -> std::result::Result<(), tokio_postgres::Error> {
    let parent = qualified(Some(schema), parent);
    let found = client
        .query_opt(
            "SELECT c.oid::regclass::text,                     (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a                      WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped                        AND a.attgenerated = '')              FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid              WHERE i.inhparent = $1::text::regclass AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'",
            &[&parent],
        )
        .await?;
    let Some(row) = found else {
        return client.batch_execute(stmt).await;
    };
    let (default, cols): (String, String) = (row.get(0), row.get(1));
    let moved = client
        .batch_execute(&format!(
            "BEGIN; \
             CREATE TEMP TABLE siphon_moving ON COMMIT DROP AS SELECT {cols} FROM {default}; \
             DELETE FROM {default}; \
             {stmt}; \
             INSERT INTO {parent} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM siphon_moving; \
             COMMIT"
        ))
        .await;
    if moved.is_err() {
        // Otherwise the connection stays in the failed transaction.
        let _ = client.batch_execute("ROLLBACK").await;
    }
    moved
}

/// The partitions of `t`'s tree that hold rows, with whether each is a foreign
/// table and whether PostgreSQL can log its updates and deletes by key.
async fn leaves(client: &Client, t: &TableName) -> Result<Vec<(TableName, bool, bool)>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, c.relkind = 'f', \
                    c.relreplident IN ('f', 'i') OR c.relreplident = 'd' AND EXISTS \
                      (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) \
             FROM pg_partition_tree($1::text::regclass) p JOIN pg_class c ON c.oid = p.relid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE p.isleaf AND p.level > 0 ORDER BY 1, 2",
            &[&qualified(
                Some(t.schema.as_deref().unwrap_or("public")),
                &t.name,
            )],
        )
        .await
        .map_err(|e| pg_err(e, "reading the partitions").table(t))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                TableName::new(
                    Some(r.get::<_, String>(0).as_str()),
                    r.get::<_, String>(1).as_str(),
                ),
                r.get(2),
                r.get(3),
            )
        })
        .collect())
}

/// Checks that every partition of the partitioned table `t` can be read from
/// the log through it: no foreign partition (its changes are not in this
/// server's log), and a replica identity on each (once published, PostgreSQL
/// refuses UPDATE and DELETE on a partition without one). siphon never changes
/// a source table: the error names the partitions and the statement that fixes
/// them.
pub(crate) async fn check_logged(client: &Client, t: &TableName) -> Result<()> {
    let leaves = leaves(client, t).await?;
    let foreign: Vec<String> = leaves
        .iter()
        .filter(|l| l.1)
        .map(|l| l.0.to_string())
        .collect();
    if !foreign.is_empty() {
        return Err(Error::bad_input(format!(
            "partition {} is a foreign table, whose changes are not in this server's log: use mode `full` for \
             this table, or replicate the foreign server's table",
            foreign.join(", ")
        ))
        .table(t));
    }
    let bare: Vec<&TableName> = leaves.iter().filter(|l| !l.2).map(|l| &l.0).collect();
    if let Some(first) = bare.first() {
        let names: Vec<String> = bare.iter().map(|n| n.to_string()).collect();
        return Err(Error::bad_input(format!(
            "partition {} has no primary key or replica identity, so once published PostgreSQL would refuse \
             UPDATE and DELETE on it: add the primary key to {t} (its partitions inherit it), or run \
             ALTER TABLE {first} REPLICA IDENTITY FULL for each of them",
            names.join(", ")
        ))
        .table(t));
    }
    Ok(())
}

/// Rows of a partitioned table as the statistics estimate them: the sum over
/// its partitions, or `None` while any partition was never analyzed.
pub(crate) async fn estimate_rows(client: &Client, t: &TableName) -> Result<Option<u64>> {
    let row = client
        .query_one(
            "SELECT bool_and(c.reltuples >= 0), sum(GREATEST(c.reltuples, 0))::int8 \
             FROM pg_partition_tree($1::text::regclass) p JOIN pg_class c ON c.oid = p.relid \
             WHERE p.isleaf AND p.level > 0",
            &[&qualified(
                Some(t.schema.as_deref().unwrap_or("public")),
                &t.name,
            )],
        )
        .await
        .map_err(|e| pg_err(e, "estimating rows").table(t))?;
    let analyzed: Option<bool> = row.get(0);
    let n: Option<i64> = row.get(1);
    Ok(match (analyzed, n) {
        (Some(true), Some(n)) if n > 0 => Some(n as u64),
        _ => None,
    })
}

/// Why siphon does not copy a relation the filter names, and what to select
/// instead.
fn reason(name: &TableName, kind: &str, root: Option<&TableName>) -> String {
    match (kind, root) {
        (_, Some(root)) => format!("{name} is a partition of {root}: select {root}"),
        ("v", _) => format!(
            "{name} is a view, which holds no rows of its own: select the tables it reads \
             (`schema.views: true` recreates views on a PostgreSQL target)"
        ),
        ("m", _) => format!(
            "{name} is a materialized view, which siphon does not copy: select the tables it is computed from"
        ),
        _ => format!(
            "{name} is a foreign table, whose rows live on another server: replicate that server's table"
        ),
    }
}

/// Warns about what the filter names that siphon does not copy, one warning
/// per `tables` pattern: partitions whose partitioned table is neither
/// selected (its rows are copied through it) nor excluded, foreign tables and
/// materialized views,
/// and views when a pattern names nothing else. `selected` are the tables
/// discovery returned. Each warning is given once per database and process,
/// not again every pass.
pub(crate) async fn warn_unselected(
    client: &Client,
    filter: &TableFilter,
    selected: &[TableName],
) -> Result<()> {
    let listed = client
        .query(
            "SELECT n.nspname::text, c.relname::text, c.relkind::text, rn.nspname::text, r.relname::text, \
                    current_database()::text \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN LATERAL (SELECT pg_partition_root(c.oid) AS oid) pr ON c.relispartition \
             LEFT JOIN pg_class r ON r.oid = pr.oid LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace \
             WHERE (c.relispartition AND c.relkind IN ('r', 'p', 'f') OR NOT c.relispartition AND c.relkind IN ('v', 'm', 'f')) \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' \
             ORDER BY 1, 2",
            &[],
        )
        .await;
    let rows = match listed {
        Ok(rows) => rows,
        // Before PostgreSQL 12 there is no pg_partition_root: no warning then,
        // rather than no discovery.
        Err(e) => {
            tracing::debug!(error = %pg_err(e, "listing partitions and views"), "not warning about partitions and views");
            return Ok(());
        }
    };
    let excluded = TableFilter {
        include: filter.exclude.clone(),
        exclude: Vec::new(),
    };
    for pattern in &filter.include {
        let one = TableFilter {
            include: vec![pattern.clone()],
            exclude: filter.exclude.clone(),
        };
        let selects_a_table = selected.iter().any(|t| one.matches(t));
        let mut why = Vec::new();
        let mut database = String::new();
        for r in &rows {
            database = r.get(5);
            let name = TableName::new(
                Some(r.get::<_, String>(0).as_str()),
                r.get::<_, String>(1).as_str(),
            );
            if !one.matches(&name) {
                continue;
            }
            let kind: String = r.get(2);
            let root = r
                .get::<_, Option<String>>(4)
                .map(|n| TableName::new(r.get::<_, Option<String>>(3).as_deref(), &n));
            // A partition is copied through its partitioned table, or left out
            // with it when `exclude` names the table.
            let covered = root
                .as_ref()
                .is_some_and(|root| selected.contains(root) || excluded.matches(root));
            let shown = match (&root, kind.as_str()) {
                (Some(_), _) => !covered,
                (None, "v") => !selects_a_table,
                (None, _) => true,
            };
            if shown {
                why.push(reason(&name, &kind, root.as_ref()));
            }
        }
        if why.is_empty() {
            continue;
        }
        let what = if selects_a_table {
            format!("`{pattern}` also names relations siphon does not copy")
        } else {
            format!("`{pattern}` names no table siphon copies")
        };
        let message = format!("{what}: {}", why.join("; "));
        if first_time(&format!("{database}\0{message}")) {
            tracing::warn!(pattern = %pattern, "{message}");
        }
    }
    Ok(())
}

/// True the first time this process sees `key`.
fn first_time(key: &str) -> bool {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    SEEN.get_or_init(Mutex::default)
        .lock()
        .map(|mut s| s.insert(key.to_string()))
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(partitioning: Option<Partitioning>, origin: Engine) -> TableSchema {
        TableSchema {
            name: TableName::new(Some("public"), "m"),
            origin,
            columns: vec![],
            primary_key: vec![],
            unique_keys: vec![],
            indexes: vec![],
            partitioning,
            objects: vec![],
        }
    }

    #[test]
    fn partitions_and_sub_partitions_are_created_under_their_parent() {
        let p = Partitioning {
            key: "RANGE (d)".into(),
            partitions: vec![
                Partition {
                    name: "m_2024".into(),
                    bound: "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')".into(),
                    partitioning: Some(Partitioning {
                        key: "LIST (k)".into(),
                        partitions: vec![Partition {
                            name: "m_2024_a".into(),
                            bound: "FOR VALUES IN ('a')".into(),
                            partitioning: None,
                        }],
                    }),
                },
                Partition {
                    name: "m_other".into(),
                    bound: "DEFAULT".into(),
                    partitioning: None,
                },
            ],
        };
        let t = table(Some(p.clone()), Engine::Postgres);
        assert_eq!(partition_by(&t), " PARTITION BY RANGE (d)");
        assert_eq!(
            create_partitions(&t, "dst"),
            vec![
                r#"CREATE TABLE "dst"."m_2024" PARTITION OF "dst"."m" FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY LIST (k)"#,
                r#"CREATE TABLE "dst"."m_2024_a" PARTITION OF "dst"."m_2024" FOR VALUES IN ('a')"#,
                r#"CREATE TABLE "dst"."m_other" PARTITION OF "dst"."m" DEFAULT"#,
            ]
        );
        // Another engine's partitioning syntax is never used on PostgreSQL.
        let other = table(Some(p), Engine::Sqlite);
        assert_eq!(partition_by(&other), "");
        assert!(create_partitions(&other, "dst").is_empty());
    }
}
