//! The schema check schedule (`schema_check_interval`) in a following run: a
//! `full` table that holds its complete copy is not copied again, yet its
//! target follows the source's schema on the check's schedule, and a change
//! the target refuses stops that table with the sink's error. Against a real
//! PostgreSQL 15 from the testkit.

use std::time::{Duration, Instant};

use siphon_core::{ExecutionStatus, PipelineSpec, StateStore, StreamState};
use siphon_engine::{follow_log_pass, LogSession, NoopObserver, PassReport, Shutdown};
use siphon_postgres::{PostgresSink, PostgresSource};

mod support;
use support::env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_full_table_follows_the_source_schema_on_the_check_schedule() {
    let e = env().await;
    e.src_sql(
        "CREATE TABLE lookup (id int PRIMARY KEY, name text); INSERT INTO lookup VALUES (1, 'a');",
    );
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let sink = PostgresSink::connect(&e.dst_url).await.unwrap();
    let spec: PipelineSpec = serde_json::from_str(
        r#"{"source":"a","target":"b","mode":"full","tables":["public.lookup"],"schema_check_interval":"1s"}"#,
    )
    .unwrap();
    let shutdown = Shutdown::new();
    let mut session = LogSession::follow(Duration::from_millis(200));
    macro_rules! pass {
        () => {
            follow_log_pass(
                &e.pipeline,
                &spec,
                &source,
                &sink,
                &e.state,
                &NoopObserver,
                &shutdown,
                &mut session,
            )
        };
    }
    let first = pass!().await.unwrap();
    assert!(
        first
            .tables
            .iter()
            .all(|t| t.status == ExecutionStatus::Succeeded),
        "{first:?}"
    );

    // The table holds its complete copy: later passes do not copy it, and
    // only the check brings the new column over.
    e.src_sql("ALTER TABLE lookup ADD COLUMN note text");
    let columns = || {
        e.dst_sql(
            "SELECT string_agg(attname::text, ',' ORDER BY attnum) FROM pg_attribute \
             WHERE attrelid = 'lookup'::regclass AND attnum > 0 AND NOT attisdropped",
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while columns() != "id,name,note" {
        assert!(
            Instant::now() < deadline,
            "the check never added the column: {}",
            columns()
        );
        let report: PassReport = pass!().await.unwrap();
        assert!(
            report.tables.iter().all(|t| t.rows_read == 0),
            "the idle table was copied again: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Another primary key at the source is a change the target refuses: the
    // check stops the table with the sink's error, which says what to do.
    e.src_sql("ALTER TABLE lookup DROP CONSTRAINT lookup_pkey, ADD PRIMARY KEY (id, name)");
    let deadline = Instant::now() + Duration::from_secs(30);
    let failed = loop {
        assert!(
            Instant::now() < deadline,
            "the check never stopped the table"
        );
        let report = pass!().await.unwrap();
        if let Some(t) = report
            .tables
            .iter()
            .find(|t| t.status == ExecutionStatus::Failed)
        {
            break t.clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let error = failed.error.unwrap_or_default();
    assert!(
        error.contains("primary key") && error.contains("sync resync"),
        "{error}"
    );
    let states = e.state.stream_states().await.unwrap();
    assert!(
        states
            .iter()
            .any(|(s, st)| s.table.name == "lookup" && matches!(st, StreamState::Failed { .. })),
        "{states:?}"
    );
    session.close().await.unwrap();
}
