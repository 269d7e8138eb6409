//! `spec-notify emit`: validate events from flags and/or stdin, fan each out
//! to the subscriptions in effect for its SPEC (its `specs` overrides
//! applied) that match it, or to the per-call targets of `--url`, and make
//! one job per match durable in the SPEC's spool; a per-call job carries its
//! target (URL, secret variable, scheme, format) for the drain. Never
//! touches the network; all input, `--url` included, is validated before
//! anything is written, so bad input leaves the spool unchanged. Each event
//! is at most `max_event_bytes`, and input is read with bounds
//! ([`crate::input`]); stdin is read only with `--input -`, so a caller's
//! open or slow stdin never holds emit. A `--input` batch is streamed:
//! validated one event at a time into a private unnamed copy, then written
//! from that copy in chunks, so its size never shows in memory; a batch
//! that would take a SPEC past `max_spool_jobs` is refused before anything
//! is written unless `--shed-oldest`. A W3C trace context
//! (`--traceparent`, `TRACEPARENT`) goes into each envelope, or is ignored
//! with a warning when invalid. Prints one `<delivery-id>
//! <subscription>` line per job (JSON objects with `--json`).

use std::collections::BTreeMap;
use std::io::{BufWriter, Seek, Write};

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
        read_input(args, &config, &[])?;
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
    // Input errors are said first; the targets only count jobs meanwhile.
    let per_call = per_call_targets(&config, args);
    let input = read_input(args, &config, per_call.as_deref().unwrap_or(&[]))?;
    let per_call = per_call?;
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
    let tally = &input.tally;
    if let Some((first, count)) = tally.unmatched.as_ref().filter(|_| !args.quiet) {
        output::note(unmatched_note(&config, first, *count));
    }
    // A host that relays to NATS needs no secrets, and the breaker it
    // would read here is not the fleet's: the workers' business.
    if config.relay.is_none() {
        let subs = tally.subscriptions(&per_call);
        warn_missing_secrets(&subs);
        warn_held_back(&config, &subs);
    }
    if args.input.is_some() && tally.events > 1 && !args.shed_oldest {
        refuse_overflow(&config, tally)?;
    }
    let spooled = spool_events(&config, &input, &per_call, args)?;
    // The jobs are durable: start delivery before printing, so a reader that
    // closes the pipe early (`| head -1`) cannot stop it.
    if config.auto_drain && spooled.count > 0 {
        let specs: Vec<&str> = tally.jobs.keys().map(String::as_str).collect();
        for warning in crate::kick::start_drains(&config, &specs, ctx.config.as_deref()) {
            output::warn(warning);
        }
    }
    spooled.print()?;
    Ok(ExitCode::Success)
}

/// Events in a chunk written at once: a batch is written chunk by chunk,
/// so it costs a chunk's memory, whatever its size.
const CHUNK_EVENTS: usize = 1000;
/// ... or this many envelope bytes, whichever comes first.
const CHUNK_BYTES: usize = 16 * 1024 * 1024;

/// The events, validated: one from the flags, or a `--input` batch kept
/// as a private copy of the very bytes that were validated (stdin cannot
/// be read twice, and a file may change), with what they add up to.
struct Input<'c> {
    flags: Flags,
    max_bytes: usize,
    source: Source,
    tally: Tally<'c>,
}

enum Source {
    One(Event),
    Copy { file: std::fs::File, name: String },
}

/// What a whole input adds up to, counted while it is validated.
#[derive(Default)]
struct Tally<'c> {
    events: usize,
    /// Jobs per SPEC.
    jobs: BTreeMap<String, usize>,
    /// The first event nothing matches (type, SPEC), and how many.
    unmatched: Option<((String, String), usize)>,
    /// The configured subscriptions (as in effect for their SPEC) that
    /// get jobs, each once; and whether the `--url` targets get any.
    configured: Vec<&'c Subscription>,
    per_call: bool,
}

impl<'c> Tally<'c> {
    fn add(
        &mut self,
        config: &'c Config,
        per_call: &[(Subscription, Target)],
        event: &Event,
        also: bool,
    ) {
        self.events += 1;
        let mut jobs = per_call.len();
        self.per_call |= jobs > 0;
        if per_call.is_empty() || also {
            for sub in targets(config, event) {
                jobs += 1;
                if !self.configured.iter().any(|s| std::ptr::eq(*s, sub)) {
                    self.configured.push(sub);
                }
            }
        }
        if jobs == 0 {
            let first = (event.event_type.clone(), event.spec.clone());
            let (_, count) = self.unmatched.get_or_insert((first, 0));
            *count += 1;
            return;
        }
        *self.jobs.entry(event.spec.clone()).or_default() += jobs;
    }

    /// The subscriptions that get jobs, each once.
    fn subscriptions<'a>(
        &'a self,
        per_call: &'a [(Subscription, Target)],
    ) -> Vec<&'a Subscription> {
        let mut subs: Vec<&Subscription> = Vec::new();
        if self.per_call {
            subs.extend(per_call.iter().map(|(s, _)| s));
        }
        subs.extend(self.configured.iter().copied());
        subs
    }
}

/// Refuses a batch that would take a SPEC past `max_spool_jobs` (exit 2,
/// nothing written): its pending jobs plus the batch's. `--shed-oldest`
/// asks for the oldest to be dead-lettered instead, as a single emit does.
fn refuse_overflow(config: &Config, tally: &Tally<'_>) -> Result<()> {
    let spool = Spool::new(&config.spool_dir);
    let max = config.max_spool_jobs;
    let mut over = Vec::new();
    for (spec, &jobs) in &tally.jobs {
        let pending = spool.spec(spec).count(State::Pending)?;
        if pending + jobs > max {
            over.push(format!(
                "{spec}: {pending} pending + {jobs} new jobs = {} (max_spool_jobs = {max})",
                pending + jobs
            ));
        }
    }
    if over.is_empty() {
        return Ok(());
    }
    const SHOWN: usize = 10;
    let more = match over.len().saturating_sub(SHOWN) {
        0 => String::new(),
        n => format!("\n  - and {n} more SPECs"),
    };
    let specs = match over.len() {
        1 => "1 SPEC".to_string(),
        n => format!("{n} SPECs"),
    };
    Err(user_error(format!(
        "the batch would take {specs} past max_spool_jobs = {max}; nothing was spooled:\n  - {}{more}\nsend fewer events at once, let `spec-notify drain` deliver the backlog first, raise max_spool_jobs in [spec_ops.webhooks], or pass --shed-oldest to move the oldest pending jobs to dead-letter (reason spool-overflow)",
        over.iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  - ")
    )))
}

/// Reads and validates every event before anything is written, none
/// larger than `max_event_bytes`, counting where they go (through
/// `per_call` targets or the config's subscriptions). A `--input` batch is
/// streamed: validated one event at a time into a private temporary copy.
fn read_input<'c>(
    args: &EmitArgs,
    config: &'c Config,
    per_call: &[(Subscription, Target)],
) -> Result<Input<'c>> {
    let max_bytes = config.max_event_bytes;
    let flags = flags(args, max_bytes)?;
    let mut tally = Tally::default();
    let also = args.also_configured;
    let Some(source) = &args.input else {
        let event = envelope::build(Map::new(), &flags).map_err(user_error)?;
        check_size(&event, max_bytes, "the event")?;
        tally.add(config, per_call, &event, also);
        return Ok(Input {
            flags,
            max_bytes,
            source: Source::One(event),
            tally,
        });
    };
    let mut copy = temp_copy(config)?;
    let name = match source.as_str() {
        "-" => "stdin".to_string(),
        path => format!("`{path}`"),
    };
    let each = |line, object| {
        let event = event_of(&name, line, object, &flags, max_bytes)?;
        tally.add(config, per_call, &event, also);
        Ok(())
    };
    let mut writer = std::io::BufWriter::new(&mut copy);
    match source.as_str() {
        "-" => {
            let tee = input::Tee {
                inner: std::io::stdin().lock(),
                copy: &mut writer,
            };
            input::each_object(tee, &name, max_bytes, each)?
        }
        path => {
            let tee = input::Tee {
                inner: input::open_input(path)?,
                copy: &mut writer,
            };
            input::each_object(tee, &name, max_bytes, each)?
        }
    };
    writer
        .flush()
        .context("failed to keep a copy of the input (is the disk full?)")?;
    drop(writer);
    copy.rewind()
        .context("failed to read back the input's copy")?;
    Ok(Input {
        flags,
        max_bytes,
        source: Source::Copy { file: copy, name },
        tally,
    })
}

/// A private unnamed file for the input's copy: in the spool's folder if
/// there is one (the jobs go there anyway), else in the temp folder.
fn temp_copy(config: &Config) -> Result<std::fs::File> {
    let in_spool = config
        .spool_dir
        .is_dir()
        .then(|| tempfile::tempfile_in(&config.spool_dir).ok())
        .flatten();
    match in_spool {
        Some(file) => Ok(file),
        None => tempfile::tempfile().context("failed to create a temporary file for the input"),
    }
}

/// One event of a batch, built and checked.
fn event_of(
    name: &str,
    line: usize,
    object: Map<String, Value>,
    flags: &Flags,
    max_bytes: usize,
) -> Result<Event> {
    let event = envelope::build(object, flags)
        .map_err(|e| user_error(format!("{name} line {line}: {e}")))?;
    check_size(&event, max_bytes, &format!("{name} line {line}: the event"))?;
    Ok(event)
}

/// The fields the flags set, for every event.
fn flags(args: &EmitArgs, max_bytes: usize) -> Result<Flags> {
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
    Ok(flags)
}

impl Input<'_> {
    /// Hands the events to `each` in chunks of at most [`CHUNK_EVENTS`]
    /// events or [`CHUNK_BYTES`], in input order.
    fn chunks(&self, mut each: impl FnMut(&[Event]) -> Result<()>) -> Result<()> {
        let (file, name) = match &self.source {
            Source::One(event) => return each(std::slice::from_ref(event)),
            Source::Copy { file, name } => (file, name),
        };
        let mut chunk: Vec<Event> = Vec::new();
        let mut bytes = 0;
        input::each_object(file, name, self.max_bytes, |line, object| {
            let event = event_of(name, line, object, &self.flags, self.max_bytes)?;
            bytes += event.max_len();
            chunk.push(event);
            if chunk.len() >= CHUNK_EVENTS || bytes >= CHUNK_BYTES {
                each(&chunk)?;
                chunk.clear();
                bytes = 0;
            }
            Ok(())
        })?;
        if !chunk.is_empty() {
            each(&chunk)?;
        }
        Ok(())
    }
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
/// unless `--also-configured`), else the subscriptions in effect for its
/// SPEC. Events nothing matches are left out (the tally said so).
fn plan<'a>(
    config: &'a Config,
    events: &'a [Event],
    per_call: &'a [(Subscription, Target)],
    also_configured: bool,
) -> Plan<'a> {
    let mut by_spec = Plan::new();
    for event in events {
        let mut subs: Vec<Planned<'a>> = per_call.iter().map(|(s, t)| (s, Some(t))).collect();
        if per_call.is_empty() || also_configured {
            subs.extend(targets(config, event).into_iter().map(|s| (s, None)));
        }
        if !subs.is_empty() {
            by_spec.entry(&event.spec).or_default().push((event, subs));
        }
    }
    by_spec
}

/// Why events were not spooled: no subscription at all (with what to do
/// on a host that relays), or none that matches.
fn unmatched_note(config: &Config, first: &(String, String), count: usize) -> String {
    let (event_type, spec) = first;
    let what = match count {
        1 => format!("{event_type} for {spec}"),
        n => format!("{n} events (the first: {event_type} for {spec})"),
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
        "{what}: no subscription matches, nothing spooled (`spec-notify check --spec {spec}` shows which subscriptions it has and what they take)"
    )
}

/// One warning per subscription that will get jobs but has no secret yet.
fn warn_missing_secrets(subs: &[&Subscription]) {
    let mut warned = std::collections::HashSet::new();
    for sub in subs
        .iter()
        .filter(|s| s.needs_secret() && warned.insert((s.id.as_str(), &s.secret_env)))
    {
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
fn warn_held_back(config: &Config, subs: &[&Subscription]) {
    let spool = Spool::new(&config.spool_dir);
    let mut warned = std::collections::HashSet::new();
    for sub in subs.iter().filter(|s| warned.insert(s.id.as_str())) {
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

/// What a SPEC's share of the batch has come to so far.
#[derive(Default)]
struct Written {
    /// Its jobs written so far.
    jobs: usize,
    /// Whether its pending jobs were made room for.
    made_room: bool,
    /// Jobs moved or written to dead-letter for spool-overflow.
    shed: usize,
}

/// Writes the jobs of every event, chunk by chunk and SPEC by SPEC, and
/// returns what it wrote (to be printed). Where a SPEC's pending jobs and
/// its share of the batch pass `max_spool_jobs` (a single event, or
/// `--shed-oldest`), its oldest pending jobs go to dead-letter first, and
/// the batch's own oldest jobs beyond the bound are written there.
fn spool_events(
    config: &Config,
    input: &Input<'_>,
    per_call: &[(Subscription, Target)],
    args: &EmitArgs,
) -> Result<Printed> {
    let spool = Spool::new(&config.spool_dir);
    let now = clock::now_ms();
    let emitted_at = clock::rfc3339(now);
    let max = config.max_spool_jobs;
    let mut written: BTreeMap<String, Written> = BTreeMap::new();
    let mut printed = Printed::new(args.json);
    let totals = &input.tally.jobs;
    let chunk = |events: &[Event]| -> Result<()> {
        for (spec, planned) in plan(config, events, per_call, args.also_configured) {
            let spec_spool = spool.spec(spec);
            // Held until the jobs are written: a SPEC's jobs appear in
            // sequence order, whoever emits at once.
            let reserved = spec_spool
                .ensure()
                .and_then(|()| spec_spool.reserve_sequence(planned.len() as u64))
                .with_context(|| format!("{} event(s) for {spec} not spooled", planned.len()))?;
            let mut jobs = build_jobs(&planned, reserved.first, now, &emitted_at);
            let total = totals.get(spec).copied().unwrap_or(jobs.len());
            let done = written.entry(spec.to_string()).or_default();
            // The batch's oldest jobs beyond the bound are dead on arrival.
            let dead = total
                .saturating_sub(max)
                .saturating_sub(done.jobs)
                .min(jobs.len());
            done.jobs += jobs.len();
            let mut over: Vec<Job> = jobs.drain(..dead).collect();
            over.iter_mut()
                .for_each(|job| spool::mark_overflow(&mut job.meta, max, now));
            if !done.made_room {
                done.made_room = true;
                let shed = spec_spool.shed_overflow(max, total.min(max), now)?;
                for warning in &shed.warnings {
                    output::warn(warning);
                }
                done.shed += shed.moved.len();
            }
            done.shed += over.len();
            spec_spool.enqueue_in(State::Dead, &over)?;
            spec_spool.enqueue(&jobs)?;
            drop(reserved);
            for job in over.into_iter().chain(jobs) {
                printed.push(&Spooled::of(job))?;
            }
        }
        Ok(())
    };
    let result = input.chunks(chunk);
    for (spec, done) in &written {
        if done.shed > 0 {
            output::warn(format_args!(
                "{spec} has more pending jobs than max_spool_jobs = {max}: moved the {} oldest to dead-letter (reason spool-overflow); see `spec-notify list {spec} --state dead`",
                done.shed
            ));
        }
    }
    result?;
    Ok(printed)
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

/// What emit prints, gathered as the jobs are written: in memory, then in
/// an unnamed temporary file past [`SPILL_AT`] bytes (a batch of many
/// jobs costs no more memory than a small one).
struct Printed {
    json: bool,
    count: usize,
    buf: Vec<u8>,
    spill: Option<std::fs::File>,
}

const SPILL_AT: usize = 4 * 1024 * 1024;

impl Printed {
    fn new(json: bool) -> Printed {
        Printed {
            json,
            count: 0,
            buf: Vec::new(),
            spill: None,
        }
    }

    fn push(&mut self, job: &Spooled) -> Result<()> {
        if self.json {
            if self.count > 0 {
                self.buf.push(b',');
            }
            serde_json::to_writer(&mut self.buf, job)?;
        } else {
            writeln!(self.buf, "{} {}", job.delivery_id, job.subscription)?;
        }
        self.count += 1;
        if self.buf.len() >= SPILL_AT {
            let spill = match &mut self.spill {
                Some(file) => file,
                None => self
                    .spill
                    .insert(tempfile::tempfile().context("failed to create a temporary file")?),
            };
            spill
                .write_all(&self.buf)
                .context("failed to write a temporary file")?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Prints `<delivery-id> <subscription>` per job (a JSON array of
    /// objects with `--json`). A closed stdout is not an error: the jobs
    /// are spooled either way, and a guardrail script must not fail for it.
    fn print(self) -> Result<()> {
        output::ignore_broken_pipe();
        match self.write() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other?),
        }
    }

    fn write(self) -> std::io::Result<()> {
        let mut out = BufWriter::new(std::io::stdout().lock());
        if self.json {
            out.write_all(b"[")?;
        }
        if let Some(mut spill) = self.spill {
            spill.rewind()?;
            std::io::copy(&mut spill, &mut out)?;
        }
        out.write_all(&self.buf)?;
        if self.json {
            out.write_all(b"]\n")?;
        }
        out.flush()
    }
}
