//! `/api/v1/executions`, `/api/v1/conflicts` and `/api/v1/status`: what the
//! pipelines did, what waits for a decision, and where every table stands.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use siphon_core::Side;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody, Json, Path, Query};
use crate::Ctx;

/// The most executions one request lists.
pub const MAX_EXECUTIONS: usize = 1000;

/// Which executions to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExecutionFilter {
    /// Only this pipeline's executions.
    pub pipeline: Option<String>,
    /// How many, newest first (default 50, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// Which conflicts to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConflictFilter {
    /// Only this pipeline's conflicts.
    pub pipeline: Option<String>,
    /// Only those still waiting for a decision (default `true`).
    pub unresolved: Option<bool>,
}

/// Which side's row a resolved conflict keeps.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// The source's row.
    Source,
    /// The target's row.
    Target,
}

/// How to resolve a conflict.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    /// The side whose row is kept.
    pub keep: Keep,
}

/// A resolved conflict.
#[derive(Debug, Serialize, ToSchema)]
pub struct Resolved {
    /// The conflict's id.
    pub id: u64,
    /// The side whose row was kept.
    pub keep: Keep,
}

/// One run of one pipeline, with what it did to each table (as the state
/// store records it: `id`, `pipeline`, `started_at`, `finished_at`, `status`
/// — `running`, `succeeded`, `failed` or `stopped` —, `error`, and `tables`,
/// each with its rows read, inserted, updated, deleted and bytes).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Execution)]
pub struct ExecutionDoc {
    /// Its id.
    pub id: u64,
    /// The pipeline.
    pub pipeline: String,
    /// `running`, `succeeded`, `failed` or `stopped`.
    pub status: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Each table's statistics.
    pub tables: Vec<serde_json::Value>,
}

/// A row changed on both sides of a `merge` pipeline.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Conflict)]
pub struct ConflictDoc {
    /// Its id.
    pub id: u64,
    /// The pipeline.
    pub pipeline: String,
    /// The table.
    pub table: serde_json::Value,
    /// The row's key, column to value.
    pub key: serde_json::Value,
    /// The source's row; `null` when the source deleted it.
    pub source_row: Option<serde_json::Value>,
    /// The target's row; `null` when the target deleted it.
    pub target_row: Option<serde_json::Value>,
    /// When it was found.
    pub detected_at: String,
    /// When it was resolved.
    pub resolved_at: Option<String>,
    /// The side kept.
    pub resolution: Option<Keep>,
}

/// Executions, newest first.
#[utoipa::path(get, path = "/api/v1/executions", tag = "history", params(ExecutionFilter),
    responses((status = 200, body = Vec<ExecutionDoc>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn list_executions(
    State(ctx): State<Ctx>,
    Query(filter): Query<ExecutionFilter>,
) -> Result<Json<Vec<siphon_core::Execution>>, ApiError> {
    let limit = filter.limit.unwrap_or(50);
    if !(1..=MAX_EXECUTIONS).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit={limit}: ask for 1 to {MAX_EXECUTIONS} executions"
        )));
    }
    Ok(Json(
        ctx.store
            .executions(filter.pipeline.as_deref(), limit)
            .await?,
    ))
}

/// One execution.
#[utoipa::path(get, path = "/api/v1/executions/{id}", tag = "history",
    params(("id" = u64, Path, description = "Execution id")),
    responses((status = 200, body = ExecutionDoc), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_execution(
    State(ctx): State<Ctx>,
    Path(id): Path<u64>,
) -> Result<Json<siphon_core::Execution>, ApiError> {
    if !storable(id) {
        return Err(ApiError::not_found(format!("no execution {id}")));
    }
    ctx.store
        .execution(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no execution {id}")))
}

/// Conflicts, oldest first.
#[utoipa::path(get, path = "/api/v1/conflicts", tag = "history", params(ConflictFilter),
    responses((status = 200, body = Vec<ConflictDoc>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn list_conflicts(
    State(ctx): State<Ctx>,
    Query(filter): Query<ConflictFilter>,
) -> Result<Json<Vec<siphon_core::Conflict>>, ApiError> {
    Ok(Json(
        ctx.store
            .conflicts(
                filter.pipeline.as_deref(),
                filter.unresolved.unwrap_or(true),
            )
            .await?,
    ))
}

/// Resolves a conflict, keeping one side's row, as `siphon conflicts resolve
/// ID --keep source|target` does; 409 when it was resolved already.
#[utoipa::path(post, path = "/api/v1/conflicts/{id}/resolve", tag = "history", request_body = Resolve,
    params(("id" = u64, Path, description = "Conflict id")),
    responses((status = 200, body = Resolved), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn resolve_conflict(
    State(ctx): State<Ctx>,
    Path(id): Path<u64>,
    Json(body): Json<Resolve>,
) -> Result<Json<Resolved>, ApiError> {
    if !storable(id) {
        return Err(ApiError::not_found(format!("no conflict {id}")));
    }
    let side = match body.keep {
        Keep::Source => Side::Source,
        Keep::Target => Side::Target,
    };
    if ctx.store.resolve_conflict(id, side).await? {
        return Ok(Json(Resolved {
            id,
            keep: body.keep,
        }));
    }
    let known = ctx
        .store
        .conflicts(None, false)
        .await?
        .into_iter()
        .find(|c| c.id == id);
    Err(match known {
        Some(c) => ApiError::new(
            StatusCode::CONFLICT,
            "already resolved",
            format!(
                "conflict {id} was resolved already{}",
                c.resolution
                    .map(|s| format!(", keeping the {} row", s.as_str()))
                    .unwrap_or_default()
            ),
        ),
        None => ApiError::not_found(format!("no conflict {id}")),
    })
}

/// Whether a store can hold the id: stores number them as signed 64-bit
/// integers, so a larger one names nothing.
fn storable(id: u64) -> bool {
    i64::try_from(id).is_ok()
}

/// Each pipeline and table as the state store knows it: the same document as
/// `siphon status --json`.
#[utoipa::path(get, path = "/api/v1/status", tag = "status",
    responses((status = 200, description = "The document `siphon status --json` prints", body = serde_json::Value),
        (status = 401, body = ErrorBody)))]
pub async fn status(State(ctx): State<Ctx>) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(ctx.backend.status().await?))
}
