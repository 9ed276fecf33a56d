//! `siphon sync sequences NAME` and the schema fidelity warning, through the
//! binary, with PostgreSQL on both sides from the testkit.

use siphon_testkit::Postgres;

mod support;
use support::siphon;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn sync_sequences_moves_the_targets_sequences_to_the_sources_positions() {
    let pg = Postgres::shared().unwrap();
    let src = pg.create_database().unwrap();
    let dst = pg.create_database().unwrap();
    let (src_db, dst_db) = (
        src.rsplit('/').next().unwrap(),
        dst.rsplit('/').next().unwrap(),
    );
    pg.query_in(
        src_db,
        "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL DEFAULT 'unnamed');
         CREATE TABLE tickets (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, item integer REFERENCES items (id));
         CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
         CREATE TRIGGER items_keep BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION keep();
         CREATE TRIGGER tickets_keep BEFORE UPDATE ON tickets FOR EACH ROW EXECUTE FUNCTION keep();
         INSERT INTO items (name) VALUES ('a'), ('b'), ('c');
         INSERT INTO tickets (item) VALUES (1), (2);",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("siphon.yaml"),
        format!(
            "state: sqlite://state.db\nconnections:\n  src: {src}\n  dst: {dst}\n\
             pipelines:\n  load:\n    source: src\n    target: dst\n    mode: full\n    tables: [public.*]\n"
        ),
    )
    .unwrap();
    let run = siphon(dir.path(), &["run", "-f", "siphon.yaml", "--once"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    // One warning for the pass names both tables' triggers.
    let stderr = text(&run.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("not carried to the target"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("trigger items_keep on public.items"),
        "{stderr}"
    );
    assert!(
        warnings[0].contains("trigger tickets_keep on public.tickets"),
        "{stderr}"
    );

    // The source draws further than its rows show.
    pg.query_in(
        src_db,
        "SELECT setval('items_id_seq', 40); SELECT setval(pg_get_serial_sequence('tickets', 'id'), 70);",
    )
    .unwrap();
    let out = siphon(
        dir.path(),
        &["--state", "sqlite://state.db", "sync", "sequences", "load"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("public.items: items_id_seq at 40"),
        "{stdout}"
    );
    assert!(
        stdout.contains("public.tickets: tickets_id_seq at 70"),
        "{stdout}"
    );
    assert_eq!(
        pg.query_in(
            dst_db,
            "INSERT INTO items DEFAULT VALUES RETURNING id, name"
        )
        .unwrap(),
        "41|unnamed"
    );
    assert_eq!(
        pg.query_in(
            dst_db,
            "INSERT INTO tickets (item) VALUES (41) RETURNING id"
        )
        .unwrap(),
        "71"
    );

    let out = siphon(
        dir.path(),
        &["--state", "sqlite://state.db", "sync", "sequences", "nope"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown pipeline `nope`"),
        "{}",
        text(&out.stderr)
    );
}
