//! What a run is given and what it gives back: its [`Options`], the
//! [`Stop`] flags set by signals, the [`Event`]s it reports as they happen,
//! the [`Summary`] it ends with; and the pace at which it looks at the
//! queue ([`POLL`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::circuit::{Circuit, Transition};
use crate::evidence::{Outcome, Record};
use crate::spool::Quarantined;

/// How often the drain looks for new or newly due jobs.
pub const POLL: Duration = Duration::from_millis(20);
/// The longest interval between two looks at pending/ (with a big backlog).
pub(super) const MAX_LOOK_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only this SPEC.
    pub spec: Option<String>,
    /// One pass over due jobs; never wait.
    pub once: bool,
    /// Run until stopped.
    pub watch: bool,
    /// No attempt starts after this (not with `watch`); in-flight requests finish.
    pub max_time: Duration,
    /// Only these delivery ids (replay).
    pub only: Option<HashSet<String>>,
}

/// Why a run stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Interrupt,
    Terminate,
}

/// Flags set by SIGINT/SIGTERM: stop taking jobs, finish what is in flight.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    interrupt: Arc<AtomicBool>,
    terminate: Arc<AtomicBool>,
}

impl Stop {
    /// Installs handlers for SIGINT and SIGTERM.
    pub fn install() -> Result<Stop> {
        let stop = Stop::default();
        signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop.interrupt))?;
        signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop.terminate))?;
        Ok(stop)
    }

    pub fn signal(&self) -> Option<Signal> {
        if self.terminate.load(Ordering::Relaxed) {
            Some(Signal::Terminate)
        } else if self.interrupt.load(Ordering::Relaxed) {
            Some(Signal::Interrupt)
        } else {
            None
        }
    }
}

/// Something that happened during a run, for the command layer to show.
#[derive(Debug, Clone)]
pub enum Event {
    /// One attempt (or dry run, expiry) and its evidence line.
    Attempt(Record),
    /// A job was dead-lettered; what to do about it.
    Dead {
        spec: String,
        delivery_id: String,
        subscription: String,
        reason: String,
        hint: String,
    },
    /// A subscription's circuit or pause changed.
    Circuit {
        subscription: String,
        transition: Transition,
        circuit: Circuit,
    },
    Quarantined(Quarantined),
    /// A FIFO line holds (`fifo_on_dead = "hold"`): its dead job must be
    /// replayed or discarded before the line goes on.
    LineHeld {
        spec: String,
        subscription: String,
        delivery_id: String,
    },
    /// An I/O failure; the run goes on and exits 1.
    Error(String),
}

/// What a run did.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub delivered: u64,
    pub retrying: u64,
    pub dead: u64,
    pub dry_run: u64,
    /// Jobs that paused their subscription (410, `webhook-delivery: disable`).
    pub paused: u64,
    /// Jobs left pending because their subscription cannot send now.
    pub held: u64,
    pub quarantined: u64,
    pub recovered: u64,
    /// SPECs another drain was serving (it delivers their jobs).
    pub busy: Vec<String>,
    /// Delivery ids attempted, with the verdict: for replay's report, so
    /// kept only by a run limited to some ids (`Options::only`); a
    /// `drain --watch` would otherwise hold every id it ever sent.
    #[serde(skip)]
    pub outcomes: BTreeMap<String, Outcome>,
    /// Things a person must fix (missing secrets): exit 2.
    pub problems: Vec<String>,
    /// I/O failures: exit 1.
    pub errors: Vec<String>,
    /// SPECs this run let go of with jobs due that no drain serves (they
    /// arrived as it ended, or it stopped at `--max-time`): the command
    /// starts a background drain for them when `auto_drain` is on.
    pub left_due: Vec<String>,
    pub stopped_by: Option<Signal>,
}

impl Summary {
    pub fn line(&self) -> String {
        let mut line = format!(
            "delivered {}, retrying {}, dead {}, dry-run {}",
            self.delivered, self.retrying, self.dead, self.dry_run
        );
        if self.paused > 0 {
            line.push_str(&format!(", paused {}", self.paused));
        }
        if self.held > 0 {
            line.push_str(&format!(", held {} (see above)", self.held));
        }
        if self.quarantined > 0 {
            line.push_str(&format!(", quarantined {}", self.quarantined));
        }
        line
    }

    /// Counts a record of this run (and keeps its outcome by delivery id
    /// when `keep_outcome`).
    pub(super) fn count(&mut self, record: &Record, keep_outcome: bool) {
        match record.outcome {
            Outcome::Delivered => self.delivered += 1,
            Outcome::Retry => self.retrying += 1,
            Outcome::Dead => self.dead += 1,
            Outcome::DryRun => self.dry_run += 1,
            Outcome::Paused => self.paused += 1,
            _ => return,
        }
        if keep_outcome {
            self.outcomes
                .insert(record.delivery_id.clone(), record.outcome);
        }
    }
}
