//! Pipelines as configured: the catalog entries kept in the state store and written
//! in `siphon.yaml`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::TableName;

/// How a table stream is kept in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Copy every row on each run.
    #[default]
    Full,
    /// Poll a cursor column for rows changed since the last checkpoint.
    Incremental,
    /// Read the source's change log.
    Cdc,
    /// Two-way sync with conflict resolution.
    Merge,
    /// Compare the exact row counts of the source table and its copy on each
    /// run, and copy the table again in full (as `full` does) when they differ
    /// or the target holds no complete copy; equal counts leave it alone. For
    /// tables with neither a cursor column nor a change log; a change that
    /// keeps the count (an update, a delete and an insert) is not seen.
    RowCount,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Full => "full",
            Mode::Incremental => "incremental",
            Mode::Cdc => "cdc",
            Mode::Merge => "merge",
            Mode::RowCount => "row_count",
        })
    }
}

/// What the incremental cursor column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CursorStrategy {
    /// A last-modified time (date, timestamp).
    #[default]
    Timestamp,
    /// An ever-growing number given to new rows (an identity column).
    Sequence,
    /// A row version number raised on every change.
    Version,
}

impl std::fmt::Display for CursorStrategy {
    /// As the config spells it: `timestamp`, `sequence`, `version`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CursorStrategy::Timestamp => "timestamp",
            CursorStrategy::Sequence => "sequence",
            CursorStrategy::Version => "version",
        })
    }
}

/// How far back each polling pass re-reads, for transactions that committed late
/// with an older cursor value: a duration (`30s`, `5m`) for timestamps, a number for
/// sequences and versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "LookbackRepr", into = "LookbackRepr")]
pub enum Lookback {
    Duration(Duration),
    Amount(i64),
}

impl Lookback {
    /// Whether it re-reads nothing (`0s` or `0`), which fits every cursor.
    pub fn is_zero(&self) -> bool {
        match self {
            Lookback::Duration(d) => d.is_zero(),
            Lookback::Amount(n) => *n == 0,
        }
    }

    /// The cursor value this lookback before `cursor`: a duration back from a
    /// timestamp (a date moves back by whole days, rounded up), an amount back
    /// from an integer or a whole decimal (integers stop at their type's
    /// minimum); a zero lookback (`0s` or `0`) is the cursor itself, whatever
    /// its kind. `None` when the lookback does not fit the cursor's kind or
    /// the result leaves its type's range.
    pub fn rewind(&self, cursor: &crate::Value) -> Option<crate::Value> {
        use crate::Value as V;
        if self.is_zero() {
            return Some(cursor.clone());
        }
        let span = |d: &Duration| chrono::Duration::microseconds(d.as_micros() as i64);
        Some(match (cursor, self) {
            (V::Timestamp(t), Lookback::Duration(d)) => {
                V::Timestamp(t.checked_sub_signed(span(d))?)
            }
            (V::TimestampTz(t), Lookback::Duration(d)) => {
                V::TimestampTz(t.checked_sub_signed(span(d))?)
            }
            (V::Date(t), Lookback::Duration(d)) => V::Date(
                t.checked_sub_signed(chrono::Duration::days(d.as_secs().div_ceil(86400) as i64))?,
            ),
            (V::Int16(i), Lookback::Amount(n)) => {
                V::Int16(i.saturating_sub((*n).try_into().unwrap_or(i16::MAX)))
            }
            (V::Int32(i), Lookback::Amount(n)) => {
                V::Int32(i.saturating_sub((*n).try_into().unwrap_or(i32::MAX)))
            }
            (V::Int64(i), Lookback::Amount(n)) => V::Int64(i.saturating_sub(*n)),
            (V::Decimal(d), Lookback::Amount(n)) => {
                let v: i128 = d.as_str().parse().ok()?;
                V::Decimal((v - i128::from(*n)).to_string().parse().ok()?)
            }
            _ => return None,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum LookbackRepr {
    Amount(i64),
    Text(String),
}

impl TryFrom<LookbackRepr> for Lookback {
    type Error = String;
    fn try_from(r: LookbackRepr) -> Result<Self, String> {
        match r {
            LookbackRepr::Amount(n) if n >= 0 => Ok(Lookback::Amount(n)),
            LookbackRepr::Amount(n) => Err(format!("lookback must not be negative, got {n}")),
            LookbackRepr::Text(s) => match s.parse::<i64>() {
                Ok(n) => LookbackRepr::Amount(n).try_into(),
                Err(_) => parse_duration(&s).map(Lookback::Duration),
            },
        }
    }
}

impl From<Lookback> for LookbackRepr {
    fn from(l: Lookback) -> LookbackRepr {
        match l {
            Lookback::Amount(n) => LookbackRepr::Amount(n),
            Lookback::Duration(d) => LookbackRepr::Text(format_duration(d)),
        }
    }
}

/// How deletes are found when the source has no change log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeleteDetection {
    /// Deletes are not replicated.
    #[default]
    None,
    /// Compare the target's keys with the source's, chunk by chunk, after each pass.
    KeyDiff,
}

/// The incremental cursor of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorSpec {
    pub column: String,
    pub strategy: CursorStrategy,
    pub lookback: Option<Lookback>,
}

impl CursorSpec {
    /// The cursor column's position in `table`, or an error naming the table and
    /// column and listing the columns there are.
    pub fn column_in(&self, table: &crate::TableSchema) -> crate::Result<usize> {
        table.column_index(&self.column).ok_or_else(|| {
            let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
            crate::Error::bad_input(format!(
                "the cursor column does not exist; set `cursor` to one of: {}",
                names.join(", ")
            ))
            .table(&table.name)
            .column(&self.column)
        })
    }
}

/// How a full load replaces the target's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FullStrategy {
    /// Empty the target table, then load it chunk by chunk: readers see the table
    /// empty, then growing, until the load ends.
    #[default]
    Truncate,
    /// Load into a shadow table and swap it in with one transaction: readers see
    /// the previous complete copy until the new one replaces it, and a load that
    /// fails leaves the previous copy in place.
    Swap,
}

/// The `strategy` key of a pipeline or table: for `incremental` tables what the
/// cursor column holds, for `full` tables how the target's rows are replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Timestamp,
    Sequence,
    Version,
    Truncate,
    Swap,
}

impl Strategy {
    /// The cursor strategy, when this is one.
    pub fn cursor(self) -> Option<CursorStrategy> {
        match self {
            Strategy::Timestamp => Some(CursorStrategy::Timestamp),
            Strategy::Sequence => Some(CursorStrategy::Sequence),
            Strategy::Version => Some(CursorStrategy::Version),
            Strategy::Truncate | Strategy::Swap => None,
        }
    }

    /// The full-load strategy, when this is one.
    pub fn full(self) -> Option<FullStrategy> {
        match self {
            Strategy::Truncate => Some(FullStrategy::Truncate),
            Strategy::Swap => Some(FullStrategy::Swap),
            _ => None,
        }
    }

    /// Whether the strategy means something for tables in `mode`.
    pub fn fits(self, mode: Mode) -> bool {
        match mode {
            Mode::Full | Mode::RowCount => self.full().is_some(),
            Mode::Incremental => self.cursor().is_some(),
            Mode::Cdc | Mode::Merge => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Timestamp => "timestamp",
            Strategy::Sequence => "sequence",
            Strategy::Version => "version",
            Strategy::Truncate => "truncate",
            Strategy::Swap => "swap",
        }
    }
}

/// What `strategy` may be for tables in `mode`, for error messages.
fn strategies_for(mode: Mode) -> &'static str {
    match mode {
        Mode::Full | Mode::RowCount => "`truncate` or `swap`",
        Mode::Incremental => "`timestamp`, `sequence` or `version`",
        Mode::Cdc | Mode::Merge => "nothing: leave `strategy` out",
    }
}

/// What happens to a table that matches a pipeline but has no flag yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NewTables {
    /// It is replicated at once.
    #[default]
    Enabled,
    /// It waits until enabled (`siphon sync enable`, or the `enabled` flag).
    Paused,
}

/// What a `cdc` table whose log position the source no longer has does (a
/// dropped, recreated or invalidated replication slot, a purged binlog).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnLostPosition {
    /// The table stops with an error that names the fix (`siphon sync resync`);
    /// the pipeline's other tables go on.
    #[default]
    Fail,
    /// The table is copied again (a snapshot, then the log), the pipeline's
    /// other tables go on untouched.
    Resnapshot,
}

/// When a pipeline runs under `siphon run` without `--once`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Schedule {
    /// Again as soon as a pass ends (with a short pause when it found nothing).
    #[default]
    Continuous,
    /// A pass every interval.
    Every(Duration),
    /// A standard five-field cron line.
    Cron(String),
}

impl std::str::FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t == "continuous" {
            return Ok(Schedule::Continuous);
        }
        if let Some(d) = t.strip_prefix("every ") {
            return parse_duration(d.trim()).map(Schedule::Every);
        }
        if t.split_whitespace().count() == 5 {
            return Ok(Schedule::Cron(t.to_string()));
        }
        Err(format!(
            "`{s}` is not a schedule: use `continuous`, `every 5s` or a five-field cron line"
        ))
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Continuous => f.write_str("continuous"),
            Schedule::Every(d) => write!(f, "every {}", format_duration(*d)),
            Schedule::Cron(c) => f.write_str(c),
        }
    }
}

impl Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses `500ms`, `30s`, `5m`, `2h` or `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("`{s}` is not a duration: write a number and a unit, as `30s` or `5m`")
    })?;
    let secs = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => {
            return Err(format!(
                "`{s}` is not a duration: units are ms, s, m, h and d"
            ))
        }
    };
    Ok(Duration::from_secs(secs))
}

/// A size in bytes, written `1073741824`, `512MB` or `1GiB` (units B, kB/KB,
/// MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| {
            format!("`{s}` is not a size: write a number and a unit, as `512MB` or `1GiB`")
        })?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "kB" | "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            _ => {
                return Err(format!(
                    "`{s}` is not a size: units are B, kB, MB, GB, TB, KiB, MiB, GiB and TiB"
                ))
            }
        };
        n.checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("`{s}` is too large a size"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, size) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if n >= size && n.is_multiple_of(size) {
                return write!(f, "{}{unit}", n / size);
            }
        }
        write!(f, "{n}")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u64),
            Text(String),
        }
        match Written::deserialize(d)? {
            Written::Number(n) => Ok(ByteSize(n)),
            Written::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

fn default_retained_log_warning() -> ByteSize {
    ByteSize(1 << 30)
}

/// The default of [`PipelineSpec::schema_check_interval`]: 5 minutes, as the
/// MySQL sync service siphon replaces checked schemas.
pub const DEFAULT_SCHEMA_CHECK_INTERVAL: Duration = Duration::from_secs(300);

fn default_schema_check_interval() -> Duration {
    DEFAULT_SCHEMA_CHECK_INTERVAL
}

fn is_default_schema_check_interval(d: &Duration) -> bool {
    *d == DEFAULT_SCHEMA_CHECK_INTERVAL
}

/// A duration written as `parse_duration` reads it (`30s`, `5m`).
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        match super::parse_duration(&text) {
            Ok(v) if v.is_zero() => Err(serde::de::Error::custom(
                "`schema_check_interval` must be longer than zero, as `5m`",
            )),
            Ok(v) => Ok(v),
            Err(e) => Err(serde::de::Error::custom(e)),
        }
    }
}

fn format_duration(d: Duration) -> String {
    if d.subsec_millis() != 0 || d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

/// Whether schemas, indexes and routines are created and evolved on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaOptions {
    /// Create missing target tables from the source schema.
    pub create: bool,
    /// Add columns that appear on the source.
    pub evolve: bool,
    /// Create the source's secondary indexes on new target tables.
    pub indexes: bool,
    /// Copy procedures, functions, triggers and views from MySQL/MariaDB to
    /// MySQL/MariaDB, kept in step on every pass (a changed one replaced, one
    /// dropped at the source dropped, only those siphon created); a copied
    /// trigger does not fire on the rows siphon writes. No other connector
    /// copies routines, and the CLI refuses the setting for other pipelines.
    pub routines: bool,
    /// Create the source's views whose tables the pipeline all selects, after
    /// those tables (PostgreSQL to PostgreSQL).
    pub views: bool,
}

impl Default for SchemaOptions {
    fn default() -> Self {
        SchemaOptions {
            create: true,
            evolve: true,
            indexes: true,
            routines: false,
            views: false,
        }
    }
}

/// Conflict handling for `merge` pipelines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConflictSpec {
    pub policy: ConflictPolicy,
    /// The timestamp column compared by `newest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
}

/// Who wins when both sides changed the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    SourceWins,
    TargetWins,
    Newest,
    Manual,
}

/// Settings of one table that override the pipeline's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// The incremental cursor column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// `incremental`: `timestamp`, `sequence` or `version`; `full`: `truncate` or `swap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookback: Option<Lookback>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_detection: Option<DeleteDetection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// Full loads: workers reading the table over key ranges, each with its own
    /// connections (overrides the pipeline's `parallel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<Parallel>,
}

/// How many workers load one table in parallel: 1 to [`Parallel::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Parallel(u16);

impl Parallel {
    /// The most workers one table may have.
    pub const MAX: u16 = 64;

    /// `n` workers, or an error that names the `parallel` key when `n` is 0 or
    /// more than [`Parallel::MAX`].
    pub fn new(n: u64) -> Result<Parallel, String> {
        match u16::try_from(n) {
            Ok(n) if (1..=Parallel::MAX).contains(&n) => Ok(Parallel(n)),
            _ => Err(format!(
                "`parallel` must be a number of workers from 1 to {}, not {n}",
                Parallel::MAX
            )),
        }
    }

    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

impl Default for Parallel {
    fn default() -> Self {
        Parallel(1)
    }
}

impl<'de> Deserialize<'de> for Parallel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        let n = u64::try_from(n).map_err(|_| {
            serde::de::Error::custom(format!(
                "`parallel` must be a number of workers from 1 to {}, not {n}",
                Parallel::MAX
            ))
        })?;
        Parallel::new(n).map_err(serde::de::Error::custom)
    }
}

/// `max_parallel`: a number of tables, at least 1.
fn max_parallel<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let n = i64::deserialize(d)?;
    match usize::try_from(n) {
        Ok(n) if n >= 1 => Ok(Some(n)),
        _ => Err(serde::de::Error::custom(format!(
            "`max_parallel` must be a number of tables run at once, 1 or more, not {n}"
        ))),
    }
}

fn default_tables() -> Vec<String> {
    vec!["*".to_string()]
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn enabled_by_default() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_one(p: &Parallel) -> bool {
    p.get() == 1
}

fn default_batch_size() -> usize {
    5000
}

/// A pipeline ("a sync"): source → target, which tables, how and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// The pipeline's switch: `false` pauses the whole pipeline (`siphon sync
    /// disable NAME`): a running service runs no pass of it, closes its
    /// connections and change stream and gives up its lease, and resumes it
    /// from its checkpoints once it is `true` again. Tables keep their own
    /// switches meanwhile. `true` by default, and not written when `true`.
    #[serde(default = "enabled_by_default", skip_serializing_if = "is_true")]
    pub enabled: bool,
    /// Name of the source connection.
    pub source: String,
    /// Name of the target connection.
    pub target: String,
    /// Default mode of the pipeline's tables.
    #[serde(default)]
    pub mode: Mode,
    /// Globs of tables to replicate (`public.*`, `orders`).
    #[serde(default = "default_tables")]
    pub tables: Vec<String>,
    /// Globs of tables to leave out.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Rows per chunk and per batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Full loads: workers that read each table over key ranges, each with its
    /// own connections, 1 (the default) to 64.
    #[serde(default, skip_serializing_if = "is_one")]
    pub parallel: Parallel,
    /// How many of the pipeline's `full`, `incremental` and `row_count` tables
    /// a pass runs at once, each with connections of its own where the source
    /// and the target can open more; 1 or more, unset: the number of cores.
    /// A slow or failing table holds only its own slot. `cdc` tables share
    /// one log and are not counted here. With `order`, tables run one at a
    /// time whatever this says, and setting both is refused.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "max_parallel"
    )]
    pub max_parallel: Option<usize>,
    /// Runs the pipeline's `full`, `incremental` and `row_count` tables one
    /// after another: the tables listed (by name, as in `tables_config`) first,
    /// in the order given, then every other table, one at a time, in the order
    /// the source lists them. A name that matches no table is skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order: Vec<String>,
    #[serde(default)]
    pub schedule: Schedule,
    #[serde(default)]
    pub new_tables: NewTables,
    /// `cdc`: what a table whose log position the source lost does: stop with
    /// an error (`fail`, the default) or be copied again (`resnapshot`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub on_lost_position: OnLostPosition,
    #[serde(default)]
    pub schema: SchemaOptions,
    /// Schema of the target tables, where the default would not do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_schema: Option<String>,
    /// Default incremental cursor column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// `incremental` tables: what the cursor holds (`timestamp`, the default,
    /// `sequence` or `version`); `full` tables: how a load replaces the target's
    /// rows (`truncate` or `swap`; unset, a reload swaps when the target holds a
    /// complete copy and the target can swap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookback: Option<Lookback>,
    #[serde(default)]
    pub delete_detection: DeleteDetection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict: Option<ConflictSpec>,
    /// `cdc`: the log the source keeps for the pipeline (PostgreSQL: the slot's
    /// retained WAL) past which each pass logs a warning.
    #[serde(default = "default_retained_log_warning")]
    pub retained_log_warning: ByteSize,
    /// How often the engine compares each enabled table of the pipeline with
    /// its target copy and brings the target in step (added, widened and
    /// dropped columns and indexes; views, routines and triggers with
    /// `schema.routines`), tables that hold a complete copy and wait included:
    /// a duration (`30s`, `5m`, `1h`), 5 minutes by default.
    #[serde(
        default = "default_schema_check_interval",
        with = "duration_text",
        skip_serializing_if = "is_default_schema_check_interval"
    )]
    pub schema_check_interval: Duration,
    /// Retries of a table stream after a transient failure (a lost
    /// connection, a lock or statement timeout, a deadlock), each after a
    /// growing delay, before it stays `failed` until the pipeline's next
    /// scheduled run or `siphon sync resync`; 3 by default, 0: none.
    /// Permanent failures (config, bad input, privilege) are not retried.
    #[serde(
        default = "crate::retention::default_max_retries",
        skip_serializing_if = "crate::retention::is_default_max_retries"
    )]
    pub max_retries: u32,
    /// The delay before a table's first retry (`5s` by default); each later
    /// retry waits twice the one before (at most 5 minutes), plus up to a
    /// quarter more at random so that tables do not retry together.
    #[serde(
        default = "crate::retention::default_retry_delay",
        with = "crate::retention::retry_delay_text",
        skip_serializing_if = "crate::retention::is_default_retry_delay"
    )]
    pub retry_delay: Duration,
    /// How long and how many of the pipeline's executions the state store
    /// keeps: `{ keep_days: 30, keep_runs: 20000 }` by default.
    #[serde(default, skip_serializing_if = "is_default")]
    pub history: crate::HistoryRetention,
    /// Per-table overrides, keyed by table name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tables_config: BTreeMap<String, TableConfig>,
}

impl PipelineSpec {
    pub fn filter(&self) -> TableFilter {
        TableFilter {
            include: self.tables.clone(),
            exclude: self.exclude.clone(),
        }
    }

    /// How many tables a pass runs at once: 1 with `order`, else
    /// `max_parallel`, else the number of cores (1 when that is unknown).
    pub fn tables_at_once(&self) -> usize {
        if !self.order.is_empty() {
            return 1;
        }
        self.max_parallel
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }

    /// Where a table comes in `order`: its index there, `None` when it is not
    /// listed. A name matches as in `tables_config`: `schema.table`, or the
    /// bare table name.
    pub fn order_of(&self, table: &TableName) -> Option<usize> {
        let full = table.to_string();
        self.order
            .iter()
            .position(|o| *o == full || *o == table.name)
    }

    /// Checks `order` and `max_parallel` together: `order` runs tables one at
    /// a time, so a `max_parallel` above 1 beside it is refused, and so is a
    /// table listed twice. The error names the key.
    pub fn check_order(&self) -> Result<(), String> {
        if self.order.is_empty() {
            return Ok(());
        }
        if let Some(n) = self.max_parallel.filter(|&n| n > 1) {
            return Err(format!(
                "max_parallel: {n} cannot go with `order`, which runs the tables one after another; \
                 remove one of them"
            ));
        }
        for (i, t) in self.order.iter().enumerate() {
            if self.order[..i].contains(t) {
                return Err(format!(
                    "order: `{t}` is listed twice; list each table once"
                ));
            }
        }
        Ok(())
    }

    /// How many workers load the table: its own `parallel`, else the pipeline's.
    pub fn parallel(&self, table: &TableName) -> usize {
        self.table_config(table)
            .parallel
            .unwrap_or(self.parallel)
            .get()
    }

    /// The cursor strategy of an incremental table: its own `strategy`, else the
    /// pipeline's, else `timestamp`.
    pub fn cursor_strategy(&self, table: &TableName) -> CursorStrategy {
        self.table_config(table)
            .strategy
            .and_then(Strategy::cursor)
            .or_else(|| self.strategy.and_then(Strategy::cursor))
            .unwrap_or_default()
    }

    /// The full-load strategy a user set for a table: its own `strategy`, else
    /// the pipeline's; `None` when neither is a full-load strategy.
    pub fn full_strategy(&self, table: &TableName) -> Option<FullStrategy> {
        self.table_config(table)
            .strategy
            .and_then(Strategy::full)
            .or_else(|| self.strategy.and_then(Strategy::full))
    }

    /// Checks that each `strategy` fits the mode of the tables it applies to:
    /// the pipeline's for its `mode`, each `tables_config` entry's for that
    /// table's mode. The error names the key (`strategy`,
    /// `tables_config.T.strategy`) and says what it may be.
    pub fn check_strategies(&self) -> Result<(), String> {
        if let Some(s) = self.strategy {
            // A pipeline-wide strategy may be meant for the tables that
            // `tables_config` gives another mode. `timestamp` is also what
            // catalogs written before full strategies existed hold for every
            // pipeline: it applies to incremental tables only, so it is harmless.
            let some_table_fits = self
                .tables_config
                .values()
                .any(|c| c.mode.is_some_and(|m| s.fits(m)));
            if !s.fits(self.mode) && !some_table_fits && s != Strategy::Timestamp {
                return Err(format!(
                    "strategy: `{}` does not apply to mode `{}`; for `{}` tables it is {}",
                    s.as_str(),
                    self.mode,
                    self.mode,
                    strategies_for(self.mode)
                ));
            }
        }
        for (t, c) in &self.tables_config {
            let mode = c.mode.unwrap_or(self.mode);
            if let Some(s) = c.strategy {
                if !s.fits(mode) {
                    return Err(format!(
                        "tables_config.{t}.strategy: `{}` does not apply to mode `{mode}`; for `{mode}` tables it is {}",
                        s.as_str(),
                        strategies_for(mode)
                    ));
                }
            }
        }
        Ok(())
    }

    /// The overrides for a table, if any.
    pub fn table_config(&self, table: &TableName) -> TableConfig {
        self.tables_config
            .get(&table.to_string())
            .or_else(|| self.tables_config.get(&table.name))
            .cloned()
            .unwrap_or_default()
    }
}

/// Which tables of a source a pipeline takes: `include` globs less `exclude` globs,
/// matched against `schema.table` (or the bare name where there is no schema).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableFilter {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl TableFilter {
    pub fn matches(&self, table: &TableName) -> bool {
        let full = table.to_string();
        let hit =
            |p: &String| glob_match(p, &full) || (!p.contains('.') && glob_match(p, &table.name));
        self.include.iter().any(hit) && !self.exclude.iter().any(hit)
    }
}

/// `*` matches any run of characters, `?` one character.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_cursor_strategy_is_said_as_the_config_spells_it() {
        for s in [
            CursorStrategy::Timestamp,
            CursorStrategy::Sequence,
            CursorStrategy::Version,
        ] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert_eq!(CursorStrategy::Timestamp.to_string(), "timestamp");
    }
    #[test]
    fn lookback_rewinds_a_cursor_of_its_kind() {
        use crate::Value as V;
        let day = Lookback::Duration(Duration::from_secs(90_000));
        let ts = chrono::NaiveDate::from_ymd_opt(2026, 1, 2)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap();
        assert_eq!(
            day.rewind(&V::Timestamp(ts)),
            Some(V::Timestamp(ts - chrono::Duration::seconds(90_000)))
        );
        assert_eq!(
            day.rewind(&V::Date(ts.date())),
            Some(V::Date(ts.date() - chrono::Duration::days(2)))
        );
        let five = Lookback::Amount(5);
        assert_eq!(five.rewind(&V::Int64(12)), Some(V::Int64(7)));
        assert_eq!(five.rewind(&V::Int16(i16::MIN)), Some(V::Int16(i16::MIN)));
        assert_eq!(
            five.rewind(&V::Decimal("18446744073709551615".parse().unwrap())),
            Some(V::Decimal("18446744073709551610".parse().unwrap()))
        );
        assert_eq!(five.rewind(&V::Timestamp(ts)), None);
        assert_eq!(day.rewind(&V::Text("a".into())), None);
        // Nothing re-read fits every cursor.
        let none = Lookback::Duration(Duration::ZERO);
        assert_eq!(none.rewind(&V::Int64(12)), Some(V::Int64(12)));
        assert_eq!(
            Lookback::Amount(0).rewind(&V::Timestamp(ts)),
            Some(V::Timestamp(ts))
        );
    }

    #[test]
    fn a_pipeline_is_enabled_by_default_and_its_switch_written_only_when_off() {
        use super::PipelineSpec;
        let spec = |extra: &str| {
            serde_json::from_str::<PipelineSpec>(&format!(
                r#"{{"source": "a", "target": "b"{extra}}}"#
            ))
            .unwrap()
        };
        let default = spec("");
        assert!(default.enabled);
        // Stored specs and config files without the key stay as they were.
        let written = serde_json::to_string(&default).unwrap();
        assert!(!written.contains(r#""enabled":"#), "{written}");
        assert_eq!(spec(r#", "enabled": true"#), default);
        let paused = spec(r#", "enabled": false"#);
        assert!(!paused.enabled);
        let written = serde_json::to_string(&paused).unwrap();
        assert!(written.contains(r#""enabled":false"#), "{written}");
        assert_eq!(
            serde_json::from_str::<PipelineSpec>(&written).unwrap(),
            paused
        );
    }

    #[test]
    fn on_lost_position_defaults_to_fail_and_takes_resnapshot() {
        use super::{OnLostPosition, PipelineSpec};
        let spec = |extra: &str| {
            serde_json::from_str::<PipelineSpec>(&format!(
                r#"{{"source": "a", "target": "b"{extra}}}"#
            ))
        };
        let default = spec("").unwrap();
        assert_eq!(default.on_lost_position, OnLostPosition::Fail);
        // The default is left out when the catalog is written.
        let written = serde_json::to_string(&default).unwrap();
        assert!(!written.contains("on_lost_position"), "{written}");
        let resnapshot = spec(r#", "on_lost_position": "resnapshot""#).unwrap();
        assert_eq!(resnapshot.on_lost_position, OnLostPosition::Resnapshot);
        let written = serde_json::to_string(&resnapshot).unwrap();
        assert_eq!(
            serde_json::from_str::<PipelineSpec>(&written).unwrap(),
            resnapshot
        );
        assert!(spec(r#", "on_lost_position": "copy""#).is_err());
    }

    #[test]
    fn sizes_parse_with_decimal_and_binary_units() {
        assert_eq!("1024".parse::<ByteSize>().unwrap(), ByteSize(1024));
        assert_eq!("512MB".parse::<ByteSize>().unwrap(), ByteSize(512_000_000));
        assert_eq!("1GiB".parse::<ByteSize>().unwrap(), ByteSize(1 << 30));
        assert_eq!(" 2 KiB ".parse::<ByteSize>().unwrap(), ByteSize(2048));
        let e = "5 parsecs".parse::<ByteSize>().unwrap_err();
        assert!(e.contains("units are"), "{e}");
        assert!("99999999999TiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(1 << 30).to_string(), "1GiB");
        assert_eq!(ByteSize(1500).to_string(), "1500");
        // YAML numbers and strings both work; the default is 1 GiB.
        let spec: PipelineSpec =
            serde_json::from_str(r#"{"source":"a","target":"b","retained_log_warning":"10MiB"}"#)
                .unwrap();
        assert_eq!(spec.retained_log_warning, ByteSize(10 << 20));
        let spec: PipelineSpec =
            serde_json::from_str(r#"{"source":"a","target":"b","retained_log_warning":5}"#)
                .unwrap();
        assert_eq!(spec.retained_log_warning, ByteSize(5));
        let spec: PipelineSpec = serde_json::from_str(r#"{"source":"a","target":"b"}"#).unwrap();
        assert_eq!(spec.retained_log_warning, ByteSize(1 << 30));
        let e = serde_json::from_str::<PipelineSpec>(
            r#"{"source":"a","target":"b","retained_log_warning":"lots"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("is not a size"), "{e}");
    }
    use super::*;

    #[test]
    fn globs_match_schema_and_bare_names() {
        let f = TableFilter {
            include: vec!["public.*".into(), "orders".into()],
            exclude: vec!["public.audit_*".into()],
        };
        assert!(f.matches(&TableName::parse("public.users")));
        assert!(!f.matches(&TableName::parse("public.audit_log")));
        assert!(f.matches(&TableName::parse("orders")));
        assert!(f.matches(&TableName::parse("sales.orders")));
        assert!(!f.matches(&TableName::parse("sales.items")));
        assert!(glob_match("a?c*", "abcdef"));
        assert!(!glob_match("a?c", "abcd"));
    }

    #[test]
    fn strategies_fit_their_mode() {
        let p: PipelineSpec = serde_json::from_str(
            r#"{"source":"a","target":"b","mode":"full","strategy":"swap",
                "tables_config":{"t":{"mode":"incremental","strategy":"sequence"},"u":{"strategy":"truncate"}}}"#,
        )
        .unwrap();
        p.check_strategies().unwrap();
        assert_eq!(
            p.full_strategy(&TableName::parse("x")),
            Some(FullStrategy::Swap)
        );
        assert_eq!(
            p.full_strategy(&TableName::parse("u")),
            Some(FullStrategy::Truncate)
        );
        assert_eq!(
            p.cursor_strategy(&TableName::parse("t")),
            CursorStrategy::Sequence
        );
        let unset: PipelineSpec = serde_json::from_str(r#"{"source":"a","target":"b"}"#).unwrap();
        assert_eq!(unset.full_strategy(&TableName::parse("x")), None);
        assert_eq!(
            unset.cursor_strategy(&TableName::parse("x")),
            CursorStrategy::Timestamp
        );
        let bad: PipelineSpec = serde_json::from_str(
            r#"{"source":"a","target":"b","mode":"incremental","strategy":"swap"}"#,
        )
        .unwrap();
        let e = bad.check_strategies().unwrap_err();
        assert!(
            e.starts_with("strategy:") && e.contains("`timestamp`"),
            "{e}"
        );
        // Stored catalogs hold `timestamp` for every pipeline, and a
        // pipeline-wide cursor strategy may be meant for its incremental tables.
        for ok in [
            r#"{"source":"a","target":"b","mode":"full","strategy":"timestamp"}"#,
            r#"{"source":"a","target":"b","mode":"cdc","strategy":"timestamp"}"#,
            r#"{"source":"a","target":"b","mode":"full","strategy":"sequence",
                "tables_config":{"t":{"mode":"incremental","cursor":"id"}}}"#,
        ] {
            let p: PipelineSpec = serde_json::from_str(ok).unwrap();
            p.check_strategies().unwrap();
        }
        let bad: PipelineSpec = serde_json::from_str(
            r#"{"source":"a","target":"b","mode":"full","strategy":"sequence"}"#,
        )
        .unwrap();
        assert!(bad.check_strategies().is_err());
        let bad: PipelineSpec = serde_json::from_str(
            r#"{"source":"a","target":"b","mode":"full","tables_config":{"t":{"strategy":"version"}}}"#,
        )
        .unwrap();
        let e = bad.check_strategies().unwrap_err();
        assert!(
            e.starts_with("tables_config.t.strategy:") && e.contains("`swap`"),
            "{e}"
        );
    }

    #[test]
    fn row_count_is_a_mode_that_takes_full_strategies() {
        let p: PipelineSpec = serde_json::from_str(
            r#"{"source":"a","target":"b","mode":"row_count","strategy":"swap"}"#,
        )
        .unwrap();
        assert_eq!(p.mode, Mode::RowCount);
        assert_eq!(p.mode.to_string(), "row_count");
        p.check_strategies().unwrap();
        assert_eq!(
            p.full_strategy(&TableName::parse("x")),
            Some(FullStrategy::Swap)
        );
        let bad: PipelineSpec = serde_json::from_str(
            r#"{"source":"a","target":"b","mode":"row_count","strategy":"sequence"}"#,
        )
        .unwrap();
        let e = bad.check_strategies().unwrap_err();
        assert!(e.contains("`truncate` or `swap`"), "{e}");
    }

    #[test]
    fn schedules_and_durations_parse() {
        assert_eq!(
            "every 5s".parse::<Schedule>().unwrap(),
            Schedule::Every(Duration::from_secs(5))
        );
        assert_eq!(
            "continuous".parse::<Schedule>().unwrap(),
            Schedule::Continuous
        );
        assert!(matches!(
            "*/5 * * * *".parse::<Schedule>().unwrap(),
            Schedule::Cron(_)
        ));
        assert!("sometimes".parse::<Schedule>().is_err());
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn pipeline_round_trips_through_json() {
        let yaml = r#"{"source":"a","target":"b","mode":"incremental","cursor":"updated_at",
            "lookback":"5m","tables_config":{"t":{"lookback":10,"strategy":"sequence"}}}"#;
        let p: PipelineSpec = serde_json::from_str(yaml).unwrap();
        assert_eq!(p.batch_size, 5000);
        assert_eq!(
            p.lookback,
            Some(Lookback::Duration(Duration::from_secs(300)))
        );
        assert_eq!(p.tables_config["t"].lookback, Some(Lookback::Amount(10)));
        let back: PipelineSpec = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        assert_eq!(p.parallel(&TableName::parse("t")), 1);
        let two: PipelineSpec = serde_json::from_str(
            r#"{"source":"a","target":"b","parallel":2,"tables_config":{"big":{"parallel":8}}}"#,
        )
        .unwrap();
        assert_eq!(two.parallel(&TableName::parse("t")), 2);
        assert_eq!(two.parallel(&TableName::parse("big")), 8);
        for bad in [
            r#"{"source":"a","target":"b","parallel":0}"#,
            r#"{"source":"a","target":"b","parallel":65}"#,
            r#"{"source":"a","target":"b","parallel":-1}"#,
            r#"{"source":"a","target":"b","tables_config":{"t":{"parallel":0}}}"#,
        ] {
            let err = serde_json::from_str::<PipelineSpec>(bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains("`parallel` must be"), "{err}");
        }
        let bad = r#"{"source":"a","target":"b","colour":"red"}"#;
        let err = serde_json::from_str::<PipelineSpec>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn max_parallel_and_order_say_how_many_tables_run_at_once() {
        use super::PipelineSpec;
        use crate::TableName;
        let spec = |extra: &str| {
            serde_json::from_str::<PipelineSpec>(&format!(
                r#"{{"source": "a", "target": "b"{extra}}}"#
            ))
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let default = spec("").unwrap();
        assert_eq!(default.max_parallel, None);
        assert_eq!(default.tables_at_once(), cores);
        assert!(!serde_json::to_string(&default)
            .unwrap()
            .contains("max_parallel"));
        assert!(!serde_json::to_string(&default).unwrap().contains("order"));

        let four = spec(r#", "max_parallel": 4"#).unwrap();
        assert_eq!(four.tables_at_once(), 4);
        let back: PipelineSpec =
            serde_json::from_str(&serde_json::to_string(&four).unwrap()).unwrap();
        assert_eq!(back, four);
        for bad in [r#", "max_parallel": 0"#, r#", "max_parallel": -2"#] {
            let err = spec(bad).unwrap_err().to_string();
            assert!(err.contains("`max_parallel` must be"), "{err}");
        }

        let ordered = spec(r#", "order": ["public.b", "a"]"#).unwrap();
        assert_eq!(ordered.tables_at_once(), 1);
        assert_eq!(ordered.order_of(&TableName::parse("public.b")), Some(0));
        assert_eq!(ordered.order_of(&TableName::parse("public.a")), Some(1));
        assert_eq!(ordered.order_of(&TableName::parse("public.c")), None);
        ordered.check_order().unwrap();
        spec(r#", "order": ["a"], "max_parallel": 1"#)
            .unwrap()
            .check_order()
            .unwrap();
        let both = spec(r#", "order": ["a"], "max_parallel": 3"#).unwrap();
        assert!(both
            .check_order()
            .unwrap_err()
            .starts_with("max_parallel: 3 cannot go with `order`"));
        let twice = spec(r#", "order": ["a", "b", "a"]"#).unwrap();
        assert!(twice
            .check_order()
            .unwrap_err()
            .contains("`a` is listed twice"));
    }
}
