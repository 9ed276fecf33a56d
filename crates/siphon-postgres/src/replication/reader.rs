//! The replication session's background task: reads the copy stream,
//! forwards events and reports status to the server.

use super::*;

/// The background task: reads the copy stream, forwards events, reports status.
pub(super) struct Reader {
    pub(super) conn: Conn,
    pub(super) tx: mpsc::Sender<Item>,
    /// The bytes of the events read and not taken by the caller yet.
    pub(super) queued: Arc<Queued>,
    /// See [`ReplicationConfig::buffer_bytes`].
    pub(super) budget: usize,
    pub(super) applied: Arc<AtomicU64>,
    pub(super) interval: Duration,
    /// How long the server may send nothing; see [`ReplicationConfig::timeout`].
    pub(super) silence: Option<Duration>,
    pub(super) slot: String,
}

/// What woke the copy loop up, besides a message.
enum Wake {
    Nothing,
    StatusDue,
    /// Half the silence allowed has passed: ask the server for a reply.
    Ping,
    /// The whole silence allowed has passed.
    Silent(Duration),
}

/// Why the copy loop stopped.
enum Stop {
    /// The caller asked for it; answer there.
    Requested(oneshot::Sender<Result<()>>),
    /// The server ended the copy.
    ServerDone,
    /// The caller dropped the receiver.
    Gone,
}

impl Reader {
    pub(super) async fn run(mut self, stop: oneshot::Receiver<oneshot::Sender<Result<()>>>) {
        match self.copy(stop).await {
            Ok(Stop::Requested(reply)) => {
                let result = self.finish(true).await;
                let _ = reply.send(result);
            }
            Ok(Stop::ServerDone) => {
                let item = match self.finish(false).await {
                    Ok(()) => Item::End,
                    Err(e) => Item::Failed(e),
                };
                let _ = self.tx.send(item).await;
            }
            Ok(Stop::Gone) => {}
            Err(e) => {
                tracing::debug!(slot = %self.slot, error = %e, "replication session failed");
                let _ = self.tx.send(Item::Failed(e)).await;
            }
        }
    }

    /// Queues a standby status update reporting the applied position.
    fn queue_status(&mut self, reply: bool) -> Result<()> {
        let applied = Lsn(self.applied.load(Ordering::Acquire));
        let time = postgres_timestamp(SystemTime::now());
        let body = standby_status_update(applied, applied, applied, time, reply);
        frontend::CopyData::new(&body[..])
            .map_err(protocol_err)?
            .write(&mut self.conn.wbuf);
        Ok(())
    }

    async fn send_status(&mut self) -> Result<()> {
        self.queue_status(false)?;
        self.conn.send("sending a status update").await
    }

    /// Sends a status update that asks the server to answer at once.
    async fn ping(&mut self) -> Result<()> {
        self.queue_status(true)?;
        self.conn.send("asking the server for a reply").await
    }

    /// Streams until the caller or the server stops it.
    async fn copy(
        &mut self,
        mut stop: oneshot::Receiver<oneshot::Sender<Result<()>>>,
    ) -> Result<Stop> {
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + self.interval, self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // An event read but not yet passed on: nothing more is read meanwhile,
        // so at most `buffer + 1` events are held. Nor is anything read while
        // the events not taken hold `budget` bytes or more.
        let mut pending: Option<Event> = None;
        // Silence is counted only while reading: not while the caller is
        // slow to take events (the server's messages then wait in the socket).
        let mut heard = tokio::time::Instant::now();
        let mut pinged = false;
        loop {
            while pending.is_none() {
                let Some(message) = self.conn.next_buffered()? else {
                    break;
                };
                match self.handle(message).await? {
                    Handled::Event(event) => {
                        self.queued.add(&event);
                        pending = Some(event);
                    }
                    Handled::Nothing => {}
                    Handled::ServerDone => return Ok(Stop::ServerDone),
                }
            }
            let tx = &self.tx;
            let conn = &mut self.conn;
            let silence = self.silence;
            let queued = &self.queued;
            let full = pending.is_none() && queued.full(self.budget);
            let reading = pending.is_none() && !full;
            let alarm = silence.map(|limit| heard + if pinged { limit } else { limit / 2 });
            let wake = tokio::select! {
                biased;
                reply = &mut stop => {
                    return Ok(match reply {
                        Ok(reply) => Stop::Requested(reply),
                        // The stream was dropped (the abort follows).
                        Err(_) => Stop::Gone,
                    });
                }
                _ = ticker.tick() => Wake::StatusDue,
                permit = tx.reserve(), if pending.is_some() => match permit {
                    Ok(permit) => {
                        permit.send(Item::Event(pending.take().expect("checked")));
                        heard = tokio::time::Instant::now();
                        Wake::Nothing
                    }
                    Err(_) => return Ok(Stop::Gone),
                },
                _ = queued.taken.notified(), if full => {
                    heard = tokio::time::Instant::now();
                    Wake::Nothing
                }
                read = conn.fill(), if reading => {
                    read?;
                    heard = tokio::time::Instant::now();
                    pinged = false;
                    Wake::Nothing
                }
                _ = sleep_until(alarm), if alarm.is_some() && reading => match silence {
                    Some(limit) if pinged => Wake::Silent(limit),
                    _ => Wake::Ping,
                },
            };
            match wake {
                Wake::Nothing => {}
                Wake::StatusDue => self.send_status().await?,
                Wake::Ping => {
                    tracing::debug!(slot = %self.slot, "the server is silent; asking it for a reply");
                    self.ping().await?;
                    pinged = true;
                }
                Wake::Silent(limit) => {
                    return Err(self
                        .conn
                        .silent(limit, &format!("streaming from slot {:?}", self.slot)))
                }
            }
        }
    }

    /// Handles one message of the copy stream.
    async fn handle(&mut self, message: Backend) -> Result<Handled> {
        use backend::Message as M;
        match message {
            Backend::Message(M::CopyData(body)) => {
                // The message's own bytes, not a copy (see `parse_backend`).
                match decode_replication_message(body.into_bytes()).map_err(protocol_err)? {
                    ReplicationMessage::XLogData {
                        start,
                        end,
                        time,
                        payload,
                    } => Ok(Handled::Event(Event::Data {
                        wal_start: start,
                        wal_end: end,
                        server_time: time,
                        data: payload,
                    })),
                    ReplicationMessage::Keepalive { end, time, reply } => {
                        if reply {
                            self.send_status().await?;
                        }
                        Ok(Handled::Event(Event::KeepAlive {
                            wal_end: end,
                            server_time: time,
                            reply_requested: reply,
                        }))
                    }
                }
            }
            Backend::Message(M::CopyDone) => Ok(Handled::ServerDone),
            Backend::Message(M::ErrorResponse(body)) => Err(ServerError::parse(body.fields())
                .into_error(
                    &format!("the server ended replication from slot {:?}", self.slot),
                    &self.slot,
                )),
            Backend::Message(M::NoticeResponse(body)) => {
                tracing::debug!(slot = %self.slot, notice = %ServerError::parse(body.fields()), "server notice");
                Ok(Handled::Nothing)
            }
            Backend::Message(M::ParameterStatus(_)) => Ok(Handled::Nothing),
            other => Err(protocol_err(format!("{other:?} during replication"))),
        }
    }

    /// Ends the copy and the session. `ours`: the caller asked (so send a last
    /// status update and CopyDone, then discard data until the server's
    /// CopyDone); else the server already sent CopyDone and is answered.
    async fn finish(&mut self, ours: bool) -> Result<()> {
        use backend::Message as M;
        if ours {
            self.queue_status(false)?;
        }
        frontend::copy_done(&mut self.conn.wbuf);
        self.conn.send("ending the replication copy").await?;
        loop {
            match self.conn.read().await? {
                // Data in flight is discarded. PostgreSQL may send a last
                // keepalive even after its own CopyDone.
                Backend::Message(M::CopyData(_) | M::CopyDone) => {}
                Backend::Message(
                    M::CommandComplete(_) | M::NoticeResponse(_) | M::ParameterStatus(_),
                ) => {}
                // A copy that ended in the middle of a result set
                // (START_REPLICATION may answer with one before ReadyForQuery).
                Backend::Message(M::RowDescription(_) | M::DataRow(_)) => {}
                Backend::Message(M::ErrorResponse(body)) => {
                    return Err(ServerError::parse(body.fields()).into_error(
                        &format!("ending replication from slot {:?}", self.slot),
                        &self.slot,
                    ))
                }
                Backend::Message(M::ReadyForQuery(_)) => break,
                other => return Err(protocol_err(format!("{other:?} while ending the copy"))),
            }
        }
        frontend::terminate(&mut self.conn.wbuf);
        // The server closes the connection on Terminate; a failure to say
        // goodbye changes nothing.
        let _ = self.conn.flush().await;
        let _ = self.conn.io.shutdown().await;
        Ok(())
    }
}

enum Handled {
    Event(Event),
    Nothing,
    ServerDone,
}

/// Sleeps until `at`; never wakes without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
