//! Delivery health arithmetic shared by `status`, `report` and `metrics`:
//! job counts per subscription, what the attempt log says (attempts,
//! success rate, nearest-rank latency percentiles, last success / failure,
//! whether the latest attempts all failed), the warning line for a
//! subscription in trouble, and its health indicator (ok, degraded,
//! failing, circuit open, paused). Pure: no I/O, time is a parameter.
//! [`gather`] reads the spool and the attempt logs into a [`Snapshot`];
//! [`gather_from`] reads any [`Source`] (see [`source`]); [`gate`] says what
//! holds a subscription's jobs (circuit, pause, unset secret, a stall).

pub mod gate;
mod gather;
pub mod source;

pub use gate::{Gate, gates};
pub use gather::{
    Snapshot, SpecHealth, SubHealth, SubscriptionHealth, all_specs, gather, gather_from,
};
pub use source::{Local, Source};

use std::collections::BTreeMap;

use serde::Serialize;

use crate::circuit::Circuit;
use crate::evidence::{Outcome, Record};
use crate::spool::State;

/// How many of the latest attempts must all have failed to call a
/// subscription failing (and raise `status`'s warning).
pub const RECENT: usize = 5;

/// Jobs of one subscription by folder.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pending: usize,
    pub active: usize,
    pub dead: usize,
    pub delivered: usize,
}

impl Counts {
    pub fn add(&mut self, state: State) {
        match state {
            State::Pending => self.pending += 1,
            State::Active => self.active += 1,
            State::Dead => self.dead += 1,
            State::Delivered => self.delivered += 1,
            State::Quarantine => {}
        }
    }

    /// Adds another subscription's (or SPEC's) counts to these.
    pub fn merge(&mut self, other: &Counts) {
        self.pending += other.pending;
        self.active += other.active;
        self.dead += other.dead;
        self.delivered += other.delivered;
    }
}

/// What the attempt log says about one subscription.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AttemptStats {
    pub attempts: usize,
    pub successes: usize,
    /// Latencies of the attempts that recorded one, sorted ascending.
    pub latencies_ms: Vec<u64>,
    pub last_success_ms: Option<u64>,
    pub last_failure_ms: Option<u64>,
    /// `HTTP 503` or the transport error of the latest failure.
    pub last_failure: Option<String>,
    /// How many of the latest (up to [`RECENT`]) attempts failed, of how many.
    pub recent_failed: usize,
    pub recent: usize,
}

impl AttemptStats {
    /// Successes over attempts, `None` before the first attempt.
    pub fn success_rate(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.successes as f64 / self.attempts as f64)
    }

    pub fn p50_ms(&self) -> Option<u64> {
        percentile(&self.latencies_ms, 50.0)
    }

    pub fn p95_ms(&self) -> Option<u64> {
        percentile(&self.latencies_ms, 95.0)
    }

    /// True when there were attempts lately and every one of them failed.
    pub fn failing(&self) -> bool {
        self.recent > 0 && self.recent_failed == self.recent
    }
}

/// Builds [`AttemptStats`] from attempts fed one at a time, in any order:
/// "latest" is by `ts_ms`, ties going to the one fed later (log order).
#[derive(Debug, Default, Clone)]
pub struct StatsBuilder {
    stats: AttemptStats,
    /// (ts_ms, feed order, failed) of the latest [`RECENT`] attempts.
    recent: Vec<(u64, u64, bool)>,
    fed: u64,
}

impl StatsBuilder {
    /// Counts `record` if it is a delivery attempt ([`Outcome::is_attempt`]);
    /// success is [`Outcome::Delivered`].
    pub fn add(&mut self, record: &Record) {
        if !record.outcome.is_attempt() {
            return;
        }
        self.fed += 1;
        let s = &mut self.stats;
        s.attempts += 1;
        let failed = record.outcome != Outcome::Delivered;
        if failed {
            if s.last_failure_ms.is_none_or(|t| record.ts_ms >= t) {
                s.last_failure_ms = Some(record.ts_ms);
                s.last_failure = Some(failure_text(record));
            }
        } else {
            s.successes += 1;
            s.last_success_ms = Some(
                s.last_success_ms
                    .map_or(record.ts_ms, |t| t.max(record.ts_ms)),
            );
        }
        s.latencies_ms.extend(record.latency_ms);
        self.recent.push((record.ts_ms, self.fed, failed));
        if self.recent.len() > RECENT
            && let Some(oldest) = (0..self.recent.len()).min_by_key(|&i| self.recent[i])
        {
            self.recent.swap_remove(oldest);
        }
    }

    pub fn finish(mut self) -> AttemptStats {
        self.stats.latencies_ms.sort_unstable();
        self.stats.recent = self.recent.len();
        self.stats.recent_failed = self.recent.iter().filter(|r| r.2).count();
        self.stats
    }
}

/// Nearest-rank percentile of an ascending slice: the smallest value with at
/// least `p` percent of the values at or below it. `None` for no values.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Groups delivery attempts ([`Outcome::is_attempt`]) by subscription.
/// Success is [`Outcome::Delivered`]; operator actions, tests and dry runs
/// are ignored. Records may come in any order; ties keep log order.
pub fn attempt_stats<'a>(
    records: impl IntoIterator<Item = &'a Record>,
) -> BTreeMap<String, AttemptStats> {
    let mut by_sub: BTreeMap<String, StatsBuilder> = BTreeMap::new();
    for record in records.into_iter().filter(|r| r.outcome.is_attempt()) {
        by_sub
            .entry(record.subscription.clone())
            .or_default()
            .add(record);
    }
    by_sub.into_iter().map(|(s, b)| (s, b.finish())).collect()
}

/// What a failed attempt ran into: `HTTP 503`, or the transport error.
pub fn failure_text(record: &Record) -> String {
    match (record.status, record.error.as_deref()) {
        (Some(status), _) => format!("HTTP {status}"),
        (None, Some(error)) => error.to_string(),
        (None, None) => "failed".into(),
    }
}

/// The warning line for a subscription of a SPEC, if it has dead-letters or
/// its recent attempts all failed.
pub fn warning(spec: &str, sub: &str, counts: &Counts, stats: &AttemptStats) -> Option<String> {
    let mut parts = Vec::new();
    if counts.dead > 0 {
        let noun = if counts.dead == 1 {
            "dead-letter"
        } else {
            "dead-letters"
        };
        parts.push(format!(
            "{} {noun} (see `spec-notify list {spec} --state dead --subscription {sub}`, then replay or discard)",
            counts.dead
        ));
    }
    if stats.failing() {
        parts.push(format!(
            "the last {} attempts all failed (latest: {})",
            stats.recent,
            stats.last_failure.as_deref().unwrap_or("failed")
        ));
    }
    (!parts.is_empty()).then(|| format!("{sub}: {}", parts.join("; ")))
}

/// A subscription's health at a glance, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// Paused by an operator or by the endpoint (410): nothing goes out.
    Paused,
    /// The circuit breaker is open: jobs wait for the probe.
    CircuitOpen,
    /// The latest attempts (up to [`RECENT`]) all failed.
    Failing,
    /// Dead-letters wait, or some of the latest attempts failed.
    Degraded,
    /// Nothing to worry about (including: nothing sent yet).
    Ok,
}

impl Health {
    /// Pause first, then the circuit, then the attempts and dead-letters.
    pub fn of(counts: &Counts, stats: &AttemptStats, circuit: &Circuit) -> Health {
        if circuit.paused.is_some() {
            Health::Paused
        } else if circuit.is_open() {
            Health::CircuitOpen
        } else if stats.failing() {
            Health::Failing
        } else if counts.dead > 0 || stats.recent_failed > 0 {
            Health::Degraded
        } else {
            Health::Ok
        }
    }

    /// The word people read (never colour alone).
    pub fn label(self) -> &'static str {
        match self {
            Health::Paused => "paused",
            Health::CircuitOpen => "circuit open",
            Health::Failing => "failing",
            Health::Degraded => "degraded",
            Health::Ok => "ok",
        }
    }

    /// A one-word name for CSS classes and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Health::Paused => "paused",
            Health::CircuitOpen => "circuit-open",
            Health::Failing => "failing",
            Health::Degraded => "degraded",
            Health::Ok => "ok",
        }
    }

    /// Why, in a few words, for the report's tooltip and table.
    pub fn explain(self) -> &'static str {
        match self {
            Health::Paused => "nothing is sent until `spec-notify resume`",
            Health::CircuitOpen => {
                "too many failures in a row; one probe job goes out after the cool-down"
            }
            Health::Failing => "the latest attempts all failed",
            Health::Degraded => "dead-letters wait, or some recent attempts failed",
            Health::Ok => "recent attempts succeeded (or nothing was sent yet)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::{BreakerPolicy, Signal};

    fn attempt(
        sub: &str,
        ts_ms: u64,
        outcome: Outcome,
        status: Option<u16>,
        latency: Option<u64>,
    ) -> Record {
        Record {
            ts: crate::clock::rfc3339(ts_ms),
            ts_ms,
            delivery_id: format!("id-{ts_ms}"),
            spec: "S".into(),
            subscription: sub.into(),
            event_type: "a.b.c".into(),
            attempt: 1,
            url: "https://x/".into(),
            status,
            error: status.is_none().then(|| "connection refused".to_string()),
            latency_ms: latency,
            outcome,
            response_body: None,
            next_attempt_at: None,
            request: None,
            trace_id: None,
            span_id: None,
        }
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 95.0), Some(95));
        assert_eq!(percentile(&[7], 95.0), Some(7));
        assert_eq!(percentile(&[10, 20, 30, 40], 50.0), Some(20));
        assert_eq!(percentile(&[10, 20, 30, 40], 95.0), Some(40));
        assert_eq!(percentile(&[10, 20], 0.0), Some(10));
        assert_eq!(percentile(&[10, 20], 100.0), Some(20));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn only_attempts_count_and_success_is_delivered() {
        let records = vec![
            attempt("a", 1, Outcome::Retry, Some(503), Some(40)),
            attempt("a", 2, Outcome::Delivered, Some(200), Some(10)),
            attempt("a", 3, Outcome::Delivered, Some(204), Some(20)),
            attempt("a", 4, Outcome::Dead, None, None),
            attempt("a", 5, Outcome::Discarded, None, None),
            attempt("a", 6, Outcome::Test, Some(200), Some(1)),
            attempt("a", 7, Outcome::DryRun, None, None),
            attempt("a", 8, Outcome::CircuitOpen, None, None),
            attempt("b", 9, Outcome::Requeued, None, None),
        ];
        let stats = attempt_stats(&records);
        assert_eq!(stats.keys().collect::<Vec<_>>(), ["a"], "b made no attempt");
        let a = &stats["a"];
        assert_eq!((a.attempts, a.successes), (4, 2));
        assert_eq!(a.success_rate(), Some(0.5));
        assert_eq!(a.latencies_ms, [10, 20, 40]);
        assert_eq!((a.p50_ms(), a.p95_ms()), (Some(20), Some(40)));
        assert_eq!(a.last_success_ms, Some(3));
        assert_eq!(a.last_failure_ms, Some(4));
        assert_eq!(a.last_failure.as_deref(), Some("connection refused"));
        assert_eq!((a.recent, a.recent_failed), (4, 2));
        assert!(!a.failing());
    }

    #[test]
    fn last_five_failures_warn_and_order_comes_from_time() {
        // Out of log order on purpose: the success is the oldest attempt.
        let mut records: Vec<Record> = (2..=6)
            .map(|t| attempt("a", t, Outcome::Retry, Some(500), Some(5)))
            .collect();
        records.push(attempt("a", 1, Outcome::Delivered, Some(200), Some(5)));
        let stats = attempt_stats(&records);
        let a = &stats["a"];
        assert_eq!((a.recent, a.recent_failed), (5, 5));
        assert!(a.failing());
        assert_eq!(a.last_failure.as_deref(), Some("HTTP 500"));
        assert_eq!(a.last_success_ms, Some(1));
        let line = warning("S", "a", &Counts::default(), a).unwrap();
        assert_eq!(line, "a: the last 5 attempts all failed (latest: HTTP 500)");

        records.push(attempt("a", 7, Outcome::Delivered, Some(200), Some(5)));
        let a = &attempt_stats(&records)["a"];
        assert!(!a.failing(), "a success among the last five clears it");
        assert_eq!(warning("S", "a", &Counts::default(), a), None);
    }

    #[test]
    fn a_late_line_for_an_old_attempt_is_not_the_latest() {
        // Two drains append concurrently: the log order is not time order.
        let records = vec![
            attempt("a", 10, Outcome::Retry, Some(502), None),
            attempt("a", 5, Outcome::Retry, Some(500), None),
            attempt("a", 10, Outcome::Retry, Some(503), None),
        ];
        let a = &attempt_stats(&records)["a"];
        assert_eq!(a.last_failure_ms, Some(10));
        assert_eq!(
            a.last_failure.as_deref(),
            Some("HTTP 503"),
            "a tie goes to the later line"
        );
    }

    #[test]
    fn dead_letters_warn_even_without_attempts() {
        let counts = Counts {
            dead: 2,
            ..Counts::default()
        };
        let line = warning("S-1", "hook", &counts, &AttemptStats::default()).unwrap();
        assert!(line.starts_with("hook: 2 dead-letters"), "{line}");
        assert!(line.contains("spec-notify list S-1 --state dead --subscription hook"));
        assert_eq!(AttemptStats::default().success_rate(), None);
    }

    #[test]
    fn counts_add_and_merge() {
        let mut a = Counts::default();
        for state in [
            State::Pending,
            State::Pending,
            State::Dead,
            State::Quarantine,
        ] {
            a.add(state);
        }
        let mut b = Counts {
            delivered: 3,
            active: 1,
            ..Counts::default()
        };
        b.merge(&a);
        assert_eq!(
            b,
            Counts {
                pending: 2,
                active: 1,
                dead: 1,
                delivered: 3
            }
        );
    }

    #[test]
    fn health_puts_pause_before_circuit_before_failures_before_dead_letters() {
        let failing = attempt_stats(
            &(1..=5)
                .map(|t| attempt("a", t, Outcome::Retry, Some(500), None))
                .collect::<Vec<_>>(),
        )
        .remove("a")
        .unwrap();
        let mixed = attempt_stats(&[
            attempt("a", 1, Outcome::Retry, Some(500), None),
            attempt("a", 2, Outcome::Delivered, Some(200), None),
        ])
        .remove("a")
        .unwrap();
        let good = attempt_stats(&[attempt("a", 1, Outcome::Delivered, Some(200), None)])
            .remove("a")
            .unwrap();
        let none = Counts::default();
        let dead = Counts {
            dead: 1,
            ..Counts::default()
        };
        let closed = Circuit::default();
        let mut open = Circuit::default();
        let fail = Signal::Failed {
            error: "HTTP 500".into(),
            retry_after_ms: None,
        };
        for _ in 0..5 {
            open.record(&fail, false, &BreakerPolicy::default(), 1);
        }
        assert!(open.is_open());
        let mut paused = open.clone();
        paused.pause("outage", "operator", 2);

        assert_eq!(Health::of(&none, &good, &closed), Health::Ok);
        assert_eq!(
            Health::of(&none, &AttemptStats::default(), &closed),
            Health::Ok
        );
        assert_eq!(Health::of(&dead, &good, &closed), Health::Degraded);
        assert_eq!(Health::of(&none, &mixed, &closed), Health::Degraded);
        assert_eq!(Health::of(&dead, &failing, &closed), Health::Failing);
        assert_eq!(Health::of(&none, &good, &open), Health::CircuitOpen);
        assert_eq!(Health::of(&none, &failing, &paused), Health::Paused);
        assert!(Health::Paused < Health::Ok, "worst sorts first");
        assert_eq!(Health::CircuitOpen.label(), "circuit open");
        assert_eq!(Health::CircuitOpen.name(), "circuit-open");
    }
}
