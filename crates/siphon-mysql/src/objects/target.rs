//! Keeping a MySQL/MariaDB target's schema objects in step with the source's:
//! indexes, views, functions, procedures and triggers read by
//! [`super::attach_objects`] are created, replaced when their definition
//! changed, and dropped when the source dropped them.
//!
//! Only objects siphon created (or found identical to the source's and so
//! took over) are ever replaced or dropped: each is recorded in the table
//! `_siphon_objects` of the target database, with the definition it was
//! created from. An object the target holds that siphon never recorded (an
//! index or trigger made by hand on the target) is left alone.
//!
//! Order: indexes, then views (a view over another view after it), functions,
//! procedures, triggers; what fails is tried again after the others in the
//! same pass (a view over a function, a view over a view whose name sorts
//! after it), and listed in one warning when it still fails. Drops go in the
//! reverse order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use siphon_core::typemap::Engine;
use siphon_core::{ObjectKind, Result, SchemaObject, SchemaOptions, TableName, TableSchema};

use super::{index_definitions, split_mode};
use crate::conn::{self, ident, my_err, qualified, Flavor};

/// The table in each target database that records what siphon created there.
pub const OBJECTS_TABLE: &str = "_siphon_objects";

/// The schema objects of the tables a MySQL sink prepared, and what could not
/// be carried, for one warning per pass.
///
/// A sink calls [`Registry::prepared`] from `prepare` for each table (with the
/// table's target name) and [`Registry::finish`] from `finish_tables`.
#[derive(Debug, Default)]
pub struct Registry {
    /// Objects by target table, as the last shape of each table that carried
    /// any listed them.
    tables: Mutex<BTreeMap<TableName, Vec<SchemaObject>>>,
    /// What the last warning listed.
    listed: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a pass did to a target database's objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finished {
    /// `kind name` of each object created or replaced.
    pub created: Vec<String>,
    /// `kind name` of each object dropped because the source dropped it.
    pub dropped: Vec<String>,
    /// What was not carried, and why.
    pub not_carried: Vec<String>,
}

/// One object as the target records it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    kind: String,
    /// The table of an index or trigger; empty for database-level objects.
    tbl: String,
    name: String,
}

fn kind_word(kind: &ObjectKind) -> Option<&'static str> {
    Some(match kind {
        ObjectKind::Index => "index",
        ObjectKind::View => "view",
        ObjectKind::Function => "function",
        ObjectKind::Procedure => "procedure",
        ObjectKind::Trigger => "trigger",
        _ => return None,
    })
}

fn kind_rank(word: &str) -> u8 {
    match word {
        "index" => 0,
        "view" => 1,
        "function" => 2,
        "procedure" => 3,
        _ => 4,
    }
}

/// Whether the options ask for objects of this kind on the target: indexes
/// with `schema.indexes`; views with `schema.routines` or `schema.views`;
/// functions, procedures and triggers with `schema.routines`.
pub fn wanted(kind: &ObjectKind, options: &SchemaOptions) -> bool {
    match kind {
        ObjectKind::Index => options.indexes,
        ObjectKind::View => options.routines || options.views,
        ObjectKind::Function | ObjectKind::Procedure | ObjectKind::Trigger => options.routines,
        _ => false,
    }
}

impl Registry {
    /// A registry that knows no table yet.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Records the objects of a prepared table (`table` carries its target
    /// name). A shape without objects (as a change stream may report it)
    /// keeps those known.
    pub fn prepared(&self, table: &TableSchema) {
        let mut tables = lock(&self.tables);
        let ours = table.objects.iter().any(|o| o.origin == Engine::Mysql);
        if ours || !tables.contains_key(&table.name) {
            let objects = table
                .objects
                .iter()
                .filter(|o| o.origin == Engine::Mysql)
                .cloned()
                .collect();
            tables.insert(table.name.clone(), objects);
        }
    }

    /// What the last pass's warning listed as not carried (empty when
    /// everything was).
    pub fn not_carried(&self) -> Vec<String> {
        lock(&self.listed).clone()
    }

    /// Brings the objects of the prepared tables in step with the source's, as
    /// the module says, in the target database `database` (the sink's, where
    /// it writes every table whatever the source database). Idempotent: a pass with
    /// nothing changed at the source changes nothing. An object that cannot be
    /// created is listed in the result and in one warning, not an error; errors
    /// are the target's own (it cannot be read, `_siphon_objects` cannot be
    /// written).
    pub async fn finish(
        &self,
        conn: &mut Conn,
        database: &str,
        options: &SchemaOptions,
    ) -> Result<Finished> {
        let tables: Vec<(String, Vec<SchemaObject>)> = lock(&self.tables)
            .iter()
            .map(|(name, objects)| (name.name.clone(), objects.clone()))
            .collect();
        let flavor = conn::server(conn).await?.flavor;
        let mut done = Finished::default();
        sync_database(conn, flavor, database, &tables, options, &mut done).await?;
        let mut listed = lock(&self.listed);
        if !done.not_carried.is_empty() {
            let text = done.not_carried.join("; ");
            if *listed == done.not_carried {
                tracing::debug!(
                    objects = done.not_carried.len(),
                    "not carried to the target: {text}"
                );
            } else {
                tracing::warn!(
                    objects = done.not_carried.len(),
                    "not carried to the target: {text}"
                );
            }
        }
        *listed = done.not_carried.clone();
        Ok(done)
    }
}

/// One object the target should hold.
struct Wanted<'a> {
    key: Key,
    object: &'a SchemaObject,
    source_db: String,
}

async fn sync_database(
    conn: &mut Conn,
    flavor: Flavor,
    db: &str,
    tables: &[(String, Vec<SchemaObject>)],
    options: &SchemaOptions,
    done: &mut Finished,
) -> Result<()> {
    // What the source holds now, for the scopes this pass knows: the tables
    // prepared (their indexes and triggers) and their source databases
    // (views and routines).
    let mut want: BTreeMap<Key, Wanted> = BTreeMap::new();
    let mut known_tables: BTreeSet<String> = BTreeSet::new();
    let mut known_sources: BTreeSet<String> = BTreeSet::new();
    for (table, objects) in tables {
        known_tables.insert(table.clone());
        for o in objects {
            if let ObjectKind::NotCarried { reason } = &o.kind {
                done.not_carried.push(format!("{} ({reason})", o.name));
                continue;
            }
            let Some(word) = kind_word(&o.kind) else {
                continue;
            };
            let source_db = o.schema.clone().unwrap_or_default();
            known_sources.insert(source_db.clone());
            if !wanted(&o.kind, options) {
                continue;
            }
            let tbl = match o.kind {
                ObjectKind::Index | ObjectKind::Trigger => table.clone(),
                _ => String::new(),
            };
            let key = Key {
                kind: word.into(),
                tbl,
                name: o.name.clone(),
            };
            want.entry(key.clone()).or_insert(Wanted {
                key,
                object: o,
                source_db,
            });
        }
    }
    if want.is_empty() && !recorded_table_exists(conn, db).await? {
        // Nothing to create and nothing siphon created here before.
        return Ok(());
    }
    ensure_table(conn, db).await?;
    let recorded = read_recorded(conn, db).await?;
    let present = present_objects(conn, db, &known_tables).await?;

    // Create or replace what is missing or changed, in order, retrying what
    // failed while others still succeed. An index the target holds already,
    // identical to the source's, is taken over as it is.
    let mut todo: Vec<&Wanted> = Vec::new();
    for w in want.values() {
        let same = recorded
            .get(&w.key)
            .is_some_and(|(_, def)| *def == w.object.definition);
        match (same, present.get(&w.key)) {
            (true, Some(_)) => {}
            (false, Some(Some(def))) if *def == w.object.definition => record(conn, db, w).await?,
            _ => todo.push(w),
        }
    }
    todo.sort_by_key(|w| kind_rank(&w.key.kind));
    let mut failures: Vec<(&Wanted, String)> = Vec::new();
    loop {
        let mut next = Vec::new();
        let before = todo.len();
        failures.clear();
        for w in todo {
            let exists = present.get(&w.key).is_some();
            match create(conn, flavor, db, w, exists).await {
                Ok(()) => {
                    record(conn, db, w).await?;
                    done.created.push(format!("{} {}", w.key.kind, w.key.name));
                }
                Err(e) => {
                    failures.push((w, e));
                    next.push(w);
                }
            }
        }
        todo = next;
        if todo.is_empty() || todo.len() == before {
            break;
        }
    }
    for (w, e) in failures {
        done.not_carried.push(format!(
            "{} {}{} (creating it on the target failed: {e})",
            w.key.kind,
            w.key.name,
            match w.key.tbl.as_str() {
                "" => String::new(),
                t => format!(" on {t}"),
            }
        ));
    }

    // Drop what siphon created and the source no longer holds, in the
    // scopes this pass knows.
    let mut gone: Vec<(&Key, &String)> = recorded
        .iter()
        .filter(|(k, (source_db, _))| {
            let known = match k.kind.as_str() {
                "index" | "trigger" => known_tables.contains(&k.tbl),
                _ => known_sources.contains(source_db),
            };
            known
                && !want.contains_key(*k)
                && (k.kind == "index" || options.routines || (k.kind == "view" && options.views))
        })
        .map(|(k, (s, _))| (k, s))
        .collect();
    gone.sort_by_key(|(k, _)| std::cmp::Reverse(kind_rank(&k.kind)));
    for (k, _) in gone {
        let sql = match k.kind.as_str() {
            "index" => {
                if present.get(k).is_none() {
                    forget(conn, db, k).await?;
                    continue;
                }
                format!(
                    "DROP INDEX {} ON {}",
                    ident(&k.name),
                    qualified(Some(db), &k.tbl)
                )
            }
            "view" => format!("DROP VIEW IF EXISTS {}", qualified(Some(db), &k.name)),
            "function" => format!("DROP FUNCTION IF EXISTS {}", qualified(Some(db), &k.name)),
            "procedure" => format!("DROP PROCEDURE IF EXISTS {}", qualified(Some(db), &k.name)),
            _ => format!("DROP TRIGGER IF EXISTS {}", qualified(Some(db), &k.name)),
        };
        match conn.query_drop(&sql).await {
            Ok(()) => {
                forget(conn, db, k).await?;
                done.dropped.push(format!("{} {}", k.kind, k.name));
                tracing::info!(database = db, kind = %k.kind, name = %k.name, "dropped on the target as at the source");
            }
            Err(e) => done.not_carried.push(format!(
                "{} {} (dropping it on the target failed: {e})",
                k.kind, k.name
            )),
        }
    }
    Ok(())
}

/// Creates (or replaces) one object. `exists`: the target holds an object of
/// that name now.
async fn create(
    conn: &mut Conn,
    flavor: Flavor,
    db: &str,
    w: &Wanted<'_>,
    exists: bool,
) -> std::result::Result<(), String> {
    let (mode, stmt) = split_mode(&w.object.definition);
    let mut statements = Vec::new();
    match w.key.kind.as_str() {
        "index" => {
            if exists {
                statements.push(format!(
                    "DROP INDEX {} ON {}",
                    ident(&w.key.name),
                    ident(&w.key.tbl)
                ));
            }
            statements.push(stmt.to_string());
        }
        "view" => statements.push(stmt.to_string()),
        kind => {
            let guarded;
            let stmt = if kind == "trigger" {
                guarded = guard_trigger(stmt);
                guarded.as_str()
            } else {
                stmt
            };
            let upper = stmt.to_ascii_uppercase();
            if flavor == Flavor::MariaDb && !upper.starts_with("CREATE OR REPLACE") {
                statements.push(format!(
                    "CREATE OR REPLACE {}",
                    stmt["CREATE ".len().min(stmt.len())..].trim_start()
                ));
            } else {
                if exists {
                    statements.push(format!(
                        "DROP {} IF EXISTS {}",
                        kind.to_uppercase(),
                        ident(&w.key.name)
                    ));
                }
                statements.push(stmt.to_string());
            }
        }
    }
    let saved: Option<String> = conn
        .query_first("SELECT @@SESSION.sql_mode")
        .await
        .map_err(|e| e.to_string())?;
    let current: Option<String> = conn
        .query_first("SELECT DATABASE()")
        .await
        .map_err(|e| e.to_string())?;
    conn.query_drop(format!("USE {}", ident(db)))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(m) = mode {
        if let Err(e) = conn.query_drop(format!("SET SESSION sql_mode = {m}")).await {
            tracing::debug!(error = %e, "the source's sql_mode cannot be set on the target; creating under the target's");
        }
    }
    let mut result = Ok(());
    for s in &statements {
        if let Err(e) = conn.query_drop(s).await {
            result = Err(match &e {
                mysql_async::Error::Server(s) => format!("{} (error {})", s.message, s.code),
                other => other.to_string(),
            });
            break;
        }
    }
    if let Some(m) = saved {
        let _ = conn
            .query_drop(format!("SET SESSION sql_mode = {}", conn::literal(&m)))
            .await;
    }
    if let Some(d) = current.filter(|d| d != db) {
        let _ = conn.query_drop(format!("USE {}", ident(&d))).await;
    }
    if result.is_ok() {
        tracing::info!(database = db, kind = %w.key.kind, name = %w.key.name, "created on the target as at the source");
    }
    result
}

/// What the target database holds now: views, routines and triggers by
/// (kind, name); indexes of `tables` by (table, name) with their definition.
struct Present {
    names: BTreeMap<(String, String), ()>,
    indexes: BTreeMap<(String, String), String>,
}

impl Present {
    /// `None` when the target lacks the object; an index's definition, or
    /// `Some(None)` for an object of another kind that exists.
    fn get(&self, k: &Key) -> Option<Option<&String>> {
        match k.kind.as_str() {
            "index" => self.indexes.get(&(k.tbl.clone(), k.name.clone())).map(Some),
            _ => self
                .names
                .contains_key(&(k.kind.clone(), k.name.clone()))
                .then_some(None),
        }
    }
}

async fn present_objects(conn: &mut Conn, db: &str, tables: &BTreeSet<String>) -> Result<Present> {
    let err = |e| {
        my_err(
            e,
            &format!("reading the schema objects of target database {db}"),
        )
    };
    let rows: Vec<(String, String)> = conn
        .exec(
            "SELECT 'view', TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? \
             UNION ALL SELECT LOWER(ROUTINE_TYPE), ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? \
             UNION ALL SELECT 'trigger', TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?",
            (db, db, db),
        )
        .await
        .map_err(err)?;
    let names = rows.into_iter().map(|k| (k, ())).collect();
    let mut indexes = BTreeMap::new();
    for t in tables {
        for (name, def) in index_definitions(conn, db, t).await? {
            indexes.insert((t.clone(), name), def);
        }
    }
    Ok(Present { names, indexes })
}

async fn recorded_table_exists(conn: &mut Conn, db: &str) -> Result<bool> {
    let n: Option<i64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, OBJECTS_TABLE),
        )
        .await
        .map_err(|e| my_err(e, &format!("looking for {db}.{OBJECTS_TABLE}")))?;
    Ok(n.unwrap_or(0) > 0)
}

async fn ensure_table(conn: &mut Conn, db: &str) -> Result<()> {
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {} (\
         kind VARCHAR(16) NOT NULL, tbl VARCHAR(64) NOT NULL, name VARCHAR(64) NOT NULL, \
         source_db VARCHAR(64) NOT NULL, definition LONGTEXT NOT NULL, \
         updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
         PRIMARY KEY (kind, tbl, name)) DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
        qualified(Some(db), OBJECTS_TABLE)
    ))
    .await
    .map_err(|e| {
        my_err(
            e,
            &format!("creating {db}.{OBJECTS_TABLE}, where siphon records the objects it creates"),
        )
    })
}

async fn read_recorded(conn: &mut Conn, db: &str) -> Result<BTreeMap<Key, (String, String)>> {
    let rows: Vec<(String, String, String, String, String)> = conn
        .query(format!(
            "SELECT kind, tbl, name, source_db, definition FROM {}",
            qualified(Some(db), OBJECTS_TABLE)
        ))
        .await
        .map_err(|e| my_err(e, &format!("reading {db}.{OBJECTS_TABLE}")))?;
    Ok(rows
        .into_iter()
        .map(|(kind, tbl, name, source_db, def)| (Key { kind, tbl, name }, (source_db, def)))
        .collect())
}

async fn record(conn: &mut Conn, db: &str, w: &Wanted<'_>) -> Result<()> {
    conn.exec_drop(
        format!(
            "INSERT INTO {} (kind, tbl, name, source_db, definition) VALUES (?, ?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE source_db = VALUES(source_db), definition = VALUES(definition), \
             updated_at = CURRENT_TIMESTAMP(6)",
            qualified(Some(db), OBJECTS_TABLE)
        ),
        (&w.key.kind, &w.key.tbl, &w.key.name, &w.source_db, &w.object.definition),
    )
    .await
    .map_err(|e| my_err(e, &format!("writing {db}.{OBJECTS_TABLE}")))
}

async fn forget(conn: &mut Conn, db: &str, k: &Key) -> Result<()> {
    conn.exec_drop(
        format!(
            "DELETE FROM {} WHERE kind = ? AND tbl = ? AND name = ?",
            qualified(Some(db), OBJECTS_TABLE)
        ),
        (&k.kind, &k.tbl, &k.name),
    )
    .await
    .map_err(|e| my_err(e, &format!("writing {db}.{OBJECTS_TABLE}")))
}

/// The session variable every sink connection sets (see the sink's session
/// setup): a trigger siphon creates on a target does nothing while it is set.
pub const APPLYING_VARIABLE: &str = "@siphon_applying";

/// `CREATE TRIGGER …` as the source has it, its body run only when
/// [`APPLYING_VARIABLE`] is unset: rows siphon writes already hold what the
/// source's trigger did to them (and rows its body wrote elsewhere arrive
/// with their own table), so firing it again on the target would apply it
/// twice. Anyone else's writes on the target fire it as on the source. A
/// statement whose body cannot be found is returned as it is.
fn guard_trigger(stmt: &str) -> String {
    let upper = stmt.to_ascii_uppercase();
    let Some(at) = upper.find("FOR EACH ROW") else {
        return stmt.to_string();
    };
    let mut body_at = at + "FOR EACH ROW".len();
    // `FOLLOWS other` / `PRECEDES other` come before the body.
    let rest = upper[body_at..].trim_start();
    for word in ["FOLLOWS ", "PRECEDES "] {
        if let Some(after) = rest.strip_prefix(word) {
            let name = after.trim_start();
            let len = if let Some(q) = name.strip_prefix('`') {
                q.find('`').map_or(name.len(), |e| e + 2)
            } else {
                name.find(|c: char| c.is_whitespace()).unwrap_or(name.len())
            };
            body_at = upper.len() - name.len() + len;
        }
    }
    let body = stmt[body_at..].trim().trim_end_matches(';').trim_end();
    if body.is_empty() {
        return stmt.to_string();
    }
    format!(
        "{} IF {APPLYING_VARIABLE} IS NULL THEN {body}; END IF",
        stmt[..body_at].trim_end()
    )
}

#[cfg(test)]
mod tests {
    use super::guard_trigger;

    #[test]
    fn a_trigger_body_runs_only_outside_siphon_writes() {
        assert_eq!(
            guard_trigger(
                "CREATE TRIGGER `t` BEFORE INSERT ON `items` FOR EACH ROW\nBEGIN SET NEW.n = 1; END"
            ),
            "CREATE TRIGGER `t` BEFORE INSERT ON `items` FOR EACH ROW IF @siphon_applying IS NULL \
             THEN BEGIN SET NEW.n = 1; END; END IF"
        );
        assert_eq!(
            guard_trigger(
                "CREATE TRIGGER t2 AFTER UPDATE ON items FOR EACH ROW PRECEDES `t 1` SET @x = 1"
            ),
            "CREATE TRIGGER t2 AFTER UPDATE ON items FOR EACH ROW PRECEDES `t 1` IF \
             @siphon_applying IS NULL THEN SET @x = 1; END IF"
        );
        assert_eq!(
            guard_trigger("CREATE VIEW v AS SELECT 1"),
            "CREATE VIEW v AS SELECT 1"
        );
    }
}
