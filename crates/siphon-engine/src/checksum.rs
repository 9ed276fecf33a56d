//! Row counts and order-independent checksums of a table, to compare two sides.

use siphon_core::{Result, Source, TableSchema};

/// A table's row count and checksum. The checksum is a sum of per-row hashes of
/// canonically encoded values, so it does not depend on the order rows are read
/// in, and equal rows in two engines give equal sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableChecksum {
    pub rows: u64,
    pub checksum: u64,
}

/// Reads the whole table chunk by chunk (memory stays at one chunk) and sums the
/// row hashes.
pub async fn table_checksum<S: Source>(
    source: &S,
    table: &TableSchema,
    chunk_size: usize,
) -> Result<TableChecksum> {
    let mut after = None;
    let mut out = TableChecksum {
        rows: 0,
        checksum: 0,
    };
    loop {
        let chunk = source.read_chunk(table, after.as_ref(), chunk_size).await?;
        for row in &chunk.rows {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            row.iter().for_each(|v| v.hash_into(&mut h));
            out.checksum = out.checksum.wrapping_add(h.digest());
        }
        out.rows += chunk.rows.len() as u64;
        if chunk.rows.len() < chunk_size {
            return Ok(out);
        }
        after = chunk.last;
    }
}
