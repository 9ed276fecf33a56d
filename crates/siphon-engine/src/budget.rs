//! Byte budgets that keep memory bounded when rows are wide: how many rows a
//! full load's next chunk, or an incremental pass's next poll (and its delete
//! detection's next batch of keys), reads, from the bytes of the rows read so
//! far, and how many bytes of row images a batch of changes holds.
//!
//! Row counts alone (`batch_size`) bound memory only for narrow rows: 5,000
//! rows of 50 MB blobs are 250 GB. Chunks and batches therefore also stop at
//! about [`CHUNK_BYTES`] of values, as [`siphon_core::Value::row_size`]
//! counts them; narrow rows never reach it, so their chunks stay
//! `batch_size` rows.

use siphon_core::{TableSchema, TypeKind};

/// The bytes of values one chunk of a full load, or one batch of changes,
/// holds at most (one row larger than this is a chunk of its own). Several
/// workers of one parallel load share it.
pub(crate) const CHUNK_BYTES: u64 = 16 << 20;

/// A chunk reads at most this many times the rows of the one before it, so a
/// table whose first rows are narrow and later ones wide is not read in one
/// chunk of `batch_size` wide rows.
const GROWTH: usize = 16;

/// Assumed bytes of a decimal without a declared precision: its text is
/// rarely longer, and it only sizes a load's first chunks.
const UNBOUNDED_DECIMAL: u64 = 1_000;

/// The row limit of each chunk of a load, within `max` rows and a byte budget.
///
/// The first chunk reads as many rows as surely fit the budget by the
/// table's declared column types (`max` when no column can hold an
/// unbounded value, one row when a column is a blob, unbounded text or JSON);
/// each next one as many as fit by the average row of the chunk before it,
/// at most [`GROWTH`] times more rows, and never fewer than surely fit.
#[derive(Debug, Clone)]
pub(crate) struct ChunkSizer {
    max: usize,
    budget: u64,
    /// Rows that fit the budget by the declared types, at least 1.
    sure: usize,
    next: usize,
}

impl ChunkSizer {
    /// A sizer for chunks of at most `max` rows and about `budget` bytes of
    /// `table`'s rows.
    pub(crate) fn new(max: usize, budget: u64, table: &TableSchema) -> ChunkSizer {
        ChunkSizer::of_width(max, budget, max_row_bytes(table))
    }

    /// A sizer for chunks of at most `max` rows and about `budget` bytes of
    /// rows made of `table`'s columns `columns` only (a row key, say).
    pub(crate) fn of_columns(
        max: usize,
        budget: u64,
        table: &TableSchema,
        columns: &[usize],
    ) -> ChunkSizer {
        ChunkSizer::of_width(max, budget, max_columns_bytes(table, columns))
    }

    /// A sizer for rows of at most `width` bytes by their declared types
    /// (`None`: unbounded).
    fn of_width(max: usize, budget: u64, width: Option<u64>) -> ChunkSizer {
        let max = max.max(1);
        let budget = budget.max(1);
        let sure = match width {
            Some(width) => fits(budget, width, max),
            None => 1,
        };
        ChunkSizer {
            max,
            budget,
            sure,
            next: sure,
        }
    }

    /// The rows the next chunk reads.
    pub(crate) fn limit(&self) -> usize {
        self.next
    }

    /// The budget in bytes.
    pub(crate) fn budget(&self) -> u64 {
        self.budget
    }

    /// Learns from a chunk that read `rows` rows of `bytes` bytes.
    pub(crate) fn observe(&mut self, rows: usize, bytes: u64) {
        if rows == 0 {
            return;
        }
        let average = bytes.div_ceil(rows as u64).max(1);
        let fit = fits(self.budget, average, self.max);
        self.next = fit
            .min(self.next.saturating_mul(GROWTH))
            .max(self.sure)
            .clamp(1, self.max);
    }
}

/// How many rows of `width` bytes fit `budget`, within 1 and `max`.
fn fits(budget: u64, width: u64, max: usize) -> usize {
    let n = budget / width.max(1);
    usize::try_from(n).unwrap_or(usize::MAX).clamp(1, max)
}

/// The most bytes a row of `table` can hold by its declared column types, as
/// [`siphon_core::Value::size`] counts them (text of `n` characters as `4 n`
/// bytes); `None` when a column has no declared bound (a blob, unbounded
/// text, JSON, an array, an engine's own type).
pub(crate) fn max_row_bytes(table: &TableSchema) -> Option<u64> {
    table.columns.iter().try_fold(0u64, |sum, c| {
        Some(sum.saturating_add(kind_bytes(&c.data_type.kind)?))
    })
}

/// As [`max_row_bytes`], for rows of `table`'s columns `columns` only.
fn max_columns_bytes(table: &TableSchema, columns: &[usize]) -> Option<u64> {
    columns.iter().try_fold(0u64, |sum, &i| {
        let kind = &table.columns.get(i)?.data_type.kind;
        Some(sum.saturating_add(kind_bytes(kind)?))
    })
}

fn kind_bytes(kind: &TypeKind) -> Option<u64> {
    use TypeKind as K;
    Some(match kind {
        K::Bool => 1,
        K::Int16 => 2,
        K::Int32 | K::Float32 => 4,
        K::Int64 | K::Float64 | K::Date | K::Time | K::Timestamp | K::TimestampTz => 8,
        K::Uuid => 16,
        K::Decimal { precision, .. } => precision.map_or(UNBOUNDED_DECIMAL, |p| u64::from(p) + 2),
        K::Text { max_len } => 4 * u64::from((*max_len)?),
        K::FixedText { len } => 4 * u64::from(*len),
        K::Bytes { max_len } => u64::from((*max_len)?),
        K::Enum { labels, .. } => labels.iter().map(|l| l.len() as u64).max().unwrap_or(0),
        K::Json | K::Engine { .. } | K::Array { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use siphon_core::{Column, DataType, TableName};

    fn table(kinds: Vec<TypeKind>) -> TableSchema {
        TableSchema {
            name: TableName::new(None, "t"),
            origin: siphon_core::typemap::Engine::Postgres,
            columns: kinds
                .into_iter()
                .enumerate()
                .map(|(i, k)| Column {
                    name: format!("c{i}"),
                    data_type: DataType::new(k, true),
                    native_type: String::new(),
                    generated: false,
                    source_id: None,
                })
                .collect(),
            primary_key: vec![0],
            unique_keys: Vec::new(),
            indexes: Vec::new(),
            partitioning: None,
            objects: Vec::new(),
        }
    }

    #[test]
    fn narrow_declared_rows_read_whole_chunks_from_the_start() {
        let t = table(vec![TypeKind::Int64, TypeKind::Text { max_len: Some(100) }]);
        let mut s = ChunkSizer::new(5000, CHUNK_BYTES, &t);
        assert_eq!(s.limit(), 5000);
        s.observe(5000, 5000 * 60);
        assert_eq!(s.limit(), 5000);
    }

    #[test]
    fn unbounded_columns_start_at_one_row_and_grow_while_rows_are_small() {
        let t = table(vec![TypeKind::Int32, TypeKind::Bytes { max_len: None }]);
        let mut s = ChunkSizer::new(5000, CHUNK_BYTES, &t);
        assert_eq!(s.limit(), 1);
        s.observe(1, 100);
        assert_eq!(s.limit(), 16);
        s.observe(16, 1600);
        assert_eq!(s.limit(), 256);
        s.observe(256, 25_600);
        assert_eq!(s.limit(), 4096);
        s.observe(4096, 409_600);
        assert_eq!(s.limit(), 5000);
        // Rows grow wide: the next chunk holds what fits the budget.
        s.observe(5000, 5000 * 1_000_000);
        assert_eq!(s.limit(), 16);
        s.observe(16, 16 * 50_000_000);
        assert_eq!(s.limit(), 1);
    }

    #[test]
    fn the_budget_decides_between_rows_and_bytes() {
        let t = table(vec![TypeKind::Json]);
        let mut s = ChunkSizer::new(5000, 1_000_000, &t);
        s.observe(1, 10_000);
        assert_eq!(s.limit(), 16);
        s.observe(16, 160_000);
        assert_eq!(s.limit(), 100);
        assert_eq!(
            max_row_bytes(&table(vec![TypeKind::Int16, TypeKind::Uuid])),
            Some(18)
        );
    }

    #[test]
    fn a_sizer_of_some_columns_judges_by_those_only() {
        // A narrow key of a table with a blob: whole batches of keys at once.
        let t = table(vec![TypeKind::Int64, TypeKind::Bytes { max_len: None }]);
        assert_eq!(
            ChunkSizer::of_columns(5000, CHUNK_BYTES, &t, &[0]).limit(),
            5000
        );
        assert_eq!(ChunkSizer::new(5000, CHUNK_BYTES, &t).limit(), 1);
        // A key of unbounded text starts at one row and grows while small.
        let t = table(vec![TypeKind::Text { max_len: None }, TypeKind::Int32]);
        let mut s = ChunkSizer::of_columns(5000, CHUNK_BYTES, &t, &[0]);
        assert_eq!(s.limit(), 1);
        s.observe(1, 20);
        assert_eq!(s.limit(), 16);
    }

    #[test]
    fn rows_wider_than_the_budget_are_read_one_at_a_time_and_never_none() {
        let t = table(vec![TypeKind::Int32, TypeKind::Bytes { max_len: None }]);
        let mut s = ChunkSizer::new(10_000, CHUNK_BYTES, &t);
        s.observe(1, 20 << 20);
        assert_eq!(s.limit(), 1);
        s.observe(1, 200 << 20);
        assert_eq!(s.limit(), 1);
        // Narrow again: growth is by at most sixteen times a poll.
        s.observe(1, 100);
        assert_eq!(s.limit(), 16);
        // An empty read teaches nothing.
        s.observe(0, 0);
        assert_eq!(s.limit(), 16);
        assert_eq!(ChunkSizer::new(0, 0, &t).limit(), 1);
    }
}
