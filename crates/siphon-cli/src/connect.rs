//! From a connection URL to a connector, through siphon's connector registry.

use siphon::{ConnectionUrl, Registry};
use siphon_core::Result;

pub use siphon::{AnySink, AnySource};

use crate::config::ConnUrl;

/// The URL as the registry takes it, shown with the CLI's redaction.
fn registry_url(url: &ConnUrl) -> ConnectionUrl {
    ConnectionUrl::from_parts(url.expose(), url.to_string())
}

/// The registry the CLI opens connections with: stored URLs are checked and
/// shown as the config file's are.
pub fn registry() -> Registry {
    Registry::standard().with_url_parser(|key, written| {
        let url = ConnUrl::parse(key, written)?;
        Ok(registry_url(&url))
    })
}

/// Opens the source a connection names.
pub async fn open_source(name: &str, url: &ConnUrl) -> Result<AnySource> {
    registry().open_source(name, &registry_url(url)).await
}

/// Opens the target a connection names.
pub async fn open_sink(name: &str, url: &ConnUrl) -> Result<AnySink> {
    registry().open_sink(name, &registry_url(url)).await
}
