//! The `[spec_ops.webhooks]` table, as `raw` read it, resolved into a
//! [`Config`]: the defaults, paths relative to the config file, the global
//! limits checked against their ranges, every subscription (duplicate ids
//! named), then the per-SPEC overrides built on them, and last the alert
//! rules, which name subscriptions.

use std::collections::HashSet;
use std::path::Path;

use super::model::{Config, MAX_EVENT_BYTES_LIMIT};
use super::problems::{Check, Problems};
use super::raw;
use super::specs;
use super::subscription::{Kind, resolve_subscription};

/// The settings `[spec_ops.webhooks]` asks for, over the defaults.
pub(super) fn resolve(raw: raw::Webhooks, path: &Path, base: &Path, problems: &Problems) -> Config {
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
    c.max_active_jobs = check
        .int("max_active_jobs", raw.max_active_jobs, 1, 100_000_000)
        .map_or(c.max_active_jobs, |v| v as usize);
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
    c.alerts = super::alerts::resolve(raw.alerts, &c, problems);
    c
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{DEFAULT_EVIDENCE_DIR, parse};

    const PRD_EXAMPLE: &str = include_str!("../../tests/fixtures/prd-config.toml");

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
}
