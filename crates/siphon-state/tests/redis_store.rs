//! `RedisStateStore` against a real Redis server: the state store conformance
//! suite (each store under its own key prefix), and the SQL Server
//! replicator's operator keys set with `redis-cli` exactly as its operators
//! type them.

use std::process::Command;

use siphon_core::{
    Checkpoint, ErrorKind, ExecutionStatus, Flag, Mode, Phase, StateStore, StreamId, TableName,
    TableStats,
};
use siphon_state::RedisStateStore;
use siphon_testkit::conformance::state::{self, StoreHarness};
use siphon_testkit::conformance::HarnessError;
use siphon_testkit::Redis;

/// Stores are key prefixes of the shared server's database 0.
struct RedisStores;

impl StoreHarness for RedisStores {
    type Store = RedisStateStore;

    fn create_store(&self) -> Result<String, HarnessError> {
        let redis = Redis::shared()?;
        Ok(format!(
            "{}?prefix={}",
            redis.url(),
            siphon_testkit::unique_name("state")
        ))
    }

    async fn open_store(&self, locator: &str) -> siphon_core::Result<RedisStateStore> {
        RedisStateStore::open_url(locator).await
    }
}

#[tokio::test]
async fn connections() {
    state::connections(&RedisStores).await;
}

#[tokio::test]
async fn pipelines() {
    state::pipelines(&RedisStores).await;
}

#[tokio::test]
async fn flags() {
    state::flags(&RedisStores).await;
}

#[tokio::test]
async fn stream_states() {
    state::stream_states(&RedisStores).await;
}

#[tokio::test]
async fn checkpoints() {
    state::checkpoints(&RedisStores).await;
}

#[tokio::test]
async fn executions() {
    state::executions(&RedisStores).await;
}

#[tokio::test]
async fn prune_executions() {
    state::prune_executions(&RedisStores).await;
}

#[tokio::test]
async fn leases() {
    state::leases(&RedisStores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_race() {
    state::lease_race(&RedisStores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn take_flag() {
    state::take_flag(&RedisStores).await;
}

#[tokio::test]
async fn conflicts() {
    state::conflicts(&RedisStores).await;
}

/// `redis-cli ARGS` against the shared server, database 0; what it printed.
fn redis_cli(args: &[&str]) -> String {
    let redis = Redis::shared().expect("the shared Redis server");
    let out = Command::new("redis-cli")
        .args([
            "-h",
            redis.host(),
            "-p",
            &redis.port().to_string(),
            "-n",
            "0",
        ])
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A store under its own prefix, as `?prefix=` names it.
async fn store(prefix: &str) -> RedisStateStore {
    let redis = Redis::shared().expect("the shared Redis server");
    RedisStateStore::open_url(&format!("{}?prefix={prefix}", redis.url()))
        .await
        .expect("open the store")
}

/// The operator of the SQL Server replicator switches a table on and forces
/// a reload with the keys of its README, typed into `redis-cli` as written
/// there: the store reads them as the table's switches, and taking the
/// reload (as the engine does when it reloads) deletes the key.
#[tokio::test]
async fn the_original_tools_redis_keys_switch_tables() {
    // The original tool's prefix, in a database of this test's own so that
    // the keys are exactly `mssql_sync:…`.
    let redis = Redis::shared().unwrap();
    let url = format!("{}?prefix=mssql_sync", redis.url_db(7));
    let s = RedisStateStore::open_url(&url).await.unwrap();
    assert_eq!(s.prefix(), "mssql_sync");
    let cli = |args: &[&str]| {
        let mut all = vec!["-n", "7"];
        all.extend_from_slice(args);
        let out = Command::new("redis-cli")
            .args(["-h", redis.host(), "-p", &redis.port().to_string()])
            .args(&all)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "redis-cli {all:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let user = StreamId::new("mssql", &TableName::new(None, "User"));
    let product = StreamId::new("mssql", &TableName::new(None, "Product"));
    // A table in a schema answers to its bare name too, as SQL Server's dbo
    // tables did in the original tool.
    let dbo_user = StreamId::new("mssql", &TableName::new(Some("dbo"), "User"));

    // Nothing set: the pipeline's `new_tables` decides (paused, for this tool).
    assert_eq!(s.flag(&user, Flag::Enabled).await.unwrap(), None);

    assert_eq!(cli(&["SET", "mssql_sync:enabled:User", "true"]), "OK");
    assert_eq!(s.flag(&user, Flag::Enabled).await.unwrap(), Some(true));
    assert_eq!(s.flag(&dbo_user, Flag::Enabled).await.unwrap(), Some(true));
    assert_eq!(s.flag(&product, Flag::Enabled).await.unwrap(), None);
    // Pausing it again is the same key.
    assert_eq!(cli(&["SET", "mssql_sync:enabled:User", "false"]), "OK");
    assert_eq!(s.flag(&user, Flag::Enabled).await.unwrap(), Some(false));

    assert_eq!(
        cli(&["SET", "mssql_sync:force_full_load:Product", "true"]),
        "OK"
    );
    assert_eq!(
        s.flag(&product, Flag::ForceFullLoad).await.unwrap(),
        Some(true)
    );
    // The reload takes the request: the key is gone, once.
    assert!(s.take_flag(&product, Flag::ForceFullLoad).await.unwrap());
    assert_eq!(cli(&["EXISTS", "mssql_sync:force_full_load:Product"]), "0");
    assert!(!s.take_flag(&product, Flag::ForceFullLoad).await.unwrap());
    // The enable switch is not taken by anything.
    assert_eq!(cli(&["GET", "mssql_sync:enabled:User"]), "false");

    // A value that is neither true nor false is an error naming the key.
    cli(&["SET", "mssql_sync:enabled:Product", "ture"]);
    let e = s.flag(&product, Flag::Enabled).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("mssql_sync:enabled:Product") && msg.contains("ture"),
        "{msg}"
    );
    cli(&["DEL", "mssql_sync:enabled:Product"]);

    // A pipeline's own switch (siphon sync enable/disable) wins over the
    // table-wide key, and belongs to that pipeline alone.
    s.set_flag(&user, Flag::Enabled, true).await.unwrap();
    assert_eq!(s.flag(&user, Flag::Enabled).await.unwrap(), Some(true));
    let other = StreamId::new("other", &user.table);
    assert_eq!(s.flag(&other, Flag::Enabled).await.unwrap(), Some(false));
    assert_eq!(
        cli(&["HGET", "mssql_sync:flags:mssql", "enabled:User"]),
        "true"
    );
}

/// Every key of a store starts with its prefix, so that stores with other
/// prefixes share a database without seeing each other.
#[tokio::test]
async fn everything_lives_under_the_prefix() {
    let prefix = siphon_testkit::unique_name("layout");
    let s = store(&prefix).await;
    let t = TableName::new(Some("public"), "users");
    let stream = StreamId::new("app", &t);
    s.put_connection("app", "postgres://h/app").await.unwrap();
    s.put_pipeline(
        "app",
        &serde_json::from_str(r#"{"source":"app","target":"app"}"#).unwrap(),
    )
    .await
    .unwrap();
    s.set_flag(&stream, Flag::ForceFullLoad, true)
        .await
        .unwrap();
    let lease = s
        .acquire_lease("app", "w1", std::time::Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    s.save_checkpoint(
        &Checkpoint::new(stream.clone(), Phase::Streaming { position: None })
            .with_epoch(lease.epoch),
    )
    .await
    .unwrap();
    let id = s.start_execution("app").await.unwrap();
    let mut stats = TableStats::starting(&t, Mode::Full);
    stats.status = ExecutionStatus::Succeeded;
    s.record_table(id, &stats).await.unwrap();
    s.finish_execution(id, ExecutionStatus::Succeeded, None)
        .await
        .unwrap();

    let keys = redis_cli(&["--scan", "--pattern", &format!("{prefix}*")]);
    let mut keys: Vec<&str> = keys.lines().collect();
    keys.sort();
    let want = [
        "checkpoints:app",
        "connections",
        &format!("execution:{id}"),
        "execution_id",
        "executions",
        "executions_of:app",
        "flags:app",
        "lease:app",
        "lease_epoch:app",
        "pipelines",
    ];
    let mut want: Vec<String> = want.iter().map(|k| format!("{prefix}:{k}")).collect();
    want.sort();
    assert_eq!(keys, want);
    // The live lease expires by itself.
    let ttl: i64 = redis_cli(&["PTTL", &format!("{prefix}:lease:app")])
        .parse()
        .unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
    assert_eq!(
        redis_cli(&["HGET", &format!("{prefix}:lease_epoch:app"), "epoch"]),
        lease.epoch.to_string()
    );

    // A pipeline removed takes its switches and checkpoints along; its
    // history stays.
    assert!(s.remove_pipeline("app").await.unwrap());
    assert_eq!(s.checkpoint(&stream).await.unwrap(), None);
    assert_eq!(s.flag(&stream, Flag::ForceFullLoad).await.unwrap(), None);
    assert_eq!(s.executions(Some("app"), 10).await.unwrap().len(), 1);
}

/// History is bounded per pipeline: the oldest executions go, keys and all.
#[tokio::test]
async fn old_executions_go() {
    let prefix = siphon_testkit::unique_name("kept");
    let s = store(&prefix).await.keep_executions(2);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(s.start_execution("p").await.unwrap());
    }
    let kept: Vec<u64> = s
        .executions(Some("p"), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(kept, [ids[3], ids[2]]);
    assert_eq!(s.execution(ids[0]).await.unwrap(), None);
    assert_eq!(
        redis_cli(&["EXISTS", &format!("{prefix}:execution:{}", ids[0])]),
        "0"
    );
    let e = s
        .record_table(
            ids[0],
            &TableStats::starting(&TableName::new(None, "t"), Mode::Full),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
}

/// A server that cannot be reached is a connection error, which the engine
/// retries; the message names the store without its password.
#[tokio::test]
async fn an_unreachable_server_is_a_connection_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = RedisStateStore::open_url(&format!("redis://:hunter2@127.0.0.1:{port}/0"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connection, "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
}
