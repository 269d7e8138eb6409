//! The event envelope: the PRD's JSON body (`schemaVersion`, `event`, `spec`,
//! `pipeline`, `telemetry`, `consensus`, `task`, `evidence`, `anomalies`, plus
//! `sequence` and `emittedAt`, and `trace` when emit ran under a W3C trace
//! context: an additive section, so `schemaVersion` stays "1.0"). Validates event input from flags and stdin and
//! renders the exact bytes that are spooled, signed and sent. No I/O here.

use serde_json::{Map, Value, json};

pub const SCHEMA_VERSION: &str = "1.0";

/// Sections a caller may supply on stdin.
const INPUT_SECTIONS: &[&str] = &[
    "event",
    "spec",
    "pipeline",
    "telemetry",
    "consensus",
    "task",
    "evidence",
    "anomalies",
];
const EVENT_KEYS: &[&str] = &[
    "type",
    "status",
    "stage",
    "idempotency_key",
    "correlation_id",
];

/// The standard event types (others are allowed if they are `namespace.noun.verb`).
pub const STANDARD_EVENTS: &[&str] = &[
    "spec-auto.stage.completed",
    "spec-auto.pipeline.completed",
    "spec-kit.task.completed",
    "spec-auto.consensus.conflict",
    "spec-auto.cost.threshold",
    "spec-auto.agent.stalled",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Plan,
    Tasks,
    Implement,
    Validate,
    Audit,
    Unlock,
}

impl Stage {
    pub const NAMES: &[&str] = &["Plan", "Tasks", "Implement", "Validate", "Audit", "Unlock"];
    const ALL: [Stage; 6] = [
        Stage::Plan,
        Stage::Tasks,
        Stage::Implement,
        Stage::Validate,
        Stage::Audit,
        Stage::Unlock,
    ];

    /// Case-insensitive: `plan`, `Plan` and `PLAN` are all `Plan`.
    pub fn parse(s: &str) -> Option<Stage> {
        Self::NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| Self::ALL[i])
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Failure,
    Halt,
}

impl Status {
    pub const NAMES: &[&str] = &["success", "failure", "halt"];
    const ALL: [Status; 3] = [Status::Success, Status::Failure, Status::Halt];

    pub fn parse(s: &str) -> Option<Status> {
        Self::NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| Self::ALL[i])
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// One lowercase segment of an event type: `spec-auto`, `stage`, `completed`.
pub fn is_event_segment(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Event types look like `namespace.noun.verb`: three lowercase, dot-separated segments.
pub fn check_event_type(s: &str) -> Result<(), String> {
    let segments: Vec<&str> = s.split('.').collect();
    if segments.len() == 3 && segments.iter().all(|seg| is_event_segment(seg)) {
        Ok(())
    } else {
        Err(format!(
            "event type `{s}` must look like namespace.noun.verb (lowercase, dots), e.g. spec-auto.stage.completed"
        ))
    }
}

/// A SPEC id names a folder, travels as a command-line argument, and is
/// printed inside commands people copy and paste (`spec-notify replay
/// SPEC …`): so it is letters and digits (any script) and `. _ - : + @`,
/// never starting with `.` or `-`, at most 200 bytes. That leaves out
/// everything a shell, a path or a terminal would read as syntax
/// (`$ ( ) ; | & < > / \` quotes, spaces, control and bidi characters).
pub fn check_spec_id(s: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_alphanumeric() || "._-:+@".contains(c);
    let bad = s.is_empty() || s.len() > 200 || s.starts_with(['.', '-']) || !s.chars().all(allowed);
    if bad {
        Err(format!(
            "invalid SPEC id `{}`: use letters, digits and `. _ - : + @` only, not starting with `.` or `-`",
            s.escape_debug()
        ))
    } else {
        Ok(())
    }
}

/// The idempotency key travels as an HTTP header value, so it is bounded and
/// free of control characters (CR, LF, NUL, tab, DEL...); other UTF-8 is fine.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 512;

/// An explicit key (`--idempotency-key` or `event.idempotency_key`).
pub fn check_idempotency_key(k: &str) -> Result<(), String> {
    if k.trim().is_empty() {
        return Err("idempotency key is empty".into());
    }
    if k.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(format!(
            "idempotency key is {} bytes, over the {MAX_IDEMPOTENCY_KEY_BYTES}-byte limit",
            k.len()
        ));
    }
    if k.chars().any(char::is_control) {
        return Err(format!(
            "idempotency key must not contain control characters: \"{}\"",
            k.escape_debug()
        ));
    }
    Ok(())
}

/// A caller's correlation id (`--correlation-id` or `event.correlation_id`):
/// the same bounds as an idempotency key, so it can travel anywhere a key
/// can (a header, a table cell, a filter argument).
pub fn check_correlation_id(id: &str) -> Result<(), String> {
    check_idempotency_key(id).map_err(|e| e.replace("idempotency key", "correlation id"))
}

/// A task id that goes into the default idempotency key.
fn check_task_id_for_key(id: &str) -> Result<(), String> {
    if id.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(format!(
            "task id is {} bytes, too long for the default idempotency key (limit {MAX_IDEMPOTENCY_KEY_BYTES}): \
             shorten it or pass --idempotency-key",
            id.len()
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(format!(
            "task id \"{}\" must not contain control characters: it is part of the default idempotency key \
             (an HTTP header); fix it or pass --idempotency-key",
            id.escape_debug()
        ));
    }
    Ok(())
}

/// What flags contribute to an event; each one wins over stdin.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub spec: Option<String>,
    pub event: Option<String>,
    pub status: Option<String>,
    pub stage: Option<String>,
    pub task_id: Option<String>,
    pub task_title: Option<String>,
    pub idempotency_key: Option<String>,
    /// Ties the event to the caller's request (`--correlation-id`).
    pub correlation_id: Option<String>,
    /// The parsed `--telemetry` file.
    pub telemetry: Option<Value>,
    /// The W3C trace context emit runs under (`--traceparent`,
    /// `TRACEPARENT`), already checked.
    pub trace: Option<crate::trace::Context>,
}

/// A validated event, ready to be numbered and rendered.
#[derive(Debug, Clone)]
pub struct Event {
    pub spec: String,
    pub event_type: String,
    pub stage: Option<Stage>,
    pub status: Option<Status>,
    pub idempotency_key: String,
    /// The caller's correlation id, also in the envelope's `event` section.
    pub correlation_id: Option<String>,
    body: Map<String, Value>,
}

impl Event {
    /// The exact envelope bytes: compact JSON on one line. `sequence` and
    /// `emittedAt` are appended to the serialised body rather than inserted
    /// into a clone of it: a batch renders thousands of envelopes.
    pub fn render(&self, sequence: u64, emitted_at: &str) -> Vec<u8> {
        let mut out = serde_json::to_vec(&self.body).expect("a JSON map always serialises");
        out.pop(); // the closing brace; the body always has schemaVersion, so a comma follows
        out.extend_from_slice(format!(",\"sequence\":{sequence},\"emittedAt\":").as_bytes());
        serde_json::to_writer(&mut out, emitted_at).expect("a string always serialises");
        out.push(b'}');
        out
    }

    /// The most bytes [`Event::render`] can give (the largest sequence and
    /// an RFC 3339 time in milliseconds), without rendering.
    pub fn max_len(&self) -> usize {
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 += buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut count = Count(0);
        serde_json::to_writer(&mut count, &self.body).expect("a JSON map always serialises");
        let tail = ",\"sequence\":18446744073709551615,\"emittedAt\":\"2026-01-01T00:00:00.000Z\"";
        count.0 + tail.len()
    }
}

/// Builds an event from a stdin object (possibly empty) and the flags.
pub fn build(input: Map<String, Value>, flags: &Flags) -> Result<Event, String> {
    let mut sections = split_sections(input)?;
    let event = take_object(&mut sections, "event")?;
    check_keys(&event, EVENT_KEYS, "event")?;
    let mut spec_section = take_object(&mut sections, "spec")?;
    let mut task = take_object(&mut sections, "task")?;
    let mut evidence = take_object(&mut sections, "evidence")?;
    let telemetry = match &flags.telemetry {
        Some(t) => Some(t.clone()),
        None => sections.remove("telemetry"),
    };
    if telemetry.as_ref().is_some_and(|t| !t.is_object()) {
        return Err("`telemetry` must be a JSON object (the telemetry v1 file)".into());
    }

    let event_type = pick(flags.event.as_deref(), &event, "type")?
        .ok_or("missing event type: pass --event TYPE or {\"event\":{\"type\":...}}")?;
    check_event_type(&event_type)?;
    let spec = pick(flags.spec.as_deref(), &spec_section, "id")?
        .or_else(|| {
            telemetry
                .as_ref()
                .and_then(|t| t.get("specId"))
                .and_then(Value::as_str)
                .map(String::from)
        })
        .ok_or("missing SPEC id: pass --spec SPEC-ID or {\"spec\":{\"id\":...}}")?;
    check_spec_id(&spec)?;
    let stage = parse_opt(
        pick(flags.stage.as_deref(), &event, "stage")?,
        Stage::parse,
        "stage",
        Stage::NAMES,
    )?;
    let status = parse_opt(
        pick(flags.status.as_deref(), &event, "status")?,
        Status::parse,
        "status",
        Status::NAMES,
    )?;

    spec_section.insert("id".into(), json!(spec));
    apply_task_flags(&mut task, flags, &event_type);
    let default_paths = telemetry
        .as_ref()
        .map(artifact_paths)
        .filter(|p| !p.is_empty());
    if let (false, Some(paths)) = (evidence.contains_key("paths"), default_paths) {
        evidence.insert("paths".into(), json!(paths));
    }
    for name in ["pipeline", "consensus"] {
        if let Some(other) = sections.get(name).filter(|v| !v.is_object()) {
            return Err(format!(
                "`{name}` must be a JSON object, found {}",
                kind(other)
            ));
        }
    }
    let attempt = match sections.get("pipeline").and_then(|p| p.get("attempt")) {
        None | Some(Value::Null) => 1,
        Some(v) => v.as_u64().filter(|&n| n >= 1).ok_or_else(|| {
            format!("`pipeline.attempt` must be a whole number from 1, found {v}")
        })?,
    };
    let idempotency_key = match pick(flags.idempotency_key.as_deref(), &event, "idempotency_key")? {
        Some(k) => {
            check_idempotency_key(&k)?;
            k
        }
        None => {
            if let Some(Value::String(id)) = task.get("id") {
                check_task_id_for_key(id)?;
            }
            let k =
                default_idempotency_key(&spec, &event_type, stage, status, task.get("id"), attempt);
            if k.len() > MAX_IDEMPOTENCY_KEY_BYTES {
                return Err(format!(
                    "the default idempotency key would be {} bytes, over the {MAX_IDEMPOTENCY_KEY_BYTES}-byte limit: \
                     shorten the task id or event type, or pass --idempotency-key",
                    k.len()
                ));
            }
            k
        }
    };

    let correlation_id = pick(flags.correlation_id.as_deref(), &event, "correlation_id")?;
    if let Some(id) = &correlation_id {
        check_correlation_id(id)?;
    }

    let mut event_out = Map::new();
    event_out.insert("type".into(), json!(event_type));
    if let Some(s) = status {
        event_out.insert("status".into(), json!(s.as_str()));
    }
    if let Some(s) = stage {
        event_out.insert("stage".into(), json!(s.as_str()));
    }
    event_out.insert("idempotency_key".into(), json!(idempotency_key));
    if let Some(id) = &correlation_id {
        event_out.insert("correlation_id".into(), json!(id));
    }

    let mut body = Map::new();
    body.insert("schemaVersion".into(), json!(SCHEMA_VERSION));
    body.insert("event".into(), Value::Object(event_out));
    body.insert("spec".into(), Value::Object(spec_section));
    for name in ["pipeline"] {
        if let Some(v) = sections.remove(name) {
            body.insert(name.into(), v);
        }
    }
    if let Some(t) = telemetry {
        body.insert("telemetry".into(), t);
    }
    if let Some(v) = sections.remove("consensus") {
        body.insert("consensus".into(), v);
    }
    if !task.is_empty() {
        body.insert("task".into(), Value::Object(task));
    }
    if !evidence.is_empty() {
        body.insert("evidence".into(), Value::Object(evidence));
    }
    if let Some(v) = sections.remove("anomalies") {
        body.insert("anomalies".into(), v);
    }
    if let Some(trace) = &flags.trace {
        body.insert("trace".into(), trace.to_json());
    }
    Ok(Event {
        spec,
        event_type,
        stage,
        status,
        idempotency_key,
        correlation_id,
        body,
    })
}

/// A sample event for `spec-notify test`, clearly marked as a test.
pub fn test_event(spec: &str) -> Event {
    let mut body = Map::new();
    body.insert("schemaVersion".into(), json!(SCHEMA_VERSION));
    body.insert(
        "event".into(),
        json!({"type": "spec-notify.test", "status": "success", "idempotency_key": format!("{spec}:spec-notify.test"), "test": true}),
    );
    body.insert("spec".into(), json!({"id": spec}));
    body.insert(
        "test".into(),
        json!({"message": "This is a test delivery from `spec-notify test`; no pipeline ran."}),
    );
    Event {
        spec: spec.to_string(),
        event_type: "spec-notify.test".into(),
        stage: None,
        status: Some(Status::Success),
        idempotency_key: format!("{spec}:spec-notify.test"),
        correlation_id: None,
        body,
    }
}

fn split_sections(input: Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (key, value) in input {
        match key.as_str() {
            "schemaVersion" if value == json!(SCHEMA_VERSION) => {}
            "schemaVersion" => {
                return Err(format!(
                    "unsupported schemaVersion {value}: this version writes \"1.0\""
                ));
            }
            "sequence" | "emittedAt" => {
                return Err(format!(
                    "`{key}` is set by spec-notify; remove it from the input"
                ));
            }
            "trace" => {
                return Err(
                    "`trace` is set by spec-notify from --traceparent/--tracestate (or TRACEPARENT/TRACESTATE); remove it from the input".into(),
                );
            }
            k if INPUT_SECTIONS.contains(&k) => {
                out.insert(key, value);
            }
            _ => {
                return Err(format!(
                    "unknown section `{key}`; allowed sections: {}",
                    INPUT_SECTIONS.join(", ")
                ));
            }
        }
    }
    Ok(out)
}

fn take_object(
    sections: &mut Map<String, Value>,
    name: &str,
) -> Result<Map<String, Value>, String> {
    match sections.remove(name) {
        None => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(other) => Err(format!(
            "`{name}` must be a JSON object, found {}",
            kind(&other)
        )),
    }
}

fn check_keys(map: &Map<String, Value>, allowed: &[&str], section: &str) -> Result<(), String> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "unknown key `{section}.{k}`; allowed: {}",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

/// The flag value if given, else the section's string field.
fn pick(
    flag: Option<&str>,
    section: &Map<String, Value>,
    key: &str,
) -> Result<Option<String>, String> {
    if let Some(v) = flag {
        return Ok(Some(v.to_string()));
    }
    match section.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("`{key}` must be a string, found {}", kind(other))),
    }
}

fn parse_opt<T>(
    value: Option<String>,
    parse: fn(&str) -> Option<T>,
    what: &str,
    names: &[&str],
) -> Result<Option<T>, String> {
    match value {
        None => Ok(None),
        Some(v) => parse(&v)
            .map(Some)
            .ok_or_else(|| format!("unknown {what} `{v}`: use one of {}", names.join(", "))),
    }
}

fn apply_task_flags(task: &mut Map<String, Value>, flags: &Flags, event_type: &str) {
    if let Some(id) = &flags.task_id {
        task.insert("id".into(), json!(id));
    }
    if let Some(title) = &flags.task_title {
        task.insert("title".into(), json!(title));
    }
    if event_type == "spec-kit.task.completed" && !task.is_empty() && !task.contains_key("status") {
        task.insert("status".into(), json!("Done"));
    }
}

fn artifact_paths(telemetry: &Value) -> Vec<Value> {
    telemetry
        .get("artifacts")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.get("path"))
                .filter(|p| p.is_string())
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// `SPEC:type[:stage][:status][:task-ID]:attempt-N`: the same logical event
/// emitted twice gets the same key, so receivers can dedupe it.
fn default_idempotency_key(
    spec: &str,
    event_type: &str,
    stage: Option<Stage>,
    status: Option<Status>,
    task_id: Option<&Value>,
    attempt: u64,
) -> String {
    let mut parts = vec![spec.to_string(), event_type.to_string()];
    if let Some(s) = stage {
        parts.push(s.as_str().to_ascii_lowercase());
    }
    if let Some(s) = status {
        parts.push(s.as_str().to_string());
    }
    match task_id {
        Some(Value::String(id)) => parts.push(format!("task-{id}")),
        Some(Value::Number(n)) => parts.push(format!("task-{n}")),
        _ => {}
    }
    parts.push(format!("attempt-{attempt}"));
    parts.join(":")
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(spec: &str, event: &str) -> Flags {
        Flags {
            spec: Some(spec.into()),
            event: Some(event.into()),
            ..Flags::default()
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn flags_only_event_has_prd_shape_and_key() {
        let mut f = flags("SPEC-KIT-065", "spec-auto.stage.completed");
        f.stage = Some("plan".into());
        f.status = Some("success".into());
        let e = build(Map::new(), &f).unwrap();
        let body: Value = serde_json::from_slice(&e.render(7, "2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(body["schemaVersion"], "1.0");
        assert_eq!(body["event"]["stage"], "Plan");
        assert_eq!(
            body["event"]["idempotency_key"],
            "SPEC-KIT-065:spec-auto.stage.completed:plan:success:attempt-1"
        );
        assert_eq!(body["spec"]["id"], "SPEC-KIT-065");
        assert_eq!(body["sequence"], 7);
        let keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            ["schemaVersion", "event", "spec", "sequence", "emittedAt"]
        );
    }

    #[test]
    fn a_correlation_id_goes_into_the_event_section() {
        let mut f = flags("S", "spec-auto.stage.completed");
        f.correlation_id = Some("req-42".into());
        let e = build(obj(json!({"event": {"correlation_id": "from-stdin"}})), &f).unwrap();
        assert_eq!(e.correlation_id.as_deref(), Some("req-42"), "the flag wins");
        let body: Value = serde_json::from_slice(&e.render(1, "t")).unwrap();
        assert_eq!(body["event"]["correlation_id"], "req-42");
        let e = build(
            obj(json!({"event": {"correlation_id": "from-stdin"}})),
            &flags("S", "spec-auto.stage.completed"),
        )
        .unwrap();
        assert_eq!(e.correlation_id.as_deref(), Some("from-stdin"));
        let plain = build(Map::new(), &flags("S", "spec-auto.stage.completed")).unwrap();
        let body: Value = serde_json::from_slice(&plain.render(1, "t")).unwrap();
        assert!(body["event"].get("correlation_id").is_none());
        f.correlation_id = Some("a\nb".into());
        let err = build(Map::new(), &f).unwrap_err();
        assert!(
            err.contains("correlation id must not contain control"),
            "{err}"
        );
    }

    #[test]
    fn a_trace_context_is_an_additive_section_before_sequence() {
        let mut f = flags("S", "spec-auto.stage.completed");
        let (trace, _) = crate::trace::Context::parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("a=b"),
        );
        f.trace = trace;
        let e = build(Map::new(), &f).unwrap();
        let body: Value = serde_json::from_slice(&e.render(3, "t")).unwrap();
        assert_eq!(body["schemaVersion"], SCHEMA_VERSION);
        assert_eq!(
            body["trace"],
            json!({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "a=b"})
        );
        let keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "schemaVersion",
                "event",
                "spec",
                "trace",
                "sequence",
                "emittedAt"
            ]
        );
        assert!(e.max_len() >= e.render(3, "2026-01-01T00:00:00.000Z").len());
        let err = build(obj(json!({"trace": {}})), &flags("S", "a.b.c")).unwrap_err();
        assert!(err.contains("from --traceparent"), "{err}");
    }

    #[test]
    fn max_len_bounds_every_rendering() {
        let e = test_event("SPEC-1");
        let longest = e.render(u64::MAX, "2026-01-01T00:00:00.000Z").len();
        assert_eq!(e.max_len(), longest);
        assert!(e.render(1, "2026-01-01T00:00:00.000Z").len() < e.max_len());
    }

    #[test]
    fn flags_win_over_stdin_and_telemetry_fills_evidence() {
        let input = obj(json!({
            "event": {"type": "spec-auto.stage.completed", "stage": "Tasks", "status": "failure"},
            "spec": {"id": "FROM-STDIN", "branch": "feat/x"},
            "pipeline": {"attempt": 2},
            "telemetry": {"specId": "S", "artifacts": [{"path": "a.log"}, {"path": "b.log"}]}
        }));
        let mut f = flags("FROM-FLAG", "spec-auto.stage.completed");
        f.stage = Some("Plan".into());
        let e = build(input, &f).unwrap();
        assert_eq!(e.spec, "FROM-FLAG");
        assert_eq!(e.stage, Some(Stage::Plan));
        assert_eq!(e.status, Some(Status::Failure));
        assert!(
            e.idempotency_key.ends_with(":plan:failure:attempt-2"),
            "{}",
            e.idempotency_key
        );
        let body: Value = serde_json::from_slice(&e.render(1, "t")).unwrap();
        assert_eq!(body["spec"]["branch"], "feat/x");
        assert_eq!(body["evidence"]["paths"], json!(["a.log", "b.log"]));
    }

    #[test]
    fn task_flags_build_the_task_section() {
        let mut f = flags("S", "spec-kit.task.completed");
        f.task_id = Some("T61".into());
        f.task_title = Some("Webhooks".into());
        let e = build(Map::new(), &f).unwrap();
        let body: Value = serde_json::from_slice(&e.render(1, "t")).unwrap();
        assert_eq!(
            body["task"],
            json!({"id": "T61", "title": "Webhooks", "status": "Done"})
        );
        assert_eq!(
            e.idempotency_key,
            "S:spec-kit.task.completed:task-T61:attempt-1"
        );
    }

    #[test]
    fn bad_inputs_say_what_is_wrong() {
        let cases: Vec<(Map<String, Value>, Flags, &str)> = vec![
            (
                Map::new(),
                flags("S", "Spec.Stage.Done"),
                "namespace.noun.verb",
            ),
            (Map::new(), flags("S", "a.b"), "namespace.noun.verb"),
            (
                Map::new(),
                Flags {
                    event: Some("a.b.c".into()),
                    ..Flags::default()
                },
                "missing SPEC id",
            ),
            (Map::new(), flags("../etc", "a.b.c"), "invalid SPEC id"),
            (Map::new(), flags("a/b", "a.b.c"), "invalid SPEC id"),
            (
                obj(json!({"evnt": {}})),
                flags("S", "a.b.c"),
                "unknown section `evnt`",
            ),
            (
                obj(json!({"event": {"stage": "Deploy"}})),
                flags("S", "a.b.c"),
                "unknown stage `Deploy`",
            ),
            (
                obj(json!({"event": {"status": "ok"}})),
                flags("S", "a.b.c"),
                "unknown status `ok`",
            ),
            (
                obj(json!({"task": [1]})),
                flags("S", "a.b.c"),
                "`task` must be a JSON object",
            ),
            (
                obj(json!({"telemetry": 3})),
                flags("S", "a.b.c"),
                "`telemetry` must be a JSON object",
            ),
            (
                obj(json!({"sequence": 3})),
                flags("S", "a.b.c"),
                "set by spec-notify",
            ),
            (
                obj(json!({"pipeline": [1]})),
                flags("S", "a.b.c"),
                "`pipeline` must be a JSON object, found an array",
            ),
            (
                obj(json!({"consensus": "ok"})),
                flags("S", "a.b.c"),
                "`consensus` must be a JSON object, found a string",
            ),
            (
                obj(json!({"pipeline": {"attempt": "2"}})),
                flags("S", "a.b.c"),
                "`pipeline.attempt` must be a whole number from 1, found \"2\"",
            ),
            (
                obj(json!({"pipeline": {"attempt": 0}})),
                flags("S", "a.b.c"),
                "`pipeline.attempt` must be a whole number from 1, found 0",
            ),
        ];
        for (input, f, needle) in cases {
            let err = build(input, &f).unwrap_err();
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
    }

    #[test]
    fn spec_ids() {
        assert!(check_spec_id("SPEC-KIT-065-add-webhook-notification-system-for").is_ok());
        for good in ["S.1", "S_1", "team:SPEC+2@x", "SPEC-Größe", "スペック-1"] {
            assert!(check_spec_id(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a\\b",
            "a\0b",
            ".hidden",
            "-dash",
            "--spec",
            "   ",
            "SPEC-$(id)",
            "S;rm",
            "S|x",
            "S`x`",
            "S'x",
            "S<b>",
            "S&x",
            "a b",
            "SPEC\u{202E}1",
            "SPEC\u{200B}",
            "\u{2066}x",
        ] {
            assert!(check_spec_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn idempotency_key_with_control_characters_is_rejected() {
        for c in ['\r', '\n', '\0', '\t', '\x7f', '\u{1b}', '\u{85}'] {
            let key = format!("S:a.b.c:{c}x");
            let mut f = flags("S", "a.b.c");
            f.idempotency_key = Some(key.clone());
            let err = build(Map::new(), &f).unwrap_err();
            assert!(
                err.contains("idempotency key must not contain control characters"),
                "{c:?}: {err}"
            );
            let input = obj(json!({"event": {"idempotency_key": key}}));
            let err = build(input, &flags("S", "a.b.c")).unwrap_err();
            assert!(
                err.contains("idempotency key must not contain control characters"),
                "{c:?}: {err}"
            );
        }
    }

    #[test]
    fn task_id_with_control_characters_is_rejected_as_the_task_id() {
        let mut f = flags("S", "spec-kit.task.completed");
        f.task_id = Some("T1\r\nX-Evil: 1".into());
        let err = build(Map::new(), &f).unwrap_err();
        assert!(err.starts_with("task id "), "{err}");
        assert!(err.contains("control characters"), "{err}");
        let input = obj(json!({"task": {"id": "T\u{0}1"}}));
        let err = build(input, &flags("S", "spec-kit.task.completed")).unwrap_err();
        assert!(err.starts_with("task id "), "{err}");
        // An explicit key keeps the task id out of the header: the JSON body escapes it.
        f.idempotency_key = Some("k1".into());
        assert_eq!(build(Map::new(), &f).unwrap().idempotency_key, "k1");
    }

    #[test]
    fn non_ascii_keys_and_task_ids_are_allowed() {
        let mut f = flags("S", "spec-kit.task.completed");
        f.task_id = Some("título".into());
        let e = build(Map::new(), &f).unwrap();
        assert_eq!(
            e.idempotency_key,
            "S:spec-kit.task.completed:task-título:attempt-1"
        );
        f.idempotency_key = Some("título-ü-日本".into());
        assert_eq!(
            build(Map::new(), &f).unwrap().idempotency_key,
            "título-ü-日本"
        );
    }

    #[test]
    fn idempotency_key_length_is_capped() {
        let mut f = flags("S", "a.b.c");
        f.idempotency_key = Some("k".repeat(MAX_IDEMPOTENCY_KEY_BYTES));
        build(Map::new(), &f).unwrap();
        // 257 two-byte characters: the cap is in bytes.
        f.idempotency_key = Some("é".repeat(MAX_IDEMPOTENCY_KEY_BYTES / 2 + 1));
        let err = build(Map::new(), &f).unwrap_err();
        assert!(err.contains("idempotency key is 514 bytes"), "{err}");
        assert!(err.contains("512-byte limit"), "{err}");

        let mut f = flags("S", "spec-kit.task.completed");
        f.task_id = Some("t".repeat(MAX_IDEMPOTENCY_KEY_BYTES + 1));
        let err = build(Map::new(), &f).unwrap_err();
        assert!(err.starts_with("task id is 513 bytes"), "{err}");
        // Short parts that add up to too much: the whole default key is checked.
        f.task_id = Some("t".repeat(MAX_IDEMPOTENCY_KEY_BYTES - 10));
        let err = build(Map::new(), &f).unwrap_err();
        assert!(err.contains("default idempotency key would be"), "{err}");
        assert!(err.contains("--idempotency-key"), "{err}");
    }

    #[test]
    fn every_accepted_key_is_a_valid_header_value() {
        let chars = (0u32..0x300).chain([0x2028, 0x2029, 0xfeff, 0x10ffff]);
        for c in chars.filter_map(char::from_u32) {
            let mut f = flags("S", "spec-kit.task.completed");
            f.task_id = Some(format!("T{c}"));
            for explicit in [None, Some(format!("k{c}k"))] {
                f.idempotency_key = explicit;
                if let Ok(e) = build(Map::new(), &f) {
                    assert!(
                        ureq::http::HeaderValue::from_str(&e.idempotency_key).is_ok(),
                        "{c:?} accepted in {:?}",
                        e.idempotency_key
                    );
                }
            }
        }
    }

    #[test]
    fn standard_events_are_valid() {
        for e in STANDARD_EVENTS {
            check_event_type(e).unwrap();
        }
    }
}
