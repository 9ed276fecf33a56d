//! An `incremental` pipeline with no cursor column anywhere is refused when it
//! is stored (`sync add`, `apply`), rather than stored and then failing every
//! table at every run; a cursor per table in `tables_config` is enough.

use rusqlite::Connection;

mod support;
use support::{ok, siphon, text};

#[test]
fn incremental_without_a_cursor_is_refused_when_stored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    Connection::open(d.join("src.db"))
        .unwrap()
        .execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, at TEXT);
             INSERT INTO t VALUES (1, '2024-01-01 00:00:00'), (2, '2024-01-02 00:00:00');",
        )
        .unwrap();
    ok(siphon(d, &["connection", "add", "s", "sqlite://src.db"]));
    ok(siphon(d, &["connection", "add", "t", "sqlite://dst.db"]));

    let out = siphon(
        d,
        &[
            "sync",
            "add",
            "p",
            "--source",
            "s",
            "--target",
            "t",
            "--mode",
            "incremental",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--cursor"), "{}", text(&out));
    assert!(
        !ok(siphon(d, &["sync", "list"])).contains("p:"),
        "the pipeline was stored"
    );

    // A table's own mode without a cursor is refused from a file too.
    std::fs::write(
        d.join("siphon.yaml"),
        "connections:\n  s: sqlite://src.db\n  t: sqlite://dst.db\npipelines:\n  q:\n    source: s\n    \
         target: t\n    tables_config:\n      t: { mode: incremental }\n",
    )
    .unwrap();
    let out = siphon(d, &["apply"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("pipelines.q.tables_config.t"),
        "{}",
        text(&out)
    );

    // A cursor per table is enough.
    std::fs::write(
        d.join("siphon.yaml"),
        "connections:\n  s: sqlite://src.db\n  t: sqlite://dst.db\npipelines:\n  q:\n    source: s\n    \
         target: t\n    mode: incremental\n    tables_config:\n      t: { cursor: at }\n",
    )
    .unwrap();
    let out = ok(siphon(d, &["run", "--once"]));
    assert!(out.contains("succeeded"), "{out}");
    ok(siphon(
        d,
        &[
            "sync",
            "add",
            "p",
            "--source",
            "s",
            "--target",
            "t",
            "--mode",
            "incremental",
            "--cursor",
            "at",
        ],
    ));
}
