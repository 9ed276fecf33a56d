//! Loads of decoded rows (the path rows from a non-PostgreSQL source take)
//! stream their COPY data in pieces while encoding it: chunks of many pieces,
//! a row larger than a piece, NULLs, binary and text COPY formats all arrive
//! exactly as PostgreSQL reads them back; a chunk loaded again is upserted; a
//! value that does not fit aborts the COPY part way with an error naming its
//! column, and the connection loads the next chunk.

use std::sync::Arc;

use siphon_core::{
    Checkpoint, Phase, Position, SchemaOptions, Sink, Source, StreamId, TableFilter, TableSchema,
    Value,
};
use siphon_postgres::{PostgresSink, PostgresSource};
use siphon_testkit::Postgres;

fn snapshot(table: &TableSchema, last: i64) -> Checkpoint {
    Checkpoint {
        stream: StreamId::new("p", &table.name),
        epoch: 0,
        phase: Phase::Snapshot {
            last_key: Some(Position(serde_json::json!([last]))),
            resume_position: None,
            ranges: Vec::new(),
            shadow: None,
        },
    }
}

/// Text of about `len` bytes for row `id`, with characters COPY's text format
/// escapes and non-ASCII ones.
fn text(id: i64, len: usize) -> String {
    let unit = format!("row {id}\t\\ ✓ 🚀\n");
    unit.repeat(len / unit.len() + 1)
}

async fn table(source: &PostgresSource, name: &str) -> Arc<TableSchema> {
    let filter = TableFilter {
        include: vec![format!("public.{name}")],
        exclude: vec![],
    };
    Arc::new(source.discover(&filter).await.unwrap().remove(0))
}

/// Every row of `sql` (one text column per value, NULL as `None`).
async fn read_back(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.get::<_, Option<String>>(i))
                .collect()
        })
        .collect()
}

/// Asserts `got` equals `want`, naming the first differing row and value.
fn same(got: &[Vec<Option<String>>], want: &[Vec<Option<String>>]) {
    assert_eq!(got.len(), want.len(), "row counts");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        for (j, (a, b)) in g.iter().zip(w).enumerate() {
            let short =
                |v: &Option<String>| v.as_deref().map(|s| s.chars().take(80).collect::<String>());
            assert!(
                a == b,
                "row {i} value {j}: got {:?} ({} bytes), want {:?} ({} bytes)",
                short(a),
                a.as_ref().map_or(0, String::len),
                short(b),
                b.as_ref().map_or(0, String::len)
            );
        }
        assert_eq!(g.len(), w.len(), "values in row {i}");
    }
}

#[tokio::test]
async fn decoded_rows_load_in_pieces_exactly() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let src = src_url.rsplit('/').next().unwrap().to_string();
    pg.query_in(
        &src,
        "CREATE TABLE t (id bigint PRIMARY KEY, s text, n numeric(6,2), j jsonb, at timestamptz);
         CREATE TABLE ti (id bigint PRIMARY KEY, a inet, s text);",
    )
    .unwrap();
    let source = PostgresSource::connect(&src_url).await.unwrap();
    let t = table(&source, "t").await;
    let ti = table(&source, "ti").await;
    let sink = PostgresSink::connect(&dst_url).await.unwrap();
    for table in [&t, &ti] {
        sink.prepare(table, &SchemaOptions::default())
            .await
            .unwrap();
    }

    // 3,000 rows of about 300 bytes (several pieces of COPY data), one of
    // 1.5 MB (more than a piece), and NULLs every 7th row.
    let at = chrono::DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap();
    let rows: Vec<Vec<Value>> = (1..=3000i64)
        .map(|id| {
            if id % 7 == 0 {
                return vec![
                    Value::Int64(id),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ];
            }
            let len = if id == 1500 { 1_500_000 } else { 300 };
            vec![
                Value::Int64(id),
                Value::Text(text(id, len)),
                Value::Decimal(format!("{}.{:02}", id % 9999, id % 100).parse().unwrap()),
                Value::Json(format!(r#"{{"id": {id}, "tags": ["a", "🚀"]}}"#)),
                Value::TimestampTz(at + chrono::Duration::microseconds(id)),
            ]
        })
        .collect();
    let stats = sink
        .load(&t, rows.clone(), &snapshot(&t, 3000))
        .await
        .unwrap();
    assert_eq!(stats.inserted, 3000);
    let expected = |rows: &[Vec<Value>]| -> Vec<Vec<Option<String>>> {
        rows.iter()
            .map(|r| {
                let id = match r[0] {
                    Value::Int64(id) => id,
                    _ => unreachable!(),
                };
                if r[1].is_null() {
                    return vec![Some(id.to_string()), None, None, None, None];
                }
                let micros = (123_456 + id) as u32;
                vec![
                    Some(id.to_string()),
                    Some(text(id, if id == 1500 { 1_500_000 } else { 300 })),
                    Some(format!("{}.{:02}", id % 9999, id % 100)),
                    Some(format!(r#"{{"id": {id}, "tags": ["a", "🚀"]}}"#)),
                    Some(format!("2023-11-14 22:13:20.{micros:06}+00")),
                ]
            })
            .collect()
    };
    let read = |sql: &'static str| read_back(&dst_url, sql);
    let query = "SELECT id::text, s, n::text, j::text, \
                 to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' FROM t ORDER BY t.id";
    same(&read(query).await, &expected(&rows));

    // The same chunk again (a resumed load): upserted, nothing doubled.
    let again = sink
        .load(&t, rows.clone(), &snapshot(&t, 3000))
        .await
        .unwrap();
    assert_eq!(again.inserted + again.updated, 3000, "{again:?}");
    same(&read(query).await, &expected(&rows));

    // A value that does not fit numeric(6,2), after enough rows that the
    // COPY had sent pieces already: the load fails naming the column and
    // commits nothing.
    let mut bad: Vec<Vec<Value>> = (3001..=5000i64)
        .map(|id| {
            vec![
                Value::Int64(id),
                Value::Text(text(id, 300)),
                Value::Decimal("1.00".parse().unwrap()),
                Value::Null,
                Value::Null,
            ]
        })
        .collect();
    let count = || read("SELECT count(*)::text FROM t");
    // Refused by the server (too many digits for the column's precision).
    let mut too_wide = bad.clone();
    too_wide[1900][2] = Value::Decimal("123456.78".parse().unwrap());
    let e = sink
        .load(&t, too_wide, &snapshot(&t, 5000))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("numeric field overflow"), "{e}");
    assert_eq!(count().await, vec![vec![Some("3000".to_string())]]);
    // Refused by siphon's encoder, which names the column.
    bad[1900][2] = Value::Text("not a number".into());
    let e = sink.load(&t, bad, &snapshot(&t, 5000)).await.unwrap_err();
    assert_eq!(e.column_name(), Some("n"), "{e}");
    assert_eq!(count().await, vec![vec![Some("3000".to_string())]]);
    // The connection goes on with the next chunk.
    let next = vec![vec![
        Value::Int64(5001),
        Value::Text("after".into()),
        Value::Decimal("2.50".parse().unwrap()),
        Value::Null,
        Value::Null,
    ]];
    assert_eq!(
        sink.load(&t, next, &snapshot(&t, 5001))
            .await
            .unwrap()
            .inserted,
        1
    );
    assert_eq!(
        read("SELECT s FROM t WHERE id = 5001").await,
        vec![vec![Some("after".to_string())]]
    );

    // COPY's text format (an inet column has no binary codec here), in pieces.
    let text_rows: Vec<Vec<Value>> = (1..=2000i64)
        .map(|id| {
            vec![
                Value::Int64(id),
                Value::Engine {
                    type_name: "inet".into(),
                    text: format!("10.0.{}.{}/32", id / 256, id % 256),
                },
                if id % 5 == 0 {
                    Value::Null
                } else {
                    Value::Text(text(id, if id == 999 { 600_000 } else { 400 }))
                },
            ]
        })
        .collect();
    let stats = sink
        .load(&ti, text_rows.clone(), &snapshot(&ti, 2000))
        .await
        .unwrap();
    assert_eq!(stats.inserted, 2000);
    let want: Vec<Vec<Option<String>>> = (1..=2000i64)
        .map(|id| {
            vec![
                Some(id.to_string()),
                Some(format!("10.0.{}.{}", id / 256, id % 256)),
                (id % 5 != 0).then(|| text(id, if id == 999 { 600_000 } else { 400 })),
            ]
        })
        .collect();
    same(
        &read("SELECT id::text, host(a), s FROM ti ORDER BY ti.id").await,
        &want,
    );
}
