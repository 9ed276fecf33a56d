//! The statements of QUERY events that matter to a change stream: which
//! table a TRUNCATE empties, which tables an ALTER, CREATE/DROP INDEX,
//! DROP or RENAME touches, and what an ALTER did to a replicated table's
//! columns ([`judge`]), including the statements that remove or replace its
//! rows without logging them as row changes (partition operations such as
//! `TRUNCATE PARTITION`, MariaDB's `CREATE OR REPLACE TABLE`), which stop
//! the table. Everything else (CREATE TABLE, statements on other objects)
//! is none of the stream's business.

use siphon_core::{Error, Result, TableSchema};

use crate::objects::drift::{normalize, widens};

/// What a statement does to tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ddl {
    /// `TRUNCATE [TABLE] t`.
    Truncate((Option<String>, String)),
    /// The table's shape may have changed (`ALTER TABLE`, `CREATE INDEX … ON`,
    /// `DROP INDEX … ON`), or it was replaced (`CREATE OR REPLACE TABLE`):
    /// [`judge`] says what follows.
    Alter((Option<String>, String)),
    /// The tables are gone or renamed (`DROP TABLE`, `RENAME TABLE a TO b`).
    Gone(Vec<(Option<String>, String)>),
}

/// Splits SQL into words, quoted identifiers and string literals, comments
/// dropped (`/*! … */` version comments are read as SQL). A quoted token
/// keeps its opening quote (`` `name ``, `'text`, `"text`) and loses the
/// closing one, a doubled quote (`''`) read as one and, in `'…'` and `"…"`,
/// a backslash escape (`\'`) as the character after the backslash, so a
/// word inside a string or a name is never read as a keyword.
fn tokens(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = sql.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            out.push(std::mem::take(word));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '`' | '\'' | '"' => {
                flush(&mut word, &mut out);
                let mut quoted = String::from(c);
                while let Some(n) = chars.next() {
                    if n == c {
                        if chars.peek() == Some(&c) {
                            chars.next();
                            quoted.push(c);
                            continue;
                        }
                        break;
                    }
                    if n == '\\' && c != '`' {
                        if let Some(e) = chars.next() {
                            quoted.push(e);
                        }
                        continue;
                    }
                    quoted.push(n);
                }
                out.push(quoted);
            }
            '/' if chars.peek() == Some(&'*') => {
                flush(&mut word, &mut out);
                chars.next();
                if chars.peek() == Some(&'!') {
                    // `/*!50100 … */`: the version digits, then SQL.
                    chars.next();
                    while chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                        chars.next();
                    }
                    continue;
                }
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
            }
            '*' if chars.peek() == Some(&'/') => {
                // The end of a version comment.
                chars.next();
                flush(&mut word, &mut out);
            }
            '-' if chars.peek() == Some(&'-') => {
                flush(&mut word, &mut out);
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
            }
            '#' => {
                flush(&mut word, &mut out);
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
            }
            c if c.is_whitespace() => flush(&mut word, &mut out),
            ',' | ';' | '(' | ')' => {
                flush(&mut word, &mut out);
                out.push(c.to_string());
            }
            '.' => {
                flush(&mut word, &mut out);
                out.push(".".into());
            }
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Whether `t` is the keyword `kw` (not a quoted name or a string).
fn is(t: Option<&String>, kw: &str) -> bool {
    t.is_some_and(|t| !t.starts_with(['`', '\'', '"']) && t.eq_ignore_ascii_case(kw))
}

/// A name token without its quote (`` `a `` or, under ANSI_QUOTES, `"a`).
fn unquote(t: &str) -> String {
    t.strip_prefix(['`', '"'])
        .map(str::to_string)
        .unwrap_or_else(|| t.to_string())
}

/// Reads `name` or `db.name` at `i`; returns it and the index after it.
fn name_at(
    toks: &[String],
    i: usize,
    db: Option<&str>,
) -> Option<((Option<String>, String), usize)> {
    let first = toks.get(i)?;
    if toks.get(i + 1).map(String::as_str) == Some(".") {
        let second = toks.get(i + 2)?;
        return Some(((Some(unquote(first)), unquote(second)), i + 3));
    }
    Some(((db.map(str::to_string), unquote(first)), i + 1))
}

/// What `sql`, run with default database `db`, does to tables; `None` when
/// it touches none the stream cares about.
pub fn parse(sql: &str, db: Option<&str>) -> Option<Ddl> {
    let toks = tokens(sql);
    let mut i;
    let at = |i: usize, kw: &str| is(toks.get(i), kw);
    if at(0, "TRUNCATE") {
        i = if at(1, "TABLE") { 2 } else { 1 };
        return name_at(&toks, i, db).map(|(n, _)| Ddl::Truncate(n));
    }
    if at(0, "ALTER") {
        i = 1;
        while at(i, "ONLINE") || at(i, "IGNORE") {
            i += 1;
        }
        if !at(i, "TABLE") {
            return None;
        }
        i += 1;
        if at(i, "IF") && at(i + 1, "EXISTS") {
            i += 2;
        }
        let (name, next) = name_at(&toks, i, db)?;
        // ALTER TABLE … RENAME [TO|AS] other: the table is gone under its name.
        let renames = toks[next..].windows(2).any(|w| {
            is(Some(&w[0]), "RENAME")
                && !is(Some(&w[1]), "COLUMN")
                && !is(Some(&w[1]), "INDEX")
                && !is(Some(&w[1]), "KEY")
        });
        return Some(if renames {
            Ddl::Gone(vec![name])
        } else {
            Ddl::Alter(name)
        });
    }
    if at(0, "CREATE") && at(1, "OR") && at(2, "REPLACE") {
        // MariaDB's CREATE OR REPLACE [TEMPORARY] TABLE drops a table of the
        // name (its rows with it) and creates another: judged as such.
        if at(3, "TABLE") {
            return name_at(&toks, 4, db).map(|(n, _)| Ddl::Alter(n));
        }
        if at(3, "TEMPORARY") {
            return None;
        }
    }
    if (at(0, "CREATE") || at(0, "DROP")) && toks.iter().any(|t| is(Some(t), "INDEX")) {
        let on = toks.iter().position(|t| is(Some(t), "ON"))?;
        return name_at(&toks, on + 1, db).map(|(n, _)| Ddl::Alter(n));
    }
    if at(0, "DROP") && (at(1, "TABLE") || (at(1, "TEMPORARY") && at(2, "TABLE"))) {
        if at(1, "TEMPORARY") {
            return None;
        }
        i = 2;
        if at(i, "IF") && at(i + 1, "EXISTS") {
            i += 2;
        }
        let mut names = Vec::new();
        while let Some((n, next)) = name_at(&toks, i, db) {
            if is(toks.get(i), "RESTRICT") || is(toks.get(i), "CASCADE") || toks[i] == ";" {
                break;
            }
            names.push(n);
            if toks.get(next).map(String::as_str) != Some(",") {
                break;
            }
            i = next + 1;
        }
        return Some(Ddl::Gone(names));
    }
    if at(0, "RENAME") && at(1, "TABLE") {
        let mut names = Vec::new();
        i = 2;
        while let Some((n, next)) = name_at(&toks, i, db) {
            names.push(n);
            // Skip `TO new`, then `,` for the next pair.
            let Some((_, after)) = (if is(toks.get(next), "TO") {
                name_at(&toks, next + 1, db)
            } else {
                None
            }) else {
                break;
            };
            if toks.get(after).map(String::as_str) != Some(",") {
                break;
            }
            i = after + 1;
        }
        return Some(Ddl::Gone(names));
    }
    None
}

/// What an `ALTER TABLE` (or `CREATE`/`DROP INDEX`) seen in the binlog did
/// to a replicated table, from its shape before (`old`) and after (`new`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reshape {
    /// No column, type, nullability or key changed (an index, a default or a
    /// comment did): the table streams on as it is.
    Untouched,
    /// Columns were added (anywhere in the table), moved, widened or made
    /// nullable, every column kept: the target evolves to the new shape.
    Evolve,
}

/// Judges a change of a replicated table's shape from `old` to `new` by the
/// statement `sql` that made it: [`Reshape::Untouched`] or
/// [`Reshape::Evolve`], or a `BadInput` error naming the table, the column,
/// what changed and the fix for a change siphon does not follow by itself: a
/// column dropped or renamed, a type narrowed or changed to one that does not
/// hold every old value (see [`widens`]), or another key. A statement that
/// removes or replaces rows without row events (see [`rows_replaced`]) is
/// refused whatever the shapes, as the target would keep the rows.
pub fn judge(old: &TableSchema, new: &TableSchema, sql: &str) -> Result<Reshape> {
    let table = &old.name;
    if let Some(what) = rows_replaced(sql) {
        return Err(Error::bad_input(format!(
            "{what}; the binlog holds no row changes for it, so the target still holds the rows as \
             they were and siphon cannot follow it: the table must be copied again"
        ))
        .table(table));
    }
    let refuse = |column: &str, what: String, fix: &str| {
        Error::bad_input(format!(
            "{what} (an ALTER TABLE read from the binlog), which siphon does not follow on the \
             target by itself: {fix} on the target as well, then copy the table again with \
             `siphon sync resync`"
        ))
        .table(table)
        .column(column)
    };
    let find = |name: &str| {
        new.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    };
    // The catalog may be past the binlog (the table was read after the
    // statement ran, as when siphon starts again after it): a column the
    // statement drops or renames that the table lacks now went then.
    let has = |s: &TableSchema, c: &str| s.columns.iter().any(|x| x.name.eq_ignore_ascii_case(c));
    for (column, to, if_exists) in touched_columns(sql) {
        if has(new, &column) || (if_exists && !has(old, &column)) {
            continue;
        }
        return Err(match to {
            Some(to) => refuse(
                &column,
                format!("the source renamed column `{column}` to `{to}`"),
                &format!("rename the column to `{to}`"),
            ),
            None => refuse(
                &column,
                format!("the source dropped column `{column}`"),
                &format!("drop column `{column}`"),
            ),
        });
    }
    let mut evolve = false;
    for (i, col) in old.columns.iter().enumerate() {
        let Some(j) = find(&col.name) else {
            return Err(match renamed_to(sql, &col.name) {
                Some(to) => refuse(
                    &col.name,
                    format!("the source renamed column `{}` to `{to}`", col.name),
                    &format!("rename the column to `{to}`"),
                ),
                None => refuse(
                    &col.name,
                    format!("the source dropped column `{}`", col.name),
                    &format!("drop column `{}`", col.name),
                ),
            });
        };
        let now = &new.columns[j];
        let (from, to) = (normalize(&col.native_type), normalize(&now.native_type));
        if from != to {
            if widens(&from, &to) != Some(true) {
                let verb = match widens(&to, &from) {
                    Some(true) => "narrowed",
                    _ => "changed",
                };
                return Err(refuse(
                    &col.name,
                    format!(
                        "the source {verb} column `{}` from {from} to {to}, which could lose or \
                         refuse values on the target",
                        col.name
                    ),
                    &format!("change column `{}` to {to}", col.name),
                ));
            }
            evolve = true;
        }
        evolve |= i != j || col.data_type.nullable != now.data_type.nullable;
    }
    let key = |s: &TableSchema| -> Vec<String> {
        s.row_key()
            .unwrap_or_default()
            .iter()
            .map(|&i| s.columns[i].name.to_ascii_lowercase())
            .collect()
    };
    let (was, is) = (key(old), key(new));
    if was != is {
        let shown = |k: &[String]| match k.is_empty() {
            true => "none".to_string(),
            false => format!("({})", k.join(", ")),
        };
        let column = is.first().or(was.first()).cloned().unwrap_or_default();
        return Err(refuse(
            &column,
            format!(
                "the source changed the table's key from {} to {}",
                shown(&was),
                shown(&is)
            ),
            "change the table's key alike",
        ));
    }
    if new.columns.len() > old.columns.len() {
        evolve = true;
    }
    Ok(match evolve {
        true => Reshape::Evolve,
        false => Reshape::Untouched,
    })
}

/// What `sql` did to a table's rows without logging them as row changes,
/// in words, when it did: `ALTER TABLE … TRUNCATE PARTITION`, `DROP
/// PARTITION`, `EXCHANGE PARTITION`, MariaDB's `CONVERT PARTITION … TO
/// TABLE` and `CONVERT TABLE … TO PARTITION`, `IMPORT [PARTITION …]
/// TABLESPACE`, and `CREATE OR REPLACE TABLE`. Partition operations that keep
/// every row (`ADD`, `REORGANIZE`, `COALESCE`, `REMOVE PARTITIONING`,
/// `ANALYZE`, `OPTIMIZE`, `REBUILD`, `CHECK`, `REPAIR` …) are none of these.
fn rows_replaced(sql: &str) -> Option<String> {
    let toks = tokens(sql);
    if is(toks.first(), "CREATE") {
        return (is(toks.get(1), "OR") && is(toks.get(2), "REPLACE")).then(|| {
            "the source replaced the table with CREATE OR REPLACE TABLE, which drops it with its \
             rows and creates it anew"
                .to_string()
        });
    }
    if !is(toks.first(), "ALTER") {
        return None;
    }
    // The partition names from `at` on: `p1, p2`, `ALL`, `IF EXISTS p`.
    let names = |mut at: usize| {
        if is(toks.get(at), "IF") && is(toks.get(at + 1), "EXISTS") {
            at += 2;
        }
        let mut out = Vec::new();
        while let Some(n) = toks.get(at) {
            if matches!(n.as_str(), "," | ";" | "(" | ")") {
                break;
            }
            out.push(unquote(n));
            if toks.get(at + 1).map(String::as_str) != Some(",") {
                break;
            }
            at += 2;
        }
        out.join(", ")
    };
    let table_at = |at: usize| {
        name_at(&toks, at, None)
            .map(|((db, n), _)| match db {
                Some(db) => format!("{db}.{n}"),
                None => n,
            })
            .unwrap_or_default()
    };
    for (i, t) in toks.iter().enumerate() {
        let next = |kw: &str| is(toks.get(i + 1), kw);
        let what = if is(Some(t), "TRUNCATE") && next("PARTITION") {
            format!(
                "the source emptied partition {} of the table (ALTER TABLE … TRUNCATE PARTITION)",
                names(i + 2)
            )
        } else if is(Some(t), "DROP") && next("PARTITION") {
            format!(
                "the source dropped partition {} of the table with its rows (ALTER TABLE … DROP \
                 PARTITION)",
                names(i + 2)
            )
        } else if is(Some(t), "EXCHANGE") && next("PARTITION") {
            let with = (i + 3..toks.len())
                .find(|&j| is(toks.get(j), "TABLE"))
                .map(|j| table_at(j + 1))
                .unwrap_or_default();
            format!(
                "the source exchanged partition {} of the table with the rows of table {with} \
                 (ALTER TABLE … EXCHANGE PARTITION)",
                names(i + 2)
            )
        } else if is(Some(t), "CONVERT") && next("PARTITION") {
            format!(
                "the source moved partition {} of the table out to a table of its own (ALTER \
                 TABLE … CONVERT PARTITION … TO TABLE)",
                names(i + 2)
            )
        } else if is(Some(t), "CONVERT") && next("TABLE") {
            format!(
                "the source moved the rows of table {} into the table as a partition (ALTER \
                 TABLE … CONVERT TABLE … TO PARTITION)",
                table_at(i + 2)
            )
        } else if is(Some(t), "IMPORT") && (next("TABLESPACE") || next("PARTITION")) {
            "the source imported rows into the table from tablespace files (ALTER TABLE … IMPORT \
             TABLESPACE)"
                .to_string()
        } else {
            continue;
        };
        return Some(what);
    }
    None
}

/// The columns an `ALTER TABLE` statement drops (`DROP [COLUMN] [IF EXISTS]
/// c`: `(c, None, if_exists)`) or renames (`RENAME COLUMN c TO d`, `CHANGE
/// [COLUMN] c d …`: `(c, Some(d), false)`).
fn touched_columns(sql: &str) -> Vec<(String, Option<String>, bool)> {
    let toks = tokens(sql);
    if !is(toks.first(), "ALTER") {
        return Vec::new();
    }
    // What may follow DROP other than a column.
    const OTHERS: &[&str] = &[
        "INDEX",
        "KEY",
        "PRIMARY",
        "FOREIGN",
        "CONSTRAINT",
        "CHECK",
        "PARTITION",
        "SYSTEM",
        "PERIOD",
        "UNIQUE",
        "FULLTEXT",
        "SPATIAL",
        "DEFAULT",
        "NOT",
    ];
    let mut out = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        if is(Some(t), "DROP") {
            // `ALTER [COLUMN] c DROP DEFAULT` drops no column.
            if OTHERS.iter().any(|o| is(toks.get(i + 1), o)) {
                continue;
            }
            let mut at = i + 1;
            if is(toks.get(at), "COLUMN") {
                at += 1;
            }
            let mut if_exists = false;
            if is(toks.get(at), "IF") && is(toks.get(at + 1), "EXISTS") {
                at += 2;
                if_exists = true;
            }
            if let Some(c) = toks
                .get(at)
                .filter(|c| !matches!(c.as_str(), "," | ";" | "(" | ")"))
            {
                out.push((unquote(c), None, if_exists));
            }
        } else if is(Some(t), "CHANGE") || (is(Some(t), "RENAME") && is(toks.get(i + 1), "COLUMN"))
        {
            let mut at = i + 1;
            if is(toks.get(at), "COLUMN") {
                at += 1;
            }
            if is(toks.get(at), "IF") && is(toks.get(at + 1), "EXISTS") {
                at += 2;
            }
            if let Some(c) = toks.get(at).map(|c| unquote(c)) {
                if let Some(to) = renamed_to(sql, &c) {
                    out.push((c, Some(to), false));
                }
            }
        }
    }
    out
}

/// The new name `sql` gives column `column` (`RENAME COLUMN a TO b`,
/// `CHANGE [COLUMN] a b …`), if it renames it.
fn renamed_to(sql: &str, column: &str) -> Option<String> {
    let toks = tokens(sql);
    let named = |t: &String| unquote(t).eq_ignore_ascii_case(column);
    for (i, t) in toks.iter().enumerate() {
        let mut at = i + 1;
        if is(Some(t), "RENAME") && is(toks.get(at), "COLUMN") {
            at += 1;
            if toks.get(at).is_some_and(named) && is(toks.get(at + 1), "TO") {
                return toks.get(at + 2).map(|n| unquote(n));
            }
        } else if is(Some(t), "CHANGE") {
            if is(toks.get(at), "COLUMN") {
                at += 1;
            }
            if is(toks.get(at), "IF") && is(toks.get(at + 1), "EXISTS") {
                at += 2;
            }
            if toks.get(at).is_some_and(named) {
                let to = unquote(toks.get(at + 1)?);
                return (!to.eq_ignore_ascii_case(column)).then_some(to);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(db: Option<&str>, n: &str) -> (Option<String>, String) {
        (db.map(str::to_string), n.to_string())
    }

    #[test]
    fn statements_are_read() {
        assert_eq!(
            parse("TRUNCATE TABLE `app`.`orders`", None),
            Some(Ddl::Truncate(t(Some("app"), "orders")))
        );
        assert_eq!(
            parse("truncate orders", Some("app")),
            Some(Ddl::Truncate(t(Some("app"), "orders")))
        );
        assert_eq!(
            parse(
                "/* x */ ALTER ONLINE TABLE `we``ird` ADD COLUMN n int",
                Some("d")
            ),
            Some(Ddl::Alter(t(Some("d"), "we`ird")))
        );
        assert_eq!(
            parse("ALTER TABLE a RENAME TO b", Some("d")),
            Some(Ddl::Gone(vec![t(Some("d"), "a")]))
        );
        assert_eq!(
            parse("ALTER TABLE a RENAME COLUMN x TO y", Some("d")),
            Some(Ddl::Alter(t(Some("d"), "a")))
        );
        assert_eq!(
            parse("CREATE INDEX i ON d2.a (x)", Some("d")),
            Some(Ddl::Alter(t(Some("d2"), "a")))
        );
        assert_eq!(
            parse(
                "DROP TABLE IF EXISTS `a`, d2.b /* generated by server */",
                Some("d")
            ),
            Some(Ddl::Gone(vec![t(Some("d"), "a"), t(Some("d2"), "b")]))
        );
        assert_eq!(
            parse("RENAME TABLE a TO b, c TO d", Some("x")),
            Some(Ddl::Gone(vec![t(Some("x"), "a"), t(Some("x"), "c")]))
        );
        assert_eq!(parse("CREATE TABLE a (id int)", Some("d")), None);
        assert_eq!(parse("DROP TEMPORARY TABLE IF EXISTS a", Some("d")), None);
        assert_eq!(parse("ALTER USER x", Some("d")), None);
        assert_eq!(
            parse(
                "CREATE OR REPLACE TABLE `cr` (id int, INDEX (id))",
                Some("d")
            ),
            Some(Ddl::Alter(t(Some("d"), "cr")))
        );
        assert_eq!(
            parse("create or replace table d2.cr like x", Some("d")),
            Some(Ddl::Alter(t(Some("d2"), "cr")))
        );
        assert_eq!(
            parse("CREATE OR REPLACE TEMPORARY TABLE cr (id int)", Some("d")),
            None
        );
        assert_eq!(
            parse("CREATE OR REPLACE INDEX i ON a (x)", Some("d")),
            Some(Ddl::Alter(t(Some("d"), "a")))
        );
        assert_eq!(
            parse("CREATE TABLE a (id int, INDEX (id))", Some("d")),
            None
        );
    }

    #[test]
    fn strings_and_quoted_names_are_one_token_each() {
        assert_eq!(
            tokens(
                r#"ALTER TABLE u ADD c int COMMENT 'we may rename it''s \' x', d int DEFAULT "a \" b", `e``f` int"#
            ),
            [
                "ALTER",
                "TABLE",
                "u",
                "ADD",
                "c",
                "int",
                "COMMENT",
                "'we may rename it's ' x",
                ",",
                "d",
                "int",
                "DEFAULT",
                "\"a \" b",
                ",",
                "`e`f",
                "int",
            ]
        );
        // A keyword inside a string is no keyword.
        for sql in [
            "ALTER TABLE u ADD COLUMN c varchar(30) COMMENT 'we may rename this later'",
            "ALTER TABLE u COMMENT = 'rename to v; drop partition p'",
            "ALTER TABLE u ADD c int DEFAULT 'x\\\\', COMMENT 'rename ''to'' w'",
        ] {
            assert_eq!(
                parse(sql, Some("d")),
                Some(Ddl::Alter(t(Some("d"), "u"))),
                "{sql}"
            );
            assert_eq!(rows_replaced(sql), None, "{sql}");
        }
        assert_eq!(
            parse(r#"ALTER TABLE "d2"."u" RENAME TO v"#, Some("d")),
            Some(Ddl::Gone(vec![t(Some("d2"), "u")]))
        );
    }

    #[test]
    fn statements_that_remove_rows_without_row_events_stop_the_table() {
        let old = table(&[("id", "int(11)"), ("v", "varchar(50)")], &[0]);
        for (sql, said) in [
            (
                "ALTER TABLE t TRUNCATE PARTITION p2024, `p2025`",
                "emptied partition p2024, p2025 of the table",
            ),
            (
                "alter table t truncate partition all",
                "emptied partition all of the table",
            ),
            (
                "ALTER TABLE t DROP PARTITION IF EXISTS p1",
                "dropped partition p1 of the table with its rows",
            ),
            (
                "ALTER TABLE t EXCHANGE PARTITION p1 WITH TABLE d2.t2 WITHOUT VALIDATION",
                "exchanged partition p1 of the table with the rows of table d2.t2",
            ),
            (
                "ALTER TABLE t CONVERT PARTITION p1 TO TABLE t_old",
                "moved partition p1 of the table out to a table of its own",
            ),
            (
                "ALTER TABLE t CONVERT TABLE t_new TO PARTITION p9 VALUES LESS THAN (2030)",
                "moved the rows of table t_new into the table as a partition",
            ),
            (
                "ALTER TABLE t IMPORT PARTITION p1 TABLESPACE",
                "imported rows into the table from tablespace files",
            ),
            (
                "CREATE OR REPLACE TABLE t (id int(11) PRIMARY KEY, v varchar(50))",
                "replaced the table with CREATE OR REPLACE TABLE",
            ),
        ] {
            let e = judge(&old, &old, sql).unwrap_err();
            assert_eq!(e.kind(), siphon_core::ErrorKind::BadInput);
            assert_eq!(e.table_name(), Some("d.t"), "{sql}");
            let text = e.to_string();
            assert!(text.contains(said), "{sql}: {text}");
            assert!(
                text.contains("the table must be copied again"),
                "{sql}: {text}"
            );
        }
        for sql in [
            "ALTER TABLE t ADD PARTITION (PARTITION p2027 VALUES LESS THAN (2028))",
            "ALTER TABLE t REORGANIZE PARTITION pmax INTO (PARTITION p26 VALUES LESS THAN (2027), \
             PARTITION pmax VALUES LESS THAN MAXVALUE)",
            "ALTER TABLE t COALESCE PARTITION 2",
            "ALTER TABLE t ANALYZE PARTITION p1",
            "ALTER TABLE t OPTIMIZE PARTITION p1, p2",
            "ALTER TABLE t REBUILD PARTITION ALL",
            "ALTER TABLE t CHECK PARTITION p1",
            "ALTER TABLE t REPAIR PARTITION p1",
            "ALTER TABLE t REMOVE PARTITIONING",
            "ALTER TABLE t PARTITION BY HASH (id) PARTITIONS 4",
        ] {
            assert_eq!(judge(&old, &old, sql).unwrap(), Reshape::Untouched, "{sql}");
        }
    }

    fn table(columns: &[(&str, &str)], key: &[usize]) -> TableSchema {
        use siphon_core::typemap::{parse_native, Engine};
        use siphon_core::{Column, DataType, TableName};
        TableSchema {
            name: TableName::new(Some("d"), "t"),
            origin: Engine::Mysql,
            columns: columns
                .iter()
                .map(|(n, ty)| Column {
                    name: n.to_string(),
                    data_type: DataType::new(parse_native(Engine::Mysql, ty), true),
                    native_type: ty.to_string(),
                    generated: false,
                    source_id: None,
                })
                .collect(),
            primary_key: key.to_vec(),
            unique_keys: vec![],
            indexes: vec![],
            partitioning: None,
            objects: vec![],
        }
    }

    #[test]
    fn additions_and_widenings_evolve_and_the_rest_is_refused_with_the_fix() {
        let old = table(&[("id", "int(11)"), ("v", "varchar(50)")], &[0]);
        let judge_to =
            |cols: &[(&str, &str)], key: &[usize], sql: &str| judge(&old, &table(cols, key), sql);
        assert_eq!(
            judge_to(
                &[("id", "int(11)"), ("v", "varchar(50)")],
                &[0],
                "CREATE INDEX i ON t (v)"
            )
            .unwrap(),
            Reshape::Untouched
        );
        for (cols, key) in [
            (
                &[("id", "int(11)"), ("v", "varchar(50)"), ("w", "int(11)")][..],
                0,
            ),
            (
                &[("w", "int(11)"), ("id", "int(11)"), ("v", "varchar(50)")],
                1,
            ),
            (&[("id", "bigint(20)"), ("v", "varchar(200)")], 0),
        ] {
            assert_eq!(
                judge_to(cols, &[key], "ALTER TABLE t").unwrap(),
                Reshape::Evolve
            );
        }
        let e = judge_to(&[("id", "int(11)")], &[0], "ALTER TABLE t DROP COLUMN v").unwrap_err();
        assert_eq!(e.kind(), siphon_core::ErrorKind::BadInput);
        assert_eq!((e.table_name(), e.column_name()), (Some("d.t"), Some("v")));
        let text = e.to_string();
        assert!(
            text.contains("dropped column `v`") && text.contains("drop column `v` on the target"),
            "{text}"
        );
        assert!(text.contains("siphon sync resync"), "{text}");
        let e = judge_to(
            &[("id", "int(11)"), ("w", "varchar(50)")],
            &[0],
            "ALTER TABLE t CHANGE COLUMN `v` `w` varchar(50)",
        )
        .unwrap_err();
        assert!(e.to_string().contains("renamed column `v` to `w`"), "{e}");
        let e = judge_to(
            &[("id", "int(11)"), ("w", "varchar(50)")],
            &[0],
            "ALTER TABLE t RENAME COLUMN v TO w",
        )
        .unwrap_err();
        assert!(e.to_string().contains("renamed column `v` to `w`"), "{e}");
        // Read after the catalog moved on: the statement says what went.
        let e = judge(&old, &old, "ALTER TABLE t ADD x int, DROP COLUMN `gone`").unwrap_err();
        assert!(e.to_string().contains("dropped column `gone`"), "{e}");
        let e = judge(&old, &old, "alter table t change zz v varchar(50)").unwrap_err();
        assert!(e.to_string().contains("renamed column `zz` to `v`"), "{e}");
        for sql in [
            "ALTER TABLE t DROP INDEX i, DROP PRIMARY KEY, DROP FOREIGN KEY f",
            "ALTER TABLE t ALTER COLUMN v DROP DEFAULT",
            "ALTER TABLE t DROP COLUMN IF EXISTS never",
            "ALTER TABLE t CHANGE v v varchar(50)",
        ] {
            assert_eq!(judge(&old, &old, sql).unwrap(), Reshape::Untouched, "{sql}");
        }
        let e = judge(&old, &old, "ALTER TABLE t DROP v2").unwrap_err();
        assert_eq!(e.column_name(), Some("v2"), "{e}");
        let e = judge_to(
            &[("id", "int(11)"), ("v", "varchar(20)")],
            &[0],
            "ALTER TABLE t",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("narrowed column `v` from varchar(50) to varchar(20)"),
            "{e}"
        );
        let e = judge_to(&[("id", "int(11)"), ("v", "date")], &[0], "ALTER TABLE t").unwrap_err();
        assert!(e.to_string().contains("changed column `v`"), "{e}");
        let e = judge_to(
            &[("id", "int(11)"), ("v", "varchar(50)")],
            &[0, 1],
            "ALTER TABLE t",
        )
        .unwrap_err();
        assert!(e.to_string().contains("key from (id) to (id, v)"), "{e}");
    }
}
