//! Type round trips: every type a connector supports, with NULL and extreme
//! values, read by its source, loaded and applied by its sink, and read back.

use std::sync::Arc;

use siphon_core::{Batch, Change, Op, Row, SchemaOptions, Sink, Source, TableSchema, Value};

use super::{
    assert_rows, copy_table, create_table, database, discover_one, name_of, read_all, sink, source,
    streaming_checkpoint, target_rows, ColumnSpec, Harness, KeySpec, Literal, TableSpec,
};

/// The table of [`Harness::types`]: an integer key `id` and one nullable column
/// `c{i}` per type; row `r` holds each type's `r`-th value (NULL past its last)
/// and one more row holds NULL in every column.
fn types_table<H: Harness>(h: &H) -> (TableSpec, Vec<Vec<Literal>>, Vec<Row>) {
    let cases = h.types();
    assert!(!cases.is_empty(), "the harness names no types");
    let mut columns = vec![ColumnSpec {
        name: "id".into(),
        native_type: h.integer_type().to_string(),
        not_null: true,
    }];
    columns.extend(cases.iter().enumerate().map(|(i, c)| ColumnSpec {
        name: format!("c{i}"),
        native_type: c.native_type.clone(),
        not_null: false,
    }));
    let depth = cases.iter().map(|c| c.values.len()).max().unwrap_or(0);
    let (mut literals, mut values) = (Vec::new(), Vec::new());
    for r in 0..=depth {
        let id = r as i64 + 1;
        let (mut lit, mut val) = (vec![Literal::Int(id)], vec![Value::Int64(id)]);
        for c in &cases {
            match c.values.get(r) {
                Some((l, v)) => {
                    lit.push(Literal::Sql(l.clone()));
                    val.push(v.clone());
                }
                None => {
                    lit.push(Literal::Null);
                    val.push(Value::Null);
                }
            }
        }
        literals.push(lit);
        values.push(val);
    }
    let spec = TableSpec {
        schema: None,
        name: "conformance_types".into(),
        columns,
        key: KeySpec::Primary(vec![0]),
    };
    (spec, literals, values)
}

/// Every type's values and NULLs go from the source table through
/// [`siphon_core::Source::read_chunk`] (chunks of two rows) and
/// [`siphon_core::Sink::load`] to the target unchanged, as the source reads
/// them at both ends.
pub async fn round_trip_by_load<H: Harness>(h: &H) {
    let (spec, literals, expected) = types_table(h);
    let (src, dst) = (database(h), database(h));
    create_table(h, &src, &spec, &literals);
    let source = source(h, &src).await;
    let table = discover_one(&source, &name_of(h, &spec)).await;
    let read = read_all(&source, &table, 2).await;
    assert_rows("read from the source", &table, &read, &expected);

    let target = sink(h, &dst).await;
    let last = copy_table(&source, &target, &table, 2).await;
    let back = target_rows(h, &dst, &table.name).await;
    assert_rows("loaded into the target", &table, &back, &expected);
    assert_eq!(
        target.checkpoint(&last.stream).await.unwrap(),
        Some(last),
        "table {}: the checkpoint of the last chunk",
        table.name
    );
}

/// The same values go to the target as changes through [`Sink::apply`]: inserts,
/// then updates that give each row the next row's values (NULLs where there were
/// values, values where there were NULLs), and a delete.
pub async fn round_trip_by_apply<H: Harness>(h: &H) {
    let (spec, literals, expected) = types_table(h);
    let (src, dst) = (database(h), database(h));
    create_table(h, &src, &spec, &literals);
    let source = source(h, &src).await;
    let table = Arc::new(discover_one(&source, &name_of(h, &spec)).await);
    let target = sink(h, &dst).await;
    target
        .prepare(&table, &SchemaOptions::default())
        .await
        .unwrap_or_else(|e| panic!("preparing table {}: {e}", table.name));

    let inserts = expected.iter().cloned().map(Op::Insert).collect();
    apply(&target, &table, inserts, 1).await;
    let back = target_rows(h, &dst, &table.name).await;
    assert_rows("inserted by apply", &table, &back, &expected);

    // Row r takes row r+1's values; the last row goes.
    let n = expected.len();
    let mut want: Vec<Row> = Vec::new();
    let mut ops = Vec::new();
    for r in 0..n - 1 {
        let mut after = expected[r + 1].clone();
        after[0] = expected[r][0].clone();
        ops.push(Op::Update {
            before: Some(expected[r].clone()),
            after: after.clone(),
        });
        want.push(after);
    }
    ops.push(Op::Delete(expected[n - 1].clone()));
    apply(&target, &table, ops, 2).await;
    let back = target_rows(h, &dst, &table.name).await;
    assert_rows("updated and deleted by apply", &table, &back, &want);
}

/// Applies `ops` on `table` as one batch with the streaming checkpoint `n`, and
/// checks that the checkpoint reads back.
async fn apply<K: Sink>(sink: &K, table: &Arc<TableSchema>, ops: Vec<Op>, n: i64) {
    let batch = Batch {
        changes: ops
            .into_iter()
            .map(|op| Change::new(table.clone(), op))
            .collect(),
    };
    let cp = streaming_checkpoint(&table.name, n);
    sink.apply(batch, &cp)
        .await
        .unwrap_or_else(|e| panic!("applying changes to table {}: {e}", table.name));
    assert_eq!(
        sink.checkpoint(&cp.stream).await.unwrap(),
        Some(cp),
        "table {}: the checkpoint of the applied batch",
        table.name
    );
}

/// The same values take the native path where the connector has one (its
/// source's [`siphon_core::Source::read_native`] in chunks of two rows, into its
/// sink's [`Sink::load_native`]), as the engine copies between two databases of
/// one engine, and arrive unchanged. A connector without a native path passes
/// only if its sink also refuses the format; one whose sink refuses its own
/// source's format fails, since the engine would never take that path.
pub async fn round_trip_by_native_load<H: Harness>(h: &H) {
    let (spec, literals, expected) = types_table(h);
    let (src, dst) = (database(h), database(h));
    create_table(h, &src, &spec, &literals);
    let source = source(h, &src).await;
    let table = discover_one(&source, &name_of(h, &spec)).await;
    let target = sink(h, &dst).await;
    target
        .prepare(&table, &SchemaOptions::default())
        .await
        .unwrap_or_else(|e| panic!("preparing table {}: {e}", table.name));
    let format = source.native_format(&table).await.unwrap();
    assert_eq!(
        format.is_some(),
        h.has_native_path(),
        "table {}: the source's native format is {format:?}",
        table.name
    );
    let Some(format) = format else {
        return;
    };
    assert!(
        target.accepts_native(&table, &format).await.unwrap(),
        "table {}: the sink refuses its own source's native format {format:?}",
        table.name
    );
    let mut after = None;
    let mut loaded = 0;
    loop {
        let chunk = source
            .read_native(&table, after.as_ref(), None, 2)
            .await
            .unwrap_or_else(|e| panic!("reading table {} natively: {e}", table.name));
        if chunk.rows == 0 {
            assert_eq!(
                chunk.last, None,
                "table {}: an empty chunk has a position",
                table.name
            );
            break;
        }
        loaded += chunk.rows;
        let last = chunk.last.clone();
        let cp = super::snapshot_checkpoint(&table.name, last.clone());
        target
            .load_native(&table, chunk, &cp)
            .await
            .unwrap_or_else(|e| panic!("loading table {} natively: {e}", table.name));
        after = last;
    }
    assert_eq!(
        loaded,
        expected.len(),
        "table {}: rows read natively",
        table.name
    );
    let back = target_rows(h, &dst, &table.name).await;
    assert_rows("loaded natively into the target", &table, &back, &expected);
}
