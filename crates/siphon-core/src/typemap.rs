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
            K::Decimal { precision, scale } => dec(precision, scale, "NUMERIC", "NUMERIC"),
            K::Text { max_len: Some(n) } => format!("VARCHAR({n})"),
            K::Text { max_len: None } => "TEXT".into(),
            K::FixedText { len } => format!("CHAR({len})"),
            K::Bytes { .. } => "BLOB".into(),
            K::Date => "DATE".into(),
            K::Time => "TIME".into(),
            K::Timestamp => "TIMESTAMP".into(),
            K::TimestampTz => "TIMESTAMPTZ".into(),
            K::Uuid => "UUID".into(),
            K::Json | K::Array { .. } => "JSON".into(),
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
    let lower = declared.trim().to_ascii_lowercase();
    if engine == Engine::Postgres {
        if let Some(element) = lower.strip_suffix("[]") {
            let element = element.trim_end_matches("[]");
            return K::Array {
                element: Box::new(parse_native(engine, element)),
            };
        }
    }
    if engine == Engine::Mysql {
        if let Some(list) = lower
            .strip_prefix("enum(")
            .and_then(|l| l.strip_suffix(')'))
        {
            let labels = list
                .split(',')
                .map(|l| l.trim().trim_matches('\'').replace("''", "'"))
                .collect();
            return K::Enum {
                name: String::new(),
                labels,
            };
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
    let unsigned = base.ends_with(" unsigned");
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
            "time" => Some(K::Time),
            "datetime" | "timestamp" => Some(K::Timestamp),
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
        };
        assert_eq!(
            native_type(Engine::Postgres, Engine::Postgres, &col),
            "numeric(12,2)"
        );
        assert_eq!(
            native_type(Engine::Sqlite, Engine::Postgres, &col),
            "NUMERIC(12,2)"
        );
    }
}
