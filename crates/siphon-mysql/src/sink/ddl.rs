//! Target tables: created from the source's shape with mapped types, keys
//! and indexes, and given the columns the source gained since.
//!
//! Types come from [`siphon_core::typemap`]: verbatim from MySQL and MariaDB,
//! mapped from other engines. Key columns from another engine get two
//! adjustments, since InnoDB keys hold at most 3,072 bytes and compare text by
//! collation: text or bytes without a bound (or with one too long for the key)
//! become `varchar(N)` / `varbinary(N)` with N what the key can hold (768
//! characters for a one-column text key), and text key columns compare byte
//! for byte with trailing spaces counted (`utf8mb4_nopad_bin` on MariaDB,
//! `utf8mb4_0900_bin` on MySQL), as PostgreSQL compares them, so two source
//! keys that differ only in case stay two rows. A longer value in such a
//! column is refused with an error naming the table and column.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use siphon_core::typemap::{self, Engine};
use siphon_core::{Error, ObjectKind, Result, SchemaOptions, TableSchema, TypeKind};

use super::encode::FieldMode;
use super::{target_name, TargetTable};
use crate::conn::{column_list, ident, my_err, Flavor, Server};

/// InnoDB's largest key, in bytes (`innodb_large_prefix`, DYNAMIC rows).
const KEY_BYTES: u32 = 3072;

/// Bytes a key counts for a column that is neither text nor bytes.
const OTHER_KEY_BYTES: u32 = 16;

/// Characters of an index prefix on a text or blob column of a non-unique index.
const INDEX_PREFIX: u32 = 255;

/// A column of the target table as found.
#[derive(Debug, Clone)]
struct Found {
    name: String,
    column_type: String,
    generated: bool,
    auto_increment: bool,
}

/// A target column as `information_schema.COLUMNS` describes it. MySQL 8
/// marks a column with an expression default (`DEFAULT CURRENT_TIMESTAMP`)
/// `DEFAULT_GENERATED`: written like any other, unlike a generated column.
fn found(name: String, column_type: &str, extra: &str) -> Found {
    Found {
        name,
        column_type: column_type.to_ascii_lowercase(),
        generated: crate::schema::is_generated(extra),
        auto_increment: extra.to_ascii_uppercase().contains("AUTO_INCREMENT"),
    }
}

/// Reads the target table's columns; empty when it does not exist.
async fn find(conn: &mut Conn, database: &str, table: &str) -> Result<Vec<Found>> {
    let rows: Vec<(String, String, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE, EXTRA FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (database, table),
        )
        .await
        .map_err(|e| my_err(e, "reading the target table's columns"))?;
    Ok(rows
        .into_iter()
        .map(|(name, column_type, extra)| found(name, &column_type, &extra))
        .collect())
}

/// Creates or evolves the target table of `table` in `database` and returns
/// how rows are written to it.
pub(super) async fn prepare(
    conn: &mut Conn,
    database: &str,
    server: &Server,
    table: &TableSchema,
    options: &SchemaOptions,
) -> Result<TargetTable> {
    let name = target_name(database, table);
    let mut found = find(conn, database, &table.name.name).await?;
    if found.is_empty() {
        if !options.create {
            return Err(Error::bad_input(format!(
                "the target table {name} does not exist; create it or set `schema.create: true`"
            ))
            .table(&table.name));
        }
        let sql = create_sql(&name, table, server.flavor, options.indexes);
        conn.query_drop(&sql)
            .await
            .map_err(|e| my_err(e, &format!("creating {name}")).table(&table.name))?;
        tracing::info!(table = %table.name, target = %name, "created the target table");
        found = find(conn, database, &table.name.name).await?;
    } else {
        let missing: Vec<usize> = table
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| !found.iter().any(|f| f.name.eq_ignore_ascii_case(&c.name)))
            .map(|(i, _)| i)
            .collect();
        if !missing.is_empty() {
            if !options.evolve {
                let first = &table.columns[missing[0]].name;
                return Err(Error::bad_input(format!(
                    "the target table {name} lacks source column {first}; add it on the target, or \
                     set `schema.evolve: true`"
                ))
                .table(&table.name)
                .column(first));
            }
            let adds: Vec<String> = missing
                .iter()
                .map(|&i| format!("ADD COLUMN {}", column_sql(table, i, server.flavor, None)))
                .collect();
            conn.query_drop(format!("ALTER TABLE {name} {}", adds.join(", ")))
                .await
                .map_err(|e| my_err(e, &format!("adding columns to {name}")).table(&table.name))?;
            for &i in &missing {
                tracing::info!(table = %table.name, column = %table.columns[i].name, "added a column on the target as at the source");
            }
            found = find(conn, database, &table.name.name).await?;
        }
        if options.evolve && gain_auto_increment(conn, &name, server, table, &found).await {
            found = find(conn, database, &table.name.name).await?;
        }
        if options.evolve && widen(conn, &name, server, table, &found).await? {
            found = find(conn, database, &table.name.name).await?;
        }
    }
    let mut columns = Vec::with_capacity(table.columns.len());
    let mut write = Vec::new();
    let mut modes = Vec::new();
    let mut json = Vec::new();
    for (i, col) in table.columns.iter().enumerate() {
        let f = found
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(&col.name))
            .ok_or_else(|| Error::internal("a target column vanished").table(&table.name))?;
        if !f.generated {
            write.push(i);
        }
        columns.push(f.name.clone());
        let bytes = matches!(col.data_type.kind, TypeKind::Bytes { .. })
            || [
                "binary",
                "varbinary",
                "blob",
                "tinyblob",
                "mediumblob",
                "longblob",
            ]
            .contains(&f.column_type.split('(').next().unwrap_or(""));
        modes.push(if f.column_type.starts_with("bit") && !bytes {
            FieldMode::Bits
        } else if bytes {
            FieldMode::Hex
        } else {
            FieldMode::Plain
        });
        json.push(f.column_type == "json");
    }
    Ok(TargetTable {
        name,
        columns,
        key: table.row_key().unwrap_or_default().to_vec(),
        write,
        modes,
        json,
    })
}

/// Widens the columns of the existing target table `name` whose source column
/// (from another engine) was widened since (`integer` to `bigint`, a longer
/// `varchar`, a larger `numeric` precision): `ALTER TABLE … MODIFY COLUMN` to
/// the type the table would be created with now, when every value of the
/// target's type fits it. Columns in a key or index are left alone (their
/// type is fitted to the key), and so are MySQL sources, whose column changes
/// are followed by the schema check. Returns whether it changed anything.
async fn widen(
    conn: &mut Conn,
    name: &str,
    server: &Server,
    table: &TableSchema,
    found: &[Found],
) -> Result<bool> {
    use crate::objects::drift::{normalize, widens};
    if table.origin == Engine::Mysql {
        return Ok(false);
    }
    let mut modify = Vec::new();
    for (i, col) in table.columns.iter().enumerate() {
        let indexed = table.primary_key.contains(&i)
            || table
                .indexes
                .iter()
                .any(|ix| ix.columns.contains(&col.name));
        let Some(f) = found
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(&col.name))
        else {
            continue;
        };
        if indexed || f.generated {
            continue;
        }
        let have = normalize(&f.column_type);
        let want = normalize(&typemap::native_type(Engine::Mysql, table.origin, col));
        if have != want && widens(&have, &want) == Some(true) {
            modify.push((i, have, want));
        }
    }
    if modify.is_empty() {
        return Ok(false);
    }
    let parts: Vec<String> = modify
        .iter()
        .map(|&(i, _, _)| {
            format!(
                "MODIFY COLUMN {}",
                column_sql(table, i, server.flavor, None)
            )
        })
        .collect();
    conn.query_drop(format!("ALTER TABLE {name} {}", parts.join(", ")))
        .await
        .map_err(|e| my_err(e, &format!("widening columns of {name}")).table(&table.name))?;
    for (i, have, want) in &modify {
        tracing::info!(table = %table.name, column = %table.columns[*i].name, from = %have, to = %want, "widened a column on the target as at the source");
    }
    Ok(true)
}

/// Makes `AUTO_INCREMENT` a column of the existing target table `name` that a
/// MySQL source made so since the table was created (`ALTER TABLE … MODIFY id
/// … AUTO_INCREMENT` at the source, which the change stream carries on
/// without a new shape). Only a column leading the primary key or a unique
/// key, which the target table holds since it was created; the session's
/// `NO_AUTO_VALUE_ON_ZERO` keeps a 0 id as it is. A failure is a warning: the
/// rows replicate as before. Returns whether the table changed.
async fn gain_auto_increment(
    conn: &mut Conn,
    name: &str,
    server: &Server,
    table: &TableSchema,
    found: &[Found],
) -> bool {
    if table.origin != Engine::Mysql || found.iter().any(|f| f.auto_increment) {
        return false;
    }
    let Some(i) = (0..table.columns.len()).find(|&i| {
        keeps_auto_increment(table, i, false)
            && found
                .iter()
                .any(|f| f.name.eq_ignore_ascii_case(&table.columns[i].name) && !f.generated)
    }) else {
        return false;
    };
    let column = &table.columns[i].name;
    let sql = format!(
        "ALTER TABLE {name} MODIFY COLUMN {} AUTO_INCREMENT",
        column_sql(table, i, server.flavor, None)
    );
    match conn.query_drop(&sql).await {
        Ok(()) => {
            tracing::info!(table = %table.name, column = %column, "made the column AUTO_INCREMENT on the target as at the source");
            true
        }
        Err(e) => {
            tracing::warn!(table = %table.name, column = %column, error = %e, "could not make the column AUTO_INCREMENT on the target as at the source");
            false
        }
    }
}

/// The keys whose columns must fit InnoDB's key limit: the primary key and
/// the unique keys.
fn keys(table: &TableSchema) -> Vec<&[usize]> {
    let mut keys: Vec<&[usize]> = Vec::new();
    if !table.primary_key.is_empty() {
        keys.push(&table.primary_key);
    }
    keys.extend(table.unique_keys.iter().map(Vec::as_slice));
    keys
}

/// Whether a kind is text or bytes, which keys hold by length.
fn sized(kind: &TypeKind) -> bool {
    matches!(
        kind,
        TypeKind::Text { .. }
            | TypeKind::FixedText { .. }
            | TypeKind::Bytes { .. }
            | TypeKind::Engine { .. }
            | TypeKind::Enum { .. }
            | TypeKind::Json
    )
}

/// The length a column of another engine gets in keys: the bytes left for
/// each sized column of the tightest key it is in; `None` outside keys.
fn key_room(table: &TableSchema, i: usize) -> Option<u32> {
    keys(table)
        .into_iter()
        .filter(|k| k.contains(&i))
        .map(|k| {
            let n = k
                .iter()
                .filter(|&&j| sized(&table.columns[j].data_type.kind))
                .count()
                .max(1) as u32;
            let others = (k.len() as u32).saturating_sub(n) * OTHER_KEY_BYTES;
            KEY_BYTES.saturating_sub(others) / n
        })
        .min()
}

/// A column's definition: name, type (adjusted for keys, see the module
/// doc), collation and nullability. `room` overrides the key room.
fn column_sql(table: &TableSchema, i: usize, flavor: Flavor, room: Option<u32>) -> String {
    let col = &table.columns[i];
    let mut ty = typemap::native_type(Engine::Mysql, table.origin, col);
    let room = room.or_else(|| key_room(table, i));
    if let (Some(room), true) = (room, table.origin != Engine::Mysql) {
        let chars = (room / 4).max(1);
        use TypeKind as K;
        match &col.data_type.kind {
            K::Text { max_len } if max_len.is_none_or(|n| n > chars) => {
                ty = format!("varchar({chars})")
            }
            K::Engine { .. } | K::Json => ty = format!("varchar({chars})"),
            K::Enum { labels, .. } if labels.is_empty() => ty = format!("varchar({chars})"),
            K::Bytes { max_len } if max_len.is_none_or(|n| n > room) => {
                ty = format!("varbinary({room})")
            }
            _ => {}
        }
        let lower = ty.to_ascii_lowercase();
        if lower.starts_with("varchar") || lower.starts_with("char") {
            let collation = match flavor {
                Flavor::MariaDb => "utf8mb4_nopad_bin",
                Flavor::MySql => "utf8mb4_0900_bin",
            };
            ty = format!("{ty} CHARACTER SET utf8mb4 COLLATE {collation}");
        }
    }
    if room.is_none() && table.origin != Engine::Mysql && flavor == Flavor::MariaDb {
        // A unique index that is no key here (the table has a primary key)
        // stays whole on MariaDB, by hash, on the column's own type: its text
        // compares byte for byte too, as at the source, so values differing
        // only in case or trailing spaces are no duplicates.
        let in_unique = table
            .indexes
            .iter()
            .any(|ix| ix.unique && ix.columns.contains(&col.name));
        let text = matches!(
            col.data_type.kind,
            TypeKind::Text { .. } | TypeKind::FixedText { .. }
        );
        let lower = ty.to_ascii_lowercase();
        let textual =
            lower.contains("text") || lower.starts_with("varchar") || lower.starts_with("char");
        if in_unique && text && textual && !lower.contains(" collate ") {
            ty = format!("{ty} CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin");
        }
    }
    let null = if col.data_type.nullable && !table.primary_key.contains(&i) {
        "NULL"
    } else {
        "NOT NULL"
    };
    match crate::schema::column_default(table, &col.name) {
        Some(default) => format!("{} {ty} {null} {default}", ident(&col.name)),
        None => format!("{} {ty} {null}", ident(&col.name)),
    }
}

/// Whether a declared MySQL type needs a prefix length in an index.
fn needs_prefix(declared: &str) -> bool {
    let base = declared
        .to_ascii_lowercase()
        .split(['(', ' '])
        .next()
        .unwrap_or("")
        .to_string();
    matches!(
        base.as_str(),
        "text"
            | "tinytext"
            | "mediumtext"
            | "longtext"
            | "blob"
            | "tinyblob"
            | "mediumblob"
            | "longblob"
            | "json"
    )
}

/// An index name as MySQL takes it: at most 64 characters.
fn index_name(name: &str) -> String {
    name.chars().take(64).collect()
}

/// The parts of a unique index as [`crate::objects`] and [`crate::schema`]
/// write its definition (`` CREATE UNIQUE INDEX `n` ON `t` (`a`(10), `b`) ``):
/// each part's column and its text (`` `a`(10) ``). `None` for another kind
/// of index or a definition not of that form.
fn unique_index_parts(definition: &str) -> Option<Vec<(String, String)>> {
    /// An identifier in backticks at the start of `s`: its name and the rest.
    fn quoted(s: &str) -> Option<(String, &str)> {
        let mut rest = s.strip_prefix('`')?;
        let mut name = String::new();
        loop {
            let end = rest.find('`')?;
            name.push_str(&rest[..end]);
            rest = &rest[end + 1..];
            match rest.strip_prefix('`') {
                Some(more) => {
                    name.push('`');
                    rest = more;
                }
                None => return Some((name, rest)),
            }
        }
    }
    let rest = definition.strip_prefix("CREATE UNIQUE INDEX ")?;
    let (_, rest) = quoted(rest)?;
    let rest = rest.strip_prefix(" USING HASH").unwrap_or(rest);
    let rest = rest.strip_prefix(" ON ")?;
    let (_, rest) = quoted(rest)?;
    let mut rest = rest.strip_prefix(" (")?;
    let mut parts = Vec::new();
    loop {
        let (column, after) = quoted(rest)?;
        let mut end = rest.len() - after.len();
        if let Some(prefix) = after.strip_prefix('(') {
            let digits = prefix.find(')')?;
            if digits == 0 || !prefix[..digits].bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            end += digits + 2;
        }
        if rest[end..].starts_with(" DESC") {
            end += " DESC".len();
        }
        parts.push((column, rest[..end].to_string()));
        rest = &rest[end..];
        if let Some(more) = rest.strip_prefix(", ") {
            rest = more;
        } else if rest == ")" {
            return Some(parts);
        } else {
            return None;
        }
    }
}

/// Whether column `i` of `table` is created `AUTO_INCREMENT`: it is so at a
/// MySQL source, or is a PostgreSQL identity or serial column
/// ([`crate::schema::auto_increment`]), and it leads a key the target gets (the primary key, a unique
/// key, or with `indexes` an index), as MySQL requires.
fn keeps_auto_increment(table: &TableSchema, i: usize, indexes: bool) -> bool {
    let column = &table.columns[i].name;
    if !crate::schema::auto_increment(table, column) {
        return false;
    }
    table.primary_key.first() == Some(&i)
        || table.unique_keys.iter().any(|k| k.first() == Some(&i))
        || (indexes
            && table
                .indexes
                .iter()
                .any(|ix| ix.columns.first() == Some(column)))
}

/// `CREATE TABLE` for `table` as `name`, with its primary key, unique keys
/// (named as the source's unique index on the same columns, and on the same
/// column prefixes when the source's index has them) and (with
/// `indexes`) its secondary indexes; a MySQL source's `AUTO_INCREMENT`
/// column keeps it, and a PostgreSQL identity or serial column gets it. The
/// counter needs no setting: InnoDB moves it past every id written.
fn create_sql(name: &str, table: &TableSchema, flavor: Flavor, indexes: bool) -> String {
    let mut parts: Vec<String> = (0..table.columns.len())
        .map(|i| {
            let sql = column_sql(table, i, flavor, None);
            if keeps_auto_increment(table, i, indexes) {
                format!("{sql} AUTO_INCREMENT")
            } else {
                sql
            }
        })
        .collect();
    let names = |k: &[usize]| column_list(k.iter().map(|&i| table.columns[i].name.as_str()));
    if !table.primary_key.is_empty() {
        parts.push(format!("PRIMARY KEY ({})", names(&table.primary_key)));
    }
    // A unique key takes the name of the source's unique index on the same
    // columns: the index sync (`schema.indexes`) then finds that index on the
    // target already and creates no second one under another name.
    let mut named: Vec<&str> = Vec::new();
    for k in &table.unique_keys {
        let index = table.indexes.iter().find(|ix| {
            ix.unique
                && !named.contains(&ix.name.as_str())
                && ix.columns.len() == k.len()
                && ix
                    .columns
                    .iter()
                    .zip(k)
                    .all(|(c, &i)| table.column_index(c) == Some(i))
        });
        // A unique index on column prefixes (`name(10)`) rides as an object
        // ([`crate::schema`]): the key is created as it, prefixes and all, so
        // the index sync finds it identical and creates no second one.
        let prefixed = || {
            table.objects.iter().find_map(|o| {
                if o.kind != ObjectKind::Index
                    || o.origin != Engine::Mysql
                    || named.contains(&o.name.as_str())
                {
                    return None;
                }
                let cols = unique_index_parts(&o.definition)?;
                let same = cols.len() == k.len()
                    && cols
                        .iter()
                        .zip(k)
                        .all(|((c, _), &i)| table.column_index(c) == Some(i));
                same.then_some((o.name.as_str(), cols))
            })
        };
        match (index, prefixed()) {
            (Some(ix), _) => {
                named.push(&ix.name);
                parts.push(format!(
                    "UNIQUE KEY {} ({})",
                    ident(&index_name(&ix.name)),
                    names(k)
                ));
            }
            (None, Some((ix, cols))) => {
                named.push(ix);
                let cols: Vec<String> = cols.into_iter().map(|(_, part)| part).collect();
                parts.push(format!(
                    "UNIQUE KEY {} ({})",
                    ident(&index_name(ix)),
                    cols.join(", ")
                ));
            }
            (None, None) => parts.push(format!("UNIQUE KEY ({})", names(k))),
        }
    }
    if indexes {
        let declared = |c: &str| {
            table
                .column_index(c)
                .map(|i| typemap::native_type(Engine::Mysql, table.origin, &table.columns[i]))
        };
        for ix in &table.indexes {
            let positions: Option<Vec<usize>> =
                ix.columns.iter().map(|c| table.column_index(c)).collect();
            let Some(positions) = positions else {
                tracing::warn!(table = %table.name, index = %ix.name, "an index on expressions is not created on the MySQL target");
                continue;
            };
            if positions == table.primary_key || table.unique_keys.contains(&positions) {
                continue;
            }
            let mut cols = Vec::new();
            for c in &ix.columns {
                let prefix = declared(c).is_some_and(|d| needs_prefix(&d));
                let key_col = table
                    .column_index(c)
                    .and_then(|i| key_room(table, i))
                    .is_some();
                cols.push(if prefix && !key_col {
                    format!("{}({INDEX_PREFIX})", ident(c))
                } else {
                    ident(c)
                });
            }
            // A prefix makes a unique index unique on the prefix only: MariaDB
            // keeps a long unique index whole (by hash), MySQL cannot.
            let prefixed = cols
                .iter()
                .any(|c| c.ends_with(&format!("({INDEX_PREFIX})")));
            let (cols, unique) = match (ix.unique, prefixed, flavor) {
                (true, true, Flavor::MariaDb) => {
                    (column_list(ix.columns.iter().map(String::as_str)), true)
                }
                (true, true, Flavor::MySql) => {
                    tracing::warn!(table = %table.name, index = %ix.name, "a unique index on a long text is created as a plain index on its prefix on the MySQL target");
                    (cols.join(", "), false)
                }
                (u, _, _) => (cols.join(", "), u),
            };
            parts.push(format!(
                "{}KEY {} ({cols})",
                if unique { "UNIQUE " } else { "" },
                ident(&index_name(&ix.name))
            ));
        }
    }
    format!(
        "CREATE TABLE IF NOT EXISTS {name} (\n  {}\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        parts.join(",\n  ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use siphon_core::{Column, DataType, Index, TableName};

    #[test]
    fn target_columns_with_expression_defaults_are_written() {
        let at = |extra: &str| found("c".into(), "TIMESTAMP", extra);
        // MySQL 8's expression defaults are written; generated columns are not.
        assert!(!at("DEFAULT_GENERATED").generated);
        assert!(!at("DEFAULT_GENERATED on update CURRENT_TIMESTAMP").generated);
        assert!(at("VIRTUAL GENERATED").generated);
        assert!(at("STORED GENERATED").generated);
        assert!(at("PERSISTENT GENERATED").generated);
        assert!(at("auto_increment").auto_increment);
        assert_eq!(at("").column_type, "timestamp");
    }

    fn col(name: &str, kind: TypeKind, native: &str) -> Column {
        Column {
            name: name.into(),
            data_type: DataType::new(kind, false),
            native_type: native.into(),
            generated: false,
            source_id: None,
        }
    }

    #[test]
    fn unbounded_text_keys_from_postgres_become_binary_varchars() {
        let table = TableSchema {
            name: TableName::new(Some("public"), "t"),
            origin: Engine::Postgres,
            columns: vec![
                col("id", TypeKind::Int64, "bigint"),
                col("code", TypeKind::Text { max_len: None }, "text"),
                col("body", TypeKind::Text { max_len: None }, "text"),
                col("blob", TypeKind::Bytes { max_len: None }, "bytea"),
            ],
            primary_key: vec![0, 1],
            unique_keys: vec![vec![3]],
            indexes: vec![Index {
                name: "t_body".into(),
                columns: vec!["body".into()],
                unique: false,
            }],
            partitioning: None,
            objects: vec![],
        };
        let sql = create_sql("`d`.`t`", &table, Flavor::MariaDb, true);
        assert!(
            sql.contains(
                "`code` varchar(764) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL"
            ),
            "{sql}"
        );
        assert!(sql.contains("`body` longtext NOT NULL"), "{sql}");
        assert!(sql.contains("`blob` varbinary(3072)"), "{sql}");
        assert!(sql.contains("KEY `t_body` (`body`(255))"), "{sql}");
        assert!(sql.contains("PRIMARY KEY (`id`, `code`)"), "{sql}");
    }

    #[test]
    fn text_in_a_unique_index_of_another_engine_compares_byte_for_byte_on_mariadb() {
        let table = TableSchema {
            name: TableName::new(Some("public"), "t"),
            origin: Engine::Postgres,
            columns: vec![
                col("id", TypeKind::Int32, "integer"),
                col("b", TypeKind::Text { max_len: None }, "text"),
                col("c", TypeKind::Text { max_len: None }, "text"),
            ],
            primary_key: vec![0],
            unique_keys: vec![],
            indexes: vec![
                Index {
                    name: "t_b".into(),
                    columns: vec!["b".into()],
                    unique: true,
                },
                Index {
                    name: "t_c".into(),
                    columns: vec!["c".into()],
                    unique: false,
                },
            ],
            partitioning: None,
            objects: vec![],
        };
        let sql = create_sql("`d`.`t`", &table, Flavor::MariaDb, true);
        assert!(
            sql.contains("`b` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL"),
            "{sql}"
        );
        assert!(sql.contains("UNIQUE KEY `t_b` (`b`)"), "{sql}");
        assert!(sql.contains("`c` longtext NOT NULL"), "{sql}");
    }

    #[test]
    fn unique_keys_take_the_source_index_name_and_auto_increment_stays() {
        let mut table = TableSchema {
            name: TableName::new(Some("d"), "t"),
            origin: Engine::Mysql,
            columns: vec![
                col("id", TypeKind::Int32, "int(11)"),
                col("email", TypeKind::Text { max_len: Some(50) }, "varchar(50)"),
                col("name", TypeKind::Text { max_len: Some(50) }, "varchar(50)"),
            ],
            primary_key: vec![0],
            unique_keys: vec![vec![1], vec![2]],
            indexes: vec![Index {
                name: "uq_email".into(),
                columns: vec!["email".into()],
                unique: true,
            }],
            partitioning: None,
            objects: vec![siphon_core::SchemaObject {
                kind: siphon_core::ObjectKind::Default,
                name: "id".into(),
                definition: crate::schema::AUTO_INCREMENT.into(),
                origin: Engine::Mysql,
                schema: Some("d".into()),
                depends_on: vec![],
                sequence: None,
            }],
        };
        for indexes in [true, false] {
            let sql = create_sql("`d`.`t`", &table, Flavor::MariaDb, indexes);
            assert_eq!(sql.matches("UNIQUE KEY").count(), 2, "{sql}");
            assert!(sql.contains("UNIQUE KEY `uq_email` (`email`)"), "{sql}");
            assert!(sql.contains("UNIQUE KEY (`name`)"), "{sql}");
            assert!(
                sql.contains("`id` int(11) NOT NULL AUTO_INCREMENT"),
                "{sql}"
            );
        }
        // From another engine, the marker means nothing.
        table.origin = Engine::Postgres;
        let sql = create_sql("`d`.`t`", &table, Flavor::MariaDb, true);
        assert!(!sql.contains("AUTO_INCREMENT"), "{sql}");
        // A PostgreSQL serial or identity column counting by 1 gets it.
        let serial = |increment| siphon_core::SchemaObject {
            kind: siphon_core::ObjectKind::Sequence,
            name: "t_id_seq".into(),
            definition: String::new(),
            origin: Engine::Postgres,
            schema: Some("public".into()),
            depends_on: vec![],
            sequence: Some(siphon_core::SequenceState {
                column: "id".into(),
                last_value: 2,
                is_called: true,
                increment,
            }),
        };
        table.objects = vec![serial(1)];
        let sql = create_sql("`d`.`t`", &table, Flavor::MariaDb, true);
        assert!(sql.contains("`id` int NOT NULL AUTO_INCREMENT"), "{sql}");
        table.objects = vec![serial(2)];
        let sql = create_sql("`d`.`t`", &table, Flavor::MariaDb, true);
        assert!(!sql.contains("AUTO_INCREMENT"), "{sql}");
    }

    #[test]
    fn a_unique_key_on_prefixes_is_created_as_the_source_index() {
        assert_eq!(
            unique_index_parts("CREATE UNIQUE INDEX `u``q` ON `t` (`na``me`(10), `id` DESC)"),
            Some(vec![
                ("na`me".to_string(), "`na``me`(10)".to_string()),
                ("id".to_string(), "`id` DESC".to_string())
            ])
        );
        assert_eq!(
            unique_index_parts("CREATE UNIQUE INDEX `h` USING HASH ON `t` (`b`)"),
            Some(vec![("b".to_string(), "`b`".to_string())])
        );
        assert_eq!(unique_index_parts("CREATE INDEX `i` ON `t` (`b`(3))"), None);
        assert_eq!(
            unique_index_parts("CREATE FULLTEXT INDEX `f` ON `t` (`b`)"),
            None
        );
        let index = |name: &str, def: &str| siphon_core::SchemaObject {
            kind: ObjectKind::Index,
            name: name.into(),
            definition: def.into(),
            origin: Engine::Mysql,
            schema: Some("d".into()),
            depends_on: vec![],
            sequence: None,
        };
        let table = TableSchema {
            name: TableName::new(Some("d"), "t"),
            origin: Engine::Mysql,
            columns: vec![
                col("id", TypeKind::Int32, "int(11)"),
                col("name", TypeKind::Text { max_len: Some(50) }, "varchar(50)"),
                col("bio", TypeKind::Text { max_len: None }, "text"),
            ],
            primary_key: vec![0],
            unique_keys: vec![vec![1], vec![2, 0]],
            indexes: vec![],
            partitioning: None,
            objects: vec![
                index(
                    "uq_name",
                    "CREATE UNIQUE INDEX `uq_name` ON `t` (`name`(10))",
                ),
                index(
                    "uq_bio",
                    "CREATE UNIQUE INDEX `uq_bio` ON `t` (`bio`(20), `id`)",
                ),
            ],
        };
        for indexes in [true, false] {
            let sql = create_sql("`d`.`t`", &table, Flavor::MariaDb, indexes);
            assert_eq!(sql.matches("UNIQUE KEY").count(), 2, "{sql}");
            assert!(sql.contains("UNIQUE KEY `uq_name` (`name`(10))"), "{sql}");
            assert!(
                sql.contains("UNIQUE KEY `uq_bio` (`bio`(20), `id`)"),
                "{sql}"
            );
        }
    }
}
