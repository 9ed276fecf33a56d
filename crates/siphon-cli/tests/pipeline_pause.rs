//! The pipeline's own switch (`siphon sync disable NAME` / `enable NAME`,
//! `enabled: false` in the catalog) honoured by a running `siphon service
//! start`: a paused pipeline runs no pass, gives up its lease, leaves the rows
//! written meanwhile and a table created meanwhile at the source alone, and
//! once enabled again catches up from its checkpoints, copying nothing twice.
//! An incremental and a `cdc` pipeline are paused from PostgreSQL to
//! PostgreSQL, on the embedded SQLite state store, while a third pipeline
//! goes on: its progress is the clock the test waits on, never a fixed sleep.

use std::time::Duration;

use siphon::{AnyStateStore, ConnectionUrl, Registry};
use siphon_core::{StateStore, StreamId, StreamState, TableName};
use siphon_testkit::Postgres;

mod support;
use support::{command, db_name, ok, siphon, stdout, wait_for, Running};

/// How long a copy, the service's start, a pass or a switch may take.
const WITHIN: Duration = Duration::from_secs(120);

/// Rows each table starts with.
const ROWS: i64 = 1_000;

/// Rows written to each paused table while it is paused.
const WHILE_PAUSED: i64 = 5;

struct Setup {
    pg: &'static Postgres,
    src: String,
    dst: String,
    dst2: String,
    /// The incremental pipeline paused (tables `i_*`).
    inc: String,
    /// The cdc pipeline paused (table `c_t`), named after the source database
    /// since replication slots are server-wide.
    cdc: String,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    store: AnyStateStore,
}

impl Setup {
    fn new() -> Setup {
        let pg = Postgres::shared().unwrap();
        let src = db_name(&pg.create_database().unwrap());
        let dst = db_name(&pg.create_database().unwrap());
        let dst2 = db_name(&pg.create_database().unwrap());
        pg.query_in(
            &src,
            &format!(
                "CREATE TABLE i_t (id bigint PRIMARY KEY, v text NOT NULL);
                 CREATE TABLE c_t (id bigint PRIMARY KEY, v text NOT NULL);
                 CREATE TABLE k (id bigint PRIMARY KEY, v text NOT NULL);
                 INSERT INTO i_t SELECT g, 'i ' || g FROM generate_series(1, {ROWS}) g;
                 INSERT INTO c_t SELECT g, 'c ' || g FROM generate_series(1, {ROWS}) g;
                 INSERT INTO k SELECT g, 'k ' || g FROM generate_series(1, 10) g;"
            ),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cdc = format!("{src}_cdc");
        let inc = "inc".to_string();
        let incremental = |name: &str, target: &str, tables: &str| {
            format!(
                "  {name}:\n    source: src\n    target: {target}\n    mode: incremental\n    \
                 tables: [\"{tables}\"]\n    cursor: id\n    strategy: sequence\n    \
                 schedule: every 1s\n"
            )
        };
        std::fs::write(
            dir.path().join("siphon.yaml"),
            format!(
                "state: sqlite://.siphon/state.db\nconnections:\n  src: {}\n  dst: {}\n  dst2: {}\n\
                 pipelines:\n{}{}  {cdc}:\n    source: src\n    target: dst\n    mode: cdc\n    \
                 tables: [\"public.c_t\"]\n    schedule: continuous\n    \
                 schema_check_interval: 5s\n",
                pg.url_for(&src),
                pg.url_for(&dst),
                pg.url_for(&dst2),
                incremental(&inc, "dst", "public.i_*"),
                incremental("control", "dst2", "public.k"),
            ),
        )
        .unwrap();
        ok(siphon(dir.path(), &["apply"]));
        let state = format!(
            "sqlite://{}",
            dir.path().join(".siphon/state.db").to_str().unwrap()
        );
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
            dst2,
            inc,
            cdc,
            dir,
            rt,
            store,
        }
    }

    fn service(&self) -> Running {
        Running::spawn(
            command(
                self.dir.path(),
                &["service", "start", "--catalog-poll", "200ms"],
            ),
            &self.dir.path().join("service.log"),
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    /// `siphon ARGS`, which must succeed; its standard output.
    fn siphon(&self, args: &[&str]) -> String {
        ok(siphon(self.dir.path(), args))
    }

    /// Table `t` of `db` row for row, with its count; empty while it does not exist.
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

    /// Whether `t` on `target` equals the source's, row for row.
    fn same(&self, target: &str, t: &str) -> bool {
        let there = self.digest(target, t);
        !there.is_empty() && there == self.digest(&self.src, t)
    }

    fn has(&self, db: &str, t: &str, id: i64) -> bool {
        self.pg
            .query_in(db, &format!("SELECT count(*) FROM {t} WHERE id = {id}"))
            .is_ok_and(|n| n == "1")
    }

    fn exists(&self, db: &str, t: &str) -> bool {
        self.pg
            .query_in(db, &format!("SELECT to_regclass('public.{t}') IS NOT NULL"))
            .unwrap()
            == "t"
    }

    fn insert(&self, t: &str, from: i64, to: i64) {
        self.pg
            .query_in(
                &self.src,
                &format!(
                    "INSERT INTO {t} SELECT g, 'new ' || g FROM generate_series({from}, {to}) g"
                ),
            )
            .unwrap();
    }

    fn leased(&self, pipeline: &str) -> bool {
        self.rt
            .block_on(self.store.lease(pipeline))
            .unwrap()
            .is_some()
    }

    /// The newest execution's id of `pipeline` (0 before the first).
    fn newest_execution(&self, pipeline: &str) -> u64 {
        self.rt
            .block_on(self.store.executions(Some(pipeline), 1))
            .unwrap()
            .first()
            .map_or(0, |e| e.id)
    }

    /// The rows `pipeline`'s executions after `after` read from table `t`.
    fn rows_read_since(&self, pipeline: &str, after: u64, t: &str) -> u64 {
        self.rt
            .block_on(self.store.executions(Some(pipeline), 1_000))
            .unwrap()
            .iter()
            .filter(|e| e.id > after)
            .flat_map(|e| e.tables.iter())
            .filter(|s| s.table.name == t)
            .map(|s| s.rows_read)
            .sum()
    }

    fn stream_state(&self, pipeline: &str, t: &str) -> Option<StreamState> {
        let stream = StreamId::new(pipeline, &TableName::new(Some("public"), t));
        self.rt
            .block_on(self.store.stream_states())
            .unwrap()
            .into_iter()
            .find(|(s, _)| *s == stream)
            .map(|(_, st)| st)
    }
}

#[test]
fn sync_disable_pauses_a_running_pipeline_and_enable_catches_it_up_from_its_checkpoints() {
    let s = Setup::new();
    let mut service = s.service();
    let mut up = |what: &str, cond: &dyn Fn() -> bool| {
        wait_for(what, WITHIN, || {
            assert!(service.running(), "the service ended: {}", s.log());
            cond()
        })
    };
    up("every pipeline copied its tables", &|| {
        s.same(&s.dst, "i_t") && s.same(&s.dst, "c_t") && s.same(&s.dst2, "k")
    });
    up("the cdc table streams", &|| {
        s.stream_state(&s.cdc, "c_t") == Some(StreamState::Streaming)
    });

    let said = s.siphon(&["sync", "disable", &s.inc]);
    assert!(said.contains("paused"), "{said}");
    let said = s.siphon(&["sync", "disable", &s.cdc]);
    assert!(
        said.contains("paused") && said.contains("retains WAL"),
        "{said}"
    );
    // The pass in flight ends, and the runs give their leases up: a paused
    // pipeline holds nothing.
    up("the paused pipelines gave their leases up", &|| {
        !s.leased(&s.inc) && !s.leased(&s.cdc)
    });
    assert_eq!(
        s.stream_state(&s.cdc, "c_t"),
        Some(StreamState::Paused),
        "{}",
        s.log()
    );
    let (inc_before, cdc_before) = (s.newest_execution(&s.inc), s.newest_execution(&s.cdc));

    // Written while paused: rows of both, and a table the incremental
    // pipeline selects.
    s.insert("i_t", ROWS + 1, ROWS + WHILE_PAUSED);
    s.insert("c_t", ROWS + 1, ROWS + WHILE_PAUSED);
    s.pg.query_in(
        &s.src,
        "CREATE TABLE i_new (id bigint PRIMARY KEY, v text NOT NULL);
         INSERT INTO i_new SELECT g, 'n ' || g FROM generate_series(1, 3) g;",
    )
    .unwrap();
    // The clock: the control pipeline applies three rows, one after another,
    // each written once the one before arrived, a pass or more each.
    for id in 11..=13 {
        s.insert("k", id, id);
        up(&format!("the control pipeline applied row {id}"), &|| {
            s.has(&s.dst2, "k", id)
        });
    }
    assert!(
        !s.has(&s.dst, "i_t", ROWS + 1) && !s.has(&s.dst, "c_t", ROWS + 1),
        "a row written while its pipeline was paused arrived: {}",
        s.log()
    );
    assert!(
        !s.exists(&s.dst, "i_new"),
        "a table created while its pipeline was paused was started: {}",
        s.log()
    );
    assert_eq!(
        s.newest_execution(&s.inc),
        inc_before,
        "a pass ran while paused"
    );
    assert_eq!(
        s.newest_execution(&s.cdc),
        cdc_before,
        "a pass ran while paused"
    );
    assert!(!s.leased(&s.inc) && !s.leased(&s.cdc));

    // Every view says so.
    let list = s.siphon(&["sync", "list"]);
    let line = |p: &str| {
        list.lines()
            .find(|l| l.starts_with(&format!("{p}:")))
            .unwrap_or_else(|| panic!("no line for {p}: {list}"))
            .to_string()
    };
    assert!(line(&s.inc).contains("PAUSED"), "{list}");
    assert!(line(&s.cdc).contains("PAUSED"), "{list}");
    assert!(!line("control").contains("PAUSED"), "{list}");
    let status = stdout(&siphon(s.dir.path(), &["status", &s.inc]));
    assert!(
        status.lines().next().unwrap().ends_with(", paused"),
        "{status}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&siphon(
        s.dir.path(),
        &["status", "--json", &s.cdc],
    )))
    .unwrap();
    assert_eq!(json["pipelines"][0]["enabled"], false, "{json}");
    let service_status = s.siphon(&["service", "status"]);
    let shown = service_status
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{}:", s.inc)))
        .unwrap_or_else(|| panic!("{service_status}"));
    assert!(shown.contains("paused"), "{service_status}");
    let once = siphon(s.dir.path(), &["run", "--once", &s.inc]);
    assert!(once.status.success(), "{once:?}");
    assert!(stdout(&once).contains("paused, not run"), "{once:?}");
    assert!(
        !s.has(&s.dst, "i_t", ROWS + 1),
        "run --once ran a paused pipeline"
    );

    // Enabled again: everything catches up from the checkpoints.
    let said = s.siphon(&["sync", "enable", &s.inc]);
    assert!(said.contains("enabled"), "{said}");
    s.siphon(&["sync", "enable", &s.cdc]);
    up("both pipelines caught up", &|| {
        s.same(&s.dst, "i_t") && s.same(&s.dst, "c_t") && s.same(&s.dst, "i_new")
    });
    // Nothing was copied again nor applied twice: the tables read only the
    // rows written while paused (a cdc table whose checkpoint was reset would
    // be copied again in full).
    // A following pass records what it read as its window (5 s, the schema
    // check's interval) ends.
    up("the cdc pipeline recorded what it read", &|| {
        s.rows_read_since(&s.cdc, cdc_before, "c_t") >= WHILE_PAUSED as u64
    });
    assert_eq!(
        s.rows_read_since(&s.cdc, cdc_before, "c_t"),
        WHILE_PAUSED as u64,
        "{}",
        s.log()
    );
    assert_eq!(
        s.rows_read_since(&s.inc, inc_before, "i_t"),
        WHILE_PAUSED as u64,
        "{}",
        s.log()
    );
    // And it goes on streaming.
    s.insert("c_t", ROWS + 100, ROWS + 100);
    up("a row written after the resume arrived", &|| {
        s.has(&s.dst, "c_t", ROWS + 100)
    });
    assert!(s.same(&s.dst, "c_t"));
    assert!(
        service.stop("TERM", WITHIN),
        "the service failed to stop: {}",
        s.log()
    );
}
