//! The binary with PostgreSQL on both sides, against a real server from the
//! testkit: a full load killed with SIGKILL halfway resumes from its last chunk,
//! whether one worker or several (`parallel`) load the table, and whether rows
//! pass through in binary or are decoded (column types differ on the target).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use siphon_testkit::Postgres;

const ROWS: i64 = 300_000;

#[test]
fn a_postgres_load_killed_halfway_resumes_and_matches_row_for_row() {
    kill_halfway_and_resume(1, false);
}

#[test]
fn a_parallel_postgres_load_killed_halfway_resumes_every_range() {
    kill_halfway_and_resume(3, false);
}

#[test]
fn a_parallel_decoded_load_killed_halfway_resumes_every_range() {
    kill_halfway_and_resume(4, true);
}

/// Starts a full load with `parallel` workers, kills it with SIGKILL once half
/// the rows are on the target, checks the checkpoint claims no row the target
/// lacks, and resumes it to the end. With `decoded`, the target's `note` column
/// is wider than the source's, so rows are decoded rather than passed through.
fn kill_halfway_and_resume(parallel: u32, decoded: bool) {
    let pg = Postgres::start().unwrap();
    let src = pg.create_database().unwrap();
    let dst = pg.create_database().unwrap();
    let (src_db, dst_db) = (
        src.rsplit('/').next().unwrap(),
        dst.rsplit('/').next().unwrap(),
    );
    pg.query_in(
        src_db,
        &format!(
            "CREATE TABLE orders (id bigint PRIMARY KEY, customer integer NOT NULL, amount numeric(12,2), note {note},
               paid boolean, placed timestamptz, ref uuid, tags text[]);
             INSERT INTO orders SELECT i, i % 997, i * 0.01, CASE WHEN i % 7 = 0 THEN NULL ELSE 'note ' || i END,
               i % 2 = 0, timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second', md5(i::text)::uuid,
               ARRAY['a' || i, 'b'] FROM generate_series(1, {ROWS}) i;",
            note = if decoded { "varchar(40)" } else { "text" }
        ),
    )
    .unwrap();
    if decoded {
        pg.query_in(
            dst_db,
            "CREATE TABLE orders (id bigint PRIMARY KEY, customer integer NOT NULL, amount numeric(12,2), note text,
               paid boolean, placed timestamptz, ref uuid, tags text[]);",
        )
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("siphon.yaml"),
        format!(
            "state: sqlite://state.db\nconnections:\n  src: {src}\n  dst: {dst}\n\
             pipelines:\n  load:\n    source: src\n    target: dst\n    mode: full\n    tables: [public.orders]\n\
             \x20   parallel: {parallel}\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_siphon"))
        .args(["run", "-f", "siphon.yaml", "--once"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let copied = || {
        pg.query_in(dst_db, "SELECT count(*) FROM public.orders")
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    while copied() < ROWS / 2 {
        assert!(Instant::now() < deadline, "the load did not reach half way");
        assert!(
            child.try_wait().unwrap().is_none(),
            "siphon ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let at_kill: i64 = copied();
    assert!(at_kill < ROWS);
    let claimed = if parallel == 1 {
        // The checkpoint committed with the rows: it names the last row on the target.
        let last = pg
            .query_in(
                dst_db,
                "SELECT (checkpoint::jsonb #>> '{last_key,key,0,value}') || '/' || (SELECT max(id) FROM orders) \
                 FROM siphon_checkpoints WHERE tbl = 'public.orders'",
            )
            .unwrap();
        assert_eq!(last, format!("{at_kill}/{at_kill}"));
        at_kill
    } else {
        // One progress key per range; every row up to a range's progress is on
        // the target (ids are 1..=ROWS), so the checkpoint is never ahead of it.
        let ranges = pg
            .query_in(
                dst_db,
                "SELECT string_agg(coalesce(e #>> '{after,key,0,value}', '-') || ':' || coalesce(e #>> '{until,key,0,value}', '-'), ' ' \
                 ORDER BY n) FROM siphon_checkpoints, \
                 jsonb_array_elements(checkpoint::jsonb -> 'ranges') WITH ORDINALITY AS r(e, n) \
                 WHERE tbl = 'public.orders'",
            )
            .unwrap();
        let ranges: Vec<(Option<i64>, Option<i64>)> = ranges
            .split(' ')
            .map(|r| {
                let (p, u) = r.split_once(':').unwrap();
                (p.parse().ok(), u.parse().ok())
            })
            .collect();
        assert_eq!(ranges.len(), parallel as usize, "{ranges:?}");
        let mut start = 0;
        let mut claimed = 0;
        for (progress, until) in &ranges {
            let progress = progress.unwrap_or(start);
            let present: i64 = pg
                .query_in(
                    dst_db,
                    &format!("SELECT count(*) FROM orders WHERE id > {start} AND id <= {progress}"),
                )
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(present, progress - start, "{ranges:?}");
            claimed += progress - start;
            start = until.unwrap_or(ROWS);
        }
        assert!(claimed > 0 && claimed <= at_kill, "{claimed} {at_kill}");
        claimed
    };

    let out = Command::new(env!("CARGO_BIN_EXE_siphon"))
        .args(["run", "-f", "siphon.yaml", "--once"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Only what the checkpoint did not claim was read.
    assert!(
        text.contains(&format!("read {:>9}", ROWS - claimed)),
        "{text}"
    );

    // Row for row (by PostgreSQL's own text form), the target equals the source.
    let digest =
        "SELECT md5(string_agg(o::text, ',' ORDER BY id)) || ' ' || count(*) FROM orders o";
    assert_eq!(
        pg.query_in(dst_db, digest).unwrap(),
        pg.query_in(src_db, digest).unwrap()
    );
}
