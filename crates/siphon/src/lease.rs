//! A run holds its pipeline's lease while it works on it: it waits while another
//! live worker holds it, renews it well before it expires, stops the pipeline's
//! pass when a renewal finds it lost, and releases it on a graceful stop.

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use siphon_core::{Error, ErrorKind, Lease, Result, StateStore};
use siphon_engine::Shutdown;

use crate::run::RunEvents;

/// How long a lease holds without renewal when `SIPHON_LEASE_TTL` is not set.
/// A worker that dies is replaced within about this long.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// The environment variable that sets the lease time (`30s`, `5s`, `2m`).
pub const LEASE_TTL_ENV: &str = "SIPHON_LEASE_TTL";

/// The lease time: `SIPHON_LEASE_TTL` when set, else [`DEFAULT_LEASE_TTL`].
/// Fails with [`ErrorKind::Config`] when it is not a duration of at least a
/// second (shorter leases would expire between two renewals of a busy worker).
pub fn lease_ttl() -> Result<Duration> {
    let Ok(written) = std::env::var(LEASE_TTL_ENV) else {
        return Ok(DEFAULT_LEASE_TTL);
    };
    let ttl = siphon_core::parse_duration(&written)
        .map_err(|e| Error::config(format!("{LEASE_TTL_ENV}: {e}")))?;
    if ttl < Duration::from_secs(1) {
        return Err(Error::config(format!(
            "{LEASE_TTL_ENV} is `{written}`: a lease must last at least 1s; write `30s` or more"
        )));
    }
    Ok(ttl)
}

/// This process's name as a lease holder: `hostname:pid:random`, the same for
/// every pipeline it runs, and different for every process, even one that
/// reuses a dead process's pid.
pub fn holder_id() -> &'static str {
    static HOLDER: OnceLock<String> = OnceLock::new();
    HOLDER.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        let random = uuid_like();
        format!("{host}:{}:{random}", std::process::id())
    })
}

/// Eight hex digits that differ between processes: the clock's nanoseconds
/// mixed with the address of a fresh allocation (randomised by the OS).
fn uuid_like() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_usize(Box::into_raw(Box::new(0u8)) as usize);
    format!("{:08x}", h.finish() as u32)
}

/// When a lease expires, to the second, as log lines and errors show it.
pub(crate) fn shown(lease: &Lease) -> String {
    lease.expires_at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Whether `holder` names a process of this machine that no longer runs:
/// same host name as this process, and its pid gone (or a zombie) from
/// `/proc`. `false` wherever that cannot be known.
fn died_here(holder: &str) -> bool {
    let mut parts = holder.split(':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    let ours = holder_id();
    if ours.split(':').next() != Some(host) || ours == holder {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if !std::path::Path::new("/proc/self/stat").exists() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// How often a held lease is renewed: a third of its time, so that two
/// renewals may fail (a busy state store) before it expires.
fn renew_every(ttl: Duration) -> Duration {
    ttl / 3
}

/// How often a waiting run asks for the lease again: often enough to take a
/// dead holder's lease soon after it expired.
fn ask_every(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// Waits for the pipeline's lease. `None` when a stop was requested first.
/// With `wait`, fails with [`ErrorKind::LeaseLost`] once it waited that long
/// for another holder.
pub(crate) async fn acquire<St: StateStore>(
    state: &St,
    pipeline: &str,
    ttl: Duration,
    shutdown: &Shutdown,
    wait: Option<Duration>,
    events: &mut dyn RunEvents,
) -> Result<Option<Lease>> {
    let holder = holder_id();
    let started = Instant::now();
    let mut told = false;
    let mut failed = false;
    loop {
        if shutdown.requested() {
            return Ok(None);
        }
        match state.acquire_lease(pipeline, holder, ttl).await {
            Ok(Some(lease)) => {
                if told {
                    tracing::warn!(
                        pipeline,
                        epoch = lease.epoch,
                        "took over the pipeline's lease; this worker runs it now"
                    );
                } else {
                    tracing::info!(
                        pipeline,
                        epoch = lease.epoch,
                        holder,
                        "holds the pipeline's lease"
                    );
                }
                return Ok(Some(lease));
            }
            Ok(None) => {
                let current = state.lease(pipeline).await.ok().flatten();
                if let Some(dead) = current.as_ref().filter(|l| died_here(&l.holder)) {
                    // A process of this machine that is gone holds it (killed,
                    // crashed): no need to wait out its lease time. The release
                    // changes nothing if it was renewed or taken meanwhile.
                    tracing::warn!(pipeline, holder = %dead.holder, "the lease's holder, a process of this machine, is gone; taking the lease over");
                    if state.release_lease(dead).await.is_ok() {
                        told = true;
                        continue;
                    }
                }
                if !told {
                    events.waiting_for_lease(pipeline, current.as_ref());
                    told = true;
                }
                if let Some(wait) = wait.filter(|w| started.elapsed() >= *w) {
                    let by = match &current {
                        Some(l) => format!("{} (until {})", l.holder, shown(l)),
                        None => "another worker".to_string(),
                    };
                    return Err(Error::new(
                        ErrorKind::LeaseLost,
                        format!(
                            "not run: {by} holds the pipeline's lease, and this run waited {}s, \
                             the lease time, for it; stop the other `siphon run`, or run again once \
                             it is done",
                            wait.as_secs()
                        ),
                    ));
                }
            }
            Err(e) => {
                // The store being busy or away is no reason to give up waiting.
                if !failed {
                    tracing::warn!(pipeline, error = %e, "could not ask for the pipeline's lease; asking again");
                    failed = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(ask_every(ttl)) => {}
            _ = shutdown.stopped() => {}
        }
    }
}

/// A lease this run holds, and the stop request of the work done under it.
pub(crate) struct Held<'a, St> {
    state: &'a St,
    lease: Lease,
    ttl: Duration,
    stop: Shutdown,
    lost: bool,
    /// When the lease was last renewed (or taken): the next renewal is due a
    /// third of its time later, however many pieces of work ran since.
    renewed: tokio::time::Instant,
}

impl<'a, St: StateStore> Held<'a, St> {
    /// Holds `lease`; the work under it stops when `shutdown` is requested or
    /// the lease is lost.
    pub(crate) fn new(state: &'a St, lease: Lease, ttl: Duration, shutdown: &Shutdown) -> Self {
        Held {
            state,
            lease,
            ttl,
            stop: shutdown.child(),
            lost: false,
            renewed: tokio::time::Instant::now(),
        }
    }

    /// The epoch the checkpoints written under this lease carry.
    pub(crate) fn epoch(&self) -> u64 {
        self.lease.epoch
    }

    /// The stop request of the work under this lease.
    pub(crate) fn stop(&self) -> &Shutdown {
        &self.stop
    }

    /// Whether the lease was lost: another worker may run the pipeline now.
    pub(crate) fn lost(&self) -> bool {
        self.lost
    }

    /// Notes that the lease is lost (a target refused a checkpoint as fenced),
    /// and stops the work under it.
    pub(crate) fn mark_lost(&mut self) {
        self.lost = true;
        self.stop.request();
    }

    /// Runs `work`, renewing the lease meanwhile. When a renewal finds the
    /// lease lost, or cannot renew it before it expires, the work is asked to
    /// stop, and this waits for it to end. Renewals keep their pace across
    /// calls: a run of short pieces of work (a quick pass, then a pause, each
    /// shorter than the pace) still renews the lease in time. The work goes
    /// on while a renewal waits for the state store: it may hold the store's
    /// one connection that the renewal needs.
    pub(crate) async fn keep<F: Future>(&mut self, work: F) -> F::Output {
        let mut work = std::pin::pin!(work);
        loop {
            let due = tokio::time::sleep_until(self.renewed + renew_every(self.ttl));
            tokio::select! {
                out = &mut work => return out,
                _ = due, if !self.lost => {}
            }
            self.renewed = tokio::time::Instant::now();
            let (state, lease) = (self.state, self.lease.clone());
            let renewal = state.renew_lease(&lease, self.ttl);
            let renewed = tokio::select! {
                out = &mut work => return out,
                r = renewal => r,
            };
            self.renewed_with(renewed);
        }
    }

    fn renewed_with(&mut self, renewed: Result<Option<Lease>>) {
        match renewed {
            Ok(Some(lease)) => self.lease = lease,
            Ok(None) => {
                tracing::warn!(
                    pipeline = %self.lease.pipeline,
                    epoch = self.lease.epoch,
                    "lost the pipeline's lease to another worker; this worker stops the pipeline"
                );
                self.mark_lost();
            }
            Err(e) if chrono::Utc::now() >= self.lease.expires_at => {
                tracing::warn!(
                    pipeline = %self.lease.pipeline,
                    error = %e,
                    "could not renew the pipeline's lease before it expired; this worker stops the pipeline"
                );
                self.mark_lost();
            }
            Err(e) => {
                tracing::warn!(pipeline = %self.lease.pipeline, error = %e, "could not renew the pipeline's lease; trying again");
            }
        }
    }

    /// Moves this holding to an epoch above `above`, when the state store still
    /// grants it to this worker: gives the lease up and takes it again, each
    /// time under the next epoch, so no epoch is ever granted twice. For a
    /// target whose checkpoints carry an epoch this store never granted (the
    /// store was deleted or reset since): the holder that wrote them is gone
    /// from this store, and the raised epoch fences it out on the target too.
    /// `false`, with the lease marked lost, when another worker took the lease
    /// meanwhile or the store failed.
    pub(crate) async fn raise_epoch(&mut self, above: u64) -> bool {
        while self.lease.epoch <= above {
            let (pipeline, holder) = (self.lease.pipeline.clone(), self.lease.holder.clone());
            let taken = match self.state.release_lease(&self.lease).await {
                Ok(()) => self.state.acquire_lease(&pipeline, &holder, self.ttl).await,
                Err(e) => Err(e),
            };
            match taken {
                Ok(Some(lease)) if lease.epoch > self.lease.epoch => {
                    self.lease = lease;
                    self.renewed = tokio::time::Instant::now();
                }
                Ok(_) => {
                    self.mark_lost();
                    return false;
                }
                Err(e) => {
                    tracing::warn!(pipeline = %pipeline, error = %e, "could not take the pipeline's lease under a newer epoch; this worker stops the pipeline");
                    self.mark_lost();
                    return false;
                }
            }
        }
        true
    }

    /// The error a pass cut short by the loss of the lease ends with.
    pub(crate) fn lost_error(&self) -> Error {
        Error::new(
            ErrorKind::LeaseLost,
            format!(
                "this worker lost the pipeline's lease (epoch {}) to another worker, and \
                 stopped; what it committed stays",
                self.lease.epoch
            ),
        )
    }

    /// Gives the lease up (when still held), so that another worker takes
    /// over at once.
    pub(crate) async fn release(self) {
        if self.lost {
            return;
        }
        if let Err(e) = self.state.release_lease(&self.lease).await {
            tracing::warn!(pipeline = %self.lease.pipeline, error = %e, "could not release the pipeline's lease; another worker takes it once it expires");
        }
    }
}
