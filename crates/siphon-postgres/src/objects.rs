//! The objects that belong with a table beyond its columns and keys, read from
//! pg_catalog: defaults, CHECK constraints, owned sequences and identity columns,
//! indexes, foreign keys, comments and views, and what siphon does not carry.
//!
//! Definitions are read with the table's own schema alone on the search path, so
//! names in that schema come out unqualified and a target recreates them in its
//! own schema (see [`target`]).

pub(crate) mod target;

use siphon_core::typemap::Engine;
use siphon_core::{
    ObjectKind, Result, SchemaObject, SequenceState, TableFilter, TableName, TableSchema,
};
use tokio_postgres::Client;

use crate::conn::{ident, literal, pg_err, qualified};
use crate::schema::PgTable;

pub(crate) use target::{empty_table, replica_role, Registry};

/// Reads the objects of every discovered table (and the views over them) into
/// `objects`. The session's search path is changed while reading and restored.
pub(crate) async fn attach(
    client: &Client,
    filter: &TableFilter,
    tables: &mut [PgTable],
) -> Result<()> {
    let saved: String = client
        .query_one("SELECT pg_catalog.current_setting('search_path')", &[])
        .await
        .map_err(|e| pg_err(e, "reading the search path"))?
        .get(0);
    let read = read_all(client, filter, tables).await;
    set_search_path(client, &saved).await?;
    read
}

async fn set_search_path(client: &Client, path: &str) -> Result<()> {
    client
        .execute(
            "SELECT pg_catalog.set_config('search_path', $1, false)",
            &[&path],
        )
        .await
        .map_err(|e| pg_err(e, "setting the search path"))?;
    Ok(())
}

async fn read_all(client: &Client, filter: &TableFilter, tables: &mut [PgTable]) -> Result<()> {
    for t in tables.iter_mut() {
        let schema = t
            .schema
            .name
            .schema
            .clone()
            .unwrap_or_else(|| "public".into());
        set_search_path(client, &ident(&schema)).await?;
        let objects = read_table(client, &t.schema, &schema, filter).await?;
        t.schema.objects.extend(objects);
    }
    let selected: Vec<TableName> = tables.iter().map(|t| t.schema.name.clone()).collect();
    for (owner, view) in read_views(client, filter, &selected).await? {
        if let Some(t) = tables.iter_mut().find(|t| t.schema.name == owner) {
            t.schema.objects.push(view);
        }
    }
    Ok(())
}

fn object(kind: ObjectKind, name: &str, definition: String, schema: &str) -> SchemaObject {
    SchemaObject {
        kind,
        name: name.to_string(),
        definition,
        origin: Engine::Postgres,
        schema: Some(schema.to_string()),
        depends_on: Vec::new(),
        sequence: None,
    }
}

fn not_carried(name: String, reason: &str, schema: &str) -> SchemaObject {
    object(
        ObjectKind::NotCarried {
            reason: reason.to_string(),
        },
        &name,
        String::new(),
        schema,
    )
}

/// The objects of one table, read with `schema` alone on the search path.
async fn read_table(
    client: &Client,
    table: &TableSchema,
    schema: &str,
    filter: &TableFilter,
) -> Result<Vec<SchemaObject>> {
    let name = &table.name;
    let err = |e| {
        pg_err(
            e,
            &format!("reading the constraints, indexes and sequences of {name}"),
        )
    };
    let full = qualified(Some(schema), &name.name);
    let oid: u32 = client
        .query_one("SELECT $1::text::regclass::oid", &[&full])
        .await
        .map_err(err)?
        .get(0);
    // Names in the table's own schema are unqualified, as the search path is.
    let me = ident(&name.name);
    let mut out = Vec::new();

    // The names of the primary key and unique constraints: a target names its
    // own by default and renames them to the source's.
    for r in client
        .query(
            "SELECT conname::text, pg_get_constraintdef(oid), contype::text FROM pg_constraint \
             WHERE conrelid = $1::oid AND contype IN ('p', 'u') ORDER BY conname",
            &[&oid],
        )
        .await
        .map_err(err)?
    {
        let (con, def, kind): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let sql = format!(
            "DO $siphon$ DECLARE n name; BEGIN \
             SELECT conname INTO n FROM pg_catalog.pg_constraint WHERE conrelid = {rel}::regclass \
             AND contype = {kind} AND pg_catalog.pg_get_constraintdef(oid) = {def} AND conname <> {con} LIMIT 1; \
             IF n IS NOT NULL THEN EXECUTE pg_catalog.format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', {rel}, n, {con}); \
             END IF; END $siphon$",
            rel = literal(&me),
            kind = literal(&kind),
            def = literal(&def),
            con = literal(&con),
        );
        out.push(object(ObjectKind::Key, &con, sql, schema));
        // A target creates keys as plain PRIMARY KEY / UNIQUE column lists.
        let plain = def
            .strip_prefix("PRIMARY KEY (")
            .or_else(|| def.strip_prefix("UNIQUE ("))
            .is_some_and(|rest| rest.ends_with(')') && !rest.contains('('));
        if !plain {
            out.push(not_carried(
                format!("options of constraint {con} on {name} ({def})"),
                "the target's key is a plain column list",
                schema,
            ));
        }
    }

    // Sequences owned by a column (serial) and identity columns.
    for r in client
        .query(
            "SELECT s.oid::regclass::text, a.attname::text, d.deptype::text, a.attidentity::text, \
                    format_type(q.seqtypid, NULL), q.seqstart, q.seqincrement, q.seqmin, q.seqmax, q.seqcache, \
                    q.seqcycle, quote_ident(sn.nspname) || '.' || quote_ident(s.relname) \
             FROM pg_depend d \
             JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
             JOIN pg_namespace sn ON sn.oid = s.relnamespace \
             JOIN pg_sequence q ON q.seqrelid = s.oid \
             JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
             WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass \
               AND d.refobjid = $1::oid AND d.deptype IN ('a', 'i') ORDER BY 1",
            &[&oid],
        )
        .await
        .map_err(err)?
    {
        let seq: String = r.get(0);
        let column: String = r.get(1);
        let identity: String = r.get(3);
        let increment: i64 = r.get(6);
        let options = format!(
            "INCREMENT BY {increment} MINVALUE {} MAXVALUE {} START WITH {} CACHE {}{} CYCLE",
            r.get::<_, i64>(7),
            r.get::<_, i64>(8),
            r.get::<_, i64>(5),
            r.get::<_, i64>(9),
            if r.get::<_, bool>(10) { "" } else { " NO" },
        );
        let sql = if r.get::<_, String>(2) == "i" {
            let how = if identity == "a" {
                "ALWAYS"
            } else {
                "BY DEFAULT"
            };
            format!(
                "ALTER TABLE {me} ALTER COLUMN {} ADD GENERATED {how} AS IDENTITY (SEQUENCE NAME {seq} {options})",
                ident(&column)
            )
        } else {
            format!(
                "CREATE SEQUENCE IF NOT EXISTS {seq} AS {} {options};\nALTER SEQUENCE {seq} OWNED BY {me}.{}",
                r.get::<_, String>(4),
                ident(&column)
            )
        };
        let mut o = object(ObjectKind::Sequence, &seq, sql, schema);
        let position = client
            .query_one(
                &format!(
                    "SELECT last_value, is_called FROM {}",
                    r.get::<_, String>(11)
                ),
                &[],
            )
            .await;
        o.sequence = Some(match position {
            Ok(p) => SequenceState {
                column,
                last_value: p.get(0),
                is_called: p.get(1),
                increment,
            },
            Err(e) => {
                tracing::warn!(table = %name, sequence = %seq, error = %e,
                    "cannot read the sequence's position; the target's follows the column's largest value");
                SequenceState {
                    column,
                    last_value: r.get(5),
                    is_called: false,
                    increment,
                }
            }
        });
        out.push(o);
    }

    // Column defaults (generation expressions are part of the column).
    for r in client
        .query(
            "SELECT a.attname::text, pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d \
             JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum \
             WHERE d.adrelid = $1::oid AND a.attgenerated = '' AND NOT a.attisdropped ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(err)?
    {
        let column: String = r.get(0);
        let sql = format!(
            "ALTER TABLE {me} ALTER COLUMN {} SET DEFAULT {}",
            ident(&column),
            r.get::<_, String>(1)
        );
        out.push(object(
            ObjectKind::Default,
            &format!("{}.{column}", name.name),
            sql,
            schema,
        ));
    }

    // CHECK constraints, foreign keys, and the constraints siphon leaves out.
    for r in client
        .query(
            "SELECT k.conname::text, pg_get_constraintdef(k.oid), k.contype::text, \
                    rn.nspname::text, rc.relname::text, obj_description(k.oid, 'pg_constraint') \
             FROM pg_constraint k \
             LEFT JOIN pg_class rc ON rc.oid = k.confrelid \
             LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace \
             WHERE k.conrelid = $1::oid AND k.contype IN ('c', 'f', 'x', 't', 'p', 'u') AND k.conislocal \
             ORDER BY k.conname",
            &[&oid],
        )
        .await
        .map_err(err)?
    {
        let con: String = r.get(0);
        let def: String = r.get(1);
        let sql = format!("ALTER TABLE {me} ADD CONSTRAINT {} {def}", ident(&con));
        match r.get::<_, String>(2).as_str() {
            "c" => out.push(object(ObjectKind::Check, &con, sql, schema)),
            "f" => {
                let referenced = TableName::new(
                    r.get::<_, Option<String>>(3).as_deref(),
                    &r.get::<_, Option<String>>(4).unwrap_or_default(),
                );
                if filter.matches(&referenced) {
                    let mut o = object(ObjectKind::ForeignKey, &con, sql, schema);
                    o.depends_on.push(referenced);
                    out.push(o);
                } else {
                    out.push(not_carried(
                        format!("foreign key {con} on {name}"),
                        &format!("it references {referenced}, which the pipeline does not select"),
                        schema,
                    ));
                }
            }
            "x" => out.push(not_carried(
                format!("exclusion constraint {con} on {name}"),
                "exclusion constraints are not copied",
                schema,
            )),
            _ => {}
        }
        if r.get::<_, Option<String>>(5).is_some() {
            out.push(not_carried(
                format!("comment on constraint {con} of {name}"),
                "comments on constraints are not copied",
                schema,
            ));
        }
    }

    // Secondary indexes (expression and partial ones included), with the
    // table's name as the search path resolves it.
    for r in client
        .query(
            "SELECT i.relname::text, pg_get_indexdef(ix.indexrelid), \
                    quote_ident(n.nspname) || '.' || quote_ident(c.relname), obj_description(i.oid, 'pg_class') \
             FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid \
             JOIN pg_class c ON c.oid = ix.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE ix.indrelid = $1::oid AND NOT EXISTS (SELECT 1 FROM pg_constraint k \
                 WHERE k.conindid = ix.indexrelid AND k.conrelid = ix.indrelid AND k.contype IN ('p', 'u', 'x')) \
             ORDER BY 1",
            &[&oid],
        )
        .await
        .map_err(err)?
    {
        let index: String = r.get(0);
        let sql = index_statement(&r.get::<_, String>(1), &r.get::<_, String>(2), &me);
        out.push(object(ObjectKind::Index, &index, sql, schema));
        if r.get::<_, Option<String>>(3).is_some() {
            out.push(not_carried(
                format!("comment on index {index}"),
                "comments on indexes are not copied",
                schema,
            ));
        }
    }

    // Comments on the table and its columns.
    for r in client
        .query(
            "SELECT NULL::text, obj_description($1::oid, 'pg_class') WHERE obj_description($1::oid, 'pg_class') IS NOT NULL \
             UNION ALL \
             SELECT a.attname::text, col_description($1::oid, a.attnum) FROM pg_attribute a \
             WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped \
               AND col_description($1::oid, a.attnum) IS NOT NULL",
            &[&oid],
        )
        .await
        .map_err(err)?
    {
        let text = literal(&r.get::<_, String>(1));
        let (label, sql) = match r.get::<_, Option<String>>(0) {
            None => (name.name.clone(), format!("COMMENT ON TABLE {me} IS {text}")),
            Some(c) => (
                format!("{}.{c}", name.name),
                format!("COMMENT ON COLUMN {me}.{} IS {text}", ident(&c)),
            ),
        };
        out.push(object(ObjectKind::Comment, &label, sql, schema));
    }

    out.extend(read_not_carried(client, oid, name, schema).await?);
    Ok(out)
}

/// Whether the table's objects define index `name` exactly, so its portable
/// description (columns only) is not used.
pub(crate) fn defines_index(table: &TableSchema, name: &str) -> bool {
    table
        .objects
        .iter()
        .any(|o| o.kind == ObjectKind::Index && o.origin == Engine::Postgres && o.name == name)
}

/// `CREATE [UNIQUE] INDEX IF NOT EXISTS name ON <table> …` from
/// pg_get_indexdef's text, which names the table `source` (schema-qualified);
/// an index on a partitioned table is created on its partitions too.
pub(crate) fn index_statement(def: &str, source: &str, table: &str) -> String {
    let mut out = def.to_string();
    for on in [format!(" ON ONLY {source} "), format!(" ON {source} ")] {
        if let Some(at) = out.find(&on) {
            out.replace_range(at..at + on.len(), &format!(" ON {table} "));
            break;
        }
    }
    for prefix in ["CREATE UNIQUE INDEX ", "CREATE INDEX "] {
        if let Some(rest) = out.strip_prefix(prefix) {
            return format!("{prefix}IF NOT EXISTS {rest}");
        }
    }
    out
}

/// Triggers, policies, rules, grants, publications and other properties of a
/// table that siphon does not recreate.
async fn read_not_carried(
    client: &Client,
    oid: u32,
    name: &TableName,
    schema: &str,
) -> Result<Vec<SchemaObject>> {
    let err = |e| {
        pg_err(
            e,
            &format!("reading the triggers, policies and rules of {name}"),
        )
    };
    let rows = client
        .query(
            "SELECT 'trigger ' || tgname || ' on ' || $2, 'triggers are not copied' FROM pg_trigger \
               WHERE tgrelid = $1::oid AND NOT tgisinternal \
             UNION ALL SELECT 'policy ' || polname || ' on ' || $2, 'row security policies are not copied' \
               FROM pg_policy WHERE polrelid = $1::oid \
             UNION ALL SELECT 'row level security on ' || $2, 'row level security is not enabled on targets' \
               FROM pg_class WHERE oid = $1::oid AND relrowsecurity \
             UNION ALL SELECT 'rule ' || rulename || ' on ' || $2, 'rules are not copied' FROM pg_rewrite \
               WHERE ev_class = $1::oid AND rulename <> '_RETURN' \
             UNION ALL SELECT 'grants on ' || $2, 'privileges are not copied' FROM pg_class \
               WHERE oid = $1::oid AND (relacl IS NOT NULL OR EXISTS (SELECT 1 FROM pg_attribute \
                 WHERE attrelid = $1::oid AND attacl IS NOT NULL)) \
             UNION ALL SELECT 'storage parameters of ' || $2, 'storage parameters are not copied' FROM pg_class \
               WHERE oid = $1::oid AND reloptions IS NOT NULL \
             UNION ALL SELECT 'unlogged table ' || $2, 'the target table is logged' FROM pg_class \
               WHERE oid = $1::oid AND relpersistence = 'u' \
             UNION ALL SELECT 'replica identity of ' || $2, 'replica identity is not copied' FROM pg_class \
               WHERE oid = $1::oid AND relreplident NOT IN ('d', 'p') \
             UNION ALL SELECT 'statistics ' || stxname || ' on ' || $2, 'extended statistics are not copied' \
               FROM pg_statistic_ext WHERE stxrelid = $1::oid \
             UNION ALL SELECT 'inheritance of ' || $2 || ' from ' || i.inhparent::regclass::text, \
                 'table inheritance is not copied' FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
               WHERE i.inhrelid = $1::oid AND NOT c.relispartition \
             UNION ALL SELECT 'collation of ' || $2 || '.' || a.attname, 'column collations are not copied' \
               FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
               WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attcollation <> t.typcollation \
             UNION ALL SELECT DISTINCT 'publication ' || pubname || ' of ' || $2, 'publications are not copied' \
               FROM pg_publication_tables WHERE schemaname = $3 AND tablename = $4 AND pubname NOT LIKE 'siphon\\_%' \
             ORDER BY 1",
            &[&oid, &name.to_string(), &schema, &name.name],
        )
        .await
        .map_err(err)?;
    Ok(rows
        .iter()
        .map(|r| not_carried(r.get(0), r.get::<_, &str>(1), schema))
        .collect())
}

/// The views and materialized views that read any selected table, each with the
/// selected table it is attached to (the first it reads in its own schema).
async fn read_views(
    client: &Client,
    filter: &TableFilter,
    selected: &[TableName],
) -> Result<Vec<(TableName, SchemaObject)>> {
    let err = |e| pg_err(e, "reading the views over the selected tables");
    let views = client
        .query(
            "SELECT DISTINCT v.oid, vn.nspname::text, v.relname::text, v.relkind::text \
             FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid \
             JOIN pg_class v ON v.oid = r.ev_class JOIN pg_namespace vn ON vn.oid = v.relnamespace \
             JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace \
             WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass \
               AND v.oid <> t.oid AND v.relkind IN ('v', 'm') AND t.relkind IN ('r', 'p') \
               AND (tn.nspname, t.relname) IN (SELECT * FROM unnest($1::text[], $2::text[])) \
             ORDER BY 2, 3",
            &[
                &selected
                    .iter()
                    .map(|t| t.schema.clone().unwrap_or_else(|| "public".into()))
                    .collect::<Vec<_>>(),
                &selected.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
            ],
        )
        .await
        .map_err(err)?;
    let mut out = Vec::new();
    for v in views {
        let oid: u32 = v.get(0);
        let schema: String = v.get(1);
        let view = TableName::new(Some(&schema), v.get::<_, &str>(2));
        let deps = client
            .query(
                "SELECT DISTINCT n.nspname::text, c.relname::text, c.relkind::text \
                 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid \
                 JOIN pg_class c ON c.oid = d.refobjid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE r.ev_class = $1::oid AND d.classid = 'pg_rewrite'::regclass \
                   AND d.refclassid = 'pg_class'::regclass AND c.oid <> $1::oid ORDER BY 1, 2",
                &[&oid],
            )
            .await
            .map_err(err)?;
        let deps: Vec<(TableName, bool)> = deps
            .iter()
            .map(|d| {
                let t = TableName::new(Some(d.get::<_, &str>(0)), d.get::<_, &str>(1));
                let table = matches!(d.get::<_, &str>(2), "r" | "p");
                let ok = table && filter.matches(&t) && selected.contains(&t);
                (t, ok)
            })
            .collect();
        let Some(owner) = deps
            .iter()
            .find(|(t, ok)| *ok && t.schema.as_deref() == Some(schema.as_str()))
            .or_else(|| deps.iter().find(|(_, ok)| *ok))
            .map(|(t, _)| t.clone())
        else {
            continue;
        };
        let reason = if v.get::<_, &str>(3) == "m" {
            Some("materialized views are not copied".to_string())
        } else if let Some((missing, _)) = deps.iter().find(|(_, ok)| !ok) {
            Some(format!(
                "it reads {missing}, which is not a table the pipeline selects"
            ))
        } else if owner.schema.as_deref() != Some(schema.as_str()) {
            Some("it is in another schema than its tables".to_string())
        } else {
            None
        };
        if let Some(reason) = reason {
            out.push((owner, not_carried(format!("view {view}"), &reason, &schema)));
            continue;
        }
        set_search_path(client, &ident(&schema)).await?;
        let r = client
            .query_one(
                "SELECT pg_get_viewdef($1::oid), array_to_string(reloptions, ', ') FROM pg_class WHERE oid = $1::oid",
                &[&oid],
            )
            .await
            .map_err(err)?;
        let body: String = r.get(0);
        let with = r
            .get::<_, Option<String>>(1)
            .filter(|o| !o.is_empty())
            .map(|o| format!(" WITH ({o})"))
            .unwrap_or_default();
        let sql = format!(
            "CREATE VIEW {}{with} AS\n{}",
            ident(&view.name),
            body.trim().trim_end_matches(';')
        );
        let mut o = object(ObjectKind::View, &view.name, sql, &schema);
        o.depends_on = deps.into_iter().map(|(t, _)| t).collect();
        out.push((owner, o));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_definition_names_the_table_as_the_search_path_does() {
        assert_eq!(
            index_statement(
                "CREATE UNIQUE INDEX orders_lower ON public.orders USING btree (lower(email)) WHERE (deleted IS NULL)",
                "public.orders",
                "\"orders\""
            ),
            "CREATE UNIQUE INDEX IF NOT EXISTS orders_lower ON \"orders\" USING btree (lower(email)) WHERE (deleted IS NULL)"
        );
        assert_eq!(
            index_statement(
                "CREATE INDEX m_d ON ONLY public.m USING btree (d)",
                "public.m",
                "\"m\""
            ),
            "CREATE INDEX IF NOT EXISTS m_d ON \"m\" USING btree (d)"
        );
    }
}
