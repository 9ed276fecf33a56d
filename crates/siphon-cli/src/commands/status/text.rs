//! `siphon status` for people: each pipeline and its tables as plain text, and
//! the figures (rates, counts, ages) the full-screen view shows the same way.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::model::{LagStatus, PipelineStatus, Report, SnapshotProgress, TableStatus};

/// The report as plain text, one block per pipeline.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    if report.pipelines.is_empty() {
        out.push_str(
            "no pipelines: add one with `siphon sync add`, or write it in siphon.yaml and run `siphon apply`\n",
        );
    }
    for p in &report.pipelines {
        pipeline(&mut out, p, report.generated_at);
    }
    out
}

fn pipeline(out: &mut String, p: &PipelineStatus, now: DateTime<Utc>) {
    let _ = writeln!(out, "{}", heading(p));
    let _ = writeln!(out, "  {}", lease(p, now));
    if let Some(log) = log(p) {
        let _ = writeln!(out, "  {log}");
    }
    if let Some(lag) = pipeline_lag(p) {
        let _ = writeln!(out, "  {lag}");
    }
    if p.tables.is_empty() {
        let _ = writeln!(out, "  no table has run yet");
        return;
    }
    let header = [
        "TABLE",
        "STATE",
        "ROWS/S",
        "LAG",
        "CHECKPOINT",
        "PROGRESS",
        "LAST RUN",
    ];
    let rows: Vec<[String; 7]> = p
        .tables
        .iter()
        .map(|t| {
            [
                t.table.clone(),
                state(t),
                rate(t.rows_per_second),
                lag(t.lag.as_ref()),
                time(t.checkpoint_at),
                t.snapshot.map_or("-".to_string(), |s| progress(&s)),
                last_run(t, now),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    line(out, &header.map(str::to_string), &widths);
    for (t, r) in p.tables.iter().zip(&rows) {
        line(out, r, &widths);
        if let Some(e) = &t.error {
            let _ = writeln!(out, "    error: {}", e.message);
            let next = match (e.next_retry, e.kind.as_deref()) {
                (Some(at), _) => format!("retried at {}", at.format("%Y-%m-%d %H:%M:%S UTC")),
                (None, Some(_)) => "waits for an operator (`siphon sync resync`)".to_string(),
                (None, None) => "retried on the next run".to_string(),
            };
            let _ = writeln!(
                out,
                "    kind: {}, {next}",
                e.kind.as_deref().unwrap_or("unknown")
            );
        }
    }
}

fn line(out: &mut String, cells: &[String; 7], widths: &[usize; 7]) {
    let mut l = String::from("  ");
    for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
        if i + 1 == cells.len() {
            l.push_str(cell);
        } else {
            let _ = write!(l, "{cell:<w$}  ");
        }
    }
    let _ = writeln!(out, "{}", l.trim_end());
}

/// `pipeline p: src -> dst, mode full, schedule continuous`, and `, paused`
/// while the pipeline's own switch is off.
pub fn heading(p: &PipelineStatus) -> String {
    format!(
        "pipeline {}: {} -> {}, mode {}, schedule {}{}",
        p.name,
        p.source,
        p.target,
        p.mode,
        p.schedule,
        if p.enabled { "" } else { ", paused" }
    )
}

/// Who runs the pipeline now.
pub fn lease(p: &PipelineStatus, now: DateTime<Utc>) -> String {
    match &p.lease {
        Some(l) => format!(
            "run by {} (lease epoch {}, renewed within {})",
            l.holder,
            l.epoch,
            span((l.expires_at - now).num_milliseconds().max(0) as u64)
        ),
        None => "not running (no worker holds its lease)".to_string(),
    }
}

/// `cdc`: the log the source keeps for the pipeline, when measured.
pub fn log(p: &PipelineStatus) -> Option<String> {
    p.retained_log_bytes
        .map(|b| format!("log retained at the source: {}", bytes(b)))
}

/// `cdc`: the replication lag of the newest batch the pipeline applied.
pub fn pipeline_lag(p: &PipelineStatus) -> Option<String> {
    p.lag.as_ref().map(|l| {
        format!(
            "replication lag: {} (source commit {}, applied {})",
            lag(Some(l)),
            l.source_commit_at.format("%Y-%m-%d %H:%M:%S%.3f"),
            l.applied_at.format("%H:%M:%S%.3f")
        )
    })
}

/// A replication lag: `12 ms`, `1.5 s`, `3 min`; `-` when unknown.
pub fn lag(l: Option<&LagStatus>) -> String {
    match l {
        None => "-".to_string(),
        Some(l) if l.seconds < 1.0 => format!("{:.0} ms", l.seconds * 1000.0),
        Some(l) => span((l.seconds * 1000.0) as u64),
    }
}

/// `idle`, `snapshotting`, `failed (connection, retry at 06:00:05)`, with a
/// note when the table is switched off or a reload is pending.
pub fn state(t: &TableStatus) -> String {
    let mut s = match &t.error {
        Some(e) => match (e.kind.as_deref(), e.next_retry) {
            (Some(kind), Some(at)) => {
                format!("failed ({kind}, retry at {})", at.format("%H:%M:%S"))
            }
            (Some(kind), None) => format!("failed ({kind})"),
            (None, _) => "failed".to_string(),
        },
        None => t.state.to_string(),
    };
    if !t.enabled && t.state != "paused" {
        s.push_str(", pausing");
    }
    if t.resync_requested {
        s.push_str(", resync requested");
    }
    s
}

/// `1,234.5` rows a second, `-` when unknown.
pub fn rate(r: Option<f64>) -> String {
    match r {
        None => "-".to_string(),
        Some(r) if r < 10.0 => format!("{r:.1}"),
        Some(r) => count(r.round() as u64),
    }
}

/// `5,000/12,000 (41%)`, or `5,000 rows` when the total is unknown.
pub fn progress(s: &SnapshotProgress) -> String {
    match (s.rows_total, s.ratio()) {
        (Some(total), Some(ratio)) => format!(
            "{}/{} ({:.0}%)",
            count(s.rows_done),
            count(total),
            ratio * 100.0
        ),
        _ => format!("{} rows", count(s.rows_done)),
    }
}

/// `succeeded, 1,000 rows in 0.4 s, 12 s ago`.
pub fn last_run(t: &TableStatus, now: DateTime<Utc>) -> String {
    let Some(r) = &t.last_run else {
        return "-".to_string();
    };
    match (r.duration_ms, r.finished_at) {
        (Some(ms), Some(end)) => format!(
            "{}, {} rows in {}, {} ago",
            r.status,
            count(r.rows_read),
            span(ms),
            span((now - end).num_milliseconds().max(0) as u64)
        ),
        _ => format!(
            "{} for {}",
            r.status,
            span((now - r.started_at).num_milliseconds().max(0) as u64)
        ),
    }
}

/// `2026-12-02 06:00:01`, `-` when unknown.
pub fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or("-".to_string(), |t| {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    })
}

/// `12,345`
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `0.4 s`, `12 s`, `3 min`, `2 h 5 min`.
pub fn span(ms: u64) -> String {
    match ms {
        0..=9_999 => format!("{:.1} s", ms as f64 / 1000.0),
        10_000..=119_999 => format!("{} s", ms / 1000),
        120_000..=7_199_999 => format!("{} min", ms / 60_000),
        _ => format!("{} h {} min", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// `12.0 MiB`
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(12_345_678), "12,345,678");
        assert_eq!(span(420), "0.4 s");
        assert_eq!(span(42_000), "42 s");
        assert_eq!(span(600_000), "10 min");
        assert_eq!(span(7_500_000), "2 h 5 min");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(rate(None), "-");
        assert_eq!(rate(Some(2.26)), "2.3");
        assert_eq!(rate(Some(12_345.6)), "12,346");
        let half = SnapshotProgress {
            rows_done: 5_000,
            rows_total: Some(10_000),
        };
        assert_eq!(progress(&half), "5,000/10,000 (50%)");
        let unknown = SnapshotProgress {
            rows_done: 5_000,
            rows_total: None,
        };
        assert_eq!(progress(&unknown), "5,000 rows");
        let at = Utc::now();
        let behind = |seconds| LagStatus {
            seconds,
            source_commit_at: at,
            applied_at: at,
        };
        assert_eq!(lag(None), "-");
        assert_eq!(lag(Some(&behind(0.0124))), "12 ms");
        assert_eq!(lag(Some(&behind(1.52))), "1.5 s");
        assert_eq!(lag(Some(&behind(300.0))), "5 min");
    }
}
