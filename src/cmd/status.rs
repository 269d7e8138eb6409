//! `spec-notify status`: delivery health per SPEC and subscription — job
//! counts from the store (this host's spool, or NATS with `--source nats`), success rate, latency percentiles and the last
//! success / failure from the attempt log, and one warning line per
//! subscription in trouble. Exits 1 while any dead-letter exists, a file
//! sits in quarantine or cannot be read as a job, a circuit is open or a
//! subscription is paused, or jobs have been due for `--stalled-after`
//! with nothing attempted (no drain or worker runs), or an alert fires, so
//! a status script or TUI can raise a banner. With alert rules it
//! evaluates them too (`crate::alerts`), blind to unset secrets: this
//! environment need not be the drain's.
//! The arithmetic is `crate::health`'s (shared with `report` and
//! `metrics`); this file only chooses the SPECs and prints.

use std::io::{self, BufWriter, Write};

use anyhow::{Context, Result};

use super::Ctx;
use crate::alerts::{Firing, message};
use crate::cli::StatusArgs;
use crate::clock;
use crate::config::Config;
use crate::exit::ExitCode;
use crate::health::{self, Gate, Snapshot, SpecHealth, SubHealth};
use crate::output;
use crate::store::HeldLane;

pub fn run(ctx: &Ctx, args: &StatusArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    let store = super::open_store(ctx, &config, args.source, "status")?;
    let source = store.health()?;
    let specs = match &args.spec {
        Some(spec) => {
            super::note_if_unknown_spec(&*store, spec, true)?;
            vec![spec.clone()]
        }
        None => source.specs()?,
    };
    let snapshot = health::gather_from(
        &*source,
        &config,
        &specs,
        None,
        clock::now_ms(),
        &mut |_| {},
    )?;
    super::warn_snapshot(&snapshot);
    let dead: usize = snapshot
        .specs
        .iter()
        .flat_map(|s| &s.subscriptions)
        .map(|s| s.counts.dead)
        .sum();
    let gates = health::gates(&config, &snapshot, args.stalled_after, store.flag());
    let blocked = gates.iter().filter(|g| g.needs_attention()).count();
    // Files that are not jobs hide what they held: they need a person too.
    let quarantined: usize = snapshot.specs.iter().map(|s| s.quarantined.len()).sum();
    let unreadable = snapshot.unreadable.len();
    let firing = alerts(&*store, &config, args.spec.is_none().then_some(&snapshot));
    let held: Vec<HeldLane> = store
        .held_lanes()?
        .into_iter()
        .filter(|h| args.spec.as_ref().is_none_or(|s| *s == h.spec))
        .collect();
    if args.json {
        let mut json = report_json(&snapshot.specs, dead);
        json["source"] = store.name().into();
        json["unreadable"] = unreadable.into();
        json["subscriptions"] = gates.iter().map(gate_json).collect();
        json["held_lanes"] = held
            .iter()
            .map(|h| {
                serde_json::json!({
                    "subscription": h.subscription,
                    "spec": h.spec,
                    "delivery_id": h.delivery_id,
                })
            })
            .collect();
        if !config.alerts.is_empty() {
            json["alerts"] = firing.iter().map(message::firing_json).collect();
        }
        output::print_json(&json)?;
    } else {
        if let Some(from) = store.shown_from() {
            println!("{from}");
        }
        print_report(&snapshot.specs, dead, snapshot.now_ms, source.flag())?;
        print_unreadable(unreadable)?;
        print_gates(&gates)?;
        print_held(&held, store.flag())?;
        print_alerts(&firing, snapshot.now_ms)?;
    }
    let alerting = !firing.is_empty();
    Ok(
        if dead > 0
            || blocked > 0
            || quarantined > 0
            || unreadable > 0
            || alerting
            || !held.is_empty()
        {
            ExitCode::Failure
        } else {
            ExitCode::Success
        },
    )
}

/// A subscription's gate as `status --json` shows it.
fn gate_json(g: &Gate) -> serde_json::Value {
    let c = &g.circuit;
    serde_json::json!({
        "subscription": g.id,
        "circuit": g.state(),
        "detail": c.describe_at(clock::now_ms(), clock::rfc3339),
        "consecutive_failures": c.consecutive_failures,
        "opened_at": c.opened_at_ms.map(clock::rfc3339),
        "next_probe_at": c.next_probe_at_ms.map(clock::rfc3339),
        "paused_reason": c.paused.as_ref().map(|p| p.reason.clone()),
        "paused_by": c.paused.as_ref().map(|p| p.by.clone()),
        "secret_unset": g.secret_problem,
        "waiting": g.waiting,
        "stalled": g.stalled,
        "health": g.health.name(),
    })
}

/// Evaluates the alert rules (on `snapshot` when it holds every SPEC) and
/// returns the alerts firing now; the jobs of new notifications go to a
/// drain. Nothing without rules; a failure is a warning.
fn alerts(
    store: &dyn crate::store::Store,
    config: &Config,
    snapshot: Option<&Snapshot>,
) -> Vec<Firing> {
    if config.alerts.is_empty() {
        return Vec::new();
    }
    let Some(evaluated) = super::evaluate_alerts(store, config, false, snapshot, &mut |_| false)
    else {
        return Vec::new();
    };
    if !evaluated.spooled.is_empty() {
        super::hand_over(store, &[crate::config::ALERTS_SPEC.to_string()]);
    }
    let rules: Vec<String> = config.alerts.iter().map(|r| r.id.clone()).collect();
    evaluated.state.firing_for(&rules).cloned().collect()
}

fn print_alerts(firing: &[Firing], now: u64) -> Result<()> {
    let mut out = BufWriter::new(io::stdout().lock());
    for f in firing {
        writeln!(
            out,
            "{} alert firing for {} (rule {}): {}; fix: `{}`",
            output::paint("warning:", "33"),
            clock::age(now, f.since_ms),
            f.rule,
            output::one_line(&f.detail.summary),
            output::one_line(&f.detail.command)
        )?;
    }
    out.flush().context("failed to write to stdout")
}

/// The count of spool files that could not be read as jobs (each is named
/// on stderr): the job counts above cannot include them.
fn print_unreadable(unreadable: usize) -> Result<()> {
    if unreadable > 0 {
        let mut out = io::stdout().lock();
        writeln!(
            out,
            "{} {unreadable} spool file(s) cannot be read as jobs and are not counted above (named on stderr); the next drain quarantines them",
            output::paint("warning:", "33"),
        )?;
    }
    Ok(())
}

/// FIFO lanes held by a dead job, and what frees them.
fn print_held(held: &[HeldLane], flag: &str) -> Result<()> {
    let mut out = BufWriter::new(io::stdout().lock());
    for h in held {
        writeln!(
            out,
            "{} FIFO lane {} of {} is held by dead job {}: nothing after it is sent until `spec-notify replay {} --delivery-id {}{flag}` (it goes out first) or `spec-notify discard {} --delivery-id {}{flag}`",
            output::paint("warning:", "33"),
            h.subscription,
            h.spec,
            h.delivery_id,
            h.spec,
            h.delivery_id,
            h.spec,
            h.delivery_id,
        )?;
    }
    Ok(())
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
                    g.circuit.describe_at(clock::now_ms(), clock::rfc3339),
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
                output::one_line(&g.circuit.describe_at(clock::now_ms(), clock::rfc3339)),
                g.waiting,
                g.id
            )?,
            "open" => writeln!(
                out,
                "{warn} {}: circuit {} after {} failures in a row ({}); {} job(s) wait without using attempts",
                g.id,
                output::one_line(&g.circuit.describe_at(clock::now_ms(), clock::rfc3339)),
                g.circuit.consecutive_failures,
                output::one_line(g.circuit.last_error.as_deref().unwrap_or("no answer")),
                g.waiting
            )?,
            _ => {}
        }
        if let Some(stalled) = &g.stalled {
            writeln!(out, "{warn} stalled: {}", output::one_line(stalled))?;
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

fn report_json(report: &[SpecHealth], dead: usize) -> serde_json::Value {
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
                        "warning": health::warning(&spec.spec, &s.subscription, &s.counts, &s.stats),
                    })
                })
                .collect();
            serde_json::json!({
                "spec": spec.spec,
                "quarantined": spec.quarantined.len(),
                "subscriptions": subs,
            })
        })
        .collect();
    serde_json::json!({ "dead_letters": dead, "specs": specs })
}

fn print_report(report: &[SpecHealth], dead: usize, now: u64, flag: &str) -> Result<()> {
    let mut out = BufWriter::new(io::stdout().lock());
    if report.is_empty() {
        writeln!(out, "no SPECs yet: nothing has been emitted")?;
    }
    for (i, spec) in report.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(out, "{}", output::paint(&output::one_line(&spec.spec), "1"))?;
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
        let warnings = spec
            .subscriptions
            .iter()
            .filter_map(|s| health::warning(&spec.spec, &s.subscription, &s.counts, &s.stats));
        for warning in warnings {
            let warning = output::one_line(&warning);
            writeln!(out, "{} {warning}", output::paint("warning:", "33"))?;
        }
        if !spec.quarantined.is_empty() {
            writeln!(
                out,
                "{} {} file(s) in quarantine (see `spec-notify list {}{flag} --state quarantine`)",
                output::paint("warning:", "33"),
                spec.quarantined.len(),
                output::one_line(&spec.spec)
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

fn row(s: &SubHealth, now: u64) -> Vec<String> {
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
        output::latency_text(st.p50_ms()),
        output::latency_text(st.p95_ms()),
        ago(st.last_success_ms),
        last_failure,
    ]
}
