//! Creating a pipeline's replication slot waits for every transaction open at
//! the source: `siphon run` says which ones (their backend pid) while it waits,
//! and goes on once they end. Against a real PostgreSQL through the binary.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use siphon_testkit::Postgres;

#[test]
fn slot_creation_names_the_transactions_it_waits_for() {
    let pg = Postgres::start().unwrap();
    let src = pg.create_database().unwrap();
    let dst = pg.create_database().unwrap();
    let src_db = src.rsplit('/').next().unwrap().to_string();
    pg.query_in(
        &src_db,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);",
    )
    .unwrap();
    // A transaction with an id, left open.
    let mut holder = Command::new(pg.bin_dir().join("psql"))
        .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", &src])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let holder_in = holder.stdin.as_mut().unwrap();
    writeln!(
        holder_in,
        "BEGIN; INSERT INTO t VALUES (2); SELECT pg_backend_pid();"
    )
    .unwrap();
    holder_in.flush().unwrap();
    let mut pid = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut pid)
        .unwrap();
    let pid = pid.trim().to_string();
    assert!(pid.parse::<u32>().is_ok(), "{pid}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("siphon.yaml"),
        format!(
            "state: sqlite://state.db\nconnections:\n  src: {src}\n  dst: {dst}\n\
             pipelines:\n  {src_db}:\n    source: src\n    target: dst\n    mode: cdc\n    tables: [public.t]\n"
        ),
    )
    .unwrap();
    let mut run = Command::new(env!("CARGO_BIN_EXE_siphon"))
        .args(["run", "-f", "siphon.yaml", "--once"])
        .current_dir(dir.path())
        .env_remove("SIPHON_STATE")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = run.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let said = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("siphon never said what the slot waits for");
        if line.contains("waits for transactions open at the source") {
            break line;
        }
    };
    assert!(said.contains(&format!("pid {pid}")), "{said}");
    // Once the transaction ends, the run goes on and copies the table.
    writeln!(holder.stdin.as_mut().unwrap(), "COMMIT;").unwrap();
    drop(holder.stdin.take());
    holder.wait().unwrap();
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let dst_db = dst.rsplit('/').next().unwrap();
    assert_eq!(pg.query_in(dst_db, "SELECT count(*) FROM t").unwrap(), "2");
}
