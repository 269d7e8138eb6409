//! The alerts' shell (the design is `crate::alerts`'s): one evaluation
//! reads the health snapshot through the store (its jobs, circuits and
//! quarantine: the attempt logs play no part), decides and claims in one
//! atomic change of the shared state, hands each claimed notice over (its
//! job spooled for the `to` subscription, its command run and logged in
//! the evidence), then settles the outbox in a second atomic change. Also
//! the sample of `spec-notify alerts test`. Never prints: what happened
//! comes back as values.

use std::collections::HashSet;

use anyhow::Result;

use super::Store;
use crate::alerts::command::{self, Ran};
use crate::alerts::state::Run;
use crate::alerts::{self, AlertJob, AlertState, Detail, Done, Lens, Notice, Status};
use crate::config::{ALERTS_SPEC, AlertRule, Condition, Config};
use crate::evidence::{Outcome, Record};
use crate::{clock, health};

/// What one evaluation did.
#[derive(Debug, Default)]
pub struct Evaluated {
    /// The notices handed over, and what became of each route.
    pub sent: Vec<Sent>,
    /// Delivery ids of the alert jobs spooled now (a one-shot drain
    /// delivers them at once).
    pub spooled: HashSet<String>,
    /// What went wrong; the next evaluation tries again.
    pub problems: Vec<String>,
    /// The state as left.
    pub state: AlertState,
}

/// One notice handed over.
#[derive(Debug)]
pub struct Sent {
    pub notice: Notice,
    /// What became of its `to` route: `spooled for chat`, `already spooled`,
    /// or why it was not.
    pub to: Option<String>,
    /// How its command ended.
    pub command: Option<Ran>,
}

impl Sent {
    /// `alert firing: rule r: circuit-open on hook: <summary> [spooled for
    /// chat; command exit 0]`.
    pub fn line(&self) -> String {
        let n = &self.notice;
        let about = n.subscription.as_deref().unwrap_or("the spool");
        let mut routes = Vec::new();
        routes.extend(self.to.clone());
        if let Some(ran) = &self.command {
            routes.push(format!("command {}", ran.describe()));
        }
        let repeat = match n.repeat {
            0 => String::new(),
            r => format!(" (reminder {r})"),
        };
        format!(
            "alert {}{repeat}: rule {}: {} on {about}: {} [{}]",
            n.status.name(),
            n.rule,
            n.condition.name(),
            n.detail.summary,
            routes.join("; ")
        )
    }
}

/// A health source without its attempt records: the conditions are read
/// from the jobs, the circuits and the quarantine, and the attempt logs are
/// most of what a snapshot costs to read. [`Store::alert_source`]'s
/// default.
pub struct JobsOnly<'a>(pub Box<dyn health::Source + 'a>);

impl health::Source for JobsOnly<'_> {
    fn specs(&self) -> Result<Vec<String>> {
        self.0.specs()
    }
    fn scan(&self, spec: &str, state: crate::spool::State) -> Result<crate::spool::Scan> {
        self.0.scan(spec, state)
    }
    fn quarantined(&self, spec: &str) -> Result<Vec<(String, String)>> {
        self.0.quarantined(spec)
    }
    fn records(
        &self,
        _spec: &str,
        _visit: &mut dyn FnMut(Record),
    ) -> Result<(crate::evidence::Skipped, String)> {
        Ok((Default::default(), String::new()))
    }
    fn circuit(&self, subscription: &str) -> Result<crate::circuit::Circuit> {
        self.0.circuit(subscription)
    }
    fn body(&self, entry: &crate::spool::Entry) -> Option<Vec<u8>> {
        self.0.body(entry)
    }
    fn keeps_delivered(&self) -> bool {
        true // delivered counts play no part in a condition
    }
    fn flag(&self) -> &'static str {
        self.0.flag()
    }
    fn gone(&self) -> &'static str {
        self.0.gone()
    }
    fn problems(
        &self,
    ) -> (
        Vec<crate::spool::Unreadable>,
        Vec<(crate::evidence::Skipped, String)>,
    ) {
        self.0.problems()
    }
}

/// `host:pid` of this process, as claims name it.
pub fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// Whether the claimer `by` (`host:pid`) is surely gone: on this host, and
/// its pid runs no process. On another host only its lease tells.
fn gone(by: &str) -> bool {
    let me = identity();
    let (Some((host, pid)), Some((my_host, _))) = (by.rsplit_once(':'), me.rsplit_once(':')) else {
        return false;
    };
    let Some(pid) = pid
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    host == my_host && rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
}

/// One evaluation at `now`; `secrets`: this process's environment is the
/// drain's (unset secrets are looked at). `snapshot`: the health of every
/// SPEC at `now`, when the caller has it already (else it is read). Nothing
/// happens without rules.
pub fn evaluate(
    store: &dyn Store,
    config: &Config,
    secrets: bool,
    snapshot: Option<&health::Snapshot>,
    now: u64,
) -> Result<Evaluated> {
    if config.alerts.is_empty() {
        return Ok(Evaluated::default());
    }
    let read;
    let snapshot = match snapshot {
        Some(snapshot) => snapshot,
        None => {
            let source = store.alert_source()?;
            let specs = source.specs()?;
            read = health::gather_from(&*source, config, &specs, None, now, &mut |_| {})?;
            &read
        }
    };
    let now = snapshot.now_ms;
    let lens = Lens {
        flag: store.flag(),
        secrets,
    };
    let seen = alerts::observe(config, snapshot, lens);
    let me = identity();
    let mut claimed = Vec::new();
    let state = store.update_alerts(&mut |state| {
        alerts::evaluate(&config.alerts, &seen, state, now);
        state.evaluated_at_ms = Some(now);
        state.evaluated_by = Some(me.clone());
        claimed = state.claim(&me, now, &gone);
    })?;
    let mut out = Evaluated {
        state,
        ..Evaluated::default()
    };
    if claimed.is_empty() {
        return Ok(out);
    }
    let mut done = Vec::new();
    for notice in claimed {
        let (d, sent) = hand_over(store, config, notice, &mut out);
        done.push(d);
        out.sent.push(sent);
    }
    match store.update_alerts(&mut |state| state.settle(&done, &me)) {
        Ok(state) => out.state = state,
        // What was handed over stays claimed until this process is gone
        // or its lease runs out: then it is handed over again (a job is
        // stored once; a command runs again).
        Err(e) => out.problems.push(format!(
            "could not record in the alert state what was handed over: {e:#}"
        )),
    }
    Ok(out)
}

/// Hands one notice over to its routes.
fn hand_over(
    store: &dyn Store,
    config: &Config,
    notice: Notice,
    out: &mut Evaluated,
) -> (Done, Sent) {
    let mut done = Done {
        id: notice.id.clone(),
        to: notice.to.is_none(),
        command: notice.command.is_none(),
    };
    let mut to = None;
    if let Some(route) = &notice.to {
        let said = match config.subscription_for(ALERTS_SPEC, route) {
            None => {
                done.to = true;
                let why = format!(
                    "not sent to `{route}`: no such subscription for {ALERTS_SPEC} any more"
                );
                out.problems.push(format!("alert {}: {why}", notice.id));
                why
            }
            Some(s) if !s.active => {
                done.to = true;
                format!("not sent to `{route}`: it is inactive")
            }
            Some(_) => {
                let job = AlertJob {
                    notice: notice.clone(),
                    subscription: route.clone(),
                };
                match store.spool_alert(&job) {
                    Ok(fresh) => {
                        done.to = true;
                        out.spooled.insert(notice.id.clone());
                        match fresh {
                            true => format!("spooled for {route}"),
                            false => format!("already spooled for {route}"),
                        }
                    }
                    Err(e) => {
                        let why = format!("could not spool it for {route}: {e:#}");
                        out.problems.push(format!(
                            "alert {} of rule {}: {why}",
                            notice.id, notice.rule
                        ));
                        why
                    }
                }
            }
        };
        to = Some(said);
    }
    let mut command = None;
    if let Some(run) = &notice.command {
        let ran = run_command(store, &notice, run);
        if let Some(problem) = ran.1 {
            out.problems.push(problem);
        }
        if !ran.0.ok() {
            out.problems.push(format!(
                "alert {} of rule {}: its command `{}` failed: {}",
                notice.id,
                notice.rule,
                program(run),
                ran.0.describe()
            ));
        }
        done.command = true; // run once; its outcome is in the evidence
        command = Some(ran.0);
    }
    (
        done,
        Sent {
            notice,
            to,
            command,
        },
    )
}

/// The program a command runs (its first word).
fn program(run: &Run) -> &str {
    run.argv.first().map_or("?", String::as_str)
}

/// Runs a notice's command with the envelope on stdin and logs the
/// outcome in the alerts SPEC's evidence; a logging failure comes back.
fn run_command(store: &dyn Store, notice: &Notice, run: &Run) -> (Ran, Option<String>) {
    let now = clock::now_ms();
    let envelope = alerts::message::envelope(notice, None, now);
    let ran = command::run(
        &run.argv,
        &envelope,
        &[
            ("SPEC_NOTIFY_ALERT_ID", notice.id.as_str()),
            ("SPEC_NOTIFY_ALERT_STATUS", notice.status.name()),
            ("SPEC_NOTIFY_ALERT_RULE", notice.rule.as_str()),
        ],
        std::time::Duration::from_millis(run.timeout_ms),
    );
    let record = Record {
        ts: clock::rfc3339(now),
        ts_ms: now,
        delivery_id: notice.id.clone(),
        spec: ALERTS_SPEC.into(),
        subscription: format!("command:{}", notice.rule),
        event_type: notice.status.event_type().into(),
        attempt: 1,
        url: program(run).to_string(),
        status: None,
        error: (!ran.ok()).then(|| ran.describe()),
        latency_ms: Some(ran.took_ms),
        outcome: Outcome::AlertCommand,
        response_body: (!ran.output.is_empty()).then(|| ran.output.clone()),
        next_attempt_at: None,
        request: None,
        trace_id: None,
        span_id: None,
    };
    let logged = store.log(&[record]).err().map(|e| {
        format!(
            "alert {}: the outcome of its command ({}) could not be logged: {e:#}",
            notice.id,
            ran.describe()
        )
    });
    (ran, logged)
}

/// A sample notice of `rule` for `alerts test`: marked as a test, with a
/// fresh random id (never a real alert's: those are version 8), about the
/// first condition and subscription it watches.
pub fn sample(config: &Config, rule: &AlertRule, now: u64) -> Notice {
    let condition = rule.on.first().copied().unwrap_or(Condition::Dead);
    let subscription = condition.per_subscription().then(|| {
        config
            .every_subscription()
            .map(|(_, s)| s.id.clone())
            .find(|id| rule.watches(id))
            .unwrap_or_else(|| "example-subscription".into())
    });
    let about = subscription.as_deref().unwrap_or("the spool");
    Notice {
        id: uuid::Uuid::new_v4().to_string(),
        status: Status::Firing,
        rule: rule.id.clone(),
        subscription: subscription.clone(),
        condition,
        since_ms: now,
        at_ms: now,
        repeat: 0,
        detail: Detail {
            count: 0,
            specs: Vec::new(),
            summary: format!(
                "test alert of rule {}: nothing is wrong ({} on {about} is only an example)",
                rule.id,
                condition.name()
            ),
            hint:
                "this is a sample from `spec-notify alerts test`: if you read it, the route works"
                    .into(),
            command: "spec-notify alerts".into(),
        },
        to: rule.to.clone(),
        command: (!rule.command.is_empty()).then(|| Run {
            argv: rule.command.clone(),
            timeout_ms: rule.command_timeout_ms,
        }),
        claim: None,
        test: true,
    }
}

/// Sends a sample of `rule` through its routes (no state is read or
/// changed); the job, if any, is spooled for the drains.
pub fn send_sample(store: &dyn Store, config: &Config, rule: &AlertRule) -> Evaluated {
    let notice = sample(config, rule, clock::now_ms());
    let mut out = Evaluated::default();
    let (_, sent) = hand_over(store, config, notice, &mut out);
    out.sent.push(sent);
    out
}
