//! Errors as the API answers them: `{"error": …, "detail": …}` with a status
//! code, and the extractors whose rejections answer the same way.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use siphon_core::ErrorKind;
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in a few stable words (`not found`, `malformed body`,
    /// `unauthorized`, …).
    pub error: String,
    /// The whole story: what was wrong, naming the field or the name, and the fix.
    pub detail: String,
}

/// An error answer: a status code and an [`ErrorBody`].
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What the client reads.
    pub body: ErrorBody,
}

impl ApiError {
    /// An answer with `status`, `error` and `detail`.
    pub fn new(status: StatusCode, error: &str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: error.to_string(),
                detail: detail.into(),
            },
        }
    }

    /// 400: the request is wrong.
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad request", detail)
    }

    /// 404: no such name.
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not found", detail)
    }

    /// 409: it exists already.
    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "already exists", detail)
    }
}

impl From<siphon_core::Error> for ApiError {
    /// The status a kind of error answers with: the client's mistake (400), a
    /// database siphon reached out to (502), the state store (503), else 500.
    fn from(e: siphon_core::Error) -> ApiError {
        let (status, error) = match e.kind() {
            ErrorKind::Config | ErrorKind::BadInput => (StatusCode::BAD_REQUEST, "bad request"),
            ErrorKind::Connection
            | ErrorKind::Database
            | ErrorKind::Timeout
            | ErrorKind::Transient
            | ErrorKind::Privilege
            | ErrorKind::PositionLost => (StatusCode::BAD_GATEWAY, "database unavailable"),
            ErrorKind::State => (StatusCode::SERVICE_UNAVAILABLE, "state store unavailable"),
            ErrorKind::Cancelled
            | ErrorKind::Internal
            | ErrorKind::LeaseLost
            | ErrorKind::Fenced => (StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "an API request failed");
        }
        ApiError::new(status, error, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// A JSON body whose rejection is an [`ApiError`]: 400 `malformed body` naming
/// what is wrong (the syntax error's line and column, the field that does not
/// fit), 415 without `Content-Type: application/json`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported media type",
            "the body must be JSON: send it with `Content-Type: application/json`",
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed body",
            format!(
                "the body is not valid JSON: {}",
                after_prefix(&e.body_text())
            ),
        ),
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed body",
            format!(
                "the body does not have the expected shape: {}",
                after_prefix(&e.body_text())
            ),
        ),
        other => ApiError::new(StatusCode::BAD_REQUEST, "malformed body", other.body_text()),
    }
}

/// A rejection's text without axum's generic first words ("Failed to parse
/// the request body as JSON: "): serde's message, with the field's path and
/// the line and column.
fn after_prefix(text: &str) -> String {
    text.split_once(": ")
        .map_or(text, |(_, rest)| rest)
        .to_string()
}

/// Path parameters whose rejection is an [`ApiError`] (400).
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(r) => Err(path_rejection(r)),
        }
    }
}

fn path_rejection(r: PathRejection) -> ApiError {
    ApiError::bad_request(format!("a path parameter does not fit: {}", r.body_text()))
}

/// A query string whose rejection is an [`ApiError`] (400).
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(r) => Err(query_rejection(r)),
        }
    }
}

fn query_rejection(r: QueryRejection) -> ApiError {
    ApiError::bad_request(format!("the query string does not fit: {}", r.body_text()))
}
