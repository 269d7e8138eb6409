//! Keys to actions: [`action`] is the one function that reads a key press,
//! given what the screen is doing (typing a filter, answering a question,
//! reading a job, the help). The keys are listed once, in [`HELP`], for the
//! `?` screen and the README.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::state::{Action, Mode};

/// The `?` screen: key, what it does.
pub const HELP: &[(&str, &str)] = &[
    (
        "up/down, k/j",
        "select a row (or a dead job, or scroll a job)",
    ),
    (
        "PgUp/PgDn, Home/End",
        "move by a page, to the first or last",
    ),
    ("tab", "between the table and the row's dead jobs"),
    ("enter", "the row's dead jobs; on a dead job, its detail"),
    ("r", "replay the selected dead job, or all the row's (asks)"),
    (
        "d",
        "discard the selected dead job, or all the row's (asks)",
    ),
    ("p", "pause the row's subscription; on a paused one, resume"),
    ("", "(resume also closes an open circuit: p p)"),
    ("/", "filter rows by SPEC, subscription or state"),
    ("esc", "back; clears the filter"),
    ("?", "this help"),
    ("q, ctrl-c", "quit"),
];

/// What `key` asks for while the screen is in `mode`; `None` for a key
/// that means nothing there.
pub fn action(mode: &Mode, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return match key.code {
            KeyCode::Char('c') => Some(Action::Quit),
            _ => None,
        };
    }
    // Esc and a key typed right after it arrive as Alt+key: that is no
    // key of ours, and must not act as the key alone (Esc, then `r`, would
    // replay the selected job instead of all the row's, unasked).
    if key.modifiers.contains(KeyModifiers::ALT) {
        return None;
    }
    match mode {
        Mode::Filter => filtering(key.code),
        Mode::Confirm { .. } => match key.code {
            KeyCode::Char('y' | 'Y') => Some(Action::Yes),
            KeyCode::Char('n' | 'N') | KeyCode::Esc => Some(Action::No),
            _ => None,
        },
        // Any key closes the help.
        Mode::Help => Some(Action::Back),
        Mode::Browse | Mode::Job => browsing(key.code),
    }
}

fn filtering(code: KeyCode) -> Option<Action> {
    match code {
        KeyCode::Enter => Some(Action::Submit),
        KeyCode::Esc => Some(Action::Back),
        KeyCode::Backspace => Some(Action::Erase),
        KeyCode::Up => Some(Action::Up),
        KeyCode::Down => Some(Action::Down),
        KeyCode::Char(c) => Some(Action::Type(c)),
        _ => None,
    }
}

fn browsing(code: KeyCode) -> Option<Action> {
    Some(match code {
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Action::Home,
        KeyCode::End | KeyCode::Char('G') => Action::End,
        KeyCode::Tab | KeyCode::BackTab => Action::SwitchFocus,
        KeyCode::Enter => Action::Open,
        KeyCode::Esc | KeyCode::Backspace | KeyCode::Left => Action::Back,
        KeyCode::Right => Action::SwitchFocus,
        KeyCode::Char('r') => Action::Replay,
        KeyCode::Char('d') => Action::Discard,
        KeyCode::Char('p') => Action::TogglePause,
        KeyCode::Char('/') => Action::Filter,
        KeyCode::Char('?') => Action::Help,
        KeyCode::Char('q') => Action::Quit,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn letters_act_while_browsing_and_are_typed_while_filtering() {
        let r = key(KeyCode::Char('r'));
        assert_eq!(action(&Mode::Browse, r), Some(Action::Replay));
        assert_eq!(action(&Mode::Filter, r), Some(Action::Type('r')));
        assert_eq!(
            action(&Mode::Filter, key(KeyCode::Char('q'))),
            Some(Action::Type('q')),
            "q is a letter of the filter"
        );
        assert_eq!(action(&Mode::Filter, key(KeyCode::Esc)), Some(Action::Back));
        assert_eq!(
            action(&Mode::Filter, key(KeyCode::Enter)),
            Some(Action::Submit)
        );
    }

    #[test]
    fn a_question_takes_y_or_n_and_nothing_else() {
        let ask = Mode::Confirm {
            question: "?".into(),
            effect: crate::tui::state::Effect::Pause {
                subscription: "s".into(),
            },
        };
        assert_eq!(action(&ask, key(KeyCode::Char('y'))), Some(Action::Yes));
        assert_eq!(action(&ask, key(KeyCode::Char('n'))), Some(Action::No));
        assert_eq!(action(&ask, key(KeyCode::Esc)), Some(Action::No));
        assert_eq!(action(&ask, key(KeyCode::Char('r'))), None);
        assert_eq!(action(&ask, key(KeyCode::Enter)), None, "no default answer");
    }

    #[test]
    fn alt_and_a_key_is_not_the_key() {
        let alt_r = KeyEvent::new(KeyCode::Char('r'), KeyModifiers::ALT);
        assert_eq!(action(&Mode::Browse, alt_r), None);
        assert_eq!(action(&Mode::Help, alt_r), None);
    }

    #[test]
    fn ctrl_c_quits_from_anywhere_and_any_key_closes_the_help() {
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        for mode in [Mode::Browse, Mode::Filter, Mode::Help, Mode::Job] {
            assert_eq!(action(&mode, ctrl_c), Some(Action::Quit), "{mode:?}");
        }
        assert_eq!(
            action(&Mode::Help, key(KeyCode::Char('x'))),
            Some(Action::Back)
        );
        assert_eq!(action(&Mode::Browse, key(KeyCode::Char('x'))), None);
    }
}
