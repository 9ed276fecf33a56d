//! The SQL Server replicator's operators switch tables of a running service
//! with `redis-cli`, under the prefix `mssql_sync` and the tables' plain
//! names: `SET mssql_sync:enabled:User "true"` starts table `User` (paused
//! until then: `new_tables: paused`), `"false"` pauses it again, and `SET
//! mssql_sync:force_full_load:Product "true"` truncates and reloads `Product`,
//! after which siphon deletes the key. The service runs a continuous
//! PostgreSQL to PostgreSQL pipeline on a Redis state store; `redis-cli` runs
//! as its own process, with exactly those arguments.
//!
//! Every wait polls a condition with a deadline; no fixed sleep synchronizes.

use std::process::Command;
use std::time::{Duration, Instant};

use siphon::{AnyStateStore, ConnectionUrl, Registry};
use siphon_core::{StateStore, StreamId, StreamState, TableName};
use siphon_testkit::{Postgres, Redis};

mod support;
use support::{db_name, ok, wait_for, Running};

/// How long any awaited condition may take.
const WITHIN: Duration = Duration::from_secs(120);

/// Rows `Product` starts with: enough that a reload takes a while.
const PRODUCTS: i64 = 50_000;

/// The command line of the service on the state store `state`.
fn service_args(state: &str) -> Vec<String> {
    ["service", "start", "--state", state]
        .map(String::from)
        .to_vec()
}

struct Setup {
    pg: &'static Postgres,
    redis: &'static Redis,
    src: String,
    dst: String,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    store: AnyStateStore,
}

impl Setup {
    fn new() -> Setup {
        let pg = Postgres::shared().unwrap();
        let redis = Redis::shared().unwrap();
        let src = db_name(&pg.create_database().unwrap());
        let dst = db_name(&pg.create_database().unwrap());
        pg.query_in(
            &src,
            &format!(
                "CREATE SEQUENCE stamp;
                 CREATE FUNCTION restamp() RETURNS trigger LANGUAGE plpgsql AS
                   $$ BEGIN NEW.seq := nextval('stamp'); RETURN NEW; END $$;
                 CREATE TABLE \"User\" (id bigint PRIMARY KEY, name text NOT NULL,
                                        seq bigint NOT NULL DEFAULT nextval('stamp'));
                 CREATE TRIGGER restamp BEFORE UPDATE ON \"User\" FOR EACH ROW EXECUTE FUNCTION restamp();
                 INSERT INTO \"User\" (id, name) SELECT g, 'user ' || g FROM generate_series(1, 100) g;
                 CREATE TABLE \"Product\" (id bigint PRIMARY KEY, title text NOT NULL, price numeric(10,2),
                                           seq bigint NOT NULL DEFAULT nextval('stamp'));
                 CREATE TRIGGER restamp BEFORE UPDATE ON \"Product\" FOR EACH ROW EXECUTE FUNCTION restamp();
                 INSERT INTO \"Product\" (id, title, price)
                   SELECT g, 'product ' || g, g / 100.0 FROM generate_series(1, {PRODUCTS}) g;"
            ),
        )
        .unwrap();
        let state = format!("{}?prefix=mssql_sync", redis.url());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("siphon.yaml"),
            format!(
                "connections:\n  src: {}\n  dst: {}\n\
                 pipelines:\n  mssql:\n    source: src\n    target: dst\n    mode: incremental\n\
                 \x20   tables: [public.*]\n    cursor: seq\n    strategy: sequence\n\
                 \x20   schedule: continuous\n    new_tables: paused\n",
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
            redis,
            src,
            dst,
            dir,
            rt,
            store,
        }
    }

    fn service(&self) -> Running {
        let args = service_args(&format!("{}?prefix=mssql_sync", self.redis.url()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Running::spawn(
            support::command(self.dir.path(), &args),
            &self.dir.path().join("service.log"),
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    /// `redis-cli -p PORT ARGS`, as an operator types it; what it printed.
    fn redis_cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-p")
            .arg(self.redis.port().to_string())
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The stream state of table `name` of the pipeline.
    fn stream_state(&self, name: &str) -> Option<StreamState> {
        let stream = StreamId::new("mssql", &TableName::new(Some("public"), name));
        self.rt
            .block_on(self.store.stream_states())
            .unwrap()
            .into_iter()
            .find(|(s, _)| *s == stream)
            .map(|(_, st)| st)
    }

    /// Table `t` row for row in PostgreSQL's text form, with its count;
    /// empty while it does not exist.
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

    /// Whether the target's table `t` has a row with id `id`.
    fn target_has(&self, t: &str, id: i64) -> bool {
        self.pg
            .query_in(
                &self.dst,
                &format!("SELECT count(*) FROM \"{t}\" WHERE id = {id}"),
            )
            .is_ok_and(|n| n == "1")
    }
}

#[test]
fn redis_cli_starts_pauses_and_reloads_tables_of_a_running_service() {
    let s = Setup::new();
    let mut service = s.service();
    let mut alive = |s: &Setup| assert!(service.running(), "the service ended: {}", s.log());

    // Discovered but never enabled: both tables wait.
    wait_for("the service found both tables paused", WITHIN, || {
        alive(&s);
        s.stream_state("User") == Some(StreamState::Paused)
            && s.stream_state("Product") == Some(StreamState::Paused)
    });
    assert_eq!(s.digest(&s.dst, "User"), "", "a paused table was copied");

    assert_eq!(
        s.redis_cli(&["SET", "mssql_sync:enabled:Product", "true"]),
        "OK"
    );
    wait_for("Product was copied", WITHIN, || {
        alive(&s);
        s.same("Product")
    });
    assert_eq!(
        s.stream_state("User"),
        Some(StreamState::Paused),
        "{}",
        s.log()
    );
    assert_eq!(s.digest(&s.dst, "User"), "", "a paused table was copied");

    // Started by the operator's key.
    assert_eq!(
        s.redis_cli(&["SET", "mssql_sync:enabled:User", "true"]),
        "OK"
    );
    wait_for("User was copied", WITHIN, || {
        alive(&s);
        s.same("User")
    });
    s.pg.query_in(
        &s.src,
        "INSERT INTO \"User\" (id, name) VALUES (101, 'new user')",
    )
    .unwrap();
    wait_for("the new user arrived", WITHIN, || {
        alive(&s);
        s.same("User")
    });

    // Paused by it: a change made once the service saw the switch waits,
    // while Product's changes go on arriving.
    assert_eq!(
        s.redis_cli(&["SET", "mssql_sync:enabled:User", "false"]),
        "OK"
    );
    wait_for("the service paused User", WITHIN, || {
        alive(&s);
        s.stream_state("User") == Some(StreamState::Paused)
    });
    s.pg.query_in(
        &s.src,
        "INSERT INTO \"User\" (id, name) VALUES (102, 'waits')",
    )
    .unwrap();
    s.pg.query_in(
        &s.src,
        "INSERT INTO \"Product\" (id, title) VALUES (1000001, 'goes on')",
    )
    .unwrap();
    wait_for("Product's new row arrived", WITHIN, || {
        alive(&s);
        s.target_has("Product", 1_000_001)
    });
    assert!(
        !s.target_has("User", 102),
        "a change of a paused table arrived"
    );
    assert_eq!(s.redis_cli(&["GET", "mssql_sync:enabled:User"]), "false");

    // The target's Product drifted: a row lost, a row changed, a row that
    // the source never had. Polling alone never mends that; a reload does.
    s.pg.query_in(
        &s.dst,
        "DELETE FROM \"Product\" WHERE id = 7;
         UPDATE \"Product\" SET title = 'drifted' WHERE id = 8;
         INSERT INTO \"Product\" (id, title, seq) VALUES (-1, 'only here', 0);",
    )
    .unwrap();
    assert!(!s.same("Product"));
    assert_eq!(
        s.redis_cli(&["SET", "mssql_sync:force_full_load:Product", "true"]),
        "OK"
    );
    // The key goes once the reload has committed: from then on the target
    // holds the reloaded table.
    let deadline = Instant::now() + WITHIN;
    while s.redis_cli(&["EXISTS", "mssql_sync:force_full_load:Product"]) == "1" {
        alive(&s);
        assert!(
            Instant::now() < deadline,
            "the force_full_load key is still there: {}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        s.same("Product"),
        "the force_full_load key was deleted before the reload committed: {} rows, source {}",
        s.digest(&s.dst, "Product"),
        s.digest(&s.src, "Product")
    );
    assert!(!s.target_has("Product", -1));

    // Enabled again, User catches up with what it missed.
    assert!(!s.target_has("User", 102));
    assert_eq!(
        s.redis_cli(&["SET", "mssql_sync:enabled:User", "true"]),
        "OK"
    );
    wait_for("User caught up", WITHIN, || {
        alive(&s);
        s.same("User")
    });
    assert!(
        service.stop("TERM", WITHIN),
        "the service failed to stop: {}",
        s.log()
    );
}
