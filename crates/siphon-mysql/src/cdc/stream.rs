//! The change stream: binlog events read over a replication connection,
//! grouped into source transactions (a GTID event or BEGIN, then rows
//! events, then XID or COMMIT; or one DDL statement), turned into siphon
//! changes and returned in batches of whole transactions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use mysql_async::binlog::events::{Event, EventData, RowsEventData};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::EventType;
use mysql_async::BinlogStream;
use siphon_core::{
    Batch, Change, Error, ErrorKind, Op, Position, Result, Row, TableName, TableSchema,
    Transaction, Value,
};

use super::ddl::{self, Ddl};
use super::events;
use super::position::{uuid_text, BinlogPos, GtidSet, GtidState};
use super::rows::{convert, ColumnInfo};
use super::shapes::{self, decode_older, Mapping};
use crate::conn::{binlog_err, Flavor, ZeroDates};

/// How long an idle stream that read only other tables' transactions waits
/// before it returns an empty batch to move the checkpoint past them.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(10);

/// A pipeline table as the stream decodes it.
#[derive(Debug, Clone)]
pub struct Known {
    /// The schema its changes carry.
    pub schema: Arc<TableSchema>,
    /// How to read each column's binlog values, in table order.
    pub columns: Vec<ColumnInfo>,
}

/// Reads a table's shape again after a DDL statement changed it.
pub trait Rediscover: Send + Sync {
    /// The table's schema and column decoding now.
    fn rediscover(
        &self,
        table: &TableName,
    ) -> impl std::future::Future<Output = Result<Option<Known>>> + Send;

    /// The row of `table` (its shape now) whose key columns `key` hold
    /// `values`, as the source holds it now; `None` when there is none.
    fn current_row(
        &self,
        table: &TableSchema,
        key: &[usize],
        values: &[Value],
    ) -> impl std::future::Future<Output = Result<Option<Row>>> + Send;
}

/// What one event did to the transaction being read.
enum Step {
    /// Nothing for the batch.
    Nothing,
    /// A transaction starts (changes follow).
    Begin,
    /// The transaction being read ended: the stream's position moved.
    End,
}

/// The changes of a MySQL or MariaDB binlog, one source transaction after
/// another (see [`siphon_core::ChangeStream`]).
///
/// A change's transaction position is its GTID (`{"gtid": "0-1-42"}` on
/// MariaDB, `{"gtid": "uuid:42"}` on MySQL), or, without GTIDs, the binlog
/// file and offset where the transaction starts; its index counts the rows
/// of every rows event of the transaction, the pipeline's tables or not, so
/// ids are the same on every replay and whichever tables a stream reads.
pub struct MySqlChangeStream<R: Rediscover = crate::source::MySqlSource> {
    /// The pipeline whose binlog this is, named in the fixes of its errors.
    pub(crate) pipeline: String,
    pub(crate) binlog: Option<BinlogStream>,
    pub(crate) source: R,
    pub(crate) flavor: Flavor,
    /// The source's own `@@server_id`: transactions of other servers carry
    /// theirs as origin.
    pub(crate) own_server: u32,
    pub(crate) zero: ZeroDates,
    pub(crate) known: HashMap<TableName, Known>,
    /// TABLE_MAP ids to pipeline tables (`None`: a table the stream skips).
    pub(crate) ids: HashMap<u64, Option<TableName>>,
    /// TABLE_MAP ids of pipeline tables whose rows were logged in an older
    /// shape: where each logged column is in the table now.
    pub(crate) shapes: HashMap<u64, Mapping>,
    /// The binlog file being read.
    pub(crate) file: String,
    /// After the last whole transaction read.
    pub(crate) committed: BinlogPos,
    pub(crate) state: GtidState,
    pub(crate) set: GtidSet,
    /// The transaction being read.
    pub(crate) tx: Option<Arc<Transaction>>,
    /// Its GTID, applied to `state`/`set` when it ends.
    pub(crate) tx_gtid: Option<TxGtid>,
    /// A group began (GTID event) and has not ended.
    pub(crate) in_group: bool,
    /// Inside BEGIN … COMMIT.
    pub(crate) in_txn: bool,
    /// The group being read is a two-phase XA transaction up to its XA
    /// PREPARE: its changes of pipeline tables are refused, not applied.
    pub(crate) xa: bool,
    pub(crate) index: u32,
    /// Changes of the transaction being read that did not fit the last batch.
    pub(crate) pending: Vec<Change>,
    /// The transaction being read was split over batches.
    pub(crate) split: bool,
    /// The bytes of row images a batch holds at most (see
    /// [`siphon_core::ChangeStream::limit_bytes`]); `u64::MAX` when uncapped.
    pub(crate) max_bytes: u64,
    pub(crate) done: bool,
    /// When a batch was last returned, or the checkpoint last moved.
    pub(crate) moved: Instant,
    /// `committed` moved past transactions of other tables since the last batch.
    pub(crate) skipped: bool,
    /// A format description event was read (checksums are known).
    pub(crate) fde_seen: bool,
    /// The name of a rotate event read before it, checksum maybe included.
    pub(crate) rotate_pending: Option<Vec<u8>>,
}

/// The GTID of the transaction being read.
#[derive(Debug, Clone)]
pub enum TxGtid {
    Maria { domain: u32, server: u32, seq: u64 },
    MySql { uuid: String, gno: u64 },
}

impl<R: Rediscover> std::fmt::Debug for MySqlChangeStream<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlChangeStream")
            .field("committed", &self.committed)
            .finish_non_exhaustive()
    }
}

/// Whether the stream's position `at` (and GTIDs) covers `until`.
pub(crate) fn reached(at: &BinlogPos, state: &GtidState, set: &GtidSet, until: &BinlogPos) -> bool {
    if let Some(u) = until.gtid.as_deref().filter(|g| !g.is_empty()) {
        if let Ok(u) = GtidState::parse(u) {
            // A GTID state is reached when every domain is.
            if u.0
                .iter()
                .all(|(d, (_, n))| state.seq(*d).is_some_and(|s| s >= *n))
            {
                return true;
            }
        }
    }
    if let Some(u) = until.gtid_set.as_deref().filter(|g| !g.is_empty()) {
        if GtidSet::parse(u).is_ok_and(|u| u.is_subset(set)) {
            return true;
        }
    }
    !at.file.is_empty() && at.reached(until)
}

impl<R: Rediscover> MySqlChangeStream<R> {
    fn binlog(&mut self) -> Result<&mut BinlogStream> {
        self.binlog
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::Connection, "the binlog stream is closed"))
    }

    /// The next event; `None` when `wait` passed without one.
    async fn next_event(&mut self, wait: Option<Duration>) -> Result<Option<Event>> {
        let binlog = self.binlog()?;
        let next = match wait {
            Some(w) => match tokio::time::timeout(w, binlog.next()).await {
                Ok(n) => n,
                Err(_) => return Ok(None),
            },
            None => binlog.next().await,
        };
        match next {
            Some(Ok(e)) => Ok(Some(e)),
            Some(Err(e)) => Err(binlog_err(e, "reading the binlog", &self.pipeline)),
            None => Err(Error::new(
                ErrorKind::Connection,
                "the source ended the binlog stream",
            )),
        }
    }

    fn position(&self) -> BinlogPos {
        BinlogPos {
            gtid: (self.flavor == Flavor::MariaDb && !self.state.is_empty())
                .then(|| self.state.to_string()),
            gtid_set: (self.flavor == Flavor::MySql && !self.set.is_empty())
                .then(|| self.set.to_string()),
            file: self.file.clone(),
            pos: self.committed.pos,
        }
    }

    fn begin(
        &mut self,
        gtid: Option<TxGtid>,
        at: u64,
        header_time: u32,
        micros: Option<u64>,
        server: u32,
    ) {
        let position = match &gtid {
            Some(TxGtid::Maria {
                domain,
                server,
                seq,
            }) => serde_json::json!({ "gtid": format!("{domain}-{server}-{seq}") }),
            Some(TxGtid::MySql { uuid, gno }) => {
                serde_json::json!({ "gtid": format!("{uuid}:{gno}") })
            }
            None => serde_json::json!({ "file": self.file, "pos": at }),
        };
        let commit_time: Option<DateTime<Utc>> = match micros {
            Some(us) if us > 0 => DateTime::from_timestamp_micros(us as i64),
            _ => DateTime::from_timestamp(header_time as i64, 0),
        };
        self.tx = Some(Arc::new(Transaction {
            position: Position(position),
            commit_time,
            origin: (server != self.own_server && server != 0).then(|| server.to_string()),
        }));
        self.tx_gtid = gtid;
        self.in_group = true;
        self.xa = false;
        self.index = 0;
    }

    fn end(&mut self, log_pos: u32) {
        match self.tx_gtid.take() {
            Some(TxGtid::Maria {
                domain,
                server,
                seq,
            }) => self.state.apply(domain, server, seq),
            Some(TxGtid::MySql { uuid, gno }) => self.set.add(&uuid, gno),
            None => {}
        }
        if log_pos > 0 {
            self.committed.pos = log_pos as u64;
        }
        self.committed.file = self.file.clone();
        self.committed = self.position();
        self.tx = None;
        self.in_group = false;
        self.in_txn = false;
        self.xa = false;
    }

    /// Turns one event into changes (appended to `out`) and says what it did.
    async fn event(&mut self, ev: Event, out: &mut Vec<Change>) -> Result<Step> {
        let header = ev.header();
        let raw = header.event_type_raw();
        let log_pos = header.log_pos();
        let start = (log_pos as u64).saturating_sub(header.event_size() as u64);
        if let Some(e) = events::unreadable(raw, &self.pipeline) {
            return Err(e);
        }
        match raw {
            events::GTID => {
                let g = events::gtid(ev.data(), header.server_id())?;
                self.begin(
                    Some(TxGtid::Maria {
                        domain: g.domain,
                        server: g.server,
                        seq: g.seq,
                    }),
                    start,
                    header.timestamp(),
                    None,
                    g.server,
                );
                // A standalone group is one statement with no BEGIN.
                self.in_txn = !g.standalone;
                // MariaDB writes XA START into the GTID event's flags; the
                // group ends with an XA_PREPARE_LOG_EVENT.
                self.xa = g.prepared_xa;
                return Ok(Step::Begin);
            }
            events::GTID_LIST => {
                // The GTID state before the file: nothing to apply, the
                // stream's own state is already at or past it.
                tracing::trace!(list = ?events::gtid_list(ev.data())?, "binlog GTID list");
                return Ok(Step::Nothing);
            }
            events::BINLOG_CHECKPOINT => {
                tracing::trace!(file = %events::binlog_checkpoint(ev.data())?, "binlog checkpoint");
                return Ok(Step::Nothing);
            }
            events::ANNOTATE_ROWS => {
                tracing::trace!(statement = %events::annotate_rows(ev.data()), "binlog rows of");
                return Ok(Step::Nothing);
            }
            _ => {}
        }
        let Ok(kind) = header.event_type() else {
            // Other MariaDB events (dummies replacing events a client
            // cannot read are IGNORABLE or QUERY "# Dummy…").
            return Ok(Step::Nothing);
        };
        match kind {
            EventType::ROTATE_EVENT => {
                if let Some(EventData::RotateEvent(r)) = ev.read_data().map_err(read_err)? {
                    let name = r.name_raw().to_vec();
                    self.file = String::from_utf8_lossy(&name).into_owned();
                    if !self.fde_seen {
                        // The rotate event a dump starts with comes before the
                        // format description, so the reader does not know yet
                        // that a checksum ends it: taken off when it says so.
                        // It names where the server starts sending (offset 4
                        // of a file when resuming by GTID), not a new resume
                        // point: the checkpoint the stream opened from stays
                        // the position until a transaction ends, so every
                        // batch before then reports the same one.
                        self.rotate_pending = Some(name.clone());
                    } else if !self.in_group && !self.in_txn {
                        // The server moved on to a new file.
                        self.committed.file = self.file.clone();
                        self.committed.pos = r.position();
                    }
                }
                Ok(Step::Nothing)
            }
            EventType::FORMAT_DESCRIPTION_EVENT => {
                self.fde_seen = true;
                if let Some(mut name) = self.rotate_pending.take() {
                    let crc = matches!(
                        ev.footer().get_checksum_alg(),
                        Ok(Some(
                            mysql_async::binlog::BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32
                        ))
                    );
                    if crc && name.len() > 4 {
                        name.truncate(name.len() - 4);
                    }
                    self.file = String::from_utf8_lossy(&name).into_owned();
                }
                Ok(Step::Nothing)
            }
            EventType::GTID_EVENT | EventType::GTID_TAGGED_LOG_EVENT => {
                if let Some(EventData::GtidEvent(g)) = ev.read_data().map_err(read_err)? {
                    let uuid = uuid_text(&g.sid());
                    let micros = Some(g.immediate_commit_timestamp());
                    self.begin(
                        Some(TxGtid::MySql { uuid, gno: g.gno() }),
                        start,
                        header.timestamp(),
                        micros,
                        header.server_id(),
                    );
                    self.in_txn = false;
                    return Ok(Step::Begin);
                }
                Ok(Step::Nothing)
            }
            EventType::ANONYMOUS_GTID_EVENT => {
                self.begin(None, start, header.timestamp(), None, header.server_id());
                Ok(Step::Begin)
            }
            EventType::QUERY_EVENT => {
                let Some(EventData::QueryEvent(q)) = ev.read_data().map_err(read_err)? else {
                    return Ok(Step::Nothing);
                };
                let sql = q.query();
                let words: Vec<String> = sql
                    .split_whitespace()
                    .take(2)
                    .map(str::to_ascii_uppercase)
                    .collect();
                let first = words.first().map(String::as_str).unwrap_or("");
                let second = words.get(1).map(String::as_str).unwrap_or("");
                // XA START opens a two-phase XA transaction (MySQL writes it
                // as a statement, MariaDB in the GTID event); XA PREPARE (an
                // XA_PREPARE_LOG_EVENT, or this statement) ends its group. Its
                // XA COMMIT or XA ROLLBACK comes later as a group of its own,
                // without the changes: nothing to apply.
                let word = match (first, second) {
                    ("XA", "START" | "BEGIN") => "BEGIN",
                    ("XA", "PREPARE") => "COMMIT",
                    ("XA", "END") => "",
                    ("XA", "COMMIT" | "ROLLBACK") if !self.in_txn => {
                        if !self.in_group {
                            self.begin(None, start, header.timestamp(), None, header.server_id());
                        }
                        self.end(log_pos);
                        return Ok(Step::End);
                    }
                    (w, _) => w,
                };
                match word {
                    "BEGIN" => {
                        let began = !self.in_group;
                        if began {
                            self.begin(None, start, header.timestamp(), None, header.server_id());
                        }
                        self.in_txn = true;
                        if first == "XA" {
                            self.xa = true;
                        }
                        Ok(if began { Step::Begin } else { Step::Nothing })
                    }
                    "COMMIT" | "ROLLBACK" if self.in_txn => {
                        self.end(log_pos);
                        Ok(Step::End)
                    }
                    _ if self.in_txn => Ok(Step::Nothing),
                    _ => {
                        // One statement, a group of its own.
                        let began = !self.in_group;
                        if began {
                            self.begin(None, start, header.timestamp(), None, header.server_id());
                        }
                        let db = q.schema();
                        let db = (!db.is_empty()).then(|| db.into_owned());
                        let sql = sql.into_owned();
                        self.statement(&sql, db.as_deref(), out).await?;
                        self.end(log_pos);
                        Ok(Step::End)
                    }
                }
            }
            EventType::XID_EVENT => {
                self.end(log_pos);
                Ok(Step::End)
            }
            EventType::XA_PREPARE_LOG_EVENT if self.in_group => {
                // The end of a two-phase XA transaction's group (its rows of
                // pipeline tables were refused as they were read), or of a
                // MySQL XA COMMIT … ONE PHASE.
                self.end(log_pos);
                Ok(Step::End)
            }
            EventType::TABLE_MAP_EVENT => {
                if let Some(EventData::TableMapEvent(t)) = ev.read_data().map_err(read_err)? {
                    let name = TableName::new(Some(&t.database_name()), &t.table_name());
                    let known = self.lookup(&name);
                    self.shapes.remove(&t.table_id());
                    if let Some(n) = &known {
                        // Rows written before an ALTER the stream has not
                        // read yet are in the table's older shape.
                        if let Some(m) = shapes::mapping(n, &t, &self.known[n].columns)? {
                            tracing::debug!(table = %n, logged = m.len(), "the binlog holds rows of the table's older shape");
                            self.shapes.insert(t.table_id(), m);
                        }
                    }
                    self.ids.insert(t.table_id(), known);
                }
                Ok(Step::Nothing)
            }
            EventType::WRITE_ROWS_EVENT
            | EventType::UPDATE_ROWS_EVENT
            | EventType::DELETE_ROWS_EVENT
            | EventType::WRITE_ROWS_EVENT_V1
            | EventType::UPDATE_ROWS_EVENT_V1
            | EventType::DELETE_ROWS_EVENT_V1
            | EventType::PARTIAL_UPDATE_ROWS_EVENT => {
                self.rows(&ev, out).await?;
                Ok(Step::Nothing)
            }
            _ => Ok(Step::Nothing),
        }
    }

    /// The pipeline table a binlog name refers to (exactly, else ignoring case).
    fn lookup(&self, name: &TableName) -> Option<TableName> {
        if self.known.contains_key(name) {
            return Some(name.clone());
        }
        self.known
            .keys()
            .find(|k| {
                k.name.eq_ignore_ascii_case(&name.name)
                    && k.schema.as_deref().map(str::to_ascii_lowercase)
                        == name.schema.as_deref().map(str::to_ascii_lowercase)
            })
            .cloned()
    }

    /// A rows event's rows as changes of its table (when a pipeline table).
    async fn rows(&mut self, ev: &Event, out: &mut Vec<Change>) -> Result<()> {
        let Some(EventData::RowsEvent(data)) = ev.read_data().map_err(read_err)? else {
            return Ok(());
        };
        let id = data.table_id();
        let binlog = self
            .binlog
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Connection, "the binlog stream is closed"))?;
        let tme = binlog
            .get_tme(id)
            .ok_or_else(|| Error::bad_input("a rows event came without its TABLE_MAP event"))?;
        let target = self.ids.get(&id).cloned().flatten();
        let is_update = matches!(
            data,
            RowsEventData::UpdateRowsEvent(_)
                | RowsEventData::UpdateRowsEventV1(_)
                | RowsEventData::PartialUpdateRowsEvent(_)
        );
        // An update takes two indexes, the second for the insert of its new
        // row when it changes the row's key.
        let per_row = if is_update { 2 } else { 1 };
        let Some(name) = target else {
            // Counted, so indexes do not depend on which tables are read.
            let n = data.rows(tme).count() as u32;
            self.index = self.index.saturating_add(n.saturating_mul(per_row));
            return Ok(());
        };
        if self.xa {
            // Not applied before its XA COMMIT, which the stream cannot
            // wait for across batches and restarts: the table stops alone,
            // before any of the transaction's changes leave the stream.
            return Err(events::two_phase_xa(&name));
        }
        // Borrowed, not cloned: a clone per rows event (one a row, for
        // single-row statements) copied every column's description.
        let known = &self.known[&name];
        let shape = self.shapes.get(&id).cloned();
        let before_bits = data
            .columns_before_image()
            .map(|b| b.iter().map(|x| *x).collect::<Vec<bool>>());
        let after_bits = data
            .columns_after_image()
            .map(|b| b.iter().map(|x| *x).collect::<Vec<bool>>());
        let key = known.schema.row_key().map(<[usize]>::to_vec);
        let zero = self.zero;
        let read = |image: Option<BinlogRow>, bits: Option<&[bool]>| -> Result<Option<Row>> {
            image
                .map(|r| match &shape {
                    None => decode(known, r, bits, zero),
                    Some(m) => decode_older(known, m, r, bits, zero),
                })
                .transpose()
        };
        let mut images = Vec::new();
        let read_images = super::images::read(&data, tme).map_err(|e| read_err(e).table(&name))?;
        for (before, after) in read_images {
            images.push((
                read(before, before_bits.as_deref())?,
                read(after, after_bits.as_deref())?,
            ));
        }
        if let Some(m) = &shape {
            for (_, after) in &mut images {
                if let Some(a) = after {
                    self.fill_added(known, m, key.as_deref(), a).await?;
                }
            }
        }
        for (before, after) in images {
            let index = self.index;
            self.index = self.index.saturating_add(per_row);
            let op = match (before, after) {
                (None, Some(a)) => Op::Insert(a),
                // A new key: the old row goes, the new one comes, as a
                // sink that upserts by key would otherwise keep both.
                (Some(b), Some(a))
                    if is_update
                        && key
                            .as_ref()
                            .is_some_and(|k| k.iter().any(|&i| b.get(i) != a.get(i))) =>
                {
                    out.push(Change {
                        table: known.schema.clone(),
                        op: Op::Delete(b),
                        tx: self.tx.clone(),
                        index,
                    });
                    out.push(Change {
                        table: known.schema.clone(),
                        op: Op::Insert(a),
                        tx: self.tx.clone(),
                        index: index.saturating_add(1),
                    });
                    continue;
                }
                (Some(b), Some(a)) if is_update => Op::Update {
                    before: Some(b),
                    after: a,
                },
                (Some(b), None) => Op::Delete(b),
                _ => {
                    return Err(Error::bad_input(
                        "a rows event without the row images siphon expects",
                    )
                    .table(&name))
                }
            };
            out.push(Change {
                table: known.schema.clone(),
                op,
                tx: self.tx.clone(),
                index,
            });
        }
        Ok(())
    }

    /// A statement outside BEGIN … COMMIT: TRUNCATE becomes a change, DDL
    /// on a pipeline table reads its shape again (announced by an
    /// [`Op::Schema`] change when the target evolves, see [`ddl::judge`]),
    /// or fails naming the table when it is gone or changed in a way siphon
    /// does not follow.
    async fn statement(
        &mut self,
        sql: &str,
        db: Option<&str>,
        out: &mut Vec<Change>,
    ) -> Result<()> {
        let Some(stmt) = ddl::parse(sql, db) else {
            return Ok(());
        };
        let name = |(s, n): &(Option<String>, String)| TableName::new(s.as_deref(), n);
        match stmt {
            Ddl::Truncate(t) => {
                if let Some(n) = self.lookup(&name(&t)) {
                    let index = self.index;
                    self.index += 1;
                    out.push(Change {
                        table: self.known[&n].schema.clone(),
                        op: Op::Truncate,
                        tx: self.tx.clone(),
                        index,
                    });
                }
            }
            Ddl::Alter(t) => {
                if let Some(n) = self.lookup(&name(&t)) {
                    match self.source.rediscover(&n).await? {
                        Some(next) => {
                            // Added or widened columns evolve the target; a
                            // dropped, renamed or narrowed column or another
                            // key stops this table alone (the engine isolates
                            // the error), with the fix.
                            let known = &self.known[&n].schema;
                            let reshape = ddl::judge(known, &next.schema, sql)?;
                            let schema = next.schema.clone();
                            self.known.insert(n.clone(), next);
                            if reshape == ddl::Reshape::Evolve {
                                tracing::info!(table = %n, "the source table's shape changed");
                                out.push(Change::new(schema.clone(), Op::Schema(schema)));
                            }
                        }
                        None => return Err(gone(&n)),
                    }
                }
            }
            Ddl::Gone(list) => {
                for t in list {
                    if let Some(n) = self.lookup(&name(&t)) {
                        return Err(gone(&n));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A row image as a row of the table: values in column order, columns the
/// image does not hold (a generated column the server does not log) NULL.
fn decode(
    known: &Known,
    mut row: BinlogRow,
    bits: Option<&[bool]>,
    zero: ZeroDates,
) -> Result<Row> {
    let n = known.columns.len();
    let mut out = Vec::with_capacity(n);
    let mut k = 0;
    for (i, col) in known.columns.iter().enumerate() {
        let present = bits.is_none_or(|b| b.get(i).copied().unwrap_or(false));
        if !present {
            if !known.schema.columns.get(i).is_some_and(|c| c.generated) {
                // This table's alone (the engine stops it, the others go on),
                // which names the pipeline and the table in the fix.
                return Err(Error::bad_input(
                    "the binlog's row image lacks a column (a session wrote with binlog_row_image \
                     other than FULL): set binlog_row_image=FULL on the source for every session, \
                     then copy the table again with `siphon sync resync`",
                )
                .table(&known.schema.name)
                .column(&col.column.name));
            }
            out.push(Value::Null);
            continue;
        }
        let v = row.take(k);
        k += 1;
        out.push(convert(&known.schema.name, col, v, zero)?);
    }
    Ok(out)
}

/// Where a batch of at most `max` changes and `max_bytes` bytes of row images
/// ends among `changes`: after the first change that reaches `max_bytes`, at
/// `max` at most, and after one change at least.
fn cut(changes: &[Change], max: usize, max_bytes: u64) -> usize {
    let mut bytes = 0u64;
    for (i, c) in changes.iter().take(max).enumerate() {
        bytes = bytes.saturating_add(c.op.size());
        if bytes >= max_bytes {
            return i + 1;
        }
    }
    max.max(1).min(changes.len())
}

fn read_err(e: std::io::Error) -> Error {
    Error::bad_input(format!("cannot decode a binlog event: {e}"))
}

fn gone(table: &TableName) -> Error {
    Error::bad_input(
        "the table was dropped or renamed at the source while it is replicated: take it out of the \
         pipeline, or, when it exists again under its name, copy it again with `siphon sync resync`",
    )
    .table(table)
}

impl<R: Rediscover> siphon_core::ChangeStream for MySqlChangeStream<R> {
    async fn next_batch(
        &mut self,
        max_changes: usize,
        until: Option<&Position>,
        wait: Option<Duration>,
    ) -> Result<Option<(Batch, Position)>> {
        let until = until.map(BinlogPos::from_position).transpose()?;
        let give_up = wait.map(|w| Instant::now() + w);
        let at_until = |s: &Self| {
            until
                .as_ref()
                .is_some_and(|u| reached(&s.committed, &s.state, &s.set, u))
        };
        if self.done || (!self.in_group && self.pending.is_empty() && at_until(self)) {
            self.done = true;
            if std::mem::take(&mut self.skipped) {
                return Ok(Some((Batch::default(), self.committed.to_position())));
            }
            return Ok(None);
        }
        let max = max_changes.max(1);
        let max_bytes = self.max_bytes;
        let mut out: Vec<Change> = std::mem::take(&mut self.pending);
        // The bytes of the row images in `out`.
        let mut bytes: u64 = out.iter().map(|c| c.op.size()).sum();
        // Where the batch may resume from: the end of the last whole transaction in it.
        let mut position = self.committed.to_position();
        if self.in_group && (out.len() >= max || bytes >= max_bytes) {
            self.split = true;
            self.pending = out.split_off(cut(&out, max, max_bytes));
            return Ok(Some((Batch { changes: out }, position)));
        }
        let mut txn_start = 0;
        loop {
            let between = !self.in_group;
            let in_hand = !out.is_empty();
            let event = match (between, in_hand, wait) {
                (true, true, _) => match self.next_event(Some(Duration::ZERO)).await? {
                    Some(e) => e,
                    None => return Ok(Some(self.emit(out, position))),
                },
                (true, false, _) => {
                    // Idle: move the checkpoint past other tables' transactions now and then.
                    let idle_left = IDLE_CHECKPOINT.saturating_sub(self.moved.elapsed());
                    let left = give_up.map(|t| t.saturating_duration_since(Instant::now()));
                    let limit = if self.skipped {
                        Some(left.map_or(idle_left, |l| l.min(idle_left)))
                    } else {
                        left
                    };
                    match self.next_event(limit).await? {
                        Some(e) => e,
                        None if self.skipped && self.moved.elapsed() >= IDLE_CHECKPOINT => {
                            self.skipped = false;
                            self.moved = Instant::now();
                            return Ok(Some((Batch::default(), self.committed.to_position())));
                        }
                        None if give_up.is_some_and(|t| Instant::now() >= t) => return Ok(None),
                        None => continue,
                    }
                }
                _ => self
                    .next_event(None)
                    .await?
                    .ok_or_else(|| Error::internal("the change stream stopped waiting"))?,
            };
            let before = out.len();
            // A group starting when `until` is reached is after it: stop before it.
            let step = self.event(event, &mut out).await?;
            bytes += out[before.min(out.len())..]
                .iter()
                .map(|c| c.op.size())
                .sum::<u64>();
            match step {
                Step::Begin => {
                    if at_until(self) {
                        self.done = true;
                        // The group's events are not read; nothing of it is in `out`.
                        out.truncate(before);
                        if out.is_empty() {
                            if std::mem::take(&mut self.skipped) {
                                return Ok(Some((Batch::default(), self.committed.to_position())));
                            }
                            return Ok(None);
                        }
                        return Ok(Some(self.emit(out, position)));
                    }
                    txn_start = out.len();
                }
                Step::End => {
                    let was_split = std::mem::take(&mut self.split);
                    position = self.committed.to_position();
                    let had = out.len() > txn_start || was_split;
                    if !had && out.is_empty() {
                        self.skipped = true;
                    }
                    if at_until(self) {
                        self.done = true;
                        // The end of a split transaction whose last part
                        // filled the batch before: nothing left to apply,
                        // but the position moves past the transaction.
                        if out.is_empty() && !was_split && !std::mem::take(&mut self.skipped) {
                            return Ok(None);
                        }
                        return Ok(Some(self.emit(out, position)));
                    }
                    if out.len() >= max || bytes >= max_bytes || was_split {
                        return Ok(Some(self.emit(out, position)));
                    }
                }
                Step::Nothing => {
                    if self.in_group && (out.len() >= max || bytes >= max_bytes) {
                        let at = if txn_start > 0 {
                            txn_start
                        } else {
                            // A transaction larger than a batch: split it; the
                            // position stays before it, so a resume replays it.
                            self.split = true;
                            cut(&out, max, max_bytes)
                        };
                        self.pending = out.split_off(at);
                        return Ok(Some(self.emit(out, position)));
                    }
                }
            }
        }
    }

    fn limit_bytes(&mut self, max_bytes: u64) {
        self.max_bytes = max_bytes.max(1);
    }

    async fn confirm(&mut self, _committed: &Position) -> Result<()> {
        // The checkpoint lives in the target: the server keeps binlogs by
        // its own retention, whatever siphon read.
        Ok(())
    }

    async fn close(mut self) -> Result<()> {
        if let Some(b) = self.binlog.take() {
            if let Err(e) = b.close().await {
                tracing::debug!(error = %e, "the binlog stream ended with an error");
            }
        }
        Ok(())
    }
}

impl<R: Rediscover> MySqlChangeStream<R> {
    fn emit(&mut self, out: Vec<Change>, position: Position) -> (Batch, Position) {
        self.moved = Instant::now();
        self.skipped = false;
        (Batch { changes: out }, position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_async::binlog::events::{BinlogEventFooter, FormatDescriptionEvent};
    use mysql_async::binlog::{BinlogChecksumAlg, BinlogVersion};

    /// A table catalog with no tables (the events below touch none).
    struct NoTables;

    impl Rediscover for NoTables {
        async fn rediscover(&self, _table: &TableName) -> Result<Option<Known>> {
            Ok(None)
        }

        async fn current_row(
            &self,
            _table: &TableSchema,
            _key: &[usize],
            _values: &[Value],
        ) -> Result<Option<Row>> {
            Ok(None)
        }
    }

    fn mysql_stream() -> MySqlChangeStream<NoTables> {
        MySqlChangeStream {
            pipeline: "p".into(),
            binlog: None,
            source: NoTables,
            flavor: Flavor::MySql,
            own_server: 1,
            zero: ZeroDates::Error,
            known: HashMap::new(),
            ids: HashMap::new(),
            shapes: HashMap::new(),
            file: "binlog.000002".into(),
            state: GtidState::default(),
            set: GtidSet::parse("88ebc247-06ef-11ef-97ee-0242ac130004:1-41").unwrap(),
            committed: BinlogPos {
                file: "binlog.000002".into(),
                pos: 157,
                ..BinlogPos::default()
            },
            tx: None,
            tx_gtid: None,
            in_group: false,
            in_txn: false,
            xa: false,
            index: 0,
            pending: Vec::new(),
            split: false,
            max_bytes: u64::MAX,
            done: false,
            moved: Instant::now(),
            skipped: false,
            fde_seen: true,
            rotate_pending: None,
        }
    }

    /// What a MySQL 8.0 server's format description says of its events:
    /// CRC32 checksums.
    fn mysql8_fde() -> FormatDescriptionEvent<'static> {
        FormatDescriptionEvent::new(BinlogVersion::Version4)
            .with_server_version(b"8.0.36".to_vec())
            .with_footer(BinlogEventFooter::new(
                BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32,
            ))
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A MySQL 8.0.36 GTID event (type 33) byte for byte, as `mysqlbinlog`
    /// printed it from a server's binlog ("# at 157 … end_log_pos 234 CRC32
    /// 0xc6d6a036 GTID last_committed=0 sequence_number=1 rbr_only=no
    /// original_committed_timestamp=1714534357425326
    /// immediate_commit_timestamp=1714534357425326 transaction_length=217",
    /// GTID_NEXT '88ebc247-06ef-11ef-97ee-0242ac130004:1', server version
    /// 80036): the bytes below give exactly that CRC32, so they are the
    /// server's. Then an XID event ends the transaction.
    #[tokio::test]
    async fn a_mysql8_gtid_event_from_a_server_binlog_opens_and_ends_a_transaction() {
        let gtid = hex(concat!(
            "d5b73166",
            "21",
            "01000000",
            "4d000000",
            "ea000000",
            "0000",                             // header
            "01",                               // flags
            "88ebc24706ef11ef97ee0242ac130004", // sid
            "0100000000000000",                 // gno
            "02",
            "0000000000000000",
            "0100000000000000", // logical clock
            "ae5c54235c1706",   // immediate commit time
            "d9",               // transaction length
            "a4380100",         // server version
            "36a0d6c6",         // CRC32
        ));
        let fde = mysql8_fde();
        let ev = Event::read(&fde, &gtid[..]).unwrap();
        assert_eq!(
            ev.calc_checksum(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32),
            0xc6d6_a036,
            "the bytes are not the captured event's"
        );
        let mut s = mysql_stream();
        let mut out = Vec::new();
        assert!(matches!(s.event(ev, &mut out).await.unwrap(), Step::Begin));
        let tx = s.tx.clone().unwrap();
        assert_eq!(
            tx.position.0,
            serde_json::json!({"gtid": "88ebc247-06ef-11ef-97ee-0242ac130004:1"})
        );
        assert_eq!(
            tx.commit_time,
            DateTime::from_timestamp_micros(1_714_534_357_425_326)
        );
        assert_eq!(tx.origin, None, "server 1 is the source itself");

        // XID 1400 at 234, ending at 265.
        let mut xid = hex("d5b731661001000000");
        xid.extend_from_slice(&31u32.to_le_bytes());
        xid.extend_from_slice(&265u32.to_le_bytes());
        xid.extend_from_slice(&[0, 0]);
        xid.extend_from_slice(&1400u64.to_le_bytes());
        xid.extend_from_slice(&[0; 4]);
        let ev = Event::read(&fde, &xid[..]).unwrap();
        assert!(matches!(s.event(ev, &mut out).await.unwrap(), Step::End));
        assert!(out.is_empty());
        let at = s.committed.clone();
        assert_eq!(
            at.gtid_set.as_deref(),
            Some("88ebc247-06ef-11ef-97ee-0242ac130004:1-41"),
            "a GTID already executed leaves the set as it was"
        );
        assert_eq!((at.file.as_str(), at.pos), ("binlog.000002", 265));

        // The same event of another server's transaction 42 (its origin).
        let mut other = gtid.clone();
        other[5..9].copy_from_slice(&7u32.to_le_bytes());
        other[36..44].copy_from_slice(&42u64.to_le_bytes());
        let ev = Event::read(&fde, &other[..]).unwrap();
        assert!(matches!(s.event(ev, &mut out).await.unwrap(), Step::Begin));
        assert_eq!(s.tx.as_ref().unwrap().origin.as_deref(), Some("7"));
        let ev = Event::read(&fde, &xid[..]).unwrap();
        s.event(ev, &mut out).await.unwrap();
        assert_eq!(
            s.committed.gtid_set.as_deref(),
            Some("88ebc247-06ef-11ef-97ee-0242ac130004:1-42")
        );
        assert!(reached(
            &s.committed,
            &s.state,
            &s.set,
            &BinlogPos {
                gtid_set: Some("88ebc247-06ef-11ef-97ee-0242ac130004:1-42".into()),
                file: "binlog.000009".into(),
                pos: 4,
                gtid: None,
            }
        ));
    }
}
