//! The PostgreSQL sink's staging tables under pressure, on servers whose lock
//! table the tests fill up: a batch of thousands of alternating runs of changes
//! uses one staging table per target table, a batch too big for the lock table
//! is applied in parts with the checkpoint last, a change that fits in no
//! transaction is named with the setting to raise, and no temporary table
//! outlives the sink's sessions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use siphon_core::{
    Batch, Change, Checkpoint, ErrorKind, Op, Phase, Position, SchemaOptions, Sink, Source,
    StreamId, TableFilter, TableName, TableSchema, Value,
};
use siphon_postgres::{PostgresSink, PostgresSource};
use siphon_testkit::Postgres;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// A server of its own: each test fills its lock table. Autovacuum is off so
/// that no other session takes lock table entries meanwhile.
fn server() -> Postgres {
    Postgres::start_with_settings(&[("autovacuum", "off")]).unwrap()
}

async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// A session that holds advisory locks until the server's lock table is full
/// but for `free` entries, so transactions of other sessions find room for
/// about that many locks beyond those their fast path holds.
struct Squeeze {
    client: Client,
}

impl Squeeze {
    async fn leave(url: &str, free: i64) -> Squeeze {
        let client = connect(url).await;
        let mut next = 1i64;
        loop {
            let step = client
                .query_one(
                    "SELECT count(pg_advisory_lock(g)) FROM generate_series($1::int8, $2::int8) g",
                    &[&next, &(next + 999)],
                )
                .await;
            match step {
                Ok(_) => next += 1000,
                Err(e) if e.code() == Some(&SqlState::OUT_OF_MEMORY) => break,
                Err(e) => panic!("filling the lock table: {e}"),
            }
            assert!(next < 50_000_000, "the lock table never filled");
        }
        // Session locks taken by the failed statement are kept: count them.
        client
            .query_one(
                "SELECT count(pg_advisory_unlock(objid::int8)) FROM (SELECT objid FROM pg_locks \
                 WHERE locktype = 'advisory' AND pid = pg_backend_pid() ORDER BY objid DESC LIMIT $1) s",
                &[&free],
            )
            .await
            .unwrap();
        Squeeze { client }
    }

    async fn release(self) {
        self.client
            .query_one("SELECT pg_advisory_unlock_all()", &[])
            .await
            .unwrap();
    }
}

fn checkpoint(table: &str, n: i64) -> Checkpoint {
    Checkpoint {
        stream: StreamId::new("p", &TableName::new(Some("public"), table)),
        epoch: 0,
        phase: Phase::Streaming {
            position: Some(Position(serde_json::json!({ "n": n }))),
        },
    }
}

fn row(id: i64, v: &str) -> Vec<Value> {
    vec![Value::Int64(id), Value::Text(v.to_string())]
}

fn change(table: &Arc<TableSchema>, op: Op) -> Change {
    Change::new(table.clone(), op)
}

/// Creates `tables` (each `id bigint PRIMARY KEY, v text`) in the database of
/// `url`, and a sink there that prepared them.
async fn tables_and_sink(
    pg: &Postgres,
    db: &str,
    url: &str,
    tables: &[String],
) -> (Vec<Arc<TableSchema>>, PostgresSink) {
    let ddl: Vec<String> = tables
        .iter()
        .map(|t| format!("CREATE TABLE {t} (id bigint PRIMARY KEY, v text NOT NULL);"))
        .collect();
    pg.query_in(db, &ddl.join("\n")).unwrap();
    let source = PostgresSource::connect(url).await.unwrap();
    let sink = PostgresSink::connect(url).await.unwrap();
    let mut schemas = Vec::new();
    for t in tables {
        let filter = TableFilter {
            include: vec![format!("public.{t}")],
            exclude: vec![],
        };
        let schema = Arc::new(source.discover(&filter).await.unwrap().remove(0));
        sink.prepare(&schema, &SchemaOptions::default())
            .await
            .unwrap();
        schemas.push(schema);
    }
    (schemas, sink)
}

/// The rows each table should hold, changed as the sink should change them.
#[derive(Default)]
struct Model(BTreeMap<String, BTreeMap<i64, String>>);

impl Model {
    fn apply(&mut self, c: &Change) {
        let rows = self.0.entry(c.table.name.name.clone()).or_default();
        let id = |r: &[Value]| match r[0] {
            Value::Int64(id) => id,
            ref v => panic!("not a key: {v:?}"),
        };
        match &c.op {
            Op::Insert(r) | Op::Update { after: r, .. } => {
                let Value::Text(v) = &r[1] else {
                    panic!("not a value: {r:?}")
                };
                rows.insert(id(r), v.clone());
            }
            Op::Delete(r) => {
                rows.remove(&id(r));
            }
            Op::Truncate => rows.clear(),
            Op::Schema(_) => unreachable!(),
        }
    }

    /// `id=v,…` by id, as [`rows_of`] prints a table.
    fn rows(&self, table: &str) -> String {
        self.0
            .get(table)
            .map(|rows| {
                rows.iter()
                    .map(|(id, v)| format!("{id}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    }
}

fn rows_of(pg: &Postgres, db: &str, table: &str) -> String {
    pg.query_in(
        db,
        &format!("SELECT coalesce(string_agg(id || '=' || v, ',' ORDER BY id), '') FROM {table}"),
    )
    .unwrap()
}

/// Temporary tables of every session of the database.
fn temp_tables(pg: &Postgres, db: &str) -> i64 {
    pg.query_in(
        db,
        "SELECT count(*) FROM pg_class WHERE relpersistence = 't' AND relkind = 'r'",
    )
    .unwrap()
    .parse()
    .unwrap()
}

/// Waits until the database holds no temporary table, or fails after 30 s.
fn wait_no_temp_tables(pg: &Postgres, db: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = temp_tables(pg, db);
        if n == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} temporary tables outlived their session"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn database(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_alternating_runs_use_one_staging_table_per_table() {
    let pg = server();
    let url = pg.create_database().unwrap();
    let db = database(&url);
    let (schemas, sink) = tables_and_sink(&pg, &db, &url, &["a".into(), "b".into()]).await;
    let (a, b) = (&schemas[0], &schemas[1]);

    // About 4,500 runs: each small source transaction touches both tables, with
    // deletes, key changes (delete then insert), a key inserted, deleted and
    // inserted again, and now and then a TRUNCATE of b in the middle.
    let mut changes = Vec::new();
    for i in 0..1000i64 {
        changes.push(change(a, Op::Insert(row(i, &format!("a{i}")))));
        changes.push(change(b, Op::Insert(row(i, &format!("b{i}")))));
        changes.push(change(
            a,
            Op::Update {
                before: None,
                after: row(i, &format!("a{i}u")),
            },
        ));
        if i % 2 == 1 {
            changes.push(change(b, Op::Delete(row(i / 2, ""))));
        } else {
            changes.push(change(b, Op::Insert(row(i, &format!("b{i}u")))));
        }
        if i % 7 == 0 {
            changes.push(change(a, Op::Delete(row(i, ""))));
            changes.push(change(a, Op::Insert(row(100_000 + i, &format!("k{i}")))));
        }
        if i % 5 == 0 && i > 0 {
            changes.push(change(a, Op::Delete(row(i - 1, ""))));
            changes.push(change(b, Op::Insert(row(50_000 + i, "between"))));
            changes.push(change(a, Op::Insert(row(i - 1, "again"))));
        }
        if i % 250 == 125 {
            changes.push(change(b, Op::Truncate));
        }
    }
    let mut model = Model::default();
    for c in &changes {
        model.apply(c);
    }

    // Room for a few hundred locks: enough for a batch that stages each table
    // once, far too few for a staging table per run.
    let squeeze = Squeeze::leave(&url, 300).await;
    let applied = sink.apply(Batch { changes }, &checkpoint("a", 1)).await;
    squeeze.release().await;
    applied.unwrap();

    assert_eq!(rows_of(&pg, &db, "a"), model.rows("a"));
    assert_eq!(rows_of(&pg, &db, "b"), model.rows("b"));
    assert_eq!(
        sink.checkpoint(&checkpoint("a", 0).stream).await.unwrap(),
        Some(checkpoint("a", 1))
    );
    let staged = temp_tables(&pg, &db);
    assert!(
        (1..=2).contains(&staged),
        "{staged} staging tables for two tables"
    );

    // A second connection whose session is cut, and the first one closed:
    // their staging tables go with their sessions, and the server takes new
    // connections at once.
    let monitor = connect(&url).await;
    let sessions = || async {
        monitor
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                 AND pid <> pg_backend_pid() AND backend_type = 'client backend' \
                 AND application_name <> 'psql'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, i32>(0))
            .collect::<Vec<_>>()
    };
    let before = sessions().await;
    let other = sink.another().await.unwrap().unwrap();
    other
        .apply(
            Batch {
                changes: vec![change(a, Op::Insert(row(7, "x")))],
            },
            &checkpoint("a", 2),
        )
        .await
        .unwrap();
    assert_eq!(temp_tables(&pg, &db), staged + 1);
    let cut: Vec<i32> = sessions()
        .await
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(cut.len(), 1, "{cut:?}");
    monitor
        .query_one("SELECT pg_terminate_backend($1)", &[&cut[0]])
        .await
        .unwrap();
    let lost = other
        .apply(
            Batch {
                changes: vec![change(a, Op::Insert(row(8, "x")))],
            },
            &checkpoint("a", 3),
        )
        .await
        .unwrap_err();
    assert_eq!(lost.kind(), ErrorKind::Connection, "{lost}");
    drop(sink);
    wait_no_temp_tables(&pg, &db);
    assert_eq!(pg.query_in(&db, "SELECT 1").unwrap(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_too_big_for_the_lock_table_is_applied_in_parts() {
    let pg = server();
    let url = pg.create_database().unwrap();
    let db = database(&url);
    let names: Vec<String> = (0..150).map(|i| format!("t{i}")).collect();
    let (schemas, sink) = tables_and_sink(&pg, &db, &url, &names).await;

    // Each table: inserted, then updated and deleted later in the batch, so the
    // parts must be applied in order for the rows to end right.
    let mut changes = Vec::new();
    for t in &schemas {
        changes.push(change(t, Op::Insert(row(1, "first"))));
        changes.push(change(t, Op::Insert(row(2, "first"))));
    }
    for (i, t) in schemas.iter().enumerate() {
        changes.push(change(
            t,
            Op::Update {
                before: None,
                after: row(1, "second"),
            },
        ));
        if i % 2 == 0 {
            changes.push(change(t, Op::Delete(row(2, ""))));
        }
    }
    let mut model = Model::default();
    for c in &changes {
        model.apply(c);
    }

    // Too little room for one transaction writing to 150 tables (each takes
    // locks on the table, its key's index and its staging table), enough for
    // a few of them.
    let squeeze = Squeeze::leave(&url, 80).await;
    let whole = connect(&url).await;
    let inserts: Vec<String> = names
        .iter()
        .map(|t| format!("INSERT INTO {t} VALUES (0, 'premise');"))
        .collect();
    let alone = whole
        .batch_execute(&format!("BEGIN; {}", inserts.join(" ")))
        .await;
    assert_eq!(
        alone.as_ref().err().and_then(|e| e.code()),
        Some(&SqlState::OUT_OF_MEMORY),
        "inserts into 150 tables still fit in one transaction: {alone:?}"
    );
    // The error arrives before the session's abort gives its locks back.
    whole.batch_execute("ROLLBACK").await.unwrap();
    drop(whole);
    let applied = sink.apply(Batch { changes }, &checkpoint("t0", 1)).await;
    squeeze.release().await;
    let stats = applied.unwrap();
    assert_eq!(
        (stats.inserted, stats.updated, stats.deleted),
        (300, 150, 75)
    );
    let each: Vec<String> = names
        .iter()
        .map(|t| {
            format!(
                "SELECT '{t}:' || coalesce(string_agg(id || '=' || v, ',' ORDER BY id), '') FROM {t}"
            )
        })
        .collect();
    let found = pg.query_in(&db, &each.join(" UNION ALL ")).unwrap();
    let mut found: Vec<&str> = found.lines().collect();
    found.sort_unstable();
    let mut expected: Vec<String> = names
        .iter()
        .map(|t| format!("{t}:{}", model.rows(t)))
        .collect();
    expected.sort_unstable();
    assert_eq!(found, expected);
    assert_eq!(
        sink.checkpoint(&checkpoint("t0", 0).stream).await.unwrap(),
        Some(checkpoint("t0", 1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_fits_in_no_transaction_names_the_table_and_the_setting() {
    let pg = server();
    let url = pg.create_database().unwrap();
    let db = database(&url);
    let (schemas, sink) = tables_and_sink(&pg, &db, &url, &["t".into()]).await;
    let t = &schemas[0];
    let batch = || Batch {
        changes: vec![
            change(t, Op::Insert(row(1, "x"))),
            change(t, Op::Insert(row(2, "y"))),
            change(t, Op::Delete(row(1, ""))),
        ],
    };

    let squeeze = Squeeze::leave(&url, 0).await;
    let failed = sink.apply(batch(), &checkpoint("t", 1)).await;
    squeeze.release().await;
    let err = failed.unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Database, "{text}");
    assert_eq!(err.table_name(), Some("public.t"), "{text}");
    assert!(text.contains("max_locks_per_transaction"), "{text}");
    assert_eq!(
        sink.checkpoint(&checkpoint("t", 0).stream).await.unwrap(),
        None
    );

    // With room again, the same sink applies the same batch.
    sink.apply(batch(), &checkpoint("t", 1)).await.unwrap();
    assert_eq!(rows_of(&pg, &db, "t"), "2=y");
    assert_eq!(
        sink.checkpoint(&checkpoint("t", 0).stream).await.unwrap(),
        Some(checkpoint("t", 1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_beyond_a_server_limit_stops_at_its_change_and_the_checkpoint_stays() {
    let pg = Postgres::shared().unwrap();
    let url = pg.create_database().unwrap();
    let db = database(&url);
    let (schemas, sink) = tables_and_sink(pg, &db, &url, &["t".into()]).await;
    let t = &schemas[0];
    pg.query_in(&db, "CREATE INDEX t_v ON t (v)").unwrap();
    // Too long for a btree entry even compressed: hex digits of hashes.
    let long: String = (0..400u64)
        .map(|i| format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect();
    let mut changes: Vec<Change> = (1..=10)
        .map(|i| change(t, Op::Insert(row(i, "ok"))))
        .collect();
    changes.push(change(t, Op::Insert(row(11, &long))));
    changes.push(change(t, Op::Insert(row(12, "ok"))));

    let err = sink
        .apply(Batch { changes }, &checkpoint("t", 1))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.table_name(), Some("public.t"), "{text}");
    assert!(text.contains("54000"), "{text}");
    // The parts before the change are in; the checkpoint has not moved, so the
    // batch is applied again from its start once the value fits.
    assert_eq!(
        rows_of(pg, &db, "t"),
        "1=ok,2=ok,3=ok,4=ok,5=ok,6=ok,7=ok,8=ok,9=ok,10=ok"
    );
    assert_eq!(
        sink.checkpoint(&checkpoint("t", 0).stream).await.unwrap(),
        None
    );
}
