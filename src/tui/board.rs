//! What the live view shows, read from a [`Store`] at one instant: a
//! [`Board`] with one [`Row`] per SPEC × subscription (job counts, the
//! circuit or pause, success rate and p95 over the last hour, the oldest
//! pending job, the latest records and the dead jobs), the subscriptions'
//! gates as `status` computes them, and what could not be read. Read-only
//! and lock-free, like `status`: it goes through `Store::health` and
//! `crate::health::gather_from`, and never takes a lock a drain needs.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::circuit::Circuit;
use crate::clock;
use crate::config::Config;
use crate::evidence::Record;
use crate::health::{self, AttemptStats, Counts, Gate, Health, StatsBuilder};
use crate::spool::{Meta, State};
use crate::store::Store;

/// The window of the success rate and p95 columns.
pub const HOUR_MS: u64 = 3_600_000;

/// How many of a row's latest records the detail pane keeps.
pub const RECENT: usize = 20;

/// The store at one instant.
#[derive(Debug, Clone, Default)]
pub struct Board {
    /// When it was read; ages are counted from here.
    pub now_ms: u64,
    /// `spool` or `nats`.
    pub source: &'static str,
    /// What commands need to act on the same store (` --source nats`).
    pub flag: &'static str,
    /// Sorted by SPEC, then subscription.
    pub rows: Vec<Row>,
    /// Every configured subscription's gate, in config order.
    pub gates: Vec<Gate>,
    /// SPECs with quarantined files, and how many.
    pub quarantined: Vec<(String, usize)>,
    /// Spool files (or messages) that could not be read as jobs.
    pub unreadable: usize,
    /// Alerts of the configured rules firing now (the shared alert state,
    /// as the last drain or `status` evaluated it).
    pub alerts: Vec<crate::alerts::Firing>,
    /// How long reading took, to pace the next read.
    pub took: Duration,
}

/// One SPEC × subscription.
#[derive(Debug, Clone)]
pub struct Row {
    pub spec: String,
    pub subscription: String,
    pub counts: Counts,
    /// Attempts of the last hour only.
    pub hour: AttemptStats,
    pub oldest_pending_ms: Option<u64>,
    /// The subscription's shared breaker and pause (every SPEC's).
    pub circuit: Circuit,
    pub health: Health,
    /// The latest records of this SPEC × subscription (attempts, circuit
    /// changes, operator actions), newest first.
    pub recent: Vec<Record>,
    /// Dead jobs, newest first.
    pub dead: Vec<Meta>,
    /// A FIFO line held by a dead job (`fifo_on_dead = "hold"`): that job's
    /// delivery id, the earliest dead one.
    pub held_by: Option<String>,
}

impl Default for Row {
    fn default() -> Row {
        Row {
            spec: String::new(),
            subscription: String::new(),
            counts: Counts::default(),
            hour: AttemptStats::default(),
            oldest_pending_ms: None,
            circuit: Circuit::default(),
            health: Health::Ok,
            recent: Vec::new(),
            dead: Vec::new(),
            held_by: None,
        }
    }
}

impl Row {
    /// `paused`, `open` or `closed`.
    pub fn state(&self) -> &'static str {
        health::gate::circuit_state(&self.circuit)
    }

    /// What the newest dead job says to do.
    pub fn hint(&self) -> Option<&str> {
        self.dead.iter().find_map(|m| m.hint.as_deref())
    }

    pub fn is(&self, spec: &str, subscription: &str) -> bool {
        self.spec == spec && self.subscription == subscription
    }
}

impl Board {
    pub fn row(&self, spec: &str, subscription: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.is(spec, subscription))
    }

    pub fn gate(&self, subscription: &str) -> Option<&Gate> {
        self.gates.iter().find(|g| g.id == subscription)
    }
}

/// What the records of one SPEC × subscription add up to while read.
#[derive(Default)]
struct Tally {
    hour: StatsBuilder,
    recent: VecDeque<Record>,
}

/// Reads the store now. `stalled_after` is `status --stalled-after`.
pub fn load(store: &dyn Store, config: &Config, stalled_after: Duration) -> Result<Board> {
    let started = Instant::now();
    let now = clock::now_ms();
    let source = store.health()?;
    let specs = source.specs()?;
    let since = now.saturating_sub(HOUR_MS);
    let mut tallies: BTreeMap<String, BTreeMap<String, Tally>> = BTreeMap::new();
    let snapshot = health::gather_from(&*source, config, &specs, None, now, &mut |record| {
        // Looked up by &str: no two Strings allocated per record.
        if !tallies.contains_key(record.spec.as_str()) {
            tallies.insert(record.spec.clone(), BTreeMap::new());
        }
        let Some(of_spec) = tallies.get_mut(record.spec.as_str()) else {
            return;
        };
        if !of_spec.contains_key(record.subscription.as_str()) {
            of_spec.insert(record.subscription.clone(), Tally::default());
        }
        let Some(tally) = of_spec.get_mut(record.subscription.as_str()) else {
            return;
        };
        if record.ts_ms >= since {
            tally.hour.add(record);
        }
        if tally.recent.len() == RECENT {
            tally.recent.pop_front();
        }
        tally.recent.push_back(record.clone());
    })?;
    let mut rows = Vec::new();
    for spec in &snapshot.specs {
        let mut dead: BTreeMap<&str, Vec<Meta>> = BTreeMap::new();
        for entry in spec.jobs.iter().filter(|e| e.state == State::Dead) {
            dead.entry(entry.meta.subscription.as_str())
                .or_default()
                .push(entry.meta.clone());
        }
        for sub in &spec.subscriptions {
            let shared = snapshot.subscription(&sub.subscription);
            let tally = tallies
                .get_mut(spec.spec.as_str())
                .and_then(|m| m.remove(sub.subscription.as_str()))
                .unwrap_or_default();
            let mut dead = dead.remove(sub.subscription.as_str()).unwrap_or_default();
            dead.sort_by_key(|m| std::cmp::Reverse(m.finished_at_ms.unwrap_or(m.created_at_ms)));
            let circuit = shared.map(|s| s.circuit.clone()).unwrap_or_default();
            let holds = config
                .every_subscription()
                .any(|(_, s)| s.id == sub.subscription && s.ordering.holds_on_dead());
            let held_by = dead
                .iter()
                .filter(|_| holds)
                .min_by_key(|m| m.sequence)
                .map(|m| m.delivery_id.clone());
            rows.push(Row {
                spec: spec.spec.clone(),
                subscription: sub.subscription.clone(),
                counts: sub.counts,
                hour: tally.hour.finish(),
                oldest_pending_ms: sub.oldest_pending_ms,
                health: Health::of(&sub.counts, &sub.stats, &circuit),
                circuit,
                recent: tally.recent.into_iter().rev().collect(),
                dead,
                held_by,
            });
        }
    }
    let rules: Vec<String> = config.alerts.iter().map(|r| r.id.clone()).collect();
    // The alert state is read, never evaluated here: the view changes
    // nothing (a state it cannot read shows no alert lines).
    let alerts = match rules.is_empty() {
        true => Vec::new(),
        false => store
            .alert_state()
            .map(|state| state.firing_for(&rules).cloned().collect())
            .unwrap_or_default(),
    };
    Ok(Board {
        now_ms: now,
        alerts,
        source: store.name(),
        flag: store.flag(),
        gates: health::gates(config, &snapshot, stalled_after, store.flag()),
        quarantined: snapshot
            .specs
            .iter()
            .filter(|s| !s.quarantined.is_empty())
            .map(|s| (s.spec.clone(), s.quarantined.len()))
            .collect(),
        unreadable: snapshot.unreadable.len(),
        rows,
        took: started.elapsed(),
    })
}

/// One job with what `Enter` shows of it.
#[derive(Debug, Clone)]
pub struct JobDetail {
    pub meta: Meta,
    pub state: State,
    /// The envelope, pretty-printed when it is JSON; `None` when it could
    /// no longer be read.
    pub envelope: Option<String>,
    /// Every record of this delivery id, oldest first.
    pub records: Vec<Record>,
}

/// Reads one job of `spec` (dead, pending, in flight or delivered) and its
/// records. `None` when it is no longer in the store.
pub fn load_job(store: &dyn Store, spec: &str, delivery_id: &str) -> Result<Option<JobDetail>> {
    let source = store.health()?;
    let mut found = None;
    for state in [State::Dead, State::Pending, State::Active, State::Delivered] {
        let scan = source.scan(spec, state)?;
        if let Some(entry) = scan
            .entries
            .into_iter()
            .find(|e| e.meta.delivery_id == delivery_id)
        {
            found = Some(entry);
            break;
        }
    }
    let Some(entry) = found else {
        return Ok(None);
    };
    let envelope = source.body(&entry).map(|body| {
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned())
    });
    let mut records = Vec::new();
    store.records(spec, &mut |record| {
        if record.delivery_id == delivery_id {
            records.push(record);
        }
    })?;
    Ok(Some(JobDetail {
        state: entry.state,
        meta: entry.meta,
        envelope,
        records,
    }))
}
