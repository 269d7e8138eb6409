//! `spec-notify top`: a live terminal view of a [`Store`] (this host's
//! spool, or NATS), the way k9s or htop watch what they watch.
//!
//! - [`board`] reads the store into a [`board::Board`] (read-only, no lock);
//!   [`banner`] decides what needs a person.
//! - [`state`] is the view as a plain value; [`keys`] turns a key into an
//!   action; [`draw`] draws the state (pure). [`act`] carries out a change
//!   with the same calls as the commands.
//! - [`term`] takes the terminal and puts it back (return, panic, signal).
//!
//! Three threads: this one reads keys, applies them and draws; a reader
//! reads the store again every second, and as soon as the store tells of
//! a change (`Store::changes`: jobs arriving, a circuit or pause, a dead
//! job), at most every 100 ms; after a read that took long, never sooner
//! than four times as long. A change (replay, discard, pause, resume)
//! runs on a thread of its own, one at a time, so that a replay waiting
//! for an endpoint never freezes the screen.

pub mod act;
pub mod banner;
pub mod board;
pub mod draw;
pub mod keys;
pub mod state;
pub mod term;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::Scope;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ratatui::crossterm::event::{self, Event as TermEvent};

use crate::config::Config;
use crate::drain::{Signal, Stop};
use crate::store::{Say, Store};
use board::{Board, JobDetail};
use state::{Effect, Report, State};

/// How `top` was started.
pub struct Options<'a> {
    /// `status --stalled-after`: when waiting jobs count as stalled.
    pub stalled_after: Duration,
    /// Colours allowed (a terminal, no `NO_COLOR`).
    pub color: bool,
    /// For what must be said once the terminal is back (a change still
    /// finishing as `top` quits).
    pub say: Say<'a>,
}

/// At least this often the reader reads the store again.
pub const REFRESH: Duration = Duration::from_secs(1);

/// The soonest a change is read after the last read.
const SOONEST: Duration = Duration::from_millis(100);

/// How long the loops wait for something before looking around.
const TICK: Duration = Duration::from_millis(50);

/// What came back from the other threads.
enum Msg {
    Board(Result<Board, String>),
    Done(Report),
    Job {
        delivery_id: String,
        detail: Result<Option<Box<JobDetail>>, String>,
    },
}

/// What the reader is asked for besides its rounds.
enum Request {
    /// Read now (a change finished).
    Refresh,
    Job {
        spec: String,
        delivery_id: String,
    },
}

/// Runs the view until `q`, Ctrl-C, SIGINT or SIGTERM; returns the signal
/// that ended it, if one did. The terminal is back as it was on return.
pub fn run(store: &dyn Store, config: &Config, options: &Options<'_>) -> Result<Option<Signal>> {
    let stop = Stop::install().context("failed to install the SIGINT and SIGTERM handlers")?;
    let mut screen = term::take().context("failed to set up the terminal")?;
    let quit = AtomicBool::new(false);
    let busy = AtomicBool::new(false);
    let (to_ui, from_workers) = mpsc::channel();
    let (to_reader, requests) = mpsc::channel();
    let ended = std::thread::scope(|scope| {
        let reader_tx = to_ui.clone();
        let quit_ref = &quit;
        scope.spawn(move || {
            reader(
                store,
                config,
                options.stalled_after,
                &requests,
                &reader_tx,
                quit_ref,
            );
        });
        let mut ui = Ui {
            state: State::new(options.color),
            store,
            config,
            to_ui,
            to_reader,
            busy: &busy,
        };
        let ended = ui.run(&mut screen, &from_workers, &stop, scope);
        quit.store(true, Ordering::SeqCst);
        // The terminal first: a change may take a moment to finish.
        term::restore();
        if busy.load(Ordering::SeqCst) {
            (options.say)(format_args!(
                "waiting for {} to finish...",
                ui.state.busy.as_deref().unwrap_or("a change")
            ));
        }
        ended
    });
    term::restore();
    ended
}

struct Ui<'a> {
    state: State,
    store: &'a dyn Store,
    config: &'a Config,
    to_ui: Sender<Msg>,
    to_reader: Sender<Request>,
    /// A change runs on its thread.
    busy: &'a AtomicBool,
}

impl<'a> Ui<'a> {
    fn run<'scope>(
        &mut self,
        screen: &mut term::Screen,
        from_workers: &Receiver<Msg>,
        stop: &Stop,
        scope: &'scope Scope<'scope, '_>,
    ) -> Result<Option<Signal>>
    where
        'a: 'scope,
    {
        let mut dirty = true;
        loop {
            if dirty {
                screen
                    .draw(|frame| draw::draw(&self.state, frame))
                    .context("failed to draw on the terminal")?;
                dirty = false;
            }
            if let Some(signal) = stop.signal() {
                return Ok(Some(signal));
            }
            if self.state.quit || term::panicked() {
                return Ok(None);
            }
            while let Ok(msg) = from_workers.try_recv() {
                self.receive(msg);
                dirty = true;
            }
            if !event::poll(TICK).context("failed to read the terminal")? {
                continue;
            }
            match event::read().context("failed to read the terminal")? {
                TermEvent::Key(key) => {
                    if let Some(action) = keys::action(&self.state.mode, key)
                        && let Some(effect) = self.state.apply(action)
                    {
                        self.start(effect, scope);
                    }
                    dirty = true;
                }
                TermEvent::Resize(..) => dirty = true,
                _ => {}
            }
        }
    }

    fn receive(&mut self, msg: Msg) {
        match msg {
            Msg::Board(board) => self.state.on_board(board),
            Msg::Done(report) => {
                self.busy.store(false, Ordering::SeqCst);
                self.state.on_done(report);
                let _ = self.to_reader.send(Request::Refresh);
            }
            Msg::Job {
                delivery_id,
                detail,
            } => self
                .state
                .on_job(&delivery_id, detail.map(|d| d.map(|d| *d))),
        }
    }

    /// Reads go to the reader; a change gets a thread of its own.
    fn start<'scope>(&self, effect: Effect, scope: &'scope Scope<'scope, '_>)
    where
        'a: 'scope,
    {
        if let Effect::LoadJob { spec, delivery_id } = effect {
            let _ = self.to_reader.send(Request::Job { spec, delivery_id });
            return;
        }
        self.busy.store(true, Ordering::SeqCst);
        let (store, config, tx) = (self.store, self.config, self.to_ui.clone());
        scope.spawn(move || {
            let report = act::perform(store, config, &effect);
            let _ = tx.send(Msg::Done(report));
        });
    }
}

/// Reads the store every [`REFRESH`] (slower when a read is slow), at
/// once when the store tells of a change or a change finished, and the
/// jobs asked for, until `quit`.
fn reader(
    store: &dyn Store,
    config: &Config,
    stalled_after: Duration,
    requests: &Receiver<Request>,
    to_ui: &Sender<Msg>,
    quit: &AtomicBool,
) {
    let changes = store.changes();
    let mut last: Option<Instant> = None;
    let mut pace = REFRESH;
    let mut gap = Duration::ZERO;
    let (mut force, mut changed) = (true, false);
    // A panic on the screen's thread sets no `quit`: stop on it too.
    while !quit.load(Ordering::SeqCst) && !term::panicked() {
        let wait = match &changes {
            Some(changes) => {
                changed |= changes.wait(TICK);
                Duration::ZERO
            }
            None => TICK,
        };
        match requests.recv_timeout(wait) {
            Ok(Request::Refresh) => force = true,
            Ok(Request::Job { spec, delivery_id }) => {
                let detail = board::load_job(store, &spec, &delivery_id);
                let detail = detail
                    .map(|d| d.map(Box::new))
                    .map_err(|e| format!("{e:#}"));
                let _ = to_ui.send(Msg::Job {
                    delivery_id,
                    detail,
                });
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let since = last.map(|t| t.elapsed());
        let due = since.is_none_or(|s| s >= pace);
        let soon = changed && since.is_none_or(|s| s >= gap);
        if !(force || due || soon) {
            continue;
        }
        let board = board::load(store, config, stalled_after).map_err(|e| format!("{e:#}"));
        let took = match &board {
            Ok(board) => board.took,
            Err(_) => Duration::ZERO,
        };
        // A slow read (a huge spool, a far server) is not repeated back to
        // back: reading takes at most a fifth of the time, whatever changes.
        pace = REFRESH.max(took * 4);
        gap = SOONEST.max(took * 4);
        last = Some(Instant::now());
        (force, changed) = (false, false);
        if to_ui.send(Msg::Board(board)).is_err() {
            return;
        }
    }
}
