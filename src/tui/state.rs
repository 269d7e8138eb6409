//! The live view's state as a plain value, and how it changes: an
//! [`Action`] (a key, as `keys` reads it) goes through [`State::apply`],
//! which may ask for an [`Effect`] — something only the store can do
//! (replay, discard, pause, resume, read a job). What comes back (a new
//! board, an action's report, a job) goes through the `on_*` methods. Pure:
//! no I/O, no clock; tested as values.

use super::board::{Board, JobDetail, Row};
use crate::spool::Meta;

/// Which list the arrow keys move in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Focus {
    /// The table of SPEC × subscription.
    #[default]
    Table,
    /// The selected row's dead jobs.
    Jobs,
}

/// What the screen is doing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Browse,
    /// Typing the filter (`/`).
    Filter,
    /// Waiting for `y` or `n` before doing `effect`.
    Confirm { question: String, effect: Effect },
    /// One job's detail (`Enter`).
    Job,
    /// The keys (`?`).
    Help,
}

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    /// Between the table and the row's dead jobs.
    SwitchFocus,
    /// Close what is open, or leave the dead jobs, or clear the filter.
    Back,
    /// Open the selected dead job's detail.
    Open,
    Replay,
    Discard,
    /// Pause the row's subscription, or resume it when paused.
    TogglePause,
    /// Start typing a filter.
    Filter,
    Type(char),
    Erase,
    /// Done typing the filter.
    Submit,
    Yes,
    No,
    Help,
    Quit,
}

/// Something only the store can do; the runner does it and reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// One dead job (`delivery_id`), or every dead job of the row.
    Replay {
        spec: String,
        subscription: String,
        delivery_id: Option<String>,
    },
    Discard {
        spec: String,
        subscription: String,
        delivery_id: Option<String>,
    },
    Pause {
        subscription: String,
    },
    Resume {
        subscription: String,
    },
    /// Read one job for its detail view.
    LoadJob {
        spec: String,
        delivery_id: String,
    },
}

impl Effect {
    /// What is being done, for the status line while it runs.
    pub fn describe(&self) -> String {
        let which = |spec: &str, sub: &str, id: &Option<String>| match id {
            Some(id) => format!("{id} of {spec}"),
            None => format!("the dead jobs of {spec} x {sub}"),
        };
        match self {
            Effect::Replay {
                spec,
                subscription,
                delivery_id,
            } => format!("replaying {}", which(spec, subscription, delivery_id)),
            Effect::Discard {
                spec,
                subscription,
                delivery_id,
            } => format!("discarding {}", which(spec, subscription, delivery_id)),
            Effect::Pause { subscription } => format!("pausing {subscription}"),
            Effect::Resume { subscription } => format!("resuming {subscription}"),
            Effect::LoadJob { delivery_id, .. } => format!("reading {delivery_id}"),
        }
    }

    /// Whether it changes the store (one at a time) rather than reads it.
    pub fn changes(&self) -> bool {
        !matches!(self, Effect::LoadJob { .. })
    }
}

/// What an action did, in lines for people.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub lines: Vec<String>,
    /// Something failed or was refused.
    pub failed: bool,
}

/// The open job detail.
#[derive(Debug, Clone, Default)]
pub struct JobView {
    pub spec: String,
    pub subscription: String,
    pub delivery_id: String,
    /// `None` while it is read; `Err` when it could not be.
    pub detail: Option<Result<JobDetail, String>>,
    /// Lines scrolled past.
    pub scroll: u16,
}

#[derive(Debug, Clone, Default)]
pub struct State {
    /// The latest read of the store; `None` before the first.
    pub board: Option<Board>,
    /// Why the latest read failed (the board shown is older).
    pub load_error: Option<String>,
    /// The selected row, by SPEC and subscription (survives refreshes).
    pub selected: Option<(String, String)>,
    /// Where the selection was, for when its row goes away.
    pub selected_at: usize,
    /// The selected dead job of the row, by delivery id.
    pub job_cursor: Option<String>,
    pub focus: Focus,
    /// Rows whose SPEC, subscription or state contain it (any case).
    pub filter: String,
    pub mode: Mode,
    pub job: Option<JobView>,
    /// The change running now, if any.
    pub busy: Option<String>,
    /// What the last action did, or why a key did nothing.
    pub message: Option<Report>,
    /// Colour is allowed (a terminal, and no `NO_COLOR`).
    pub color: bool,
    /// `q` was pressed.
    pub quit: bool,
}

/// How far PageUp/PageDown move.
const PAGE: usize = 10;

impl State {
    pub fn new(color: bool) -> State {
        State {
            color,
            ..State::default()
        }
    }

    /// The rows that pass the filter.
    pub fn visible(&self) -> Vec<&Row> {
        let Some(board) = &self.board else {
            return Vec::new();
        };
        let needle = self.filter.to_lowercase();
        board
            .rows
            .iter()
            .filter(|r| {
                needle.is_empty()
                    || r.spec.to_lowercase().contains(&needle)
                    || r.subscription.to_lowercase().contains(&needle)
                    || r.state().contains(&needle)
            })
            .collect()
    }

    /// Where the selected row is among [`State::visible`].
    pub fn selected_index(&self) -> Option<usize> {
        let rows = self.visible();
        if rows.is_empty() {
            return None;
        }
        let found = self
            .selected
            .as_ref()
            .and_then(|(spec, sub)| rows.iter().position(|r| r.is(spec, sub)));
        Some(found.unwrap_or(self.selected_at.min(rows.len() - 1)))
    }

    pub fn selected_row(&self) -> Option<&Row> {
        self.selected_index().map(|i| self.visible()[i])
    }

    /// The selected dead job, while the dead jobs have the focus.
    pub fn selected_job(&self) -> Option<&Meta> {
        if self.focus != Focus::Jobs {
            return None;
        }
        let row = self.selected_row()?;
        let at = self.job_index(row)?;
        row.dead.get(at)
    }

    /// Where the job cursor is in `row`'s dead jobs.
    pub fn job_index(&self, row: &Row) -> Option<usize> {
        if row.dead.is_empty() {
            return None;
        }
        let found = self
            .job_cursor
            .as_ref()
            .and_then(|id| row.dead.iter().position(|m| &m.delivery_id == id));
        Some(found.unwrap_or(0))
    }

    fn say(&mut self, text: impl Into<String>) {
        self.message = Some(Report {
            lines: vec![text.into()],
            failed: true,
        });
    }

    fn select(&mut self, index: usize) {
        let key = self
            .visible()
            .get(index)
            .map(|r| (r.spec.clone(), r.subscription.clone()));
        if key.is_some() {
            self.selected = key;
            self.selected_at = index;
            self.job_cursor = None;
        }
    }

    fn move_rows(&mut self, by: isize) {
        let len = self.visible().len();
        if len == 0 {
            return;
        }
        let at = self.selected_index().unwrap_or(0) as isize;
        self.select((at + by).clamp(0, len as isize - 1) as usize);
    }

    fn move_jobs(&mut self, by: isize) {
        let Some(row) = self.selected_row() else {
            return;
        };
        let len = row.dead.len();
        let Some(at) = self.job_index(row) else {
            return;
        };
        let to = (at as isize + by).clamp(0, len as isize - 1) as usize;
        self.job_cursor = Some(row.dead[to].delivery_id.clone());
    }

    fn move_by(&mut self, by: isize) {
        match (&self.mode, self.focus) {
            (Mode::Job, _) => {
                if let Some(job) = &mut self.job {
                    job.scroll = (job.scroll as isize + by).clamp(0, u16::MAX as isize) as u16;
                }
            }
            (_, Focus::Table) => self.move_rows(by),
            (_, Focus::Jobs) => self.move_jobs(by),
        }
    }

    /// Changes the state for `action`; returns what the store must do.
    pub fn apply(&mut self, action: Action) -> Option<Effect> {
        match action {
            Action::Quit => {
                self.quit = true;
                None
            }
            Action::Up => self.then(|s| s.move_by(-1)),
            Action::Down => self.then(|s| s.move_by(1)),
            Action::PageUp => self.then(|s| s.move_by(-(PAGE as isize))),
            Action::PageDown => self.then(|s| s.move_by(PAGE as isize)),
            Action::Home => self.then(|s| s.move_by(-(isize::MAX / 2))),
            Action::End => self.then(|s| s.move_by(isize::MAX / 2)),
            Action::SwitchFocus => self.then(State::switch_focus),
            Action::Back => self.then(State::back),
            Action::Open => self.open(),
            Action::Replay => self.replay(),
            Action::Discard => self.discard(),
            Action::TogglePause => self.toggle_pause(),
            Action::Filter => self.then(|s| {
                s.mode = Mode::Filter;
                s.focus = Focus::Table;
            }),
            Action::Type(c) => self.then(|s| {
                s.filter.push(c);
                s.selected_at = 0;
            }),
            Action::Erase => self.then(|s| {
                s.filter.pop();
            }),
            Action::Submit => self.then(|s| s.mode = Mode::Browse),
            Action::Yes => match std::mem::take(&mut self.mode) {
                Mode::Confirm { effect, .. } => self.start(effect),
                other => self.then(|s| s.mode = other),
            },
            Action::No => self.then(|s| {
                if matches!(s.mode, Mode::Confirm { .. }) {
                    s.mode = Mode::Browse;
                    s.message = None;
                }
            }),
            Action::Help => self.then(|s| s.mode = Mode::Help),
        }
    }

    fn then(&mut self, change: impl FnOnce(&mut State)) -> Option<Effect> {
        change(self);
        None
    }

    fn switch_focus(&mut self) {
        self.focus = match self.focus {
            Focus::Jobs => Focus::Table,
            Focus::Table if self.selected_row().is_some_and(|r| !r.dead.is_empty()) => Focus::Jobs,
            Focus::Table => {
                self.say("no dead jobs in this row");
                Focus::Table
            }
        };
    }

    fn back(&mut self) {
        match self.mode {
            Mode::Job => {
                self.mode = Mode::Browse;
                self.job = None;
            }
            Mode::Filter => {
                self.filter.clear();
                self.mode = Mode::Browse;
            }
            Mode::Help | Mode::Confirm { .. } => self.mode = Mode::Browse,
            Mode::Browse if self.focus == Focus::Jobs => self.focus = Focus::Table,
            Mode::Browse => {
                self.filter.clear();
                self.message = None;
            }
        }
    }

    /// `Enter`: the table hands the focus to the row's dead jobs; on a
    /// dead job, its detail.
    fn open(&mut self) -> Option<Effect> {
        if self.focus == Focus::Table {
            self.switch_focus();
            return None;
        }
        let row = self.selected_row()?;
        let job = self.selected_job()?;
        let view = JobView {
            spec: row.spec.clone(),
            subscription: row.subscription.clone(),
            delivery_id: job.delivery_id.clone(),
            ..JobView::default()
        };
        let effect = Effect::LoadJob {
            spec: view.spec.clone(),
            delivery_id: view.delivery_id.clone(),
        };
        self.job = Some(view);
        self.mode = Mode::Job;
        Some(effect)
    }

    /// The dead job `r` and `d` act on: the open job, the selected dead
    /// job, or (`None`) every dead job of the row. `None` overall when the
    /// row has none.
    fn target(&mut self) -> Option<(String, String, Option<String>, usize)> {
        if let (Mode::Job, Some(job)) = (&self.mode, &self.job) {
            let dead = matches!(&job.detail, Some(Ok(d)) if d.state == crate::spool::State::Dead);
            if !dead {
                self.say("only a dead job can be replayed or discarded here");
                return None;
            }
            return Some((
                job.spec.clone(),
                job.subscription.clone(),
                Some(job.delivery_id.clone()),
                1,
            ));
        }
        let Some(row) = self.selected_row() else {
            self.say("no row selected");
            return None;
        };
        if row.dead.is_empty() {
            let text = format!("no dead jobs in {} x {}", row.spec, row.subscription);
            self.say(text);
            return None;
        }
        let (spec, sub, n) = (row.spec.clone(), row.subscription.clone(), row.dead.len());
        let id = self.selected_job().map(|m| m.delivery_id.clone());
        Some((spec, sub, id, n))
    }

    fn replay(&mut self) -> Option<Effect> {
        let (spec, subscription, delivery_id, n) = self.target()?;
        let question = match &delivery_id {
            // One job, chosen on purpose: the CLI asks nothing either.
            Some(_) => None,
            None => Some(format!(
                "Replay all {n} dead job(s) of {spec} x {subscription}? (y/n)"
            )),
        };
        let effect = Effect::Replay {
            spec,
            subscription,
            delivery_id,
        };
        self.confirm_or_start(question, effect)
    }

    fn discard(&mut self) -> Option<Effect> {
        let (spec, subscription, delivery_id, n) = self.target()?;
        let question = match &delivery_id {
            Some(id) => format!("Discard dead job {id} of {spec}? It is deleted for good. (y/n)"),
            None => format!(
                "Discard all {n} dead job(s) of {spec} x {subscription}? They are deleted for good. (y/n)"
            ),
        };
        let effect = Effect::Discard {
            spec,
            subscription,
            delivery_id,
        };
        self.confirm_or_start(Some(question), effect)
    }

    fn toggle_pause(&mut self) -> Option<Effect> {
        let subscription = match (&self.mode, &self.job) {
            (Mode::Job, Some(job)) => job.subscription.clone(),
            _ => match self.selected_row() {
                Some(row) => row.subscription.clone(),
                None => {
                    self.say("no row selected");
                    return None;
                }
            },
        };
        let paused = self
            .board
            .as_ref()
            .and_then(|b| b.gate(&subscription).map(|g| g.circuit.paused.is_some()))
            .or_else(|| self.selected_row().map(|r| r.circuit.paused.is_some()))
            .unwrap_or(false);
        self.start(match paused {
            true => Effect::Resume { subscription },
            false => Effect::Pause { subscription },
        })
    }

    fn confirm_or_start(&mut self, question: Option<String>, effect: Effect) -> Option<Effect> {
        if let Some(busy) = self.refused(&effect) {
            self.say(busy);
            return None;
        }
        match question {
            Some(question) => {
                self.mode = Mode::Confirm { question, effect };
                None
            }
            None => self.start(effect),
        }
    }

    /// Why `effect` cannot start now: one change at a time.
    fn refused(&self, effect: &Effect) -> Option<String> {
        let busy = self.busy.as_ref()?;
        effect
            .changes()
            .then(|| format!("{busy} is still running; wait for it to finish"))
    }

    /// Hands `effect` to the runner (one change at a time).
    fn start(&mut self, effect: Effect) -> Option<Effect> {
        if let Some(busy) = self.refused(&effect) {
            self.say(busy);
            return None;
        }
        if effect.changes() {
            self.busy = Some(effect.describe());
            self.message = None;
            if self.mode == Mode::Job {
                self.mode = Mode::Browse;
                self.job = None;
            }
        }
        Some(effect)
    }

    /// A new read of the store (or why it failed).
    pub fn on_board(&mut self, board: Result<Board, String>) {
        match board {
            Ok(board) => {
                self.board = Some(board);
                self.load_error = None;
            }
            Err(error) => self.load_error = Some(error),
        }
        if let Some(i) = self.selected_index() {
            self.select_keeping_job(i);
        }
        if self.selected_row().is_none_or(|r| r.dead.is_empty()) {
            self.focus = Focus::Table;
        }
    }

    fn select_keeping_job(&mut self, index: usize) {
        let cursor = self.job_cursor.take();
        self.select(index);
        self.job_cursor = cursor;
    }

    /// A change finished.
    pub fn on_done(&mut self, report: Report) {
        self.busy = None;
        self.message = Some(report);
    }

    /// A job's detail was read (`Ok(None)`: it is gone).
    pub fn on_job(&mut self, delivery_id: &str, detail: Result<Option<JobDetail>, String>) {
        let Some(view) = self.job.as_mut().filter(|j| j.delivery_id == delivery_id) else {
            return; // closed meanwhile
        };
        view.detail = Some(match detail {
            Ok(Some(detail)) => Ok(detail),
            Ok(None) => Err(format!(
                "{delivery_id} is no longer in the store (replayed and delivered, or discarded)"
            )),
            Err(error) => Err(error),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::{Circuit, Pause};
    use crate::health::{Gate, Health};

    fn dead(id: &str) -> Meta {
        let mut meta = Meta::new("SPEC-1", "hook", "a.b.c", "k", 1, 1000);
        meta.delivery_id = id.into();
        meta.state = crate::spool::State::Dead;
        meta
    }

    fn row(spec: &str, sub: &str, dead_ids: &[&str]) -> Row {
        let mut row = Row {
            spec: spec.into(),
            subscription: sub.into(),
            dead: dead_ids.iter().map(|id| dead(id)).collect(),
            ..Row::default()
        };
        row.counts.dead = dead_ids.len();
        row
    }

    fn board(rows: Vec<Row>) -> Board {
        let gates = rows
            .iter()
            .map(|r| Gate {
                id: r.subscription.clone(),
                circuit: r.circuit.clone(),
                health: Health::Ok,
                secret_problem: None,
                waiting: 0,
                stalled: None,
            })
            .collect();
        Board {
            rows,
            gates,
            ..Board::default()
        }
    }

    fn state(rows: Vec<Row>) -> State {
        let mut s = State::new(false);
        s.on_board(Ok(board(rows)));
        s
    }

    fn three() -> State {
        state(vec![
            row("SPEC-1", "hook", &["d1", "d2"]),
            row("SPEC-1", "slack", &[]),
            row("SPEC-2", "hook", &[]),
        ])
    }

    #[test]
    fn the_first_row_is_selected_and_arrows_stop_at_the_ends() {
        let mut s = three();
        assert_eq!(s.selected_index(), Some(0));
        s.apply(Action::Up);
        assert_eq!(s.selected_index(), Some(0));
        s.apply(Action::Down);
        s.apply(Action::Down);
        s.apply(Action::Down);
        assert_eq!(s.selected_row().unwrap().spec, "SPEC-2");
        s.apply(Action::Home);
        assert_eq!(s.selected_index(), Some(0));
        s.apply(Action::End);
        assert_eq!(s.selected_index(), Some(2));
    }

    #[test]
    fn the_selection_follows_its_row_across_refreshes() {
        let mut s = three();
        s.apply(Action::Down); // SPEC-1 slack
        let mut rows = vec![row("SPEC-0", "hook", &[])];
        rows.extend(three().board.unwrap().rows);
        s.on_board(Ok(board(rows)));
        let selected = s.selected_row().unwrap();
        assert_eq!(
            (&*selected.spec, &*selected.subscription),
            ("SPEC-1", "slack")
        );
        // When its row is gone, the selection stays where it was.
        s.on_board(Ok(board(vec![
            row("SPEC-0", "hook", &[]),
            row("SPEC-9", "x", &[]),
        ])));
        assert_eq!(s.selected_row().unwrap().spec, "SPEC-9");
    }

    #[test]
    fn the_filter_narrows_the_rows_as_it_is_typed_and_esc_clears_it() {
        let mut s = three();
        s.apply(Action::Filter);
        assert_eq!(s.mode, Mode::Filter);
        for c in "SLA".chars() {
            s.apply(Action::Type(c));
        }
        assert_eq!(s.visible().len(), 1, "any case");
        assert_eq!(s.selected_row().unwrap().subscription, "slack");
        s.apply(Action::Erase);
        s.apply(Action::Erase);
        s.apply(Action::Erase);
        s.apply(Action::Type('2'));
        s.apply(Action::Submit);
        assert_eq!(s.mode, Mode::Browse);
        assert_eq!(s.visible().len(), 1);
        s.apply(Action::Back);
        assert_eq!(s.visible().len(), 3);
    }

    #[test]
    fn r_on_the_row_asks_before_replaying_all_its_dead_jobs() {
        let mut s = three();
        assert_eq!(s.apply(Action::Replay), None);
        let Mode::Confirm { question, .. } = &s.mode else {
            panic!("asks first: {:?}", s.mode);
        };
        assert_eq!(question, "Replay all 2 dead job(s) of SPEC-1 x hook? (y/n)");
        assert_eq!(
            s.apply(Action::Yes),
            Some(Effect::Replay {
                spec: "SPEC-1".into(),
                subscription: "hook".into(),
                delivery_id: None,
            })
        );
        assert_eq!(
            s.busy.as_deref(),
            Some("replaying the dead jobs of SPEC-1 x hook")
        );
        assert_eq!(s.mode, Mode::Browse);
        // One change at a time.
        s.apply(Action::TogglePause);
        assert!(s.message.as_ref().unwrap().lines[0].contains("still running"));
        s.on_done(Report {
            lines: vec!["replayed 2".into()],
            failed: false,
        });
        assert_eq!(s.busy, None);
        assert_eq!(s.message.as_ref().unwrap().lines, ["replayed 2"]);
    }

    #[test]
    fn n_or_esc_cancels_a_confirmation_and_nothing_happens() {
        let mut s = three();
        s.apply(Action::Discard);
        assert_eq!(s.apply(Action::No), None);
        assert_eq!(s.mode, Mode::Browse);
        s.apply(Action::Discard);
        assert_eq!(s.apply(Action::Back), None);
        assert_eq!(s.mode, Mode::Browse);
        assert_eq!(s.busy, None);
    }

    #[test]
    fn a_selected_dead_job_is_replayed_at_once_and_discarded_after_asking() {
        let mut s = three();
        s.apply(Action::SwitchFocus);
        assert_eq!(s.focus, Focus::Jobs);
        s.apply(Action::Down);
        assert_eq!(s.selected_job().unwrap().delivery_id, "d2");
        let replay = Effect::Replay {
            spec: "SPEC-1".into(),
            subscription: "hook".into(),
            delivery_id: Some("d2".into()),
        };
        assert_eq!(s.apply(Action::Replay), Some(replay));
        s.on_done(Report::default());
        s.apply(Action::Discard);
        let Mode::Confirm { question, .. } = &s.mode else {
            panic!("{:?}", s.mode)
        };
        assert!(
            question.starts_with("Discard dead job d2 of SPEC-1?"),
            "{question}"
        );
        assert!(matches!(
            s.apply(Action::Yes),
            Some(Effect::Discard { delivery_id: Some(id), .. }) if id == "d2"
        ));
    }

    #[test]
    fn a_row_without_dead_jobs_says_so_instead_of_replaying() {
        let mut s = three();
        s.apply(Action::Down);
        assert_eq!(s.apply(Action::Replay), None);
        assert_eq!(s.mode, Mode::Browse);
        assert_eq!(
            s.message.as_ref().unwrap().lines,
            ["no dead jobs in SPEC-1 x slack"]
        );
        s.apply(Action::SwitchFocus);
        assert_eq!(s.focus, Focus::Table, "nothing to focus");
    }

    #[test]
    fn p_pauses_a_running_subscription_and_resumes_a_paused_one() {
        let mut s = three();
        assert_eq!(
            s.apply(Action::TogglePause),
            Some(Effect::Pause {
                subscription: "hook".into()
            })
        );
        s.on_done(Report::default());
        let mut paused = row("SPEC-1", "hook", &[]);
        paused.circuit = Circuit {
            paused: Some(Pause {
                reason: "r".into(),
                at_ms: 1,
                by: "operator".into(),
            }),
            ..Circuit::default()
        };
        s.on_board(Ok(board(vec![paused])));
        assert_eq!(
            s.apply(Action::TogglePause),
            Some(Effect::Resume {
                subscription: "hook".into()
            })
        );
    }

    #[test]
    fn enter_focuses_the_dead_jobs_then_opens_one_and_esc_goes_back() {
        let mut s = three();
        assert_eq!(s.apply(Action::Open), None);
        assert_eq!(s.focus, Focus::Jobs);
        assert_eq!(
            s.apply(Action::Open),
            Some(Effect::LoadJob {
                spec: "SPEC-1".into(),
                delivery_id: "d1".into()
            })
        );
        assert_eq!(s.mode, Mode::Job);
        s.on_job("d1", Ok(None));
        let err = s.job.as_ref().unwrap().detail.as_ref().unwrap();
        assert!(err.as_ref().unwrap_err().contains("no longer in the store"));
        // Not dead (gone): nothing to replay from here.
        assert_eq!(s.apply(Action::Replay), None);
        s.apply(Action::Down);
        assert_eq!(s.job.as_ref().unwrap().scroll, 1);
        s.apply(Action::Back);
        assert_eq!((s.mode.clone(), s.focus), (Mode::Browse, Focus::Jobs));
        s.apply(Action::Back);
        assert_eq!(s.focus, Focus::Table);
    }

    #[test]
    fn a_failed_read_keeps_the_last_board_and_says_why() {
        let mut s = three();
        s.on_board(Err("nats: connection refused".into()));
        assert_eq!(s.visible().len(), 3);
        assert_eq!(s.load_error.as_deref(), Some("nats: connection refused"));
        s.on_board(Ok(board(vec![])));
        assert_eq!(s.load_error, None);
        assert_eq!(s.selected_index(), None);
        assert_eq!(s.apply(Action::Replay), None, "nothing to act on");
    }

    #[test]
    fn q_quits() {
        let mut s = three();
        s.apply(Action::Quit);
        assert!(s.quit);
    }
}
