//! The statements of QUERY events that matter to a change stream: which
//! table a TRUNCATE empties, which tables an ALTER, CREATE/DROP INDEX,
//! DROP or RENAME touches. Everything else (CREATE TABLE, statements on
//! other objects) is none of the stream's business.

/// What a statement does to tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ddl {
    /// `TRUNCATE [TABLE] t`.
    Truncate((Option<String>, String)),
    /// The table's shape may have changed (`ALTER TABLE`, `CREATE INDEX … ON`,
    /// `DROP INDEX … ON`).
    Alter((Option<String>, String)),
    /// The tables are gone or renamed (`DROP TABLE`, `RENAME TABLE a TO b`).
    Gone(Vec<(Option<String>, String)>),
}

/// Splits SQL into words and quoted identifiers, comments dropped
/// (`/*! … */` version comments are read as SQL).
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
            '`' => {
                flush(&mut word, &mut out);
                let mut id = String::from("`");
                while let Some(n) = chars.next() {
                    if n == '`' {
                        if chars.peek() == Some(&'`') {
                            chars.next();
                            id.push('`');
                            continue;
                        }
                        break;
                    }
                    id.push(n);
                }
                out.push(id);
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

fn is(t: Option<&String>, kw: &str) -> bool {
    t.is_some_and(|t| !t.starts_with('`') && t.eq_ignore_ascii_case(kw))
}

fn unquote(t: &str) -> String {
    t.strip_prefix('`')
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
    }
}
