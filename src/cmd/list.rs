//! `spec-notify list`: the jobs of one SPEC (or every SPEC) as a table for
//! people or one JSON array for scripts, like `postqueue -p`. The table's
//! last column wraps: when the next attempt is due, or the last error, and
//! for dead jobs the hint (what to fix, which replay command). Read-only: it
//! never moves a file; files that cannot be read are named on stderr and
//! skipped (quarantining them is the drain's job). A well-formed SPEC with
//! no spool folder yet lists nothing and exits 0. Filters answer "what
//! happened to my request": `--event`, `--idempotency-key`,
//! `--correlation-id`. A per-call job (`emit --url`) shows its redacted URL
//! in JSON and says when it goes unsigned. A pending job whose subscription
//! is paused or whose circuit is open says it is held and until when, not
//! "due now".

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};

use anyhow::{Context, Result};
use serde::Serialize;

use super::Ctx;
use crate::circuit::Circuit;
use crate::cli::{ListArgs, StateFilter};
use crate::clock;
use crate::exit::ExitCode;
use crate::output;
use crate::spool::{Meta, State};
use crate::store::{Listed, Store};

/// Why a subscription's pending jobs wait whatever their due time says:
/// subscription id → `held: paused (…)`.
type Holds = HashMap<String, String>;

/// Longest "next attempt / last error" cell in the table (it wraps over
/// several lines up to this); JSON has it all.
const DETAIL_MAX: usize = 600;

pub fn run(ctx: &Ctx, args: &ListArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    let store = super::open_store(ctx, &config, args.source, "list")?;
    if let Some(spec) = &args.spec {
        super::note_if_unknown_spec(&*store, spec, false)?;
    }
    if let Some(sub) = &args.subscription
        && !config.knows(sub)
    {
        output::warn(format_args!(
            "subscription `{sub}` is not in `{}`; showing any jobs spooled for it earlier",
            config.path.display()
        ));
    }
    let mut states = states(args.state);
    if args.subscription.is_some() {
        // Quarantined files have no readable subscription to filter on.
        states.retain(|s| *s != State::Quarantine);
    }
    let found = store.jobs(args.spec.as_deref(), &states)?;
    super::warn_unreadable(&found.unreadable);
    let items: Vec<Listed> = found
        .items
        .into_iter()
        .filter(|item| match item {
            Listed::Job { meta, .. } => wanted(args, meta),
            Listed::Quarantined { .. } => true,
        })
        .collect();
    let now = clock::now_ms();
    let mut holds = holds(&*store, &items, now);
    // FIFO lanes a dead job holds: their pending jobs say so.
    for h in store.held_lanes().unwrap_or_default() {
        holds.insert(
            line_key(&h.spec, &h.subscription),
            crate::store::lines::held_text(&h, store.flag()),
        );
    }
    warn_held_lanes(&*store, args);
    print(&items, &holds, args, now)
}

/// Says which FIFO lanes (of the SPEC and subscription asked for) a dead
/// job holds, and what frees them; a lane state that cannot be read is
/// left to `status`.
fn warn_held_lanes(store: &dyn Store, args: &ListArgs) {
    let Ok(held) = store.held_lanes() else {
        return;
    };
    for h in held {
        if args.spec.as_ref().is_some_and(|s| *s != h.spec)
            || args
                .subscription
                .as_ref()
                .is_some_and(|s| *s != h.subscription)
        {
            continue;
        }
        output::warn(format_args!(
            "FIFO lane {} of {} is held by dead job {}: its pending jobs wait until `spec-notify replay {} --delivery-id {}{flag}` or `spec-notify discard {} --delivery-id {}{flag}`",
            h.subscription,
            h.spec,
            h.delivery_id,
            h.spec,
            h.delivery_id,
            h.spec,
            h.delivery_id,
            flag = store.flag(),
        ));
    }
}

/// The holds of the subscriptions with pending jobs among `items`. A
/// circuit that cannot be read holds nothing here (`status` reports it).
fn holds(store: &dyn Store, items: &[Listed], now: u64) -> Holds {
    let mut holds = Holds::new();
    let Ok(health) = store.health() else {
        return holds;
    };
    for item in items {
        if let Listed::Job {
            state: State::Pending,
            meta,
            ..
        } = item
            && !holds.contains_key(&meta.subscription)
            && let Some(hold) = health
                .circuit(&meta.subscription)
                .ok()
                .and_then(|c| hold(&c, now))
        {
            holds.insert(meta.subscription.clone(), hold);
        }
    }
    holds
}

/// `held: paused (reason)`, `held: circuit open, next probe at …`; `None`
/// when the circuit lets jobs go.
fn hold(circuit: &Circuit, now: u64) -> Option<String> {
    if let Some(pause) = &circuit.paused {
        return Some(format!(
            "held: paused ({}; `spec-notify resume` sends again)",
            pause.reason
        ));
    }
    if !circuit.is_open() {
        return None;
    }
    Some(match circuit.next_probe_at_ms {
        Some(at) if at > now => format!(
            "held: circuit open, next probe at {} (in {})",
            clock::rfc3339(at),
            clock::age(at, now)
        ),
        _ => "held: circuit open, probe due now".to_string(),
    })
}

fn print(items: &[Listed], holds: &Holds, args: &ListArgs, now: u64) -> Result<ExitCode> {
    let mut out = BufWriter::new(io::stdout().lock());
    if args.json {
        write_json(&mut out, items, holds)?;
    } else {
        write_table(&mut out, items, holds, now, args.spec.is_none())?;
    }
    out.flush().context("failed to write to stdout")?;
    Ok(ExitCode::Success)
}

fn states(filter: StateFilter) -> Vec<State> {
    match filter {
        StateFilter::Pending => vec![State::Pending],
        StateFilter::Active => vec![State::Active],
        StateFilter::Delivered => vec![State::Delivered],
        StateFilter::Dead => vec![State::Dead],
        StateFilter::Quarantine => vec![State::Quarantine],
        StateFilter::All => vec![
            State::Pending,
            State::Active,
            State::Delivered,
            State::Dead,
            State::Quarantine,
        ],
    }
}

/// Whether a job passes every filter given.
fn wanted(args: &ListArgs, meta: &Meta) -> bool {
    let is = |filter: &Option<String>, value: Option<&str>| {
        filter.as_deref().is_none_or(|f| Some(f) == value)
    };
    is(&args.subscription, Some(&meta.subscription))
        && is(&args.idempotency_key, Some(&meta.idempotency_key))
        && is(&args.correlation_id, meta.correlation_id.as_deref())
        && args
            .event
            .as_deref()
            .is_none_or(|p| crate::config::event_pattern_matches(p, &meta.event_type))
}

/// A per-call job's target as shown: the URL redacted, never a secret.
#[derive(Serialize)]
struct JsonTarget<'a> {
    url: String,
    signed: bool,
    secret_env: Option<&'a str>,
    signature: Option<&'a str>,
    format: Option<&'a str>,
    allow_private_networks: bool,
}

/// The JSON shape of one item; quarantined files fill what their name tells.
#[derive(Serialize)]
struct JsonItem<'a> {
    delivery_id: Option<&'a str>,
    spec: &'a str,
    subscription: Option<&'a str>,
    event_type: Option<&'a str>,
    state: State,
    attempts: u32,
    created_at: Option<String>,
    next_attempt_at: Option<String>,
    last_attempt_at: Option<String>,
    last_status: Option<u16>,
    last_error: Option<&'a str>,
    dead_reason: Option<&'a str>,
    hint: Option<&'a str>,
    finished_at: Option<String>,
    sequence: Option<u64>,
    idempotency_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<&'a str>,
    /// For `emit --url` jobs only.
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<JsonTarget<'a>>,
    /// Why a pending job waits past its due time (pause, open circuit).
    #[serde(skip_serializing_if = "Option::is_none")]
    held: Option<&'a str>,
    replays: u32,
    file: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

fn json_item<'a>(item: &'a Listed, holds: &'a Holds) -> JsonItem<'a> {
    match item {
        Listed::Job { state, name, meta } => {
            let waiting = matches!(state, State::Pending | State::Active);
            JsonItem {
                delivery_id: Some(&meta.delivery_id),
                spec: &meta.spec,
                subscription: Some(&meta.subscription),
                event_type: Some(&meta.event_type),
                state: *state,
                attempts: meta.attempts,
                created_at: Some(clock::rfc3339(meta.created_at_ms)),
                next_attempt_at: waiting.then(|| clock::rfc3339(meta.next_attempt_at_ms)),
                last_attempt_at: meta.last_attempt_at_ms.map(clock::rfc3339),
                last_status: meta.last_status,
                last_error: meta.last_error.as_deref(),
                dead_reason: meta.dead_reason.as_deref(),
                hint: meta.hint.as_deref(),
                finished_at: meta.finished_at_ms.map(clock::rfc3339),
                sequence: Some(meta.sequence),
                idempotency_key: Some(&meta.idempotency_key),
                correlation_id: meta.correlation_id.as_deref(),
                target: meta.target.as_ref().map(|t| JsonTarget {
                    url: crate::config::shown_per_call_url(&t.url),
                    signed: t.secret_env.is_some(),
                    secret_env: t.secret_env.as_deref(),
                    signature: t
                        .secret_env
                        .as_ref()
                        .map(|_| t.signature.as_deref().unwrap_or("speckit")),
                    format: t.format.as_deref(),
                    allow_private_networks: t.allow_private_networks,
                }),
                held: held(*state, meta, holds),
                replays: meta.replays,
                file: name,
                reason: None,
            }
        }
        Listed::Quarantined { spec, file, reason } => {
            let parsed = crate::spool::parse_name(file);
            JsonItem {
                delivery_id: parsed.map(|(_, id)| id),
                spec,
                subscription: None,
                event_type: None,
                state: State::Quarantine,
                attempts: 0,
                created_at: None,
                next_attempt_at: None,
                last_attempt_at: None,
                last_status: None,
                last_error: None,
                dead_reason: None,
                hint: None,
                finished_at: None,
                sequence: parsed.map(|(seq, _)| seq),
                idempotency_key: None,
                correlation_id: None,
                target: None,
                held: None,
                replays: 0,
                file,
                reason: Some(reason),
            }
        }
    }
}

/// One JSON array, one object per line: valid JSON that `grep` and `head` still read.
fn write_json(out: &mut impl Write, items: &[Listed], holds: &Holds) -> Result<()> {
    if items.is_empty() {
        writeln!(out, "[]")?;
        return Ok(());
    }
    out.write_all(b"[\n")?;
    for (i, item) in items.iter().enumerate() {
        serde_json::to_writer(&mut *out, &json_item(item, holds))?;
        out.write_all(if i + 1 < items.len() { b",\n" } else { b"\n" })?;
    }
    out.write_all(b"]\n")?;
    Ok(())
}

fn write_table(
    out: &mut impl Write,
    items: &[Listed],
    holds: &Holds,
    now: u64,
    with_spec: bool,
) -> Result<()> {
    if items.is_empty() {
        writeln!(out, "no jobs")?;
        return Ok(());
    }
    let mut header = vec![
        "DELIVERY ID",
        "SUBSCRIPTION",
        "EVENT",
        "STATE",
        "ATTEMPTS",
        "AGE",
        "NEXT ATTEMPT / LAST ERROR / HINT",
    ];
    if with_spec {
        header.insert(0, "SPEC");
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            let mut row = table_row(item, holds, now);
            if !with_spec {
                row.remove(0);
            }
            row
        })
        .collect();
    output::table_wrapped(out, &header, &rows, output::terminal_width())?;
    writeln!(out, "-- {}", summary(items))?;
    Ok(())
}

fn table_row(item: &Listed, holds: &Holds, now: u64) -> Vec<String> {
    match item {
        Listed::Job { state, meta, .. } => vec![
            meta.spec.clone(),
            meta.delivery_id.clone(),
            subscription_cell(meta),
            meta.event_type.clone(),
            state.dir_name().to_string(),
            meta.attempts.to_string(),
            clock::age(now, meta.created_at_ms),
            shorten(&detail(*state, meta, held(*state, meta, holds), now)),
        ],
        Listed::Quarantined { spec, file, reason } => vec![
            spec.clone(),
            shorten(file),
            "-".into(),
            "-".into(),
            "quarantine".into(),
            "-".into(),
            "-".into(),
            shorten(reason),
        ],
    }
}

/// The subscription id; a per-call job without a secret says it is unsigned.
fn subscription_cell(meta: &Meta) -> String {
    match &meta.target {
        Some(t) if t.secret_env.is_none() => format!("{} (unsigned)", meta.subscription),
        _ => meta.subscription.clone(),
    }
}

/// A pending job due this long ago reads `overdue`, not `due now`.
const OVERDUE_AFTER_MS: u64 = 60_000;

/// The key of a FIFO line's hold among [`Holds`] (a subscription's is its id).
fn line_key(spec: &str, subscription: &str) -> String {
    format!("{subscription}\n{spec}")
}

/// The hold of a pending job: its FIFO line's, or its subscription's.
fn held<'a>(state: State, meta: &Meta, holds: &'a Holds) -> Option<&'a str> {
    (state == State::Pending)
        .then(|| {
            holds
                .get(&line_key(&meta.spec, &meta.subscription))
                .or_else(|| holds.get(&meta.subscription))
                .map(String::as_str)
        })
        .flatten()
}

/// When a pending job goes next (or what holds it), or why a finished one
/// ended where it did.
fn detail(state: State, meta: &Meta, hold: Option<&str>, now: u64) -> String {
    let last = match (meta.last_status, meta.last_error.as_deref()) {
        // The error of an HTTP answer is its status: said once.
        (Some(status), Some(error)) if error == format!("HTTP {status}") => Some(error.to_string()),
        (Some(status), Some(error)) => Some(format!("HTTP {status}: {error}")),
        (Some(status), None) => Some(format!("HTTP {status}")),
        (None, Some(error)) => Some(error.to_string()),
        (None, None) => None,
    };
    match state {
        State::Pending => {
            // A time already past is never shown as the next one: a job
            // waiting well beyond it waits for a drain to run.
            let when = if let Some(hold) = hold {
                hold.to_string()
            } else if meta.next_attempt_at_ms.saturating_add(OVERDUE_AFTER_MS) <= now {
                format!("overdue {}", clock::age(now, meta.next_attempt_at_ms))
            } else if meta.next_attempt_at_ms <= now {
                "due now".to_string()
            } else {
                format!("next in {}", clock::age(meta.next_attempt_at_ms, now))
            };
            match last {
                // The pause the endpoint asked for is the hold itself.
                Some(last) if hold.is_some() && last.ends_with("subscription paused") => when,
                Some(last) => format!("{when} (last: {last})"),
                None => when,
            }
        }
        State::Active => format!("in flight (attempt {})", meta.attempts + 1),
        State::Delivered => last.map_or_else(|| "delivered".into(), |l| format!("delivered ({l})")),
        State::Dead | State::Quarantine => {
            let reason = meta.dead_reason.as_deref().unwrap_or("dead");
            let why = match last {
                Some(last) => format!("{reason}: {last}"),
                None => reason.to_string(),
            };
            match &meta.hint {
                Some(hint) => format!("{why} — {hint}"),
                None => why,
            }
        }
    }
}

/// One printable line (control characters become spaces) of at most
/// [`DETAIL_MAX`] characters; the table wraps it.
fn shorten(text: &str) -> String {
    let clean = output::one_line(text);
    if clean.chars().count() <= DETAIL_MAX {
        return clean;
    }
    let mut cut: String = clean.chars().take(DETAIL_MAX - 1).collect();
    cut.push('…');
    cut
}

/// `5 jobs: 3 pending, 2 dead`
fn summary(items: &[Listed]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for item in items {
        let state = match item {
            Listed::Job { state, .. } => state.dir_name(),
            Listed::Quarantined { .. } => "quarantined",
        };
        match counts.iter_mut().find(|(s, _)| *s == state) {
            Some((_, n)) => *n += 1,
            None => counts.push((state, 1)),
        }
    }
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let noun = if items.len() == 1 { "job" } else { "jobs" };
    format!("{} {noun}: {}", items.len(), parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_say_when_or_why() {
        let mut meta = Meta::new("S", "sub", "a.b.c", "k", 1, 1_000);
        assert_eq!(detail(State::Pending, &meta, None, 2_000), "due now");
        assert_eq!(
            detail(State::Pending, &meta, Some("held: paused (x)"), 2_000),
            "held: paused (x)"
        );
        meta.next_attempt_at_ms = 300_000;
        meta.last_status = Some(503);
        assert_eq!(
            detail(State::Pending, &meta, None, 0),
            "next in 5m (last: HTTP 503)"
        );
        assert_eq!(
            detail(State::Pending, &meta, None, 300_000 + 3_600_000),
            "overdue 60m (last: HTTP 503)",
            "a time already past is never the next one"
        );
        meta.dead_reason = Some("exhausted".into());
        assert_eq!(detail(State::Dead, &meta, None, 0), "exhausted: HTTP 503");
        meta.last_error = Some("HTTP 503".into());
        assert_eq!(
            detail(State::Dead, &meta, None, 0),
            "exhausted: HTTP 503",
            "the status is said once"
        );
        meta.last_status = Some(410);
        meta.last_error = Some("endpoint answered 410 Gone: subscription paused".into());
        assert_eq!(
            detail(State::Pending, &meta, Some("held: paused (x)"), 0),
            "held: paused (x)"
        );
        meta.last_status = Some(503);
        meta.last_error = None;
        meta.hint =
            Some("check the receiver, then run `spec-notify replay S --delivery-id x`".into());
        assert_eq!(
            detail(State::Dead, &meta, None, 0),
            "exhausted: HTTP 503 — check the receiver, then run `spec-notify replay S --delivery-id x`"
        );
    }

    #[test]
    fn holds_name_the_pause_or_the_next_probe() {
        let mut c = Circuit::default();
        assert_eq!(hold(&c, 0), None);
        c.state = crate::circuit::CircuitState::Open;
        c.next_probe_at_ms = Some(60_000);
        assert_eq!(
            hold(&c, 0).unwrap(),
            "held: circuit open, next probe at 1970-01-01T00:01:00.000Z (in 60s)"
        );
        assert_eq!(
            hold(&c, 60_000).unwrap(),
            "held: circuit open, probe due now"
        );
        c.pause("INC-1", "operator", 0);
        assert_eq!(
            hold(&c, 0).unwrap(),
            "held: paused (INC-1; `spec-notify resume` sends again)"
        );
    }

    #[test]
    fn table_cells_are_one_short_line() {
        assert_eq!(shorten("a\nb\x1b[31m"), "a b\\u{1b}[31m");
        let long = "é".repeat(2 * DETAIL_MAX);
        let cut = shorten(&long);
        assert_eq!(cut.chars().count(), DETAIL_MAX);
        assert!(cut.ends_with('…'));
    }
}
