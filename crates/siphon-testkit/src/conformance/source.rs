//! Tables at the edges of what a source reads: empty ones, ones keyed by a
//! unique NOT NULL column instead of a primary key, and ones with no key at all.

use std::sync::Arc;

use siphon_core::{Batch, CursorSpec, CursorStrategy, Op, Row, Sink, Source, TableSchema, Value};

use super::{
    assert_rows, copy_table, create_table, database, discover_one, keyed_text_table, name_of, sink,
    snapshot_checkpoint, source, streaming_checkpoint, target_rows, text_literals, text_row,
    Harness, KeySpec, Literal,
};

/// An empty table is discovered, reads as no rows with no position (snapshot
/// and polling alike), is created empty on the target by a load of no rows,
/// and its checkpoints (snapshot without a key, then streaming) read back.
pub async fn empty_table<H: Harness>(h: &H) {
    let spec = keyed_text_table(h, "conformance_empty");
    let (src, dst) = (database(h), database(h));
    create_table(h, &src, &spec, &[]);
    let source = source(h, &src).await;
    let table = discover_one(&source, &name_of(h, &spec)).await;
    assert_eq!(
        table.row_key(),
        Some(&[0usize][..]),
        "table {}: its key",
        table.name
    );
    let estimate = source.estimate_rows(&table).await.unwrap();
    assert!(
        matches!(estimate, None | Some(0)),
        "table {}: an empty table estimated at {estimate:?} rows",
        table.name
    );
    let chunk = source.read_chunk(&table, None, 10).await.unwrap();
    assert!(
        chunk.rows.is_empty() && chunk.last.is_none(),
        "table {}: {chunk:?}",
        table.name
    );
    let cursor = CursorSpec {
        column: "id".into(),
        strategy: CursorStrategy::Sequence,
        lookback: None,
    };
    let polled = source.poll(&table, &cursor, None, 10).await.unwrap();
    assert!(
        polled.rows.is_empty() && polled.last.is_none(),
        "table {}: {polled:?}",
        table.name
    );
    assert_eq!(
        source.cursor_high(&table, &cursor).await.unwrap(),
        None,
        "table {}: the cursor's high mark of an empty table",
        table.name
    );

    let target = sink(h, &dst).await;
    let cp = copy_table(&source, &target, &table, 10).await;
    assert_eq!(cp, snapshot_checkpoint(&table.name, None));
    // A load of no rows: what a snapshot of an empty table writes.
    target.load(&table, Vec::new(), &cp).await.unwrap();
    assert_eq!(
        target.checkpoint(&cp.stream).await.unwrap(),
        Some(cp.clone())
    );
    let done = streaming_checkpoint(&table.name, 0);
    target.apply(Batch::default(), &done).await.unwrap();
    assert_eq!(target.checkpoint(&cp.stream).await.unwrap(), Some(done));
    assert!(target.read_keys(&table, None, 10).await.unwrap().is_empty());
    let back = target_rows(h, &dst, &table.name).await;
    assert_rows("the empty table on the target", &table, &back, &[]);
}

/// A table whose key is a UNIQUE constraint on a NOT NULL column (no primary
/// key) is read and written by that key: copied exactly, and a change by key
/// lands on its row.
pub async fn unique_not_null_key<H: Harness>(h: &H) {
    let mut spec = keyed_text_table(h, "conformance_unique_key");
    spec.key = KeySpec::UniqueNotNull(vec![0]);
    let rows: Vec<_> = (1..=5)
        .map(|i| text_literals(i, &format!("u{i}")))
        .collect();
    let (src, dst) = (database(h), database(h));
    create_table(h, &src, &spec, &rows);
    let source = source(h, &src).await;
    let table = Arc::new(discover_one(&source, &name_of(h, &spec)).await);
    assert!(
        table.primary_key.is_empty(),
        "table {}: a primary key appeared",
        table.name
    );
    assert_eq!(
        table.row_key(),
        Some(&[0usize][..]),
        "table {}: its key",
        table.name
    );
    let target = sink(h, &dst).await;
    copy_table(&source, &target, &table, 2).await;
    let mut want: Vec<_> = (1..=5).map(|i| text_row(i, &format!("u{i}"))).collect();
    let back = target_rows(h, &dst, &table.name).await;
    assert_rows("copied by its unique key", &table, &back, &want);

    let change = |op| siphon_core::Change::new(table.clone(), op);
    let batch = Batch {
        changes: vec![
            change(Op::Update {
                before: None,
                after: text_row(2, "u2 changed"),
            }),
            change(Op::Delete(text_row(4, "u4"))),
        ],
    };
    target
        .apply(batch, &streaming_checkpoint(&table.name, 1))
        .await
        .unwrap();
    want[1] = text_row(2, "u2 changed");
    want.remove(3);
    let back = target_rows(h, &dst, &table.name).await;
    assert_rows("changed by its unique key", &table, &back, &want);
}

/// A table with neither a primary key nor a unique NOT NULL key. Discovered
/// without a row key, it is still copied exactly in chunks (equal rows and
/// NULLs included), and changes to it land exactly: an insert is appended, an
/// update or a delete changes exactly one of two equal rows.
pub async fn keyless_table<H: Harness>(h: &H) {
    let mut spec = keyed_text_table(h, "conformance_no_key");
    spec.key = KeySpec::None;
    spec.columns[0].not_null = false;
    // Equal rows: only a key-less table can hold them.
    let rows = vec![
        text_literals(1, "same"),
        text_literals(1, "same"),
        text_literals(2, "b"),
        vec![Literal::Null, Literal::Text("n".into())],
        vec![Literal::Null, Literal::Text("n".into())],
    ];
    let (src, dst) = (database(h), database(h));
    create_table(h, &src, &spec, &rows);
    let source = source(h, &src).await;
    let table = Arc::new(discover_one(&source, &name_of(h, &spec)).await);
    assert!(
        table.primary_key.is_empty() && table.row_key().is_none(),
        "table {}: a key-less table was discovered with a key: {table:?}",
        table.name
    );
    let null_row = || vec![Value::Null, Value::Text("n".into())];
    let mut want = vec![
        text_row(1, "same"),
        text_row(1, "same"),
        text_row(2, "b"),
        null_row(),
        null_row(),
    ];
    let target = sink(h, &dst).await;
    // Chunks of two: a chunk ends between the equal rows.
    copy_table(&source, &target, &table, 2).await;
    let back = target_rows(h, &dst, &table.name).await;
    assert_same_rows("copied without a key", &table, back, want.clone());

    let change = |op| siphon_core::Change::new(table.clone(), op);
    let batch = Batch {
        changes: vec![
            change(Op::Update {
                before: Some(text_row(1, "same")),
                after: text_row(1, "changed"),
            }),
            change(Op::Delete(null_row())),
            change(Op::Insert(text_row(2, "b"))),
            change(Op::Update {
                before: Some(null_row()),
                after: text_row(3, "was null"),
            }),
        ],
    };
    let cp = streaming_checkpoint(&table.name, 1);
    let done = target.apply(batch, &cp).await.unwrap();
    assert_eq!(
        (done.inserted, done.updated, done.deleted),
        (1, 2, 1),
        "table {}: what the changes did",
        table.name
    );
    assert_eq!(target.checkpoint(&cp.stream).await.unwrap(), Some(cp));
    want[0] = text_row(1, "changed");
    want[3] = text_row(3, "was null");
    want.remove(4);
    want.push(text_row(2, "b"));
    let back = target_rows(h, &dst, &table.name).await;
    assert_same_rows("changed without a key", &table, back, want);
}

/// Asserts that `actual` holds the rows of `expected`, each as many times, in
/// any order (a table without a key has no order of its own).
fn assert_same_rows(what: &str, table: &TableSchema, mut actual: Vec<Row>, mut expected: Vec<Row>) {
    let order = |a: &Row, b: &Row| format!("{a:?}").cmp(&format!("{b:?}"));
    actual.sort_by(order);
    expected.sort_by(order);
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: table {}: {actual:?}, want {expected:?}",
        table.name
    );
    assert_rows(what, table, &actual, &expected);
}

/// Polling by an integer cursor that many rows share returns every row once,
/// ordered by `(cursor, key)`, however the chunks fall; the high mark taken
/// at the end returns the rows of the highest cursor value again, and
/// watermarks read later order after earlier ones.
pub async fn poll_in_cursor_order<H: Harness>(h: &H) {
    let mut spec = keyed_text_table(h, "conformance_poll");
    spec.columns.push(super::ColumnSpec {
        name: "version".into(),
        native_type: h.integer_type().to_string(),
        not_null: true,
    });
    // Keys 1..=12; versions 3, 1, 2, 3, 1, ... so that every version is shared
    // and key order is not cursor order.
    let version = |id: i64| (id * 2) % 3 + 1;
    let rows: Vec<_> = (1..=12)
        .map(|id| {
            let mut r = text_literals(id, &format!("p{id}"));
            r.push(super::Literal::Int(version(id)));
            r
        })
        .collect();
    let src = database(h);
    create_table(h, &src, &spec, &rows);
    let source = source(h, &src).await;
    let table = discover_one(&source, &name_of(h, &spec)).await;
    let cursor = CursorSpec {
        column: "version".into(),
        strategy: CursorStrategy::Sequence,
        lookback: None,
    };
    let mut want: Vec<_> = (1..=12)
        .map(|id| {
            let mut r = text_row(id, &format!("p{id}"));
            r.push(siphon_core::Value::Int64(version(id)));
            r
        })
        .collect();
    want.sort_by_key(|r| match (&r[2], &r[0]) {
        (siphon_core::Value::Int64(v), siphon_core::Value::Int64(k)) => (*v, *k),
        _ => unreachable!("rows are built above"),
    });
    for limit in [1, 2, 5] {
        let mut got = Vec::new();
        let mut after = None;
        let mut marks = Vec::new();
        loop {
            let c = source
                .poll(&table, &cursor, after.as_ref(), limit)
                .await
                .unwrap_or_else(|e| panic!("polling table {}: {e}", table.name));
            assert!(
                c.rows.len() <= limit,
                "table {}: a chunk over its limit",
                table.name
            );
            if c.rows.is_empty() {
                break;
            }
            got.extend(c.rows);
            marks.push(c.last.clone().expect("a chunk with rows has a watermark"));
            after = c.last;
        }
        assert_rows(&format!("polled {limit} at a time"), &table, &got, &want);
        for w in marks.windows(2) {
            assert_eq!(
                source.compare(&table, &w[0], &w[1]).unwrap(),
                std::cmp::Ordering::Less,
                "table {}: watermarks out of order: {:?} then {:?}",
                table.name,
                w[0],
                w[1]
            );
        }
    }
    let high = source
        .cursor_high(&table, &cursor)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("table {}: no high mark for a table with rows", table.name));
    let top = source
        .poll(&table, &cursor, Some(&high), 100)
        .await
        .unwrap();
    let highest: Vec<_> = want
        .iter()
        .filter(|r| r[2] == want[11][2])
        .cloned()
        .collect();
    assert_rows("polled from the high mark", &table, &top.rows, &highest);
}

/// Text keys the engine may collate in its own way (case, accents, spaces,
/// the empty string, digits as text) in a two-column key with an integer: read
/// one row and three rows at a time, every row comes once; copied and changed
/// by that key, the target matches.
pub async fn composite_text_key<H: Harness>(h: &H) {
    let texts = [
        "", " ", "a", "A", "b", "B", "ä", "Ä", "z", "ß", "日本", "10", "9", "a b", "a-b", "ab",
    ];
    let mut spec = keyed_text_table(h, "conformance_text_key");
    spec.columns.swap(0, 1);
    spec.columns.push(super::ColumnSpec {
        name: "note".into(),
        native_type: h.text_type().to_string(),
        not_null: false,
    });
    spec.columns[1].name = "n".into();
    spec.key = KeySpec::Primary(vec![0, 1]);
    let mut rows = Vec::new();
    let mut want = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        for n in [1, 2] {
            let note = format!("{i}/{n}");
            rows.push(vec![
                super::Literal::Text(t.to_string()),
                super::Literal::Int(n),
                super::Literal::Text(note.clone()),
            ]);
            want.push(vec![
                siphon_core::Value::Text(t.to_string()),
                siphon_core::Value::Int64(n),
                siphon_core::Value::Text(note),
            ]);
        }
    }
    let (src, dst) = (database(h), database(h));
    create_table(h, &src, &spec, &rows);
    let source = source(h, &src).await;
    let table = Arc::new(discover_one(&source, &name_of(h, &spec)).await);
    assert_eq!(
        table.row_key(),
        Some(&[0usize, 1][..]),
        "table {}: its key",
        table.name
    );
    // The engine's key order, as one whole read gives it.
    let whole = super::read_all(&source, &table, 1000).await;
    let sorted = |mut rows: Vec<siphon_core::Row>| {
        rows.sort_by_key(|r| format!("{:?}", (&r[0], &r[1])));
        rows
    };
    assert_rows(
        "read whole",
        &table,
        &sorted(whole.clone()),
        &sorted(want.clone()),
    );
    for chunk in [1, 3] {
        let paged = super::read_all(&source, &table, chunk).await;
        assert_rows(&format!("read {chunk} at a time"), &table, &paged, &whole);
    }

    let target = sink(h, &dst).await;
    copy_table(&source, &target, &table, 3).await;
    let back = target_rows(h, &dst, &table.name).await;
    assert_rows("copied", &table, &sorted(back), &sorted(want.clone()));
    let change = |op| siphon_core::Change::new(table.clone(), op);
    let mut changed = want[2].clone();
    changed[2] = siphon_core::Value::Null;
    let batch = Batch {
        changes: vec![
            change(Op::Delete(want[0].clone())),
            change(Op::Update {
                before: Some(want[2].clone()),
                after: changed.clone(),
            }),
            change(Op::Delete(want[5].clone())),
        ],
    };
    target
        .apply(batch, &streaming_checkpoint(&table.name, 1))
        .await
        .unwrap();
    let mut after: Vec<_> = want.clone();
    after[2] = changed;
    after.remove(5);
    after.remove(0);
    let back = target_rows(h, &dst, &table.name).await;
    assert_rows("changed by key", &table, &sorted(back), &sorted(after));
    let keys = target.read_keys(&table, None, 1000).await.unwrap();
    assert_eq!(
        keys.len(),
        want.len() - 2,
        "table {}: keys on the target",
        table.name
    );
}
