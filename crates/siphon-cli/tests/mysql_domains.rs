//! A MariaDB→MariaDB continuous `cdc` pipeline over transactions committed
//! in two GTID domains (0 and 2), through the binary against the testkit's
//! real MariaDB: siphon is SIGKILLed while both domains write, both go on
//! writing, siphon starts again; the target then equals the source row for
//! row, no row was written to the target twice (triggers on the target count
//! every insert and update of each row), and the stored checkpoint holds the
//! position of both domains.
//!
//! Every wait polls a condition with a deadline; no fixed sleep.

use std::sync::Arc;
use std::time::Duration;

use siphon_testkit::MariaDb;

mod support;
use support::{config, db_name, run_log, spawn_run, Running, Writer};

/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(600);

/// Where the ids of each domain's rows start: `(domain + 1) * SPAN`, past
/// the seed rows.
const SPAN: i64 = 1_000_000_000;

/// A writer committing transactions of three inserts in one GTID domain
/// until told to stop; it keeps the GTID of its last transaction.
struct DomainWriter {
    w: Writer,
    last: Arc<std::sync::Mutex<String>>,
}

impl DomainWriter {
    fn start(my: Arc<MariaDb>, db: &str, domain: i64) -> DomainWriter {
        let last = Arc::new(std::sync::Mutex::new(String::new()));
        let (l, db) = (last.clone(), db.to_string());
        let mut i = 0;
        let w = Writer::start(move || {
            let mut sql = format!("SET SESSION gtid_domain_id = {domain};");
            for _ in 0..5 {
                let mut rows = Vec::new();
                for _ in 0..3 {
                    i += 1;
                    rows.push(format!(
                        "({}, {domain}, 'd{domain} row {i}')",
                        (domain + 1) * SPAN + i
                    ));
                }
                sql.push_str(&format!(
                    "START TRANSACTION; INSERT INTO t VALUES {}; COMMIT;",
                    rows.join(", ")
                ));
            }
            sql.push_str("SELECT @@last_gtid;");
            let out = my.query_in(&db, &sql).expect("the writer's transactions");
            *l.lock().unwrap() = out.trim().to_string();
            i
        });
        DomainWriter { w, last }
    }

    /// Rows committed so far; fails the test when the writer failed.
    fn committed(&self) -> i64 {
        assert!(!self.w.failed(), "a writer failed (its panic is above)");
        self.w.committed()
    }

    /// The GTID of the last transaction committed (`domain-server-seq`).
    fn last_gtid(&self) -> String {
        self.last.lock().unwrap().clone()
    }

    /// Stops the writer and waits for its last transactions.
    fn finish(&mut self) -> i64 {
        self.w.finish()
    }
}

struct Setup {
    my: Arc<MariaDb>,
    src: String,
    dst: String,
    dir: tempfile::TempDir,
}

impl Setup {
    fn number(&self, db: &str, sql: &str) -> i64 {
        self.my
            .query_in(db, sql)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(-1)
    }

    /// Count and an md5 of every row in key order, as `db` holds `t`.
    fn digest(&self, db: &str) -> String {
        self.my
            .query_in(
                db,
                "SET SESSION group_concat_max_len = 1073741824; \
                 SELECT CONCAT(COUNT(*), ' ', IFNULL(MD5(GROUP_CONCAT(CONCAT_WS('|', id, d, note) \
                 ORDER BY id SEPARATOR ',')), '')) FROM t",
            )
            .unwrap_or_default()
    }

    fn spawn(&self) -> Running {
        spawn_run(self.dir.path())
    }

    fn log(&self) -> String {
        run_log(self.dir.path())
    }

    /// Waits until the target holds a row of `domain` that its writer
    /// committed after this call.
    fn wait_for_a_later_write(&self, w: &DomainWriter, domain: i64, siphon: &mut Running) {
        let after = (domain + 1) * SPAN + w.committed() + 10;
        support::wait_for(
            &format!("the target holds row {after} of domain {domain}"),
            DEADLINE,
            || {
                assert!(siphon.running(), "siphon ended: {}", self.log());
                self.number(
                    &self.dst,
                    &format!("SELECT COUNT(*) FROM t WHERE d = {domain} AND id >= {after}"),
                ) > 0
            },
        );
    }
}

#[test]
fn two_gtid_domains_resume_after_a_kill_with_nothing_lost_or_applied_twice() {
    // A server of its own: the GTID positions of its domains are this test's.
    let my = Arc::new(MariaDb::start().unwrap());
    let s = Setup {
        my: my.clone(),
        src: db_name(&my.create_database().unwrap()),
        dst: db_name(&my.create_database().unwrap()),
        dir: tempfile::tempdir().unwrap(),
    };
    let shape = "CREATE TABLE t (id bigint NOT NULL PRIMARY KEY, d int NOT NULL, note varchar(40) NOT NULL)";
    my.query_in(
        &s.src,
        &format!("{shape}; INSERT INTO t SELECT seq, 0, CONCAT('seed ', seq) FROM seq_1_to_20;"),
    )
    .unwrap();
    // The target's table, made beforehand with triggers that count every
    // write of each row: an insert or an update of a row already there (a
    // transaction applied twice) counts again.
    my.query_in(
        &s.dst,
        &format!(
            "{shape}; CREATE TABLE hits (id bigint NOT NULL PRIMARY KEY, n int NOT NULL); \
             CREATE TRIGGER t_ins AFTER INSERT ON t FOR EACH ROW \
               INSERT INTO hits VALUES (NEW.id, 1) ON DUPLICATE KEY UPDATE n = n + 1; \
             CREATE TRIGGER t_upd AFTER UPDATE ON t FOR EACH ROW \
               INSERT INTO hits VALUES (NEW.id, 1) ON DUPLICATE KEY UPDATE n = n + 1;"
        ),
    )
    .unwrap();
    config(
        s.dir.path(),
        &my.url_for(&s.src),
        &my.url_for(&s.dst),
        "cdc",
        &format!("[{}.t]", s.src),
        "schedule: continuous",
    );

    let mut siphon = s.spawn();
    support::wait_for("the copy is on the target", DEADLINE, || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.number(&s.dst, "SELECT COUNT(*) FROM t") == 20
    });
    let mut w0 = DomainWriter::start(my.clone(), &s.src, 0);
    let mut w2 = DomainWriter::start(my.clone(), &s.src, 2);
    s.wait_for_a_later_write(&w0, 0, &mut siphon);
    s.wait_for_a_later_write(&w2, 2, &mut siphon);
    // Killed while both domains write and it applies them.
    siphon.kill();

    // Both domains go on writing while siphon is down.
    let (a0, a2) = (w0.committed(), w2.committed());
    support::wait_for("both domains wrote more", DEADLINE, || {
        w0.committed() > a0 + 30 && w2.committed() > a2 + 30
    });

    let mut siphon = s.spawn();
    s.wait_for_a_later_write(&w0, 0, &mut siphon);
    s.wait_for_a_later_write(&w2, 2, &mut siphon);
    let (n0, n2) = (w0.finish(), w2.finish());
    assert!(n0 > 0 && n2 > 0);
    let src = s.digest(&s.src);
    support::wait_for("the target equals the source", DEADLINE, || {
        assert!(siphon.running(), "siphon ended: {}", s.log());
        s.digest(&s.dst) == src
    });
    assert!(siphon.stop("TERM", DEADLINE), "{}", s.log());
    assert_eq!(s.digest(&s.dst), s.digest(&s.src));
    let rows = s.number(&s.src, "SELECT COUNT(*) FROM t");
    assert_eq!(rows, 20 + n0 + n2);

    // Each row was written to the target once.
    assert_eq!(s.number(&s.dst, "SELECT COUNT(*) FROM hits"), rows);
    let twice =
        s.my.query_in(
            &s.dst,
            "SELECT CONCAT(id, ':', n) FROM hits WHERE n <> 1 LIMIT 10",
        )
        .unwrap();
    assert!(
        twice.trim().is_empty(),
        "rows written more than once: {twice}"
    );

    // Both domains are in the checkpoint, each at or past the writer's last
    // transaction in it (siphon's own writes to the target, on the same
    // server, move domain 0 on).
    let checkpoint =
        s.my.query_in(
            &s.dst,
            "SELECT checkpoint FROM siphon_checkpoints WHERE pipeline = 'p' AND tbl = '*'",
        )
        .unwrap();
    // The GTID state, wherever the checkpoint's JSON keeps it.
    let gtids = checkpoint
        .split("\"gtid\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no GTID state in the checkpoint: {checkpoint}"))
        .to_string();
    let seq_of = |state: &str, domain: &str| -> Option<u64> {
        state
            .split(',')
            .map(str::trim)
            .find(|g| g.split('-').next() == Some(domain))
            .and_then(|g| g.rsplit('-').next())
            .and_then(|n| n.parse().ok())
    };
    for (domain, w) in [("0", &w0), ("2", &w2)] {
        let last = w.last_gtid();
        let want = seq_of(&last, domain).unwrap_or_else(|| panic!("writer's GTID {last}"));
        let have = seq_of(&gtids, domain)
            .unwrap_or_else(|| panic!("domain {domain} is not in the checkpoint: {gtids}"));
        assert!(
            have >= want,
            "domain {domain} at {have} in the checkpoint, before the writer's {last}"
        );
    }
    assert_eq!(
        seq_of(&gtids, "2"),
        seq_of(&w2.last_gtid(), "2"),
        "only the writer commits in domain 2: {gtids}"
    );
}
