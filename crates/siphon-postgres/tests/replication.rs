//! The logical replication client against real PostgreSQL 15 servers from the
//! testkit: protocol 1 and protocol 2 with streamed transactions, decoded with
//! the `pgoutput` decoder; confirmed positions; keepalive replies; password
//! authentication. Slots are server-wide, so each test names its slot after its
//! own fresh database.

use std::time::Duration;

use siphon_core::ErrorKind;
use siphon_postgres::pgoutput::{Decoder, Lsn, Message, TupleColumn, TupleData};
use siphon_postgres::replication::{Event, ReplicationConfig, ReplicationStream, ServerAddr};
use siphon_testkit::Postgres;

/// Generous bound for anything the server should do soon; only guards
/// against a hanging test, never measures.
const PATIENCE: Duration = Duration::from_secs(60);

/// A database with table `t (id int primary key, name text)`, publication
/// `pub` for it and logical slot `<db>_slot` (pgoutput).
struct Db<'a> {
    pg: &'a Postgres,
    name: String,
    slot: String,
}

impl<'a> Db<'a> {
    fn new(pg: &'a Postgres) -> Db<'a> {
        let url = pg.create_database().unwrap();
        let name = url.rsplit('/').next().unwrap().to_string();
        let db = Db {
            pg,
            slot: format!("{name}_slot"),
            name,
        };
        db.sql(
            "CREATE TABLE t (id int PRIMARY KEY, name text); CREATE PUBLICATION pub FOR TABLE t",
        );
        db.sql(&format!(
            "SELECT lsn FROM pg_create_logical_replication_slot('{}', 'pgoutput')",
            db.slot
        ));
        db
    }

    fn sql(&self, sql: &str) -> String {
        self.pg.query_in(&self.name, sql).unwrap()
    }

    /// A replication config for this database, `extra` appended to the URL's query.
    fn config(&self, extra: &str) -> ReplicationConfig {
        let url = format!("{}?{extra}", self.pg.url_for(&self.name));
        let pg: tokio_postgres::Config = url.parse().unwrap();
        ReplicationConfig::from_pg_config(&pg, &self.slot, "pub").unwrap()
    }

    /// The slot's `confirmed_flush_lsn`.
    fn confirmed(&self) -> Lsn {
        self.sql(&format!(
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{}'",
            self.slot
        ))
        .parse()
        .unwrap()
    }

    /// `reply_time` of the slot's walsender in `pg_stat_replication` (changes
    /// with every status update received), and its pid.
    fn walsender(&self) -> Option<(String, String)> {
        let out = self.sql(&format!(
            "SELECT s.pid, s.reply_time FROM pg_stat_replication s \
             JOIN pg_replication_slots r ON r.active_pid = s.pid WHERE r.slot_name = '{}'",
            self.slot
        ));
        let (pid, time) = out.split_once('|')?;
        Some((pid.to_string(), time.to_string()))
    }
}

async fn next_event(stream: &mut ReplicationStream) -> Event {
    tokio::time::timeout(PATIENCE, stream.recv())
        .await
        .expect("no event from the server")
        .unwrap()
        .expect("the stream ended")
}

/// The next pgoutput message (keepalives skipped) and its XLogData wal_start.
async fn next_message(stream: &mut ReplicationStream, decoder: &mut Decoder) -> (Lsn, Message) {
    loop {
        if let Event::Data {
            wal_start, data, ..
        } = next_event(stream).await
        {
            return (wal_start, decoder.decode(data).unwrap());
        }
    }
}

/// Messages up to and including the next Commit, Stream Commit or Stream Abort.
async fn until_end(stream: &mut ReplicationStream, decoder: &mut Decoder) -> Vec<Message> {
    let mut out = Vec::new();
    loop {
        let (_, m) = next_message(stream, decoder).await;
        let end = matches!(
            m,
            Message::Commit { .. } | Message::StreamCommit { .. } | Message::StreamAbort { .. }
        );
        out.push(m);
        if end {
            return out;
        }
    }
}

fn text(tuple: &TupleData) -> Vec<Option<String>> {
    tuple
        .0
        .iter()
        .map(|c| match c {
            TupleColumn::Text(b) => Some(String::from_utf8(b.to_vec()).unwrap()),
            TupleColumn::Null => None,
            other => panic!("unexpected column {other:?}"),
        })
        .collect()
}

fn names(messages: &[Message]) -> Vec<&'static str> {
    messages.iter().map(Message::name).collect()
}

async fn until<F: FnMut() -> bool>(what: &str, mut done: F) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_1_streams_committed_transactions() {
    let pg = Postgres::shared().unwrap();
    let db = Db::new(pg);
    db.sql("BEGIN; INSERT INTO t VALUES (1, 'one'), (2, NULL); UPDATE t SET name = 'two' WHERE id = 2; COMMIT");
    db.sql("DELETE FROM t WHERE id = 1");

    let mut stream = ReplicationStream::connect(db.config("")).await.unwrap();
    let mut decoder = Decoder::new();
    let first = until_end(&mut stream, &mut decoder).await;
    assert_eq!(
        names(&first),
        ["Begin", "Relation", "Insert", "Insert", "Update", "Commit"]
    );
    let Message::Begin { final_lsn, xid, .. } = first[0] else {
        unreachable!()
    };
    assert!(xid > 0);
    let Message::Relation {
        oid: rel,
        ref name,
        ref columns,
        ..
    } = first[1]
    else {
        unreachable!()
    };
    assert_eq!(name, "t");
    let columns: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(columns, ["id", "name"]);
    let rows: Vec<_> = first[2..5]
        .iter()
        .map(|m| match m {
            Message::Insert { oid, new, xid } | Message::Update { oid, new, xid, .. } => {
                assert_eq!(*oid, rel);
                assert_eq!(*xid, None, "protocol 1 sends no xids");
                text(new)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        rows,
        [
            vec![Some("1".into()), Some("one".into())],
            vec![Some("2".into()), None],
            vec![Some("2".into()), Some("two".into())],
        ]
    );
    let Message::Commit {
        commit_lsn,
        end_lsn,
        ..
    } = first[5]
    else {
        unreachable!()
    };
    assert_eq!(commit_lsn, final_lsn);
    assert!(end_lsn > commit_lsn);

    let second = until_end(&mut stream, &mut decoder).await;
    assert_eq!(names(&second), ["Begin", "Delete", "Commit"]);
    let Message::Delete { key: Some(key), .. } = &second[1] else {
        panic!("{:?}", second[1]);
    };
    assert_eq!(text(key), [Some("1".into()), None]);
    stream.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_2_streams_large_transactions_in_blocks() {
    let pg = Postgres::shared().unwrap();
    let db = Db::new(pg);
    // The walsender decodes with 64kB of memory (the minimum): larger
    // transactions are streamed while in progress.
    let cfg = db
        .config("options=-c%20logical_decoding_work_mem%3D64kB")
        .with_protocol(2, true);
    let mut stream = ReplicationStream::connect(cfg).await.unwrap();
    let mut decoder = Decoder::new();

    // A small transaction is sent whole, as in protocol 1.
    db.sql("INSERT INTO t VALUES (0, 'small')");
    let small = until_end(&mut stream, &mut decoder).await;
    assert_eq!(names(&small), ["Begin", "Relation", "Insert", "Commit"]);

    // A large one comes in blocks before its commit is known.
    db.sql("INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g");
    let large = until_end(&mut stream, &mut decoder).await;
    let Some(&Message::StreamStart {
        xid,
        first_segment: true,
    }) = large.first()
    else {
        panic!("not a stream: {:?}", names(&large));
    };
    assert!(
        !large
            .iter()
            .any(|m| matches!(m, Message::Begin { .. } | Message::Commit { .. })),
        "a streamed transaction has no Begin/Commit: {:?}",
        names(&large)
    );
    let starts = large
        .iter()
        .filter(|m| matches!(m, Message::StreamStart { .. }))
        .count();
    let stops = large
        .iter()
        .filter(|m| matches!(m, Message::StreamStop))
        .count();
    assert!(starts > 1, "expected several blocks, got {starts}");
    assert_eq!(starts, stops);
    let inserted: Vec<i32> = large
        .iter()
        .filter_map(|m| match m {
            Message::Insert { xid: x, new, .. } => {
                assert_eq!(*x, Some(xid));
                text(new)[0].as_ref().map(|id| id.parse().unwrap())
            }
            _ => None,
        })
        .collect();
    assert_eq!(inserted, (1..=5000).collect::<Vec<_>>());
    let Some(&Message::StreamCommit {
        xid: committed,
        end_lsn,
        ..
    }) = large.last()
    else {
        panic!("{:?}", large.last());
    };
    assert_eq!(committed, xid);
    assert!(end_lsn > Lsn::INVALID);

    // A large transaction that rolls back is streamed, then aborted.
    db.sql("BEGIN; INSERT INTO t SELECT g, repeat('y', 200) FROM generate_series(10001, 15000) g; ROLLBACK");
    let aborted = until_end(&mut stream, &mut decoder).await;
    let Some(&Message::StreamStart { xid: abort_xid, .. }) = aborted.first() else {
        panic!("not a stream: {:?}", names(&aborted));
    };
    assert_ne!(abort_xid, xid);
    assert_eq!(
        aborted.last(),
        Some(&Message::StreamAbort {
            xid: abort_xid,
            subxid: abort_xid,
            abort: None
        })
    );
    assert!(aborted.iter().any(|m| matches!(m, Message::Insert { .. })));

    // And the stream goes on.
    db.sql("INSERT INTO t VALUES (20000, 'after')");
    let after = until_end(&mut stream, &mut decoder).await;
    let mut after = names(&after);
    after.retain(|&n| n != "Relation");
    assert_eq!(after, ["Begin", "Insert", "Commit"]);
    stream.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_position_follows_set_applied_and_no_further() {
    let pg = Postgres::shared().unwrap();
    let db = Db::new(pg);
    let created = db.confirmed();
    db.sql("INSERT INTO t VALUES (1, 'a')");
    db.sql("INSERT INTO t VALUES (2, 'b')");

    let mut stream = ReplicationStream::connect(db.config("")).await.unwrap();
    let mut decoder = Decoder::new();
    let first = until_end(&mut stream, &mut decoder).await;
    let Some(&Message::Commit { end_lsn: end1, .. }) = first.last() else {
        panic!("{first:?}")
    };
    let second = until_end(&mut stream, &mut decoder).await;
    let Some(&Message::Commit { end_lsn: end2, .. }) = second.last() else {
        panic!("{second:?}")
    };
    assert!(created < end1 && end1 < end2);

    // Only the first transaction is confirmed.
    stream.set_applied(end1);
    stream.set_applied(created); // never moves back
    assert_eq!(stream.applied(), end1);
    until("confirmed_flush_lsn reaches the applied position", || {
        db.confirmed() == end1
    })
    .await;
    // Status updates keep coming (reply_time moves twice) and still confirm
    // nothing past it, though the second transaction was received.
    let (_, seen) = db.walsender().unwrap();
    for _ in 0..2 {
        let before = db.walsender().unwrap().1;
        until("another status update", || {
            db.walsender().is_some_and(|(_, t)| t != before)
        })
        .await;
    }
    assert_ne!(db.walsender().unwrap().1, seen);
    assert_eq!(db.confirmed(), end1);
    stream.shutdown().await.unwrap();
    until("the slot is released", || {
        db.sql(&format!(
            "SELECT active FROM pg_replication_slots WHERE slot_name = '{}'",
            db.slot
        )) == "f"
    })
    .await;
    assert_eq!(db.confirmed(), end1);

    // A new session resumes after the confirmed transaction: the second one
    // is sent again, the first is not.
    let mut stream = ReplicationStream::connect(db.config("")).await.unwrap();
    let mut decoder = Decoder::new();
    let again = until_end(&mut stream, &mut decoder).await;
    assert_eq!(names(&again), ["Begin", "Relation", "Insert", "Commit"]);
    let Message::Insert { new, .. } = &again[2] else {
        unreachable!()
    };
    assert_eq!(text(new), [Some("2".into()), Some("b".into())]);
    assert_eq!(again.last(), second.last());
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_over_the_unix_socket_with_an_odd_publication_name() {
    let pg = Postgres::shared().unwrap();
    let db = Db::new(pg);
    // Mixed case, quotes and a comma: wrongly quoted, pgoutput would look for
    // another publication (or several) and fail.
    let publication = "My \"Pub\", it's";
    db.sql("CREATE PUBLICATION \"My \"\"Pub\"\", it's\" FOR TABLE t");
    db.sql("INSERT INTO t VALUES (7, 'seven')");
    let mut cfg = db.config("");
    cfg.addr = ServerAddr::Unix(pg.socket_dir().to_path_buf());
    cfg.publication = publication.to_string();
    let mut stream = ReplicationStream::connect(cfg).await.unwrap();
    let mut decoder = Decoder::new();
    let tx = until_end(&mut stream, &mut decoder).await;
    assert_eq!(names(&tx), ["Begin", "Relation", "Insert", "Commit"]);
    stream.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_busy_slot_is_named() {
    let pg = Postgres::shared().unwrap();
    let db = Db::new(pg);
    let mut cfg = db.config("");
    cfg.slot = "no_such_slot".into();
    let e = ReplicationStream::connect(cfg).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PositionLost, "{e}");
    assert!(e.to_string().contains("\"no_such_slot\""), "{e}");

    let first = ReplicationStream::connect(db.config("")).await.unwrap();
    let e = ReplicationStream::connect(db.config("")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connection, "{e}");
    assert!(e.to_string().contains(&format!("\"{}\"", db.slot)), "{e}");
    assert!(e.to_string().contains("in use"), "{e}");
    first.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_replies_outlive_wal_sender_timeout() {
    // Its own server: the timeout is server-wide.
    let pg = Postgres::start_with_settings(&[("wal_sender_timeout", "2s")]).unwrap();
    let db = Db::new(&pg);
    // Status updates of its own only every hour: only the replies to the
    // server's keepalives keep the session alive.
    let cfg = db
        .config("")
        .with_status_interval(Duration::from_secs(3600));
    let mut stream = ReplicationStream::connect(cfg).await.unwrap();
    let (pid, _) = db.walsender().unwrap();

    // Idle for three timeouts, reading what comes (keepalives only).
    let idle = tokio::time::sleep(Duration::from_secs(6));
    tokio::pin!(idle);
    let mut keepalives = 0;
    loop {
        tokio::select! {
            _ = &mut idle => break,
            event = stream.recv() => match event.unwrap().expect("the session ended") {
                Event::KeepAlive { wal_end, .. } => {
                    assert!(wal_end > Lsn::INVALID);
                    keepalives += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(keepalives > 0);

    // The same session still streams.
    db.sql("INSERT INTO t VALUES (1, 'still here')");
    let mut decoder = Decoder::new();
    let tx = until_end(&mut stream, &mut decoder).await;
    assert_eq!(names(&tx), ["Begin", "Relation", "Insert", "Commit"]);
    assert_eq!(db.walsender().unwrap().0, pid);
    stream.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_authentication() {
    let pg = Postgres::start_with_hba(
        &[],
        &[
            "host all scram_user 127.0.0.1/32 scram-sha-256",
            "host all md5_user 127.0.0.1/32 md5",
            "host all clear_user 127.0.0.1/32 password",
        ],
    )
    .unwrap();
    let db = Db::new(&pg);
    pg.query(
        "CREATE ROLE scram_user LOGIN REPLICATION PASSWORD 's3cret''pw'; \
         CREATE ROLE clear_user LOGIN REPLICATION PASSWORD 'plain'; \
         SET password_encryption = 'md5'; \
         CREATE ROLE md5_user LOGIN REPLICATION PASSWORD 'md5pw'",
    )
    .unwrap();
    assert!(pg
        .query("SELECT rolpassword FROM pg_authid WHERE rolname = 'scram_user'")
        .unwrap()
        .starts_with("SCRAM-SHA-256$"));
    assert!(pg
        .query("SELECT rolpassword FROM pg_authid WHERE rolname = 'md5_user'")
        .unwrap()
        .starts_with("md5"));
    db.sql("INSERT INTO t VALUES (1, 'secret row')");

    let config = |user: &str, password: Option<&str>| {
        let mut pg_config = tokio_postgres::Config::new();
        pg_config
            .host("127.0.0.1")
            .port(pg.port())
            .user(user)
            .dbname(&db.name);
        if let Some(p) = password {
            pg_config.password(p);
        }
        ReplicationConfig::from_pg_config(&pg_config, &db.slot, "pub").unwrap()
    };

    for (user, password) in [
        ("scram_user", "s3cret'pw"),
        ("md5_user", "md5pw"),
        ("clear_user", "plain"),
    ] {
        // A wrong password and a missing one are refused (so these roles do
        // not get in by trust).
        let e = ReplicationStream::connect(config(user, Some("wrong")))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{user}: {e}");
        assert!(e.to_string().contains("28P01"), "{user}: {e}");
        let e = ReplicationStream::connect(config(user, None))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{user}: {e}");
        assert!(e.to_string().contains("password"), "{user}: {e}");

        let mut stream = ReplicationStream::connect(config(user, Some(password)))
            .await
            .unwrap();
        assert_eq!(
            db.sql(&format!(
                "SELECT usename FROM pg_stat_replication WHERE application_name = '{}'",
                db.slot
            )),
            user
        );
        let mut decoder = Decoder::new();
        let tx = until_end(&mut stream, &mut decoder).await;
        assert_eq!(names(&tx), ["Begin", "Relation", "Insert", "Commit"]);
        // Not confirmed: the next user reads the same transaction.
        stream.shutdown().await.unwrap();
        until("the slot is released", || {
            db.sql(&format!(
                "SELECT active FROM pg_replication_slots WHERE slot_name = '{}'",
                db.slot
            )) == "f"
        })
        .await;
    }
}
