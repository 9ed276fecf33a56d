//! `siphon service start` runs two continuous PostgreSQL to PostgreSQL
//! pipelines, one `cdc` and one `incremental`, while a writer changes the
//! source throughout; the target server is stopped for 20 s and started
//! again on the same port. The service keeps running, retries, recovers once
//! the server is back, and the target ends row for row equal to the source.
//!
//! Every wait polls a condition with a deadline; no fixed sleep synchronizes.

use std::time::{Duration, Instant};

use siphon_testkit::Postgres;

mod support;
use support::{db_name, ok, Running};

/// How long any awaited condition may take.
const WITHIN: Duration = Duration::from_secs(120);

/// How long the target server stays down.
const OUTAGE: Duration = Duration::from_secs(20);

/// Rows each source table starts with.
const ROWS: i64 = 1000;

/// The tables, one per pipeline, and the pipelines' modes.
const TABLES: [(&str, &str); 2] = [
    ("logged", "mode: cdc"),
    (
        "polled",
        "mode: incremental\n    cursor: seq\n    strategy: sequence",
    ),
];

struct Setup {
    source: &'static Postgres,
    target: Postgres,
    src: String,
    dst: String,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let source = Postgres::shared().unwrap();
        let target = Postgres::start().unwrap();
        let src = db_name(&source.create_database().unwrap());
        let dst = db_name(&target.create_database().unwrap());
        let mut sql = String::from(
            "CREATE SEQUENCE stamp;
             CREATE FUNCTION restamp() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN NEW.seq := nextval('stamp'); RETURN NEW; END $$;",
        );
        for (t, _) in TABLES {
            sql.push_str(&format!(
                "CREATE TABLE {t} (id bigint PRIMARY KEY, v bigint NOT NULL,
                                   seq bigint NOT NULL DEFAULT nextval('stamp'), note text);
                 CREATE TRIGGER restamp BEFORE UPDATE ON {t} FOR EACH ROW EXECUTE FUNCTION restamp();
                 INSERT INTO {t} (id, v, note) SELECT g, 1, 'row ' || g FROM generate_series(1, {ROWS}) g;"
            ));
        }
        source.query_in(&src, &sql).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut yaml = format!(
            "connections:\n  src: {}\n  dst: {}\npipelines:\n",
            source.url_for(&src),
            target.url_for(&dst)
        );
        for (t, mode) in TABLES {
            yaml.push_str(&format!(
                "  {t}:\n    source: src\n    target: dst\n    tables: [public.{t}]\n    {mode}\n\
                 \x20   schedule: continuous\n    batch_size: 200\n"
            ));
        }
        std::fs::write(dir.path().join("siphon.yaml"), yaml).unwrap();
        ok(support::siphon(dir.path(), &["apply", "-f", "siphon.yaml"]));
        Setup {
            source,
            target,
            src,
            dst,
            dir,
        }
    }

    fn service(&self) -> Running {
        Running::spawn(
            support::command(self.dir.path(), &["service", "start"]),
            &self.dir.path().join("service.log"),
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    /// Table `t` row for row in PostgreSQL's text form, with its count;
    /// empty while it cannot be read.
    fn digest(&self, pg: &Postgres, db: &str, t: &str) -> String {
        pg.query_in(
            db,
            &format!(
                "SELECT md5(string_agg(x::text, ',' ORDER BY x.id)) || ' ' || count(*) FROM {t} x"
            ),
        )
        .unwrap_or_default()
    }

    fn same(&self) -> bool {
        TABLES.iter().all(|(t, _)| {
            self.digest(&self.target, &self.dst, t) == self.digest(self.source, &self.src, t)
        })
    }

    /// Rows the writer inserted that the target's `t` has.
    fn progress(&self, t: &str) -> i64 {
        self.target
            .query_in(
                &self.dst,
                &format!("SELECT count(*) FROM {t} WHERE id > 1000000"),
            )
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1)
    }

    /// Polls `cond` every 50 ms until it holds; fails after [`WITHIN`] with
    /// `what`, the tables and the service's log.
    fn wait(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + WITHIN;
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}\n{}\nlog:\n{}",
                TABLES
                    .iter()
                    .map(|(t, _)| format!(
                        "{t}: {} / source {}",
                        self.digest(&self.target, &self.dst, t),
                        self.digest(self.source, &self.src, t)
                    ))
                    .collect::<Vec<_>>()
                    .join("\n"),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `txns` transactions, each inserting a row with a new id above
    /// 1,000,000 into both tables and changing an existing row of each;
    /// every third one deletes a row of the `cdc` table.
    fn writer(&self, txns: i64) -> std::thread::JoinHandle<()> {
        let sql = format!(
            "DO $$ BEGIN
               FOR i IN 1..{txns} LOOP
                 INSERT INTO logged (id, v, note) VALUES (1000000 + i, 1, 'new ' || i);
                 INSERT INTO polled (id, v, note) VALUES (1000000 + i, 1, 'new ' || i);
                 UPDATE logged SET v = v + 1, note = 'upd ' || i WHERE id = (i * 7) % {ROWS} + 1;
                 UPDATE polled SET v = v + 1, note = 'upd ' || i WHERE id = (i * 7) % {ROWS} + 1;
                 IF i % 3 = 0 THEN DELETE FROM logged WHERE id = (i * 13) % {ROWS} + 1; END IF;
                 COMMIT;
                 PERFORM pg_sleep(0.01);
               END LOOP;
             END $$"
        );
        support::psql_in_background(self.source, &self.src, sql)
    }
}

#[test]
fn the_service_rides_out_a_target_outage_and_converges() {
    let mut s = Setup::new();
    let mut service = s.service();
    s.wait("the service copied both tables", || {
        assert!(service.running(), "the service ended: {}", s.log());
        s.same()
    });
    let load = s.writer(2500);
    s.wait("both pipelines stream the writer's rows", || {
        assert!(service.running(), "the service ended: {}", s.log());
        TABLES.iter().all(|(t, _)| s.progress(t) > 0)
    });

    let before = s.log().len();
    s.target.stop();
    let down = Instant::now();
    // Down for the whole outage, and until the service met it in both
    // pipelines; it runs on all along.
    s.wait("the service met the outage in both pipelines", || {
        assert!(service.running(), "the service ended: {}", s.log());
        let log = s.log();
        let since = &log[before.min(log.len())..];
        down.elapsed() >= OUTAGE
            && TABLES.iter().all(|(t, _)| {
                let pipeline = format!("pipeline=\"{t}\"");
                since
                    .lines()
                    .any(|l| l.contains(&pipeline) && l.contains("failed"))
            })
    });
    s.target.start_again().unwrap();
    load.join().unwrap();
    s.wait("the target caught up with the source", || {
        assert!(service.running(), "the service ended: {}", s.log());
        s.same()
    });
    for (t, _) in TABLES {
        assert_eq!(
            s.source
                .query_in(
                    &s.src,
                    &format!("SELECT count(*) FROM {t} WHERE id > 1000000")
                )
                .unwrap(),
            "2500",
            "{t}"
        );
    }
    assert!(service.running(), "the service ended: {}", s.log());
    assert!(
        service.stop("TERM", WITHIN),
        "the service failed to stop: {}",
        s.log()
    );
    assert!(s.same());
}
