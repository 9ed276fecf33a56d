//! The model every siphon connector and driver shares, and the contracts between them.
//!
//! Nothing here does I/O: sources, sinks and state stores live in their own crates and
//! meet here through [`Source`], [`Sink`] and [`StateStore`].

mod catalog;
mod change;
mod error;
mod event;
mod position;
mod retention;
mod schema;
mod secret;
mod sink;
mod source;
mod state;
pub mod typemap;
mod value;

pub use catalog::{
    parse_duration, ByteSize, ConflictPolicy, ConflictSpec, CursorSpec, CursorStrategy,
    DeleteDetection, FullStrategy, Lookback, Mode, NewTables, OnLostPosition, Parallel,
    PipelineSpec, Schedule, SchemaOptions, Strategy, TableConfig, TableFilter,
    DEFAULT_SCHEMA_CHECK_INTERVAL,
};
pub use change::{key_bytes, ApplyStats, Batch, Change, ChangeId, Op, Row, Transaction};
pub use error::{random_fraction, retry_policy, Action, Backoff, Error, ErrorKind, Result, Retry};
pub use event::{Delivery, Event, EventSink};
pub use position::{Checkpoint, KeyRange, LegacyKey, Phase, Position, StreamId};
pub use retention::{HistoryRetention, DEFAULT_MAX_RETRIES, DEFAULT_RETRY_DELAY};
pub use schema::{
    Column, DataType, Index, ObjectKind, Partition, Partitioning, SchemaObject, SequenceState,
    TableName, TableSchema, TypeKind,
};
pub use secret::{redact, Secret};
pub use sink::{Sink, SinkCapabilities};
pub use source::{
    ChangeStream, Chunk, LogSource, NativeChunk, NativeFormat, Resume, Source, Watermark,
};
pub use state::{
    CommitLag, Conflict, Execution, ExecutionStatus, Flag, Lease, RowCounts, Side, StateStore,
    StreamState, TableStats,
};
pub use value::{Decimal, Value};
