//! The TOML side of the config: finds `[spec_ops.webhooks]` in the text and
//! reads each key as the type it must have (true/false, whole number, number,
//! string, list of strings, table of strings), naming unknown keys with a
//! did-you-mean. It keeps each subscription's table as written, and the
//! per-SPEC override tables (`specs`), for `specs` to merge. What the values
//! mean (ranges, names, URLs, defaults) is for `config` to decide.

use std::fmt;

use toml::{Table, Value};

use super::problems::Problems;

/// Where the webhook settings live, as messages name them.
pub(super) const WEBHOOKS_AT: &str = "[spec_ops.webhooks]";

const WEBHOOK_KEYS: &[&str] = &[
    "enabled",
    "max_concurrency",
    "spool_dir",
    "evidence_dir",
    "max_spool_jobs",
    "max_active_jobs",
    "max_evidence_bytes",
    "max_event_bytes",
    "auto_drain",
    "evidence_base_url",
    "subscriptions",
    "specs",
    "relay",
    "alerts",
];
const SUBSCRIPTION_KEYS: &[&str] = &[
    "id",
    "url",
    "url_env",
    "format",
    "text",
    "headers",
    "secret_env",
    "secret_env_previous",
    "signing_key_env",
    "signing_key_env_previous",
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
    "allow_private_networks",
    "ordering",
    "fifo_on_dead",
];

/// `[spec_ops.webhooks]` as written. A key that is absent or has the wrong
/// type (a problem already recorded) is `None`.
#[derive(Debug, Default)]
pub(super) struct Webhooks {
    pub enabled: Option<bool>,
    pub max_concurrency: Option<i64>,
    pub spool_dir: Option<String>,
    pub evidence_dir: Option<String>,
    pub max_spool_jobs: Option<i64>,
    pub max_active_jobs: Option<i64>,
    pub max_evidence_bytes: Option<i64>,
    pub max_event_bytes: Option<i64>,
    pub auto_drain: Option<bool>,
    pub evidence_base_url: Option<String>,
    pub subscriptions: Vec<Subscription>,
    /// Each subscription's table as written, in file order, by id (tables
    /// without a string id are left out): the base that overrides merge into.
    pub tables: Vec<(String, Table)>,
    /// `[spec_ops.webhooks.specs."PATTERN"]` in file order.
    pub specs: Vec<Spec>,
    pub relay: Option<super::relay::Relay>,
    /// `[[spec_ops.webhooks.alerts]]` as written.
    pub alerts: Vec<super::alerts::RawRule>,
}

/// One `[spec_ops.webhooks.specs."PATTERN"]` table: a SPEC id or prefix glob,
/// and one table of subscription keys per subscription id, as written.
#[derive(Debug, Default)]
pub(super) struct Spec {
    pub pattern: String,
    pub entries: Vec<(String, Table)>,
}

/// One `[[spec_ops.webhooks.subscriptions]]` table as written.
#[derive(Debug, Default)]
pub(super) struct Subscription {
    /// Where it is, for messages: ``subscription `id` `` or `subscriptions[2]`.
    pub at: String,
    pub id: Option<String>,
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub format: Option<String>,
    pub text: Option<String>,
    /// Extra request headers, name and value as written, sorted by name.
    pub headers: Vec<(String, String)>,
    pub secret_env: Option<String>,
    pub secret_env_previous: Option<String>,
    pub signing_key_env: Option<String>,
    pub signing_key_env_previous: Option<String>,
    pub signature: Option<String>,
    pub active: Option<bool>,
    pub dry_run: Option<bool>,
    pub include_events: Vec<String>,
    pub include_stages: Vec<String>,
    pub include_status: Vec<String>,
    pub max_attempts: Option<i64>,
    pub initial_backoff_ms: Option<i64>,
    pub backoff_factor: Option<f64>,
    pub jitter_ms: Option<i64>,
    pub per_request_timeout_ms: Option<i64>,
    pub max_in_flight: Option<i64>,
    pub rate_limit: Option<String>,
    pub max_age: Option<String>,
    pub circuit_failures: Option<i64>,
    pub circuit_cooldown: Option<String>,
    pub ordering: Option<String>,
    pub fifo_on_dead: Option<String>,
    pub allow_private_networks: Option<bool>,
}

/// Whether config text has a `[spec_ops.webhooks]` table (text that is
/// not TOML counts: reading it says what is wrong).
pub(super) fn has_webhooks(text: &str) -> bool {
    let Ok(root) = text.parse::<Table>() else {
        return true;
    };
    root.get("spec_ops")
        .and_then(Value::as_table)
        .is_some_and(|t| t.contains_key("webhooks"))
}

/// Reads `[spec_ops.webhooks]` from config text: `Ok(None)` when the file
/// has no such table (or a problem says why it cannot be read), `Err` when
/// the text is not TOML at all.
pub(super) fn read(text: &str, problems: &Problems) -> Result<Option<Webhooks>, toml::de::Error> {
    let root: Table = text.parse()?;
    let webhooks = root
        .get("spec_ops")
        .and_then(Value::as_table)
        .and_then(|t| t.get("webhooks"));
    Ok(match webhooks {
        None => None,
        Some(Value::Table(table)) => Some(read_webhooks(table, problems)),
        Some(_) => {
            problems.push(WEBHOOKS_AT, "must be a table");
            None
        }
    })
}

fn read_webhooks(table: &Table, problems: &Problems) -> Webhooks {
    problems.place(WEBHOOKS_AT);
    unknown_keys(table, WEBHOOK_KEYS, WEBHOOKS_AT, problems);
    let r = Reader {
        table,
        at: WEBHOOKS_AT,
        problems,
    };
    Webhooks {
        enabled: r.bool("enabled"),
        max_concurrency: r.int("max_concurrency"),
        max_spool_jobs: r.int("max_spool_jobs"),
        max_active_jobs: r.int("max_active_jobs"),
        max_evidence_bytes: r.int("max_evidence_bytes"),
        max_event_bytes: r.int("max_event_bytes"),
        auto_drain: r.bool("auto_drain"),
        spool_dir: r.string("spool_dir"),
        evidence_dir: r.string("evidence_dir"),
        evidence_base_url: r.string("evidence_base_url"),
        subscriptions: read_subscriptions(table.get("subscriptions"), problems),
        tables: subscription_tables(table.get("subscriptions")),
        specs: read_specs(table.get("specs"), problems),
        relay: super::relay::read(table.get("relay"), problems),
        alerts: super::alerts::read(table.get("alerts"), problems),
    }
}

fn subscription_tables(value: Option<&Value>) -> Vec<(String, Table)> {
    let Some(items) = value.and_then(Value::as_array) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(Value::as_table)
        .filter_map(|t| Some((t.get("id")?.as_str()?.to_string(), t.clone())))
        .collect()
}

/// Where the override of subscription `id` for `pattern` is, as written in
/// TOML: `[spec_ops.webhooks.specs."SPEC-KIT-*".slack]`.
pub(super) fn spec_table_at(pattern: &str, id: Option<&str>) -> String {
    let quoted = |s: &str| format!("\"{}\"", s.escape_default());
    let mut at = format!("[spec_ops.webhooks.specs.{}", quoted(pattern));
    if let Some(id) = id {
        let bare = !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        at.push('.');
        at.push_str(&if bare { id.to_string() } else { quoted(id) });
    }
    at.push(']');
    at
}

fn read_specs(value: Option<&Value>, problems: &Problems) -> Vec<Spec> {
    let Some(value) = value else {
        return Vec::new();
    };
    let Some(table) = value.as_table() else {
        problems.push(
            "[spec_ops.webhooks.specs]",
            "must be a table of SPEC ids, like [spec_ops.webhooks.specs.\"SPEC-KIT-*\".chatops-slack]",
        );
        return Vec::new();
    };
    let mut specs = Vec::new();
    for (pattern, value) in table {
        let at = spec_table_at(pattern, None);
        problems.place(&at);
        let Some(entries) = value.as_table() else {
            problems.push(
                &at,
                "must be a table with one table per subscription id, like [spec_ops.webhooks.specs.\"SPEC-KIT-*\".chatops-slack]",
            );
            continue;
        };
        let mut spec = Spec {
            pattern: pattern.clone(),
            entries: Vec::new(),
        };
        for (id, value) in entries {
            match value.as_table() {
                Some(t) => spec.entries.push((id.clone(), t.clone())),
                None => problems.push(
                    &spec_table_at(pattern, Some(id)),
                    // Not the value: it may be a webhook URL with its credential.
                    format!(
                        "must be a table of subscription keys (found {}), like `url_env = \"SLACK_URL\"`",
                        value.type_str()
                    ),
                ),
            }
        }
        specs.push(spec);
    }
    specs
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
    for (index, item) in items.iter().enumerate() {
        match item.as_table() {
            Some(table) => subs.push(read_subscription(table, index, problems)),
            None => problems.push(&format!("subscriptions[{index}]"), "must be a table"),
        }
    }
    subs
}

fn read_subscription(table: &Table, index: usize, problems: &Problems) -> Subscription {
    let at = match table.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => format!("subscription `{id}`"),
        _ => format!("subscriptions[{index}]"),
    };
    read_subscription_at(table, at, problems)
}

/// Reads one subscription table; problems are named at `at`.
pub(super) fn read_subscription_at(table: &Table, at: String, problems: &Problems) -> Subscription {
    problems.place(&at);
    unknown_keys(table, SUBSCRIPTION_KEYS, &at, problems);
    let r = Reader {
        table,
        at: &at,
        problems,
    };
    Subscription {
        max_attempts: r.int("max_attempts"),
        initial_backoff_ms: r.int("initial_backoff_ms"),
        backoff_factor: r.float("backoff_factor"),
        jitter_ms: r.int("jitter_ms"),
        per_request_timeout_ms: r.int("per_request_timeout_ms"),
        max_in_flight: r.int("max_in_flight"),
        rate_limit: r.string("rate_limit"),
        max_age: r.string("max_age"),
        circuit_failures: r.int("circuit_failures"),
        circuit_cooldown: r.string("circuit_cooldown"),
        ordering: r.string("ordering"),
        fifo_on_dead: r.string("fifo_on_dead"),
        id: r.required_string("id"),
        url: r.string("url"),
        url_env: r.string("url_env"),
        format: r.string("format"),
        text: r.string("text"),
        headers: r.string_table("headers"),
        secret_env: r.string("secret_env"),
        secret_env_previous: r.string("secret_env_previous"),
        signing_key_env: r.string("signing_key_env"),
        signing_key_env_previous: r.string("signing_key_env_previous"),
        signature: r.string("signature"),
        active: r.bool("active"),
        dry_run: r.bool("dry_run"),
        include_events: r.strings("include_events"),
        include_stages: r.strings("include_stages"),
        include_status: r.strings("include_status"),
        allow_private_networks: r.bool("allow_private_networks"),
        at,
    }
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
    strsim::levenshtein(&a, &b) <= allowed
}

/// Keys whose values a message never shows, whatever their type: URLs
/// (userinfo, query, a chat webhook's path), header values, and the
/// variables that name secrets (a secret pasted in by mistake).
fn may_be_secret(key: &str) -> bool {
    matches!(key, "url" | "url_env" | "headers")
        || key.starts_with("secret_env")
        || key.starts_with("signing_key_env")
}

/// Typed access to one table's keys, recording a problem for each value of
/// the wrong type.
struct Reader<'a> {
    table: &'a Table,
    at: &'a str,
    problems: &'a Problems,
}

impl Reader<'_> {
    fn problem(&self, key: &str, message: impl fmt::Display) {
        self.problems.key(self.at, key, message);
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.table.get(key)
    }

    /// Names the type found, and the value too unless the key may hold a
    /// credential ([`may_be_secret`]): config errors reach CI logs.
    fn wrong_type(&self, key: &str, want: &str, got: &Value) {
        let message = if may_be_secret(key) {
            format!("expected {want}, found {}", got.type_str())
        } else {
            format!("expected {want}, found {} `{got}`", got.type_str())
        };
        self.problem(key, message);
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

    fn int(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            Value::Integer(i) => Some(*i),
            other => {
                self.wrong_type(key, "a whole number", other);
                None
            }
        }
    }

    /// A number; a whole number is one too.
    fn float(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            Value::Float(f) => Some(*f),
            Value::Integer(i) => Some(*i as f64),
            other => {
                self.wrong_type(key, "a number", other);
                None
            }
        }
    }

    /// A string with something in it: an empty one is a problem.
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

    fn required_string(&self, key: &str) -> Option<String> {
        if self.get(key).is_none() {
            self.problem(key, "missing: every subscription needs one");
            return None;
        }
        self.string(key)
    }

    /// The string values of a table (`{ Name = "value" }`), in file order;
    /// each value that is not a string is a problem.
    fn string_table(&self, key: &str) -> Vec<(String, String)> {
        let Some(value) = self.get(key) else {
            return Vec::new();
        };
        let Some(table) = value.as_table() else {
            self.wrong_type(
                key,
                "a table of strings, like { Authorization = \"env:API_TOKEN\" }",
                value,
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, item) in table {
            match item.as_str() {
                Some(s) => out.push((name.clone(), s.to_string())),
                // Not the value: a header's may be a credential.
                None => self.problem(
                    key,
                    format!("`{name}`: expected a string, found {}", item.type_str()),
                ),
            }
        }
        out
    }

    /// The strings of a list; each item that is not a string is a problem.
    fn strings(&self, key: &str) -> Vec<String> {
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
                Some(s) => out.push(s.to_string()),
                None => self.wrong_type(key, "a list of strings", item),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_recognised_after_a_dropped_letter() {
        assert!(similar("max_attempts", "max_atempts"));
        assert!(similar("include_status", "include_stauts"));
        assert!(similar("enabled", "enabld"));
        assert!(similar("max_concurrency", "max_conc"), "a prefix");
        assert!(!similar("jitter_ms", "dry_run"));
        assert!(!similar("id", "ab"), "short names need a closer match");
    }

    #[test]
    fn values_are_read_as_written_and_wrong_types_named() {
        let text = r#"
[spec_ops.webhooks]
enabled = "yes"
max_concurrency = 0
spool_dir = ""
[[spec_ops.webhooks.subscriptions]]
id = "a"
backoff_factor = 3
include_stages = ["Plan", 7]
signature = "nonsense"
headers = { Authorization = "env:TOKEN", X-Count = 3 }
"#;
        let problems = Problems::default();
        let webhooks = read(text, &problems).unwrap().unwrap();
        assert_eq!(webhooks.enabled, None);
        assert_eq!(
            webhooks.max_concurrency,
            Some(0),
            "ranges are not checked here"
        );
        assert_eq!(webhooks.spool_dir, None);
        let sub = &webhooks.subscriptions[0];
        assert_eq!(sub.at, "subscription `a`");
        assert_eq!(sub.backoff_factor, Some(3.0));
        assert_eq!(sub.include_stages, ["Plan"]);
        assert_eq!(sub.signature.as_deref(), Some("nonsense"));
        assert_eq!(
            sub.headers,
            [("Authorization".to_string(), "env:TOKEN".to_string())]
        );
        assert_eq!(
            problems.lines(),
            [
                "[spec_ops.webhooks]: key `enabled`: expected true or false, found string `\"yes\"`",
                "[spec_ops.webhooks]: key `spool_dir`: is empty",
                "subscription `a`: key `headers`: `X-Count`: expected a string, found integer",
                "subscription `a`: key `include_stages`: expected a list of strings, found integer `7`",
            ]
        );
    }

    #[test]
    fn values_of_keys_that_may_hold_credentials_are_never_shown() {
        let text = r#"
[spec_ops.webhooks]
[[spec_ops.webhooks.subscriptions]]
id = "a"
url = ["https://u:PASSLIT3@x/a?t=QLIT4"]
url_env = { v = "https://h/URLENVLIT5" }
headers = { Authorization = ["Bearer TOKLIT1"] }
secret_env = 7777
secret_env_previous = ["SECRETLIT6"]
max_attempts = "three"
[spec_ops.webhooks.specs."SPEC-*"]
slack = "https://hooks.slack.com/services/T0/B0/SLACKLIT10"
"#;
        let problems = Problems::default();
        read(text, &problems).unwrap().unwrap();
        let lines = problems.lines();
        assert_eq!(
            lines,
            [
                "subscription `a`: key `max_attempts`: expected a whole number, found string `\"three\"`",
                "subscription `a`: key `url`: expected a string, found array",
                "subscription `a`: key `url_env`: expected a string, found table",
                "subscription `a`: key `headers`: `Authorization`: expected a string, found array",
                "subscription `a`: key `secret_env`: expected a string, found integer",
                "subscription `a`: key `secret_env_previous`: expected a string, found array",
                "[spec_ops.webhooks.specs.\"SPEC-*\".slack]: must be a table of subscription keys (found string), like `url_env = \"SLACK_URL\"`",
            ],
            "other keys still show the value"
        );
    }

    #[test]
    fn other_tables_are_none_and_not_toml_is_an_error() {
        let problems = Problems::default();
        assert!(read("[model]\nname = 'x'\n", &problems).unwrap().is_none());
        assert!(
            read("[spec_ops]\nwebhooks = 1\n", &problems)
                .unwrap()
                .is_none()
        );
        assert_eq!(problems.lines(), ["[spec_ops.webhooks]: must be a table"]);
        assert!(read("[spec_ops", &problems).is_err());
    }
}
