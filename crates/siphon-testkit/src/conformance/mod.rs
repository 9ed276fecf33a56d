//! The conformance suite every source, sink and state store passes on its real server.
//!
//! A connector's test file (`tests/conformance.rs`) implements [`Harness`]: how to
//! make a fresh database, run native SQL in it, and open the connector's
//! [`Source`] and [`Sink`] on it. The suite states its tables in a neutral form
//! ([`TableSpec`], [`Literal`]) that the harness renders as DDL and DML (ANSI SQL
//! by default), and takes the connector's own types from [`Harness::types`]. Each
//! case is one `pub async fn` that panics with a message naming the table, the
//! column and the value when the connector breaks its contract, so a test file
//! runs one `#[tokio::test]` per case:
//!
//! | case | module |
//! | --- | --- |
//! | type round trips with NULLs and extreme values, by load and by apply | [`types`] |
//! | resume after a kill inside a chunk, idempotent replay | [`sink`](mod@sink) |
//! | empty tables, key-less tables, a unique NOT NULL key | [`source`](mod@source) |
//! | odd identifiers in table and column names | [`identifiers`] |
//! | ids of logged changes identical on every read of the log | [`log`] |
//! | every [`siphon_core::StateStore`] method | [`state`] |
//! | event targets: order, ack before checkpoint, replay with the same ids | [`events`] |
//!
//! Source and sink run on the same engine: rows go from a source database to a
//! target database of the same server, and are read back from the target with
//! the connector's own source, then compared with what the suite wrote.

pub mod events;
pub mod identifiers;
pub mod log;
pub mod sink;
pub mod source;
pub mod state;
pub mod types;

use std::error::Error as StdError;
use std::future::Future;

use siphon_core::{
    Checkpoint, Phase, Position, Row, SchemaOptions, Sink, Source, StreamId, TableFilter,
    TableName, TableSchema, Value,
};

/// What a harness method fails with: anything printable.
pub type HarnessError = Box<dyn StdError + Send + Sync>;

/// The pipeline name every checkpoint of the suite carries.
pub const PIPELINE: &str = "conformance";

/// One of the connector's column types and the values the suite round-trips
/// through it: each an SQL literal in the connector's dialect and the
/// [`Value`] its source must read for it. NULL is added by the suite.
#[derive(Debug, Clone)]
pub struct TypeCase {
    /// The type as declared in `CREATE TABLE` (`numeric(38,10)`, `BLOB`).
    pub native_type: String,
    /// `(literal, value)` pairs: the extremes the engine holds (min and max,
    /// NaN and infinities, empty and very long, non-ASCII, the date limits).
    pub values: Vec<(String, Value)>,
}

impl TypeCase {
    /// A type and its `(literal, value)` pairs.
    pub fn new(native_type: &str, values: Vec<(String, Value)>) -> TypeCase {
        TypeCase {
            native_type: native_type.to_string(),
            values,
        }
    }
}

/// A column of a table the suite creates.
#[derive(Debug, Clone)]
pub struct ColumnSpec {
    /// The name, exactly (the harness quotes it).
    pub name: String,
    /// The type in the connector's dialect.
    pub native_type: String,
    /// Declared `NOT NULL`.
    pub not_null: bool,
}

/// The key a table the suite creates has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySpec {
    /// A primary key on these column positions.
    Primary(Vec<usize>),
    /// No primary key, a UNIQUE constraint on these NOT NULL columns.
    UniqueNotNull(Vec<usize>),
    /// Neither a primary key nor a unique key.
    None,
}

/// A table the suite creates, in no engine's dialect.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// The schema it is in; `None` for the database's default one (see
    /// [`Harness::table_name`]).
    pub schema: Option<String>,
    /// The table's name in its schema.
    pub name: String,
    /// The columns, in order.
    pub columns: Vec<ColumnSpec>,
    /// The key it is created with.
    pub key: KeySpec,
}

/// One value in a row the suite inserts.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// SQL `NULL`.
    Null,
    /// An integer, read back as [`Value::Int64`] from [`Harness::integer_type`].
    Int(i64),
    /// A string, read back as [`Value::Text`] from [`Harness::text_type`].
    Text(String),
    /// A literal in the connector's dialect, used as written (from [`TypeCase`]).
    Sql(String),
}

/// How the suite reaches one connector on its real server. Implemented once per
/// connector, in its `tests/conformance.rs`.
///
/// Databases are named by an opaque locator the harness hands out (a URL, a file
/// path); every call of [`Harness::create_database`] returns a new, empty one, so
/// cases run in parallel on one shared server.
pub trait Harness: Send + Sync {
    /// The connector's source.
    type Source: Source;
    /// The connector's sink.
    type Sink: Sink;

    /// A new, empty database; its locator.
    fn create_database(&self) -> Result<String, HarnessError>;

    /// Runs `sql` (one or more statements) in the database `db`, committed when
    /// it returns.
    fn execute(&self, db: &str, sql: &str) -> Result<(), HarnessError>;

    /// The connector's source on the database `db`.
    fn open_source(
        &self,
        db: &str,
    ) -> impl Future<Output = siphon_core::Result<Self::Source>> + Send;

    /// The connector's sink on the database `db`; a new handle with connections
    /// of its own on every call.
    fn open_sink(&self, db: &str) -> impl Future<Output = siphon_core::Result<Self::Sink>> + Send;

    /// The name a table called `name` has in the database's default schema, as
    /// the source discovers it (`public.name`, or a bare `name`).
    fn table_name(&self, name: &str) -> TableName;

    /// A signed 64-bit integer type, read as [`Value::Int64`].
    fn integer_type(&self) -> &str;

    /// An unbounded text type, read as [`Value::Text`].
    fn text_type(&self) -> &str;

    /// Every type the connector supports, each with NULL-free extreme values.
    fn types(&self) -> Vec<TypeCase>;

    /// Whether the connector copies between two of its databases on a native
    /// path ([`Source::native_format`], [`Sink::load_native`]). Defaults to no.
    fn has_native_path(&self) -> bool {
        false
    }

    /// `CREATE SCHEMA` for a schema called `name`, where the engine has schemas;
    /// `None` (the default) where it has none. Only cases about schemas call it.
    fn create_schema_sql(&self, name: &str) -> Option<String> {
        let _ = name;
        None
    }

    /// The name of table `name` in schema `schema`, as the source discovers it.
    fn table_in_schema(&self, schema: &str, name: &str) -> TableName {
        TableName::new(Some(schema), name)
    }

    /// `name` as a quoted identifier. ANSI by default: in double quotes, a
    /// double quote doubled.
    fn quote(&self, name: &str) -> String {
        format!("\"{}\"", name.replace('"', "\"\""))
    }

    /// The table's name as SQL: quoted, and qualified by its schema when it
    /// names one.
    fn table_sql(&self, table: &TableSpec) -> String {
        match &table.schema {
            Some(schema) => format!("{}.{}", self.quote(schema), self.quote(&table.name)),
            None => self.quote(&table.name),
        }
    }

    /// `value` as an SQL literal. ANSI by default: strings in single quotes with a
    /// single quote doubled.
    fn literal(&self, value: &Literal) -> String {
        match value {
            Literal::Null => "NULL".to_string(),
            Literal::Int(n) => n.to_string(),
            Literal::Text(s) => format!("'{}'", s.replace('\'', "''")),
            Literal::Sql(s) => s.clone(),
        }
    }

    /// `CREATE TABLE` for `table`. ANSI by default.
    fn create_table_sql(&self, table: &TableSpec) -> String {
        let mut parts: Vec<String> = table
            .columns
            .iter()
            .map(|c| {
                let null = if c.not_null { " NOT NULL" } else { "" };
                format!("{} {}{null}", self.quote(&c.name), c.native_type)
            })
            .collect();
        let list = |cols: &[usize]| {
            cols.iter()
                .map(|&i| self.quote(&table.columns[i].name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &table.key {
            KeySpec::Primary(cols) => parts.push(format!("PRIMARY KEY ({})", list(cols))),
            KeySpec::UniqueNotNull(cols) => parts.push(format!("UNIQUE ({})", list(cols))),
            KeySpec::None => {}
        }
        format!(
            "CREATE TABLE {} ({})",
            self.table_sql(table),
            parts.join(", ")
        )
    }

    /// `INSERT` of `rows` (values in column order) into `table`; empty for no
    /// rows. ANSI by default, one statement per row.
    fn insert_sql(&self, table: &TableSpec, rows: &[Vec<Literal>]) -> String {
        let cols: Vec<String> = table.columns.iter().map(|c| self.quote(&c.name)).collect();
        rows.iter()
            .map(|row| {
                let values: Vec<String> = row.iter().map(|v| self.literal(v)).collect();
                format!(
                    "INSERT INTO {} ({}) VALUES ({});\n",
                    self.table_sql(table),
                    cols.join(", "),
                    values.join(", ")
                )
            })
            .collect()
    }
}

/// Creates `table` in `db` and inserts `rows`.
pub fn create_table<H: Harness>(h: &H, db: &str, table: &TableSpec, rows: &[Vec<Literal>]) {
    let sql = format!(
        "{};\n{}",
        h.create_table_sql(table),
        h.insert_sql(table, rows)
    );
    h.execute(db, &sql)
        .unwrap_or_else(|e| panic!("creating table {}: {e}\n{sql}", table.name));
}

/// The name the source discovers `table` under.
pub fn name_of<H: Harness>(h: &H, table: &TableSpec) -> TableName {
    match &table.schema {
        Some(schema) => h.table_in_schema(schema, &table.name),
        None => h.table_name(&table.name),
    }
}

/// A new database, or a panic saying why there is none.
pub fn database<H: Harness>(h: &H) -> String {
    h.create_database()
        .unwrap_or_else(|e| panic!("creating a database: {e}"))
}

/// The connector's source on `db`.
pub async fn source<H: Harness>(h: &H, db: &str) -> H::Source {
    h.open_source(db)
        .await
        .unwrap_or_else(|e| panic!("opening the source on {db}: {e}"))
}

/// The connector's sink on `db`.
pub async fn sink<H: Harness>(h: &H, db: &str) -> H::Sink {
    h.open_sink(db)
        .await
        .unwrap_or_else(|e| panic!("opening the sink on {db}: {e}"))
}

/// The table `name` as `source` discovers it; panics when discovery does not
/// return it exactly once under that name.
pub async fn discover_one<S: Source>(source: &S, name: &TableName) -> TableSchema {
    // The display name as a pattern: it has no `*` or `?`, so it selects the
    // table and any other that displays alike, which must not be taken for it.
    let filter = TableFilter {
        include: vec![name.to_string()],
        exclude: vec![],
    };
    let found = source
        .discover(&filter)
        .await
        .unwrap_or_else(|e| panic!("discovering tables: {e}"));
    let names: Vec<String> = found.iter().map(|t| format!("{:?}", t.name)).collect();
    let mut hits: Vec<TableSchema> = found.into_iter().filter(|t| &t.name == name).collect();
    assert_eq!(
        hits.len(),
        1,
        "discovery should return table {name:?} once; it returned {names:?}"
    );
    hits.remove(0)
}

/// Every row of `table`, read with [`Source::read_chunk`] in chunks of `chunk`
/// rows; also checks that positions move forward and that the last read is empty.
pub async fn read_all<S: Source>(source: &S, table: &TableSchema, chunk: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut after: Option<Position> = None;
    loop {
        let c = source
            .read_chunk(table, after.as_ref(), chunk)
            .await
            .unwrap_or_else(|e| panic!("reading table {}: {e}", table.name));
        assert!(
            c.rows.len() <= chunk,
            "table {}: a chunk over its limit",
            table.name
        );
        if c.rows.is_empty() {
            assert_eq!(
                c.last, None,
                "table {}: an empty chunk has a position",
                table.name
            );
            return rows;
        }
        assert!(
            c.last.is_some(),
            "table {}: a chunk without a position",
            table.name
        );
        rows.extend(c.rows);
        after = c.last;
    }
}

/// The target's rows of the table `name` in `db`, read back with the connector's
/// own source, in key order.
pub async fn target_rows<H: Harness>(h: &H, db: &str, name: &TableName) -> Vec<Row> {
    rows_of(&source(h, db).await, name).await
}

/// The rows of the table `name`, read with `source` (opened on a target), in key
/// order.
pub async fn rows_of<S: Source>(source: &S, name: &TableName) -> Vec<Row> {
    let table = discover_one(source, name).await;
    read_all(source, &table, 1000).await
}

/// A snapshot checkpoint of `table` at `last_key`.
pub fn snapshot_checkpoint(table: &TableName, last_key: Option<Position>) -> Checkpoint {
    Checkpoint {
        stream: StreamId::new(PIPELINE, table),
        epoch: 0,
        phase: Phase::Snapshot {
            last_key,
            resume_position: None,
            ranges: Vec::new(),
            shadow: None,
        },
    }
}

/// A streaming checkpoint of `table` at a position that carries `n`.
pub fn streaming_checkpoint(table: &TableName, n: i64) -> Checkpoint {
    Checkpoint {
        stream: StreamId::new(PIPELINE, table),
        epoch: 0,
        phase: Phase::Streaming {
            position: Some(Position(serde_json::json!({ "conformance": n }))),
        },
    }
}

/// Prepares `table` on `sink` and copies it from `source` in chunks of `chunk`
/// rows, each with its snapshot checkpoint; returns the checkpoint of the last.
pub async fn copy_table<S: Source, K: Sink>(
    source: &S,
    sink: &K,
    table: &TableSchema,
    chunk: usize,
) -> Checkpoint {
    sink.prepare(table, &SchemaOptions::default())
        .await
        .unwrap_or_else(|e| panic!("preparing table {} on the target: {e}", table.name));
    let mut after: Option<Position> = None;
    let mut last = snapshot_checkpoint(&table.name, None);
    loop {
        let c = source
            .read_chunk(table, after.as_ref(), chunk)
            .await
            .unwrap_or_else(|e| panic!("reading table {}: {e}", table.name));
        if c.rows.is_empty() {
            return last;
        }
        last = snapshot_checkpoint(&table.name, c.last.clone());
        sink.load(table, c.rows, &last)
            .await
            .unwrap_or_else(|e| panic!("loading table {}: {e}", table.name));
        after = c.last;
    }
}

/// Whether two values are the same, NaN being the same as NaN.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float32(x), Value::Float32(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Value::Float64(x), Value::Float64(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        _ => a == b,
    }
}

/// Asserts that `actual` holds exactly the rows of `expected`, in that order;
/// a difference is reported by row, column and value. `what` says where the
/// rows came from.
pub fn assert_rows(what: &str, table: &TableSchema, actual: &[Row], expected: &[Row]) {
    for (r, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(
            a.len(),
            e.len(),
            "{what}: table {}, row {r}: arity",
            table.name
        );
        for (i, (x, y)) in a.iter().zip(e).enumerate() {
            let col = table.columns.get(i);
            assert!(
                same_value(x, y),
                "{what}: table {}, row {r}, column {} ({}): got {x:?}, want {y:?}",
                table.name,
                col.map_or("?", |c| c.name.as_str()),
                col.map_or("?", |c| c.native_type.as_str()),
            );
        }
    }
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: table {}: {} rows, want {}",
        table.name,
        actual.len(),
        expected.len()
    );
}

/// A table of an integer key `id` and a NOT NULL text column `v`, in the
/// connector's types.
pub fn keyed_text_table<H: Harness>(h: &H, name: &str) -> TableSpec {
    TableSpec {
        schema: None,
        name: name.to_string(),
        columns: vec![
            ColumnSpec {
                name: "id".into(),
                native_type: h.integer_type().to_string(),
                not_null: true,
            },
            ColumnSpec {
                name: "v".into(),
                native_type: h.text_type().to_string(),
                not_null: true,
            },
        ],
        key: KeySpec::Primary(vec![0]),
    }
}

/// The row `(id, v)` of a [`keyed_text_table`], as literals.
pub fn text_literals(id: i64, v: &str) -> Vec<Literal> {
    vec![Literal::Int(id), Literal::Text(v.to_string())]
}

/// The row `(id, v)` of a [`keyed_text_table`], as values.
pub fn text_row(id: i64, v: &str) -> Row {
    vec![Value::Int64(id), Value::Text(v.to_string())]
}
