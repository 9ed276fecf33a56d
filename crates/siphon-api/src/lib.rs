//! siphon's HTTP surfaces, served by `siphon service start --listen ADDR`: the
//! REST API and its OpenAPI document, `/metrics` for Prometheus, health checks,
//! and the web console.
//!
//! The routes and the OpenAPI document come from the same handlers (an
//! [`OpenApiRouter`]), so they cannot drift apart. `/api/*` (but its document
//! and docs page) and `/metrics` need the bearer token when one is set;
//! `/healthz`, `/readyz`, `/api/v1/openapi.json`, `/api/v1/docs` and the
//! console's page are open.

pub mod auth;
pub mod backend;
pub mod catalog;
pub mod console;
pub mod error;
pub mod history;
pub mod metrics;
pub mod store;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Router;
use siphon_engine::Shutdown;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{Token, TOKEN_ENV};
pub use backend::{Backend, ConnectionTest, RunStarted, TableAction};
pub use error::{ApiError, ErrorBody};
pub use store::{BoxFuture, Store};

/// What every handler reaches: the state store, the program behind the API,
/// and the served OpenAPI document.
#[derive(Clone)]
pub struct Ctx {
    /// The state store, holder of the catalog.
    pub store: Arc<dyn Store>,
    /// The program serving the API.
    pub backend: Arc<dyn Backend>,
    /// The OpenAPI document as served, written once the router is built.
    doc: Arc<OnceLock<String>>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ctx")
    }
}

/// The application served at `--listen`: the API on `store` and `backend`,
/// `/metrics`, the health checks, the docs and the console. Requests to
/// `/api/*` (but the document and docs page) and `/metrics` must carry
/// `token` when it is set. Installs the process's metrics recorder.
pub fn app(store: Arc<dyn Store>, backend: Arc<dyn Backend>, token: Token) -> Router {
    metrics::install();
    let ctx = Ctx {
        store,
        backend,
        doc: Arc::new(OnceLock::new()),
    };
    let (protected, mut doc) = protected_routes().split_for_parts();
    let (open, open_doc) = open_routes().split_for_parts();
    doc.merge(open_doc);
    describe(&mut doc);
    let served = doc.to_pretty_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "the OpenAPI document could not be written");
        "{}".to_string()
    });
    let scalar = utoipa_scalar::Scalar::new(doc)
        .title("siphon REST API")
        .to_html();
    let _ = ctx.doc.set(served);
    let protected =
        protected.route_layer(axum::middleware::from_fn_with_state(token, auth::require));
    protected
        .merge(open)
        .route(
            "/api/v1/docs",
            axum::routing::get(move || async move { Html(scalar) }),
        )
        .with_state(ctx)
        .merge(console::routes())
        .fallback(|| async { ApiError::not_found("no such route: see /api/v1/openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
                "this route does not take that method: see /api/v1/openapi.json",
            )
        })
}

/// The routes that need the token.
fn protected_routes() -> OpenApiRouter<Ctx> {
    OpenApiRouter::new()
        .routes(routes!(catalog::list_connections, catalog::add_connection))
        .routes(routes!(catalog::put_connection, catalog::remove_connection))
        .routes(routes!(catalog::test_connection))
        .routes(routes!(catalog::list_pipelines, catalog::add_pipeline))
        .routes(routes!(
            catalog::get_pipeline,
            catalog::put_pipeline,
            catalog::remove_pipeline
        ))
        .routes(routes!(catalog::run_pipeline))
        .routes(routes!(catalog::enable_table))
        .routes(routes!(catalog::disable_table))
        .routes(routes!(catalog::resync_table))
        .routes(routes!(history::list_executions))
        .routes(routes!(history::get_execution))
        .routes(routes!(history::list_conflicts))
        .routes(routes!(history::resolve_conflict))
        .routes(routes!(history::status))
        .routes(routes!(prometheus))
}

/// The routes open to anyone.
fn open_routes() -> OpenApiRouter<Ctx> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(openapi_json))
}

/// The document's title, version, the bearer scheme, and which operations
/// need it (all but the open ones).
fn describe(doc: &mut OpenApi) {
    doc.info = InfoBuilder::new()
        .title("siphon")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "The REST API of `siphon service start --listen ADDR`: the catalog \
             (connections, pipelines), table switches, runs, executions, conflicts and \
             status. Errors are `{\"error\": …, \"detail\": …}`. Send `Authorization: \
             Bearer TOKEN` (the service's SIPHON_API_TOKEN) when the service has a token.",
        ))
        .build();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    let open = ["/healthz", "/readyz", "/api/v1/openapi.json"];
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            // OpenAPI requires a description on every response.
            for (status, response) in op.responses.responses.iter_mut() {
                if let utoipa::openapi::RefOr::T(r) = response {
                    if r.description.is_empty() {
                        r.description = status_description(status).to_string();
                    }
                }
            }
        }
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        if open.contains(&path.as_str()) {
            continue;
        }
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            op.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
                "bearer",
                Vec::<String>::new(),
            )]);
        }
    }
}

/// What a response of HTTP status `status` means in this API, for responses
/// the route's declaration does not describe.
fn status_description(status: &str) -> &'static str {
    match status {
        "200" => "Done: the answer in the body",
        "201" => "Created: the stored item in the body",
        "202" => "Accepted: what was started, in the body",
        "204" => "Done: no body",
        "400" => "Refused: a malformed body or parameter, or a refused config (`error`, `detail`)",
        "401" => "No token, or the wrong one: send `Authorization: Bearer TOKEN`",
        "404" => "No such name or id",
        "409" => "In conflict with what is stored (a duplicate, or still in use)",
        "415" => "The body is not `application/json`",
        "502" => "A database could not be reached",
        "503" => "The state store could not be reached",
        _ => "See `error` and `detail`",
    }
}

/// Alive: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The service runs", body = serde_json::Value)))]
async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Ready: the state store answers (its catalog can be read); 503 otherwise.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "The state store answers", body = serde_json::Value),
        (status = 503, description = "The state store does not answer", body = ErrorBody)))]
async fn readyz(State(ctx): State<Ctx>) -> Response {
    match ctx.store.pipelines().await {
        Ok(_) => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready",
            format!("the state store does not answer: {e}"),
        )
        .into_response(),
    }
}

/// The process's metrics in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String),
        (status = 401, body = ErrorBody)))]
async fn prometheus() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(),
    )
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3 document", body = serde_json::Value)))]
async fn openapi_json(State(ctx): State<Ctx>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        ctx.doc.get().cloned().unwrap_or_default(),
    )
}

/// Whether the API may listen on `addr`: a loopback address always; any
/// other only with a token, since the API edits the catalog and its
/// connections' secrets.
pub fn check_listen(addr: &SocketAddr, token: &Token) -> Result<(), String> {
    if addr.ip().is_loopback() || token.is_set() {
        return Ok(());
    }
    Err(format!(
        "--listen {addr}: the API would be reachable from other hosts without a token; set \
         {TOKEN_ENV} (clients then send `Authorization: Bearer TOKEN`), or listen on a \
         loopback address such as 127.0.0.1:{}",
        addr.port()
    ))
}

/// Serves `app` on `listener` until `shutdown` is requested, then lets the
/// requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.stopped().await })
        .await
}
