//! The row images of a rows event, read from the event's bytes with the
//! column types and metadata of its TABLE_MAP event worked out once per
//! event. mysql_common's own reader ([`RowsEventData::rows`]) describes every
//! column of every image afresh (names, table, character set, each an
//! allocation, and the optional metadata parsed again), which cost more than
//! the values themselves; the values here are read by the same
//! [`BinlogValue`] decoder, so they are the same values.

use std::io;
use std::sync::{Arc, OnceLock};

use mysql_async::binlog::events::{OptionalMetaExtractor, RowsEventData, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use mysql_common::io::ParseBuf;
use mysql_common::packets::Column;

/// A row's before and after images, as [`RowsEventData::rows`] gives them.
pub type Images = (Option<BinlogRow>, Option<BinlogRow>);

/// How one column of the event is read.
struct Col<'a> {
    ty: ColumnType,
    meta: &'a [u8],
    unsigned: bool,
}

/// The columns rows carry: none. Rows are read by position
/// ([`BinlogRow::take`]), never by their columns' descriptions.
fn no_columns() -> Arc<[Column]> {
    static NONE: OnceLock<Arc<[Column]>> = OnceLock::new();
    NONE.get_or_init(|| Arc::from(Vec::new())).clone()
}

/// Every row of `data` (whose TABLE_MAP event is `tme`), in order.
pub fn read(data: &RowsEventData<'_>, tme: &TableMapEvent<'_>) -> io::Result<Vec<Images>> {
    // A partial JSON update carries a shared image this reader does not
    // know: mysql_common reads it.
    if matches!(data, RowsEventData::PartialUpdateRowsEvent(_)) {
        return data.rows(tme).collect();
    }
    let n = data.num_columns() as usize;
    let extractor = OptionalMetaExtractor::new(tme.iter_optional_meta())?;
    let mut signedness = extractor.iter_signedness();
    let mut cols = Vec::with_capacity(n);
    for i in 0..n {
        let ty = match tme.get_column_type(i) {
            Ok(Some(ty)) => ty,
            Ok(None) => return Err(io::Error::new(io::ErrorKind::InvalidData, "No column type")),
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        };
        let unsigned = ty
            .is_numeric_type()
            .then(|| signedness.next())
            .flatten()
            .unwrap_or_default();
        cols.push(Col {
            ty,
            meta: tme.get_column_metadata(i).unwrap_or(&[]),
            unsigned,
        });
    }
    // Which columns each image holds (columns past the bitmap: none).
    let present = |bits: Vec<bool>| {
        (0..n)
            .map(|i| bits.get(i).copied().unwrap_or(false))
            .collect()
    };
    let before: Option<Vec<bool>> = data
        .columns_before_image()
        .map(|b| present(b.iter().map(|x| *x).collect()));
    let after: Option<Vec<bool>> = data
        .columns_after_image()
        .map(|b| present(b.iter().map(|x| *x).collect()));
    let columns = no_columns();
    let mut buf = ParseBuf(data.rows_data());
    let mut out = Vec::new();
    while !buf.is_empty() {
        let b = match &before {
            Some(p) => Some(image(&mut buf, &cols, p, &columns)?),
            None => None,
        };
        let a = match &after {
            Some(p) => Some(image(&mut buf, &cols, p, &columns)?),
            None => None,
        };
        out.push((b, a));
    }
    Ok(out)
}

/// One image: a NULL bitmap over the columns present, then the value of
/// each present column that is not NULL.
fn image<'a>(
    buf: &mut ParseBuf<'a>,
    cols: &[Col<'a>],
    present: &[bool],
    columns: &Arc<[Column]>,
) -> io::Result<BinlogRow> {
    let count = present.iter().filter(|p| **p).count();
    let nulls: &[u8] = buf.parse(count.div_ceil(8))?;
    let mut values = Vec::with_capacity(count);
    let held = cols.iter().zip(present).filter(|(_, p)| **p);
    for (k, (col, _)) in held.enumerate() {
        let null = nulls
            .get(k / 8)
            .is_none_or(|byte| byte & (1 << (k % 8)) != 0);
        if null {
            values.push(Some(BinlogValue::Value(mysql_async::Value::NULL)));
        } else {
            let v: BinlogValue<'_> = buf.parse((col.ty, col.meta, col.unsigned, false))?;
            values.push(Some(v.into_owned()));
        }
    }
    Ok(BinlogRow::new(values, columns.clone()))
}
