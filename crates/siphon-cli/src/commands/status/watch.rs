//! `siphon status --watch`: a full-screen view of every pipeline and table,
//! read again from the state store every 2 s, until `q` (or Ctrl-C, or Esc).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Wrap};
use ratatui::{DefaultTerminal, Frame};
use siphon_core::{Error, ErrorKind, Result, StateStore};

use super::model::{self, Memory, Report, SnapshotProgress, TableStatus};
use super::text;

/// How often the view reads the state store again.
pub const REFRESH: Duration = Duration::from_secs(2);

/// The longest wait for a key press between two checks of the refresh timer.
const KEY_WAIT: Duration = Duration::from_millis(200);

/// Width of the snapshot progress bar, in cells.
const BAR: usize = 12;

/// Runs the view until the user quits. Refuses (a `Config` error, exit 2)
/// when stdout is not a terminal. A failed read of the store is shown in the
/// view and read again at the next refresh; the terminal is restored on every
/// way out, a panic included.
pub async fn run<St: StateStore>(state: &St, wanted: &[String]) -> Result<()> {
    if !std::io::stdout().is_terminal() {
        return Err(Error::config(
            "status --watch draws a full-screen view and needs a terminal on stdout; \
             use `siphon status` or `siphon status --json` when writing to a pipe or a file",
        ));
    }
    let mut memory = Memory::default();
    // An unknown pipeline name is refused before the screen is taken.
    let first = model::read(state, wanted, &mut memory).await?;
    let terminal = ratatui::try_init().map_err(|e| terminal_error("open", e))?;
    let _restore = Restore;
    view(terminal, state, wanted, memory, first).await
}

/// Leaves raw mode and the alternate screen when the view ends.
#[derive(Debug)]
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

fn terminal_error(doing: &str, e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("status --watch: cannot {doing} the terminal"),
    )
    .source(e)
}

async fn view<St: StateStore>(
    mut terminal: DefaultTerminal,
    state: &St,
    wanted: &[String],
    mut memory: Memory,
    first: Report,
) -> Result<()> {
    let mut shown = Shown {
        report: first,
        failure: None,
    };
    let mut next = Instant::now() + REFRESH;
    loop {
        terminal
            .draw(|f| draw(f, &shown))
            .map_err(|e| terminal_error("draw on", e))?;
        let wait = next.saturating_duration_since(Instant::now()).min(KEY_WAIT);
        if tokio::task::block_in_place(|| event::poll(wait))
            .map_err(|e| terminal_error("read keys from", e))?
        {
            let ev = event::read().map_err(|e| terminal_error("read keys from", e))?;
            if quits(&ev) {
                return Ok(());
            }
        }
        if Instant::now() >= next {
            match model::read(state, wanted, &mut memory).await {
                Ok(r) => {
                    shown.report = r;
                    shown.failure = None;
                }
                Err(e) => shown.failure = Some((Utc::now(), e.to_string())),
            }
            next = Instant::now() + REFRESH;
        }
    }
}

/// `q`, Esc and Ctrl-C end the view (raw mode turns Ctrl-C into a key).
fn quits(ev: &Event) -> bool {
    let Event::Key(k) = ev else { return false };
    if k.kind == KeyEventKind::Release {
        return false;
    }
    matches!(
        k.code,
        KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc
    ) || (k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL))
}

/// What the screen shows: the last report read, and the last read's failure.
struct Shown {
    report: Report,
    failure: Option<(DateTime<Utc>, String)>,
}

fn draw(f: &mut Frame, shown: &Shown) {
    let report = &shown.report;
    let errors = errors(report);
    let error_height = if errors.is_empty() {
        0
    } else {
        (errors.len() as u16 * 2 + 2).min(f.area().height / 3)
    };
    let [top, main, bottom, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(error_height),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("siphon status", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(format!(
                "  pipelines: {}, read at {} UTC, again every {} s",
                report.pipelines.len(),
                report.generated_at.format("%H:%M:%S"),
                REFRESH.as_secs()
            )),
        ])),
        top,
    );
    tables(f, main, report);
    if !errors.is_empty() {
        f.render_widget(
            Paragraph::new(errors)
                .wrap(Wrap { trim: false })
                .block(Block::new().borders(Borders::TOP).title(" errors ")),
            bottom,
        );
    }
    let foot_line = match &shown.failure {
        Some((at, e)) => Line::styled(
            format!(
                "cannot read the state store ({}): {e}; showing the last read",
                at.format("%H:%M:%S")
            ),
            Style::new().fg(Color::Red),
        ),
        None => Line::styled("q quits", Style::new().add_modifier(Modifier::DIM)),
    };
    f.render_widget(Paragraph::new(foot_line), foot);
}

/// Each pipeline in a block of its own: a title line (the pipeline, who runs
/// it, the log it keeps), then its tables, one row each.
fn tables(f: &mut Frame, area: Rect, report: &Report) {
    let now = report.generated_at;
    if report.pipelines.is_empty() {
        f.render_widget(
            Paragraph::new("no pipelines: add one with `siphon sync add` or `siphon apply`"),
            area,
        );
        return;
    }
    let mut heights: Vec<Constraint> = report
        .pipelines
        .iter()
        .map(|p| Constraint::Length(3 + p.tables.len().max(1) as u16))
        .collect();
    heights.push(Constraint::Fill(1));
    let areas = Layout::vertical(heights).split(area);
    // Names and states as wide as the longest (within reason); the last run
    // takes what is left.
    let longest = |f: &dyn Fn(&TableStatus) -> usize, least: usize| {
        let most = report
            .pipelines
            .iter()
            .flat_map(|p| &p.tables)
            .map(f)
            .max()
            .unwrap_or(0);
        most.clamp(least, 40) as u16
    };
    let widths = [
        Constraint::Length(longest(&|t| t.table.chars().count(), 5)),
        Constraint::Length(longest(&|t| text::state(t).chars().count(), 5)),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(19),
        Constraint::Length(BAR as u16 + 6),
        Constraint::Fill(1),
    ];
    for (p, area) in report.pipelines.iter().zip(areas.iter()) {
        let mut about = vec![text::lease(p, now)];
        about.extend(text::log(p));
        about.extend(
            p.lag
                .as_ref()
                .map(|l| format!("lag {}", text::lag(Some(l)))),
        );
        let title = Line::from(vec![
            Span::styled(
                format!(" {} ", text::heading(p)),
                Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!("· {} ", about.join(" · "))),
        ]);
        let header = Row::new([
            "TABLE",
            "STATE",
            "ROWS/S",
            "LAG",
            "CHECKPOINT",
            "SNAPSHOT",
            "LAST RUN",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD));
        let mut rows: Vec<Row> = p
            .tables
            .iter()
            .map(|t| {
                Row::new([
                    Cell::from(t.table.clone()),
                    Cell::from(text::state(t)).style(state_style(t)),
                    Cell::from(text::rate(t.rows_per_second)),
                    Cell::from(text::lag(t.lag.as_ref())),
                    Cell::from(text::time(t.checkpoint_at)),
                    Cell::from(t.snapshot.map_or("-".to_string(), |s| bar(&s))),
                    Cell::from(text::last_run(t, now)),
                ])
            })
            .collect();
        if rows.is_empty() {
            rows.push(Row::new([Cell::from("no table has run yet")]));
        }
        let block = Block::new().borders(Borders::TOP).title(title);
        f.render_widget(Table::new(rows, widths).header(header).block(block), *area);
    }
}

fn state_style(t: &TableStatus) -> Style {
    match t.state {
        "failed" => Style::new().fg(Color::Red),
        "snapshotting" => Style::new().fg(Color::Yellow),
        "streaming" | "idle" => Style::new().fg(Color::Green),
        _ => Style::new(),
    }
}

/// `███████░░░░░  58%`, or the rows copied when the total is unknown.
fn bar(s: &SnapshotProgress) -> String {
    match s.ratio() {
        Some(r) => {
            let full = (r * BAR as f64).round() as usize;
            format!(
                "{}{} {:>3.0}%",
                "█".repeat(full),
                "░".repeat(BAR - full),
                r * 100.0
            )
        }
        None => text::progress(s),
    }
}

/// Each failed table's error, with when it is tried again.
fn errors(report: &Report) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for p in &report.pipelines {
        for t in &p.tables {
            if let Some(e) = &t.error {
                let retry = match e.next_retry {
                    Some(at) => format!(" (retry at {})", at.format("%H:%M:%S")),
                    None => String::new(),
                };
                lines.push(Line::from(vec![
                    Span::styled(
                        format!("{}/{}{retry}: ", p.name, t.table),
                        Style::new().fg(Color::Red),
                    ),
                    Span::raw(e.message.clone()),
                ]));
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_the_share_copied() {
        let half = SnapshotProgress {
            rows_done: 50,
            rows_total: Some(100),
        };
        assert_eq!(bar(&half), "██████░░░░░░  50%");
        let over = SnapshotProgress {
            rows_done: 150,
            rows_total: Some(100),
        };
        assert_eq!(bar(&over), "████████████ 100%");
        let unknown = SnapshotProgress {
            rows_done: 7,
            rows_total: None,
        };
        assert_eq!(bar(&unknown), "7 rows");
    }
}
