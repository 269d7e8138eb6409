//! # Alerts: operators hear about trouble without watching
//!
//! A rule (`[[spec_ops.webhooks.alerts]]`, read by `crate::config`) watches
//! conditions of subscriptions — dead-letters, an open circuit, a pause,
//! expired jobs, quarantined files, an unset secret, a backlog older than
//! `backlog_age` — and sends an alert, an event of its own
//! (`spec-notify.alert.firing`, `spec-notify.alert.resolved`), through its
//! routes: `to`, a subscription (the alert is spooled as a job of the
//! reserved SPEC `spec-notify.alerts` and delivered like any job: format,
//! signature, retries, evidence), and/or `command`, a program run with the
//! alert on stdin.
//!
//! ## The parts
//! - [`observe`] (pure): what holds now, per rule, read from the health
//!   snapshot `status` computes, with the count, SPECs, hint and fix.
//! - [`evaluate`] (pure): `(rules, seen, previous state, now)` → the new
//!   state, notifications pushed to its outbox. Alertmanager's model: one
//!   alert per (rule, subscription, condition) while it lasts; a first
//!   notification, a repeat each `repeat_interval`, one resolution.
//! - [`state`] (pure): the shared state, its outbox and claims, and the
//!   notifications' delivery ids.
//! - [`message`]: the alert envelope and its job; [`command`]: running a
//!   rule's program with a timeout.
//! - The shell that reads and writes the state and hands notifications over
//!   is `crate::store::alerts`, through the store seam: the local spool
//!   keeps the state in `<spool_dir>/.alerts/state.json`, NATS in the
//!   bucket `<prefix>_ALERTS`.
//!
//! ## Who evaluates
//! Whichever drain runs: `drain --watch` every `--alerts-interval` (5 s)
//! from a thread beside the engine, a one-shot drain once before it exits
//! (and it delivers the alert jobs it spooled at once); `status` too, but
//! blind to unset secrets (its environment need not be the drain's: those
//! alerts neither start nor clear there).
//!
//! ## Never twice, never forgotten
//! One evaluation is three steps:
//! 1. In one atomic change of the state (under the file's lock, or one
//!    compare-and-swap of the key): decide (firing, repeats, resolutions go
//!    to the outbox), and claim every notice of the outbox nobody else is
//!    handing over (`host:pid`, with a lease).
//! 2. Outside the lock, hand each claimed notice over: spool its job (its
//!    delivery id derives from the rule, subscription, condition, the
//!    alert's start, firing or resolved, and the repeat number; the spool
//!    stores an id once, NATS de-duplicates it by message id), then run
//!    its command.
//! 3. In one more atomic change, drop what was handed over from the
//!    outbox, and release what failed for the next evaluation.
//!
//! Two evaluators at once: step 1 is serialised, so the second sees the
//! alert already firing and decides nothing, and finds the notice claimed.
//! A kill -9 after step 1 leaves a decided, claimed notice: the next
//! evaluation takes it over once the claimer is gone (same host: its pid
//! no longer runs; else: its lease ran out) and sends it. A kill -9 after
//! the job was spooled but before step 3 makes the next evaluator spool it
//! again, which the delivery id turns into nothing. A command is run at
//! least once: only a crash while it ran (or before step 3) runs it again;
//! it gets the alert id in `SPEC_NOTIFY_ALERT_ID` to tell.
//!
//! ## Never about itself
//! A rule never watches its own `to` subscription: when the alert route
//! itself is down, its failures show in `status`, the report and the
//! metrics (and another rule, routed elsewhere, may watch it), and no alert
//! about it is queued behind it.

pub mod command;
pub mod evaluate;
pub mod message;
pub mod observe;
pub mod state;

pub use evaluate::{Seen, evaluate};
pub use message::AlertJob;
pub use observe::{Lens, observe};
pub use state::{AlertState, Detail, Done, Firing, Notice, Status};
