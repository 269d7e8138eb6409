//! `--source nats` for `drain`, `list` and `status`: the same engine and the
//! same tables, on NATS JetStream instead of this host's spool (see
//! `crate::nats`). Commands reach NATS only through here.

use std::collections::BTreeMap;
use std::io::{self, Write};

use anyhow::{Context, Result};

use super::Ctx;
use crate::cli::{DrainArgs, StatusArgs};
use crate::config::Config;
use crate::drain::{Drainer, Options, Stop};
use crate::exit::{ExitCode, user_error};
use crate::nats::queue::NatsQueue;
use crate::nats::{Nats, view};
use crate::spool::{Meta, State};
use crate::{clock, output};

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
    let summary = {
        let queue = NatsQueue::new(config, &nats);
        Drainer::new(config, options, stop).run_on(&queue, &mut report)?
    };
    let quiet = args.background
        && summary.errors.is_empty()
        && summary.problems.is_empty()
        && summary.dead == 0;
    if !quiet {
        super::report_drain(&summary, args.json)?;
    }
    Ok(super::drain_exit_code(&summary))
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
