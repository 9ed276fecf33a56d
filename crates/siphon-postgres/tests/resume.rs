//! [`LogSource::resume`] for PostgreSQL against a real server: a slot that
//! still holds the log after a checkpoint resumes it; one dropped and created
//! again says every table of the pipeline lost its history.

use siphon_core::{ErrorKind, LogSource, Source, TableFilter};
use siphon_postgres::{log_name, PostgresSource};
use siphon_testkit::Postgres;

#[tokio::test]
async fn a_recreated_slot_reports_every_table_lost() {
    let pg = Postgres::shared().unwrap();
    let url = pg.create_database().unwrap();
    let db = url.rsplit('/').next().unwrap().to_string();
    pg.query_in(
        &db,
        "CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY)",
    )
    .unwrap();
    let source = PostgresSource::connect(&url).await.unwrap();
    let filter = TableFilter {
        include: vec!["public.*".into()],
        exclude: vec![],
    };
    let schemas = source.discover(&filter).await.unwrap();
    assert_eq!(schemas.len(), 2);
    let pipeline = db.clone();
    let start = source.prepare_log(&pipeline, &schemas).await.unwrap();

    // The log holds everything after its own start.
    let r = source.resume(&pipeline, &start, &schemas).await.unwrap();
    assert!(r.lost.is_empty(), "{:?}", r.lost);
    assert_eq!(r.from, start);

    // Dropped, changes made, created again: the changes in between are gone.
    pg.query(&format!(
        "SELECT pg_drop_replication_slot('{}')",
        log_name(&pipeline)
    ))
    .unwrap();
    pg.query_in(&db, "INSERT INTO a VALUES (1)").unwrap();
    let again = source.prepare_log(&pipeline, &schemas).await.unwrap();
    assert_ne!(again, start);
    let r = source.resume(&pipeline, &start, &schemas).await.unwrap();
    assert_eq!(r.from, again, "reading goes on where the new slot starts");
    let mut names: Vec<String> = r.lost.iter().map(|(t, _)| t.to_string()).collect();
    names.sort();
    assert_eq!(names, ["public.a", "public.b"]);
    for (t, e) in &r.lost {
        assert_eq!(e.kind(), ErrorKind::PositionLost, "{e}");
        assert_eq!(e.table_name(), Some(t.to_string().as_str()));
        assert!(e.to_string().contains(&log_name(&pipeline)), "{e}");
    }

    // From the new slot's start, nothing is lost.
    let r = source.resume(&pipeline, &again, &schemas).await.unwrap();
    assert!(r.lost.is_empty(), "{:?}", r.lost);
    source.drop_log(&pipeline).await.unwrap();
}
