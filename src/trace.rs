//! W3C Trace Context, carried from `emit` to every delivery attempt: the
//! `traceparent` and `tracestate` a pipeline step runs under (otel-cli and
//! CI runners export them as `TRACEPARENT`/`TRACESTATE`) are checked here,
//! stored in the envelope's `trace` section, and each attempt sends a
//! `traceparent` with the same trace id, a fresh span id (the attempt is a
//! child span of the emitting step) and `tracestate` unchanged, so a
//! receiver instrumented with OpenTelemetry continues the pipeline's trace.
//! Invalid input is a reason to go without a trace, never to fail: callers
//! get the reason to warn with. No I/O here.

use serde::Deserialize;
use serde_json::{Value, json};

/// Headers and envelope keys, as the W3C spec names them.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";
/// The most list members a `tracestate` may have (W3C).
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// A valid trace context: the emitting step's span, and the vendors' state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// 32 lowercase hex digits, not all zero.
    trace_id: String,
    /// The emitting step's span id: 16 lowercase hex digits, not all zero.
    parent_id: String,
    /// The trace flags, two hex digits (`01`: sampled).
    flags: String,
    /// Passed on unchanged.
    state: Option<String>,
}

/// One delivery attempt as a span of the trace: what it sends and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    /// `00-<trace id>-<span id>-<flags>`: the attempt's `traceparent` header.
    pub traceparent: String,
    pub tracestate: Option<String>,
}

impl Context {
    /// A context from `traceparent` (and `tracestate`, which means nothing
    /// without it). An invalid `traceparent` gives no context; an invalid
    /// `tracestate` is dropped and the `traceparent` kept. Either way the
    /// second value says what was ignored and why (for a warning).
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> (Option<Context>, Option<String>) {
        let (trace_id, parent_id, flags) = match parse_traceparent(traceparent) {
            Ok(parts) => parts,
            Err(why) => {
                let shown = shown(traceparent);
                return (
                    None,
                    Some(format!(
                        "traceparent `{shown}` is not a W3C traceparent: {why}"
                    )),
                );
            }
        };
        let state = tracestate.map(str::trim).filter(|s| !s.is_empty());
        let (state, warning) = match state.map(check_tracestate) {
            Some(Err(why)) => (
                None,
                Some(format!(
                    "tracestate `{}` is not a W3C tracestate: {why}",
                    shown(state.unwrap_or_default())
                )),
            ),
            _ => (state.map(String::from), None),
        };
        let context = Context {
            trace_id,
            parent_id,
            flags,
            state,
        };
        (Some(context), warning)
    }

    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// The `trace` section of the envelope.
    pub fn to_json(&self) -> Value {
        let mut section = json!({ TRACEPARENT: self.traceparent(&self.parent_id) });
        if let Some(state) = &self.state {
            section[TRACESTATE] = json!(state);
        }
        section
    }

    fn traceparent(&self, span_id: &str) -> String {
        format!("00-{}-{span_id}-{}", self.trace_id, self.flags)
    }

    /// The context an envelope carries, if any (and valid: a spool file is
    /// read back, and header values must be what emit checked).
    pub fn from_envelope(body: &[u8]) -> Option<Context> {
        #[derive(Deserialize)]
        struct Envelope {
            trace: Option<Section>,
        }
        #[derive(Deserialize)]
        struct Section {
            traceparent: String,
            tracestate: Option<String>,
        }
        // Most envelopes carry no trace: skip parsing them.
        if !contains(body, b"\"traceparent\"") {
            return None;
        }
        let section = serde_json::from_slice::<Envelope>(body).ok()?.trace?;
        match Context::parse(&section.traceparent, section.tracestate.as_deref()) {
            (Some(context), None) => Some(context),
            _ => None,
        }
    }

    /// A new child span for one attempt: the same trace, a fresh span id.
    pub fn child(&self) -> Span {
        let span_id = loop {
            let id = fastrand::u64(..);
            if id != 0 {
                break format!("{id:016x}");
            }
        };
        Span {
            trace_id: self.trace_id.clone(),
            traceparent: self.traceparent(&span_id),
            span_id,
            tracestate: self.state.clone(),
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A value as a warning shows it: escaped, and cut at 80 characters.
fn shown(value: &str) -> String {
    let cut: String = value.chars().take(80).collect();
    let more = if cut.len() < value.len() { "…" } else { "" };
    format!("{}{more}", cut.escape_debug())
}

fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `version-traceid-parentid-flags` (W3C Trace Context, level 1): its trace
/// id, parent id and flags. A version above 00 may append fields after a
/// `-`; version `ff` is invalid.
fn parse_traceparent(text: &str) -> Result<(String, String, String), &'static str> {
    let text = text.trim_matches([' ', '\t']);
    let mut parts = text.splitn(5, '-');
    let (Some(version), Some(trace_id), Some(parent_id), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(
            "expected version-traceid-parentid-flags, e.g. 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
    };
    if !lower_hex(version, 2) || version == "ff" {
        return Err("the version is not two lowercase hex digits other than ff");
    }
    if version == "00" && parts.next().is_some() {
        return Err("version 00 has exactly four fields");
    }
    if !lower_hex(trace_id, 32) || trace_id.bytes().all(|b| b == b'0') {
        return Err("the trace id is not 32 lowercase hex digits, not all zero");
    }
    if !lower_hex(parent_id, 16) || parent_id.bytes().all(|b| b == b'0') {
        return Err("the parent id is not 16 lowercase hex digits, not all zero");
    }
    if !lower_hex(flags, 2) {
        return Err("the flags are not two lowercase hex digits");
    }
    Ok((trace_id.into(), parent_id.into(), flags.into()))
}

/// A `tracestate` list (W3C): at most 32 `key=value` members, unique keys
/// (`vendor` or `tenant@vendor`), values of printable ASCII without `,` or
/// `=` and not ending in a space. Empty members are allowed.
fn check_tracestate(text: &str) -> Result<(), String> {
    let members: Vec<&str> = text
        .split(',')
        .map(|m| m.trim_matches([' ', '\t']))
        .filter(|m| !m.is_empty())
        .collect();
    if members.len() > MAX_TRACESTATE_MEMBERS {
        return Err(format!(
            "{} list members, at most {MAX_TRACESTATE_MEMBERS}",
            members.len()
        ));
    }
    let mut keys = Vec::with_capacity(members.len());
    for member in members {
        let (key, value) = member
            .split_once('=')
            .ok_or_else(|| format!("member `{}` is not key=value", shown(member)))?;
        if !tracestate_key(key) {
            return Err(format!("`{}` is not a tracestate key", shown(key)));
        }
        let chr_ok = value
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=');
        if value.is_empty() || value.len() > 256 || value.ends_with(' ') || !chr_ok {
            return Err(format!(
                "the value of `{}` is not a tracestate value",
                shown(key)
            ));
        }
        if keys.contains(&key) {
            return Err(format!("key `{}` is listed twice", shown(key)));
        }
        keys.push(key);
    }
    Ok(())
}

fn tracestate_key(key: &str) -> bool {
    let rest = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-*/".contains(&b))
    };
    match key.split_once('@') {
        None => key.len() <= 256 && key.starts_with(|c: char| c.is_ascii_lowercase()) && rest(key),
        Some((tenant, system)) => {
            (1..=241).contains(&tenant.len())
                && tenant.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && rest(tenant)
                && (1..=14).contains(&system.len())
                && system.starts_with(|c: char| c.is_ascii_lowercase())
                && rest(system)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The W3C spec's example.
    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_context_gives_children_of_the_same_trace() {
        let (context, warning) =
            Context::parse(EXAMPLE, Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
        assert_eq!(warning, None);
        let context = context.unwrap();
        assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let (a, b) = (context.child(), context.child());
        assert_ne!(a.span_id, b.span_id, "a fresh span id per attempt");
        assert_ne!(a.span_id, "00f067aa0ba902b7");
        for span in [&a, &b] {
            assert_eq!(span.trace_id, context.trace_id());
            assert_eq!(
                span.traceparent,
                format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", span.span_id)
            );
            assert!(lower_hex(&span.span_id, 16));
            assert_eq!(
                span.tracestate.as_deref(),
                Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
            );
        }
        assert_eq!(
            context.to_json(),
            json!({"traceparent": EXAMPLE, "tracestate": "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"})
        );
    }

    #[test]
    fn invalid_traceparents_are_refused_with_the_reason() {
        for (bad, needle) in [
            ("", "expected version"),
            ("garbage", "expected version"),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                "expected version",
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version",
            ),
            (
                "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "trace id",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                "trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "parent id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
                "flags",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                "exactly four",
            ),
        ] {
            let (context, warning) = Context::parse(bad, Some("a=b"));
            assert_eq!(context, None, "{bad}");
            let warning = warning.unwrap();
            assert!(warning.contains(needle), "{bad}: {warning}");
        }
        let long = format!("\u{1b}]0;{}", "x".repeat(200));
        let warning = Context::parse(&long, None).1.unwrap();
        assert!(
            !warning.contains('\u{1b}') && warning.contains('…'),
            "{warning}"
        );
    }

    #[test]
    fn a_future_version_is_read_as_00_and_whitespace_is_forgiven() {
        let (context, _) = Context::parse(
            " 01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more\t",
            None,
        );
        assert_eq!(context.unwrap().to_json()["traceparent"], EXAMPLE);
    }

    #[test]
    fn an_invalid_tracestate_is_dropped_and_the_traceparent_kept() {
        for bad in [
            "nokey",
            "Upper=1",
            "a=b,a=c",
            "a=b\tc",
            "a=",
            "1abc=x",
            "a@=x",
            "a=b\u{7f}",
        ] {
            let (context, warning) = Context::parse(EXAMPLE, Some(bad));
            assert!(
                context.unwrap().to_json().get("tracestate").is_none(),
                "{bad}"
            );
            assert!(warning.unwrap().contains("tracestate"), "{bad}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert!(Context::parse(EXAMPLE, Some(&many.join(","))).1.is_some());
        for good in ["", "  ", "a=b, ,c=d", "tenant@vendor=x y", "k/_-*=!\"#"] {
            assert_eq!(Context::parse(EXAMPLE, Some(good)).1, None, "{good:?}");
        }
    }

    #[test]
    fn an_envelope_gives_back_its_context_and_only_a_valid_one() {
        let (context, _) = Context::parse(EXAMPLE, Some("a=b"));
        let context = context.unwrap();
        let body = json!({"schemaVersion": "1.0", "trace": context.to_json(), "sequence": 1});
        let bytes = serde_json::to_vec(&body).unwrap();
        assert_eq!(Context::from_envelope(&bytes), Some(context));
        assert_eq!(Context::from_envelope(br#"{"schemaVersion":"1.0"}"#), None);
        let forged = br#"{"trace":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nX: y"}}"#;
        assert_eq!(Context::from_envelope(forged), None);
        assert_eq!(Context::from_envelope(b"\"traceparent\" not json"), None);
    }
}
