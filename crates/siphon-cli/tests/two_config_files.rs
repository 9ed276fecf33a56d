//! Two config files sharing one state store: connection names are shared by
//! everything in a store, so a file that would store a connection another
//! file's pipeline uses with a different URL is refused, and each file's
//! pipelines keep reading and writing their own databases.

use std::path::Path;

use rusqlite::Connection;

mod support;
use support::{ok, siphon, text};

/// A SQLite file at `path` with table `t` holding `values`.
fn source(path: &Path, values: &[&str]) {
    let c = Connection::open(path).unwrap();
    c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    for (i, v) in values.iter().enumerate() {
        c.execute("INSERT INTO t VALUES (?1, ?2)", (i as i64 + 1, v))
            .unwrap();
    }
}

/// The values of `t` in `path`, by id; empty when the file or table is missing.
fn values(path: &Path) -> Vec<String> {
    let Ok(c) = Connection::open(path) else {
        return Vec::new();
    };
    let Ok(mut q) = c.prepare("SELECT v FROM t ORDER BY id") else {
        return Vec::new();
    };
    q.query_map([], |r| r.get(0))
        .unwrap()
        .map(|v| v.unwrap())
        .collect()
}

#[test]
fn a_file_cannot_repoint_a_connection_another_files_pipeline_uses() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    source(&d.join("a.db"), &["from a"]);
    source(&d.join("b.db"), &["from b", "from b too"]);
    for (file, pipeline, src, dst) in [
        ("a.yaml", "pa", "a.db", "a_copy.db"),
        ("b.yaml", "pb", "b.db", "b_copy.db"),
    ] {
        std::fs::write(
            d.join(file),
            format!(
                "state: sqlite://state.db\nconnections:\n  src: sqlite://{src}\n  dst: sqlite://{dst}\n\
                 pipelines:\n  {pipeline}: {{ source: src, target: dst, mode: full }}\n"
            ),
        )
        .unwrap();
    }
    ok(siphon(d, &["run", "-f", "a.yaml", "--once"]));
    assert_eq!(values(&d.join("a_copy.db")), ["from a"]);

    // b.yaml names its connections like a.yaml's, with other files.
    let out = siphon(d, &["run", "-f", "b.yaml", "--once"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("connections.") && said.contains("pipeline pa"),
        "{said}"
    );
    assert!(values(&d.join("b_copy.db")).is_empty());

    // pa, run from the store, still copies a.db into a_copy.db only.
    Connection::open(d.join("a.db"))
        .unwrap()
        .execute("INSERT INTO t VALUES (2, 'from a again')", [])
        .unwrap();
    ok(siphon(
        d,
        &["--state", "sqlite://state.db", "run", "pa", "--once"],
    ));
    assert_eq!(values(&d.join("a_copy.db")), ["from a", "from a again"]);
    assert!(values(&d.join("b_copy.db")).is_empty());

    // A file whose connections differ in name is stored beside the first.
    let b = std::fs::read_to_string(d.join("b.yaml"))
        .unwrap()
        .replace("src", "src_b")
        .replace("dst", "dst_b");
    std::fs::write(d.join("b.yaml"), b).unwrap();
    ok(siphon(d, &["run", "-f", "b.yaml", "--once"]));
    assert_eq!(values(&d.join("b_copy.db")), ["from b", "from b too"]);
    ok(siphon(d, &["run", "-f", "a.yaml", "--once"]));
    assert_eq!(values(&d.join("a_copy.db")), ["from a", "from a again"]);
}
