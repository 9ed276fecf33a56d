//! Change data capture from the binlog (MariaDB GTIDs, MySQL GTID sets, file and position).
//!
//! There is no replication slot: the server keeps its binlogs by its own
//! retention (`expire_logs_days`, `binlog_expire_logs_seconds`), siphon's
//! checkpoint lives in the target, and a pipeline reads the binlog as a
//! replica would, under a `server_id` of its own ([`server_id`]). Positions
//! are described in [`position`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Conn};
use siphon_core::{Error, ErrorKind, Result, Resume, TableName, TableSchema};

use crate::conn::{binlog_err, my_err, Flavor};
use crate::source::MySqlSource;

mod checks;
mod ddl;
mod events;
mod images;
mod log;
mod position;
mod rows;
mod shapes;
mod stream;

pub use position::BinlogPos;
pub use stream::{Known, MySqlChangeStream, Rediscover};

use position::{GtidSet, GtidState};
use rows::ColumnInfo;

/// The `server_id` a pipeline reads the binlog under: a 32-bit FNV-1a hash of
/// its name mapped into 1073741824..=4294967294, far from the small ids
/// servers are usually given. A server serves one reader per `server_id` (a
/// second one with the same id ends the first), so each pipeline has its own,
/// and the same one on every run.
pub fn server_id(pipeline: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in pipeline.as_bytes() {
        h ^= *b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    0x4000_0000 + h % 0xbfff_ffff
}

/// `siphon sync resync PIPELINE`, the command that copies every table of
/// `pipeline` again, with the pipeline's name quoted for a shell when it
/// holds more than letters, digits and `_-.:/@+=,%`. For errors that concern
/// the whole pipeline (its binlog); the engine names the command with
/// `--table` in the errors of a table it stops.
pub(crate) fn resync(pipeline: &str) -> String {
    let plain = !pipeline.is_empty()
        && pipeline
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:/@+=,%".contains(c));
    match plain {
        true => format!("siphon sync resync {pipeline}"),
        false => format!("siphon sync resync '{}'", pipeline.replace('\'', "'\\''")),
    }
}

/// The error of a checkpoint the binlog no longer reaches back to: what
/// happened and how to keep it from happening again. The engine stops the
/// table with an error that names the command copying it again
/// (`siphon sync resync` with the pipeline and `--table`), this as its cause.
fn lost(table: &TableName, why: &str) -> Error {
    Error::new(
        ErrorKind::PositionLost,
        format!(
            "the source's binlog no longer holds the changes since the checkpoint ({why}); keep \
             binlogs longer (binlog_expire_logs_seconds / expire_logs_days) than a pipeline may stop"
        ),
    )
    .table(table)
}

impl MySqlSource {
    async fn binlog_conn(&self) -> Result<Conn> {
        self.config.connect("source").await
    }

    /// The binlog's current file and offset, and with GTIDs the GTID state
    /// (MariaDB: `BINLOG_GTID_POS` of that very point) or executed set
    /// (MySQL: `SHOW MASTER STATUS` gives both at once).
    ///
    /// Every transaction before the point has committed: a read that starts
    /// after this returns sees all of them, and every other is in the binlog
    /// after it. A server writes a transaction to its binlog before it
    /// commits it in the storage engine, so the binlog's end alone may lie
    /// past a transaction not yet visible; MariaDB's point is therefore the
    /// one of a consistent snapshot (`binlog_snapshot_file`/`_position`),
    /// and MySQL's executed set gains a GTID only once it committed.
    pub(crate) async fn binlog_head(&self) -> Result<BinlogPos> {
        let mut conn = self.binlog_conn().await?;
        if self.server.flavor == Flavor::MariaDb {
            let who = format!("{}@{}", self.config.user(), self.config.endpoint());
            return mariadb_snapshot_head(&mut conn, &who).await;
        }
        let row: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
            Ok(r) => r,
            // MySQL 8.4 renamed it.
            Err(mysql_async::Error::Server(s)) if s.code == 1064 => conn
                .query_first("SHOW BINARY LOG STATUS")
                .await
                .map_err(|e| my_err(e, "reading the binlog position"))?,
            Err(e) => return Err(my_err(e, "reading the binlog position")),
        };
        let row = row.ok_or_else(no_binlog)?;
        let set: Option<String> = row.get::<Option<String>, _>(4).flatten();
        Ok(BinlogPos {
            file: row.get(0).unwrap_or_default(),
            pos: row.get(1).unwrap_or_default(),
            gtid_set: set
                .map(|s| s.replace(['\n', ' '], ""))
                .filter(|s| !s.is_empty()),
            gtid: None,
        })
    }

    /// The start checks of a binlog reader, each failing with its fix.
    pub(crate) async fn check_binlog(&self) -> Result<()> {
        let mut conn = self.binlog_conn().await?;
        let vars = checks::variables(&mut conn).await?;
        checks::check_settings(self.server.flavor, &vars)?;
        checks::check_privileges(&mut conn, self.server.flavor, self.config.user()).await
    }

    /// How each column of `tables` is read from the binlog, from
    /// `information_schema` (signedness, ENUM/SET labels, character set).
    pub(crate) async fn known_tables(
        &self,
        tables: &[Arc<TableSchema>],
    ) -> Result<HashMap<TableName, Known>> {
        let mut conn = self.binlog_conn().await?;
        let mut out = HashMap::new();
        for t in tables {
            out.insert(
                t.name.clone(),
                self.known_table(&mut conn, t.clone()).await?,
            );
        }
        Ok(out)
    }

    /// How each column of `table` is read from the binlog: its declared
    /// type (`native_type`, the `COLUMN_TYPE`) gives signedness and labels,
    /// `information_schema` the character set. Columns are taken from the
    /// table's schema, which may be older than the catalog: the binlog may
    /// still hold rows of that shape.
    pub(crate) async fn known_table(
        &self,
        conn: &mut Conn,
        table: Arc<TableSchema>,
    ) -> Result<Known> {
        let db = table
            .name
            .schema
            .clone()
            .or_else(|| self.config.database().map(str::to_string))
            .unwrap_or_default();
        let rows: Vec<(String, Option<String>)> = conn
            .exec(
                "SELECT COLUMN_NAME, CHARACTER_SET_NAME FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (db, table.name.name.clone()),
            )
            .await
            .map_err(|e| my_err(e, "reading the table's columns").table(&table.name))?;
        let charsets: HashMap<String, Option<String>> = rows
            .into_iter()
            .map(|(n, c)| (n.to_ascii_lowercase(), c))
            .collect();
        let columns = table
            .columns
            .iter()
            .map(|col| {
                let native = col.native_type.to_ascii_lowercase();
                let data_type = native
                    .split(['(', ' '])
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let charset = charsets
                    .get(&col.name.to_ascii_lowercase())
                    .cloned()
                    .flatten();
                ColumnInfo::new(col, &data_type, &col.native_type, charset.as_deref())
            })
            .collect();
        Ok(Known {
            schema: table,
            columns,
        })
    }

    /// Opens a binlog reader at `from` for `pipeline`.
    pub(crate) async fn open_binlog<R: Rediscover>(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        from: &siphon_core::Position,
        rediscover: R,
    ) -> Result<MySqlChangeStream<R>> {
        let from = BinlogPos::from_checkpoint(from, pipeline)?;
        let known = self.known_tables(tables).await?;
        let mut conn = self.binlog_conn().await?;
        let own_server: u32 = conn
            .query_first("SELECT @@server_id")
            .await
            .map_err(|e| my_err(e, "reading the source's server_id"))?
            .unwrap_or(0);
        let id = server_id(pipeline);
        let flavor = self.server.flavor;
        let set_err = |e| my_err(e, "setting up the binlog connection");
        let mut request = BinlogStreamRequest::new(id);
        let mysql_sids: Vec<mysql_async::Sid<'static>>;
        let gtid = from.gtid.clone().filter(|g| !g.is_empty());
        let gtid_set = from.gtid_set.clone().filter(|g| !g.is_empty());
        if flavor == Flavor::MariaDb {
            // GTID events as themselves (type 162), not rewritten for old replicas.
            conn.query_drop("SET @mariadb_slave_capability = 4")
                .await
                .map_err(set_err)?;
        }
        match (flavor, &gtid, &gtid_set) {
            (Flavor::MariaDb, Some(g), _) => {
                GtidState::parse(g)?;
                conn.query_drop(format!("SET @slave_connect_state = '{g}'"))
                    .await
                    .map_err(set_err)?;
                conn.query_drop("SET @slave_gtid_strict_mode = 0")
                    .await
                    .map_err(set_err)?;
                conn.query_drop("SET @slave_gtid_ignore_duplicates = 0")
                    .await
                    .map_err(set_err)?;
            }
            (Flavor::MySql, _, Some(s)) => {
                let set = GtidSet::parse(s)?;
                mysql_sids = set
                    .to_string()
                    .split(',')
                    .map(|m| m.parse::<mysql_async::Sid<'static>>())
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| Error::bad_input(format!("the checkpoint's GTID set: {e}")))?;
                request = request.with_gtid().with_gtid_set(mysql_sids);
            }
            _ => {}
        }
        let file_bytes = from.file.clone().into_bytes();
        let by_file = match flavor {
            Flavor::MariaDb => gtid.is_none(),
            Flavor::MySql => gtid_set.is_none(),
        };
        if by_file {
            request = request.with_filename(&file_bytes).with_pos(from.pos.max(4));
        }
        let binlog = conn
            .get_binlog_stream(request)
            .await
            .map_err(|e| binlog_err(e, "starting to read the binlog", pipeline))?;
        tracing::debug!(pipeline, server_id = id, from = ?from, "binlog reading started");
        Ok(MySqlChangeStream {
            pipeline: pipeline.to_string(),
            binlog: Some(binlog),
            source: rediscover,
            flavor,
            own_server,
            zero: self.config.zero_dates(),
            known,
            ids: HashMap::new(),
            shapes: HashMap::new(),
            file: from.file.clone(),
            state: GtidState::parse(gtid.as_deref().unwrap_or(""))?,
            set: GtidSet::parse(gtid_set.as_deref().unwrap_or(""))?,
            committed: from,
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
            fde_seen: false,
            rotate_pending: None,
        })
    }

    /// Whether the binlog still holds everything after `pipeline`'s
    /// checkpoint `from` (see [`siphon_core::LogSource::resume`]); all tables
    /// share one binlog, so they all lose their history together, and
    /// reading then goes on from the binlog's head.
    pub(crate) async fn resume_binlog(
        &self,
        pipeline: &str,
        from: &siphon_core::Position,
        tables: &[TableSchema],
    ) -> Result<Resume> {
        let pos = BinlogPos::from_checkpoint(from, pipeline)?;
        let mut conn = self.binlog_conn().await?;
        let logs: Vec<mysql_async::Row> = conn
            .query("SHOW BINARY LOGS")
            .await
            .map_err(|e| my_err(e, "listing the binlog files"))?;
        let files: Vec<String> = logs.iter().filter_map(|r| r.get::<String, _>(0)).collect();
        let first = files.first().cloned().ok_or_else(|| {
            Error::config("the source has no binlog files: start it with log_bin=ON")
        })?;
        let mut why = None;
        match self.server.flavor {
            Flavor::MariaDb => {
                // The GTID list event that starts the oldest file: the
                // state of every domain before it.
                let events: Vec<mysql_async::Row> = conn
                    .query(format!(
                        "SHOW BINLOG EVENTS IN {} LIMIT 5",
                        crate::conn::literal(&first)
                    ))
                    .await
                    .map_err(|e| my_err(e, "reading the oldest binlog's GTID list"))?;
                let at_first: Option<String> = events
                    .iter()
                    .find(|r| {
                        r.get::<String, _>(2)
                            .is_some_and(|t| t.eq_ignore_ascii_case("Gtid_list"))
                    })
                    .and_then(|r| r.get::<String, _>(5))
                    .map(|info| {
                        info.trim()
                            .trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_string()
                    });
                let at_first = at_first.unwrap_or_default();
                match pos.gtid.as_deref().filter(|g| !g.is_empty()) {
                    Some(g) => {
                        let mine = GtidState::parse(g)?;
                        let theirs = GtidState::parse(&at_first)?;
                        for (d, (s, n)) in &theirs.0 {
                            if mine.seq(*d).is_none_or(|m| m < *n) {
                                why = Some(format!(
                                    "the oldest binlog {first} starts after GTID {d}-{s}-{n}, and the checkpoint is at {}",
                                    mine.0.get(d).map_or_else(|| format!("nothing of domain {d}"), |(ms, mn)| format!("{d}-{ms}-{mn}"))
                                ));
                                break;
                            }
                        }
                    }
                    None => why = file_gone(&pos, &files),
                }
            }
            Flavor::MySql => {
                let purged: Option<String> = conn
                    .query_first("SELECT @@GLOBAL.gtid_purged")
                    .await
                    .map_err(|e| my_err(e, "reading gtid_purged"))?;
                let purged = GtidSet::parse(&purged.unwrap_or_default())?;
                match pos.gtid_set.as_deref().filter(|g| !g.is_empty()) {
                    Some(g) => {
                        if !purged.is_subset(&GtidSet::parse(g)?) {
                            why = Some(format!("@@gtid_purged {purged} holds transactions the checkpoint {g} lacks"));
                        }
                    }
                    None => why = file_gone(&pos, &files),
                }
            }
        }
        Ok(match why {
            None => Resume {
                from: from.clone(),
                lost: Vec::new(),
            },
            // Every table lost its history together (one binlog), so reading
            // goes on from the head: the tables copied again are copied
            // after it, and replaying the binlog that is left would only
            // bring back rows written in the tables' older shapes.
            Some(why) => Resume {
                from: self.binlog_head().await?.to_position(),
                lost: tables
                    .iter()
                    .map(|t| (t.name.clone(), lost(&t.name, &why)))
                    .collect(),
            },
        })
    }
}

/// The error of a server that writes no binlog.
fn no_binlog() -> Error {
    Error::config(
        "the source has no binlog (SHOW MASTER STATUS is empty): start it with log_bin=ON, \
         binlog_format=ROW and binlog_row_image=FULL",
    )
}

/// The binlog file offset past which [`mariadb_snapshot_head`] starts a new
/// binlog file before it takes its point: `BINLOG_GTID_POS` reads the file
/// from its start up to the point, which takes seconds for hundreds of MiB
/// on a slow or cold disk.
const ROTATE_ABOVE: u64 = 16 << 20;

/// The users (`user@server`) this process was refused `FLUSH BINARY LOGS`
/// for: not asked again, and said once.
static ROTATE_REFUSED: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

/// MariaDB's binlog point of a consistent snapshot taken now, with the GTID
/// state there (see [`MySqlSource::binlog_head`]): `BINLOG_GTID_POS` of the
/// snapshot's very file and offset.
///
/// `BINLOG_GTID_POS` reads the binlog file from its start up to the offset,
/// seconds for a file of hundreds of MiB on a slow or cold disk. So when the snapshot's offset is
/// past [`ROTATE_ABOVE`] and the user may (`RELOAD` or `BINLOG ADMIN`),
/// `FLUSH BINARY LOGS` starts a new file first and a new snapshot is taken,
/// whose offset in that new file is small. No lock is held: the snapshot
/// only says where the binlog stands, and the GTID state is still read at
/// exactly that point. Without the privilege the whole file is read, as
/// before, and a warning says once what to grant.
async fn mariadb_snapshot_head(conn: &mut Conn, who: &str) -> Result<BinlogPos> {
    let refused = || {
        ROTATE_REFUSED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let (file, pos) = mariadb_snapshot_point(conn).await?;
    let (file, pos) = match pos > ROTATE_ABOVE && !refused().contains(who) {
        false => (file, pos),
        true => match conn.query_drop("FLUSH BINARY LOGS").await {
            Ok(()) => mariadb_snapshot_point(conn).await?,
            Err(e) => {
                if refused().insert(who.to_string()) {
                    tracing::warn!(
                        error = %e,
                        file = %file,
                        offset = pos,
                        "could not start a new binlog file (FLUSH BINARY LOGS) before reading the \
                         GTID position of the snapshot, so the server reads the whole current file \
                         for it, which takes seconds on a big file; grant the source's user RELOAD \
                         (MariaDB 10.5.2 and later: BINLOG ADMIN) to make it fast"
                    );
                }
                (file, pos)
            }
        },
    };
    let gtid: Option<String> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file.clone(), pos))
        .await
        .map_err(|e| my_err(e, "reading the binlog's GTID position"))?;
    Ok(BinlogPos {
        gtid: gtid.filter(|g| !g.is_empty()),
        gtid_set: None,
        file,
        pos,
    })
}

/// MariaDB's binlog file and offset of a consistent snapshot taken now
/// (`binlog_snapshot_file`/`_position`); the snapshot is ended at once.
async fn mariadb_snapshot_point(conn: &mut Conn) -> Result<(String, u64)> {
    let err = |e| my_err(e, "reading the binlog position");
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        .await
        .map_err(err)?;
    let vars: Vec<(String, String)> = conn
        .query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(err)?;
    conn.query_drop("COMMIT").await.map_err(err)?;
    let var = |name: &str| {
        vars.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let file = var("binlog_snapshot_file");
    if file.is_empty() {
        return Err(no_binlog());
    }
    let pos: u64 = var("binlog_snapshot_position").parse().map_err(|_| {
        Error::internal(format!(
            "the server's binlog_snapshot_position {:?} is not a number",
            var("binlog_snapshot_position")
        ))
    })?;
    Ok((file, pos))
}

/// Why a file-and-offset checkpoint can no longer be read on, if it cannot.
fn file_gone(pos: &BinlogPos, files: &[String]) -> Option<String> {
    if files.contains(&pos.file) {
        return None;
    }
    Some(format!(
        "its binlog file {} was purged; the oldest is {}",
        pos.file,
        files.first().map(String::as_str).unwrap_or("none")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_are_stable_distinct_and_out_of_the_usual_range() {
        let a = server_id("orders");
        assert_eq!(a, server_id("orders"));
        assert_ne!(a, server_id("orders2"));
        for p in ["", "a", "orders", &"x".repeat(500)] {
            let id = server_id(p);
            assert!((0x4000_0000..u32::MAX).contains(&id), "{id}");
        }
    }

    #[test]
    fn purged_files_are_found() {
        let pos = BinlogPos {
            file: "b.000001".into(),
            pos: 300,
            ..BinlogPos::default()
        };
        assert!(file_gone(&pos, &["b.000001".into(), "b.000002".into()]).is_none());
        assert!(file_gone(&pos, &["b.000002".into()])
            .unwrap()
            .contains("b.000002"));
    }
}
