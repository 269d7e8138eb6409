//! An alert as an event of its own: the envelope (`schemaVersion`, `event`
//! of type `spec-notify.alert.firing` or `spec-notify.alert.resolved`,
//! `spec` the reserved alerts SPEC, and an `alert` section with the rule,
//! the condition, the subscription, the SPECs and counts concerned, the
//! summary, the hint and the exact command that fixes it), and the job
//! that carries it to a `to` subscription. What a `command` reads on stdin
//! is the same envelope. Also an alert firing as the listings show it.

use serde_json::{Value, json};

use super::state::{Firing, Notice, Status};
use crate::clock;
use crate::config::ALERTS_SPEC;
use crate::envelope::SCHEMA_VERSION;
use crate::spool::{Job, Meta};

/// The `alert` section.
pub fn alert_json(n: &Notice) -> Value {
    let mut alert = json!({
        "id": n.id,
        "status": n.status.name(),
        "rule": n.rule,
        "condition": n.condition.name(),
        "subscription": n.subscription,
        "summary": n.detail.summary,
        "count": n.detail.count,
        "specs": n.detail.specs,
        "hint": n.detail.hint,
        "command": n.detail.command,
        "since": clock::rfc3339(n.since_ms),
        "at": clock::rfc3339(n.at_ms),
        "repeat": n.repeat,
    });
    if n.status == Status::Resolved {
        alert["resolved_at"] = json!(clock::rfc3339(n.at_ms));
    }
    if n.test {
        alert["test"] = json!(true);
    }
    alert
}

/// An alert firing now, as `alerts --json` and `status --json` list it.
pub fn firing_json(f: &Firing) -> Value {
    json!({
        "rule": f.rule,
        "subscription": f.subscription,
        "condition": f.condition.name(),
        "since": clock::rfc3339(f.since_ms),
        "last_sent": clock::rfc3339(f.last_sent_ms),
        "repeats": f.repeats,
        "count": f.detail.count,
        "specs": f.detail.specs,
        "summary": f.detail.summary,
        "hint": f.detail.hint,
        "command": f.detail.command,
    })
}

/// The idempotency key: the alert, its episode and which notification.
pub fn idempotency_key(n: &Notice) -> String {
    format!(
        "{ALERTS_SPEC}:{}:{}:{}-{}",
        super::state::key(&n.rule, n.subscription.as_deref(), n.condition),
        n.since_ms,
        n.status.name(),
        n.repeat
    )
}

/// The envelope bytes: compact JSON on one line, like emit's.
pub fn envelope(n: &Notice, sequence: Option<u64>, emitted_at_ms: u64) -> Vec<u8> {
    let mut event = json!({
        "type": n.status.event_type(),
        "idempotency_key": idempotency_key(n),
    });
    if n.test {
        event["test"] = json!(true);
    }
    let mut body = json!({
        "schemaVersion": SCHEMA_VERSION,
        "event": event,
        "spec": {"id": ALERTS_SPEC},
        "alert": alert_json(n),
    });
    if let Some(sequence) = sequence {
        body["sequence"] = json!(sequence);
    }
    body["emittedAt"] = json!(clock::rfc3339(emitted_at_ms));
    serde_json::to_vec(&body).expect("a JSON value always serialises")
}

/// A notice on its way to a `to` subscription.
#[derive(Debug, Clone)]
pub struct AlertJob {
    pub notice: Notice,
    pub subscription: String,
}

impl AlertJob {
    pub fn delivery_id(&self) -> &str {
        &self.notice.id
    }

    /// The job, numbered `sequence` in the alerts SPEC, made at `now`.
    pub fn job(&self, sequence: u64, now: u64) -> Job {
        let n = &self.notice;
        let mut meta = Meta::new(
            ALERTS_SPEC,
            &self.subscription,
            n.status.event_type(),
            &idempotency_key(n),
            sequence,
            now,
        );
        meta.delivery_id = n.id.clone();
        Job {
            body: envelope(n, Some(sequence), now),
            meta,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::state::{Detail, SpecCount};
    use crate::config::Condition;

    fn notice(status: Status) -> Notice {
        Notice {
            id: super::super::state::notice_id("r", Some("hook"), Condition::Dead, 1000, status, 0),
            status,
            rule: "r".into(),
            subscription: Some("hook".into()),
            condition: Condition::Dead,
            since_ms: 1000,
            at_ms: 2000,
            repeat: 0,
            detail: Detail {
                count: 3,
                specs: vec![SpecCount {
                    spec: "S-1".into(),
                    count: 3,
                }],
                summary: "3 dead".into(),
                hint: "fix it".into(),
                command: "spec-notify replay S-1 --all-dead --subscription hook".into(),
            },
            to: Some("chat".into()),
            command: None,
            claim: None,
            test: false,
        }
    }

    #[test]
    fn the_job_is_an_alert_event_of_the_alerts_spec() {
        let job = AlertJob {
            notice: notice(Status::Resolved),
            subscription: "chat".into(),
        }
        .job(7, 3000);
        assert_eq!(job.meta.spec, ALERTS_SPEC);
        assert_eq!(job.meta.subscription, "chat");
        assert_eq!(job.meta.event_type, "spec-notify.alert.resolved");
        assert!(crate::spool::is_delivery_id(&job.meta.delivery_id));
        let body: Value = serde_json::from_slice(&job.body).unwrap();
        assert_eq!(body["event"]["type"], "spec-notify.alert.resolved");
        assert_eq!(body["spec"]["id"], ALERTS_SPEC);
        assert_eq!(body["sequence"], 7);
        assert_eq!(body["alert"]["condition"], "dead");
        assert_eq!(body["alert"]["specs"][0]["spec"], "S-1");
        assert_eq!(body["alert"]["resolved_at"], "1970-01-01T00:00:02.000Z");
        assert_eq!(
            body["alert"]["command"],
            "spec-notify replay S-1 --all-dead --subscription hook"
        );
        crate::envelope::check_event_type(job.meta.event_type.as_str()).unwrap();
        crate::envelope::check_spec_id(ALERTS_SPEC).unwrap();
        crate::envelope::check_idempotency_key(&job.meta.idempotency_key).unwrap();
        // What the drain reads back from the spool.
        assert_eq!(crate::spool::Job::decode(&job.encode()).unwrap(), job);
    }
}
