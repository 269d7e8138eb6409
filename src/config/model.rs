//! The resolved settings: [`Config`], its [`Subscription`]s and their parts
//! ([`RetryPolicy`], [`Rate`], [`ExtraHeader`]), the per-SPEC [`Scope`]s,
//! and the defaults. Also what they answer once resolved: which events a
//! subscription takes, the secrets, URL and header values it reads from the
//! environment at send time, and how its URL is shown; for a per-call
//! target (`emit --url`), also its derived `adhoc-` id.

use std::path::{Path, PathBuf};

use sha2::Digest;

use super::relay::Relay;
use crate::envelope::{Stage, Status};
use crate::format::Style;
use crate::sign::{Scheme, Secret, Signer, SigningKey};
use crate::url::{redact_url, redact_url_path};

pub const DEFAULT_SPOOL_DIR: &str = "docs/SPEC-OPS-004-integrated-coder-hooks/evidence/webhooks";
/// `max_event_bytes` unless set: far above any pipeline event, far below
/// what would strain a receiver (Svix caps payloads near 350 kB).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;
/// The most `max_event_bytes` may be (what `receive` accepts).
pub const MAX_EVENT_BYTES_LIMIT: usize = 16 * 1024 * 1024;
/// A drain's active set when the config does not say: jobs it holds in
/// memory at once (Postfix's `qmgr_message_active_limit`).
pub const DEFAULT_MAX_ACTIVE_JOBS: usize = 10_000;
pub const DEFAULT_EVIDENCE_DIR: &str = "docs/SPEC-OPS-004-integrated-coder-hooks/evidence/commands";

/// The resolved, validated `[spec_ops.webhooks]` settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file these settings came from.
    pub path: PathBuf,
    pub enabled: bool,
    /// Why `enabled` has its value (file, default or environment), for `-v`.
    pub enabled_source: String,
    pub max_concurrency: usize,
    pub spool_dir: PathBuf,
    pub evidence_dir: PathBuf,
    /// Pending jobs per SPEC before emit moves the oldest to dead-letter.
    pub max_spool_jobs: usize,
    /// Jobs a drain holds in memory at once (its active set), across SPECs.
    pub max_active_jobs: usize,
    /// Evidence footprint cap per SPEC (attempt logs plus delivered jobs).
    pub max_evidence_bytes: u64,
    /// The largest event emit accepts (its envelope as spooled).
    pub max_event_bytes: usize,
    pub auto_drain: bool,
    /// Evidence paths in chat messages link under this URL.
    pub evidence_base_url: Option<String>,
    /// The global subscriptions, in file order.
    pub subscriptions: Vec<Subscription>,
    /// Per-SPEC overrides: for each `[spec_ops.webhooks.specs."PATTERN"]`,
    /// the subscriptions in effect for SPECs it is the most specific match
    /// of (overrides of less specific patterns merged in). Use
    /// [`Config::subscriptions_for`].
    pub specs: Vec<Scope>,
    /// `[spec_ops.webhooks.relay]`: NATS JetStream for `relay` and
    /// `drain --source nats`.
    pub relay: Option<Relay>,
    /// `[[spec_ops.webhooks.alerts]]`: the alert rules, in file order.
    pub alerts: Vec<super::alerts::AlertRule>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub backoff_factor: f64,
    pub jitter_ms: u64,
    pub per_request_timeout_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            initial_backoff_ms: 1000,
            backoff_factor: 2.0,
            jitter_ms: 250,
            per_request_timeout_ms: 5000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    /// Where deliveries go: `url`, or the value of `url_env` (empty when
    /// that variable is unset). Show it with [`Subscription::shown_url`].
    pub url: String,
    /// The variable the URL was read from: the whole URL is then a secret.
    pub url_env: Option<String>,
    /// The body's format, `text` template and evidence links.
    pub style: Style,
    /// Extra request headers.
    pub headers: Vec<ExtraHeader>,
    /// The variable holding the HMAC secret (and its predecessor during a
    /// rotation).
    pub secret_env: Option<String>,
    pub secret_env_previous: Option<String>,
    /// The variable holding the ed25519 `whsk_` key that signs Standard
    /// Webhooks `v1a` (and its predecessor during a rotation).
    pub signing_key_env: Option<String>,
    pub signing_key_env_previous: Option<String>,
    pub signature: Scheme,
    pub active: bool,
    pub dry_run: bool,
    pub include_events: Vec<String>,
    pub include_stages: Vec<Stage>,
    pub include_status: Vec<Status>,
    pub retry: RetryPolicy,
    /// Requests in flight at once to this endpoint (default: one less than
    /// `max_concurrency`, so a dead endpoint leaves a worker for the others).
    pub max_in_flight: Option<usize>,
    /// At most this many requests per time window; jobs wait their turn.
    pub rate_limit: Option<Rate>,
    /// A job that waited longer is dead-lettered as `expired`.
    pub max_age_ms: u64,
    pub breaker: crate::circuit::BreakerPolicy,
    /// Delivery order per (SPEC, subscription) lane.
    pub ordering: Ordering,
    /// May deliveries reach private addresses (loopback, RFC 1918,
    /// link-local, …)? Checked on the URL and on every resolved address.
    /// Default: true for config URLs, false for `emit --url`.
    pub allow_private_networks: bool,
    /// The `specs` patterns whose tables changed or added this subscription,
    /// least specific first; empty for a global subscription as written.
    pub overrides: Vec<String>,
    /// A one-off target from `emit --url`: its URL is shown only redacted,
    /// and without `secret_env` it is sent unsigned.
    pub per_call: bool,
}

/// The order a subscription's jobs are delivered in, per SPEC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ordering {
    /// Best effort: due jobs go out as workers free up (retries may pass
    /// one another).
    #[default]
    None,
    /// Strictly by sequence per SPEC: a job goes out only once every
    /// earlier one of its lane was delivered or dead-lettered, one request
    /// in flight per lane.
    Fifo { on_dead: OnDead },
}

impl Ordering {
    pub const NAMES: &[&str] = &["none", "fifo"];

    pub fn is_fifo(self) -> bool {
        matches!(self, Ordering::Fifo { .. })
    }

    /// Whether a dead-lettered job holds its lane.
    pub fn holds_on_dead(self) -> bool {
        matches!(
            self,
            Ordering::Fifo {
                on_dead: OnDead::Hold
            }
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Ordering::None => "none",
            Ordering::Fifo { .. } => "fifo",
        }
    }
}

/// What a FIFO lane does once its head is dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDead {
    /// Go on with the next job (the dead one is reported as usual).
    #[default]
    Continue,
    /// Send nothing more until an operator replays or discards it.
    Hold,
}

impl OnDead {
    pub const NAMES: &[&str] = &["continue", "hold"];
}

/// One extra request header of a subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtraHeader {
    pub name: String,
    pub value: HeaderValue,
}

/// Where an extra header's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderValue {
    /// Written in the config.
    Literal(String),
    /// `env:VAR`: read from the variable at send time, never stored.
    Env(String),
}

impl ExtraHeader {
    /// The value to send, read from the environment for `env:VAR`; an error
    /// names the variable, never a value.
    pub fn value(&self, subscription: &str) -> std::result::Result<String, String> {
        let value = match &self.value {
            HeaderValue::Literal(v) => return Ok(v.clone()),
            HeaderValue::Env(var) => std::env::var(var).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
                format!(
                    "header `{}` of subscription `{subscription}` is missing its value: set the environment variable {var}",
                    self.name
                )
            })?,
        };
        check_header_value(&value).map_err(|e| {
            format!(
                "header `{}` of subscription `{subscription}`: the value in {}: {e}",
                self.name,
                self.env_var().unwrap_or("?")
            )
        })?;
        Ok(value)
    }

    /// The variable an `env:` value comes from.
    pub fn env_var(&self) -> Option<&str> {
        match &self.value {
            HeaderValue::Env(var) => Some(var),
            HeaderValue::Literal(_) => None,
        }
    }

    /// The value as `--print` and evidence show it: never the value itself.
    pub fn shown(&self) -> String {
        match &self.value {
            HeaderValue::Literal(_) => "<redacted>".into(),
            HeaderValue::Env(var) => format!("<redacted: env {var}>"),
        }
    }
}

/// A header value HTTP can carry: visible ASCII and spaces, no line breaks.
pub(super) fn check_header_value(value: &str) -> std::result::Result<(), String> {
    if ureq::http::HeaderValue::from_str(value).is_ok() && !value.contains('\t') {
        Ok(())
    } else {
        Err("not a valid header value: use printable ASCII without line breaks".into())
    }
}

/// A request rate: `count` per `per_ms` milliseconds (`"1/s"`, `"30/min"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per_ms: u64,
}

impl Rate {
    pub const DEFAULT_MAX_AGE_MS: u64 = 72 * 3600 * 1000;
    /// Chat formats' rate when `rate_limit` is not set: one message a second.
    pub const CHAT_DEFAULT: Rate = Rate {
        count: 1,
        per_ms: 1000,
    };

    /// `N/s`, `N/sec`, `N/min`, `N/m`, `N/h`, `N/hour`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let bad =
            || format!("`{text}` is not a rate: write it like \"1/s\", \"30/min\" or \"100/h\"");
        let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per_ms = match unit.trim() {
            "s" | "sec" | "second" => 1000,
            "m" | "min" | "minute" => 60_000,
            "h" | "hour" => 3_600_000,
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(format!("`{text}`: a rate needs at least 1 request"));
        }
        Ok(Rate { count, per_ms })
    }

    /// The spacing between requests.
    pub fn interval_ms(self) -> u64 {
        (self.per_ms / u64::from(self.count)).max(1)
    }
}

/// Reads a secret from `var`; `None` when unset or empty.
pub fn secret_from_env(var: &str) -> Option<Secret> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .map(Secret::new)
}

impl Subscription {
    /// Whether an event passes this subscription's filters. A stage or status
    /// filter applies only to events that carry a stage or status.
    pub fn matches(&self, event_type: &str, stage: Option<Stage>, status: Option<Status>) -> bool {
        let event_ok = self.include_events.is_empty()
            || self
                .include_events
                .iter()
                .any(|p| event_pattern_matches(p, event_type));
        let stage_ok = match stage {
            Some(s) if !self.include_stages.is_empty() => self.include_stages.contains(&s),
            _ => true,
        };
        let status_ok = match status {
            Some(s) if !self.include_status.is_empty() => self.include_status.contains(&s),
            _ => true,
        };
        event_ok && stage_ok && status_ok
    }

    /// Whether deliveries need a secret or a signing key (active, not
    /// dry-run, not an unsigned per-call target).
    pub fn needs_secret(&self) -> bool {
        self.active && !self.dry_run && !self.unsigned()
    }

    /// A per-call target without `--secret-env`: sent without a signature.
    pub fn unsigned(&self) -> bool {
        self.per_call && self.secret_env.is_none()
    }

    /// The current secret, or an error naming the variable to set.
    pub fn secret(&self) -> std::result::Result<Secret, String> {
        let Some(var) = &self.secret_env else {
            return Err(format!(
                "subscription `{}` has no `secret_env`: add `secret_env = \"SPECKIT_WEBHOOK_SECRET_...\"` to it",
                self.id
            ));
        };
        secret_from_env(var).ok_or_else(|| {
            format!(
                "secret for subscription `{}` is missing: set the environment variable {var} (secret_env)",
                self.id
            )
        })
    }

    /// The first variable a signed delivery reads that is unset: the
    /// secret, the signing key. `None` when both are set or not needed.
    pub fn missing_signing_variable(&self) -> Option<String> {
        let hmac_needed = self.secret_env.is_some() || self.signing_key_env.is_none();
        if hmac_needed && let Err(problem) = self.secret() {
            return Some(problem);
        }
        if let Some(var) = &self.signing_key_env
            && secret_from_env(var).is_none()
        {
            return Some(format!(
                "signing key for subscription `{}` is missing: set the environment variable {var} (signing_key_env) to its whsk_… key",
                self.id
            ));
        }
        None
    }

    /// Everything a delivery needs from the environment, checked: the
    /// secret and signing key it is signed with (the current ones and,
    /// during a rotation, the previous ones, each checked against the
    /// scheme), the `url_env` URL and the `env:` header values. An error
    /// names the variable, never a value.
    pub fn signer(&self) -> std::result::Result<Signer, String> {
        if let Some(problem) = self.environment_problems().into_iter().next() {
            return Err(problem);
        }
        if let Some(problem) = self.missing_signing_variable() {
            return Err(problem);
        }
        let secret = self.secret_env.as_ref().and(self.secret().ok());
        let previous = self.previous_secret();
        let named = [
            (&self.secret_env, secret.as_ref()),
            (&self.secret_env_previous, previous.as_ref()),
        ];
        for (var, value) in named {
            if let Some(value) = value {
                crate::sign::check_secret(self.signature, value).map_err(|e| {
                    format!(
                        "subscription `{}`: secret in {}: {e}",
                        self.id,
                        var.as_deref().unwrap_or("?")
                    )
                })?;
            }
        }
        let key = |var: &Option<String>| -> std::result::Result<Option<SigningKey>, String> {
            let Some(var) = var else { return Ok(None) };
            let Some(value) = secret_from_env(var) else {
                return Ok(None);
            };
            SigningKey::parse(value.as_str())
                .map(Some)
                .map_err(|e| format!("subscription `{}`: signing key in {var}: {e}", self.id))
        };
        Ok(Signer {
            scheme: self.signature,
            secret,
            previous,
            key: key(&self.signing_key_env)?,
            previous_key: key(&self.signing_key_env_previous)?,
        })
    }

    /// The public key (`whpk_…`) of the signing key in `signing_key_env`,
    /// when it is set and valid: what receivers verify `v1a` with.
    pub fn public_key(&self) -> Option<String> {
        let value = secret_from_env(self.signing_key_env.as_deref()?)?;
        SigningKey::parse(value.as_str())
            .ok()
            .map(|k| k.public_key().text())
    }

    /// What the environment lacks for sending, besides secrets: the
    /// `url_env` variable and the `env:` header values.
    pub fn environment_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let (Some(var), true) = (&self.url_env, self.url.is_empty()) {
            out.push(format!(
                "the URL of subscription `{}` is missing: set the environment variable {var} (url_env)",
                self.id
            ));
        }
        out.extend(self.headers.iter().filter_map(|h| h.value(&self.id).err()));
        out
    }

    /// The URL as messages, logs and evidence show it: without userinfo or
    /// query, and only up to the first path segment when the path is a
    /// credential (a chat format or platform, or a URL from `url_env`).
    pub fn shown_url(&self) -> String {
        match &self.url_env {
            Some(var) if self.url.is_empty() => format!("<{var} unset>"),
            Some(_) => redact_url_path(&self.url),
            None if self.per_call => shown_per_call_url(&self.url),
            None if self.style.format.is_chat() => redact_url_path(&self.url),
            None => redact_url(&self.url),
        }
    }

    /// The previous secret during a rotation, if configured and set.
    pub fn previous_secret(&self) -> Option<Secret> {
        self.secret_env_previous
            .as_deref()
            .and_then(secret_from_env)
    }
}

/// `spec-auto.*` matches by prefix, `*` matches all, anything else exactly.
pub fn event_pattern_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

impl Config {
    /// The settings when the file says nothing: the defaults.
    pub(super) fn empty(path: &Path, base: &Path) -> Config {
        Config {
            path: path.to_path_buf(),
            enabled: false,
            enabled_source: format!("no [spec_ops.webhooks] table in {}", path.display()),
            max_concurrency: 4,
            spool_dir: base.join(DEFAULT_SPOOL_DIR),
            evidence_dir: base.join(DEFAULT_EVIDENCE_DIR),
            max_spool_jobs: 10_000,
            max_active_jobs: DEFAULT_MAX_ACTIVE_JOBS,
            max_evidence_bytes: 5 * 1024 * 1024,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            auto_drain: true,
            evidence_base_url: None,
            subscriptions: Vec::new(),
            specs: Vec::new(),
            relay: None,
            alerts: Vec::new(),
        }
    }

    /// A global subscription by id (see [`Config::subscription_for`] for a
    /// SPEC's).
    pub fn subscription(&self, id: &str) -> Option<&Subscription> {
        self.subscriptions.iter().find(|s| s.id == id)
    }

    /// Whether `id` names a subscription anywhere: global, in a `specs`
    /// override, or a per-call target's derived id (`adhoc-…`).
    pub fn knows(&self, id: &str) -> bool {
        is_adhoc_id(id) || self.every_subscription().any(|(_, s)| s.id == id)
    }

    /// Every subscription of every scope: `(None, s)` for the global ones,
    /// `(Some(pattern), s)` for each `specs` pattern's effective ones.
    pub fn every_subscription(&self) -> impl Iterator<Item = (Option<&str>, &Subscription)> {
        self.subscriptions
            .iter()
            .map(|s| (None, s))
            .chain(self.specs.iter().flat_map(|scope| {
                scope
                    .subscriptions
                    .iter()
                    .map(|s| (Some(scope.pattern.as_str()), s))
            }))
    }

    /// One line per active, non-dry-run subscription whose secret or
    /// signing key is unset.
    pub fn secret_problems(&self) -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        for (_, s) in self.every_subscription().filter(|(_, s)| s.needs_secret()) {
            if let Some(line) = s.missing_signing_variable()
                && !lines.contains(&line)
            {
                lines.push(line);
            }
        }
        lines
    }

    /// Secret and key format problems (standard-webhooks needs
    /// `whsec_<base64>` secrets and `whsk_<base64>` signing keys), for the
    /// current ones and, during a rotation, the previous ones.
    pub fn secret_format_problems(&self) -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        let candidates = self
            .every_subscription()
            .map(|(_, s)| s)
            .filter(|s| s.needs_secret() && s.missing_signing_variable().is_none())
            .filter(|s| s.environment_problems().is_empty());
        for s in candidates {
            if let Err(line) = s.signer()
                && !lines.contains(&line)
            {
                lines.push(line);
            }
        }
        lines
    }

    /// The evidence folder of one SPEC: `<evidence_dir>/<SPEC-ID>/webhooks`.
    pub fn evidence_for(&self, spec: &str) -> PathBuf {
        self.evidence_dir.join(spec).join("webhooks")
    }
}

/// The subscriptions in effect for the SPECs that `pattern` is the most
/// specific match of.
#[derive(Debug, Clone)]
pub struct Scope {
    /// As written: `SPEC-KIT-065` or `SPEC-KIT-*`.
    pub pattern: String,
    pub subscriptions: Vec<Subscription>,
}

/// How a per-call target's id begins.
const ADHOC_PREFIX: &str = "adhoc-";
const HASH_DIGITS: usize = 10;

/// The subscription id of a per-call URL: the same URL always gets the same
/// id (its jobs share a queue and a circuit breaker), and the id tells
/// nothing usable about a secret URL.
pub fn adhoc_id(url: &str) -> String {
    let digest = sha2::Sha256::digest(url.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{ADHOC_PREFIX}{}", &hex[..HASH_DIGITS])
}

/// Whether `id` has the form of [`adhoc_id`].
pub fn is_adhoc_id(id: &str) -> bool {
    id.strip_prefix(ADHOC_PREFIX).is_some_and(|hash| {
        hash.len() == HASH_DIGITS && hash.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// A per-call URL as lists, logs, evidence and messages show it: scheme,
/// host and port only, since any of its path or query may be a credential
/// (`https://hooks.example.com/<redacted>`).
pub fn shown_per_call_url(url: &str) -> String {
    let Ok(uri) = url.parse::<ureq::http::Uri>() else {
        return crate::url::HIDDEN_URL.into();
    };
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return crate::url::HIDDEN_URL.into();
    };
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    let hidden = uri.path().len() > 1 || uri.query().is_some();
    let rest = if hidden { "/<redacted>" } else { "" };
    format!("{scheme}://{host}{port}{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRD_EXAMPLE: &str = include_str!("../../tests/fixtures/prd-config.toml");

    #[test]
    fn filters() {
        let c = crate::config::parse(PRD_EXAMPLE, Path::new("c.toml")).unwrap();
        let slack = &c.subscriptions[0];
        assert!(slack.matches(
            "spec-auto.stage.completed",
            Some(Stage::Plan),
            Some(Status::Success)
        ));
        assert!(slack.matches("spec-auto.pipeline.completed", None, Some(Status::Failure)));
        assert!(!slack.matches("spec-kit.task.completed", None, None));
        assert!(event_pattern_matches(
            "spec-auto.*",
            "spec-auto.cost.threshold"
        ));
        assert!(!event_pattern_matches(
            "spec-auto.*",
            "spec-kit.task.completed"
        ));
        assert!(event_pattern_matches("*", "a.b.c"));
    }

    #[test]
    fn ids_are_stable_and_recognisable() {
        let id = adhoc_id("https://example.com/hook");
        assert_eq!(id, adhoc_id("https://example.com/hook"));
        assert_ne!(id, adhoc_id("https://example.com/hook2"));
        assert!(is_adhoc_id(&id), "{id}");
        assert_eq!(id.len(), "adhoc-".len() + 10);
        assert!(!is_adhoc_id("adhoc-xyz"));
        assert!(!is_adhoc_id("slack"));
    }
}
