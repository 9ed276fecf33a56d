//! PostgreSQL tables without any key (no primary key, no unique index on NOT
//! NULL columns): full loads in chunks of ctid ranges that keep every
//! duplicate row, a crashed load that starts over instead of duplicating, and
//! `cdc` with `REPLICA IDENTITY FULL` where each update or delete changes
//! exactly one of several equal rows, json, float (NaN) and NULL values
//! included, with the snapshot and the stream meeting exactly while the
//! source is written to.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use siphon_core::{ExecutionStatus, PipelineSpec, TableStats};
use siphon_engine::{run_log_pass, run_pass, NoopObserver, PassReport, Shutdown};
use siphon_postgres::{PostgresSink, PostgresSource};

mod support;
use support::{env, Env};

fn spec(json: &str) -> PipelineSpec {
    serde_json::from_str(json).unwrap()
}

impl Env {
    /// Every row of `table` as text, duplicates included, sorted, and their count.
    fn rows(&self, db: &str, table: &str) -> String {
        self.pg
            .query_in(
                db,
                &format!(
                    "SELECT count(*) || E'\\n' || coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '') FROM {table} t"
                ),
            )
            .unwrap()
    }

    fn assert_same(&self, table: &str) {
        let (dst, src) = (self.rows(&self.dst, table), self.rows(&self.src, table));
        if dst == src {
            return;
        }
        // What one side has more of than the other, row by row.
        let count = |text: &str| {
            let mut m = std::collections::BTreeMap::<String, i64>::new();
            for line in text.lines().skip(1) {
                *m.entry(line.to_string()).or_default() += 1;
            }
            m
        };
        let (d, s) = (count(&dst), count(&src));
        let mut diff: Vec<String> = Vec::new();
        for k in d.keys().chain(s.keys()) {
            let n = d.get(k).copied().unwrap_or(0) - s.get(k).copied().unwrap_or(0);
            if n != 0 && !diff.iter().any(|x| x.ends_with(&format!(" {k}"))) {
                diff.push(format!("{n:+} {k}"));
            }
        }
        diff.truncate(20);
        panic!(
            "target {table} differs from the source (as a multiset of rows): {} rows on the target, \
             {} at the source; target minus source: {}",
            dst.lines().next().unwrap_or(""),
            src.lines().next().unwrap_or(""),
            diff.join("; ")
        );
    }

    async fn full_pass(&self, p: &PipelineSpec) -> PassReport {
        let source = PostgresSource::connect(&self.src_url).await.unwrap();
        let sink = PostgresSink::connect(&self.dst_url).await.unwrap();
        run_pass(
            &self.pipeline,
            p,
            &source,
            &sink,
            &self.state,
            &NoopObserver,
            &Shutdown::new(),
        )
        .await
        .unwrap()
    }

    async fn log_pass(&self, p: &PipelineSpec) -> PassReport {
        let source = PostgresSource::connect(&self.src_url).await.unwrap();
        let sink = PostgresSink::connect(&self.dst_url).await.unwrap();
        run_log_pass(
            &self.pipeline,
            p,
            &source,
            &sink,
            &self.state,
            &NoopObserver,
            &Shutdown::new(),
        )
        .await
        .unwrap()
    }
}

fn table<'a>(report: &'a PassReport, name: &str) -> &'a TableStats {
    report
        .tables
        .iter()
        .find(|t| t.table.to_string() == name)
        .unwrap_or_else(|| panic!("no stats for {name}: {report:?}"))
}

fn succeeded(report: &PassReport) {
    for t in &report.tables {
        assert_eq!(t.status, ExecutionStatus::Succeeded, "{t:?}");
    }
}

#[tokio::test]
async fn a_full_load_copies_every_duplicate_in_ctid_chunks_and_a_crashed_load_starts_over() {
    let e = env().await;
    // 3,000 rows, each value pair three times, with holes where rows were
    // deleted (empty stretches of blocks) and NULLs.
    e.src_sql(
        "CREATE TABLE hist (n int, note text, j json, f float8);
         INSERT INTO hist SELECT g % 1000, CASE WHEN g % 7 = 0 THEN NULL ELSE 'note ' || (g % 1000) END,
                                json_build_object('n', g % 1000), CASE WHEN g % 11 = 0 THEN 'NaN'::float8 ELSE (g % 1000)::float8 END
           FROM generate_series(1, 3000) g;
         DELETE FROM hist WHERE n BETWEEN 300 AND 599;",
    );
    let p = spec(
        r#"{"source":"a","target":"b","mode":"full","tables":["public.hist"],"batch_size":100}"#,
    );
    let report = e.full_pass(&p).await;
    succeeded(&report);
    assert_eq!(table(&report, "public.hist").rows_read, 2100);
    e.assert_same("hist");
    // Read in physical order: chunks are ctid ranges, not a sort of the table.
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let schema = siphon_core::Source::discover(
        &source,
        &siphon_core::TableFilter {
            include: vec!["public.hist".into()],
            exclude: vec![],
        },
    )
    .await
    .unwrap()
    .remove(0);
    let chunk = siphon_core::Source::read_chunk(&source, &schema, None, 100)
        .await
        .unwrap();
    assert_eq!(chunk.rows.len(), 100);
    let last = chunk.last.unwrap();
    assert!(last.0.get("tid").is_some(), "{last:?}");

    // A load killed after some chunks left rows and a snapshot checkpoint:
    // the next run empties the table and copies it whole again, since rows
    // copied twice could not be told apart.
    e.dst_sql(&format!(
        "UPDATE siphon_checkpoints SET checkpoint = json_build_object('stream', checkpoint::json->'stream', \
         'phase', 'snapshot', 'last_key', json_build_object('tid', json_build_array(3, 0)), \
         'resume_position', NULL)::text WHERE pipeline = '{}' AND tbl <> '*'",
        e.pipeline
    ));
    e.src_sql("INSERT INTO hist VALUES (1, 'note 1', '{\"n\": 1}', 1)");
    let report = e.full_pass(&p).await;
    succeeded(&report);
    e.assert_same("hist");
    assert_eq!(e.dst_sql("SELECT count(*) FROM hist WHERE n = 1"), "4");
}

#[tokio::test]
async fn cdc_changes_exactly_one_of_equal_rows_with_json_floats_and_nulls() {
    let e = env().await;
    e.src_sql(
        "CREATE TABLE ledger (acct int, amount float8, doc json, meta jsonb, tags text[], at point, note text);
         ALTER TABLE ledger REPLICA IDENTITY FULL;
         INSERT INTO ledger VALUES
           (1, 10.5, '{\"a\": 1,  \"b\": [1, 2]}', '{\"k\": \"v\"}', '{x,y}', '(1,2)', 'dup'),
           (1, 10.5, '{\"a\": 1,  \"b\": [1, 2]}', '{\"k\": \"v\"}', '{x,y}', '(1,2)', 'dup'),
           (2, 'NaN', NULL, NULL, NULL, NULL, NULL),
           (2, 'NaN', NULL, NULL, NULL, NULL, NULL),
           (3, -0.0, '[]', '[]', '{}', '(0,0)', 'three');",
    );
    let p = spec(r#"{"source":"a","target":"b","mode":"cdc","tables":["public.ledger"]}"#);
    let report = e.log_pass(&p).await;
    succeeded(&report);
    e.assert_same("ledger");

    // One of two equal rows changes, the other stays; one of two equal rows
    // (NaN and NULLs) goes; an equal row is added; then one of them changes
    // twice in a transaction.
    e.src_sql(
        "UPDATE ledger SET note = 'changed' WHERE ctid = (SELECT ctid FROM ledger WHERE note = 'dup' LIMIT 1);
         DELETE FROM ledger WHERE ctid = (SELECT ctid FROM ledger WHERE acct = 2 LIMIT 1);
         INSERT INTO ledger VALUES (3, -0.0, '[]', '[]', '{}', '(0,0)', 'three');
         BEGIN;
         UPDATE ledger SET amount = 'NaN' WHERE ctid = (SELECT ctid FROM ledger WHERE acct = 3 LIMIT 1);
         UPDATE ledger SET doc = '{\"c\": null}', at = '(5,5)' WHERE amount = 'NaN' AND acct = 3;
         COMMIT;
         UPDATE ledger SET acct = 20 WHERE acct = 2;",
    );
    let report = e.log_pass(&p).await;
    succeeded(&report);
    let ledger = table(&report, "public.ledger");
    assert_eq!(
        (ledger.inserted, ledger.updated, ledger.deleted),
        (1, 4, 1),
        "{ledger:?}"
    );
    e.assert_same("ledger");
    assert_eq!(
        e.dst_sql("SELECT count(*) FROM ledger WHERE note = 'dup'"),
        "1"
    );
    assert_eq!(e.dst_sql("SELECT count(*) FROM ledger WHERE acct = 3"), "2");

    // Deleting every equal row deletes them all, one change each.
    e.src_sql("DELETE FROM ledger WHERE acct = 3");
    let report = e.log_pass(&p).await;
    succeeded(&report);
    assert_eq!(table(&report, "public.ledger").deleted, 2);
    e.assert_same("ledger");
}

#[tokio::test]
async fn the_copy_and_the_stream_meet_exactly_while_the_source_is_written() {
    let e = env().await;
    e.src_sql(
        "CREATE TABLE events (n int, note text);
         ALTER TABLE events REPLICA IDENTITY FULL;
         CREATE TABLE accounts (id int PRIMARY KEY, v int);
         INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 2000) g;
         INSERT INTO events SELECT g % 10, 'before' FROM generate_series(1, 2000) g;",
    );
    // A writer commits rows, equal ones too, one transaction after another,
    // during the whole first pass: some commit after the log starts and
    // before the copy's snapshot, which must not apply them twice.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written, pg, src) = (stop.clone(), written.clone(), e.pg, e.src.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let n = written.fetch_add(1, Ordering::Relaxed);
                pg.query_in(
                    &src,
                    &format!(
                        "INSERT INTO events VALUES ({}, 'during'); UPDATE accounts SET v = v + 1 WHERE id = {};
                         UPDATE events SET note = 'moved' WHERE ctid = (SELECT ctid FROM events WHERE note = 'before' LIMIT 1)",
                        n % 3,
                        n % 2000 + 1
                    ),
                )
                .unwrap();
            }
        })
    };
    // Batches of 50: the copy of 2,000 rows takes many chunks.
    let p =
        spec(r#"{"source":"a","target":"b","mode":"cdc","tables":["public.*"],"batch_size":50}"#);
    while written.load(Ordering::Relaxed) < 5 {
        std::thread::yield_now();
    }
    let report = e.log_pass(&p).await;
    let during = written.load(Ordering::Relaxed);
    succeeded(&report);
    while written.load(Ordering::Relaxed) < during + 5 {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let report = e.log_pass(&p).await;
    succeeded(&report);
    e.assert_same("accounts");
    e.assert_same("events");
}

#[tokio::test]
async fn a_table_without_a_key_and_without_whole_old_rows_is_refused_naming_the_fix() {
    let e = env().await;
    e.src_sql(
        "CREATE TABLE plain (n int);
         CREATE TABLE logged (n int);
         ALTER TABLE logged REPLICA IDENTITY FULL;
         INSERT INTO plain VALUES (1), (1); INSERT INTO logged VALUES (1), (1);",
    );
    let p = spec(r#"{"source":"a","target":"b","mode":"cdc","tables":["public.*"]}"#);
    let report = e.log_pass(&p).await;
    let plain = table(&report, "public.plain");
    assert_eq!(plain.status, ExecutionStatus::Failed);
    let error = plain.error.clone().unwrap();
    assert!(
        error.contains("public.plain") && error.contains("ALTER TABLE … REPLICA IDENTITY FULL"),
        "{error}"
    );
    assert_eq!(
        table(&report, "public.logged").status,
        ExecutionStatus::Succeeded
    );
    e.assert_same("logged");
}
