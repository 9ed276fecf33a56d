//! Date, time and timestamp text in the shapes SQLite files hold, written and read
//! without chrono's format-string interpreter on the common shapes.
//!
//! A full load writes and reads one or more of these per row, and interpreting a
//! format string each time was the largest cost of the SQLite path. Each function
//! here gives exactly what the chrono format it names gives: it handles the plain
//! shape itself and hands anything else to chrono. The tests hold the two side by
//! side.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// `v` in exactly `width` digits, zero-padded; `v` must fit.
fn push_digits(out: &mut String, v: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    while div > 0 {
        out.push(char::from(b'0' + (v / div % 10) as u8));
        div /= 10;
    }
}

/// Appends `d` as chrono's `%Y-%m-%d` writes it.
pub(crate) fn write_date(d: &NaiveDate, out: &mut String) {
    let y = d.year();
    if (0..=9999).contains(&y) {
        push_digits(out, y as u32, 4);
        out.push('-');
        push_digits(out, d.month(), 2);
        out.push('-');
        push_digits(out, d.day(), 2);
    } else {
        // A sign and five digits or more: rare enough for chrono.
        use std::fmt::Write;
        let _ = write!(out, "{}", d.format("%Y-%m-%d"));
    }
}

/// Appends `t` as chrono's `%H:%M:%S%.f` writes it: no fraction when it is zero,
/// else 3, 6 or 9 digits, and a leap second as second 60.
pub(crate) fn write_time(t: &NaiveTime, out: &mut String) {
    push_digits(out, t.hour(), 2);
    out.push(':');
    push_digits(out, t.minute(), 2);
    out.push(':');
    push_digits(out, t.second() + t.nanosecond() / 1_000_000_000, 2);
    let nano = t.nanosecond() % 1_000_000_000;
    if nano != 0 {
        out.push('.');
        if nano.is_multiple_of(1_000_000) {
            push_digits(out, nano / 1_000_000, 3);
        } else if nano.is_multiple_of(1_000) {
            push_digits(out, nano / 1_000, 6);
        } else {
            push_digits(out, nano, 9);
        }
    }
}

/// Appends `t` as chrono's `%Y-%m-%d %H:%M:%S%.f` writes it.
pub(crate) fn write_timestamp(t: &NaiveDateTime, out: &mut String) {
    write_date(&t.date(), out);
    out.push(' ');
    write_time(&t.time(), out);
}

/// The number in `b`, which must be all ASCII digits.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

/// `YYYY-MM-DD`, exactly; `None` for any other shape or an impossible date.
fn date_prefix(b: &[u8]) -> Option<NaiveDate> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(
        digits(&b[0..4])? as i32,
        digits(&b[5..7])?,
        digits(&b[8..10])?,
    )
}

/// `HH:MM:SS` with an optional fraction of 1 to 9 digits, exactly, before second
/// 60 (a leap second is left to chrono).
fn time_exact(b: &[u8]) -> Option<NaiveTime> {
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let nano = match &b[8..] {
        [] => 0,
        [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => {
            digits(frac)? * 10u32.pow(9 - frac.len() as u32)
        }
        _ => return None,
    };
    let sec = digits(&b[6..8])?;
    if sec >= 60 {
        return None;
    }
    NaiveTime::from_hms_nano_opt(digits(&b[0..2])?, digits(&b[3..5])?, sec, nano)
}

/// `s` read as chrono's `%Y-%m-%d` reads it when it has exactly that shape;
/// `None` means "ask chrono", not "invalid".
pub(crate) fn parse_date_fast(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 10 {
        return None;
    }
    date_prefix(b)
}

/// `s` read as chrono's `%H:%M:%S%.f` reads it when it has exactly that shape;
/// `None` means "ask chrono", not "invalid".
pub(crate) fn parse_time_fast(s: &str) -> Option<NaiveTime> {
    time_exact(s.as_bytes())
}

/// `s` read as chrono's `%Y-%m-%d %H:%M:%S%.f` (or the same with `T`) reads it
/// when it has exactly that shape; `None` means "ask chrono", not "invalid".
pub(crate) fn parse_timestamp_fast(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    if b.len() < 19 || (b[10] != b' ' && b[10] != b'T') {
        return None;
    }
    Some(date_prefix(&b[..10])?.and_time(time_exact(&b[11..])?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn dates() -> Vec<NaiveDate> {
        let mut out = vec![];
        for y in [
            -10_000, -1, 0, 7, 999, 1000, 1969, 2024, 9999, 10_000, 262_000,
        ] {
            for (m, d) in [(1, 1), (2, 29), (7, 20), (12, 31)] {
                out.extend(NaiveDate::from_ymd_opt(y, m, d));
            }
        }
        out
    }

    fn times() -> Vec<NaiveTime> {
        let mut out = vec![];
        for (h, m, s) in [(0, 0, 0), (9, 5, 7), (23, 59, 59)] {
            for n in [
                0,
                1,
                7_000,
                120_000_000,
                123_456_000,
                123_456_789,
                999_999_999,
                1_000_000_000,
                1_500_000_000,
            ] {
                out.extend(NaiveTime::from_hms_nano_opt(h, m, s, n));
            }
        }
        out
    }

    #[test]
    fn writing_matches_chrono() {
        for d in dates() {
            let mut s = String::new();
            write_date(&d, &mut s);
            assert_eq!(s, d.format("%Y-%m-%d").to_string());
            for t in times() {
                let mut s = String::new();
                write_time(&t, &mut s);
                assert_eq!(s, t.format("%H:%M:%S%.f").to_string());
                let ts = d.and_time(t);
                let mut s = String::new();
                write_timestamp(&ts, &mut s);
                assert_eq!(s, ts.format("%Y-%m-%d %H:%M:%S%.f").to_string());
                let tz: DateTime<Utc> = ts.and_utc();
                assert_eq!(
                    format!("{s}+00:00"),
                    tz.format("%Y-%m-%d %H:%M:%S%.f+00:00").to_string()
                );
            }
        }
    }

    #[test]
    fn reading_matches_chrono_where_it_answers() {
        let mut texts: Vec<String> = vec![];
        for d in dates() {
            texts.push(d.format("%Y-%m-%d").to_string());
            for t in times() {
                texts.push(t.format("%H:%M:%S%.f").to_string());
                texts.push(d.and_time(t).format("%Y-%m-%d %H:%M:%S%.f").to_string());
                texts.push(d.and_time(t).format("%Y-%m-%dT%H:%M:%S%.f").to_string());
            }
        }
        texts.extend(
            [
                "2024-02-30",
                "2023-02-29 10:00:00",
                "2024-13-01",
                "2024-1-01",
                "2024-01-01 24:00:00",
                "2024-01-01 23:60:00",
                "2024-01-01 23:59:60",
                "2024-01-01 23:59:59.",
                "2024-01-01 23:59:59.1234567891",
                "2024-01-01 23:59:59.12x",
                "2024-01-01 23:59:59Z",
                "2024-01-01  23:59:59",
                "2024-01-01 23:59",
                "2024-01-01x23:59:59",
                "+2024-01-01",
                "2024-01-01 ",
                "١٢٣٤-01-01",
                "12:30",
                "12:30:5",
                "",
            ]
            .map(String::from),
        );
        for s in &texts {
            if let Some(d) = parse_date_fast(s) {
                assert_eq!(
                    Some(d),
                    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok(),
                    "{s}"
                );
            }
            if let Some(t) = parse_time_fast(s) {
                assert_eq!(
                    Some(t),
                    NaiveTime::parse_from_str(s, "%H:%M:%S%.f").ok(),
                    "{s}"
                );
            }
            if let Some(ts) = parse_timestamp_fast(s) {
                let chrono = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
                    .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f"));
                assert_eq!(Some(ts), chrono.ok(), "{s}");
            }
        }
        // The plain shapes are answered here, not handed on.
        assert!(parse_date_fast("2024-02-29").is_some());
        assert!(parse_time_fast("23:59:59.5").is_some());
        assert!(parse_timestamp_fast("2024-02-29 10:11:12").is_some());
        assert!(parse_timestamp_fast("2024-02-29T10:11:12.123456").is_some());
    }
}
