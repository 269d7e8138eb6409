//! The `text` template of a subscription: the summary line with
//! `{{placeholder}}`s filled from the envelope. Plain substitution from a
//! closed list of names, no expressions, filters or loops, so `check` can
//! name every unknown placeholder before anything is sent.

use super::facts::Facts;

/// A parsed `text` template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Field(Field),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Summary,
    EventType,
    EventStage,
    EventStatus,
    EventIcon,
    EventIdempotencyKey,
    SpecId,
    SpecBranch,
    PipelineAttempt,
    TaskId,
    TaskTitle,
    TaskStatus,
    EvidencePaths,
    Sequence,
    EmittedAt,
}

const FIELDS: &[(&str, Field)] = &[
    ("summary", Field::Summary),
    ("event.type", Field::EventType),
    ("event.stage", Field::EventStage),
    ("event.status", Field::EventStatus),
    ("event.icon", Field::EventIcon),
    ("event.idempotency_key", Field::EventIdempotencyKey),
    ("spec.id", Field::SpecId),
    ("spec.branch", Field::SpecBranch),
    ("pipeline.attempt", Field::PipelineAttempt),
    ("task.id", Field::TaskId),
    ("task.title", Field::TaskTitle),
    ("task.status", Field::TaskStatus),
    ("evidence.paths", Field::EvidencePaths),
    ("sequence", Field::Sequence),
    ("emittedAt", Field::EmittedAt),
];

/// Every placeholder a template may use.
pub fn placeholders() -> impl Iterator<Item = &'static str> {
    FIELDS.iter().map(|(name, _)| *name)
}

impl Template {
    /// Parses `{{name}}` placeholders (spaces inside the braces allowed).
    /// Every unknown name is named in one error; so is an unclosed `{{`.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut unknown = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(format!(
                    "`{{{{` is not closed with `}}}}` in `{}`",
                    rest[open..].escape_debug()
                ));
            };
            let name = after[..close].trim();
            match FIELDS.iter().find(|(n, _)| *n == name) {
                Some((_, field)) => parts.push(Part::Field(*field)),
                None => unknown.push(format!("`{{{{{}}}}}`", name.escape_debug())),
            }
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        if !unknown.is_empty() {
            let noun = if unknown.len() == 1 {
                "placeholder"
            } else {
                "placeholders"
            };
            return Err(format!(
                "unknown {noun} {}; known: {}",
                unknown.join(", "),
                placeholders().collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(Template { parts })
    }

    /// The text with each placeholder replaced by its value (empty when the
    /// event has none).
    pub fn render(&self, facts: &Facts) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Field(field) => out.push_str(&value(*field, facts)),
            }
        }
        out
    }
}

fn value(field: Field, f: &Facts) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    match field {
        Field::Summary => f.summary(),
        Field::EventType => f.event_type.clone(),
        Field::EventStage => opt(&f.stage),
        Field::EventStatus => opt(&f.status),
        Field::EventIcon => f.tone().icon().to_string(),
        Field::EventIdempotencyKey => opt(&f.idempotency_key),
        Field::SpecId => f.spec.clone(),
        Field::SpecBranch => opt(&f.branch),
        Field::PipelineAttempt => f.attempt.map(|a| a.to_string()).unwrap_or_default(),
        Field::TaskId => opt(&f.task_id),
        Field::TaskTitle => opt(&f.task_title),
        Field::TaskStatus => opt(&f.task_status),
        Field::EvidencePaths => f.paths(),
        Field::Sequence => f.sequence.map(|s| s.to_string()).unwrap_or_default(),
        Field::EmittedAt => opt(&f.emitted_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn known_placeholders_render_from_the_envelope() {
        let envelope = json!({
            "event": {"type": "spec-auto.stage.completed", "stage": "Plan", "status": "success"},
            "spec": {"id": "S-1"},
            "task": {"title": "Prüfung 日本"},
            "evidence": {"paths": ["a.log", "b.log"]},
            "sequence": 4
        });
        let facts = Facts::read(&serde_json::to_vec(&envelope).unwrap(), None);
        let t = Template::parse(
            "{{event.icon}} {{ spec.id }} {{event.type}}/{{event.stage}}/{{event.status}}: \
             {{task.title}} [{{evidence.paths}}] #{{sequence}} {{task.id}}",
        )
        .unwrap();
        assert_eq!(
            t.render(&facts),
            "✅ S-1 spec-auto.stage.completed/Plan/success: Prüfung 日本 [a.log, b.log] #4 "
        );
        let t = Template::parse("deploy: {{summary}}").unwrap();
        assert_eq!(
            t.render(&facts),
            "deploy: ✅ S-1: Plan stage completed — success"
        );
        assert_eq!(
            Template::parse("no placeholders }}")
                .unwrap()
                .render(&facts),
            "no placeholders }}"
        );
    }

    #[test]
    fn unknown_and_unclosed_placeholders_are_named() {
        let e = Template::parse("{{spec.id}} {{task.name}} {{ evnt.type }}").unwrap_err();
        assert!(
            e.starts_with(
                "unknown placeholders `{{task.name}}`, `{{evnt.type}}`; known: summary, event.type,"
            ),
            "{e}"
        );
        let e = Template::parse("{{spec.id}} {{task.title").unwrap_err();
        assert_eq!(e, "`{{` is not closed with `}}` in `{{task.title`");
    }
}
