//! `spec-notify check`: validate the config (secrets, signing keys and
//! per-SPEC overrides included) and summarise it (the relay to NATS too,
//! credentials never shown; the public key of each signing key, which
//! receivers need; the alert rules); warn about what is valid but likely
//! wrong (a rotation left on, a chat webhook sent the wrong format, an
//! alert rule whose route is inactive or whose globs match nothing). `--spec` shows the subscriptions in
//! effect for one SPEC; `--probe` reaches every URL once (HEAD, no body, no
//! secret, 3 s), reports the HTTP status each answered, and exits 1 if one
//! does not answer or answers 404 or 410 (nothing there). Without `--probe` it
//! never touches the network.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};

use super::Ctx;
use crate::cli::{CheckArgs, Source};
use crate::config::{self, Config, Secrets, Subscription};
use crate::deliver::{self, Answer};
use crate::exit::ExitCode;
use crate::format::Format;
use crate::output;

/// How long a probe waits for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Every problem, secrets included, comes back as one exit-2 error from the
/// load; only a valid config gets a summary.
pub fn run(ctx: &Ctx, args: &CheckArgs) -> Result<ExitCode> {
    let location = config::locate(ctx.config.as_deref());
    // A host that only relays to NATS signs nothing: its secrets live on
    // the workers, which `check --source nats` checks.
    let relays_only = args.source == Source::Spool && relays_only(&location);
    let secrets = match relays_only {
        true => Secrets::RelayOnly,
        false => Secrets::Required,
    };
    let config = config::load_with(&location, secrets)?;
    for warning in rotation_warnings(&config)
        .into_iter()
        .chain(format_warnings(&config))
        .chain(relay_warnings(&config))
        .chain(config::alert_warnings(&config))
    {
        output::warn(warning);
    }
    if relays_only {
        for problem in config.secret_problems() {
            output::note(format_args!(
                "{problem}: not needed here (this host relays its jobs to NATS; the workers sign them, and `spec-notify check --source nats` checks a worker)"
            ));
        }
    }
    let probes = match args.probe {
        true => Some(probe_all(&config)),
        false => None,
    };
    if args.json {
        let mut summary = match &args.spec {
            Some(spec) => spec_json(&config, spec),
            None => summary_json(&config),
        };
        if let Some(probes) = &probes {
            summary["probes"] = probes.iter().map(Probe::json).collect();
        }
        output::print_json(&summary)?;
    } else {
        match &args.spec {
            Some(spec) => print_spec(&config, spec)?,
            None => print_summary(&config)?,
        }
        if let Some(probes) = &probes {
            print_probes(probes)?;
        }
    }
    let count = |pick: fn(&ProbeResult) -> bool| {
        probes.iter().flatten().filter(|p| pick(&p.result)).count()
    };
    let unreachable = count(|r| matches!(r, ProbeResult::Failed(_)));
    let missing = count(|r| matches!(r, ProbeResult::Missing(..)));
    if unreachable > 0 {
        output::warn(format_args!(
            "{unreachable} endpoint(s) did not answer the probe (see above); their jobs will wait and retry"
        ));
    }
    if missing > 0 {
        output::warn(format_args!(
            "{missing} endpoint(s) answered 404 or 410 (see above): deliveries there would go dead; fix the URL"
        ));
    }
    if unreachable + missing > 0 {
        return Ok(ExitCode::Failure);
    }
    Ok(ExitCode::Success)
}

/// Whether the config has a relay table (read without the secrets first;
/// an invalid config is reported in full by the load that follows).
fn relays_only(location: &config::Location) -> bool {
    config::load_with(location, Secrets::Optional).is_ok_and(|c| c.relay.is_some())
}

/// What a relay table asks of the rest of the config, and of this build.
fn relay_warnings(config: &Config) -> Vec<String> {
    if config.relay.is_some() && !cfg!(feature = "nats") {
        return vec![format!(
            "[spec_ops.webhooks.relay] is set, but {}",
            config::WITHOUT_NATS
        )];
    }
    match (&config.relay, config.every_subscription().next()) {
        (Some(_), None) => vec![format!(
            "[spec_ops.webhooks.relay] is set but `{}` has no subscriptions: emit fans events out to subscriptions before relaying, so this host would spool nothing; copy the [[spec_ops.webhooks.subscriptions]] tables from the workers' config (their secrets stay on the workers); see docs/scale-out.md",
            config.path.display()
        )],
        _ => Vec::new(),
    }
}

/// Each subscription once, wherever it is in effect: the global ones, then
/// what the `specs` overrides change or add (a table per scope and id).
fn distinct(config: &Config) -> Vec<(Option<&str>, &Subscription)> {
    let mut out: Vec<(Option<&str>, &Subscription)> = Vec::new();
    for (scope, sub) in config.every_subscription() {
        let same = |s: &Subscription| s.id == sub.id && s.overrides == sub.overrides;
        if !out.iter().any(|(_, s)| same(s)) {
            out.push((scope, sub));
        }
    }
    out
}

fn rotation_warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for (_, s) in distinct(config) {
        if let Some(prev) = &s.secret_env_previous {
            out.push(format!(
                "subscription `{}` is rotating secrets ({prev} is still configured): remove secret_env_previous once receivers accept the new secret",
                s.id
            ));
        }
        if let Some(prev) = &s.signing_key_env_previous {
            out.push(format!(
                "subscription `{}` is rotating signing keys ({prev} still signs too): remove signing_key_env_previous once receivers trust the new public key{}",
                s.id,
                s.public_key().map(|k| format!(" ({k})")).unwrap_or_default()
            ));
        }
    }
    out
}

/// A subscription whose URL is a known chat platform's webhook but whose
/// `format` is not that platform's: the platform would reject every delivery.
fn format_warnings(config: &Config) -> Vec<String> {
    distinct(config)
        .into_iter()
        .map(|(_, s)| s)
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
    print_table(&mut out, &config.subscriptions)?;
    let public_keys: Vec<(&str, String)> = distinct(config)
        .into_iter()
        .filter_map(|(_, s)| Some((s.id.as_str(), s.public_key()?)))
        .collect();
    if !public_keys.is_empty() {
        writeln!(out, "public keys (receivers verify v1a with these):")?;
        for (id, key) in public_keys {
            writeln!(out, "  {id}: {key}")?;
        }
    }
    print_alert_rules(&mut out, config)?;
    if !config.specs.is_empty() {
        writeln!(out, "per-SPEC overrides ({}):", config.specs.len())?;
        for scope in &config.specs {
            writeln!(
                out,
                "  {}: {}",
                scope.pattern,
                describe_scope(config, scope)
            )?;
        }
        writeln!(
            out,
            "  (`spec-notify check --spec SPEC-ID` shows the subscriptions in effect for one SPEC)"
        )?;
    }
    Ok(())
}

/// The alert rules: what each watches and where its alerts go.
fn print_alert_rules(out: &mut impl Write, config: &Config) -> Result<()> {
    if config.alerts.is_empty() {
        return Ok(());
    }
    writeln!(out, "alert rules ({}):", config.alerts.len())?;
    let rows: Vec<Vec<String>> = config.alerts.iter().map(rule_row).collect();
    output::table(
        out,
        &[
            "  ID",
            "ON",
            "SUBSCRIPTIONS",
            "TO",
            "COMMAND",
            "REPEAT",
            "RESOLVED",
        ],
        &rows,
    )?;
    Ok(())
}

fn rule_row(rule: &config::AlertRule) -> Vec<String> {
    let on: Vec<&str> = rule.on.iter().map(|c| c.name()).collect();
    let subs = match rule.subscriptions.is_empty() {
        true => "all".to_string(),
        false => rule.subscriptions.join(","),
    };
    vec![
        format!("  {}", rule.id),
        on.join(","),
        subs,
        rule.to.clone().unwrap_or_else(|| "-".into()),
        rule.command.first().cloned().unwrap_or_else(|| "-".into()),
        duration_text(rule.repeat_interval_ms),
        if rule.send_resolved { "yes" } else { "no" }.into(),
    ]
}

fn duration_text(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

fn rule_json(rule: &config::AlertRule) -> Value {
    json!({
        "id": rule.id,
        "on": rule.on.iter().map(|c| c.name()).collect::<Vec<_>>(),
        "subscriptions": rule.subscriptions,
        "backlog_age": duration_text(rule.backlog_age_ms),
        "to": rule.to,
        "command": rule.command,
        "command_timeout": duration_text(rule.command_timeout_ms),
        "repeat_interval": duration_text(rule.repeat_interval_ms),
        "send_resolved": rule.send_resolved,
    })
}

/// What a scope changes: `chatops-slack (changed: url_env), audit (off), team (added)`.
fn describe_scope(config: &Config, scope: &config::Scope) -> String {
    let parts: Vec<String> = scope
        .subscriptions
        .iter()
        .filter(|s| s.overrides.contains(&scope.pattern))
        .map(|s| match config.subscription(&s.id) {
            None => format!("{} (added)", s.id),
            Some(global) if global.active && !s.active => format!("{} (off)", s.id),
            Some(_) => format!("{} (changed by {})", s.id, s.overrides.join(" < ")),
        })
        .collect();
    if parts.is_empty() {
        "no change".into()
    } else {
        parts.join(", ")
    }
}

/// Where a subscription in effect comes from: `global`, `global < SPEC-KIT-*`,
/// `SPEC-KIT-065 only`.
fn source(config: &Config, sub: &Subscription) -> String {
    match (
        config.subscription(&sub.id).is_some(),
        sub.overrides.as_slice(),
    ) {
        (true, []) => "global".into(),
        (true, layers) => format!("global < {}", layers.join(" < ")),
        (false, layers) => format!("{} only", layers.join(" < ")),
    }
}

fn print_table(out: &mut impl Write, subs: &[Subscription]) -> Result<()> {
    let rows: Vec<Vec<String>> = subs.iter().map(row).collect();
    if !rows.is_empty() {
        output::table(
            out,
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

fn mode(s: &Subscription) -> &'static str {
    match (s.active, s.dry_run) {
        (false, _) => "inactive",
        (true, true) => "dry-run",
        (true, false) => "active",
    }
}

fn row(s: &Subscription) -> Vec<String> {
    let state = |var: &str, set: bool| match (set, s.needs_secret()) {
        (true, _) => format!("{var} (set)"),
        (false, true) => format!("{var} (UNSET)"),
        (false, false) => format!("{var} (unused)"),
    };
    let mut secrets = Vec::new();
    if let Some(var) = &s.secret_env {
        secrets.push(state(var, s.secret().is_ok()));
    }
    if let Some(var) = &s.signing_key_env {
        let set = config::secret_from_env(var).is_some();
        secrets.push(format!("key {}", state(var, set)));
    }
    let secret = match secrets.is_empty() {
        true => "-".to_string(),
        false => secrets.join(", "),
    };
    vec![
        format!("  {}", s.id),
        mode(s).into(),
        s.style.format.as_str().into(),
        signature_name(s),
        s.shown_url(),
        secret,
        describe_filters(s),
    ]
}

/// The scheme, and for Standard Webhooks which signatures it sends.
fn signature_name(s: &Subscription) -> String {
    let name = s.signature.as_str();
    match (s.signing_key_env.is_some(), s.secret_env.is_some()) {
        (true, true) => format!("{name} (v1+v1a)"),
        (true, false) => format!("{name} (v1a)"),
        (false, _) => name.into(),
    }
}

/// `check --spec`: which table decides, then the subscriptions in effect.
fn print_spec(config: &Config, spec: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "config:   {}", config.path.display())?;
    let decided = match config.scope_for(spec) {
        Some(scope) => format!(
            "[spec_ops.webhooks.specs.\"{}\"] (and any less specific pattern it inherits)",
            scope.pattern
        ),
        None => "no override matches: the global subscriptions".into(),
    };
    writeln!(out, "SPEC:     {spec}, decided by {decided}")?;
    let subs = config.subscriptions_for(spec);
    writeln!(out, "subscriptions in effect ({}):", subs.len())?;
    let rows: Vec<Vec<String>> = subs
        .iter()
        .map(|s| {
            let mut r = row(s);
            r.push(source(config, s));
            r
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
                "FROM",
            ],
            &rows,
        )?;
    }
    if !config.enabled {
        writeln!(out, "(webhooks are disabled: {})", config.enabled_source)?;
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

fn sub_json(s: &Subscription) -> Value {
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
        "signing_key_env": s.signing_key_env,
        "signing_key_set": s.signing_key_env.as_deref().and_then(config::secret_from_env).is_some(),
        "public_key": s.public_key(),
        "include_events": s.include_events,
        "include_stages": s.include_stages.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
        "include_status": s.include_status.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
        "max_attempts": s.retry.max_attempts,
        "initial_backoff_ms": s.retry.initial_backoff_ms,
        "backoff_factor": s.retry.backoff_factor,
        "jitter_ms": s.retry.jitter_ms,
        "per_request_timeout_ms": s.retry.per_request_timeout_ms,
        "allow_private_networks": s.allow_private_networks,
        "overrides": s.overrides,
    })
}

fn summary_json(config: &Config) -> Value {
    let subs: Vec<Value> = config.subscriptions.iter().map(sub_json).collect();
    let specs: Vec<Value> = config
        .specs
        .iter()
        .map(|scope| {
            json!({
                "pattern": scope.pattern,
                "subscriptions": scope.subscriptions.iter().map(sub_json).collect::<Vec<_>>(),
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
        "specs": specs,
        "alerts": config.alerts.iter().map(rule_json).collect::<Vec<_>>(),
    })
}

fn spec_json(config: &Config, spec: &str) -> Value {
    let subs: Vec<Value> = config
        .subscriptions_for(spec)
        .iter()
        .map(|s| {
            let mut v = sub_json(s);
            v["from"] = json!(source(config, s));
            v
        })
        .collect();
    json!({
        "config": config.path,
        "enabled": config.enabled,
        "valid": true,
        "spec": spec,
        "pattern": config.scope_for(spec).map(|s| s.pattern.as_str()),
        "subscriptions": subs,
    })
}

/// One subscription's probe.
struct Probe {
    id: String,
    /// The `specs` pattern it is in effect under, for an override.
    scope: Option<String>,
    url: String,
    result: ProbeResult,
}

enum ProbeResult {
    /// Something answered: status and milliseconds.
    Answered(u16, u128),
    /// The server answered that nothing is there: 404 or 410, and milliseconds.
    Missing(u16, u128),
    Failed(String),
    Skipped(String),
}

impl Probe {
    fn json(&self) -> Value {
        let (state, status, detail) = match &self.result {
            ProbeResult::Answered(status, ms) => ("reachable", Some(*status), format!("{ms} ms")),
            ProbeResult::Missing(status, ms) => ("missing", Some(*status), format!("{ms} ms")),
            ProbeResult::Failed(e) => ("unreachable", None, e.clone()),
            ProbeResult::Skipped(why) => ("skipped", None, why.clone()),
        };
        json!({"id": self.id, "spec": self.scope, "url": self.url, "result": state, "status": status, "detail": detail})
    }
}

/// Probes every URL once, all at the same time (a dead endpoint costs its
/// 3 s timeout once, not once per subscription behind it).
fn probe_all(config: &Config) -> Vec<Probe> {
    let subs = distinct(config);
    std::thread::scope(|scope| {
        let handles: Vec<_> = subs
            .iter()
            .map(|(pattern, sub)| {
                scope.spawn(move || Probe {
                    id: sub.id.clone(),
                    scope: pattern.map(String::from),
                    url: sub.shown_url(),
                    result: probe_one(sub),
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    })
}

fn probe_one(sub: &Subscription) -> ProbeResult {
    if !sub.active {
        return ProbeResult::Skipped("inactive".into());
    }
    if sub.url.is_empty() {
        let var = sub.url_env.as_deref().unwrap_or("url_env");
        return ProbeResult::Skipped(format!("URL unset ({var})"));
    }
    let agent = deliver::agent_for(sub, 1);
    match deliver::probe(&agent, &sub.url, PROBE_TIMEOUT) {
        (
            Answer::Response {
                status: status @ (404 | 410),
                ..
            },
            took,
        ) => ProbeResult::Missing(status, took.as_millis()),
        (Answer::Response { status, .. }, took) => ProbeResult::Answered(status, took.as_millis()),
        (answer, _) => ProbeResult::Failed(answer.describe()),
    }
}

fn print_probes(probes: &[Probe]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "probes (HEAD, no body, no secret, {} s timeout):",
        PROBE_TIMEOUT.as_secs()
    )?;
    let rows: Vec<Vec<String>> = probes
        .iter()
        .map(|p| {
            let id = match &p.scope {
                Some(pattern) => format!("  {} [{pattern}]", p.id),
                None => format!("  {}", p.id),
            };
            let result = match &p.result {
                ProbeResult::Answered(status, ms) => format!("reachable: HTTP {status} in {ms} ms"),
                ProbeResult::Missing(404, ms) => format!(
                    "NOT FOUND: HTTP 404 in {ms} ms — no endpoint at this URL (check the path; \
                     one that routes only POST may answer HEAD so: try `spec-notify test`)"
                ),
                ProbeResult::Missing(status, ms) => {
                    format!("GONE: HTTP {status} in {ms} ms — the endpoint says it was removed")
                }
                ProbeResult::Failed(e) => format!("UNREACHABLE: {}", output::one_line(e)),
                ProbeResult::Skipped(why) => format!("not probed: {why}"),
            };
            vec![id, p.url.clone(), result]
        })
        .collect();
    output::table(&mut out, &["  ID", "URL", "RESULT"], &rows)?;
    Ok(())
}
