//! The banner at the top of `top`: one line for each thing that needs a
//! person now, worst first, shown for as long as it lasts. [`lines`] is
//! the one place that decides it, from a [`Board`]: open circuits, paused
//! subscriptions, stalls (as `status --stalled-after` computes them), FIFO
//! lines a dead job holds, dead jobs, unset secrets holding jobs, quarantined and unreadable files,
//! and every alert of the configured rules that fires, until it resolves.

use super::board::Board;
use crate::clock;
use crate::output::one_line;

/// How bad a banner line is: the colour, where there is colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Nothing goes out (open circuit, pause, stall) or jobs are dead.
    Alarm,
    /// Jobs are safe but wait for someone (secret unset, quarantine).
    Warning,
}

/// One banner line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub level: Level,
    pub text: String,
}

fn notice(level: Level, text: String) -> Notice {
    Notice {
        level,
        text: one_line(&text),
    }
}

/// What needs attention on `board`, worst first; empty when all is well.
pub fn lines(board: &Board) -> Vec<Notice> {
    let now = board.now_ms;
    let mut out = Vec::new();
    for alert in &board.alerts {
        out.push(notice(
            Level::Alarm,
            format!(
                "alert {} firing for {}: {}; fix: {}",
                alert.rule,
                clock::age(now, alert.since_ms),
                alert.detail.summary,
                alert.detail.command
            ),
        ));
    }
    for gate in &board.gates {
        let c = &gate.circuit;
        if let Some(p) = &c.paused {
            out.push(notice(
                Level::Alarm,
                format!(
                    "paused: {}, {} job(s) wait: p resumes (by the {} {} ago: {})",
                    gate.id,
                    gate.waiting,
                    p.by,
                    clock::age(now, p.at_ms),
                    p.reason,
                ),
            ));
        } else if c.is_open() {
            let probe = match c.next_probe_at_ms {
                Some(t) if t > now => format!("next probe in {}", clock::age(t, now)),
                Some(_) => "probing".to_string(),
                None => "no probe due".to_string(),
            };
            out.push(notice(
                Level::Alarm,
                format!(
                    "circuit open: {}, {} job(s) wait, {probe} ({} failures in a row: {})",
                    gate.id,
                    gate.waiting,
                    c.consecutive_failures,
                    c.last_error.as_deref().unwrap_or("no answer"),
                ),
            ));
        }
        if let Some(stalled) = &gate.stalled {
            out.push(notice(Level::Alarm, format!("stalled: {stalled}")));
        }
    }
    for row in board.rows.iter().filter(|r| r.counts.pending > 0) {
        if let Some(id) = &row.held_by {
            out.push(notice(
                Level::Alarm,
                format!(
                    "held: {} x {} sends nothing, {} job(s) wait behind dead job {id} (ordering = fifo, fifo_on_dead = hold): r replays it, d discards it",
                    row.spec, row.subscription, row.counts.pending
                ),
            ));
        }
    }
    for row in board.rows.iter().filter(|r| r.counts.dead > 0) {
        let why = row
            .dead
            .first()
            .and_then(|m| m.dead_reason.as_deref())
            .unwrap_or("dead");
        out.push(notice(
            Level::Alarm,
            format!(
                "dead: {} job(s) of {} x {} ({why}): r replays, d discards",
                row.counts.dead, row.spec, row.subscription
            ),
        ));
    }
    for gate in board.gates.iter().filter(|g| g.waiting > 0) {
        if let Some(problem) = &gate.secret_problem {
            out.push(notice(
                Level::Warning,
                format!("{problem}: its {} job(s) wait in pending", gate.waiting),
            ));
        }
    }
    for (spec, n) in &board.quarantined {
        out.push(notice(
            Level::Warning,
            format!(
                "quarantined: {n} file(s) of {spec}: see `spec-notify list {spec}{} --state quarantine`",
                board.flag
            ),
        ));
    }
    if board.unreadable > 0 {
        out.push(notice(
            Level::Warning,
            format!(
                "{} spool file(s) cannot be read as jobs and are not counted; the next drain quarantines them",
                board.unreadable
            ),
        ));
    }
    out.sort_by_key(|n| n.level);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::{Circuit, CircuitState, Pause};
    use crate::health::{Gate, Health};
    use crate::tui::board::Row;

    fn gate(id: &str, circuit: Circuit, waiting: usize) -> Gate {
        Gate {
            id: id.into(),
            circuit,
            health: Health::Ok,
            secret_problem: None,
            waiting,
            stalled: None,
        }
    }

    #[test]
    fn all_is_well_shows_no_banner() {
        let board = Board {
            gates: vec![gate("hook", Circuit::default(), 3)],
            rows: vec![Row::default()],
            ..Board::default()
        };
        assert_eq!(lines(&board), Vec::new());
    }

    #[test]
    fn a_firing_alert_has_its_line_until_it_resolves() {
        let now = 1_000_000;
        let firing = crate::alerts::Firing {
            rule: "oncall".into(),
            subscription: Some("hook".into()),
            condition: crate::config::Condition::CircuitOpen,
            since_ms: now - 60_000,
            last_sent_ms: now - 60_000,
            repeats: 0,
            detail: crate::alerts::Detail {
                summary: "circuit of hook open".into(),
                command: "spec-notify resume hook".into(),
                ..Default::default()
            },
        };
        let mut board = Board {
            now_ms: now,
            alerts: vec![firing],
            ..Board::default()
        };
        let shown = lines(&board);
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert_eq!(shown[0].level, Level::Alarm);
        assert!(
            shown[0].text.contains("alert oncall firing for 60s")
                && shown[0].text.contains("spec-notify resume hook"),
            "{}",
            shown[0].text
        );
        board.alerts.clear();
        assert!(lines(&board).is_empty(), "resolved: no banner");
    }

    #[test]
    fn each_condition_has_its_line_and_alarms_come_first() {
        let now = 1_000_000;
        let open = Circuit {
            state: CircuitState::Open,
            consecutive_failures: 2,
            next_probe_at_ms: Some(now + 25_000),
            last_error: Some("HTTP 500".into()),
            ..Circuit::default()
        };
        let paused = Circuit {
            paused: Some(Pause {
                reason: "maintenance".into(),
                at_ms: now - 120_000,
                by: "operator".into(),
            }),
            ..Circuit::default()
        };
        let mut unset = gate("tracker", Circuit::default(), 4);
        unset.secret_problem = Some("SECRET_TRACKER is unset".into());
        let mut stalled = gate("quiet", Circuit::default(), 1);
        stalled.stalled = Some("1 job(s) of quiet wait".into());
        let mut dead = Row {
            spec: "SPEC-1".into(),
            subscription: "hook".into(),
            ..Row::default()
        };
        dead.counts.dead = 2;
        let mut held = Row {
            spec: "SPEC-3".into(),
            subscription: "ordered".into(),
            held_by: Some("d-1".into()),
            ..Row::default()
        };
        held.counts.pending = 4;
        let board = Board {
            now_ms: now,
            gates: vec![
                unset,
                gate("hook", open, 3),
                gate("slack", paused, 0),
                stalled,
            ],
            rows: vec![dead, held],
            quarantined: vec![("SPEC-2".into(), 1)],
            unreadable: 1,
            ..Board::default()
        };
        let texts: Vec<String> = lines(&board).into_iter().map(|n| n.text).collect();
        assert_eq!(
            texts,
            [
                "circuit open: hook, 3 job(s) wait, next probe in 25s (2 failures in a row: HTTP 500)",
                "paused: slack, 0 job(s) wait: p resumes (by the operator 2m ago: maintenance)",
                "stalled: 1 job(s) of quiet wait",
                "held: SPEC-3 x ordered sends nothing, 4 job(s) wait behind dead job d-1 (ordering = fifo, fifo_on_dead = hold): r replays it, d discards it",
                "dead: 2 job(s) of SPEC-1 x hook (dead): r replays, d discards",
                "SECRET_TRACKER is unset: its 4 job(s) wait in pending",
                "quarantined: 1 file(s) of SPEC-2: see `spec-notify list SPEC-2 --state quarantine`",
                "1 spool file(s) cannot be read as jobs and are not counted; the next drain quarantines them",
            ]
        );
    }

    #[test]
    fn text_from_outside_cannot_drive_the_terminal() {
        let open = Circuit {
            state: CircuitState::Open,
            last_error: Some("boom\x1b[2J\nnext".into()),
            ..Circuit::default()
        };
        let board = Board {
            gates: vec![gate("hook", open, 0)],
            ..Board::default()
        };
        let text = &lines(&board)[0].text;
        assert!(!text.contains('\x1b') && !text.contains('\n'), "{text}");
    }
}
