//! The attempt step of a job's path, as in Svix's worker: route → sign →
//! send → decide → record (each attempt a new span of the event's trace,
//! when it has one). Each step is a small function of its inputs; what the
//! answer says about the endpoint goes back to the circuit breaker.
//! No locks and no spool: `drain::job` claims before and settles after.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::circuit;
use crate::clock;
use crate::config::{Config, Subscription};
use crate::deliver::{self, Answer, AttemptId};
use crate::evidence::{Outcome, Record, excerpt};
use crate::retry::{self, Class, Verdict};
use crate::sign::Signer;
use crate::spool::{Job, Meta, State};
use crate::trace;

/// What this run can do with a subscription's jobs, with the subscription
/// in effect for them (a SPEC's overrides applied, or a per-call target).
pub enum Route {
    Send {
        sub: Subscription,
        /// `None`: an unsigned per-call target. (Boxed: ed25519 keys are
        /// large, and most routes are matched, not sent.)
        signer: Option<Box<Signer>>,
    },
    DryRun {
        sub: Subscription,
    },
    /// Leave pending (missing secret, inactive): the reason is reported once.
    Hold,
}

impl Route {
    pub fn sub(&self) -> Option<&Subscription> {
        match self {
            Route::Send { sub, .. } | Route::DryRun { sub } => Some(sub),
            Route::Hold => None,
        }
    }
}

/// A route and, when it holds jobs for a reason a person must fix, that reason.
pub struct Routed {
    pub route: Route,
    pub problem: Option<String>,
    /// The subscription's URL as evidence shows it, worked out once (not
    /// per delivery).
    pub shown_url: String,
}

/// The route of one subscription as it is in effect.
pub fn route(sub: &Subscription) -> Routed {
    let (route, problem) = match (sub.active, sub.dry_run) {
        (false, _) => (Route::Hold, None),
        (true, true) => (Route::DryRun { sub: sub.clone() }, None),
        (true, false) if sub.unsigned() => match sub.environment_problems().into_iter().next() {
            None => (
                Route::Send {
                    sub: sub.clone(),
                    signer: None,
                },
                None,
            ),
            Some(problem) => (Route::Hold, Some(problem)),
        },
        (true, false) => match sub.signer() {
            Ok(signer) => (
                Route::Send {
                    sub: sub.clone(),
                    signer: Some(Box::new(signer)),
                },
                None,
            ),
            Err(problem) => (Route::Hold, Some(problem)),
        },
    };
    Routed {
        route,
        problem: problem.map(|p| format!("{p}; its jobs stay pending")),
        shown_url: sub.shown_url(),
    }
}

/// Routes by scope, then subscription id: scope `""` holds the global
/// subscriptions, each `specs` pattern its own effective ones.
pub type Routes = HashMap<String, HashMap<String, Arc<Routed>>>;

/// Every configured subscription's route in every scope, and the problems
/// (unset secrets) that hold jobs, each once.
pub fn routes(config: &Config) -> (Routes, Vec<String>) {
    let mut routes = Routes::new();
    let mut problems = Vec::new();
    for (scope, sub) in config.every_subscription() {
        let routed = route(sub);
        if let Some(problem) = &routed.problem
            && !problems.contains(problem)
        {
            problems.push(problem.clone());
        }
        routes
            .entry(scope.unwrap_or_default().to_string())
            .or_default()
            .insert(sub.id.clone(), Arc::new(routed));
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
/// subscription to be paused. An event emitted under a trace context goes
/// out as a new span of that trace, logged with the attempt.
pub fn attempt(
    agent: &ureq::Agent,
    job: &mut Job,
    sub: &Subscription,
    shown_url: &str,
    signer: Option<&Signer>,
) -> Attempted {
    let attempt = job.meta.attempts.saturating_add(1);
    let started = clock::now_ms();
    let span = trace::Context::from_envelope(&job.body).map(|c| c.child());
    let mut id = attempt_id(&job.meta, attempt, started);
    id.trace = span.as_ref();
    let timeout = Duration::from_millis(sub.retry.per_request_timeout_ms);
    let (answer, latency) = match deliver::request(sub, signer, id, &job.body) {
        Ok(request) => deliver::send(agent, &sub.url, &request.headers, &request.body, timeout),
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
    let mut record = record_for(&job.meta, shown_url, attempt, started);
    record.traced(span.as_ref());
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
        trace: None,
    }
}

fn record_for(meta: &Meta, shown_url: &str, attempt: u32, at_ms: u64) -> Record {
    Record::for_job(meta, shown_url.to_string(), attempt, at_ms, Outcome::DryRun)
}

/// A dry run: logs the would-be request (unsigned) and counts the job done.
pub fn dry_run(job: &mut Job, sub: &Subscription, shown_url: &str) -> Record {
    let now = clock::now_ms();
    let attempt = job.meta.attempts.saturating_add(1);
    let span = trace::Context::from_envelope(&job.body).map(|c| c.child());
    let mut id = attempt_id(&job.meta, attempt, now);
    id.trace = span.as_ref();
    let headers = deliver::headers(sub, None, id, &job.body).unwrap_or_default();
    let mut record = record_for(&job.meta, shown_url, attempt, now);
    record.traced(span.as_ref());
    record.request = Some(json!({
        "method": "POST",
        "url": shown_url,
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
