//! Retry policy: what an attempt's result means for the job (delivered, retry
//! at a time, or dead with a reason and a hint, chat platforms' answers
//! read for theirs), exponential backoff with jitter, and `Retry-After`.
//! Pure functions of their inputs, `now` included.

use crate::config::{RetryPolicy, Subscription};
use crate::deliver::Answer;
use crate::format::Format;

/// No wait, whether from backoff or `Retry-After`, is longer than this.
pub const MAX_WAIT_MS: u64 = 60 * 60 * 1000;

/// What happens to a job after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Delivered,
    Retry { at_ms: u64 },
    Dead { reason: &'static str },
}

/// How a response (or its absence) is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Success,
    Retryable,
    Terminal,
}

/// 2xx success; 3xx (never followed), 408, 429, 5xx and transport errors are
/// retried; 410 and every other 4xx are terminal.
pub fn classify(status: Option<u16>) -> Class {
    match status {
        Some(200..=299) => Class::Success,
        Some(408 | 429) => Class::Retryable,
        Some(400..=499) => Class::Terminal,
        _ => Class::Retryable,
    }
}

/// The wait after failed attempt `n` (1-based): initial × factor^(n-1) + jitter,
/// where `unit` in [0, 1) picks the jitter.
pub fn backoff_ms(policy: &RetryPolicy, n: u32, unit: f64) -> u64 {
    let exp = policy
        .backoff_factor
        .powi(n.saturating_sub(1).min(64) as i32);
    let base = (policy.initial_backoff_ms as f64 * exp).min(MAX_WAIT_MS as f64) as u64;
    let jitter = (policy.jitter_ms as f64 * unit.clamp(0.0, 1.0)).round() as u64;
    (base + jitter).min(MAX_WAIT_MS)
}

/// `Retry-After` as a wait in ms: delta-seconds or an HTTP-date, capped.
pub fn retry_after_ms(value: &str, now_ms: u64) -> Option<u64> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => secs.saturating_mul(1000),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            crate::clock::to_millis(at).saturating_sub(now_ms)
        }
    };
    Some(wait.min(MAX_WAIT_MS))
}

/// Decides the job's fate after attempt number `attempt` got `answer`.
pub fn decide(
    policy: &RetryPolicy,
    attempt: u32,
    answer: &Answer,
    now_ms: u64,
    unit: f64,
) -> Verdict {
    match classify(answer.status()) {
        Class::Success => Verdict::Delivered,
        Class::Terminal => Verdict::Dead { reason: "rejected" },
        Class::Retryable if attempt >= policy.max_attempts => Verdict::Dead {
            reason: "exhausted",
        },
        Class::Retryable => {
            let backoff = backoff_ms(policy, attempt, unit);
            let asked = answer
                .retry_after()
                .and_then(|v| retry_after_ms(v, now_ms))
                .unwrap_or(0);
            Verdict::Retry {
                at_ms: now_ms + backoff.max(asked),
            }
        }
    }
}

/// What an operator should do about a dead job, in one sentence.
pub fn dead_hint(
    answer: &Answer,
    attempts: u32,
    sub: &Subscription,
    spec: &str,
    id: &str,
) -> String {
    let replay = format!("then run `spec-notify replay {spec} --delivery-id {id}`");
    if let Some(hint) = chat_hint(answer, sub, &replay) {
        return hint;
    }
    // The dead line already shows the status or the error (`rejected: HTTP
    // 401`): the hint says what to do, not what happened again.
    match answer.status() {
        Some(401 | 403) => format!(
            "the receiver refused the credentials: {}, {replay}",
            credentials_hint(sub)
        ),
        Some(404 | 410) => format!(
            "the URL no longer takes deliveries: fix `url` of subscription {}, {replay}",
            sub.id
        ),
        Some(300..=399) => format!(
            "redirects are never followed: set `url` of subscription {} to the final address, {replay}",
            sub.id
        ),
        Some(400..=499) => format!(
            "the receiver refused the payload: see its answer in the evidence log and the receiver's logs, {replay}"
        ),
        Some(_) => format!(
            "it kept failing for {attempts} attempts: check the receiver's health, {replay}"
        ),
        None => format!(
            "unreachable for {attempts} attempts: check that the host is up and reachable, {replay}"
        ),
    }
}

/// What a 401 or 403 asks to check: the `Authorization` header's variable
/// when the subscription sends one (the receiver checks that first), and
/// the signing secret.
fn credentials_hint(sub: &Subscription) -> String {
    let secret = match (&sub.signing_key_env, sub.secret_env.as_deref()) {
        (Some(key), also) => format!(
            "the signing key in {key} (signing_key_env{}) and that the receiver trusts its public key (`spec-notify keys public --key-env {key}` prints it)",
            also.map(|s| format!("; and secret_env {s}"))
                .unwrap_or_default()
        ),
        (None, Some(var)) => {
            format!("the signing secret in {var} (secret_env) and the receiver's copy of it")
        }
        (None, None) => {
            "whether the receiver expects a signature (the subscription has no secret_env)".into()
        }
    };
    let auth = sub
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"));
    match auth.map(|h| &h.value) {
        Some(crate::config::HeaderValue::Env(var)) => format!(
            "check the Authorization header's token in {var} (headers) for subscription {}, then {secret}",
            sub.id
        ),
        Some(_) => format!(
            "check the Authorization header (headers) of subscription {}, then {secret}",
            sub.id
        ),
        None => format!("check {secret} for subscription {}", sub.id),
    }
}

/// What a chat platform's error answer says: its error token (Slack's
/// plain-text `no_text`, Discord's JSON `code`, Mattermost's error `id`,
/// Teams' `error.code`) and the format that platform takes.
fn chat_error(answer: &Answer) -> Option<(String, Option<Format>)> {
    let body = String::from_utf8_lossy(answer.body());
    let body = body.trim();
    const SLACK: &[&str] = &[
        "no_text",
        "invalid_payload",
        "invalid_blocks",
        "invalid_blocks_format",
        "missing_text_or_fallback_or_attachments",
        "no_service",
        "no_service_id",
        "no_team",
        "team_disabled",
        "channel_not_found",
        "channel_is_archived",
        "invalid_token",
        "action_prohibited",
        "posting_to_general_channel_denied",
        "too_many_attachments",
    ];
    if SLACK.contains(&body) {
        return Some((body.to_string(), Some(Format::Slack)));
    }
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    if let Some(code) = json.get("code").and_then(serde_json::Value::as_u64) {
        return Some((format!("code {code}"), Some(Format::Discord)));
    }
    if let Some(id) = json
        .get("id")
        .and_then(serde_json::Value::as_str)
        .filter(|id| id.starts_with("web.incoming_webhook"))
    {
        return Some((id.to_string(), Some(Format::Mattermost)));
    }
    let teams = json
        .pointer("/error/code")
        .and_then(serde_json::Value::as_str)?;
    Some((teams.to_string(), None))
}

/// The hint for a dead job whose endpoint is (or answered like) a chat
/// platform: a body in the wrong format, a deleted or revoked webhook.
fn chat_hint(answer: &Answer, sub: &Subscription, replay: &str) -> Option<String> {
    let code = answer.status()?;
    let known = crate::url::chat_platform(&sub.url).and_then(Format::for_platform);
    let error = chat_error(answer);
    if !sub.style.format.is_chat() && known.is_none() && error.is_none() {
        return None;
    }
    let token = error
        .as_ref()
        .map_or(String::new(), |(t, _)| format!(" `{t}`"));
    let platform = error
        .as_ref()
        .and_then(|(_, f)| *f)
        .or(known)
        .or(Some(sub.style.format).filter(|f| f.is_chat()));
    let name = platform
        .and_then(Format::platform)
        .unwrap_or("the chat platform");
    let wrong_format = error.as_ref().is_some_and(|(t, _)| {
        matches!(
            t.as_str(),
            "no_text"
                | "invalid_payload"
                | "invalid_blocks"
                | "invalid_blocks_format"
                | "missing_text_or_fallback_or_attachments"
                | "code 50006"
                | "code 50035"
        ) || t.starts_with("web.incoming_webhook")
    });
    let deleted = error.as_ref().is_some_and(|(t, _)| {
        matches!(
            t.as_str(),
            "no_service" | "no_team" | "channel_not_found" | "code 10015"
        )
    });
    let id = &sub.id;
    let url_key = if sub.url_env.is_some() {
        "the variable in `url_env`"
    } else {
        "`url`"
    };
    Some(match code {
        400 | 422 if wrong_format => match platform.filter(|p| *p != sub.style.format) {
            Some(want) => format!(
                "{name} answered {code}{token}: it takes {name} messages, and subscription {id} sends {}: set `format = \"{}\"`, {replay}",
                match sub.style.format {
                    Format::Json => "the JSON envelope".to_string(),
                    other => format!("`{}` messages", other.as_str()),
                },
                want.as_str()
            ),
            None => format!(
                "{name} rejected the message ({code}{token}): check that `format = \"{}\"` of subscription {id} is the webhook's platform and see the response in the evidence log, {replay}",
                sub.style.format.as_str()
            ),
        },
        404 | 410 if deleted || sub.style.format.is_chat() => format!(
            "{name} answered {code}{token}: the webhook was deleted (or its URL is wrong); create a new incoming webhook and put its URL in {url_key} of subscription {id}, {replay}"
        ),
        401 | 403 => format!(
            "{name} refused the post ({code}{token}): the webhook was revoked, or may not post to its channel; check it in {name}'s settings and update {url_key} of subscription {id} if it changed, {replay}"
        ),
        400..=499 => format!(
            "{name} rejected the message ({code}{token}): see the response in the evidence log; check that `format = \"{}\"` of subscription {id} matches the webhook's platform, {replay}",
            sub.style.format.as_str()
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::Answer;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff_ms: 1000,
            backoff_factor: 2.0,
            jitter_ms: 100,
            per_request_timeout_ms: 5000,
        }
    }

    fn status(code: u16) -> Answer {
        Answer::Response {
            status: code,
            retry_after: None,
            disable: false,
            body: Vec::new(),
        }
    }

    #[test]
    fn classes() {
        assert_eq!(classify(Some(204)), Class::Success);
        for code in [301, 302, 408, 429, 500, 503] {
            assert_eq!(classify(Some(code)), Class::Retryable, "{code}");
        }
        for code in [400, 401, 404, 410, 422] {
            assert_eq!(classify(Some(code)), Class::Terminal, "{code}");
        }
        assert_eq!(classify(None), Class::Retryable);
    }

    #[test]
    fn exponential_backoff_with_bounded_jitter() {
        let p = policy();
        assert_eq!(backoff_ms(&p, 1, 0.0), 1000);
        assert_eq!(backoff_ms(&p, 2, 0.0), 2000);
        assert_eq!(backoff_ms(&p, 3, 0.0), 4000);
        assert_eq!(backoff_ms(&p, 3, 1.0), 4100);
        assert_eq!(backoff_ms(&p, 200, 0.5), MAX_WAIT_MS);
    }

    #[test]
    fn retry_after_delta_and_date_are_honoured_and_capped() {
        assert_eq!(retry_after_ms("2", 0), Some(2000));
        assert_eq!(retry_after_ms("999999", 0), Some(MAX_WAIT_MS));
        let now = 1_445_412_480_000; // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(
            retry_after_ms("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(30_000)
        );
        assert_eq!(
            retry_after_ms("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(0)
        );
        assert_eq!(retry_after_ms("soon", now), None);
    }

    #[test]
    fn decisions() {
        let p = policy();
        assert_eq!(decide(&p, 1, &status(200), 0, 0.0), Verdict::Delivered);
        assert_eq!(
            decide(&p, 1, &status(503), 0, 0.0),
            Verdict::Retry { at_ms: 1000 }
        );
        assert_eq!(
            decide(&p, 3, &status(503), 0, 0.0),
            Verdict::Dead {
                reason: "exhausted"
            }
        );
        assert_eq!(
            decide(&p, 1, &status(410), 0, 0.0),
            Verdict::Dead { reason: "rejected" }
        );
        let slow_down = Answer::Response {
            status: 429,
            retry_after: Some("30".into()),
            disable: false,
            body: Vec::new(),
        };
        assert_eq!(
            decide(&p, 1, &slow_down, 0, 0.0),
            Verdict::Retry { at_ms: 30_000 }
        );
        let timeout = Answer::Failed {
            error: "timed out".into(),
        };
        assert_eq!(
            decide(&p, 2, &timeout, 0, 0.0),
            Verdict::Retry { at_ms: 2000 }
        );
    }

    fn answered(code: u16, body: &str) -> Answer {
        Answer::Response {
            status: code,
            retry_after: None,
            disable: false,
            body: body.as_bytes().to_vec(),
        }
    }

    fn sub(format: &str, url: &str) -> Subscription {
        let text = format!(
            "[spec_ops.webhooks]\n[[spec_ops.webhooks.subscriptions]]\nid = \"chat\"\nurl = \"{url}\"\nformat = \"{format}\"\ndry_run = true\n"
        );
        crate::config::parse(&text, std::path::Path::new("c.toml"))
            .unwrap()
            .subscriptions
            .remove(0)
    }

    #[test]
    fn chat_answers_get_chat_hints() {
        let hint = |format: &str, url: &str, answer: Answer| {
            dead_hint(&answer, 1, &sub(format, url), "S", "d")
        };
        let slack = "https://hooks.slack.com/services/T/B/x";
        let h = hint("json", slack, answered(400, "no_text"));
        assert!(
            h.starts_with("Slack answered 400 `no_text`: it takes Slack messages, and subscription chat sends the JSON envelope: set `format = \"slack\"`"),
            "{h}"
        );
        assert!(
            h.ends_with("then run `spec-notify replay S --delivery-id d`"),
            "{h}"
        );
        let h = hint("discord", "https://example.com/h", answered(400, "no_text"));
        assert!(
            h.contains("subscription chat sends `discord` messages: set `format = \"slack\"`"),
            "{h}"
        );
        let h = hint(
            "json",
            "https://example.com/h",
            answered(
                400,
                r#"{"message": "Cannot send an empty message", "code": 50006}"#,
            ),
        );
        assert!(h.starts_with("Discord answered 400 `code 50006`"), "{h}");
        assert!(h.contains("set `format = \"discord\"`"), "{h}");
        let h = hint("slack", slack, answered(404, "no_service"));
        assert!(
            h.starts_with("Slack answered 404 `no_service`: the webhook was deleted"),
            "{h}"
        );
        let h = hint(
            "discord",
            "https://discord.com/api/webhooks/1/t",
            answered(404, r#"{"message": "Unknown Webhook", "code": 10015}"#),
        );
        assert!(
            h.starts_with("Discord answered 404 `code 10015`: the webhook was deleted"),
            "{h}"
        );
        let h = hint("slack", slack, answered(403, "action_prohibited"));
        assert!(
            h.starts_with(
                "Slack refused the post (403 `action_prohibited`): the webhook was revoked"
            ),
            "{h}"
        );
        assert!(!h.contains("secret_env"), "not a signing problem: {h}");
        let h = hint(
            "teams",
            "https://x.webhook.office.com/a/b",
            answered(400, ""),
        );
        assert!(h.starts_with("Teams rejected the message (400)"), "{h}");
        // Not a chat platform at all: the generic hints.
        let h = hint("json", "https://example.com/h", answered(403, "forbidden"));
        assert!(
            h.contains("check whether the receiver expects a signature"),
            "{h}"
        );
        assert!(!h.contains("403"), "the dead line says the status: {h}");
    }

    #[test]
    fn a_401_hint_points_at_the_authorization_header_first() {
        let mut s = sub("json", "https://example.com/h");
        s.secret_env = Some("HOOK_SECRET".into());
        let h = dead_hint(&answered(401, ""), 1, &s, "S", "d");
        assert!(
            h.starts_with(
                "the receiver refused the credentials: check the signing secret in HOOK_SECRET (secret_env)"
            ),
            "{h}"
        );
        s.headers.push(crate::config::ExtraHeader {
            name: "Authorization".into(),
            value: crate::config::HeaderValue::Env("API_TOKEN".into()),
        });
        let h = dead_hint(&answered(401, ""), 1, &s, "S", "d");
        assert!(
            h.starts_with(
                "the receiver refused the credentials: check the Authorization header's token in API_TOKEN (headers)"
            ),
            "{h}"
        );
        assert!(h.contains("HOOK_SECRET"), "{h}");
        let h = dead_hint(
            &Answer::Failed {
                error: "connection error: refused".into(),
            },
            3,
            &s,
            "S",
            "d",
        );
        assert!(h.starts_with("unreachable for 3 attempts: check"), "{h}");
        assert!(
            !h.contains("refused"),
            "the error is said once, in the dead line: {h}"
        );
    }
}
