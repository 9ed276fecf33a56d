//! Binlog events mysql_common does not decode: MariaDB's GTID (162), GTID
//! list (163), binlog checkpoint (161), annotate rows (160) and the events
//! that only say the binlog is compressed or encrypted, read from their raw
//! bytes (the event body after the 19-byte header, checksum removed).

use siphon_core::{Error, Result};

/// MariaDB's `ANNOTATE_ROWS_EVENT`: the statement text before its rows events.
pub const ANNOTATE_ROWS: u8 = 160;
/// MariaDB's `BINLOG_CHECKPOINT_EVENT`.
pub const BINLOG_CHECKPOINT: u8 = 161;
/// MariaDB's `GTID_EVENT`: starts every event group.
pub const GTID: u8 = 162;
/// MariaDB's `GTID_LIST_EVENT`: the GTID state at the start of a binlog file.
pub const GTID_LIST: u8 = 163;
/// MariaDB's `START_ENCRYPTION_EVENT`.
pub const START_ENCRYPTION: u8 = 164;
/// MariaDB's compressed QUERY and rows events (`log_bin_compress=ON`):
/// `QUERY_COMPRESSED_EVENT` up to `DELETE_ROWS_COMPRESSED_EVENT`.
pub const COMPRESSED: std::ops::RangeInclusive<u8> = 165..=171;

/// `FL_STANDALONE`: the group is one statement with no COMMIT (DDL).
const FL_STANDALONE: u8 = 1;
/// `FL_GROUP_COMMIT_ID`: a commit id follows the flags.
const FL_GROUP_COMMIT_ID: u8 = 2;
/// `FL_PREPARED_XA`: the group is an XA transaction up to its XA PREPARE
/// (the server writes `XA START` into this flag, not as a statement).
const FL_PREPARED_XA: u8 = 64;
/// `FL_COMPLETED_XA`: the group is the XA COMMIT or XA ROLLBACK of a
/// prepared XA transaction, a statement of its own.
const FL_COMPLETED_XA: u8 = 128;

/// A MariaDB GTID event: `domain-server-seq` and whether the group is a lone
/// statement (DDL) that ends without a COMMIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MariaGtid {
    /// The replication domain (`gtid_domain_id` of the writing session).
    pub domain: u32,
    /// The server that wrote it (from the event header).
    pub server: u32,
    /// The sequence number in the domain.
    pub seq: u64,
    /// The group has no BEGIN and no COMMIT: it is one statement.
    pub standalone: bool,
    /// The group commit id, when the server wrote one.
    pub commit_id: Option<u64>,
    /// The group holds an XA transaction's changes, ending at its XA PREPARE
    /// (an `XA_PREPARE_LOG_EVENT`); whether they count is decided later, by
    /// an XA COMMIT or XA ROLLBACK in a group of its own.
    pub prepared_xa: bool,
    /// The group is the XA COMMIT or XA ROLLBACK of a prepared XA transaction.
    pub completed_xa: bool,
}

fn short(what: &str) -> Error {
    Error::bad_input(format!(
        "the binlog's {what} event is shorter than its format"
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8).map(|s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
}

/// Decodes a GTID event (type 162) body; `server` is the header's server id.
/// Layout: seq u64, domain u32, flags u8, then (with `FL_GROUP_COMMIT_ID`)
/// the commit id u64; XA fields after that (the XID) are not read.
pub fn gtid(body: &[u8], server: u32) -> Result<MariaGtid> {
    let seq = u64_at(body, 0).ok_or_else(|| short("GTID"))?;
    let domain = u32_at(body, 8).ok_or_else(|| short("GTID"))?;
    let flags = *body.get(12).ok_or_else(|| short("GTID"))?;
    let commit_id = if flags & FL_GROUP_COMMIT_ID != 0 {
        Some(u64_at(body, 13).ok_or_else(|| short("GTID"))?)
    } else {
        None
    };
    Ok(MariaGtid {
        domain,
        server,
        seq,
        standalone: flags & FL_STANDALONE != 0,
        commit_id,
        prepared_xa: flags & FL_PREPARED_XA != 0,
        completed_xa: flags & FL_COMPLETED_XA != 0,
    })
}

/// Decodes a GTID list event (type 163): the last GTID of every domain
/// before the file it starts. Layout: count u32 (the low 28 bits; the high 4
/// are flags), then per entry domain u32, server u32, seq u64.
pub fn gtid_list(body: &[u8]) -> Result<Vec<(u32, u32, u64)>> {
    let count = u32_at(body, 0).ok_or_else(|| short("GTID list"))? & 0x0fff_ffff;
    let mut out = Vec::with_capacity(count.min(1024) as usize);
    for i in 0..count as usize {
        let at = 4 + i * 16;
        let d = u32_at(body, at).ok_or_else(|| short("GTID list"))?;
        let s = u32_at(body, at + 4).ok_or_else(|| short("GTID list"))?;
        let n = u64_at(body, at + 8).ok_or_else(|| short("GTID list"))?;
        out.push((d, s, n));
    }
    Ok(out)
}

/// Decodes a binlog checkpoint event (type 161): the oldest binlog file a
/// crash recovery still needs. Layout: name length u32, name.
pub fn binlog_checkpoint(body: &[u8]) -> Result<String> {
    let len = u32_at(body, 0).ok_or_else(|| short("binlog checkpoint"))? as usize;
    let name = body
        .get(4..4 + len)
        .ok_or_else(|| short("binlog checkpoint"))?;
    Ok(String::from_utf8_lossy(name).into_owned())
}

/// The statement text of an annotate rows event (type 160).
pub fn annotate_rows(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// The error stopping `table` when a two-phase XA transaction changed it: its
/// changes come at XA PREPARE, before the transaction is decided, and its XA
/// COMMIT or XA ROLLBACK comes later without them, so siphon applies none of
/// them and the table has to be copied again. The engine adds the command
/// that copies it again (with the pipeline and `--table`).
pub fn two_phase_xa(table: &siphon_core::TableName) -> Error {
    Error::bad_input(
        "a two-phase XA transaction (XA START … XA PREPARE, then XA COMMIT or XA ROLLBACK) \
         changed the table, and siphon does not follow two-phase XA transactions (the binlog \
         holds their changes at XA PREPARE, before it is known whether they are committed), so \
         none of its changes were applied: once the transaction is committed or rolled back \
         (XA RECOVER on the source no longer lists it), copy the table again; write to \
         replicated tables with ordinary transactions or XA COMMIT … ONE PHASE",
    )
    .table(table)
}

/// The error for an event siphon cannot read because the server compresses
/// or encrypts its binlog, read for `pipeline` (named in the fix).
pub fn unreadable(event_type: u8, pipeline: &str) -> Option<Error> {
    if COMPRESSED.contains(&event_type) {
        return Some(Error::config(format!(
            "the source compresses its binlog (log_bin_compress=ON), which siphon cannot read: \
             SET GLOBAL log_bin_compress=OFF (and in the server's configuration), then copy the \
             tables again with `{}` if compressed events were skipped",
            super::resync(pipeline)
        )));
    }
    if event_type == START_ENCRYPTION {
        return Some(Error::config(
            "the source encrypts its binlog (encrypt_binlog=ON), which a replication client \
             receives encrypted: turn encrypt_binlog off on the source",
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_gtid_event_bytes_decode() {
        // seq 0x0102 (258), domain 2, flags standalone|group_commit_id, commit id 77.
        let mut b = Vec::new();
        b.extend_from_slice(&258u64.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        b.push(FL_STANDALONE | FL_GROUP_COMMIT_ID);
        b.extend_from_slice(&77u64.to_le_bytes());
        let g = gtid(&b, 9).unwrap();
        assert_eq!(
            g,
            MariaGtid {
                domain: 2,
                server: 9,
                seq: 258,
                standalone: true,
                commit_id: Some(77),
                prepared_xa: false,
                completed_xa: false,
            }
        );
        // A transactional group (flags 0x0c: transactional | allow parallel),
        // padded to 19 bytes as MariaDB writes it.
        let mut t = Vec::new();
        t.extend_from_slice(&5u64.to_le_bytes());
        t.extend_from_slice(&0u32.to_le_bytes());
        t.push(0x0c);
        t.extend_from_slice(&[0; 6]);
        let g = gtid(&t, 1).unwrap();
        assert!(!g.standalone);
        assert_eq!((g.domain, g.seq, g.commit_id), (0, 5, None));
        assert!(gtid(&t[..10], 1).is_err());
    }

    /// The GTID events of a prepared XA transaction and of its XA ROLLBACK,
    /// as MariaDB 10.11.19 wrote them (`mariadb-binlog --hexdump`, bodies
    /// without the header and the CRC32): `GTID 0-7-5 trans` with flags 0x4c
    /// and XID formatID 1, gtrid "x1" (printed as `XA START X'7831',X'',1`),
    /// and two bytes of extra flags, then `GTID 0-7-6 trans` with flags 0x8d
    /// before the query
    /// `XA ROLLBACK X'7831',X'',1`.
    #[test]
    fn mariadb_xa_gtid_events_say_prepared_or_completed() {
        let prepared = [
            0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x4c, 0x01, 0, 0, 0, 0x02, 0x00, b'x', b'1',
            0x01, 0xff,
        ];
        let g = gtid(&prepared, 7).unwrap();
        assert_eq!((g.domain, g.server, g.seq), (0, 7, 5));
        assert!(g.prepared_xa && !g.completed_xa && !g.standalone);
        let completed = [
            0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x8d, 0x01, 0, 0, 0, 0x02, 0x00, b'x', b'1',
        ];
        let g = gtid(&completed, 7).unwrap();
        assert_eq!(g.seq, 6);
        assert!(g.completed_xa && !g.prepared_xa && g.standalone);
        let e = two_phase_xa(&siphon_core::TableName::new(Some("d"), "t"));
        assert!(e.to_string().contains("XA"), "{e}");
        assert_eq!(e.table_name(), Some("d.t"));
    }

    #[test]
    fn gtid_list_and_checkpoint_decode() {
        let mut b = Vec::new();
        b.extend_from_slice(&(2u32 | 0x1000_0000).to_le_bytes());
        for (d, s, n) in [(0u32, 1u32, 42u64), (2, 1, 7)] {
            b.extend_from_slice(&d.to_le_bytes());
            b.extend_from_slice(&s.to_le_bytes());
            b.extend_from_slice(&n.to_le_bytes());
        }
        assert_eq!(gtid_list(&b).unwrap(), vec![(0, 1, 42), (2, 1, 7)]);
        assert!(gtid_list(&b[..20]).is_err());
        let mut c = 16u32.to_le_bytes().to_vec();
        c.extend_from_slice(b"mysql-bin.000003");
        assert_eq!(binlog_checkpoint(&c).unwrap(), "mysql-bin.000003");
    }

    #[test]
    fn compressed_and_encrypted_binlogs_are_refused_with_the_fix() {
        let e = unreadable(166, "orders").unwrap();
        assert!(e.to_string().contains("log_bin_compress=OFF"), "{e}");
        assert!(e.to_string().contains("`siphon sync resync orders`"), "{e}");
        assert!(!e.to_string().contains("PIPELINE"), "{e}");
        assert!(unreadable(START_ENCRYPTION, "orders").is_some());
        assert!(unreadable(GTID, "orders").is_none());
    }
}
