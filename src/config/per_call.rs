//! Per-call targets (`emit --url URL`): a one-off subscription for one
//! event, validated by the very rules of a `[[subscriptions]]` table (it is
//! read as one), with a stable id derived from the URL (`adhoc-` and ten hex
//! digits of its SHA-256, [`adhoc_id`]), private networks refused unless
//! allowed, and no signature unless a secret variable is named.

use toml::{Table, Value};

use super::model::{Config, Subscription, adhoc_id, shown_per_call_url};
use super::problems::Problems;
use super::raw;
use super::subscription::{Kind, resolve_subscription};
use crate::spool::Target;

/// A per-call URL travels in the job's metadata line: keep it well inside.
const MAX_URL_BYTES: usize = 8192;

impl Config {
    /// The subscription a per-call target stands for. `Err` lists every
    /// problem, one per line, as `check` would for a table.
    pub fn per_call(&self, target: &Target) -> Result<Subscription, Vec<String>> {
        if target.url.len() > MAX_URL_BYTES {
            return Err(vec![format!(
                "--url: {} bytes is longer than a webhook URL may be ({MAX_URL_BYTES})",
                target.url.len()
            )]);
        }
        let mut table = Table::new();
        let mut put = |key: &str, value: Option<&String>| {
            if let Some(v) = value {
                table.insert(key.into(), Value::String(v.clone()));
            }
        };
        put("id", Some(&adhoc_id(&target.url)));
        put("url", Some(&target.url));
        put("secret_env", target.secret_env.as_ref());
        put("signature", target.signature.as_ref());
        put("format", target.format.as_ref());
        table.insert(
            "allow_private_networks".into(),
            Value::Boolean(target.allow_private_networks),
        );
        let problems = Problems::default();
        let at = format!("--url `{}`", shown_per_call_url(&target.url));
        let raw = raw::read_subscription_at(&table, at, &problems);
        let sub = resolve_subscription(
            raw,
            self.evidence_base_url.as_deref(),
            Kind::PerCall,
            &problems,
        );
        if problems.is_empty() {
            Ok(sub)
        } else {
            Err(problems.lines())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> Config {
        crate::config::parse(
            "[spec_ops.webhooks]\nenabled = true\n",
            Path::new("/x/c.toml"),
        )
        .unwrap()
    }

    fn target(url: &str) -> Target {
        Target {
            url: url.into(),
            secret_env: None,
            signature: None,
            format: None,
            allow_private_networks: false,
        }
    }

    #[test]
    fn a_target_without_a_secret_is_unsigned_and_shown_redacted() {
        let sub = config()
            .per_call(&target("https://hooks.example.com/T1/secret-path?token=x"))
            .unwrap();
        assert!(sub.per_call && sub.unsigned() && !sub.needs_secret());
        assert!(!sub.allow_private_networks);
        assert_eq!(sub.shown_url(), "https://hooks.example.com/<redacted>");
        let mut signed = target("https://hooks.example.com/h");
        signed.secret_env = Some("S".into());
        signed.signature = Some("github".into());
        signed.format = Some("slack".into());
        let sub = config().per_call(&signed).unwrap();
        assert!(!sub.unsigned() && sub.needs_secret());
        assert_eq!(sub.style.format, crate::format::Format::Slack);
    }

    #[test]
    fn bad_targets_are_refused_with_every_reason_and_no_secret_path() {
        let mut bad = target("http://example.com/secret-path");
        bad.signature = Some("nope".into());
        bad.format = Some("slak".into());
        let lines = config().per_call(&bad).unwrap_err();
        let text = lines.join("\n");
        assert!(text.contains("uses plain http"), "{text}");
        assert!(text.contains("unknown scheme `nope`"), "{text}");
        assert!(text.contains("unknown format `slak`"), "{text}");
        assert!(!text.contains("secret-path"), "{text}");
        let lines = config().per_call(&target("garbage")).unwrap_err();
        assert!(lines[0].contains("must start with https://"), "{lines:?}");
    }

    #[test]
    fn private_literals_need_the_switch() {
        for url in [
            "https://169.254.169.254/latest",
            "http://127.0.0.1:9/h",
            "https://[::1]/h",
            "https://10.1.2.3/h",
        ] {
            let lines = config().per_call(&target(url)).unwrap_err();
            assert!(
                lines[0].contains("allow_private_networks"),
                "{url}: {lines:?}"
            );
            let mut allowed = target(url);
            allowed.allow_private_networks = true;
            assert!(config().per_call(&allowed).is_ok(), "{url}");
        }
        assert!(
            config().per_call(&target("https://localhost/h")).is_ok(),
            "names are checked when resolved"
        );
    }
}
