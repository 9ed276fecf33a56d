//! `/api/v1/connections` and `/api/v1/pipelines`: the catalog in the state
//! store, edited as `siphon connection …` and `siphon sync …` edit it.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use siphon_core::PipelineSpec;
use utoipa::ToSchema;

use crate::backend::{ConnectionTest, RunStarted, TableAction};
use crate::error::{ApiError, ErrorBody, Json, Path};
use crate::Ctx;

/// A connection to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConnection {
    /// Its name, as pipelines' `source` and `target` name it.
    #[schema(example = "app", pattern = "^[A-Za-z0-9_.-]{1,200}$")]
    pub name: String,
    /// `postgres://user:password@host:5432/db`, `mysql://…`, `sqlite://path.db`, …;
    /// a `${VAR}` reference is refused here (the service would fill it from its
    /// own environment): add such a connection with the CLI or a config file.
    #[schema(example = "postgres://app:secret@127.0.0.1:5432/app")]
    pub url: String,
}

/// A connection's new URL.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionUrl {
    /// As [`NewConnection::url`].
    #[schema(example = "postgres://app:new-secret@127.0.0.1:5432/app")]
    pub url: String,
}

/// A stored connection, its secrets hidden.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    /// Its name.
    pub name: String,
    /// Its URL with any password hidden.
    pub url: String,
}

/// A pipeline as the config file writes it under `pipelines:`, with its name.
/// Only `source` and `target` are required; every other key of the config
/// file's pipeline is accepted (`schedule`, `tables_config`, `schema`, …), and
/// an unknown key is refused with its name.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineBody {
    /// Its name (in `POST`; optional in `PUT`, where the path names it).
    #[schema(example = "app_to_replica", pattern = "^[A-Za-z0-9_.-]{1,200}$")]
    pub name: Option<String>,
    /// Name of the source connection.
    #[schema(example = "app")]
    pub source: String,
    /// Name of the target connection.
    #[schema(example = "replica")]
    pub target: String,
    /// `full` (default), `incremental`, `cdc`, `merge` or `row_count`.
    #[schema(example = "full")]
    pub mode: Option<String>,
    /// Globs of tables to replicate (default: all).
    pub tables: Option<Vec<String>>,
    /// Globs of tables to leave out.
    pub exclude: Option<Vec<String>>,
    /// `continuous`, `every 5s`, or a cron line.
    #[schema(example = "every 1h")]
    pub schedule: Option<String>,
    /// The pipeline's switch: `false` pauses it (default `true`).
    pub enabled: Option<bool>,
    /// Rows per chunk and per batch (default 5000).
    pub batch_size: Option<u64>,
    /// Incremental cursor column.
    pub cursor: Option<String>,
}

/// What removing a pipeline did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Removed {
    /// The name removed.
    pub removed: String,
    /// What was done on the source and target, line by line.
    pub done: Vec<String>,
}

/// What a table switch set.
#[derive(Debug, Serialize, ToSchema)]
pub struct TableSwitched {
    /// The pipeline.
    pub pipeline: String,
    /// The table as the request named it.
    pub table: String,
    /// What was done.
    pub action: TableAction,
    /// The table streams set (`pipeline/schema.table`).
    pub streams: Vec<String>,
}

/// The connections, secrets hidden.
#[utoipa::path(get, path = "/api/v1/connections", tag = "catalog",
    responses((status = 200, body = Vec<ConnectionView>), (status = 401, body = ErrorBody)))]
pub async fn list_connections(
    State(ctx): State<Ctx>,
) -> Result<Json<Vec<ConnectionView>>, ApiError> {
    let all = ctx.store.connections().await?;
    Ok(Json(
        all.into_iter()
            .map(|(name, url)| ConnectionView {
                url: ctx.backend.mask(&url),
                name,
            })
            .collect(),
    ))
}

/// Adds a connection; 409 when one of that name exists (remove it first).
#[utoipa::path(post, path = "/api/v1/connections", tag = "catalog", request_body = NewConnection,
    responses((status = 201, body = ConnectionView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_connection(
    State(ctx): State<Ctx>,
    Json(new): Json<NewConnection>,
) -> Result<(StatusCode, Json<ConnectionView>), ApiError> {
    check_name("connection", &new.name)?;
    if ctx.store.connections().await?.contains_key(&new.name) {
        return Err(ApiError::conflict(format!(
            "a connection named `{}` exists already: PUT /api/v1/connections/{} replaces its URL",
            new.name, new.name
        )));
    }
    let url = ctx.backend.check_connection(&new.name, &new.url).await?;
    ctx.store.put_connection(&new.name, &url).await?;
    tracing::info!(connection = %new.name, "connection added through the API");
    Ok((
        StatusCode::CREATED,
        Json(ConnectionView {
            url: ctx.backend.mask(&url),
            name: new.name,
        }),
    ))
}

/// Replaces a connection's URL (a new password, host or port); the pipelines
/// that use it use it when they next connect. 404 when there is none.
#[utoipa::path(put, path = "/api/v1/connections/{name}", tag = "catalog", request_body = ConnectionUrl,
    params(("name" = String, Path, description = "Connection name")),
    responses((status = 200, body = ConnectionView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_connection(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    Json(new): Json<ConnectionUrl>,
) -> Result<Json<ConnectionView>, ApiError> {
    if !ctx.store.connections().await?.contains_key(&name) {
        return Err(unknown_connection(&name));
    }
    let url = ctx.backend.check_connection(&name, &new.url).await?;
    ctx.store.put_connection(&name, &url).await?;
    ctx.backend.catalog_changed();
    tracing::info!(connection = %name, "connection replaced through the API");
    Ok(Json(ConnectionView {
        url: ctx.backend.mask(&url),
        name,
    }))
}

/// Removes a connection; 409 while a pipeline uses it.
#[utoipa::path(delete, path = "/api/v1/connections/{name}", tag = "catalog",
    params(("name" = String, Path, description = "Connection name")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn remove_connection(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !ctx.store.connections().await?.contains_key(&name) {
        return Err(unknown_connection(&name));
    }
    let users: Vec<String> = ctx
        .store
        .pipelines()
        .await?
        .into_iter()
        .filter(|(_, p)| p.source == name || p.target == name)
        .map(|(n, _)| n)
        .collect();
    if !users.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "in use",
            format!(
                "connection `{name}` is used by pipeline(s) {}: remove or change them first",
                users.join(", ")
            ),
        ));
    }
    if !ctx.store.remove_connection(&name).await? {
        return Err(unknown_connection(&name));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Opens a connection and says what answered, as `siphon connection test`
/// does; a server that cannot be reached is a `reachable: false` report.
#[utoipa::path(post, path = "/api/v1/connections/{name}/test", tag = "catalog",
    params(("name" = String, Path, description = "Connection name")),
    responses((status = 200, body = ConnectionTest), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn test_connection(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
) -> Result<Json<ConnectionTest>, ApiError> {
    if !ctx.store.connections().await?.contains_key(&name) {
        return Err(unknown_connection(&name));
    }
    Ok(Json(ctx.backend.test_connection(&name).await?))
}

/// The pipelines, each as the config file writes it, with its name.
#[utoipa::path(get, path = "/api/v1/pipelines", tag = "catalog",
    responses((status = 200, body = Vec<PipelineBody>), (status = 401, body = ErrorBody)))]
pub async fn list_pipelines(
    State(ctx): State<Ctx>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let all = ctx.store.pipelines().await?;
    Ok(Json(
        all.iter()
            .map(|(name, spec)| view(name, spec))
            .collect::<Result<_, _>>()?,
    ))
}

/// Adds a pipeline from a body of the config file's shape, with `name`; 409
/// when one of that name exists (`PUT` changes it).
#[utoipa::path(post, path = "/api/v1/pipelines", tag = "catalog", request_body = PipelineBody,
    responses((status = 201, body = PipelineBody), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_pipeline(
    State(ctx): State<Ctx>,
    Json(body): Json<serde_json::Value>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let (name, body) = take_name(body, None)?;
    let name = name.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed body",
            "the pipeline needs a `name` (a string) beside its `source` and `target`",
        )
    })?;
    check_name("pipeline", &name)?;
    if ctx.store.pipelines().await?.contains_key(&name) {
        return Err(ApiError::conflict(format!(
            "a pipeline named `{name}` exists already: PUT /api/v1/pipelines/{name} changes it"
        )));
    }
    let spec = ctx.backend.parse_pipeline(&name, body).await?;
    ctx.store.put_pipeline(&name, &spec).await?;
    ctx.backend.catalog_changed();
    tracing::info!(pipeline = %name, "pipeline added through the API");
    Ok((StatusCode::CREATED, Json(view(&name, &spec)?)))
}

/// One pipeline.
#[utoipa::path(get, path = "/api/v1/pipelines/{name}", tag = "catalog",
    params(("name" = String, Path, description = "Pipeline name")),
    responses((status = 200, body = PipelineBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_pipeline(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let spec = stored(&ctx, &name).await?;
    Ok(Json(view(&name, &spec)?))
}

/// Replaces a pipeline with the body (the config file's shape); a running
/// service goes on with it as it now is from its next pass.
#[utoipa::path(put, path = "/api/v1/pipelines/{name}", tag = "catalog", request_body = PipelineBody,
    params(("name" = String, Path, description = "Pipeline name")),
    responses((status = 200, body = PipelineBody), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_pipeline(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let before = stored(&ctx, &name).await?;
    // A body that does not say `enabled` keeps the pipeline's switch: a paused
    // pipeline stays paused (as `siphon apply` keeps it).
    let says_enabled = body.get("enabled").is_some();
    let (_, body) = take_name(body, Some(&name))?;
    let mut spec = ctx.backend.parse_pipeline(&name, body).await?;
    if !says_enabled {
        spec.enabled = before.enabled;
    }
    ctx.store.put_pipeline(&name, &spec).await?;
    ctx.backend.catalog_changed();
    Ok(Json(view(&name, &spec)?))
}

/// Removes a pipeline as `siphon sync remove NAME --yes` does.
#[utoipa::path(delete, path = "/api/v1/pipelines/{name}", tag = "catalog",
    params(("name" = String, Path, description = "Pipeline name")),
    responses((status = 200, body = Removed), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_pipeline(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
) -> Result<Json<Removed>, ApiError> {
    stored(&ctx, &name).await?;
    let done = ctx.backend.remove_pipeline(&name).await?;
    ctx.backend.catalog_changed();
    Ok(Json(Removed {
        removed: name,
        done,
    }))
}

/// Starts the pipeline's next pass now (a pass that runs already is left to
/// finish); read its execution with `GET /api/v1/executions?pipeline=NAME`.
#[utoipa::path(post, path = "/api/v1/pipelines/{name}/run", tag = "pipelines",
    params(("name" = String, Path, description = "Pipeline name")),
    responses((status = 202, body = RunStarted), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn run_pipeline(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<RunStarted>), ApiError> {
    stored(&ctx, &name).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ctx.backend.run_now(&name).await?),
    ))
}

macro_rules! table_route {
    ($fn:ident, $action:ident, $path:literal, $doc:literal) => {
        #[doc = $doc]
        /// The table is `schema.table`, or its bare name when only one
        /// selected table has it; finding it asks the source for its tables.
        #[utoipa::path(post, path = $path, tag = "pipelines",
            params(("name" = String, Path, description = "Pipeline name"),
                ("table" = String, Path, description = "Table (`schema.table`, or a bare name)")),
            responses((status = 200, body = TableSwitched), (status = 400, body = ErrorBody),
                (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
                (status = 502, description = "The source could not be reached to find the table", body = ErrorBody)))]
        pub async fn $fn(
            State(ctx): State<Ctx>,
            Path((name, table)): Path<(String, String)>,
        ) -> Result<Json<TableSwitched>, ApiError> {
            table_action(ctx, name, table, TableAction::$action).await
        }
    };
}

table_route!(
    enable_table,
    Enable,
    "/api/v1/pipelines/{name}/tables/{table}/enable",
    "Resumes a paused table, as `siphon sync enable NAME --table T` does."
);
table_route!(
    disable_table,
    Disable,
    "/api/v1/pipelines/{name}/tables/{table}/disable",
    "Pauses a table, as `siphon sync disable NAME --table T` does."
);
table_route!(
    resync_table,
    Resync,
    "/api/v1/pipelines/{name}/tables/{table}/resync",
    "Makes the table's next run copy it again from scratch, as `siphon sync resync NAME --table T` does."
);

async fn table_action(
    ctx: Ctx,
    name: String,
    table: String,
    action: TableAction,
) -> Result<Json<TableSwitched>, ApiError> {
    stored(&ctx, &name).await?;
    let streams = ctx.backend.table_action(&name, &table, action).await?;
    Ok(Json(TableSwitched {
        pipeline: name,
        table,
        action,
        streams,
    }))
}

/// The stored pipeline `name`, or 404.
async fn stored(ctx: &Ctx, name: &str) -> Result<PipelineSpec, ApiError> {
    let mut all = ctx.store.pipelines().await?;
    all.remove(name).ok_or_else(|| {
        ApiError::not_found(format!(
            "no pipeline named `{name}`; defined: {}",
            if all.is_empty() {
                "none".to_string()
            } else {
                all.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        ))
    })
}

fn unknown_connection(name: &str) -> ApiError {
    ApiError::not_found(format!("no connection named `{name}`"))
}

/// Refuses names the CLI and config file could not write back.
fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    let fits = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if fits {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{what} name `{name}`: use 1 to 200 letters, digits, `_`, `-` or `.`"
        )))
    }
}

/// The body's object without its `name`, and that name; a `name` that is not
/// `expected` (when given) is refused.
fn take_name(
    body: serde_json::Value,
    expected: Option<&str>,
) -> Result<(Option<String>, serde_json::Value), ApiError> {
    let serde_json::Value::Object(mut map) = body else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed body",
            "the body must be a JSON object: a pipeline as the config file writes it",
        ));
    };
    let name = match map.remove("name") {
        None => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed body",
                format!("`name` must be a string, not {other}"),
            ))
        }
    };
    if let (Some(given), Some(expected)) = (&name, expected) {
        if given != expected {
            return Err(ApiError::bad_request(format!(
                "the body names pipeline `{given}` but the path names `{expected}`: a pipeline \
                 cannot be renamed; add it under the new name and remove the old one"
            )));
        }
    }
    Ok((name, serde_json::Value::Object(map)))
}

/// A pipeline as the API shows it: the config file's shape, with its name.
fn view(name: &str, spec: &PipelineSpec) -> Result<serde_json::Value, ApiError> {
    let mut v = serde_json::to_value(spec).map_err(|e| {
        ApiError::from(siphon_core::Error::internal("writing a pipeline as JSON").source(e))
    })?;
    if let serde_json::Value::Object(map) = &mut v {
        map.insert("name".into(), serde_json::Value::String(name.to_string()));
        // The switch is left out when on: show it always.
        map.entry("enabled")
            .or_insert(serde_json::Value::Bool(spec.enabled));
    }
    Ok(v)
}
