//! The Redis key layout. With prefix `P`:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `P:connections` | hash | connection name → URL as written |
//! | `P:pipelines` | hash | pipeline name → its spec (JSON) |
//! | `P:enabled:{table}` | string | `"true"` / `"false"`: the operator's switch of a table, in every pipeline |
//! | `P:force_full_load:{table}` | string | `"true"`: reload the table; deleted when taken |
//! | `P:flags:{pipeline}` | hash | `enabled:{table}`, `force_full_load:{table}` → `"true"` / `"false"`: one pipeline's own switches |
//! | `P:states:{pipeline}` | hash | table → its stream state (JSON) |
//! | `P:state_pipelines` | set | pipelines that have stream states |
//! | `P:checkpoints:{pipeline}` | hash | table → its checkpoint (JSON) |
//! | `P:commit_lags:{pipeline}` | hash | table → when the source committed the newest logged change its checkpoint covers and when the target did (JSON) |
//! | `P:lag_pipelines` | set | pipelines that have commit lags |
//! | `P:execution_id`, `P:conflict_id` | string | counters of ids |
//! | `P:execution:{id}` | hash | `pipeline`, `started_at`, `finished_at`, `status`, `error`, `retained_log_bytes`, `table:{table}` → statistics (JSON) |
//! | `P:executions`, `P:executions_of:{pipeline}` | sorted set | execution ids |
//! | `P:conflict:{id}` | hash | `pipeline`, `table`, `key`, `source_row`, `target_row`, `detected_at`, `resolved_at`, `resolution` |
//! | `P:conflicts`, `P:conflicts_of:{pipeline}` | sorted set | conflict ids |
//! | `P:lease:{pipeline}` | string, with a time to live | the live lease (JSON: holder, epoch, expires_ms) |
//! | `P:lease_epoch:{pipeline}` | hash | `epoch` (the newest, only ever incremented), `holder` (its holder; empty once released) |
//!
//! `{table}` is the table's key ([`siphon_core::TableName::key`]: `User`,
//! `public.users`, `"a.b"."c"`). The operator's switches are also read under
//! the table's bare name (`P:enabled:User` for `dbo.User`).

use siphon_core::{Flag, StreamId, TableName};

/// The prefix when the URL names none.
pub const DEFAULT_PREFIX: &str = "siphon";

/// Builds the keys of one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    pub(super) fn connections(&self) -> String {
        self.key("connections")
    }

    pub(super) fn pipelines(&self) -> String {
        self.key("pipelines")
    }

    /// One pipeline's own switches.
    pub(super) fn flags(&self, pipeline: &str) -> String {
        self.key(&format!("flags:{pipeline}"))
    }

    /// The field of a stream's switch in [`Keys::flags`].
    pub(super) fn flag_field(stream: &StreamId, flag: Flag) -> String {
        format!("{}:{}", flag.as_str(), stream.table.key())
    }

    /// The operator's switches of a table, as the original tool named them:
    /// under the table's key, then under its bare name when that differs.
    pub(super) fn table_switches(&self, table: &TableName, flag: Flag) -> Vec<String> {
        let mut names = vec![table.key()];
        if table.schema.is_some() && !names.contains(&table.name) {
            names.push(table.name.clone());
        }
        names
            .into_iter()
            .map(|n| self.key(&format!("{}:{n}", flag.as_str())))
            .collect()
    }

    pub(super) fn states(&self, pipeline: &str) -> String {
        self.key(&format!("states:{pipeline}"))
    }

    pub(super) fn state_pipelines(&self) -> String {
        self.key("state_pipelines")
    }

    pub(super) fn checkpoints(&self, pipeline: &str) -> String {
        self.key(&format!("checkpoints:{pipeline}"))
    }

    /// When the source committed the newest logged change each table's
    /// checkpoint covers, and when the target committed it.
    pub(super) fn commit_lags(&self, pipeline: &str) -> String {
        self.key(&format!("commit_lags:{pipeline}"))
    }

    pub(super) fn lag_pipelines(&self) -> String {
        self.key("lag_pipelines")
    }

    pub(super) fn execution_id(&self) -> String {
        self.key("execution_id")
    }

    /// What an execution's key starts with; its id follows.
    pub(super) fn execution_base(&self) -> String {
        self.key("execution:")
    }

    pub(super) fn execution(&self, id: u64) -> String {
        format!("{}{id}", self.execution_base())
    }

    pub(super) fn executions(&self) -> String {
        self.key("executions")
    }

    pub(super) fn executions_of(&self, pipeline: &str) -> String {
        self.key(&format!("executions_of:{pipeline}"))
    }

    pub(super) fn conflict_id(&self) -> String {
        self.key("conflict_id")
    }

    pub(super) fn conflict(&self, id: u64) -> String {
        format!("{}{id}", self.conflict_base())
    }

    /// What a conflict's key starts with; its id follows.
    pub(super) fn conflict_base(&self) -> String {
        self.key("conflict:")
    }

    pub(super) fn conflicts(&self) -> String {
        self.key("conflicts")
    }

    pub(super) fn conflicts_of(&self, pipeline: &str) -> String {
        self.key(&format!("conflicts_of:{pipeline}"))
    }

    pub(super) fn lease(&self, pipeline: &str) -> String {
        self.key(&format!("lease:{pipeline}"))
    }

    pub(super) fn lease_epoch(&self, pipeline: &str) -> String {
        self.key(&format!("lease_epoch:{pipeline}"))
    }
}

/// A switch's value as stored: `"true"` / `"false"`.
pub(super) fn switch_text(value: bool) -> &'static str {
    if value {
        "true"
    } else {
        "false"
    }
}

/// A switch's value as an operator may have written it; `None` for text
/// that says neither.
pub(super) fn parse_switch(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_keep_the_original_tools_key_shapes() {
        let k = Keys::new("mssql_sync");
        let user = TableName::new(None, "User");
        assert_eq!(
            k.table_switches(&user, Flag::Enabled),
            ["mssql_sync:enabled:User"]
        );
        let product = TableName::new(Some("dbo"), "Product");
        assert_eq!(
            k.table_switches(&product, Flag::ForceFullLoad),
            [
                "mssql_sync:force_full_load:dbo.Product",
                "mssql_sync:force_full_load:Product"
            ]
        );
        let s = StreamId::new("p", &product);
        assert_eq!(Keys::flag_field(&s, Flag::Enabled), "enabled:dbo.Product");
        assert_eq!(k.flags("p"), "mssql_sync:flags:p");
    }

    #[test]
    fn switch_values_read_as_operators_write_them() {
        assert_eq!(parse_switch("true"), Some(true));
        assert_eq!(parse_switch(" TRUE "), Some(true));
        assert_eq!(parse_switch("false"), Some(false));
        assert_eq!(parse_switch("0"), Some(false));
        assert_eq!(parse_switch("ture"), None);
        assert_eq!(switch_text(true), "true");
    }
}
