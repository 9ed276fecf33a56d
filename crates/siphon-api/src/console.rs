//! The web console served at `/`: one page, part of the binary, that calls the REST API.
//!
//! The page, its script, its style sheet and its icon are compiled in with
//! `include_bytes!`: nothing is built when tests run and nothing is fetched at
//! run time (no CDN, no web fonts). The script talks to the REST API of the
//! same origin with the bearer token the operator types in (kept in the tab's
//! `sessionStorage`).

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One file of the console.
struct Asset {
    /// The URL path it is served at.
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Every file of the console, by URL path.
const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("console/index.html"),
    },
    Asset {
        path: "/console/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("console/app.js"),
    },
    Asset {
        path: "/console/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("console/app.css"),
    },
    Asset {
        path: "/console/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("console/favicon.svg"),
    },
];

/// The console's content security policy: its own files and same-origin API
/// calls only, no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's routes: the page at `/` and its files under `/console/`
/// (`app.js`, `app.css`, `favicon.svg`), each with its content type, an `ETag`
/// (a request with a matching `If-None-Match` gets `304 Not Modified`) and
/// `Cache-Control: no-cache`, so a browser revalidates and picks up a new binary's
/// console at once. `GET` and `HEAD` only; no state, no authentication (the
/// page holds no data: everything it shows comes from the token-protected API).
pub fn routes() -> Router {
    ASSETS
        .iter()
        .enumerate()
        .fold(Router::new(), |router, (i, asset)| {
            router.route(
                asset.path,
                get(move |headers: HeaderMap| async move { serve(i, &headers) }),
            )
        })
}

/// The `ETag` of every asset, computed once from its bytes and the version.
fn etags() -> &'static [HeaderValue] {
    static ETAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                asset.body.hash(&mut hasher);
                let tag = format!("\"{}-{:016x}\"", env!("CARGO_PKG_VERSION"), hasher.finish());
                HeaderValue::from_str(&tag).expect("an ETag of ASCII characters")
            })
            .collect()
    })
}

fn serve(i: usize, request: &HeaderMap) -> Response {
    let asset = &ASSETS[i];
    let etag = etags()[i].clone();
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.trim() == "*" || t.trim().trim_start_matches("W/").as_bytes() == etag.as_bytes()
        });
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, etag),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
    ];
    if fresh {
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else {
        (StatusCode::OK, headers, asset.body).into_response()
    }
}
