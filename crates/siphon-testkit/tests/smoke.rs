//! Smoke tests: start each real server and ask it a real question.
//!
//! No mocks: PostgreSQL and MariaDB are queried with their own command-line
//! clients, Redis and NATS over a plain `TcpStream` in their wire protocols.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use siphon_testkit::{unique_name, MariaDb, Nats, Postgres, Redis};

#[test]
fn postgres_is_logical_and_stores_rows() {
    let pg = Postgres::start().unwrap();
    assert_eq!(pg.query("SHOW wal_level").unwrap(), "logical");
    assert!(pg.url().starts_with("postgres://postgres@127.0.0.1:"));

    let url = pg.create_database().unwrap();
    let db = url.rsplit('/').next().unwrap().to_string();
    assert!(db.starts_with("t_"), "{url}");
    pg.query_in(
        &db,
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL); \
         INSERT INTO items VALUES (1, 'one'), (2, 'two');",
    )
    .unwrap();
    assert_eq!(
        pg.query_in(&db, "SELECT id, name FROM items ORDER BY id")
            .unwrap(),
        "1|one\n2|two"
    );
    // Logical decoding really works: a slot can be made with pgoutput.
    assert_eq!(
        pg.query_in(
            &db,
            "SELECT slot_name FROM pg_create_logical_replication_slot('smoke', 'pgoutput')"
        )
        .unwrap(),
        "smoke"
    );
}

#[test]
fn postgres_dropped_stops_and_removes_its_directory() {
    let pg = Postgres::start().unwrap();
    let dir = pg.dir().to_path_buf();
    let pid = pg.pid().unwrap();
    assert!(dir.join("data").is_dir());
    drop(pg);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(!process_alive(pid), "postmaster {pid} still runs");
}

#[test]
fn a_server_that_cannot_start_reports_its_log() {
    let err = Postgres::start_with_settings(&[("wal_level", "sideways")]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("PostgreSQL test server failed to start"),
        "{text}"
    );
    // The server's own complaint, quoted from its log.
    assert!(text.contains("wal_level"), "{text}");
    assert!(text.contains("sideways"), "{text}");
}

#[test]
fn postgres_errors_are_real_errors() {
    let pg = Postgres::shared().unwrap();
    let err = pg.query("SELECT * FROM no_such_table").unwrap_err();
    assert!(err.to_string().contains("no_such_table"), "{err}");
}

#[test]
fn shared_postgres_is_one_server() {
    let a = Postgres::shared().unwrap();
    let b = Postgres::shared().unwrap();
    assert_eq!(a.port(), b.port());
    let one = a.create_database().unwrap();
    let two = b.create_database().unwrap();
    assert_ne!(one, two);
}

#[test]
fn mariadb_writes_row_binlog_and_stores_rows() {
    let db = MariaDb::start().unwrap();
    assert_eq!(
        db.query("SELECT @@binlog_format, @@log_bin, @@gtid_strict_mode, @@server_id")
            .unwrap(),
        "ROW\t1\t1\t1"
    );
    assert!(db.url().starts_with("mysql://root@127.0.0.1:"));

    let name = unique_name("smoke");
    let url = db.create_database_named(&name).unwrap();
    assert!(url.ends_with(&format!("/{name}")), "{url}");
    db.query_in(
        &name,
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20) NOT NULL); \
         INSERT INTO items VALUES (1, 'one'), (2, 'two');",
    )
    .unwrap();
    assert_eq!(
        db.query_in(&name, "SELECT id, name FROM items ORDER BY id")
            .unwrap(),
        "1\tone\n2\ttwo"
    );
    // The insert went to the binary log with a GTID.
    let gtid = db.query("SELECT @@gtid_binlog_pos").unwrap();
    assert!(gtid.starts_with("0-1-"), "gtid_binlog_pos = {gtid:?}");
}

#[test]
fn shared_mariadb_databases_are_separate() {
    let db = MariaDb::shared().unwrap();
    let url = db.create_database().unwrap();
    let name = url.rsplit('/').next().unwrap();
    db.query_in(name, "CREATE TABLE t (id INT PRIMARY KEY)")
        .unwrap();
    assert_eq!(
        db.query(&format!(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{name}'"
        ))
        .unwrap(),
        "1"
    );
}

#[test]
fn redis_sets_and_gets() {
    let redis = Redis::start().unwrap();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}/0", redis.port()));
    let mut conn = connect(redis.port());
    let key = unique_name("smoke");
    let reply = resp(&mut conn, &["SET", &key, "hello world"]);
    assert_eq!(reply, "+OK");
    let reply = resp(&mut conn, &["GET", &key]);
    assert_eq!(reply, "$11\r\nhello world");
}

#[test]
fn shared_redis_answers() {
    let redis = Redis::shared().unwrap();
    let mut conn = connect(redis.port());
    assert_eq!(resp(&mut conn, &["PING"]), "+PONG");
}

#[test]
fn nats_has_jetstream() {
    let nats = Nats::start().unwrap();
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{}", nats.port()));
    let conn = connect(nats.port());
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;

    let info = read_line(&mut reader);
    assert!(info.starts_with("INFO {"), "{info}");
    assert!(info.contains("\"jetstream\":true"), "{info}");

    writer
        .write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
        .unwrap();
    assert_eq!(read_line(&mut reader), "PONG");

    // Ask JetStream for the account info and read the JSON reply.
    writer
        .write_all(b"SUB _INBOX.smoke 1\r\nPUB $JS.API.INFO _INBOX.smoke 0\r\n\r\n")
        .unwrap();
    let header = read_line(&mut reader);
    let mut parts = header.split(' ');
    assert_eq!(parts.next(), Some("MSG"), "{header}");
    assert_eq!(parts.next(), Some("_INBOX.smoke"), "{header}");
    let size: usize = parts.next_back().unwrap().parse().unwrap();
    let mut payload = vec![0; size + 2];
    reader.read_exact(&mut payload).unwrap();
    let json = String::from_utf8(payload).unwrap();
    assert!(
        json.contains("io.nats.jetstream.api.v1.account_info_response"),
        "{json}"
    );
    assert!(!json.contains("\"error\""), "{json}");
}

#[test]
fn nats_dropped_stops_and_removes_its_directory() {
    let nats = Nats::start().unwrap();
    let dir: PathBuf = nats.dir().to_path_buf();
    let pid = nats.pid().unwrap();
    let port = nats.port();
    drop(nats);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(!process_alive(pid), "nats-server {pid} still runs");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

fn connect(port: u16) -> TcpStream {
    let conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn
}

/// Sends one RESP command and returns the reply: one line, or for a bulk
/// string the length line and the value, joined by CRLF.
fn resp(conn: &mut TcpStream, args: &[&str]) -> String {
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    conn.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let first = read_line(&mut reader);
    match first.strip_prefix('$').map(str::parse::<i64>) {
        Some(Ok(len)) if len >= 0 => {
            let mut value = vec![0; len as usize + 2];
            reader.read_exact(&mut value).unwrap();
            format!(
                "{first}\r\n{}",
                String::from_utf8_lossy(&value[..len as usize])
            )
        }
        _ => first,
    }
}

fn read_line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    line.trim_end_matches(['\r', '\n']).to_string()
}

/// Whether a process exists (and is not a zombie) according to /proc.
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
