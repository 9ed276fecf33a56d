//! Reading table shapes from pg_catalog, and creating them on a target.

use std::collections::HashMap;

use siphon_core::typemap::{self, Engine};
use siphon_core::{Column, DataType, Index, Result, TableFilter, TableName, TableSchema, TypeKind};
use tokio_postgres::Client;

use crate::conn::{column_list, ident, literal, pg_err, qualified};
use crate::partition;
use crate::types::PgType;

/// A table as this connector needs it: the portable schema and each column's
/// PostgreSQL type, in column order.
#[derive(Debug, Clone)]
pub(crate) struct PgTable {
    pub schema: TableSchema,
    pub types: Vec<PgType>,
}

/// Reads a column type's description: domains resolve to their base type, arrays
/// know their element, enums their labels.
async fn type_of(
    client: &Client,
    oid: u32,
    typmod: i32,
    cache: &mut HashMap<(u32, i32), PgType>,
) -> Result<PgType> {
    if let Some(t) = cache.get(&(oid, typmod)) {
        return Ok(t.clone());
    }
    let row = client
        .query_one(
            "SELECT t.typtype::text, t.typbasetype, t.typtypmod, t.typelem, t.typcategory::text, \
                    format_type(t.oid, $2::int4), n.nspname, t.typname \
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = $1::oid",
            &[&oid, &typmod],
        )
        .await
        .map_err(|e| pg_err(e, "reading a column type"))?;
    let typtype: String = row.get(0);
    let base: u32 = row.get(1);
    let base_mod: i32 = row.get(2);
    let elem: u32 = row.get(3);
    let category: String = row.get(4);
    let name: String = row.get(5);
    let out = if typtype == "d" {
        // A domain reads and writes as its base type; binary array headers carry
        // the domain's own OID, which PostgreSQL checks on COPY FROM.
        let mut t = Box::pin(type_of(client, base, base_mod, cache)).await?;
        t.oid = oid;
        t
    } else if category == "A" && elem != 0 {
        let element = Box::pin(type_of(client, elem, typmod, cache)).await?;
        // An array of a domain is an array of its base type, as the domain is.
        let name = if element.oid == elem && is_domain(client, elem).await? {
            format!("{}[]", element.name)
        } else {
            name
        };
        PgType::from_catalog(oid, &name, 'b', Some(element), vec![])
    } else if typtype == "e" {
        let labels: Vec<String> = client
            .query("SELECT enumlabel::text FROM pg_enum WHERE enumtypid = $1::oid ORDER BY enumsortorder", &[&oid])
            .await
            .map_err(|e| pg_err(e, "reading enum labels"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let schema: String = row.get(6);
        let typname: String = row.get(7);
        PgType::from_catalog(
            oid,
            &format!("{}.{}", ident(&schema), ident(&typname)),
            'e',
            None,
            labels,
        )
    } else {
        // A composite or extension type: its definition, for a target to create
        // it; one whose binary form is text's (citext) reads and writes as text.
        if oid >= 16384 && crate::types::defined::read(client, oid, &name).await? {
            PgType::text_like(oid, &name)
        } else {
            PgType::from_catalog(
                oid,
                &name,
                typtype.chars().next().unwrap_or('b'),
                None,
                vec![],
            )
        }
    };
    cache.insert((oid, typmod), out.clone());
    Ok(out)
}

/// One attribute of a table as the catalog has it now, dropped ones included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attribute {
    pub attnum: i64,
    /// The column's name; a dropped column keeps a placeholder.
    pub name: String,
    pub dropped: bool,
    /// The column's type oid; 0 once dropped.
    pub type_oid: u32,
}

/// Every user attribute of a table, dropped ones included, in `attnum` order;
/// empty when the table does not exist.
pub(crate) async fn attributes(client: &Client, name: &TableName) -> Result<Vec<Attribute>> {
    let schema = name.schema.clone().unwrap_or_else(|| "public".into());
    let rows = client
        .query(
            "SELECT a.attnum::int8, a.attname::text, a.attisdropped, a.atttypid FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 ORDER BY a.attnum",
            &[&schema, &name.name],
        )
        .await
        .map_err(|e| pg_err(e, "reading the table's columns").table(name))?;
    Ok(rows
        .iter()
        .map(|r| Attribute {
            attnum: r.get(0),
            name: r.get(1),
            dropped: r.get(2),
            type_oid: r.get(3),
        })
        .collect())
}

/// Every ordinary or partitioned table the filter selects (partitions are read
/// through their parent), with columns, keys and indexes.
pub(crate) async fn discover(client: &Client, filter: &TableFilter) -> Result<Vec<PgTable>> {
    let rows = client
        .query(
            "SELECT c.oid, n.nspname::text, c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' \
               AND c.relname NOT IN ('siphon_checkpoints', 'siphon_columns') \
             ORDER BY 2, 3",
            &[],
        )
        .await
        .map_err(|e| pg_err(e, "listing tables"))?;
    let mut cache = HashMap::new();
    let mut out = Vec::new();
    for r in rows {
        let name = TableName::new(
            Some(r.get::<_, String>(1).as_str()),
            r.get::<_, String>(2).as_str(),
        );
        if filter.matches(&name) {
            out.push(describe(client, r.get(0), name, &mut cache).await?);
        }
    }
    let selected: Vec<TableName> = out.iter().map(|t| t.schema.name.clone()).collect();
    partition::warn_unselected(client, filter, &selected).await?;
    crate::objects::attach(client, filter, &mut out).await?;
    Ok(out)
}

/// One table by name, or `None` when it does not exist.
pub(crate) async fn find(client: &Client, name: &TableName) -> Result<Option<PgTable>> {
    let schema = name.schema.clone().unwrap_or_else(|| "public".into());
    let row = client
        .query_opt(
            "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&schema, &name.name],
        )
        .await
        .map_err(|e| pg_err(e, "looking up a table"))?;
    match row {
        Some(r) => {
            let name = TableName::new(Some(&schema), &name.name);
            Ok(Some(
                describe(client, r.get(0), name, &mut HashMap::new()).await?,
            ))
        }
        None => Ok(None),
    }
}

async fn describe(
    client: &Client,
    oid: u32,
    name: TableName,
    cache: &mut HashMap<(u32, i32), PgType>,
) -> Result<PgTable> {
    let err = |e| pg_err(e, &format!("reading the columns of {name}"));
    let cols = client
        .query(
            "SELECT a.attnum, a.attname::text, a.atttypid, a.atttypmod, a.attnotnull, a.attgenerated::text, \
                    NULL::text, pg_get_expr(d.adbin, d.adrelid) \
             FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(err)?;
    let mut columns = Vec::with_capacity(cols.len());
    let mut types = Vec::with_capacity(cols.len());
    let mut attnums = Vec::with_capacity(cols.len());
    for c in &cols {
        let ty = type_of(client, c.get(2), c.get(3), cache).await?;
        let generated = c.get::<_, String>(5) == "s";
        // The resolved type's name: a domain's base type, an enum's qualified name.
        let declared = ty.name.clone();
        let native = match (generated, c.get::<_, Option<String>>(7)) {
            (true, Some(expr)) => format!("{declared} GENERATED ALWAYS AS ({expr}) STORED"),
            _ => declared,
        };
        columns.push(Column {
            name: c.get(1),
            data_type: DataType::new(ty.kind.clone(), !c.get::<_, bool>(4)),
            native_type: native,
            generated,
            source_id: Some(i64::from(c.get::<_, i16>(0))),
        });
        types.push(ty);
        attnums.push(c.get::<_, i16>(0));
    }
    let position = |attnum: i16| attnums.iter().position(|&a| a == attnum);
    let keys = client
        .query(
            "SELECT contype::text, conkey FROM pg_constraint WHERE conrelid = $1::oid AND contype IN ('p', 'u') \
             ORDER BY contype, conname",
            &[&oid],
        )
        .await
        .map_err(err)?;
    let mut primary_key = Vec::new();
    let mut unique_keys = Vec::new();
    for k in keys {
        let cols: Vec<usize> = k
            .get::<_, Vec<i16>>(1)
            .into_iter()
            .filter_map(position)
            .collect();
        if k.get::<_, String>(0) == "p" {
            primary_key = cols;
        } else {
            unique_keys.push(cols);
        }
    }
    let idx = client
        .query(
            "SELECT i.relname::text, ix.indisunique, ix.indkey::int2[], ix.indexprs IS NOT NULL OR ix.indpred IS NOT NULL \
             FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid \
             WHERE ix.indrelid = $1::oid AND NOT ix.indisprimary \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ix.indexrelid) \
             ORDER BY 1",
            &[&oid],
        )
        .await
        .map_err(err)?;
    let mut indexes = Vec::new();
    for i in idx {
        // Expression and partial indexes have no portable form.
        if i.get::<_, bool>(3) {
            continue;
        }
        let cols: Option<Vec<String>> = i
            .get::<_, Vec<i16>>(2)
            .into_iter()
            .map(|a| position(a).map(|p| columns[p].name.clone()))
            .collect();
        if let Some(columns) = cols {
            // Without a primary key, a unique index made with CREATE UNIQUE INDEX
            // (not a constraint) is a key as much as a UNIQUE constraint is.
            if primary_key.is_empty() && i.get::<_, bool>(1) {
                let key: Vec<usize> = i
                    .get::<_, Vec<i16>>(2)
                    .into_iter()
                    .filter_map(position)
                    .collect();
                if !unique_keys.contains(&key) {
                    unique_keys.push(key);
                }
            }
            indexes.push(Index {
                name: i.get(0),
                columns,
                unique: i.get(1),
            });
        }
    }
    let partitioning = partition::read(client, oid, &name).await?;
    Ok(PgTable {
        schema: TableSchema {
            name,
            origin: Engine::Postgres,
            columns,
            primary_key,
            unique_keys,
            indexes,
            partitioning,
            objects: Vec::new(),
        },
        types,
    })
}

async fn is_domain(client: &Client, oid: u32) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT typtype = 'd' FROM pg_type WHERE oid = $1::oid",
            &[&oid],
        )
        .await
        .map_err(|e| pg_err(e, "reading a column type"))?;
    Ok(row.get(0))
}

/// The enum types a column's kind uses, itself or as array elements.
fn enums_in(kind: &TypeKind) -> Option<(&str, &[String])> {
    match kind {
        TypeKind::Enum { name, labels } => Some((name, labels)),
        TypeKind::Array { element } => enums_in(element),
        _ => None,
    }
}

/// The schema part of a qualified name as [`ident`] quotes it (`"s"."t"`), or
/// `None` for an unqualified one.
fn schema_part(qualified: &str) -> Option<String> {
    let rest = qualified.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                chars.next();
                out.push('"');
            } else {
                return (chars.next() == Some('.')).then_some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// The statements that create a table (and any enum type it uses) on a
/// PostgreSQL target, for a schema read from any engine.
pub(crate) fn create_statements(t: &TableSchema, schema: &str) -> Vec<String> {
    let mut out = vec![format!("CREATE SCHEMA IF NOT EXISTS {}", ident(schema))];
    let mut cols = Vec::new();
    for c in &t.columns {
        let ty = if t.origin == Engine::Postgres {
            if let Some((name, labels)) = enums_in(&c.data_type.kind) {
                if let Some(s) = schema_part(name).filter(|s| s != schema) {
                    out.push(format!("CREATE SCHEMA IF NOT EXISTS {}", ident(&s)));
                }
                let labels: Vec<String> = labels.iter().map(|l| literal(l)).collect();
                // CREATE TYPE has no IF NOT EXISTS: a DO block ignores an existing one.
                out.push(format!(
                    "DO $$ BEGIN CREATE TYPE {name} AS ENUM ({}); EXCEPTION WHEN duplicate_object THEN NULL; END $$",
                    labels.join(", ")
                ));
            }
            c.native_type.clone()
        } else {
            typemap::native_type(Engine::Postgres, t.origin, c)
        };
        let null = if c.data_type.nullable {
            ""
        } else {
            " NOT NULL"
        };
        cols.push(format!("{} {ty}{null}", ident(&c.name)));
    }
    if !t.primary_key.is_empty() {
        cols.push(format!(
            "PRIMARY KEY ({})",
            column_list(t.primary_key.iter().map(|&i| t.columns[i].name.as_str()))
        ));
    }
    for k in &t.unique_keys {
        let names: Vec<&str> = k.iter().map(|&i| t.columns[i].name.as_str()).collect();
        // A key that is a unique index at the source (a table without a primary
        // key) takes the index's name, so creating that index afterwards finds it
        // there rather than adding a second one.
        let index = t.indexes.iter().find(|ix| {
            t.primary_key.is_empty()
                && ix.unique
                && ix
                    .columns
                    .iter()
                    .map(String::as_str)
                    .eq(names.iter().copied())
        });
        let constraint = index.map_or(String::new(), |ix| {
            format!("CONSTRAINT {} ", ident(&ix.name))
        });
        cols.push(format!(
            "{constraint}UNIQUE ({})",
            column_list(names.iter().copied())
        ));
    }
    out.push(format!(
        "CREATE TABLE {} (\n  {}\n){}",
        qualified(Some(schema), &t.name.name),
        cols.join(",\n  "),
        partition::partition_by(t)
    ));
    out.extend(partition::create_partitions(t, schema));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_of_a_quoted_qualified_name() {
        assert_eq!(schema_part(r#""kinds"."color""#).as_deref(), Some("kinds"));
        assert_eq!(schema_part(r#""a""b"."t""#).as_deref(), Some(r#"a"b"#));
        assert_eq!(schema_part(r#""color""#), None);
        assert_eq!(schema_part("color"), None);
    }
}
