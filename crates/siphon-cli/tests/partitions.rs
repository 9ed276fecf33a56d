//! The binary with a partitioned PostgreSQL table, against a real server from
//! the testkit: a pattern that names only partitions, or only views, is warned
//! about with what to select instead, and the partitioned table itself is
//! copied as a partitioned table.

use std::process::Command;

use siphon_testkit::Postgres;

#[test]
fn patterns_naming_only_partitions_or_views_are_warned_about() {
    let pg = Postgres::shared().unwrap();
    let src = pg.create_database().unwrap();
    let dst = pg.create_database().unwrap();
    let (src_db, dst_db) = (
        src.rsplit('/').next().unwrap(),
        dst.rsplit('/').next().unwrap(),
    );
    pg.query_in(
        src_db,
        "CREATE TABLE m (id int, day date, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
         CREATE TABLE m_2024 PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         CREATE TABLE m_2025 PARTITION OF m FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         CREATE TABLE plain (id int PRIMARY KEY);
         CREATE VIEW recent AS SELECT * FROM m WHERE day > '2025-01-01';
         INSERT INTO m VALUES (1, '2024-02-02'), (2, '2025-02-02');",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("siphon.yaml"),
        format!(
            "state: sqlite://state.db\nconnections:\n  src: {src}\n  dst: {dst}\n\
             pipelines:\n\
             \x20 parts:\n    source: src\n    target: dst\n    mode: full\n    tables: [public.m_*]\n\
             \x20 views:\n    source: src\n    target: dst\n    mode: full\n    tables: [public.rec*]\n\
             \x20 whole:\n    source: src\n    target: dst\n    mode: full\n    tables: [public.m]\n\
             \x20 others:\n    source: src\n    target: dst\n    mode: full\n    tables: [public.*]\n    exclude: [public.m]\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_siphon"))
        .args(["run", "-f", "siphon.yaml", "--once"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`public.m_*` names no table siphon copies")
            && stderr.contains("public.m_2024 is a partition of public.m: select public.m")
            && stderr.contains("public.m_2025 is a partition of public.m: select public.m"),
        "{stderr}"
    );
    assert!(
        stderr.contains("public.recent is a view, which holds no rows of its own"),
        "{stderr}"
    );
    // Neither the pipeline that selects the partitioned table nor the one that
    // excludes it is warned about its partitions.
    assert_eq!(
        stderr.matches("is a partition of").count(),
        2,
        "one warning per pattern: {stderr}"
    );
    assert_eq!(
        pg.query_in(
            dst_db,
            "SELECT string_agg(c.relname || ' ' || pg_get_expr(c.relpartbound, c.oid), ', ' ORDER BY c.relname) \
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'public.m'::regclass"
        )
        .unwrap(),
        "m_2024 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01'), \
         m_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')"
    );
    assert_eq!(
        pg.query_in(dst_db, "SELECT count(*) FROM ONLY m_2025")
            .unwrap(),
        "1"
    );
}
