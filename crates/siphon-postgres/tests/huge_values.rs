//! Rows holding values of tens of megabytes (text and bytea) replicate exactly
//! PostgreSQL → PostgreSQL, in a full load and in `cdc`: inserted, updated, left
//! unchanged by an update of another column (the log then carries no value for
//! them), deleted; with the default replica identity and with `FULL`, and in a
//! table whose rows travel in COPY's text format; and the replication client
//! streams messages larger than its read-ahead budget. Memory is measured by
//! `bench/pg_huge_rows.sh`, not here.

use std::time::Duration;

use siphon_core::{ExecutionStatus, PipelineSpec};
use siphon_engine::{run_log_pass, run_pass, NoopObserver, PassReport, Shutdown};
use siphon_postgres::pgoutput::{Decoder, Message, TupleColumn};
use siphon_postgres::replication::{Event, ReplicationConfig, ReplicationStream};
use siphon_postgres::{PostgresSink, PostgresSource};
use siphon_state::SqliteStateStore;
use siphon_testkit::Postgres;

/// Generous bound for anything the server should do soon; only guards
/// against a hanging test, never measures.
const PATIENCE: Duration = Duration::from_secs(120);

/// Size of the huge text values (bytes).
const TEXT: usize = 20 << 20;
/// Size of the huge bytea values (bytes; the log carries them as hex text,
/// twice as long).
const BYTES: usize = 10 << 20;

/// The tables: the default replica identity; `FULL`; and one with an `inet`
/// column, whose rows siphon writes in COPY's text format.
const TABLES: [&str; 3] = ["huge", "huge_full", "huge_text"];

/// What a table's values are cut by, in SQL written with `{div}` (`TEXT` and
/// `BYTES` in the first table; a tenth, still more than a megabyte, in the
/// others, to keep the test short).
fn div(table: &str) -> &'static str {
    if table == "huge" {
        "1"
    } else {
        "10"
    }
}

fn spec(json: &str) -> PipelineSpec {
    serde_json::from_str(json).unwrap()
}

/// SQL for a text of `TEXT / {div}` bytes made from `seed`, with characters
/// COPY's text format escapes (tab, newline, backslash) and non-ASCII ones.
fn text(seed: &str) -> String {
    let unit = format!("{seed}\\\t\n✓");
    format!(
        "repeat(E'{}', {} / {{div}})",
        unit.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n"),
        TEXT / unit.len()
    )
}

/// SQL for a bytea of `BYTES / {div}` bytes made from `seed`.
fn bytes(seed: &str) -> String {
    format!(
        "decode(repeat(md5('{seed}'), {} / {{div}}), 'hex')",
        BYTES / 16
    )
}

struct Env {
    pg: &'static Postgres,
    src: String,
    src_url: String,
    pipeline: String,
    state: SqliteStateStore,
    _dir: tempfile::TempDir,
}

fn db(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

async fn env() -> Env {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let src = db(&src_url);
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let e = Env {
        pg,
        pipeline: src.clone(),
        src,
        src_url,
        state,
        _dir: dir,
    };
    e.sql(&e.src, "CREATE TABLE huge (id int PRIMARY KEY, note text, body text, data bytea);
         CREATE TABLE huge_full (id int PRIMARY KEY, note text, body text, data bytea);
         ALTER TABLE huge_full REPLICA IDENTITY FULL;
         CREATE TABLE huge_text (id int PRIMARY KEY, note text, body text, data bytea, addr inet DEFAULT '10.0.0.1');");
    for t in TABLES {
        e.sql(
            &e.src,
            &format!(
                "INSERT INTO {t} (id, note, body, data) VALUES (1, 'small', 'x', '\\x00');
                 INSERT INTO {t} (id, note, body, data) VALUES (2, 'huge', {}, {});",
                text("first"),
                bytes("first")
            )
            .replace("{div}", div(t)),
        );
    }
    e
}

impl Env {
    fn sql(&self, db: &str, sql: &str) -> String {
        self.pg.query_in(db, sql).unwrap()
    }

    /// Each row of `table` as its key, lengths and digests.
    fn digest(&self, db: &str, table: &str) -> String {
        let addr = if table == "huge_text" { ", addr" } else { "" };
        self.sql(
            db,
            &format!(
                "SELECT coalesce(string_agg(concat_ws(' ', id, note, length(body), md5(body),
                   length(data), md5(data){addr}), E'\\n' ORDER BY id), '') FROM {table}"
            ),
        )
    }

    /// Asserts each table of `dst` holds what the source's holds.
    fn assert_same(&self, dst: &str, when: &str) {
        for t in TABLES {
            let want = self.digest(&self.src, t);
            assert_eq!(self.digest(dst, t), want, "{t} differs {when}");
        }
    }
}

fn succeeded(report: &PassReport) {
    for t in &report.tables {
        assert_eq!(t.status, ExecutionStatus::Succeeded, "{t:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_values_replicate_exactly_in_full_and_cdc() {
    let e = env().await;
    let source = PostgresSource::connect(&e.src_url).await.unwrap();

    // A full load.
    let full_url = e.pg.create_database().unwrap();
    let full = PostgresSink::connect(&full_url).await.unwrap();
    let p = spec(r#"{"source":"a","target":"b","mode":"full","tables":["public.huge*"]}"#);
    let report = run_pass(
        &format!("{}_full", e.pipeline),
        &p,
        &source,
        &full,
        &e.state,
        &NoopObserver,
        &Shutdown::new(),
    )
    .await
    .unwrap();
    succeeded(&report);
    e.assert_same(&db(&full_url), "after a full load");

    // cdc: a snapshot, then changes.
    let dst_url = e.pg.create_database().unwrap();
    let dst = db(&dst_url);
    let sink = PostgresSink::connect(&dst_url).await.unwrap();
    let p = spec(r#"{"source":"a","target":"b","mode":"cdc","tables":["public.huge*"]}"#);
    let pass = || async {
        let report = run_log_pass(
            &e.pipeline,
            &p,
            &source,
            &sink,
            &e.state,
            &NoopObserver,
            &Shutdown::new(),
        )
        .await
        .unwrap();
        succeeded(&report);
    };
    pass().await;
    e.assert_same(&dst, "after the snapshot");

    for (step, changes) in [
        (
            "after huge inserts and updates",
            format!(
                "INSERT INTO {{t}} (id, note, body, data) VALUES (3, 'new', {}, {});
                 UPDATE {{t}} SET data = {} WHERE id = 2;
                 UPDATE {{t}} SET body = {} WHERE id = 1;",
                text("third"),
                bytes("third"),
                bytes("second"),
                text("second")
            ),
        ),
        (
            "after updates that leave huge values unchanged",
            "UPDATE {t} SET note = 'kept' WHERE id = 2;
             UPDATE {t} SET body = 'short' WHERE id = 3;
             BEGIN; UPDATE {t} SET note = 'twice' WHERE id = 1; UPDATE {t} SET note = 'again' WHERE id = 1; COMMIT;"
                .to_string(),
        ),
        (
            "after a huge value replaced by NULL and a delete",
            "UPDATE {t} SET data = NULL WHERE id = 2; DELETE FROM {t} WHERE id = 3;".to_string(),
        ),
    ] {
        for t in TABLES {
            let sql = changes.replace("{t}", t).replace("{div}", div(t));
            e.sql(&e.src, &sql);
        }
        pass().await;
        e.assert_same(&dst, step);
    }
    // The values really were huge, and still are where they were kept.
    for t in TABLES {
        let sql = format!(
            "SELECT count(*) FROM {t} WHERE length(body) >= {} / {}",
            TEXT / 2,
            div(t)
        );
        assert_eq!(e.sql(&dst, &sql), "2", "{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_larger_than_the_read_ahead_budget_arrive_whole_and_in_order() {
    let pg = Postgres::shared().unwrap();
    let name = db(&pg.create_database().unwrap());
    let slot = format!("{name}_slot");
    pg.query_in(
        &name,
        "CREATE TABLE t (id int PRIMARY KEY, body text); CREATE PUBLICATION pub FOR TABLE t",
    )
    .unwrap();
    pg.query_in(
        &name,
        &format!("SELECT lsn FROM pg_create_logical_replication_slot('{slot}', 'pgoutput')"),
    )
    .unwrap();
    // Messages of 3 MiB, each bigger than the connection's read buffer and
    // than the read-ahead budget.
    for id in 1..=4 {
        pg.query_in(
            &name,
            &format!(
                "INSERT INTO t VALUES ({id}, repeat(md5('{id}'), {}))",
                (3 << 20) / 32
            ),
        )
        .unwrap();
    }
    let config: tokio_postgres::Config = pg.url_for(&name).parse().unwrap();
    let config = ReplicationConfig::from_pg_config(&config, &slot, "pub")
        .unwrap()
        .with_buffer_bytes(1);
    let mut stream = ReplicationStream::connect(config).await.unwrap();
    let mut decoder = Decoder::new();
    let mut bodies = Vec::new();
    while bodies.len() < 4 {
        let event = tokio::time::timeout(PATIENCE, stream.recv())
            .await
            .expect("no event from the server")
            .unwrap()
            .expect("the stream ended");
        if let Event::Data { data, .. } = event {
            if let Message::Insert { new, .. } = decoder.decode(data).unwrap() {
                let TupleColumn::Text(body) = &new.0[1] else {
                    panic!("{new:?}");
                };
                bodies.push(String::from_utf8(body.to_vec()).unwrap());
            }
        }
        // A slow caller: the reader would run ahead now if it could.
        tokio::task::yield_now().await;
    }
    for (id, body) in (1..).zip(&bodies) {
        let want = pg
            .query_in(&name, &format!("SELECT body FROM t WHERE id = {id}"))
            .unwrap();
        assert!(*body == want, "row {id} arrived changed");
    }
    stream.shutdown().await.unwrap();
}
