//! Progress bars and run summaries on the terminal.

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use siphon_core::{ExecutionStatus, StreamId, TableStats};
use siphon_engine::Observer;

/// One bar per table stream, drawn on stderr when it is a terminal.
#[derive(Debug)]
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<StreamId, ProgressBar>>,
}

impl Bars {
    pub fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::default(),
        }
    }

    fn bar(&self, stream: &StreamId) -> Option<ProgressBar> {
        self.bars.lock().ok()?.get(stream).cloned()
    }
}

impl Observer for Bars {
    fn table_started(&self, stream: &StreamId, total: Option<u64>) {
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{prefix:>24} [{bar:30}] {human_pos}/{human_len} rows  {rate}  eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0} rows/s", s.per_sec());
                })
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner(),
        };
        let bar = self.multi.add(bar);
        bar.set_prefix(stream.to_string());
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(stream.clone(), bar);
        }
    }

    fn table_resumed(&self, stream: &StreamId, rows: u64) {
        if let Some(bar) = self.bar(stream) {
            bar.set_position(rows);
            // The rate and eta count from here, not from the rows copied before.
            bar.reset_eta();
        }
    }

    fn rows_committed(&self, stream: &StreamId, rows: u64) {
        if let Some(bar) = self.bar(stream) {
            bar.inc(rows);
        }
    }

    fn table_finished(&self, stream: &StreamId, _stats: &TableStats) {
        if let Some(bar) = self.bars.lock().ok().and_then(|mut b| b.remove(stream)) {
            bar.finish_and_clear();
        }
    }
}

/// One line per table: what it read and wrote, how long it took, and any error.
/// A full load that replaced the target's previous rows says so (`replaced N`),
/// apart from the rows deleted one by one; a stopped table says `stopped`.
pub fn summary_line(pipeline: &str, t: &TableStats) -> String {
    let secs = t
        .finished_at
        .map(|f| (f - t.started_at).num_milliseconds() as f64 / 1000.0)
        .unwrap_or(0.0);
    let status = match (&t.status, &t.error) {
        (ExecutionStatus::Failed, Some(e)) => format!("FAILED: {e}"),
        (ExecutionStatus::Stopped, _) => {
            "stopped on request (the rows above are committed; the next run goes on from there)"
                .to_string()
        }
        (s, _) => s.as_str().to_string(),
    };
    let replaced = if t.replaced > 0 {
        format!("  replaced the previous {} rows", t.replaced)
    } else {
        String::new()
    };
    format!(
        "{pipeline}/{:<20} {:<11} read {:>9}  inserted {:>9}  updated {:>9}  deleted {:>7}{replaced}  {secs:>7.2}s  {status}",
        t.table.to_string(),
        t.mode.to_string(),
        t.rows_read,
        t.inserted,
        t.updated,
        t.deleted,
    )
}
