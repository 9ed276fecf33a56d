//! Recreating a table's objects on a PostgreSQL target: with the table (keys'
//! names, sequences, defaults, checks, indexes, comments), after the load
//! (foreign keys, views, sequence positions), and emptying a table that foreign
//! keys reference.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use siphon_core::typemap::Engine;
use siphon_core::{
    Error, ObjectKind, Result, SchemaObject, SchemaOptions, TableFilter, TableName, TableSchema,
};
use tokio_postgres::{Client, Transaction};

use crate::conn::{connect, ident, pg_err, qualified};
use crate::PostgresSink;

/// Sets `session_replication_role = replica` on a target connection when the
/// user may: as in PostgreSQL's own apply worker, foreign keys and ordinary
/// triggers then do not fire for siphon's writes, so tables load and change
/// batches apply in any order. Returns whether it was set.
pub(crate) async fn replica_role(client: &Client) -> bool {
    match client
        .batch_execute("SET session_replication_role = replica")
        .await
    {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "session_replication_role cannot be set on the target");
            false
        }
    }
}

/// Empties the target table `table` (quoted, qualified) before a reload:
/// TRUNCATE, or DELETE when a foreign key of another table references it (which
/// TRUNCATE refuses). Without `replica` such a DELETE would fire the foreign
/// keys (failing, or cascading into tables the pipeline may not reload), so it
/// is refused with the fix.
pub(crate) async fn empty_table(
    tx: &Transaction<'_>,
    table: &str,
    replica: bool,
    name: &TableName,
) -> Result<()> {
    let werr = |e| pg_err(e, &format!("emptying {name}")).table(name);
    let referenced: Vec<String> = tx
        .query(
            "SELECT conname::text || ' on ' || conrelid::regclass::text FROM pg_catalog.pg_constraint \
             WHERE contype = 'f' AND confrelid = $1::text::regclass AND conrelid <> confrelid ORDER BY 1",
            &[&table],
        )
        .await
        .map_err(werr)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let sql = if referenced.is_empty() {
        format!("TRUNCATE {table}")
    } else if replica {
        format!("DELETE FROM {table}")
    } else {
        return Err(Error::bad_input(format!(
            "the target table is referenced by foreign key {}, so reloading it needs \
             session_replication_role: connect as a superuser, or GRANT SET ON PARAMETER \
             session_replication_role TO the target user",
            referenced.join(", ")
        ))
        .table(name));
    };
    tx.batch_execute(&sql).await.map_err(werr)
}

/// The objects of the tables a sink prepared, and what could not be created:
/// one warning per pass lists it.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// By target table name.
    tables: Mutex<BTreeMap<TableName, Vec<SchemaObject>>>,
    /// Objects that failed when their table was created, for the next warning.
    failed: Mutex<Vec<String>>,
    /// What the last warning listed.
    listed: Mutex<Vec<String>>,
}

/// `search_path` for an object's statements on the target: the target schema
/// first, then the source's (where types and functions the object uses may live).
fn search_path(target: &str, o: &SchemaObject) -> String {
    match o.schema.as_deref() {
        Some(s) if s != target => format!("{}, {}", ident(target), ident(s)),
        _ => ident(target),
    }
}

/// Runs `sql` in one transaction with `path` as the search path.
async fn run_in(client: &Client, path: &str, sql: &str) -> std::result::Result<(), String> {
    let r = client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL search_path = {path}; {sql}; COMMIT"
        ))
        .await;
    match r {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(match e.as_db_error() {
                Some(db) => db.message().to_string(),
                None => e.to_string(),
            })
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a table an object depends on is on the target: a table of the
/// object's own schema goes where the object's table went.
fn target_of(dep: &TableName, o: &SchemaObject, schema: &str) -> TableName {
    if dep.schema == o.schema {
        TableName::new(Some(schema), &dep.name)
    } else {
        dep.clone()
    }
}

fn kind_label(kind: &ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Key => "constraint name",
        ObjectKind::Sequence => "sequence",
        ObjectKind::Default => "default",
        ObjectKind::Check => "check constraint",
        ObjectKind::Index => "index",
        ObjectKind::Comment => "comment on",
        ObjectKind::ForeignKey => "foreign key",
        ObjectKind::View => "view",
        ObjectKind::Function => "function",
        ObjectKind::Procedure => "procedure",
        ObjectKind::Trigger => "trigger",
        ObjectKind::NotCarried { .. } => "object",
    }
}

impl Registry {
    /// Records a prepared table's objects (a shape without objects, as a change
    /// stream reports it, keeps those known), and when siphon just `created`
    /// the table, creates those that belong with it. An object that fails is
    /// listed in the next warning; the table stays usable.
    pub(crate) async fn prepared(
        &self,
        client: &Client,
        table: &TableSchema,
        schema: &str,
        options: &SchemaOptions,
        created: bool,
    ) {
        {
            let mut tables = lock(&self.tables);
            if !table.objects.is_empty() || !tables.contains_key(&table.name) {
                tables.insert(table.name.clone(), table.objects.clone());
            }
        }
        if !created {
            return;
        }
        let mut with_table: Vec<&SchemaObject> = table
            .objects
            .iter()
            .filter(|o| o.origin == Engine::Postgres && o.kind <= ObjectKind::Comment)
            .filter(|o| options.indexes || o.kind != ObjectKind::Index)
            .collect();
        with_table.sort_by(|a, b| a.kind.cmp(&b.kind));
        for o in with_table {
            if let Err(e) = run_in(client, &search_path(schema, o), &o.definition).await {
                lock(&self.failed).push(format!(
                    "{} {} on {} (creating it on the target failed: {e})",
                    kind_label(&o.kind),
                    o.name,
                    table.name
                ));
            }
        }
    }

    /// After a pass loaded its tables: creates the missing foreign keys among
    /// them (NOT VALID, then validated) and views over them, moves owned
    /// sequences forward, and logs one warning naming everything not carried.
    /// Never moves a target sequence backward; never replaces an existing view
    /// or constraint.
    pub(crate) async fn finish(
        &self,
        client: &Client,
        options: &SchemaOptions,
        replica: bool,
    ) -> Result<()> {
        let tables = lock(&self.tables).clone();
        let prepared: HashSet<&TableName> = tables.keys().collect();
        let mut notes = std::mem::take(&mut *lock(&self.failed));
        for (target, objects) in &tables {
            let schema = target.schema.clone().unwrap_or_else(|| "public".into());
            let me = qualified(Some(&schema), &target.name);
            for o in objects.iter().filter(|o| o.origin == Engine::Postgres) {
                let label = format!("{} {} on {target}", kind_label(&o.kind), o.name);
                let missing = o
                    .depends_on
                    .iter()
                    .map(|d| target_of(d, o, &schema))
                    .find(|d| !prepared.contains(d));
                match &o.kind {
                    ObjectKind::NotCarried { reason } => {
                        notes.push(format!("{} ({reason})", o.name))
                    }
                    ObjectKind::ForeignKey => {
                        if !replica {
                            notes.push(format!(
                                "{label} (reloads with foreign keys in place need session_replication_role: \
                                 connect as a superuser, or GRANT SET ON PARAMETER session_replication_role \
                                 TO the target user)"
                            ));
                        } else if let Some(d) = missing {
                            notes.push(format!(
                                "{label} (its table {d} is not loaded on the target)"
                            ));
                        } else if let Err(e) = foreign_key(client, &me, &schema, o).await {
                            notes.push(format!("{label} ({e})"));
                        }
                    }
                    ObjectKind::View => {
                        let view = format!("view {}.{}", schema, o.name);
                        if !options.views {
                            notes.push(format!("{view} (set `schema.views: true` to create it)"));
                        } else if let Some(d) = missing {
                            notes.push(format!(
                                "{view} (its table {d} is not loaded on the target)"
                            ));
                        } else if let Err(e) = view_if_missing(client, &schema, o).await {
                            notes.push(format!("{view} (creating it on the target failed: {e})"));
                        }
                    }
                    ObjectKind::Sequence => {
                        if let Err(e) = move_sequence(client, &schema, &target.name, o).await {
                            notes.push(format!("position of {label} ({e})"));
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut listed = lock(&self.listed);
        if !notes.is_empty() {
            let text = notes.join("; ");
            if *listed == notes {
                // A continuous run says it again only when it changes.
                tracing::debug!(objects = notes.len(), "not carried to the target: {text}");
            } else {
                tracing::warn!(objects = notes.len(), "not carried to the target: {text}");
            }
        }
        *listed = notes;
        Ok(())
    }
}

/// Adds a missing foreign key NOT VALID, then validates it (unless the source's
/// is not validated either); one left NOT VALID is validated by a later pass.
async fn foreign_key(
    client: &Client,
    table: &str,
    schema: &str,
    o: &SchemaObject,
) -> std::result::Result<(), String> {
    let found = client
        .query_opt(
            "SELECT convalidated FROM pg_catalog.pg_constraint WHERE conrelid = $1::text::regclass \
             AND conname = $2 AND contype = 'f'",
            &[&table, &o.name],
        )
        .await
        .map_err(|e| e.to_string())?;
    let source_valid = !o.definition.ends_with(" NOT VALID");
    let path = search_path(schema, o);
    let validated = match found {
        Some(r) => r.get::<_, bool>(0),
        None => {
            if !source_valid {
                run_in(client, &path, &o.definition)
                    .await
                    .map_err(|e| format!("creating it on the target failed: {e}"))?;
                return Ok(());
            }
            match run_in(client, &path, &format!("{} NOT VALID", o.definition)).await {
                Ok(()) => false,
                // A partitioned table takes no NOT VALID foreign key: it is
                // added and checked at once.
                Err(_) => {
                    run_in(client, &path, &o.definition)
                        .await
                        .map_err(|e| format!("creating it on the target failed: {e}"))?;
                    true
                }
            }
        }
    };
    if source_valid && !validated {
        run_in(
            client,
            &path,
            &format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", ident(&o.name)),
        )
        .await
        .map_err(|e| format!("left NOT VALID on the target: {e}"))?;
    }
    Ok(())
}

async fn view_if_missing(
    client: &Client,
    schema: &str,
    o: &SchemaObject,
) -> std::result::Result<(), String> {
    let exists = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&qualified(Some(schema), &o.name)],
        )
        .await
        .map_err(|e| e.to_string())?
        .get::<_, bool>(0);
    if exists {
        return Ok(());
    }
    run_in(client, &search_path(schema, o), &o.definition).await
}

/// Moves the target's copy of an owned sequence forward to the source's
/// position, or past the largest value its column holds on the target if that
/// is further; never backward. Returns the position set, if any.
async fn move_sequence(
    client: &Client,
    schema: &str,
    table: &str,
    o: &SchemaObject,
) -> std::result::Result<Option<i64>, String> {
    let Some(s) = &o.sequence else {
        return Ok(None);
    };
    let r = move_in_tx(client, &search_path(schema, o), table, &o.name, s).await;
    if r.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    r.map_err(|e| match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    })
}

async fn move_in_tx(
    client: &Client,
    path: &str,
    table: &str,
    sequence: &str,
    s: &siphon_core::SequenceState,
) -> std::result::Result<Option<i64>, tokio_postgres::Error> {
    client
        .batch_execute(&format!("BEGIN; SET LOCAL search_path = {path}"))
        .await?;
    let t = client
        .query_one(
            &format!("SELECT last_value, is_called FROM {sequence}"),
            &[],
        )
        .await?;
    let extreme = if s.increment > 0 { "max" } else { "min" };
    let held: Option<i64> = client
        .query_one(
            &format!(
                "SELECT {extreme}({})::bigint FROM {}",
                ident(&s.column),
                ident(table)
            ),
            &[],
        )
        .await?
        .get(0);
    let current = t.get::<_, bool>(1).then(|| t.get::<_, i64>(0));
    let candidates = [s.is_called.then_some(s.last_value), current, held];
    let best = candidates.into_iter().flatten();
    let next = if s.increment > 0 {
        best.max()
    } else {
        best.min()
    };
    if let Some(v) = next.filter(|&v| current != Some(v)) {
        client
            .query_one(
                "SELECT setval($1::text::regclass, $2, true)",
                &[&sequence, &v],
            )
            .await?;
    }
    client.batch_execute("COMMIT").await?;
    Ok(next)
}

impl PostgresSink {
    /// What the last pass's warning listed as not carried to the target (empty
    /// when everything was).
    pub fn not_carried(&self) -> Vec<String> {
        lock(&self.objects.listed).clone()
    }
}

/// Moves the owned sequences (serial and identity columns) of the tables
/// `filter` selects on the PostgreSQL source at `source_url` forward on the
/// target at `target_url` (tables in `target_schema` when given), never
/// backward. Returns each table, sequence and the position set.
pub async fn sync_sequences(
    source_url: &str,
    target_url: &str,
    filter: &TableFilter,
    target_schema: Option<&str>,
) -> Result<Vec<(TableName, String, Option<i64>)>> {
    let source = connect(source_url, "source").await?;
    let tables = crate::schema::discover(&source, filter).await?;
    let target = connect(target_url, "target").await?;
    let mut out = Vec::new();
    for t in tables {
        let schema = target_schema
            .map(str::to_string)
            .or_else(|| t.schema.name.schema.clone())
            .unwrap_or_else(|| "public".into());
        for o in t
            .schema
            .objects
            .iter()
            .filter(|o| o.kind == ObjectKind::Sequence)
        {
            let set = move_sequence(&target, &schema, &t.schema.name.name, o)
                .await
                .map_err(|e| {
                    Error::bad_input(format!(
                        "cannot move sequence {} on the target: {e}; create the table with siphon \
                         (`schema.create: true`) or create the sequence",
                        o.name
                    ))
                    .table(&t.schema.name)
                })?;
            out.push((t.schema.name.clone(), o.name.clone(), set));
        }
    }
    Ok(out)
}
