//! A sink's guarantees: a chunk lands with its checkpoint or not at all, a load
//! resumes from the target's checkpoint after a crash, and replaying a batch or a
//! chunk changes nothing.

use std::sync::Arc;

use siphon_core::{Batch, Change, Op, Phase, Position, SchemaOptions, Sink, Source, Value};

use super::{
    assert_rows, copy_table, create_table, database, discover_one, keyed_text_table, name_of,
    read_all, sink, snapshot_checkpoint, source, streaming_checkpoint, target_rows, text_literals,
    text_row, Harness,
};

/// Rows of the resumed table, and the chunk size: five chunks and a bit.
const RESUME_ROWS: i64 = 23;
const RESUME_CHUNK: usize = 4;

/// A snapshot is loaded in chunks, each with its checkpoint. The third chunk
/// fails on its last row (a NULL the target's NOT NULL column refuses) after
/// the sink wrote the rows before it, and the sink is dropped with the fourth
/// chunk read but not loaded, as a killed process would leave it. The failed
/// chunk left no row and did not move the checkpoint; a new sink reads the
/// checkpoint of the second chunk, the load resumes from it, and the target ends
/// equal to the source: nothing missing, nothing twice.
pub async fn resume_after_a_kill_inside_a_chunk<H: Harness>(h: &H) {
    let spec = keyed_text_table(h, "conformance_resume");
    let rows: Vec<_> = (1..=RESUME_ROWS)
        .map(|i| text_literals(i * 10, &format!("row {i} ✓")))
        .collect();
    let (src, dst) = (database(h), database(h));
    create_table(h, &src, &spec, &rows);
    let source = source(h, &src).await;
    let table = discover_one(&source, &name_of(h, &spec)).await;
    let all = read_all(&source, &table, 100).await;
    assert_eq!(all.len(), RESUME_ROWS as usize);

    let first = sink(h, &dst).await;
    first
        .prepare(&table, &SchemaOptions::default())
        .await
        .unwrap_or_else(|e| panic!("preparing table {}: {e}", table.name));
    let mut after: Option<Position> = None;
    let mut committed = None;
    for _ in 0..2 {
        let c = source
            .read_chunk(&table, after.as_ref(), RESUME_CHUNK)
            .await
            .unwrap();
        let cp = snapshot_checkpoint(&table.name, c.last.clone());
        first.load(&table, c.rows, &cp).await.unwrap();
        after = c.last;
        committed = Some(cp);
    }
    let committed = committed.unwrap();
    let landed = 2 * RESUME_CHUNK;

    let c = source
        .read_chunk(&table, after.as_ref(), RESUME_CHUNK)
        .await
        .unwrap();
    let mut poisoned = c.rows.clone();
    let last = poisoned.len() - 1;
    poisoned[last][1] = Value::Null;
    let failed = first
        .load(
            &table,
            poisoned,
            &snapshot_checkpoint(&table.name, c.last.clone()),
        )
        .await;
    assert!(
        failed.is_err(),
        "table {}: a chunk with a NULL in a NOT NULL column was loaded",
        table.name
    );
    let back = target_rows(h, &dst, &table.name).await;
    assert_rows(
        "after a chunk failed on its last row",
        &table,
        &back,
        &all[..landed],
    );
    assert_eq!(
        first.checkpoint(&committed.stream).await.unwrap().as_ref(),
        Some(&committed),
        "table {}: a failed chunk moved the checkpoint",
        table.name
    );
    // The next chunk is read, and the process dies before it is committed.
    let _unloaded = source
        .read_chunk(&table, c.last.as_ref(), RESUME_CHUNK)
        .await
        .unwrap();
    drop(first);

    let second = sink(h, &dst).await;
    second
        .prepare(&table, &SchemaOptions::default())
        .await
        .unwrap_or_else(|e| panic!("preparing table {} again: {e}", table.name));
    let resumed = second
        .checkpoint(&committed.stream)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("table {}: the checkpoint is gone", table.name));
    assert_eq!(
        resumed, committed,
        "table {}: the checkpoint read back",
        table.name
    );
    let Phase::Snapshot {
        last_key: mut after,
        ..
    } = resumed.phase
    else {
        panic!("table {}: not a snapshot checkpoint", table.name)
    };
    let mut loaded = landed;
    loop {
        let c = source
            .read_chunk(&table, after.as_ref(), RESUME_CHUNK)
            .await
            .unwrap();
        if c.rows.is_empty() {
            break;
        }
        loaded += c.rows.len();
        let cp = snapshot_checkpoint(&table.name, c.last.clone());
        second.load(&table, c.rows, &cp).await.unwrap();
        after = c.last;
    }
    assert_eq!(
        loaded,
        all.len(),
        "table {}: rows read twice or skipped",
        table.name
    );
    let back = target_rows(h, &dst, &table.name).await;
    assert_rows("after resuming", &table, &back, &all);
}

/// A batch of inserts, updates and deletes (a row inserted then updated, one
/// deleted then inserted again) applied twice with the same checkpoint leaves
/// the target as applying it once did; so do loading a chunk twice and a
/// batch that empties the table and fills it again.
pub async fn replay_is_idempotent<H: Harness>(h: &H) {
    let spec = keyed_text_table(h, "conformance_replay");
    let rows: Vec<_> = (1..=6)
        .map(|i| text_literals(i, &format!("r{i}")))
        .collect();
    let (src, dst) = (database(h), database(h));
    create_table(h, &src, &spec, &rows);
    let source = source(h, &src).await;
    let table = Arc::new(discover_one(&source, &name_of(h, &spec)).await);
    let target = sink(h, &dst).await;

    // A chunk loaded twice.
    let loaded = copy_table(&source, &target, &table, 100).await;
    let chunk = source.read_chunk(&table, None, 100).await.unwrap();
    target
        .load(&table, chunk.rows.clone(), &loaded)
        .await
        .unwrap();
    let initial: Vec<_> = (1..=6).map(|i| text_row(i, &format!("r{i}"))).collect();
    let back = target_rows(h, &dst, &table.name).await;
    assert_rows("a chunk loaded twice", &table, &back, &initial);

    let batch = Batch {
        changes: [
            Op::Insert(text_row(100, "new")),
            Op::Update {
                before: Some(text_row(1, "r1")),
                after: text_row(1, "r1 changed"),
            },
            Op::Delete(text_row(2, "r2")),
            Op::Insert(text_row(101, "inserted")),
            Op::Update {
                before: None,
                after: text_row(101, "then updated"),
            },
            Op::Delete(text_row(3, "r3")),
            Op::Insert(text_row(3, "r3 again")),
        ]
        .into_iter()
        .map(|op| Change::new(table.clone(), op))
        .collect(),
    };
    let want = vec![
        text_row(1, "r1 changed"),
        text_row(3, "r3 again"),
        text_row(4, "r4"),
        text_row(5, "r5"),
        text_row(6, "r6"),
        text_row(100, "new"),
        text_row(101, "then updated"),
    ];
    let cp = streaming_checkpoint(&table.name, 7);
    target.apply(batch.clone(), &cp).await.unwrap();
    let once = target_rows(h, &dst, &table.name).await;
    assert_rows("a batch applied once", &table, &once, &want);
    target
        .apply(batch, &cp)
        .await
        .unwrap_or_else(|e| panic!("table {}: replaying a batch failed: {e}", table.name));
    let twice = target_rows(h, &dst, &table.name).await;
    assert_rows("the same batch applied again", &table, &twice, &want);
    assert_eq!(
        target.checkpoint(&cp.stream).await.unwrap(),
        Some(cp),
        "table {}: the checkpoint after the replay",
        table.name
    );

    // A truncate and what follows it, twice.
    let batch = Batch {
        changes: [
            Op::Truncate,
            Op::Insert(text_row(7, "after the truncate")),
            Op::Insert(text_row(1, "back")),
        ]
        .into_iter()
        .map(|op| Change::new(table.clone(), op))
        .collect(),
    };
    let want = vec![text_row(1, "back"), text_row(7, "after the truncate")];
    let cp = streaming_checkpoint(&table.name, 8);
    for round in ["once", "again"] {
        target
            .apply(batch.clone(), &cp)
            .await
            .unwrap_or_else(|e| panic!("table {}: a truncate applied {round}: {e}", table.name));
        let back = target_rows(h, &dst, &table.name).await;
        assert_rows(&format!("a truncate applied {round}"), &table, &back, &want);
    }
}

/// Fencing: a checkpoint carries its writer's lease epoch, and a batch or chunk
/// whose checkpoint is older than the one on the target is refused with
/// [`ErrorKind::Fenced`](siphon_core::ErrorKind::Fenced) and rolled back whole,
/// its rows included; the same or a newer epoch is accepted, and epoch 0 (no
/// lease) works where only epoch 0 wrote.
pub async fn stale_epoch_is_fenced<H: Harness>(h: &H) {
    let spec = keyed_text_table(h, "conformance_fenced");
    let rows: Vec<_> = (1..=3)
        .map(|i| text_literals(i, &format!("r{i}")))
        .collect();
    let (src, dst) = (database(h), database(h));
    create_table(h, &src, &spec, &rows);
    let source = source(h, &src).await;
    let table = Arc::new(discover_one(&source, &name_of(h, &spec)).await);
    let target = sink(h, &dst).await;
    // Without a lease: epoch 0 over epoch 0.
    copy_table(&source, &target, &table, 2).await;
    let batch = |ops: Vec<Op>| Batch {
        changes: ops
            .into_iter()
            .map(|op| Change::new(table.clone(), op))
            .collect(),
    };
    let at = |n: i64, epoch: u64| streaming_checkpoint(&table.name, n).with_epoch(epoch);
    target
        .apply(batch(vec![Op::Insert(text_row(10, "no lease"))]), &at(1, 0))
        .await
        .unwrap_or_else(|e| panic!("table {}: epoch 0 over epoch 0: {e}", table.name));
    // A holder's epoch 5, then a stalled holder's epoch 3.
    target
        .apply(batch(vec![Op::Insert(text_row(11, "epoch 5"))]), &at(2, 5))
        .await
        .unwrap_or_else(|e| panic!("table {}: epoch 5 over epoch 0: {e}", table.name));
    let want = vec![
        text_row(1, "r1"),
        text_row(2, "r2"),
        text_row(3, "r3"),
        text_row(10, "no lease"),
        text_row(11, "epoch 5"),
    ];
    let stale = batch(vec![
        Op::Insert(text_row(12, "stale")),
        Op::Delete(text_row(1, "r1")),
        Op::Update {
            before: None,
            after: text_row(2, "stale update"),
        },
    ]);
    for epoch in [3, 0] {
        let e = target
            .apply(stale.clone(), &at(3, epoch))
            .await
            .expect_err("a batch with an older epoch was applied");
        assert_eq!(
            e.kind(),
            siphon_core::ErrorKind::Fenced,
            "table {}: epoch {epoch} after 5: {e}",
            table.name
        );
        let chunk = target
            .load(
                &table,
                vec![text_row(13, "stale chunk")],
                &snapshot_checkpoint(&table.name, None).with_epoch(epoch),
            )
            .await
            .expect_err("a chunk with an older epoch was loaded");
        assert_eq!(chunk.kind(), siphon_core::ErrorKind::Fenced, "{chunk}");
        let back = target_rows(h, &dst, &table.name).await;
        assert_rows(
            &format!("after epoch {epoch} was refused"),
            &table,
            &back,
            &want,
        );
        assert_eq!(
            target.checkpoint(&at(2, 5).stream).await.unwrap(),
            Some(at(2, 5)),
            "table {}: a refused write moved the checkpoint",
            table.name
        );
    }
    // The same epoch goes on, and a newer one takes over.
    target
        .apply(
            batch(vec![Op::Insert(text_row(14, "epoch 5 again"))]),
            &at(4, 5),
        )
        .await
        .unwrap_or_else(|e| panic!("table {}: the same epoch: {e}", table.name));
    target
        .apply(batch(vec![Op::Delete(text_row(14, ""))]), &at(5, 6))
        .await
        .unwrap_or_else(|e| panic!("table {}: a newer epoch: {e}", table.name));
    assert_eq!(
        target.checkpoint(&at(5, 6).stream).await.unwrap(),
        Some(at(5, 6))
    );
    let back = target_rows(h, &dst, &table.name).await;
    assert_rows("after the newer epoch", &table, &back, &want);
    // A worker that takes the lease at epoch 8 fences the pipeline before it
    // writes anything: the epoch-6 worker is refused from then on.
    target
        .fence(&at(5, 6).stream.pipeline, 8)
        .await
        .unwrap_or_else(|e| panic!("table {}: fencing epoch 8: {e}", table.name));
    let e = target
        .apply(
            batch(vec![Op::Insert(text_row(15, "epoch 6 late"))]),
            &at(6, 6),
        )
        .await
        .expect_err("a write of epoch 6 went through after a fence at epoch 8");
    assert_eq!(e.kind(), siphon_core::ErrorKind::Fenced, "{e}");
    // Fencing never lowers an epoch; the fencing worker writes on.
    target.fence(&at(5, 6).stream.pipeline, 7).await.unwrap();
    target
        .apply(batch(vec![Op::Insert(text_row(15, "epoch 8"))]), &at(6, 8))
        .await
        .unwrap_or_else(|e| panic!("table {}: epoch 8 after its fence: {e}", table.name));
    let e = target
        .apply(batch(vec![Op::Delete(text_row(15, ""))]), &at(7, 7))
        .await
        .expect_err("a fence at epoch 7 lowered the stored epoch 8");
    assert_eq!(e.kind(), siphon_core::ErrorKind::Fenced, "{e}");
    let mut want = want;
    want.push(text_row(15, "epoch 8"));
    let back = target_rows(h, &dst, &table.name).await;
    assert_rows("after the fence", &table, &back, &want);
}
