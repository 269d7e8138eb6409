//! Settings: finds `config.toml` (here or in a parent folder), reads `[spec_ops.webhooks]` from it and
//! resolves what the file says into [`Config`]: defaults, paths relative to
//! the file, the environment overrides, and validation of every value,
//! reporting every problem at once with the subscription, the key and the
//! fix. This is the only module that reads environment variables (config
//! path, enable switch, secrets, `url_env` URLs, `env:` header values).
//!
//! Each file owns one step; the arrows point one way, from reading the file
//! down to the types:
//!
//! - `load`: where the file is, reading it, the enable switch and the
//!   secrets check over it ([`load`], [`load_with`], [`parse`], [`locate`]).
//! - `resolve`: the `[spec_ops.webhooks]` table into a [`Config`]: defaults,
//!   paths, global limits, the subscriptions, then the per-SPEC overrides.
//! - `specs`: per-SPEC overrides merged into [`Scope`]s, and which scope
//!   decides a SPEC ([`Config::subscriptions_for`]).
//! - `per_call`: an `emit --url` target as a subscription ([`Config::per_call`]).
//! - `subscription`: one subscription table into a [`Subscription`], every
//!   value checked.
//! - `raw`: the TOML side: each key read as the type it must have, unknown
//!   keys named; `relay`: the `[spec_ops.webhooks.relay]` table ([`Relay`]);
//!   `alerts`: the `[[spec_ops.webhooks.alerts]]` rules ([`AlertRule`]).
//! - `problems`: every problem found, grouped by place and reported at once,
//!   and the checks of single values.
//! - `model`: the resolved types and the defaults, and what they answer at
//!   send time: filters, secrets, header values, URLs as shown.
//! - [`edit`]: changes the file in place for `spec-notify subscriptions`.

mod alerts;
pub mod edit;
mod load;
mod model;
mod per_call;
mod problems;
mod raw;
mod relay;
mod resolve;
mod specs;
mod subscription;

pub use alerts::{
    ALERTS_SPEC, AlertRule, Condition, FIRING_EVENT, RESOLVED_EVENT, glob,
    warnings as alert_warnings,
};
pub use load::{
    CONFIG_ENV, Chosen, DEFAULT_CONFIG, ENABLED_ENV, HOW_TO_POINT, Location, Search, Secrets,
    defaults, load, load_required, load_with, locate, parse,
};
pub use model::{
    Config, DEFAULT_EVIDENCE_DIR, DEFAULT_MAX_EVENT_BYTES, DEFAULT_SPOOL_DIR, ExtraHeader,
    HeaderValue, MAX_EVENT_BYTES_LIMIT, OnDead, Ordering, Rate, RetryPolicy, Scope, Subscription,
    adhoc_id, event_pattern_matches, is_adhoc_id, secret_from_env, shown_per_call_url,
};
pub use relay::{Relay, WITHOUT_NATS};
pub use subscription::{MAX_SUBSCRIPTION_ID, RESERVED_HEADERS, check_subscription_id};
