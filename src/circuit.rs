//! The circuit breaker and pause switch of one subscription, as a value:
//! what it allows now, and how each answer changes it. Pure (time is a
//! parameter); the spool persists it per subscription so that every drain
//! process of a spool shares it, and the drain engine acts on it.
//!
//! Closed → (N consecutive retryable failures) → Open for a cool-down
//! (30 s, doubling on each failed probe to a cap of 10 min, never shorter
//! than the endpoint's Retry-After) → one probe job → Closed on any answer
//! that shows the endpoint alive (2xx or a terminal 4xx), Open again on a
//! retryable failure. Paused (by an operator, or by the endpoint with 410 or
//! `webhook-delivery: disable`) sends nothing until resumed.

use serde::{Deserialize, Serialize};

/// The breaker's settings for one subscription.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    /// Consecutive retryable failures that open the circuit.
    pub failures: u32,
    /// First cool-down; doubles after each failed probe.
    pub cooldown_ms: u64,
    pub max_cooldown_ms: u64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failures: 5,
            cooldown_ms: 30_000,
            max_cooldown_ms: 600_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CircuitState {
    #[default]
    Closed,
    Open,
}

/// Why and since when a subscription is paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub reason: String,
    pub at_ms: u64,
    /// `operator` (spec-notify pause) or `endpoint` (410, webhook-delivery: disable).
    pub by: String,
}

/// A subscription's shared delivery state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Circuit {
    pub state: CircuitState,
    #[serde(default)]
    pub consecutive_failures: u32,
    #[serde(default)]
    pub opened_at_ms: Option<u64>,
    /// The current cool-down (doubles on each failed probe).
    #[serde(default)]
    pub cooldown_ms: u64,
    #[serde(default)]
    pub next_probe_at_ms: Option<u64>,
    /// The whole wait before that probe when the circuit opened: the
    /// cool-down, or a longer Retry-After. A drain whose wall clock stepped
    /// waits no longer than this after it first saw the circuit open.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wait_ms: u64,
    /// A probe is in flight (by some drain) until this time.
    #[serde(default)]
    pub probe_until_ms: Option<u64>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub paused: Option<Pause>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What the circuit lets a drain do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    /// Send as many as the other limits allow.
    Send,
    /// Send exactly one job, as the probe (claim it first with [`Circuit::start_probe`]).
    Probe,
    /// Send nothing until this time (`None`: until resumed).
    Wait(Option<u64>),
}

/// A state change worth an evidence line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Opened {
        failures: u32,
        next_probe_at_ms: u64,
    },
    Probing,
    Closed,
    Paused {
        reason: String,
    },
    Resumed,
}

impl Transition {
    /// The evidence outcome name.
    pub fn name(&self) -> &'static str {
        match self {
            Transition::Opened { .. } => "circuit-open",
            Transition::Probing => "circuit-probe",
            Transition::Closed => "circuit-closed",
            Transition::Paused { .. } => "paused",
            Transition::Resumed => "resumed",
        }
    }
}

/// What an attempt's answer says about the endpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// 2xx, or a terminal 4xx: the endpoint is up and answering.
    Alive,
    /// Timeout, connection error, 5xx, 429, 408, 3xx.
    Failed {
        error: String,
        retry_after_ms: Option<u64>,
    },
    /// 410 Gone or `webhook-delivery: disable`: stop sending.
    Disable { reason: String },
}

impl Circuit {
    pub fn is_open(&self) -> bool {
        self.state == CircuitState::Open
    }

    pub fn allows(&self, now_ms: u64) -> Allow {
        if self.paused.is_some() {
            return Allow::Wait(None);
        }
        match self.state {
            CircuitState::Closed => Allow::Send,
            CircuitState::Open => {
                if let Some(until) = self.probe_until_ms.filter(|&u| u > now_ms) {
                    return Allow::Wait(Some(until));
                }
                match self.next_probe_at_ms {
                    Some(at) if at > now_ms => Allow::Wait(Some(at)),
                    _ => Allow::Probe,
                }
            }
        }
    }

    /// Claims the probe for `for_ms` (a request's timeout plus slack): no
    /// other drain probes meanwhile. False if it is not probe time.
    pub fn start_probe(&mut self, now_ms: u64, for_ms: u64) -> Option<Transition> {
        if self.allows(now_ms) != Allow::Probe {
            return None;
        }
        self.probe_until_ms = Some(now_ms.saturating_add(for_ms));
        Some(Transition::Probing)
    }

    /// Takes in what an attempt's answer said; `probe` if it was the
    /// circuit's probe (an answer to a request sent before the circuit
    /// opened only counts).
    pub fn record(
        &mut self,
        signal: &Signal,
        probe: bool,
        policy: &BreakerPolicy,
        now_ms: u64,
    ) -> Option<Transition> {
        match signal {
            Signal::Alive => {
                self.consecutive_failures = 0;
                self.probe_until_ms = None;
                self.last_error = None;
                if self.is_open() {
                    self.state = CircuitState::Closed;
                    self.opened_at_ms = None;
                    self.next_probe_at_ms = None;
                    self.cooldown_ms = 0;
                    self.wait_ms = 0;
                    return Some(Transition::Closed);
                }
                None
            }
            Signal::Failed {
                error,
                retry_after_ms,
            } => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.last_error = Some(error.clone());
                let was_probing = self.is_open();
                if was_probing && !probe {
                    return None; // sent before the circuit opened: already counted in
                }
                if !was_probing && self.consecutive_failures < policy.failures.max(1) {
                    return None;
                }
                self.cooldown_ms = if was_probing {
                    self.cooldown_ms.saturating_mul(2)
                } else {
                    policy.cooldown_ms
                }
                .clamp(1, policy.max_cooldown_ms.max(1));
                let wait = self.cooldown_ms.max(retry_after_ms.unwrap_or(0));
                self.state = CircuitState::Open;
                self.opened_at_ms.get_or_insert(now_ms);
                self.probe_until_ms = None;
                let at = now_ms.saturating_add(wait);
                self.next_probe_at_ms = Some(at);
                self.wait_ms = wait;
                Some(Transition::Opened {
                    failures: self.consecutive_failures,
                    next_probe_at_ms: at,
                })
            }
            Signal::Disable { reason } => self.pause(reason, "endpoint", now_ms),
        }
    }

    pub fn pause(&mut self, reason: &str, by: &str, now_ms: u64) -> Option<Transition> {
        if self
            .paused
            .as_ref()
            .is_some_and(|p| p.reason == reason && p.by == by)
        {
            return None; // several requests in flight said the same
        }
        self.paused = Some(Pause {
            reason: reason.into(),
            at_ms: now_ms,
            by: by.into(),
        });
        Some(Transition::Paused {
            reason: reason.into(),
        })
    }

    /// Resumes a paused subscription and closes its circuit: the operator
    /// says the endpoint is fixed.
    pub fn resume(&mut self) -> Option<Transition> {
        let was = self.paused.take().is_some() || self.is_open();
        *self = Circuit::default();
        was.then_some(Transition::Resumed)
    }

    /// How long a wait that ends at `at` (as [`Circuit::allows`] says) was
    /// meant to last: a probe in flight's window, or the cool-down.
    pub fn own_wait(&self, at: u64, probe_window_ms: u64) -> u64 {
        if self.probe_until_ms == Some(at) {
            probe_window_ms
        } else {
            self.wait_ms.max(self.cooldown_ms)
        }
    }

    /// [`Circuit::describe`] as of `now_ms`: a probe time already past
    /// reads `probe due now` (or `overdue since …`), never as the next one.
    pub fn describe_at(&self, now_ms: u64, rfc3339: impl Fn(u64) -> String) -> String {
        match (self.paused.is_some(), self.state, self.next_probe_at_ms) {
            (false, CircuitState::Open, Some(at)) if at <= now_ms => {
                let since = self.opened_at_ms.map_or("?".into(), &rfc3339);
                if now_ms - at < 60_000 {
                    format!("open since {since}, probe due now")
                } else {
                    format!(
                        "open since {since}, probe overdue since {} (a drain sends it when it runs)",
                        rfc3339(at)
                    )
                }
            }
            _ => self.describe(rfc3339),
        }
    }

    /// A one-line description for people: `closed`, `open since …, next probe at …`, `paused: …`.
    pub fn describe(&self, rfc3339: impl Fn(u64) -> String) -> String {
        if let Some(p) = &self.paused {
            return format!(
                "paused: {} (by {}, since {})",
                p.reason,
                p.by,
                rfc3339(p.at_ms)
            );
        }
        match self.state {
            CircuitState::Closed if self.consecutive_failures > 0 => {
                format!("closed ({} failures in a row)", self.consecutive_failures)
            }
            CircuitState::Closed => "closed".into(),
            CircuitState::Open => format!(
                "open since {}, next probe at {}",
                self.opened_at_ms.map_or("?".into(), &rfc3339),
                self.next_probe_at_ms.map_or("?".into(), &rfc3339)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail() -> Signal {
        Signal::Failed {
            error: "timeout".into(),
            retry_after_ms: None,
        }
    }

    #[test]
    fn a_probe_time_already_past_is_never_shown_as_the_next_one() {
        let p = BreakerPolicy::default();
        let mut c = Circuit::default();
        for _ in 0..p.failures {
            c.record(&fail(), false, &p, 1_000);
        }
        let at = c.next_probe_at_ms.unwrap();
        assert_eq!(c.wait_ms, p.cooldown_ms);
        assert_eq!(c.own_wait(at, 5_000), p.cooldown_ms);
        let fmt = |ms: u64| format!("t{ms}");
        assert!(
            c.describe_at(at - 1, fmt)
                .contains(&format!("next probe at t{at}"))
        );
        assert!(c.describe_at(at, fmt).ends_with("probe due now"));
        let late = c.describe_at(at + 3_600_000, fmt);
        assert!(
            late.contains("overdue since") && !late.contains("next probe"),
            "{late}"
        );
    }

    #[test]
    fn opens_after_n_failures_and_waits_the_cooldown() {
        let p = BreakerPolicy::default();
        let mut c = Circuit::default();
        for i in 1..p.failures {
            assert_eq!(c.record(&fail(), false, &p, 1000), None, "failure {i}");
            assert_eq!(c.allows(1000), Allow::Send);
        }
        let t = c.record(&fail(), false, &p, 1000).unwrap();
        assert_eq!(
            t,
            Transition::Opened {
                failures: 5,
                next_probe_at_ms: 31_000
            }
        );
        assert_eq!(c.allows(30_999), Allow::Wait(Some(31_000)));
        assert_eq!(c.allows(31_000), Allow::Probe);
    }

    #[test]
    fn one_probe_at_a_time_and_its_answer_decides() {
        let p = BreakerPolicy::default();
        let mut c = Circuit::default();
        for _ in 0..5 {
            c.record(&fail(), false, &p, 0);
        }
        assert_eq!(c.start_probe(30_000, 5_000), Some(Transition::Probing));
        assert_eq!(
            c.allows(30_001),
            Allow::Wait(Some(35_000)),
            "probe in flight"
        );
        assert_eq!(c.start_probe(30_001, 5_000), None);
        // The probe failed: open again for twice as long.
        let late = c.record(&fail(), false, &p, 30_500);
        assert_eq!(
            late, None,
            "a request sent before the circuit opened only counts"
        );
        let t = c.record(&fail(), true, &p, 31_000).unwrap();
        assert_eq!(
            t,
            Transition::Opened {
                failures: 7,
                next_probe_at_ms: 91_000
            }
        );
        assert_eq!(c.start_probe(91_000, 5_000), Some(Transition::Probing));
        assert_eq!(
            c.record(&Signal::Alive, true, &p, 91_500),
            Some(Transition::Closed)
        );
        assert_eq!(c.allows(91_500), Allow::Send);
        assert_eq!(c.consecutive_failures, 0);
    }

    #[test]
    fn a_dead_prober_does_not_block_probing_forever() {
        let p = BreakerPolicy::default();
        let mut c = Circuit::default();
        for _ in 0..5 {
            c.record(&fail(), false, &p, 0);
        }
        c.start_probe(30_000, 5_000).unwrap();
        assert_eq!(c.allows(35_000), Allow::Probe, "the probe's claim ran out");
    }

    #[test]
    fn cooldown_doubles_to_the_cap_and_honours_retry_after() {
        let p = BreakerPolicy {
            failures: 1,
            cooldown_ms: 100_000,
            max_cooldown_ms: 300_000,
        };
        let mut c = Circuit::default();
        c.record(&fail(), false, &p, 0);
        let mut last = 0;
        for _ in 0..4 {
            let at = c.next_probe_at_ms.unwrap();
            c.start_probe(at, 1).unwrap();
            c.record(&fail(), true, &p, at);
            last = c.next_probe_at_ms.unwrap() - at;
        }
        assert_eq!(last, 300_000);
        let mut c = Circuit::default();
        let slow = Signal::Failed {
            error: "429".into(),
            retry_after_ms: Some(500_000),
        };
        c.record(&slow, false, &p, 0);
        assert_eq!(
            c.next_probe_at_ms,
            Some(500_000),
            "never shorter than Retry-After"
        );
    }

    #[test]
    fn alive_answers_reset_the_count_and_pause_waits_for_resume() {
        let p = BreakerPolicy::default();
        let mut c = Circuit::default();
        for _ in 0..4 {
            c.record(&fail(), false, &p, 0);
        }
        c.record(&Signal::Alive, false, &p, 0);
        c.record(&fail(), false, &p, 0);
        assert_eq!(c.allows(0), Allow::Send, "count restarted");
        let t = c.record(
            &Signal::Disable {
                reason: "410 Gone".into(),
            },
            false,
            &p,
            5,
        );
        assert!(matches!(t, Some(Transition::Paused { .. })));
        assert_eq!(c.allows(u64::MAX), Allow::Wait(None));
        assert_eq!(c.resume(), Some(Transition::Resumed));
        assert_eq!(c.allows(0), Allow::Send);
        assert_eq!(c.resume(), None, "resuming twice says so");
    }
}
