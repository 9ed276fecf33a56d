//! Byte budgets that keep memory bounded when rows are wide: how many rows a
//! full load's next chunk reads, from the bytes of the rows read so far, and
//! how many bytes of row images a batch of changes holds.
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
        let max = max.max(1);
        let budget = budget.max(1);
        let sure = match max_row_bytes(table) {
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
}
