//! The PostgreSQL sink's change batches against a real server: staging tables
//! are created once per connection and reused, and a failed batch leaves the
//! sink able to apply the next one.

use std::sync::Arc;

use siphon_core::{
    Batch, Change, Checkpoint, Op, Phase, Position, SchemaOptions, Sink, Source, StreamId,
    TableFilter, TableName, TableSchema, Value,
};
use siphon_postgres::{PostgresSink, PostgresSource};
use siphon_testkit::Postgres;

fn checkpoint(n: i64) -> Checkpoint {
    Checkpoint {
        stream: StreamId::new("p", &TableName::new(Some("public"), "t")),
        epoch: 0,
        phase: Phase::Streaming {
            position: Some(Position(serde_json::json!({ "n": n }))),
        },
    }
}

fn row(id: i64, v: &str) -> Vec<Value> {
    vec![Value::Int64(id), Value::Text(v.to_string())]
}

fn batch(table: &Arc<TableSchema>, ops: Vec<Op>) -> Batch {
    Batch {
        changes: ops
            .into_iter()
            .map(|op| Change::new(table.clone(), op))
            .collect(),
    }
}

#[tokio::test]
async fn staging_tables_are_reused_and_a_failed_batch_leaves_the_sink_usable() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let dst = dst_url.rsplit('/').next().unwrap().to_string();
    let src = src_url.rsplit('/').next().unwrap().to_string();
    pg.query_in(
        &src,
        "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL)",
    )
    .unwrap();
    let source = PostgresSource::connect(&src_url).await.unwrap();
    let filter = TableFilter {
        include: vec!["public.t".into()],
        exclude: vec![],
    };
    let table = Arc::new(source.discover(&filter).await.unwrap().remove(0));
    let sink = PostgresSink::connect(&dst_url).await.unwrap();
    sink.prepare(&table, &SchemaOptions::default())
        .await
        .unwrap();
    pg.query_in(
        &dst,
        "ALTER TABLE t ADD CONSTRAINT no_bad CHECK (v <> 'bad')",
    )
    .unwrap();
    // Staging tables of this database's sessions.
    let stages = || {
        pg.query_in(
            &dst,
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'siphon_stage%' AND relpersistence = 't'",
        )
        .unwrap()
    };

    let stats = sink
        .apply(
            batch(
                &table,
                vec![Op::Insert(row(1, "a")), Op::Insert(row(2, "b"))],
            ),
            &checkpoint(1),
        )
        .await
        .unwrap();
    assert_eq!(stats.inserted, 2);
    let after_first = stages();
    assert_ne!(after_first, "0", "the staging table was not kept");

    // Rejected by the target after it created two more staging tables (for
    // the delete and the second run of inserts): nothing of it stays, and
    // those tables are created again by the next batch that needs them.
    let err = sink
        .apply(
            batch(
                &table,
                vec![
                    Op::Insert(row(3, "c")),
                    Op::Delete(row(1, "")),
                    Op::Insert(row(4, "bad")),
                ],
            ),
            &checkpoint(2),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no_bad"), "{err}");

    // Upserts, deletes and upserts again in one batch (three staging uses).
    let stats = sink
        .apply(
            batch(
                &table,
                vec![
                    Op::Update {
                        before: None,
                        after: row(1, "a2"),
                    },
                    Op::Insert(row(5, "e")),
                    Op::Delete(row(2, "")),
                    Op::Insert(row(6, "f")),
                ],
            ),
            &checkpoint(3),
        )
        .await
        .unwrap();
    assert_eq!((stats.inserted, stats.updated, stats.deleted), (2, 1, 1));
    for n in 4..8 {
        sink.apply(
            batch(&table, vec![Op::Insert(row(10 + n, "x"))]),
            &checkpoint(n),
        )
        .await
        .unwrap();
    }
    assert_eq!(
        pg.query_in(
            &dst,
            "SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM t"
        )
        .unwrap(),
        "1=a2,5=e,6=f,14=x,15=x,16=x,17=x"
    );
    assert_eq!(
        sink.checkpoint(&checkpoint(0).stream)
            .await
            .unwrap()
            .unwrap(),
        checkpoint(7)
    );
    // Reused, not one per batch: at most the three uses of the widest batch.
    let kept: i64 = stages().parse().unwrap();
    assert!((1..=3).contains(&kept), "{kept} staging tables");
}

#[tokio::test]
async fn first_runs_racing_to_create_the_checkpoint_table_all_connect() {
    let pg = Postgres::start().unwrap();
    // Each round a fresh database, and eight sinks opening it at once.
    for _ in 0..5 {
        let url = pg.create_database().unwrap();
        let opens: Vec<_> = (0..8)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { PostgresSink::connect(&url).await.map(|_| ()) })
            })
            .collect();
        for open in opens {
            let opened = open.await.unwrap();
            assert!(opened.is_ok(), "a sink failed to open: {opened:?}");
        }
    }
}
