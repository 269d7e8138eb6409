//! Reading the config: where the file is (`--config`, the
//! `SPEC_NOTIFY_CONFIG` variable, or `config.toml`), reading and resolving
//! it, and what the environment says over the file: the enable switch and,
//! when [`Secrets::Required`], whether every secret, signing key, `url_env`
//! URL and `env:` header value a delivery will read is set (and each secret
//! and key is of the form its scheme takes).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::model::{Config, Subscription, check_header_value, secret_from_env};
use super::problems::Problems;
use super::raw;
use super::relay::Relay;
use super::resolve::resolve;
use super::subscription::looks_like_key;
use crate::exit::user_error;

pub const CONFIG_ENV: &str = "SPEC_NOTIFY_CONFIG";
pub const ENABLED_ENV: &str = "SPECKIT_WEBHOOKS_ENABLED";
pub const DEFAULT_CONFIG: &str = "config.toml";

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
/// `emit` never signs, so a guardrail without secrets must still spool. A
/// host that only relays to NATS needs the relay's credentials alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    Required,
    /// Only the relay's credentials (`check` on a host that relays).
    RelayOnly,
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
    match secrets {
        Secrets::Required => check_environment(&config, &problems),
        Secrets::RelayOnly => check_relay_credentials(&config, &problems),
        Secrets::Optional => {}
    }
    problems.into_result(path)?;
    Ok(config)
}

/// What the deliveries will read from the environment, checked now: each
/// secret (and its format), `url_env` URL, `env:` header value and the
/// relay's credentials.
fn check_environment(config: &Config, problems: &Problems) {
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
        if let Some(var) = &sub.signing_key_env
            && !looks_like_key(var)
            && secret_from_env(var).is_none()
            && reported.insert((sub.id.clone(), var.clone()))
        {
            problems.push(
                at,
                format!("key `signing_key_env`: the environment variable {var} is unset or empty: export the subscription's whsk_… key in it (`spec-notify keys generate` makes a pair)"),
            );
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
    check_relay_credentials(config, problems);
    for p in config.secret_format_problems() {
        problems.push_line(p);
    }
}

/// The relay's credentials: what a host that only relays reads from its
/// environment.
fn check_relay_credentials(config: &Config, problems: &Problems) {
    if let Some(Err(line)) = config.relay.as_ref().map(Relay::credentials) {
        problems.push_line(line);
    }
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

/// Loads the config for commands that cannot work without one; a missing
/// file is an exit-2 error naming where it was looked for.
pub fn load_required(flag: Option<&Path>) -> Result<Config> {
    load(&locate(flag))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> String {
        format!(
            "{:#}",
            parse(text, Path::new("/x/config.toml")).unwrap_err()
        )
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
}
