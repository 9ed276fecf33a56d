//! The engine owns the replication loop; connectors only read and apply.
//!
//! For each table stream of a pipeline the engine reads the target's checkpoint,
//! decides the phase (snapshot or stream), asks the source for the next chunk or
//! changes, hands them to the sink with the checkpoint they reach, and records the
//! result in the state store. It knows connectors only through siphon-core's traits.

mod budget;
mod capability;
mod cdc;
mod checksum;
mod events;
mod evolve;
mod full;
mod history;
mod incremental;
mod observer;
mod pass;
mod retry;
mod row_count;
mod schedule;
mod schema_check;
mod snapshot;
pub mod telemetry;

pub use capability::check_target;
pub use cdc::{drop_log, log_stream, LogSession};
pub use checksum::{table_checksum, TableChecksum};
pub use events::EventTarget;
pub use observer::{NoopObserver, Observer, Shutdown};
pub use pass::{follow_log_pass, run_log_pass, run_pass, PassReport, NO_EXECUTION};
pub use retry::{clear_attempts, failed_state, next_retry_at, retry_delay, run_afresh};
pub use schedule::{next_delay, validate_schedule};
