//! Discovery of tables, columns, keys and indexes from `information_schema`.
//!
//! A MySQL database is what siphon calls a schema: tables are named
//! `database.table`. Views are not tables. A column's `native_type` is its
//! `COLUMN_TYPE` (`bigint(20) unsigned`, `enum('a','b')`), followed for text
//! by its character set and collation (`varchar(8) CHARACTER SET utf8mb4
//! COLLATE utf8mb4_bin`), except MariaDB's `json`, which MariaDB stores as
//! `longtext` with a `json_valid` check and siphon reads back as `json`.

use std::collections::{BTreeMap, HashSet};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use siphon_core::typemap::{parse_native, Engine};
use siphon_core::{
    Column, DataType, Index, ObjectKind, Result, SchemaObject, TableFilter, TableName, TableSchema,
    TypeKind,
};

use crate::conn::{column_list, ident, my_err, qualified, Flavor};

/// One row of `information_schema.COLUMNS`.
type ColumnRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// One row of `information_schema.STATISTICS`: table, index, non-unique,
/// column (NULL for an expression), prefix length.
type IndexRow = (String, String, i64, Option<String>, Option<i64>);

/// The base tables of `database` that `filter` selects, with their columns,
/// keys and indexes, ordered by name. A table with a spatial column is
/// returned too, and refused ([`refuse_spatial`]) before its target table is
/// created (`Source::check_table`, `LogSource::check_log_table`) and when
/// read; an
/// `AUTO_INCREMENT` column is marked by an object ([`AUTO_INCREMENT`]).
pub async fn discover(
    conn: &mut Conn,
    database: &str,
    flavor: Flavor,
    filter: &TableFilter,
) -> Result<Vec<TableSchema>> {
    let names: Vec<String> = conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? \
             AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY TABLE_NAME",
            (database,),
        )
        .await
        .map_err(|e| my_err(e, "listing tables"))?;
    // siphon's own tables, where this database is also a siphon target, are
    // never replicated.
    let own = [
        crate::sink::checkpoints::CHECKPOINTS,
        crate::sink::fill::COLUMNS,
    ];
    let wanted: Vec<String> = names
        .into_iter()
        .filter(|n| !own.contains(&n.as_str()))
        .filter(|n| filter.matches(&TableName::new(Some(database), n)))
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let wanted_set: HashSet<&str> = wanted.iter().map(String::as_str).collect();

    let columns: Vec<ColumnRow> = conn
        .exec(
            "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, EXTRA, \
             CHARACTER_SET_NAME, COLLATION_NAME, COLUMN_DEFAULT FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (database,),
        )
        .await
        .map_err(|e| my_err(e, "listing columns"))?;
    let json_checks = json_columns(conn, database, flavor).await?;

    let mut tables: BTreeMap<String, TableSchema> = BTreeMap::new();
    for (table, name, column_type, nullable, extra, charset, collation, default) in columns {
        if !wanted_set.contains(table.as_str()) {
            continue;
        }
        let entry = tables.entry(table.clone()).or_insert_with(|| TableSchema {
            name: TableName::new(Some(database), &table),
            origin: Engine::Mysql,
            columns: Vec::new(),
            primary_key: Vec::new(),
            unique_keys: Vec::new(),
            indexes: Vec::new(),
            partitioning: None,
            objects: Vec::new(),
        });
        // A spatial column stays in the table's shape: the table is refused
        // on its own when read ([`refuse_spatial`]), and the others go on.
        if extra.to_ascii_lowercase().contains("auto_increment") {
            entry.objects.push(SchemaObject {
                kind: ObjectKind::Default,
                name: name.clone(),
                definition: AUTO_INCREMENT.to_string(),
                origin: Engine::Mysql,
                schema: Some(database.to_string()),
                depends_on: Vec::new(),
                sequence: None,
            });
        }
        if let Some(definition) = default_clause(flavor, default.as_deref(), &extra) {
            entry.objects.push(SchemaObject {
                kind: ObjectKind::Default,
                name: name.clone(),
                definition,
                origin: Engine::Mysql,
                schema: Some(database.to_string()),
                depends_on: Vec::new(),
                sequence: None,
            });
        }
        let is_json = json_checks.contains(&(table.clone(), name.clone()));
        let (kind, native_type) = if is_json {
            (TypeKind::Json, "json".to_string())
        } else {
            let kind = parse_native(Engine::Mysql, &column_type);
            // A MySQL target keeps the text's character set and collation:
            // they decide which keys are equal.
            let native = match (charset, collation) {
                (Some(cs), Some(co)) => format!("{column_type} CHARACTER SET {cs} COLLATE {co}"),
                _ => column_type,
            };
            (kind, native)
        };
        entry.columns.push(Column {
            name,
            data_type: DataType::new(kind, nullable.eq_ignore_ascii_case("YES")),
            native_type,
            generated: is_generated(&extra),
            source_id: None,
        });
    }

    let stats: Vec<IndexRow> = conn
        .exec(
            "SELECT TABLE_NAME, INDEX_NAME, CAST(NON_UNIQUE AS SIGNED), COLUMN_NAME, \
             CAST(SUB_PART AS SIGNED) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? \
             ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
            (database,),
        )
        .await
        .map_err(|e| my_err(e, "listing keys and indexes"))?;
    // (table, index) → (unique, [(column, prefix)]); None: an expression part.
    type Parts = Vec<Option<(String, Option<i64>)>>;
    let mut indexes: BTreeMap<(String, String), (bool, Parts)> = BTreeMap::new();
    for (table, index, non_unique, column, prefix) in stats {
        if !tables.contains_key(&table) {
            continue;
        }
        indexes
            .entry((table, index))
            .or_insert_with(|| (non_unique == 0, Vec::new()))
            .1
            .push(column.map(|c| (c, prefix)));
    }
    for ((table, index), (unique, parts)) in indexes {
        let Some(t) = tables.get_mut(&table) else {
            continue;
        };
        add_index(t, &index, unique, &parts);
    }
    Ok(tables.into_values().collect())
}

/// Whether a `COLUMN_TYPE` is one of the spatial types (`point`, `geometry`, …).
fn is_spatial(column_type: &str) -> bool {
    matches!(
        column_type.trim().to_ascii_lowercase().as_str(),
        "geometry"
            | "point"
            | "linestring"
            | "polygon"
            | "multipoint"
            | "multilinestring"
            | "multipolygon"
            | "geometrycollection"
            | "geomcollection"
    )
}

/// The definition of the [`ObjectKind::Default`] object that discovery
/// attaches to a table for its `AUTO_INCREMENT` column (the object's name is
/// the column's): a MySQL target creates the column with it, so rows inserted
/// there without the column (by a copied trigger or procedure) get their ids.
pub(crate) const AUTO_INCREMENT: &str = "AUTO_INCREMENT";

/// A column's `DEFAULT …` as a MySQL or MariaDB target takes it, from
/// `information_schema.COLUMNS` (`COLUMN_DEFAULT`, `EXTRA`) at a `flavor`
/// server; `None` for a column without one (a generated or `AUTO_INCREMENT`
/// column, a `NOT NULL` one without a default). `ON UPDATE` is left out: siphon
/// writes such a column's values itself, and the target would overwrite them
/// whenever siphon fills another column of the row. MariaDB
/// prints a default as SQL (`'text'`, `0`, `NULL`, `current_timestamp()`);
/// MySQL prints a literal's bare value and an expression's text with
/// `DEFAULT_GENERATED`. An expression other than `CURRENT_TIMESTAMP` is
/// written in parentheses, which both servers read.
pub(crate) fn default_clause(flavor: Flavor, default: Option<&str>, extra: &str) -> Option<String> {
    let lower = extra.to_ascii_lowercase();
    if lower.contains("generated") && !lower.contains("default_generated") {
        return None;
    }
    let timestamp = |v: &str| v.to_ascii_lowercase().starts_with("current_timestamp");
    let value = default.map(|d| match flavor {
        Flavor::MariaDb => {
            let literal = d.starts_with('\'')
                || d.eq_ignore_ascii_case("NULL")
                || d.parse::<f64>().is_ok()
                || d.starts_with("b'")
                || timestamp(d);
            if literal {
                d.to_string()
            } else {
                format!("({d})")
            }
        }
        Flavor::MySql if lower.contains("default_generated") => {
            if timestamp(d) {
                d.to_string()
            } else {
                format!("({d})")
            }
        }
        Flavor::MySql if d.starts_with("b'") => d.to_string(),
        Flavor::MySql => format!("'{}'", d.replace('\\', "\\\\").replace('\'', "''")),
    });
    value.map(|v| format!("DEFAULT {v}"))
}

/// The `DEFAULT …` clause [`default_clause`] read for column `column` of a
/// MySQL or MariaDB `table`, for a MySQL target.
pub(crate) fn column_default<'a>(table: &'a TableSchema, column: &str) -> Option<&'a str> {
    if table.origin != Engine::Mysql {
        return None;
    }
    table.objects.iter().find_map(|o| {
        (o.kind == ObjectKind::Default
            && o.origin == Engine::Mysql
            && o.name == column
            && o.definition != AUTO_INCREMENT)
            .then_some(o.definition.as_str())
    })
}

/// Whether column `column` of `table` draws its values from the table
/// itself: `AUTO_INCREMENT` at a MySQL source, or at a PostgreSQL source an
/// integer identity or serial column whose sequence counts by 1.
pub(crate) fn auto_increment(table: &TableSchema, column: &str) -> bool {
    let integer = table.column_index(column).is_some_and(|i| {
        matches!(
            table.columns[i].data_type.kind,
            TypeKind::Int16 | TypeKind::Int32 | TypeKind::Int64
        )
    });
    table.objects.iter().any(|o| match (table.origin, &o.kind) {
        (Engine::Mysql, ObjectKind::Default) => {
            o.origin == Engine::Mysql && o.name == column && o.definition == AUTO_INCREMENT
        }
        (Engine::Postgres, ObjectKind::Sequence) => {
            integer
                && o.origin == Engine::Postgres
                && o.sequence
                    .as_ref()
                    .is_some_and(|s| s.column == column && s.increment == 1)
        }
        _ => false,
    })
}

/// Refuses `table` when it has a spatial column, with an error naming the
/// table, the column and the fix: the table stops, and the pipeline's other
/// tables go on.
pub(crate) fn refuse_spatial(table: &TableSchema) -> Result<()> {
    let database = table.name.schema.as_deref().unwrap_or_default();
    match table.columns.iter().find(|c| is_spatial(&c.native_type)) {
        Some(c) => Err(spatial_refusal(
            database,
            &table.name.name,
            &c.name,
            &c.native_type,
        )),
        None => Ok(()),
    }
}

/// Refuses a MariaDB system-versioned table (`WITH SYSTEM VERSIONING`,
/// `TABLES.TABLE_TYPE = 'SYSTEM VERSIONED'`) for the binlog: the binlog
/// holds its history rows beside its current ones (a `DELETE` is logged as
/// an update setting the hidden `row_end`, an `UPDATE` as that update plus
/// the insert of the old version), which siphon would apply as changes of
/// the current rows. A copy (`mode: full`) reads the current rows only, and
/// is not refused.
pub(crate) async fn refuse_system_versioned(conn: &mut Conn, table: &TableSchema) -> Result<()> {
    let database = table.name.schema.as_deref().unwrap_or_default();
    let kind: Option<String> = conn
        .exec_first(
            "SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? \
             AND TABLE_NAME = ?",
            (database, table.name.name.as_str()),
        )
        .await
        .map_err(|e| my_err(e, "reading the table's type").table(&table.name))?;
    match kind {
        Some(k) if k.eq_ignore_ascii_case("SYSTEM VERSIONED") => {
            Err(system_versioned_refusal(database, &table.name.name))
        }
        _ => Ok(()),
    }
}

/// The refusal of a system-versioned table in `mode: cdc`, with the ways on.
fn system_versioned_refusal(database: &str, table: &str) -> siphon_core::Error {
    siphon_core::Error::bad_input(format!(
        "the table is system-versioned (WITH SYSTEM VERSIONING), and siphon does not stream \
         system-versioned tables: the binlog logs a DELETE as an update of the row's hidden \
         row_end and an UPDATE as one more insert of the old version, which would leave deleted \
         rows and old values on the target. Copy its current rows instead with \
         `tables_config: {{ \"{database}.{table}\": {{ mode: full }} }}`, leave it out with `exclude: [\"{database}.{table}\"]`, or \
         stream a plain table the application keeps with the current rows"
    ))
    .table(TableName::new(Some(database), table))
}

/// The refusal of a spatial column: siphon carries no geometry exactly (the
/// server's SRID and coordinates would not survive every path), so the table
/// is named with the two ways on.
fn spatial_refusal(
    database: &str,
    table: &str,
    column: &str,
    column_type: &str,
) -> siphon_core::Error {
    siphon_core::Error::bad_input(format!(
        "the {column_type} column cannot be replicated: siphon does not carry spatial \
         (geometry) columns, whose SRID and exact coordinates would be lost. Leave the table out \
         with `exclude: [\"{database}.{table}\"]`, or keep its shapes in columns siphon copies \
         (a `longblob` set to ST_AsWKB({column}) and an `int` set to ST_SRID({column})) and drop \
         the {column_type} column"
    ))
    .table(TableName::new(Some(database), table))
    .column(column)
}

/// Records one index of `t`: the primary key, a unique key, a plain index,
/// or, when a part is a prefix (`name(10)`) or an expression, an object that
/// only a MySQL target recreates.
fn add_index(
    t: &mut TableSchema,
    index: &str,
    unique: bool,
    parts: &[Option<(String, Option<i64>)>],
) {
    let positions: Option<Vec<usize>> = parts
        .iter()
        .map(|p| p.as_ref().and_then(|(c, _)| t.column_index(c)))
        .collect();
    let prefixed = parts.iter().any(|p| matches!(p, Some((_, Some(_))) | None));
    if index == "PRIMARY" {
        if let Some(p) = positions {
            t.primary_key = p;
        }
        return;
    }
    if unique {
        // A unique prefix makes the whole values unique too.
        if let Some(p) = &positions {
            t.unique_keys.push(p.clone());
        }
    }
    if !prefixed {
        t.indexes.push(Index {
            name: index.to_string(),
            columns: parts.iter().flatten().map(|(c, _)| c.clone()).collect(),
            unique,
        });
        return;
    }
    let Some(_) = positions else {
        // An expression index (MySQL 8): its expression is not in STATISTICS' COLUMN_NAME.
        t.objects.push(SchemaObject {
            kind: ObjectKind::NotCarried {
                reason: "an index on an expression".into(),
            },
            name: index.to_string(),
            definition: String::new(),
            origin: Engine::Mysql,
            schema: t.name.schema.clone(),
            depends_on: Vec::new(),
            sequence: None,
        });
        return;
    };
    let cols: Vec<String> = parts
        .iter()
        .flatten()
        .map(|(c, prefix)| match prefix {
            Some(n) => format!("{}({n})", ident(c)),
            None => ident(c),
        })
        .collect();
    t.objects.push(SchemaObject {
        kind: ObjectKind::Index,
        name: index.to_string(),
        definition: format!(
            "CREATE {}INDEX {} ON {} ({})",
            if unique { "UNIQUE " } else { "" },
            ident(index),
            qualified(None, &t.name.name),
            cols.join(", ")
        ),
        origin: Engine::Mysql,
        schema: t.name.schema.clone(),
        depends_on: Vec::new(),
        sequence: None,
    });
}

/// Whether `EXTRA` marks a generated column (`VIRTUAL GENERATED`, `STORED
/// GENERATED`, MariaDB's older `PERSISTENT GENERATED`); MySQL's
/// `DEFAULT_GENERATED` is a default, not a generated column.
pub(crate) fn is_generated(extra: &str) -> bool {
    let e = extra.to_ascii_uppercase();
    [
        "VIRTUAL GENERATED",
        "STORED GENERATED",
        "PERSISTENT GENERATED",
    ]
    .iter()
    .any(|g| e.contains(g))
}

/// MariaDB's `json` columns of `database` as `(table, column)`: `longtext`
/// columns with the check `json_valid(column)` MariaDB adds for the alias.
/// MySQL has a real `json` type, so none there.
async fn json_columns(
    conn: &mut Conn,
    database: &str,
    flavor: Flavor,
) -> Result<HashSet<(String, String)>> {
    if flavor != Flavor::MariaDb {
        return Ok(HashSet::new());
    }
    let checks: Vec<(String, String, String)> = conn
        .exec(
            "SELECT cc.TABLE_NAME, cc.CONSTRAINT_NAME, cc.CHECK_CLAUSE \
             FROM information_schema.CHECK_CONSTRAINTS cc WHERE cc.CONSTRAINT_SCHEMA = ?",
            (database,),
        )
        .await
        .map_err(|e| my_err(e, "listing check constraints"))?;
    let mut found = HashSet::new();
    for (table, name, clause) in checks {
        let compact: String = clause.chars().filter(|c| !c.is_whitespace()).collect();
        // MariaDB names the column's check after the column.
        if compact.eq_ignore_ascii_case(&format!("json_valid({})", ident(&name))) {
            found.insert((table, name));
        }
    }
    Ok(found)
}

/// A foreign key whose action the server carries out itself, unlogged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cascade {
    /// The table holding the foreign key (the rows the action changes).
    pub child: TableName,
    /// The constraint's name.
    pub constraint: String,
    /// The referenced table.
    pub parent: TableName,
    /// `ON DELETE …` and `ON UPDATE …` actions other than `RESTRICT`/`NO
    /// ACTION`, as `ON DELETE CASCADE`.
    pub actions: Vec<String>,
}

/// The foreign keys of `tables` with `CASCADE`, `SET NULL` or `SET DEFAULT`
/// actions. InnoDB carries these out inside the storage engine, so the rows
/// they change never reach the binlog: a change stream does not see them.
pub async fn cascades(conn: &mut Conn, tables: &[TableSchema]) -> Result<Vec<Cascade>> {
    let mut found = Vec::new();
    let mut databases: Vec<&str> = tables
        .iter()
        .filter_map(|t| t.name.schema.as_deref())
        .collect();
    databases.sort_unstable();
    databases.dedup();
    for db in databases {
        let rows: Vec<(String, String, String, String, String, String)> = conn
            .exec(
                "SELECT TABLE_NAME, CONSTRAINT_NAME, UNIQUE_CONSTRAINT_SCHEMA, REFERENCED_TABLE_NAME, \
                 DELETE_RULE, UPDATE_RULE FROM information_schema.REFERENTIAL_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA = ? ORDER BY TABLE_NAME, CONSTRAINT_NAME",
                (db,),
            )
            .await
            .map_err(|e| my_err(e, "listing foreign keys"))?;
        for (table, constraint, parent_db, parent, on_delete, on_update) in rows {
            let child = TableName::new(Some(db), &table);
            if !tables.iter().any(|t| t.name == child) {
                continue;
            }
            let actions: Vec<String> = [("DELETE", on_delete), ("UPDATE", on_update)]
                .into_iter()
                .filter(|(_, rule)| !matches!(rule.as_str(), "RESTRICT" | "NO ACTION"))
                .map(|(event, rule)| format!("ON {event} {rule}"))
                .collect();
            if !actions.is_empty() {
                found.push(Cascade {
                    child,
                    constraint,
                    parent: TableName::new(Some(&parent_db), &parent),
                    actions,
                });
            }
        }
    }
    Ok(found)
}

/// The key columns of `table` as a SQL list.
pub(crate) fn key_list(table: &TableSchema, key: &[usize]) -> String {
    column_list(key.iter().map(|&i| table.columns[i].name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_columns_are_told_from_generated_defaults() {
        assert!(is_generated("VIRTUAL GENERATED"));
        assert!(is_generated("STORED GENERATED"));
        assert!(!is_generated(
            "DEFAULT_GENERATED on update CURRENT_TIMESTAMP"
        ));
        assert!(!is_generated("auto_increment"));
    }

    #[test]
    fn defaults_are_read_as_each_server_prints_them() {
        let maria = |d: Option<&str>, extra: &str| default_clause(Flavor::MariaDb, d, extra);
        assert_eq!(maria(Some("0"), "").as_deref(), Some("DEFAULT 0"));
        assert_eq!(
            maria(Some("'it''s'"), "").as_deref(),
            Some("DEFAULT 'it''s'")
        );
        assert_eq!(maria(Some("NULL"), "").as_deref(), Some("DEFAULT NULL"));
        assert_eq!(
            maria(
                Some("current_timestamp(6)"),
                "on update current_timestamp(6)"
            )
            .as_deref(),
            Some("DEFAULT current_timestamp(6)")
        );
        assert_eq!(
            maria(Some("uuid()"), "").as_deref(),
            Some("DEFAULT (uuid())")
        );
        assert_eq!(maria(None, ""), None);
        assert_eq!(maria(None, "auto_increment"), None);
        assert_eq!(maria(Some("NULL"), "STORED GENERATED"), None);
        let mysql = |d: Option<&str>, extra: &str| default_clause(Flavor::MySql, d, extra);
        assert_eq!(mysql(Some("it's"), "").as_deref(), Some("DEFAULT 'it''s'"));
        assert_eq!(mysql(Some("1.50"), "").as_deref(), Some("DEFAULT '1.50'"));
        assert_eq!(
            mysql(Some("CURRENT_TIMESTAMP"), "DEFAULT_GENERATED").as_deref(),
            Some("DEFAULT CURRENT_TIMESTAMP")
        );
        assert_eq!(
            mysql(Some("uuid()"), "DEFAULT_GENERATED").as_deref(),
            Some("DEFAULT (uuid())")
        );
    }

    #[test]
    fn the_system_versioned_refusal_names_the_table_and_the_ways_on() {
        let e = system_versioned_refusal("d", "t");
        assert_eq!(e.table_name(), Some("d.t"));
        let text = e.to_string();
        assert!(text.contains("system-versioned"), "{text}");
        assert!(text.contains("mode: full"), "{text}");
        assert!(text.contains(r#"exclude: ["d.t"]"#), "{text}");
    }
}
