//! `cdc` pipelines from PostgreSQL (logical replication, pgoutput) to PostgreSQL
//! and SQLite, against a real PostgreSQL 15 from the testkit. Slots are
//! server-wide, so every test names its pipeline after its own fresh database.

use std::sync::atomic::{AtomicBool, Ordering};

use siphon_core::{ExecutionStatus, PipelineSpec, Sink, Source, StreamId, TableFilter};
use siphon_engine::{
    drop_log, log_stream, run_log_pass, table_checksum, NoopObserver, Observer, PassReport,
    Shutdown,
};
use siphon_postgres::{log_name, PostgresSink, PostgresSource};
use siphon_sqlite::{SqliteSink, SqliteSource};

mod support;
use support::{env, Env};

fn spec(json: &str) -> PipelineSpec {
    serde_json::from_str(json).unwrap()
}

impl Env {
    /// Every row of `table`, as PostgreSQL prints it, sorted.
    fn rows(&self, db: &str, table: &str) -> String {
        self.pg
            .query_in(
                db,
                &format!("SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '') FROM {table} t"),
            )
            .unwrap()
    }

    fn assert_same(&self, table: &str) {
        assert_eq!(
            self.rows(&self.dst, table),
            self.rows(&self.src, table),
            "target {table} differs from the source"
        );
    }

    async fn pass<K: Sink>(
        &self,
        spec: &PipelineSpec,
        source: &PostgresSource,
        sink: &K,
        observer: &dyn Observer,
    ) -> PassReport {
        run_log_pass(
            &self.pipeline,
            spec,
            source,
            sink,
            &self.state,
            observer,
            &Shutdown::new(),
        )
        .await
        .unwrap()
    }

    /// The LSN of the pipeline's log checkpoint on the PostgreSQL target.
    fn checkpoint_lsn(&self) -> String {
        self.dst_sql(&format!(
            "SELECT checkpoint::json->'position'->>'lsn' FROM siphon_checkpoints WHERE pipeline = '{}' AND tbl = '*'",
            self.pipeline
        ))
    }

    /// Asserts the slot never confirmed more than the target committed.
    fn assert_slot_behind_checkpoint(&self) {
        let lsn = self.checkpoint_lsn();
        assert!(!lsn.is_empty(), "no log checkpoint on the target");
        let ok = self.pg.query(&format!(
            "SELECT confirmed_flush_lsn <= '{lsn}'::pg_lsn FROM pg_replication_slots WHERE slot_name = '{}'",
            log_name(&self.pipeline)
        ))
        .unwrap();
        assert_eq!(
            ok, "t",
            "the slot confirmed past the target's checkpoint {lsn}"
        );
    }
}

fn succeeded(report: &PassReport) {
    for t in &report.tables {
        assert_eq!(t.status, ExecutionStatus::Succeeded, "{t:?}");
    }
}

fn table<'a>(report: &'a PassReport, name: &str) -> &'a siphon_core::TableStats {
    report
        .tables
        .iter()
        .find(|t| t.table.to_string() == name)
        .unwrap_or_else(|| panic!("no stats for {name}: {report:?}"))
}

#[tokio::test]
async fn postgres_to_postgres_snapshot_then_streamed_changes() {
    let e = env().await;
    e.src_sql(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty numeric(10,2), tags text[]);
         CREATE TABLE notes (id bigint PRIMARY KEY, body text);
         INSERT INTO items VALUES (1, 'one', 1.5, '{a}'), (2, 'two', NULL, '{}'), (3, 'three', 3, NULL);
         INSERT INTO notes VALUES (1, 'n1'), (2, 'n2');",
    );
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let sink = PostgresSink::connect(&e.dst_url).await.unwrap();
    // Batches of 2 changes, so a larger transaction is split.
    let p =
        spec(r#"{"source":"a","target":"b","mode":"cdc","tables":["public.*"],"batch_size":2}"#);

    let report = e.pass(&p, &source, &sink, &NoopObserver).await;
    succeeded(&report);
    assert_eq!(table(&report, "public.items").rows_read, 3);
    e.assert_same("items");
    e.assert_same("notes");
    // The slot and publication exist, named after the pipeline.
    assert_eq!(
        e.pg.query(&format!(
            "SELECT plugin FROM pg_replication_slots WHERE slot_name = '{}'",
            log_name(&e.pipeline)
        ))
        .unwrap(),
        "pgoutput"
    );
    e.assert_slot_behind_checkpoint();

    // Several transactions: inserts, updates (one changing the key), deletes,
    // a transaction larger than a batch, and a truncate.
    e.src_sql(
        "INSERT INTO items VALUES (4, 'four', 4, '{x,y}');
         UPDATE items SET qty = qty + 10, name = 'ONE' WHERE id = 1;
         BEGIN; UPDATE items SET id = 20 WHERE id = 2; DELETE FROM items WHERE id = 3;
           INSERT INTO items SELECT g, 'g' || g, g, NULL FROM generate_series(100, 104) g; COMMIT;
         DELETE FROM items WHERE id = 101;
         TRUNCATE notes; INSERT INTO notes VALUES (3, 'n3');",
    );
    let report = e.pass(&p, &source, &sink, &NoopObserver).await;
    succeeded(&report);
    e.assert_same("items");
    e.assert_same("notes");
    assert_eq!(e.dst_sql("SELECT count(*) FROM items WHERE id = 2"), "0");
    let items = table(&report, "public.items");
    assert_eq!(items.rows_read, 11, "{items:?}");
    // The TRUNCATE is reported as emptying the table, not as deletes.
    let notes = table(&report, "public.notes");
    assert_eq!((notes.replaced, notes.deleted), (2, 0), "{notes:?}");
    e.assert_slot_behind_checkpoint();

    // A pass with nothing new streams nothing; then only the new change.
    let report = e.pass(&p, &source, &sink, &NoopObserver).await;
    succeeded(&report);
    assert_eq!(table(&report, "public.items").rows_read, 0);
    e.src_sql("UPDATE items SET name = 'four!' WHERE id = 4");
    let report = e.pass(&p, &source, &sink, &NoopObserver).await;
    succeeded(&report);
    let items = table(&report, "public.items");
    assert_eq!((items.rows_read, items.updated), (1, 1), "{items:?}");
    e.assert_same("items");
    e.assert_slot_behind_checkpoint();
}

/// Changes the source while a snapshot is under way: after its first chunk
/// committed, it updates a row already copied, deletes one not yet copied and
/// inserts new ones.
struct ChangeDuringSnapshot<'a> {
    env: &'a Env,
    done: AtomicBool,
}

impl Observer for ChangeDuringSnapshot<'_> {
    fn rows_committed(&self, stream: &StreamId, _rows: u64) {
        if stream.table.name == "big" && !self.done.swap(true, Ordering::SeqCst) {
            self.env.src_sql(
                "UPDATE big SET v = 'changed' WHERE id = 1;
                 DELETE FROM big WHERE id = 9;
                 INSERT INTO big VALUES (0, 'new low'), (1000, 'new high');",
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_during_the_snapshot_are_not_lost() {
    let e = env().await;
    e.src_sql(
        "CREATE TABLE big (id int PRIMARY KEY, v text);
         INSERT INTO big SELECT g, 'v' || g FROM generate_series(1, 10) g;",
    );
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let sink = PostgresSink::connect(&e.dst_url).await.unwrap();
    let p =
        spec(r#"{"source":"a","target":"b","mode":"cdc","tables":["public.big"],"batch_size":3}"#);
    let observer = ChangeDuringSnapshot {
        env: &e,
        done: AtomicBool::new(false),
    };
    let report = e.pass(&p, &source, &sink, &observer).await;
    succeeded(&report);
    assert!(observer.done.load(Ordering::SeqCst));
    e.assert_same("big");
    assert_eq!(e.dst_sql("SELECT v FROM big WHERE id = 1"), "changed");
    e.assert_slot_behind_checkpoint();
}

#[tokio::test]
async fn unchanged_toast_values_are_kept() {
    let e = env().await;
    e.src_sql(
        "CREATE TABLE docs (id int PRIMARY KEY, body text, n int);
         ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
         INSERT INTO docs SELECT g, repeat(md5(g::text), 200), 0 FROM generate_series(1, 4) g;",
    );
    assert_eq!(
        e.src_sql("SELECT min(length(body)) FROM docs"),
        "6400",
        "body must be TOASTed"
    );
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let sink = PostgresSink::connect(&e.dst_url).await.unwrap();
    let p = spec(r#"{"source":"a","target":"b","mode":"cdc","tables":["public.docs"]}"#);
    succeeded(&e.pass(&p, &source, &sink, &NoopObserver).await);
    // `n` changes, `body` does not: the log carries no value for it.
    e.src_sql(
        "UPDATE docs SET n = 1 WHERE id = 1;
         BEGIN; UPDATE docs SET n = 2 WHERE id = 2; UPDATE docs SET n = 3 WHERE id = 2; COMMIT;
         UPDATE docs SET body = 'short', n = 4 WHERE id = 3;
         UPDATE docs SET n = 5 WHERE id = 4; DELETE FROM docs WHERE id = 4;",
    );
    let report = e.pass(&p, &source, &sink, &NoopObserver).await;
    succeeded(&report);
    assert_eq!(
        e.dst_sql("SELECT count(*) FROM docs WHERE body IS NULL"),
        "0"
    );
    let digest = "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM docs t";
    assert_eq!(e.dst_sql(digest), e.src_sql(digest));
}

#[tokio::test]
async fn added_column_is_added_on_the_target() {
    let e = env().await;
    e.src_sql(
        "CREATE TABLE people (id int PRIMARY KEY, name text);
         INSERT INTO people VALUES (1, 'ann'), (2, 'bob');",
    );
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let sink = PostgresSink::connect(&e.dst_url).await.unwrap();
    let p = spec(r#"{"source":"a","target":"b","mode":"cdc","tables":["public.people"]}"#);
    succeeded(&e.pass(&p, &source, &sink, &NoopObserver).await);
    e.src_sql(
        "ALTER TABLE people ADD COLUMN age int;
         INSERT INTO people VALUES (3, 'cy', 30);
         UPDATE people SET age = 40 WHERE id = 1;
         BEGIN; INSERT INTO people VALUES (4, 'di'); ALTER TABLE people ADD COLUMN city text;
           INSERT INTO people VALUES (5, 'ed', 50, 'oslo'); COMMIT;",
    );
    let report = e.pass(&p, &source, &sink, &NoopObserver).await;
    succeeded(&report);
    assert_eq!(
        e.dst_sql(
            "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) \
             FROM pg_attribute WHERE attrelid = 'people'::regclass AND attnum > 0 AND NOT attisdropped"
        ),
        "id integer, name text, age integer, city text"
    );
    e.assert_same("people");
}

#[tokio::test]
async fn table_without_key_stops_with_the_fix_and_replica_identity_full_works() {
    let e = env().await;
    e.src_sql(
        "CREATE TABLE keyless (code text NOT NULL UNIQUE, val int);
         CREATE TABLE full_ident (code text NOT NULL UNIQUE, val int);
         ALTER TABLE full_ident REPLICA IDENTITY FULL;
         INSERT INTO keyless VALUES ('a', 1);
         INSERT INTO full_ident VALUES ('a', 1), ('b', 2), ('c', 3);",
    );
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let sink = PostgresSink::connect(&e.dst_url).await.unwrap();
    let p = spec(r#"{"source":"a","target":"b","mode":"cdc","tables":["public.*"]}"#);
    let report = e.pass(&p, &source, &sink, &NoopObserver).await;
    assert_eq!(report.status, ExecutionStatus::Failed);
    let keyless = table(&report, "public.keyless");
    assert_eq!(keyless.status, ExecutionStatus::Failed);
    let error = keyless.error.clone().unwrap();
    assert!(error.contains("public.keyless"), "{error}");
    assert!(error.contains("primary key"), "{error}");
    assert!(error.contains("REPLICA IDENTITY FULL"), "{error}");
    // Left out of the publication, so the application can still update it.
    e.src_sql("UPDATE keyless SET val = 2");

    assert_eq!(
        table(&report, "public.full_ident").status,
        ExecutionStatus::Succeeded
    );
    e.src_sql(
        "UPDATE full_ident SET val = 20 WHERE code = 'b';
         UPDATE full_ident SET code = 'cc' WHERE code = 'c';
         DELETE FROM full_ident WHERE code = 'a';",
    );
    let report = e.pass(&p, &source, &sink, &NoopObserver).await;
    assert_eq!(
        table(&report, "public.full_ident").status,
        ExecutionStatus::Succeeded
    );
    e.assert_same("full_ident");
}

#[tokio::test]
async fn a_table_without_any_key_or_whole_old_rows_is_refused_with_the_fix() {
    let e = env().await;
    e.src_sql(
        "CREATE TABLE history (tid int, delta int, note text);
         INSERT INTO history VALUES (1, 5, 'a'), (1, 5, 'a');",
    );
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let sink = PostgresSink::connect(&e.dst_url).await.unwrap();
    let p = spec(r#"{"source":"a","target":"b","mode":"cdc","tables":["public.history"]}"#);
    let report = e.pass(&p, &source, &sink, &NoopObserver).await;
    let history = table(&report, "public.history");
    assert_eq!(history.status, ExecutionStatus::Failed);
    let error = history.error.clone().unwrap();
    assert!(error.contains("public.history"), "{error}");
    assert!(error.contains("no unique index"), "{error}");
    // Whole old rows are what it needs: that is the fix offered.
    assert!(error.contains("REPLICA IDENTITY FULL"), "{error}");
    // Left out of the publication, so the application can still delete from it.
    e.src_sql("DELETE FROM history WHERE tid = 1");
}

#[tokio::test]
async fn a_deferrable_primary_key_is_refused_and_never_breaks_writes_at_the_source() {
    let e = env().await;
    e.src_sql(
        "CREATE TABLE deferred (id int PRIMARY KEY DEFERRABLE, v int);
         CREATE TABLE plain (id int PRIMARY KEY, v int);
         INSERT INTO deferred VALUES (1, 1); INSERT INTO plain VALUES (1, 1);",
    );
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let sink = PostgresSink::connect(&e.dst_url).await.unwrap();
    let p = spec(r#"{"source":"a","target":"b","mode":"cdc","tables":["public.*"]}"#);
    let report = e.pass(&p, &source, &sink, &NoopObserver).await;
    let deferred = table(&report, "public.deferred");
    assert_eq!(deferred.status, ExecutionStatus::Failed);
    let error = deferred.error.clone().unwrap();
    assert!(
        error.contains("public.deferred") && error.contains("DEFERRABLE"),
        "{error}"
    );
    assert!(error.contains("REPLICA IDENTITY FULL"), "{error}");
    assert_eq!(
        table(&report, "public.plain").status,
        ExecutionStatus::Succeeded
    );
    // Not published: the application's writes to it still work.
    e.src_sql("UPDATE deferred SET v = 2 WHERE id = 1; DELETE FROM deferred WHERE id = 1;");
    // With the fix the user is told to make, it replicates.
    e.src_sql("ALTER TABLE deferred REPLICA IDENTITY FULL; INSERT INTO deferred VALUES (3, 3);");
    let report = e.pass(&p, &source, &sink, &NoopObserver).await;
    assert_eq!(
        table(&report, "public.deferred").status,
        ExecutionStatus::Succeeded
    );
    e.src_sql("UPDATE deferred SET v = 30 WHERE id = 3;");
    succeeded(&e.pass(&p, &source, &sink, &NoopObserver).await);
    e.assert_same("deferred");
}

#[tokio::test]
async fn drop_log_removes_the_slot_and_the_publication() {
    let e = env().await;
    e.src_sql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);");
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let sink = PostgresSink::connect(&e.dst_url).await.unwrap();
    let p = spec(r#"{"source":"a","target":"b","mode":"cdc","tables":["public.t"]}"#);
    succeeded(&e.pass(&p, &source, &sink, &NoopObserver).await);
    let name = log_name(&e.pipeline);
    let slots = format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{name}'");
    let pubs = format!("SELECT count(*) FROM pg_publication WHERE pubname = '{name}'");
    assert_eq!(e.pg.query(&slots).unwrap(), "1");
    assert_eq!(e.src_sql(&pubs), "1");

    drop_log(&e.pipeline, &source, &sink).await.unwrap();
    assert_eq!(e.pg.query(&slots).unwrap(), "0");
    assert_eq!(e.src_sql(&pubs), "0");
    assert!(sink
        .checkpoint(&log_stream(&e.pipeline))
        .await
        .unwrap()
        .is_none());
    // Dropping twice is not an error.
    drop_log(&e.pipeline, &source, &sink).await.unwrap();

    // The next run starts over: a new slot, a new copy.
    e.src_sql("INSERT INTO t VALUES (2);");
    let report = e.pass(&p, &source, &sink, &NoopObserver).await;
    succeeded(&report);
    assert_eq!(table(&report, "public.t").rows_read, 2);
    e.assert_same("t");
    assert_eq!(e.pg.query(&slots).unwrap(), "1");
}

async fn checksum<S: Source>(s: &S, table: &str) -> siphon_engine::TableChecksum {
    let filter = TableFilter {
        include: vec![table.into()],
        exclude: vec![],
    };
    let schema = s.discover(&filter).await.unwrap().pop().unwrap();
    table_checksum(s, &schema, 997).await.unwrap()
}

#[tokio::test]
async fn postgres_to_sqlite_cdc_once() {
    let e = env().await;
    e.src_sql(
        "CREATE TABLE orders (id bigint PRIMARY KEY, customer text, total numeric(12,2), paid boolean,
           doubled numeric GENERATED ALWAYS AS (total * 2) STORED);
         INSERT INTO orders (id, customer, total, paid) SELECT g, 'c' || g, g * 1.25, g % 2 = 0
           FROM generate_series(1, 50) g;",
    );
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let path = e.dir.path().join("target.db");
    let sink = SqliteSink::open(&path).unwrap();
    let p = spec(
        r#"{"source":"a","target":"b","mode":"cdc","tables":["public.orders"],"batch_size":20}"#,
    );
    succeeded(&e.pass(&p, &source, &sink, &NoopObserver).await);
    e.src_sql(
        "UPDATE orders SET paid = true, total = 0 WHERE id <= 10;
         DELETE FROM orders WHERE id > 45;
         INSERT INTO orders (id, customer, total, paid) VALUES (100, 'new', 9.99, false);",
    );
    let report = e.pass(&p, &source, &sink, &NoopObserver).await;
    succeeded(&report);
    assert_eq!(table(&report, "public.orders").rows_read, 16);
    let target = SqliteSource::open(&path).unwrap();
    assert_eq!(
        checksum(&source, "public.orders").await,
        checksum(&target, "orders").await
    );
}

/// Ends the replication session (as a server restart or a network cut would)
/// right after the first streamed batch committed.
struct KillSession<'a> {
    env: &'a Env,
    done: AtomicBool,
}

impl Observer for KillSession<'_> {
    fn rows_committed(&self, _stream: &StreamId, _rows: u64) {
        if !self.done.swap(true, Ordering::SeqCst) {
            let killed = self.env.pg.query(&format!(
                "SELECT count(pg_terminate_backend(active_pid)) FROM pg_replication_slots WHERE slot_name = '{}'",
                log_name(&self.env.pipeline)
            ))
            .unwrap();
            assert_eq!(killed, "1", "no replication session to end");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_replication_connection_is_reopened() {
    let e = env().await;
    e.src_sql("CREATE TABLE ev (id int PRIMARY KEY, v int);");
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let sink = PostgresSink::connect(&e.dst_url).await.unwrap();
    let p =
        spec(r#"{"source":"a","target":"b","mode":"cdc","tables":["public.ev"],"batch_size":5}"#);
    succeeded(&e.pass(&p, &source, &sink, &NoopObserver).await);
    for i in 0..10 {
        e.src_sql(&format!(
            "INSERT INTO ev SELECT g, g FROM generate_series({0} * 5, {0} * 5 + 4) g",
            i
        ));
    }
    e.src_sql("UPDATE ev SET v = -v WHERE id % 7 = 0; DELETE FROM ev WHERE id % 11 = 0;");
    let observer = KillSession {
        env: &e,
        done: AtomicBool::new(false),
    };
    let report = e.pass(&p, &source, &sink, &observer).await;
    succeeded(&report);
    assert!(observer.done.load(Ordering::SeqCst));
    e.assert_same("ev");
    e.assert_slot_behind_checkpoint();
}

#[tokio::test]
async fn batches_hold_whole_transactions_and_split_only_large_ones() {
    use siphon_core::{ChangeStream, LogSource, Op, Value};
    use std::sync::Arc;

    let e = env().await;
    e.src_sql("CREATE TABLE tx (id int PRIMARY KEY);");
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let filter = TableFilter {
        include: vec!["public.tx".into()],
        exclude: vec![],
    };
    let schemas = source.discover(&filter).await.unwrap();
    let start = source.prepare_log(&e.pipeline, &schemas).await.unwrap();
    // Transactions of 3, 1, 1 and 5 rows; a transaction's rows are id / 100.
    let sizes = [(1, 3), (2, 1), (3, 1), (4, 5)];
    for (t, n) in sizes {
        e.src_sql(&format!(
            "INSERT INTO tx SELECT {t} * 100 + g FROM generate_series(0, {}) g",
            n - 1
        ));
    }
    let until = source.log_head().await.unwrap();
    let tables: Vec<Arc<_>> = schemas.into_iter().map(Arc::new).collect();
    let mut stream = source.stream(&e.pipeline, &tables, &start).await.unwrap();
    let mut batches = Vec::new();
    while let Some((batch, pos)) = stream.next_batch(2, Some(&until), None).await.unwrap() {
        let ids: Vec<i32> = batch
            .changes
            .iter()
            .map(|c| match &c.op {
                Op::Insert(row) => match row[0] {
                    Value::Int32(id) => id,
                    ref v => panic!("{v:?}"),
                },
                op => panic!("{op:?}"),
            })
            .collect();
        // An idle moment can bring a batch with no change that only moves the
        // position forward (a keepalive, on a loaded machine): it says nothing
        // about how transactions are grouped.
        if !ids.is_empty() {
            batches.push((ids, pos));
        }
    }
    stream.close().await.unwrap();

    let all: Vec<i32> = batches.iter().flat_map(|(ids, _)| ids.clone()).collect();
    assert_eq!(all, vec![100, 101, 102, 200, 300, 400, 401, 402, 403, 404]);
    let mut previous = start.clone();
    for (i, (ids, pos)) in batches.iter().enumerate() {
        assert!(ids.len() <= 2, "{batches:?}");
        let txns: std::collections::BTreeSet<i32> = ids.iter().map(|id| id / 100).collect();
        if txns.len() > 1 {
            let whole = |t: &i32| {
                let size = sizes.iter().find(|(n, _)| n == t).unwrap().1;
                ids.iter().filter(|id| *id / 100 == *t).count() == size
            };
            assert!(
                txns.iter().all(whole),
                "a part of a transaction merged with another: {batches:?}"
            );
        }
        let last = ids.last().unwrap() / 100;
        let ends_inside = batches
            .get(i + 1)
            .is_some_and(|(next, _)| next[0] / 100 == last);
        if ends_inside {
            // Resuming from it replays the whole transaction.
            assert_eq!(pos, &previous, "{batches:?}");
        } else {
            // The connector's positions are LSNs (`{"lsn": "16/B374D848"}`).
            let lsn = |p: &siphon_core::Position| {
                let (hi, lo) = p.0["lsn"].as_str().unwrap().split_once('/').unwrap();
                (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
            };
            assert!(lsn(pos) > lsn(&previous), "{batches:?}");
        }
        previous = pos.clone();
    }
    // Transactions 1 (3 rows) and 4 (5 rows) were split.
    assert!(batches.len() >= 5, "{batches:?}");
}

#[tokio::test]
async fn a_paused_table_is_copied_again_when_enabled() {
    use siphon_core::{Flag, StateStore, TableName};

    let e = env().await;
    e.src_sql(
        "CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY, v text);
         INSERT INTO a VALUES (1, 'a'); INSERT INTO b VALUES (1, 'b');",
    );
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let sink = PostgresSink::connect(&e.dst_url).await.unwrap();
    let p = spec(r#"{"source":"a","target":"b","mode":"cdc","tables":["public.a","public.b"]}"#);
    succeeded(&e.pass(&p, &source, &sink, &NoopObserver).await);
    let b = StreamId::new(&e.pipeline, &TableName::new(Some("public"), "b"));
    e.state.set_flag(&b, Flag::Enabled, false).await.unwrap();
    e.src_sql("INSERT INTO a VALUES (2, 'a2'); UPDATE b SET v = 'paused' WHERE id = 1;");
    let report = e.pass(&p, &source, &sink, &NoopObserver).await;
    succeeded(&report);
    assert_eq!(report.tables.len(), 1, "{report:?}");
    e.assert_same("a");
    assert_eq!(e.dst_sql("SELECT v FROM b"), "b");

    e.state.set_flag(&b, Flag::Enabled, true).await.unwrap();
    e.src_sql("INSERT INTO b VALUES (2, 'b2');");
    let report = e.pass(&p, &source, &sink, &NoopObserver).await;
    succeeded(&report);
    assert_eq!(table(&report, "public.b").rows_read, 2, "{report:?}");
    e.assert_same("a");
    e.assert_same("b");
}

impl Env {
    /// The process reading the pipeline's slot, or `None` when none is.
    fn slot_reader(&self) -> Option<String> {
        let pid = self
            .pg
            .query(&format!(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '{}' AND active",
                log_name(&self.pipeline)
            ))
            .unwrap();
        (!pid.is_empty()).then_some(pid)
    }
}

/// A continuous schedule's session: the stream stays open from one pass to the
/// next (one replication connection throughout), a pass applies changes
/// committed while it runs, and shutdown ends the pass without error and closes
/// the stream, the slot confirmed exactly up to the target's checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_session_streams_across_passes_on_one_connection() {
    use siphon_core::StateStore;
    use siphon_engine::{follow_log_pass, LogSession};
    use std::time::Duration;

    let e = env().await;
    e.src_sql("CREATE TABLE ev (id int PRIMARY KEY, v int); INSERT INTO ev VALUES (1, 1);");
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let sink = PostgresSink::connect(&e.dst_url).await.unwrap();
    let p = spec(
        r#"{"source":"a","target":"b","mode":"cdc","tables":["public.ev"],"retained_log_warning":"1kB"}"#,
    );
    let shutdown = Shutdown::new();
    let mut session = LogSession::follow(Duration::from_millis(500));
    macro_rules! pass {
        ($session:expr) => {
            follow_log_pass(
                &e.pipeline,
                &p,
                &source,
                &sink,
                &e.state,
                &NoopObserver,
                &shutdown,
                $session,
            )
        };
    }

    let report = pass!(&mut session).await.unwrap();
    succeeded(&report);
    e.assert_same("ev");
    assert!(session.is_open(), "the stream was closed after the pass");
    let reader = e
        .slot_reader()
        .expect("nobody reads the slot between passes");
    let states = e.state.stream_states().await.unwrap();
    assert!(
        states
            .iter()
            .any(|(s, st)| s.table.name == "ev" && *st == siphon_core::StreamState::Streaming),
        "{states:?}"
    );
    // Retained log is recorded with the execution.
    let execution = e.state.execution(report.execution).await.unwrap().unwrap();
    assert!(
        execution.retained_log_bytes.is_some(),
        "no retained log recorded: {execution:?}"
    );
    assert_eq!(execution.retained_log_bytes, report.retained_log_bytes);

    e.src_sql("INSERT INTO ev VALUES (2, 2); UPDATE ev SET v = 10 WHERE id = 1;");
    let report = pass!(&mut session).await.unwrap();
    succeeded(&report);
    let ev = table(&report, "public.ev");
    assert_eq!((ev.inserted, ev.updated), (1, 1), "{ev:?}");
    e.assert_same("ev");
    assert_eq!(
        e.slot_reader().as_deref(),
        Some(reader.as_str()),
        "the second pass opened another replication connection"
    );

    // A pass with a long window applies what commits while it runs, and ends on
    // shutdown without error.
    session.close().await.unwrap();
    assert_eq!(e.slot_reader(), None, "close left the stream open");
    let writer = {
        let (pg, src, dst) = (e.pg, e.src.clone(), e.dst.clone());
        let shutdown = shutdown.clone();
        tokio::task::spawn_blocking(move || {
            pg.query_in(
                &src,
                "INSERT INTO ev SELECT g, g FROM generate_series(3, 50) g",
            )
            .unwrap();
            let mut seen = String::new();
            for _ in 0..600 {
                seen = pg.query_in(&dst, "SELECT count(*) FROM ev").unwrap();
                if seen == "50" {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            shutdown.request();
            seen
        })
    };
    let mut session = LogSession::follow(Duration::from_secs(600));
    let report = pass!(&mut session).await.unwrap();
    assert!(
        !session.is_open(),
        "shutdown left the stream in the session"
    );
    assert_eq!(
        writer.await.unwrap(),
        "50",
        "rows committed during the pass did not arrive"
    );
    succeeded(&report);
    assert_eq!(report.status, ExecutionStatus::Succeeded);
    e.assert_same("ev");
    assert_eq!(
        e.slot_reader(),
        None,
        "the stream stayed open after shutdown"
    );
    let confirmed = e.pg.query(&format!(
        "SELECT confirmed_flush_lsn = '{}'::pg_lsn FROM pg_replication_slots WHERE slot_name = '{}'",
        e.checkpoint_lsn(),
        log_name(&e.pipeline)
    ))
    .unwrap();
    assert_eq!(
        confirmed, "t",
        "the slot is not at the target's checkpoint after close"
    );
}

/// Protocol version 2: with a tiny `logical_decoding_work_mem` PostgreSQL
/// streams large transactions in blocks before they commit. A committed one
/// arrives whole (with a small transaction that committed while it was open),
/// a rolled back subtransaction and a rolled back streamed transaction leave
/// nothing, and a streamed transaction larger than a batch is split as any
/// other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transactions_streamed_before_commit_arrive_whole() {
    let e = env().await;
    e.src_sql("CREATE TABLE big (id int PRIMARY KEY, v text); INSERT INTO big VALUES (0, 'seed');");
    // The replication session reads its settings from the URL's options.
    let url = format!(
        "{}?options=-c%20logical_decoding_work_mem%3D64kB",
        e.src_url
    );
    let source = PostgresSource::connect(&url).await.unwrap();
    let sink = PostgresSink::connect(&e.dst_url).await.unwrap();
    let p = spec(
        r#"{"source":"a","target":"b","mode":"cdc","tables":["public.big"],"batch_size":700}"#,
    );
    succeeded(&e.pass(&p, &source, &sink, &NoopObserver).await);

    let (writer, conn) = tokio_postgres::connect(&e.src_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    writer
        .batch_execute(
            "BEGIN;
             INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 3000) g;
             SAVEPOINT s;
             INSERT INTO big SELECT g, 'rolled back' FROM generate_series(100001, 101000) g;
             ROLLBACK TO s;",
        )
        .await
        .unwrap();
    // Commits while the large one is open: it comes first.
    e.src_sql("INSERT INTO big VALUES (-1, 'small');");
    writer
        .batch_execute(
            "UPDATE big SET v = 'updated' WHERE id % 100 = 0;
             COMMIT;
             BEGIN;
             INSERT INTO big SELECT g, repeat('y', 100) FROM generate_series(200001, 203000) g;
             ROLLBACK;
             DELETE FROM big WHERE id BETWEEN 10 AND 19;",
        )
        .await
        .unwrap();

    let report = e.pass(&p, &source, &sink, &NoopObserver).await;
    succeeded(&report);
    e.assert_same("big");
    let big = table(&report, "public.big");
    // 1 small insert, 3000 inserts, 31 updates (ids 0, 100, …, 3000), 10
    // deletes: nothing rolled back.
    assert_eq!(big.rows_read, 1 + 3000 + 31 + 10, "{big:?}");
    e.assert_slot_behind_checkpoint();
    // PostgreSQL did stream: its own statistics count streamed transactions.
    let mut streamed = String::new();
    for _ in 0..100 {
        streamed = e
            .pg
            .query(&format!(
                "SELECT coalesce(stream_txns, 0) FROM pg_stat_replication_slots WHERE slot_name = '{}'",
                log_name(&e.pipeline)
            ))
            .unwrap();
        if streamed.parse::<i64>().unwrap_or(0) >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        streamed.parse::<i64>().unwrap_or(0) >= 2,
        "PostgreSQL streamed {streamed:?} transactions; the test did not exercise streaming"
    );
}

/// A stream with nothing to apply still moves the checkpoint (and the slot) to
/// the position the server reports, so the slot does not hold the WAL written
/// for other tables meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_moves_the_checkpoint_past_other_tables_changes() {
    use siphon_engine::{follow_log_pass, LogSession};
    use std::time::Duration;

    let e = env().await;
    e.src_sql(
        "CREATE TABLE mine (id int PRIMARY KEY); CREATE TABLE other (id int PRIMARY KEY);
         INSERT INTO mine VALUES (1);",
    );
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let sink = PostgresSink::connect(&e.dst_url).await.unwrap();
    let p = spec(r#"{"source":"a","target":"b","mode":"cdc","tables":["public.mine"]}"#);
    succeeded(&e.pass(&p, &source, &sink, &NoopObserver).await);
    let before = e.checkpoint_lsn();
    e.src_sql("INSERT INTO other SELECT g FROM generate_series(1, 10000) g;");
    let written = e.src_sql("SELECT pg_current_wal_insert_lsn()");

    // Longer than the 10 s an idle stream waits before it moves the checkpoint.
    let mut session = LogSession::follow(Duration::from_secs(13));
    let report = follow_log_pass(
        &e.pipeline,
        &p,
        &source,
        &sink,
        &e.state,
        &NoopObserver,
        &Shutdown::new(),
        &mut session,
    )
    .await
    .unwrap();
    session.close().await.unwrap();
    succeeded(&report);
    assert_eq!(table(&report, "public.mine").rows_read, 0);
    let after = e.checkpoint_lsn();
    let moved =
        e.pg.query(&format!(
        "SELECT '{after}'::pg_lsn >= '{written}'::pg_lsn AND '{after}'::pg_lsn > '{before}'::pg_lsn"
    ))
        .unwrap();
    assert_eq!(
        moved, "t",
        "checkpoint {before} → {after}, other tables' WAL ends at {written}"
    );
    e.assert_slot_behind_checkpoint();
    let confirmed = e.pg.query(&format!(
        "SELECT confirmed_flush_lsn >= '{written}'::pg_lsn FROM pg_replication_slots WHERE slot_name = '{}'",
        log_name(&e.pipeline)
    ))
    .unwrap();
    assert_eq!(confirmed, "t", "the slot still holds the other tables' WAL");
}
