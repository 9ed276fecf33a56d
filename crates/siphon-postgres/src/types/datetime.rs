//! Dates, times, timestamps and intervals in both formats.

use super::*;

// ---------------------------------------------------------------------------
// date and time
// ---------------------------------------------------------------------------

/// 2000-01-01, PostgreSQL's epoch, in chrono's days from 0001-01-01 (day 1).
pub(super) const PG_EPOCH_DAYS_FROM_CE: i32 = 730_120;
/// 2000-01-01 in microseconds from the Unix epoch.
pub(super) const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;
pub(super) const MICROS_PER_DAY: i64 = 86_400_000_000;

/// PostgreSQL's `±infinity` dates are i32::MAX/MIN days, and chrono's MAX/MIN here.
pub(super) fn date_from_days(days: i32) -> Option<NaiveDate> {
    match days {
        i32::MAX => Some(NaiveDate::MAX),
        i32::MIN => Some(NaiveDate::MIN),
        d => NaiveDate::from_num_days_from_ce_opt(PG_EPOCH_DAYS_FROM_CE.checked_add(d)?),
    }
}

pub(super) fn days_from_date(d: NaiveDate) -> i32 {
    if d == NaiveDate::MAX {
        i32::MAX
    } else if d == NaiveDate::MIN {
        i32::MIN
    } else {
        // chrono's range is ±262,143 years: far inside i32 days.
        d.num_days_from_ce() - PG_EPOCH_DAYS_FROM_CE
    }
}

/// PostgreSQL's `±infinity` timestamps are i64::MAX/MIN microseconds.
pub(super) fn ts_from_micros(micros: i64) -> Option<NaiveDateTime> {
    match micros {
        i64::MAX => Some(NaiveDateTime::MAX),
        i64::MIN => Some(NaiveDateTime::MIN),
        m => DateTime::from_timestamp_micros(m.checked_add(PG_EPOCH_UNIX_MICROS)?)
            .map(|t| t.naive_utc()),
    }
}

pub(super) fn micros_from_ts(t: NaiveDateTime) -> Option<i64> {
    if t == NaiveDateTime::MAX {
        return Some(i64::MAX);
    }
    if t == NaiveDateTime::MIN {
        return Some(i64::MIN);
    }
    let t = t.and_utc();
    let micros = t
        .timestamp()
        .checked_mul(1_000_000)?
        .checked_add(round_nanos(i64::from(t.timestamp_subsec_nanos())))?;
    micros.checked_sub(PG_EPOCH_UNIX_MICROS)
}

/// Nanoseconds to whole microseconds, half to even as PostgreSQL rounds input.
pub(super) fn round_nanos(nanos: i64) -> i64 {
    let (q, r) = (nanos / 1000, nanos % 1000);
    if r > 500 || (r == 500 && q % 2 == 1) {
        q + 1
    } else {
        q
    }
}

/// A time of day; PostgreSQL's `24:00:00` is [`Value::END_OF_DAY`].
pub(super) fn time_from_micros(ty: &PgType, micros: i64) -> Result<NaiveTime, CodecError> {
    if micros == MICROS_PER_DAY {
        return Ok(Value::END_OF_DAY);
    }
    if !(0..MICROS_PER_DAY).contains(&micros) {
        return Err(out_of_range(ty, micros));
    }
    let secs = (micros / 1_000_000) as u32;
    let nanos = (micros % 1_000_000) as u32 * 1000;
    NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
        .ok_or_else(|| out_of_range(ty, micros))
}

/// A cursor over ASCII text for the date, time and interval parsers.
pub(super) struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(s: &'a str) -> Self {
        Cursor {
            s: s.as_bytes(),
            i: 0,
        }
    }
    pub(super) fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    pub(super) fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    pub(super) fn done(&self) -> bool {
        self.i >= self.s.len()
    }
    /// An unsigned decimal of `min..=max` digits.
    pub(super) fn digits(&mut self, min: usize, max: usize) -> Option<i64> {
        let start = self.i;
        let mut n: i64 = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            if self.i - start == max {
                return None;
            }
            n = n.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
            self.i += 1;
        }
        (self.i - start >= min).then_some(n)
    }
    /// `.ffffff` after seconds, as nanoseconds (up to nine digits).
    pub(super) fn fraction_nanos(&mut self) -> Option<u32> {
        if !self.eat(b'.') {
            return Some(0);
        }
        let start = self.i;
        let n = self.digits(1, 9)?;
        let len = (self.i - start) as u32;
        Some(n as u32 * 10u32.pow(9 - len))
    }
}

/// `YYYY-MM-DD` (a year of four or more digits), the date part of ISO output.
pub(super) fn parse_ymd(c: &mut Cursor) -> Option<(i32, u32, u32)> {
    let y = c.digits(1, 9)?;
    if !c.eat(b'-') {
        return None;
    }
    let m = c.digits(1, 2)?;
    if !c.eat(b'-') {
        return None;
    }
    let d = c.digits(1, 2)?;
    Some((i32::try_from(y).ok()?, m as u32, d as u32))
}

/// `HH:MM:SS[.ffffff]`, as (seconds from midnight, nanoseconds).
pub(super) fn parse_hms(c: &mut Cursor) -> Option<(u32, u32)> {
    let h = c.digits(1, 2)?;
    if !c.eat(b':') {
        return None;
    }
    let m = c.digits(2, 2)?;
    let s = if c.eat(b':') { c.digits(2, 2)? } else { 0 };
    let nanos = c.fraction_nanos()?;
    if h > 24 || m > 59 || s > 60 || (h == 24 && (m, s, nanos) != (0, 0, 0)) {
        return None;
    }
    Some(((h * 3600 + m * 60 + s) as u32, nanos))
}

/// The year as chrono counts it: `N BC` is year `1 - N` (1 BC is year 0).
pub(super) fn make_date(y: i32, m: u32, d: u32, bc: bool) -> Option<NaiveDate> {
    let y = if bc { 1 - y } else { y };
    NaiveDate::from_ymd_opt(y, m, d)
}

pub(super) fn strip_bc(s: &str) -> (&str, bool) {
    match s.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (s, false),
    }
}

pub(super) fn parse_date_text(s: &str) -> Option<NaiveDate> {
    match s {
        "infinity" => return Some(NaiveDate::MAX),
        "-infinity" => return Some(NaiveDate::MIN),
        _ => {}
    }
    let (s, bc) = strip_bc(s.trim());
    let mut c = Cursor::new(s);
    let (y, m, d) = parse_ymd(&mut c)?;
    c.done().then_some(())?;
    make_date(y, m, d, bc)
}

pub(super) fn parse_time_text(ty: &PgType, s: &str) -> Result<NaiveTime, CodecError> {
    let mut c = Cursor::new(s.trim());
    let (secs, nanos) = parse_hms(&mut c)
        .filter(|_| c.done())
        .ok_or_else(|| text_error(ty, s, "expected HH:MM:SS[.ffffff]"))?;
    if secs == 86_400 && nanos == 0 {
        return Ok(Value::END_OF_DAY);
    }
    NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
        .ok_or_else(|| text_error(ty, s, "time out of range"))
}

/// A timestamp in ISO output (`2024-01-01 10:00:00.5`, `+02`, `+05:30`,
/// `-03:30:15`, ` BC`), as UTC when it carries an offset. Returns the naive time
/// and whether an offset was present.
pub(super) fn parse_ts_text(s: &str) -> Option<(NaiveDateTime, bool)> {
    match s {
        "infinity" => return Some((NaiveDateTime::MAX, true)),
        "-infinity" => return Some((NaiveDateTime::MIN, true)),
        _ => {}
    }
    let (s, bc) = strip_bc(s.trim());
    let mut c = Cursor::new(s);
    let (y, m, d) = parse_ymd(&mut c)?;
    if !(c.eat(b' ') || c.eat(b'T')) {
        return None;
    }
    let (secs, nanos) = parse_hms(&mut c)?;
    let date = make_date(y, m, d, bc)?;
    let (time, extra_day) = if secs >= 86_400 {
        // 24:00:00 is midnight of the next day in timestamp input.
        (
            NaiveTime::from_num_seconds_from_midnight_opt(secs - 86_400, nanos)?,
            1,
        )
    } else {
        (
            NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)?,
            0,
        )
    };
    let mut ts = date
        .and_time(time)
        .checked_add_signed(TimeDelta::days(extra_day))?;
    let offset = if c.eat(b'Z') {
        Some(0)
    } else {
        match c.peek() {
            Some(sign @ (b'+' | b'-')) => {
                c.i += 1;
                let h = c.digits(1, 2)?;
                let m = if c.eat(b':') { c.digits(2, 2)? } else { 0 };
                let s = if c.eat(b':') { c.digits(2, 2)? } else { 0 };
                let secs = h * 3600 + m * 60 + s;
                Some(if sign == b'-' { -secs } else { secs })
            }
            _ => None,
        }
    };
    c.done().then_some(())?;
    if let Some(off) = offset {
        ts = ts.checked_sub_signed(TimeDelta::try_seconds(off)?)?;
    }
    Some((ts, offset.is_some()))
}

// ---------------------------------------------------------------------------
// dates and timestamps beyond chrono's years
// ---------------------------------------------------------------------------
//
// PostgreSQL's dates reach year 5874897 and its timestamps year 294276; chrono
// ends at year 262142. Values past chrono's range travel as
// `Value::Engine { type_name, text }` with PostgreSQL's text form, and these
// functions convert between that text and PostgreSQL's days and microseconds
// without chrono.

/// Days from 1970-01-01 of a proleptic Gregorian date (year 0 is 1 BC).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day from 1970-01-01, as (year, month, day); year 0 is 1 BC.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// 2000-01-01 in days from 1970-01-01.
const PG_EPOCH_UNIX_DAYS: i64 = 10_957;

/// Days from 2000-01-01 of a date (year 0 is 1 BC).
fn pg_day(y: i64, m: i64, d: i64) -> i64 {
    days_from_civil(y, m, d) - PG_EPOCH_UNIX_DAYS
}

/// Whether PostgreSQL's date type holds the day (from 2000-01-01): 4714-11-24
/// BC to 5874897-12-31, or ±infinity.
pub(super) fn date_in_range(days: i64) -> bool {
    days == i64::from(i32::MAX)
        || days == i64::from(i32::MIN)
        || (pg_day(-4713, 11, 24)..pg_day(5_874_898, 1, 1)).contains(&days)
}

/// Whether PostgreSQL's timestamp types hold the microsecond (from 2000-01-01
/// UTC): 4714-11-24 00:00 BC to 294276-12-31 23:59:59.999999, or ±infinity.
pub(super) fn timestamp_in_range(micros: i64) -> bool {
    micros == i64::MAX
        || micros == i64::MIN
        || (pg_day(-4713, 11, 24) * MICROS_PER_DAY..pg_day(294_277, 1, 1) * MICROS_PER_DAY)
            .contains(&micros)
}

fn push_ymd(s: &mut String, days_from_pg_epoch: i64) -> bool {
    let (y, m, d) = civil_from_days(days_from_pg_epoch + PG_EPOCH_UNIX_DAYS);
    let bc = y <= 0;
    let _ = write!(s, "{:04}-{m:02}-{d:02}", if bc { 1 - y } else { y });
    bc
}

/// PostgreSQL's text form of a date given as days from 2000-01-01.
pub(super) fn date_text(days: i32) -> String {
    let mut s = String::with_capacity(16);
    if push_ymd(&mut s, i64::from(days)) {
        s.push_str(" BC");
    }
    s
}

/// PostgreSQL's ISO text form of a timestamp given as microseconds from
/// 2000-01-01, with `+00` when `tz`.
pub(super) fn timestamp_text(micros: i64, tz: bool) -> String {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let t = micros.rem_euclid(MICROS_PER_DAY);
    let mut s = String::with_capacity(32);
    let bc = push_ymd(&mut s, days);
    let secs = t / 1_000_000;
    let _ = write!(
        s,
        " {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    push_fraction(&mut s, (t % 1_000_000) as u64);
    if tz {
        s.push_str("+00");
    }
    if bc {
        s.push_str(" BC");
    }
    s
}

/// Days from 2000-01-01 of a date in PostgreSQL's text form, any year.
pub(super) fn days_of_text(s: &str) -> Option<i32> {
    match s.trim() {
        "infinity" => return Some(i32::MAX),
        "-infinity" => return Some(i32::MIN),
        _ => {}
    }
    let (s, bc) = strip_bc(s.trim());
    let mut c = Cursor::new(s);
    let (y, m, d) = parse_ymd(&mut c)?;
    c.done().then_some(())?;
    let days = civil_days(y, m, d, bc)? - PG_EPOCH_UNIX_DAYS;
    if !date_in_range(days) {
        return None;
    }
    i32::try_from(days).ok()
}

/// Days from 1970-01-01 of a valid calendar date.
fn civil_days(y: i32, m: u32, d: u32, bc: bool) -> Option<i64> {
    let y = if bc { 1 - i64::from(y) } else { i64::from(y) };
    let (m, d) = (i64::from(m), i64::from(d));
    if !(1..=12).contains(&m) || d < 1 {
        return None;
    }
    let next = if m == 12 {
        days_from_civil(y + 1, 1, 1)
    } else {
        days_from_civil(y, m + 1, 1)
    };
    let days = days_from_civil(y, m, d);
    (days < next).then_some(days)
}

/// Microseconds from 2000-01-01 (UTC when the text carries an offset) of a
/// timestamp in PostgreSQL's text form, any year; and whether an offset was
/// there.
pub(super) fn micros_of_text(s: &str) -> Option<(i64, bool)> {
    match s.trim() {
        "infinity" => return Some((i64::MAX, true)),
        "-infinity" => return Some((i64::MIN, true)),
        _ => {}
    }
    let (s, bc) = strip_bc(s.trim());
    let mut c = Cursor::new(s);
    let (y, m, d) = parse_ymd(&mut c)?;
    if !(c.eat(b' ') || c.eat(b'T')) {
        return None;
    }
    let (secs, nanos) = parse_hms(&mut c)?;
    let offset = match c.peek() {
        Some(b'Z') => {
            c.i += 1;
            Some(0)
        }
        Some(sign @ (b'+' | b'-')) => {
            c.i += 1;
            let h = c.digits(1, 2)?;
            let m = if c.eat(b':') { c.digits(2, 2)? } else { 0 };
            let s = if c.eat(b':') { c.digits(2, 2)? } else { 0 };
            let secs = h * 3600 + m * 60 + s;
            Some(if sign == b'-' { -secs } else { secs })
        }
        _ => None,
    };
    c.done().then_some(())?;
    let days = civil_days(y, m, d, bc)? - PG_EPOCH_UNIX_DAYS;
    let secs = i64::from(secs) - offset.unwrap_or(0);
    let micros = days
        .checked_mul(MICROS_PER_DAY)?
        .checked_add(secs * 1_000_000)?
        .checked_add(round_nanos(i64::from(nanos)))?;
    timestamp_in_range(micros).then_some((micros, offset.is_some()))
}

// ---------------------------------------------------------------------------
// interval
// ---------------------------------------------------------------------------

pub(super) const BAD_INTERVAL: &str =
    "not an interval in ISO 8601, postgres, postgres_verbose or sql_standard style";

/// An interval as PostgreSQL stores it: months, days and microseconds, each with
/// its own sign.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Interval {
    pub(super) months: i32,
    pub(super) days: i32,
    pub(super) micros: i64,
}

pub(super) fn interval_value(iv: Interval) -> Value {
    Value::Engine {
        type_name: INTERVAL.into(),
        text: iv.to_iso(),
    }
}

impl Interval {
    /// ISO 8601 exactly as PostgreSQL prints it with IntervalStyle `iso_8601`:
    /// each part carries its own sign (`P-1DT2H`), zero is `PT0S`.
    pub(super) fn to_iso(self) -> String {
        let (year, mon, mday) = (self.months / 12, self.months % 12, self.days);
        let mut t = self.micros;
        let hour = t / 3_600_000_000;
        t -= hour * 3_600_000_000;
        let min = t / 60_000_000;
        t -= min * 60_000_000;
        let sec = t / 1_000_000;
        let fsec = t - sec * 1_000_000;
        if year == 0 && mon == 0 && mday == 0 && self.micros == 0 {
            return "PT0S".into();
        }
        let mut s = String::with_capacity(24);
        s.push('P');
        // Writing to a String cannot fail.
        for (n, unit) in [(year, 'Y'), (mon, 'M'), (mday, 'D')] {
            if n != 0 {
                let _ = write!(s, "{n}{unit}");
            }
        }
        if self.micros != 0 {
            s.push('T');
        }
        for (n, unit) in [(hour, 'H'), (min, 'M')] {
            if n != 0 {
                let _ = write!(s, "{n}{unit}");
            }
        }
        if sec != 0 || fsec != 0 {
            if sec < 0 || fsec < 0 {
                s.push('-');
            }
            let _ = write!(s, "{}", sec.unsigned_abs());
            push_fraction(&mut s, fsec.unsigned_abs());
            s.push('S');
        }
        s
    }

    /// Any of PostgreSQL's interval output styles, or ISO 8601.
    pub(super) fn parse(text: &str) -> Option<Interval> {
        let t = text.trim();
        if t.starts_with('P') {
            Interval::parse_iso(t)
        } else {
            Interval::parse_words(t)
        }
    }

    pub(super) fn parse_iso(t: &str) -> Option<Interval> {
        let mut c = Cursor::new(t);
        if !c.eat(b'P') || c.done() {
            return None;
        }
        let mut iv = Acc::default();
        let mut in_time = false;
        // `P` and `T` must each be followed by at least one part.
        let mut parts_after_mark = 0;
        while !c.done() {
            if !in_time && c.eat(b'T') {
                if c.done() {
                    return None;
                }
                in_time = true;
                continue;
            }
            parts_after_mark += 1;
            let num = Num::parse(&mut c)?;
            let unit = c.peek()?;
            c.i += 1;
            match (in_time, unit) {
                (false, b'Y') => iv.months(num.whole()?.checked_mul(12)?)?,
                (false, b'M') => iv.months(num.whole()?)?,
                (false, b'W') => iv.days(num.whole()?.checked_mul(7)?)?,
                (false, b'D') => iv.days(num.whole()?)?,
                (true, b'H') => iv.micros(num.whole()?.checked_mul(3_600_000_000)?)?,
                (true, b'M') => iv.micros(num.whole()?.checked_mul(60_000_000)?)?,
                (true, b'S') => iv.micros(num.micros()?)?,
                _ => return None,
            }
        }
        if parts_after_mark == 0 {
            return None;
        }
        iv.finish()
    }

    /// The `postgres` (`1 year 2 mons -3 days +04:05:06.5`), `postgres_verbose`
    /// (`@ 1 year 2 mons 6.5 secs ago`) and `sql_standard` (`1-2 3 4:05:06`)
    /// styles.
    pub(super) fn parse_words(t: &str) -> Option<Interval> {
        let tokens: Vec<&str> = t.split_ascii_whitespace().filter(|w| *w != "@").collect();
        if tokens.is_empty() {
            return None;
        }
        let mut iv = Acc::default();
        let mut ago = false;
        let has_unit = tokens
            .iter()
            .any(|w| w.starts_with(|c: char| c.is_ascii_alphabetic()));
        // In sql_standard output a single leading minus applies to every field.
        let negate_all = !has_unit
            && tokens[0].starts_with('-')
            && tokens[1..].iter().all(|w| !w.starts_with(['-', '+']));
        let mut i = 0;
        while i < tokens.len() {
            let w = tokens[i];
            i += 1;
            if w == "ago" {
                if i != tokens.len() {
                    return None;
                }
                ago = true;
                continue;
            }
            let w_unsigned = if negate_all {
                w.trim_start_matches('-')
            } else {
                w
            };
            if w.contains(':') {
                iv.micros(parse_clock(w_unsigned)?)?;
                continue;
            }
            if !has_unit {
                if let Some((y, m)) = split_year_month(w_unsigned) {
                    iv.months(
                        y.checked_mul(12)?
                            .checked_add(m)?
                            .checked_mul(sign_of(w_unsigned))?,
                    )?;
                    continue;
                }
            }
            let mut c = Cursor::new(w_unsigned);
            let num = Num::parse(&mut c)?;
            // A unit may follow without a space (`1day`), or as the next word.
            let unit = if c.done() {
                match tokens.get(i) {
                    Some(u) if u.starts_with(|c: char| c.is_ascii_alphabetic()) => {
                        i += 1;
                        *u
                    }
                    _ => "",
                }
            } else {
                &w_unsigned[c.i..]
            };
            match unit.to_ascii_lowercase().as_str() {
                "year" | "years" | "yr" | "yrs" | "y" => {
                    iv.months(num.whole()?.checked_mul(12)?)?
                }
                "mon" | "mons" | "month" | "months" => iv.months(num.whole()?)?,
                "week" | "weeks" | "w" => iv.days(num.whole()?.checked_mul(7)?)?,
                "day" | "days" | "d" => iv.days(num.whole()?)?,
                "hour" | "hours" | "hr" | "hrs" | "h" => {
                    iv.micros(num.whole()?.checked_mul(3_600_000_000)?)?
                }
                "min" | "mins" | "minute" | "minutes" | "m" => {
                    iv.micros(num.whole()?.checked_mul(60_000_000)?)?
                }
                "sec" | "secs" | "second" | "seconds" | "s" => iv.micros(num.micros()?)?,
                "millisecond" | "milliseconds" | "msec" | "msecs" | "ms" => {
                    iv.micros(num.micros()? / 1000)?
                }
                "microsecond" | "microseconds" | "usec" | "usecs" | "us" => {
                    iv.micros(num.whole()?)?
                }
                // sql_standard: a bare number before the clock is days; alone, seconds.
                "" if tokens.get(i).is_some_and(|n| n.contains(':')) => iv.days(num.whole()?)?,
                "" => iv.micros(num.micros()?)?,
                _ => return None,
            }
        }
        let mut iv = iv.finish()?;
        if ago || negate_all {
            iv = Interval {
                months: iv.months.checked_neg()?,
                days: iv.days.checked_neg()?,
                micros: iv.micros.checked_neg()?,
            };
        }
        Some(iv)
    }
}

/// `1-2` (years-months) of sql_standard style, without its sign.
pub(super) fn split_year_month(w: &str) -> Option<(i64, i64)> {
    let body = w.strip_prefix(['-', '+']).unwrap_or(w);
    let (y, m) = body.split_once('-')?;
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(y) || !all_digits(m) {
        return None;
    }
    Some((y.parse().ok()?, m.parse().ok()?))
}

pub(super) fn sign_of(w: &str) -> i64 {
    if w.starts_with('-') {
        -1
    } else {
        1
    }
}

/// `[+-]H:MM[:SS[.ffffff]]` with any number of hours, as signed microseconds.
pub(super) fn parse_clock(w: &str) -> Option<i64> {
    let neg = w.starts_with('-');
    let mut c = Cursor::new(w.strip_prefix(['-', '+']).unwrap_or(w));
    let h = c.digits(1, 18)?;
    if !c.eat(b':') {
        return None;
    }
    let m = c.digits(1, 2)?;
    let (s, nanos) = if c.eat(b':') {
        (c.digits(1, 2)?, c.fraction_nanos()?)
    } else {
        (0, 0)
    };
    if !c.done() || nanos % 1000 != 0 {
        return None;
    }
    let micros = h
        .checked_mul(3_600_000_000)?
        .checked_add(m * 60_000_000 + s * 1_000_000 + i64::from(nanos / 1000))?;
    Some(if neg { -micros } else { micros })
}

/// Appends `.ffffff` without trailing zeros, nothing for zero.
pub(super) fn push_fraction(s: &mut String, micros: u64) {
    if micros == 0 {
        return;
    }
    let mut digits = format!("{micros:06}");
    while digits.ends_with('0') {
        digits.pop();
    }
    s.push('.');
    s.push_str(&digits);
}

/// A signed number with an optional fraction of up to six digits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Num {
    neg: bool,
    whole: i64,
    frac_micros: i64,
    has_frac: bool,
}

impl Num {
    pub(super) fn parse(c: &mut Cursor) -> Option<Num> {
        let neg = if c.eat(b'-') {
            true
        } else {
            c.eat(b'+');
            false
        };
        let whole = c.digits(1, 18)?;
        let (frac_micros, has_frac) = if c.eat(b'.') {
            let start = c.i;
            let mut f = 0i64;
            while let Some(d @ b'0'..=b'9') = c.peek() {
                let pos = c.i - start;
                if pos < 6 {
                    f = f * 10 + i64::from(d - b'0');
                } else if d != b'0' {
                    // Below a microsecond: PostgreSQL never prints it.
                    return None;
                }
                c.i += 1;
            }
            let len = (c.i - start).min(6) as u32;
            (f * 10i64.pow(6 - len), true)
        } else {
            (0, false)
        };
        Some(Num {
            neg,
            whole,
            frac_micros,
            has_frac,
        })
    }
    pub(super) fn whole(self) -> Option<i64> {
        if self.has_frac && self.frac_micros != 0 {
            return None;
        }
        Some(if self.neg { -self.whole } else { self.whole })
    }
    pub(super) fn micros(self) -> Option<i64> {
        let m = self
            .whole
            .checked_mul(1_000_000)?
            .checked_add(self.frac_micros)?;
        Some(if self.neg { -m } else { m })
    }
}

/// Sums interval parts with overflow checks.
#[derive(Debug, Default)]
pub(super) struct Acc {
    months: i64,
    days: i64,
    micros: i64,
}

impl Acc {
    pub(super) fn months(&mut self, n: i64) -> Option<()> {
        self.months = self.months.checked_add(n)?;
        Some(())
    }
    pub(super) fn days(&mut self, n: i64) -> Option<()> {
        self.days = self.days.checked_add(n)?;
        Some(())
    }
    pub(super) fn micros(&mut self, n: i64) -> Option<()> {
        self.micros = self.micros.checked_add(n)?;
        Some(())
    }
    pub(super) fn finish(self) -> Option<Interval> {
        Some(Interval {
            months: i32::try_from(self.months).ok()?,
            days: i32::try_from(self.days).ok()?,
            micros: self.micros,
        })
    }
}
