//! A user the server does not know is named as such, for the source, the
//! target and the replication connection, rather than blamed on pg_hba.conf.

use siphon_postgres::replication::{ReplicationConfig, ReplicationStream};
use siphon_postgres::{PostgresSink, PostgresSource};
use siphon_testkit::Postgres;

fn says_unknown_user(text: &str) {
    assert!(
        text.contains("user \"rv_ghost\" does not exist") && !text.contains("pg_hba"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "the password leaked: {text}");
}

#[tokio::test]
async fn an_unknown_user_is_named() {
    let pg = Postgres::shared().unwrap();
    let url = format!(
        "postgres://rv_ghost:hunter2@127.0.0.1:{}/postgres",
        pg.port()
    );
    says_unknown_user(&PostgresSource::connect(&url).await.unwrap_err().to_string());
    says_unknown_user(&PostgresSink::connect(&url).await.unwrap_err().to_string());
    let config: tokio_postgres::Config = url.parse().unwrap();
    let cfg = ReplicationConfig::from_pg_config(&config, "any_slot", "any_pub").unwrap();
    match ReplicationStream::connect(cfg).await {
        Ok(_) => panic!("a replication connection opened as an unknown user"),
        Err(e) => says_unknown_user(&e.to_string()),
    }
}
