//! How `siphon run` behaves over time, through the binary with SQLite files:
//! a continuous run copies a `full` table once (and again on `sync resync`)
//! while it keeps polling the others; `strategy: swap` reloads never show a
//! reader an empty or partial table; a SIGTERM'd `run --once` exits 130 and
//! reports the rows it committed; a run still connecting stops at the first
//! SIGTERM; a failing table is printed once, not at every pass.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

fn siphon(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_siphon"))
        .args(args)
        .current_dir(dir)
        .env_remove("SIPHON_STATE")
        .env("NO_COLOR", "1")
        .output()
        .expect("run siphon")
}

fn spawn(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_siphon"))
        .args(args)
        .current_dir(dir)
        .env_remove("SIPHON_STATE")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start siphon")
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for the child to exit (at most `secs`), then returns its status,
/// stdout and stderr.
fn finish(mut child: Child, secs: u64) -> (ExitStatus, String, String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("siphon did not exit within {secs}s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, out, err)
}

fn count(db: &Path, sql: &str) -> i64 {
    Connection::open(db)
        .and_then(|c| c.query_row(sql, [], |r| r.get::<_, i64>(0)))
        .unwrap_or(-1)
}

fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The number after `word` in a summary line.
fn figure(line: &str, word: &str) -> u64 {
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == word {
            return it.next().unwrap().parse().unwrap();
        }
    }
    panic!("no `{word}` in {line}")
}

fn summary<'a>(out: &'a str, table: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains(&format!("/{table} ")))
        .unwrap_or_else(|| panic!("no summary line for {table} in:\n{out}"))
}

#[test]
fn a_continuous_run_copies_a_full_table_once_and_keeps_polling_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let src = Connection::open(dir.path().join("source.db")).unwrap();
    src.execute_batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
         INSERT INTO items SELECT i, 'item ' || i FROM n;
         CREATE TABLE events (id INTEGER PRIMARY KEY, at TIMESTAMP);
         INSERT INTO events VALUES (1, '2026-01-01 00:00:01');",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("siphon.yaml"),
        "state: sqlite://state.db\nconnections:\n  src: sqlite://source.db\n  dst: sqlite://target.db\n\
         pipelines:\n  p:\n    source: src\n    target: dst\n    mode: full\n\
         \x20   tables_config:\n      events:\n        mode: incremental\n        cursor: at\n",
    )
    .unwrap();
    let child = spawn(dir.path(), &["run", "-f", "siphon.yaml"]);
    let target = dir.path().join("target.db");
    let state = dir.path().join("state.db");
    let runs_of = |t: &str| {
        count(
            &state,
            &format!("SELECT count(*) FROM execution_tables WHERE table_name = '{t}'"),
        )
    };
    wait_until("the first copy", 60, || {
        count(&target, "SELECT count(*) FROM items") == 1000
            && count(&target, "SELECT count(*) FROM events") == 1
    });
    // The source's full table changes; its copy is complete, so the run leaves
    // it alone while the incremental table goes on being polled, pass after pass.
    src.execute("INSERT INTO items VALUES (1001, 'late')", [])
        .unwrap();
    for i in 2..=4 {
        src.execute(
            "INSERT INTO events VALUES (?1, ?2)",
            rusqlite::params![i, format!("2026-01-01 00:00:0{i}")],
        )
        .unwrap();
        wait_until("the next event", 60, || {
            count(&target, "SELECT count(*) FROM events") == i
        });
    }
    assert_eq!(count(&target, "SELECT count(*) FROM items"), 1000);
    assert_eq!(runs_of("items"), 1, "the full table was copied again");
    assert!(runs_of("events") >= 4);

    // A resync asks for one new copy, which the running process makes once.
    let out = siphon(dir.path(), &["sync", "resync", "p", "--table", "items"]);
    assert!(out.status.success(), "{out:?}");
    wait_until("the forced copy", 60, || {
        count(&target, "SELECT count(*) FROM items") == 1001
    });
    src.execute("INSERT INTO events VALUES (5, '2026-01-01 00:00:05')", [])
        .unwrap();
    wait_until("an event after the forced copy", 60, || {
        count(&target, "SELECT count(*) FROM events") == 5
    });
    assert_eq!(runs_of("items"), 2);

    sigterm(&child);
    let (status, _out, err) = finish(child, 30);
    assert!(status.success(), "{status:?}\n{err}");
    // It said at its start what it does with each kind of table.
    assert!(
        err.contains("pipeline p: src -> dst, mode full")
            && err.contains("schedule continuous")
            && err.contains("full tables are copied once")
            && err.contains("incremental tables are polled continuously"),
        "{err}"
    );
}

#[test]
fn swap_reloads_never_show_a_reader_fewer_rows_than_the_source() {
    const ROWS: i64 = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let src = Connection::open(dir.path().join("source.db")).unwrap();
    src.execute_batch(&format!(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price NUMERIC);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
         INSERT INTO items SELECT i, 'item ' || i, i * 0.5 FROM n;"
    ))
    .unwrap();
    std::fs::write(
        dir.path().join("siphon.yaml"),
        "state: sqlite://state.db\nconnections:\n  src: sqlite://source.db\n  dst: sqlite://target.db\n\
         pipelines:\n  p:\n    source: src\n    target: dst\n    mode: full\n    strategy: swap\n\
         \x20   batch_size: 2000\n",
    )
    .unwrap();
    let first = siphon(dir.path(), &["run", "-f", "siphon.yaml", "--once"]);
    assert!(first.status.success(), "{first:?}");
    let out = String::from_utf8_lossy(&first.stdout).to_string();
    let line = summary(&out, "items");
    // A first copy into an empty table is all inserts.
    assert_eq!(figure(line, "inserted"), ROWS as u64, "{line}");
    assert_eq!(figure(line, "deleted"), 0, "{line}");

    let target = dir.path().join("target.db");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, target) = (stop.clone(), target.clone());
        std::thread::spawn(move || {
            let c = Connection::open(&target).unwrap();
            let (mut reads, mut least) = (0u64, i64::MAX);
            while !stop.load(Ordering::SeqCst) {
                let n: i64 = c
                    .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
                    .unwrap();
                least = least.min(n);
                reads += 1;
            }
            (reads, least)
        })
    };
    for _ in 0..3 {
        let again = siphon(dir.path(), &["run", "-f", "siphon.yaml", "--once"]);
        assert!(again.status.success(), "{again:?}");
        let out = String::from_utf8_lossy(&again.stdout).to_string();
        let line = summary(&out, "items");
        // The previous copy was replaced, not deleted row by row.
        assert!(
            line.contains(&format!("replaced the previous {ROWS} rows")),
            "{line}"
        );
        assert_eq!(figure(line, "deleted"), 0, "{line}");
        assert_eq!(figure(line, "inserted"), ROWS as u64, "{line}");
    }
    stop.store(true, Ordering::SeqCst);
    let (reads, least) = reader.join().unwrap();
    assert!(reads > 0);
    assert_eq!(least, ROWS, "a reader saw {least} rows during a reload");
    // The history keeps what each reload replaced.
    assert_eq!(
        count(
            &dir.path().join("state.db"),
            &format!(
                "SELECT count(*) FROM execution_tables WHERE replaced = {ROWS} AND deleted = 0"
            )
        ),
        3
    );
    // The shadow table is gone once swapped in.
    assert_eq!(
        count(
            &target,
            "SELECT count(*) FROM sqlite_schema WHERE name LIKE '%siphon_new%'"
        ),
        0
    );
}

#[test]
fn a_sigterm_during_run_once_exits_130_and_reports_what_it_committed() {
    let dir = tempfile::tempdir().unwrap();
    let src = Connection::open(dir.path().join("source.db")).unwrap();
    src.execute_batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, note TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000)
         INSERT INTO items SELECT i, 'item ' || i, printf('%.40d', i) FROM n;",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("siphon.yaml"),
        "state: sqlite://state.db\nconnections:\n  src: sqlite://source.db\n  dst: sqlite://target.db\n\
         pipelines:\n  p:\n    source: src\n    target: dst\n    mode: full\n    batch_size: 1000\n",
    )
    .unwrap();
    let child = spawn(dir.path(), &["run", "-f", "siphon.yaml", "--once"]);
    let target = dir.path().join("target.db");
    wait_until("rows on the target", 120, || {
        count(&target, "SELECT count(*) FROM items") >= 5000
    });
    sigterm(&child);
    let (status, out, err) = finish(child, 60);
    assert_eq!(status.code(), Some(130), "{status:?}\n{out}\n{err}");
    let line = summary(&out, "items");
    assert!(line.contains("stopped"), "{line}");
    assert!(!line.contains("FAILED"), "{line}");
    let on_target = count(&target, "SELECT count(*) FROM items") as u64;
    assert!(
        on_target < 2_000_000,
        "the load ended before it was stopped"
    );
    assert_eq!(figure(line, "read"), on_target, "{line}");
    assert_eq!(figure(line, "inserted"), on_target, "{line}");
    let state = dir.path().join("state.db");
    assert_eq!(
        count(
            &state,
            "SELECT count(*) FROM execution_tables WHERE status = 'stopped'"
        ),
        1
    );
}

#[test]
fn the_first_sigterm_stops_a_run_that_is_still_connecting() {
    // A server that accepts connections and never answers.
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hole.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicBool::new(false));
    {
        let accepted = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in hole.incoming().flatten() {
                accepted.store(true, Ordering::SeqCst);
                held.push(s);
            }
        });
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("siphon.yaml"),
        format!(
            "state: sqlite://state.db\nconnections:\n  \
             src: postgres://app@127.0.0.1:{port}/app?connect_timeout=600\n  dst: sqlite://target.db\n\
             pipelines:\n  p:\n    source: src\n    target: dst\n    mode: full\n"
        ),
    )
    .unwrap();
    let child = spawn(dir.path(), &["run", "-f", "siphon.yaml", "--once"]);
    wait_until("siphon to connect to the black hole", 60, || {
        accepted.load(Ordering::SeqCst)
    });
    sigterm(&child);
    let (status, out, err) = finish(child, 30);
    assert_eq!(status.code(), Some(130), "{status:?}\n{out}\n{err}");
    assert!(err.contains("stopped while connecting"), "{err}");
}

#[test]
fn a_failing_table_is_printed_once_while_a_continuous_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let src = Connection::open(dir.path().join("source.db")).unwrap();
    src.execute_batch(
        "CREATE TABLE good (id INTEGER PRIMARY KEY, at TIMESTAMP);
         INSERT INTO good VALUES (1, '2026-01-01 00:00:01');
         CREATE TABLE bad (id INTEGER PRIMARY KEY, at TIMESTAMP);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("siphon.yaml"),
        "state: sqlite://state.db\nconnections:\n  src: sqlite://source.db\n  dst: sqlite://target.db\n\
         pipelines:\n  p:\n    source: src\n    target: dst\n    mode: incremental\n    cursor: at\n\
         \x20   tables_config:\n      bad:\n        cursor: no_such_column\n",
    )
    .unwrap();
    let child = spawn(dir.path(), &["run", "-f", "siphon.yaml"]);
    let state = dir.path().join("state.db");
    // The bad table fails once and waits for a fix (a config error is not
    // retried); passes go on for the good one.
    wait_until("three passes after the failure", 90, || {
        count(
            &state,
            "SELECT count(*) FROM execution_tables WHERE table_name = 'bad' AND status = 'failed'",
        ) >= 1
            && count(
                &state,
                "SELECT count(*) FROM executions WHERE id > (SELECT min(execution) \
                 FROM execution_tables WHERE table_name = 'bad' AND status = 'failed')",
            ) >= 3
    });
    sigterm(&child);
    let (status, out, err) = finish(child, 30);
    assert!(status.success(), "{status:?}\n{err}");
    let all = format!("{out}{err}");
    assert_eq!(
        all.matches("no_such_column").count(),
        1,
        "the failure is printed once:\n{all}"
    );
    assert!(
        err.contains("pipeline p: src -> dst, mode incremental"),
        "{err}"
    );
}

#[test]
fn a_running_pipeline_follows_the_catalog_and_stops_when_removed() {
    let dir = tempfile::tempdir().unwrap();
    let src = Connection::open(dir.path().join("source.db")).unwrap();
    src.execute_batch(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, at TIMESTAMP);
         INSERT INTO events VALUES (1, '2026-01-01 00:00:01');",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("siphon.yaml"),
        "state: sqlite://state.db\nconnections:\n  src: sqlite://source.db\n  dst: sqlite://target.db\n\
         pipelines:\n  p:\n    source: src\n    target: dst\n    mode: incremental\n    cursor: at\n",
    )
    .unwrap();
    let child = spawn(dir.path(), &["run", "-f", "siphon.yaml"]);
    let target = dir.path().join("target.db");
    wait_until("the first copy", 60, || {
        count(&target, "SELECT count(*) FROM events") == 1
    });
    // Removed while it runs: the run stops the pipeline (its only one, so it
    // exits) and writes no more to the target.
    let out = siphon(dir.path(), &["sync", "remove", "p", "--yes"]);
    assert!(out.status.success(), "{out:?}");
    let (status, _out, err) = finish(child, 120);
    assert!(status.success(), "{status:?}\n{err}");
    assert!(
        err.contains("pipeline p: removed from the catalog"),
        "{err}"
    );
    src.execute("INSERT INTO events VALUES (2, '2026-01-01 00:00:02')", [])
        .unwrap();
    assert_eq!(count(&target, "SELECT count(*) FROM events"), 1);
    assert_eq!(
        count(&target, "SELECT count(*) FROM siphon_checkpoints"),
        0,
        "the removed pipeline's checkpoint came back"
    );
}
