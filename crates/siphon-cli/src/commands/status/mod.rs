//! `siphon status`: each pipeline and table as the state store knows it (state,
//! rows a second, last checkpoint, snapshot progress, last error, the lease
//! holder, recent runs), as text, as one JSON document, or as a full-screen
//! view that follows a running service.

pub(crate) mod model;
pub(crate) mod text;
mod watch;

use std::process::ExitCode;

use siphon_core::{Error, Result, StateStore};

/// Prints the status of `pipelines` (every stored pipeline when empty): plain
/// text, or with `json` the document [`model::Report`] describes; with `watch`, the
/// full-screen view until `q`. `json` and `watch` together are a usage error.
pub async fn run<St: StateStore>(
    state: &St,
    json: bool,
    watch: bool,
    pipelines: &[String],
) -> Result<ExitCode> {
    if watch {
        if json {
            return Err(Error::config(
                "status: --json prints one document and --watch a live view; pick one",
            ));
        }
        watch::run(state, pipelines).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let report = model::read(state, pipelines, &mut model::Memory::default()).await?;
    if json {
        let doc = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::internal("writing the status as JSON").source(e))?;
        println!("{doc}");
    } else {
        print!("{}", text::render(&report));
    }
    Ok(ExitCode::SUCCESS)
}
