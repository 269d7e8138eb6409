//! `spec-notify check`: validate the config (secrets included) and summarise
//! it (the relay to NATS too, credentials never shown); warn about what is valid but likely wrong (a rotation left on, a chat
//! webhook sent the wrong format).

use std::io::Write;

use anyhow::Result;
use serde_json::json;

use super::Ctx;
use crate::cli::CheckArgs;
use crate::config::{self, Config, Secrets};
use crate::exit::ExitCode;
use crate::format::Format;
use crate::output;

/// Every problem, secrets included, comes back as one exit-2 error from the
/// load; only a valid config gets a summary.
pub fn run(ctx: &Ctx, args: &CheckArgs) -> Result<ExitCode> {
    let location = config::locate(ctx.config.as_deref());
    let config = config::load_with(&location, Secrets::Required)?;
    for warning in rotation_warnings(&config)
        .into_iter()
        .chain(format_warnings(&config))
    {
        output::warn(warning);
    }
    if args.json {
        output::print_json(&summary_json(&config))?;
    } else {
        print_summary(&config)?;
    }
    Ok(ExitCode::Success)
}

fn rotation_warnings(config: &Config) -> Vec<String> {
    config
        .subscriptions
        .iter()
        .filter_map(|s| {
            let prev = s.secret_env_previous.as_ref()?;
            Some(format!(
                "subscription `{}` is rotating secrets ({prev} is still configured): remove secret_env_previous once receivers accept the new secret",
                s.id
            ))
        })
        .collect()
}

/// A subscription whose URL is a known chat platform's webhook but whose
/// `format` is not that platform's: the platform would reject every delivery.
fn format_warnings(config: &Config) -> Vec<String> {
    config
        .subscriptions
        .iter()
        .filter_map(|s| {
            let platform = crate::url::chat_platform(&s.url)?;
            let want = Format::for_platform(platform)?;
            if s.style.format == want {
                return None;
            }
            let sends = match s.style.format {
                Format::Json => "the JSON envelope".to_string(),
                other => format!("`format = \"{}\"`", other.as_str()),
            };
            Some(format!(
                "subscription `{}` sends {sends} to a {platform} webhook, which will reject it: set `format = \"{}\"`",
                s.id,
                want.as_str()
            ))
        })
        .collect()
}

fn print_summary(config: &Config) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let state = if config.enabled {
        "enabled"
    } else {
        "disabled"
    };
    writeln!(out, "config:   {}", config.path.display())?;
    writeln!(out, "webhooks: {state} ({})", config.enabled_source)?;
    writeln!(out, "spool:    {}", config.spool_dir.display())?;
    writeln!(out, "evidence: {}", config.evidence_dir.display())?;
    writeln!(
        out,
        "limits:   max_concurrency {}, max_spool_jobs {} per SPEC, max_evidence_bytes {}, auto_drain {}",
        config.max_concurrency, config.max_spool_jobs, config.max_evidence_bytes, config.auto_drain
    )?;
    if let Some(relay) = &config.relay {
        let [urls, stream, replicas, credentials] = relay_fields(relay);
        writeln!(
            out,
            "relay:    NATS JetStream {urls}; streams {stream}_*; replicas {replicas}; credentials {credentials}"
        )?;
    }
    writeln!(out, "subscriptions ({}):", config.subscriptions.len())?;
    let rows: Vec<Vec<String>> = config
        .subscriptions
        .iter()
        .map(|s| {
            let mode = match (s.active, s.dry_run) {
                (false, _) => "inactive",
                (true, true) => "dry-run",
                (true, false) => "active",
            };
            let secret = match (&s.secret_env, s.needs_secret()) {
                (Some(var), _) if s.secret().is_ok() => format!("{var} (set)"),
                (Some(var), true) => format!("{var} (UNSET)"),
                (Some(var), false) => format!("{var} (unused)"),
                (None, _) => "-".into(),
            };
            let filters = describe_filters(s);
            vec![
                format!("  {}", s.id),
                mode.into(),
                s.style.format.as_str().into(),
                s.signature.as_str().into(),
                s.shown_url(),
                secret,
                filters,
            ]
        })
        .collect();
    if !rows.is_empty() {
        output::table(
            &mut out,
            &[
                "  ID",
                "MODE",
                "FORMAT",
                "SIGNATURE",
                "URL",
                "SECRET",
                "FILTERS",
            ],
            &rows,
        )?;
    }
    Ok(())
}

/// `[spec_ops.webhooks.relay]` for people: URLs without userinfo, and the
/// credentials' variable with whether it is set (never its value).
fn relay_fields(relay: &crate::config::Relay) -> [String; 4] {
    let credentials = match (&relay.credentials_env, relay.credentials()) {
        (Some(var), Ok(_)) => format!("{var} (set)"),
        (Some(var), Err(_)) => format!("{var} (UNSET)"),
        (None, _) => "none".into(),
    };
    [
        relay.shown_urls().join(", "),
        relay.stream.clone(),
        relay.replicas.to_string(),
        credentials,
    ]
}

fn describe_filters(s: &crate::config::Subscription) -> String {
    let list = |v: Vec<&str>| {
        if v.is_empty() {
            "all".to_string()
        } else {
            v.join(",")
        }
    };
    format!(
        "events={} stages={} status={} attempts={}",
        list(s.include_events.iter().map(String::as_str).collect()),
        list(s.include_stages.iter().map(|x| x.as_str()).collect()),
        list(s.include_status.iter().map(|x| x.as_str()).collect()),
        s.retry.max_attempts
    )
}

fn summary_json(config: &Config) -> serde_json::Value {
    let subs: Vec<_> = config
        .subscriptions
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "url": s.shown_url(),
                "url_env": s.url_env,
                "format": s.style.format.as_str(),
                "headers": s.headers.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
                "active": s.active,
                "dry_run": s.dry_run,
                "signature": s.signature.as_str(),
                "secret_env": s.secret_env,
                "secret_set": s.secret().is_ok(),
                "include_events": s.include_events,
                "include_stages": s.include_stages.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
                "include_status": s.include_status.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
                "max_attempts": s.retry.max_attempts,
                "initial_backoff_ms": s.retry.initial_backoff_ms,
                "backoff_factor": s.retry.backoff_factor,
                "jitter_ms": s.retry.jitter_ms,
                "per_request_timeout_ms": s.retry.per_request_timeout_ms,
            })
        })
        .collect();
    json!({
        "config": config.path,
        "enabled": config.enabled,
        "spool_dir": config.spool_dir,
        "evidence_dir": config.evidence_dir,
        "valid": true,
        "relay": config.relay.as_ref().map(|r| json!({
            "urls": r.shown_urls(),
            "stream": r.stream,
            "replicas": r.replicas,
            "credentials_env": r.credentials_env,
            "credentials_set": r.credentials().is_ok_and(|c| c.is_some()),
        })),
        "subscriptions": subs,
    })
}
