//! Two `siphon service start` workers on one shared state store (PostgreSQL,
//! then Redis) and four continuous PostgreSQL to PostgreSQL pipelines, two
//! `cdc` and two `incremental`, while a writer changes every source table.
//! Each pipeline is run by exactly one worker at a time: its lease names one
//! of them and never flaps, and a trigger on the target records every row
//! siphon writes, so a change applied twice or out of order shows. One worker
//! is SIGKILLed: the other takes its pipelines over (a greater lease epoch,
//! carried by the target's checkpoints), resumes from their checkpoints, and
//! the target ends row for row equal to the source.
//!
//! Every wait polls a condition with a deadline; no fixed sleep synchronizes.

use std::collections::BTreeMap;
use std::time::Duration;

use siphon::{AnyStateStore, ConnectionUrl, Registry};
use siphon_core::StateStore;
use siphon_testkit::{Postgres, Redis};

mod support;
use support::{db_name, ok, Running};

/// How long any awaited condition may take.
const WITHIN: Duration = Duration::from_secs(60);

/// The lease time the workers run with.
const TTL: &str = "3s";

/// Rows each source table starts with.
const ROWS: i64 = 1000;

/// Transactions of the writer; each changes every table.
const TXNS: i64 = 600;

/// The pipelines: name, its one table, its mode and the mode's options.
const PIPELINES: [(&str, &str, &str); 4] = [
    ("p0", "t0", "mode: cdc"),
    ("p1", "t1", "mode: cdc"),
    (
        "p2",
        "t2",
        "mode: incremental\n    cursor: seq\n    strategy: sequence",
    ),
    (
        "p3",
        "t3",
        "mode: incremental\n    cursor: seq\n    strategy: sequence",
    ),
];

/// The command line of a worker on the state store `state`, with its pid
/// file in `run_dir`.
fn worker_args(state: &str, run_dir: &str) -> Vec<String> {
    ["service", "start", "--state", state, "--run-dir", run_dir]
        .map(String::from)
        .to_vec()
}

struct Fleet<'a> {
    pg: &'a Postgres,
    src: String,
    dst: String,
    state: String,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    store: AnyStateStore,
}

impl<'a> Fleet<'a> {
    /// The source and target databases, the pipelines applied to the store
    /// `state`, and the target's tables made beforehand with the audit trigger.
    fn new(pg: &'a Postgres, state: String) -> Fleet<'a> {
        let src = db_name(&pg.create_database().unwrap());
        let dst = db_name(&pg.create_database().unwrap());
        let mut source_sql = String::from(
            "CREATE SEQUENCE stamp;
             CREATE FUNCTION restamp() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN NEW.seq := nextval('stamp'); RETURN NEW; END $$;",
        );
        let mut target_sql = String::from(
            "CREATE TABLE applied (n bigserial PRIMARY KEY, tbl text NOT NULL, id bigint NOT NULL, v bigint NOT NULL);
             CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN INSERT INTO applied (tbl, id, v) VALUES (TG_TABLE_NAME, NEW.id, NEW.v); RETURN NEW; END $$;",
        );
        for (_, t, _) in PIPELINES {
            source_sql.push_str(&format!(
                "CREATE TABLE {t} (id bigint PRIMARY KEY, v bigint NOT NULL,
                                   seq bigint NOT NULL DEFAULT nextval('stamp'), note text);
                 CREATE TRIGGER restamp BEFORE UPDATE ON {t} FOR EACH ROW EXECUTE FUNCTION restamp();
                 INSERT INTO {t} (id, v, note) SELECT g, 1, 'row ' || g FROM generate_series(1, {ROWS}) g;"
            ));
            // Siphon's sessions apply as replicas: only an ALWAYS trigger fires.
            target_sql.push_str(&format!(
                "CREATE TABLE {t} (id bigint PRIMARY KEY, v bigint NOT NULL, seq bigint NOT NULL, note text);
                 CREATE TRIGGER audit AFTER INSERT OR UPDATE ON {t} FOR EACH ROW EXECUTE FUNCTION audit();
                 ALTER TABLE {t} ENABLE ALWAYS TRIGGER audit;"
            ));
        }
        pg.query_in(&src, &source_sql).unwrap();
        pg.query_in(&dst, &target_sql).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let mut yaml = format!(
            "connections:\n  src: {}\n  dst: {}\npipelines:\n",
            pg.url_for(&src),
            pg.url_for(&dst)
        );
        for (p, t, mode) in PIPELINES {
            yaml.push_str(&format!(
                "  {p}:\n    source: src\n    target: dst\n    tables: [public.{t}]\n    {mode}\n\
                 \x20   schedule: continuous\n    batch_size: 100\n"
            ));
        }
        std::fs::write(dir.path().join("siphon.yaml"), yaml).unwrap();
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
        Fleet {
            pg,
            src,
            dst,
            state,
            dir,
            rt,
            store,
        }
    }

    /// A worker logging to `log` in the test's folder.
    fn worker(&self, log: &str) -> Running {
        let args = worker_args(&self.state, log.trim_end_matches(".log"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = support::command(self.dir.path(), &args);
        cmd.env("SIPHON_LEASE_TTL", TTL);
        Running::spawn(cmd, &self.dir.path().join(log))
    }

    /// Polls `cond` every 50 ms until it holds; fails after [`WITHIN`] with
    /// `what` and [`Fleet::detail`].
    fn wait(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + WITHIN;
        while !cond() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting until {what}\n{}",
                self.detail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What a failure shows: the leases, the tables, the database sessions
    /// and the workers' logs.
    fn detail(&self) -> String {
        let tables: Vec<String> = PIPELINES
            .iter()
            .map(|(_, t, _)| {
                format!(
                    "{t}: {} / source {}",
                    self.digest(&self.dst, t),
                    self.digest(&self.src, t)
                )
            })
            .collect();
        let sessions = self.pg.query(
            "SELECT pid, datname, application_name, state, wait_event_type, wait_event, \
             backend_xid, left(query, 150) FROM pg_stat_activity WHERE datname IS NOT NULL",
        );
        format!(
            "leases: {:?}\n{}\nsessions:\n{}\na.log:\n{}\nb.log:\n{}",
            self.leases(),
            tables.join("\n"),
            sessions.unwrap_or_else(|e| e.to_string()),
            self.log("a.log"),
            self.log("b.log")
        )
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Each pipeline's lease: the holder's pid and the epoch.
    fn leases(&self) -> BTreeMap<&'static str, Option<(u32, u64)>> {
        PIPELINES
            .iter()
            .map(|(p, _, _)| {
                let lease = self.rt.block_on(self.store.lease(p)).unwrap();
                let held = lease.and_then(|l| {
                    let pid = l.holder.split(':').nth(1)?.parse().ok()?;
                    Some((pid, l.epoch))
                });
                (*p, held)
            })
            .collect()
    }

    /// The epochs of the pipeline's checkpoint rows in the target.
    fn checkpoint_epochs(&self, pipeline: &str) -> Vec<u64> {
        let out = self
            .pg
            .query_in(
                &self.dst,
                &format!(
                    "SELECT DISTINCT epoch FROM siphon_checkpoints WHERE pipeline = '{pipeline}' ORDER BY 1"
                ),
            )
            .unwrap_or_default();
        out.lines().filter_map(|l| l.parse().ok()).collect()
    }

    /// Table `t` row for row in PostgreSQL's text form, with its count.
    fn digest(&self, db: &str, t: &str) -> String {
        self.pg
            .query_in(
                db,
                &format!(
                    "SELECT md5(string_agg(x::text, ',' ORDER BY x.id)) || ' ' || count(*) FROM {t} x"
                ),
            )
            .unwrap_or_default()
    }

    fn same(&self) -> bool {
        PIPELINES
            .iter()
            .all(|(_, t, _)| self.digest(&self.dst, t) == self.digest(&self.src, t))
    }

    /// Rows the writer inserted that the target's `t` has.
    fn progress(&self, t: &str) -> i64 {
        self.pg
            .query_in(
                &self.dst,
                &format!("SELECT count(*) FROM {t} WHERE id > 1000000"),
            )
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1)
    }

    /// Writes the target's audit recorded for `t`.
    fn applied(&self, t: &str) -> i64 {
        self.pg
            .query_in(
                &self.dst,
                &format!("SELECT count(*) FROM applied WHERE tbl = '{t}'"),
            )
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Writes of a row that did not raise its version: a change applied
    /// twice, or after a newer one. An incremental table's first poll reads
    /// again the row at its copy's high-water mark (its cursor value, not
    /// its key, is where the copy ended): that row of the initial copy
    /// (version 1, an id up to [`ROWS`]) written twice is not counted.
    fn repeated(&self) -> String {
        self.pg
            .query_in(
                &self.dst,
                &format!(
                    "SELECT string_agg(tbl || ' id ' || id || ': v ' || prev || ' then ' || v, '; ')
                     FROM (SELECT tbl, id, v, lag(v) OVER (PARTITION BY tbl, id ORDER BY n) AS prev
                           FROM applied) w
                     WHERE v <= prev AND NOT (tbl IN ({}) AND v = 1 AND id <= {ROWS})",
                    PIPELINES
                        .iter()
                        .filter(|(_, _, mode)| mode.contains("incremental"))
                        .map(|(_, t, _)| format!("'{t}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .unwrap()
    }

    /// `TXNS` transactions, each inserting a row into every table with a new
    /// id above 1,000,000, raising the version of an existing row and, every
    /// third time, deleting a row of the `cdc` tables.
    fn writer(&self) -> std::thread::JoinHandle<()> {
        let sql = format!(
            "DO $$ BEGIN
               FOR i IN 1..{TXNS} LOOP
                 FOR k IN 0..3 LOOP
                   EXECUTE format('INSERT INTO t%s (id, v, note) VALUES ($1, 1, $2)', k)
                     USING 1000000 + i, 'new ' || i;
                   EXECUTE format('UPDATE t%s SET v = v + 1, note = $2 WHERE id = $1', k)
                     USING (i * 7) % {ROWS} + 1, 'upd ' || i;
                   IF k < 2 AND i % 3 = 0 THEN
                     EXECUTE format('DELETE FROM t%s WHERE id = $1', k) USING (i * 13) % {ROWS} + 1;
                   END IF;
                 END LOOP;
                 COMMIT;
                 PERFORM pg_sleep(0.01);
               END LOOP;
             END $$"
        );
        support::psql_in_background(self.pg, &self.src, sql)
    }
}

/// Whether every pipeline's lease is held by one of `pids`.
fn all_held(leases: &BTreeMap<&str, Option<(u32, u64)>>, pids: &[u32]) -> bool {
    leases
        .values()
        .all(|l| l.is_some_and(|(pid, _)| pids.contains(&pid)))
}

fn two_workers_share_the_pipelines_and_one_takes_over_from_the_other(fleet: &Fleet) {
    let mut a = fleet.worker("a.log");
    let mut b = fleet.worker("b.log");
    let pids = [a.pid(), b.pid()];
    let logs = || format!("a: {}\nb: {}", fleet.log("a.log"), fleet.log("b.log"));
    fleet.wait(
        "the workers hold every pipeline and copied every table",
        || {
            assert!(a.running() && b.running(), "a worker ended: {}", logs());
            all_held(&fleet.leases(), &pids) && fleet.same()
        },
    );
    let before = fleet.leases();
    // Each pipeline's checkpoints carry its holder's epoch.
    for (p, held) in &before {
        let (_, epoch) = held.unwrap();
        assert_eq!(fleet.checkpoint_epochs(p), [epoch], "{p}: {}", logs());
    }

    let load = fleet.writer();
    fleet.wait("every pipeline streams the writer's rows", || {
        assert!(a.running() && b.running(), "a worker ended: {}", logs());
        // One holder per pipeline, the same all along.
        assert_eq!(
            fleet.leases(),
            before,
            "a lease changed hands: {}",
            fleet.detail()
        );
        PIPELINES.iter().all(|(_, t, _)| fleet.progress(t) > 0)
    });
    assert_eq!(fleet.repeated(), "", "{}", logs());

    // The worker with the most pipelines dies.
    let count = |pid: u32| before.values().filter(|l| l.unwrap().0 == pid).count();
    let (victim, survivor, victim_log) = if count(pids[0]) >= count(pids[1]) {
        (&mut a, &mut b, "a.log")
    } else {
        (&mut b, &mut a, "b.log")
    };
    let (dead, alive) = (victim.pid(), survivor.pid());
    let applied_at_kill: BTreeMap<&str, i64> = PIPELINES
        .iter()
        .map(|(_, t, _)| (*t, fleet.applied(t)))
        .collect();
    victim.kill();
    fleet.wait(
        "the surviving worker took the dead one's pipelines over",
        || {
            assert!(survivor.running(), "the survivor ended: {}", logs());
            all_held(&fleet.leases(), &[alive])
        },
    );
    let after = fleet.leases();
    for (p, held) in &after {
        let (was, epoch_before) = before[p].unwrap();
        let (_, epoch) = held.unwrap();
        if was == dead {
            assert!(
                epoch > epoch_before,
                "{p}: epoch {epoch} after {epoch_before}"
            );
        } else {
            // The survivor's own pipelines went on under the same lease.
            assert_eq!(epoch, epoch_before, "{p}: {}", logs());
        }
    }
    load.join().unwrap();
    fleet.wait("the target caught up with the source", || {
        assert!(survivor.running(), "the survivor ended: {}", logs());
        fleet.same()
    });
    // Every table, the dead worker's too, was written after the kill.
    for (_, t, _) in PIPELINES {
        assert!(
            fleet.applied(t) > applied_at_kill[t],
            "{t}: nothing applied after the kill"
        );
    }
    // Nothing applied twice, or after a newer version of its row, by either.
    assert_eq!(fleet.repeated(), "", "{}", logs());
    for (p, held) in &after {
        let (_, epoch) = held.unwrap();
        assert_eq!(fleet.checkpoint_epochs(p), [epoch], "{p}");
    }
    assert_eq!(fleet.leases(), after, "{}", fleet.log(victim_log));
    assert!(
        survivor.stop("TERM", WITHIN),
        "the survivor failed to stop: {}",
        logs()
    );
    // A graceful stop gives its leases up.
    assert!(
        fleet.leases().values().all(Option::is_none),
        "{:?}",
        fleet.leases()
    );
    assert!(fleet.same());
}

#[test]
fn workers_on_a_postgres_state_store_share_pipelines_and_take_over() {
    let pg = Postgres::shared().unwrap();
    let state = pg.create_database().unwrap();
    let fleet = Fleet::new(pg, state);
    two_workers_share_the_pipelines_and_one_takes_over_from_the_other(&fleet);
}

#[test]
fn workers_on_a_redis_state_store_share_pipelines_and_take_over() {
    // A server of its own: replication slots are named after the pipelines
    // and are the server's, not a database's, so the PostgreSQL-store test's
    // pipelines of the same names must not share its server.
    let pg = Postgres::start().unwrap();
    let redis = Redis::shared().unwrap();
    let prefix = siphon_testkit::unique_name("workers");
    let fleet = Fleet::new(&pg, format!("{}?prefix={prefix}", redis.url()));
    two_workers_share_the_pipelines_and_one_takes_over_from_the_other(&fleet);
}
