//! The MySQL sink against a real MariaDB: tables created from a PostgreSQL
//! shape, every byte and emoji through `LOAD DATA` and through change
//! batches, a failed batch or chunk leaving neither rows nor checkpoint,
//! replays, deletes and key changes, fencing, keyless tables, and refusals
//! that name the table and column.

use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use siphon_core::typemap::Engine;
use siphon_core::{
    Batch, Change, Checkpoint, Column, DataType, ErrorKind, Op, Phase, Position, Row,
    SchemaOptions, Sink, StreamId, TableName, TableSchema, TypeKind, Value,
};
use siphon_mysql::MySqlSink;
use siphon_testkit::MariaDb;

/// A fresh database: its URL and name.
fn database() -> (String, String) {
    let url = MariaDb::shared().unwrap().create_database().unwrap();
    let name = url.rsplit('/').next().unwrap().to_string();
    (url, name)
}

fn query(db: &str, sql: &str) -> String {
    MariaDb::shared().unwrap().query_in(db, sql).unwrap()
}

fn column(name: &str, kind: TypeKind, native: &str, nullable: bool) -> Column {
    Column {
        name: name.into(),
        data_type: DataType::new(kind, nullable),
        native_type: native.into(),
        generated: false,
        source_id: None,
    }
}

/// A PostgreSQL table `public.NAME (id bigint PRIMARY KEY, v text NOT NULL)`.
fn keyed(name: &str) -> Arc<TableSchema> {
    Arc::new(TableSchema {
        name: TableName::new(Some("public"), name),
        origin: Engine::Postgres,
        columns: vec![
            column("id", TypeKind::Int64, "bigint", false),
            column("v", TypeKind::Text { max_len: None }, "text", false),
        ],
        primary_key: vec![0],
        unique_keys: vec![],
        indexes: vec![],
        partitioning: None,
        objects: vec![],
    })
}

fn row(id: i64, v: &str) -> Row {
    vec![Value::Int64(id), Value::Text(v.into())]
}

fn streaming(table: &TableSchema, n: i64, epoch: u64) -> Checkpoint {
    Checkpoint {
        stream: StreamId::new("p", &table.name),
        epoch,
        phase: Phase::Streaming {
            position: Some(Position(serde_json::json!({ "n": n }))),
        },
    }
}

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

fn batch(table: &Arc<TableSchema>, ops: Vec<Op>) -> Batch {
    Batch {
        changes: ops
            .into_iter()
            .map(|op| Change::new(table.clone(), op))
            .collect(),
    }
}

/// `id<TAB>v` lines of the table, in key order.
fn rows_of(db: &str, table: &str) -> String {
    query(db, &format!("SELECT id, v FROM `{table}` ORDER BY id"))
}

async fn prepared(url: &str, table: &TableSchema) -> MySqlSink {
    let sink = MySqlSink::connect(url).await.unwrap();
    sink.prepare(table, &SchemaOptions::default())
        .await
        .unwrap();
    sink
}

/// Every byte value and text that needs escaping, loaded by `LOAD DATA` and
/// then rewritten by a change batch, read back exactly (by hex); with the
/// PostgreSQL types mapped (numeric, timestamptz as UTC, uuid, jsonb, arrays).
#[tokio::test]
async fn every_byte_and_emoji_pass_through_load_and_apply() {
    let (url, db) = database();
    let table = Arc::new(TableSchema {
        name: TableName::new(Some("public"), "bytes"),
        origin: Engine::Postgres,
        columns: vec![
            column("id", TypeKind::Int64, "bigint", false),
            column("b", TypeKind::Bytes { max_len: None }, "bytea", true),
            column("t", TypeKind::Text { max_len: None }, "text", true),
            column(
                "n",
                TypeKind::Decimal {
                    precision: Some(12),
                    scale: Some(2),
                },
                "numeric(12,2)",
                true,
            ),
            column("ts", TypeKind::TimestampTz, "timestamptz", true),
            column("u", TypeKind::Uuid, "uuid", true),
            column("j", TypeKind::Json, "jsonb", true),
            column(
                "a",
                TypeKind::Array {
                    element: Box::new(TypeKind::Int32),
                },
                "integer[]",
                true,
            ),
            column(
                "e",
                TypeKind::Enum {
                    name: "mood".into(),
                    labels: vec!["sad".into(), "it's ok".into()],
                },
                "mood",
                true,
            ),
        ],
        primary_key: vec![0],
        unique_keys: vec![],
        indexes: vec![],
        partitioning: None,
        objects: vec![],
    });
    let texts = [
        "tab\there",
        "new\nline\r\n",
        "back\\slash \\N \\",
        "quote ' and \" and `",
        "emoji 🦀👩‍👩‍👧 ✓",
        "\\N",
        "",
        "nul \0 byte",
    ];
    let every: Vec<u8> = (0..=255u8).collect();
    let make = |reverse: bool| -> Vec<Row> {
        let mut rows: Vec<Row> = (0..=255u8)
            .map(|b| {
                let bytes = if reverse { vec![b, 255 - b] } else { vec![b] };
                let text = texts[b as usize % texts.len()];
                vec![
                    Value::Int64(i64::from(b)),
                    Value::Bytes(bytes),
                    Value::Text(if reverse {
                        format!("{text}!")
                    } else {
                        text.to_string()
                    }),
                    Value::Decimal("-1234567890.12".parse().unwrap()),
                    Value::TimestampTz(Utc.with_ymd_and_hms(2024, 2, 29, 23, 59, 58).unwrap()),
                    Value::Uuid("67e55044-10b1-426f-9247-bb680e5fe0c8".parse().unwrap()),
                    Value::Json(r#"{"k": "v\t🦀"}"#.into()),
                    Value::Array(vec![Value::Int32(1), Value::Null, Value::Int32(-3)]),
                    Value::Text("it's ok".into()),
                ]
            })
            .collect();
        let mut all = every.clone();
        if reverse {
            all.reverse();
        }
        rows.push(vec![
            Value::Int64(1000),
            Value::Bytes(all),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ]);
        rows.push(vec![
            Value::Int64(1001),
            Value::Bytes(vec![]),
            Value::Text(String::new()),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ]);
        rows
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
    let expected = |rows: &[Row]| -> String {
        rows.iter()
            .map(|r| {
                let b = match &r[1] {
                    Value::Bytes(b) => hex(b),
                    _ => "NULL".into(),
                };
                let t = match &r[2] {
                    Value::Text(t) => hex(t.as_bytes()),
                    _ => "NULL".into(),
                };
                format!(
                    "{}\t{b}\t{t}",
                    match &r[0] {
                        Value::Int64(i) => *i,
                        _ => unreachable!(),
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let read = || {
        query(
            &db,
            "SELECT id, IFNULL(HEX(b), 'NULL'), IFNULL(HEX(t), 'NULL') FROM `bytes` ORDER BY id",
        )
    };

    let sink = prepared(&url, &table).await;
    let loaded = make(false);
    let stats = sink
        .load(&table, loaded.clone(), &snapshot(&table, 1001))
        .await
        .unwrap();
    assert_eq!(stats.inserted, loaded.len() as u64);
    assert_eq!(read(), expected(&loaded), "after LOAD DATA");
    assert_eq!(
        query(
            &db,
            "SELECT n, ts, u, HEX(j), a, e FROM `bytes` WHERE id = 7"
        ),
        format!(
            "-1234567890.12\t2024-02-29 23:59:58.000000\t67e55044-10b1-426f-9247-bb680e5fe0c8\t{}\t\
             [1,null,-3]",
            hex(r#"{"k": "v\t🦀"}"#.as_bytes())
        ) + "\tit's ok"
    );
    // The PostgreSQL types as mapped (MariaDB's json is longtext with a check).
    assert_eq!(
        query(
            &db,
            "SELECT GROUP_CONCAT(COLUMN_TYPE ORDER BY ORDINAL_POSITION SEPARATOR ' | ') \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'bytes'"
        ),
        "bigint(20) | longblob | longtext | decimal(12,2) | datetime(6) | char(36) | longtext | \
         longtext | enum('sad','it''s ok')"
    );

    let changed = make(true);
    let ops = changed
        .iter()
        .map(|r| Op::Update {
            before: None,
            after: r.clone(),
        })
        .collect();
    let stats = sink
        .apply(batch(&table, ops), &streaming(&table, 1, 0))
        .await
        .unwrap();
    assert_eq!(stats.updated, changed.len() as u64, "{stats:?}");
    assert_eq!(read(), expected(&changed), "after a change batch");
    // The same chunk loaded again replaces its rows: nothing twice.
    sink.load(&table, loaded.clone(), &snapshot(&table, 1001))
        .await
        .unwrap();
    assert_eq!(read(), expected(&loaded), "after loading the chunk again");
}

/// A CHECK the target has refuses a row: the batch fails as `BadInput`
/// naming the table, and neither its other rows nor its checkpoint land;
/// the same for a chunk; a value too long for its column names the column.
#[tokio::test]
async fn a_refused_row_leaves_neither_rows_nor_checkpoint() {
    let (url, db) = database();
    let table = keyed("checked");
    let sink = prepared(&url, &table).await;
    query(
        &db,
        "ALTER TABLE `checked` ADD CONSTRAINT no_bad CHECK (v <> 'bad')",
    );
    let good = streaming(&table, 1, 0);
    sink.apply(batch(&table, vec![Op::Insert(row(1, "one"))]), &good)
        .await
        .unwrap();

    let e = sink
        .apply(
            batch(
                &table,
                vec![
                    Op::Insert(row(2, "two")),
                    Op::Delete(row(1, "")),
                    Op::Insert(row(3, "bad")),
                ],
            ),
            &streaming(&table, 2, 0),
        )
        .await
        .expect_err("a row the CHECK refuses was applied");
    assert_eq!(e.kind(), ErrorKind::BadInput, "{e}");
    assert_eq!(e.table_name(), Some("public.checked"), "{e}");
    assert_eq!(
        rows_of(&db, "checked"),
        "1\tone",
        "a failed batch left rows"
    );
    assert_eq!(
        sink.checkpoint(&good.stream).await.unwrap(),
        Some(good.clone())
    );

    let e = sink
        .load(
            &table,
            vec![row(4, "four"), row(5, "bad")],
            &snapshot(&table, 5),
        )
        .await
        .expect_err("a chunk with a row the CHECK refuses was loaded");
    assert_eq!(e.table_name(), Some("public.checked"), "{e}");
    assert_eq!(
        rows_of(&db, "checked"),
        "1\tone",
        "a failed chunk left rows"
    );
    assert_eq!(
        sink.checkpoint(&good.stream).await.unwrap(),
        Some(good.clone())
    );

    // A value longer than a key column holds (text keys from PostgreSQL
    // become varchar): refused, naming the column, by apply and by load.
    let long = Arc::new(TableSchema {
        name: TableName::new(Some("public"), "long_keys"),
        origin: Engine::Postgres,
        columns: vec![column("k", TypeKind::Text { max_len: None }, "text", false)],
        primary_key: vec![0],
        unique_keys: vec![],
        indexes: vec![],
        partitioning: None,
        objects: vec![],
    });
    sink.prepare(&long, &SchemaOptions::default())
        .await
        .unwrap();
    let too_long = vec![Value::Text("x".repeat(5000))];
    let e = sink
        .apply(
            batch(&long, vec![Op::Insert(too_long.clone())]),
            &streaming(&long, 1, 0),
        )
        .await
        .expect_err("a key longer than its column was applied");
    assert_eq!(e.kind(), ErrorKind::BadInput, "{e}");
    assert_eq!(e.table_name(), Some("public.long_keys"), "{e}");
    assert_eq!(e.column_name(), Some("k"), "{e}");
    let e = sink
        .load(&long, vec![too_long], &snapshot(&long, 1))
        .await
        .expect_err("a key longer than its column was loaded");
    assert_eq!(e.kind(), ErrorKind::BadInput, "{e}");
    assert_eq!(e.column_name(), Some("k"), "{e}");
    assert_eq!(query(&db, "SELECT COUNT(*) FROM long_keys"), "0");

    // A decimal with more fraction digits than MySQL keeps (30) would be
    // rounded with only a note: refused, naming the column.
    let exact = Arc::new(TableSchema {
        name: TableName::new(Some("public"), "exact"),
        origin: Engine::Postgres,
        columns: vec![
            column("id", TypeKind::Int64, "bigint", false),
            column(
                "n",
                TypeKind::Decimal {
                    precision: None,
                    scale: None,
                },
                "numeric",
                true,
            ),
        ],
        primary_key: vec![0],
        unique_keys: vec![],
        indexes: vec![],
        partitioning: None,
        objects: vec![],
    });
    sink.prepare(&exact, &SchemaOptions::default())
        .await
        .unwrap();
    let fine = "0.".to_string() + &"1".repeat(31);
    let precise = vec![Value::Int64(1), Value::Decimal(fine.parse().unwrap())];
    let e = sink
        .apply(
            batch(&exact, vec![Op::Insert(precise.clone())]),
            &streaming(&exact, 1, 0),
        )
        .await
        .expect_err("a decimal was rounded on its way in");
    assert_eq!(e.kind(), ErrorKind::BadInput, "{e}");
    assert_eq!(e.column_name(), Some("n"), "{e}");
    let e = sink
        .load(&exact, vec![precise], &snapshot(&exact, 1))
        .await
        .expect_err("a decimal was rounded on its way in by a load");
    assert_eq!(e.column_name(), Some("n"), "{e}");
    assert_eq!(query(&db, "SELECT COUNT(*) FROM exact"), "0");

    // The sink goes on after refusals.
    sink.apply(
        batch(&table, vec![Op::Insert(row(2, "two"))]),
        &streaming(&table, 3, 0),
    )
    .await
    .unwrap();
    assert_eq!(rows_of(&db, "checked"), "1\tone\n2\ttwo");
}

/// Inserts, updates, deletes, a key change and a truncate, in one batch
/// applied twice: the second time changes nothing; a delete after an upsert
/// of the same key keeps its meaning, and the other way round.
#[tokio::test]
async fn replays_deletes_and_key_changes_converge() {
    let (url, db) = database();
    let table = keyed("changes");
    let sink = prepared(&url, &table).await;
    let initial: Vec<Row> = (1..=5).map(|i| row(i, &format!("r{i}"))).collect();
    sink.load(&table, initial, &snapshot(&table, 5))
        .await
        .unwrap();

    let b = batch(
        &table,
        vec![
            Op::Insert(row(6, "six")),
            Op::Delete(row(6, "")),
            Op::Delete(row(2, "")),
            Op::Insert(row(2, "two again")),
            Op::Update {
                before: Some(row(3, "r3")),
                after: row(30, "thirty"),
            },
            Op::Update {
                before: Some(row(4, "r4")),
                after: row(4, "four"),
            },
            Op::Insert(row(7, "seven")),
            Op::Update {
                before: None,
                after: row(7, "seven updated"),
            },
            Op::Delete(row(5, "")),
        ],
    );
    let want = "1\tr1\n2\ttwo again\n4\tfour\n7\tseven updated\n30\tthirty";
    let cp = streaming(&table, 1, 0);
    let first = sink.apply(b.clone(), &cp).await.unwrap();
    assert_eq!(rows_of(&db, "changes"), want);
    assert_eq!(first.deleted, 2, "{first:?}"); // 3 (the old key) and 5
    sink.apply(b, &cp).await.unwrap();
    assert_eq!(rows_of(&db, "changes"), want, "after a replay");
    assert_eq!(sink.checkpoint(&cp.stream).await.unwrap(), Some(cp));

    let t = batch(
        &table,
        vec![
            Op::Insert(row(8, "before the truncate")),
            Op::Truncate,
            Op::Insert(row(9, "after")),
        ],
    );
    let stats = sink.apply(t, &streaming(&table, 2, 0)).await.unwrap();
    assert_eq!(stats.emptied, 5, "{stats:?}");
    assert_eq!(rows_of(&db, "changes"), "9\tafter");

    sink.reset(&streaming(&table, 2, 0).stream).await.unwrap();
    assert_eq!(
        sink.checkpoint(&streaming(&table, 2, 0).stream)
            .await
            .unwrap(),
        None
    );
}

/// A checkpoint of an older lease epoch is refused with `Fenced`, its rows
/// rolled back; a fence raises the stored epoch and never lowers it.
#[tokio::test]
async fn an_older_epoch_is_fenced() {
    let (url, db) = database();
    let table = keyed("fenced");
    let sink = prepared(&url, &table).await;
    sink.apply(
        batch(&table, vec![Op::Insert(row(1, "e5"))]),
        &streaming(&table, 1, 5),
    )
    .await
    .unwrap();
    let e = sink
        .apply(
            batch(&table, vec![Op::Insert(row(2, "e3"))]),
            &streaming(&table, 2, 3),
        )
        .await
        .expect_err("an older epoch was applied");
    assert_eq!(e.kind(), ErrorKind::Fenced, "{e}");
    let e = sink
        .load(&table, vec![row(3, "e0")], &snapshot(&table, 3))
        .await
        .expect_err("an older epoch was loaded");
    assert_eq!(e.kind(), ErrorKind::Fenced, "{e}");
    assert_eq!(rows_of(&db, "fenced"), "1\te5");

    sink.fence("p", 8).await.unwrap();
    sink.fence("p", 7).await.unwrap();
    let e = sink
        .apply(
            batch(&table, vec![Op::Insert(row(4, "e6"))]),
            &streaming(&table, 3, 6),
        )
        .await
        .expect_err("epoch 6 went through after a fence at 8");
    assert_eq!(e.kind(), ErrorKind::Fenced, "{e}");
    sink.apply(
        batch(&table, vec![Op::Insert(row(4, "e8"))]),
        &streaming(&table, 3, 8),
    )
    .await
    .unwrap();
    assert_eq!(rows_of(&db, "fenced"), "1\te5\n4\te8");
    assert_eq!(
        sink.checkpoint(&streaming(&table, 3, 8).stream)
            .await
            .unwrap(),
        Some(streaming(&table, 3, 8))
    );
}

/// Text keys from PostgreSQL compare byte for byte: keys that differ only in
/// case or trailing spaces stay distinct rows, and read back in key order.
#[tokio::test]
async fn text_keys_from_postgres_stay_distinct_and_read_back_in_order() {
    let (url, db) = database();
    let table = Arc::new(TableSchema {
        name: TableName::new(Some("public"), "words"),
        origin: Engine::Postgres,
        columns: vec![
            column("w", TypeKind::Text { max_len: None }, "text", false),
            column("n", TypeKind::Int32, "integer", true),
        ],
        primary_key: vec![0],
        unique_keys: vec![],
        indexes: vec![],
        partitioning: None,
        objects: vec![],
    });
    let sink = prepared(&url, &table).await;
    let words = ["a", "A", "a ", "b", "ä"];
    let rows: Vec<Row> = words
        .iter()
        .enumerate()
        .map(|(i, w)| vec![Value::Text(w.to_string()), Value::Int32(i as i32)])
        .collect();
    sink.apply(
        batch(&table, rows.into_iter().map(Op::Insert).collect()),
        &streaming(&table, 1, 0),
    )
    .await
    .unwrap();
    assert_eq!(query(&db, "SELECT COUNT(*) FROM words"), "5");
    let mut keys = Vec::new();
    let mut after: Option<Row> = None;
    loop {
        let page = sink.read_keys(&table, after.as_ref(), 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        keys.extend(page);
    }
    let mut want: Vec<&str> = words.to_vec();
    want.sort(); // byte order
    let got: Vec<Row> = want
        .iter()
        .map(|w| vec![Value::Text(w.to_string())])
        .collect();
    assert_eq!(keys, got);
    assert_eq!(sink.count_rows(&table).await.unwrap(), Some(5));
}

/// A table without a key: repeated rows stay as many as at the source, and
/// an update or delete changes exactly one of them.
#[tokio::test]
async fn a_table_without_a_key_is_applied_exactly() {
    let (url, db) = database();
    let mut t = (*keyed("keyless")).clone();
    t.primary_key.clear();
    let table = Arc::new(t);
    let sink = prepared(&url, &table).await;
    sink.load(
        &table,
        vec![row(1, "x"), row(1, "x"), row(2, "y")],
        &snapshot(&table, 0),
    )
    .await
    .unwrap();
    let stats = sink
        .apply(
            batch(
                &table,
                vec![
                    Op::Update {
                        before: Some(row(1, "x")),
                        after: row(1, "z"),
                    },
                    Op::Delete(row(2, "y")),
                    Op::Insert(row(3, "w")),
                    Op::Insert(row(3, "w")),
                ],
            ),
            &streaming(&table, 1, 0),
        )
        .await
        .unwrap();
    assert_eq!((stats.updated, stats.deleted, stats.inserted), (1, 1, 2));
    assert_eq!(
        query(&db, "SELECT id, v FROM keyless ORDER BY id, v"),
        "1\tx\n1\tz\n3\tw\n3\tw"
    );
    let e = sink
        .apply(
            batch(
                &table,
                vec![Op::Update {
                    before: None,
                    after: row(1, "q"),
                }],
            ),
            &streaming(&table, 2, 0),
        )
        .await
        .expect_err("an update without its old row was applied to a keyless table");
    assert_eq!(e.kind(), ErrorKind::BadInput, "{e}");
    assert_eq!(e.table_name(), Some("public.keyless"));
}

/// A column the source gained is added to the existing target table, and
/// the sink writes it; without `schema.evolve` the lack is refused, naming
/// the column.
#[tokio::test]
async fn an_added_source_column_is_added_on_the_target() {
    let (url, db) = database();
    let table = keyed("evolving");
    let sink = prepared(&url, &table).await;
    sink.load(&table, vec![row(1, "a")], &snapshot(&table, 1))
        .await
        .unwrap();
    let mut wider = (*table).clone();
    wider
        .columns
        .push(column("d", TypeKind::Date, "date", true));
    let wider = Arc::new(wider);
    let strict = SchemaOptions {
        evolve: false,
        ..SchemaOptions::default()
    };
    let e = sink
        .prepare(&wider, &strict)
        .await
        .expect_err("evolved without schema.evolve");
    assert_eq!(e.column_name(), Some("d"), "{e}");
    sink.prepare(&wider, &SchemaOptions::default())
        .await
        .unwrap();
    let day = NaiveDate::from_ymd_opt(2025, 12, 31).unwrap();
    sink.apply(
        batch(
            &wider,
            vec![Op::Insert(vec![
                Value::Int64(2),
                Value::Text("b".into()),
                Value::Date(day),
            ])],
        ),
        &streaming(&wider, 1, 0),
    )
    .await
    .unwrap();
    assert_eq!(
        query(
            &db,
            "SELECT id, v, IFNULL(d, '-') FROM evolving ORDER BY id"
        ),
        "1\ta\t-\n2\tb\t2025-12-31"
    );
}

/// Two sinks writing the first checkpoints of many tables side by side, as
/// tables loaded in parallel do, never deadlock: under REPEATABLE READ the
/// locking read of a checkpoint row not written yet locked the gap where it
/// would go, and two such transactions deadlocked on their inserts.
#[tokio::test]
async fn first_checkpoints_of_tables_written_side_by_side_never_deadlock() {
    let (url, db) = database();
    let first = prepared(&url, &keyed("t")).await;
    let second = MySqlSink::connect(&url).await.unwrap();
    let tables: Vec<Arc<TableSchema>> = (0..400).map(|i| keyed(&format!("t{i:03}"))).collect();
    let write = |sink: MySqlSink, tables: Vec<Arc<TableSchema>>| async move {
        for t in tables {
            sink.apply(Batch { changes: vec![] }, &streaming(&t, 1, 0))
                .await
                .map_err(|e| format!("{}: {e}", t.name))?;
        }
        Ok::<_, String>(())
    };
    // Interleaved names, so the two writers' rows fall into the same gaps.
    let (a, b): (Vec<_>, Vec<_>) = tables
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let (ra, rb) = tokio::join!(
        write(first, a.into_iter().map(|(_, t)| t).collect()),
        write(second, b.into_iter().map(|(_, t)| t).collect()),
    );
    ra.unwrap();
    rb.unwrap();
    assert_eq!(
        query(&db, "SELECT COUNT(*) FROM siphon_checkpoints").trim(),
        "400"
    );
}
