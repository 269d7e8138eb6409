//! The decision, as a pure function: given the rules, what is true now
//! ([`Seen`], from `super::observe`) and the previous state, the new state
//! and the notifications to send (pushed to its outbox). Alertmanager's
//! model: one alert per (rule, subscription, condition) while it lasts;
//! its first notification when it starts, a repeat each `repeat_interval`
//! while it lasts, one resolution (with `send_resolved`) when it clears.

use std::collections::BTreeMap;

use super::state::{self, AlertState, Detail, Firing, Notice, Run, Status};
use crate::config::{AlertRule, Condition};

/// What one alert is about: a subscription (or the spool) and a condition.
pub type Subject = (Option<String>, Condition);

/// What is true now, by rule id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seen {
    pub rules: BTreeMap<String, RuleSeen>,
}

/// What is true now for one rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleSeen {
    /// Every alert that holds now, with what it is about.
    pub active: BTreeMap<Subject, Detail>,
    /// Conditions this evaluator cannot look at (an unset secret, from a
    /// `status` run in another environment than the drain's): their alerts
    /// stay as they are, neither started nor resolved.
    pub unobserved: Vec<Condition>,
}

/// Changes `state` to what the rules say about `seen` at `now`, pushing a
/// notice per notification to its outbox; returns how many. Alerts of
/// rules no longer configured are forgotten without a word (there is no
/// route left to tell).
pub fn evaluate(rules: &[AlertRule], seen: &Seen, state: &mut AlertState, now: u64) -> usize {
    let before = state.outbox.len() + state.dropped as usize;
    state
        .firing
        .retain(|_, f| rules.iter().any(|r| r.id == f.rule));
    for rule in rules {
        let Some(seen) = seen.rules.get(&rule.id) else {
            continue; // not looked at this time: nothing changes
        };
        for ((subscription, condition), detail) in &seen.active {
            let key = state::key(&rule.id, subscription.as_deref(), *condition);
            match state.firing.get_mut(&key) {
                None => {
                    let firing = Firing {
                        rule: rule.id.clone(),
                        subscription: subscription.clone(),
                        condition: *condition,
                        since_ms: now,
                        last_sent_ms: now,
                        repeats: 0,
                        detail: detail.clone(),
                    };
                    let notice = notice(rule, &firing, Status::Firing, now);
                    state.firing.insert(key, firing);
                    state.push(notice);
                }
                Some(firing) => {
                    firing.detail = detail.clone();
                    if now.saturating_sub(firing.last_sent_ms) >= rule.repeat_interval_ms {
                        firing.repeats += 1;
                        firing.last_sent_ms = now;
                        let notice = notice(rule, firing, Status::Firing, now);
                        state.push(notice);
                    }
                }
            }
        }
        let cleared: Vec<String> = state
            .firing
            .iter()
            .filter(|(_, f)| f.rule == rule.id)
            .filter(|(_, f)| !seen.unobserved.contains(&f.condition))
            .filter(|(_, f)| {
                !seen
                    .active
                    .contains_key(&(f.subscription.clone(), f.condition))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in cleared {
            let Some(firing) = state.firing.remove(&key) else {
                continue;
            };
            if rule.send_resolved {
                let notice = notice(rule, &firing, Status::Resolved, now);
                state.push(notice);
            }
        }
    }
    (state.outbox.len() + state.dropped as usize).saturating_sub(before)
}

/// The notification of `firing` by `rule`'s routes.
fn notice(rule: &AlertRule, firing: &Firing, status: Status, now: u64) -> Notice {
    let repeat = match status {
        Status::Firing => firing.repeats,
        Status::Resolved => 0,
    };
    Notice {
        id: state::notice_id(
            &rule.id,
            firing.subscription.as_deref(),
            firing.condition,
            firing.since_ms,
            status,
            repeat,
        ),
        status,
        rule: rule.id.clone(),
        subscription: firing.subscription.clone(),
        condition: firing.condition,
        since_ms: firing.since_ms,
        at_ms: now,
        repeat,
        detail: firing.detail.clone(),
        to: rule.to.clone(),
        command: (!rule.command.is_empty()).then(|| Run {
            argv: rule.command.clone(),
            timeout_ms: rule.command_timeout_ms,
        }),
        claim: None,
        test: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn rule(id: &str, send_resolved: bool) -> AlertRule {
        AlertRule {
            id: id.into(),
            on: Condition::ALL.to_vec(),
            backlog_age_ms: 15 * MIN,
            to: Some("chat".into()),
            command: Vec::new(),
            command_timeout_ms: 30_000,
            repeat_interval_ms: 60 * MIN,
            send_resolved,
            subscriptions: Vec::new(),
        }
    }

    fn seen(rule: &str, active: &[(&str, Condition, usize)]) -> Seen {
        let mut out = RuleSeen::default();
        for (sub, condition, count) in active {
            out.active.insert(
                (Some(sub.to_string()), *condition),
                Detail {
                    count: *count,
                    ..Detail::default()
                },
            );
        }
        Seen {
            rules: [(rule.to_string(), out)].into(),
        }
    }

    /// The (status, subscription, condition, repeat) of each notice, then
    /// empties the outbox (as handing them over would).
    fn sent(state: &mut AlertState) -> Vec<(Status, String, Condition, u32)> {
        state
            .outbox
            .drain(..)
            .map(|n| (n.status, n.subscription.unwrap(), n.condition, n.repeat))
            .collect()
    }

    #[test]
    fn an_alert_fires_once_repeats_after_the_interval_and_resolves_once() {
        let rules = [rule("r", true)];
        let mut state = AlertState::default();
        let open = seen("r", &[("hook", Condition::CircuitOpen, 3)]);
        assert_eq!(evaluate(&rules, &open, &mut state, 0), 1);
        assert_eq!(
            sent(&mut state),
            [(Status::Firing, "hook".into(), Condition::CircuitOpen, 0)]
        );
        for t in [1, MIN, 59 * MIN] {
            assert_eq!(evaluate(&rules, &open, &mut state, t), 0, "at {t}");
        }
        let more = seen("r", &[("hook", Condition::CircuitOpen, 7)]);
        assert_eq!(evaluate(&rules, &more, &mut state, 60 * MIN), 1);
        assert_eq!(
            sent(&mut state),
            [(Status::Firing, "hook".into(), Condition::CircuitOpen, 1)]
        );
        let firing = state.firing.values().next().unwrap();
        assert_eq!((firing.since_ms, firing.detail.count), (0, 7));
        assert_eq!(evaluate(&rules, &more, &mut state, 61 * MIN), 0);
        let clear = seen("r", &[]);
        assert_eq!(evaluate(&rules, &clear, &mut state, 62 * MIN), 1);
        assert_eq!(
            sent(&mut state),
            [(Status::Resolved, "hook".into(), Condition::CircuitOpen, 0)]
        );
        assert!(state.firing.is_empty());
        assert_eq!(evaluate(&rules, &clear, &mut state, 63 * MIN), 0);
    }

    #[test]
    fn a_new_episode_gets_new_ids_and_an_evaluation_twice_the_same() {
        let rules = [rule("r", true)];
        let open = seen("r", &[("hook", Condition::Dead, 1)]);
        let mut a = AlertState::default();
        evaluate(&rules, &open, &mut a, 5);
        let mut b = AlertState::default();
        evaluate(&rules, &open, &mut b, 5);
        assert_eq!(a, b, "pure: the same inputs, the same state and ids");
        let first = a.outbox[0].id.clone();
        evaluate(&rules, &seen("r", &[]), &mut a, 6);
        evaluate(&rules, &open, &mut a, 7);
        let ids: Vec<&str> = a.outbox.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[0], first);
        assert!(ids[1] != first && ids[2] != first && ids[1] != ids[2]);
    }

    #[test]
    fn without_send_resolved_an_alert_clears_in_silence() {
        let rules = [rule("r", false)];
        let mut state = AlertState::default();
        evaluate(
            &rules,
            &seen("r", &[("hook", Condition::Paused, 1)]),
            &mut state,
            0,
        );
        sent(&mut state);
        assert_eq!(evaluate(&rules, &seen("r", &[]), &mut state, 1), 0);
        assert!(state.firing.is_empty());
    }

    #[test]
    fn what_was_not_looked_at_neither_starts_nor_resolves() {
        let rules = [rule("r", true)];
        let mut state = AlertState::default();
        evaluate(
            &rules,
            &seen("r", &[("hook", Condition::SecretUnset, 2)]),
            &mut state,
            0,
        );
        sent(&mut state);
        let mut blind = seen("r", &[]);
        blind.rules.get_mut("r").unwrap().unobserved = vec![Condition::SecretUnset];
        assert_eq!(evaluate(&rules, &blind, &mut state, 1), 0);
        assert_eq!(state.firing.len(), 1, "still firing");
        assert_eq!(
            evaluate(&rules, &Seen::default(), &mut state, 2),
            0,
            "a rule not looked at changes nothing"
        );
        assert_eq!(state.firing.len(), 1);
    }

    #[test]
    fn a_removed_rule_is_forgotten_and_each_rule_has_its_own_alerts() {
        let rules = [rule("a", true), rule("b", true)];
        let mut both = seen("a", &[("hook", Condition::Dead, 1)]);
        both.rules
            .extend(seen("b", &[("hook", Condition::Dead, 1)]).rules);
        let mut state = AlertState::default();
        assert_eq!(evaluate(&rules, &both, &mut state, 0), 2);
        sent(&mut state);
        assert_eq!(evaluate(&rules[..1], &both, &mut state, 1), 0);
        assert_eq!(state.firing.len(), 1, "b's alert is gone, in silence");
    }

    #[test]
    fn routes_travel_with_the_notice() {
        let mut r = rule("r", true);
        r.command = vec!["/bin/pager".into(), "--team".into()];
        r.command_timeout_ms = 5000;
        let mut state = AlertState::default();
        evaluate(
            &[r],
            &seen("r", &[("hook", Condition::Backlog, 9)]),
            &mut state,
            0,
        );
        let n = &state.outbox[0];
        assert_eq!(n.to.as_deref(), Some("chat"));
        assert_eq!(
            n.command,
            Some(Run {
                argv: vec!["/bin/pager".into(), "--team".into()],
                timeout_ms: 5000
            })
        );
        assert_eq!(n.detail.count, 9);
    }
}
