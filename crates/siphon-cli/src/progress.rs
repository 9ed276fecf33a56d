//! Progress bars and run summaries on the terminal, and plain progress lines
//! when stderr is not one.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use siphon_core::{ExecutionStatus, Mode, RowCounts, StreamId, TableStats};
use siphon_engine::Observer;

/// One bar per table stream, drawn on stderr when it is a terminal; when it is
/// not (a log file, a pipe, a service), one plain line per table when its copy
/// starts and then at most every `SIPHON_PROGRESS_EVERY` (default 10 s).
#[derive(Debug)]
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<StreamId, ProgressBar>>,
    /// Per bar, the rows a resumed load had already copied: its rate and eta
    /// count only the rows copied since.
    resumed_at: Mutex<HashMap<StreamId, Arc<AtomicU64>>>,
    /// Set when stderr is not a terminal: plain lines instead of bars.
    lines: Option<Lines>,
}

/// Plain progress lines, and how often they are printed.
#[derive(Debug)]
struct Lines {
    every: Duration,
    copies: Mutex<HashMap<StreamId, Copying>>,
}

/// One table's copy as the plain lines see it.
#[derive(Debug)]
struct Copying {
    total: Option<u64>,
    done: u64,
    /// Rows a resumed copy had committed before: the rate counts from here.
    base: u64,
    since: Instant,
    printed: Instant,
}

/// Prints a progress line about `stream` on stderr: as it is, or with
/// `--log-format json` as a JSON object shaped like the log lines
/// (`timestamp`, `level`, `fields.message`, `fields.table`, `target`).
fn say(stream: &StreamId, line: &str) {
    match crate::logs::format() {
        crate::logs::LogFormat::Text => eprintln!("{line}"),
        crate::logs::LogFormat::Json => eprintln!(
            "{}",
            serde_json::json!({
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": "INFO",
                "fields": {"message": line, "table": stream.to_string()},
                "target": "siphon::progress",
            })
        ),
    }
}

/// Default interval of plain progress lines.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// `SIPHON_PROGRESS_EVERY` (`10s`, `500ms`, `0s` for every chunk), else 10 s;
/// an unreadable value is said once and the default kept.
fn plain_every() -> Duration {
    let Ok(v) = std::env::var("SIPHON_PROGRESS_EVERY") else {
        return PLAIN_EVERY;
    };
    let v = v.trim();
    let parsed = if let Some(ms) = v.strip_suffix("ms") {
        ms.parse::<u64>().ok().map(Duration::from_millis)
    } else {
        v.strip_suffix('s')
            .unwrap_or(v)
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
    };
    parsed.unwrap_or_else(|| {
        eprintln!("SIPHON_PROGRESS_EVERY={v:?} is not a duration like 10s or 500ms: using 10s");
        PLAIN_EVERY
    })
}

impl Copying {
    /// `orders: 120000/1000000 rows (12%), 50000 rows/s, eta 0m18s`.
    fn line(&self, stream: &StreamId) -> String {
        let secs = self.since.elapsed().as_secs_f64();
        let per_sec = rate_since(self.done, self.base, secs);
        match self.total {
            Some(total) if total > 0 => {
                let left = total.saturating_sub(self.done);
                let eta = if per_sec > 0.0 {
                    let s = (left as f64 / per_sec).round() as u64;
                    format!("{}m{:02}s", s / 60, s % 60)
                } else {
                    "-".to_string()
                };
                let pct = (self.done.min(total) * 100) / total;
                format!(
                    "{stream}: {}/{total} rows ({pct}%), {per_sec:.0} rows/s, eta {eta}",
                    self.done
                )
            }
            _ => format!("{stream}: {} rows, {per_sec:.0} rows/s", self.done),
        }
    }
}

/// Rows per second copied since the bar started, or since a resumed load's
/// rows already copied.
fn rate(s: &ProgressState, base: &AtomicU64) -> f64 {
    rate_since(
        s.pos(),
        base.load(Ordering::Relaxed),
        s.elapsed().as_secs_f64(),
    )
}

/// Rows per second over `secs` for a bar at `pos` that started at `base`.
fn rate_since(pos: u64, base: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        pos.saturating_sub(base) as f64 / secs
    } else {
        0.0
    }
}

impl Bars {
    pub fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::default(),
            resumed_at: Mutex::default(),
            lines: (!std::io::stderr().is_terminal()).then(|| Lines {
                every: plain_every(),
                copies: Mutex::default(),
            }),
        }
    }

    /// Runs `f` on the plain-line state of `stream`, when lines are printed.
    fn copying(&self, stream: &StreamId, f: impl FnOnce(&mut Copying, Duration)) {
        let Some(lines) = &self.lines else { return };
        if let Ok(mut copies) = lines.copies.lock() {
            if let Some(c) = copies.get_mut(stream) {
                f(c, lines.every);
            }
        }
    }

    fn bar(&self, stream: &StreamId) -> Option<ProgressBar> {
        self.bars.lock().ok()?.get(stream).cloned()
    }
}

impl Observer for Bars {
    fn table_started(&self, stream: &StreamId, total: Option<u64>) {
        if let Some(lines) = &self.lines {
            match total {
                Some(n) => say(stream, &format!("{stream}: copying about {n} rows")),
                None => say(stream, &format!("{stream}: copying")),
            }
            let now = Instant::now();
            if let Ok(mut copies) = lines.copies.lock() {
                copies.insert(
                    stream.clone(),
                    Copying {
                        total,
                        done: 0,
                        base: 0,
                        since: now,
                        printed: now,
                    },
                );
            }
            return;
        }
        let base = Arc::new(AtomicU64::new(0));
        let (for_rate, for_eta) = (base.clone(), base.clone());
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{prefix:>24} [{bar:30}] {human_pos}/{human_len} rows  {rate}  eta {left}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key(
                    "rate",
                    move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0} rows/s", rate(s, &for_rate));
                    },
                )
                .with_key(
                    "left",
                    move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let per_sec = rate(s, &for_eta);
                        let left = s.len().unwrap_or(0).saturating_sub(s.pos());
                        if per_sec > 0.0 {
                            let secs = (left as f64 / per_sec).round() as u64;
                            let _ = write!(w, "{}m{:02}s", secs / 60, secs % 60);
                        } else {
                            let _ = write!(w, "-");
                        }
                    },
                )
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner(),
        };
        if let Ok(mut bases) = self.resumed_at.lock() {
            bases.insert(stream.clone(), base);
        }
        let bar = self.multi.add(bar);
        bar.set_prefix(stream.to_string());
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(stream.clone(), bar);
        }
    }

    fn table_resumed(&self, stream: &StreamId, rows: u64) {
        self.copying(stream, |c, _| {
            say(
                stream,
                &format!("{stream}: resuming after {rows} rows already copied"),
            );
            c.done = rows;
            c.base = rows;
            c.since = Instant::now();
        });
        if let Some(bar) = self.bar(stream) {
            // The rate and eta count from here, not from the rows copied before.
            if let Some(base) = self
                .resumed_at
                .lock()
                .ok()
                .and_then(|b| b.get(stream).cloned())
            {
                base.store(rows, Ordering::Relaxed);
            }
            bar.set_position(rows);
            bar.reset_elapsed();
        }
    }

    fn rows_committed(&self, stream: &StreamId, rows: u64) {
        self.copying(stream, |c, every| {
            c.done += rows;
            if c.printed.elapsed() >= every {
                c.printed = Instant::now();
                say(stream, &c.line(stream));
            }
        });
        if let Some(bar) = self.bar(stream) {
            bar.inc(rows);
        }
    }

    fn copy_finished(&self, stream: &StreamId) {
        // A cdc table streams on: its changes are no rows of the copy.
        if let Some(lines) = &self.lines {
            if let Ok(mut copies) = lines.copies.lock() {
                if let Some(c) = copies.remove(stream) {
                    say(
                        stream,
                        &format!("{stream}: copied {} rows; streaming", c.done),
                    );
                }
            }
        }
        if let Ok(mut bases) = self.resumed_at.lock() {
            bases.remove(stream);
        }
        if let Some(bar) = self.bars.lock().ok().and_then(|mut b| b.remove(stream)) {
            bar.finish_and_clear();
        }
    }

    fn table_finished(&self, stream: &StreamId, _stats: &TableStats) {
        if let Some(lines) = &self.lines {
            if let Ok(mut copies) = lines.copies.lock() {
                copies.remove(stream);
            }
        }
        if let Ok(mut bases) = self.resumed_at.lock() {
            bases.remove(stream);
        }
        if let Some(bar) = self.bars.lock().ok().and_then(|mut b| b.remove(stream)) {
            bar.finish_and_clear();
        }
    }
}

/// One line per table: what it read (rows, and the bytes of their data in
/// parentheses) and wrote, how long it took, and any error.
/// A full load that replaced the target's previous rows says so (`replaced N`),
/// apart from the rows deleted one by one; a `row_count` table says what its
/// row counts were and whether they made it copy; a stopped table says `stopped`.
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
    let replaced = match (t.replaced, t.mode) {
        (0, _) => String::new(),
        // A replicated TRUNCATE, or the table emptied for a new snapshot.
        (n, Mode::Cdc) => format!("  emptied {n} rows"),
        (n, _) => format!("  replaced the previous {n} rows"),
    };
    // What a row_count table's comparison decided.
    let counts = match t.row_counts {
        None => String::new(),
        Some(c) if c.equal() => format!("  row counts equal ({}): not copied", c.source),
        Some(RowCounts {
            source,
            target: Some(target),
        }) => format!("  row counts differed (source {source}, target {target})"),
        Some(RowCounts { source, .. }) => {
            format!("  no complete copy on the target (source {source} rows)")
        }
    };
    format!(
        "{pipeline}/{:<20} {:<11} read {:>9} ({:>10})  inserted {:>9}  updated {:>9}  deleted {:>7}{replaced}{counts}  {secs:>7.2}s  {status}",
        t.table.to_string(),
        t.mode.to_string(),
        t.rows_read,
        crate::commands::status::text::bytes(t.bytes),
        t.inserted,
        t.updated,
        t.deleted,
    )
}

#[cfg(test)]
mod rate_tests {
    use super::rate_since;

    #[test]
    fn a_summary_line_shows_the_bytes_read() {
        use siphon_core::{Mode, TableName, TableStats};
        let mut t = TableStats::starting(&TableName::new(Some("public"), "t"), Mode::Full);
        t.rows_read = 1000;
        t.bytes = 50_000;
        let line = super::summary_line("p", &t);
        assert!(line.contains("read      1000 (  48.8 KiB)"), "{line}");
        assert_eq!(crate::commands::status::text::bytes(512), "512 B");
        assert_eq!(crate::commands::status::text::bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn a_resumed_load_counts_only_the_rows_copied_since() {
        // 1,000,000 rows were copied before; 5,000 more in 2 s is 2,500 rows/s.
        assert_eq!(rate_since(1_005_000, 1_000_000, 2.0), 2_500.0);
        assert_eq!(rate_since(1_000_000, 1_000_000, 0.0), 0.0);
        assert_eq!(rate_since(10, 0, 5.0), 2.0);
    }
}
