//! Settings: finds `config.toml`, has `raw` read `[spec_ops.webhooks]` from
//! it, then resolves what the file says into [`Config`]: defaults, paths
//! relative to the file, the environment overrides, and validation of every
//! value, reporting every problem at once with the subscription, the key and
//! the fix. This is the only module that reads environment variables (config
//! path, enable switch, secrets, `url_env` URLs, `env:` header values).
//! Per-SPEC overrides are merged in [`specs`], per-call targets (`emit
//! --url`) become subscriptions in [`per_call`], and [`edit`] changes the
//! file in place for `spec-notify subscriptions`.

pub mod edit;
mod model;
mod per_call;
mod problems;
mod raw;
mod relay;
mod specs;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::circuit::BreakerPolicy;
use crate::envelope::{Stage, Status};
use crate::exit::user_error;
use crate::format::{Format, Style, Template};
use crate::url::redact_url;
use problems::{Check, Problems};
pub use relay::Relay;

use model::check_header_value;
pub use model::{
    Config, DEFAULT_EVIDENCE_DIR, DEFAULT_MAX_EVENT_BYTES, DEFAULT_SPOOL_DIR, ExtraHeader,
    HeaderValue, MAX_EVENT_BYTES_LIMIT, Rate, RetryPolicy, Scope, Subscription, adhoc_id,
    event_pattern_matches, is_adhoc_id, secret_from_env, shown_per_call_url,
};

pub const CONFIG_ENV: &str = "SPEC_NOTIFY_CONFIG";
pub const ENABLED_ENV: &str = "SPECKIT_WEBHOOKS_ENABLED";
pub const DEFAULT_CONFIG: &str = "config.toml";

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
];

fn is_reserved_header(name: &str) -> bool {
    RESERVED_HEADERS.iter().any(|r| match r.strip_suffix('*') {
        Some(prefix) => {
            name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)
        }
        None => name.eq_ignore_ascii_case(r),
    })
}

/// Where the config file is and how it was chosen.
#[derive(Debug, Clone)]
pub struct Location {
    pub path: PathBuf,
    /// True when neither `--config` nor the environment named it.
    pub is_default: bool,
}

pub fn locate(flag: Option<&Path>) -> Location {
    if let Some(path) = flag {
        return Location {
            path: path.to_path_buf(),
            is_default: false,
        };
    }
    match std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
        Some(path) => Location {
            path: PathBuf::from(path),
            is_default: false,
        },
        None => Location {
            path: PathBuf::from(DEFAULT_CONFIG),
            is_default: true,
        },
    }
}

/// Whether validation demands the secrets. `check` does: signing needs them.
/// `emit` never signs, so a guardrail without secrets must still spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    Required,
    Optional,
}

/// Loads and validates the config without requiring secrets (see
/// [`Config::secret_problems`]): emit must work without them.
pub fn load(location: &Location) -> Result<Config> {
    load_with(location, Secrets::Optional)
}

/// Loads and validates the config; with [`Secrets::Required`] an unset secret
/// is one more problem in the same list as the others.
pub fn load_with(location: &Location, secrets: Secrets) -> Result<Config> {
    let path = &location.path;
    let text = std::fs::read_to_string(path).map_err(|e| {
        let hint = if location.is_default {
            format!(
                " (pass --config PATH or set {CONFIG_ENV} to the config.toml holding [spec_ops.webhooks])"
            )
        } else {
            String::new()
        };
        user_error(format!(
            "cannot read config `{}`: {e}{hint}",
            path.display()
        ))
    })?;
    parse_with(&text, path, secrets)
}

/// Parses config text; `path` names the file in messages and anchors relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Config> {
    parse_with(text, path, Secrets::Optional)
}

fn parse_with(text: &str, path: &Path, secrets: Secrets) -> Result<Config> {
    let problems = Problems::default();
    let webhooks = raw::read(text, &problems)
        .map_err(|e| user_error(format!("`{}` is not valid TOML: {e}", path.display())))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut config = match webhooks {
        Some(webhooks) => resolve(webhooks, path, &base, &problems),
        None => Config::empty(path, &base),
    };
    apply_enabled_override(&mut config, &problems);
    if secrets == Secrets::Required {
        let mut seen = HashSet::new();
        let needing: Vec<(String, &Subscription)> = config
            .every_subscription()
            .filter(|(_, s)| s.needs_secret())
            .map(|(scope, s)| (at_of(scope, s), s))
            .filter(|(at, _)| seen.insert(at.clone()))
            .collect();
        let mut reported = HashSet::new();
        for (at, sub) in &needing {
            if let (Some(var), Err(_)) = (&sub.secret_env, sub.secret()) {
                // An override that inherits the global secret says nothing new.
                if reported.insert((sub.id.clone(), var.clone())) {
                    problems.push(
                        at,
                        format!("key `secret_env`: the environment variable {var} is unset or empty: export it (or set `dry_run = true` or `active = false`)"),
                    );
                }
            }
        }
        for (at, sub) in needing {
            let at = at.as_str();
            if let (Some(var), true) = (&sub.url_env, sub.url.is_empty()) {
                problems.key(
                    at,
                    "url_env",
                    format!("the environment variable {var} is unset or empty: export it"),
                );
            }
            for (name, var) in sub
                .headers
                .iter()
                .filter_map(|h| Some((&h.name, h.env_var()?)))
            {
                let why = match std::env::var(var).ok().filter(|v| !v.is_empty()) {
                    None => format!("the environment variable {var} is unset or empty: export it"),
                    Some(value) => match check_header_value(&value) {
                        Ok(()) => continue,
                        Err(e) => format!("the value in {var} is {e}"),
                    },
                };
                problems.key(at, "headers", format!("`{name}`: {why}"));
            }
        }
        if let Some(Err(line)) = config.relay.as_ref().map(Relay::credentials) {
            problems.push_line(line);
        }
        for p in config.secret_format_problems() {
            problems.push_line(p);
        }
    }
    problems.into_result(path)?;
    Ok(config)
}

/// Where messages name a subscription of a scope: ``subscription `id` `` for
/// a global one, its `specs` table for an override.
fn at_of(scope: Option<&str>, sub: &Subscription) -> String {
    match scope {
        None => format!("subscription `{}`", sub.id),
        Some(pattern) => raw::spec_table_at(pattern, Some(&sub.id)),
    }
}

fn apply_enabled_override(config: &mut Config, problems: &Problems) {
    let Ok(value) = std::env::var(ENABLED_ENV) else {
        return;
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => config.enabled = true,
        "0" | "false" | "no" | "off" | "" => config.enabled = false,
        _ => {
            problems.push(
                ENABLED_ENV,
                format!("`{value}` is not a switch: use 1, 0, true or false"),
            );
            return;
        }
    }
    config.enabled_source = format!("{ENABLED_ENV}={value}");
}

/// The settings `[spec_ops.webhooks]` asks for, over the defaults.
fn resolve(raw: raw::Webhooks, path: &Path, base: &Path, problems: &Problems) -> Config {
    let check = Check {
        at: raw::WEBHOOKS_AT,
        problems,
    };
    let mut c = Config::empty(path, base);
    if let Some(v) = raw.enabled {
        c.enabled = v;
        c.enabled_source = format!("enabled = {v} in {}", path.display());
    } else {
        c.enabled_source = format!("`enabled` is not set in {} (default false)", path.display());
    }
    c.max_concurrency = check
        .int("max_concurrency", raw.max_concurrency, 1, 256)
        .map_or(c.max_concurrency, |v| v as usize);
    c.max_spool_jobs = check
        .int("max_spool_jobs", raw.max_spool_jobs, 1, u32::MAX as i64)
        .map_or(c.max_spool_jobs, |v| v as usize);
    c.max_evidence_bytes = check
        .int(
            "max_evidence_bytes",
            raw.max_evidence_bytes,
            64 * 1024,
            i64::MAX,
        )
        .map_or(c.max_evidence_bytes, |v| v as u64);
    c.max_event_bytes = check
        .int(
            "max_event_bytes",
            raw.max_event_bytes,
            1024,
            MAX_EVENT_BYTES_LIMIT as i64,
        )
        .map_or(c.max_event_bytes, |v| v as usize);
    c.auto_drain = raw.auto_drain.unwrap_or(c.auto_drain);
    c.relay = raw.relay;
    if let Some(dir) = raw.spool_dir {
        c.spool_dir = base.join(dir);
    }
    if let Some(dir) = raw.evidence_dir {
        c.evidence_dir = base.join(dir);
    }
    c.evidence_base_url = raw
        .evidence_base_url
        .filter(|url| match check_link_base(url) {
            Ok(()) => true,
            Err(e) => {
                check.problem("evidence_base_url", e);
                false
            }
        });
    let mut seen = HashSet::new();
    let mut flawed = HashSet::new();
    for sub in raw.subscriptions {
        let at = sub.at.clone();
        let sub = resolve_subscription(sub, c.evidence_base_url.as_deref(), Kind::Config, problems);
        if !seen.insert(sub.id.clone()) {
            problems.push(
                &format!("subscription `{}`", sub.id),
                "duplicate `id`: every subscription needs its own id",
            );
        }
        if problems.has(&at) {
            flawed.insert(sub.id.clone());
        }
        c.subscriptions.push(sub);
    }
    c.specs = specs::resolve(
        &raw.specs,
        &specs::Base {
            tables: &raw.tables,
            subscriptions: &c.subscriptions,
            flawed: &flawed,
            evidence_base_url: c.evidence_base_url.as_deref(),
        },
        problems,
    );
    c
}

/// Where a subscription comes from, for what it may leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A table in the config: needs `secret_env`; private networks allowed
    /// unless it says otherwise.
    Config,
    /// `emit --url`: unsigned without `--secret-env`.
    PerCall,
}

/// `evidence_base_url` is shown as links, never fetched: any http(s) URL.
fn check_link_base(url: &str) -> std::result::Result<(), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| {
        format!(
            "`{url}` is not a valid URL ({e}): write it like https://github.com/org/repo/blob/main"
        )
    })?;
    match (uri.scheme_str(), uri.host()) {
        (Some("https" | "http"), Some(host)) if !host.is_empty() => Ok(()),
        _ => Err(format!(
            "`{url}` must be an http(s) URL, like https://github.com/org/repo/blob/main"
        )),
    }
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

fn resolve_subscription(
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
        allow_private_networks,
        overrides: Vec::new(),
        per_call: kind == Kind::PerCall,
    };
    if !sub.id.is_empty()
        && !sub
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        check.problem("id", "use letters, digits, `-`, `_` and `.` only");
    }
    if sub.needs_secret() && sub.secret_env.is_none() {
        check.problem(
            "secret_env",
            "missing: name the environment variable that holds this subscription's secret",
        );
    }
    sub
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

/// Loads the config for commands that cannot work without one; a missing
/// file is an exit-2 error naming where it was looked for.
pub fn load_required(flag: Option<&Path>) -> Result<Config> {
    load(&locate(flag))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRD_EXAMPLE: &str = include_str!("../../tests/fixtures/prd-config.toml");

    fn errors(text: &str) -> String {
        format!(
            "{:#}",
            parse(text, Path::new("/x/config.toml")).unwrap_err()
        )
    }

    #[test]
    fn prd_example_parses_with_paths_relative_to_the_file() {
        let c = parse(PRD_EXAMPLE, Path::new("/repo/config.toml")).unwrap();
        assert_eq!(c.subscriptions.len(), 2);
        assert_eq!(
            c.spool_dir,
            Path::new("/repo/docs/SPEC-OPS-004-integrated-coder-hooks/evidence/webhooks")
        );
        assert_eq!(
            c.evidence_for("S-1"),
            Path::new("/repo")
                .join(DEFAULT_EVIDENCE_DIR)
                .join("S-1/webhooks")
        );
        assert_eq!(c.subscriptions[0].retry.max_attempts, 10);
        assert_eq!(c.subscriptions[1].retry.initial_backoff_ms, 1000);
        assert!(c.subscriptions[1].dry_run);
    }

    #[test]
    fn foreign_tables_are_ignored_but_unknown_keys_inside_ours_are_named() {
        let text =
            "[model]\nname='x'\n[spec_ops.telemetry]\nx=1\n[spec_ops.webhooks]\nenabld = true\n";
        let e = errors(text);
        assert!(
            e.contains("unknown key `enabld` (did you mean `enabled`?)"),
            "{e}"
        );
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
        let c = parse(text, Path::new("/x/config.toml")).unwrap();
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
}
