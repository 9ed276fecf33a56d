//! Switches on the tables of a running continuous `cdc` pipeline take effect
//! within about a second, although a pass streams the log for a window of up
//! to 30 s: pausing a table (`redis-cli SET mssql_sync:enabled:A "false"`, or
//! `siphon sync disable NAME [--table T]`), enabling it again, and forcing a
//! reload (`SET mssql_sync:force_full_load:B "true"`), whose key goes once
//! the reload committed. `siphon service start` runs a PostgreSQL to
//! PostgreSQL pipeline with tables `A` and `B`, on a Redis state store (prefix
//! `mssql_sync`) and on the embedded SQLite one.
//!
//! Each switch is flipped a few seconds at most after a pass started (the
//! first one once a new execution appears; the others after the pass that
//! applied the switch before), when the pass has read the flags already, and
//! its effect is awaited for [`SWITCH`], a third of the log window: so these
//! tests fail when the flags are read only as a pass starts. Every wait polls
//! a condition with a deadline; no fixed sleep synchronizes.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use siphon::{AnyStateStore, ConnectionUrl, Registry};
use siphon_core::{StateStore, StreamId, StreamState, TableName};
use siphon_testkit::{Postgres, Redis};

mod support;
use support::{db_name, ok, wait_for, Running};

/// How long a copy, the service's start or a pass may take.
const WITHIN: Duration = Duration::from_secs(120);

/// How long a switch may take to show: well under the 30 s a following pass
/// streams the log before the next one reads the flags.
const SWITCH: Duration = Duration::from_secs(10);

/// Rows each table starts with.
const ROWS: i64 = 2_000;

/// A source and a target database, and a continuous cdc pipeline between them
/// named after the source database (replication slots are server-wide), in
/// the state store at `state`.
struct Setup {
    pg: &'static Postgres,
    src: String,
    dst: String,
    pipeline: String,
    state: String,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    store: AnyStateStore,
}

impl Setup {
    /// `state` is the state store's URL; `None` for the embedded one in the
    /// working directory.
    fn new(state: Option<String>) -> Setup {
        let pg = Postgres::shared().unwrap();
        let src = db_name(&pg.create_database().unwrap());
        let dst = db_name(&pg.create_database().unwrap());
        pg.query_in(
            &src,
            &format!(
                "CREATE TABLE \"A\" (id bigint PRIMARY KEY, v text NOT NULL);
                 CREATE TABLE \"B\" (id bigint PRIMARY KEY, v text NOT NULL);
                 INSERT INTO \"A\" SELECT g, 'a ' || g FROM generate_series(1, {ROWS}) g;
                 INSERT INTO \"B\" SELECT g, 'b ' || g FROM generate_series(1, {ROWS}) g;"
            ),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let state = state.unwrap_or_else(|| {
            format!("sqlite://{}", dir.path().join("state.db").to_str().unwrap())
        });
        let pipeline = src.clone();
        std::fs::write(
            dir.path().join("siphon.yaml"),
            format!(
                "connections:\n  src: {}\n  dst: {}\n\
                 pipelines:\n  {pipeline}:\n    source: src\n    target: dst\n    mode: cdc\n\
                 \x20   tables: [\"public.*\"]\n    schedule: continuous\n",
                pg.url_for(&src),
                pg.url_for(&dst)
            ),
        )
        .unwrap();
        ok(support::siphon(
            dir.path(),
            &["apply", "-f", "siphon.yaml", "--state", &state],
        ));
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = rt
            .block_on(
                Registry::standard()
                    .open_state("state", &ConnectionUrl::from_parts(&state, &state)),
            )
            .unwrap();
        Setup {
            pg,
            src,
            dst,
            pipeline,
            state,
            dir,
            rt,
            store,
        }
    }

    fn service(&self) -> Running {
        Running::spawn(
            support::command(
                self.dir.path(),
                &["service", "start", "--state", &self.state],
            ),
            &self.dir.path().join("service.log"),
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    /// `siphon ARGS --state STATE`, which must succeed.
    fn siphon(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend(["--state", &self.state]);
        ok(support::siphon(self.dir.path(), &all))
    }

    /// The stream state of table `t`.
    fn stream_state(&self, t: &str) -> Option<StreamState> {
        let stream = StreamId::new(&self.pipeline, &TableName::new(Some("public"), t));
        self.rt
            .block_on(self.store.stream_states())
            .unwrap()
            .into_iter()
            .find(|(s, _)| *s == stream)
            .map(|(_, st)| st)
    }

    /// The newest execution's id (0 before the first).
    fn newest_execution(&self) -> u64 {
        self.rt
            .block_on(self.store.executions(Some(&self.pipeline), 1))
            .unwrap()
            .first()
            .map_or(0, |e| e.id)
    }

    /// Waits until a pass starts after now: it has read the tables' switches
    /// already, and, following the log, streams for its window.
    fn next_pass(&self, service: &mut Running) {
        let seen = self.newest_execution();
        wait_for("a new pass started", WITHIN, || {
            assert!(service.running(), "the service ended: {}", self.log());
            self.newest_execution() > seen
        });
    }

    /// Table `t` row for row, with its count; empty while it does not exist.
    fn digest(&self, db: &str, t: &str) -> String {
        self.pg
            .query_in(
                db,
                &format!(
                    "SELECT md5(string_agg(x::text, ',' ORDER BY x.id)) || ' ' || count(*) FROM \"{t}\" x"
                ),
            )
            .unwrap_or_default()
    }

    fn same(&self, t: &str) -> bool {
        self.digest(&self.dst, t) == self.digest(&self.src, t)
    }

    fn insert(&self, t: &str, id: i64) {
        self.pg
            .query_in(
                &self.src,
                &format!("INSERT INTO \"{t}\" VALUES ({id}, 'row {id}')"),
            )
            .unwrap();
    }

    /// Whether the target's table `t` has the row `id`.
    fn target_has(&self, t: &str, id: i64) -> bool {
        self.pg
            .query_in(
                &self.dst,
                &format!("SELECT count(*) FROM \"{t}\" WHERE id = {id}"),
            )
            .is_ok_and(|n| n == "1")
    }

    /// Waits up to [`SWITCH`] for the row `id` of `t` on the target.
    fn arrives(&self, service: &mut Running, t: &str, id: i64) {
        wait_for(&format!("row {id} of {t} arrived"), SWITCH, || {
            assert!(service.running(), "the service ended: {}", self.log());
            self.target_has(t, id)
        });
    }

    /// Pausing `A` (by `pause`, just after a pass started) stops its rows
    /// within [`SWITCH`] while `B`'s go on; `resume`, a few seconds into the
    /// pass that paused it, brings it back equal to the source within
    /// [`SWITCH`].
    fn pause_and_resume_a(
        &self,
        service: &mut Running,
        pause: impl FnOnce(),
        resume: impl FnOnce(),
        next_id: &mut i64,
    ) {
        self.next_pass(service);
        pause();
        wait_for("the service paused A", SWITCH, || {
            assert!(service.running(), "the service ended: {}", self.log());
            self.stream_state("A") == Some(StreamState::Paused)
        });
        // Once B's row written after the pause arrived, the log is read for B
        // alone: A's row written after it must not arrive.
        let (marker, a_row, b_row) = (*next_id, *next_id + 1, *next_id + 2);
        *next_id += 3;
        self.insert("B", marker);
        self.arrives(service, "B", marker);
        self.insert("A", a_row);
        self.insert("B", b_row);
        self.arrives(service, "B", b_row);
        assert!(
            !self.target_has("A", a_row),
            "a row of the paused table arrived: {}",
            self.log()
        );

        resume();
        wait_for("A came back equal to the source", SWITCH, || {
            assert!(service.running(), "the service ended: {}", self.log());
            self.same("A")
        });
        assert!(self.target_has("A", a_row));
        self.insert("A", *next_id);
        self.arrives(service, "A", *next_id);
        *next_id += 1;
    }
}

/// Inserts rows into `B` at the source, one transaction each, until stopped,
/// so that switches are flipped while the log carries changes; at most
/// 20,000 rows.
struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicI64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The first id the writer inserts.
const WRITER_IDS: i64 = 1_000_000;

impl Writer {
    fn start(pg: &'static Postgres, db: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicI64::new(0));
        let (s, w, db) = (stop.clone(), written.clone(), db.to_string());
        let thread = std::thread::spawn(move || {
            for n in 0..20_000 {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let id = WRITER_IDS + n;
                pg.query_in(&db, &format!("INSERT INTO \"B\" VALUES ({id}, 'w {id}')"))
                    .unwrap();
                w.store(n + 1, Ordering::Relaxed);
            }
        });
        Writer {
            stop,
            written,
            thread: Some(thread),
        }
    }

    /// Stops it; how many rows it wrote.
    fn stop(mut self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.written.load(Ordering::Relaxed)
    }
}

#[test]
fn redis_cli_pauses_enables_and_reloads_cdc_tables_within_a_window() {
    let redis = Redis::shared().unwrap();
    let s = Setup::new(Some(format!("{}?prefix=mssql_sync", redis.url())));
    let redis_cli = |args: &[&str]| -> String {
        let out = Command::new("redis-cli")
            .arg("-p")
            .arg(redis.port().to_string())
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let mut service = s.service();
    wait_for("both tables were copied", WITHIN, || {
        assert!(service.running(), "the service ended: {}", s.log());
        s.same("A") && s.same("B")
    });
    let writer = Writer::start(s.pg, &s.src);
    let mut next_id = 10_000;

    s.pause_and_resume_a(
        &mut service,
        || assert_eq!(redis_cli(&["SET", "mssql_sync:enabled:A", "false"]), "OK"),
        || assert_eq!(redis_cli(&["SET", "mssql_sync:enabled:A", "true"]), "OK"),
        &mut next_id,
    );

    // B drifted on the target: a row changed there only, which the log never
    // mends; a forced reload does, and its key goes once it committed.
    s.pg.query_in(&s.dst, "UPDATE \"B\" SET v = 'drifted' WHERE id = 5")
        .unwrap();
    assert_eq!(
        redis_cli(&["SET", "mssql_sync:force_full_load:B", "true"]),
        "OK"
    );
    let deadline = Instant::now() + SWITCH;
    while redis_cli(&["EXISTS", "mssql_sync:force_full_load:B"]) == "1" {
        assert!(service.running(), "the service ended: {}", s.log());
        assert!(
            Instant::now() < deadline,
            "the force_full_load key is still there after {SWITCH:?}: {}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let row5 = |db: &str| {
        s.pg.query_in(db, "SELECT v FROM \"B\" WHERE id = 5")
            .unwrap()
    };
    assert_eq!(row5(&s.dst), "b 5", "the reload did not repair B");

    // Nothing was lost or applied twice across the windows ended early.
    let written = writer.stop();
    assert!(written > 0);
    wait_for("B equal to the source", WITHIN, || {
        assert!(service.running(), "the service ended: {}", s.log());
        s.same("B")
    });
    assert!(s.same("A"));
    assert!(
        service.stop("TERM", WITHIN),
        "the service failed to stop: {}",
        s.log()
    );
}

#[test]
fn sync_disable_pauses_a_cdc_table_and_the_whole_pipeline_within_a_window() {
    let s = Setup::new(None);
    let mut service = s.service();
    wait_for("both tables were copied", WITHIN, || {
        assert!(service.running(), "the service ended: {}", s.log());
        s.same("A") && s.same("B")
    });
    let mut next_id = 10_000;
    let p = s.pipeline.clone();
    s.pause_and_resume_a(
        &mut service,
        || {
            s.siphon(&["sync", "disable", &p, "--table", "A"]);
        },
        || {
            s.siphon(&["sync", "enable", &p, "--table", "A"]);
        },
        &mut next_id,
    );

    // The whole pipeline paused: neither table streams.
    s.siphon(&["sync", "disable", &p]);
    wait_for("the service paused both tables", SWITCH, || {
        assert!(service.running(), "the service ended: {}", s.log());
        s.stream_state("A") == Some(StreamState::Paused)
            && s.stream_state("B") == Some(StreamState::Paused)
    });
    s.siphon(&["sync", "enable", &p]);
    wait_for("both tables came back", SWITCH, || {
        assert!(service.running(), "the service ended: {}", s.log());
        s.stream_state("A") == Some(StreamState::Streaming)
            && s.stream_state("B") == Some(StreamState::Streaming)
    });
    s.insert("A", next_id);
    s.insert("B", next_id);
    s.arrives(&mut service, "A", next_id);
    s.arrives(&mut service, "B", next_id);
    assert!(s.same("A") && s.same("B"));
    assert!(
        service.stop("TERM", WITHIN),
        "the service failed to stop: {}",
        s.log()
    );
}
