//! Connections and pipelines built in code, as `siphon.yaml` would declare them.

use siphon_core::{Error, Mode, OnLostPosition, PipelineSpec, Result, Schedule};

use crate::url::ConnectionUrl;

/// A named database endpoint. Its URL is kept as written: a `${VAR}` in it is
/// read from the environment only when the connection is opened, so secrets
/// are never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Connection {
    name: String,
    url: String,
}

impl Connection {
    /// A connection `name` at `url` (`postgres://app@db/app`,
    /// `sqlite://copy.db`, `postgres://app:${APP_PASSWORD}@db/app`).
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Connection {
        Connection {
            name: name.into(),
            url: url.into(),
        }
    }

    /// The connection's name, which pipelines use.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL as written, `${VAR}` unexpanded.
    pub fn written(&self) -> &str {
        &self.url
    }

    /// The URL ready to open: each `${VAR}` replaced by the variable's value;
    /// a variable that is not set is an error naming it.
    pub fn url(&self) -> Result<ConnectionUrl> {
        ConnectionUrl::parse(&format!("connections.{}", self.name), &self.url)
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Connection({}: {})",
            self.name,
            crate::url::redact(&self.url)
        )
    }
}

/// A pipeline: a name and what `siphon.yaml` says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    name: String,
    spec: PipelineSpec,
}

impl Pipeline {
    /// Starts building the pipeline `name`.
    pub fn builder(name: impl Into<String>) -> PipelineBuilder {
        PipelineBuilder {
            name: name.into(),
            source: None,
            target: None,
            mode: None,
            tables: None,
            exclude: Vec::new(),
            batch_size: None,
            schedule: None,
            target_schema: None,
            on_lost_position: None,
        }
    }

    /// A pipeline from a spec as `siphon.yaml` or the state store holds it.
    pub fn from_spec(name: impl Into<String>, spec: PipelineSpec) -> Pipeline {
        Pipeline {
            name: name.into(),
            spec,
        }
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the pipeline does, as the engine reads it.
    pub fn spec(&self) -> &PipelineSpec {
        &self.spec
    }
}

/// Builds a [`Pipeline`]; what is not set keeps `siphon.yaml`'s default
/// (mode `full`, every table, batches of 5,000 rows, a continuous schedule).
#[derive(Debug, Clone)]
pub struct PipelineBuilder {
    name: String,
    source: Option<String>,
    target: Option<String>,
    mode: Option<Mode>,
    tables: Option<Vec<String>>,
    exclude: Vec<String>,
    batch_size: Option<usize>,
    schedule: Option<Schedule>,
    target_schema: Option<String>,
    on_lost_position: Option<OnLostPosition>,
}

impl PipelineBuilder {
    /// The name of the connection to read from.
    pub fn source(mut self, connection: impl Into<String>) -> Self {
        self.source = Some(connection.into());
        self
    }

    /// The name of the connection to write to.
    pub fn target(mut self, connection: impl Into<String>) -> Self {
        self.target = Some(connection.into());
        self
    }

    /// The default mode of the pipeline's tables.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Globs of the tables to replicate (`public.*`, `orders`).
    pub fn tables<I: IntoIterator<Item = S>, S: Into<String>>(mut self, globs: I) -> Self {
        self.tables = Some(globs.into_iter().map(Into::into).collect());
        self
    }

    /// Globs of the tables to leave out.
    pub fn exclude<I: IntoIterator<Item = S>, S: Into<String>>(mut self, globs: I) -> Self {
        self.exclude = globs.into_iter().map(Into::into).collect();
        self
    }

    /// Rows per chunk and per batch.
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = Some(rows);
        self
    }

    /// When the pipeline runs again after a pass.
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = Some(schedule);
        self
    }

    /// The schema of the target tables, where the default would not do.
    pub fn target_schema(mut self, schema: impl Into<String>) -> Self {
        self.target_schema = Some(schema.into());
        self
    }

    /// `cdc`: what a table whose log position the source lost does: stop with
    /// an error naming the fix (the default), or be copied again.
    pub fn on_lost_position(mut self, policy: OnLostPosition) -> Self {
        self.on_lost_position = Some(policy);
        self
    }

    /// The pipeline; an error names what is missing or wrong and the call
    /// that sets it.
    pub fn build(self) -> Result<Pipeline> {
        let name = self.name;
        let missing = |what: &str, call: &str| {
            Error::config(format!(
                "pipeline `{name}`: no {what} connection; set it with `.{call}(\"connection name\")`"
            ))
        };
        let source = self.source.ok_or_else(|| missing("source", "source"))?;
        let target = self.target.ok_or_else(|| missing("target", "target"))?;
        // Every setting not given keeps the config file's default.
        let mut spec: PipelineSpec =
            serde_json::from_value(serde_json::json!({ "source": source, "target": target }))
                .map_err(|e| Error::internal(format!("pipeline `{name}`: {e}")))?;
        if let Some(mode) = self.mode {
            spec.mode = mode;
        }
        if let Some(tables) = self.tables {
            if tables.is_empty() {
                return Err(Error::config(format!(
                    "pipeline `{name}`: `.tables([])` selects no table; give globs such as \
                     [\"public.*\"], or leave it out to replicate every table"
                )));
            }
            spec.tables = tables;
        }
        spec.exclude = self.exclude;
        if let Some(rows) = self.batch_size {
            if rows == 0 {
                return Err(Error::config(format!(
                    "pipeline `{name}`: batch size 0; give at least 1 row (the default is 5000)"
                )));
            }
            spec.batch_size = rows;
        }
        if let Some(schedule) = self.schedule {
            siphon_engine::validate_schedule(&schedule)
                .map_err(|e| Error::config(format!("pipeline `{name}`: schedule: {e}")))?;
            spec.schedule = schedule;
        }
        spec.target_schema = self.target_schema;
        if let Some(policy) = self.on_lost_position {
            spec.on_lost_position = policy;
        }
        Ok(Pipeline { name, spec })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_keeps_the_defaults_it_is_not_given() {
        let p = Pipeline::builder("app_copy")
            .source("app")
            .target("copy")
            .mode(Mode::Cdc)
            .tables(["public.*"])
            .build()
            .unwrap();
        assert_eq!(p.name(), "app_copy");
        let spec = p.spec();
        assert_eq!(
            (spec.source.as_str(), spec.target.as_str()),
            ("app", "copy")
        );
        assert_eq!(spec.mode, Mode::Cdc);
        assert_eq!(spec.tables, ["public.*"]);
        assert_eq!(spec.batch_size, 5000);
        assert_eq!(spec.schedule, Schedule::Continuous);
    }

    #[test]
    fn what_is_missing_is_named() {
        let e = Pipeline::builder("p").source("a").build().unwrap_err();
        assert!(e.to_string().contains("no target connection"), "{e}");
        let e = Pipeline::builder("p")
            .source("a")
            .target("b")
            .tables(Vec::<String>::new());
        assert!(e
            .build()
            .unwrap_err()
            .to_string()
            .contains("selects no table"));
    }

    #[test]
    fn a_connection_hides_its_password() {
        let c = Connection::new("app", "postgres://app:s3cret@db/app");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(c.written(), "postgres://app:s3cret@db/app");
    }
}
