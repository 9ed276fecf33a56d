//! Progress of a full load when stderr is not a terminal: plain lines (the
//! table, rows done of the estimate, rows/s, eta) instead of bars.

use rusqlite::Connection;

mod support;
use support::{ok, siphon_with};

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
