//! Per-SPEC overrides: `[spec_ops.webhooks.specs."SPEC-ID"]` (an exact id)
//! and `[spec_ops.webhooks.specs."SPEC-KIT-*"]` (a prefix glob), each with
//! one table per subscription id. A table for an existing id sets keys of
//! that subscription for the matching SPECs (`url` and `url_env` replace
//! each other; `active = false` turns it off); a table for a new id adds a
//! subscription for them only. Most specific wins: an exact id over a glob,
//! a longer glob over a shorter one, any of them over the global tables.
//!
//! Every pattern is resolved here once, at load time, into the complete
//! list of subscriptions in effect for the SPECs it decides ([`Scope`]),
//! and every table is validated in that context with the global rules;
//! problems name the table path. Which scope decides a SPEC is answered
//! here too ([`Config::subscriptions_for`]).

use std::collections::HashSet;

use toml::{Table, Value};

use super::model::{Config, Scope, Subscription};
use super::problems::Problems;
use super::raw::{self, spec_table_at};
use super::subscription::{Kind, resolve_subscription};

/// Keys that belong to an endpoint's one queue (a lane of the drain's
/// scheduler, its rate and its circuit breaker), shared by every SPEC: an
/// override cannot change them for one SPEC.
const SHARED_KEYS: &[&str] = &[
    "max_in_flight",
    "rate_limit",
    "max_age",
    "circuit_failures",
    "circuit_cooldown",
    "ordering",
    "fifo_on_dead",
];

/// A `specs` key: an exact SPEC id or a prefix followed by `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pattern<'a> {
    Exact(&'a str),
    Prefix(&'a str),
}

impl<'a> Pattern<'a> {
    fn parse(text: &'a str) -> Result<Pattern<'a>, String> {
        let (pattern, core) = match text.strip_suffix('*') {
            Some("") => {
                return Err(
                    "`*` alone would match every SPEC: set those keys in the global subscription instead"
                        .into(),
                );
            }
            Some(prefix) => (Pattern::Prefix(prefix), prefix),
            None => (Pattern::Exact(text), text),
        };
        if core.contains('*') {
            return Err(format!(
                "`{}`: `*` is allowed only at the end, like \"SPEC-KIT-*\"",
                text.escape_debug()
            ));
        }
        crate::envelope::check_spec_id(core)
            .map_err(|e| format!("not a SPEC id or SPEC-id prefix: {e}"))?;
        Ok(pattern)
    }

    fn matches(self, spec: &str) -> bool {
        match self {
            Pattern::Exact(id) => id == spec,
            Pattern::Prefix(prefix) => spec.starts_with(prefix),
        }
    }

    /// Whether every SPEC `other` matches is matched by `self` too: `self`'s
    /// overrides apply under `other`'s.
    fn covers(self, other: Pattern<'_>) -> bool {
        match (self, other) {
            (Pattern::Exact(a), Pattern::Exact(b)) => a == b,
            (Pattern::Exact(_), Pattern::Prefix(_)) => false,
            (Pattern::Prefix(p), Pattern::Exact(s)) | (Pattern::Prefix(p), Pattern::Prefix(s)) => {
                s.starts_with(p)
            }
        }
    }

    /// Higher wins: an exact id over any glob, a longer glob over a shorter.
    fn specificity(self) -> usize {
        match self {
            Pattern::Exact(_) => usize::MAX,
            Pattern::Prefix(p) => p.len(),
        }
    }
}

impl Config {
    /// The subscriptions in effect for `spec`: those of the most specific
    /// `specs` pattern that matches it (an exact id, else the longest
    /// prefix glob), else the global ones.
    pub fn subscriptions_for(&self, spec: &str) -> &[Subscription] {
        self.scope_for(spec)
            .map_or(&self.subscriptions, |scope| &scope.subscriptions)
    }

    /// The `specs` pattern that decides `spec`'s subscriptions, if any.
    pub fn scope_for(&self, spec: &str) -> Option<&Scope> {
        self.specs
            .iter()
            .filter_map(|s| {
                let pattern = Pattern::parse(&s.pattern).ok()?;
                pattern.matches(spec).then_some((pattern.specificity(), s))
            })
            .max_by_key(|(specificity, _)| *specificity)
            .map(|(_, s)| s)
    }

    /// Subscription `id` as it is in effect for `spec`.
    pub fn subscription_for(&self, spec: &str, id: &str) -> Option<&Subscription> {
        self.subscriptions_for(spec).iter().find(|s| s.id == id)
    }
}

/// What the overrides build on: the global subscriptions, as written and as
/// resolved, and which of them already have problems.
pub(super) struct Base<'a> {
    pub tables: &'a [(String, Table)],
    pub subscriptions: &'a [Subscription],
    /// Global ids with problems (reported there; not again for overrides).
    pub flawed: &'a HashSet<String>,
    pub evidence_base_url: Option<&'a str>,
}

/// One valid pattern with its tables, checked and cleaned of keys that
/// cannot be overridden (each already reported).
struct Entry<'a> {
    text: &'a str,
    pattern: Pattern<'a>,
    tables: Vec<(&'a str, Table)>,
}

impl Entry<'_> {
    fn table(&self, id: &str) -> Option<&Table> {
        self.tables.iter().find(|(i, _)| *i == id).map(|(_, t)| t)
    }
}

/// Resolves every pattern into its scope, reporting each table's problems
/// once, at its own path.
pub(super) fn resolve(specs: &[raw::Spec], base: &Base<'_>, problems: &Problems) -> Vec<Scope> {
    let entries: Vec<Entry<'_>> = specs
        .iter()
        .filter_map(|spec| check_entry(spec, base, problems))
        .collect();
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| entries[i].pattern.specificity());
    // (pattern, id) tables whose effective subscription has problems.
    let mut flawed: HashSet<(&str, &str)> = HashSet::new();
    let mut scopes: Vec<(usize, Scope)> = Vec::new();
    for &i in &order {
        let entry = &entries[i];
        let mut chain: Vec<&Entry<'_>> = entries
            .iter()
            .filter(|q| q.pattern.covers(entry.pattern))
            .collect();
        chain.sort_by_key(|q| q.pattern.specificity());
        let mut ids: Vec<&str> = base.subscriptions.iter().map(|s| s.id.as_str()).collect();
        for q in &chain {
            for (id, _) in &q.tables {
                if !ids.contains(id) {
                    ids.push(id);
                }
            }
        }
        let mut subscriptions = Vec::new();
        for id in ids {
            let layers: Vec<(&str, &Table)> = chain
                .iter()
                .filter_map(|q| Some((q.text, q.table(id)?)))
                .collect();
            if layers.is_empty() {
                // No table of this chain names it: the global one as it is.
                subscriptions.extend(base.subscriptions.iter().find(|s| s.id == id).cloned());
                continue;
            }
            let mut merged = base
                .tables
                .iter()
                .find(|(i, _)| i == id)
                .map(|(_, t)| t.clone())
                .unwrap_or_default();
            for (_, table) in &layers {
                merge(&mut merged, table);
            }
            merged.insert("id".into(), Value::String(id.to_string()));
            let at = spec_table_at(entry.text, Some(id));
            let scratch = Problems::default();
            let raw_sub = raw::read_subscription_at(&merged, at, &scratch);
            let mut sub =
                resolve_subscription(raw_sub, base.evidence_base_url, Kind::Config, &scratch);
            sub.overrides = layers.iter().map(|(p, _)| p.to_string()).collect();
            let own = entry.table(id).is_some();
            let inherited = base.flawed.contains(id)
                || layers
                    .iter()
                    .any(|(p, _)| *p != entry.text && flawed.contains(&(*p, id)));
            if own && !scratch.is_empty() {
                flawed.insert((entry.text, id));
                if !inherited {
                    problems.absorb(scratch);
                }
            }
            subscriptions.push(sub);
        }
        scopes.push((
            i,
            Scope {
                pattern: entry.text.to_string(),
                subscriptions,
            },
        ));
    }
    scopes.sort_by_key(|(i, _)| *i);
    scopes.into_iter().map(|(_, s)| s).collect()
}

/// Checks a pattern and its tables for what merging cannot catch: the
/// pattern's form, an `id` key, keys shared by every SPEC.
fn check_entry<'a>(spec: &'a raw::Spec, base: &Base<'_>, problems: &Problems) -> Option<Entry<'a>> {
    let pattern = match Pattern::parse(&spec.pattern) {
        Ok(p) => p,
        Err(e) => {
            problems.push(&spec_table_at(&spec.pattern, None), e);
            return None;
        }
    };
    let mut tables = Vec::new();
    for (id, table) in &spec.entries {
        let at = spec_table_at(&spec.pattern, Some(id));
        let mut table = table.clone();
        if table.remove("id").is_some() {
            problems.key(
                &at,
                "id",
                format!("the table's name is the subscription id (`{id}`): remove `id`"),
            );
        }
        let exists = base.subscriptions.iter().any(|s| s.id == *id);
        for key in SHARED_KEYS {
            if exists && table.remove(*key).is_some() {
                problems.key(
                    &at,
                    key,
                    format!(
                        "cannot differ per SPEC: subscription `{id}` has one queue for every SPEC; set it in the global table, or add a subscription with its own id for these SPECs"
                    ),
                );
            }
        }
        tables.push((id.as_str(), table));
    }
    Some(Entry {
        text: &spec.pattern,
        pattern,
        tables,
    })
}

/// Lays an override's keys over a subscription table: each key replaces
/// the one below it; `url` and `url_env` replace each other.
fn merge(base: &mut Table, over: &Table) {
    if over.contains_key("url") || over.contains_key("url_env") {
        base.remove("url");
        base.remove("url_env");
    }
    for (key, value) in over {
        base.insert(key.clone(), value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_and_cover() {
        assert_eq!(Pattern::parse("SPEC-1"), Ok(Pattern::Exact("SPEC-1")));
        assert_eq!(
            Pattern::parse("SPEC-KIT-*"),
            Ok(Pattern::Prefix("SPEC-KIT-"))
        );
        for bad in ["*", "SPEC-*-x", "SP*EC", "../x*", "-x", "a b"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
        let kit = Pattern::Prefix("SPEC-KIT-");
        let spec = Pattern::Prefix("SPEC-");
        let exact = Pattern::Exact("SPEC-KIT-065");
        assert!(spec.covers(kit) && spec.covers(exact) && kit.covers(exact));
        assert!(!kit.covers(spec) && !exact.covers(kit));
        assert!(exact.covers(exact));
        assert!(exact.specificity() > kit.specificity());
        assert!(kit.specificity() > spec.specificity());
    }

    const LAYERED: &str = r#"
[spec_ops.webhooks]
enabled = true
[[spec_ops.webhooks.subscriptions]]
id = "chat"
url = "https://global.example/h"
secret_env = "S"
max_attempts = 3
[[spec_ops.webhooks.subscriptions]]
id = "audit"
url = "https://audit.example/h"
secret_env = "S"

[spec_ops.webhooks.specs."SPEC-*".chat]
url = "https://spec.example/h"
[spec_ops.webhooks.specs."SPEC-KIT-*".chat]
url = "https://kit.example/h"
max_attempts = 5
[spec_ops.webhooks.specs."SPEC-KIT-*".audit]
active = false
[spec_ops.webhooks.specs."SPEC-KIT-065".chat]
url_env = "EXACT_URL"
[spec_ops.webhooks.specs."SPEC-KIT-065".team]
url = "https://team.example/h"
secret_env = "T"
"#;

    fn config(text: &str) -> Config {
        crate::config::parse(text, std::path::Path::new("/x/c.toml")).unwrap()
    }

    #[test]
    fn the_most_specific_table_wins_key_by_key() {
        let c = config(LAYERED);
        let summary = |spec: &str| -> Vec<String> {
            c.subscriptions_for(spec)
                .iter()
                .map(|s| {
                    let url = match &s.url_env {
                        Some(var) => format!("${var}"),
                        None => s.url.clone(),
                    };
                    format!(
                        "{} {url} active={} attempts={}",
                        s.id, s.active, s.retry.max_attempts
                    )
                })
                .collect()
        };
        let cases: &[(&str, &[&str])] = &[
            (
                "OTHER-1",
                &[
                    "chat https://global.example/h active=true attempts=3",
                    "audit https://audit.example/h active=true attempts=8",
                ],
            ),
            (
                "SPEC-1",
                &[
                    "chat https://spec.example/h active=true attempts=3",
                    "audit https://audit.example/h active=true attempts=8",
                ],
            ),
            (
                "SPEC-KIT-1",
                &[
                    "chat https://kit.example/h active=true attempts=5",
                    "audit https://audit.example/h active=false attempts=8",
                ],
            ),
            (
                "SPEC-KIT-065",
                &[
                    "chat $EXACT_URL active=true attempts=5",
                    "audit https://audit.example/h active=false attempts=8",
                    "team https://team.example/h active=true attempts=8",
                ],
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(summary(spec), *want, "{spec}");
        }
        let chat = c.subscription_for("SPEC-KIT-065", "chat").unwrap();
        assert_eq!(chat.overrides, ["SPEC-*", "SPEC-KIT-*", "SPEC-KIT-065"]);
        assert!(
            c.subscription_for("SPEC-KIT-1", "team").is_none(),
            "SPEC-only"
        );
        assert!(c.knows("team") && !c.knows("nobody"));
    }

    #[test]
    fn override_problems_name_their_table_once() {
        let text = r#"
[spec_ops.webhooks]
[[spec_ops.webhooks.subscriptions]]
id = "chat"
url = "https://global.example/h"
secret_env = "S"
[spec_ops.webhooks.specs."SPEC-*".chat]
url = "http://plain.example/h"
rate_limit = "1/s"
id = "chat"
[spec_ops.webhooks.specs."SPEC-KIT-*".chat]
format = "teams"
[spec_ops.webhooks.specs."SPEC-*".extra]
format = "slack"
[spec_ops.webhooks.specs."A*B"]
x = {}
[spec_ops.webhooks.specs."SPEC-2"]
chat = 3
"#;
        let e = format!(
            "{:#}",
            crate::config::parse(text, std::path::Path::new("/x/c.toml")).unwrap_err()
        );
        for needle in [
            r#"[spec_ops.webhooks.specs."SPEC-*".chat]: key `url`: `http://plain.example/h` uses plain http"#,
            r#"[spec_ops.webhooks.specs."SPEC-*".chat]: key `rate_limit`: cannot differ per SPEC"#,
            r#"[spec_ops.webhooks.specs."SPEC-*".chat]: key `id`: the table's name is the subscription id"#,
            r#"[spec_ops.webhooks.specs."SPEC-*".extra]: key `url`: missing"#,
            r#"[spec_ops.webhooks.specs."SPEC-*".extra]: key `secret_env`: missing"#,
            r#"[spec_ops.webhooks.specs."A*B"]: `A*B`: `*` is allowed only at the end"#,
            r#"[spec_ops.webhooks.specs."SPEC-2".chat]: must be a table of subscription keys"#,
        ] {
            assert!(e.contains(needle), "missing {needle:?} in:\n{e}");
        }
        assert_eq!(
            e.matches("plain http").count(),
            1,
            "reported once, not again under SPEC-KIT-*:\n{e}"
        );
    }

    #[test]
    fn url_and_url_env_replace_each_other() {
        let mut base: Table = "url = 'https://a/h'\nformat = 'slack'\n".parse().unwrap();
        merge(&mut base, &"url_env = 'B_URL'\n".parse().unwrap());
        assert_eq!(base.get("url"), None);
        assert_eq!(base["url_env"].as_str(), Some("B_URL"));
        assert_eq!(base["format"].as_str(), Some("slack"));
    }
}
