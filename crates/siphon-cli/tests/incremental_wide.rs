//! Incremental polling of wide rows in bounded memory, through the binary
//! from MariaDB into PostgreSQL with a `batch_size` far above the rows there
//! are. Polls stop at a byte budget, not only at `batch_size` rows: a
//! continuously running pipeline copies a transaction of 20 MiB blobs while
//! siphon's peak resident set (`VmHWM`, read while it still runs) stays
//! below the bytes of the rows. Then one `run --once` pass copies rows that
//! share one cursor value, wide and narrow mixed (so the row limit of its
//! polls shrinks and grows between polls inside a run of equal cursor
//! values), and finds a deleted row by `delete_detection: key_diff`. Each time
//! the target ends equal to the source (every row's length and md5).
//!
//! Every wait polls a condition with a deadline; no fixed sleep is used.

use std::time::Duration;

use siphon_testkit::{MariaDb, Postgres};

mod support;
use support::{command, ok, siphon, Running};

/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(300);

/// Bytes of each wide row's blob.
const ROW: usize = 20 << 20;

/// Wide rows of the transaction the running pipeline polls.
const ROWS: usize = 15;

/// The pipeline's `batch_size`: far more rows than the table ever holds.
const BATCH: usize = 10_000;

const MIB: u64 = 1 << 20;

/// A MariaDB source database, a PostgreSQL target database, and a working
/// directory whose config polls table `w` by its `seq` column.
struct Setup {
    my: &'static MariaDb,
    pg: &'static Postgres,
    src: String,
    dst: String,
    dir: tempfile::TempDir,
}

impl Setup {
    /// Creates `w (id int PRIMARY KEY, seq bigint, body longblob)` at the
    /// source and writes a continuous `incremental` config by `seq`.
    fn new() -> Setup {
        let my = MariaDb::shared().unwrap();
        let pg = Postgres::shared().unwrap();
        let name = |url: String| url.rsplit('/').next().unwrap().to_string();
        let s = Setup {
            my,
            pg,
            src: name(my.create_database().unwrap()),
            dst: name(pg.create_database().unwrap()),
            dir: tempfile::tempdir().unwrap(),
        };
        s.src_sql(
            "CREATE TABLE w (id int PRIMARY KEY, seq bigint NOT NULL, body longblob NOT NULL)",
        );
        std::fs::write(
            s.dir.path().join("siphon.yaml"),
            format!(
                "state: sqlite://state.db\nconnections:\n  src: {}\n  dst: {}\n\
                 pipelines:\n  p:\n    source: src\n    target: dst\n    mode: incremental\n\
                 \x20   cursor: seq\n    strategy: sequence\n    delete_detection: key_diff\n\
                 \x20   batch_size: {BATCH}\n    tables: [{}.w]\n    schedule: continuous\n",
                my.url_for(&s.src),
                pg.url_for(&s.dst),
                s.src
            ),
        )
        .unwrap();
        s
    }

    fn src_sql(&self, sql: &str) -> String {
        self.my.query_in(&self.src, sql).unwrap()
    }

    /// The statement inserting row `id` with cursor value `seq` and a blob
    /// of `len` bytes (at least 16) that differs from row to row.
    fn insert(id: usize, seq: usize, len: usize) -> String {
        format!(
            "INSERT INTO w VALUES ({id}, {seq}, CONCAT('{id:05}:', REPEAT(CHAR(65 + {id} % 26), {len} - 14), 'end{id:05}'));"
        )
    }

    /// Every row's id, cursor, length and md5, by the source server.
    fn src_digest(&self) -> String {
        self.src_sql(
            "SELECT GROUP_CONCAT(CONCAT(id, ':', seq, ':', LENGTH(body), ':', MD5(body)) \
             ORDER BY id) FROM w",
        )
        .trim()
        .to_string()
    }

    /// [`Setup::src_digest`] by the target server.
    fn dst_digest(&self) -> String {
        self.pg
            .query_in(
                &self.dst,
                &format!(
                    "SELECT string_agg(id || ':' || seq || ':' || length(body) || ':' || md5(body), \
                     ',' ORDER BY id) FROM \"{}\".w",
                    self.src
                ),
            )
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// The target's row count, or -1 while it has no table.
    fn dst_rows(&self) -> i64 {
        self.pg
            .query_in(
                &self.dst,
                &format!("SELECT count(*) FROM \"{}\".w", self.src),
            )
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(-1)
    }

    /// `siphon run -f siphon.yaml` as a child, its log in `siphon.log`.
    fn spawn(&self) -> Running {
        let cmd = command(self.dir.path(), &["run", "-f", "siphon.yaml"]);
        Running::spawn_appending(cmd, &self.dir.path().join("siphon.log"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("siphon.log")).unwrap_or_default()
    }

    /// Waits until the target holds `rows` rows, while siphon runs.
    fn wait_rows(&self, siphon: &mut Running, rows: i64) {
        support::wait_for(&format!("the target holds {rows} rows"), DEADLINE, || {
            assert!(siphon.running(), "siphon ended: {}", self.log());
            self.dst_rows() == rows
        });
    }
}

/// The peak resident set size of process `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"))
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

#[test]
fn incremental_polls_of_wide_rows_stay_within_the_byte_budget() {
    let s = Setup::new();
    s.src_sql(&Setup::insert(0, 0, 16));
    let mut run = s.spawn();
    s.wait_rows(&mut run, 1);
    let before = peak_rss(run.pid());

    // One source transaction of wide rows, each with a cursor value of its own.
    let wide: String = (1..=ROWS).map(|i| Setup::insert(i, i, ROW)).collect();
    s.src_sql(&format!("BEGIN; {wide} COMMIT;"));
    let rows = (ROWS * ROW) as u64;
    s.wait_rows(&mut run, ROWS as i64 + 1);
    let peak = peak_rss(run.pid());
    assert!(
        run.stop("TERM", DEADLINE),
        "siphon failed after SIGTERM: {}",
        s.log()
    );
    assert_eq!(s.dst_digest(), s.src_digest());
    eprintln!(
        "incremental: {ROWS} rows, {} MiB, batch_size {BATCH}; siphon's peak RSS {} MiB \
         ({} MiB before them)",
        rows / MIB,
        peak / MIB,
        before / MIB
    );
    // Polls of `batch_size` rows hold them all at once, each more than twice
    // over (about 700 MiB here); polls within the byte budget one at a time.
    assert!(
        peak < rows,
        "siphon's peak RSS {} MiB is not below the {} MiB of the rows it polled: \
         its polls held the wide rows all at once",
        peak / MIB,
        rows / MIB
    );

    // Rows sharing one cursor value, above the watermark: narrow ones, and
    // every eighth wide. The polls' row limit grows over the narrow rows and
    // shrinks at the wide ones, each poll resuming after the last (cursor,
    // key) read, all within the same cursor value; a poll that returns as
    // many rows as it asked for is followed by another. One pass must copy
    // them all, and delete the row gone from the source.
    let tied: String = (100..140)
        .map(|id| Setup::insert(id, 1_000, if id % 8 == 3 { ROW } else { 100 }))
        .collect();
    s.src_sql(&format!(
        "BEGIN; {tied} DELETE FROM w WHERE id = 5; COMMIT;"
    ));
    ok(siphon(
        s.dir.path(),
        &["run", "-f", "siphon.yaml", "--once"],
    ));
    assert_eq!(s.dst_rows(), ROWS as i64 + 40);
    assert_eq!(s.dst_digest(), s.src_digest());
}
