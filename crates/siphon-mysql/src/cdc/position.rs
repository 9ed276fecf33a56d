//! Binlog positions as siphon stores them: MariaDB's GTID state (the last
//! `server-seq` per domain), MySQL's executed GTID set, and the binlog file
//! and offset, which every position carries as well.
//!
//! A checkpoint is JSON, for example
//! `{"gtid": "0-1-42,2-1-7", "file": "mysql-bin.000003", "pos": 1234}` on
//! MariaDB, `{"gtid_set": "3e11fa47-…:1-42", "file": …, "pos": …}` on MySQL,
//! and `{"file": …, "pos": …}` on a server without GTIDs. A stream resumes by
//! the GTIDs when there are some (they survive a failover and a binlog
//! rotation), else by the file and offset.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use siphon_core::{Error, Position, Result};

/// Where a binlog reader stands: after the transaction that ends at
/// `file`:`pos`, with the GTIDs of every transaction up to there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BinlogPos {
    /// MariaDB: the GTID state, `domain-server-seq` per domain, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
    /// MySQL: the executed GTID set (`uuid:1-5:7,uuid2:1-3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_set: Option<String>,
    /// The binlog file the position is in.
    pub file: String,
    /// The offset in `file` just after the last event read.
    pub pos: u64,
}

impl BinlogPos {
    /// As a siphon position.
    pub fn to_position(&self) -> Position {
        Position(serde_json::to_value(self).unwrap_or_default())
    }

    /// Reads a position this connector wrote.
    pub fn from_position(p: &Position) -> Result<BinlogPos> {
        serde_json::from_value(p.0.clone()).map_err(|e| {
            Error::bad_input("the binlog position was not written by the MySQL connector").source(e)
        })
    }

    /// Reads the checkpoint of `pipeline`, a position this connector wrote;
    /// the error of one it did not names the command that copies the
    /// pipeline's tables again.
    pub fn from_checkpoint(p: &Position, pipeline: &str) -> Result<BinlogPos> {
        serde_json::from_value(p.0.clone()).map_err(|e| {
            Error::bad_input(format!(
                "the saved binlog position was not written by the MySQL connector; copy the \
                 tables again with `{}`",
                super::resync(pipeline)
            ))
            .source(e)
        })
    }

    /// Whether the binlog coordinate `self` is at or past `other`'s (binlog
    /// files are numbered in order: `mysql-bin.000010` comes after `.000009`).
    pub fn reached(&self, other: &BinlogPos) -> bool {
        file_order(&self.file, &other.file).then(self.pos.cmp(&other.pos))
            != std::cmp::Ordering::Less
    }
}

/// Orders two binlog file names by their numeric suffix (then by name).
pub fn file_order(a: &str, b: &str) -> std::cmp::Ordering {
    let num = |f: &str| {
        f.rsplit_once('.')
            .and_then(|(_, n)| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    num(a).cmp(&num(b)).then_with(|| a.cmp(b))
}

/// MariaDB's GTID state: per replication domain, the server and sequence
/// number of its last transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidState(pub BTreeMap<u32, (u32, u64)>);

impl GtidState {
    /// Parses `d-s-n,d-s-n` (empty: no domain yet).
    pub fn parse(text: &str) -> Result<GtidState> {
        let mut map = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || {
                Error::bad_input(format!(
                    "{part:?} is not a MariaDB GTID (domain-server-seq)"
                ))
            };
            let mut it = part.split('-');
            let d = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
            let s = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
            let n = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
            if it.next().is_some() {
                return Err(bad());
            }
            map.insert(d, (s, n));
        }
        Ok(GtidState(map))
    }

    /// Records a transaction `domain-server-seq`.
    pub fn apply(&mut self, domain: u32, server: u32, seq: u64) {
        self.0.insert(domain, (server, seq));
    }

    /// Whether it names no domain.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The sequence number of `domain`, if any.
    pub fn seq(&self, domain: u32) -> Option<u64> {
        self.0.get(&domain).map(|(_, n)| *n)
    }
}

impl fmt::Display for GtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (d, (s, n)) in &self.0 {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{d}-{s}-{n}")?;
        }
        Ok(())
    }
}

/// MySQL's GTID set: per source server uuid, the transaction numbers, as
/// sorted, disjoint, non-adjacent inclusive intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidSet(pub BTreeMap<String, Vec<(u64, u64)>>);

impl GtidSet {
    /// Parses `uuid:1-5:7,uuid2:1-3` (whitespace and newlines allowed, as
    /// `@@gtid_executed` has them).
    pub fn parse(text: &str) -> Result<GtidSet> {
        let mut set = GtidSet::default();
        for member in text.split(',').map(|m| m.trim()).filter(|m| !m.is_empty()) {
            let bad = || {
                Error::bad_input(format!(
                    "{member:?} is not a MySQL GTID set member (uuid:interval…)"
                ))
            };
            let mut parts = member.split(':');
            let uuid = parts.next().ok_or_else(bad)?.trim().to_ascii_lowercase();
            if uuid.len() != 36 {
                return Err(bad());
            }
            for iv in parts {
                let (a, b) = match iv.split_once('-') {
                    Some((a, b)) => (
                        a.trim().parse().map_err(|_| bad())?,
                        b.trim().parse().map_err(|_| bad())?,
                    ),
                    None => {
                        let n: u64 = iv.trim().parse().map_err(|_| bad())?;
                        (n, n)
                    }
                };
                if a == 0 || b < a {
                    return Err(bad());
                }
                set.add_interval(&uuid, a, b);
            }
        }
        Ok(set)
    }

    /// Adds the transactions `a..=b` of `uuid`.
    pub fn add_interval(&mut self, uuid: &str, a: u64, b: u64) {
        let list = self.0.entry(uuid.to_ascii_lowercase()).or_default();
        list.push((a, b));
        list.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(list.len());
        for &(s, e) in list.iter() {
            match merged.last_mut() {
                Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        *list = merged;
    }

    /// Adds one transaction.
    pub fn add(&mut self, uuid: &str, gno: u64) {
        self.add_interval(uuid, gno, gno);
    }

    /// Whether every transaction of `self` is in `other`.
    pub fn is_subset(&self, other: &GtidSet) -> bool {
        self.0.iter().all(|(uuid, ivs)| {
            let theirs = other.0.get(uuid).map(Vec::as_slice).unwrap_or(&[]);
            ivs.iter()
                .all(|&(a, b)| theirs.iter().any(|&(c, d)| c <= a && b <= d))
        })
    }

    /// Whether it holds no transaction.
    pub fn is_empty(&self) -> bool {
        self.0.values().all(Vec::is_empty)
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (uuid, ivs) in &self.0 {
            if ivs.is_empty() {
                continue;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(uuid)?;
            for (a, b) in ivs {
                if a == b {
                    write!(f, ":{a}")?;
                } else {
                    write!(f, ":{a}-{b}")?;
                }
            }
        }
        Ok(())
    }
}

/// A uuid's text form from the 16 bytes a GTID event carries.
pub fn uuid_text(sid: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*sid).hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_state_keeps_one_entry_per_domain() {
        let mut s = GtidState::parse("0-1-42, 2-1-7").unwrap();
        assert_eq!(s.seq(2), Some(7));
        s.apply(2, 3, 8);
        s.apply(5, 1, 1);
        assert_eq!(s.to_string(), "0-1-42,2-3-8,5-1-1");
        assert!(GtidState::parse("").unwrap().is_empty());
        assert!(GtidState::parse("0-1").is_err());
        assert!(GtidState::parse("a-1-2").is_err());
    }

    #[test]
    fn mysql_sets_merge_and_compare() {
        let u = "3E11FA47-71CA-11E1-9E33-C80AA9429562";
        let mut s = GtidSet::parse(&format!("{u}:1-5:7")).unwrap();
        s.add(u, 6);
        s.add(u, 9);
        let l = u.to_ascii_lowercase();
        assert_eq!(s.to_string(), format!("{l}:1-7:9"));
        let purged = GtidSet::parse(&format!("{l}:1-3")).unwrap();
        assert!(purged.is_subset(&s));
        assert!(!GtidSet::parse(&format!("{l}:1-8")).unwrap().is_subset(&s));
        let other = "4e11fa47-71ca-11e1-9e33-c80aa9429562";
        assert!(!GtidSet::parse(&format!("{other}:1")).unwrap().is_subset(&s));
        let multi = GtidSet::parse(&format!("{l}:1-2,\n{other}:4")).unwrap();
        assert_eq!(multi.to_string(), format!("{l}:1-2,{other}:4"));
        assert!(GtidSet::parse("nope:1").is_err());
        assert!(GtidSet::parse(&format!("{l}:5-2")).is_err());
    }

    #[test]
    fn positions_round_trip_and_order_by_file_number() {
        let p = BinlogPos {
            gtid: Some("0-1-5".into()),
            gtid_set: None,
            file: "mysql-bin.000009".into(),
            pos: 900,
        };
        let back = BinlogPos::from_position(&p.to_position()).unwrap();
        assert_eq!(back, p);
        let later = BinlogPos {
            file: "mysql-bin.000010".into(),
            pos: 4,
            ..p.clone()
        };
        assert!(later.reached(&p));
        assert!(!p.reached(&later));
        assert!(p.reached(&p));
        assert!(BinlogPos::from_position(&Position(serde_json::json!({"lsn": "0/1"}))).is_err());
    }

    #[test]
    fn a_foreign_checkpoint_names_the_pipelines_resync() {
        let p = BinlogPos::default().to_position();
        assert_eq!(
            BinlogPos::from_checkpoint(&p, "orders").unwrap(),
            BinlogPos::default()
        );
        let lsn = Position(serde_json::json!({"lsn": "0/1"}));
        let e = BinlogPos::from_checkpoint(&lsn, "orders").unwrap_err();
        assert_eq!(e.kind(), siphon_core::ErrorKind::BadInput);
        assert!(e.to_string().contains("`siphon sync resync orders`"), "{e}");
        assert!(!e.to_string().contains("PIPELINE"), "{e}");
    }

    #[test]
    fn uuid_bytes_print_as_mysql_does() {
        let b = [
            0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42,
            0x95, 0x62,
        ];
        assert_eq!(uuid_text(&b), "3e11fa47-71ca-11e1-9e33-c80aa9429562");
    }
}
