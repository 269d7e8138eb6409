//! What a chat message says about an event, read from the envelope: the
//! event, stage and status (with a success/failure marker), the SPEC, the
//! pipeline attempt, the task and the evidence paths (with links under
//! `evidence_base_url`); for an alert (`spec-notify.alert.*`, see
//! `crate::alerts`), what fires or resolved, where, the SPECs and counts,
//! the hint and the command that fixes it. Values are taken as the
//! envelope has them; the platforms' renderers cut them to fit.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::Value;

use super::text::one_line;

/// The facts of one event. A missing or malformed section leaves its facts
/// empty: a message is always rendered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub event_type: String,
    pub stage: Option<String>,
    pub status: Option<String>,
    pub idempotency_key: Option<String>,
    pub spec: String,
    pub branch: Option<String>,
    pub attempt: Option<u64>,
    pub max_attempts: Option<u64>,
    pub task_id: Option<String>,
    pub task_title: Option<String>,
    pub task_status: Option<String>,
    pub consensus: Option<String>,
    pub evidence: Vec<Evidence>,
    pub sequence: Option<u64>,
    pub emitted_at: Option<String>,
    /// A `spec-notify test` delivery (or `alerts test`).
    pub test: bool,
    /// An alert's facts, for `spec-notify.alert.*` events.
    pub alert: Option<AlertFacts>,
}

/// What an alert event says (its `alert` section).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertFacts {
    /// `firing` or `resolved`.
    pub status: String,
    pub rule: String,
    pub condition: String,
    /// `None`: about the spool (quarantined files).
    pub subscription: Option<String>,
    pub count: Option<u64>,
    /// The SPECs concerned and their counts.
    pub specs: Vec<(String, Option<u64>)>,
    pub summary: Option<String>,
    pub hint: Option<String>,
    pub command: Option<String>,
    pub since: Option<String>,
    pub repeat: u64,
}

impl AlertFacts {
    fn read(alert: &Value) -> AlertFacts {
        let specs = alert
            .get("specs")
            .and_then(Value::as_array)
            .map(|specs| {
                specs
                    .iter()
                    .filter_map(|s| {
                        let spec = text(s.get("spec"))?;
                        Some((spec, s.get("count").and_then(Value::as_u64)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        AlertFacts {
            status: text(alert.get("status"))
                .unwrap_or_else(|| "firing".into())
                .to_ascii_lowercase(),
            rule: text(alert.get("rule")).unwrap_or_else(|| "?".into()),
            condition: text(alert.get("condition")).unwrap_or_else(|| "alert".into()),
            subscription: text(alert.get("subscription")),
            count: alert.get("count").and_then(Value::as_u64),
            specs,
            summary: text(alert.get("summary")),
            hint: text(alert.get("hint")),
            command: text(alert.get("command")),
            since: text(alert.get("since")),
            repeat: alert.get("repeat").and_then(Value::as_u64).unwrap_or(0),
        }
    }

    pub fn resolved(&self) -> bool {
        self.status == "resolved"
    }

    /// What it is about: a subscription, or the spool.
    pub fn about(&self) -> &str {
        self.subscription.as_deref().unwrap_or("the spool")
    }

    /// `S-1 (3), S-2 (1)`.
    pub fn specs_text(&self) -> Option<String> {
        let parts: Vec<String> = self
            .specs
            .iter()
            .map(|(spec, n)| match n {
                Some(n) => format!("{spec} ({n})"),
                None => spec.clone(),
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// One evidence path and, under `evidence_base_url`, its link.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub path: String,
    pub link: Option<String>,
}

/// How an event went, for markers and colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Success,
    Failure,
    Halt,
    /// An alert without a status: a conflict, a threshold, a stall.
    Alert,
    Info,
    Test,
}

impl Tone {
    pub fn icon(self) -> &'static str {
        match self {
            Tone::Success => "✅",
            Tone::Failure => "❌",
            Tone::Halt => "⛔",
            Tone::Alert => "⚠️",
            Tone::Info => "ℹ️",
            Tone::Test => "🧪",
        }
    }
}

/// Characters a path segment keeps as they are in a link; `/` separates
/// segments. Everything else (spaces, `|`, `<`, `>`, parentheses, brackets,
/// `#`, `?`, `%`, non-ASCII) is percent-encoded, so no platform's link
/// syntax can be broken by a path.
const PATH_KEEP: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b']')
    .add(b'(')
    .add(b')')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'*')
    .add(b'_')
    .add(b'~');

/// The link to an evidence path under `base`: `base/` + the path without a
/// leading `./` or `/`, each segment percent-encoded.
pub fn evidence_link(base: &str, path: &str) -> String {
    let relative = path.trim_start_matches("./").trim_start_matches('/');
    let encoded: Vec<String> = relative
        .split('/')
        .map(|segment| utf8_percent_encode(segment, PATH_KEEP).to_string())
        .collect();
    format!("{}/{}", base.trim_end_matches('/'), encoded.join("/"))
}

/// A string, number or boolean as text; `None` for anything else or blank.
fn text(value: Option<&Value>) -> Option<String> {
    let s = match value? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    let s = one_line(&s);
    (!s.is_empty()).then_some(s)
}

impl Facts {
    /// Reads the facts from envelope bytes; links evidence under `base`.
    pub fn read(envelope: &[u8], base: Option<&str>) -> Facts {
        let root: Value = serde_json::from_slice(envelope).unwrap_or(Value::Null);
        let at = |path: &[&str]| path.iter().try_fold(&root, |v, key| v.get(key));
        let evidence = at(&["evidence", "paths"])
            .and_then(Value::as_array)
            .map(|paths| {
                paths
                    .iter()
                    .filter_map(|p| text(Some(p)))
                    .map(|path| Evidence {
                        link: base.map(|b| evidence_link(b, &path)),
                        path,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Facts {
            event_type: text(at(&["event", "type"])).unwrap_or_else(|| "event".into()),
            stage: text(at(&["event", "stage"])),
            status: text(at(&["event", "status"])).map(|s| s.to_ascii_lowercase()),
            idempotency_key: text(at(&["event", "idempotency_key"])),
            spec: text(at(&["spec", "id"])).unwrap_or_else(|| "SPEC".into()),
            branch: text(at(&["spec", "branch"])),
            attempt: at(&["pipeline", "attempt"]).and_then(Value::as_u64),
            max_attempts: at(&["pipeline", "maxAttempts"]).and_then(Value::as_u64),
            task_id: text(at(&["task", "id"])),
            task_title: text(at(&["task", "title"])),
            task_status: text(at(&["task", "status"])),
            consensus: text(at(&["consensus", "status"])),
            evidence,
            sequence: at(&["sequence"]).and_then(Value::as_u64),
            emitted_at: text(at(&["emittedAt"])),
            test: at(&["event", "test"]) == Some(&Value::Bool(true)),
            alert: at(&["alert"])
                .filter(|a| a.is_object())
                .filter(|_| root["event"]["type"].as_str().is_some_and(is_alert_event))
                .map(AlertFacts::read),
        }
    }

    pub fn tone(&self) -> Tone {
        if self.test {
            return Tone::Test;
        }
        if let Some(alert) = &self.alert {
            return match alert.resolved() {
                true => Tone::Success,
                false => Tone::Alert,
            };
        }
        match self.status.as_deref() {
            Some("success") => Tone::Success,
            Some("failure") => Tone::Failure,
            Some("halt") => Tone::Halt,
            _ if self.is_alert() => Tone::Alert,
            _ => Tone::Info,
        }
    }

    fn is_alert(&self) -> bool {
        let (noun, verb) = self.noun_verb();
        matches!(noun, "consensus" | "cost" | "agent")
            || matches!(verb, "conflict" | "threshold" | "stalled" | "failed")
    }

    /// The event type's last two segments: `stage`, `completed`.
    fn noun_verb(&self) -> (&str, &str) {
        let mut segments = self.event_type.rsplit('.');
        let verb = segments.next().unwrap_or_default();
        match segments.next() {
            Some(noun) => (noun, verb),
            None => (verb, ""),
        }
    }

    /// The status with its marker: `✅ success`, `❌ FAILURE`, `⛔ HALT`.
    pub fn status_text(&self) -> Option<String> {
        let (icon, word) = match self.status.as_deref()? {
            "success" => (Tone::Success.icon(), "success".to_string()),
            "failure" => (Tone::Failure.icon(), "FAILURE".to_string()),
            "halt" => (Tone::Halt.icon(), "HALT".to_string()),
            other => (Tone::Info.icon(), other.to_uppercase()),
        };
        Some(format!("{icon} {word}"))
    }

    /// `2 of 3`, or just `2` without `maxAttempts`.
    pub fn attempt_text(&self) -> Option<String> {
        let attempt = self.attempt?;
        Some(match self.max_attempts {
            Some(max) => format!("{attempt} of {max}"),
            None => attempt.to_string(),
        })
    }

    /// `T61 — title`, `T61` or `title`, with `(Done)` when the task has a status.
    pub fn task_text(&self) -> Option<String> {
        let mut out = match (&self.task_id, &self.task_title) {
            (Some(id), Some(title)) => format!("{id} — {title}"),
            (Some(one), None) | (None, Some(one)) => one.clone(),
            (None, None) => return None,
        };
        if let Some(status) = &self.task_status {
            out = format!("({status}) {out}");
        }
        Some(out)
    }

    /// The evidence paths, comma-separated.
    pub fn paths(&self) -> String {
        let paths: Vec<&str> = self.evidence.iter().map(|e| e.path.as_str()).collect();
        paths.join(", ")
    }

    /// The default summary line: marker, SPEC, what happened, the status.
    /// `✅ SPEC-KIT-065: Plan stage completed — success`; for an alert,
    /// `⚠️ FIRING: circuit-open on task-tracker (rule oncall): …`.
    pub fn summary(&self) -> String {
        let icon = self.tone().icon();
        if let Some(alert) = &self.alert {
            return alert_summary(icon, alert, self.test);
        }
        if self.test {
            return format!(
                "{icon} {}: test delivery from spec-notify (no pipeline ran)",
                self.spec
            );
        }
        let (noun, verb) = self.noun_verb();
        let subject = match (noun, &self.stage, &self.task_id) {
            ("stage", Some(stage), _) => format!("{stage} stage"),
            ("task", _, Some(id)) => format!("task {id}"),
            _ => noun.replace(['-', '_'], " "),
        };
        let mut line = format!(
            "{icon} {}: {subject} {}",
            self.spec,
            verb.replace(['-', '_'], " ")
        );
        if let (Some(stage), false) = (&self.stage, noun == "stage") {
            line.push_str(&format!(" at {stage}"));
        }
        if let Some(status) = self.status_text() {
            let word = status.split_once(' ').map_or(status.as_str(), |(_, w)| w);
            line.push_str(&format!(" — {word}"));
        }
        if let (Some(attempt), true) = (self.attempt, self.attempt.unwrap_or(1) > 1) {
            line.push_str(&format!(" (attempt {attempt})"));
        }
        if let (Some(title), "task") = (&self.task_title, noun) {
            line.push_str(&format!(": {}", super::text::cut(title, 200)));
        }
        line.trim_end().to_string()
    }
}

/// Whether an event type is an alert's (`spec-notify.alert.*`).
pub fn is_alert_event(event_type: &str) -> bool {
    event_type.starts_with("spec-notify.alert.")
}

fn alert_summary(icon: &str, a: &AlertFacts, test: bool) -> String {
    let what = match (test, a.resolved(), a.repeat) {
        (true, _, _) => "TEST ALERT".to_string(),
        (false, true, _) => "RESOLVED".to_string(),
        (false, false, 0) => "FIRING".to_string(),
        (false, false, n) => format!("STILL FIRING (reminder {n})"),
    };
    let mut line = format!(
        "{icon} {what}: {} on {} (rule {})",
        a.condition,
        a.about(),
        a.rule
    );
    match (&a.summary, a.resolved()) {
        (Some(summary), false) => line.push_str(&format!(": {}", super::text::cut(summary, 300))),
        (_, true) => {
            if let Some(since) = &a.since {
                line.push_str(&format!(", firing since {since}"));
            }
        }
        (None, false) => {}
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts(v: Value) -> Facts {
        Facts::read(
            &serde_json::to_vec(&v).unwrap(),
            Some("https://git.example/r/blob/main/"),
        )
    }

    #[test]
    fn summaries_say_what_happened_with_a_marker() {
        let stage = facts(
            json!({"event": {"type": "spec-auto.stage.completed", "stage": "Plan", "status": "success"}, "spec": {"id": "S-1"}}),
        );
        assert_eq!(stage.summary(), "✅ S-1: Plan stage completed — success");
        let pipeline = facts(
            json!({"event": {"type": "spec-auto.pipeline.completed", "status": "failure"}, "spec": {"id": "S-1"}, "pipeline": {"attempt": 2, "maxAttempts": 3}}),
        );
        assert_eq!(
            pipeline.summary(),
            "❌ S-1: pipeline completed — FAILURE (attempt 2)"
        );
        assert_eq!(pipeline.attempt_text().as_deref(), Some("2 of 3"));
        let task = facts(
            json!({"event": {"type": "spec-kit.task.completed"}, "spec": {"id": "S-1"}, "task": {"id": "T61", "title": "Webhooks\nfor all", "status": "Done"}}),
        );
        assert_eq!(
            task.summary(),
            "ℹ️ S-1: task T61 completed: Webhooks for all"
        );
        assert_eq!(
            task.task_text().as_deref(),
            Some("(Done) T61 — Webhooks for all")
        );
        let conflict = facts(
            json!({"event": {"type": "spec-auto.consensus.conflict", "stage": "Audit"}, "spec": {"id": "S-1"}}),
        );
        assert_eq!(conflict.summary(), "⚠️ S-1: consensus conflict at Audit");
        let halt = facts(
            json!({"event": {"type": "spec-auto.agent.stalled", "status": "halt"}, "spec": {"id": "S-1"}}),
        );
        assert_eq!(halt.summary(), "⛔ S-1: agent stalled — HALT");
        assert_eq!(facts(json!("garbage")).summary(), "ℹ️ SPEC: event");
    }

    #[test]
    fn alerts_say_what_fires_where_and_how_to_fix_it() {
        let alert = |status: &str, repeat: u64| {
            facts(
                json!({"event": {"type": format!("spec-notify.alert.{status}")},
                "spec": {"id": "spec-notify.alerts"},
                "alert": {"status": status, "rule": "oncall", "condition": "circuit-open",
                    "subscription": "hook", "count": 3, "specs": [{"spec": "S-1", "count": 2}, {"spec": "S-2", "count": 1}],
                    "summary": "circuit open on hook", "hint": "fix\nit", "command": "spec-notify resume hook",
                    "since": "2026-01-01T00:00:00.000Z", "repeat": repeat}}),
            )
        };
        let firing = alert("firing", 0);
        assert_eq!(
            firing.summary(),
            "⚠️ FIRING: circuit-open on hook (rule oncall): circuit open on hook"
        );
        let a = firing.alert.as_ref().unwrap();
        assert_eq!(a.specs_text().as_deref(), Some("S-1 (2), S-2 (1)"));
        assert_eq!(a.hint.as_deref(), Some("fix it"), "one line");
        assert!(
            alert("firing", 2)
                .summary()
                .contains("STILL FIRING (reminder 2)")
        );
        assert_eq!(
            alert("resolved", 0).summary(),
            "✅ RESOLVED: circuit-open on hook (rule oncall), firing since 2026-01-01T00:00:00.000Z"
        );
        let not_an_alert =
            facts(json!({"event": {"type": "spec-auto.stage.completed"}, "alert": {"rule": "x"}}));
        assert_eq!(
            not_an_alert.alert, None,
            "only alert events carry alert facts"
        );
    }

    #[test]
    fn evidence_links_are_encoded_under_the_base() {
        let f = facts(json!({"evidence": {"paths": ["./docs/a b/plan (1).log", "/x|y>.log", 7]}}));
        let links: Vec<_> = f.evidence.iter().map(|e| e.link.clone().unwrap()).collect();
        assert_eq!(
            links,
            [
                "https://git.example/r/blob/main/docs/a%20b/plan%20%281%29.log",
                "https://git.example/r/blob/main/x%7Cy%3E.log",
                "https://git.example/r/blob/main/7",
            ]
        );
        assert_eq!(f.paths(), "./docs/a b/plan (1).log, /x|y>.log, 7");
        assert_eq!(
            evidence_link("https://h/base", "ü/日本.log"),
            "https://h/base/%C3%BC/%E6%97%A5%E6%9C%AC.log"
        );
    }
}
