//! Column drift between a MySQL/MariaDB source table and its copy on a target
//! of the same engine, found and applied with `ALTER TABLE`: a column added at
//! the source is added, a column whose type the source widened is widened
//! (keeping the target column's nullability, default, character set, extra
//! and comment), and a narrowing change stops the table with a `BadInput`
//! error that says what to do. A column dropped at the source stays on the
//! target with its values, as every siphon target keeps it, and takes NULL
//! from then on (its NOT NULL is dropped) so rows without it still apply.
//! Indexes drift with the other schema objects ([`super::target`]).
//!
//! Types are compared by their MySQL declarations (`COLUMN_TYPE`), so the
//! comparison needs no type mapping: integer display widths are ignored,
//! integers widen when the new range holds the old one (signedness
//! included), an enum or set widens when its labels only grow at the end, and
//! every other type through [`siphon_core::Column::widens_to`].

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use siphon_core::typemap::Engine;
use siphon_core::{
    Column, DataType, Error, Result, SchemaOptions, TableName, TableSchema, TypeKind,
};

use crate::conn::{ident, literal, my_err, qualified};

/// What [`reconcile`] changed on the target table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drift {
    /// Columns added, as the source declares them.
    pub added: Vec<String>,
    /// Columns widened: `name: from -> to`.
    pub widened: Vec<String>,
    /// Columns the source dropped, now nullable on the target.
    pub relaxed: Vec<String>,
}

impl Drift {
    /// Whether the target table changed.
    pub fn changed(&self) -> bool {
        !(self.added.is_empty() && self.widened.is_empty() && self.relaxed.is_empty())
    }
}

/// A target column as `information_schema.COLUMNS` describes it.
#[derive(Debug, Clone)]
struct TargetColumn {
    name: String,
    column_type: String,
    nullable: bool,
    default: Option<String>,
    extra: String,
    charset: Option<String>,
    collation: Option<String>,
    comment: String,
    key: bool,
}

/// Brings the target table of `table` (the source's shape) in step with the
/// source's columns, as the module says: the table of that name in the
/// target database `database` (the sink's, whatever the source database). Does nothing when the target has no
/// such table (the sink creates it) or the source is not MySQL/MariaDB (the
/// sink's own evolution applies). Adding or widening needs
/// `options.evolve`; without it such a change is a `BadInput` error naming
/// the column and `schema.evolve`.
pub async fn reconcile(
    conn: &mut Conn,
    database: &str,
    table: &TableSchema,
    options: &SchemaOptions,
) -> Result<Drift> {
    let mut drift = Drift::default();
    if table.origin != Engine::Mysql {
        return Ok(drift);
    }
    let db = database;
    let name = &table.name.name;
    let found = target_columns(conn, db, name).await?;
    if found.is_empty() {
        return Ok(drift);
    }
    let shown = TableName::new(Some(db), name);
    let q = qualified(Some(db), name);
    let werr = |e, c: &str| {
        my_err(e, &format!("changing column {c} of the target table"))
            .table(&shown)
            .column(c)
    };
    let evolve = |c: &str, what: String| -> Result<()> {
        match options.evolve {
            true => Ok(()),
            false => Err(Error::bad_input(format!(
                "{what}; change the target table alike, or set `schema.evolve: true`"
            ))
            .table(&shown)
            .column(c)),
        }
    };
    for col in &table.columns {
        let Some(have) = found
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(&col.name))
        else {
            evolve(
                &col.name,
                "the target table lacks this source column".into(),
            )?;
            let ty = type_part(&col.native_type);
            conn.query_drop(format!(
                "ALTER TABLE {q} ADD COLUMN {} {ty} NULL",
                ident(&col.name)
            ))
            .await
            .map_err(|e| werr(e, &col.name))?;
            tracing::info!(table = %shown, column = %col.name, r#type = ty, "added a column on the target as at the source");
            drift.added.push(col.name.clone());
            continue;
        };
        let (from, to) = (normalize(&have.column_type), normalize(&col.native_type));
        if from == to {
            if have.nullable || !col.data_type.nullable || have.key {
                continue;
            }
            // The source accepts NULL now: so does the target.
            evolve(
                &col.name,
                format!("the source made column {} nullable", col.name),
            )?;
            conn.query_drop(format!(
                "ALTER TABLE {q} MODIFY COLUMN {}",
                definition(have, &have.column_type, true)
            ))
            .await
            .map_err(|e| werr(e, &col.name))?;
            drift.relaxed.push(col.name.clone());
            continue;
        }
        if widens(&from, &to) != Some(true) {
            // Applying it could lose or refuse the target's values.
            let verb = match widens(&to, &from) {
                Some(true) => "narrowed",
                _ => "changed",
            };
            return Err(narrowed(
                &col.name,
                db,
                name,
                &table.name,
                verb,
                &have.column_type,
                type_part(&col.native_type),
            ));
        }
        evolve(
            &col.name,
            format!(
                "the source widened column {} to {}",
                col.name, col.native_type
            ),
        )?;
        let nullable = have.nullable || col.data_type.nullable;
        conn.query_drop(format!(
            "ALTER TABLE {q} MODIFY COLUMN {}",
            definition(have, type_part(&col.native_type), nullable)
        ))
        .await
        .map_err(|e| werr(e, &col.name))?;
        tracing::info!(table = %shown, column = %col.name, from = %have.column_type, to = %col.native_type, "widened a column on the target as at the source");
        drift.widened.push(format!(
            "{}: {} -> {}",
            col.name,
            have.column_type,
            type_part(&col.native_type)
        ));
    }
    // Dropped at the source: kept, and made nullable.
    for have in &found {
        let gone = !table
            .columns
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(&have.name));
        if gone && !have.nullable && !have.key && have.extra.is_empty() {
            conn.query_drop(format!(
                "ALTER TABLE {q} MODIFY COLUMN {}",
                definition(have, &have.column_type, true)
            ))
            .await
            .map_err(|e| werr(e, &have.name))?;
            tracing::info!(table = %shown, column = %have.name, "the source dropped a column: kept on the target, now nullable");
            drift.relaxed.push(have.name.clone());
        }
    }
    Ok(drift)
}

/// The error for a type change that could lose or refuse values on the
/// target table `db`.`table` (`verb`: `narrowed`, or `changed` when neither
/// type holds the other's values) of the pipeline's table `source`.
///
/// A sink does not know the pipeline it writes for, so the fix names the
/// command without it: `siphon sync resync`, with the table as `--table`
/// takes it. A table that stops while it streams gets the whole command from
/// the engine, with this as its cause.
pub fn narrowed(
    column: &str,
    db: &str,
    table: &str,
    source: &TableName,
    verb: &str,
    from: &str,
    to: &str,
) -> Error {
    let key = source.key();
    let arg = match key.contains(['"', ' ']) {
        true => format!("'{}'", key.replace('\'', "'\\''")),
        false => key,
    };
    Error::bad_input(format!(
        "column `{column}` of `{db}`.`{table}` {verb} from {from} to {to} on the source, which could \
         lose or refuse values on the target, so siphon leaves it to you: alter the target by hand \
         (ALTER TABLE {} MODIFY COLUMN {} {to}), or drop the target table and copy the table \
         again (`siphon sync resync` of the pipeline, with `--table {arg}`)",
        qualified(Some(db), table),
        ident(column),
    ))
    .table(TableName::new(Some(db), table))
    .column(column)
}

/// The column's full definition for `MODIFY COLUMN`, with the type `ty` and
/// the target's own attributes kept.
fn definition(c: &TargetColumn, ty: &str, nullable: bool) -> String {
    let mut out = format!("{} {ty}", ident(&c.name));
    let textual = {
        let t = ty.to_ascii_lowercase();
        [
            "char",
            "varchar",
            "text",
            "tinytext",
            "mediumtext",
            "longtext",
            "enum",
            "set",
        ]
        .iter()
        .any(|k| t == *k || t.starts_with(&format!("{k}(")))
    };
    if textual {
        if let Some(cs) = &c.charset {
            out.push_str(&format!(" CHARACTER SET {cs}"));
        }
        if let Some(co) = &c.collation {
            out.push_str(&format!(" COLLATE {co}"));
        }
    }
    out.push_str(if nullable { " NULL" } else { " NOT NULL" });
    if let Some(d) = &c.default {
        // MariaDB prints defaults as expressions (`'a'`, `NULL`, `current_timestamp()`).
        if nullable || !d.eq_ignore_ascii_case("NULL") {
            out.push_str(&format!(" DEFAULT {d}"));
        }
    }
    let extra = c.extra.to_ascii_lowercase();
    if extra.contains("auto_increment") {
        out.push_str(" AUTO_INCREMENT");
    }
    if let Some(at) = extra.find("on update ") {
        out.push(' ');
        out.push_str(&c.extra[at..]);
    }
    if !c.comment.is_empty() {
        out.push_str(&format!(" COMMENT {}", literal(&c.comment)));
    }
    out
}

async fn target_columns(conn: &mut Conn, db: &str, table: &str) -> Result<Vec<TargetColumn>> {
    let rows: Vec<Row> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, CHARACTER_SET_NAME, \
             COLLATION_NAME, COLUMN_COMMENT, COLUMN_KEY FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await
        .map_err(|e| my_err(e, &format!("reading the columns of {db}.{table} on the target")))?;
    Ok(rows
        .iter()
        .map(|r| {
            let s = |i| super::text(r, i);
            let opt = |i| r.get::<Option<String>, _>(i).flatten();
            TargetColumn {
                name: s(0),
                column_type: s(1),
                nullable: s(2) == "YES",
                default: opt(3),
                extra: s(4),
                charset: opt(5),
                collation: opt(6),
                comment: s(7),
                key: s(8) == "PRI",
            }
        })
        .collect())
}

/// The type of a declaration without the character set and collation a
/// source may add after it (`varchar(8) CHARACTER SET utf8mb4 COLLATE …`).
fn type_part(native: &str) -> &str {
    siphon_core::typemap::mysql_type_only(native).trim()
}

/// A declaration's type lower-cased, integer display widths and `zerofill`
/// dropped, spaces squeezed; `json` as the `longtext` MariaDB stores it as.
pub fn normalize(column_type: &str) -> String {
    let t = type_part(column_type)
        .to_ascii_lowercase()
        .replace(" zerofill", "");
    if t == "json" {
        return "longtext".into();
    }
    let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
    for int in ["tinyint", "smallint", "mediumint", "bigint", "int"] {
        if let Some(rest) = t.strip_prefix(int) {
            if let Some(after) = rest.strip_prefix('(') {
                if let Some((_, tail)) = after.split_once(')') {
                    return format!("{int}{tail}");
                }
            }
        }
    }
    t
}

/// The range of an integer declaration (normalized), as (min, max).
fn int_range(t: &str) -> Option<(i128, i128)> {
    let (base, unsigned) = match t.strip_suffix(" unsigned") {
        Some(b) => (b, true),
        None => (t, false),
    };
    let bits = match base {
        "tinyint" => 8,
        "smallint" => 16,
        "mediumint" => 24,
        "int" | "integer" => 32,
        "bigint" => 64,
        _ => return None,
    };
    Some(if unsigned {
        (0, (1i128 << bits) - 1)
    } else {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    })
}

/// The labels of an `enum(…)` or `set(…)` declaration.
fn labels(t: &str) -> Option<(&str, Vec<String>)> {
    let (kind, rest) = t.split_once('(')?;
    if kind != "enum" && kind != "set" {
        return None;
    }
    let body = rest.strip_suffix(')')?;
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = body.chars().peekable();
    let mut inside = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' if inside && chars.peek() == Some(&'\'') => {
                chars.next();
                cur.push('\'');
            }
            '\'' => {
                if inside {
                    out.push(std::mem::take(&mut cur));
                }
                inside = !inside;
            }
            _ if inside => cur.push(c),
            _ => {}
        }
    }
    Some((kind, out))
}

/// The portable kind of a declaration, for [`Column::widens_to`].
fn kind_of(t: &str) -> TypeKind {
    let num = |s: &str| -> Option<u32> { s.trim().parse().ok() };
    let (base, args) = match t.split_once('(') {
        Some((b, rest)) => (b.trim(), rest.split(')').next().unwrap_or("")),
        None => (t.split_whitespace().next().unwrap_or(t), ""),
    };
    let first = args.split(',').next().and_then(num);
    match base {
        "decimal" | "numeric" => TypeKind::Decimal {
            precision: Some(first.unwrap_or(10)),
            scale: Some(args.split(',').nth(1).and_then(num).unwrap_or(0)),
        },
        "float" => TypeKind::Float32,
        "double" | "real" => TypeKind::Float64,
        "varchar" => TypeKind::Text { max_len: first },
        "char" => TypeKind::FixedText {
            len: first.unwrap_or(1),
        },
        "tinytext" => TypeKind::Text { max_len: Some(255) },
        "text" => TypeKind::Text {
            max_len: Some(65_535),
        },
        "mediumtext" => TypeKind::Text {
            max_len: Some(16_777_215),
        },
        "longtext" => TypeKind::Text { max_len: None },
        "varbinary" | "binary" => TypeKind::Bytes { max_len: first },
        "tinyblob" => TypeKind::Bytes { max_len: Some(255) },
        "blob" => TypeKind::Bytes {
            max_len: Some(65_535),
        },
        "mediumblob" => TypeKind::Bytes {
            max_len: Some(16_777_215),
        },
        "longblob" => TypeKind::Bytes { max_len: None },
        "datetime" | "timestamp" => TypeKind::Timestamp,
        "time" => TypeKind::Time,
        "date" => TypeKind::Date,
        _ => TypeKind::Engine {
            name: t.to_string(),
        },
    }
}

fn column(t: &str) -> Column {
    Column {
        name: String::new(),
        data_type: DataType::new(kind_of(t), true),
        native_type: t.to_string(),
        generated: false,
        source_id: None,
    }
}

/// A temporal declaration with fractional seconds: its base and digits.
fn fraction(t: &str) -> Option<(&str, u32)> {
    let (base, digits) = match t.split_once('(') {
        Some((b, rest)) => (b, rest.trim_end_matches(')').trim().parse().ok()?),
        None => (t, 0),
    };
    matches!(base, "datetime" | "timestamp" | "time").then_some((base, digits))
}

/// Whether every value of declaration `from` fits `to` unchanged (both
/// normalized); `None` when they cannot be compared.
pub fn widens(from: &str, to: &str) -> Option<bool> {
    if from == to {
        return Some(true);
    }
    if let (Some(a), Some(b)) = (int_range(from), int_range(to)) {
        return Some(b.0 <= a.0 && a.1 <= b.1);
    }
    if let (Some((ka, la)), Some((kb, lb))) = (labels(from), labels(to)) {
        return Some(ka == kb && la.len() <= lb.len() && lb.starts_with(&la));
    }
    if let (Some((a, da)), Some((b, db))) = (fraction(from), fraction(to)) {
        // MySQL's default precision is 0 digits (Column::widens_to reads 6).
        return Some(a == b && da <= db);
    }
    if let (TypeKind::FixedText { len }, TypeKind::Text { max_len }) = (kind_of(from), kind_of(to))
    {
        return Some(max_len.is_none_or(|m| m >= len));
    }
    if int_range(from).is_some() {
        // An integer into a decimal or text: by its digits.
        let digits = |(lo, hi): (i128, i128)| lo.abs().max(hi).to_string().len() as u32;
        let d = digits(int_range(from)?);
        return Some(match kind_of(to) {
            TypeKind::Decimal {
                precision: Some(p),
                scale,
            } => p >= d + scale.unwrap_or(0),
            TypeKind::Text { max_len } => max_len.is_none_or(|m| m > d),
            _ => false,
        });
    }
    Some(column(from).widens_to(&column(to)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_widths_do_not_count() {
        assert_eq!(normalize("INT(11) UNSIGNED"), "int unsigned");
        assert_eq!(normalize("tinyint(1)"), "tinyint");
        assert_eq!(normalize("varchar(20)"), "varchar(20)");
        assert_eq!(
            normalize("varchar(8) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
            "varchar(8)"
        );
        assert_eq!(normalize("json"), "longtext");
    }

    #[test]
    fn widening_is_told_from_narrowing() {
        let w = |a: &str, b: &str| widens(&normalize(a), &normalize(b));
        assert_eq!(w("varchar(50)", "varchar(200)"), Some(true));
        assert_eq!(w("varchar(200)", "varchar(50)"), Some(false));
        assert_eq!(w("int(11)", "bigint(20)"), Some(true));
        assert_eq!(w("int(11)", "int(10) unsigned"), Some(false));
        assert_eq!(w("int(10) unsigned", "bigint(20)"), Some(true));
        assert_eq!(w("bigint(20)", "int(11)"), Some(false));
        assert_eq!(w("decimal(10,2)", "decimal(12,2)"), Some(true));
        assert_eq!(w("decimal(12,2)", "decimal(12,3)"), Some(false));
        assert_eq!(w("enum('a','b')", "enum('a','b','c')"), Some(true));
        assert_eq!(w("enum('a','b')", "enum('b','a')"), Some(false));
        assert_eq!(w("char(10)", "varchar(20)"), Some(true));
        assert_eq!(w("varchar(300)", "text"), Some(true));
        assert_eq!(w("datetime", "datetime(3)"), Some(true));
        assert_eq!(w("datetime(6)", "datetime"), Some(false));
        assert_eq!(w("int(11)", "decimal(12,2)"), Some(true));
        assert_eq!(w("int(11)", "varchar(5)"), Some(false));
    }
}
