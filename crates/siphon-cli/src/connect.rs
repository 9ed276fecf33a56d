//! From a connection URL to a connector, through siphon's connector registry.

use siphon::{ConnectionUrl, Registry};
use siphon_core::Result;

pub use siphon::{AnyChangeStream, AnySink, AnySource};

use crate::config::ConnUrl;

/// The URL as the registry takes it, shown with the CLI's redaction.
fn registry_url(url: &ConnUrl) -> ConnectionUrl {
    ConnectionUrl::from_parts(url.expose(), url.to_string())
}

/// Opens the source a connection names.
pub async fn open_source(name: &str, url: &ConnUrl) -> Result<AnySource> {
    Registry::standard()
        .open_source(name, &registry_url(url))
        .await
}

/// Opens the target a connection names.
pub async fn open_sink(name: &str, url: &ConnUrl) -> Result<AnySink> {
    Registry::standard()
        .open_sink(name, &registry_url(url))
        .await
}
