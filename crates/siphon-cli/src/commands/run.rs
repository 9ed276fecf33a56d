//! `siphon apply` and `siphon run`.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::Arc;

use siphon::{AnyStateStore, RunEvents};
use siphon_core::{
    Error, ErrorKind, ExecutionStatus, Mode, PipelineSpec, Result, Schedule, StateStore,
};
use siphon_engine::{Observer, PassReport, Shutdown};

use crate::config::{validate_pipeline, ConfigFile};
use crate::connect::registry;
use crate::progress::{summary_line, Bars};

/// Loads a config file's connections and pipelines into the state store. URLs are
/// stored as written, `${VAR}` unexpanded. A pipeline paused in the catalog
/// (`siphon sync disable NAME`) stays paused, as its tables' switches stay:
/// a file pauses one with `enabled: false`, and `siphon sync enable NAME`
/// resumes it.
pub async fn apply<St: StateStore>(state: &St, file: &ConfigFile) -> Result<()> {
    let known = state.connections().await?;
    file.validate(&known)?;
    for (name, url) in &file.connections {
        state.put_connection(name, url).await?;
    }
    let stored = state.pipelines().await?;
    for (name, spec) in &file.pipelines {
        let mut spec = spec.clone();
        if spec.enabled && stored.get(name).is_some_and(|s| !s.enabled) {
            spec.enabled = false;
            eprintln!("pipeline {name}: stays paused (`siphon sync enable {name}` resumes it)");
        }
        state.put_pipeline(name, &spec).await?;
    }
    tracing::info!(
        connections = file.connections.len(),
        pipelines = file.pipelines.len(),
        "applied the config to the state store"
    );
    Ok(())
}

/// The pipelines to run: the named ones (each must exist), or all.
async fn selected<St: StateStore>(
    state: &St,
    names: &[String],
) -> Result<BTreeMap<String, PipelineSpec>> {
    let all = state.pipelines().await?;
    if names.is_empty() {
        if all.is_empty() {
            return Err(Error::config(
                "no pipelines are defined: write them in siphon.yaml and pass it with -f, or run `siphon apply -f`",
            ));
        }
        return Ok(all);
    }
    let mut out = BTreeMap::new();
    for n in names {
        let spec = all.get(n).ok_or_else(|| {
            Error::config(format!(
                "unknown pipeline `{n}`; defined: {}",
                all.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        validate_pipeline(n, spec)?;
        out.insert(n.clone(), spec.clone());
    }
    Ok(out)
}

/// Opens the pipeline's connectors and runs one pass. A stop request ends it
/// while it connects at once, and while it runs at its next chunk boundary.
pub async fn pass<St: StateStore>(
    name: &str,
    spec: &PipelineSpec,
    state: &St,
    observer: &dyn Observer,
    shutdown: &Shutdown,
) -> Result<PassReport> {
    siphon::run_pass(name, spec, state, &registry(), observer, shutdown).await
}

fn print_report(name: &str, report: &PassReport) {
    for t in &report.tables {
        println!("{}", summary_line(name, t));
    }
}

/// What a continuous run does with the pipeline, said once at its start.
fn plan_line(name: &str, spec: &PipelineSpec) -> String {
    let mut modes = vec![spec.mode];
    modes.extend(spec.tables_config.values().filter_map(|c| c.mode));
    modes.sort_by_key(|m| m.to_string());
    modes.dedup();
    let continuous = spec.schedule == Schedule::Continuous;
    let does: Vec<String> = modes
        .iter()
        .map(|m| match (m, continuous) {
            (Mode::Full, true) => "full tables are copied once (when they have no complete copy), \
                                   then again only after `siphon sync resync`"
                .to_string(),
            (Mode::Full, false) => {
                format!("full tables are copied at each run ({})", spec.schedule)
            }
            (Mode::Incremental, true) => "incremental tables are polled continuously".to_string(),
            (Mode::Incremental, false) => {
                format!(
                    "incremental tables are polled at each run ({})",
                    spec.schedule
                )
            }
            (Mode::Cdc, true) => "cdc tables stream their changes continuously".to_string(),
            (Mode::Cdc, false) => format!(
                "cdc tables catch up with the change log at each run ({})",
                spec.schedule
            ),
            (Mode::Merge, _) => "merge tables are not available in this version".to_string(),
            (Mode::RowCount, true) => {
                "row_count tables are copied again in full whenever their row \
                                       count differs from the target's (compared continuously)"
                    .to_string()
            }
            (Mode::RowCount, false) => format!(
                "row_count tables are copied again in full when their row count differs from the \
                 target's (compared at each run, {})",
                spec.schedule
            ),
        })
        .collect();
    format!(
        "pipeline {name}: {} -> {}, mode {}, tables {}, schedule {}: {}; Ctrl-C stops",
        spec.source,
        spec.target,
        spec.mode,
        spec.tables.join(", "),
        spec.schedule,
        does.join("; ")
    )
}

/// The failures a following pipeline printed, per table (`""` for the
/// pipeline itself), so each is printed once when it happens and once when
/// it is over, not again at every pass.
#[derive(Default)]
struct Failures(HashMap<String, String>);

impl Failures {
    /// Prints a failure unless it is the one printed last for `key`.
    fn failed(&mut self, key: &str, error: &str, line: String) {
        if self.0.get(key).map(String::as_str) != Some(error) {
            eprintln!("{line}");
            self.0.insert(key.to_string(), error.to_string());
        }
    }

    /// Forgets `key`'s failure; whether there was one.
    fn recovered(&mut self, key: &str) -> bool {
        self.0.remove(key).is_some()
    }

    /// Prints what a pass did: tables that found work, failures once, and
    /// recoveries.
    fn report(&mut self, name: &str, report: &PassReport) {
        if self.recovered("") {
            eprintln!("pipeline {name}: its passes run again");
        }
        for t in &report.tables {
            let key = t.table.key();
            let line = summary_line(name, t);
            match (&t.status, &t.error) {
                (ExecutionStatus::Failed, Some(e)) => self.failed(&key, e, line),
                _ if self.recovered(&key) => println!("{line}  (recovered)"),
                _ if t.rows_read > 0 || t.deleted > 0 || t.replaced > 0 => println!("{line}"),
                _ => {}
            }
        }
    }
}

/// Runs the pipelines once, or on their schedules until Ctrl-C or SIGTERM.
pub async fn run(state: Arc<AnyStateStore>, names: &[String], once: bool) -> Result<ExitCode> {
    let pipelines = selected(state.as_ref(), names).await?;
    let shutdown = Shutdown::new();
    super::watch_signals(shutdown.clone(), |first| {
        if first {
            eprintln!("stopping after the current chunk (press Ctrl-C again to exit now)");
        }
    });
    let bars = Arc::new(Bars::new());
    if once {
        let mut failed = false;
        let mut config_error = false;
        for (name, spec) in &pipelines {
            if shutdown.requested() {
                eprintln!("pipeline {name}: not run: stopped on request");
                continue;
            }
            if !spec.enabled {
                println!(
                    "pipeline {name}: paused, not run (`siphon sync enable {name}` enables it)"
                );
                continue;
            }
            match pass(name, spec, state.as_ref(), bars.as_ref(), &shutdown).await {
                Ok(report) => {
                    print_report(name, &report);
                    failed |= report.status == ExecutionStatus::Failed;
                }
                Err(e) if e.kind() == ErrorKind::Cancelled => {
                    eprintln!("pipeline {name}: {e}");
                }
                Err(e) => {
                    eprintln!("error: pipeline {name}: {e}");
                    failed = true;
                    config_error |= e.kind() == ErrorKind::Config;
                }
            }
        }
        return Ok(match (config_error, failed) {
            (true, _) => ExitCode::from(2),
            (false, true) => ExitCode::FAILURE,
            // Stopped by Ctrl-C or SIGTERM, as shells report it.
            _ if shutdown.requested() => ExitCode::from(130),
            _ => ExitCode::SUCCESS,
        });
    }

    for (name, spec) in &pipelines {
        eprintln!("{}", plan_line(name, spec));
    }

    let mut tasks = Vec::new();
    for (name, spec) in pipelines {
        let (state, bars, shutdown) = (state.clone(), bars.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            let mut printed = Failures::default();
            siphon::follow(
                &name,
                &spec,
                state.as_ref(),
                &registry(),
                bars.as_ref(),
                &shutdown,
                &mut printed,
            )
            .await
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            tracing::error!(error = %e, "a pipeline task ended abnormally");
        }
    }
    // A following run ends on Ctrl-C or SIGTERM: that is its normal end.
    Ok(ExitCode::SUCCESS)
}

/// What a following run prints: failures once, recoveries, and changes to
/// the pipeline in the catalog.
impl RunEvents for Failures {
    fn removed(&mut self, name: &str) {
        eprintln!("pipeline {name}: removed from the catalog; this run stops it");
    }

    fn changed(&mut self, name: &str) {
        eprintln!("pipeline {name}: changed in the catalog; it goes on as it now is");
    }

    fn pass_ended(&mut self, name: &str, report: &PassReport) {
        self.report(name, report);
    }

    fn pass_stopped(&mut self, name: &str, e: &Error) {
        eprintln!("pipeline {name}: {e}");
    }

    fn pass_failed(&mut self, name: &str, e: &Error) {
        let msg = e.to_string();
        self.failed("", &msg, format!("error: pipeline {name}: {msg}"));
    }

    fn paused(&mut self, name: &str, log: bool) {
        eprintln!(
            "pipeline {name}: paused; nothing runs until `siphon sync enable {name}`, and this run waits"
        );
        if log {
            eprintln!("pipeline {name}: {}", siphon::kept_log_warning());
        }
    }

    fn resumed(&mut self, name: &str) {
        eprintln!("pipeline {name}: enabled again; it resumes from its checkpoints");
    }
}
