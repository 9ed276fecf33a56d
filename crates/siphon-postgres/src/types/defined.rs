//! User-defined types a column may use beyond enums: composite types
//! (`CREATE TYPE … AS (…)`) and types from extensions (hstore, citext, …),
//! read from a source's catalog and created on a PostgreSQL target before the
//! tables that use them.
//!
//! Discovery reads each such type's definition ([`read`]) and keeps it by the
//! type's name as the columns carry it (`format_type()`, which is how
//! [`TypeKind::Engine`] names it); a target creating a table asks for the
//! statements its columns need ([`statements_for`]). Source and target of a
//! pipeline run in one siphon process, and discovery always precedes the
//! target's preparation, so the definitions are kept in this process.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use siphon_core::{Result, TableSchema, TypeKind};
use tokio_postgres::Client;

use crate::conn::{ident, literal, pg_err};

/// The statements creating each known type (and what it depends on), by name.
fn known() -> &'static Mutex<HashMap<String, Vec<String>>> {
    static KNOWN: OnceLock<Mutex<HashMap<String, Vec<String>>>> = OnceLock::new();
    KNOWN.get_or_init(Mutex::default)
}

/// Reads the definition of the type `oid` (named `name` by `format_type()`)
/// when it is a composite type or belongs to an extension, and keeps the
/// statements that create it (dependencies first: the types of a composite's
/// attributes, the enums among them) for [`statements_for`]. Other types are
/// left alone. Returns whether the type's binary format is text's: its send
/// and receive functions are the built-in `textsend` and `textrecv` (citext).
pub(crate) async fn read(client: &Client, oid: u32, name: &str) -> Result<bool> {
    let mut out = Vec::new();
    if define(client, oid, &mut out, 0).await? {
        if let Ok(mut k) = known().lock() {
            k.insert(name.to_string(), out);
        }
    }
    let row = client
        .query_one(
            "SELECT coalesce(r.prosrc = 'textrecv' AND s.prosrc = 'textsend' \
                    AND r.prolang = 12 AND s.prolang = 12, false) \
             FROM pg_type t JOIN pg_proc r ON r.oid = t.typreceive JOIN pg_proc s ON s.oid = t.typsend \
             WHERE t.oid = $1::oid AND t.typtype = 'b'",
            &[&oid],
        )
        .await;
    Ok(match row {
        Ok(r) => r.get(0),
        // No row: not a base type with send and receive functions.
        Err(_) => false,
    })
}

/// Appends the statements creating type `oid` to `out`; false when it is
/// neither composite, nor enum, nor from an extension (a built-in or base type
/// needs none). `depth` bounds nesting.
async fn define(client: &Client, oid: u32, out: &mut Vec<String>, depth: usize) -> Result<bool> {
    if depth > 16 {
        return Ok(false);
    }
    let err = |e| pg_err(e, "reading a column type's definition");
    let row = client
        .query_one(
            "SELECT t.typtype::text, n.nspname::text, t.typname::text, t.typrelid, t.typelem, \
                    t.typcategory::text, \
                    (SELECT e.extname::text FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid \
                      WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e' \
                        AND d.refclassid = 'pg_extension'::regclass LIMIT 1), \
                    (SELECT en.nspname::text FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid \
                      JOIN pg_namespace en ON en.oid = e.extnamespace \
                      WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e' \
                        AND d.refclassid = 'pg_extension'::regclass LIMIT 1) \
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = $1::oid",
            &[&oid],
        )
        .await
        .map_err(err)?;
    let typtype: String = row.get(0);
    let schema: String = row.get(1);
    let typname: String = row.get(2);
    let relid: u32 = row.get(3);
    let elem: u32 = row.get(4);
    let category: String = row.get(5);
    let extension: Option<String> = row.get(6);
    let ext_schema: Option<String> = row.get(7);
    if let (Some(ext), Some(ext_schema)) = (extension, ext_schema) {
        out.push(extension_statement(&ext, &ext_schema, &typname));
        return Ok(true);
    }
    if category == "A" && elem != 0 {
        return Box::pin(define(client, elem, out, depth + 1)).await;
    }
    let qualified = format!("{}.{}", ident(&schema), ident(&typname));
    match typtype.as_str() {
        "e" => {
            let labels: Vec<String> = client
                .query(
                    "SELECT enumlabel::text FROM pg_enum WHERE enumtypid = $1::oid ORDER BY enumsortorder",
                    &[&oid],
                )
                .await
                .map_err(err)?
                .iter()
                .map(|r| literal(&r.get::<_, String>(0)))
                .collect();
            out.push(format!("CREATE SCHEMA IF NOT EXISTS {}", ident(&schema)));
            out.push(create_type(&format!(
                "{qualified} AS ENUM ({})",
                labels.join(", ")
            )));
            Ok(true)
        }
        "c" => {
            let attrs = client
                .query(
                    "SELECT a.attname::text, a.atttypid, format_type(a.atttypid, a.atttypmod), \
                            (SELECT c.collname::text FROM pg_collation c WHERE c.oid = a.attcollation \
                              AND a.attcollation <> t.typcollation) \
                     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                     WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                    &[&relid],
                )
                .await
                .map_err(err)?;
            let mut cols = Vec::with_capacity(attrs.len());
            for a in &attrs {
                Box::pin(define(client, a.get(1), out, depth + 1)).await?;
                let collate = a
                    .get::<_, Option<String>>(3)
                    .map(|c| format!(" COLLATE {}", ident(&c)))
                    .unwrap_or_default();
                cols.push(format!(
                    "{} {}{collate}",
                    ident(&a.get::<_, String>(0)),
                    a.get::<_, String>(2)
                ));
            }
            out.push(format!("CREATE SCHEMA IF NOT EXISTS {}", ident(&schema)));
            out.push(create_type(&format!(
                "{qualified} AS ({})",
                cols.join(", ")
            )));
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// `CREATE TYPE`, which has no IF NOT EXISTS: a DO block ignores an existing one.
fn create_type(definition: &str) -> String {
    format!(
        "DO $siphon$ BEGIN CREATE TYPE {definition}; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $siphon$"
    )
}

/// Creates extension `ext` (in `schema`, as at the source) unless it is there;
/// when the target server cannot, the error names the extension and the type.
fn extension_statement(ext: &str, schema: &str, typname: &str) -> String {
    let message = format!(
        "column type {typname} comes from the PostgreSQL extension {ext}, which the target server does not have: \
         install it on the target server (for PostgreSQL from packages, the package that ships extension {ext}, \
         often postgresql-contrib), or exclude the table from the pipeline"
    );
    format!(
        "DO $siphon$ BEGIN \
           IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = {ext_lit}) THEN \
             IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = {ext_lit}) THEN \
               RAISE EXCEPTION '%', {message}; \
             END IF; \
             EXECUTE {create}; \
           END IF; \
         END $siphon$",
        ext_lit = literal(ext),
        message = literal(&message),
        create = literal(&format!(
            "CREATE SCHEMA IF NOT EXISTS {s}; CREATE EXTENSION IF NOT EXISTS {e} WITH SCHEMA {s}",
            s = ident(schema),
            e = ident(ext)
        )),
    )
}

/// The user-defined type a column kind names, itself or as array element.
fn engine_name(kind: &TypeKind) -> Option<&str> {
    match kind {
        TypeKind::Engine { name } => Some(name),
        TypeKind::Array { element } => engine_name(element),
        _ => None,
    }
}

/// The type a column's declared type names, without array brackets or a
/// generation expression (`citext[]` → `citext`).
fn declared_name(native: &str) -> &str {
    let base = native.split(" GENERATED ").next().unwrap_or(native);
    base.trim_end_matches("[]")
}

/// The statements that create the composite and extension types `table`'s
/// columns use, as read by discovery, each once, in dependency order. Run them
/// before the table's `CREATE TABLE`; each does nothing when its type exists.
pub(crate) fn statements_for(table: &TableSchema) -> Vec<String> {
    let Ok(known) = known().lock() else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for c in &table.columns {
        let Some(stmts) = engine_name(&c.data_type.kind)
            .and_then(|n| known.get(n))
            .or_else(|| known.get(declared_name(&c.native_type)))
        else {
            continue;
        };
        for s in stmts {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_errors_name_the_extension() {
        let s = extension_statement("hstore", "public", "hstore");
        assert!(s.contains("extension hstore"), "{s}");
        assert!(
            s.contains(r#"CREATE EXTENSION IF NOT EXISTS "hstore" WITH SCHEMA "public""#),
            "{s}"
        );
        assert!(create_type("a AS (x int)").contains("duplicate_object"));
    }

    /// Against a real server: an extension the server lacks stops with its
    /// name and the fix; one it has is created.
    #[tokio::test]
    async fn extensions_are_created_or_named() {
        let pg = siphon_testkit::Postgres::shared().unwrap();
        let url = pg.create_database().unwrap();
        let client = crate::conn::connect(&url, "target").await.unwrap();
        let e = client
            .batch_execute(&extension_statement("siphon_absent", "public", "thing"))
            .await
            .unwrap_err();
        let message = e.as_db_error().map(|d| d.message().to_string()).unwrap();
        assert!(message.contains("column type thing"), "{message}");
        assert!(message.contains("extension siphon_absent"), "{message}");
        assert!(
            message.contains("install it on the target server"),
            "{message}"
        );
        for _ in 0..2 {
            client
                .batch_execute(&extension_statement("citext", "public", "citext"))
                .await
                .unwrap();
        }
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_extension WHERE extname = 'citext'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
    }
}
