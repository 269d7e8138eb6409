//! `[[spec_ops.webhooks.alerts]]`: alert rules, read and checked in one
//! place. A rule names the conditions it watches (`on`), the subscriptions
//! it watches (`subscriptions`, globs; all by default) and where its alerts
//! go: `to`, a subscription (its format, signature, retries), and/or
//! `command`, a program run with the alert on stdin. What a condition means
//! and how alerts are deduplicated is `crate::alerts`'s; this file owns the
//! vocabulary ([`Condition`]) and what a rule may say.
//!
//! Alerts travel as jobs of the reserved SPEC [`ALERTS_SPEC`], so `to` is
//! the subscription as in effect for that SPEC (a `specs` override may
//! change it), and a `to` whose filters would refuse the alert events
//! ([`FIRING_EVENT`], [`RESOLVED_EVENT`]) is a problem: it would never get
//! one. A `to` that is inactive, a glob that matches no subscription, a
//! `command` whose program is not found here are only warnings (`check`
//! says them): they may be right on the host that drains.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use super::model::Config;
use super::problems::{Check, Problems};

/// The SPEC id alert jobs are spooled under (never a pipeline's: SPEC ids
/// of pipelines do not start with `spec-notify.`).
pub const ALERTS_SPEC: &str = "spec-notify.alerts";
/// The event type of an alert that starts firing (or fires again after
/// `repeat_interval`).
pub const FIRING_EVENT: &str = "spec-notify.alert.firing";
/// The event type of an alert that cleared.
pub const RESOLVED_EVENT: &str = "spec-notify.alert.resolved";

const AT: &str = "[[spec_ops.webhooks.alerts]]";
const KEYS: &[&str] = &[
    "id",
    "on",
    "backlog_age",
    "to",
    "command",
    "command_timeout",
    "repeat_interval",
    "send_resolved",
    "subscriptions",
];
const DEFAULT_BACKLOG_AGE_MS: u64 = 15 * 60 * 1000;
const DEFAULT_REPEAT_MS: u64 = 4 * 3600 * 1000;
const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 30_000;
const MAX_COMMAND_TIMEOUT_MS: u64 = 3600 * 1000;

/// What an alert rule can watch.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    /// Dead-lettered jobs wait for a replay or a discard.
    #[default]
    Dead,
    /// The circuit breaker is open.
    CircuitOpen,
    /// Paused by an operator or by the endpoint.
    Paused,
    /// Dead-lettered jobs among them expired (`max_age`).
    Expired,
    /// Spool files could not be read as jobs.
    Quarantined,
    /// The secret or signing key a delivery needs is unset (where the
    /// drain runs).
    SecretUnset,
    /// The oldest pending job is older than `backlog_age`.
    Backlog,
}

impl Condition {
    pub const ALL: [Condition; 7] = [
        Condition::Dead,
        Condition::CircuitOpen,
        Condition::Paused,
        Condition::Expired,
        Condition::Quarantined,
        Condition::SecretUnset,
        Condition::Backlog,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Condition::Dead => "dead",
            Condition::CircuitOpen => "circuit-open",
            Condition::Paused => "paused",
            Condition::Expired => "expired",
            Condition::Quarantined => "quarantined",
            Condition::SecretUnset => "secret-unset",
            Condition::Backlog => "backlog",
        }
    }

    pub fn parse(name: &str) -> Option<Condition> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether it is about one subscription (quarantined files belong to
    /// no subscription: their alert is about the spool).
    pub fn per_subscription(self) -> bool {
        self != Condition::Quarantined
    }
}

/// One checked alert rule.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub id: String,
    /// The conditions watched, in the order written.
    pub on: Vec<Condition>,
    pub backlog_age_ms: u64,
    /// The subscription alerts are delivered through.
    pub to: Option<String>,
    /// The program and its arguments, run with the alert on stdin.
    pub command: Vec<String>,
    pub command_timeout_ms: u64,
    pub repeat_interval_ms: u64,
    pub send_resolved: bool,
    /// Globs (`*`, `?`) of the subscriptions watched; empty: all.
    pub subscriptions: Vec<String>,
}

impl AlertRule {
    /// Whether this rule watches `subscription`: it matches a glob (or
    /// there are none), and it is not the rule's own route (an alert
    /// route never alerts about itself).
    pub fn watches(&self, subscription: &str) -> bool {
        self.to.as_deref() != Some(subscription)
            && (self.subscriptions.is_empty()
                || self.subscriptions.iter().any(|g| glob(g, subscription)))
    }

    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }
}

/// `*` matches any run of characters, `?` one character, anything else
/// itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // The classic two-pointer match with one backtrack point.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// One rule table as written (a key of the wrong type is `None`, its
/// problem recorded).
#[derive(Debug, Default)]
pub(super) struct RawRule {
    at: String,
    id: Option<String>,
    on: Option<Vec<String>>,
    backlog_age: Option<String>,
    to: Option<String>,
    command: Option<Vec<String>>,
    command_timeout: Option<String>,
    repeat_interval: Option<String>,
    send_resolved: Option<bool>,
    subscriptions: Vec<String>,
}

/// Reads `alerts` (an array of tables): each key as the type it must have.
pub(super) fn read(value: Option<&Value>, problems: &Problems) -> Vec<RawRule> {
    let Some(value) = value else {
        return Vec::new();
    };
    let Some(items) = value.as_array() else {
        problems.push(
            "alerts",
            format!("must be written as {AT} tables (one per rule)"),
        );
        return Vec::new();
    };
    let mut rules = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let Some(table) = item.as_table() else {
            problems.push(&format!("alerts[{index}]"), "must be a table");
            continue;
        };
        rules.push(read_rule(table, index, problems));
    }
    rules
}

fn read_rule(table: &Table, index: usize, problems: &Problems) -> RawRule {
    let at = match table.get("id").and_then(Value::as_str) {
        Some(id) if !id.trim().is_empty() => format!("alert rule `{id}`"),
        _ => format!("alerts[{index}]"),
    };
    problems.place(&at);
    for key in table.keys().filter(|k| !KEYS.contains(&k.as_str())) {
        let suggestion = KEYS
            .iter()
            .find(|k| strsim::levenshtein(k, key) <= 2)
            .map(|k| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        problems.push(
            &at,
            format!(
                "unknown key `{key}`{suggestion}; known keys: {}",
                KEYS.join(", ")
            ),
        );
    }
    let string = |key: &str| -> Option<String> {
        match table.get(key)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            Value::String(_) => {
                problems.key(&at, key, "is empty");
                None
            }
            other => {
                problems.key(
                    &at,
                    key,
                    format!("expected a string, found {} `{other}`", other.type_str()),
                );
                None
            }
        }
    };
    let strings = |key: &str, example: &str| -> Option<Vec<String>> {
        let value = table.get(key)?;
        let strings: Option<Vec<String>> = value
            .as_array()
            .and_then(|items| items.iter().map(|v| v.as_str().map(String::from)).collect());
        if strings.is_none() {
            problems.key(
                &at,
                key,
                format!(
                    "expected a list of strings, like {example}, found {} `{value}`",
                    value.type_str()
                ),
            );
        }
        strings
    };
    let send_resolved = match table.get("send_resolved") {
        None => None,
        Some(Value::Boolean(b)) => Some(*b),
        Some(other) => {
            problems.key(
                &at,
                "send_resolved",
                format!(
                    "expected true or false, found {} `{other}`",
                    other.type_str()
                ),
            );
            None
        }
    };
    let id = match table.get("id") {
        None => {
            problems.key(
                &at,
                "id",
                "missing: every alert rule needs one (letters, digits, `-_.`)",
            );
            None
        }
        Some(_) => string("id"),
    };
    RawRule {
        id,
        on: strings("on", "[\"dead\", \"circuit-open\"]"),
        backlog_age: string("backlog_age"),
        to: string("to"),
        command: strings(
            "command",
            "[\"/usr/local/bin/page-oncall\", \"--team\", \"platform\"]",
        ),
        command_timeout: string("command_timeout"),
        repeat_interval: string("repeat_interval"),
        send_resolved,
        subscriptions: strings("subscriptions", "[\"task-tracker\", \"release-*\"]")
            .unwrap_or_default(),
        at,
    }
}

/// Checks the rules against the resolved subscriptions: every problem is
/// recorded at the rule (`alert rule \`id\`: key \`to\`: …`).
pub(super) fn resolve(raw: Vec<RawRule>, config: &Config, problems: &Problems) -> Vec<AlertRule> {
    let mut seen = HashSet::new();
    let mut rules = Vec::new();
    for r in raw {
        let check = Check {
            at: &r.at,
            problems,
        };
        let id = r.id.clone().unwrap_or_default();
        if !id.is_empty() {
            if !is_id(&id) {
                check.problem(
                    "id",
                    format!("`{id}`: use letters, digits, `-`, `_` and `.` only"),
                );
            } else if !seen.insert(id.clone()) {
                problems.push(&r.at, "duplicate `id`: every alert rule needs its own id");
            }
        }
        let on = conditions(&check, r.on);
        let to =
            r.to.filter(|to| check_to(&check, config, to, r.send_resolved));
        let written = r.command.is_some();
        let command = r.command.unwrap_or_default();
        if command.first().is_some_and(|p| p.trim().is_empty()) {
            check.problem(
                "command",
                "the first item is the program to run: it cannot be empty",
            );
        }
        if written && command.is_empty() {
            check.problem(
                "command",
                "the list is empty: name the program, like [\"/usr/local/bin/page-oncall\"]",
            );
        }
        if to.is_none() && command.is_empty() && !problems.has(&r.at) {
            problems.push(
                &r.at,
                "sends its alerts nowhere: set `to` (a subscription), `command` (a program that reads the alert on stdin), or both",
            );
        }
        for pattern in &r.subscriptions {
            if !is_glob(pattern) {
                check.problem(
                    "subscriptions",
                    format!(
                        "`{pattern}` is not a subscription id or glob: letters, digits, `-_.` and `*`/`?`"
                    ),
                );
            }
        }
        let timeout = check.duration_ms("command_timeout", r.command_timeout);
        if timeout.is_some_and(|t| t > MAX_COMMAND_TIMEOUT_MS) {
            check.problem("command_timeout", "must be at most 1h");
        }
        rules.push(AlertRule {
            id,
            on,
            backlog_age_ms: check
                .duration_ms("backlog_age", r.backlog_age)
                .unwrap_or(DEFAULT_BACKLOG_AGE_MS),
            to,
            command,
            command_timeout_ms: timeout
                .unwrap_or(DEFAULT_COMMAND_TIMEOUT_MS)
                .min(MAX_COMMAND_TIMEOUT_MS),
            repeat_interval_ms: check
                .duration_ms("repeat_interval", r.repeat_interval)
                .unwrap_or(DEFAULT_REPEAT_MS),
            send_resolved: r.send_resolved.unwrap_or(true),
            subscriptions: r.subscriptions,
        });
    }
    rules
}

/// The conditions of `on` (all of them when absent), each known.
fn conditions(check: &Check<'_>, on: Option<Vec<String>>) -> Vec<Condition> {
    let Some(names) = on else {
        return Condition::ALL.to_vec();
    };
    if names.is_empty() {
        check.problem("on", "the list is empty: name the conditions to alert on");
    }
    let all: Vec<&str> = Condition::ALL.iter().map(|c| c.name()).collect();
    let mut out = Vec::new();
    for name in names {
        match Condition::parse(&name) {
            Some(c) if !out.contains(&c) => out.push(c),
            Some(_) => {}
            None => {
                let suggestion = all
                    .iter()
                    .find(|c| strsim::levenshtein(c, &name) <= 2)
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                check.problem(
                    "on",
                    format!(
                        "unknown condition `{name}`{suggestion}; use one of {}",
                        all.join(", ")
                    ),
                );
            }
        }
    }
    out
}

/// Whether `to` names a subscription in effect for [`ALERTS_SPEC`] that
/// takes the alert events; records the problem when not.
fn check_to(check: &Check<'_>, config: &Config, to: &str, send_resolved: Option<bool>) -> bool {
    let Some(sub) = config.subscription_for(ALERTS_SPEC, to) else {
        let known: Vec<&str> = config
            .subscriptions_for(ALERTS_SPEC)
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        let elsewhere = config.every_subscription().any(|(_, s)| s.id == to);
        let why = match elsewhere {
            true => format!(
                "subscription `{to}` is not in effect for alerts (they go out as SPEC {ALERTS_SPEC}; a [spec_ops.webhooks.specs] override adds it for other SPECs only)"
            ),
            false => format!("no subscription `{to}`"),
        };
        let known = match known.is_empty() {
            true => "none".to_string(),
            false => known.join(", "),
        };
        check.problem(
            "to",
            format!("{why}; subscriptions alerts can use: {known}"),
        );
        return false;
    };
    let mut refused = Vec::new();
    if !sub.matches(FIRING_EVENT, None, None) {
        refused.push(FIRING_EVENT);
    }
    if send_resolved.unwrap_or(true) && !sub.matches(RESOLVED_EVENT, None, None) {
        refused.push(RESOLVED_EVENT);
    }
    if refused.is_empty() {
        return true;
    }
    check.problem(
        "to",
        format!(
            "subscription `{to}` would never get {}: its include_events ({}) filter them out; add \"spec-notify.alert.*\" to them",
            refused.join(" or "),
            sub.include_events.join(", ")
        ),
    );
    false
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn is_glob(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.*?".contains(c))
}

/// What is valid but likely wrong in the rules, for `check`: an inactive
/// `to`, a glob that matches no subscription, `backlog_age` without
/// `backlog`, a `command` whose program is not found here.
pub fn warnings(config: &Config) -> Vec<String> {
    let ids: Vec<&str> = config
        .every_subscription()
        .map(|(_, s)| s.id.as_str())
        .collect();
    let mut out = Vec::new();
    for rule in &config.alerts {
        let id = &rule.id;
        if let Some(sub) = rule
            .to
            .as_deref()
            .and_then(|to| config.subscription_for(ALERTS_SPEC, to))
            .filter(|s| !s.active)
        {
            out.push(format!(
                "alert rule `{id}`: its `to` subscription `{}` is inactive: its alerts are not sent there until it is enabled",
                sub.id
            ));
        }
        for pattern in &rule.subscriptions {
            if !ids.iter().any(|s| glob(pattern, s)) {
                out.push(format!(
                    "alert rule `{id}`: `subscriptions` pattern `{pattern}` matches no subscription"
                ));
            }
        }
        if rule.backlog_age_ms != DEFAULT_BACKLOG_AGE_MS && !rule.on.contains(&Condition::Backlog) {
            out.push(format!(
                "alert rule `{id}`: `backlog_age` has no effect without \"backlog\" in `on`"
            ));
        }
        if let Some(program) = rule.command.first()
            && !program_exists(program)
        {
            out.push(format!(
                "alert rule `{id}`: the command `{program}` is not found here (not an executable file, nor on PATH): the drains that run it must have it"
            ));
        }
    }
    out
}

fn program_exists(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(std::path::Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| executable(&d.join(program))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(rules: &str) -> anyhow::Result<Config> {
        let text = format!(
            r#"
[spec_ops.webhooks]
[[spec_ops.webhooks.subscriptions]]
id = "chatops-slack"
url = "https://hooks.example/services/x"
format = "slack"
dry_run = true
[[spec_ops.webhooks.subscriptions]]
id = "task-tracker"
url = "https://tracker.example/hook"
dry_run = true
include_events = ["spec-kit.*"]
[[spec_ops.webhooks.subscriptions]]
id = "release-a"
url = "https://release.example/hook"
dry_run = true
{rules}"#
        );
        crate::config::parse(&text, Path::new("/x/config.toml"))
    }

    fn problems(rules: &str) -> Vec<String> {
        let e = format!("{:#}", config(rules).unwrap_err());
        e.lines().skip(1).map(|l| l.trim().to_string()).collect()
    }

    #[test]
    fn a_rule_reads_with_its_defaults() {
        let c = config(
            "[[spec_ops.webhooks.alerts]]\nid = \"oncall\"\nto = \"chatops-slack\"\nsubscriptions = [\"task-*\"]\n",
        )
        .unwrap();
        let rule = &c.alerts[0];
        assert_eq!(rule.on, Condition::ALL);
        assert_eq!(rule.repeat_interval_ms, 4 * 3600 * 1000);
        assert_eq!(rule.backlog_age_ms, 15 * 60 * 1000);
        assert!(rule.send_resolved);
        assert!(rule.watches("task-tracker"));
        assert!(!rule.watches("release-a"));
        assert!(!rule.watches("chatops-slack"), "never its own route");
    }

    #[test]
    fn bad_rules_are_named_with_the_key() {
        let found = problems(
            r#"
[[spec_ops.webhooks.alerts]]
id = "a"
on = ["dead", "circuit-opn", "nonsense"]
to = "nobody"
repeat_interval = "soon"
[[spec_ops.webhooks.alerts]]
id = "b"
to = "task-tracker"
[[spec_ops.webhooks.alerts]]
id = "c"
[[spec_ops.webhooks.alerts]]
id = "d"
command = ["/bin/true"]
[[spec_ops.webhooks.alerts]]
id = "d"
command = ["/bin/true"]
frobnicate = 1
"#,
        );
        let text = found.join("\n");
        for needle in [
            "alert rule `a`: key `on`: unknown condition `circuit-opn` (did you mean `circuit-open`?)",
            "alert rule `a`: key `on`: unknown condition `nonsense`",
            "alert rule `a`: key `to`: no subscription `nobody`; subscriptions alerts can use: chatops-slack, task-tracker, release-a",
            "alert rule `a`: key `repeat_interval`: `soon` is not a duration",
            "alert rule `b`: key `to`: subscription `task-tracker` would never get spec-notify.alert.firing or spec-notify.alert.resolved: its include_events (spec-kit.*) filter them out",
            "alert rule `c`: sends its alerts nowhere",
            "alert rule `d`: duplicate `id`",
            "alert rule `d`: unknown key `frobnicate`",
        ] {
            assert!(text.contains(needle), "{needle}\nin:\n{text}");
        }
    }

    #[test]
    fn a_filtered_route_is_fine_when_it_takes_alert_events() {
        let c = config(
            "[[spec_ops.webhooks.subscriptions]]\nid = \"pager\"\nurl = \"https://p.example/h\"\ndry_run = true\ninclude_events = [\"spec-notify.alert.firing\"]\n\
             [[spec_ops.webhooks.alerts]]\nid = \"a\"\nto = \"pager\"\nsend_resolved = false\n",
        )
        .unwrap();
        assert_eq!(c.alerts[0].to.as_deref(), Some("pager"));
        let found = problems(
            "[[spec_ops.webhooks.subscriptions]]\nid = \"pager\"\nurl = \"https://p.example/h\"\ndry_run = true\ninclude_events = [\"spec-notify.alert.firing\"]\n\
             [[spec_ops.webhooks.alerts]]\nid = \"a\"\nto = \"pager\"\n",
        );
        assert!(
            found[0].contains("would never get spec-notify.alert.resolved"),
            "{found:?}"
        );
    }

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob("release-*", "release-a"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXbYbc"));
        assert!(glob("task-?racker", "task-tracker"));
        assert!(!glob("release-*", "prerelease-a"));
        assert!(!glob("a*b", "acbd"));
        assert!(glob("exact", "exact") && !glob("exact", "exactly"));
    }

    #[test]
    fn warnings_say_what_is_likely_wrong() {
        let c = config(
            "[[spec_ops.webhooks.alerts]]\nid = \"w\"\ncommand = [\"/no/such/pager\"]\nsubscriptions = [\"nothing-*\"]\nbacklog_age = \"1h\"\non = [\"dead\"]\n",
        )
        .unwrap();
        let w = warnings(&c).join("\n");
        assert!(w.contains("`nothing-*` matches no subscription"), "{w}");
        assert!(w.contains("`backlog_age` has no effect"), "{w}");
        assert!(w.contains("`/no/such/pager` is not found here"), "{w}");
    }
}
