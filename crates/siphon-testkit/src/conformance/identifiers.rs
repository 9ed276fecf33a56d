//! Odd identifiers: table and column names with spaces, quotes, mixed case,
//! reserved words, non-ASCII letters and a `.`, copied, changed and checkpointed
//! under their exact names.

use std::sync::Arc;

use siphon_core::{Batch, Change, Op, Row, Sink, TableName, Value};

use super::{
    assert_rows, copy_table, create_table, database, discover_one, rows_of, sink, source,
    streaming_checkpoint, ColumnSpec, Harness, KeySpec, Literal, TableSpec,
};

/// Table names the suite creates, each in the database's default schema. The
/// last two are 63 bytes long, PostgreSQL's limit (one ASCII, one not), which
/// names a connector derives from them must not overflow.
pub const TABLE_NAMES: [&str; 12] = [
    "with space",
    "say \"hi\"",
    "it's",
    "MixedCase",
    "select",
    "order",
    "user",
    "Größe",
    "日本",
    "a.b",
    "a table name sixty-three bytes long as long as PostgreSQL takes",
    "日本日本日本日本日本日本日本日本日本日本語",
];

/// Column names of every such table; the first is its integer key.
pub const COLUMN_NAMES: [&str; 8] = [
    "Order Id",
    "select",
    "it's \"q\"",
    "MixedCase",
    "Größe",
    "日本",
    "a.b",
    "a column name sixty-three bytes long, the most PostgreSQL takes",
];

fn spec<H: Harness>(h: &H, name: &str) -> TableSpec {
    TableSpec {
        schema: None,
        name: name.to_string(),
        columns: COLUMN_NAMES
            .iter()
            .enumerate()
            .map(|(i, c)| ColumnSpec {
                name: c.to_string(),
                native_type: if i == 0 {
                    h.integer_type()
                } else {
                    h.text_type()
                }
                .to_string(),
                not_null: i == 0,
            })
            .collect(),
        key: KeySpec::Primary(vec![0]),
    }
}

/// Row `id`: text that names its column, a NULL in `MixedCase`.
fn literals(id: i64) -> Vec<Literal> {
    let mut row = vec![Literal::Int(id)];
    for (i, c) in COLUMN_NAMES.iter().enumerate().skip(1) {
        row.push(match i {
            3 => Literal::Null,
            _ => Literal::Text(format!("{c} {id}")),
        });
    }
    row
}

fn values(id: i64) -> Row {
    literals(id)
        .into_iter()
        .map(|l| match l {
            Literal::Int(n) => Value::Int64(n),
            Literal::Text(s) => Value::Text(s),
            _ => Value::Null,
        })
        .collect()
}

/// Each odd table is discovered under its exact name, copied, changed by
/// [`Sink::apply`] (an update, a delete, an insert) and read back; each keeps a
/// checkpoint of its own.
pub async fn odd_identifiers<H: Harness>(h: &H) {
    let (src, dst) = (database(h), database(h));
    for name in TABLE_NAMES {
        let rows: Vec<_> = (1..=3).map(literals).collect();
        create_table(h, &src, &spec(h, name), &rows);
    }
    let source = source(h, &src).await;
    let target = sink(h, &dst).await;
    let check = super::source(h, &dst).await;
    let mut names = Vec::new();
    for (n, name) in TABLE_NAMES.iter().enumerate() {
        let table = Arc::new(discover_one(&source, &h.table_name(name)).await);
        let got: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(got, COLUMN_NAMES, "table {}: its columns", table.name);
        copy_table(&source, &target, &table, 2).await;
        let want: Vec<Row> = (1..=3).map(values).collect();
        let back = rows_of(&check, &table.name).await;
        assert_rows("copied", &table, &back, &want);

        let mut changed = values(1);
        changed[3] = Value::Text("now set".into());
        changed[6] = Value::Null;
        let batch = Batch {
            changes: [
                Op::Update {
                    before: Some(values(1)),
                    after: changed.clone(),
                },
                Op::Delete(values(2)),
                Op::Insert(values(4)),
            ]
            .into_iter()
            .map(|op| Change::new(table.clone(), op))
            .collect(),
        };
        target
            .apply(batch, &streaming_checkpoint(&table.name, n as i64))
            .await
            .unwrap_or_else(|e| panic!("applying changes to table {}: {e}", table.name));
        let back = rows_of(&check, &table.name).await;
        assert_rows("changed", &table, &back, &[changed, values(3), values(4)]);
        names.push(table.name.clone());
    }
    for (n, name) in names.iter().enumerate() {
        let cp = streaming_checkpoint(name, n as i64);
        assert_eq!(
            target.checkpoint(&cp.stream).await.unwrap(),
            Some(cp),
            "table {name:?}: its checkpoint"
        );
    }
}

/// Tables whose names display alike (`a.b.c`) keep apart checkpoints on the
/// target: `"a"."b.c"`, `"a.b"."c"` and a bare `"a.b.c"`.
pub async fn checkpoints_of_look_alike_names<H: Harness>(h: &H) {
    let dst = database(h);
    let target = sink(h, &dst).await;
    let mut names = vec![
        TableName::new(Some("a"), "b.c"),
        TableName::new(Some("a.b"), "c"),
        TableName::new(None, "a.b.c"),
    ];
    if !names.contains(&h.table_name("a.b.c")) {
        names.push(h.table_name("a.b.c"));
    }
    for (n, name) in names.iter().enumerate() {
        target
            .apply(Batch::default(), &streaming_checkpoint(name, n as i64))
            .await
            .unwrap_or_else(|e| panic!("a checkpoint of table {name:?}: {e}"));
    }
    for (n, name) in names.iter().enumerate() {
        let cp = streaming_checkpoint(name, n as i64);
        assert_eq!(
            target.checkpoint(&cp.stream).await.unwrap(),
            Some(cp),
            "table {name:?}: its checkpoint"
        );
    }
    let reset = streaming_checkpoint(&names[0], 0).stream;
    target.reset(&reset).await.unwrap();
    assert_eq!(target.checkpoint(&reset).await.unwrap(), None);
    let kept = streaming_checkpoint(&names[1], 1);
    assert_eq!(target.checkpoint(&kept.stream).await.unwrap(), Some(kept));
}

/// Schemas (engines that have them): tables whose names display alike,
/// `"a"."b.c"` and `"a.b"."c"`, and a table in a schema with a space, quotes,
/// mixed case and a non-ASCII letter, are each copied into a schema of the same
/// name on the target, changed, and checkpointed apart.
pub async fn look_alike_tables_in_odd_schemas<H: Harness>(h: &H) {
    let (src, dst) = (database(h), database(h));
    let places = [("a", "b.c"), ("a.b", "c"), ("My \"Schema\" ü", "select")];
    let mut specs = Vec::new();
    for (n, (schema, name)) in places.iter().enumerate() {
        let sql = h.create_schema_sql(schema).unwrap_or_else(|| {
            panic!("the harness has no schemas; leave this case out of its run")
        });
        h.execute(&src, &sql)
            .unwrap_or_else(|e| panic!("creating schema {schema:?}: {e}"));
        let mut spec = super::keyed_text_table(h, name);
        spec.schema = Some(schema.to_string());
        let rows: Vec<_> = (1..=n as i64 + 2)
            .map(|i| super::text_literals(i, &format!("{schema}/{name} {i}")))
            .collect();
        create_table(h, &src, &spec, &rows);
        specs.push(spec);
    }
    let source = source(h, &src).await;
    let target = sink(h, &dst).await;
    let check = super::source(h, &dst).await;
    let mut names = Vec::new();
    for (n, spec) in specs.iter().enumerate() {
        let name = super::name_of(h, spec);
        let table = Arc::new(discover_one(&source, &name).await);
        copy_table(&source, &target, &table, 2).await;
        let change = Change::new(
            table.clone(),
            Op::Update {
                before: None,
                after: super::text_row(1, &format!("changed in {name:?}")),
            },
        );
        let batch = Batch {
            changes: vec![change],
        };
        target
            .apply(batch, &streaming_checkpoint(&table.name, n as i64))
            .await
            .unwrap_or_else(|e| panic!("applying changes to table {name:?}: {e}"));
        names.push(name);
    }
    for (n, (spec, name)) in specs.iter().zip(&names).enumerate() {
        let schema = spec.schema.as_deref().unwrap_or_default();
        let mut want = vec![super::text_row(1, &format!("changed in {name:?}"))];
        want.extend(
            (2..=n as i64 + 2).map(|i| super::text_row(i, &format!("{schema}/{} {i}", spec.name))),
        );
        let table = discover_one(&check, name).await;
        let back = rows_of(&check, name).await;
        assert_rows("copied into its schema and changed", &table, &back, &want);
        let cp = streaming_checkpoint(name, n as i64);
        assert_eq!(
            target.checkpoint(&cp.stream).await.unwrap(),
            Some(cp),
            "table {name:?}: its checkpoint"
        );
    }
}
