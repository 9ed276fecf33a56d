//! The schema objects of a MySQL/MariaDB source database that a target of the
//! same engine recreates: secondary indexes (unique, composite, prefix,
//! fulltext, spatial), views, stored functions and procedures, and triggers,
//! each a [`SchemaObject`] with origin MySQL.
//!
//! Where they ride: an index and a trigger belong to one table and ride on it.
//! Views, functions and procedures belong to the database, not to a table:
//! they ride on every selected table of their database, so whichever of those
//! tables a pass prepares, the target learns the database's whole current set
//! (and so what was dropped at the source). Definitions are the source's own
//! `SHOW CREATE` text without `DEFINER` (the target's user owns them; `SQL
//! SECURITY` and the other characteristics are kept), with names in the source
//! database left unqualified, so the target creates them in its own database.
//! A routine or trigger keeps the `sql_mode` it was created under: its
//! definition starts with the line `SET SESSION sql_mode = '…'` ([`split_mode`]).
//!
//! Indexes are carried here as whole MySQL index definitions because
//! [`siphon_core::Index`] has no prefix length, direction or index type.
//!
//! How the connector uses it: the source's `discover` ends with
//! [`attach_objects`] on its tables; the sink's `prepare` calls
//! [`drift::reconcile`] (columns) and [`Registry::prepared`] (objects) for
//! each table once the table exists, and its `finish_tables` calls
//! [`Registry::finish`] with its database. The engine prepares every table
//! that a pass leaves alone on the `schema_check_interval` schedule, so idle
//! tables are checked too.

pub mod drift;
pub mod target;

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use siphon_core::typemap::Engine;
use siphon_core::{ObjectKind, Result, SchemaObject, TableName, TableSchema};

use crate::conn::{ident, my_err, qualified};

pub use target::Registry;

/// The first line of a routine's or trigger's definition names the
/// `sql_mode` it runs under.
const MODE_PREFIX: &str = "SET SESSION sql_mode = ";

/// Reads the objects of every database `tables` are in and attaches them as
/// this module says (indexes and triggers to their table, views and routines
/// to every table of their database). Tables without a schema (database) are
/// left alone. Reads the catalog only; never writes.
pub async fn attach_objects(conn: &mut Conn, tables: &mut [TableSchema]) -> Result<()> {
    let mut databases: Vec<String> = tables
        .iter()
        .filter_map(|t| t.name.schema.clone())
        .collect();
    databases.sort();
    databases.dedup();
    for db in databases {
        let names: Vec<String> = tables
            .iter()
            .filter(|t| t.name.schema.as_deref() == Some(db.as_str()))
            .map(|t| t.name.name.clone())
            .collect();
        let objects = read_objects(conn, &db, &names).await?;
        attach(tables, objects);
    }
    Ok(())
}

/// Attaches `objects` (of one database, as [`read_objects`] returns them) to
/// `tables`: an index or trigger to the table it is on (its first
/// `depends_on`), a view, function or procedure to every table of its
/// database. An object of the same kind and name a table carries already is
/// replaced.
pub fn attach(tables: &mut [TableSchema], objects: Vec<SchemaObject>) {
    for o in objects {
        let per_table = matches!(o.kind, ObjectKind::Index | ObjectKind::Trigger);
        for t in tables.iter_mut() {
            let fits = if per_table {
                o.depends_on.first() == Some(&t.name)
            } else {
                t.name.schema == o.schema
            };
            if fits {
                // This module's definition of an index replaces one discovery
                // carried (a prefix index): a target compares indexes in this
                // module's form.
                t.objects
                    .retain(|x| !(x.kind == o.kind && x.name == o.name));
                t.objects.push(o.clone());
            }
        }
    }
}

/// The objects of source database `db`: the secondary indexes and triggers of
/// `tables` (bare names), and every view, function and procedure of the
/// database, in the order a target creates them (indexes, views, functions,
/// procedures, triggers; by name within a kind, triggers by table, timing,
/// event and their order).
pub async fn read_objects(
    conn: &mut Conn,
    db: &str,
    tables: &[String],
) -> Result<Vec<SchemaObject>> {
    let mut out = Vec::new();
    for t in tables {
        out.extend(read_indexes(conn, db, t).await?);
    }
    out.extend(read_views(conn, db).await?);
    out.extend(read_routines(conn, db).await?);
    out.extend(read_triggers(conn, db, tables).await?);
    Ok(out)
}

fn object(kind: ObjectKind, db: &str, name: &str, definition: String) -> SchemaObject {
    SchemaObject {
        kind,
        name: name.to_string(),
        definition,
        origin: Engine::Mysql,
        schema: Some(db.to_string()),
        depends_on: Vec::new(),
        sequence: None,
    }
}

/// The secondary indexes of `db`.`table` as `CREATE … INDEX` statements (the
/// table unqualified). Expression indexes (MySQL 8) are left out.
pub async fn read_indexes(conn: &mut Conn, db: &str, table: &str) -> Result<Vec<SchemaObject>> {
    let defs = index_definitions(conn, db, table).await?;
    Ok(defs
        .into_iter()
        .map(|(name, def)| {
            let mut o = object(ObjectKind::Index, db, &name, def);
            o.depends_on = vec![TableName::new(Some(db), table)];
            o
        })
        .collect())
}

/// The secondary indexes of `db`.`table` by name, each as the statement that
/// creates it on `table` unqualified. Both sides of a comparison read their
/// indexes through this one function, so equal indexes give equal text.
pub(crate) async fn index_definitions(
    conn: &mut Conn,
    db: &str,
    table: &str,
) -> Result<BTreeMap<String, String>> {
    let rows: Vec<Row> = conn
        .exec(
            "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART, INDEX_TYPE, COLLATION \
             FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME <> 'PRIMARY' \
             ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            (db, table),
        )
        .await
        .map_err(|e| my_err(e, &format!("reading the indexes of {db}.{table}")))?;
    struct Found {
        unique: bool,
        kind: String,
        parts: Vec<String>,
        expression: bool,
    }
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    for r in rows {
        let name: String = text(&r, 0);
        let non_unique: i64 = r.get::<Option<i64>, _>(1).flatten().unwrap_or(1);
        let column: Option<String> = r.get::<Option<String>, _>(2).flatten();
        let sub_part: Option<i64> = r.get::<Option<i64>, _>(3).flatten();
        let kind: String = text(&r, 4);
        let desc = r.get::<Option<String>, _>(5).flatten().as_deref() == Some("D");
        let entry = found.entry(name).or_insert(Found {
            unique: non_unique == 0,
            kind,
            parts: Vec::new(),
            expression: false,
        });
        match column {
            Some(c) => {
                let mut part = ident(&c);
                if let Some(n) = sub_part {
                    part.push_str(&format!("({n})"));
                }
                if desc {
                    part.push_str(" DESC");
                }
                entry.parts.push(part);
            }
            None => entry.expression = true,
        }
    }
    Ok(found
        .into_iter()
        .filter(|(_, f)| !f.expression)
        .map(|(name, f)| {
            let head = match (f.kind.as_str(), f.unique) {
                ("FULLTEXT", _) => "CREATE FULLTEXT INDEX",
                ("SPATIAL", _) => "CREATE SPATIAL INDEX",
                (_, true) => "CREATE UNIQUE INDEX",
                (_, false) => "CREATE INDEX",
            };
            let using = match f.kind.as_str() {
                "HASH" => " USING HASH",
                _ => "",
            };
            let def = format!(
                "{head} {}{using} ON {} ({})",
                ident(&name),
                ident(table),
                f.parts.join(", ")
            );
            (name, def)
        })
        .collect())
}

/// A text column of a catalog row, empty when NULL.
fn text(r: &Row, i: usize) -> String {
    match r.as_ref(i) {
        Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(mysql_async::Value::NULL) | None => String::new(),
        Some(other) => other.as_sql(true).trim_matches('\'').to_string(),
    }
}

/// The views of `db`, as `CREATE OR REPLACE` statements without `DEFINER`.
async fn read_views(conn: &mut Conn, db: &str) -> Result<Vec<SchemaObject>> {
    let names: Vec<String> = conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
            (db,),
        )
        .await
        .map_err(|e| my_err(e, &format!("listing the views of {db}")))?;
    let mut out = Vec::new();
    for name in names {
        let sql = format!("SHOW CREATE VIEW {}", qualified(Some(db), &name));
        let row: Option<Row> = conn
            .query_first(&sql)
            .await
            .map_err(|e| my_err(e, &format!("reading view {db}.{name}")))?;
        let Some(row) = row else { continue };
        let create = unqualify(&strip_definer(&text(&row, 1)), db);
        let create = match create.strip_prefix("CREATE ") {
            Some(rest) => format!("CREATE OR REPLACE {rest}"),
            None => create,
        };
        out.push(object(ObjectKind::View, db, &name, create));
    }
    Ok(out)
}

/// The functions and procedures of `db`, each with the `sql_mode` line.
async fn read_routines(conn: &mut Conn, db: &str) -> Result<Vec<SchemaObject>> {
    let list: Vec<(String, String)> = conn
        .exec(
            "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES \
             WHERE ROUTINE_SCHEMA = ? AND ROUTINE_TYPE IN ('FUNCTION', 'PROCEDURE') \
             ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
            (db,),
        )
        .await
        .map_err(|e| my_err(e, &format!("listing the routines of {db}")))?;
    let mut out = Vec::new();
    for (what, name) in list {
        let kind = match what.as_str() {
            "FUNCTION" => ObjectKind::Function,
            _ => ObjectKind::Procedure,
        };
        let sql = format!("SHOW CREATE {what} {}", qualified(Some(db), &name));
        let row: Option<Row> = conn
            .query_first(&sql)
            .await
            .map_err(|e| my_err(e, &format!("reading {} {db}.{name}", what.to_lowercase())))?;
        let Some(row) = row else { continue };
        // (name, sql_mode, Create …, …): the text is NULL without the privilege
        // to see the body.
        let create = text(&row, 2);
        if create.is_empty() {
            out.push(object(
                ObjectKind::NotCarried {
                    reason: "the source user may not read its body (grant SELECT on mysql.proc, \
                             or SHOW_ROUTINE)"
                        .into(),
                },
                db,
                &format!("{} {db}.{name}", what.to_lowercase()),
                String::new(),
            ));
            continue;
        }
        let def = with_mode(&text(&row, 1), &strip_definer(&create));
        out.push(object(kind, db, &name, def));
    }
    Ok(out)
}

/// The triggers on `tables` of `db`, in the order they fire.
async fn read_triggers(conn: &mut Conn, db: &str, tables: &[String]) -> Result<Vec<SchemaObject>> {
    let list: Vec<(String, String)> = conn
        .exec(
            "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS \
             WHERE TRIGGER_SCHEMA = ? \
             ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
            (db,),
        )
        .await
        .map_err(|e| my_err(e, &format!("listing the triggers of {db}")))?;
    let mut out = Vec::new();
    for (name, table) in list.into_iter().filter(|(_, t)| tables.contains(t)) {
        let sql = format!("SHOW CREATE TRIGGER {}", qualified(Some(db), &name));
        let row: Option<Row> = conn
            .query_first(&sql)
            .await
            .map_err(|e| my_err(e, &format!("reading trigger {db}.{name}")))?;
        let Some(row) = row else { continue };
        let def = with_mode(&text(&row, 1), &strip_definer(&text(&row, 2)));
        let mut o = object(ObjectKind::Trigger, db, &name, def);
        o.depends_on = vec![TableName::new(Some(db), &table)];
        out.push(o);
    }
    Ok(out)
}

fn with_mode(mode: &str, create: &str) -> String {
    format!("{MODE_PREFIX}{}\n{create}", crate::conn::literal(mode))
}

/// Splits a definition into the `sql_mode` it runs under (the literal, quoted)
/// and the statement.
pub fn split_mode(definition: &str) -> (Option<&str>, &str) {
    match definition.strip_prefix(MODE_PREFIX) {
        Some(rest) => match rest.split_once('\n') {
            Some((mode, stmt)) => (Some(mode), stmt),
            None => (None, definition),
        },
        None => (None, definition),
    }
}

/// `CREATE … DEFINER=user@host …` without the `DEFINER` clause.
pub fn strip_definer(create: &str) -> String {
    let Some(at) = find_ascii_ci(create, "DEFINER=") else {
        return create.to_string();
    };
    // Only the clause after CREATE [OR REPLACE] [ALGORITHM=…], never a word
    // in the body.
    let head = &create[..at];
    if head.len() > 80 || !head.to_ascii_uppercase().starts_with("CREATE") {
        return create.to_string();
    }
    let rest = &create[at + "DEFINER=".len()..];
    let end = account_end(rest);
    let tail = rest[end..].trim_start();
    format!("{head}{tail}")
}

fn find_ascii_ci(hay: &str, needle: &str) -> Option<usize> {
    hay.to_ascii_uppercase().find(needle)
}

/// Where `user@host` (each part quoted with backticks or quotes, or bare)
/// ends.
fn account_end(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    let part = |mut i: usize| -> usize {
        if i < b.len() && matches!(b[i], b'`' | b'\'' | b'"') {
            let q = b[i];
            i += 1;
            while i < b.len() {
                if b[i] == q {
                    if i + 1 < b.len() && b[i + 1] == q {
                        i += 2;
                        continue;
                    }
                    return i + 1;
                }
                i += 1;
            }
            i
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'@' {
                i += 1;
            }
            i
        }
    };
    i = part(i);
    if i < b.len() && b[i] == b'@' {
        i = part(i + 1);
    }
    i
}

/// `text` with `` `db`. `` qualifications of the source database removed, so
/// names resolve in the target's database.
pub fn unqualify(text: &str, db: &str) -> String {
    text.replace(&format!("{}.", ident(db)), "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definer_is_stripped_and_nothing_else() {
        assert_eq!(
            strip_definer("CREATE DEFINER=`root`@`localhost` PROCEDURE `p`() SELECT 'DEFINER=x'"),
            "CREATE PROCEDURE `p`() SELECT 'DEFINER=x'"
        );
        assert_eq!(
            strip_definer(
                "CREATE ALGORITHM=UNDEFINED DEFINER=`a``b`@`%` SQL SECURITY INVOKER VIEW `v` AS select 1"
            ),
            "CREATE ALGORITHM=UNDEFINED SQL SECURITY INVOKER VIEW `v` AS select 1"
        );
        assert_eq!(
            strip_definer("CREATE DEFINER=root@localhost trigger t before insert on x for each row set @a = 1"),
            "CREATE trigger t before insert on x for each row set @a = 1"
        );
        let body = "CREATE PROCEDURE p() SELECT 1";
        assert_eq!(strip_definer(body), body);
    }

    #[test]
    fn sql_mode_line_round_trips() {
        let d = with_mode(
            "STRICT_TRANS_TABLES",
            "CREATE FUNCTION f() RETURNS int\nRETURN 1",
        );
        assert_eq!(
            split_mode(&d),
            (
                Some("'STRICT_TRANS_TABLES'"),
                "CREATE FUNCTION f() RETURNS int\nRETURN 1"
            )
        );
        assert_eq!(
            split_mode("CREATE VIEW v AS select 1"),
            (None, "CREATE VIEW v AS select 1")
        );
    }

    #[test]
    fn the_source_database_is_unqualified() {
        assert_eq!(
            unqualify("select `src`.`t`.`a` AS `a` from `src`.`t`", "src"),
            "select `t`.`a` AS `a` from `t`"
        );
    }
}
