//! The screen, drawn from the state alone: [`draw`] is pure (no I/O, no
//! clock: ages count from the board's read time). Top to bottom: a title
//! bar, the banner (`banner::lines`), the SPEC × subscription table, the
//! selected row's detail (hint, latest records, dead jobs), the last
//! action's message and the keys; a job's detail, the help and questions
//! cover it. Fits 80×24; without colour (`NO_COLOR`) every state is still
//! a word and the selection a `>`, and only bold and reverse video remain.
//! Everything read from the store is shown through `output::one_line`
//! (control characters escaped), so no job can drive the terminal.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::border;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, HighlightSpacing, Paragraph, Row as TableRow, Table, TableState,
    Wrap,
};

use super::banner::{self, Level, Notice};
use super::board::{Board, JobDetail, Row};
use super::keys::HELP;
use super::state::{Focus, JobView, Mode, State};
use crate::clock;
use crate::evidence::{Outcome, Record};
use crate::output::{latency_text, one_line};

/// Borders any terminal can show, whatever its locale.
const ASCII: border::Set = border::Set {
    top_left: "+",
    top_right: "+",
    bottom_left: "+",
    bottom_right: "+",
    vertical_left: "|",
    vertical_right: "|",
    horizontal_top: "-",
    horizontal_bottom: "-",
};

/// Styles, with or without colour.
struct Paint {
    color: bool,
}

impl Paint {
    fn bar(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    fn alarm(&self) -> Style {
        let bold = Style::new().add_modifier(Modifier::BOLD);
        match self.color {
            true => bold.fg(Color::Red),
            false => bold,
        }
    }

    fn warning(&self) -> Style {
        match self.color {
            true => Style::new().fg(Color::Yellow),
            false => Style::new(),
        }
    }

    fn good(&self) -> Style {
        match self.color {
            true => Style::new().fg(Color::Green),
            false => Style::new(),
        }
    }

    fn dim(&self) -> Style {
        match self.color {
            true => Style::new().fg(Color::DarkGray),
            false => Style::new(),
        }
    }

    fn notice(&self, level: Level) -> Style {
        match level {
            Level::Alarm => self.alarm(),
            Level::Warning => self.warning(),
        }
    }

    fn state(&self, state: &str) -> Style {
        match state {
            "open" => self.alarm(),
            "paused" => self.warning().add_modifier(Modifier::BOLD),
            _ => self.good(),
        }
    }
}

/// Draws the whole screen for `state`.
pub fn draw(state: &State, frame: &mut Frame) {
    let paint = Paint { color: state.color };
    let area = frame.area();
    let notices = notices(state);
    let most = if area.height >= 30 { 6 } else { 3 };
    let banner = banner_lines(&notices, most, &paint);
    let footer = footer_lines(state, area.width, &paint);
    let [title, banner_area, body, footer_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(banner.len() as u16),
        Constraint::Min(0),
        Constraint::Length(footer.len() as u16),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(title_line(state)).style(paint.bar()), title);
    frame.render_widget(Paragraph::new(banner), banner_area);
    frame.render_widget(Paragraph::new(footer), footer_area);
    match (&state.mode, &state.job) {
        (Mode::Job, Some(job)) => draw_job(job, state, body, frame, &paint),
        _ => draw_board(state, body, frame, &paint),
    }
    match &state.mode {
        Mode::Help => draw_help(area, frame),
        Mode::Confirm { question, .. } => draw_question(question, area, frame, &paint),
        _ => {}
    }
}

/// The banner's notices, and first why the store could not be read.
fn notices(state: &State) -> Vec<Notice> {
    let mut out = Vec::new();
    if let Some(error) = &state.load_error {
        out.push(Notice {
            level: Level::Alarm,
            text: one_line(&format!(
                "cannot read the store (showing the last read): {error}"
            )),
        });
    }
    out.extend(state.board.as_ref().map(banner::lines).unwrap_or_default());
    out
}

fn banner_lines(notices: &[Notice], most: usize, paint: &Paint) -> Vec<Line<'static>> {
    let shown = match notices.len() > most {
        true => most - 1,
        false => notices.len(),
    };
    let mut lines: Vec<Line> = notices[..shown]
        .iter()
        .map(|n| Line::styled(format!("! {}", n.text), paint.notice(n.level)))
        .collect();
    if shown < notices.len() {
        lines.push(Line::styled(
            format!(
                "! and {} more: see `spec-notify status`",
                notices.len() - shown
            ),
            paint.alarm(),
        ));
    }
    lines
}

fn title_line(state: &State) -> String {
    let mut title = " spec-notify top".to_string();
    match &state.board {
        None => title.push_str(" | reading..."),
        Some(board) => {
            let specs = {
                let mut s: Vec<&str> = board.rows.iter().map(|r| r.spec.as_str()).collect();
                s.dedup();
                s.len()
            };
            let time = clock::rfc3339(board.now_ms);
            title.push_str(&format!(
                " | {} | {specs} SPEC(s), {} row(s) | {} UTC",
                board.source,
                board.rows.len(),
                time.get(11..19).unwrap_or(&time)
            ));
        }
    }
    if !state.filter.is_empty() || state.mode == Mode::Filter {
        title.push_str(&format!(" | filter: {}", one_line(&state.filter)));
    }
    title
}

fn footer_lines(state: &State, width: u16, paint: &Paint) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if let Some(busy) = &state.busy {
        lines.push(Line::styled(format!("working: {busy}..."), paint.warning()));
    } else if let Some(message) = &state.message {
        let style = match message.failed {
            true => paint.alarm(),
            false => Style::new(),
        };
        let text = message.lines.join("; ");
        let wrapped = textwrap::wrap(&text, usize::from(width.max(20)));
        for line in wrapped.iter().take(2) {
            lines.push(Line::styled(one_line(line), style));
        }
    }
    let keys = match (&state.mode, state.focus) {
        (Mode::Filter, _) => format!(
            "filter: {}_   enter keep  esc clear",
            one_line(&state.filter)
        ),
        (Mode::Confirm { .. }, _) => "y yes  n/esc no".to_string(),
        (Mode::Job, _) => "up/down scroll  r replay  d discard  p pause  esc back  q quit".into(),
        (Mode::Help, _) => "any key closes the help".into(),
        (Mode::Browse, Focus::Jobs) => {
            "enter detail  r replay  d discard  p pause  esc back  ? help  q quit".into()
        }
        (Mode::Browse, Focus::Table) => {
            "tab/enter jobs  r replay  d discard  p pause  / filter  ? help  q quit".into()
        }
    };
    lines.push(Line::styled(keys, paint.dim()));
    lines
}

fn draw_board(state: &State, area: Rect, frame: &mut Frame, paint: &Paint) {
    let Some(board) = &state.board else {
        frame.render_widget(Paragraph::new("reading the store..."), area);
        return;
    };
    let rows = state.visible();
    if rows.is_empty() {
        let text = match (board.rows.is_empty(), state.filter.is_empty()) {
            (true, _) => "no jobs and no attempts yet: nothing has been emitted".to_string(),
            (false, _) => format!("no row matches the filter `{}`", one_line(&state.filter)),
        };
        frame.render_widget(Paragraph::new(text), area);
        return;
    }
    // The table gets up to 40% (at least a header and 3 rows), the detail the rest.
    let wanted = rows.len() as u16 + 1;
    let table_height = wanted.min((area.height * 2 / 5).max(4)).min(area.height);
    let [table_area, detail_area] =
        Layout::vertical([Constraint::Length(table_height), Constraint::Min(0)]).areas(area);
    let selected = state.selected_index();
    draw_table(
        state,
        &rows,
        selected,
        board.now_ms,
        table_area,
        frame,
        paint,
    );
    if let Some(row) = selected.map(|i| rows[i]) {
        draw_detail(state, row, board, detail_area, frame, paint);
    }
}

fn draw_table(
    state: &State,
    rows: &[&Row],
    selected: Option<usize>,
    now: u64,
    area: Rect,
    frame: &mut Frame,
    paint: &Paint,
) {
    let right = |text: String| Cell::from(Line::from(text).alignment(Alignment::Right));
    let header = TableRow::new(
        [
            "SPEC",
            "SUBSCRIPTION",
            "PEND",
            "ACT",
            "DEAD",
            "STATE",
            "OK 1H",
            "P95 1H",
            "OLDEST",
        ]
        .into_iter()
        .enumerate()
        .map(|(i, h)| match i {
            0 | 1 | 5 => Cell::from(h),
            _ => Cell::from(Line::from(h).alignment(Alignment::Right)),
        }),
    )
    .style(Style::new().add_modifier(Modifier::BOLD));
    let body = rows.iter().map(|r| {
        let dead_style = match r.counts.dead {
            0 => Style::new(),
            _ => paint.alarm(),
        };
        let rate = r
            .hour
            .success_rate()
            .map_or("-".to_string(), |x| format!("{:.0}%", x * 100.0));
        TableRow::new([
            Cell::from(one_line(&r.spec)),
            Cell::from(one_line(&r.subscription)),
            right(r.counts.pending.to_string()),
            right(r.counts.active.to_string()),
            right(r.counts.dead.to_string()).style(dead_style),
            Cell::from(r.state()).style(paint.state(r.state())),
            right(rate),
            right(latency_text(r.hour.p95_ms())),
            right(
                r.oldest_pending_ms
                    .map_or("-".into(), |t| clock::age(now, t)),
            ),
        ])
    });
    let widths = [
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Length(5),
        Constraint::Length(4),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(6),
    ];
    let highlight = match state.focus {
        Focus::Table => paint.bar(),
        Focus::Jobs => Style::new().add_modifier(Modifier::BOLD),
    };
    let table = Table::new(body, widths)
        .header(header)
        .row_highlight_style(highlight)
        .highlight_symbol("> ")
        .highlight_spacing(HighlightSpacing::Always);
    let mut table_state = TableState::default().with_selected(selected);
    frame.render_stateful_widget(table, area, &mut table_state);
}

/// The row's circuit in a few words, ages from `now`.
fn circuit_text(row: &Row, now: u64) -> String {
    let c = &row.circuit;
    if let Some(p) = &c.paused {
        return format!("paused: {} (by {})", p.reason, p.by);
    }
    if c.is_open() {
        let probe = match c.next_probe_at_ms {
            Some(t) if t > now => format!("next probe in {}", clock::age(t, now)),
            _ => "probing".into(),
        };
        return format!(
            "circuit open after {} failures in a row, {probe}",
            c.consecutive_failures
        );
    }
    match c.consecutive_failures {
        0 => format!("circuit closed, {}", row.health.label()),
        n => format!(
            "circuit closed ({n} failures in a row), {}",
            row.health.label()
        ),
    }
}

fn draw_detail(
    state: &State,
    row: &Row,
    board: &Board,
    area: Rect,
    frame: &mut Frame,
    paint: &Paint,
) {
    if area.height < 2 {
        return;
    }
    let width = usize::from(area.width.max(20));
    let now = board.now_ms;
    let head = format!(
        " {} x {}: {}",
        row.spec,
        row.subscription,
        circuit_text(row, now)
    );
    let mut lines = vec![Line::styled(one_line(&head), paint.bar())];
    let mut left = usize::from(area.height) - 1;
    if let Some(hint) = row.hint() {
        let hint = one_line(&format!("hint: {hint}"));
        let most = if left >= 12 { 3 } else { 1 };
        for line in textwrap::wrap(&hint, width)
            .into_iter()
            .take(most.min(left))
        {
            lines.push(Line::styled(line.into_owned(), paint.warning()));
            left -= 1;
        }
    }
    // The dead jobs get up to half of what is left, the records the rest.
    let dead_rows = match row.dead.len() {
        0 => 0,
        n => (n + 1).min((left / 2).max(2)).min(left),
    };
    let recent_rows = left - dead_rows;
    if recent_rows > 0 {
        let mut section = vec![Line::styled(
            "latest records (newest first):",
            Style::new().add_modifier(Modifier::BOLD),
        )];
        if row.recent.is_empty() {
            section.push(Line::from("  nothing attempted yet"));
        }
        section.extend(row.recent.iter().map(|r| record_line(r, paint)));
        section.truncate(recent_rows);
        lines.extend(section);
    }
    if dead_rows > 0 {
        lines.push(Line::styled(
            format!(
                "dead jobs ({}): enter detail  r replay  d discard",
                row.dead.len()
            ),
            Style::new().add_modifier(Modifier::BOLD),
        ));
        let shown = dead_rows - 1;
        let cursor = match state.focus {
            Focus::Jobs => state.job_index(row),
            Focus::Table => None,
        };
        let offset = cursor.map_or(0, |c| (c + 1).saturating_sub(shown));
        for (i, meta) in row.dead.iter().enumerate().skip(offset).take(shown) {
            let at = meta.finished_at_ms.unwrap_or(meta.created_at_ms);
            let text = format!(
                "{} {:>4} ago  {}  {}  {}",
                if cursor == Some(i) { ">" } else { " " },
                clock::age(now, at),
                meta.delivery_id,
                meta.dead_reason.as_deref().unwrap_or("dead"),
                meta.event_type
            );
            let style = match cursor == Some(i) {
                true => paint.bar(),
                false => Style::new(),
            };
            lines.push(Line::styled(one_line(&text), style));
        }
    }
    frame.render_widget(Paragraph::new(lines), area);
}

/// One record: time, outcome, attempt, what the endpoint said.
fn record_line(record: &Record, paint: &Paint) -> Line<'static> {
    let time = record.ts.get(11..19).unwrap_or(&record.ts);
    let attempt = match record.attempt {
        0 => String::new(),
        n => format!("#{n}"),
    };
    let said = match (record.status, record.error.as_deref(), record.latency_ms) {
        (Some(s), Some(e), _) => format!("HTTP {s}: {e}"),
        (Some(s), None, Some(ms)) => format!("HTTP {s} in {}", latency_text(Some(ms))),
        (Some(s), None, None) => format!("HTTP {s}"),
        (None, Some(e), _) => e.to_string(),
        (None, None, _) => String::new(),
    };
    let style = match record.outcome {
        Outcome::Delivered | Outcome::CircuitClosed | Outcome::SubscriptionResumed => paint.good(),
        Outcome::Dead | Outcome::CircuitOpen => paint.alarm(),
        Outcome::Retry | Outcome::Paused | Outcome::SubscriptionPaused => paint.warning(),
        _ => Style::new(),
    };
    Line::from(vec![
        Span::raw(format!("  {time} ")),
        Span::styled(format!("{:<12}", record.outcome.name()), style),
        Span::raw(one_line(&format!(" {attempt:>3} {said}"))),
    ])
}

fn draw_job(job: &JobView, state: &State, area: Rect, frame: &mut Frame, paint: &Paint) {
    let now = state.board.as_ref().map_or(0, |b| b.now_ms);
    let mut lines: Vec<Line> = Vec::new();
    let where_ = match &job.detail {
        Some(Ok(d)) => d.state.dir_name(),
        Some(Err(_)) => "gone",
        None => "reading",
    };
    lines.push(Line::styled(
        one_line(&format!(
            " job {} of {} x {} ({where_})",
            job.delivery_id, job.spec, job.subscription
        )),
        paint.bar(),
    ));
    match &job.detail {
        None => lines.push(Line::from("reading...")),
        Some(Err(error)) => lines.push(Line::styled(one_line(error), paint.alarm())),
        Some(Ok(detail)) => job_lines(detail, now, paint, &mut lines),
    }
    let [head, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    let first = lines.remove(0);
    frame.render_widget(Paragraph::new(first), head);
    frame.render_widget(
        Paragraph::new(Text::from(lines))
            .wrap(Wrap { trim: false })
            .scroll((job.scroll, 0)),
        rest,
    );
}

fn job_lines(detail: &JobDetail, now: u64, paint: &Paint, lines: &mut Vec<Line<'static>>) {
    let m = &detail.meta;
    let field = |name: &str, value: String| Line::from(one_line(&format!("{name:<10} {value}")));
    lines.push(field("event", m.event_type.clone()));
    lines.push(field(
        "emitted",
        format!(
            "{} ({} ago), sequence {}",
            clock::rfc3339(m.created_at_ms),
            clock::age(now, m.created_at_ms),
            m.sequence
        ),
    ));
    lines.push(field(
        "attempts",
        format!("{}, replayed {} time(s)", m.attempts, m.replays),
    ));
    if let Some(reason) = &m.dead_reason {
        let at = m.finished_at_ms.map(clock::rfc3339).unwrap_or_default();
        lines.push(field("dead", format!("{reason} at {at}")));
    }
    if let Some(error) = &m.last_error {
        let status = m
            .last_status
            .map(|s| format!("HTTP {s}: "))
            .unwrap_or_default();
        lines.push(field("last", format!("{status}{error}")));
    }
    if let Some(hint) = &m.hint {
        lines.push(Line::styled(
            one_line(&format!("{:<10} {hint}", "hint")),
            paint.warning(),
        ));
    }
    lines.push(Line::from(""));
    lines.push(Line::styled(
        format!("records ({}):", detail.records.len()),
        Style::new().add_modifier(Modifier::BOLD),
    ));
    for record in &detail.records {
        lines.push(record_line(record, paint));
        if let Some(body) = &record.response_body {
            lines.push(Line::styled(
                one_line(&format!("      answered: {body}")),
                paint.dim(),
            ));
        }
    }
    lines.push(Line::from(""));
    lines.push(Line::styled(
        "envelope:",
        Style::new().add_modifier(Modifier::BOLD),
    ));
    match &detail.envelope {
        Some(text) => lines.extend(text.lines().map(|l| Line::from(one_line(l)))),
        None => lines.push(Line::from("(no longer readable)")),
    }
}

/// A box in the middle of `area`, at most `width` × `height`.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

fn boxed(title: &str) -> Block<'_> {
    Block::new()
        .borders(Borders::ALL)
        .border_set(ASCII)
        .title(title)
}

fn draw_help(area: Rect, frame: &mut Frame) {
    let key_width = HELP.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(key, what)| Line::from(format!(" {key:<key_width$}  {what}")))
        .collect();
    let rect = centered(area, 78, lines.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    frame.render_widget(Paragraph::new(lines).block(boxed(" keys ")), rect);
}

fn draw_question(question: &str, area: Rect, frame: &mut Frame, paint: &Paint) {
    let rect = centered(area, 70, 6);
    let text = Text::from(vec![
        Line::styled(one_line(question), paint.alarm()),
        Line::from(""),
        Line::from("y: yes   n or esc: no"),
    ]);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .block(boxed(" confirm ")),
        rect,
    );
}

#[cfg(test)]
mod tests;
