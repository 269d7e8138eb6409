//! The operator's seam: every command that reads or acts on jobs (`list`,
//! `status`, `history`, `replay`, `discard`, `pause`, `resume`, `report`,
//! `metrics` and `drain`) goes through a [`Store`], chosen once from
//! `--source` in `crate::cmd` (the one place that asks which backend).
//!
//! - [`local::LocalStore`]: this host's spool, attempt logs and circuit files.
//! - `crate::nats::store::NatsStore`: NATS JetStream, every host's jobs.
//!
//! A store never prints: what a command must say (skipped files, progress
//! notes, quarantined files) comes back as values, or through the `say`
//! callback the command gave it. The shared shapes live here: the operator's
//! choice of jobs ([`Pick`]), a delivery id or a unique prefix of one
//! resolved the same way by every store ([`one_delivery_id`]), what a
//! listing found ([`Found`]), what a replay or discard did ([`Replayed`],
//! [`Discarded`]). [`ops`] holds the actions that both the commands and
//! `top` perform. [`alerts`] evaluates the alert rules through a store (the
//! shared alert state and the alert jobs are backend operations too);
//! `local_alerts` is the spool's side of it. [`lines`] says which FIFO
//! lines a dead job holds.

pub mod alerts;
pub mod lines;
pub mod local;
mod local_alerts;
pub mod ops;

use std::time::Duration;

use anyhow::Result;

use crate::alerts::{AlertJob, AlertState};
use crate::circuit::{Circuit, Transition};
use crate::drain::{Event, Options, Stop, Summary};
use crate::evidence::{Held, Outcome, Pull, Record, Skipped};
use crate::health::{self, Snapshot};
use crate::spool::{Meta, Quarantined, State, Unreadable};
use crate::{clock, metrics};

/// Which jobs an operator named: one delivery id, or every dead job that
/// passes the filters.
#[derive(Debug, Clone, Default)]
pub struct Pick {
    /// A whole delivery id or a unique prefix of one ([`one_delivery_id`]).
    pub delivery_id: Option<String>,
    pub subscription: Option<String>,
    /// Dead-lettered (or queued) at or after, at or before (ms).
    pub since: Option<u64>,
    pub until: Option<u64>,
}

impl Pick {
    /// Whether a dead job passes the filters (the id is the store's to match).
    pub fn keeps(&self, meta: &Meta) -> bool {
        let at = meta.finished_at_ms.unwrap_or(meta.created_at_ms);
        self.subscription
            .as_deref()
            .is_none_or(|s| s == meta.subscription)
            && self.since.is_none_or(|t| at >= t)
            && self.until.is_none_or(|t| at <= t)
    }
}

/// The fewest hex digits a delivery id may be shortened to, like git's
/// short hashes: the UUID's first group, as the demo's receiver prints it.
pub const MIN_ID_PREFIX: usize = 8;

/// Checks an operator's delivery id: a whole one, or its first
/// [`MIN_ID_PREFIX`] or more hex digits (hyphens anywhere, or none).
/// Returns it lowercased.
pub fn check_delivery_id(text: &str) -> Result<String, String> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.chars().filter(|c| *c != '-').count();
    if lower.is_empty() || !lower.chars().all(|c| c.is_ascii_hexdigit() || c == '-') || digits > 32
    {
        return Err(format!(
            "`{}` is not a delivery id: give the UUID `emit` and `list` print, or its first {MIN_ID_PREFIX} or more hex digits",
            text.escape_debug()
        ));
    }
    if digits < MIN_ID_PREFIX {
        return Err(format!(
            "`{}` is too short for a delivery id: give at least {MIN_ID_PREFIX} hex digits (the first group of the UUID `emit` and `list` print)",
            text.escape_debug()
        ));
    }
    Ok(lower)
}

/// Whether `id` is the delivery id `given` (checked by
/// [`check_delivery_id`]) names: it starts with those hex digits.
pub fn id_starts_with(id: &str, given: &str) -> bool {
    let mut id = id.chars().filter(|c| *c != '-');
    given
        .chars()
        .filter(|c| *c != '-')
        .all(|g| id.next().is_some_and(|c| c.eq_ignore_ascii_case(&g)))
}

/// The one delivery id among `found` (each with what it is, like `dead`)
/// that `given`, a whole id or a prefix of one, names; `None` when none
/// does. An invalid or too short `given`, or one that starts several ids,
/// is an exit-2 error listing them. Every command that takes a delivery
/// id resolves it here, whatever the store.
pub fn one_delivery_id(
    given: &str,
    found: impl IntoIterator<Item = (String, String)>,
    place: &str,
) -> Result<Option<String>> {
    let given = check_delivery_id(given).map_err(crate::exit::user_error)?;
    let mut matching: Vec<(String, String)> = Vec::new();
    for (id, what) in found {
        if id_starts_with(&id, &given) && !matching.iter().any(|(seen, _)| *seen == id) {
            matching.push((id, what));
        }
    }
    if matching.len() <= 1 {
        return Ok(matching.pop().map(|(id, _)| id));
    }
    matching.sort();
    let listed: Vec<String> = matching
        .iter()
        .map(|(id, what)| format!("{id} ({what})"))
        .collect();
    Err(crate::exit::user_error(format!(
        "delivery id `{given}` is ambiguous in {place}: {} deliveries start with it: {}; give more digits; nothing was changed",
        matching.len(),
        listed.join(", ")
    )))
}

/// One line of a listing.
#[derive(Debug)]
pub enum Listed {
    Job {
        state: State,
        name: String,
        meta: Box<Meta>,
    },
    Quarantined {
        spec: String,
        file: String,
        reason: String,
    },
}

/// What a listing found, and what it could not read.
#[derive(Debug, Default)]
pub struct Found {
    pub items: Vec<Listed>,
    pub unreadable: Vec<Unreadable>,
}

/// One job put back to be delivered: its metadata as requeued, and where
/// it was.
#[derive(Debug)]
pub struct Requeued {
    pub meta: Meta,
    pub from: State,
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct Replayed {
    pub requeued: Vec<Requeued>,
    /// Files a dead drain left that could not be read (now quarantined).
    pub quarantined: Vec<Quarantined>,
    /// Where the jobs were looked for, for "nothing matched" messages.
    pub place: String,
}

/// What a discard did. On a failure part way, the jobs removed so far are
/// here and `error` says what stopped it.
#[derive(Debug, Default)]
pub struct Discarded {
    pub removed: Vec<Meta>,
    /// Delivery ids left as they were (still being settled by a drain).
    pub left: Vec<String>,
    pub unreadable: Vec<Unreadable>,
    pub quarantined: Vec<Quarantined>,
    pub error: Option<anyhow::Error>,
    pub place: String,
}

/// A SPEC a store has nothing of.
#[derive(Debug)]
pub struct Unknown {
    /// What it lacks: "has no spool folder yet".
    pub missing: String,
    /// The known SPECs, as a phrase.
    pub listing: String,
}

/// A FIFO lane that sends nothing until an operator replays or discards
/// the dead job that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLane {
    pub subscription: String,
    pub spec: String,
    pub delivery_id: String,
}

/// A progress note for the person at the terminal (the command prints it).
pub type Say<'a> = &'a (dyn Fn(std::fmt::Arguments<'_>) + Sync);

/// One backend as the operator commands see it.
pub trait Store: Sync {
    /// The backend's name in JSON output: `spool` or `nats`.
    fn name(&self) -> &'static str;

    /// What to add to a command for it to act on this store (`--source
    /// nats`), empty for the spool: for hints.
    fn flag(&self) -> &'static str;

    /// The read view that `status`, `report` and `metrics` compute health
    /// from. A store whose attempt records are costly to read (NATS: 30
    /// days in a stream) may hand out only the recent ones here.
    fn health(&self) -> Result<Box<dyn health::Source + '_>>;

    /// [`Store::health`] with the attempt records from `since_ms` on (all:
    /// `None`), for a view that names its window (`report --since`) or
    /// counts every record (`metrics`). The default: [`Store::health`].
    fn health_since(&self, since_ms: Option<u64>) -> Result<Box<dyn health::Source + '_>> {
        let _ = since_ms;
        self.health()
    }

    /// For `report`'s header: where the jobs were read, when not this
    /// host's spool.
    fn shown_from(&self) -> Option<String>;

    /// `None` when `spec` has jobs here (or attempt records, when
    /// `records_count`); else what is missing and the known SPECs, to
    /// catch a typo.
    fn unknown_spec(&self, spec: &str, records_count: bool) -> Result<Option<Unknown>>;

    /// The jobs in `states` of one SPEC or of all, and quarantined files
    /// when `states` has [`State::Quarantine`].
    fn jobs(&self, spec: Option<&str>, states: &[State]) -> Result<Found>;

    /// Hands every attempt record of `spec` to `visit`, oldest first;
    /// returns what was skipped (lines, files) and where.
    fn records(&self, spec: &str, visit: &mut dyn FnMut(Record)) -> Result<(Skipped, String)>;

    /// The attempt records of `spec`, oldest first, to be pulled one at a
    /// time (a merge of many SPECs), and where they are. A backend that
    /// can read its records only whole holds them (the default).
    fn record_stream(&self, spec: &str) -> Result<(Box<dyn Pull + '_>, String)> {
        let mut records = Vec::new();
        let (skipped, place) = self.records(spec, &mut |r| records.push(r))?;
        Ok((Box::new(Held::new(records, skipped)), place))
    }

    /// Changes a subscription's shared state (breaker, pause) as every
    /// drain or worker sees it.
    fn update_circuit(
        &self,
        subscription: &str,
        change: &mut dyn FnMut(&mut Circuit) -> Option<Transition>,
    ) -> Result<(Option<Transition>, Circuit)>;

    /// Pending jobs of a subscription, across every SPEC.
    fn waiting(&self, subscription: &str) -> Result<usize>;

    /// Logs `records` (one per SPEC concerned, each naming its SPEC).
    fn log(&self, records: &[Record]) -> Result<()>;

    /// SPECs whose evidence should show a change of `subscription` (every
    /// SPEC with jobs).
    fn specs_with_jobs(&self) -> Result<Vec<String>>;

    /// Puts the jobs `pick` names back to be delivered, with their delivery
    /// id kept and attempts reset, each logged. An unknown id is an exit-2
    /// error and changes nothing.
    fn replay(&self, spec: &str, pick: &Pick, say: Say<'_>) -> Result<Replayed>;

    /// Delivers requeued jobs now and returns what became of them; `None`
    /// when others deliver them (the fleet's workers).
    fn deliver_now(
        &self,
        spec: &str,
        ids: std::collections::HashSet<String>,
        report: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Option<Summary>>;

    /// Deletes the dead jobs `pick` names, each logged.
    fn discard(&self, spec: &str, pick: &Pick, say: Say<'_>) -> Result<Discarded>;

    /// Runs the drain engine on this backend until done or stopped.
    fn drain(
        &self,
        options: Options,
        stop: Stop,
        report: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Summary>;

    /// Makes sure jobs that wait for `specs` get a drain (local: starts a
    /// background drain with `auto_drain`); returns warnings to show.
    fn hand_over(&self, specs: &[String]) -> Vec<String>;

    /// Where the jobs of `spec` live, for messages ("the spool of S", "stream P_DEAD").
    fn place(&self, spec: &str) -> String;

    /// What alert rules are evaluated on: the health view without attempt
    /// records (they play no part in a condition, and are most of what a
    /// snapshot costs to read).
    fn alert_source(&self) -> Result<Box<dyn health::Source + '_>> {
        Ok(Box::new(alerts::JobsOnly(self.health()?)))
    }

    /// The alert state every drain and `status` share (see `crate::alerts`),
    /// as stored; empty before the first evaluation.
    fn alert_state(&self) -> Result<AlertState>;

    /// Changes the alert state in one atomic step (the spool: under the
    /// state file's lock; NATS: compare-and-swap, so `change` may run again
    /// on a fresher state and must depend on nothing but it). Returns the
    /// state as stored after the change.
    fn update_alerts(&self, change: &mut dyn FnMut(&mut AlertState)) -> Result<AlertState>;

    /// Puts an alert job where the drains (or the fleet's workers) deliver
    /// it, once per delivery id: `false` when it was there already (that
    /// the server de-duplicated it, NATS does not tell).
    fn spool_alert(&self, alert: &AlertJob) -> Result<bool>;

    /// FIFO lanes held by a dead job (`fifo_on_dead = "hold"`), sorted;
    /// none where the backend keeps no such lanes.
    fn held_lanes(&self) -> Result<Vec<HeldLane>> {
        Ok(Vec::new())
    }

    /// News of changes as they happen, for a live view (`top`), where the
    /// backend can tell (this host's spool, through inotify); `None`, the
    /// default, and the view looks again every second.
    fn changes(&self) -> Option<Box<dyn Changes + '_>> {
        None
    }
}

/// What [`Store::changes`] returns.
pub trait Changes {
    /// Waits up to `timeout` for a change; true when something may have
    /// changed.
    fn wait(&self, timeout: Duration) -> bool;
}

/// The metrics exposition of every SPEC the store knows, and the snapshot
/// it came from.
pub fn metrics_of(store: &dyn Store, config: &crate::config::Config) -> Result<(String, Snapshot)> {
    let source = store.health_since(None)?;
    metrics::collect_from(&*source, config, clock::now_ms())
}

/// An operator's change of a subscription (pause, resume), one evidence
/// record per SPEC with jobs, so each SPEC's history shows when its
/// notifications were held back and why.
pub fn log_change(
    store: &dyn Store,
    config: &crate::config::Config,
    subscription: &str,
    outcome: Outcome,
    why: &str,
    now: u64,
) -> Result<()> {
    let url = config
        .subscription(subscription)
        .map(crate::config::Subscription::shown_url)
        .unwrap_or_default();
    let records: Vec<Record> = store
        .specs_with_jobs()?
        .into_iter()
        .map(|spec| Record {
            ts: clock::rfc3339(now),
            ts_ms: now,
            delivery_id: String::new(),
            spec,
            subscription: subscription.to_string(),
            event_type: String::new(),
            attempt: 0,
            url: url.clone(),
            status: None,
            error: Some(why.to_string()),
            latency_ms: None,
            outcome,
            response_body: None,
            next_attempt_at: None,
            request: None,
            trace_id: None,
            span_id: None,
        })
        .collect();
    store.log(&records)
}

/// Back to a fresh pending job with the same delivery id and envelope.
pub fn reset(meta: &mut Meta, now: u64) {
    meta.state = State::Pending;
    meta.attempts = 0;
    meta.next_attempt_at_ms = now;
    meta.dead_reason = None;
    meta.hint = None;
    meta.finished_at_ms = None;
    meta.replays += 1;
    // A replayed job is queued anew: its age for `max_age` starts now.
    meta.queued_at_ms = Some(now);
}

/// The evidence line of an operator's replay.
pub fn requeued_record(url: String, meta: &Meta, from: State, now: u64) -> Record {
    // No status: nothing answered this requeue (the last answer is in the
    // record of the attempt that got it).
    let mut record = Record::for_job(meta, url, 0, now, Outcome::Requeued);
    record.error = Some(format!(
        "requeued from {} by an operator (replay #{})",
        from.dir_name(),
        meta.replays
    ));
    record.next_attempt_at = Some(clock::rfc3339(now));
    record
}

/// The evidence line of an operator's discard.
pub fn discard_record(url: String, meta: &Meta) -> Record {
    Record::for_job(meta, url, 0, clock::now_ms(), Outcome::Discarded)
}

/// A job's URL as the evidence shows it (redacted): a per-call job carries
/// its own target; empty when its subscription is no longer configured.
pub fn job_url(config: &crate::config::Config, meta: &Meta) -> String {
    match &meta.target {
        Some(target) => crate::config::shown_per_call_url(&target.url),
        None => config
            .subscription(&meta.subscription)
            .map(crate::config::Subscription::shown_url)
            .unwrap_or_default(),
    }
}

/// How long a discard waits, in all, for settles in progress.
pub const SETTLE_WAIT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0b6f1c2e-3a4b-4c5d-8e9f-001122334455";
    const B: &str = "0b6f1c2e-ffff-4c5d-8e9f-001122334455";
    const C: &str = "9a8b7c6d-3a4b-4c5d-8e9f-001122334455";

    fn found() -> Vec<(String, String)> {
        [(A, "dead"), (B, "pending"), (C, "delivered")]
            .map(|(id, what)| (id.to_string(), what.to_string()))
            .to_vec()
    }

    fn one(given: &str) -> Result<Option<String>> {
        one_delivery_id(given, found(), "the spool of S")
    }

    #[test]
    fn a_unique_prefix_of_eight_or_more_hex_digits_names_one_delivery() {
        assert_eq!(one(A).unwrap().as_deref(), Some(A), "whole");
        assert_eq!(one("9a8b7c6d").unwrap().as_deref(), Some(C));
        assert_eq!(one("9A8B7C6D-3A").unwrap().as_deref(), Some(C), "any case");
        assert_eq!(
            one("9a8b7c6d3a4b").unwrap().as_deref(),
            Some(C),
            "no hyphen"
        );
        assert_eq!(one("0b6f1c2e-3").unwrap().as_deref(), Some(A));
        assert_eq!(one("12345678").unwrap(), None, "no such delivery");
        // A fragment from the middle names nothing.
        assert_eq!(one("3a4b4c5d").unwrap(), None);
    }

    #[test]
    fn an_ambiguous_prefix_lists_the_candidates_and_a_short_one_says_so() {
        let err = one("0b6f1c2e").unwrap_err();
        assert_eq!(crate::exit::code_for(&err), crate::exit::ExitCode::Usage);
        let text = err.to_string();
        assert!(
            text.contains("ambiguous in the spool of S")
                && text.contains(&format!("{A} (dead)"))
                && text.contains(&format!("{B} (pending)"))
                && !text.contains(C),
            "{text}"
        );
        for (short, says) in [
            ("0b6f1c2", "too short"),
            ("0b6f-1c2", "too short"),
            ("", "not a delivery id"),
            ("0b6f1c2x", "not a delivery id"),
            ("../../etc/passwd", "not a delivery id"),
        ] {
            let err = one(short).unwrap_err();
            assert_eq!(crate::exit::code_for(&err), crate::exit::ExitCode::Usage);
            assert!(err.to_string().contains(says), "{short}: {err}");
        }
        assert!(
            check_delivery_id(&format!("{A}0")).is_err(),
            "longer than an id"
        );
    }
}
