//! The engine's Prometheus metrics, read from a recorder installed in this
//! process while a real PostgreSQL → PostgreSQL cdc pipeline runs through the
//! library: rows applied by table and operation match the rows written, the
//! snapshot's done and total agree once it is copied, a table the target
//! refuses counts an error of its kind, batches are timed, and the lag, the
//! source position and the slot's retained WAL are set. The state store keeps
//! the commit lag beside the checkpoints. Every wait polls with a deadline.
//!
//! The same from a MariaDB binlog: rows by operation, lag, the binlog offset
//! and file number.
//!
//! The recorder is the process's global one, shared by the tests of this
//! binary; their pipelines' names keep their samples apart. (`siphon service`
//! installs its own through `siphon_api::metrics`;
//! crates/siphon-cli/tests/metrics.rs scrapes that one over HTTP.)

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use siphon::{Connection, Mode, Pipeline, Siphon, StateStore, StreamId, TableName};
use siphon_engine::telemetry;
use siphon_testkit::{MariaDb, Postgres};

/// How long any awaited condition may take on a loaded two-core machine.
const DEADLINE: Duration = Duration::from_secs(300);

/// The value of the sample of `name` whose labels include every one of
/// `labels`; `None` when there is none.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (set, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        labels
            .iter()
            .all(|(k, v)| set.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// Polls the rendered metrics until `cond` holds; returns that rendering.
async fn wait_for(handle: &PrometheusHandle, what: &str, cond: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = handle.render();
        if cond(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what}: not seen in\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The process's recorder, installed by the first test that asks.
fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(telemetry::BATCH_APPLY_SECONDS.to_string()),
                &[0.001, 0.01, 0.1, 1.0, 10.0],
            )
            .unwrap()
            .install_recorder()
            .unwrap();
        telemetry::describe_metrics();
        handle
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cdc_pipeline_records_every_metric_family() {
    let handle = recorder();

    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let src = src_url.rsplit('/').next().unwrap().to_string();
    let dst = dst_url.rsplit('/').next().unwrap().to_string();
    pg.query_in(
        &src,
        "CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO public.items SELECT g, 'item ' || g FROM generate_series(1, 100) g;
         CREATE TABLE public.bad (id int PRIMARY KEY, v text);
         INSERT INTO public.bad VALUES (1, 'x');",
    )
    .unwrap();
    // The target refuses every row of `bad` (a check violation: bad input),
    // even from siphon's replica-role connection.
    pg.query_in(
        &dst,
        "CREATE TABLE public.bad (id int PRIMARY KEY, v text);
         CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'bad refuses this row' USING ERRCODE = '23514'; END $$;
         CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON public.bad
             FOR EACH ROW EXECUTE FUNCTION refuse();
         ALTER TABLE public.bad ENABLE ALWAYS TRIGGER refuse;",
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    // Replication slots are the server's and named after pipelines.
    let pipeline = format!("m_{src}");
    let siphon = Siphon::builder()
        .state_path(dir.path().join("state.db"))
        .connection(Connection::new("src", src_url.clone()))
        .connection(Connection::new("dst", dst_url.clone()))
        .pipeline(
            Pipeline::builder(pipeline.clone())
                .source("src")
                .target("dst")
                .mode(Mode::Cdc)
                .tables(["public.items", "public.bad"])
                .build()
                .unwrap(),
        )
        .init()
        .await
        .unwrap();
    let running = siphon.start().await.unwrap();
    let p = pipeline.as_str();
    let items = [("pipeline", p), ("table", "public.items")];

    // The snapshot: 100 rows copied, done == total once complete.
    let text = wait_for(handle, "the snapshot of items", |t| {
        sample(t, "siphon_snapshot_rows_done", &items) == Some(100.0)
            && sample(t, "siphon_snapshot_rows_total", &items) == Some(100.0)
    })
    .await;
    assert_eq!(
        sample(
            &text,
            "siphon_rows_applied_total",
            &[("pipeline", p), ("table", "public.items"), ("op", "copy")]
        ),
        Some(100.0),
        "{text}"
    );
    // The refused table counts an error of its kind.
    let bad = [
        ("pipeline", p),
        ("table", "public.bad"),
        ("kind", "bad_input"),
    ];
    let text = wait_for(handle, "the refused table's error", |t| {
        sample(t, "siphon_errors_total", &bad).is_some_and(|n| n >= 1.0)
    })
    .await;
    assert!(text.contains("# HELP siphon_errors_total"), "{text}");

    // Changes after the snapshot: counted by operation, with lag and position.
    let before: String = pg.query_in(&src, "SELECT pg_current_wal_lsn()").unwrap();
    let (hi, lo) = before.trim().split_once('/').unwrap();
    let before =
        (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap();
    pg.query_in(
        &src,
        "INSERT INTO public.items SELECT g, 'item ' || g FROM generate_series(101, 150) g;
         UPDATE public.items SET name = 'renamed' WHERE id = 1;
         DELETE FROM public.items WHERE id = 2;",
    )
    .unwrap();
    let op = |op: &'static str| [("pipeline", p), ("table", "public.items"), ("op", op)];
    let text = wait_for(handle, "the streamed changes", |t| {
        sample(t, "siphon_rows_applied_total", &op("insert")) == Some(50.0)
            && sample(t, "siphon_rows_applied_total", &op("update")) == Some(1.0)
            && sample(t, "siphon_rows_applied_total", &op("delete")) == Some(1.0)
            && sample(t, "siphon_replication_lag_seconds", &items).is_some()
            && sample(t, "siphon_source_position", &[("pipeline", p)]).is_some()
    })
    .await;
    let lag = sample(&text, "siphon_replication_lag_seconds", &items).expect("a lag");
    assert!((0.0..300.0).contains(&lag), "lag {lag}\n{text}");
    let position = sample(&text, "siphon_source_position", &[("pipeline", p)]).expect("a position");
    assert!(
        position > before as f64,
        "position {position} not past {before}\n{text}"
    );
    let cdc = [("pipeline", p), ("mode", "cdc")];
    let batches = sample(&text, "siphon_batch_apply_duration_seconds_count", &cdc).unwrap_or(0.0);
    assert!(batches >= 1.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "siphon_batch_apply_duration_seconds_bucket",
            &[("pipeline", p), ("mode", "cdc"), ("le", "+Inf")]
        ),
        Some(batches),
        "{text}"
    );
    let rows: i64 = pg
        .query_in(&dst, "SELECT count(*) FROM public.items")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(rows, 100 + 50 - 1, "the target holds what the counters say");

    // The slot keeps WAL while it exists.
    wait_for(handle, "the slot's retained WAL", |t| {
        sample(t, "siphon_source_retained_log_bytes", &[("pipeline", p)]).is_some_and(|b| b > 0.0)
    })
    .await;

    // The state store keeps the lag beside the checkpoints: the log's and
    // the table's.
    let lags = siphon.state().commit_lags().await.unwrap();
    let table = StreamId::new(p, &TableName::new(Some("public"), "items"));
    let log = siphon_engine::log_stream(p);
    for stream in [&table, &log] {
        let (_, l) = lags
            .iter()
            .find(|(s, _)| s == stream)
            .unwrap_or_else(|| panic!("no lag kept for {stream}: {lags:?}"));
        assert!(l.applied_at >= l.source_commit_at, "{l:?}");
        assert!((0.0..300.0).contains(&l.seconds()), "{l:?}");
    }

    let outcomes = running.stop().await.unwrap();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    // The slot is the shared server's: it goes with the test.
    pg.query_in(
        &src,
        &format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE database = '{src}'"
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binlog_pipeline_records_rows_lag_and_binlog_position() {
    let handle = recorder();
    let my = MariaDb::shared().unwrap();
    let src_url = my.create_database().unwrap();
    let db = src_url.rsplit('/').next().unwrap().to_string();
    my.query_in(
        &db,
        "CREATE TABLE items (id int PRIMARY KEY, name varchar(40) NOT NULL);
         INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c');",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = format!("sqlite://{}", dir.path().join("copy.db").display());
    let pipeline = format!("b_{db}");
    let siphon = Siphon::builder()
        .state_path(dir.path().join("state.db"))
        .connection(Connection::new("src", src_url.clone()))
        .connection(Connection::new("dst", target))
        .pipeline(
            Pipeline::builder(pipeline.clone())
                .source("src")
                .target("dst")
                .mode(Mode::Cdc)
                .tables(["items"])
                .build()
                .unwrap(),
        )
        .init()
        .await
        .unwrap();
    let running = siphon.start().await.unwrap();
    let p = pipeline.as_str();
    let table = format!("{db}.items");
    let items = [("pipeline", p), ("table", table.as_str())];
    wait_for(handle, "the snapshot of items", |t| {
        sample(t, "siphon_snapshot_rows_done", &items) == Some(3.0)
            && sample(t, "siphon_snapshot_rows_total", &items) == Some(3.0)
    })
    .await;
    my.query_in(
        &db,
        "INSERT INTO items VALUES (4, 'd'), (5, 'e');
         UPDATE items SET name = 'z' WHERE id = 1;
         DELETE FROM items WHERE id = 2;",
    )
    .unwrap();
    let op = |op: &'static str| [("pipeline", p), ("table", table.as_str()), ("op", op)];
    let text = wait_for(handle, "the streamed changes", |t| {
        sample(t, "siphon_rows_applied_total", &op("insert")) == Some(2.0)
            && sample(t, "siphon_rows_applied_total", &op("update")) == Some(1.0)
            && sample(t, "siphon_rows_applied_total", &op("delete")) == Some(1.0)
            && sample(t, "siphon_replication_lag_seconds", &items).is_some()
            && sample(t, "siphon_source_position", &[("pipeline", p)]).is_some()
    })
    .await;
    let lag = sample(&text, "siphon_replication_lag_seconds", &items).expect("a lag");
    assert!((0.0..300.0).contains(&lag), "lag {lag}\n{text}");
    let offset = sample(&text, "siphon_source_position", &[("pipeline", p)]).expect("a position");
    assert!(offset > 0.0, "{text}");
    let file =
        sample(&text, "siphon_source_binlog_file", &[("pipeline", p)]).expect("a binlog file");
    assert!(file >= 1.0, "{text}");
    let lags = siphon.state().commit_lags().await.unwrap();
    assert!(
        lags.iter()
            .any(|(s, _)| s.pipeline == p && s.table.name == "items"),
        "{lags:?}"
    );
    let outcomes = running.stop().await.unwrap();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
}
