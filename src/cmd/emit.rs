//! `spec-notify emit`: validate events from flags and/or stdin, fan each out
//! to the subscriptions in effect for its SPEC (its `specs` overrides
//! applied) that match it, or to the per-call targets of `--url`, and make
//! one job per match durable in the SPEC's spool; a per-call job carries its
//! target (URL, secret variable, scheme, format) for the drain. Never
//! touches the network; all input, `--url` included, is validated before
//! anything is written, so bad input leaves the spool unchanged. Each event
//! is at most `max_event_bytes`, and input is read with bounds
//! ([`crate::input`]); stdin is read only with `--input -`, so a caller's
//! open or slow stdin never holds emit. A W3C trace context
//! (`--traceparent`, `TRACEPARENT`) goes into each envelope, or is ignored
//! with a warning when invalid. Prints one `<delivery-id>
//! <subscription>` line per job (JSON objects with `--json`).

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};

use anyhow::{Context, Result};
use serde_json::{Map, Value};

use super::Ctx;
use crate::cli::EmitArgs;
use crate::clock;
use crate::config::{self, Config, Subscription};
use crate::envelope::{self, Event, Flags};
use crate::exit::{ExitCode, user_error};
use crate::input;
use crate::output;
use crate::spool::{self, Job, Meta, Spool, State, Target};

pub fn run(ctx: &Ctx, args: &EmitArgs) -> Result<ExitCode> {
    let location = config::locate(ctx.config.as_deref());
    if let Some(search) = location.missing() {
        // Webhooks are off (the PRD's default), but bad input is still
        // refused: the guardrail must hear of it before it has a config.
        let config = config::defaults(&location);
        read_events(args, config.max_event_bytes)?;
        per_call_targets(&config, args)?;
        if !args.quiet {
            output::note(format_args!(
                "nothing spooled: {}, so webhooks are off ({}; --quiet says nothing)",
                search.describe(),
                config::HOW_TO_POINT
            ));
        }
        return Ok(ExitCode::Success);
    }
    let config = config::load(&location)?;
    let events = read_events(args, config.max_event_bytes)?;
    let per_call = per_call_targets(&config, args)?;
    if !config.enabled {
        ctx.note(format!(
            "webhooks are disabled ({}): nothing spooled",
            config.enabled_source
        ));
        return Ok(ExitCode::Success);
    }
    for (sub, _) in per_call.iter().filter(|(s, _)| s.unsigned()) {
        ctx.note(format!(
            "{} ({}) has no --secret-env: its deliveries go unsigned",
            sub.id,
            sub.shown_url()
        ));
    }
    let plan = plan(&config, &events, &per_call, args);
    // A host that relays to NATS needs no secrets, and the breaker it
    // would read here is not the fleet's: the workers' business.
    if config.relay.is_none() {
        warn_missing_secrets(&plan);
        warn_held_back(&config, &plan);
    }
    let spooled = spool_events(&config, &plan)?;
    // The jobs are durable: start delivery before printing, so a reader that
    // closes the pipe early (`| head -1`) cannot stop it.
    if config.auto_drain && !spooled.is_empty() {
        let specs: Vec<&str> = plan.keys().copied().collect();
        for warning in crate::kick::start_drains(&config, &specs, ctx.config.as_deref()) {
            output::warn(warning);
        }
    }
    print_spooled(&spooled, args.json)?;
    Ok(ExitCode::Success)
}

/// Parses and validates every event before anything is written; none may
/// be larger than `max_bytes`.
fn read_events(args: &EmitArgs, max_bytes: usize) -> Result<Vec<Event>> {
    let mut flags = Flags {
        spec: args.spec.clone(),
        event: args.event.clone(),
        status: args.status.clone(),
        stage: args.stage.clone(),
        task_id: args.task_id.clone(),
        task_title: args.task_title.clone(),
        idempotency_key: args.idempotency_key.clone(),
        correlation_id: args.correlation_id.clone(),
        telemetry: None,
        trace: trace_context(args),
    };
    if let Some(path) = &args.telemetry {
        flags.telemetry = Some(read_telemetry(path, max_bytes)?);
    }
    let Some(source) = &args.input else {
        let event = envelope::build(Map::new(), &flags).map_err(user_error)?;
        check_size(&event, max_bytes, "the event")?;
        return Ok(vec![event]);
    };
    let (objects, name) = if source == "-" {
        (
            input::objects(std::io::stdin().lock(), "stdin", max_bytes)?,
            "stdin".to_string(),
        )
    } else {
        let name = format!("`{source}`");
        (
            input::objects(input::open_input(source)?, &name, max_bytes)?,
            name,
        )
    };
    objects
        .into_iter()
        .map(|(line, object)| {
            let event = envelope::build(object, &flags)
                .map_err(|e| user_error(format!("{name} line {line}: {e}")))?;
            check_size(&event, max_bytes, &format!("{name} line {line}: the event"))?;
            Ok(event)
        })
        .collect()
}

/// The W3C trace context emit runs under (`--traceparent`, else
/// `TRACEPARENT`; `--tracestate`, else `TRACESTATE`). An invalid value is
/// never fatal: the event goes without it (or without the state), and a
/// warning says why.
fn trace_context(args: &EmitArgs) -> Option<crate::trace::Context> {
    let traceparent = args.traceparent.as_deref().filter(|t| !t.trim().is_empty());
    let Some(traceparent) = traceparent else {
        if args
            .tracestate
            .as_deref()
            .is_some_and(|t| !t.trim().is_empty())
        {
            output::warn(
                "ignoring the tracestate: it means nothing without a traceparent (--traceparent or TRACEPARENT)",
            );
        }
        return None;
    };
    let (context, problem) = crate::trace::Context::parse(traceparent, args.tracestate.as_deref());
    if let Some(problem) = problem {
        let what = match context {
            Some(_) => {
                "ignored: the event carries the traceparent without it (from --tracestate or TRACESTATE)"
            }
            None => {
                "ignored: the event is spooled without a trace context (from --traceparent or TRACEPARENT)"
            }
        };
        output::warn(format_args!("{problem}; {what}"));
    }
    context
}

/// Refuses an event whose envelope (with `--telemetry` and the flags'
/// fields added) would be larger than `max_bytes`.
fn check_size(event: &Event, max_bytes: usize, what: &str) -> Result<()> {
    let size = event.max_len();
    if size > max_bytes {
        return Err(user_error(format!(
            "{what} is {size} bytes as spooled, over max_event_bytes = {}; nothing was spooled (raise max_event_bytes in [spec_ops.webhooks], or send less: large files belong in `evidence` as paths)",
            input::bytes_text(max_bytes)
        )));
    }
    Ok(())
}

fn read_telemetry(path: &std::path::Path, max_bytes: usize) -> Result<Value> {
    let text = input::read_regular_file(path, max_bytes, "--telemetry file")?;
    let value: Value = serde_json::from_slice(&text).map_err(|e| {
        user_error(format!(
            "--telemetry file `{}` is not valid JSON: {e}",
            path.display()
        ))
    })?;
    if !value.is_object() {
        return Err(user_error(format!(
            "--telemetry file `{}` must hold a JSON object",
            path.display()
        )));
    }
    Ok(value)
}

/// The `--url` targets, each checked like a subscription table: any
/// problem is an exit-2 error naming them all (the URL shown redacted).
fn per_call_targets(config: &Config, args: &EmitArgs) -> Result<Vec<(Subscription, Target)>> {
    let mut out: Vec<(Subscription, Target)> = Vec::new();
    let mut problems = Vec::new();
    for url in &args.urls {
        let target = Target {
            url: url.clone(),
            secret_env: args.secret_env.clone(),
            signature: args.signature.clone(),
            format: args.format.clone(),
            allow_private_networks: args.allow_private_networks,
        };
        match config.per_call(&target) {
            Ok(sub) if out.iter().any(|(s, _)| s.id == sub.id) => {}
            Ok(sub) => out.push((sub, target)),
            Err(lines) => problems.extend(lines),
        }
    }
    if problems.is_empty() {
        return Ok(out);
    }
    let count = match problems.len() {
        1 => "1 problem".to_string(),
        n => format!("{n} problems"),
    };
    Err(user_error(format!(
        "invalid --url ({count}), nothing spooled:\n  - {}",
        problems.join("\n  - ")
    )))
}

/// The active subscriptions in effect for an event's SPEC that match it.
pub fn targets<'a>(config: &'a Config, event: &Event) -> Vec<&'a Subscription> {
    config
        .subscriptions_for(&event.spec)
        .iter()
        .filter(|s| s.active && s.matches(&event.event_type, event.stage, event.status))
        .collect()
}

/// Where one job goes: a subscription, and for a per-call one its target.
type Planned<'a> = (&'a Subscription, Option<&'a Target>);

/// Events grouped by SPEC, each with where it goes; events nothing matches
/// are left out.
type Plan<'a> = BTreeMap<&'a str, Vec<(&'a Event, Vec<Planned<'a>>)>>;

/// Where each event goes: the `--url` targets (most specific, so alone
/// unless `--also-configured`), else the subscriptions in effect for its SPEC.
/// Events nothing matches are said on stderr (never dropped in silence),
/// unless `--quiet`.
fn plan<'a>(
    config: &'a Config,
    events: &'a [Event],
    per_call: &'a [(Subscription, Target)],
    args: &EmitArgs,
) -> Plan<'a> {
    let also_configured = args.also_configured;
    let mut by_spec = Plan::new();
    let mut unmatched: Vec<&Event> = Vec::new();
    for event in events {
        let mut subs: Vec<Planned<'a>> = per_call.iter().map(|(s, t)| (s, Some(t))).collect();
        if per_call.is_empty() || also_configured {
            subs.extend(targets(config, event).into_iter().map(|s| (s, None)));
        }
        if subs.is_empty() {
            unmatched.push(event);
            continue;
        }
        by_spec.entry(&event.spec).or_default().push((event, subs));
    }
    if let Some(first) = unmatched.first().filter(|_| !args.quiet) {
        output::note(unmatched_note(config, first, unmatched.len()));
    }
    by_spec
}

/// Why events were not spooled: no subscription at all (with what to do
/// on a host that relays), or none that matches.
fn unmatched_note(config: &Config, first: &Event, count: usize) -> String {
    let what = match count {
        1 => format!("{} for {}", first.event_type, first.spec),
        n => format!(
            "{n} events (the first: {} for {})",
            first.event_type, first.spec
        ),
    };
    if config.every_subscription().next().is_none() {
        let fix = match config.relay {
            Some(_) => {
                "an emitting host fans events out to subscriptions before it relays them: copy the [[spec_ops.webhooks.subscriptions]] tables from the workers' config (their secrets stay on the workers); see docs/scale-out.md"
            }
            None => {
                "add a [[spec_ops.webhooks.subscriptions]] table (or `spec-notify subscriptions add`)"
            }
        };
        return format!(
            "{what}: nothing spooled, `{}` has no subscriptions: {fix}",
            config.path.display()
        );
    }
    format!(
        "{what}: no subscription matches, nothing spooled (`spec-notify check --spec {}` shows which subscriptions it has and what they take)",
        first.spec
    )
}

/// One warning per subscription that will get jobs but has no secret yet.
fn warn_missing_secrets(plan: &Plan<'_>) {
    let mut warned = std::collections::HashSet::new();
    let subs = plan
        .values()
        .flatten()
        .flat_map(|(_, subs)| subs.iter().map(|(s, _)| *s));
    for sub in subs.filter(|s| s.needs_secret() && warned.insert((s.id.as_str(), &s.secret_env))) {
        if let Some(message) = sub.missing_signing_variable() {
            output::warn(format_args!(
                "{message}; jobs are spooled and will wait for it"
            ));
        }
    }
}

/// The PRD's "warning banner until resolved": one line per matching
/// subscription whose circuit is open or that is paused. The jobs are
/// spooled all the same and go out when it recovers.
fn warn_held_back(config: &Config, plan: &Plan<'_>) {
    let spool = Spool::new(&config.spool_dir);
    let mut warned = std::collections::HashSet::new();
    let subs = plan
        .values()
        .flatten()
        .flat_map(|(_, subs)| subs.iter().map(|(s, _)| *s));
    for sub in subs.filter(|s| warned.insert(s.id.as_str())) {
        let Ok(circuit) = spool.circuit(&sub.id) else {
            continue;
        };
        if circuit.paused.is_some() || circuit.is_open() {
            output::warn(format_args!(
                "subscription {} is {}; this event is spooled and waits (see `spec-notify status`)",
                sub.id,
                circuit.describe_at(crate::clock::now_ms(), crate::clock::rfc3339)
            ));
        }
    }
}

/// One job written by emit, as printed.
#[derive(Debug, serde::Serialize)]
struct Spooled {
    delivery_id: String,
    subscription: String,
    spec: String,
    event_type: String,
    /// `pending`, or `dead` for a batch's own spool-overflow.
    state: State,
}

impl Spooled {
    fn of(job: Job) -> Spooled {
        Spooled {
            delivery_id: job.meta.delivery_id,
            subscription: job.meta.subscription,
            spec: job.meta.spec,
            event_type: job.meta.event_type,
            state: job.meta.state,
        }
    }
}

/// Writes the jobs of every event, SPEC by SPEC, and returns what it wrote.
fn spool_events(config: &Config, plan: &Plan<'_>) -> Result<Vec<Spooled>> {
    let spool = Spool::new(&config.spool_dir);
    let now = clock::now_ms();
    let emitted_at = clock::rfc3339(now);
    let mut ids = Vec::new();
    for (spec, planned) in plan {
        let spec_spool = spool.spec(spec);
        let first = spec_spool
            .ensure()
            .and_then(|()| spec_spool.reserve_sequence(planned.len() as u64))
            .with_context(|| format!("{} event(s) for {spec} not spooled", planned.len()))?;
        let mut jobs = build_jobs(planned, first, now, &emitted_at);
        // A batch larger than the bound keeps only its newest jobs pending.
        let max = config.max_spool_jobs;
        let mut over: Vec<Job> = jobs.drain(..jobs.len().saturating_sub(max)).collect();
        over.iter_mut()
            .for_each(|job| spool::mark_overflow(&mut job.meta, max, now));
        let shed = {
            let shed = spec_spool.shed_overflow(max, jobs.len(), now)?;
            for warning in &shed.warnings {
                output::warn(warning);
            }
            shed.moved.len() + over.len()
        };
        if shed > 0 {
            output::warn(format_args!(
                "{spec} has more pending jobs than max_spool_jobs = {max}: moved the {shed} oldest to dead-letter (reason spool-overflow); see `spec-notify list {spec} --state dead`"
            ));
        }
        spec_spool.enqueue_in(State::Dead, &over)?;
        spec_spool.enqueue(&jobs)?;
        ids.extend(over.into_iter().chain(jobs).map(Spooled::of));
    }
    Ok(ids)
}

/// One job per (event, subscription), numbered from `first`, all sharing the
/// event's envelope bytes.
fn build_jobs(
    planned: &[(&Event, Vec<Planned<'_>>)],
    first: u64,
    now: u64,
    emitted_at: &str,
) -> Vec<Job> {
    let mut jobs = Vec::new();
    for (offset, (event, subs)) in planned.iter().enumerate() {
        let sequence = first + offset as u64;
        let body = event.render(sequence, emitted_at);
        for (sub, target) in subs {
            let mut meta = Meta::new(
                &event.spec,
                &sub.id,
                &event.event_type,
                &event.idempotency_key,
                sequence,
                now,
            );
            meta.correlation_id = event.correlation_id.clone();
            meta.target = target.cloned();
            jobs.push(Job {
                meta,
                body: body.clone(),
            });
        }
    }
    jobs
}

/// Prints `<delivery-id> <subscription>` per job (objects with `--json`).
/// A closed stdout is not an error: the jobs are spooled either way, and a
/// guardrail script must not fail for it.
fn print_spooled(spooled: &[Spooled], json: bool) -> Result<()> {
    output::ignore_broken_pipe();
    match write_spooled(spooled, json) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn write_spooled(spooled: &[Spooled], json: bool) -> std::io::Result<()> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    if json {
        serde_json::to_writer(&mut out, spooled)?;
        writeln!(out)?;
    } else {
        for job in spooled {
            writeln!(out, "{} {}", job.delivery_id, job.subscription)?;
        }
    }
    out.flush()?;
    Ok(())
}
