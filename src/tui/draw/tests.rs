//! Screens drawn on ratatui's `TestBackend` from fixed states: what an
//! operator reads at 80×24, the same without colour, and nothing from the
//! store reaching the terminal as a control sequence.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;

use super::draw;
use crate::circuit::{Circuit, CircuitState};
use crate::evidence::{Outcome, Record};
use crate::health::{Gate, Health};
use crate::spool::{Meta, State as JobState};
use crate::tui::board::{Board, Row};
use crate::tui::state::{Action, State};

/// 2026-12-07T12:00:00Z
const NOW: u64 = 1_796_644_800_000;

fn record(sub: &str, ago_s: u64, outcome: Outcome, status: Option<u16>, attempt: u32) -> Record {
    let at = NOW - ago_s * 1000;
    Record {
        ts: crate::clock::rfc3339(at),
        ts_ms: at,
        delivery_id: "0b6f".into(),
        spec: "SPEC-KIT-065".into(),
        subscription: sub.into(),
        event_type: "spec-auto.stage.completed".into(),
        attempt,
        url: "http://127.0.0.1/".into(),
        status,
        error: None,
        latency_ms: Some(12),
        outcome,
        response_body: None,
        next_attempt_at: None,
        request: None,
        trace_id: None,
        span_id: None,
    }
}

fn dead(id: &str, ago_s: u64, hint: &str) -> Meta {
    let mut meta = Meta::new(
        "SPEC-KIT-065",
        "hook",
        "spec-auto.stage.completed",
        "k",
        1,
        NOW - 600_000,
    );
    meta.delivery_id = id.into();
    meta.state = JobState::Dead;
    meta.dead_reason = Some("exhausted".into());
    meta.finished_at_ms = Some(NOW - ago_s * 1000);
    meta.hint = Some(hint.into());
    meta
}

fn board() -> Board {
    let open = Circuit {
        state: CircuitState::Open,
        consecutive_failures: 2,
        next_probe_at_ms: Some(NOW + 25_000),
        last_error: Some("HTTP 500".into()),
        ..Circuit::default()
    };
    let mut hook = Row {
        spec: "SPEC-KIT-065".into(),
        subscription: "hook".into(),
        circuit: open.clone(),
        health: Health::CircuitOpen,
        oldest_pending_ms: Some(NOW - 90_000),
        recent: vec![
            record("hook", 5, Outcome::CircuitOpen, None, 0),
            record("hook", 5, Outcome::Retry, Some(500), 2),
            record("hook", 9, Outcome::Retry, Some(500), 1),
        ],
        dead: vec![dead(
            "11111111-2222-4333-8444-555555555555",
            60,
            "endpoint kept failing (500): check its health, then replay",
        )],
        ..Row::default()
    };
    hook.counts.pending = 3;
    hook.counts.dead = 1;
    let mut stats = crate::health::StatsBuilder::default();
    for r in &hook.recent {
        stats.add(r);
    }
    hook.hour = stats.finish();
    let mut other = Row {
        spec: "SPEC-KIT-065".into(),
        subscription: "chatops".into(),
        recent: vec![record("chatops", 3, Outcome::Delivered, Some(204), 1)],
        ..Row::default()
    };
    other.counts.delivered = 4;
    let mut stats = crate::health::StatsBuilder::default();
    stats.add(&record("chatops", 3, Outcome::Delivered, Some(204), 1));
    other.hour = stats.finish();
    let gate = |id: &str, circuit: Circuit, waiting| Gate {
        id: id.into(),
        circuit,
        health: Health::Ok,
        secret_problem: None,
        waiting,
        stalled: None,
    };
    Board {
        now_ms: NOW,
        source: "spool",
        flag: "",
        gates: vec![
            gate("hook", open, 3),
            gate("chatops", Circuit::default(), 0),
        ],
        rows: vec![hook, other],
        ..Board::default()
    }
}

fn state(color: bool) -> State {
    let mut s = State::new(color);
    s.on_board(Ok(board()));
    s
}

fn terminal(state: &State, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| draw(state, frame)).unwrap();
    terminal
}

/// The screen as text, one string per line, trailing blanks cut.
fn screen(state: &State, width: u16, height: u16) -> Vec<String> {
    let terminal = terminal(state, width, height);
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| {
            let line: String = (0..width)
                .map(|x| buffer.cell((x, y)).map_or(" ", |c| c.symbol()))
                .collect();
            line.trim_end().to_string()
        })
        .collect()
}

#[test]
fn an_open_circuit_at_80x24() {
    assert_eq!(
        screen(&state(true), 80, 24),
        [
            " spec-notify top | spool | 1 SPEC(s), 2 row(s) | 12:00:00 UTC",
            "! circuit open: hook, 3 job(s) wait, next probe in 25s (2 failures in a row: HTT",
            "! dead: 1 job(s) of SPEC-KIT-065 x hook (exhausted): r replays, d discards",
            "  SPEC              SUBSCRIPTION      PEND  ACT  DEAD STATE  OK 1H P95 1H OLDEST",
            "> SPEC-KIT-065      hook                 3    0     1 open      0%   12ms    90s",
            "  SPEC-KIT-065      chatops              0    0     0 closed  100%   12ms      -",
            " SPEC-KIT-065 x hook: circuit open after 2 failures in a row, next probe in 25s",
            "hint: endpoint kept failing (500): check its health, then replay",
            "latest records (newest first):",
            "  11:59:55 circuit-open",
            "  11:59:55 retry         #2 HTTP 500 in 12ms",
            "  11:59:51 retry         #1 HTTP 500 in 12ms",
            "dead jobs (1): enter detail  r replay  d discard",
            "   60s ago  11111111-2222-4333-8444-555555555555  exhausted  spec-auto.stage.com",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "tab/enter jobs  r replay  d discard  p pause  / filter  ? help  q quit",
        ]
    );
}

#[test]
fn without_colour_only_words_bold_and_reverse_remain() {
    let plain = state(false);
    let terminal = terminal(&plain, 80, 24);
    for cell in terminal.backend().buffer().content() {
        assert_eq!((cell.fg, cell.bg), (Color::Reset, Color::Reset), "{cell:?}");
    }
    assert_eq!(screen(&plain, 80, 24), screen(&state(true), 80, 24));
    let coloured = terminal_colours(&state(true));
    assert!(coloured.contains(&Color::Red), "{coloured:?}");
}

fn terminal_colours(state: &State) -> Vec<Color> {
    terminal(state, 80, 24)
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.fg)
        .collect()
}

#[test]
fn the_dead_jobs_get_the_focus_and_a_question_covers_the_screen() {
    let mut s = state(false);
    s.apply(Action::SwitchFocus);
    let text = screen(&s, 80, 24).join("\n");
    assert!(
        text.contains(">  60s ago  11111111-2222-4333-8444-555555555555"),
        "{text}"
    );
    assert!(text.contains("enter detail  r replay  d discard  p pause  esc back"));
    s.apply(Action::SwitchFocus);
    s.apply(Action::Replay);
    let text = screen(&s, 80, 24).join("\n");
    assert!(
        text.contains("Replay all 1 dead job(s) of SPEC-KIT-065 x hook? (y/n)"),
        "{text}"
    );
    assert!(text.contains("y: yes   n or esc: no"), "{text}");
}

#[test]
fn the_help_lists_every_key() {
    let mut s = state(false);
    s.apply(Action::Help);
    let text = screen(&s, 80, 24).join("\n");
    for (key, what) in super::HELP {
        assert!(text.contains(what), "{key}: {text}");
    }
}

#[test]
fn a_wide_terminal_shows_more_and_a_tiny_one_does_not_break() {
    let mut many = board();
    for i in 0..30 {
        let mut row = many.rows[1].clone();
        row.spec = format!("SPEC-{i:02}");
        many.rows.push(row);
    }
    let mut s = State::new(false);
    s.on_board(Ok(many));
    s.apply(Action::End);
    let text = screen(&s, 160, 50).join("\n");
    assert!(
        text.contains("> SPEC-29"),
        "the selection stays in view: {text}"
    );
    for (w, h) in [(0, 0), (1, 1), (20, 5), (80, 3), (10, 24)] {
        screen(&s, w, h);
    }
}

#[test]
fn nothing_read_from_the_store_reaches_the_terminal_as_a_control_sequence() {
    let mut b = board();
    b.rows[0].dead[0].hint = Some("evil\x1b]0;owned\x07\x1b[2J".into());
    b.rows[0].recent[1].error = Some("\x1b[31mred\r\nline".into());
    b.rows[0].dead[0].event_type = "a.b\u{202e}c".into();
    let mut s = State::new(false);
    s.on_board(Ok(b));
    s.apply(Action::SwitchFocus);
    let text = screen(&s, 120, 30).join("\n");
    assert!(!text.contains('\x1b') && !text.contains('\x07') && !text.contains('\u{202e}'));
    assert!(text.contains("\\u{1b}"), "escaped, not dropped: {text}");
}

#[test]
fn a_job_shows_its_envelope_and_records() {
    let mut s = state(false);
    s.apply(Action::SwitchFocus);
    s.apply(Action::Open);
    let text = screen(&s, 80, 24).join("\n");
    assert!(text.contains("reading..."), "{text}");
    let meta = board().rows[0].dead[0].clone();
    let detail = crate::tui::board::JobDetail {
        state: JobState::Dead,
        envelope: Some("{\n  \"schemaVersion\": \"1.0\"\n}".into()),
        records: vec![record("hook", 9, Outcome::Retry, Some(500), 1)],
        meta,
    };
    s.on_job("11111111-2222-4333-8444-555555555555", Ok(Some(detail)));
    let text = screen(&s, 80, 24).join("\n");
    for expected in [
        "job 11111111-2222-4333-8444-555555555555 of SPEC-KIT-065 x hook (dead)",
        "event      spec-auto.stage.completed",
        "dead       exhausted at 2026-12-07T11:59:00.000Z",
        "records (1):",
        "  11:59:51 retry         #1 HTTP 500 in 12ms",
        "  \"schemaVersion\": \"1.0\"",
        "up/down scroll  r replay  d discard  p pause  esc back  q quit",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
}
