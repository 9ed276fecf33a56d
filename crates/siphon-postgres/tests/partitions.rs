//! Partitioned PostgreSQL tables against a real PostgreSQL 15 from the testkit:
//! discovered as one table, copied through it (full load and cdc snapshot),
//! streamed as it (changes routed to several partitions, rows moving between
//! partitions), recreated as a partitioned table on a PostgreSQL target and as
//! one plain table on SQLite; partitions without a replica identity are refused
//! with the fix. Slots are server-wide, so every pipeline is named after its
//! own fresh database.

use siphon_core::{ExecutionStatus, PipelineSpec, Source, TableFilter};
use siphon_engine::{run_log_pass, run_pass, NoopObserver, PassReport, Shutdown};
use siphon_postgres::{log_name, PostgresSink, PostgresSource};
use siphon_sqlite::SqliteSink;
use siphon_state::SqliteStateStore;

mod support;
use support::{env, Env};

fn spec(json: &str) -> PipelineSpec {
    serde_json::from_str(json).unwrap()
}

/// A table range-partitioned by date (three years and a default partition)
/// and a list-partitioned one whose `us` partition is range-partitioned again.
const SCHEMA: &str = "
    CREATE TABLE events (id int, day date NOT NULL, kind text, qty int, PRIMARY KEY (id, day))
      PARTITION BY RANGE (day);
    CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
    CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
    CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    CREATE TABLE events_other PARTITION OF events DEFAULT;
    CREATE TABLE regions (code text, id int, name text, PRIMARY KEY (code, id)) PARTITION BY LIST (code);
    CREATE TABLE regions_eu PARTITION OF regions FOR VALUES IN ('de', 'fr');
    CREATE TABLE regions_us PARTITION OF regions FOR VALUES IN ('us') PARTITION BY RANGE (id);
    CREATE TABLE regions_us_low PARTITION OF regions_us FOR VALUES FROM (MINVALUE) TO (100);
    CREATE TABLE regions_us_high PARTITION OF regions_us FOR VALUES FROM (100) TO (MAXVALUE);
    CREATE TABLE regions_rest PARTITION OF regions DEFAULT;
    INSERT INTO events SELECT g, date '2022-12-25' + g * 7, 'k' || g % 3, g FROM generate_series(1, 200) g;
    INSERT INTO regions VALUES ('de', 1, 'Berlin'), ('fr', 2, 'Paris'), ('us', 3, 'Boston'),
      ('us', 150, 'Denver'), ('jp', 4, 'Tokyo');";

impl Env {
    /// Every row of `table`, as PostgreSQL prints it, sorted.
    fn rows(&self, db: &str, table: &str) -> String {
        self.pg
            .query_in(
                db,
                &format!(
                    "SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '') FROM {table} t"
                ),
            )
            .unwrap()
    }

    /// The partition tree of `table`: each member's parent, partition key and
    /// bound, and how many rows it holds itself.
    fn tree(&self, db: &str, table: &str) -> String {
        let members = self
            .pg
            .query_in(
                db,
                &format!(
                    "SELECT string_agg(c.relname, ' ' ORDER BY c.relname) FROM pg_partition_tree('{table}') p \
                     JOIN pg_class c ON c.oid = p.relid WHERE p.isleaf"
                ),
            )
            .unwrap();
        let mut out = self
            .pg
            .query_in(
                db,
                &format!(
                    "SELECT string_agg(concat_ws(' | ', c.relname, p.parentrelid::regclass::text, c.relkind, \
                       pg_get_partkeydef(c.oid), pg_get_expr(c.relpartbound, c.oid)), E'\\n' ORDER BY c.relname) \
                     FROM pg_partition_tree('{table}') p JOIN pg_class c ON c.oid = p.relid"
                ),
            )
            .unwrap();
        for leaf in members.split(' ').filter(|l| !l.is_empty()) {
            out.push_str(&format!(
                "\n{leaf}: {}",
                self.pg
                    .query_in(db, &format!("SELECT count(*) FROM ONLY {leaf}"))
                    .unwrap()
            ));
        }
        out
    }

    /// Asserts the target's `table` holds the source's rows, in the same
    /// partitions of the same partition tree.
    fn assert_same(&self, table: &str) {
        assert_eq!(
            self.rows(&self.dst, table),
            self.rows(&self.src, table),
            "target {table} differs from the source"
        );
        assert_eq!(
            self.tree(&self.dst, table),
            self.tree(&self.src, table),
            "target {table} is not partitioned as the source"
        );
    }
}

fn succeeded(report: &PassReport) {
    assert!(!report.tables.is_empty(), "no table ran: {report:?}");
    for t in &report.tables {
        assert_eq!(t.status, ExecutionStatus::Succeeded, "{t:?}");
    }
}

fn stats<'a>(report: &'a PassReport, name: &str) -> &'a siphon_core::TableStats {
    report
        .tables
        .iter()
        .find(|t| t.table.to_string() == name)
        .unwrap_or_else(|| panic!("no stats for {name}: {report:?}"))
}

#[tokio::test]
async fn a_partitioned_table_is_discovered_as_one_table_and_estimated_from_its_partitions() {
    let e = env().await;
    e.src_sql(SCHEMA);
    e.src_sql("CREATE TABLE plain (id int PRIMARY KEY)");
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let all = TableFilter {
        include: vec!["public.*".into()],
        exclude: vec![],
    };
    let mut names: Vec<String> = source
        .discover(&all)
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["public.events", "public.plain", "public.regions"]);

    let tables = source.discover(&all).await.unwrap();
    let events = tables.iter().find(|t| t.name.name == "events").unwrap();
    let p = events.partitioning.as_ref().expect("events is partitioned");
    assert_eq!(p.key, "RANGE (day)");
    let parts: Vec<(&str, &str)> = p
        .partitions
        .iter()
        .map(|p| (p.name.as_str(), p.bound.as_str()))
        .collect();
    assert_eq!(
        parts,
        [
            (
                "events_2023",
                "FOR VALUES FROM ('2023-01-01') TO ('2024-01-01')"
            ),
            (
                "events_2024",
                "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')"
            ),
            (
                "events_2025",
                "FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')"
            ),
            ("events_other", "DEFAULT"),
        ]
    );
    let regions = tables.iter().find(|t| t.name.name == "regions").unwrap();
    let us = regions.partitioning.as_ref().unwrap().partitions[2].clone();
    assert_eq!(us.name, "regions_us");
    assert_eq!(us.partitioning.unwrap().key, "RANGE (id)");
    assert!(tables
        .iter()
        .find(|t| t.name.name == "plain")
        .unwrap()
        .partitioning
        .is_none());

    // Analyzed as autovacuum does it, partition by partition: the partitioned
    // table's own statistics stay empty.
    for p in ["events_2023", "events_2024", "events_2025", "events_other"] {
        e.src_sql(&format!("ANALYZE {p}"));
    }
    assert_eq!(source.estimate_rows(events).await.unwrap(), Some(200));
}

#[tokio::test]
async fn full_loads_of_partitioned_tables_to_postgres_and_sqlite() {
    let e = env().await;
    e.src_sql(SCHEMA);
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let sink = PostgresSink::connect(&e.dst_url).await.unwrap();
    let p = spec(
        r#"{"source":"a","target":"b","mode":"full","tables":["public.events","public.regions"],"batch_size":30}"#,
    );
    let report = run_pass(
        &e.pipeline,
        &p,
        &source,
        &sink,
        &e.state,
        &NoopObserver,
        &Shutdown::new(),
    )
    .await
    .unwrap();
    succeeded(&report);
    assert_eq!(stats(&report, "public.events").rows_read, 200);
    e.assert_same("events");
    e.assert_same("regions");

    // A second load replaces the rows in the partitioned target.
    e.src_sql(
        "DELETE FROM events WHERE id % 2 = 0; INSERT INTO regions VALUES ('us', 500, 'Austin')",
    );
    let report = run_pass(
        &e.pipeline,
        &p,
        &source,
        &sink,
        &e.state,
        &NoopObserver,
        &Shutdown::new(),
    )
    .await
    .unwrap();
    succeeded(&report);
    e.assert_same("events");
    e.assert_same("regions");

    // SQLite has no partitions: one plain table with every row.
    let path = e.dir.path().join("target.db");
    let lite = SqliteSink::open(&path).unwrap();
    let state = SqliteStateStore::open(e.dir.path().join("lite-state.db"))
        .await
        .unwrap();
    let report = run_pass(
        "lite",
        &p,
        &source,
        &lite,
        &state,
        &NoopObserver,
        &Shutdown::new(),
    )
    .await
    .unwrap();
    succeeded(&report);
    let db = rusqlite::Connection::open(&path).unwrap();
    let count: i64 = db
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 100);
    let regions: String = db
        .query_row(
            "SELECT group_concat(code || ':' || id || ':' || name, ',') FROM (SELECT * FROM regions ORDER BY code, id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        regions,
        "de:1:Berlin,fr:2:Paris,jp:4:Tokyo,us:3:Boston,us:150:Denver,us:500:Austin"
    );
}

#[tokio::test]
async fn cdc_streams_changes_routed_to_several_partitions_as_the_partitioned_table() {
    let e = env().await;
    e.src_sql(SCHEMA);
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let sink = PostgresSink::connect(&e.dst_url).await.unwrap();
    let p =
        spec(r#"{"source":"a","target":"b","mode":"cdc","tables":["public.*"],"batch_size":7}"#);
    let pass = || async {
        run_log_pass(
            &e.pipeline,
            &p,
            &source,
            &sink,
            &e.state,
            &NoopObserver,
            &Shutdown::new(),
        )
        .await
        .unwrap()
    };

    let report = pass().await;
    succeeded(&report);
    assert_eq!(report.tables.len(), 2, "{report:?}");
    assert_eq!(stats(&report, "public.events").rows_read, 200);
    e.assert_same("events");
    e.assert_same("regions");

    // A partition added at the source is added on the target.
    // Inserts, updates and deletes in every partition; rows moving between
    // partitions (one into the default partition, one between sub-partitions
    // of another list partition); one transaction spanning partitions.
    e.src_sql(
        "CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
         INSERT INTO events VALUES (1004, '2027-05-05', 'in a new partition', 5);
         INSERT INTO events VALUES (1000, '2023-03-01', 'new', 1), (1001, '2024-03-01', 'new', 2),
           (1002, '2025-03-01', 'new', 3), (1003, '2030-01-01', 'new', 4);
         UPDATE events SET qty = qty * 100 WHERE id IN (2, 60, 110, 190);
         UPDATE events SET day = '2025-06-30' WHERE id = 3;
         UPDATE events SET day = '1999-01-01', kind = 'moved' WHERE id = 61;
         DELETE FROM events WHERE id IN (4, 62, 112, 199);
         BEGIN;
           UPDATE regions SET code = 'us', id = 120 WHERE code = 'de' AND id = 1;
           UPDATE regions SET id = 7 WHERE code = 'us' AND id = 150;
           UPDATE regions SET name = 'Tōkyō' WHERE code = 'jp';
           DELETE FROM regions WHERE code = 'fr';
           INSERT INTO regions VALUES ('fr', 9, 'Lyon'), ('us', 300, 'Seattle'), ('br', 5, 'Rio');
         COMMIT;",
    );
    let report = pass().await;
    succeeded(&report);
    e.assert_same("events");
    e.assert_same("regions");
    assert_eq!(
        e.dst_sql("SELECT count(*) FROM ONLY events_2025 WHERE id = 3"),
        "1",
        "the row moved into events_2025"
    );
    assert_eq!(
        e.dst_sql("SELECT kind FROM ONLY events_2027"),
        "in a new partition"
    );
    assert_eq!(
        e.dst_sql("SELECT name FROM ONLY regions_us_high WHERE id = 120"),
        "Berlin"
    );
    let events = stats(&report, "public.events");
    assert!(events.rows_read >= 14, "{events:?}");

    // A row for a partition the target does not have yet lands in its
    // default partition (a continuous stream applies it before the next pass
    // adds the partition); adding the partition then moves it there.
    e.dst_sql("INSERT INTO events VALUES (1005, '2029-05-05', 'early', 6)");
    e.src_sql(
        "CREATE TABLE events_2029 PARTITION OF events FOR VALUES FROM ('2029-01-01') TO ('2030-01-01');
         INSERT INTO events VALUES (1005, '2029-05-05', 'early', 6);",
    );
    let report = pass().await;
    succeeded(&report);
    e.assert_same("events");
    assert_eq!(e.dst_sql("SELECT kind FROM ONLY events_2029"), "early");
    assert_eq!(
        e.dst_sql("SELECT count(*) FROM ONLY events_other WHERE id = 1005"),
        "0"
    );

    // Deletes routed to every partition, then a TRUNCATE of the table.
    e.src_sql("DELETE FROM events WHERE id % 5 = 0");
    let report = pass().await;
    succeeded(&report);
    e.assert_same("events");
    e.src_sql("TRUNCATE regions");
    let report = pass().await;
    succeeded(&report);
    e.assert_same("regions");
    assert_eq!(e.dst_sql("SELECT count(*) FROM regions"), "0");
    // Published as the partitioned tables themselves.
    let name = log_name(&e.pipeline);
    assert_eq!(
        e.src_sql(&format!(
            "SELECT pubviaroot::text || ' ' || (SELECT string_agg(tablename, ',' ORDER BY tablename) \
             FROM pg_publication_tables WHERE pubname = '{name}') FROM pg_publication WHERE pubname = '{name}'"
        )),
        "true events,regions"
    );
}

#[tokio::test]
async fn an_existing_publication_is_switched_to_publish_through_the_partitioned_table() {
    let e = env().await;
    e.src_sql(SCHEMA);
    // A publication as an earlier siphon made it: partitions under their own names.
    let name = log_name(&e.pipeline);
    e.src_sql(&format!("CREATE PUBLICATION {name} FOR TABLE events"));
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let sink = PostgresSink::connect(&e.dst_url).await.unwrap();
    let p = spec(r#"{"source":"a","target":"b","mode":"cdc","tables":["public.events"]}"#);
    let pass = || async {
        run_log_pass(
            &e.pipeline,
            &p,
            &source,
            &sink,
            &e.state,
            &NoopObserver,
            &Shutdown::new(),
        )
        .await
        .unwrap()
    };
    succeeded(&pass().await);
    assert_eq!(
        e.src_sql(&format!(
            "SELECT pubviaroot FROM pg_publication WHERE pubname = '{name}'"
        )),
        "t"
    );
    e.src_sql("INSERT INTO events VALUES (5000, '2024-05-05', 'late', 1); DELETE FROM events WHERE id = 10");
    succeeded(&pass().await);
    e.assert_same("events");
}

#[tokio::test]
async fn partitions_without_a_replica_identity_are_refused_with_the_fix() {
    let e = env().await;
    // No primary key: the table relies on REPLICA IDENTITY FULL, which its
    // partitions do not inherit.
    e.src_sql(
        "CREATE TABLE readings (id int NOT NULL UNIQUE, at date NOT NULL, v int) PARTITION BY LIST (id);
         CREATE TABLE readings_a PARTITION OF readings FOR VALUES IN (1, 2);
         CREATE TABLE readings_b PARTITION OF readings FOR VALUES IN (3, 4);
         ALTER TABLE readings REPLICA IDENTITY FULL;
         ALTER TABLE readings_a REPLICA IDENTITY FULL;
         INSERT INTO readings VALUES (1, '2024-01-01', 10), (3, '2024-01-02', 30);",
    );
    let source = PostgresSource::connect(&e.src_url).await.unwrap();
    let sink = PostgresSink::connect(&e.dst_url).await.unwrap();
    let p = spec(r#"{"source":"a","target":"b","mode":"cdc","tables":["public.readings"]}"#);
    let pass = || async {
        run_log_pass(
            &e.pipeline,
            &p,
            &source,
            &sink,
            &e.state,
            &NoopObserver,
            &Shutdown::new(),
        )
        .await
        .unwrap()
    };
    let report = pass().await;
    let readings = stats(&report, "public.readings");
    assert_eq!(readings.status, ExecutionStatus::Failed, "{readings:?}");
    let error = readings.error.clone().unwrap();
    assert!(error.contains("public.readings_b"), "{error}");
    assert!(!error.contains("readings_a"), "{error}");
    assert!(error.contains("REPLICA IDENTITY FULL"), "{error}");
    // Not published, so the application can still change the partition.
    e.src_sql("UPDATE readings SET v = 31 WHERE id = 3; DELETE FROM readings WHERE id = 3");

    e.src_sql("ALTER TABLE readings_b REPLICA IDENTITY FULL");
    succeeded(&pass().await);
    e.src_sql("INSERT INTO readings VALUES (4, '2024-02-02', 40); UPDATE readings SET v = 11 WHERE id = 1");
    succeeded(&pass().await);
    assert_eq!(e.rows(&e.dst, "readings"), e.rows(&e.src, "readings"));
}
