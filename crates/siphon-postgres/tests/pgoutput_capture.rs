//! The `pgoutput` decoder against real PostgreSQL 15 output: changes are made
//! in a throwaway server, the raw messages read back from a logical slot with
//! `pg_logical_slot_peek_binary_changes` (no replication client needed), and
//! every message decoded and checked against what was done.

use std::collections::BTreeSet;
use std::error::Error;

use bytes::Bytes;
use siphon_postgres::pgoutput::{
    decode_replication_message, Decoder, Lsn, Message, ReplicationMessage, TupleColumn, TupleData,
    TRUNCATE_RESTART_IDENTITY,
};
use siphon_testkit::{unique_name, Postgres};

type TestResult = Result<(), Box<dyn Error>>;

/// One row of `pg_logical_slot_peek_binary_changes`.
#[derive(Debug)]
struct Row {
    lsn: Lsn,
    xid: u32,
    data: Bytes,
}

/// Reads every pending message of `slot` without consuming it.
fn peek(pg: &Postgres, db: &str, slot: &str, options: &str) -> Result<Vec<Row>, Box<dyn Error>> {
    // The SQL interface decodes only flushed WAL, and the test server commits
    // with synchronous_commit off. A synchronous commit of a transaction that
    // wrote WAL (a temporary table's catalog rows; nothing published) flushes
    // everything before it.
    pg.query_in(
        db,
        "SET synchronous_commit = on; CREATE TEMP TABLE flush_wal ()",
    )?;
    let out = pg.query_in(
        db,
        &format!("SELECT lsn, xid, data FROM pg_logical_slot_peek_binary_changes('{slot}', NULL, NULL, {options})"),
    )?;
    out.lines()
        .map(|line| {
            let mut fields = line.split('|');
            let (Some(lsn), Some(xid), Some(data), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(format!("unexpected psql line {line:?}").into());
            };
            let hex = data
                .strip_prefix("\\x")
                .ok_or_else(|| format!("not a bytea: {data:?}"))?;
            Ok(Row {
                lsn: lsn.parse()?,
                xid: xid.parse()?,
                data: Bytes::from(unhex(hex)?),
            })
        })
        .collect()
}

fn unhex(hex: &str) -> Result<Vec<u8>, Box<dyn Error>> {
    hex.as_bytes()
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair)?;
            if pair.len() != 2 {
                return Err(format!("odd hex length {}", hex.len()).into());
            }
            Ok(u8::from_str_radix(pair, 16)?)
        })
        .collect()
}

/// A tuple as text for readable assertions: NULL, <unchanged>, the text value, or 0x… for binary.
fn show(tuple: &TupleData) -> Vec<String> {
    tuple
        .0
        .iter()
        .map(|column| match column {
            TupleColumn::Null => "NULL".to_owned(),
            TupleColumn::UnchangedToast => "<unchanged>".to_owned(),
            TupleColumn::Text(b) => String::from_utf8(b.to_vec()).expect("text value is UTF-8"),
            TupleColumn::Binary(b) => format!(
                "0x{}",
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            ),
        })
        .collect()
}

/// A committed transaction: its Begin, the messages in between, its Commit.
#[derive(Debug)]
struct Transaction {
    xid: u32,
    changes: Vec<Message>,
}

/// Decodes a protocol version 1 capture and splits it into transactions,
/// checking Begin/Commit pairing and LSNs on the way.
fn transactions(rows: &[Row]) -> Result<Vec<Transaction>, Box<dyn Error>> {
    let mut decoder = Decoder::new();
    let mut done = Vec::new();
    let mut open: Option<(Lsn, i64, Transaction)> = None;
    for row in rows {
        let message = decoder.decode(row.data.clone())?;
        match message {
            Message::Begin {
                final_lsn,
                commit_time,
                xid,
            } => {
                assert!(open.is_none(), "Begin inside a transaction: {row:?}");
                assert_eq!(xid, row.xid, "Begin xid vs the slot's xid column");
                open = Some((
                    final_lsn,
                    commit_time,
                    Transaction {
                        xid,
                        changes: Vec::new(),
                    },
                ));
            }
            Message::Commit {
                flags,
                commit_lsn,
                end_lsn,
                commit_time,
            } => {
                let (final_lsn, begin_time, tx) = open.take().ok_or("Commit without Begin")?;
                assert_eq!(flags, 0);
                assert_eq!(commit_lsn, final_lsn, "Commit LSN is the Begin's final LSN");
                assert_eq!(commit_time, begin_time);
                assert!(end_lsn > commit_lsn);
                assert_eq!(end_lsn, row.lsn, "the slot reports a commit at its end LSN");
                // Transactions that touch no published table carry nothing.
                if !tx.changes.is_empty() {
                    done.push(tx);
                }
            }
            Message::LogicalMessage {
                transactional: false,
                ..
            } => {}
            other => {
                let (_, _, tx) = open
                    .as_mut()
                    .ok_or_else(|| format!("{other:?} outside a transaction"))?;
                assert_eq!(row.xid, tx.xid);
                tx.changes.push(other);
            }
        }
    }
    assert!(open.is_none(), "capture ends inside a transaction");
    Ok(done)
}

#[test]
fn protocol_1_capture_decodes() -> TestResult {
    let pg = Postgres::shared()?;
    let url = pg.create_database()?;
    let db = url.rsplit('/').next().ok_or("database name")?;
    // Slots belong to the cluster, not the database.
    let slot = unique_name("slot");
    pg.query_in(
        db,
        "CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int, note text, feeling mood);
         ALTER TABLE items ALTER COLUMN note SET STORAGE EXTERNAL;
         CREATE TABLE audit (id int, what text);
         ALTER TABLE audit REPLICA IDENTITY FULL;
         CREATE PUBLICATION pub FOR TABLE items, audit;",
    )?;
    pg.query_in(
        db,
        &format!("SELECT 'ok' FROM pg_create_logical_replication_slot('{slot}', 'pgoutput')"),
    )?;
    let items_oid: u32 = pg.query_in(db, "SELECT 'items'::regclass::oid")?.parse()?;
    let audit_oid: u32 = pg.query_in(db, "SELECT 'audit'::regclass::oid")?.parse()?;
    let mood_oid: u32 = pg.query_in(db, "SELECT 'mood'::regtype::oid")?.parse()?;
    let big = "0123456789".repeat(1000);

    // One query_in call, one transaction.
    for sql in [
        "INSERT INTO items VALUES (1, 'apple', 3, NULL, 'happy'), (2, 'pear', 5, 'a note', NULL)",
        "UPDATE items SET qty = 4 WHERE id = 1",
        "INSERT INTO items VALUES (3, 'big', 1, repeat('0123456789', 1000), 'sad')",
        "UPDATE items SET qty = 2 WHERE id = 3",
        "UPDATE items SET id = 30 WHERE id = 3",
        "DELETE FROM items WHERE id = 2",
        "INSERT INTO audit VALUES (1, 'x'); UPDATE audit SET what = 'y'; DELETE FROM audit",
        "ALTER TABLE items ADD COLUMN color text",
        "INSERT INTO items (id, name, color) VALUES (4, 'plum', 'purple')",
        "SELECT pg_logical_emit_message(true, 'siphon', 'hello')",
        "TRUNCATE items RESTART IDENTITY",
    ] {
        pg.query_in(db, sql)?;
    }

    let options = "'proto_version', '1', 'publication_names', 'pub', 'messages', 'true'";
    let rows = peek(pg, db, &slot, options)?;
    let txs = transactions(&rows)?;
    let xids: BTreeSet<u32> = txs.iter().map(|tx| tx.xid).collect();
    assert_eq!(xids.len(), txs.len(), "one transaction per xid");
    let changes: Vec<&[Message]> = txs.iter().map(|tx| tx.changes.as_slice()).collect();
    assert_eq!(changes.len(), 10, "{txs:#?}");

    // 1: the enum type, the table, then both rows.
    let [Message::Type {
        xid: None,
        oid,
        namespace,
        name,
    }, Message::Relation {
        xid: None,
        oid: rel_oid,
        namespace: rel_ns,
        name: rel_name,
        replica_identity: b'd',
        columns,
    }, Message::Insert {
        xid: None,
        oid: i1,
        new: first,
    }, Message::Insert {
        xid: None,
        oid: i2,
        new: second,
    }] = changes[0]
    else {
        panic!("transaction 1: {:#?}", changes[0]);
    };
    assert_eq!(
        (*oid, namespace.as_str(), name.as_str()),
        (mood_oid, "public", "mood")
    );
    assert_eq!(
        (*rel_oid, rel_ns.as_str(), rel_name.as_str()),
        (items_oid, "public", "items")
    );
    let shape: Vec<(&str, bool, u32, i32)> = columns
        .iter()
        .map(|c| (c.name.as_str(), c.is_key(), c.type_oid, c.type_modifier))
        .collect();
    assert_eq!(
        shape,
        [
            ("id", true, 23, -1),
            ("name", false, 25, -1),
            ("qty", false, 23, -1),
            ("note", false, 25, -1),
            ("feeling", false, mood_oid, -1)
        ]
    );
    assert_eq!((*i1, *i2), (items_oid, items_oid));
    assert_eq!(show(first), ["1", "apple", "3", "NULL", "happy"]);
    assert_eq!(show(second), ["2", "pear", "5", "a note", "NULL"]);

    // 2: a plain update sends only the new row.
    let [Message::Update {
        xid: None,
        oid,
        key: None,
        old: None,
        new,
    }] = changes[1]
    else {
        panic!("transaction 2: {:#?}", changes[1]);
    };
    assert_eq!(*oid, items_oid);
    assert_eq!(show(new), ["1", "apple", "4", "NULL", "happy"]);

    // 3: a 10 kB value, stored out of line, arrives whole.
    let [Message::Insert { new, .. }] = changes[2] else {
        panic!("transaction 3: {:#?}", changes[2]);
    };
    assert_eq!(show(new), ["3", "big", "1", big.as_str(), "sad"]);

    // 4: an update that leaves the TOASTed value alone does not resend it.
    let [Message::Update {
        key: None,
        old: None,
        new,
        ..
    }] = changes[3]
    else {
        panic!("transaction 4: {:#?}", changes[3]);
    };
    assert_eq!(show(new), ["3", "big", "2", "<unchanged>", "sad"]);

    // 5: a key change sends the old key.
    let [Message::Update {
        key: Some(key),
        old: None,
        new,
        ..
    }] = changes[4]
    else {
        panic!("transaction 5: {:#?}", changes[4]);
    };
    assert_eq!(show(key), ["3", "NULL", "NULL", "NULL", "NULL"]);
    assert_eq!(show(new), ["30", "big", "2", "<unchanged>", "sad"]);

    // 6: a delete sends the key.
    let [Message::Delete {
        xid: None,
        oid,
        key: Some(key),
        old: None,
    }] = changes[5]
    else {
        panic!("transaction 6: {:#?}", changes[5]);
    };
    assert_eq!(*oid, items_oid);
    assert_eq!(show(key), ["2", "NULL", "NULL", "NULL", "NULL"]);

    // 7: REPLICA IDENTITY FULL sends whole old rows.
    let [Message::Relation {
        oid,
        replica_identity: b'f',
        columns,
        ..
    }, Message::Insert { new: inserted, .. }, Message::Update {
        key: None,
        old: Some(old),
        new,
        ..
    }, Message::Delete {
        key: None,
        old: Some(deleted),
        ..
    }] = changes[6]
    else {
        panic!("transaction 7: {:#?}", changes[6]);
    };
    assert_eq!(*oid, audit_oid);
    assert!(
        columns.iter().all(|c| c.is_key()),
        "FULL: every column is part of the identity"
    );
    assert_eq!(show(inserted), ["1", "x"]);
    assert_eq!(
        (show(old), show(new)),
        (vec!["1".into(), "x".into()], vec!["1".into(), "y".into()])
    );
    assert_eq!(show(deleted), ["1", "y"]);

    // 8: after ALTER TABLE the relation is sent again (with its type), with the new column.
    let [Message::Type { oid: type_oid, .. }, Message::Relation { oid, columns, .. }, Message::Insert { new, .. }] =
        changes[7]
    else {
        panic!("transaction 8: {:#?}", changes[7]);
    };
    assert_eq!((*type_oid, *oid), (mood_oid, items_oid));
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "name", "qty", "note", "feeling", "color"]);
    assert_eq!(show(new), ["4", "plum", "NULL", "NULL", "NULL", "purple"]);

    // 9: a transactional logical decoding message.
    let [Message::LogicalMessage {
        xid: None,
        transactional: true,
        lsn,
        prefix,
        content,
    }] = changes[8]
    else {
        panic!("transaction 9: {:#?}", changes[8]);
    };
    assert!(*lsn > Lsn(0));
    assert_eq!(
        (prefix.as_str(), content.as_ref()),
        ("siphon", b"hello".as_ref())
    );

    // 10: the truncate names the table and the option (after the relation
    // and its type again: TRUNCATE invalidates the cached schema).
    let [Message::Type { .. }, Message::Relation { .. }, Message::Truncate {
        xid: None,
        options,
        oids,
    }] = changes[9]
    else {
        panic!("transaction 10: {:#?}", changes[9]);
    };
    assert_eq!(
        (*options, oids.as_slice()),
        (TRUNCATE_RESTART_IDENTITY, [items_oid].as_slice())
    );

    // The same first insert in binary format: int4 as 4 big-endian bytes.
    let binary = peek(
        pg,
        db,
        &slot,
        "'proto_version', '1', 'publication_names', 'pub', 'binary', 'true'",
    )?;
    let first_insert = binary
        .iter()
        .map(|row| Decoder::new().decode(row.data.clone()))
        .find_map(|m| match m {
            Ok(Message::Insert { new, .. }) => Some(new),
            _ => None,
        })
        .ok_or("no insert in the binary capture")?;
    assert_eq!(
        show(&first_insert)[..4],
        ["0x00000001", "0x6170706c65", "0x00000003", "NULL"]
    );

    // Real payloads survive the XLogData envelope.
    let begin = &rows[0];
    let mut envelope = vec![b'w'];
    envelope.extend_from_slice(&begin.lsn.0.to_be_bytes());
    envelope.extend_from_slice(&begin.lsn.0.to_be_bytes());
    envelope.extend_from_slice(&0i64.to_be_bytes());
    envelope.extend_from_slice(&begin.data);
    let ReplicationMessage::XLogData { payload, .. } =
        decode_replication_message(Bytes::from(envelope))?
    else {
        panic!("not XLogData");
    };
    assert_eq!(payload, begin.data);
    Ok(())
}

/// Protocol version 2 with `streaming 'on'`: transactions larger than
/// `logical_decoding_work_mem` arrive in stream blocks before they commit.
#[test]
fn protocol_2_streaming_capture_decodes() -> TestResult {
    let pg = Postgres::start_with_settings(&[("logical_decoding_work_mem", "64kB")])?;
    let url = pg.create_database()?;
    let db = url.rsplit('/').next().ok_or("database name")?;
    // Slots belong to the cluster, not the database.
    let slot = unique_name("slot");
    pg.query_in(
        db,
        "CREATE TABLE big (id int PRIMARY KEY, v text);
         CREATE PUBLICATION pub FOR TABLE big;",
    )?;
    pg.query_in(
        db,
        &format!("SELECT 'ok' FROM pg_create_logical_replication_slot('{slot}', 'pgoutput')"),
    )?;
    let big_oid: u32 = pg.query_in(db, "SELECT 'big'::regclass::oid")?.parse()?;

    for sql in [
        // Small: sent as Begin … Commit.
        "INSERT INTO big VALUES (0, 'small')",
        // Large: streamed, with a logical message inside.
        "BEGIN;
         INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 1500) g;
         SELECT pg_logical_emit_message(true, 'siphon', 'in stream');
         INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1501, 3000) g;
         COMMIT;",
        // Large and rolled back: streamed, then aborted.
        "BEGIN;
         INSERT INTO big SELECT g, repeat('y', 100) FROM generate_series(5001, 7000) g;
         ROLLBACK;",
        // Large with a subtransaction rolled back: the subtransaction is aborted alone.
        "BEGIN;
         INSERT INTO big SELECT g, repeat('z', 100) FROM generate_series(8001, 9000) g;
         SAVEPOINT s;
         INSERT INTO big SELECT g, repeat('z', 100) FROM generate_series(9001, 10000) g;
         ROLLBACK TO SAVEPOINT s;
         DELETE FROM big WHERE id = 0;
         INSERT INTO big VALUES (20000, 'last');
         COMMIT;",
    ] {
        pg.query_in(db, sql)?;
    }

    let options =
        "'proto_version', '2', 'publication_names', 'pub', 'streaming', 'on', 'messages', 'true'";
    let rows = peek(&pg, db, &slot, options)?;

    // Replay the capture the way an apply worker does: stream blocks are kept
    // per transaction (and per subtransaction xid), applied on Stream Commit,
    // dropped on Stream Abort.
    let mut decoder = Decoder::new();
    let mut applied: BTreeSet<i64> = BTreeSet::new();
    let mut pending: Vec<(u32, u32, Message)> = Vec::new(); // (top xid, change xid, change)
    let mut current_stream: Option<u32> = None;
    let mut in_tx = false;
    let (mut starts, mut first_segments, mut stops, mut commits) = (0, 0, 0, 0);
    let mut aborts = Vec::new();
    let mut stream_messages = Vec::new();
    let mut stream_relation = false;
    let mut control = Vec::new(); // the stream control messages, for failure messages
    let apply = |applied: &mut BTreeSet<i64>, change: &Message| -> Result<(), Box<dyn Error>> {
        match change {
            Message::Insert { oid, new, .. } => {
                assert_eq!(*oid, big_oid);
                let values = show(new);
                assert_eq!(values.len(), 2);
                assert!(
                    applied.insert(values[0].parse()?),
                    "row {} inserted twice",
                    values[0]
                );
            }
            Message::Delete { key: Some(key), .. } => {
                assert!(applied.remove(&show(key)[0].parse()?));
            }
            Message::Relation { oid, .. } => assert_eq!(*oid, big_oid),
            Message::LogicalMessage { .. } => {}
            other => panic!("unexpected change {other:?}"),
        }
        Ok(())
    };
    for row in &rows {
        let message = decoder.decode(row.data.clone())?;
        if !matches!(
            message,
            Message::Insert { .. } | Message::Delete { .. } | Message::Relation { .. }
        ) {
            control.push(format!("{message:?}"));
        }
        match message {
            Message::Begin { .. } => in_tx = true,
            Message::Commit { .. } => in_tx = false,
            Message::StreamStart { xid, first_segment } => {
                assert!(!in_tx);
                starts += 1;
                first_segments += usize::from(first_segment);
                current_stream = Some(xid);
            }
            Message::StreamStop => {
                stops += 1;
                current_stream = None;
            }
            Message::StreamCommit {
                xid,
                flags,
                commit_lsn,
                end_lsn,
                commit_time,
            } => {
                assert_eq!((flags, end_lsn), (0, row.lsn));
                assert!(commit_lsn < end_lsn && commit_time > 0);
                commits += 1;
                for (_, _, change) in pending.iter().filter(|(top, _, _)| *top == xid) {
                    apply(&mut applied, change)?;
                }
                pending.retain(|(top, _, _)| *top != xid);
            }
            Message::StreamAbort { xid, subxid, abort } => {
                assert_eq!(abort, None, "protocol 2 sends no abort LSN");
                aborts.push((xid, subxid));
                if xid == subxid {
                    pending.retain(|(top, _, _)| *top != xid);
                } else {
                    pending.retain(|(top, change_xid, _)| (*top, *change_xid) != (xid, subxid));
                }
            }
            change => {
                let change_xid = match &change {
                    Message::Relation { xid, .. }
                    | Message::Insert { xid, .. }
                    | Message::Delete { xid, .. }
                    | Message::LogicalMessage { xid, .. } => *xid,
                    other => panic!("unexpected message {other:?}"),
                };
                match current_stream {
                    Some(top) => {
                        let change_xid =
                            change_xid.ok_or("a change in a stream block has an xid")?;
                        stream_relation |= matches!(change, Message::Relation { .. });
                        if let Message::LogicalMessage {
                            transactional,
                            prefix,
                            content,
                            ..
                        } = &change
                        {
                            stream_messages.push((*transactional, prefix.clone(), content.clone()));
                        }
                        pending.push((top, change_xid, change));
                    }
                    None => {
                        assert!(
                            in_tx,
                            "change outside both transaction and stream: {change:?}"
                        );
                        assert_eq!(change_xid, None, "no xid outside a stream");
                        apply(&mut applied, &change)?;
                    }
                }
            }
        }
    }
    assert!(!decoder.in_stream(), "capture ends inside a stream block");

    assert!(
        starts >= 3,
        "three large transactions are streamed, got {starts} blocks"
    );
    assert_eq!(starts, stops);
    assert_eq!(
        first_segments, 3,
        "one first segment per streamed transaction: {control:#?}"
    );
    assert_eq!(commits, 2, "two streamed transactions commit: {control:#?}");
    assert_eq!(
        aborts.len(),
        2,
        "one whole abort and one subtransaction abort: {aborts:?}"
    );
    assert!(aborts.iter().any(|(xid, subxid)| xid == subxid));
    assert!(aborts.iter().any(|(xid, subxid)| xid != subxid));
    assert!(
        stream_relation,
        "the relation is sent inside the stream too"
    );
    assert_eq!(
        stream_messages,
        [(true, "siphon".to_owned(), Bytes::from_static(b"in stream"))]
    );
    assert!(
        pending.is_empty(),
        "every streamed change was committed or aborted"
    );

    // What the replay applied is what the server has.
    let expected: BTreeSet<i64> = pg
        .query_in(db, "SELECT id FROM big ORDER BY id")?
        .lines()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    assert_eq!(applied.len(), 4001);
    assert_eq!(applied, expected);
    Ok(())
}
