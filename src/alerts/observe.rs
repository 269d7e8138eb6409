//! What is true now, for each rule ([`observe`]): the conditions read from
//! the health snapshot `status` computes (`crate::health`) and from the
//! config, each with what it is about: the count, the SPECs, a summary,
//! the hint and the exact command that fixes it. Pure: no I/O, time is the
//! snapshot's.
//!
//! | condition | holds for a subscription while |
//! |---|---|
//! | dead | it has dead-lettered jobs (any reason) |
//! | expired | some of them are dead as `expired` (waited past `max_age`) |
//! | circuit-open | its circuit breaker is open |
//! | paused | it is paused (by an operator, or by the endpoint) |
//! | secret-unset | a secret or signing key its deliveries need is unset where the drain runs (only drains look) |
//! | backlog | its oldest pending job has waited longer than the rule's `backlog_age` |
//! | quarantined | (about the spool, not a subscription) files sit in quarantine |
//!
//! A rule watches the subscriptions its globs match, never its own `to`.

use std::collections::{BTreeMap, BTreeSet};

use super::evaluate::{RuleSeen, Seen};
use super::state::{Detail, SpecCount};
use crate::circuit::Circuit;
use crate::clock;
use crate::config::{AlertRule, Condition, Config};
use crate::health::{Snapshot, SubscriptionHealth};
use crate::spool::{Meta, State};

/// An alert lists at most this many SPECs (the most concerned first).
pub const MAX_SPECS: usize = 20;
/// A fix names at most this many SPECs' commands.
const MAX_COMMANDS: usize = 5;

/// How `observe` was called.
#[derive(Debug, Clone, Copy)]
pub struct Lens<'a> {
    /// What commands need to act on the same store (` --source nats`).
    pub flag: &'a str,
    /// Whether this process's environment is the drain's (unset secrets
    /// are looked at only then).
    pub secrets: bool,
}

/// What the jobs of one subscription add up to.
#[derive(Default)]
struct Jobs<'a> {
    dead: BTreeMap<String, usize>,
    expired: BTreeMap<String, usize>,
    pending: BTreeMap<String, usize>,
    /// When the longest-waiting pending job entered the queue.
    oldest_queued_ms: Option<u64>,
    newest_dead: Option<&'a Meta>,
}

/// What holds now for each rule of `config`.
pub fn observe(config: &Config, snapshot: &Snapshot, lens: Lens<'_>) -> Seen {
    let jobs = tally(snapshot);
    let ids = subscription_ids(config, snapshot);
    let mut seen = Seen::default();
    for rule in &config.alerts {
        let mut out = RuleSeen::default();
        if !lens.secrets {
            out.unobserved.push(Condition::SecretUnset);
        }
        for condition in &rule.on {
            if !condition.per_subscription() {
                if let Some(detail) = quarantined(snapshot, lens) {
                    out.active.insert((None, *condition), detail);
                }
                continue;
            }
            for id in ids.iter().filter(|id| rule.watches(id)) {
                let health = snapshot.subscription(id);
                let none = Jobs::default();
                let jobs = jobs.get(id.as_str()).unwrap_or(&none);
                let detail = match condition {
                    Condition::Dead => dead(id, jobs, lens),
                    Condition::Expired => expired(id, jobs, lens),
                    Condition::CircuitOpen => health.and_then(|h| circuit_open(h, jobs, lens)),
                    Condition::Paused => health.and_then(|h| paused(h, jobs, lens)),
                    Condition::SecretUnset if lens.secrets => secret_unset(config, id, jobs, lens),
                    Condition::SecretUnset => None,
                    Condition::Backlog => backlog(rule, id, health, jobs, snapshot.now_ms, lens),
                    Condition::Quarantined => None,
                };
                if let Some(detail) = detail {
                    out.active.insert((Some(id.clone()), *condition), detail);
                }
            }
        }
        seen.rules.insert(rule.id.clone(), out);
    }
    seen
}

/// Every subscription the config knows, seen in the snapshot or not.
fn subscription_ids(config: &Config, snapshot: &Snapshot) -> BTreeSet<String> {
    let mut ids: BTreeSet<String> = config
        .every_subscription()
        .map(|(_, s)| s.id.clone())
        .collect();
    ids.extend(
        snapshot
            .subscriptions
            .iter()
            .filter(|s| config.knows(&s.subscription))
            .map(|s| s.subscription.clone()),
    );
    ids
}

fn tally(snapshot: &Snapshot) -> BTreeMap<&str, Jobs<'_>> {
    let mut out: BTreeMap<&str, Jobs<'_>> = BTreeMap::new();
    for spec in &snapshot.specs {
        for entry in &spec.jobs {
            let meta = &entry.meta;
            let jobs = out.entry(meta.subscription.as_str()).or_default();
            match entry.state {
                State::Dead => {
                    *jobs.dead.entry(spec.spec.clone()).or_default() += 1;
                    if meta.dead_reason.as_deref() == Some("expired") {
                        *jobs.expired.entry(spec.spec.clone()).or_default() += 1;
                    }
                    let newer = jobs.newest_dead.is_none_or(|n| {
                        meta.finished_at_ms.unwrap_or(0) >= n.finished_at_ms.unwrap_or(0)
                    });
                    if newer {
                        jobs.newest_dead = Some(meta);
                    }
                }
                State::Pending => {
                    *jobs.pending.entry(spec.spec.clone()).or_default() += 1;
                    let at = meta.queued_at();
                    jobs.oldest_queued_ms = Some(jobs.oldest_queued_ms.map_or(at, |o| o.min(at)));
                }
                _ => {}
            }
        }
    }
    out
}

/// The SPECs concerned, most first, at most [`MAX_SPECS`].
fn specs(by_spec: &BTreeMap<String, usize>) -> Vec<SpecCount> {
    let mut out: Vec<SpecCount> = by_spec
        .iter()
        .map(|(spec, &count)| SpecCount {
            spec: spec.clone(),
            count,
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.spec.cmp(&b.spec)));
    out.truncate(MAX_SPECS);
    out
}

/// One command per SPEC (at most [`MAX_COMMANDS`]), then one that lists
/// the rest: each can be pasted into a shell as it is.
fn per_spec(
    by_spec: &BTreeMap<String, usize>,
    each: impl Fn(&str) -> String,
    rest: String,
) -> String {
    let specs = specs(by_spec);
    let mut commands: Vec<String> = specs
        .iter()
        .take(MAX_COMMANDS)
        .map(|s| each(&s.spec))
        .collect();
    if by_spec.len() > MAX_COMMANDS {
        commands.push(rest);
    }
    commands.join("; ")
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn replay_all(id: &str, by_spec: &BTreeMap<String, usize>, flag: &str) -> String {
    per_spec(
        by_spec,
        |spec| format!("spec-notify replay {spec} --all-dead --subscription {id}{flag}"),
        format!("spec-notify list --state dead --subscription {id}{flag}"),
    )
}

fn dead(id: &str, jobs: &Jobs<'_>, lens: Lens<'_>) -> Option<Detail> {
    let count: usize = jobs.dead.values().sum();
    if count == 0 {
        return None;
    }
    let latest = jobs.newest_dead.map(|m| {
        format!(
            "the latest ({}): {}",
            m.dead_reason.as_deref().unwrap_or("dead"),
            m.hint
                .as_deref()
                .or(m.last_error.as_deref())
                .unwrap_or("no hint recorded")
        )
    });
    Some(Detail {
        count,
        specs: specs(&jobs.dead),
        summary: format!(
            "{} of {id} wait for a replay or a discard",
            plural(count, "dead-lettered job", "dead-lettered jobs")
        ),
        hint: format!(
            "fix what the dead-letters' hints say, then replay them; {}",
            latest.unwrap_or_else(|| "see `spec-notify list --state dead`".into())
        ),
        command: replay_all(id, &jobs.dead, lens.flag),
    })
}

fn expired(id: &str, jobs: &Jobs<'_>, lens: Lens<'_>) -> Option<Detail> {
    let count: usize = jobs.expired.values().sum();
    if count == 0 {
        return None;
    }
    Some(Detail {
        count,
        specs: specs(&jobs.expired),
        summary: format!(
            "{} of {id} waited longer than its max_age and were dead-lettered as expired",
            plural(count, "job", "jobs")
        ),
        hint: format!(
            "they were held back (endpoint down, circuit open, paused or no drain running) until they were too old: make sure {id} delivers again (`spec-notify status`), then replay them"
        ),
        command: replay_all(id, &jobs.expired, lens.flag),
    })
}

fn waiting(jobs: &Jobs<'_>) -> (usize, Vec<SpecCount>) {
    (jobs.pending.values().sum(), specs(&jobs.pending))
}

fn circuit_open(h: &SubscriptionHealth, jobs: &Jobs<'_>, lens: Lens<'_>) -> Option<Detail> {
    let c: &Circuit = &h.circuit;
    if !c.is_open() {
        return None;
    }
    let id = &h.subscription;
    let (count, specs) = waiting(jobs);
    let error = c.last_error.as_deref().unwrap_or("no answer");
    let probe = c
        .next_probe_at_ms
        .map_or("after the cool-down".to_string(), |t| {
            format!("at {}", clock::rfc3339(t))
        });
    Some(Detail {
        count,
        specs,
        summary: format!(
            "circuit open on {id} after {} in a row ({error}); {}",
            plural(c.consecutive_failures as usize, "failure", "failures"),
            plural(count, "job waits", "jobs wait")
        ),
        hint: format!(
            "the endpoint of {id} keeps failing (latest: {error}); one probe job goes out {probe} and closes the circuit if it gets an answer: fix the endpoint, or send the backlog now with `spec-notify resume {id}`"
        ),
        command: format!("spec-notify resume {id}{}", lens.flag),
    })
}

fn paused(h: &SubscriptionHealth, jobs: &Jobs<'_>, lens: Lens<'_>) -> Option<Detail> {
    let pause = h.circuit.paused.as_ref()?;
    let id = &h.subscription;
    let (count, specs) = waiting(jobs);
    let hint = match pause.by.as_str() {
        "endpoint" => format!(
            "the endpoint of {id} asked to stop deliveries (410 Gone or `webhook-delivery: disable`): make sure it wants them again, then resume"
        ),
        _ => format!(
            "an operator paused {id} at {} ({}): resume it when the reason is over",
            clock::rfc3339(pause.at_ms),
            pause.reason
        ),
    };
    Some(Detail {
        count,
        specs,
        summary: format!(
            "{id} is paused by the {} ({}); {}",
            pause.by,
            pause.reason,
            plural(count, "job waits", "jobs wait")
        ),
        hint,
        command: format!("spec-notify resume {id}{}", lens.flag),
    })
}

fn secret_unset(config: &Config, id: &str, jobs: &Jobs<'_>, lens: Lens<'_>) -> Option<Detail> {
    let problem = config
        .every_subscription()
        .map(|(_, s)| s)
        .filter(|s| s.id == id && s.needs_secret())
        .find_map(|s| s.missing_signing_variable())?;
    let (count, specs) = waiting(jobs);
    Some(Detail {
        count,
        specs,
        summary: format!("{problem}; {}", plural(count, "job waits", "jobs wait")),
        hint: "set it in the environment the drain runs in (systemd: Environment= or EnvironmentFile=) and restart the drain; `spec-notify check` confirms".into(),
        command: format!("spec-notify check{}", lens.flag),
    })
}

fn backlog(
    rule: &AlertRule,
    id: &str,
    health: Option<&SubscriptionHealth>,
    jobs: &Jobs<'_>,
    now: u64,
    lens: Lens<'_>,
) -> Option<Detail> {
    let oldest = jobs.oldest_queued_ms?;
    if now.saturating_sub(oldest) < rule.backlog_age_ms {
        return None;
    }
    let (count, specs) = waiting(jobs);
    let circuit = health.map(|h| &h.circuit);
    let held = circuit.is_some_and(|c| c.paused.is_some() || c.is_open());
    let (why, command) = match held {
        true => (
            format!("{id} is paused or its circuit is open: resume it when the endpoint is back"),
            format!("spec-notify resume {id}{}", lens.flag),
        ),
        false => (
            format!(
                "is a drain running? if one is, {id} answers too slowly (or its rate_limit is too low) for what is emitted"
            ),
            match lens.flag {
                "" => "spec-notify drain --watch".to_string(),
                flag => format!("spec-notify drain{flag} --watch"),
            },
        ),
    };
    Some(Detail {
        count,
        specs,
        summary: format!(
            "the oldest of {} of {id} has waited {} (backlog_age {})",
            plural(count, "pending job", "pending jobs"),
            clock::age(now, oldest),
            humantime::format_duration(std::time::Duration::from_millis(rule.backlog_age_ms))
        ),
        hint: why,
        command,
    })
}

fn quarantined(snapshot: &Snapshot, lens: Lens<'_>) -> Option<Detail> {
    let by_spec: BTreeMap<String, usize> = snapshot
        .specs
        .iter()
        .filter(|s| !s.quarantined.is_empty())
        .map(|s| (s.spec.clone(), s.quarantined.len()))
        .collect();
    let count: usize = by_spec.values().sum();
    if count == 0 {
        return None;
    }
    Some(Detail {
        count,
        specs: specs(&by_spec),
        summary: format!(
            "{} could not be read as jobs and sit in quarantine",
            plural(count, "spool file", "spool files")
        ),
        hint: "each has a `.reason` file beside it in <spool_dir>/<SPEC>/quarantine/: read it, then restore the job or delete the file".into(),
        command: per_spec(
            &by_spec,
            |spec| format!("spec-notify list {spec} --state quarantine{}", lens.flag),
            format!("spec-notify list --state quarantine{}", lens.flag),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::{BreakerPolicy, Signal};
    use crate::health::{SpecHealth, SubscriptionHealth};
    use crate::spool::Entry;
    use std::path::Path;

    const NOW: u64 = 10_000_000;

    fn config(rules: &str) -> Config {
        let text = format!(
            r#"
[spec_ops.webhooks]
[[spec_ops.webhooks.subscriptions]]
id = "chat"
url = "https://chat.example/h"
dry_run = true
[[spec_ops.webhooks.subscriptions]]
id = "hook"
url = "https://hook.example/h"
secret_env = "SPEC_NOTIFY_TEST_SURELY_UNSET_SECRET"
[[spec_ops.webhooks.subscriptions]]
id = "other"
url = "https://other.example/h"
dry_run = true
{rules}"#
        );
        crate::config::parse(&text, Path::new("/x/config.toml")).unwrap()
    }

    fn entry(spec: &str, sub: &str, state: State, age_ms: u64, reason: Option<&str>) -> Entry {
        let mut meta = Meta::new(spec, sub, "a.b.c", "k", 1, NOW - age_ms);
        meta.state = state;
        meta.dead_reason = reason.map(String::from);
        meta.hint = reason.map(|r| format!("hint for {r}"));
        meta.finished_at_ms = reason.map(|_| NOW - age_ms);
        Entry {
            name: meta.file_name(),
            state,
            meta,
        }
    }

    fn sub_health(id: &str, circuit: Circuit) -> SubscriptionHealth {
        SubscriptionHealth {
            subscription: id.into(),
            configured: true,
            counts: Default::default(),
            stats: Default::default(),
            oldest_pending_ms: None,
            oldest_due_ms: None,
            circuit,
            health: crate::health::Health::Ok,
        }
    }

    fn open_circuit() -> Circuit {
        let mut c = Circuit::default();
        let fail = Signal::Failed {
            error: "timed out".into(),
            retry_after_ms: None,
        };
        for _ in 0..5 {
            c.record(&fail, false, &BreakerPolicy::default(), NOW - 1000);
        }
        c
    }

    fn snapshot(jobs: Vec<Entry>, subs: Vec<SubscriptionHealth>) -> Snapshot {
        let mut specs: BTreeMap<String, SpecHealth> = BTreeMap::new();
        for e in jobs {
            let spec = specs.entry(e.meta.spec.clone()).or_insert(SpecHealth {
                spec: e.meta.spec.clone(),
                ..SpecHealth::default()
            });
            spec.jobs.push(e);
        }
        Snapshot {
            now_ms: NOW,
            specs: specs.into_values().collect(),
            subscriptions: subs,
            ..Snapshot::default()
        }
    }

    const DRAIN: Lens<'static> = Lens {
        flag: "",
        secrets: true,
    };

    fn active(seen: &Seen, rule: &str) -> Vec<(String, Condition)> {
        seen.rules[rule]
            .active
            .keys()
            .map(|(s, c)| (s.clone().unwrap_or("*".into()), *c))
            .collect()
    }

    #[test]
    fn each_condition_reads_from_the_snapshot() {
        let c = config(
            "[[spec_ops.webhooks.alerts]]\nid = \"r\"\nto = \"chat\"\nbacklog_age = \"1h\"\n",
        );
        let mut paused = Circuit::default();
        paused.pause("maintenance", "operator", NOW - 5);
        let snap = snapshot(
            vec![
                entry("S-1", "hook", State::Dead, 10, Some("expired")),
                entry("S-2", "hook", State::Dead, 20, Some("exhausted")),
                entry("S-2", "hook", State::Pending, 2 * 3_600_000, None),
                entry("S-1", "other", State::Pending, 60_000, None),
                entry("S-1", "chat", State::Dead, 5, Some("exhausted")),
            ],
            vec![
                sub_health("chat", open_circuit()),
                sub_health("hook", open_circuit()),
                sub_health("other", paused),
            ],
        );
        let seen = observe(&c, &snap, DRAIN);
        assert_eq!(
            active(&seen, "r"),
            [
                ("hook".into(), Condition::Dead),
                ("hook".into(), Condition::CircuitOpen),
                ("hook".into(), Condition::Expired),
                ("hook".into(), Condition::SecretUnset),
                ("hook".into(), Condition::Backlog),
                ("other".into(), Condition::Paused),
            ],
            "never about its own route `chat`"
        );
        let rule = &seen.rules["r"];
        let dead = &rule.active[&(Some("hook".into()), Condition::Dead)];
        assert_eq!(dead.count, 2);
        assert_eq!(
            dead.command,
            "spec-notify replay S-1 --all-dead --subscription hook; spec-notify replay S-2 --all-dead --subscription hook"
        );
        assert!(
            dead.hint.contains("the latest (expired): hint for expired"),
            "{}",
            dead.hint
        );
        let open = &rule.active[&(Some("hook".into()), Condition::CircuitOpen)];
        assert_eq!(open.command, "spec-notify resume hook");
        assert_eq!(open.count, 1);
        assert_eq!(open.specs[0].spec, "S-2");
        assert!(
            open.summary.contains("5 failures in a row (timed out)"),
            "{}",
            open.summary
        );
        let backlog = &rule.active[&(Some("hook".into()), Condition::Backlog)];
        assert!(
            backlog.summary.contains("has waited 2h"),
            "{}",
            backlog.summary
        );
        assert_eq!(
            backlog.command, "spec-notify resume hook",
            "held by its circuit"
        );
        let unset = &rule.active[&(Some("hook".into()), Condition::SecretUnset)];
        assert!(
            unset
                .summary
                .contains("SPEC_NOTIFY_TEST_SURELY_UNSET_SECRET"),
            "{}",
            unset.summary
        );
    }

    #[test]
    fn status_does_not_look_at_secrets_and_nats_commands_say_so() {
        let c = config(
            "[[spec_ops.webhooks.alerts]]\nid = \"r\"\nto = \"chat\"\non = [\"secret-unset\", \"paused\"]\n",
        );
        let mut paused = Circuit::default();
        paused.pause("gone", "endpoint", NOW);
        let snap = snapshot(Vec::new(), vec![sub_health("hook", paused)]);
        let lens = Lens {
            flag: " --source nats",
            secrets: false,
        };
        let seen = observe(&c, &snap, lens);
        assert_eq!(active(&seen, "r"), [("hook".into(), Condition::Paused)]);
        assert_eq!(seen.rules["r"].unobserved, [Condition::SecretUnset]);
        let p = &seen.rules["r"].active[&(Some("hook".into()), Condition::Paused)];
        assert_eq!(p.command, "spec-notify resume hook --source nats");
        assert!(p.hint.contains("asked to stop deliveries"), "{}", p.hint);
    }

    #[test]
    fn quarantine_is_about_the_spool_and_globs_choose_subscriptions() {
        let c = config(
            "[[spec_ops.webhooks.alerts]]\nid = \"r\"\ncommand = [\"/bin/true\"]\non = [\"quarantined\", \"dead\"]\nsubscriptions = [\"oth*\"]\n",
        );
        let mut snap = snapshot(
            vec![
                entry("S-1", "hook", State::Dead, 10, Some("exhausted")),
                entry("S-1", "other", State::Dead, 10, Some("rejected")),
            ],
            Vec::new(),
        );
        snap.specs[0].quarantined = vec![("x.job".into(), "bad".into())];
        let seen = observe(&c, &snap, DRAIN);
        assert_eq!(
            active(&seen, "r"),
            [
                ("*".into(), Condition::Quarantined),
                ("other".into(), Condition::Dead)
            ]
        );
        let q = &seen.rules["r"].active[&(None, Condition::Quarantined)];
        assert_eq!(q.command, "spec-notify list S-1 --state quarantine");
    }
}
