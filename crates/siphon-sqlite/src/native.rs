//! Rows as SQLite stored them, passed from one SQLite file to another unchanged.
//!
//! Between two columns declared alike, a value SQLite already stored is stored
//! again as it is (the column's affinity leaves its own results alone), so a
//! full load that carries the stored values, rather than siphon's typed reading
//! of them, copies every value exactly: a UUID kept as a blob stays a blob, a
//! timestamp written with `T` keeps its `T`.
//!
//! Encoding: per value a tag byte, then for an integer or a real its 8 bytes
//! (little-endian; a real's IEEE bits), for text or a blob a 4-byte length and
//! the bytes; NULL has no payload. Rows follow one another.

use rusqlite::types::ValueRef;

/// The [`siphon_core::NativeFormat`] encoding name.
pub(crate) const ENCODING: &str = "sqlite-stored-values";

const NULL: u8 = 0;
const INTEGER: u8 = 1;
const REAL: u8 = 2;
const TEXT: u8 = 3;
const BLOB: u8 = 4;

/// Appends one stored value.
pub(crate) fn push(out: &mut Vec<u8>, v: ValueRef<'_>) {
    let mut bytes = |tag: u8, b: &[u8]| {
        out.push(tag);
        // SQLite's own limit on a value is below 2^31 bytes.
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    };
    match v {
        ValueRef::Null => out.push(NULL),
        ValueRef::Integer(i) => {
            out.push(INTEGER);
            out.extend_from_slice(&i.to_le_bytes());
        }
        ValueRef::Real(f) => {
            out.push(REAL);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        ValueRef::Text(t) => bytes(TEXT, t),
        ValueRef::Blob(b) => bytes(BLOB, b),
    }
}

/// Reads the values `push` wrote, in order; `None` when the bytes end early or
/// hold an unknown tag.
pub(crate) struct Values<'a> {
    data: &'a [u8],
}

impl<'a> Values<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Values<'a> {
        Values { data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.data.len() < n {
            return None;
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Some(head)
    }

    fn eight(&mut self) -> Option<[u8; 8]> {
        self.take(8)?.try_into().ok()
    }

    /// The next value.
    pub(crate) fn next_value(&mut self) -> Option<ValueRef<'a>> {
        let tag = *self.take(1)?.first()?;
        Some(match tag {
            NULL => ValueRef::Null,
            INTEGER => ValueRef::Integer(i64::from_le_bytes(self.eight()?)),
            REAL => ValueRef::Real(f64::from_bits(u64::from_le_bytes(self.eight()?))),
            TEXT | BLOB => {
                let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
                let b = self.take(len)?;
                if tag == TEXT {
                    ValueRef::Text(b)
                } else {
                    ValueRef::Blob(b)
                }
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_read_back_as_pushed() {
        let values = [
            ValueRef::Null,
            ValueRef::Integer(i64::MIN),
            ValueRef::Real(-0.0),
            ValueRef::Real(f64::INFINITY),
            ValueRef::Text(b""),
            ValueRef::Text("naïve".as_bytes()),
            ValueRef::Blob(&[0, 255, 0]),
        ];
        let mut out = Vec::new();
        for v in values {
            push(&mut out, v);
        }
        let mut r = Values::new(&out);
        for v in values {
            let got = r.next_value().unwrap();
            match (v, got) {
                (ValueRef::Real(a), ValueRef::Real(b)) => assert_eq!(a.to_bits(), b.to_bits()),
                _ => assert_eq!(got, v),
            }
        }
        assert!(r.is_empty());
        assert!(Values::new(&out[..out.len() - 1]).nth_is_none(values.len() - 1));
        assert!(Values::new(&[9]).next_value().is_none());
    }

    impl Values<'_> {
        /// Whether the `n`-th value (0-based) cannot be read.
        fn nth_is_none(mut self, n: usize) -> bool {
            for _ in 0..n {
                if self.next_value().is_none() {
                    return true;
                }
            }
            self.next_value().is_none()
        }
    }
}
