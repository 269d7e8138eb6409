//! `--source nats` for `drain`, `list`, `status`, `history`, `replay`,
//! `discard`, `report` and `metrics`: the same engine, tables, page and
//! exposition, on NATS JetStream instead of this host's spool (see
//! `crate::nats`). Commands reach NATS only through here.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc;

use anyhow::{Context, Result};

use super::Ctx;
use crate::cli::{DiscardArgs, DrainArgs, ReplayArgs, StatusArgs};
use crate::config::Config;
use crate::drain::{Drainer, Options, Stop};
use crate::evidence::Record;
use crate::exit::{ExitCode, user_error};
use crate::nats::dead::{self, Dead};
use crate::nats::health::NatsHealth;
use crate::nats::queue::NatsQueue;
use crate::nats::{Nats, view};
use crate::spool::{Meta, State};
use crate::{clock, metrics, output};

/// Connects to the relay's NATS, or says what to configure.
pub fn connect(config: &Config, command: &str) -> Result<Nats> {
    let Some(relay) = &config.relay else {
        return Err(user_error(format!(
            "`{command} --source nats` needs a [spec_ops.webhooks.relay] table in `{}` (url = \"nats://host:4222\"); see docs/scale-out.md",
            config.path.display()
        )));
    };
    Nats::connect(relay)
}

/// `drain --source nats`: one worker of the fleet.
pub fn drain(ctx: &Ctx, config: &Config, args: &DrainArgs) -> Result<ExitCode> {
    let nats = connect(config, "drain")?;
    let options = Options {
        spec: None,
        once: args.once,
        watch: args.watch,
        max_time: args.max_time,
        only: None,
    };
    let stop = Stop::install()?;
    ctx.note(format!(
        "draining stream {} (consumer {})",
        nats.names.jobs, nats.names.consumer
    ));
    let mut report = super::drain_reporter(ctx.verbose);
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let summary = std::thread::scope(|scope| {
        if let Some(path) = &args.metrics {
            let nats = &nats;
            let collect = move || Ok(collect_metrics(config, nats)?.0);
            let every = args.metrics_interval;
            scope.spawn(move || super::drain::keep_metrics(&collect, path, every, &done_rx));
        }
        let queue = NatsQueue::new(config, &nats);
        let summary = Drainer::new(config, options, stop).run_on(&queue, &mut report);
        drop(queue); // jobs still held go back before the last metrics
        drop(done_tx); // the metrics thread writes once more and ends
        summary
    })?;
    super::finish_drain(&summary, args.background, args.json)
}

/// The streams and the bucket read once, as a health source for `report`
/// and `metrics`; where they are, for the report's header.
pub fn health(config: &Config, command: &str) -> Result<(NatsHealth, String)> {
    let nats = connect(config, command)?;
    let from = format!(
        "NATS JetStream (streams {}, {}, {}: every host)",
        nats.names.jobs, nats.names.dead, nats.names.evidence
    );
    Ok((NatsHealth::load(&nats)?, from))
}

/// The metrics exposition of every SPEC in the streams, and the snapshot
/// it came from.
fn collect_metrics(config: &Config, nats: &Nats) -> Result<(String, crate::health::Snapshot)> {
    let source = NatsHealth::load(nats)?;
    let (text, mut snapshot) = metrics::collect_from(&source, config, clock::now_ms())?;
    source.add_problems(&mut snapshot);
    Ok((text, snapshot))
}

/// `metrics --source nats`: the exposition from the streams.
pub fn metrics(config: &Config) -> Result<(String, crate::health::Snapshot)> {
    collect_metrics(config, &connect(config, "metrics")?)
}

/// The jobs `list --source nats` shows: pending and dead, filtered.
pub fn jobs(
    config: &Config,
    spec: Option<&str>,
    subscription: Option<&str>,
    states: &[State],
) -> Result<Vec<(State, Meta)>> {
    let nats = connect(config, "list")?;
    let found = view::jobs(&nats, states)?;
    if found.unreadable > 0 {
        output::warn(format_args!(
            "{} message(s) in the streams are not jobs; skipped",
            found.unreadable
        ));
    }
    Ok(found
        .jobs
        .into_iter()
        .filter(|(_, m)| spec.is_none_or(|s| s == m.spec))
        .filter(|(_, m)| subscription.is_none_or(|s| s == m.subscription))
        .collect())
}

#[derive(Default, serde::Serialize)]
struct Counts {
    pending: usize,
    dead: usize,
}

/// `status --source nats`: jobs waiting and dead per SPEC and subscription
/// across every host, and the shared breaker. Exits 1 while a dead job
/// exists, a circuit is open or a subscription is paused.
pub fn status(ctx: &Ctx, args: &StatusArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    let nats = connect(&config, "status")?;
    let found = view::jobs(&nats, &[State::Pending, State::Dead])?;
    let mut counts: BTreeMap<(String, String), Counts> = BTreeMap::new();
    for (state, meta) in found.jobs {
        if args.spec.as_deref().is_some_and(|s| s != meta.spec) {
            continue;
        }
        let c = counts.entry((meta.spec, meta.subscription)).or_default();
        match state {
            State::Dead => c.dead += 1,
            _ => c.pending += 1,
        }
    }
    let circuits = view::circuits(&nats)?;
    let now = clock::now_ms();
    let gate = |c: &crate::circuit::Circuit| {
        if c.paused.is_some() {
            "paused"
        } else if c.is_open() {
            "open"
        } else {
            "closed"
        }
    };
    let dead: usize = counts.values().map(|c| c.dead).sum();
    let blocked = circuits.iter().filter(|(_, c)| gate(c) != "closed").count();
    if args.json {
        let specs: Vec<serde_json::Value> = counts
            .iter()
            .map(|((spec, sub), c)| {
                serde_json::json!({"spec": spec, "subscription": sub, "pending": c.pending, "dead": c.dead})
            })
            .collect();
        let subs: Vec<serde_json::Value> = circuits
            .iter()
            .map(|(sub, c)| {
                serde_json::json!({"subscription": sub, "circuit": gate(c), "detail": c.describe(clock::rfc3339)})
            })
            .collect();
        output::print_json(&serde_json::json!({
            "source": "nats",
            "stream": nats.names.jobs,
            "at": clock::rfc3339(now),
            "dead": dead,
            "jobs": specs,
            "subscriptions": subs,
        }))?;
    } else {
        let mut out = io::stdout().lock();
        let mut text = format!("NATS stream {} (every host)\n", nats.names.jobs);
        if counts.is_empty() {
            text.push_str("  no jobs waiting or dead\n");
        }
        let wide = counts
            .keys()
            .map(|(s, b)| s.len() + b.len() + 3)
            .max()
            .unwrap_or(0);
        for ((spec, sub), c) in &counts {
            let name = format!("{spec} · {sub}");
            text.push_str(&format!(
                "  {name:<wide$}  pending {:>6}  dead {:>6}\n",
                c.pending, c.dead
            ));
        }
        for (sub, c) in &circuits {
            if gate(c) != "closed" {
                text.push_str(&format!("  ! {sub}: {}\n", c.describe(clock::rfc3339)));
            }
        }
        if dead > 0 {
            text.push_str(&format!(
                "  {dead} dead job(s): `spec-notify list --source nats --state dead` shows why\n"
            ));
        }
        out.write_all(text.as_bytes())
            .context("failed to write to stdout")?;
    }
    Ok(if dead > 0 || blocked > 0 {
        ExitCode::Failure
    } else {
        ExitCode::Success
    })
}

/// `history --source nats`: every record of the evidence stream (the
/// caller keeps one SPEC's).
pub fn history(config: &Config) -> Result<Vec<Record>> {
    let nats = connect(config, "history")?;
    let (records, skipped) = view::evidence(&nats)?;
    if skipped > 0 {
        output::warn(format_args!(
            "{skipped} message(s) in stream {} are not evidence records; skipped",
            nats.names.evidence
        ));
    }
    Ok(records)
}

/// The dead jobs of `spec` an operator named: one delivery id (an error,
/// changing nothing, when it is not dead), or every one matching the
/// filters.
fn choose_dead(
    nats: &Nats,
    spec: &str,
    delivery_id: Option<&str>,
    keep: impl Fn(&Meta) -> bool,
    command: &str,
) -> Result<Vec<Dead>> {
    let (found, unreadable) = dead::jobs(nats)?;
    if unreadable > 0 {
        output::warn(format_args!(
            "{unreadable} message(s) in stream {} are not jobs; skipped",
            nats.names.dead
        ));
    }
    let of_spec = found.into_iter().filter(|d| d.job.meta.spec == spec);
    let Some(id) = delivery_id else {
        return Ok(of_spec.filter(|d| keep(&d.job.meta)).collect());
    };
    let chosen: Vec<Dead> = of_spec.filter(|d| d.job.meta.delivery_id == id).collect();
    if !chosen.is_empty() {
        return Ok(chosen);
    }
    let why = if dead::is_waiting(nats, id)? {
        format!(
            "it waits in stream {} (not dead); the workers deliver it",
            nats.names.jobs
        )
    } else {
        format!(
            "no dead job of {spec} in stream {} has that id (see `spec-notify list {spec} --source nats --state dead`)",
            nats.names.dead
        )
    };
    Err(user_error(format!(
        "cannot {command} {id}: {why}; nothing was changed"
    )))
}

/// `replay --source nats`: dead jobs go back to the jobs stream with their
/// delivery id kept and attempts reset; the workers deliver them.
pub fn replay(config: &Config, args: &ReplayArgs) -> Result<ExitCode> {
    let nats = connect(config, "replay")?;
    let chosen = choose_dead(
        &nats,
        &args.spec,
        args.delivery_id.as_deref(),
        |meta| {
            let at = meta.finished_at_ms.unwrap_or(meta.created_at_ms);
            args.subscription
                .as_deref()
                .is_none_or(|s| s == meta.subscription)
                && args.since.is_none_or(|t| at >= t)
                && args.until.is_none_or(|t| at <= t)
        },
        "replay",
    )?;
    if chosen.is_empty() {
        output::note(format_args!(
            "no dead jobs of {} match in stream {}; nothing replayed",
            args.spec, nats.names.dead
        ));
        if args.json {
            output::print_json(&serde_json::json!([]))?;
        }
        return Ok(ExitCode::Success);
    }
    let now = clock::now_ms();
    let mut rows = Vec::new();
    for Dead { seq, mut job } in chosen {
        super::replay::reset(&mut job.meta, now);
        let record = super::replay::requeued_record(config, &job.meta, State::Dead, now);
        dead::replay(&nats, seq, &job, &record)?;
        output::note(format_args!(
            "requeued {} ({}, was dead)",
            job.meta.delivery_id, job.meta.subscription
        ));
        rows.push(serde_json::json!({"delivery_id": job.meta.delivery_id, "outcome": "requeued"}));
    }
    output::note(format_args!(
        "{} job(s) back in stream {}: the workers (`spec-notify drain --source nats`) deliver them",
        rows.len(),
        nats.names.jobs
    ));
    if args.json {
        output::print_json(&rows)?;
    }
    Ok(ExitCode::Success)
}

/// `discard --source nats`: deletes dead jobs from the dead stream, one
/// `discarded` record each in the evidence stream.
pub fn discard(config: &Config, args: &DiscardArgs) -> Result<ExitCode> {
    let nats = connect(config, "discard")?;
    let chosen = choose_dead(
        &nats,
        &args.spec,
        args.delivery_id.as_deref(),
        |meta| {
            args.subscription
                .as_deref()
                .is_none_or(|s| s == meta.subscription)
        },
        "discard",
    )?;
    if chosen.is_empty() {
        println!(
            "no dead jobs to discard in {} (stream {})",
            args.spec, nats.names.dead
        );
        return Ok(ExitCode::Success);
    }
    let mut done = Vec::new();
    for Dead { seq, job } in chosen {
        let record = super::discard::discard_record(config, &job.meta);
        if let Err(e) = dead::discard(&nats, seq, &record) {
            super::discard::print_discarded(&args.spec, &done)?;
            return Err(e);
        }
        done.push((job.meta.file_name(), job.meta));
    }
    super::discard::print_discarded(&args.spec, &done)?;
    Ok(ExitCode::Success)
}
