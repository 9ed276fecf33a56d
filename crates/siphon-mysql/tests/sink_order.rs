//! The order the MySQL sink writes a batch's rows in, against a real MariaDB:
//! a table keyed by one integer column and no other unique key gets its rows
//! in key order (the target walks its primary key once), and a table with
//! another unique key in the order of each key's last change, so that rows
//! trading unique values still end as at the source.

use std::sync::Arc;

use siphon_core::typemap::Engine;
use siphon_core::{
    Batch, Change, Checkpoint, Column, DataType, Op, Phase, Position, Row, SchemaOptions, Sink,
    StreamId, TableName, TableSchema, TypeKind, Value,
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

fn column(name: &str, kind: TypeKind, native: &str) -> Column {
    Column {
        name: name.into(),
        data_type: DataType::new(kind, false),
        native_type: native.into(),
        generated: false,
        source_id: None,
    }
}

/// `NAME (id bigint PRIMARY KEY, code varchar(20) NOT NULL)`, `code` unique when asked.
fn table(name: &str, unique_code: bool) -> Arc<TableSchema> {
    Arc::new(TableSchema {
        name: TableName::new(Some("src"), name),
        origin: Engine::Mysql,
        columns: vec![
            column("id", TypeKind::Int64, "bigint"),
            column("code", TypeKind::Text { max_len: Some(20) }, "varchar(20)"),
        ],
        primary_key: vec![0],
        unique_keys: if unique_code { vec![vec![1]] } else { vec![] },
        indexes: vec![],
        partitioning: None,
        objects: vec![],
    })
}

fn row(id: i64, code: &str) -> Row {
    vec![Value::Int64(id), Value::Text(code.into())]
}

fn checkpoint(t: &TableSchema, n: i64) -> Checkpoint {
    Checkpoint {
        stream: StreamId::new("p", &t.name),
        epoch: 0,
        phase: Phase::Streaming {
            position: Some(Position(serde_json::json!({ "n": n }))),
        },
    }
}

fn batch(t: &Arc<TableSchema>, ops: Vec<Op>) -> Batch {
    Batch {
        changes: ops
            .into_iter()
            .map(|op| Change::new(t.clone(), op))
            .collect(),
    }
}

async fn prepared(url: &str, t: &TableSchema) -> MySqlSink {
    let sink = MySqlSink::connect(url).await.unwrap();
    sink.prepare(t, &SchemaOptions::default()).await.unwrap();
    sink
}

/// Rows changed out of key order, some several times, some deleted, reach
/// the target in key order (a trigger of the target logs the order its rows
/// were written in) and end as their last change says.
#[tokio::test]
async fn rows_of_a_table_keyed_by_one_integer_are_written_in_key_order() {
    let (url, db) = database();
    let t = table("ordered", false);
    let sink = prepared(&url, &t).await;
    query(
        &db,
        "CREATE TABLE written (seq int AUTO_INCREMENT PRIMARY KEY, id bigint NOT NULL); \
         CREATE TRIGGER ordered_ai AFTER INSERT ON ordered FOR EACH ROW INSERT INTO written (id) VALUES (NEW.id); \
         CREATE TRIGGER ordered_au AFTER UPDATE ON ordered FOR EACH ROW INSERT INTO written (id) VALUES (NEW.id)",
    );
    // Ids 1 + (i·37 mod 101): every id of 1..=101 once, out of order.
    let ids: Vec<i64> = (0..101).map(|i| 1 + (i * 37) % 101).collect();
    let mut ops: Vec<Op> = ids
        .iter()
        .map(|&id| Op::Insert(row(id, &format!("a{id}"))))
        .collect();
    for &id in ids.iter().rev().step_by(3) {
        ops.push(Op::Update {
            before: Some(row(id, &format!("a{id}"))),
            after: row(id, &format!("b{id}")),
        });
    }
    for &id in ids.iter().step_by(10) {
        ops.push(Op::Delete(row(id, "")));
    }
    let mut want: std::collections::BTreeMap<i64, String> = std::collections::BTreeMap::new();
    for op in &ops {
        match op {
            Op::Insert(r) | Op::Update { after: r, .. } => {
                let Value::Int64(id) = r[0] else {
                    unreachable!()
                };
                let Value::Text(code) = &r[1] else {
                    unreachable!()
                };
                want.insert(id, code.clone());
            }
            Op::Delete(r) => {
                let Value::Int64(id) = r[0] else {
                    unreachable!()
                };
                want.remove(&id);
            }
            _ => unreachable!(),
        }
    }
    sink.apply(batch(&t, ops), &checkpoint(&t, 1))
        .await
        .unwrap();

    let written: Vec<i64> = query(&db, "SELECT id FROM written ORDER BY seq")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let mut sorted = written.clone();
    sorted.sort_unstable();
    assert_eq!(written.len(), want.len(), "one write per surviving key");
    assert_eq!(written, sorted, "rows were written out of key order");
    let got = query(&db, "SELECT id, code FROM ordered ORDER BY id");
    let want: Vec<String> = want.iter().map(|(id, c)| format!("{id}\t{c}")).collect();
    assert_eq!(got, want.join("\n"));
    assert_eq!(
        sink.checkpoint(&checkpoint(&t, 1).stream).await.unwrap(),
        Some(checkpoint(&t, 1))
    );
}

/// Two rows trade a unique value within one batch: written in the order of
/// their last changes (the row that gives the value up first), not in key
/// order, which would write `b` to row 1 while row 2 still holds it and so
/// update row 2 instead.
#[tokio::test]
async fn rows_of_a_table_with_another_unique_key_keep_the_order_of_their_changes() {
    let (url, db) = database();
    let t = table("traded", true);
    let sink = prepared(&url, &t).await;
    let first = batch(&t, vec![Op::Insert(row(1, "a")), Op::Insert(row(2, "b"))]);
    sink.apply(first, &checkpoint(&t, 1)).await.unwrap();
    let trade = batch(
        &t,
        vec![
            Op::Update {
                before: Some(row(2, "b")),
                after: row(2, "c"),
            },
            Op::Update {
                before: Some(row(1, "a")),
                after: row(1, "b"),
            },
        ],
    );
    sink.apply(trade, &checkpoint(&t, 2)).await.unwrap();
    assert_eq!(
        query(&db, "SELECT id, code FROM traded ORDER BY id"),
        "1\tb\n2\tc"
    );
}
