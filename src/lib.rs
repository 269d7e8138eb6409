//! spec-notify: durable, signed webhook notifications for spec-kit pipelines.
//!
//! `emit` writes jobs into the [`spool`]; `drain` claims them and [`deliver`]s
//! them over HTTP, signed by [`sign`], logging each attempt to [`evidence`].
//! [`config`] owns settings, [`url`] what a webhook URL may be and how it is
//! shown, [`trace`] the W3C trace context carried from emit to each attempt, [`redact`] the credentials no receiver may echo into the evidence,
//! [`envelope`] the payload, [`input`] reading it with bounds, [`cmd`] the
//! commands. [`health`] turns the spool and the attempt logs into delivery
//! health, which `status`, [`report`] (HTML) and [`metrics`] (Prometheus)
//! show, [`tui`] the live view of `top`, and [`alerts`] turns into
//! notifications to operators. [`files`] is the careful file access they all
//! build on: atomic writes, bounded reads, bounded lock waits.

pub mod address;
pub mod alerts;
pub mod circuit;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod deliver;
pub mod drain;
pub mod envelope;
pub mod evidence;
pub mod exit;
pub mod files;
pub mod format;
pub mod health;
pub mod http_server;
pub mod input;
pub mod kick;
pub mod metrics;
#[cfg(feature = "nats")]
pub mod nats;
pub mod output;
pub mod publish;
pub mod redact;
pub mod report;
pub mod retry;
pub mod sign;
pub mod spool;
pub mod store;
pub mod trace;
pub mod tui;
pub mod url;
pub mod verifier;
