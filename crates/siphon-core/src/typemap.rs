//! The one place where column types are mapped between engines.
//!
//! A source reads its declared type names into a portable [`TypeKind`]
//! ([`parse_native`]); a sink writes a kind as its own type name ([`native_type`]).
//! Between engines of the same kind the declared name is used verbatim, so nothing
//! is lost. Where an engine has no exact equivalent the mapping widens (never
//! narrows): the round-trip tests below list each such case.

use serde::{Deserialize, Serialize};

use crate::{Column, TypeKind};

/// A database engine, as named by a connection URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    Postgres,
    Mysql,
    SqlServer,
    Sqlite,
}

/// The type to declare for `column` on a `target` engine, for a schema read from
/// `origin`.
pub fn native_type(target: Engine, origin: Engine, column: &Column) -> String {
    if target == origin && !column.native_type.is_empty() {
        return column.native_type.clone();
    }
    declare(target, &column.data_type.kind)
}

/// The type name an engine uses for a portable kind.
pub fn declare(engine: Engine, kind: &TypeKind) -> String {
    use TypeKind as K;
    let dec = |p: &Option<u32>, s: &Option<u32>, word: &str, unbounded: &str| match (p, s) {
        (Some(p), Some(s)) => format!("{word}({p},{s})"),
        (Some(p), None) => format!("{word}({p})"),
        _ => unbounded.to_string(),
    };
    match engine {
        Engine::Sqlite => match kind {
            K::Bool => "BOOLEAN".into(),
            K::Int16 => "SMALLINT".into(),
            K::Int32 => "INT".into(),
            K::Int64 => "BIGINT".into(),
            K::Float32 | K::Float64 => "DOUBLE".into(),
            // TEXT affinity (the name holds `TEXT`, not `INT`): SQLite keeps every
            // digit, where a NUMERIC column would turn the text into a 15-digit real.
            K::Decimal { precision, scale } => {
                dec(precision, scale, "DECIMAL_TEXT", "DECIMAL_TEXT")
            }
            K::Text { max_len: Some(n) } => format!("VARCHAR({n})"),
            K::Text { max_len: None } => "TEXT".into(),
            K::FixedText { len } => format!("CHAR({len})"),
            K::Bytes { .. } => "BLOB".into(),
            K::Date => "DATE".into(),
            K::Time => "TIME".into(),
            K::Timestamp => "TIMESTAMP".into(),
            K::TimestampTz => "TIMESTAMPTZ".into(),
            K::Uuid => "UUID".into(),
            // TEXT affinity: a document that is a bare number (`1.0`) stays as written.
            K::Json | K::Array { .. } => "JSON_TEXT".into(),
            K::Engine { .. } | K::Enum { .. } => "TEXT".into(),
        },
        Engine::Postgres => match kind {
            K::Bool => "boolean".into(),
            K::Int16 => "smallint".into(),
            K::Int32 => "integer".into(),
            K::Int64 => "bigint".into(),
            K::Float32 => "real".into(),
            K::Float64 => "double precision".into(),
            K::Decimal { precision, scale } => dec(precision, scale, "numeric", "numeric"),
            K::Text { max_len: Some(n) } => format!("varchar({n})"),
            K::Text { max_len: None } => "text".into(),
            K::FixedText { len } => format!("char({len})"),
            K::Bytes { .. } => "bytea".into(),
            K::Date => "date".into(),
            K::Time => "time".into(),
            K::Timestamp => "timestamp".into(),
            K::TimestampTz => "timestamptz".into(),
            K::Uuid => "uuid".into(),
            K::Json => "jsonb".into(),
            K::Array { element } => format!("{}[]", declare(engine, element)),
            // MySQL's `time` is a duration of up to ±838 hours.
            K::Engine { name } if name == MYSQL_TIME => "interval".into(),
            // Another engine's enum arrives as text; PostgreSQL enums are created
            // from the source's declared name (same-engine path).
            K::Engine { .. } | K::Enum { .. } => "text".into(),
        },
        Engine::Mysql => match kind {
            K::Bool => "boolean".into(),
            K::Int16 => "smallint".into(),
            K::Int32 => "int".into(),
            K::Int64 => "bigint".into(),
            K::Float32 => "float".into(),
            K::Float64 => "double".into(),
            // MySQL caps precision at 65 and scale at 30.
            K::Decimal {
                precision: Some(p),
                scale,
            } if *p <= 65 => dec(&Some(*p), &scale.map(|s| s.min(30)), "decimal", ""),
            K::Decimal { .. } => "decimal(65,30)".into(),
            K::Text { max_len: Some(n) } if *n <= 16383 => format!("varchar({n})"),
            K::Text { .. } => "longtext".into(),
            K::FixedText { len } if *len <= 255 => format!("char({len})"),
            K::FixedText { .. } => "longtext".into(),
            K::Bytes { max_len: Some(n) } if *n <= 65535 => format!("varbinary({n})"),
            K::Bytes { .. } => "longblob".into(),
            K::Date => "date".into(),
            K::Time => "time(6)".into(),
            K::Timestamp => "datetime(6)".into(),
            // Stored as UTC; MySQL's own timestamp type ends in 2038.
            K::TimestampTz => "datetime(6)".into(),
            K::Uuid => "char(36)".into(),
            K::Json | K::Array { .. } => "json".into(),
            K::Enum { labels, .. } if !labels.is_empty() => format!(
                "enum({})",
                labels
                    .iter()
                    .map(|l| format!("'{}'", l.replace('\'', "''")))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            K::Engine { name } if name == MYSQL_TIME => "time(6)".into(),
            K::Engine { .. } | K::Enum { .. } => "longtext".into(),
        },
        Engine::SqlServer => match kind {
            K::Bool => "bit".into(),
            K::Int16 => "smallint".into(),
            K::Int32 => "int".into(),
            K::Int64 => "bigint".into(),
            K::Float32 => "real".into(),
            K::Float64 => "float".into(),
            K::Decimal {
                precision: Some(p),
                scale,
            } if *p <= 38 => dec(&Some(*p), scale, "decimal", ""),
            // Wider numbers do not fit SQL Server's decimal: kept exactly as text.
            K::Decimal { .. } => "nvarchar(100)".into(),
            K::Text { max_len: Some(n) } if *n <= 4000 => format!("nvarchar({n})"),
            K::Text { .. } => "nvarchar(max)".into(),
            K::FixedText { len } if *len <= 4000 => format!("nchar({len})"),
            K::FixedText { .. } => "nvarchar(max)".into(),
            K::Bytes { max_len: Some(n) } if *n <= 8000 => format!("varbinary({n})"),
            K::Bytes { .. } => "varbinary(max)".into(),
            K::Date => "date".into(),
            K::Time => "time(7)".into(),
            K::Timestamp => "datetime2(7)".into(),
            K::TimestampTz => "datetimeoffset(7)".into(),
            K::Uuid => "uniqueidentifier".into(),
            K::Json | K::Array { .. } => "nvarchar(max)".into(),
            K::Enum { .. } => "nvarchar(255)".into(),
            K::Engine { .. } => "nvarchar(max)".into(),
        },
    }
}

/// Reads an engine's declared type name (`VARCHAR(16)`, `numeric(12,2)`,
/// `datetime2(7)`) as a portable kind. Names it does not know become
/// [`TypeKind::Engine`], carried as text.
pub fn parse_native(engine: Engine, declared: &str) -> TypeKind {
    use TypeKind as K;
    let declared = match engine {
        Engine::Mysql => mysql_type_only(declared),
        _ => declared,
    };
    // MySQL prints attributes after the parameters (`decimal(10,2) unsigned`):
    // the kind is read from the type without them, and `unsigned` kept apart.
    let (typed, mysql_unsigned) = match engine {
        Engine::Mysql => mysql_attributes(declared),
        _ => (declared.trim().to_string(), false),
    };
    let lower = typed.to_ascii_lowercase();
    if engine == Engine::Postgres {
        if let Some(element) = lower.strip_suffix("[]") {
            let element = element.trim_end_matches("[]");
            return K::Array {
                element: Box::new(parse_native(engine, element)),
            };
        }
    }
    if engine == Engine::Mysql {
        if let Some(kind) = parse_mysql(&typed, &lower, mysql_unsigned) {
            return kind;
        }
    }
    let (base, args) = match lower.split_once('(') {
        Some((b, rest)) => (b.trim().to_string(), rest.trim_end_matches(')').to_string()),
        None => (lower.clone(), String::new()),
    };
    let nums: Vec<u32> = args
        .split(',')
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    let first = nums.first().copied();
    let unsigned = base.ends_with(" unsigned") || mysql_unsigned;
    let base = base.trim_end_matches(" unsigned").trim();
    let decimal = || K::Decimal {
        precision: first,
        scale: nums.get(1).copied().or(first.map(|_| 0)),
    };
    let common = match base {
        "boolean" | "bool" => Some(K::Bool),
        "smallint" | "int2" => Some(K::Int16),
        "bigint" | "int8" => Some(K::Int64),
        "real" | "float4" => Some(K::Float32),
        "double" | "double precision" | "float8" => Some(K::Float64),
        "numeric" | "decimal" => Some(decimal()),
        "varchar" | "character varying" | "nvarchar" | "varchar2" => Some(K::Text {
            max_len: if args == "max" { None } else { first },
        }),
        "text" | "clob" | "longtext" | "mediumtext" | "ntext" => Some(K::Text { max_len: None }),
        "char" | "character" | "nchar" | "bpchar" => Some(K::FixedText {
            len: first.unwrap_or(1),
        }),
        "date" => Some(K::Date),
        "uuid" | "uniqueidentifier" => Some(K::Uuid),
        "json" | "jsonb" => Some(K::Json),
        _ => None,
    };
    let specific = match engine {
        Engine::Sqlite => match base {
            "decimal_text" | "numeric_text" => Some(decimal()),
            "json_text" => Some(K::Json),
            "int" | "mediumint" => Some(K::Int32),
            "integer" => Some(K::Int64),
            "tinyint" => Some(K::Int16),
            "real" | "float" | "double" => Some(K::Float64),
            "blob" | "binary" | "varbinary" => Some(K::Bytes { max_len: None }),
            "time" => Some(K::Time),
            "timestamp" | "datetime" => Some(K::Timestamp),
            "timestamptz" | "timestamp with time zone" => Some(K::TimestampTz),
            _ => None,
        },
        Engine::Postgres => match base {
            "integer" | "int" | "int4" => Some(K::Int32),
            "bytea" => Some(K::Bytes { max_len: None }),
            "time" | "time without time zone" => Some(K::Time),
            "timestamp" | "timestamp without time zone" => Some(K::Timestamp),
            "timestamptz" | "timestamp with time zone" => Some(K::TimestampTz),
            _ => None,
        },
        Engine::Mysql => match base {
            "tinyint" if first == Some(1) => Some(K::Bool),
            "tinyint" => Some(K::Int16),
            "int" | "integer" | "mediumint" => Some(K::Int32),
            "float" => Some(K::Float32),
            "varbinary" => Some(K::Bytes { max_len: first }),
            "blob" | "longblob" | "mediumblob" | "binary" => Some(K::Bytes { max_len: None }),
            "datetime" => Some(K::Timestamp),
            // Stored as UTC, converted to and from the session's `time_zone`:
            // siphon's sessions are UTC, so it reads the instant.
            "timestamp" => Some(K::TimestampTz),
            "year" => Some(K::Int16),
            "tinytext" => Some(K::Text { max_len: None }),
            "tinyblob" => Some(K::Bytes { max_len: None }),
            _ => None,
        },
        Engine::SqlServer => match base {
            "bit" => Some(K::Bool),
            "tinyint" => Some(K::Int16),
            "int" => Some(K::Int32),
            "float" => Some(K::Float64),
            "varbinary" => Some(K::Bytes {
                max_len: if args == "max" { None } else { first },
            }),
            "binary" | "image" => Some(K::Bytes { max_len: None }),
            "time" => Some(K::Time),
            "datetime2" | "datetime" | "smalldatetime" => Some(K::Timestamp),
            "datetimeoffset" => Some(K::TimestampTz),
            _ => None,
        },
    };
    let kind = specific.or(common).unwrap_or(K::Engine {
        name: declared.trim().to_string(),
    });
    if !unsigned {
        return kind;
    }
    // An unsigned integer needs the next wider signed kind to hold its top half.
    match kind {
        K::Int16 => K::Int32,
        K::Int32 => K::Int64,
        K::Int64 => K::Decimal {
            precision: Some(20),
            scale: Some(0),
        },
        other => other,
    }
}

/// The `type_name` of a MySQL `time` value ([`crate::Value::Engine`]) and the
/// name of its kind ([`TypeKind::Engine`]). MySQL's `time` is a duration from
/// `-838:59:59.000000` to `838:59:59.000000`, not a time of day, so no
/// [`crate::Value::Time`] holds it: it travels as MySQL's text form
/// (`-838:59:59.000000`, `[-]H…H:MM:SS[.ffffff]`), becomes a PostgreSQL
/// `interval` and a MySQL `time(6)`.
pub const MYSQL_TIME: &str = "time";

/// The kinds of MySQL's declared types that the common parsing cannot read:
/// enums and sets (with labels in their own case), `time` (a duration),
/// `bit(n)`, and unsigned integers (`int(10) unsigned zerofill` as MariaDB
/// prints them). `declared` is the type without its attributes
/// ([`mysql_attributes`]), `lower` the same in lower case, and `unsigned`
/// whether the attributes make it unsigned.
fn parse_mysql(declared: &str, lower: &str, unsigned: bool) -> Option<TypeKind> {
    use TypeKind as K;
    if lower.starts_with("enum(") {
        return Some(K::Enum {
            name: String::new(),
            labels: mysql_labels(declared),
        });
    }
    if lower.starts_with("set(") {
        // A set's value is its labels joined by commas: plain text elsewhere.
        return Some(K::Text { max_len: None });
    }
    let base = lower.split(['(', ' ']).next().unwrap_or("");
    let args = lower
        .split_once('(')
        .and_then(|(_, rest)| rest.split(')').next())
        .unwrap_or("");
    let first: Option<u32> = args.split(',').next().and_then(|a| a.trim().parse().ok());
    Some(match base {
        "time" => K::Engine {
            name: MYSQL_TIME.to_string(),
        },
        // bit(1) is a flag; up to 63 bits an integer; 64 bits need 20 digits.
        "bit" => match first.unwrap_or(1) {
            1 => K::Bool,
            2..=63 => K::Int64,
            _ => K::Decimal {
                precision: Some(20),
                scale: Some(0),
            },
        },
        "tinyint" if first == Some(1) && !unsigned => K::Bool,
        "tinyint" => K::Int16,
        "smallint" if unsigned => K::Int32,
        "mediumint" => K::Int32,
        "int" | "integer" if unsigned => K::Int64,
        "bigint" if unsigned => K::Decimal {
            precision: Some(20),
            scale: Some(0),
        },
        "smallint" => K::Int16,
        "int" | "integer" => K::Int32,
        "bigint" => K::Int64,
        _ => return None,
    })
}

/// The attributes MySQL and MariaDB write after a type's name or parameters
/// that leave its kind alone but for the sign: `zerofill` implies `unsigned`,
/// and `binary` after a text type names its `_bin` collation.
const MYSQL_ATTRIBUTES: [&str; 4] = ["unsigned", "signed", "zerofill", "binary"];

/// A MySQL column type (without character set and collation, see
/// [`mysql_type_only`]) split into the type and whether its attributes make
/// it unsigned: `decimal(10,2) unsigned zerofill` is `decimal(10,2)` and
/// unsigned, `char(10) binary` is `char(10)`, `bigint unsigned` is `bigint`
/// and unsigned. Parentheses and quotes inside enum and set labels are
/// skipped; whatever follows the parameters is an attribute.
fn mysql_attributes(declared: &str) -> (String, bool) {
    let declared = declared.trim();
    let is_unsigned =
        |w: &str| w.eq_ignore_ascii_case("unsigned") || w.eq_ignore_ascii_case("zerofill");
    let bytes = declared.as_bytes();
    let (mut quoted, mut depth, mut i) = (false, 0usize, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'\'' => quoted = !quoted,
            _ if quoted => {}
            b'(' => depth += 1,
            b')' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    let (typed, attributes) = declared.split_at(i + 1);
                    let unsigned = attributes.split_whitespace().any(is_unsigned);
                    return (typed.trim_end().to_string(), unsigned);
                }
            }
            _ => {}
        }
        i += 1;
    }
    if depth > 0 {
        // Unbalanced: read as written.
        return (declared.to_string(), false);
    }
    // No parameters: the attributes are the trailing words after the name.
    let mut words: Vec<&str> = declared.split_whitespace().collect();
    let mut unsigned = false;
    while words.len() > 1
        && MYSQL_ATTRIBUTES
            .iter()
            .any(|a| words[words.len() - 1].eq_ignore_ascii_case(a))
    {
        unsigned |= is_unsigned(words.pop().unwrap_or_default());
    }
    (words.join(" "), unsigned)
}

/// A MySQL column type without the character set and collation siphon's
/// MySQL source appends to it (`varchar(8) CHARACTER SET latin1 COLLATE
/// latin1_bin` is `varchar(8)`); quotes in enum and set labels are skipped.
pub fn mysql_type_only(declared: &str) -> &str {
    let mut quoted = false;
    for (i, &b) in declared.as_bytes().iter().enumerate() {
        match b {
            b'\'' => quoted = !quoted,
            _ if quoted => {}
            b' ' => {
                let rest = declared[i..].to_ascii_lowercase();
                if rest.starts_with(" character set") || rest.starts_with(" collate") {
                    return declared[..i].trim_end();
                }
            }
            _ => {}
        }
    }
    declared
}

/// The labels of `enum('a','it''s')` or `set(…)` as MySQL prints the type, in
/// their own case, quotes undoubled.
pub fn mysql_labels(declared: &str) -> Vec<String> {
    let Some(open) = declared.find('(') else {
        return Vec::new();
    };
    let mut labels = Vec::new();
    let mut chars = declared[open + 1..].chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut label = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    label.push('\'');
                }
                '\'' => break,
                '\\' => {
                    if let Some(n) = chars.next() {
                        label.push(n);
                    }
                }
                c => label.push(c),
            }
        }
        labels.push(label);
    }
    labels
}

/// How a SQLite column stores what is written to it, from its declared type by
/// SQLite's own rules (<https://sqlite.org/datatype3.html>, "Determination of
/// column affinity"): the first of these the upper-cased declared type contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteAffinity {
    /// `INT`: numeric text becomes a number, and a real without a fraction an integer.
    Integer,
    /// `CHAR`, `CLOB` or `TEXT`: numbers become text (reals with 15 digits).
    Text,
    /// `BLOB`, or no declared type: stored as written.
    Blob,
    /// `REAL`, `FLOA` or `DOUB`: numeric text and integers become reals.
    Real,
    /// Anything else (`NUMERIC`, `DECIMAL`, `DATE`, `BOOLEAN`, `JSON`, `UUID`, …):
    /// numeric text becomes a number, and a real without a fraction an integer.
    Numeric,
}

impl SqliteAffinity {
    /// The affinity of a column declared `declared`.
    pub fn of(declared: &str) -> SqliteAffinity {
        let d = declared.to_ascii_uppercase();
        let has = |w: &str| d.contains(w);
        if has("INT") {
            SqliteAffinity::Integer
        } else if has("CHAR") || has("CLOB") || has("TEXT") {
            SqliteAffinity::Text
        } else if has("BLOB") || d.trim().is_empty() {
            SqliteAffinity::Blob
        } else if has("REAL") || has("FLOA") || has("DOUB") {
            SqliteAffinity::Real
        } else {
            SqliteAffinity::Numeric
        }
    }
}

/// A kind's name for messages and documentation: `decimal(12,2)`, `text`,
/// `timestamp with time zone`, `array of integer`.
pub fn kind_name(kind: &TypeKind) -> String {
    use TypeKind as K;
    match kind {
        K::Bool => "boolean".into(),
        K::Int16 => "16-bit integer".into(),
        K::Int32 => "32-bit integer".into(),
        K::Int64 => "64-bit integer".into(),
        K::Float32 => "32-bit float".into(),
        K::Float64 => "64-bit float".into(),
        K::Decimal {
            precision: Some(p),
            scale: Some(s),
        } => format!("decimal({p},{s})"),
        K::Decimal { .. } => "decimal".into(),
        K::Text { max_len: Some(n) } => format!("text of at most {n} characters"),
        K::Text { max_len: None } => "text".into(),
        K::FixedText { len } => format!("text of {len} characters"),
        K::Bytes { .. } => "bytes".into(),
        K::Date => "date".into(),
        K::Time => "time".into(),
        K::Timestamp => "timestamp".into(),
        K::TimestampTz => "timestamp with time zone".into(),
        K::Uuid => "uuid".into(),
        K::Json => "JSON".into(),
        K::Engine { name } if name.is_empty() => "the value as stored".into(),
        K::Engine { name } => format!("{name}, in its text form"),
        K::Array { element } => format!("array of {}", kind_name(element)),
        K::Enum { .. } => "enum label".into(),
    }
}

/// The engines siphon reads and writes today, in the order the mapping table
/// lists them.
pub const SUPPORTED: [Engine; 3] = [Engine::Postgres, Engine::Mysql, Engine::Sqlite];

/// The engine's name as users know it.
pub fn engine_name(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "PostgreSQL",
        Engine::Mysql => "MySQL",
        Engine::SqlServer => "SQL Server",
        Engine::Sqlite => "SQLite",
    }
}

/// The declared types the mapping table shows for a source engine, each with the
/// kind its source reads it as: `None` for [`parse_native`] of the name, as the
/// source does; given for an entry that describes types rather than naming one.
fn examples(engine: Engine) -> Vec<(&'static str, Option<TypeKind>)> {
    use TypeKind as K;
    match engine {
        Engine::Postgres => vec![
            ("boolean", None),
            ("smallint", None),
            ("integer", None),
            ("bigint", None),
            ("real", None),
            ("double precision", None),
            ("numeric(12,2)", None),
            ("numeric", None),
            ("varchar(16)", None),
            ("text", None),
            ("char(3)", None),
            ("bytea", None),
            ("date", None),
            ("time", None),
            ("timestamp", None),
            ("timestamptz", None),
            ("uuid", None),
            ("json", None),
            ("jsonb", None),
            ("integer[]", None),
            (
                "an enum (`mood`)",
                Some(K::Enum {
                    name: "public.mood".into(),
                    labels: vec!["sad".into(), "ok".into()],
                }),
            ),
            ("interval", None),
            ("timetz", None),
            (
                "`inet`, and any other type (ranges, geometry, `xml`, …)",
                Some(K::Engine {
                    name: "inet".into(),
                }),
            ),
        ],
        Engine::Sqlite => vec![
            ("BOOLEAN", None),
            ("SMALLINT", None),
            ("INT", None),
            ("INTEGER", None),
            ("BIGINT", None),
            ("REAL", None),
            ("DOUBLE", None),
            ("NUMERIC(12,2)", None),
            ("DECIMAL_TEXT(12,2)", None),
            ("NUMERIC", None),
            ("VARCHAR(16)", None),
            ("TEXT", None),
            ("CHAR(3)", None),
            ("BLOB", None),
            ("DATE", None),
            ("TIME", None),
            ("TIMESTAMP", None),
            ("DATETIME", None),
            ("TIMESTAMPTZ", None),
            ("UUID", None),
            ("JSON", None),
            ("JSON_TEXT", None),
            (
                "any other name, or none",
                Some(K::Engine { name: "".into() }),
            ),
        ],
        Engine::Mysql => vec![
            ("tinyint(1)", None),
            ("tinyint", None),
            ("tinyint unsigned", None),
            ("smallint unsigned", None),
            ("mediumint unsigned", None),
            ("int", None),
            ("int unsigned", None),
            ("bigint", None),
            ("bigint unsigned", None),
            ("decimal(65,30)", None),
            ("float", None),
            ("double", None),
            ("varchar(16)", None),
            ("char(3)", None),
            ("longtext", None),
            ("varbinary(16)", None),
            ("blob", None),
            ("date", None),
            ("time(6)", None),
            ("datetime(6)", None),
            ("timestamp(6)", None),
            ("year", None),
            ("enum('a','b')", None),
            ("set('a','b')", None),
            ("json", None),
            ("bit(1)", None),
            ("bit(8)", None),
            ("bit(64)", None),
        ],
        Engine::SqlServer => vec![],
    }
}

/// How a value of `kind` is held in SQLite's storage, as siphon writes it into a
/// column declared `declared`.
fn sqlite_storage(kind: &TypeKind, declared: &str) -> &'static str {
    use TypeKind as K;
    let affinity = SqliteAffinity::of(declared);
    match kind {
        K::Decimal { .. } if affinity != SqliteAffinity::Text => {
            "INTEGER or REAL when that holds the value exactly, else refused; \
             `NaN`, `Infinity`, `-Infinity` as text"
        }
        K::Json if affinity != SqliteAffinity::Text => {
            "TEXT; a bare-number document that SQLite would change is refused"
        }
        K::Engine { name } if name.is_empty() => "as stored",
        K::Bool => "INTEGER 0 or 1",
        K::Int16 | K::Int32 | K::Int64 => "INTEGER",
        K::Float32 | K::Float64 => {
            "REAL; NaN as the text `NaN`, ±infinity as SQLite's REAL infinity (`9e999`)"
        }
        K::Decimal { .. } => {
            "TEXT with every digit (`-12.50`); `NaN`, `Infinity`, `-Infinity` as text"
        }
        K::Text { .. } | K::FixedText { .. } => "TEXT",
        K::Bytes { .. } => "BLOB",
        K::Date => "TEXT `YYYY-MM-DD`; `infinity`, `-infinity` as text",
        K::Time => "TEXT `HH:MM:SS[.ffffff]`; `24:00:00` as text",
        K::Timestamp => "TEXT `YYYY-MM-DD HH:MM:SS[.ffffff]`; `infinity`, `-infinity` as text",
        K::TimestampTz => {
            "TEXT in UTC, `YYYY-MM-DD HH:MM:SS[.ffffff]+00:00`; `infinity`, `-infinity` as text"
        }
        K::Uuid => "TEXT, lower-case with hyphens",
        K::Json => "TEXT, the document as the source wrote it",
        K::Array { .. } => {
            "TEXT, a JSON array (PostgreSQL's array text when a lower bound is not 1)"
        }
        K::Enum { .. } => "TEXT, the label",
        K::Engine { .. } => "TEXT, the source's own text form",
    }
}

/// The type mapping between every pair of [`SUPPORTED`] engines, as a markdown
/// table: for each type a source declares, the kind siphon reads it as and the
/// type each target declares, computed by the same [`parse_native`] and
/// [`native_type`] the connectors call, followed by notes on what changes. The
/// README's "Type mapping" section is this text.
pub fn mapping_markdown() -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = write!(out, "| from | source type | read as |");
    for target in SUPPORTED {
        let _ = write!(out, " to {} |", engine_name(target));
    }
    out.push_str(" stored in SQLite as |\n| --- | --- | --- |");
    for _ in SUPPORTED {
        out.push_str(" --- |");
    }
    out.push_str(" --- |\n");
    for origin in SUPPORTED {
        for (declared, given) in examples(origin) {
            // A described entry is shown as written; a type name as code.
            let shown = match given {
                Some(_) => declared.to_string(),
                None => format!("`{declared}`"),
            };
            let kind = given.unwrap_or_else(|| parse_native(origin, declared));
            let column = Column {
                name: "c".into(),
                data_type: crate::DataType::new(kind.clone(), true),
                native_type: declared.into(),
                generated: false,
                source_id: None,
            };
            let _ = write!(
                out,
                "| {} | {shown} | {} |",
                engine_name(origin),
                kind_name(&kind)
            );
            for target in SUPPORTED {
                let cell = if target == origin {
                    "same".to_string()
                } else {
                    format!("`{}`", native_type(target, origin, &column))
                };
                let _ = write!(out, " {cell} |");
            }
            let in_sqlite = native_type(Engine::Sqlite, origin, &column);
            let _ = writeln!(out, " {} |", sqlite_storage(&kind, &in_sqlite));
        }
    }
    out.push('\n');
    for note in NOTES {
        out.push_str("- ");
        out.push_str(note);
        out.push('\n');
    }
    out
}

/// What the table cannot say in a cell: each way a value or a type changes
/// between engines, and what siphon does instead of changing it silently.
const NOTES: &[&str] = &[
    "\"same\": between two engines of one kind the declared type is kept verbatim \
     (`numeric(12,2)`, `varchar(16)`, enums, `DECIMAL_TEXT(12,2)`).",
    "`DECIMAL_TEXT(p,s)` and `JSON_TEXT` have SQLite's TEXT affinity, so SQLite keeps the text \
     as written; a column declared `NUMERIC`, `DECIMAL` or `JSON` would turn numeric-looking \
     text into an INTEGER or a REAL of about 15 digits. siphon reads them back as \
     `numeric(p,s)` and `jsonb`.",
    "Into an existing SQLite column whose affinity would change a value (a decimal with more \
     digits than a REAL keeps into `NUMERIC(38,10)`, the text `007` into `INTEGER`, a bigint \
     above 2^53 into `REAL`), the table stops with an error naming the column; nothing is \
     rounded. A float into a TEXT column is written with every digit.",
    "Values SQLite itself stored as REAL in a `NUMERIC`/`DECIMAL` column are read as the \
     shortest decimal that reads back as the same float (`12.3` at scale 2 is `12.30`).",
    "PostgreSQL `real` becomes SQLite `DOUBLE` and comes back as `double precision` (every \
     value fits). SQLite keeps no negative zero: `-0` is stored as `0`.",
    "`timestamptz` is an instant: SQLite text with an offset (`+02:00`) is read as that \
     instant and written in UTC; text without an offset is taken as UTC. A SQLite \
     `TIMESTAMP` with an offset is read as the UTC time.",
    "Types without a portable kind (`interval`, `timetz`, `inet`, ranges, geometry, `xml`, \
     composites, …) travel as PostgreSQL's text form, exactly, into a SQLite `TEXT` column, and \
     come back to PostgreSQL as `text`; enums come back as `text` too.",
    "Arrays become JSON arrays in SQLite (decimals as strings, bytes as `\\x` hex) and come back \
     to PostgreSQL as `jsonb`; an array whose lower bound is not 1 is stored as PostgreSQL's \
     array text (`[0:1]={7,8}`), which is not JSON and stops a load from SQLite into `jsonb` \
     with an error. JSON from SQLite is written to PostgreSQL as `jsonb`, which PostgreSQL \
     normalises (whitespace, key order, duplicate keys).",
    "Dates and timestamps past year 262142 (PostgreSQL reaches 5874897 and 294276) are stored \
     as PostgreSQL's text (`294276-12-31 23:59:59.999999`) and read back as that text, which \
     PostgreSQL takes as the same value.",
    "A value a SQLite column holds that does not read as its declared type stops the table with \
     an error naming the column, rather than being guessed: a `BOOLEAN` other than 0, 1 or a \
     true/false word (`2`), an `INTEGER` with a fraction, a float column's integer beyond \
     2^53, a date stored as a Julian day number.",
    "Between SQLite files a full load (and the first copy of an `incremental` table) carries \
     every value exactly as SQLite stored it, when the target's columns are declared as the \
     source's. Rows that incremental polling picks up later are read by their declared type \
     and written in the forms above: the same values, but a UUID stored as a blob or in \
     capitals is written as lower-case text, a timestamp with `T` or an offset as \
     `YYYY-MM-DD HH:MM:SS` in UTC, and a boolean stored as text (`'yes'`) as 1.",
];

#[cfg(test)]
mod tests {
    use super::*;
    use TypeKind as K;

    fn kinds() -> Vec<TypeKind> {
        vec![
            K::Bool,
            K::Int16,
            K::Int32,
            K::Int64,
            K::Float32,
            K::Float64,
            K::Decimal {
                precision: Some(12),
                scale: Some(2),
            },
            K::Decimal {
                precision: Some(38),
                scale: Some(10),
            },
            K::Decimal {
                precision: None,
                scale: None,
            },
            K::Text { max_len: Some(16) },
            K::Text { max_len: None },
            K::FixedText { len: 3 },
            K::Bytes { max_len: None },
            K::Date,
            K::Time,
            K::Timestamp,
            K::TimestampTz,
            K::Uuid,
            K::Json,
            K::Array {
                element: Box::new(K::Int32),
            },
            K::Enum {
                name: String::new(),
                labels: vec!["a".into(), "it's".into()],
            },
        ]
    }

    /// Where an engine has no exact type, the kind it comes back as. Each case
    /// widens: every value of the original fits.
    fn widened(engine: Engine, k: &TypeKind) -> TypeKind {
        match (engine, k) {
            (Engine::Sqlite, K::Float32) => K::Float64,
            (
                Engine::Mysql,
                K::Decimal {
                    precision: None, ..
                },
            ) => K::Decimal {
                precision: Some(65),
                scale: Some(30),
            },
            (Engine::Mysql, K::Bytes { .. }) => K::Bytes { max_len: None },
            (Engine::Mysql, K::TimestampTz) => K::Timestamp,
            (Engine::Mysql, K::Time) => K::Engine {
                name: MYSQL_TIME.into(),
            },
            (Engine::Mysql, K::Uuid) => K::FixedText { len: 36 },
            (
                Engine::SqlServer,
                K::Decimal {
                    precision: None, ..
                },
            ) => K::Text { max_len: Some(100) },
            (Engine::SqlServer, K::Json) => K::Text { max_len: None },
            (Engine::Sqlite | Engine::Mysql, K::Array { .. }) => K::Json,
            (Engine::SqlServer, K::Array { .. }) => K::Text { max_len: None },
            (Engine::Sqlite | Engine::Postgres, K::Enum { .. }) => K::Text { max_len: None },
            (Engine::SqlServer, K::Enum { .. }) => K::Text { max_len: Some(255) },
            _ => k.clone(),
        }
    }

    #[test]
    fn every_kind_round_trips_through_every_engine() {
        for engine in [
            Engine::Sqlite,
            Engine::Postgres,
            Engine::Mysql,
            Engine::SqlServer,
        ] {
            for k in kinds() {
                let name = declare(engine, &k);
                assert_eq!(
                    parse_native(engine, &name),
                    widened(engine, &k),
                    "{engine:?} {k:?} as `{name}`"
                );
            }
        }
    }

    #[test]
    fn declared_names_parse_with_parameters() {
        assert_eq!(
            parse_native(Engine::Postgres, "numeric(12,2)"),
            K::Decimal {
                precision: Some(12),
                scale: Some(2)
            }
        );
        assert_eq!(
            parse_native(Engine::Postgres, "character varying(16)"),
            K::Text { max_len: Some(16) }
        );
        assert_eq!(
            parse_native(Engine::SqlServer, "NVARCHAR(MAX)"),
            K::Text { max_len: None }
        );
        assert_eq!(parse_native(Engine::Mysql, "tinyint(1)"), K::Bool);
        assert_eq!(parse_native(Engine::Mysql, "int unsigned"), K::Int64);
        assert_eq!(
            parse_native(Engine::Mysql, "bigint unsigned"),
            K::Decimal {
                precision: Some(20),
                scale: Some(0)
            }
        );
        assert_eq!(parse_native(Engine::Sqlite, "INTEGER"), K::Int64);
        assert_eq!(
            parse_native(Engine::Postgres, "interval"),
            K::Engine {
                name: "interval".into()
            }
        );
    }

    #[test]
    fn mysql_types_parse_as_mariadb_and_mysql_print_them() {
        let p = |d: &str| parse_native(Engine::Mysql, d);
        let dec20 = K::Decimal {
            precision: Some(20),
            scale: Some(0),
        };
        assert_eq!(p("bigint(20) unsigned"), dec20);
        assert_eq!(p("bigint unsigned zerofill"), dec20);
        assert_eq!(p("bigint(20)"), K::Int64);
        assert_eq!(p("int(10) unsigned"), K::Int64);
        assert_eq!(p("int(11)"), K::Int32);
        assert_eq!(p("mediumint(8) unsigned"), K::Int32);
        assert_eq!(p("smallint(5) unsigned"), K::Int32);
        assert_eq!(p("smallint(6)"), K::Int16);
        assert_eq!(p("tinyint(3) unsigned"), K::Int16);
        assert_eq!(p("tinyint(1)"), K::Bool);
        assert_eq!(p("year(4)"), K::Int16);
        assert_eq!(p("timestamp(6)"), K::TimestampTz);
        assert_eq!(p("timestamp"), K::TimestampTz);
        assert_eq!(p("datetime(3)"), K::Timestamp);
        assert_eq!(
            p("time(6)"),
            K::Engine {
                name: MYSQL_TIME.into()
            }
        );
        assert_eq!(p("bit(1)"), K::Bool);
        assert_eq!(p("bit(63)"), K::Int64);
        assert_eq!(p("bit(64)"), dec20);
        assert_eq!(
            p("decimal(65,30)"),
            K::Decimal {
                precision: Some(65),
                scale: Some(30)
            }
        );
        assert_eq!(p("set('a','b')"), K::Text { max_len: None });
        assert_eq!(
            p("enum('Small','it''s','a,b')"),
            K::Enum {
                name: String::new(),
                labels: vec!["Small".into(), "it's".into(), "a,b".into()]
            }
        );
        assert_eq!(p("varbinary(16)"), K::Bytes { max_len: Some(16) });
        assert_eq!(
            p("varchar(700) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"),
            K::Text { max_len: Some(700) }
        );
        assert_eq!(
            p("enum('x collate y','b') CHARACTER SET latin1 COLLATE latin1_bin"),
            K::Enum {
                name: String::new(),
                labels: vec!["x collate y".into(), "b".into()]
            }
        );
        assert_eq!(p("json"), K::Json);
        let time = K::Engine {
            name: MYSQL_TIME.into(),
        };
        assert_eq!(declare(Engine::Postgres, &time), "interval");
        assert_eq!(declare(Engine::Mysql, &time), "time(6)");
    }

    #[test]
    fn mysql_attributes_after_the_parameters_keep_them() {
        let p = |d: &str| parse_native(Engine::Mysql, d);
        let dec = |p: u32, s: u32| K::Decimal {
            precision: Some(p),
            scale: Some(s),
        };
        assert_eq!(p("decimal(10,2) unsigned"), dec(10, 2));
        assert_eq!(p("decimal(8,3) unsigned zerofill"), dec(8, 3));
        assert_eq!(p("decimal(8,3) zerofill"), dec(8, 3));
        assert_eq!(p("DECIMAL(12,4) UNSIGNED"), dec(12, 4));
        assert_eq!(p("decimal(10,2) signed"), dec(10, 2));
        assert_eq!(p("decimal(10,0) unsigned"), dec(10, 0));
        assert_eq!(p("float(7,3) unsigned"), K::Float32);
        assert_eq!(p("float unsigned zerofill"), K::Float32);
        assert_eq!(p("double(10,2) unsigned"), K::Float64);
        assert_eq!(p("double unsigned"), K::Float64);
        assert_eq!(p("int(10) unsigned zerofill"), K::Int64);
        assert_eq!(p("int(10) zerofill"), K::Int64);
        assert_eq!(p("int(11) signed"), K::Int32);
        assert_eq!(p("tinyint(1) unsigned"), K::Int16);
        assert_eq!(p("smallint(5) unsigned zerofill"), K::Int32);
        assert_eq!(
            p("bigint(20) unsigned"),
            K::Decimal {
                precision: Some(20),
                scale: Some(0)
            }
        );
        assert_eq!(p("char(10) binary"), K::FixedText { len: 10 });
        assert_eq!(
            p("varchar(20) binary CHARACTER SET latin1 COLLATE latin1_bin"),
            K::Text { max_len: Some(20) }
        );
        assert_eq!(
            p("varchar(20) character set latin1"),
            K::Text { max_len: Some(20) }
        );
        assert_eq!(p("binary(16)"), K::Bytes { max_len: None });
        assert_eq!(p("binary"), K::Bytes { max_len: None });
        assert_eq!(
            p("enum('a) unsigned','b,(c)','it''s') CHARACTER SET utf8mb4"),
            K::Enum {
                name: String::new(),
                labels: vec!["a) unsigned".into(), "b,(c)".into(), "it's".into()]
            }
        );
        assert_eq!(p("set('x)','y,z')"), K::Text { max_len: None });
        // The parts a type is split into, labels left whole.
        assert_eq!(
            mysql_attributes("enum('(',')') unsigned"),
            ("enum('(',')')".to_string(), true)
        );
        assert_eq!(
            mysql_attributes("bigint unsigned zerofill"),
            ("bigint".to_string(), true)
        );
        assert_eq!(mysql_attributes("binary"), ("binary".to_string(), false));
        // Into other engines the scale stays.
        let column = |declared: &str| Column {
            name: "c".into(),
            data_type: crate::DataType::new(p(declared), true),
            native_type: declared.into(),
            generated: false,
            source_id: None,
        };
        let unsigned = column("decimal(10,2) unsigned");
        assert_eq!(
            native_type(Engine::Postgres, Engine::Mysql, &unsigned),
            "numeric(10,2)"
        );
        assert_eq!(
            native_type(Engine::Sqlite, Engine::Mysql, &unsigned),
            "DECIMAL_TEXT(10,2)"
        );
        assert_eq!(
            native_type(Engine::Mysql, Engine::Mysql, &unsigned),
            "decimal(10,2) unsigned"
        );
    }

    #[test]
    fn same_engine_keeps_the_declared_name() {
        let col = Column {
            name: "amount".into(),
            data_type: crate::DataType::new(
                K::Decimal {
                    precision: Some(12),
                    scale: Some(2),
                },
                true,
            ),
            native_type: "numeric(12,2)".into(),
            generated: false,
            source_id: None,
        };
        assert_eq!(
            native_type(Engine::Postgres, Engine::Postgres, &col),
            "numeric(12,2)"
        );
        assert_eq!(
            native_type(Engine::Sqlite, Engine::Postgres, &col),
            "DECIMAL_TEXT(12,2)"
        );
    }
}
