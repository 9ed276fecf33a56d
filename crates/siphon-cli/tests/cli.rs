//! The `siphon` binary as a user runs it: config errors and exit codes, the
//! quickstart, and a full load killed with SIGKILL halfway and resumed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use siphon_core::StateStore;

mod support;
use support::{siphon, text};

/// Writes a config, runs `siphon run -f` on it, and returns the exit code and output.
fn run_config(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("siphon.yaml"), yaml).unwrap();
    let out = siphon(dir.path(), &["run", "-f", "siphon.yaml", "--once"]);
    (out.status.code().unwrap_or(-1), text(&out))
}

#[test]
fn bad_config_exits_2_naming_the_key_and_hiding_secrets() {
    let cases: &[(&str, &[&str])] = &[
        (
            "connections:\n  a: sqlite://a.db\npipelines:\n  p:\n    source: a\n    target: a\n    colour: red\n",
            &["pipelines.p", "unknown field `colour`", "line 7"],
        ),
        (
            "connections:\n  a: sqlite://a.db\npipelines:\n  p:\n    source: a\n    target: b\n",
            &["pipelines.p.target: unknown connection `b`", "defined: a"],
        ),
        (
            "connections:\n  app: postgres://app:hunter2@db:99999/app\n",
            &["connections.app: cannot parse URL", "99999", "app:***@db"],
        ),
        (
            // Stored unexpanded; needed when the pipeline opens the connection.
            "connections:\n  app: postgres://app:${SIPHON_TEST_UNSET_PW}@db/app\n  out: sqlite://out.db\n\
             pipelines:\n  p:\n    source: app\n    target: out\n",
            &["connections.app: environment variable SIPHON_TEST_UNSET_PW is not set"],
        ),
        ("pipelines: [1, 2]\n", &["pipelines: invalid type"]),
    ];
    for (yaml, wanted) in cases {
        let (code, out) = run_config(yaml);
        assert_eq!(code, 2, "{yaml}\n{out}");
        for w in *wanted {
            assert!(out.contains(w), "expected `{w}` in:\n{out}");
        }
        assert!(!out.contains("hunter2"), "secret leaked:\n{out}");
    }
}

#[test]
fn secrets_stay_hidden_when_a_connection_cannot_be_used() {
    // A kind siphon cannot replicate yet: a config error.
    let yaml =
        "connections:\n  app: sqlserver://app:hunter2@127.0.0.1:1/app\n  out: sqlite://out.db\n\
                pipelines:\n  p:\n    source: app\n    target: out\n";
    let (code, out) = run_config(yaml);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("sqlserver://app:***@127.0.0.1:1/app"), "{out}");
    assert!(!out.contains("hunter2"), "secret leaked:\n{out}");
    // A server that does not answer: a failure, named, without the password.
    for scheme in ["postgres", "mysql"] {
        let yaml = yaml.replace("sqlserver://", &format!("{scheme}://"));
        let (code, out) = run_config(&yaml);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains(&format!(
                "connection `app` ({scheme}://app:***@127.0.0.1:1/app)"
            )),
            "{out}"
        );
        assert!(!out.contains("hunter2"), "secret leaked:\n{out}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        siphon(dir.path(), &["run", "--no-such-flag"]).status.code(),
        Some(2)
    );
    let out = siphon(dir.path(), &["run", "--once", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no pipelines are defined") || text(&out).contains("unknown pipeline")
    );
}

#[test]
fn quickstart_copies_changes_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let out = siphon(
        dir.path(),
        &["quickstart", "--dir", "demo", "--rows", "20000"],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("100 updated, 40 inserted, 20 deleted"), "{t}");
    assert!(t.contains("exactly the changes made"), "{t}");
    assert!(t.contains("source and target match"), "{t}");
    assert_eq!(t.matches("  match").count(), 2, "{t}");
    // The config it wrote runs again and finds nothing new.
    let again = siphon(dir.path(), &["run", "-f", "demo/siphon.yaml", "--once"]);
    let t = text(&again);
    assert!(again.status.success(), "{t}");
    assert!(t.contains("read         0"), "{t}");
}

const ROWS: i64 = 1_000_000;

fn build_source(path: &Path) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(&format!(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, amount NUMERIC(12,2),
           note TEXT, paid BOOLEAN, placed_at TIMESTAMP, ref UUID);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
         INSERT INTO orders SELECT i, i % 997, printf('%d.%02d', i / 100, i % 100),
           CASE WHEN i % 7 = 0 THEN NULL ELSE 'note ' || i || ' ✓' END, i % 2,
           datetime(1700000000 + i, 'unixepoch'), printf('%08x-0000-4000-8000-%012x', i, i * 7)
         FROM n;"
    ))
    .unwrap();
}

#[test]
fn a_full_load_killed_halfway_resumes_from_its_last_chunk() {
    let dir = tempfile::tempdir().unwrap();
    build_source(&dir.path().join("source.db"));
    std::fs::write(
        dir.path().join("siphon.yaml"),
        "state: sqlite://state.db\nconnections:\n  src: sqlite://source.db\n  dst: sqlite://target.db\n\
         pipelines:\n  load:\n    source: src\n    target: dst\n    mode: full\n",
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_siphon"))
        .args(["run", "-f", "siphon.yaml", "--once"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until about half the rows are on the target, then kill without warning.
    let target = dir.path().join("target.db");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        assert!(Instant::now() < deadline, "the load did not reach half way");
        assert!(
            child.try_wait().unwrap().is_none(),
            "siphon ended before it was killed"
        );
        let copied = Connection::open(&target)
            .and_then(|c| c.query_row("SELECT count(*) FROM orders", [], |r| r.get::<_, i64>(0)))
            .unwrap_or(0);
        if copied >= ROWS / 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // What is on the target is exactly what the checkpoint says: the checkpoint
    // committed with the rows.
    let c = Connection::open(&target).unwrap();
    let (copied, max_id): (i64, i64) = c
        .query_row("SELECT count(*), max(id) FROM orders", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let cp: String = c
        .query_row(
            "SELECT checkpoint FROM siphon_checkpoints WHERE tbl = 'orders'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let cp: serde_json::Value = serde_json::from_str(&cp).unwrap();
    assert_eq!(cp["phase"], "snapshot", "{cp}");
    assert_eq!(cp["last_key"]["key"][0]["int"], max_id, "{cp}");
    assert_eq!(
        copied, max_id,
        "rows beyond the checkpoint or gaps below it"
    );
    assert!(copied < ROWS);
    drop(c);

    let out = siphon(dir.path(), &["run", "-f", "siphon.yaml", "--once"]);
    assert!(out.status.success(), "{}", text(&out));

    // The second run read only the rest: it did not start over.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let executions = rt.block_on(async {
        let state = siphon_state::SqliteStateStore::open(dir.path().join("state.db"))
            .await
            .unwrap();
        state.executions(Some("load"), 10).await.unwrap()
    });
    assert_eq!(executions.len(), 2);
    let resumed = &executions[0].tables[0];
    assert_eq!(resumed.rows_read, (ROWS - copied) as u64, "{resumed:?}");
    assert_eq!(resumed.inserted, (ROWS - copied) as u64);

    // Row for row, the target equals the source.
    let c = Connection::open(&target).unwrap();
    c.execute(
        "ATTACH ?1 AS s",
        [dir.path().join("source.db").to_str().unwrap()],
    )
    .unwrap();
    let count: i64 = c
        .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, ROWS);
    for q in [
        "SELECT count(*) FROM (SELECT * FROM s.orders EXCEPT SELECT * FROM main.orders)",
        "SELECT count(*) FROM (SELECT * FROM main.orders EXCEPT SELECT * FROM s.orders)",
    ] {
        let diff: i64 = c.query_row(q, [], |r| r.get(0)).unwrap();
        assert_eq!(diff, 0, "{q}");
    }
}

#[test]
fn run_follows_the_schedule_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let src = Connection::open(dir.path().join("source.db")).unwrap();
    src.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, updated_at TIMESTAMP);
         INSERT INTO t VALUES (1, 'a', '2026-01-01 00:00:00');",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("siphon.yaml"),
        "state: sqlite://state.db\nconnections:\n  src: sqlite://source.db\n  dst: sqlite://target.db\n\
         pipelines:\n  follow:\n    source: src\n    target: dst\n    mode: incremental\n    cursor: updated_at\n\
         \x20   schedule: every 1s\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_siphon"))
        .args(["run", "-f", "siphon.yaml"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let target = dir.path().join("target.db");
    let count = |sql: &str| {
        Connection::open(&target)
            .and_then(|c| c.query_row(sql, [], |r| r.get::<_, i64>(0)))
            .unwrap_or(0)
    };
    let wait_for = |sql: &str, want: i64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while count(sql) != want {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {sql} = {want}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("SELECT count(*) FROM t", 1);
    // Changes made while it runs arrive on the next scheduled pass.
    src.execute("INSERT INTO t VALUES (2, 'b', '2026-01-01 00:00:01')", [])
        .unwrap();
    src.execute(
        "UPDATE t SET v = 'z', updated_at = '2026-01-01 00:00:02' WHERE id = 1",
        [],
    )
    .unwrap();
    wait_for("SELECT count(*) FROM t WHERE v IN ('b', 'z')", 2);

    // SIGTERM stops it gracefully, with exit code 0.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "siphon did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(code.success(), "{code:?}\n{err}");
    assert!(err.contains("stopping after the current chunk"), "{err}");
}
