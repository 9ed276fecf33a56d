//! Tables as siphon sees them: names, columns, types and keys.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A table's name. `schema` is `None` where the engine has no schemas (SQLite) and
/// for names that mean "the connection's default schema".
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableName {
    pub schema: Option<String>,
    pub name: String,
}

impl TableName {
    pub fn new(schema: Option<&str>, name: &str) -> TableName {
        TableName {
            schema: schema.map(str::to_string),
            name: name.to_string(),
        }
    }

    /// Parses `schema.table` or a bare `table`.
    pub fn parse(s: &str) -> TableName {
        match s.split_once('.') {
            Some((schema, name)) => TableName::new(Some(schema), name),
            None => TableName::new(None, s),
        }
    }

    /// The name as one string that no other name shares, for keying a table
    /// stream in storage (state stores, target checkpoint tables).
    ///
    /// A name whose parts hold no `.` and no `"` keeps its display form
    /// (`schema.table`, or `table`), so keys stored before this form existed stay
    /// valid. Any other name has each part double-quoted with `"` doubled:
    /// `"a"."b.c"` and `"a.b"."c"` are two keys, where both display as `a.b.c`.
    /// [`TableName::from_key`] reads it back.
    pub fn key(&self) -> String {
        let plain = |p: &str| !p.contains(['.', '"']);
        if self.schema.as_deref().is_none_or(plain) && plain(&self.name) {
            return self.to_string();
        }
        let quote = |p: &str| format!("\"{}\"", p.replace('"', "\"\""));
        match &self.schema {
            Some(s) => format!("{}.{}", quote(s), quote(&self.name)),
            None => quote(&self.name),
        }
    }

    /// The name [`TableName::key`] made `key` from; `None` when `key` is not such
    /// a key (a plain key with more than one `.` or with a `"`, or a quoted one
    /// that is not one or two quoted parts joined by `.`).
    pub fn from_key(key: &str) -> Option<TableName> {
        if !key.starts_with('"') {
            if key.contains('"') || key.matches('.').count() > 1 {
                return None;
            }
            return Some(TableName::parse(key));
        }
        let mut parts = Vec::new();
        let mut chars = key.chars().peekable();
        while chars.next() == Some('"') {
            let mut part = String::new();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
            parts.push(part);
            match chars.next() {
                None => break,
                Some('.') if parts.len() == 1 => {}
                Some(_) => return None,
            }
            if chars.peek() != Some(&'"') {
                return None;
            }
        }
        if chars.next().is_some() {
            return None;
        }
        let table = match parts.as_slice() {
            [name] => TableName::new(None, name),
            [schema, name] => TableName::new(Some(schema), name),
            _ => return None,
        };
        // One name, one key: a quoted key for a plain name is not one.
        (table.key() == key).then_some(table)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The portable kind of a column's type. Parameters that change what a column can
/// hold (length, precision, scale) are part of the kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TypeKind {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// Exact numeric; `None` precision means unconstrained.
    Decimal {
        precision: Option<u32>,
        scale: Option<u32>,
    },
    /// Variable-length text, with an optional maximum length in characters.
    Text {
        max_len: Option<u32>,
    },
    /// Fixed-length, blank-padded text.
    FixedText {
        len: u32,
    },
    Bytes {
        max_len: Option<u32>,
    },
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Uuid,
    Json,
    /// A type with no portable equivalent, carried as text and recreated only on an
    /// engine of the same kind.
    Engine {
        name: String,
    },
    /// An array of `element` (of any number of dimensions).
    Array {
        element: Box<TypeKind>,
    },
    /// A text value from a fixed set of labels.
    Enum {
        name: String,
        labels: Vec<String>,
    },
}

/// A column's type: its kind and whether it accepts NULL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataType {
    pub kind: TypeKind,
    pub nullable: bool,
}

impl DataType {
    pub fn new(kind: TypeKind, nullable: bool) -> DataType {
        DataType { kind, nullable }
    }
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub data_type: DataType,
    /// The type exactly as the source engine declared it (`numeric(12,2)`,
    /// `VARCHAR(16)`), used verbatim when the target is an engine of the same kind.
    pub native_type: String,
    /// Computed by the engine; read, never written on a target.
    #[serde(default)]
    pub generated: bool,
    /// The column's identity at the source where the engine has one that
    /// survives a rename (PostgreSQL's `attnum`): two shapes of one table name
    /// the same column by it, whatever its name in each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<i64>,
}

impl Column {
    /// Whether every value a column of type `self` holds fits a column of type
    /// `to` unchanged, so a target column can be altered from the one to the
    /// other without losing or refusing a value: integers to wider integers,
    /// exact numerics or text; text to longer or unbounded text; numeric to a
    /// larger precision with the same scale; a time or timestamp to a larger
    /// fractional precision. The same type counts as widening.
    pub fn widens_to(&self, to: &Column) -> bool {
        use TypeKind as K;
        let (a, b) = (&self.data_type.kind, &to.data_type.kind);
        let rank = |k: &K| match k {
            K::Int16 => Some(5),
            K::Int32 => Some(10),
            K::Int64 => Some(19),
            _ => None,
        };
        match (a, b) {
            _ if a == b => fraction_digits(&self.native_type) <= fraction_digits(&to.native_type),
            (K::Int16 | K::Int32 | K::Int64, K::Int16 | K::Int32 | K::Int64) => rank(a) <= rank(b),
            (K::Int16 | K::Int32 | K::Int64, K::Decimal { precision, scale }) => match precision {
                None => true,
                Some(p) => rank(a).is_some_and(|r| *p >= r + scale.unwrap_or(0)),
            },
            (K::Int16 | K::Int32 | K::Int64 | K::Decimal { .. }, K::Text { max_len: None }) => true,
            (
                K::Decimal {
                    precision: Some(p),
                    scale: s,
                },
                K::Decimal {
                    precision: p2,
                    scale: s2,
                },
            ) => s == s2 && p2.is_none_or(|p2| p2 >= *p),
            (K::Text { max_len: Some(n) }, K::Text { max_len: m }) => m.is_none_or(|m| m >= *n),
            (K::FixedText { .. } | K::Text { .. } | K::Enum { .. }, K::Text { max_len: None }) => {
                true
            }
            (K::Bytes { max_len: Some(n) }, K::Bytes { max_len: m }) => m.is_none_or(|m| m >= *n),
            _ => false,
        }
    }
}

/// The fractional-second precision a declared type names (`timestamp(3)` is
/// 3); 6, the most, when it names none.
fn fraction_digits(native: &str) -> u32 {
    let lower = native.to_ascii_lowercase();
    let timed = lower.starts_with("time") || lower.starts_with("interval");
    match (timed, lower.split_once('(')) {
        (true, Some((_, rest))) => rest
            .split(')')
            .next()
            .and_then(|d| d.trim().parse().ok())
            .unwrap_or(6),
        _ => 6,
    }
}

/// A secondary index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub name: String,
    pub columns: Vec<String>,
    pub unique: bool,
}

/// A table's shape: columns in order, the primary key, unique keys and indexes.
/// Rows travel as `Vec<Value>` in the order of `columns`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub name: TableName,
    /// The engine the schema was read from; it decides whether `native_type`
    /// can be used verbatim on a target.
    pub origin: crate::typemap::Engine,
    pub columns: Vec<Column>,
    /// Positions in `columns` of the primary key, in key order; empty when the table
    /// has none.
    pub primary_key: Vec<usize>,
    /// Unique keys other than the primary key, as column positions.
    #[serde(default)]
    pub unique_keys: Vec<Vec<usize>>,
    #[serde(default)]
    pub indexes: Vec<Index>,
    /// How the table is split into partitions, when it is a partitioned table;
    /// rows are read and written through the table itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioning: Option<Partitioning>,
    /// What belongs with the table beyond its columns and keys (defaults,
    /// constraints, sequences, indexes, foreign keys, comments, views), and
    /// what siphon found but does not carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<SchemaObject>,
}

/// One object that belongs with a table, in the SQL of the engine it was read
/// from (`origin`). Only a target of that engine recreates it; names in the
/// object's `schema` are left unqualified in `definition`, so a target runs it
/// with its own schema first on the search path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaObject {
    pub kind: ObjectKind,
    /// The object's name as the source names it (`orders_total_check`).
    pub name: String,
    /// The statements that recreate it on an engine of the same kind.
    pub definition: String,
    pub origin: crate::typemap::Engine,
    /// The schema its unqualified names are in, where the engine has schemas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Tables that must exist on the target before it can be created (a
    /// foreign key's referenced table, the tables a view reads).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<TableName>,
    /// A sequence's position at the source when it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<SequenceState>,
}

/// What kind of object a [`SchemaObject`] is; the order is the order a target
/// creates them in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// The name of the primary key or of a unique constraint.
    Key,
    /// A sequence owned by a column, or an identity column and its sequence.
    Sequence,
    /// A column default.
    Default,
    Check,
    /// A secondary index (unique, expression and partial indexes included).
    Index,
    /// A comment on the table or one of its columns.
    Comment,
    /// A foreign key; created after the data is loaded.
    ForeignKey,
    /// A view over the selected tables; created after them.
    View,
    /// A stored function (MySQL/MariaDB to the same engine, with
    /// `schema.routines: true`); created after the views.
    Function,
    /// A stored procedure (as [`ObjectKind::Function`]); created after the
    /// functions.
    Procedure,
    /// A trigger on the table (as [`ObjectKind::Function`]); created last, so
    /// the routines it calls exist.
    Trigger,
    /// Found at the source, not recreated on a target: named in a warning.
    NotCarried {
        reason: String,
    },
}

/// A sequence's position, as `setval(sequence, last_value, is_called)` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceState {
    /// The column that owns it (whose default or identity draws from it).
    pub column: String,
    pub last_value: i64,
    pub is_called: bool,
    pub increment: i64,
}

/// A partitioned table's partition key and partitions, in the syntax of the
/// engine named by the table's `origin`; only a target of that engine recreates
/// them, any other creates one plain table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partitioning {
    /// The partition key as the engine prints it: `RANGE (created_on)`.
    pub key: String,
    /// The partitions, ordered by name.
    pub partitions: Vec<Partition>,
}

/// One partition of a partitioned table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// The partition's table name; on a target it is created in the schema of
    /// the partitioned table.
    pub name: String,
    /// Which rows it holds, as the engine prints it:
    /// `FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')`, `DEFAULT`.
    pub bound: String,
    /// Its own partitions, when it is partitioned in turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioning: Option<Partitioning>,
}

impl TableSchema {
    /// Position of a column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Position of the column that `other` (another shape of this table) holds
    /// at `i`: by [`Column::source_id`] when both shapes have ids, else by name.
    pub fn same_column(&self, other: &TableSchema, i: usize) -> Option<usize> {
        let col = other.columns.get(i)?;
        match col.source_id {
            Some(id) if self.columns.iter().all(|c| c.source_id.is_some()) => {
                self.columns.iter().position(|c| c.source_id == Some(id))
            }
            _ => self.column_index(&col.name),
        }
    }

    /// The key used to address single rows: the primary key, or else the first
    /// unique key whose columns are all NOT NULL.
    pub fn row_key(&self) -> Option<&[usize]> {
        if !self.primary_key.is_empty() {
            return Some(&self.primary_key);
        }
        self.unique_keys
            .iter()
            .find(|k| k.iter().all(|&i| !self.columns[i].data_type.nullable))
            .map(Vec::as_slice)
    }

    /// Whether a unique constraint other than `key` (column positions, the row
    /// key a sink writes by) holds on the table: its primary key when that is
    /// not `key`, another unique key, or a unique index on other columns. Rows
    /// of distinct keys can then collide on it, so a sink may not write a
    /// batch's rows in any order it likes.
    pub fn unique_besides(&self, key: &[usize]) -> bool {
        let named = |cols: &[String]| {
            cols.len() == key.len()
                && cols
                    .iter()
                    .zip(key)
                    .all(|(c, &i)| self.columns.get(i).is_some_and(|k| k.name == *c))
        };
        (!self.primary_key.is_empty() && self.primary_key != key)
            || self.unique_keys.iter().any(|u| u != key)
            || self.indexes.iter().any(|i| i.unique && !named(&i.columns))
    }

    /// The row key, or an error that names the table and says how to give it one.
    pub fn require_row_key(&self) -> crate::Result<&[usize]> {
        self.row_key().ok_or_else(|| {
            crate::Error::bad_input(
                "the table has no primary key: add a PRIMARY KEY (or a UNIQUE NOT NULL column), since siphon \
                 reads and writes rows by key",
            )
            .table(&self.name)
        })
    }

    /// The values of `row` at the key positions.
    pub fn key_of(&self, key: &[usize], row: &[crate::Value]) -> Vec<crate::Value> {
        key.iter().map(|&i| row[i].clone()).collect()
    }
}
