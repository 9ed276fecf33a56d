//! A MariaDB→PostgreSQL `cdc` pipeline whose checkpoint the source's binlog
//! no longer reaches back to, through the binary against the testkit's real
//! servers: while siphon is stopped the source writes, rotates its binlog and
//! purges it past the checkpoint. The next `run --once` stops the table with
//! an error naming `siphon sync resync PIPELINE --table T` (exit code 1), the
//! table stays stopped on the next run, and `sync resync` then `run --once`
//! brings the target back to the source row for row. With
//! `on_lost_position: resnapshot` the table is copied again by itself.
//!
//! Each test has a MariaDB server of its own: purging binlogs is server-wide.

use std::time::Duration;

use siphon_testkit::{MariaDb, Postgres};

mod support;
use support::{fails, ok, siphon, wait_for};

/// A source database on its own MariaDB server, a target database on the
/// shared PostgreSQL, and a working directory for the config and the state.
struct Setup {
    my: MariaDb,
    pg: &'static Postgres,
    src: String,
    dst: String,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let my = MariaDb::start().unwrap();
        let name = |url: String| url.rsplit('/').next().unwrap().to_string();
        let src = name(my.create_database().unwrap());
        let pg = Postgres::shared().unwrap();
        let dst = name(pg.create_database().unwrap());
        Setup {
            my,
            pg,
            src,
            dst,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The table's name in the pipeline and in `sync resync`.
    fn table(&self) -> String {
        format!("{}.items", self.src)
    }

    /// One `cdc` pipeline `p` over `items`, with `extra` YAML lines.
    fn config(&self, extra: &str) {
        let mut yaml = format!(
            "state: sqlite://state.db\nconnections:\n  src: {}\n  dst: {}\npipelines:\n  p:\n\
             \x20   source: src\n    target: dst\n    mode: cdc\n    tables: [{}]\n",
            self.my.url_for(&self.src),
            self.pg.url_for(&self.dst),
            self.table()
        );
        for line in extra.lines() {
            yaml.push_str(&format!("    {line}\n"));
        }
        std::fs::write(self.dir.path().join("siphon.yaml"), yaml).unwrap();
    }

    fn siphon(&self, args: &[&str]) -> std::process::Output {
        siphon(self.dir.path(), args)
    }

    fn src_sql(&self, sql: &str) -> String {
        self.my
            .query_in(&self.src, &format!("SET NAMES utf8mb4; {sql}"))
            .unwrap()
    }

    /// Every row of `items` at the source, `cols` joined by `|`, sorted
    /// (`cols` is SQL that both engines read alike).
    fn source_rows(&self, cols: &str) -> Vec<String> {
        sorted(&self.src_sql(&format!("SELECT CONCAT_WS('|', {cols}) FROM items")))
    }

    /// [`Setup::source_rows`] for the target's copy.
    fn target_rows(&self, cols: &str) -> Vec<String> {
        let out = self
            .pg
            .query_in(
                &self.dst,
                &format!(
                    "SELECT string_agg(concat_ws('|', {cols}), E'\\n') FROM \"{}\".items",
                    self.src
                ),
            )
            .unwrap();
        sorted(&out)
    }

    /// The target equals the source row for row in `cols`.
    fn assert_same(&self, when: &str, cols: &str) {
        let source = self.source_rows(cols);
        assert!(!source.is_empty());
        assert_eq!(self.target_rows(cols), source, "{when}");
    }

    /// The state the store shows for the table stream.
    fn stream_state(&self) -> String {
        let db = rusqlite::Connection::open(self.dir.path().join("state.db")).unwrap();
        db.query_row(
            "SELECT state FROM stream_states WHERE pipeline = 'p' AND table_name = ?1",
            [&self.table()],
            |r| r.get(0),
        )
        .unwrap_or_default()
    }

    /// The binlog files the server keeps, oldest first.
    fn binlogs(&self) -> Vec<String> {
        self.my
            .query("SHOW BINARY LOGS")
            .unwrap()
            .lines()
            .filter_map(|l| l.split('\t').next().map(str::to_string))
            .collect()
    }

    /// While siphon is stopped: changes in several binlog files, and every
    /// file before the current one purged, the one holding the checkpoint
    /// included.
    fn write_rotate_and_purge(&self, from: i64) {
        let before = self.binlogs();
        for i in 0..3 {
            let id = from + i;
            self.src_sql(&format!(
                "INSERT INTO items VALUES ({id}, 'rotated {id} ✓', {id}.25, NULL); \
                 UPDATE items SET amount = amount + 1, note = 'moved in file {i}' WHERE id = {}; \
                 FLUSH BINARY LOGS;",
                i + 1
            ));
        }
        self.src_sql("DELETE FROM items WHERE id = 5");
        let current = self.binlogs().last().cloned().unwrap();
        // MariaDB keeps a file until its binlog checkpoint has passed it.
        wait_for(
            "the binlog is purged up to the current file",
            Duration::from_secs(120),
            || {
                self.my
                    .query(&format!("PURGE BINARY LOGS TO '{current}'"))
                    .unwrap();
                self.binlogs().first() == Some(&current)
            },
        );
        assert!(
            before.iter().all(|f| !self.binlogs().contains(f)),
            "the file holding the checkpoint was not purged: {before:?}"
        );
    }
}

fn sorted(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// The columns of `items` as created.
const COLS: &str = "id, name, amount, COALESCE(note, 'null')";
/// With the column [`add_a_column`] adds.
const COLS_NOW: &str = "id, name, amount, COALESCE(note, 'null'), extra";

/// Rows before and after a column added to `items`, in the binlog still
/// kept: a table copied again streams on from after its copy, not from the
/// oldest binlog, whose rows have the table's older shape.
fn add_a_column(s: &Setup) {
    s.src_sql(
        "INSERT INTO items VALUES (500, 'before the column', 5.00, NULL); \
         ALTER TABLE items ADD COLUMN extra int DEFAULT 5; \
         INSERT INTO items VALUES (501, 'after the column', 5.01, NULL, 51);",
    );
}

const TABLE: &str = "CREATE TABLE items (id bigint NOT NULL PRIMARY KEY, \
    name varchar(60) CHARACTER SET utf8mb4 NOT NULL, amount decimal(12,2) NOT NULL, note text); \
    INSERT INTO items SELECT seq, CONCAT('item ', seq, ' 🚀'), seq * 1.5, \
    IF(seq % 3 = 0, NULL, CONCAT('note ', seq)) FROM seq_1_to_40;";

#[test]
fn a_purged_binlog_stops_the_table_until_it_is_copied_again() {
    let s = Setup::new();
    s.src_sql(TABLE);
    s.config("");
    ok(s.siphon(&["run", "--once"]));
    s.assert_same("after the first copy", COLS);
    s.src_sql(
        "INSERT INTO items VALUES (41, 'streamed', 1.00, 'x'); DELETE FROM items WHERE id = 2",
    );
    ok(s.siphon(&["run", "--once"]));
    s.assert_same("after streaming", COLS);
    let streamed = s.target_rows(COLS);

    s.write_rotate_and_purge(100);
    let fix = format!("siphon sync resync p --table {}", s.table());
    let out = fails(s.siphon(&["run", "--once"]), 1);
    assert!(out.contains(&fix), "the fix is not named: {out}");
    assert!(out.contains(&s.table()), "the table is not named: {out}");
    let state = s.stream_state();
    assert!(state.contains("failed") && state.contains(&fix), "{state}");
    // Named once, with the real pipeline: the binlog's cause adds no other.
    assert!(!out.contains("PIPELINE"), "{out}");
    assert_eq!(state.matches("siphon sync resync").count(), 1, "{state}");
    // Nothing was copied or streamed behind the operator's back.
    assert_eq!(s.target_rows(COLS), streamed);

    // It stays stopped, whatever the source does meanwhile.
    s.src_sql("INSERT INTO items VALUES (200, 'while stopped', 2.00, NULL)");
    add_a_column(&s);
    let out = fails(s.siphon(&["run", "--once"]), 1);
    assert!(out.contains(&fix), "the fix is not named again: {out}");
    assert_eq!(s.target_rows(COLS), streamed);

    // The operator's fix: copied again, then it streams on.
    ok(s.siphon(&["sync", "resync", "p", "--table", &s.table()]));
    ok(s.siphon(&["run", "--once"]));
    s.assert_same("after sync resync", COLS_NOW);
    assert!(!s.stream_state().contains("failed"), "{}", s.stream_state());
    s.src_sql(
        "INSERT INTO items VALUES (201, 'after the fix', 3.00, 'y', 2); \
         UPDATE items SET name = 'updated after the fix' WHERE id = 100; DELETE FROM items WHERE id = 3",
    );
    ok(s.siphon(&["run", "--once"]));
    s.assert_same("streaming after sync resync", COLS_NOW);
}

#[test]
fn resnapshot_copies_a_table_whose_binlog_was_purged_again() {
    let s = Setup::new();
    s.src_sql(TABLE);
    s.config("on_lost_position: resnapshot");
    ok(s.siphon(&["run", "--once"]));
    s.assert_same("after the first copy", COLS);
    // A row only the target has is gone once the table is copied again.
    s.pg.query_in(
        &s.dst,
        &format!(
            "INSERT INTO \"{}\".items VALUES (9999, 'target only', 0, NULL)",
            s.src
        ),
    )
    .unwrap();

    s.write_rotate_and_purge(100);
    add_a_column(&s);
    let out = ok(s.siphon(&["run", "--once"]));
    assert!(out.contains("copying it again"), "{out}");
    s.assert_same("after the automatic copy", COLS_NOW);
    assert!(!s.stream_state().contains("failed"), "{}", s.stream_state());
    s.src_sql(
        "INSERT INTO items VALUES (300, 'streamed on', 4.00, NULL, 3); DELETE FROM items WHERE id = 7",
    );
    ok(s.siphon(&["run", "--once"]));
    s.assert_same("streaming after the copy", COLS_NOW);
}
