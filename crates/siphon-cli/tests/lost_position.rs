//! A `cdc` pipeline whose source lost the log after its checkpoint (its
//! replication slot dropped, or invalidated by `max_slot_wal_keep_size`),
//! through the binary against real PostgreSQL servers: the tables that lost
//! their history stop with an error naming `siphon sync resync`, or are copied
//! again with `on_lost_position: resnapshot`; the other tables go on untouched.
//!
//! Runs use `run --once`, so every step ends before the next is checked.

use std::process::{Command, Output};

use siphon_testkit::Postgres;

/// A source and a target database, and a working directory for the config
/// and the state store.
struct Setup<'a> {
    pg: &'a Postgres,
    src: String,
    dst: String,
    dir: tempfile::TempDir,
}

impl<'a> Setup<'a> {
    fn new(pg: &'a Postgres) -> Self {
        let name = |url: String| url.rsplit('/').next().unwrap().to_string();
        Setup {
            pg,
            src: name(pg.create_database().unwrap()),
            dst: name(pg.create_database().unwrap()),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A pipeline name unique on the server (slots are server-wide).
    fn pipeline(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.src)
    }

    /// Writes the config: each `(suffix, tables, extra)` is one cdc pipeline
    /// from the source to the target, `extra` more YAML lines of it.
    fn config(&self, pipelines: &[(&str, &str, &str)]) {
        let mut yaml = format!(
            "state: sqlite://state.db\nconnections:\n  src: {}\n  dst: {}\npipelines:\n",
            self.pg.url_for(&self.src),
            self.pg.url_for(&self.dst)
        );
        for (suffix, tables, extra) in pipelines {
            yaml.push_str(&format!(
                "  {}:\n    source: src\n    target: dst\n    mode: cdc\n    tables: {tables}\n",
                self.pipeline(suffix)
            ));
            for line in extra.lines() {
                yaml.push_str(&format!("    {line}\n"));
            }
        }
        std::fs::write(self.dir.path().join("siphon.yaml"), yaml).unwrap();
    }

    fn siphon(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_siphon"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("SIPHON_STATE")
            .output()
            .unwrap()
    }

    /// `siphon run -f siphon.yaml --once`: whether it succeeded, and what it
    /// printed.
    fn once(&self) -> (bool, String) {
        let out = self.siphon(&["run", "-f", "siphon.yaml", "--once"]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// A run that must succeed.
    fn once_ok(&self) {
        let (ok, text) = self.once();
        assert!(ok, "siphon failed: {text}");
    }

    /// The state the store shows for a table stream.
    fn stream_state(&self, suffix: &str, table: &str) -> String {
        let db = rusqlite::Connection::open(self.dir.path().join("state.db")).unwrap();
        db.query_row(
            "SELECT state FROM stream_states WHERE pipeline = ?1 AND table_name = ?2",
            [&self.pipeline(suffix), &format!("public.{table}")],
            |r| r.get(0),
        )
        .unwrap_or_default()
    }

    fn src_sql(&self, sql: &str) -> String {
        self.pg.query_in(&self.src, sql).unwrap()
    }

    fn dst_sql(&self, sql: &str) -> String {
        self.pg.query_in(&self.dst, sql).unwrap()
    }

    /// Row for row, in PostgreSQL's own text form, with the row count.
    fn digest(&self, db: &str, table: &str) -> String {
        self.pg
            .query_in(
                db,
                &format!(
                    "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) || ' ' || count(*) \
                     FROM {table} t"
                ),
            )
            .unwrap_or_default()
    }

    fn assert_same(&self, table: &str) {
        assert_eq!(
            self.digest(&self.dst, table),
            self.digest(&self.src, table),
            "target {table} differs from the source"
        );
    }

    /// Drops the pipeline's slot at the source, as an operator cleaning up
    /// might: the log after its checkpoint is gone.
    fn drop_slot(&self, suffix: &str) {
        self.pg
            .query(&format!(
                "SELECT pg_drop_replication_slot('siphon_{}')",
                self.pipeline(suffix)
            ))
            .unwrap();
    }
}

/// Two tables stream; the slot is dropped while siphon is stopped and both
/// tables change. The next run stops exactly those two tables with an error
/// naming `siphon sync resync`; a table added meanwhile is copied and streams,
/// and goes on streaming in later runs while the two stay stopped, even once
/// the pipeline's checkpoint has moved past the loss. `sync resync` of one of
/// them copies it again, the other stays stopped.
#[test]
fn a_lost_slot_stops_only_the_tables_that_lost_their_history() {
    let pg = Postgres::shared().unwrap();
    let s = Setup::new(pg);
    s.src_sql(
        "CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY, v text);
         INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 50) g;
         INSERT INTO b SELECT g, 'b' || g FROM generate_series(1, 50) g;",
    );
    s.config(&[("p", "[\"public.*\"]", "")]);
    s.once_ok();
    s.src_sql("INSERT INTO a VALUES (51, 'streamed'); UPDATE b SET v = 'streamed' WHERE id = 1");
    s.once_ok();
    s.assert_same("a");
    s.assert_same("b");
    assert!(
        s.stream_state("p", "a").contains("idle"),
        "{}",
        s.stream_state("p", "a")
    );

    s.drop_slot("p");
    // Changes the log no longer holds for siphon.
    s.src_sql("INSERT INTO a VALUES (52, 'lost'); DELETE FROM b WHERE id = 2");
    // A table new to the pipeline has no place in the log yet.
    s.src_sql("CREATE TABLE c (id int PRIMARY KEY, v text); INSERT INTO c VALUES (1, 'c1')");
    let (ok, text) = s.once();
    assert!(
        !ok,
        "a run with tables that lost their history succeeded: {text}"
    );
    let pipeline = s.pipeline("p");
    for t in ["a", "b"] {
        let state = s.stream_state("p", t);
        assert!(state.contains("failed"), "table {t}: {state}");
        assert!(
            state.contains(&format!("siphon sync resync {pipeline} --table public.{t}")),
            "table {t}: the fix is not named: {state}"
        );
    }
    // Nothing was copied again behind the operator's back.
    assert_eq!(s.dst_sql("SELECT count(*) FROM a WHERE id = 52"), "0");
    assert_eq!(s.dst_sql("SELECT count(*) FROM b WHERE id = 2"), "1");
    s.assert_same("c");
    assert!(
        !s.stream_state("p", "c").contains("failed"),
        "{}",
        s.stream_state("p", "c")
    );

    // The table that did not lose its history goes on; the pipeline's
    // checkpoint moves past the loss, and the two stay stopped.
    s.src_sql("INSERT INTO c VALUES (2, 'c2'); INSERT INTO a VALUES (53, 'after')");
    let (ok, text) = s.once();
    assert!(
        !ok,
        "the stopped tables resumed over the lost changes: {text}"
    );
    s.assert_same("c");
    s.src_sql("INSERT INTO c VALUES (3, 'c3')");
    let (ok, text) = s.once();
    assert!(
        !ok,
        "the stopped tables resumed over the lost changes: {text}"
    );
    s.assert_same("c");
    for t in ["a", "b"] {
        let state = s.stream_state("p", t);
        assert!(state.contains("siphon sync resync"), "table {t}: {state}");
    }
    assert_eq!(
        s.dst_sql("SELECT count(*) FROM a WHERE id IN (52, 53)"),
        "0"
    );

    // The operator's fix: `a` is copied again and streams; `b` waits.
    let out = s.siphon(&["sync", "resync", &pipeline, "--table", "public.a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.once();
    s.assert_same("a");
    s.src_sql("INSERT INTO a VALUES (54, 'streamed again')");
    let (ok, text) = s.once();
    assert!(!ok, "table b resumed: {text}");
    s.assert_same("a");
    assert!(
        !s.stream_state("p", "a").contains("failed"),
        "{}",
        s.stream_state("p", "a")
    );
    assert!(
        s.stream_state("p", "b").contains("failed"),
        "{}",
        s.stream_state("p", "b")
    );
}

/// With `on_lost_position: resnapshot`, the tables whose slot was dropped are
/// copied again (a row only on the target disappears, rows changed while the
/// log was lost arrive) and then stream; a pipeline whose log is whole is not
/// touched (its row only on the target stays).
#[test]
fn resnapshot_copies_again_only_the_tables_that_lost_their_history() {
    let pg = Postgres::shared().unwrap();
    let s = Setup::new(pg);
    s.src_sql(
        "CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY, v text);
         CREATE TABLE d (id int PRIMARY KEY, v text);
         INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 50) g;
         INSERT INTO b SELECT g, 'b' || g FROM generate_series(1, 50) g;
         INSERT INTO d SELECT g, 'd' || g FROM generate_series(1, 50) g;",
    );
    s.config(&[
        ("p", "[public.a, public.b]", "on_lost_position: resnapshot"),
        ("q", "[public.d]", "on_lost_position: resnapshot"),
    ]);
    s.once_ok();
    s.src_sql("INSERT INTO a VALUES (51, 'streamed'); INSERT INTO d VALUES (51, 'streamed')");
    s.once_ok();
    s.assert_same("a");
    s.assert_same("d");
    // Rows only the target has: gone after a copy, kept otherwise.
    s.dst_sql(
        "INSERT INTO a VALUES (1000, 'target only'); INSERT INTO b VALUES (1000, 'target only');
         INSERT INTO d VALUES (1000, 'target only')",
    );

    s.drop_slot("p");
    s.src_sql(
        "INSERT INTO a VALUES (52, 'lost'); UPDATE b SET v = 'lost' WHERE id = 3;
         INSERT INTO d VALUES (52, 'streamed')",
    );
    s.once_ok();
    s.assert_same("a");
    s.assert_same("b");
    assert_eq!(s.dst_sql("SELECT count(*) FROM d WHERE id = 1000"), "1");
    assert_eq!(s.dst_sql("SELECT v FROM d WHERE id = 52"), "streamed");
    // Copied again, they stream on.
    s.src_sql("INSERT INTO a VALUES (53, 'after'); DELETE FROM b WHERE id = 4");
    s.once_ok();
    s.assert_same("a");
    s.assert_same("b");
    for t in ["a", "b"] {
        let state = s.stream_state("p", t);
        assert!(!state.contains("failed"), "table {t}: {state}");
    }
}

/// A slot the server invalidated (it removed WAL the slot still needed,
/// `max_slot_wal_keep_size`) is replaced, and the pipeline's tables stop
/// with the fix named instead of failing on the dead slot at every retry.
#[test]
fn an_invalidated_slot_stops_the_tables_with_the_fix() {
    let pg = Postgres::start_with_settings(&[("max_slot_wal_keep_size", "1MB")]).unwrap();
    let s = Setup::new(&pg);
    s.src_sql(
        "CREATE TABLE a (id int PRIMARY KEY, v text);
         INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 50) g;",
    );
    s.config(&[("p", "[public.a]", "")]);
    s.once_ok();
    s.assert_same("a");
    let slot = format!("siphon_{}", s.pipeline("p"));
    // Past the slot's allowance: WAL segments are switched and removed.
    for i in 0..6 {
        s.src_sql(&format!(
            "INSERT INTO a SELECT g, repeat('x', 500) FROM generate_series({}, {}) g",
            1000 + i * 2000,
            1000 + i * 2000 + 1999
        ));
        pg.query("SELECT pg_switch_wal()").unwrap();
    }
    pg.query("CHECKPOINT").unwrap();
    let status = pg
        .query(&format!(
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = '{slot}'"
        ))
        .unwrap();
    assert_eq!(status, "lost", "the slot was not invalidated");

    let (ok, text) = s.once();
    assert!(!ok, "a run over an invalidated slot succeeded: {text}");
    let state = s.stream_state("p", "a");
    assert!(state.contains("failed"), "{state}");
    assert!(
        state.contains(&format!(
            "siphon sync resync {} --table public.a",
            s.pipeline("p")
        )),
        "the fix is not named: {state}"
    );
    // A new slot took its place, so the fix works.
    let status = pg
        .query(&format!(
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = '{slot}'"
        ))
        .unwrap();
    assert_ne!(status, "lost");
    let out = s.siphon(&["sync", "resync", &s.pipeline("p"), "--table", "public.a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.once_ok();
    s.assert_same("a");
}
