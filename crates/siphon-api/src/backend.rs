//! What the API asks of the program that serves it: the parts only the CLI
//! knows (its config format, how it opens and tests connections, the status
//! document, the table switches and the supervisor it runs).

use serde::Serialize;
use siphon_core::{PipelineSpec, Result};
use utoipa::ToSchema;

use crate::store::BoxFuture;

/// A table switch the API flips, as `siphon sync enable|disable|resync NAME --table T` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TableAction {
    /// Resumes a paused table.
    Enable,
    /// Pauses a table.
    Disable,
    /// Makes the table's next run copy it again from scratch.
    Resync,
}

impl TableAction {
    /// The action named in a route (`enable`, `disable`, `resync`).
    pub fn parse(s: &str) -> Option<TableAction> {
        match s {
            "enable" => Some(TableAction::Enable),
            "disable" => Some(TableAction::Disable),
            "resync" => Some(TableAction::Resync),
            _ => None,
        }
    }

    /// The action's name, as in its route.
    pub fn as_str(self) -> &'static str {
        match self {
            TableAction::Enable => "enable",
            TableAction::Disable => "disable",
            TableAction::Resync => "resync",
        }
    }
}

/// What testing a connection found.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectionTest {
    /// The connection's name.
    pub name: String,
    /// Whether siphon opened it (`false` too for an event target, which is
    /// opened when a pipeline writes to it).
    pub reachable: bool,
    /// Why it could not be opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The report `siphon connection test NAME --json` prints: the server and
    /// its version, what the connection can be, and each setting and
    /// privilege replication needs there (`ok`, and the `fix` when missing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
}

/// What asking a pipeline to run now did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunStarted {
    /// The pipeline's name.
    pub pipeline: String,
    /// `started` (a pass begins now), `running` (a pass is running already:
    /// nothing else is started) or `continuous` (the pipeline streams all the
    /// time: there is no next pass to bring forward).
    pub run: String,
    /// The execution of the pass that runs, when one runs already.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution: Option<u64>,
    /// What happens next, in words.
    pub detail: String,
}

/// The program behind the API. Every method fails with a
/// [`siphon_core::Error`] whose kind says which HTTP status answers it
/// (`config` and `bad_input`: 400; connection-level kinds: 502; `state`: 503;
/// others: 500). Names the API checked exist before calling: a missing one is
/// answered 404 by the API itself.
pub trait Backend: Send + Sync {
    /// The URL to store for connection `name` as the client wrote it, checked
    /// (a known scheme, no unknown `${VAR}` syntax; relative SQLite paths
    /// made absolute from the service's working folder), and checked against
    /// the stored pipelines that use the connection.
    fn check_connection<'a>(&'a self, name: &'a str, url: &'a str)
        -> BoxFuture<'a, Result<String>>;
    /// A stored URL with its secrets hidden, as `siphon connection list` shows it.
    fn mask(&self, url: &str) -> String;
    /// Opens the stored connection `name` and checks what replication needs
    /// there, as `siphon connection test` does; an unreachable server is a
    /// report with `reachable: false` and the reason, not an error.
    fn test_connection<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<ConnectionTest>>;
    /// A pipeline from a JSON body of the config file's shape (a pipeline's
    /// entry under `pipelines:`), checked as `siphon apply` checks it,
    /// against the stored connections.
    fn parse_pipeline<'a>(
        &'a self,
        name: &'a str,
        body: serde_json::Value,
    ) -> BoxFuture<'a, Result<PipelineSpec>>;
    /// Removes a stored pipeline as `siphon sync remove NAME --yes` does
    /// (replication slot and publication dropped, the target's checkpoints
    /// forgotten); what it did, line by line.
    fn remove_pipeline<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<String>>>;
    /// Flips a table switch of a stored pipeline; the table is named as
    /// `--table` names it. Returns the streams it set (`pipeline/schema.table`).
    fn table_action<'a>(
        &'a self,
        pipeline: &'a str,
        table: &'a str,
        action: TableAction,
    ) -> BoxFuture<'a, Result<Vec<String>>>;
    /// Brings a stored pipeline's next pass forward to now.
    fn run_now<'a>(&'a self, pipeline: &'a str) -> BoxFuture<'a, Result<RunStarted>>;
    /// Says the catalog changed, so that the service reads it at once.
    fn catalog_changed(&self);
    /// The document `siphon status --json` prints.
    fn status(&self) -> BoxFuture<'_, Result<serde_json::Value>>;
}
