//! `siphon quickstart`: a demo that needs no server. It builds a SQLite source,
//! copies it to a SQLite target, changes the source, picks up exactly those changes
//! incrementally, and proves both sides match.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use rusqlite::{params, Connection};
use siphon_core::{Error, ErrorKind, Result, Source, TableFilter};
use siphon_engine::{table_checksum, Shutdown};
use siphon_sqlite::SqliteSource;

use crate::config::ConfigFile;
use crate::progress::{summary_line, Bars};

const CUSTOMERS: u64 = 1_000;
const STATUSES: [&str; 4] = ["new", "paid", "shipped", "returned"];

fn db_err(doing: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::new(ErrorKind::Database, format!("quickstart: {doing}")).source(e)
}

/// A small deterministic generator, so every run builds the same data.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn timestamp(minutes: u64) -> String {
    let base = chrono::NaiveDate::from_ymd_opt(2025, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default();
    (base + chrono::Duration::minutes(minutes as i64))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn insert_order(tx: &Connection, rng: &mut Lcg, id: u64, minute: u64) -> rusqlite::Result<()> {
    let r = rng.next();
    let cents = r % 1_000_000;
    tx.prepare_cached(
        "INSERT INTO orders (id, customer_id, amount, quantity, paid, status, ordered_on, updated_at, ref, notes, attrs, weight)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        id as i64,
        (r % CUSTOMERS + 1) as i64,
        format!("{}.{:02}", cents / 100, cents % 100),
        (r % 20 + 1) as i64,
        !r.is_multiple_of(3),
        STATUSES[(r % 4) as usize],
        &timestamp(minute)[..10],
        timestamp(minute),
        uuid::Uuid::from_u64_pair(r, id).to_string(),
        if r.is_multiple_of(5) { None } else { Some(format!("order {id} — note ✓")) },
        format!(r#"{{"channel":"{}","gift":{}}}"#, if r.is_multiple_of(2) { "web" } else { "shop" }, r.is_multiple_of(7)),
        (r % 10_000) as f64 / 100.0,
    ])?;
    Ok(())
}

/// Builds the demo source: `customers` and `orders` with numbers, decimals, text,
/// booleans, dates, timestamps, UUIDs, JSON, NULLs and non-ASCII text.
fn build_source(path: &Path, rows: u64) -> Result<()> {
    let mut c = Connection::open(path).map_err(db_err("creating the source"))?;
    c.execute_batch(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR(64) NOT NULL, email TEXT UNIQUE, \
           created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL);
         CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, amount NUMERIC(12,2) NOT NULL, \
           quantity SMALLINT NOT NULL, paid BOOLEAN NOT NULL, status VARCHAR(16) NOT NULL, ordered_on DATE NOT NULL, \
           updated_at TIMESTAMP NOT NULL, ref UUID NOT NULL, notes TEXT, attrs JSON, weight DOUBLE);
         CREATE INDEX orders_updated_at ON orders (updated_at);
         CREATE INDEX orders_customer ON orders (customer_id);",
    )
    .map_err(db_err("creating the source tables"))?;
    let tx = c.transaction().map_err(db_err("filling the source"))?;
    for id in 1..=CUSTOMERS {
        tx.execute(
            "INSERT INTO customers VALUES (?1, ?2, ?3, ?4, ?4)",
            params![
                id as i64,
                format!("Customer {id} Ünïcødé"),
                format!("c{id}@example.com"),
                timestamp(id)
            ],
        )
        .map_err(db_err("filling customers"))?;
    }
    let mut rng = Lcg(42);
    for id in 1..=rows {
        // Spread over a year, several orders a minute: cursor values repeat.
        insert_order(&tx, &mut rng, id, id * 525_600 / rows.max(1))
            .map_err(db_err("filling orders"))?;
    }
    tx.commit().map_err(db_err("filling the source"))
}

/// Changes the source: updates, inserts and deletes; returns their counts.
fn change_source(path: &Path, rows: u64) -> Result<(u64, u64, u64)> {
    let mut c = Connection::open(path).map_err(db_err("opening the source"))?;
    let tx = c.transaction().map_err(db_err("changing the source"))?;
    let later = timestamp(600_000);
    let (updates, inserts, deletes) = (
        (rows / 200).max(1),
        (rows / 500).max(1),
        (rows / 1000).max(1),
    );
    let updated = tx
        .execute(
            "UPDATE orders SET amount = amount + 1, status = 'returned', updated_at = ?1 WHERE id % ?2 = 0 AND id <= ?3",
            params![later, (rows / updates).max(1) as i64, rows as i64],
        )
        .map_err(db_err("updating orders"))? as u64;
    let mut rng = Lcg(7);
    for i in 1..=inserts {
        insert_order(&tx, &mut rng, rows + i, 600_001).map_err(db_err("inserting orders"))?;
    }
    let deleted = tx
        .execute(
            "DELETE FROM orders WHERE id % ?1 = 1 AND id <= ?2",
            params![(rows / deletes).max(2) as i64, rows as i64],
        )
        .map_err(db_err("deleting orders"))? as u64;
    tx.commit().map_err(db_err("changing the source"))?;
    Ok((updated, inserts, deleted))
}

/// Marks a folder as made by quickstart; a rerun replaces only [`OWN_FILES`] there.
pub const MARKER: &str = ".siphon-quickstart";

/// The files quickstart writes in its folder (each SQLite file with its journal
/// and WAL companions): the only ones a rerun removes.
const OWN_FILES: [&str; 4] = ["source.db", "target.db", "state.db", "siphon.yaml"];

/// Makes `dir` ready for a run without removing anything quickstart did not
/// create: a missing or empty folder is used, a previous quickstart's folder has
/// quickstart's own files removed (any other file in it stays), and any other
/// folder with something in it is refused.
fn prepare_dir(dir: &Path) -> Result<()> {
    let d = dir.display();
    let cannot =
        |what: &str, e: std::io::Error| Error::config(format!("cannot {what} {d}")).source(e);
    if dir.exists() && !dir.is_dir() {
        return Err(Error::config(format!(
            "quickstart: {d} is a file, not a folder; pick a folder with --dir"
        )));
    }
    if dir.is_dir() {
        let empty = std::fs::read_dir(dir)
            .map_err(|e| cannot("read", e))?
            .next()
            .is_none();
        if !empty {
            if !dir.join(MARKER).is_file() {
                return Err(Error::config(format!(
                    "quickstart: {d} is not empty and is not a folder quickstart made (it has no \
                     {MARKER} file), and quickstart never deletes files it did not create: pick \
                     a new or empty folder with --dir"
                )));
            }
            for own in OWN_FILES {
                for suffix in ["", "-journal", "-wal", "-shm"] {
                    let path = dir.join(format!("{own}{suffix}"));
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(cannot(&format!("remove {own}{suffix} from"), e)),
                    }
                }
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| cannot("create", e))?;
    std::fs::write(
        dir.join(MARKER),
        format!(
            "This folder was made by `siphon quickstart`. Running it again here replaces {} \
             (and their -journal, -wal and -shm files) and leaves every other file alone.\n",
            OWN_FILES.join(", ")
        ),
    )
    .map_err(|e| cannot("write the marker file in", e))
}

/// Runs the demo in `dir` with `rows` orders.
pub async fn run(dir: &Path, rows: u64) -> Result<ExitCode> {
    prepare_dir(dir)?;
    let source_path = dir.join("source.db");
    let d = dir.display();
    println!("siphon quickstart — everything lives in {d}/\n");
    let t = Instant::now();
    build_source(&source_path, rows)?;
    println!(
        "1. built {d}/source.db: {rows} orders and {CUSTOMERS} customers ({:.1}s)",
        t.elapsed().as_secs_f64()
    );

    let config = format!(
        "# The quickstart's pipeline; run it again with:\n\
         #   siphon run -f {d}/siphon.yaml --once\n\
         # Paths are relative to this file's folder.\n\
         state: sqlite://state.db\n\
         connections:\n  source: sqlite://source.db\n  target: sqlite://target.db\n\
         pipelines:\n  quickstart:\n    source: source\n    target: target\n    mode: incremental\n    \
         cursor: updated_at\n    strategy: timestamp\n    delete_detection: key_diff\n    tables: [\"*\"]\n"
    );
    let config_path = dir.join("siphon.yaml");
    std::fs::write(&config_path, &config)
        .map_err(|e| Error::config("cannot write siphon.yaml").source(e))?;
    let file = ConfigFile::load(&config_path)?;
    let state = super::open_state(None, file.state.as_deref()).await?;
    super::run::apply(&state, &file).await?;
    let spec = file.pipelines["quickstart"].clone();
    let shutdown = Shutdown::new();
    let bars = Bars::new();

    println!(
        "2. first run: every table is copied in chunks of {} rows",
        spec.batch_size
    );
    let t = Instant::now();
    let first = super::run::pass("quickstart", &spec, &state, &bars, &shutdown).await?;
    let secs = t.elapsed().as_secs_f64();
    for s in &first.tables {
        println!("   {}", summary_line("quickstart", s));
    }
    let copied: u64 = first.tables.iter().map(|s| s.inserted).sum();
    println!(
        "   {copied} rows in {secs:.2}s ({:.0} rows/s)",
        copied as f64 / secs.max(1e-9)
    );

    let (updated, inserted, deleted) = change_source(&source_path, rows)?;
    println!(
        "3. changed the source: {updated} orders updated, {inserted} inserted, {deleted} deleted"
    );

    println!("4. incremental run: only what changed is read, by updated_at; deletes found by key comparison");
    let second = super::run::pass("quickstart", &spec, &state, &bars, &shutdown).await?;
    for s in &second.tables {
        println!("   {}", summary_line("quickstart", s));
    }
    let sum = |f: fn(&siphon_core::TableStats) -> u64| second.tables.iter().map(f).sum::<u64>();
    let picked_up = (sum(|s| s.updated), sum(|s| s.inserted), sum(|s| s.deleted));
    let exact =
        picked_up == (updated, inserted, deleted) && sum(|s| s.rows_read) == updated + inserted;
    println!(
        "   picked up {} updated, {} inserted, {} deleted: {}",
        picked_up.0,
        picked_up.1,
        picked_up.2,
        if exact {
            "exactly the changes made"
        } else {
            "NOT the changes made"
        }
    );

    println!("5. verify: row counts and checksums of every table on both sides");
    let source = SqliteSource::open(&source_path)?;
    let target = SqliteSource::open(dir.join("target.db"))?;
    let all = TableFilter {
        include: vec!["*".into()],
        exclude: vec![],
    };
    let mut matched = true;
    for table in source.discover(&all).await? {
        let a = table_checksum(&source, &table, 5000).await?;
        let b = table_checksum(&target, &table, 5000).await?;
        let ok = a == b;
        matched &= ok;
        println!(
            "   {:<10} source {:>7} rows  {:016x}   target {:>7} rows  {:016x}   {}",
            table.name.to_string(),
            a.rows,
            a.checksum,
            b.rows,
            b.checksum,
            if ok { "match" } else { "DIFFER" }
        );
    }
    if matched && exact && first.status == siphon_core::ExecutionStatus::Succeeded {
        println!("\nsource and target match. Next: edit {d}/siphon.yaml and run `siphon run -f {d}/siphon.yaml --once`.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\nsource and target do NOT match");
        Ok(ExitCode::FAILURE)
    }
}
