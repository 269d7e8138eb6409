//! Delivery metrics in the Prometheus text exposition format (version
//! 0.0.4), for node_exporter's textfile collector or any scraper: attempt
//! counters and a latency histogram from the attempt logs ([`Counters`] is
//! fed record by record), job gauges, queue age, circuit and health state
//! per subscription from a [`Snapshot`]. No sample carries a timestamp (the
//! textfile collector refuses them). Pure: the command writes the text.
//!
//! The counters count what the retained attempt logs hold: when the evidence
//! cap prunes an old log they drop, which Prometheus treats as a counter
//! reset.

use std::collections::BTreeMap;
use std::fmt::Write;

use anyhow::Result;

use crate::config::Config;
use crate::evidence::{Outcome, Record};
use crate::health::{self, Health, Snapshot, Source};

/// Upper bounds of the latency histogram's buckets, in seconds.
pub const BUCKETS: [f64; 10] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The outcomes of delivery attempts, always all exported (zeros included)
/// so that `rate()` and alerts see the series before the first failure.
const OUTCOMES: [Outcome; 4] = [
    Outcome::Delivered,
    Outcome::Retry,
    Outcome::Dead,
    Outcome::Paused,
];

const HEALTHS: [Health; 5] = [
    Health::Ok,
    Health::Degraded,
    Health::Failing,
    Health::CircuitOpen,
    Health::Paused,
];

/// Attempt counters and latency histogram of one subscription.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SubCounters {
    /// Attempts by outcome, in [`OUTCOMES`] order.
    pub outcomes: [u64; 4],
    /// Attempts with a latency at or below each bound of [`BUCKETS`] (not cumulative).
    pub buckets: [u64; BUCKETS.len()],
    /// Attempts with a latency above the last bound.
    pub over: u64,
    pub latency_sum_ms: u64,
    pub latency_count: u64,
}

/// Counters over the attempt logs, by subscription.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub by_subscription: BTreeMap<String, SubCounters>,
}

impl Counters {
    /// Counts a delivery attempt; other records (operator actions, circuit
    /// changes, tests, dry runs) are not attempts and are ignored.
    pub fn add(&mut self, record: &Record) {
        let Some(i) = OUTCOMES.iter().position(|o| *o == record.outcome) else {
            return;
        };
        let sub = match self.by_subscription.get_mut(&record.subscription) {
            Some(sub) => sub,
            None => self
                .by_subscription
                .entry(record.subscription.clone())
                .or_default(),
        };
        sub.outcomes[i] += 1;
        if let Some(ms) = record.latency_ms {
            sub.latency_sum_ms = sub.latency_sum_ms.saturating_add(ms);
            sub.latency_count += 1;
            let secs = ms as f64 / 1000.0;
            match BUCKETS.iter().position(|&le| secs <= le) {
                Some(b) => sub.buckets[b] += 1,
                None => sub.over += 1,
            }
        }
    }
}

/// One metric family: its HELP and TYPE lines, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A label value as the text format wants it: `\`, `"` and line feeds escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Reads every SPEC's spool and attempt logs at `now_ms` and renders the
/// exposition; the snapshot says what could not be read.
pub fn collect(config: &Config, now_ms: u64) -> Result<(String, Snapshot)> {
    collect_from(&health::Local::new(config), config, now_ms)
}

/// [`collect`] on any health source (every SPEC it holds).
pub fn collect_from(
    source: &dyn Source,
    config: &Config,
    now_ms: u64,
) -> Result<(String, Snapshot)> {
    let specs = source.specs()?;
    let mut counters = Counters::default();
    let snapshot = health::gather_from(source, config, &specs, None, now_ms, &mut |r| {
        counters.add(r)
    })?;
    Ok((render(&snapshot, &counters), snapshot))
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// The whole exposition: every family, subscriptions in the snapshot's order.
pub fn render(snapshot: &Snapshot, counters: &Counters) -> String {
    let mut out = String::new();
    let none = SubCounters::default();
    let subs: Vec<(&str, &SubCounters)> = snapshot
        .subscriptions
        .iter()
        .map(|s| {
            let c = counters
                .by_subscription
                .get(&s.subscription)
                .unwrap_or(&none);
            (s.subscription.as_str(), c)
        })
        .collect();

    let name = "spec_notify_attempts_total";
    let mut f = Family::new(
        &mut out,
        name,
        "counter",
        "Delivery attempts in the retained attempt logs, by subscription and outcome.",
    );
    for (sub, c) in &subs {
        for (o, n) in OUTCOMES.iter().zip(c.outcomes) {
            f.sample(name, &[("subscription", sub), ("outcome", o.name())], n);
        }
    }

    let total = |i: usize| subs.iter().map(|(_, c)| c.outcomes[i]).sum::<u64>();
    let name = "spec_notify_delivered_total";
    Family::new(
        &mut out,
        name,
        "counter",
        "Attempts that delivered a job (2xx), all subscriptions.",
    )
    .sample(name, &[], total(0));
    let name = "spec_notify_dead_lettered_total";
    Family::new(
        &mut out,
        name,
        "counter",
        "Attempts that dead-lettered a job, all subscriptions.",
    )
    .sample(name, &[], total(2));

    let name = "spec_notify_attempt_duration_seconds";
    let mut f = Family::new(
        &mut out,
        name,
        "histogram",
        "Latency of delivery attempts (request sent to answer or timeout).",
    );
    for (sub, c) in &subs {
        let mut cumulative = 0;
        for (le, n) in BUCKETS.iter().zip(c.buckets) {
            cumulative += n;
            let le = le.to_string();
            f.sample(
                &format!("{name}_bucket"),
                &[("subscription", sub), ("le", &le)],
                cumulative,
            );
        }
        f.sample(
            &format!("{name}_bucket"),
            &[("subscription", sub), ("le", "+Inf")],
            cumulative + c.over,
        );
        f.sample(
            &format!("{name}_sum"),
            &[("subscription", sub)],
            seconds(c.latency_sum_ms),
        );
        f.sample(
            &format!("{name}_count"),
            &[("subscription", sub)],
            c.latency_count,
        );
    }

    let name = "spec_notify_jobs";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "Jobs in the spool now, by subscription and state (delivered jobs are pruned by the evidence cap).",
    );
    for s in &snapshot.subscriptions {
        let c = &s.counts;
        for (state, n) in [
            ("pending", c.pending),
            ("active", c.active),
            ("delivered", c.delivered),
            ("dead", c.dead),
        ] {
            f.sample(
                name,
                &[("subscription", &s.subscription), ("state", state)],
                n,
            );
        }
    }

    let name = "spec_notify_oldest_pending_age_seconds";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "Age of the oldest job waiting in pending/ (0 when none waits).",
    );
    for s in &snapshot.subscriptions {
        let age = s
            .oldest_pending_ms
            .map_or(0, |t| snapshot.now_ms.saturating_sub(t));
        f.sample(name, &[("subscription", &s.subscription)], seconds(age));
    }

    let name = "spec_notify_last_success_timestamp_seconds";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "Unix time of the latest delivered attempt (absent before the first).",
    );
    for s in &snapshot.subscriptions {
        if let Some(t) = s.stats.last_success_ms {
            f.sample(name, &[("subscription", &s.subscription)], seconds(t));
        }
    }

    let name = "spec_notify_circuit_state";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "1 for the subscription's current gate: closed (sending), open (circuit breaker) or paused.",
    );
    for s in &snapshot.subscriptions {
        let now = if s.circuit.paused.is_some() {
            "paused"
        } else if s.circuit.is_open() {
            "open"
        } else {
            "closed"
        };
        for state in ["closed", "open", "paused"] {
            f.sample(
                name,
                &[("subscription", &s.subscription), ("state", state)],
                u8::from(state == now),
            );
        }
    }

    let name = "spec_notify_circuit_consecutive_failures";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "Retryable failures in a row, as the circuit breaker counts them.",
    );
    for s in &snapshot.subscriptions {
        f.sample(
            name,
            &[("subscription", &s.subscription)],
            s.circuit.consecutive_failures,
        );
    }

    let name = "spec_notify_health";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "1 for the subscription's health indicator (as in `spec-notify report`).",
    );
    for s in &snapshot.subscriptions {
        for h in HEALTHS {
            f.sample(
                name,
                &[("subscription", &s.subscription), ("health", h.name())],
                u8::from(h == s.health),
            );
        }
    }

    let dead: usize = snapshot.subscriptions.iter().map(|s| s.counts.dead).sum();
    let name = "spec_notify_dead_letters";
    Family::new(
        &mut out,
        name,
        "gauge",
        "Dead-lettered jobs waiting for replay or discard, all SPECs.",
    )
    .sample(name, &[], dead);

    let quarantined: usize = snapshot.specs.iter().map(|s| s.quarantined.len()).sum();
    let name = "spec_notify_quarantined_files";
    Family::new(
        &mut out,
        name,
        "gauge",
        "Spool files moved to quarantine (not readable as jobs), all SPECs.",
    )
    .sample(name, &[], quarantined);

    let name = "spec_notify_metrics_generated_timestamp_seconds";
    Family::new(
        &mut out,
        name,
        "gauge",
        "Unix time these metrics were computed (alert when it grows stale).",
    )
    .sample(name, &[], seconds(snapshot.now_ms));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{Counts, SubscriptionHealth};

    fn record(sub: &str, outcome: Outcome, latency_ms: Option<u64>) -> Record {
        Record {
            ts: String::new(),
            ts_ms: 0,
            delivery_id: "d".into(),
            spec: "S".into(),
            subscription: sub.into(),
            event_type: "a.b.c".into(),
            attempt: 1,
            url: String::new(),
            status: None,
            error: None,
            latency_ms,
            outcome,
            response_body: None,
            next_attempt_at: None,
            request: None,
            trace_id: None,
            span_id: None,
        }
    }

    fn sub(id: &str) -> SubscriptionHealth {
        SubscriptionHealth {
            subscription: id.into(),
            configured: true,
            counts: Counts {
                pending: 2,
                dead: 1,
                ..Counts::default()
            },
            stats: Default::default(),
            oldest_pending_ms: Some(1_000),
            oldest_due_ms: Some(1_000),
            circuit: Default::default(),
            health: Health::Degraded,
        }
    }

    #[test]
    fn counters_bucket_latencies_and_skip_what_is_not_an_attempt() {
        let mut c = Counters::default();
        c.add(&record("a", Outcome::Delivered, Some(20)));
        c.add(&record("a", Outcome::Delivered, Some(25)));
        c.add(&record("a", Outcome::Retry, Some(700)));
        c.add(&record("a", Outcome::Dead, Some(31_000)));
        c.add(&record("a", Outcome::Retry, None));
        c.add(&record("a", Outcome::Test, Some(1)));
        c.add(&record("a", Outcome::CircuitOpen, None));
        let a = &c.by_subscription["a"];
        assert_eq!(a.outcomes, [2, 2, 1, 0]);
        assert_eq!(a.buckets[0], 2, "25 ms is in the 0.025 s bucket");
        assert_eq!(a.buckets[5], 1, "700 ms is in the 1 s bucket");
        assert_eq!(a.over, 1);
        assert_eq!((a.latency_count, a.latency_sum_ms), (4, 31_745));
    }

    #[test]
    fn exposition_has_help_type_and_cumulative_buckets() {
        let mut c = Counters::default();
        c.add(&record("hook", Outcome::Delivered, Some(40)));
        c.add(&record("hook", Outcome::Retry, Some(3_000)));
        let snapshot = Snapshot {
            now_ms: 61_000,
            subscriptions: vec![sub("hook"), sub("quiet")],
            ..Snapshot::default()
        };
        let text = render(&snapshot, &c);
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(has("# TYPE spec_notify_attempts_total counter"), "{text}");
        assert!(has(
            r#"spec_notify_attempts_total{subscription="hook",outcome="retry"} 1"#
        ));
        assert!(has(
            r#"spec_notify_attempts_total{subscription="quiet",outcome="delivered"} 0"#
        ));
        assert!(has(
            r#"spec_notify_attempt_duration_seconds_bucket{subscription="hook",le="0.05"} 1"#
        ));
        assert!(has(
            r#"spec_notify_attempt_duration_seconds_bucket{subscription="hook",le="2.5"} 1"#
        ));
        assert!(has(
            r#"spec_notify_attempt_duration_seconds_bucket{subscription="hook",le="5"} 2"#
        ));
        assert!(has(
            r#"spec_notify_attempt_duration_seconds_bucket{subscription="hook",le="+Inf"} 2"#
        ));
        assert!(has(
            r#"spec_notify_attempt_duration_seconds_sum{subscription="hook"} 3.04"#
        ));
        assert!(has(
            r#"spec_notify_oldest_pending_age_seconds{subscription="hook"} 60"#
        ));
        assert!(has(
            r#"spec_notify_circuit_state{subscription="hook",state="closed"} 1"#
        ));
        assert!(has(
            r#"spec_notify_health{subscription="hook",health="degraded"} 1"#
        ));
        assert!(has("spec_notify_dead_letters 2"));
        assert!(has("spec_notify_delivered_total 1"));
        assert!(
            !text.contains("last_success_timestamp_seconds{"),
            "no success yet"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
