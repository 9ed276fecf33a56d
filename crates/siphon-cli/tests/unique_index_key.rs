//! A PostgreSQL table without a primary key whose rows are told apart by a
//! unique index on NOT NULL columns (made with CREATE UNIQUE INDEX, not a
//! constraint) is replicated by that key: full loads, and `cdc` with
//! `REPLICA IDENTITY USING INDEX`, rather than refused for having no key.

use siphon_testkit::Postgres;

mod support;
use support::{ok, siphon};

#[test]
fn a_unique_index_on_not_null_columns_is_the_key_of_a_table_without_one() {
    let pg = Postgres::shared().unwrap();
    let src_url = pg.create_database().unwrap();
    let dst_url = pg.create_database().unwrap();
    let src = src_url.rsplit('/').next().unwrap().to_string();
    let dst = dst_url.rsplit('/').next().unwrap().to_string();
    pg.query_in(
        &src,
        "CREATE TABLE codes (code text NOT NULL, v int);
         CREATE UNIQUE INDEX codes_code ON codes (code);
         ALTER TABLE codes REPLICA IDENTITY USING INDEX codes_code;
         INSERT INTO codes SELECT 'c' || g, g FROM generate_series(1, 50) g;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pg.query_in(&dst, "CREATE SCHEMA full_copy; CREATE SCHEMA cdc_copy")
        .unwrap();
    std::fs::write(
        d.join("siphon.yaml"),
        format!(
            "state: sqlite://state.db\nconnections:\n  src: {src_url}\n  dst: {dst_url}\npipelines:\n\
             \x20 by_full: {{ source: src, target: dst, mode: full, tables: [public.codes], target_schema: full_copy }}\n\
             \x20 by_cdc: {{ source: src, target: dst, mode: cdc, tables: [public.codes], target_schema: cdc_copy }}\n"
        ),
    )
    .unwrap();
    let rows = |db: &str, table: &str| {
        pg.query_in(
            db,
            &format!("SELECT count(*) || ' ' || string_agg(code || '=' || coalesce(v::text, 'null'), ',' ORDER BY code) FROM {table}"),
        )
        .unwrap()
    };

    let out = ok(siphon(d, &["run", "--once"]));
    assert!(!out.contains("FAILED"), "{out}");
    assert_eq!(rows(&dst, "full_copy.codes"), rows(&src, "public.codes"));
    assert_eq!(rows(&dst, "cdc_copy.codes"), rows(&src, "public.codes"));

    pg.query_in(
        &src,
        "UPDATE codes SET v = v * 100 WHERE v <= 5;
         UPDATE codes SET code = 'renamed' WHERE code = 'c10';
         DELETE FROM codes WHERE v BETWEEN 20 AND 29;
         INSERT INTO codes VALUES ('new', NULL);",
    )
    .unwrap();
    let out = ok(siphon(d, &["run", "--once"]));
    assert!(!out.contains("FAILED"), "{out}");
    assert_eq!(rows(&dst, "cdc_copy.codes"), rows(&src, "public.codes"));
    assert_eq!(rows(&dst, "full_copy.codes"), rows(&src, "public.codes"));
    // One unique index on the copies, as at the source.
    let unique = pg
        .query_in(
            &dst,
            "SELECT count(*) FROM pg_index WHERE indrelid = 'cdc_copy.codes'::regclass AND indisunique",
        )
        .unwrap();
    assert_eq!(unique, "1");
    pg.query(&format!(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'siphon_by_cdc' AND database = '{src}'"
    ))
    .unwrap();
}
