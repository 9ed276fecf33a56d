//! Progress of a full load when stderr is not a terminal: plain lines (the
//! table, rows done of the estimate, rows/s, eta) instead of bars; a `cdc`
//! table's copy ends its lines when it is complete, and the changes it
//! streams after it are not counted as rows of the copy.

use std::time::Duration;

use rusqlite::Connection;
use siphon_testkit::MariaDb;

mod support;
use support::{command, config, db_name, ok, run_log, siphon_with, wait_for, Running};

#[test]
fn a_full_load_without_a_terminal_prints_plain_progress_lines() {
    let dir = tempfile::tempdir().unwrap();
    Connection::open(dir.path().join("source.db"))
        .unwrap()
        .execute_batch(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
             INSERT INTO orders SELECT i, 'note ' || i FROM n;
             ANALYZE;",
        )
        .unwrap();
    std::fs::write(
        dir.path().join("siphon.yaml"),
        "state: sqlite://state.db\nconnections:\n  src: sqlite://source.db\n  dst: sqlite://target.db\n\
         pipelines:\n  load:\n    source: src\n    target: dst\n    mode: full\n    batch_size: 5000\n",
    )
    .unwrap();
    // Every commit prints a line.
    let out = siphon_with(
        dir.path(),
        &["run", "-f", "siphon.yaml", "--once"],
        &[("SIPHON_PROGRESS_EVERY", "0s")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out);
    assert!(
        stderr.contains("load/orders: copying about 20000 rows"),
        "{stderr}"
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("load/orders: ") && l.contains(" rows/s, eta "))
        .collect();
    assert!(!lines.is_empty(), "a line per commit:\n{stderr}");
    assert!(
        lines[lines.len() - 1].starts_with("load/orders: 20000/20000 rows (100%)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no escape codes off a terminal: {stderr}"
    );

    // An unreadable interval is said, and the default (10 s) is kept.
    std::fs::remove_file(dir.path().join("target.db")).unwrap();
    std::fs::remove_file(dir.path().join("state.db")).unwrap();
    let out = siphon_with(
        dir.path(),
        &["run", "-f", "siphon.yaml", "--once"],
        &[("SIPHON_PROGRESS_EVERY", "soon")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out);
    assert!(
        stderr.contains("SIPHON_PROGRESS_EVERY=\"soon\""),
        "{stderr}"
    );
    assert!(stderr.contains("load/orders: copying"), "{stderr}");
}

#[test]
fn a_cdc_copy_ends_its_progress_lines_and_streamed_changes_are_not_counted_in_them() {
    let my = MariaDb::shared().unwrap();
    let db = db_name(&my.create_database().unwrap());
    my.query_in(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v int); \
         INSERT INTO t SELECT seq, seq FROM seq_1_to_2000;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.db");
    config(
        dir.path(),
        &my.url_for(&db),
        &format!("sqlite://{}", target.display()),
        "cdc",
        &format!("[{db}.t]"),
        "schedule: continuous\nbatch_size: 500",
    );
    let mut cmd = command(dir.path(), &["run", "-f", "siphon.yaml"]);
    cmd.env("SIPHON_PROGRESS_EVERY", "0s");
    let mut run = Running::spawn(cmd, &dir.path().join("siphon.log"));
    let within = Duration::from_secs(120);
    let copied = format!("p/{db}.t: copied 2000 rows; streaming");
    wait_for("the copy is complete", within, || {
        assert!(run.running(), "{}", run_log(dir.path()));
        run_log(dir.path()).contains(&copied)
    });
    // Streamed changes: three batches' worth.
    my.query_in(
        &db,
        "INSERT INTO t SELECT seq, seq FROM seq_3001_to_4500; UPDATE t SET v = -v;",
    )
    .unwrap();
    let rows = |sql: &str| -> i64 {
        Connection::open(&target)
            .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
            .unwrap_or(-1)
    };
    wait_for("the changes are applied", within, || {
        assert!(run.running(), "{}", run_log(dir.path()));
        rows("SELECT count(*) FROM t WHERE v < 0") == 3500
    });
    assert!(run.stop("TERM", within), "{}", run_log(dir.path()));
    let log = run_log(dir.path());
    let after = &log[log.find(&copied).expect("the copy's last line")..];
    assert!(
        !after.contains(" rows/s"),
        "progress lines after the copy was complete:\n{log}"
    );
    let last = log
        .lines()
        .rfind(|l| l.starts_with(&format!("p/{db}.t: ")) && l.contains(" rows/s"))
        .expect("progress lines of the copy");
    assert!(last.contains("2000/"), "{log}");
}
