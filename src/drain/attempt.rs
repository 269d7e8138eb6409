//! One job's way through the drain, as in Svix's worker: route → sign →
//! send → decide → record. Each step is a small function of its inputs;
//! what the answer says about the endpoint goes back to the circuit breaker.
//! No locks and no spool: the engine claims before and settles after.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::json;

use crate::circuit;
use crate::clock;
use crate::config::{Config, Subscription};
use crate::deliver::{self, Answer, AttemptId};
use crate::evidence::{Outcome, Record, excerpt};
use crate::retry::{self, Class, Verdict};
use crate::sign::Secret;
use crate::spool::{Job, Meta, State};
use crate::url::redact_url;

/// What this run can do with a subscription's jobs.
pub enum Route<'a> {
    Send {
        sub: &'a Subscription,
        secret: Secret,
        previous: Option<Secret>,
    },
    DryRun {
        sub: &'a Subscription,
    },
    /// Leave pending (missing secret, inactive): the reason is reported once.
    Hold,
}

/// Every subscription's route, and the problems (unset secrets) that hold jobs.
pub fn routes(config: &Config) -> (HashMap<&str, Route<'_>>, Vec<String>) {
    let mut routes = HashMap::new();
    let mut problems = Vec::new();
    for sub in &config.subscriptions {
        let route = match (sub.active, sub.dry_run) {
            (false, _) => Route::Hold,
            (true, true) => Route::DryRun { sub },
            (true, false) => match sub.signing_secrets() {
                Ok((secret, previous)) => Route::Send {
                    sub,
                    secret,
                    previous,
                },
                Err(problem) => {
                    problems.push(format!("{problem}; its jobs stay pending"));
                    Route::Hold
                }
            },
        };
        routes.insert(sub.id.as_str(), route);
    }
    (routes, problems)
}

/// What one attempt did: the evidence line, and what it says about the endpoint.
pub struct Attempted {
    pub record: Record,
    pub signal: circuit::Signal,
}

/// Sends the job once and updates its metadata with the verdict. A 410 or a
/// `webhook-delivery: disable` answer keeps the job pending and asks for the
/// subscription to be paused.
pub fn attempt(
    agent: &ureq::Agent,
    job: &mut Job,
    sub: &Subscription,
    secret: &Secret,
    previous: Option<&Secret>,
) -> Attempted {
    let attempt = job.meta.attempts.saturating_add(1);
    let started = clock::now_ms();
    let id = attempt_id(&job.meta, attempt, started);
    let timeout = Duration::from_millis(sub.retry.per_request_timeout_ms);
    let (answer, latency) = match deliver::headers(sub, Some((secret, previous)), id, &job.body) {
        Ok(headers) => deliver::send(agent, &sub.url, &headers, &job.body, timeout),
        Err(e) => (Answer::Failed { error: e }, Duration::ZERO),
    };
    let now = clock::now_ms();
    let signal = signal_of(&answer, now);
    let verdict = if matches!(signal, circuit::Signal::Disable { .. }) {
        Verdict::Retry { at_ms: now }
    } else {
        retry::decide(&sub.retry, attempt, &answer, now, fastrand::f64())
    };
    apply(job, &answer, &verdict, attempt, started, now, sub);
    let mut record = record_for(&job.meta, sub, attempt, started);
    record.status = answer.status();
    record.error = answer.error().map(String::from);
    record.latency_ms = Some(latency.as_millis() as u64);
    record.response_body = Some(excerpt(answer.body())).filter(|b| !b.is_empty());
    record.outcome = match verdict {
        Verdict::Delivered => Outcome::Delivered,
        Verdict::Retry { at_ms } => {
            record.next_attempt_at = Some(clock::rfc3339(at_ms));
            Outcome::Retry
        }
        Verdict::Dead { .. } => Outcome::Dead,
    };
    if let circuit::Signal::Disable { reason } = &signal {
        job.meta.last_error = Some(format!("{reason}: subscription paused"));
        job.meta.hint = Some(paused_hint(&sub.id));
        record.error = job.meta.last_error.clone();
        record.outcome = Outcome::Paused;
        record.next_attempt_at = None;
    }
    Attempted { record, signal }
}

/// What an answer says about the endpoint, for the breaker.
fn signal_of(answer: &Answer, now_ms: u64) -> circuit::Signal {
    if answer.disables() {
        let reason = match answer.status() {
            Some(410) => "endpoint answered 410 Gone".to_string(),
            _ => "endpoint sent `webhook-delivery: disable`".to_string(),
        };
        return circuit::Signal::Disable { reason };
    }
    match retry::classify(answer.status()) {
        Class::Success | Class::Terminal => circuit::Signal::Alive,
        Class::Retryable => circuit::Signal::Failed {
            error: answer.describe(),
            retry_after_ms: answer
                .retry_after()
                .and_then(|v| retry::retry_after_ms(v, now_ms)),
        },
    }
}

pub fn paused_hint(subscription: &str) -> String {
    format!(
        "subscription {subscription} is paused; fix the endpoint, then run `spec-notify resume {subscription}` to send its jobs"
    )
}

/// Records the attempt's result in the job's metadata.
fn apply(
    job: &mut Job,
    answer: &Answer,
    verdict: &Verdict,
    attempt: u32,
    started: u64,
    now: u64,
    sub: &Subscription,
) {
    let m = &mut job.meta;
    m.attempts = attempt;
    m.last_attempt_at_ms = Some(started);
    m.last_status = answer.status();
    match verdict {
        Verdict::Delivered => {
            m.state = State::Delivered;
            m.last_error = None;
            m.finished_at_ms = Some(now);
        }
        Verdict::Retry { at_ms } => {
            m.state = State::Pending;
            m.last_error = Some(answer.describe());
            m.next_attempt_at_ms = *at_ms;
        }
        Verdict::Dead { reason } => {
            m.state = State::Dead;
            m.last_error = Some(answer.describe());
            m.dead_reason = Some((*reason).into());
            m.finished_at_ms = Some(now);
            m.hint = Some(retry::dead_hint(
                answer,
                attempt,
                sub,
                &m.spec,
                &m.delivery_id,
            ));
        }
    }
}

fn attempt_id(meta: &Meta, attempt: u32, at_ms: u64) -> AttemptId<'_> {
    AttemptId {
        delivery_id: &meta.delivery_id,
        event_type: &meta.event_type,
        idempotency_key: &meta.idempotency_key,
        attempt,
        timestamp: at_ms / 1000,
    }
}

fn record_for(meta: &Meta, sub: &Subscription, attempt: u32, at_ms: u64) -> Record {
    Record::for_job(meta, redact_url(&sub.url), attempt, at_ms, Outcome::DryRun)
}

/// A dry run: logs the would-be request (unsigned) and counts the job done.
pub fn dry_run(job: &mut Job, sub: &Subscription) -> Record {
    let now = clock::now_ms();
    let attempt = job.meta.attempts.saturating_add(1);
    let id = attempt_id(&job.meta, attempt, now);
    let headers = deliver::headers(sub, None, id, &job.body).unwrap_or_default();
    let mut record = record_for(&job.meta, sub, attempt, now);
    record.request = Some(json!({
        "method": "POST",
        "url": redact_url(&sub.url),
        "headers": headers.into_iter().collect::<BTreeMap<_, _>>(),
        "body_bytes": job.body.len(),
        "note": "dry-run: not sent, not signed",
    }));
    job.meta.attempts = attempt;
    job.meta.last_attempt_at_ms = Some(now);
    job.meta.state = State::Delivered;
    job.meta.finished_at_ms = Some(now);
    job.meta.hint = Some("dry-run: logged, not sent".into());
    record
}

/// Dead-letters a job without sending it: its subscription is gone from the
/// config (`subscription-removed`) or it waited past `max_age` (`expired`).
pub fn give_up(job: &mut Job, reason: &'static str, url: String, max_age_ms: u64) -> Record {
    let now = clock::now_ms();
    let m = &mut job.meta;
    m.state = State::Dead;
    m.dead_reason = Some(reason.into());
    m.finished_at_ms = Some(now);
    let replay = format!(
        "spec-notify replay {} --delivery-id {}",
        m.spec, m.delivery_id
    );
    if reason == "expired" {
        // Whole seconds: a max_age of "30min" reads as 30m, not "0 h".
        let age = humantime::format_duration(Duration::from_secs(max_age_ms / 1000));
        m.last_error = Some(format!(
            "waited longer than max_age ({age}) for subscription `{}`",
            m.subscription
        ));
        m.hint = Some(format!(
            "the endpoint was unreachable, open or paused for {age}; fix it (see `spec-notify status`), then run `{replay}`"
        ));
    } else {
        m.last_error = Some(format!(
            "subscription `{}` is not in the config",
            m.subscription
        ));
        m.hint = Some(format!(
            "add subscription `{}` back to the config and run `{replay}`, or discard it",
            m.subscription
        ));
    }
    let mut record = Record::for_job(m, url, m.attempts, now, Outcome::Dead);
    record.error = m.last_error.clone();
    record
}
