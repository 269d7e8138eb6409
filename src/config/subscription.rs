//! One subscription table, as `raw` read it, resolved into a
//! [`Subscription`]: defaults, the URL (`url` or `url_env`), extra headers,
//! formats, filters, retry, rate and breaker settings, each value checked
//! and every problem recorded at the table's place. A global table, a
//! per-SPEC override and a per-call target all go through here ([`Kind`]).

use super::model::{ExtraHeader, HeaderValue, Rate, RetryPolicy, Subscription, check_header_value};
use super::problems::{Check, Problems};
use super::raw;
use crate::circuit::BreakerPolicy;
use crate::envelope::{Stage, Status};
use crate::format::{Format, Style, Template};
use crate::sign::Scheme;
use crate::url::redact_url;

/// The longest subscription id: it names files (the breaker's state, a
/// pause) and is printed in every table.
pub const MAX_SUBSCRIPTION_ID: usize = 64;

/// The rule for a subscription id, in the config and on the command line:
/// 1 to [`MAX_SUBSCRIPTION_ID`] ASCII letters, digits, `-`, `_` and `.`,
/// and never `.` or `..` (it names files).
pub fn check_subscription_id(id: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    let ok = (1..=MAX_SUBSCRIPTION_ID).contains(&id.len())
        && id.chars().all(allowed)
        && id != "."
        && id != "..";
    match ok {
        true => Ok(()),
        false => Err(format!(
            "`{}` is not a subscription id: use 1 to {MAX_SUBSCRIPTION_ID} letters, digits, `-`, `_` and `.`, not `.` or `..`",
            shown_id(id)
        )),
    }
}

/// An id as a message may show it: escaped, and cut short when long.
fn shown_id(id: &str) -> String {
    let escaped = id.escape_debug().to_string();
    match escaped.char_indices().nth(MAX_SUBSCRIPTION_ID) {
        Some((end, _)) => format!("{}… ({} bytes)", &escaped[..end], id.len()),
        None => escaped,
    }
}

/// Where a subscription comes from, for what it may leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A table in the config: needs `secret_env`; private networks allowed
    /// unless it says otherwise.
    Config,
    /// `emit --url`: unsigned without `--secret-env`.
    PerCall,
}

/// Headers spec-notify sets itself (and those HTTP owns): `headers` may not
/// name them.
pub const RESERVED_HEADERS: &[&str] = &[
    "Content-Type",
    "Content-Length",
    "Host",
    "Transfer-Encoding",
    "Connection",
    "User-Agent",
    "X-SpecKit-*",
    "X-Hub-Signature",
    "X-Hub-Signature-256",
    "X-GitHub-Event",
    "X-GitHub-Delivery",
    "X-GitHub-Hook-ID",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "traceparent",
    "tracestate",
];

fn is_reserved_header(name: &str) -> bool {
    RESERVED_HEADERS.iter().any(|r| match r.strip_suffix('*') {
        Some(prefix) => {
            name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)
        }
        None => name.eq_ignore_ascii_case(r),
    })
}

/// The URL from `url` or `url_env` (exactly one), checked. A problem with a
/// `url_env` URL never shows it.
fn resolve_url(
    raw: &raw::Subscription,
    allow_private: bool,
    kind: Kind,
    check: &Check<'_>,
) -> String {
    let url = resolve_url_text(raw, kind, check);
    let usable = match (&raw.url_env, kind) {
        (Some(_), _) | (None, Kind::PerCall) => crate::url::check_secret_url(&url).is_ok(),
        (None, Kind::Config) => crate::url::check_url(&url).is_ok(),
    };
    if usable
        && !allow_private
        && let Some(what) = url
            .parse::<ureq::http::Uri>()
            .ok()
            .and_then(|u| u.host().and_then(crate::address::private_host))
    {
        let (key, shown) = match &raw.url_env {
            Some(var) => ("url_env", format!("the URL in {var}")),
            None if kind == Kind::PerCall => ("url", "the URL".to_string()),
            None => ("url", format!("`{}`", redact_url(&url))),
        };
        check.problem(
            key,
            format!(
                "{shown} points at {what} and `allow_private_networks` is off: set `allow_private_networks = true` if this endpoint is meant to be on a private network (with `emit --url`: pass --allow-private-networks)"
            ),
        );
    }
    url
}

fn resolve_url_text(raw: &raw::Subscription, kind: Kind, check: &Check<'_>) -> String {
    match (&raw.url, &raw.url_env) {
        (Some(_), Some(_)) => {
            check.problem("url_env", "set either `url` or `url_env`, not both");
            String::new()
        }
        (None, None) => {
            check.problem(
                "url",
                "missing: every subscription needs `url` (or `url_env`, the variable holding a secret URL)",
            );
            String::new()
        }
        // A per-call URL may be a credential as a whole: its problems never
        // show it (the place they are reported at shows it redacted).
        (Some(url), None) if kind == Kind::PerCall => {
            if let Err(e) = crate::url::check_secret_url(url) {
                check.problem("url", e);
            }
            url.clone()
        }
        (Some(url), None) => {
            if let Err(e) = crate::url::check_url(url) {
                check.problem("url", e);
            }
            url.clone()
        }
        (None, Some(var)) => {
            let url = std::env::var(var).unwrap_or_default();
            if let (false, Err(e)) = (url.is_empty(), crate::url::check_secret_url(&url)) {
                check.problem("url_env", format!("the URL in {var} is not usable: {e}"));
            }
            url
        }
    }
}

/// The `headers` table: names HTTP accepts and spec-notify does not set
/// itself, literal values HTTP can carry, `env:VAR` naming a variable.
fn resolve_headers(raw: &[(String, String)], check: &Check<'_>) -> Vec<ExtraHeader> {
    let mut out: Vec<ExtraHeader> = Vec::new();
    for (name, value) in raw {
        if ureq::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            check.problem(
                "headers",
                format!("`{}` is not a valid header name", name.escape_debug()),
            );
            continue;
        }
        if is_reserved_header(name) {
            check.problem(
                "headers",
                format!(
                    "`{name}` is set by spec-notify and cannot be overridden; reserved: {}",
                    RESERVED_HEADERS.join(", ")
                ),
            );
            continue;
        }
        if out.iter().any(|h| h.name.eq_ignore_ascii_case(name)) {
            check.problem(
                "headers",
                format!("`{name}` is set twice (names ignore case)"),
            );
            continue;
        }
        let value = match value.strip_prefix("env:") {
            Some(var) if var.trim().is_empty() || var.contains('=') => {
                check.problem(
                    "headers",
                    format!(
                        "`{name}`: `env:` must be followed by a variable name, like env:API_TOKEN"
                    ),
                );
                continue;
            }
            Some(var) => HeaderValue::Env(var.trim().to_string()),
            None => {
                if let Err(e) = check_header_value(value) {
                    // The value may be a credential: never shown.
                    check.problem("headers", format!("`{name}`: {e}"));
                    continue;
                }
                HeaderValue::Literal(value.clone())
            }
        };
        out.push(ExtraHeader {
            name: name.clone(),
            value,
        });
    }
    out
}

pub(super) fn resolve_subscription(
    raw: raw::Subscription,
    evidence_base_url: Option<&str>,
    kind: Kind,
    problems: &Problems,
) -> Subscription {
    let check = Check {
        at: &raw.at,
        problems,
    };
    let defaults = RetryPolicy::default();
    let retry = RetryPolicy {
        max_attempts: check
            .int("max_attempts", raw.max_attempts, 1, 1000)
            .map_or(defaults.max_attempts, |v| v as u32),
        initial_backoff_ms: check
            .int("initial_backoff_ms", raw.initial_backoff_ms, 0, 86_400_000)
            .map_or(defaults.initial_backoff_ms, |v| v as u64),
        backoff_factor: check
            .float("backoff_factor", raw.backoff_factor, 1.0, 100.0)
            .unwrap_or(defaults.backoff_factor),
        jitter_ms: check
            .int("jitter_ms", raw.jitter_ms, 0, 3_600_000)
            .map_or(defaults.jitter_ms, |v| v as u64),
        per_request_timeout_ms: check
            .int(
                "per_request_timeout_ms",
                raw.per_request_timeout_ms,
                1,
                600_000,
            )
            .map_or(defaults.per_request_timeout_ms, |v| v as u64),
    };
    let format = raw
        .format
        .as_deref()
        .map_or(Format::Json, |name| match Format::parse(name) {
            Some(format) => format,
            None => {
                check.problem(
                    "format",
                    format!(
                        "unknown format `{name}`: use one of {}",
                        Format::NAMES.join(", ")
                    ),
                );
                Format::Json
            }
        });
    let text = raw
        .text
        .as_deref()
        .and_then(|text| match Template::parse(text) {
            Ok(template) => Some(template),
            Err(e) => {
                check.problem("text", e);
                None
            }
        });
    if text.is_some() && !format.is_chat() {
        check.problem(
            "text",
            "only chat formats have a summary line: set `format` to slack, mattermost, discord or teams, or remove `text`",
        );
    }
    let allow_private_networks = raw.allow_private_networks.unwrap_or(kind == Kind::Config);
    let sub = Subscription {
        id: raw.id.clone().unwrap_or_default(),
        url: resolve_url(&raw, allow_private_networks, kind, &check),
        url_env: raw.url_env.clone(),
        style: Style {
            format,
            text,
            evidence_base_url: evidence_base_url.map(String::from),
        },
        headers: resolve_headers(&raw.headers, &check),
        secret_env: raw.secret_env,
        secret_env_previous: raw.secret_env_previous,
        signing_key_env: raw.signing_key_env,
        signing_key_env_previous: raw.signing_key_env_previous,
        signature: check.scheme(raw.signature),
        active: raw.active.unwrap_or(true),
        dry_run: raw.dry_run.unwrap_or(false),
        include_events: check.valid("include_events", raw.include_events, check_event_pattern),
        include_stages: check.names(
            "include_stages",
            &raw.include_stages,
            Stage::parse,
            Stage::NAMES,
        ),
        include_status: check.names(
            "include_status",
            &raw.include_status,
            Status::parse,
            Status::NAMES,
        ),
        retry,
        max_in_flight: check
            .int("max_in_flight", raw.max_in_flight, 1, 256)
            .map(|v| v as usize),
        rate_limit: match raw.rate_limit {
            Some(text) => match Rate::parse(&text) {
                Ok(rate) => Some(rate),
                Err(e) => {
                    check.problem("rate_limit", e);
                    None
                }
            },
            None => format.is_chat().then_some(Rate::CHAT_DEFAULT),
        },
        max_age_ms: check
            .duration_ms("max_age", raw.max_age)
            .unwrap_or(Rate::DEFAULT_MAX_AGE_MS),
        breaker: BreakerPolicy {
            failures: check
                .int("circuit_failures", raw.circuit_failures, 1, 1000)
                .map_or(BreakerPolicy::default().failures, |v| v as u32),
            cooldown_ms: check
                .duration_ms("circuit_cooldown", raw.circuit_cooldown)
                .unwrap_or(BreakerPolicy::default().cooldown_ms),
            ..BreakerPolicy::default()
        },
        ordering: check.ordering(raw.ordering, raw.fifo_on_dead),
        allow_private_networks,
        overrides: Vec::new(),
        per_call: kind == Kind::PerCall,
    };
    if !sub.id.is_empty()
        && let Err(why) = check_subscription_id(&sub.id)
    {
        check.problem("id", why);
    }
    if sub.needs_secret() && sub.secret_env.is_none() && sub.signing_key_env.is_none() {
        check.problem(
            "secret_env",
            "missing: name the environment variable that holds this subscription's secret",
        );
    }
    check_signing_keys(&sub, &check);
    sub
}

/// A key pasted where the name of its variable belongs: it is never shown
/// (nor looked up).
pub(super) fn looks_like_key(var: &str) -> bool {
    ["whsk_", "whpk_", "whsec_"]
        .iter()
        .any(|p| var.starts_with(p))
}

/// `signing_key_env` names a variable holding a `whsk_` key, signs
/// Standard Webhooks only, and has a successor before a predecessor.
fn check_signing_keys(sub: &Subscription, check: &Check<'_>) {
    let named = [
        ("signing_key_env", &sub.signing_key_env),
        ("signing_key_env_previous", &sub.signing_key_env_previous),
    ];
    for (key, var) in named {
        let Some(var) = var else { continue };
        if looks_like_key(var) {
            check.problem(
                key,
                "holds a key, not the name of an environment variable: export the key in a variable (e.g. SPECKIT_WEBHOOK_SIGNING_KEY) and name that variable here",
            );
        }
    }
    if sub.signing_key_env.is_some() && sub.signature != Scheme::StandardWebhooks {
        check.problem(
            "signing_key_env",
            "ed25519 (`v1a`) signatures are Standard Webhooks': set `signature = \"standard-webhooks\"`, or remove signing_key_env",
        );
    }
    if sub.signing_key_env_previous.is_some() && sub.signing_key_env.is_none() {
        check.problem(
            "signing_key_env_previous",
            "a rotation needs the new key too: set signing_key_env to the variable holding it",
        );
    }
}

fn check_event_pattern(pattern: &str) -> std::result::Result<(), String> {
    if pattern == "*" {
        return Ok(());
    }
    let core = pattern.strip_suffix('*').unwrap_or(pattern);
    if core.contains('*') {
        return Err(format!(
            "`{pattern}`: `*` is allowed only at the end (e.g. `spec-auto.*`)"
        ));
    }
    if pattern.ends_with('*') {
        let prefix = core.trim_end_matches('.');
        let ok = !prefix.is_empty() && prefix.split('.').all(crate::envelope::is_event_segment);
        return if ok {
            Ok(())
        } else {
            Err(format!("`{pattern}` is not a valid event prefix"))
        };
    }
    crate::envelope::check_event_type(pattern).map_err(|e| format!("`{pattern}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> String {
        format!(
            "{:#}",
            crate::config::parse(text, std::path::Path::new("/x/config.toml")).unwrap_err()
        )
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let text = r#"
[spec_ops.webhooks]
enabled = true
[[spec_ops.webhooks.subscriptions]]
id = "a"
url = "http://example.com/hook"
secret_env = "X"
include_stages = ["Plann"]
include_status = ["ok"]
max_attempts = 0
backoff_factor = 0.5
per_request_timeout_ms = 0
[[spec_ops.webhooks.subscriptions]]
id = "a"
url = "not a url"
secret_env = "Y"
include_events = ["Spec.Stage"]
"#;
        let e = errors(text);
        for needle in [
            "subscription `a`: key `url`: `http://example.com/hook` uses plain http",
            "key `include_stages`: unknown value `Plann`",
            "key `include_status`: unknown value `ok`",
            "key `max_attempts`: 0 is out of range",
            "key `backoff_factor`: 0.5 is out of range",
            "key `per_request_timeout_ms`: 0 is out of range",
            "duplicate `id`",
            "`not a url` is not a valid URL",
            "key `include_events`: `Spec.Stage`",
        ] {
            assert!(e.contains(needle), "missing {needle:?} in:\n{e}");
        }
        assert!(e.contains("(9 problems)"), "{e}");
    }

    #[test]
    fn ordering_reads_fifo_and_its_dead_letter_policy() {
        use crate::config::{OnDead, Ordering};
        let parse = |extra: &str| {
            let text = format!(
                "[spec_ops.webhooks]\nenabled = true\n[[spec_ops.webhooks.subscriptions]]\nid = \"a\"\nurl = \"https://a.example/h\"\nsecret_env = \"S\"\n{extra}\n"
            );
            crate::config::parse(&text, std::path::Path::new("/x/config.toml"))
                .map(|c| c.subscriptions[0].ordering)
                .map_err(|e| format!("{e:#}"))
        };
        assert_eq!(parse(""), Ok(Ordering::None));
        assert_eq!(
            parse("ordering = \"fifo\""),
            Ok(Ordering::Fifo {
                on_dead: OnDead::Continue
            })
        );
        assert!(
            parse("ordering = \"fifo\"\nfifo_on_dead = \"hold\"")
                .unwrap()
                .holds_on_dead()
        );
        let e = parse("ordering = \"strict\"").unwrap_err();
        assert!(
            e.contains("key `ordering`: unknown value `strict`: use one of none, fifo"),
            "{e}"
        );
        let e = parse("fifo_on_dead = \"hold\"").unwrap_err();
        assert!(e.contains("add `ordering = \"fifo\"`"), "{e}");
        let e = parse("ordering = \"fifo\"\nfifo_on_dead = \"skip\"").unwrap_err();
        assert!(e.contains("use one of continue, hold"), "{e}");
    }

    #[test]
    fn chat_formats_templates_and_headers_resolve() {
        let text = r#"
[spec_ops.webhooks]
evidence_base_url = "https://github.com/org/repo/blob/main"
[[spec_ops.webhooks.subscriptions]]
id = "slack"
url = "https://hooks.slack.com/services/T0/B0/secret"
format = "slack"
text = "{{event.icon}} {{spec.id}}"
headers = { Authorization = "env:GATEWAY_TOKEN", X-Team = "platform" }
dry_run = true
[[spec_ops.webhooks.subscriptions]]
id = "discord"
url = "https://discord.com/api/webhooks/1/secret"
format = "discord"
rate_limit = "5/s"
dry_run = true
[[spec_ops.webhooks.subscriptions]]
id = "plain"
url = "https://example.com/hook"
dry_run = true
"#;
        let c = crate::config::parse(text, std::path::Path::new("/x/config.toml")).unwrap();
        let slack = &c.subscriptions[0];
        assert_eq!(slack.style.format, Format::Slack);
        assert!(slack.style.text.is_some());
        assert_eq!(
            slack.style.evidence_base_url.as_deref(),
            Some("https://github.com/org/repo/blob/main")
        );
        assert_eq!(slack.rate_limit, Some(Rate::CHAT_DEFAULT), "chat default");
        assert_eq!(
            slack.shown_url(),
            "https://hooks.slack.com/services/<redacted>"
        );
        assert_eq!(
            slack.headers,
            [
                ExtraHeader {
                    name: "Authorization".into(),
                    value: HeaderValue::Env("GATEWAY_TOKEN".into())
                },
                ExtraHeader {
                    name: "X-Team".into(),
                    value: HeaderValue::Literal("platform".into())
                },
            ]
        );
        assert_eq!(slack.headers[0].shown(), "<redacted: env GATEWAY_TOKEN>");
        assert_eq!(slack.headers[1].shown(), "<redacted>");
        assert_eq!(
            c.subscriptions[1].rate_limit,
            Some(Rate {
                count: 5,
                per_ms: 1000
            }),
            "an explicit rate wins"
        );
        assert_eq!(c.subscriptions[2].style.format, Format::Json);
        assert_eq!(c.subscriptions[2].rate_limit, None, "json keeps no limit");
    }

    #[test]
    fn format_template_url_and_header_problems_are_named() {
        let text = r#"
[spec_ops.webhooks]
evidence_base_url = "ftp://files"
[[spec_ops.webhooks.subscriptions]]
id = "a"
url = "https://a.example/h"
url_env = "A_URL"
format = "slak"
dry_run = true
[[spec_ops.webhooks.subscriptions]]
id = "b"
format = "teams"
text = "{{spec.id}} {{task.name}}"
headers = { Content-Type = "text/plain", x-speckit-id = "1", Authorization = "env:", "X-Bad" = "a\nb" }
dry_run = true
[[spec_ops.webhooks.subscriptions]]
id = "c"
url = "https://c.example/h"
text = "{{spec.id}}"
dry_run = true
"#;
        let e = errors(text);
        for needle in [
            "key `evidence_base_url`: `ftp://files` must be an http(s) URL",
            "subscription `a`: key `url_env`: set either `url` or `url_env`, not both",
            "subscription `a`: key `format`: unknown format `slak`: use one of json, slack, mattermost, discord, teams",
            "subscription `b`: key `url`: missing: every subscription needs `url` (or `url_env`",
            "subscription `b`: key `text`: unknown placeholder `{{task.name}}`; known: summary,",
            "subscription `b`: key `headers`: `Content-Type` is set by spec-notify",
            "subscription `b`: key `headers`: `x-speckit-id` is set by spec-notify",
            "subscription `b`: key `headers`: `Authorization`: `env:` must be followed by a variable name",
            "subscription `b`: key `headers`: `X-Bad`: not a valid header value",
            "subscription `c`: key `text`: only chat formats have a summary line",
        ] {
            assert!(e.contains(needle), "missing {needle:?} in:\n{e}");
        }
        assert!(e.contains("(10 problems)"), "{e}");
    }

    #[test]
    fn signing_keys_are_checked_without_showing_a_pasted_key() {
        let text = r#"
[spec_ops.webhooks]
[[spec_ops.webhooks.subscriptions]]
id = "pasted"
url = "https://a.example/h"
signature = "standard-webhooks"
signing_key_env = "whsk_UEFTVEVELUtFWS1TSE9VTEQtTk9ULVNIT1ctMDE="
[[spec_ops.webhooks.subscriptions]]
id = "hmac-scheme"
url = "https://b.example/h"
secret_env = "S"
signing_key_env = "K"
[[spec_ops.webhooks.subscriptions]]
id = "no-new-key"
url = "https://c.example/h"
signature = "standard-webhooks"
secret_env = "S"
signing_key_env_previous = "K_OLD"
[[spec_ops.webhooks.subscriptions]]
id = "nothing"
url = "https://d.example/h"
signature = "standard-webhooks"
headers = { traceparent = "00-x", TraceState = "a=b" }
"#;
        let e = errors(text);
        for needle in [
            "subscription `pasted`: key `signing_key_env`: holds a key, not the name of an environment variable",
            "subscription `hmac-scheme`: key `signing_key_env`: ed25519 (`v1a`) signatures are Standard Webhooks'",
            "subscription `no-new-key`: key `signing_key_env_previous`: a rotation needs the new key too",
            "subscription `nothing`: key `secret_env`: missing",
            "subscription `nothing`: key `headers`: `traceparent` is set by spec-notify",
            "subscription `nothing`: key `headers`: `TraceState` is set by spec-notify",
        ] {
            assert!(e.contains(needle), "missing {needle:?} in:\n{e}");
        }
        assert!(!e.contains("UEFTVEVE"), "a pasted key is never shown:\n{e}");
    }

    #[test]
    fn a_signing_key_alone_signs_standard_webhooks_without_a_secret() {
        let text = r#"
[spec_ops.webhooks]
[[spec_ops.webhooks.subscriptions]]
id = "ed"
url = "https://a.example/h"
signature = "standard-webhooks"
signing_key_env = "SUBSCRIPTION_TEST_UNSET_KEY"
"#;
        let c = crate::config::parse(text, std::path::Path::new("/x/config.toml")).unwrap();
        let sub = &c.subscriptions[0];
        assert!(sub.needs_secret() && sub.secret_env.is_none());
        let missing = sub.missing_signing_variable().unwrap();
        assert!(
            missing.contains(
                "set the environment variable SUBSCRIPTION_TEST_UNSET_KEY (signing_key_env)"
            ),
            "{missing}"
        );
        assert!(
            sub.signer()
                .unwrap_err()
                .contains("SUBSCRIPTION_TEST_UNSET_KEY")
        );
        assert_eq!(sub.public_key(), None);
    }
}
