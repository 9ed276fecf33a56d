//! Bearer-token auth for `/api/*` and `/metrics`: the token from
//! `SIPHON_API_TOKEN`, compared in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The environment variable that holds the API's bearer token.
pub const TOKEN_ENV: &str = "SIPHON_API_TOKEN";

/// The token requests must carry; `None` lets every request in (allowed on
/// a loopback address only, see [`crate::check_listen`]).
#[derive(Clone)]
pub struct Token(Option<Arc<str>>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token itself is a secret: never shown.
        f.write_str(if self.0.is_some() {
            "Token(set)"
        } else {
            "Token(none)"
        })
    }
}

impl Token {
    /// A token; an empty one counts as none.
    pub fn new(token: Option<String>) -> Token {
        Token(token.filter(|t| !t.is_empty()).map(Arc::from))
    }

    /// The token in `SIPHON_API_TOKEN`, if set and not empty.
    pub fn from_env() -> Token {
        Token::new(std::env::var(TOKEN_ENV).ok())
    }

    /// Whether a token is required.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Whether an `Authorization` header carries the token (`Bearer TOKEN`).
    /// The comparison takes the same time whatever bytes differ.
    pub fn accepts(&self, header: Option<&HeaderValue>) -> bool {
        let Some(expected) = &self.0 else {
            return true;
        };
        let Some(given) = header.and_then(|h| h.to_str().ok()).and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        }) else {
            return false;
        };
        bool::from(given.trim().as_bytes().ct_eq(expected.as_bytes()))
    }
}

/// Refuses a request without the token: 401 with `WWW-Authenticate: Bearer`.
pub async fn require(State(token): State<Token>, req: Request, next: Next) -> Response {
    if token.accepts(req.headers().get(header::AUTHORIZATION)) {
        return next.run(req).await;
    }
    let detail = if req.headers().contains_key(header::AUTHORIZATION) {
        "the bearer token is wrong: send `Authorization: Bearer TOKEN` with the service's SIPHON_API_TOKEN"
    } else {
        "this endpoint needs a bearer token: send `Authorization: Bearer TOKEN` with the service's SIPHON_API_TOKEN"
    };
    let mut answer =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail).into_response();
    answer.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"siphon\""),
    );
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_is_accepted() {
        let token = Token::new(Some("s3cret".into()));
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert!(token.accepts(Some(&h("Bearer s3cret"))));
        assert!(!token.accepts(Some(&h("Bearer s3cre"))));
        assert!(!token.accepts(Some(&h("Bearer s3cret2"))));
        assert!(!token.accepts(Some(&h("Basic s3cret"))));
        assert!(!token.accepts(None));
        assert!(Token::new(None).accepts(None));
        assert!(!Token::new(Some(String::new())).is_set());
        assert_eq!(format!("{token:?}"), "Token(set)");
    }
}
