//! The MySQL sink against a MariaDB started with `local_infile=OFF`: chunks
//! load by multi-row INSERT instead of LOAD DATA, with the same results
//! (every byte value, replays, refusals naming the column, an enum's error
//! value '' written as index 0).

use chrono::NaiveDate;
use siphon_core::typemap::Engine;
use siphon_core::{
    Checkpoint, Column, DataType, ErrorKind, Phase, Position, Row, SchemaOptions, Sink, StreamId,
    TableName, TableSchema, TypeKind, Value,
};
use siphon_mysql::MySqlSink;
use siphon_testkit::MariaDb;

fn column(name: &str, kind: TypeKind, native: &str) -> Column {
    Column {
        name: name.into(),
        data_type: DataType::new(kind, false),
        native_type: native.into(),
        generated: false,
        source_id: None,
    }
}

#[tokio::test]
async fn chunks_load_by_insert_when_the_server_refuses_local_files() {
    let server = MariaDb::start_with_args(&["--local-infile=0"]).unwrap();
    assert_eq!(server.query("SELECT @@local_infile").unwrap(), "0");
    let url = server.create_database().unwrap();
    let db = url.rsplit('/').next().unwrap().to_string();
    let table = TableSchema {
        name: TableName::new(Some("app"), "blobs"),
        origin: Engine::Mysql,
        columns: vec![
            column("id", TypeKind::Int32, "int(11)"),
            column("b", TypeKind::Bytes { max_len: None }, "blob"),
            column("t", TypeKind::Text { max_len: Some(8) }, "varchar(8)"),
            column("d", TypeKind::Date, "date"),
        ],
        primary_key: vec![0],
        unique_keys: vec![],
        indexes: vec![],
        partitioning: None,
        objects: vec![],
    };
    let sink = MySqlSink::connect(&url).await.unwrap();
    sink.prepare(&table, &SchemaOptions::default())
        .await
        .unwrap();
    let day = NaiveDate::from_ymd_opt(1999, 12, 31).unwrap();
    let rows: Vec<Row> = (0..=255u8)
        .map(|b| {
            vec![
                Value::Int32(i32::from(b)),
                Value::Bytes(vec![b, b'\\', b'\'', 0]),
                Value::Text("é\t🦀".into()),
                Value::Date(day),
            ]
        })
        .collect();
    let cp = Checkpoint::new(
        StreamId::new("p", &table.name),
        Phase::Snapshot {
            last_key: Some(Position(serde_json::json!([255]))),
            resume_position: None,
            ranges: Vec::new(),
            shadow: None,
        },
    );
    for _ in 0..2 {
        sink.load(&table, rows.clone(), &cp).await.unwrap();
    }
    let want: Vec<String> = (0..=255u8)
        .map(|b| format!("{b}\t{b:02X}5C2700\tC3A909F09FA680\t1999-12-31"))
        .collect();
    assert_eq!(
        server
            .query_in(&db, "SELECT id, HEX(b), HEX(t), d FROM blobs ORDER BY id")
            .unwrap(),
        want.join("\n")
    );
    assert_eq!(sink.checkpoint(&cp.stream).await.unwrap(), Some(cp.clone()));

    let e = sink
        .load(
            &table,
            vec![vec![
                Value::Int32(300),
                Value::Bytes(vec![]),
                Value::Text("too long for it".into()),
                Value::Date(day),
            ]],
            &cp,
        )
        .await
        .expect_err("a value longer than its column was loaded");
    assert_eq!(e.kind(), ErrorKind::BadInput, "{e}");
    assert_eq!(e.table_name(), Some("app.blobs"), "{e}");
    assert_eq!(e.column_name(), Some("t"), "{e}");
}

#[tokio::test]
async fn an_enum_error_value_loads_by_insert_as_index_zero() {
    let server = MariaDb::start_with_args(&["--local-infile=0"]).unwrap();
    let url = server.create_database().unwrap();
    let db = url.rsplit('/').next().unwrap().to_string();
    let text = TypeKind::Text { max_len: None };
    let table = TableSchema {
        name: TableName::new(Some("app"), "flags"),
        origin: Engine::Mysql,
        columns: vec![
            column("id", TypeKind::Int32, "int(11)"),
            column("e", text.clone(), "enum('a','b')"),
            column("z", text, "enum('0','a')"),
        ],
        primary_key: vec![0],
        unique_keys: vec![],
        indexes: vec![],
        partitioning: None,
        objects: vec![],
    };
    let sink = MySqlSink::connect(&url).await.unwrap();
    sink.prepare(&table, &SchemaOptions::default())
        .await
        .unwrap();
    let cp = Checkpoint::new(
        StreamId::new("p", &table.name),
        Phase::Snapshot {
            last_key: Some(Position(serde_json::json!([2]))),
            resume_position: None,
            ranges: Vec::new(),
            shadow: None,
        },
    );
    let row = |id: i32, e: &str, z: &str| {
        vec![
            Value::Int32(id),
            Value::Text(e.into()),
            Value::Text(z.into()),
        ]
    };
    // '' is the error value a server outside strict mode stores (index 0).
    sink.load(&table, vec![row(1, "", "a"), row(2, "b", "0")], &cp)
        .await
        .unwrap();
    assert_eq!(
        server
            .query_in(&db, "SELECT id, e, e+0, z, z+0 FROM flags ORDER BY id")
            .unwrap(),
        "1\t\t0\ta\t2\n2\tb\t2\t0\t1"
    );
    // An enum with a member '0' takes its error value as index 0 too, and a
    // value the enum has no member for is still refused, naming the column.
    sink.load(&table, vec![row(3, "a", "")], &cp).await.unwrap();
    assert_eq!(
        server
            .query_in(&db, "SELECT z, z+0 FROM flags WHERE id = 3")
            .unwrap(),
        "\t0"
    );
    let e = sink
        .load(&table, vec![row(4, "c", "a")], &cp)
        .await
        .expect_err("a value outside the enum was loaded");
    assert_eq!(e.kind(), ErrorKind::BadInput, "{e}");
    assert_eq!(e.table_name(), Some("app.flags"), "{e}");
    assert_eq!(e.column_name(), Some("e"), "{e}");
    // Beside an error value in the same statement, it is refused all the same.
    let e = sink
        .load(&table, vec![row(5, "", "a"), row(6, "c", "a")], &cp)
        .await
        .expect_err("a value outside the enum was loaded beside an error value");
    assert_eq!(e.column_name(), Some("e"), "{e}");
}
