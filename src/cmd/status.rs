//! `spec-notify status`: delivery health per SPEC and subscription — job
//! counts from the spool, success rate, latency percentiles and the last
//! success / failure from the attempt log, and one warning line per
//! subscription in trouble. Exits 1 while any dead-letter exists, so a status
//! script or TUI can raise a banner. The arithmetic is in [`attempt_stats`]
//! and [`percentile`], pure functions with unit tests.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};

use anyhow::{Context, Result};
use serde::Serialize;

use super::Ctx;
use crate::cli::StatusArgs;
use crate::clock;
use crate::config::Config;
use crate::evidence::{Outcome, Record};
use crate::exit::ExitCode;
use crate::output;
use crate::spool::{Spool, State};

/// How many of the latest attempts must all have failed to raise a warning.
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
    fn add(&mut self, state: State) {
        match state {
            State::Pending => self.pending += 1,
            State::Active => self.active += 1,
            State::Dead => self.dead += 1,
            State::Delivered => self.delivered += 1,
            State::Quarantine => {}
        }
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
    let mut by_sub: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for record in records.into_iter().filter(|r| r.outcome.is_attempt()) {
        by_sub.entry(&record.subscription).or_default().push(record);
    }
    by_sub
        .into_iter()
        .map(|(sub, mut records)| {
            records.sort_by_key(|r| r.ts_ms);
            (sub.to_string(), stats_of(&records))
        })
        .collect()
}

fn stats_of(records: &[&Record]) -> AttemptStats {
    let mut stats = AttemptStats {
        attempts: records.len(),
        ..AttemptStats::default()
    };
    for record in records {
        if record.outcome == Outcome::Delivered {
            stats.successes += 1;
            stats.last_success_ms = Some(record.ts_ms);
        } else {
            stats.last_failure_ms = Some(record.ts_ms);
            stats.last_failure = Some(failure_text(record));
        }
        stats.latencies_ms.extend(record.latency_ms);
    }
    stats.latencies_ms.sort_unstable();
    let recent = &records[records.len().saturating_sub(RECENT)..];
    stats.recent = recent.len();
    stats.recent_failed = recent
        .iter()
        .filter(|r| r.outcome != Outcome::Delivered)
        .count();
    stats
}

fn failure_text(record: &Record) -> String {
    match (record.status, record.error.as_deref()) {
        (Some(status), _) => format!("HTTP {status}"),
        (None, Some(error)) => error.to_string(),
        (None, None) => "failed".into(),
    }
}

/// The warning line for a subscription, if it has dead-letters or its
/// recent attempts all failed.
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

/// One subscription's line of the report.
#[derive(Debug)]
struct SubStatus {
    subscription: String,
    counts: Counts,
    stats: AttemptStats,
    warning: Option<String>,
}

#[derive(Debug)]
struct SpecStatus {
    spec: String,
    subscriptions: Vec<SubStatus>,
    quarantined: usize,
}

pub fn run(ctx: &Ctx, args: &StatusArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    let specs = match &args.spec {
        Some(spec) => {
            super::require_spec(&config, spec, true)?;
            vec![spec.clone()]
        }
        None => all_specs(&config)?,
    };
    let report = specs
        .iter()
        .map(|spec| spec_status(&config, spec))
        .collect::<Result<Vec<_>>>()?;
    let dead: usize = report
        .iter()
        .flat_map(|s| &s.subscriptions)
        .map(|s| s.counts.dead)
        .sum();
    let gates = gates(&config, &report)?;
    let blocked = gates.iter().filter(|g| g.needs_attention()).count();
    if args.json {
        let mut json = report_json(&report, dead);
        json["subscriptions"] = gates.iter().map(Gate::json).collect();
        output::print_json(&json)?;
    } else {
        print_report(&report, dead)?;
        print_gates(&gates)?;
    }
    Ok(if dead > 0 || blocked > 0 {
        ExitCode::Failure
    } else {
        ExitCode::Success
    })
}

/// What lets a subscription's jobs go out, or holds them: its circuit, a
/// pause, an unset secret.
struct Gate {
    id: String,
    circuit: crate::circuit::Circuit,
    /// The secret's problem, when the subscription needs one and it is unset.
    secret_problem: Option<String>,
    /// Pending jobs of this subscription across the SPECs shown.
    waiting: usize,
}

impl Gate {
    fn state(&self) -> &'static str {
        if self.circuit.paused.is_some() {
            "paused"
        } else if self.circuit.is_open() {
            "open"
        } else {
            "closed"
        }
    }

    /// An open circuit or a pause makes `status` exit 1; an unset secret
    /// is a warning (emit already warned, and the jobs are safe).
    fn needs_attention(&self) -> bool {
        self.state() != "closed"
    }

    fn json(&self) -> serde_json::Value {
        let c = &self.circuit;
        serde_json::json!({
            "subscription": self.id,
            "circuit": self.state(),
            "detail": c.describe(clock::rfc3339),
            "consecutive_failures": c.consecutive_failures,
            "opened_at": c.opened_at_ms.map(clock::rfc3339),
            "next_probe_at": c.next_probe_at_ms.map(clock::rfc3339),
            "paused_reason": c.paused.as_ref().map(|p| p.reason.clone()),
            "paused_by": c.paused.as_ref().map(|p| p.by.clone()),
            "secret_unset": self.secret_problem,
            "waiting": self.waiting,
        })
    }
}

fn gates(config: &Config, report: &[SpecStatus]) -> Result<Vec<Gate>> {
    let spool = Spool::new(&config.spool_dir);
    config
        .subscriptions
        .iter()
        .map(|sub| {
            let waiting = report
                .iter()
                .flat_map(|s| &s.subscriptions)
                .filter(|s| s.subscription == sub.id)
                .map(|s| s.counts.pending)
                .sum();
            let secret_problem = match (sub.needs_secret(), sub.secret()) {
                (true, Err(problem)) => Some(problem),
                _ => None,
            };
            Ok(Gate {
                id: sub.id.clone(),
                circuit: spool.circuit(&sub.id)?,
                secret_problem,
                waiting,
            })
        })
        .collect()
}

fn print_gates(gates: &[Gate]) -> Result<()> {
    let mut out = BufWriter::new(io::stdout().lock());
    if gates.iter().any(|g| g.state() != "closed") {
        writeln!(out)?;
        let rows: Vec<Vec<String>> = gates
            .iter()
            .map(|g| {
                vec![
                    g.id.clone(),
                    g.state().to_string(),
                    g.waiting.to_string(),
                    g.circuit.describe(clock::rfc3339),
                ]
            })
            .collect();
        output::table(
            &mut out,
            &["SUBSCRIPTION", "CIRCUIT", "WAITING", "DETAIL"],
            &rows,
        )?;
    }
    for g in gates {
        let warn = output::paint("warning:", "33");
        match g.state() {
            "paused" => writeln!(
                out,
                "{warn} {} is {}; its {} job(s) wait: `spec-notify resume {}` sends them",
                g.id,
                g.circuit.describe(clock::rfc3339),
                g.waiting,
                g.id
            )?,
            "open" => writeln!(
                out,
                "{warn} {}: circuit {} after {} failures in a row ({}); {} job(s) wait without using attempts",
                g.id,
                g.circuit.describe(clock::rfc3339),
                g.circuit.consecutive_failures,
                g.circuit.last_error.as_deref().unwrap_or("no answer"),
                g.waiting
            )?,
            _ => {}
        }
        if let (Some(problem), true) = (&g.secret_problem, g.waiting > 0) {
            writeln!(
                out,
                "{warn} {problem}: its {} job(s) wait in pending",
                g.waiting
            )?;
        }
    }
    out.flush().context("failed to write to stdout")
}

/// SPECs with a spool folder or a webhook evidence folder, sorted.
fn all_specs(config: &Config) -> Result<Vec<String>> {
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

fn spec_status(config: &Config, spec: &str) -> Result<SpecStatus> {
    let spool = Spool::new(&config.spool_dir).spec(spec);
    let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
    for state in State::JOBS {
        let scan = spool.scan(state)?;
        super::warn_unreadable(&scan.unreadable);
        for entry in scan.entries {
            counts
                .entry(entry.meta.subscription)
                .or_default()
                .add(state);
        }
    }
    let evidence = super::evidence(config, spec);
    let (records, skipped) = evidence.read_all()?;
    super::warn_unparseable(skipped, evidence.dir());
    let mut stats = attempt_stats(&records);
    let mut names: Vec<String> = counts.keys().chain(stats.keys()).cloned().collect();
    names.sort();
    names.dedup();
    let subscriptions = names
        .into_iter()
        .map(|sub| {
            let counts = counts.get(&sub).copied().unwrap_or_default();
            let stats = stats.remove(&sub).unwrap_or_default();
            let warning = warning(spec, &sub, &counts, &stats);
            SubStatus {
                subscription: sub,
                counts,
                stats,
                warning,
            }
        })
        .collect();
    Ok(SpecStatus {
        spec: spec.to_string(),
        subscriptions,
        quarantined: spool.quarantined()?.len(),
    })
}

fn report_json(report: &[SpecStatus], dead: usize) -> serde_json::Value {
    let specs: Vec<serde_json::Value> = report
        .iter()
        .map(|spec| {
            let subs: Vec<serde_json::Value> = spec
                .subscriptions
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "subscription": s.subscription,
                        "pending": s.counts.pending,
                        "active": s.counts.active,
                        "dead": s.counts.dead,
                        "delivered": s.counts.delivered,
                        "attempts": s.stats.attempts,
                        "successes": s.stats.successes,
                        "success_rate": s.stats.success_rate(),
                        "latency_p50_ms": s.stats.p50_ms(),
                        "latency_p95_ms": s.stats.p95_ms(),
                        "last_success_at": s.stats.last_success_ms.map(clock::rfc3339),
                        "last_failure_at": s.stats.last_failure_ms.map(clock::rfc3339),
                        "last_failure": s.stats.last_failure,
                        "warning": s.warning,
                    })
                })
                .collect();
            serde_json::json!({
                "spec": spec.spec,
                "quarantined": spec.quarantined,
                "subscriptions": subs,
            })
        })
        .collect();
    serde_json::json!({ "dead_letters": dead, "specs": specs })
}

fn print_report(report: &[SpecStatus], dead: usize) -> Result<()> {
    let mut out = BufWriter::new(io::stdout().lock());
    if report.is_empty() {
        writeln!(out, "no SPECs yet: nothing has been emitted")?;
    }
    let now = clock::now_ms();
    for (i, spec) in report.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(out, "{}", output::paint(&spec.spec, "1"))?;
        if spec.subscriptions.is_empty() {
            writeln!(out, "no jobs and no attempts yet")?;
        } else {
            let rows: Vec<Vec<String>> = spec.subscriptions.iter().map(|s| row(s, now)).collect();
            output::table(
                &mut out,
                &[
                    "SUBSCRIPTION",
                    "PENDING",
                    "ACTIVE",
                    "DEAD",
                    "DELIVERED",
                    "SUCCESS",
                    "P50",
                    "P95",
                    "LAST SUCCESS",
                    "LAST FAILURE",
                ],
                &rows,
            )?;
        }
        for warning in spec.subscriptions.iter().filter_map(|s| s.warning.as_ref()) {
            writeln!(out, "{} {warning}", output::paint("warning:", "33"))?;
        }
        if spec.quarantined > 0 {
            writeln!(
                out,
                "{} {} file(s) in quarantine (see `spec-notify list {} --state quarantine`)",
                output::paint("warning:", "33"),
                spec.quarantined,
                spec.spec
            )?;
        }
    }
    if dead > 0 {
        writeln!(
            out,
            "\n{}",
            output::paint(&format!("{dead} dead-letter(s) need attention"), "31")
        )?;
    }
    out.flush().context("failed to write to stdout")
}

fn row(s: &SubStatus, now: u64) -> Vec<String> {
    let st = &s.stats;
    let success = st.success_rate().map_or("-".to_string(), |r| {
        format!("{:.0}% ({}/{})", r * 100.0, st.successes, st.attempts)
    });
    let ago =
        |ms: Option<u64>| ms.map_or("-".to_string(), |t| format!("{} ago", clock::age(now, t)));
    let last_failure = match (&st.last_failure, st.last_failure_ms) {
        (Some(what), Some(_)) => format!("{} ({what})", ago(st.last_failure_ms)),
        _ => "-".into(),
    };
    vec![
        s.subscription.clone(),
        s.counts.pending.to_string(),
        s.counts.active.to_string(),
        s.counts.dead.to_string(),
        s.counts.delivered.to_string(),
        success,
        latency(st.p50_ms()),
        latency(st.p95_ms()),
        ago(st.last_success_ms),
        last_failure,
    ]
}

fn latency(ms: Option<u64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 1000 => format!("{ms}ms"),
        Some(ms) => format!("{:.1}s", ms as f64 / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(
        sub: &str,
        ts_ms: u64,
        outcome: Outcome,
        status: Option<u16>,
        latency: Option<u64>,
    ) -> Record {
        Record {
            ts: clock::rfc3339(ts_ms),
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
            attempt("b", 8, Outcome::Requeued, None, None),
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
        let line = warning("S", "a", &Counts::default(), a).unwrap();
        assert_eq!(line, "a: the last 5 attempts all failed (latest: HTTP 500)");

        records.push(attempt("a", 7, Outcome::Delivered, Some(200), Some(5)));
        let a = &attempt_stats(&records)["a"];
        assert!(!a.failing(), "a success among the last five clears it");
        assert_eq!(warning("S", "a", &Counts::default(), a), None);
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
    fn latency_is_short() {
        assert_eq!(latency(Some(999)), "999ms");
        assert_eq!(latency(Some(1500)), "1.5s");
        assert_eq!(latency(None), "-");
    }
}
