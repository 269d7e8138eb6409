//! Reads what health is computed from, through a [`Source`] (this host's
//! spool by default): every job's metadata, the attempt records (streamed,
//! never all in memory) and the shared circuit states, into a [`Snapshot`]
//! per SPEC and per subscription. Read-only: it never moves or rewrites a
//! job; what it cannot read is returned for the command to name.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;

use super::source::{Local, Source};
use super::{AttemptStats, Counts, Health, StatsBuilder};
use crate::circuit::Circuit;
use crate::config::Config;
use crate::evidence::{Outcome, Record};
use crate::spool::{Entry, Spool, State, Unreadable};

/// One subscription within one SPEC.
#[derive(Debug, Clone, Default)]
pub struct SubHealth {
    pub subscription: String,
    pub counts: Counts,
    pub stats: AttemptStats,
    /// When the oldest job still waiting in pending/ was emitted.
    pub oldest_pending_ms: Option<u64>,
    /// Since when the longest-due pending job has been due (its next
    /// attempt time, when that has passed): jobs waiting for a retry's
    /// backoff do not count.
    pub oldest_due_ms: Option<u64>,
}

/// One SPEC: its subscriptions, its quarantine and every job read.
#[derive(Debug, Clone, Default)]
pub struct SpecHealth {
    pub spec: String,
    /// Subscriptions with jobs or attempts in this SPEC, sorted by id.
    pub subscriptions: Vec<SubHealth>,
    /// Quarantined files with the first line of their reason.
    pub quarantined: Vec<(String, String)>,
    /// Every job of the SPEC (pending, active, delivered, dead), in emit order per folder.
    pub jobs: Vec<Entry>,
}

/// One subscription across every SPEC read, with its shared state.
#[derive(Debug, Clone)]
pub struct SubscriptionHealth {
    pub subscription: String,
    /// Still in the config (jobs of removed subscriptions can linger).
    pub configured: bool,
    pub counts: Counts,
    pub stats: AttemptStats,
    pub oldest_pending_ms: Option<u64>,
    /// See [`SubHealth::oldest_due_ms`].
    pub oldest_due_ms: Option<u64>,
    pub circuit: Circuit,
    pub health: Health,
}

/// What the spool and the attempt logs say, at `now_ms`.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub now_ms: u64,
    /// Attempts before this time were left out of the stats.
    pub since_ms: Option<u64>,
    pub specs: Vec<SpecHealth>,
    /// Configured subscriptions first in config order, then any other seen.
    pub subscriptions: Vec<SubscriptionHealth>,
    /// Jobs that could not be read (skipped; the drain quarantines them).
    pub unreadable: Vec<Unreadable>,
    /// Attempt-log lines and files skipped: (what, where: "the attempt
    /// log under `…`", "stream …").
    pub unparseable: Vec<(crate::evidence::Skipped, String)>,
}

impl Snapshot {
    pub fn subscription(&self, id: &str) -> Option<&SubscriptionHealth> {
        self.subscriptions.iter().find(|s| s.subscription == id)
    }
}

/// What one subscription adds up to while the jobs and records are read.
#[derive(Default)]
struct Tally {
    counts: Counts,
    stats: StatsBuilder,
    /// Emit time of the oldest pending job.
    oldest: Option<u64>,
    /// Due time of the longest-due pending job.
    oldest_due: Option<u64>,
}

/// Reads `specs` from this host's spool and attempt logs: [`gather_from`]
/// on [`Local`].
pub fn gather(
    config: &Config,
    specs: &[String],
    since_ms: Option<u64>,
    now_ms: u64,
    visit: &mut dyn FnMut(&Record),
) -> Result<Snapshot> {
    gather_from(&Local::new(config), config, specs, since_ms, now_ms, visit)
}

/// Reads `specs` from `source` at `now_ms`. Attempts at or after `since_ms`
/// (all, when `None`) count in the stats; every record in that window,
/// attempt or not, is also handed to `visit` in log order, for charts and
/// counters. When the source does not keep delivered jobs, a job counts as
/// delivered once per delivery id with a delivered attempt (in any window).
pub fn gather_from(
    source: &dyn Source,
    config: &Config,
    specs: &[String],
    since_ms: Option<u64>,
    now_ms: u64,
    visit: &mut dyn FnMut(&Record),
) -> Result<Snapshot> {
    let (unreadable, unparseable) = source.problems();
    let mut snapshot = Snapshot {
        now_ms,
        since_ms,
        unreadable,
        unparseable,
        ..Snapshot::default()
    };
    let mut totals: BTreeMap<String, Tally> = BTreeMap::new();
    for spec in specs {
        let mut counts: BTreeMap<String, Tally> = BTreeMap::new();
        let mut jobs = Vec::new();
        for state in State::JOBS {
            let scan = source.scan(spec, state)?;
            snapshot.unreadable.extend(scan.unreadable);
            for entry in scan.entries {
                for map in [&mut counts, &mut totals] {
                    let tally = map.entry(entry.meta.subscription.clone()).or_default();
                    tally.counts.add(state);
                    if state == State::Pending {
                        let at = entry.meta.created_at_ms;
                        tally.oldest = Some(tally.oldest.map_or(at, |o| o.min(at)));
                        let due = entry.meta.next_attempt_at_ms;
                        if due <= now_ms {
                            tally.oldest_due = Some(tally.oldest_due.map_or(due, |o| o.min(due)));
                        }
                    }
                }
                jobs.push(entry);
            }
        }
        let mut delivered: BTreeSet<(String, String)> = BTreeSet::new();
        let (skipped, place) = source.records(spec, &mut |record| {
            if !source.keeps_delivered() && record.outcome == Outcome::Delivered {
                delivered.insert((record.subscription.clone(), record.delivery_id.clone()));
            }
            if since_ms.is_some_and(|since| record.ts_ms < since) {
                return;
            }
            visit(&record);
            if record.outcome.is_attempt() {
                for map in [&mut counts, &mut totals] {
                    map.entry(record.subscription.clone())
                        .or_default()
                        .stats
                        .add(&record);
                }
            }
        })?;
        for (subscription, _) in delivered {
            for map in [&mut counts, &mut totals] {
                map.entry(subscription.clone())
                    .or_default()
                    .counts
                    .delivered += 1;
            }
        }
        if !skipped.is_empty() {
            snapshot.unparseable.push((skipped, place));
        }
        snapshot.specs.push(SpecHealth {
            spec: spec.clone(),
            subscriptions: counts
                .into_iter()
                .map(|(subscription, tally)| SubHealth {
                    subscription,
                    counts: tally.counts,
                    stats: tally.stats.finish(),
                    oldest_pending_ms: tally.oldest,
                    oldest_due_ms: tally.oldest_due,
                })
                .collect(),
            quarantined: source.quarantined(spec)?,
            jobs,
        });
    }
    let mut ids: Vec<(String, bool)> = config
        .subscriptions
        .iter()
        .map(|s| (s.id.clone(), true))
        .collect();
    for id in totals.keys() {
        if config.subscription(id).is_none() {
            ids.push((id.clone(), false));
        }
    }
    for (id, configured) in ids {
        let tally = totals.remove(&id).unwrap_or_default();
        let (counts, stats) = (tally.counts, tally.stats.finish());
        // A job of a removed subscription may name no valid state file.
        let circuit = match configured {
            true => source.circuit(&id)?,
            false => source.circuit(&id).unwrap_or_default(),
        };
        snapshot.subscriptions.push(SubscriptionHealth {
            health: Health::of(&counts, &stats, &circuit),
            subscription: id,
            configured,
            counts,
            stats,
            oldest_pending_ms: tally.oldest,
            oldest_due_ms: tally.oldest_due,
            circuit,
        });
    }
    Ok(snapshot)
}

/// SPECs with a spool folder or a webhook evidence folder, sorted.
pub fn all_specs(config: &Config) -> Result<Vec<String>> {
    let mut specs = Spool::new(&config.spool_dir).specs()?;
    if let Ok(entries) = std::fs::read_dir(&config.evidence_dir) {
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(String::from) else {
                continue;
            };
            if crate::envelope::check_spec_id(&name).is_ok()
                && config.evidence_for(&name).is_dir()
                && !specs.contains(&name)
            {
                specs.push(name);
            }
        }
    }
    specs.sort();
    Ok(specs)
}
