//! The alert state every evaluator shares, as a value: the alerts firing
//! now (one per rule, subscription and condition), and the outbox of
//! notifications decided but not yet handed to their routes, each claimed
//! by at most one evaluator at a time. Pure: the store keeps it (a file
//! under the spool, a key of a NATS bucket) and changes it in one atomic
//! step; time and "is that process gone" are parameters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::config::Condition;

/// The outbox keeps at most this many notices: with every route broken for
/// long, the oldest are dropped (and counted) rather than grow the state
/// without end.
pub const MAX_OUTBOX: usize = 200;
/// How long a claim on a notice lasts beyond its command's timeout: a
/// spool write or a publish takes milliseconds; an evaluator that is still
/// at it after this is taken for dead.
pub const LEASE_MS: u64 = 60_000;

/// What the store holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// Alerts firing now, by [`key`].
    #[serde(default)]
    pub firing: BTreeMap<String, Firing>,
    /// Notifications decided and not yet handed to their routes, oldest first.
    #[serde(default)]
    pub outbox: Vec<Notice>,
    /// The last evaluation: when, and by whom (`host:pid`).
    #[serde(default)]
    pub evaluated_at_ms: Option<u64>,
    #[serde(default)]
    pub evaluated_by: Option<String>,
    /// Notices dropped from a full outbox, all time.
    #[serde(default)]
    pub dropped: u64,
}

/// One alert while it lasts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    pub rule: String,
    /// `None`: about the spool, not one subscription (quarantined files).
    pub subscription: Option<String>,
    pub condition: Condition,
    pub since_ms: u64,
    /// When its last notification (first or repeat) was decided.
    pub last_sent_ms: u64,
    /// Repeats decided after the first notification.
    pub repeats: u32,
    /// What the latest evaluation saw.
    pub detail: Detail,
}

/// What an alert is about, as last seen: for the message and the listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detail {
    /// Jobs (or files) concerned.
    pub count: usize,
    /// The SPECs concerned and their share, most first (at most
    /// [`super::observe::MAX_SPECS`]).
    pub specs: Vec<SpecCount>,
    /// One line: what is wrong.
    pub summary: String,
    /// What to do about it.
    pub hint: String,
    /// The exact command that fixes it (or shows what to fix).
    pub command: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecCount {
    pub spec: String,
    pub count: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }

    pub fn event_type(self) -> &'static str {
        match self {
            Status::Firing => crate::config::FIRING_EVENT,
            Status::Resolved => crate::config::RESOLVED_EVENT,
        }
    }
}

/// A program to run with the alert on stdin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub argv: Vec<String>,
    pub timeout_ms: u64,
}

/// One notification: a first firing, a repeat or a resolution, with the
/// routes it still has to take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// Its delivery id: the same for every evaluator ([`notice_id`]), so a
    /// notice handed over twice (after a crash) is stored once.
    pub id: String,
    pub status: Status,
    pub rule: String,
    pub subscription: Option<String>,
    pub condition: Condition,
    pub since_ms: u64,
    /// When it was decided (for a resolution: when the alert cleared).
    pub at_ms: u64,
    /// 0 for the first notification, then 1, 2… for repeats.
    pub repeat: u32,
    pub detail: Detail,
    /// The subscription it still has to be spooled for.
    pub to: Option<String>,
    /// The program it still has to be run with.
    pub command: Option<Run>,
    pub claim: Option<Claim>,
    /// A sample from `spec-notify alerts test` (never in the state).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
}

/// Who is handing a notice over, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// `host:pid`.
    pub by: String,
    pub until_ms: u64,
}

/// What handing a notice over achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub id: String,
    /// Its job is spooled (or its route is gone): nothing more to do there.
    pub to: bool,
    /// Its command ran (whatever it answered).
    pub command: bool,
}

/// The key of one alert: `rule/subscription/condition` (`*` for an alert
/// about the spool). Ids never hold `/` or `*`.
pub fn key(rule: &str, subscription: Option<&str>, condition: Condition) -> String {
    format!(
        "{rule}/{}/{}",
        subscription.unwrap_or("*"),
        condition.name()
    )
}

/// The delivery id of a notification, derived from what it is: every
/// evaluator that decides it gets the same id, so the spool (and NATS's
/// de-duplication by message id) stores it once. A UUID (version 8) made
/// of the first 16 bytes of a SHA-256.
pub fn notice_id(
    rule: &str,
    subscription: Option<&str>,
    condition: Condition,
    since_ms: u64,
    status: Status,
    repeat: u32,
) -> String {
    let text = format!(
        "spec-notify alert\0{rule}\0{}\0{}\0{since_ms}\0{}\0{repeat}",
        subscription.unwrap_or(""),
        condition.name(),
        status.name()
    );
    let digest = sha2::Sha256::digest(text.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

impl Notice {
    /// How long a claim on it lasts.
    fn lease_ms(&self) -> u64 {
        LEASE_MS + self.command.as_ref().map_or(0, |r| r.timeout_ms)
    }
}

impl AlertState {
    /// Adds a notice to the outbox, dropping the oldest beyond [`MAX_OUTBOX`].
    pub fn push(&mut self, notice: Notice) {
        if self.outbox.iter().any(|n| n.id == notice.id) {
            return;
        }
        self.outbox.push(notice);
        let over = self.outbox.len().saturating_sub(MAX_OUTBOX);
        if over > 0 {
            self.outbox.drain(..over);
            self.dropped += over as u64;
        }
    }

    /// Claims for `by` every notice nobody is handing over: unclaimed, or
    /// claimed by `by` itself earlier, or by someone whose lease ran out or
    /// who is `gone`. Returns copies of the claimed notices.
    pub fn claim(&mut self, by: &str, now: u64, gone: &dyn Fn(&str) -> bool) -> Vec<Notice> {
        let mut out = Vec::new();
        for notice in &mut self.outbox {
            let free = match &notice.claim {
                None => true,
                Some(c) => c.by == by || c.until_ms <= now || gone(&c.by),
            };
            if free {
                notice.claim = Some(Claim {
                    by: by.to_string(),
                    until_ms: now + notice.lease_ms(),
                });
                out.push(notice.clone());
            }
        }
        out
    }

    /// Takes in what handing notices over achieved: a notice with nothing
    /// left to do leaves the outbox; one with something left is released
    /// (by its claimer) for the next evaluation to try again.
    pub fn settle(&mut self, done: &[Done], by: &str) {
        for d in done {
            let Some(notice) = self.outbox.iter_mut().find(|n| n.id == d.id) else {
                continue; // dropped meanwhile
            };
            if d.to {
                notice.to = None;
            }
            if d.command {
                notice.command = None;
            }
            if notice.claim.as_ref().is_some_and(|c| c.by == by) {
                notice.claim = None;
            }
        }
        self.outbox
            .retain(|n| n.to.is_some() || n.command.is_some());
    }

    /// The alerts firing now for the rules named, by key.
    pub fn firing_for<'a>(&'a self, rules: &'a [String]) -> impl Iterator<Item = &'a Firing> {
        self.firing.values().filter(|f| rules.contains(&f.rule))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(id: &str, command: bool) -> Notice {
        Notice {
            id: id.into(),
            status: Status::Firing,
            rule: "r".into(),
            subscription: Some("s".into()),
            condition: Condition::Dead,
            since_ms: 1,
            at_ms: 1,
            repeat: 0,
            detail: Detail::default(),
            to: Some("chat".into()),
            command: command.then(|| Run {
                argv: vec!["/bin/true".into()],
                timeout_ms: 5000,
            }),
            claim: None,
            test: false,
        }
    }

    #[test]
    fn ids_are_uuids_that_depend_on_what_the_notice_is() {
        let a = notice_id("r", Some("s"), Condition::Dead, 5, Status::Firing, 0);
        assert!(crate::spool::is_delivery_id(&a), "{a}");
        assert_eq!(
            a,
            notice_id("r", Some("s"), Condition::Dead, 5, Status::Firing, 0)
        );
        for other in [
            notice_id("r", Some("s"), Condition::Dead, 5, Status::Firing, 1),
            notice_id("r", Some("s"), Condition::Dead, 5, Status::Resolved, 0),
            notice_id("r", Some("s"), Condition::Dead, 6, Status::Firing, 0),
            notice_id("r", None, Condition::Dead, 5, Status::Firing, 0),
            notice_id("r", Some("s"), Condition::Paused, 5, Status::Firing, 0),
        ] {
            assert_ne!(a, other);
        }
        assert_eq!(key("r", None, Condition::Quarantined), "r/*/quarantined");
    }

    #[test]
    fn one_claimer_at_a_time_until_its_lease_runs_out_or_it_is_gone() {
        let mut state = AlertState::default();
        state.push(notice("a", false));
        state.push(notice("b", true));
        state.push(notice("a", false));
        assert_eq!(state.outbox.len(), 2, "a notice is in the outbox once");
        let alive = |_: &str| false;
        assert_eq!(state.claim("h:1", 1000, &alive).len(), 2);
        assert!(state.claim("h:2", 1001, &alive).is_empty(), "claimed");
        assert_eq!(
            state.claim("h:1", 1002, &alive).len(),
            2,
            "its own claims again"
        );
        let after_lease = 1002 + LEASE_MS;
        let taken = state.claim("h:2", after_lease, &alive);
        assert_eq!(
            taken.len(),
            1,
            "b's lease is longer (its command's timeout)"
        );
        let gone = |by: &str| by == "h:1";
        assert_eq!(state.claim("h:3", after_lease, &gone).len(), 1);
    }

    #[test]
    fn settling_removes_what_is_done_and_releases_the_rest() {
        let mut state = AlertState::default();
        state.push(notice("a", false));
        state.push(notice("b", true));
        state.claim("h:1", 1, &|_| false);
        state.settle(
            &[
                Done {
                    id: "a".into(),
                    to: true,
                    command: false,
                },
                Done {
                    id: "b".into(),
                    to: true,
                    command: false,
                },
            ],
            "h:1",
        );
        assert_eq!(state.outbox.len(), 1);
        let b = &state.outbox[0];
        assert_eq!((b.to.as_deref(), b.command.is_some()), (None, true));
        assert_eq!(b.claim, None, "released for the next evaluation");
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_counts_them() {
        let mut state = AlertState::default();
        for i in 0..MAX_OUTBOX + 3 {
            state.push(notice(&i.to_string(), false));
        }
        assert_eq!(state.outbox.len(), MAX_OUTBOX);
        assert_eq!(state.dropped, 3);
        assert_eq!(state.outbox[0].id, "3");
    }
}
