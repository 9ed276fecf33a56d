//! The change stream of a pipeline's slot: pgoutput messages decoded into
//! changes, and whole source transactions assembled into batches (streamed
//! ones spilled to disk until their commit).

use super::shape::Relation;
use super::*;

/// The changes of a PostgreSQL replication slot, one source transaction after
/// another (see [`ChangeStream`]). Unchanged TOASTed values, and columns a
/// message does not carry, are filled in from the old row when the log has it
/// (`REPLICA IDENTITY FULL`) and otherwise read from the source's current row
/// by key: never written as NULL. Rows read that way may be newer than the
/// change; the later changes that made them so follow in the log, so the target
/// converges.
pub struct PostgresChangeStream {
    pub(super) client: Option<ReplicationStream>,
    /// The source, for the values the log did not carry and the slot's state.
    pub(super) query: PostgresSource,
    pub(super) slot: String,
    /// Tables of the pipeline by name: their schema and column types.
    pub(super) known: HashMap<TableName, (Arc<TableSchema>, Vec<PgType>)>,
    pub(super) relations: HashMap<u32, Option<Relation>>,
    pub(super) start: Lsn,
    /// The end of the last transaction fully returned.
    pub(super) committed: Lsn,
    pub(super) confirmed: Lsn,
    /// Changes of the transaction being read that did not fit the last batch.
    pub(super) pending: Vec<Change>,
    /// Changes of the batch being read whose rows lack values: their index, and
    /// the positions to fill.
    pub(super) todo: Vec<(usize, Vec<usize>)>,
    pub(super) in_txn: bool,
    /// The transaction being read was split over batches: its end ends a batch.
    pub(super) split: bool,
    /// The bytes of row images a batch holds at most (see
    /// [`ChangeStream::limit_bytes`]); `u64::MAX` when uncapped.
    pub(super) max_bytes: u64,
    /// Watermarks read into the batch being read, by the changes before them.
    pub(super) marks: Vec<siphon_core::Watermark>,
    /// Watermarks of the batch last returned, for [`ChangeStream::take_watermarks`].
    pub(super) marks_out: Vec<siphon_core::Watermark>,
    /// The transaction being read (its commit position, time and origin), which
    /// its changes carry.
    pub(super) tx: Option<Arc<Transaction>>,
    /// The index the transaction's next change gets: it counts the changes of
    /// the whole transaction, across the batches it is split over.
    pub(super) index: u32,
    pub(super) done: bool,
    pub(super) decoder: Decoder,
    /// Blocks of large transactions streamed before they committed (protocol
    /// 2), by xid, kept on disk until their commit or abort.
    pub(super) streamed: HashMap<u32, Spill>,
    /// The xid of the stream block being read.
    pub(super) block: Option<u32>,
    /// A committed streamed transaction being read back, and where it ends.
    pub(super) replay: Option<(Replay, Lsn)>,
    /// When a batch was last returned.
    pub(super) moved: std::time::Instant,
}

impl std::fmt::Debug for PostgresChangeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresChangeStream")
            .field("slot", &self.slot)
            .field("committed", &self.committed)
            .field("confirmed", &self.confirmed)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresChangeStream {
    /// A stream dropped without [`ChangeStream::close`] (after an error) ends its
    /// replication session at once, so the slot is free for the next attempt.
    fn drop(&mut self) {
        // Dropping the session aborts it.
        self.client.take();
    }
}

impl PostgresChangeStream {
    fn client(&mut self) -> Result<&mut ReplicationStream> {
        self.client
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::Connection, "the replication stream is closed"))
    }

    /// Decodes a tuple into a row of the relation's table; the positions of
    /// values the tuple does not carry are returned beside it.
    fn row(rel: &Relation, tuple: &TupleData) -> Result<(Row, Vec<usize>)> {
        let t = &rel.table;
        let mut row = vec![Value::Null; t.columns.len()];
        let mut seen = vec![false; t.columns.len()];
        for (col, map) in tuple.0.iter().zip(&rel.columns) {
            // A column the table lost, or one whose type changed since.
            let Some((i, Some(ty))) = map else { continue };
            match col {
                TupleColumn::Null => seen[*i] = true,
                TupleColumn::UnchangedToast => {}
                TupleColumn::Text(b) | TupleColumn::Binary(b) => {
                    row[*i] = decode(ty, b).map_err(|e| {
                        Error::bad_input(format!("cannot read the value from the log: {e}"))
                            .table(&t.name)
                            .column(&t.columns[*i].name)
                    })?;
                    seen[*i] = true;
                }
            }
        }
        // Includes generated columns, which pgoutput (PostgreSQL 15) never sends.
        let missing = (0..row.len()).filter(|&i| !seen[i]).collect();
        Ok((row, missing))
    }

    /// Fills in the values the log did not carry, for the changes of `out` listed
    /// in `self.todo`, from the source's current rows (one query per table and
    /// 500 keys). Changes whose row is gone are removed: a later change in the
    /// log deleted it. Returns, per change of `out` before the call, whether it
    /// was kept.
    async fn fill(&mut self, out: &mut Vec<Change>) -> Result<Vec<bool>> {
        let todo = std::mem::take(&mut self.todo);
        let mut keep = vec![true; out.len()];
        if todo.is_empty() {
            return Ok(keep);
        }
        // Grouped by schema version: rows of one group have one shape.
        let mut groups: Vec<(Arc<TableSchema>, Vec<usize>)> = Vec::new();
        for (n, (index, _)) in todo.iter().enumerate() {
            let table = &out[*index].table;
            match groups.iter_mut().find(|(t, _)| Arc::ptr_eq(t, table)) {
                Some((_, ns)) => ns.push(n),
                None => groups.push((table.clone(), vec![n])),
            }
        }
        for (table, ns) in groups {
            let key = table
                .row_key()
                .ok_or_else(|| no_identity(&table.name))?
                .to_vec();
            let types: Vec<PgType> = match self.known.get(&table.name) {
                Some((known, types)) if Arc::ptr_eq(known, &table) => types.clone(),
                _ => {
                    return Err(Error::internal(
                        "a change of an older shape of the table was left in the batch",
                    )
                    .table(&table.name))
                }
            };
            // Read by attnum: the columns may have been renamed (or dropped)
            // at the source since the shape was known.
            let attributes =
                crate::schema::attributes(&*self.query.client().await?, &table.name).await?;
            let now: Vec<Option<String>> = table
                .columns
                .iter()
                .map(|c| match c.source_id {
                    Some(id) => attributes
                        .iter()
                        .find(|a| a.attnum == id && !a.dropped)
                        .map(|a| a.name.clone()),
                    None => Some(c.name.clone()),
                })
                .collect();
            let mut key_names = Vec::with_capacity(key.len());
            for &i in &key {
                key_names.push(now[i].clone().ok_or_else(|| {
                    Error::bad_input(
                        "a key column was dropped at the source while its changes were still in the log; \
                         copy the table again with `siphon sync resync`",
                    )
                    .table(&table.name)
                    .column(&table.columns[i].name)
                })?);
            }
            let select: Vec<String> = now
                .iter()
                .zip(&types)
                .map(|(n, ty)| match n {
                    // Gone at the source: the table's next shape drops it.
                    None => "NULL::text".to_string(),
                    Some(n) if ty.binary_supported() => ident(n),
                    Some(n) => format!("{}::text", ident(n)),
                })
                .collect();
            let key_cols = column_list(key_names.iter().map(String::as_str));
            let mut found: HashMap<Vec<u8>, Row> = HashMap::new();
            for part in ns.chunks(500) {
                let mut params = Vec::new();
                let mut tuples = Vec::new();
                for &n in part {
                    let row = row_of(&out[todo[n].0]);
                    let mut tuple = Vec::new();
                    for &i in &key {
                        params.push(Param(&row[i], &types[i]));
                        tuple.push(format!("${}::{}", params.len(), types[i].name));
                    }
                    tuples.push(format!("({})", tuple.join(", ")));
                }
                let sql = format!(
                    "SELECT {} FROM {} WHERE ({key_cols}) IN (VALUES {})",
                    select.join(", "),
                    name_of(&table),
                    tuples.join(", ")
                );
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                let rows = self
                    .query
                    .client()
                    .await?
                    .query(&sql, &refs)
                    .await
                    .map_err(|e| {
                        pg_err(e, "reading the values the log did not carry").table(&table.name)
                    })?;
                for r in rows {
                    let row = decode_row(&r, &types, &table)?;
                    found.insert(siphon_core::key_bytes(&row, &key), row);
                }
            }
            for n in ns {
                let (index, missing) = &todo[n];
                let change = &mut out[*index];
                let k = siphon_core::key_bytes(row_of(change), &key);
                match (found.get(&k), row_mut(change)) {
                    (Some(current), Some(row)) => {
                        for &i in missing {
                            row[i] = current[i].clone();
                        }
                    }
                    _ => keep[*index] = false,
                }
            }
        }
        let mut kept = keep.iter();
        out.retain(|_| kept.next().copied().unwrap_or(true));
        Ok(keep)
    }

    /// Completes the batch (see [`PostgresChangeStream::fill`]) and returns it;
    /// with `split`, the changes from that index on are kept for the next batch.
    async fn emit(
        &mut self,
        mut out: Vec<Change>,
        split: Option<usize>,
        position: Lsn,
    ) -> Result<Option<(Batch, Position)>> {
        self.moved = std::time::Instant::now();
        let keep = self.fill(&mut out).await?;
        // A watermark stays after the changes it followed that were kept.
        let mut marks = std::mem::take(&mut self.marks);
        for m in &mut marks {
            m.before = keep[..m.before.min(keep.len())]
                .iter()
                .filter(|k| **k)
                .count();
        }
        if let Some(at) = split {
            let at = keep[..at].iter().filter(|k| **k).count();
            self.pending = out.split_off(at);
            // Those after the split go with the changes kept for the next batch.
            let (later, now) = marks.into_iter().partition(|m| m.before > at);
            marks = now;
            self.marks = later;
            for m in &mut self.marks {
                m.before -= at;
            }
        }
        self.marks_out = marks;
        Ok(Some((Batch { changes: out }, to_position(position))))
    }

    /// Adds a change; one whose row lacks values is completed before the batch
    /// is returned.
    fn push(
        &mut self,
        out: &mut Vec<Change>,
        table: Arc<TableSchema>,
        op: Op,
        missing: Vec<usize>,
    ) {
        // A table without a key has no row to read the values from: what its
        // log lacks is generated at the target (its whole old row fills in
        // unchanged values of an update).
        if !missing.is_empty() && table.row_key().is_some() {
            self.todo.push((out.len(), missing));
        }
        let change = self.logged(table, op);
        out.push(change);
    }

    /// A change of the transaction being read, with its transaction and the
    /// next index of the message being turned into changes (see
    /// [`PostgresChangeStream::change`]).
    fn logged(&mut self, table: Arc<TableSchema>, op: Op) -> Change {
        let index = self.index;
        self.index += 1;
        Change {
            table,
            op,
            tx: self.tx.clone(),
            index,
        }
    }

    /// Turns one message into changes, numbered in their transaction.
    ///
    /// Each row change message of the transaction takes the same indexes on
    /// every read of the log, whatever the batches, whether the server
    /// streamed the transaction before its commit, and whichever of the
    /// publication's tables the stream was opened for (a table left out still
    /// takes its indexes): an insert or a delete one, an update two when it
    /// carries the old row or key (it may become a delete and an insert, when
    /// its key changed) and otherwise one, a truncate one per table. So ids
    /// never move to another change; indexes a message did not use are gaps.
    async fn change(&mut self, msg: Message, out: &mut Vec<Change>) -> Result<()> {
        let slots: u32 = match &msg {
            Message::Insert { .. } | Message::Delete { .. } => 1,
            Message::Update { key, old, .. } if key.is_some() || old.is_some() => 2,
            Message::Update { .. } => 1,
            Message::Truncate { oids, .. } => u32::try_from(oids.len()).unwrap_or(u32::MAX),
            _ => 0,
        };
        let end = self.index.saturating_add(slots);
        let r = self.decode_change(msg, out).await;
        self.index = end;
        r
    }

    async fn decode_change(&mut self, msg: Message, out: &mut Vec<Change>) -> Result<()> {
        match msg {
            Message::Relation {
                oid,
                namespace,
                name,
                columns,
                ..
            } => self.relation(oid, &namespace, &name, &columns, out).await?,
            Message::Insert { oid, new, .. } => {
                let Some(rel) = self.rel(oid)? else {
                    return Ok(());
                };
                let (row, missing) = Self::row(&rel, &new)?;
                self.push(out, rel.table.clone(), Op::Insert(row), missing);
            }
            Message::Update {
                oid, key, old, new, ..
            } => {
                let Some(rel) = self.rel(oid)? else {
                    return Ok(());
                };
                let t = rel.table.clone();
                // A table without a key is logged whole (REPLICA IDENTITY FULL).
                let rkey = t.row_key().unwrap_or_default().to_vec();
                let before = match old.as_ref().or(key.as_ref()) {
                    Some(o) => Some(Self::row(&rel, o)?),
                    None => None,
                };
                let (mut after, mut missing) = Self::row(&rel, &new)?;
                let full_old = old.as_ref().and(before.as_ref());
                let logged_whole = full_old.is_some();
                // With REPLICA IDENTITY FULL the old row has every value.
                if let Some((o, om)) = full_old {
                    missing.retain(|i| {
                        let known = !om.contains(i);
                        if known {
                            after[*i] = o[*i].clone();
                        }
                        !known
                    });
                }
                let key_changed = before
                    .as_ref()
                    .is_some_and(|(b, _)| rkey.iter().any(|&i| b[i] != after[i]));
                if key_changed {
                    if let Some((b, _)) = before {
                        self.push(out, t.clone(), Op::Delete(b), vec![]);
                    }
                    self.push(out, t, Op::Insert(after), missing);
                } else {
                    // Moved, not copied: the old row may hold huge values.
                    let before = before.filter(|_| logged_whole).map(|(b, _)| b);
                    self.push(out, t, Op::Update { before, after }, missing);
                }
            }
            Message::Delete { oid, key, old, .. } => {
                let Some(rel) = self.rel(oid)? else {
                    return Ok(());
                };
                let Some(tuple) = old.as_ref().or(key.as_ref()) else {
                    return Err(no_identity(&rel.table.name));
                };
                let (row, _) = Self::row(&rel, tuple)?;
                let change = self.logged(rel.table.clone(), Op::Delete(row));
                out.push(change);
            }
            Message::Truncate { oids, .. } => {
                let first = self.index;
                for (n, oid) in (0u32..).zip(oids) {
                    if let Some(rel) = self.rel(oid)? {
                        self.index = first.saturating_add(n);
                        let change = self.logged(rel.table.clone(), Op::Truncate);
                        out.push(change);
                    }
                }
            }
            // Sent after Begin (or in a streamed transaction's first block),
            // before the transaction's changes.
            Message::Origin { name, .. } => {
                if let Some(tx) = self.tx.as_mut() {
                    Arc::make_mut(tx).origin = Some(name);
                }
            }
            // A watermark (`pg_logical_emit_message(true, 'siphon', …)`), in
            // its place among the changes.
            Message::LogicalMessage {
                transactional: true,
                prefix,
                content,
                ..
            } if prefix == WATERMARK_PREFIX => {
                self.marks.push(siphon_core::Watermark {
                    mark: String::from_utf8_lossy(&content).into_owned(),
                    before: out.len(),
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// The relation a change refers to; `None` for tables outside the pipeline.
    fn rel(&self, oid: u32) -> Result<Option<Relation>> {
        match self.relations.get(&oid) {
            // A copy, so the change can be decoded while the stream reads the source.
            Some(Some(r)) => Ok(Some(r.clone())),
            Some(None) => Ok(None),
            None => Err(Error::internal(format!(
                "the log sent a change of relation {oid} before describing it"
            ))),
        }
    }
}

/// The row a change writes (or deletes).
fn row_of(change: &Change) -> &Row {
    static EMPTY: Row = Vec::new();
    match &change.op {
        Op::Insert(r) | Op::Update { after: r, .. } | Op::Delete(r) => r,
        Op::Truncate | Op::Schema(_) => &EMPTY,
    }
}

fn row_mut(change: &mut Change) -> Option<&mut Row> {
    match &mut change.op {
        Op::Insert(r) | Op::Update { after: r, .. } => Some(r),
        _ => None,
    }
}

fn decode(ty: &PgType, b: &Bytes) -> std::result::Result<Value, String> {
    let text = std::str::from_utf8(b).map_err(|e| e.to_string())?;
    types::decode_text(ty, text).map_err(|e| e.to_string())
}

/// Whether a walsender that has read the WAL up to `sent` has read everything
/// inserted before `until`. `until` is an insert position, which after a record
/// ending on a page boundary points past the next page's header (24 bytes, 40 at
/// a segment start), where no record can start: that gap counts as reached.
/// How long an idle stream waits before it moves the checkpoint to the
/// position a keepalive reported.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(10);

/// What the change stream reads next: transaction bounds and changes, in
/// commit order (a streamed transaction is read back whole at its commit).
enum TxnEvent {
    Begin {
        /// The commit record's LSN.
        final_lsn: Lsn,
        /// When it committed (PostgreSQL timestamp).
        commit_time: i64,
    },
    Commit {
        end_lsn: Lsn,
    },
    Change(Message),
    /// `urgent`: the server waits for the client to confirm `wal_end`.
    KeepAlive {
        wal_end: Lsn,
        urgent: bool,
    },
}

fn unreadable(e: pgoutput::DecodeError) -> Error {
    Error::internal("the replication stream sent a message siphon cannot read").source(e)
}

fn spill_err(e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Internal,
        "cannot keep a large streamed transaction in a temporary file (see TMPDIR)",
    )
    .source(e)
}

/// The blocks of one large transaction that PostgreSQL streamed before it
/// committed, kept in an unnamed temporary file (length-prefixed `pgoutput`
/// messages) so that memory stays bounded whatever its size.
pub(super) struct Spill {
    file: std::io::BufWriter<std::fs::File>,
    len: u64,
    /// Subtransactions by the offset of their first change, in order.
    subxacts: Vec<(u32, u64)>,
}

impl Spill {
    fn new() -> Result<Spill> {
        Ok(Spill {
            file: std::io::BufWriter::with_capacity(
                1 << 16,
                tempfile::tempfile().map_err(spill_err)?,
            ),
            len: 0,
            subxacts: Vec::new(),
        })
    }

    fn push(&mut self, top: u32, xid: Option<u32>, data: &[u8]) -> Result<()> {
        use std::io::Write;
        if let Some(x) = xid.filter(|x| *x != top) {
            if !self.subxacts.iter().any(|(s, _)| *s == x) {
                self.subxacts.push((x, self.len));
            }
        }
        let n = u32::try_from(data.len())
            .map_err(|_| Error::internal("a pgoutput message over 4 GiB"))?;
        self.file.write_all(&n.to_be_bytes()).map_err(spill_err)?;
        self.file.write_all(data).map_err(spill_err)?;
        self.len += 4 + u64::from(n);
        Ok(())
    }

    /// Forgets a rolled back subtransaction: its changes and those of the
    /// subtransactions after it (PostgreSQL sends a subtransaction's changes
    /// after those of the subtransactions it started before).
    fn abort(&mut self, subxid: u32) -> Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        let Some(at) = self.subxacts.iter().position(|(s, _)| *s == subxid) else {
            return Ok(());
        };
        let offset = self.subxacts[at].1;
        self.file.flush().map_err(spill_err)?;
        self.file.get_mut().set_len(offset).map_err(spill_err)?;
        self.file.seek(SeekFrom::Start(offset)).map_err(spill_err)?;
        self.len = offset;
        self.subxacts.truncate(at);
        Ok(())
    }

    fn into_replay(self) -> Result<Replay> {
        use std::io::{Seek, SeekFrom};
        let mut file = self
            .file
            .into_inner()
            .map_err(|e| spill_err(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(spill_err)?;
        Ok(Replay {
            reader: Some(std::io::BufReader::with_capacity(1 << 16, file)),
        })
    }
}

/// A committed streamed transaction read back from its [`Spill`].
pub(super) struct Replay {
    reader: Option<std::io::BufReader<std::fs::File>>,
}

impl Replay {
    fn next(&mut self) -> Result<Option<Bytes>> {
        use std::io::Read;
        let Some(reader) = self.reader.as_mut() else {
            return Ok(None);
        };
        let mut n = [0u8; 4];
        match reader.read_exact(&mut n) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                self.reader = None;
                return Ok(None);
            }
            Err(e) => return Err(spill_err(e)),
        }
        let mut data = vec![0u8; u32::from_be_bytes(n) as usize];
        reader.read_exact(&mut data).map_err(spill_err)?;
        Ok(Some(Bytes::from(data)))
    }
}

impl PostgresChangeStream {
    /// The next transaction bound, change or keepalive; `None` when `wait`
    /// passed first. Blocks of streamed transactions go to their spill files
    /// as they come; at its Stream Commit a transaction is read back whole.
    async fn next_event(&mut self, wait: Option<Duration>) -> Result<Option<TxnEvent>> {
        loop {
            if let Some((replay, end_lsn)) = &mut self.replay {
                match replay.next()? {
                    Some(data) => {
                        let msg = pgoutput::decode(data, true).map_err(unreadable)?;
                        return Ok(Some(TxnEvent::Change(msg)));
                    }
                    None => {
                        let end_lsn = *end_lsn;
                        self.replay = None;
                        return Ok(Some(TxnEvent::Commit { end_lsn }));
                    }
                }
            }
            let client = self.client()?;
            let event = match wait {
                Some(w) => match tokio::time::timeout(w, client.recv()).await {
                    Ok(e) => e?,
                    Err(_) => return Ok(None),
                },
                None => client.recv().await?,
            };
            let data = match event {
                Some(Event::Data { data, .. }) => data,
                Some(Event::KeepAlive {
                    wal_end,
                    reply_requested,
                    ..
                }) => {
                    return Ok(Some(TxnEvent::KeepAlive {
                        wal_end,
                        urgent: reply_requested,
                    }))
                }
                None => {
                    return Err(Error::new(
                        ErrorKind::Connection,
                        "the replication stream ended",
                    ))
                }
            };
            let msg = self.decoder.decode(data.clone()).map_err(unreadable)?;
            match msg {
                Message::Begin {
                    final_lsn,
                    commit_time,
                    ..
                } => {
                    return Ok(Some(TxnEvent::Begin {
                        final_lsn,
                        commit_time,
                    }))
                }
                Message::Commit {
                    end_lsn,
                    commit_time,
                    ..
                } => {
                    tracing::trace!(
                        %end_lsn,
                        behind_ms = (pgoutput::postgres_timestamp(std::time::SystemTime::now())
                            - commit_time)
                            / 1000,
                        "transaction received"
                    );
                    return Ok(Some(TxnEvent::Commit { end_lsn }));
                }
                Message::StreamStart { xid, .. } => self.block = Some(xid),
                Message::StreamStop => self.block = None,
                Message::StreamCommit {
                    xid,
                    commit_lsn,
                    end_lsn,
                    commit_time,
                    ..
                } => {
                    let replay = match self.streamed.remove(&xid) {
                        Some(spill) => spill.into_replay()?,
                        None => Replay { reader: None },
                    };
                    self.replay = Some((replay, end_lsn));
                    return Ok(Some(TxnEvent::Begin {
                        final_lsn: commit_lsn,
                        commit_time,
                    }));
                }
                Message::StreamAbort { xid, subxid, .. } => {
                    if xid == subxid {
                        self.streamed.remove(&xid);
                    } else if let Some(spill) = self.streamed.get_mut(&xid) {
                        spill.abort(subxid)?;
                    }
                }
                msg => match self.block {
                    Some(top) => {
                        let spill = match self.streamed.entry(top) {
                            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                            std::collections::hash_map::Entry::Vacant(e) => e.insert(Spill::new()?),
                        };
                        spill.push(top, msg.stream_xid(), &data)?;
                    }
                    None => return Ok(Some(TxnEvent::Change(msg))),
                },
            }
        }
    }
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

pub(super) fn reached(sent: Lsn, until: Lsn) -> bool {
    const PAGE: u64 = 8192;
    const LONG_HEADER: u64 = 40;
    sent >= until || (sent.0.is_multiple_of(PAGE) && until.0 <= sent.0 + LONG_HEADER)
}

impl ChangeStream for PostgresChangeStream {
    async fn next_batch(
        &mut self,
        max_changes: usize,
        until: Option<&Position>,
        wait: Option<Duration>,
    ) -> Result<Option<(Batch, Position)>> {
        let until = until.map(lsn_of).transpose()?;
        let give_up = wait.map(|w| std::time::Instant::now() + w);
        if self.done
            || until
                .is_some_and(|u| reached(self.start, u) && !self.in_txn && self.pending.is_empty())
        {
            self.done = true;
            return Ok(None);
        }
        let max = max_changes.max(1);
        // Leftovers belong to the transaction being read, which starts this batch.
        let mut out: Vec<Change> = std::mem::take(&mut self.pending);
        let max_bytes = self.max_bytes;
        // The bytes of the row images in `out`.
        let mut bytes: u64 = out.iter().map(|c| c.op.size()).sum();
        // Watermarks not taken are those of a batch already applied.
        self.marks_out.clear();
        let mut txn_start = 0;
        // Where the batch may resume from: the end of the last whole transaction in it.
        let mut position = self.committed;
        loop {
            // Between transactions with changes in hand: return them unless more
            // are already waiting.
            let between = !self.in_txn;
            // A watermark alone is returned as soon as it is read.
            let in_hand = !out.is_empty() || !self.todo.is_empty() || !self.marks.is_empty();
            // Waiting is cut short only between transactions, where giving up
            // loses nothing: the session keeps an event it did not return.
            let event = match (between, in_hand, wait) {
                (true, true, _) => match self.next_event(Some(Duration::ZERO)).await? {
                    Some(e) => e,
                    None => return self.emit(out, None, position).await,
                },
                // `wait` bounds the whole call: keepalives do not extend it.
                (true, false, Some(_)) => {
                    let left = give_up
                        .map(|t| t.saturating_duration_since(std::time::Instant::now()))
                        .unwrap_or_default();
                    match self.next_event(Some(left)).await? {
                        Some(e) => e,
                        None => return Ok(None),
                    }
                }
                _ => self
                    .next_event(None)
                    .await?
                    .ok_or_else(|| Error::internal("the change stream stopped waiting"))?,
            };
            match event {
                TxnEvent::Begin {
                    final_lsn,
                    commit_time,
                } => {
                    if until.is_some_and(|u| final_lsn >= u) {
                        // Committed after `until`: stop before it.
                        self.done = true;
                        if out.is_empty() {
                            return Ok(None);
                        }
                        return self.emit(out, None, position).await;
                    }
                    self.in_txn = true;
                    txn_start = out.len();
                    // The commit LSN: the same whether the server streamed the
                    // transaction before its commit or sent it whole.
                    self.tx = Some(Arc::new(Transaction {
                        position: to_position(final_lsn),
                        commit_time: DateTime::from_timestamp_micros(
                            commit_time.saturating_add(pgoutput::POSTGRES_EPOCH_UNIX_MICROS),
                        ),
                        origin: None,
                    }));
                    self.index = 0;
                }
                TxnEvent::Commit { end_lsn } => {
                    self.in_txn = false;
                    self.tx = None;
                    let was_split = std::mem::take(&mut self.split);
                    self.committed = end_lsn;
                    position = self.committed;
                    if until.is_some_and(|u| self.committed >= u) {
                        self.done = true;
                        if out.is_empty() {
                            return Ok(None);
                        }
                        return self.emit(out, None, position).await;
                    }
                    // The tail of a split transaction is never merged with another.
                    if out.len() >= max || bytes >= max_bytes || was_split {
                        return self.emit(out, None, position).await;
                    }
                }
                TxnEvent::Change(msg) => {
                    let before = out.len();
                    self.change(msg, &mut out).await?;
                    bytes += out[before.min(out.len())..]
                        .iter()
                        .map(|c| c.op.size())
                        .sum::<u64>();
                    if self.in_txn && (out.len() >= max || bytes >= max_bytes) {
                        let at = if txn_start > 0 {
                            // Return the whole transactions before this one; it
                            // starts the next batch.
                            txn_start
                        } else {
                            // A transaction larger than a batch: split it here;
                            // the position stays before it, so a resume replays
                            // all of it.
                            self.split = true;
                            cut(&out, max, max_bytes)
                        };
                        return self.emit(out, Some(at), position).await;
                    }
                }
                TxnEvent::KeepAlive { wal_end, urgent } => {
                    if self.in_txn {
                        continue;
                    }
                    let at_end = until.is_some_and(|u| reached(wal_end, u));
                    if !out.is_empty() || !self.marks.is_empty() {
                        self.done |= at_end;
                        return self.emit(out, None, position).await;
                    }
                    // Idle, with every transaction before `wal_end` applied:
                    // an empty batch moves the checkpoint there, so the source
                    // may drop that log (which may hold only other tables'
                    // changes) and a server shutting down stops waiting.
                    let due = urgent || at_end || self.moved.elapsed() >= IDLE_CHECKPOINT;
                    if wal_end > self.committed && due {
                        self.done |= at_end;
                        self.committed = wal_end;
                        self.moved = std::time::Instant::now();
                        return Ok(Some((Batch::default(), to_position(wal_end))));
                    }
                    if at_end {
                        self.done = true;
                        return Ok(None);
                    }
                }
            }
        }
    }

    async fn confirm(&mut self, committed: &Position) -> Result<()> {
        let lsn = lsn_of(committed)?;
        if lsn > self.confirmed {
            self.confirmed = lsn;
            if let Some(c) = &self.client {
                c.set_applied(lsn);
            }
        }
        Ok(())
    }

    async fn close(mut self) -> Result<()> {
        if let Some(c) = self.client.take() {
            if let Err(e) = c.shutdown().await {
                tracing::debug!(error = %e, "replication stream ended with an error");
            }
        }
        // The session may not have reported the last confirmed position: move the
        // slot there once the session released it (never past it).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let r = self
                .query
                .client()
                .await?
                .query_opt(
                    "SELECT active, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                    &[&self.slot],
                )
                .await
                .map_err(|e| pg_err(e, "reading the replication slot"))?;
            let Some(r) = r else { return Ok(()) };
            let active: bool = r.get(0);
            let flushed: Option<String> = r.get(1);
            let flushed: Lsn = flushed.and_then(|f| f.parse().ok()).unwrap_or(Lsn::INVALID);
            if flushed >= self.confirmed {
                return Ok(());
            }
            if !active {
                let sql = format!(
                    "SELECT pg_replication_slot_advance($1, '{}'::pg_lsn)",
                    self.confirmed
                );
                if let Err(e) = self
                    .query
                    .client()
                    .await?
                    .execute(&sql, &[&self.slot])
                    .await
                {
                    tracing::debug!(error = %e, "could not advance the replication slot");
                }
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn take_watermarks(&mut self) -> Vec<siphon_core::Watermark> {
        std::mem::take(&mut self.marks_out)
    }

    fn limit_bytes(&mut self, max_bytes: u64) {
        self.max_bytes = max_bytes.max(1);
    }
}
