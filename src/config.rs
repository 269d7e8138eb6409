//! Settings: finds `config.toml`, reads `[spec_ops.webhooks]`, applies the
//! environment overrides and validates everything, reporting every problem at
//! once with the subscription, the key and the fix. This is the only module
//! that reads environment variables (config path, enable switch, secrets).

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Result;
use toml::{Table, Value};

use crate::envelope::{Stage, Status};
use crate::exit::user_error;

pub const CONFIG_ENV: &str = "SPEC_NOTIFY_CONFIG";
pub const ENABLED_ENV: &str = "SPECKIT_WEBHOOKS_ENABLED";
pub const DEFAULT_CONFIG: &str = "config.toml";
pub const DEFAULT_SPOOL_DIR: &str = "docs/SPEC-OPS-004-integrated-coder-hooks/evidence/webhooks";
pub const DEFAULT_EVIDENCE_DIR: &str = "docs/SPEC-OPS-004-integrated-coder-hooks/evidence/commands";

const WEBHOOK_KEYS: &[&str] = &[
    "enabled",
    "max_concurrency",
    "spool_dir",
    "evidence_dir",
    "max_spool_jobs",
    "max_evidence_bytes",
    "auto_drain",
    "subscriptions",
];
const SUBSCRIPTION_KEYS: &[&str] = &[
    "id",
    "url",
    "secret_env",
    "secret_env_previous",
    "signature",
    "active",
    "dry_run",
    "include_events",
    "include_stages",
    "include_status",
    "max_attempts",
    "initial_backoff_ms",
    "backoff_factor",
    "jitter_ms",
    "per_request_timeout_ms",
    "max_in_flight",
    "rate_limit",
    "max_age",
    "circuit_failures",
    "circuit_cooldown",
];

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
    /// Evidence footprint cap per SPEC (attempt logs plus delivered jobs).
    pub max_evidence_bytes: u64,
    pub auto_drain: bool,
    pub subscriptions: Vec<Subscription>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Speckit,
    Github,
    StandardWebhooks,
}

impl Scheme {
    pub const NAMES: &[&str] = &["speckit", "github", "standard-webhooks"];

    pub fn parse(s: &str) -> Option<Scheme> {
        match s {
            "speckit" => Some(Scheme::Speckit),
            "github" => Some(Scheme::Github),
            "standard-webhooks" => Some(Scheme::StandardWebhooks),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Speckit => "speckit",
            Scheme::Github => "github",
            Scheme::StandardWebhooks => "standard-webhooks",
        }
    }
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
    pub url: String,
    pub secret_env: Option<String>,
    pub secret_env_previous: Option<String>,
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
}

/// A request rate: `count` per `per_ms` milliseconds (`"1/s"`, `"30/min"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per_ms: u64,
}

impl Rate {
    pub const DEFAULT_MAX_AGE_MS: u64 = 72 * 3600 * 1000;

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

/// A secret read from the environment. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Reads a secret from `var`; `None` when unset or empty.
pub fn secret_from_env(var: &str) -> Option<Secret> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .map(Secret)
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

    /// Whether deliveries need a secret (active, not dry-run).
    pub fn needs_secret(&self) -> bool {
        self.active && !self.dry_run
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

    /// The secrets deliveries are signed with, each checked against the
    /// scheme: the current one and, during a rotation, the previous one.
    pub fn signing_secrets(&self) -> std::result::Result<(Secret, Option<Secret>), String> {
        let secret = self.secret()?;
        let previous = self.previous_secret();
        let named = [
            (&self.secret_env, Some(&secret)),
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
        Ok((secret, previous))
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
    let root: Table = text.parse().map_err(|e: toml::de::Error| {
        user_error(format!("`{}` is not valid TOML: {e}", path.display()))
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let problems = Problems::default();
    let webhooks = root
        .get("spec_ops")
        .and_then(Value::as_table)
        .and_then(|t| t.get("webhooks"));
    let config = match webhooks {
        None => Config::empty(path, &base),
        Some(Value::Table(table)) => read_webhooks(table, path, &base, &problems),
        Some(_) => {
            problems.push("[spec_ops.webhooks]", "must be a table");
            Config::empty(path, &base)
        }
    };
    let mut config = config;
    apply_enabled_override(&mut config, &problems);
    if secrets == Secrets::Required {
        for sub in config.subscriptions.iter().filter(|s| s.needs_secret()) {
            if let (Some(var), Err(_)) = (&sub.secret_env, sub.secret()) {
                problems.push(
                    &format!("subscription `{}`", sub.id),
                    format!("key `secret_env`: the environment variable {var} is unset or empty: export it (or set `dry_run = true` or `active = false`)"),
                );
            }
        }
        for p in config.secret_format_problems() {
            problems.push_line(p);
        }
    }
    problems.into_result(path)?;
    Ok(config)
}

impl Config {
    fn empty(path: &Path, base: &Path) -> Config {
        Config {
            path: path.to_path_buf(),
            enabled: false,
            enabled_source: format!("no [spec_ops.webhooks] table in {}", path.display()),
            max_concurrency: 4,
            spool_dir: base.join(DEFAULT_SPOOL_DIR),
            evidence_dir: base.join(DEFAULT_EVIDENCE_DIR),
            max_spool_jobs: 10_000,
            max_evidence_bytes: 5 * 1024 * 1024,
            auto_drain: true,
            subscriptions: Vec::new(),
        }
    }

    pub fn subscription(&self, id: &str) -> Option<&Subscription> {
        self.subscriptions.iter().find(|s| s.id == id)
    }

    /// One line per active, non-dry-run subscription whose secret is unset.
    pub fn secret_problems(&self) -> Vec<String> {
        self.subscriptions
            .iter()
            .filter(|s| s.needs_secret())
            .filter_map(|s| s.secret().err())
            .collect()
    }

    /// Secret-format problems (standard-webhooks needs `whsec_<base64>`),
    /// for the current secret and, during a rotation, the previous one.
    pub fn secret_format_problems(&self) -> Vec<String> {
        self.subscriptions
            .iter()
            .filter(|s| s.needs_secret() && s.secret().is_ok())
            .filter_map(|s| s.signing_secrets().err())
            .collect()
    }

    /// The evidence folder of one SPEC: `<evidence_dir>/<SPEC-ID>/webhooks`.
    pub fn evidence_for(&self, spec: &str) -> PathBuf {
        self.evidence_dir.join(spec).join("webhooks")
    }
}

/// Problems found while reading the config, reported together.
#[derive(Default)]
struct Problems(RefCell<Vec<String>>);

impl Problems {
    fn push(&self, at: &str, message: impl fmt::Display) {
        self.push_line(format!("{at}: {message}"));
    }

    fn push_line(&self, line: String) {
        self.0.borrow_mut().push(line);
    }

    fn into_result(self, path: &Path) -> Result<()> {
        let problems = self.0.into_inner();
        if problems.is_empty() {
            return Ok(());
        }
        let count = match problems.len() {
            1 => "1 problem".to_string(),
            n => format!("{n} problems"),
        };
        let mut text = format!("invalid config `{}` ({count}):", path.display());
        for p in &problems {
            text.push_str("\n  - ");
            text.push_str(p);
        }
        Err(user_error(text))
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

fn read_webhooks(table: &Table, path: &Path, base: &Path, problems: &Problems) -> Config {
    let at = "[spec_ops.webhooks]";
    unknown_keys(table, WEBHOOK_KEYS, at, problems);
    let mut c = Config::empty(path, base);
    let r = Reader {
        table,
        at,
        problems,
    };
    if let Some(v) = r.bool("enabled") {
        c.enabled = v;
        c.enabled_source = format!("enabled = {v} in {}", path.display());
    } else {
        c.enabled_source = format!("`enabled` is not set in {} (default false)", path.display());
    }
    c.max_concurrency = r
        .int("max_concurrency", 1, 256)
        .map_or(c.max_concurrency, |v| v as usize);
    c.max_spool_jobs = r
        .int("max_spool_jobs", 1, u32::MAX as i64)
        .map_or(c.max_spool_jobs, |v| v as usize);
    c.max_evidence_bytes = r
        .int("max_evidence_bytes", 64 * 1024, i64::MAX)
        .map_or(c.max_evidence_bytes, |v| v as u64);
    c.auto_drain = r.bool("auto_drain").unwrap_or(c.auto_drain);
    if let Some(dir) = r.string("spool_dir") {
        c.spool_dir = base.join(dir);
    }
    if let Some(dir) = r.string("evidence_dir") {
        c.evidence_dir = base.join(dir);
    }
    c.subscriptions = read_subscriptions(table.get("subscriptions"), problems);
    c
}

fn read_subscriptions(value: Option<&Value>, problems: &Problems) -> Vec<Subscription> {
    let Some(value) = value else {
        return Vec::new();
    };
    let Some(items) = value.as_array() else {
        problems.push(
            "subscriptions",
            "must be written as [[spec_ops.webhooks.subscriptions]] tables",
        );
        return Vec::new();
    };
    let mut subs = Vec::new();
    let mut seen = HashSet::new();
    for (index, item) in items.iter().enumerate() {
        let Some(table) = item.as_table() else {
            problems.push(&format!("subscriptions[{index}]"), "must be a table");
            continue;
        };
        let sub = read_subscription(table, index, problems);
        if !seen.insert(sub.id.clone()) {
            problems.push(
                &format!("subscription `{}`", sub.id),
                "duplicate `id`: every subscription needs its own id",
            );
        }
        subs.push(sub);
    }
    subs
}

fn read_subscription(table: &Table, index: usize, problems: &Problems) -> Subscription {
    let id = table
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let at = if id.is_empty() {
        format!("subscriptions[{index}]")
    } else {
        format!("subscription `{id}`")
    };
    unknown_keys(table, SUBSCRIPTION_KEYS, &at, problems);
    let r = Reader {
        table,
        at: &at,
        problems,
    };
    let defaults = RetryPolicy::default();
    let retry = RetryPolicy {
        max_attempts: r
            .int("max_attempts", 1, 1000)
            .map_or(defaults.max_attempts, |v| v as u32),
        initial_backoff_ms: r
            .int("initial_backoff_ms", 0, 86_400_000)
            .map_or(defaults.initial_backoff_ms, |v| v as u64),
        backoff_factor: r
            .float("backoff_factor", 1.0, 100.0)
            .unwrap_or(defaults.backoff_factor),
        jitter_ms: r
            .int("jitter_ms", 0, 3_600_000)
            .map_or(defaults.jitter_ms, |v| v as u64),
        per_request_timeout_ms: r
            .int("per_request_timeout_ms", 1, 600_000)
            .map_or(defaults.per_request_timeout_ms, |v| v as u64),
    };
    let sub = Subscription {
        id: r.required_string("id").unwrap_or_default(),
        url: r.required_string("url").unwrap_or_default(),
        secret_env: r.string("secret_env"),
        secret_env_previous: r.string("secret_env_previous"),
        signature: r.scheme(),
        active: r.bool("active").unwrap_or(true),
        dry_run: r.bool("dry_run").unwrap_or(false),
        include_events: r.strings("include_events", check_event_pattern),
        include_stages: r.parsed_list("include_stages", Stage::parse, Stage::NAMES),
        include_status: r.parsed_list("include_status", Status::parse, Status::NAMES),
        retry,
        max_in_flight: r.int("max_in_flight", 1, 256).map(|v| v as usize),
        rate_limit: r
            .string("rate_limit")
            .and_then(|text| match Rate::parse(&text) {
                Ok(rate) => Some(rate),
                Err(e) => {
                    r.problem("rate_limit", e);
                    None
                }
            }),
        max_age_ms: r.duration_ms("max_age").unwrap_or(Rate::DEFAULT_MAX_AGE_MS),
        breaker: crate::circuit::BreakerPolicy {
            failures: r
                .int("circuit_failures", 1, 1000)
                .map_or(crate::circuit::BreakerPolicy::default().failures, |v| {
                    v as u32
                }),
            cooldown_ms: r
                .duration_ms("circuit_cooldown")
                .unwrap_or(crate::circuit::BreakerPolicy::default().cooldown_ms),
            ..crate::circuit::BreakerPolicy::default()
        },
    };
    if !sub.id.is_empty()
        && !sub
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        r.problem("id", "use letters, digits, `-`, `_` and `.` only");
    }
    if let (false, Err(e)) = (sub.url.is_empty(), check_url(&sub.url)) {
        r.problem("url", e);
    }
    if sub.needs_secret() && sub.secret_env.is_none() {
        r.problem(
            "secret_env",
            "missing: name the environment variable that holds this subscription's secret",
        );
    }
    sub
}

fn unknown_keys(table: &Table, known: &[&str], at: &str, problems: &Problems) {
    for key in table.keys().filter(|k| !known.contains(&k.as_str())) {
        let suggestion = known
            .iter()
            .find(|k| similar(k, key))
            .map(|k| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        problems.push(
            at,
            format!(
                "unknown key `{key}`{suggestion}; known keys: {}",
                known.join(", ")
            ),
        );
    }
}

/// A typo detector: at most two edits apart (a dropped, doubled or swapped
/// letter), or one name is a prefix of the other.
fn similar(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    if a.starts_with(&b) || b.starts_with(&a) {
        return true;
    }
    let allowed = if a.len().min(b.len()) < 5 { 1 } else { 2 };
    edit_distance(a.as_bytes(), b.as_bytes()) <= allowed
}

/// Levenshtein distance, one row at a time.
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &x) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &y) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(x != y);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// Typed access to one table's keys, recording a problem for each bad value.
struct Reader<'a> {
    table: &'a Table,
    at: &'a str,
    problems: &'a Problems,
}

impl Reader<'_> {
    fn problem(&self, key: &str, message: impl fmt::Display) {
        self.problems
            .push(self.at, format!("key `{key}`: {message}"));
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.table.get(key)
    }

    fn wrong_type(&self, key: &str, want: &str, got: &Value) {
        self.problem(
            key,
            format!("expected {want}, found {} `{got}`", got.type_str()),
        );
    }

    fn bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Value::Boolean(b) => Some(*b),
            other => {
                self.wrong_type(key, "true or false", other);
                None
            }
        }
    }

    fn int(&self, key: &str, min: i64, max: i64) -> Option<i64> {
        match self.get(key)? {
            Value::Integer(i) if (min..=max).contains(i) => Some(*i),
            Value::Integer(i) => {
                self.problem(
                    key,
                    format!("{i} is out of range: use a whole number from {min} to {max}"),
                );
                None
            }
            other => {
                self.wrong_type(key, "a whole number", other);
                None
            }
        }
    }

    fn float(&self, key: &str, min: f64, max: f64) -> Option<f64> {
        let value = match self.get(key)? {
            Value::Float(f) => *f,
            Value::Integer(i) => *i as f64,
            other => {
                self.wrong_type(key, "a number", other);
                return None;
            }
        };
        if value.is_finite() && (min..=max).contains(&value) {
            Some(value)
        } else {
            self.problem(
                key,
                format!("{value} is out of range: use a number from {min} to {max}"),
            );
            None
        }
    }

    fn string(&self, key: &str) -> Option<String> {
        match self.get(key)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            Value::String(_) => {
                self.problem(key, "is empty");
                None
            }
            other => {
                self.wrong_type(key, "a string", other);
                None
            }
        }
    }

    /// A duration written like `72h`, `30s`, `10m`.
    fn duration_ms(&self, key: &str) -> Option<u64> {
        let text = self.string(key)?;
        match humantime::parse_duration(&text) {
            Ok(d) if !d.is_zero() => Some(d.as_millis().min(u64::MAX as u128) as u64),
            Ok(_) => {
                self.problem(key, "must be longer than 0");
                None
            }
            Err(e) => {
                self.problem(key, format!("`{text}` is not a duration ({e}); write it like \"72h\", \"30s\" or \"10m\""));
                None
            }
        }
    }

    fn required_string(&self, key: &str) -> Option<String> {
        if self.get(key).is_none() {
            self.problem(key, "missing: every subscription needs one");
            return None;
        }
        self.string(key)
    }

    fn scheme(&self) -> Scheme {
        let Some(name) = self.string("signature") else {
            return Scheme::Speckit;
        };
        Scheme::parse(&name).unwrap_or_else(|| {
            self.problem(
                "signature",
                format!(
                    "unknown scheme `{name}`: use one of {}",
                    Scheme::NAMES.join(", ")
                ),
            );
            Scheme::Speckit
        })
    }

    fn strings(
        &self,
        key: &str,
        check: fn(&str) -> std::result::Result<(), String>,
    ) -> Vec<String> {
        let Some(value) = self.get(key) else {
            return Vec::new();
        };
        let Some(items) = value.as_array() else {
            self.wrong_type(key, "a list of strings", value);
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            match item.as_str() {
                Some(s) => match check(s) {
                    Ok(()) => out.push(s.to_string()),
                    Err(e) => self.problem(key, e),
                },
                None => self.wrong_type(key, "a list of strings", item),
            }
        }
        out
    }

    fn parsed_list<T>(&self, key: &str, parse: fn(&str) -> Option<T>, names: &[&str]) -> Vec<T> {
        let raw = self.strings(key, |_| Ok(()));
        raw.iter()
            .filter_map(|s| {
                let parsed = parse(s);
                if parsed.is_none() {
                    self.problem(
                        key,
                        format!("unknown value `{s}`: use one of {}", names.join(", ")),
                    );
                }
                parsed
            })
            .collect()
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

/// Accepts https URLs, and plain http only for loopback hosts. Messages show
/// the URL redacted: never its userinfo or query.
pub fn check_url(url: &str) -> std::result::Result<(), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| {
        format!(
            "`{}` is not a valid URL ({e}): write it like https://host/path",
            redact_unparsed_url(url)
        )
    })?;
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("`{}` has no host", redact_url(url)))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(format!(
            "`{}` uses plain http: use https (http is allowed only for 127.0.0.0/8, ::1 and localhost)",
            redact_url(url)
        )),
        _ => Err(format!("`{}` must start with https://", redact_url(url))),
    }
}

/// The URL with userinfo and query string removed, safe for logs and output.
pub fn redact_url(url: &str) -> String {
    let Ok(uri) = url.parse::<ureq::http::Uri>() else {
        return "<invalid url>".into();
    };
    let mut out = String::new();
    if let Some(scheme) = uri.scheme_str() {
        out.push_str(&format!("{scheme}://"));
    }
    out.push_str(uri.host().unwrap_or_default());
    if let Some(port) = uri.port_u16() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(uri.path());
    if uri.query().is_some() {
        out.push_str("?<redacted>");
    }
    out
}

/// What a message may show of a URL that does not parse. Without `@`, `?`
/// or `#` there is no userinfo, query or fragment to hide, so all of it;
/// else at most `scheme://host`, and only the scheme when an `@` sits past
/// the first `?` or `#` (the host cannot be told from a password there).
fn redact_unparsed_url(url: &str) -> String {
    if !url.contains(['@', '?', '#']) {
        return url.escape_debug().to_string();
    }
    let is_scheme = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    };
    let Some((scheme, rest)) = url.split_once("://").filter(|(s, _)| is_scheme(s)) else {
        return "<unparseable URL, not shown: it may hold credentials>".into();
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    if rest[end..].contains('@') {
        return format!("{scheme}://<not shown>");
    }
    let authority = &rest[..end];
    let after_userinfo = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = after_userinfo.split('/').next().unwrap_or_default();
    format!("{scheme}://{}", host.escape_debug())
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Loads the config for commands that cannot work without one; a missing
/// file is an exit-2 error naming where it was looked for.
pub fn load_required(flag: Option<&Path>) -> Result<Config> {
    load(&locate(flag))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRD_EXAMPLE: &str = include_str!("../tests/fixtures/prd-config.toml");

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
    fn typos_are_recognised_after_a_dropped_letter() {
        assert!(similar("max_attempts", "max_atempts"));
        assert!(similar("include_status", "include_stauts"));
        assert!(similar("enabled", "enabld"));
        assert!(!similar("jitter_ms", "dry_run"));
        assert!(!similar("id", "ab"), "short names need a closer match");
        assert_eq!(edit_distance(b"kitten", b"sitting"), 3);
        assert_eq!(edit_distance(b"", b"ab"), 2);
    }

    #[test]
    fn one_problem_is_not_plural() {
        let e = errors("[spec_ops.webhooks]\nenabled = 3\n");
        assert!(e.contains("(1 problem):"), "{e}");
    }

    #[test]
    fn loopback_http_is_allowed() {
        for url in [
            "http://127.0.0.1:8080/h",
            "http://localhost/h",
            "http://[::1]:9/h",
            "https://example.com/h",
        ] {
            assert_eq!(check_url(url), Ok(()), "{url}");
        }
        assert!(check_url("ftp://example.com").is_err());
        assert!(check_url("http://10.0.0.1/h").is_err());
    }

    #[test]
    fn filters() {
        let c = parse(PRD_EXAMPLE, Path::new("c.toml")).unwrap();
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
    fn urls_lose_userinfo_and_query() {
        assert_eq!(
            redact_url("https://user:pw@example.com:8443/a/b?token=x"),
            "https://example.com:8443/a/b?<redacted>"
        );
        assert_eq!(redact_url("http://127.0.0.1/h"), "http://127.0.0.1/h");
        assert_eq!(redact_url("user:pw@host"), "host");
        assert_eq!(redact_url("/hook?token=abc"), "/hook?<redacted>");
    }

    #[test]
    fn url_errors_never_show_userinfo_or_query() {
        let cases = [
            // parses, but is refused
            (
                "http://user:secret@host/hook?token=abc",
                "`http://host/hook?<redacted>` uses plain http",
            ),
            (
                "http://user:pw@10.0.0.1/h?token=x",
                "`http://10.0.0.1/h?<redacted>` uses plain http",
            ),
            (
                "ftp://u:pw@h/x?token=y",
                "`ftp://h/x?<redacted>` must start with https://",
            ),
            ("mailto:user:pw@host", "`host` must start with https://"),
            ("user:pw@host", "`host` must start with https://"),
            ("/hook?token=abc", "`/hook?<redacted>` has no host"),
            // does not parse
            (
                "https://user:pw@ho st/x?token=a",
                "`https://ho st` is not a valid URL",
            ),
            ("https://user:pw@", "`https://` is not a valid URL"),
            ("https://user:pw@/x", "`https://` is not a valid URL"),
            (
                "https://user:p/w@bad host/x",
                "`https://bad host` is not a valid URL",
            ),
            (
                "https://host /x?token=abc",
                "`https://host ` is not a valid URL",
            ),
            (
                "https://ho st/x?token=a@b",
                "`https://<not shown>` is not a valid URL",
            ),
            (
                "https://user:p w?x@host/",
                "`https://<not shown>` is not a valid URL",
            ),
            (
                "https://user:p w#x@host/",
                "`https://<not shown>` is not a valid URL",
            ),
            (
                "user:pw@ho st",
                "`<unparseable URL, not shown: it may hold credentials>` is not",
            ),
            (
                "user:pw ?token=abc",
                "`<unparseable URL, not shown: it may hold credentials>` is not",
            ),
            (
                "pw@token://x y",
                "`<unparseable URL, not shown: it may hold credentials>` is not",
            ),
        ];
        for (url, want) in cases {
            let err = check_url(url).unwrap_err();
            assert!(err.contains(want), "{url}: {err}");
            for secret in ["pw", "secret", "token", "abc"] {
                assert!(!err.contains(secret), "{url}: {err} shows {secret:?}");
            }
        }
        // Nothing to hide: an unparseable string without `@`, `?` or `#` is shown whole.
        let err = check_url("not a url").unwrap_err();
        assert!(err.starts_with("`not a url` is not a valid URL"), "{err}");
        let err = check_url("https://h\n/x").unwrap_err();
        assert!(
            err.starts_with("`https://h\\n/x` is not a valid URL"),
            "{err}"
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2".into())),
            "Secret(<redacted>)"
        );
    }
}
