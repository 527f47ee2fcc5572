//! Draws a [`Model`] into a ratatui frame: chain, batches and provers tables, queues,
//! throughput, the event log, a status line and the key bindings.

use crate::model::{Focus, Model, Severity, THROUGHPUT_BUCKET_MS, THROUGHPUT_BUCKETS};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table, TableState};

/// The key bindings, as the footer shows them.
pub const KEYS: &str = "q quit · tab switch table · ↑↓ PgUp PgDn Home End move · c cordon / u uncordon prover · r retry / x cancel job · p pause / s resume sender";

pub fn render(model: &Model, frame: &mut Frame) {
    let [title, chain, tables, lower, status, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(5),
        Constraint::Min(6),
        Constraint::Length(10),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    render_title(model, frame, title);
    render_chain(model, frame, chain);
    let [jobs, provers] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(tables);
    render_jobs(model, frame, jobs);
    render_provers(model, frame, provers);
    let [queues, throughput, events] = Layout::horizontal([
        Constraint::Percentage(30),
        Constraint::Percentage(25),
        Constraint::Percentage(45),
    ])
    .areas(lower);
    render_queues(model, frame, queues);
    render_throughput(model, frame, throughput);
    render_events(model, frame, events);
    let line = match model.status_line() {
        Some(s) if s.error => Line::styled(s.text, Style::new().fg(Color::Red)),
        Some(s) => Line::styled(s.text, Style::new().fg(Color::Green)),
        None => Line::raw(""),
    };
    frame.render_widget(Paragraph::new(line), status);
    frame.render_widget(
        Paragraph::new(Line::styled(KEYS, Style::new().fg(Color::DarkGray))),
        footer,
    );
}

fn render_title(model: &Model, frame: &mut Frame, area: Rect) {
    let s = model.status();
    let mut spans = vec![
        Span::styled(
            "proofmill monitor",
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(" · {} · ", model.coordinator())),
        if model.watching() {
            Span::raw(model.feed().to_string())
        } else {
            Span::styled(model.feed().to_string(), Style::new().fg(Color::Red))
        },
    ];
    if s.standby {
        spans.push(Span::styled(
            format!(" · STANDBY (active: {})", s.active_url),
            Style::new().fg(Color::Yellow),
        ));
    }
    if s.draining {
        spans.push(Span::styled(" · DRAINING", Style::new().fg(Color::Yellow)));
    }
    if s.from_memory {
        spans.push(Span::styled(
            format!(" · store unreachable: {}", s.store_error),
            Style::new().fg(Color::Red),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn number(n: Option<u64>) -> String {
    n.map_or_else(|| "-".into(), |n| n.to_string())
}

fn render_chain(model: &Model, frame: &mut Frame, area: Rect) {
    let s = model.status();
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let mut figures = vec![
        Span::raw("sealed "),
        Span::styled(number(s.last_sealed_batch), bold),
        Span::raw("   proven "),
        Span::styled(number(s.last_proven_batch), bold),
        Span::raw("   committed "),
        Span::styled(number(s.last_committed_batch), bold),
        Span::raw("   verified "),
        Span::styled(number(s.last_verified_batch), bold),
    ];
    // A rollup that buys proofs: what the market proved, what fell back, what waits for it.
    if let Some(m) = &s.market {
        let held: u64 = s.jobs.values().map(|c| c.held).sum();
        figures.push(Span::raw(format!(
            "   market ({}): {} by networks, {} fell back, {held} held",
            m.mode, m.proven_by_network, m.fell_back
        )));
    }
    let figures = Line::from(figures);
    let verify_tx = Line::raw(match &s.last_verify_tx {
        Some(t) => format!(
            "last verify tx {} (batches {}..={}, gas {})",
            t.tx_hash, t.first_batch, t.last_batch, t.gas_used
        ),
        None => "no verify tx yet".into(),
    });
    let mut notes: Vec<Span> = Vec::new();
    for p in &s.paused {
        let reason = if p.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", p.reason)
        };
        notes.push(Span::styled(
            format!("{} PAUSED{reason}  ", p.component),
            Style::new().fg(Color::Yellow),
        ));
    }
    for w in model.warnings() {
        notes.push(Span::styled(
            format!("⚠ {}  ", w.message),
            Style::new().fg(Color::Red),
        ));
    }
    if notes.is_empty() {
        notes.push(Span::styled(
            if model.has_status() {
                "nothing paused, no warnings"
            } else {
                "reading status…"
            },
            Style::new().fg(Color::DarkGray),
        ));
    }
    frame.render_widget(
        Paragraph::new(vec![figures, verify_tx, Line::from(notes)])
            .block(Block::default().borders(Borders::ALL).title(" chain ")),
        area,
    );
}

fn table_block(title: String, focused: bool) -> Block<'static> {
    let style = if focused {
        Style::new().fg(Color::Cyan)
    } else {
        Style::new()
    };
    Block::default()
        .borders(Borders::ALL)
        .border_style(style)
        .title(title)
}

/// The window of `len` rows that keeps `selected` visible in `height` rows; only those are
/// built, so a fleet of thousands costs a screenful per frame.
fn window(len: usize, selected: usize, height: usize) -> (usize, usize) {
    let height = height.max(1);
    let first = selected
        .saturating_sub(height - 1)
        .min(len.saturating_sub(height));
    (first, (first + height).min(len))
}

fn render_jobs(model: &Model, frame: &mut Frame, area: Rect) {
    let focused = model.focus() == Focus::Jobs;
    let s = model.status();
    let rows_height = area.height.saturating_sub(3) as usize;
    let (first, end) = window(model.job_count(), model.selected_job(), rows_height);
    let rows = model.jobs().skip(first).take(end - first).map(|j| {
        // A transaction's hash once recorded; "yes" when L1 has the batch but no record of
        // its transaction was read (committed by another sequencer, or before this monitor
        // saw the settlement).
        let commit = match &j.commit_tx {
            Some(t) => short_hash(t),
            None if s.last_committed_batch.is_some_and(|c| j.batch <= c) => "yes".into(),
            None => String::new(),
        };
        let verify = match (&j.verify_tx, model.verify_tx_of(j.batch)) {
            (Some(t), _) => short_hash(t),
            (None, Some(t)) => short_hash(&t.tx_hash),
            (None, None) if s.last_verified_batch.is_some_and(|v| j.batch <= v) => "yes".into(),
            (None, None) => String::new(),
        };
        let state_style = match j.state.as_str() {
            "proven" => Style::new().fg(Color::Green),
            "failed" | "cancelled" => Style::new().fg(Color::Red),
            "leased" => Style::new().fg(Color::Cyan),
            _ => Style::new(),
        };
        Row::new(vec![
            Cell::from(j.batch.to_string()),
            Cell::from(j.proof_type.clone()),
            Cell::from(j.state.clone()).style(state_style),
            Cell::from(j.prover.clone()),
            Cell::from(j.prove_ms.map_or_else(String::new, |ms| format!("{ms} ms"))),
            Cell::from(j.failed_attempts.to_string()),
            Cell::from(commit),
            Cell::from(verify),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Min(10),
            Constraint::Length(9),
            Constraint::Length(5),
            Constraint::Length(12),
            Constraint::Length(12),
        ],
    )
    .header(
        Row::new([
            "batch",
            "type",
            "state",
            "prover",
            "prove",
            "fails",
            "commit tx",
            "verify tx",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .block(table_block(
        format!(" batches ({} jobs) ", model.job_count()),
        focused,
    ))
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default();
    if focused && model.job_count() > 0 {
        state.select(Some(model.selected_job() - first));
    }
    frame.render_stateful_widget(table, area, &mut state);
}

fn short_hash(hash: &str) -> String {
    if hash.chars().count() > 12 {
        format!("{}…", hash.chars().take(11).collect::<String>())
    } else {
        hash.to_string()
    }
}

fn render_provers(model: &Model, frame: &mut Frame, area: Rect) {
    let focused = model.focus() == Focus::Provers;
    let provers = model.provers();
    let rows_height = area.height.saturating_sub(3) as usize;
    let (first, end) = window(provers.len(), model.selected_prover(), rows_height);
    let now = model.now_ms();
    let rows = provers[first..end].iter().map(|p| {
        let seen = if p.connected {
            "now".to_string()
        } else if p.last_seen_ms == 0 {
            "-".to_string()
        } else {
            format!("{} ago", age(now.saturating_sub(p.last_seen_ms)))
        };
        let cordon = if p.cordoned {
            if p.cordon_reason.is_empty() {
                "CORDONED".to_string()
            } else {
                format!("CORDONED ({})", p.cordon_reason)
            }
        } else {
            String::new()
        };
        let style = if p.cordoned {
            Style::new().fg(Color::Yellow)
        } else if !p.connected {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new()
        };
        Row::new(vec![
            Cell::from(p.name.clone()),
            Cell::from(p.proof_types.join(",")),
            Cell::from(p.capacity.to_string()),
            Cell::from(p.running_tasks.len().to_string()),
            Cell::from(p.proofs_accepted.to_string()),
            Cell::from((p.task_errors + p.invalid_proofs).to_string()),
            Cell::from(seen),
            Cell::from(cordon),
        ])
        .style(style)
    });
    let connected = provers.iter().filter(|p| p.connected).count();
    let table = Table::new(
        rows,
        [
            Constraint::Min(10),
            Constraint::Length(10),
            Constraint::Length(3),
            Constraint::Length(3),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Min(8),
        ],
    )
    .header(
        Row::new([
            "name", "types", "cap", "run", "done", "failed", "seen", "cordon",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .block(table_block(
        format!(" provers ({connected} of {} connected) ", provers.len()),
        focused,
    ))
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default();
    if focused && !provers.is_empty() {
        state.select(Some(model.selected_prover() - first));
    }
    frame.render_stateful_widget(table, area, &mut state);
}

/// A duration for an operator: `42s`, `3m05s`, `2h07m`.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

fn render_queues(model: &Model, frame: &mut Frame, area: Rect) {
    let mut types: Vec<&String> = model.job_counts().keys().collect();
    types.sort();
    let now = model.now_ms();
    let rows = types.into_iter().map(|t| {
        let c = &model.job_counts()[t];
        let oldest = match model.oldest_queued_ms(t) {
            Some(at) if c.queued > 0 => age(now.saturating_sub(at)),
            _ => "-".into(),
        };
        Row::new(vec![
            t.clone(),
            c.queued.to_string(),
            oldest,
            c.leased.to_string(),
            c.proven.to_string(),
            c.failed.to_string(),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Min(6),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Length(6),
        ],
    )
    .header(
        Row::new(["type", "queued", "oldest", "leased", "proven", "failed"])
            .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .block(Block::default().borders(Borders::ALL).title(" queues "));
    frame.render_widget(table, area);
}

fn render_throughput(model: &Model, frame: &mut Frame, area: Rect) {
    let data = model.throughput();
    let title = format!(
        " proofs/s {:.2} (1 min) · last {} min ",
        model.proofs_per_second(),
        THROUGHPUT_BUCKETS as u64 * THROUGHPUT_BUCKET_MS / 60_000
    );
    frame.render_widget(
        Sparkline::default()
            .block(Block::default().borders(Borders::ALL).title(title))
            .data(&data)
            .style(Style::new().fg(Color::Green)),
        area,
    );
}

fn render_events(model: &Model, frame: &mut Frame, area: Rect) {
    let height = area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = model
        .events()
        .iter()
        .rev()
        .take(height)
        .map(|e| {
            let style = match e.severity {
                Severity::Info => Style::new(),
                Severity::Warn => Style::new().fg(Color::Yellow),
                Severity::Error => Style::new().fg(Color::Red),
            };
            Line::styled(format!("{} {}", clock(e.at_ms), e.text), style)
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" events (newest first) "),
        ),
        area,
    );
}

/// Time of day in UTC, `HH:MM:SS`.
fn clock(at_ms: u64) -> String {
    let s = at_ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}
