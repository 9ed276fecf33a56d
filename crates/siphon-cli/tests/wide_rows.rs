//! Wide rows in bounded memory, through the binary from MariaDB into
//! PostgreSQL: a full load of a table of 20 MiB blobs, and one source
//! transaction of such rows while a `cdc` pipeline streams. Each time the
//! target ends equal to the source (every row's md5), and siphon's peak
//! resident set (`VmHWM`, read while it still runs) stays below the bytes of
//! the rows copied: chunks and batches stop at a byte budget, not only at
//! `batch_size` rows, so siphon never holds all of them at once.
//!
//! Every wait polls a condition with a deadline; no fixed sleep is used.

use std::time::Duration;

use siphon_testkit::{MariaDb, Postgres};

mod support;
use support::{command, Running};

/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(300);

/// Bytes of each row's blob.
const ROW: usize = 20 << 20;

/// Rows of the full load, and of the streamed transaction.
const ROWS: usize = 20;

/// A MariaDB source database, a PostgreSQL target database, and a working
/// directory for one continuously running pipeline over table `w`.
struct Setup {
    my: &'static MariaDb,
    pg: &'static Postgres,
    src: String,
    dst: String,
    dir: tempfile::TempDir,
}

impl Setup {
    /// Creates `w (id int PRIMARY KEY, body longblob)` at the source and
    /// writes a config with `mode` and `schedule`.
    fn new(mode: &str, schedule: &str) -> Setup {
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
        s.src_sql("CREATE TABLE w (id int PRIMARY KEY, body longblob NOT NULL)");
        std::fs::write(
            s.dir.path().join("siphon.yaml"),
            format!(
                "state: sqlite://state.db\nconnections:\n  src: {}\n  dst: {}\n\
                 pipelines:\n  p:\n    source: src\n    target: dst\n    mode: {mode}\n\
                 \x20   tables: [{}.w]\n    schedule: {schedule}\n",
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

    /// The statement inserting rows `ids`, each a blob of [`ROW`] bytes that
    /// differs from row to row.
    fn insert(ids: std::ops::Range<usize>) -> String {
        ids.map(|i| {
            format!(
                "INSERT INTO w VALUES ({i}, CONCAT('{i}:', REPEAT(CHAR(65 + {i} % 26), {ROW} - 8), 'end{i:05}'));"
            )
        })
        .collect()
    }

    /// Every row's id, length and md5, by the source server.
    fn src_digest(&self) -> String {
        self.src_sql(
            "SELECT GROUP_CONCAT(CONCAT(id, ':', LENGTH(body), ':', MD5(body)) ORDER BY id) FROM w",
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
                    "SELECT string_agg(id || ':' || length(body) || ':' || md5(body), ',' ORDER BY id) \
                     FROM \"{}\".w",
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

const MIB: u64 = 1 << 20;

#[test]
fn a_full_load_of_wide_rows_peaks_below_the_size_of_the_table() {
    let s = Setup::new("full", "every 1h");
    s.src_sql(&Setup::insert(0..ROWS));
    let table = (ROWS * ROW) as u64;
    let mut siphon = s.spawn();
    s.wait_rows(&mut siphon, ROWS as i64);
    let peak = peak_rss(siphon.pid());
    assert!(
        siphon.stop("TERM", DEADLINE),
        "siphon failed after SIGTERM: {}",
        s.log()
    );
    assert_eq!(s.dst_digest(), s.src_digest());
    eprintln!(
        "full load: {ROWS} rows, {} MiB; siphon's peak RSS {} MiB",
        table / MIB,
        peak / MIB
    );
    assert!(
        peak < table,
        "siphon's peak RSS {} MiB is not below the {} MiB of the table it loaded: \
         it held the whole table at once",
        peak / MIB,
        table / MIB
    );
}

#[test]
fn a_transaction_of_wide_rows_streams_below_its_size() {
    let s = Setup::new("cdc", "continuous");
    s.src_sql("INSERT INTO w VALUES (0, 'small')");
    let mut siphon = s.spawn();
    support::wait_for("the table streams", DEADLINE, || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.dst_rows() == 1
            && rusqlite::Connection::open(s.dir.path().join("state.db"))
                .and_then(|db| {
                    db.query_row(
                        "SELECT state FROM stream_states WHERE pipeline = 'p'",
                        [],
                        |r| r.get::<_, String>(0),
                    )
                })
                .is_ok_and(|state| state.contains("streaming"))
    });
    let before = peak_rss(siphon.pid());
    // One source transaction of every wide row.
    s.src_sql(&format!("BEGIN; {} COMMIT;", Setup::insert(1..ROWS + 1)));
    let transaction = (ROWS * ROW) as u64;
    s.wait_rows(&mut siphon, ROWS as i64 + 1);
    let peak = peak_rss(siphon.pid());
    assert!(
        siphon.stop("TERM", DEADLINE),
        "siphon failed after SIGTERM: {}",
        s.log()
    );
    assert_eq!(s.dst_digest(), s.src_digest());
    eprintln!(
        "cdc: one transaction of {ROWS} rows, {} MiB; siphon's peak RSS {} MiB ({} MiB before it)",
        transaction / MIB,
        peak / MIB,
        before / MIB
    );
    assert!(
        peak < transaction,
        "siphon's peak RSS {} MiB is not below the {} MiB of the transaction it streamed: \
         it held the whole transaction at once",
        peak / MIB,
        transaction / MIB
    );
}
