//! NATS JetStream as a queue backend, with the official `async-nats`
//! client: the fleet of `drain --source nats` workers, fed by `relay` on
//! every emitting host. This module owns the only async code in the
//! program; everything outside it stays synchronous.
//!
//! - [`client`]: [`Nats`], one connection with a blocking API over a
//!   current-thread runtime; the server's version checked at connect.
//! - [`layout`]: the streams, consumers, subjects and bucket, by name, and
//!   their set-up (safe from many workers at once, settings checked).
//! - [`lanes`]: a worker's pull side, a consumer per subscription pulled
//!   only while that subscription may send.
//! - [`circuits`]: the fleet's breaker and pause states, watched.
//! - [`queue`]: [`queue::NatsQueue`], the drain engine's queue: settling
//!   off the critical path, retries as message schedules.
//! - [`fifo`]: FIFO lanes (`ordering = "fifo"`): a lease per lane in a
//!   bucket, the head read and deleted by sequence, one job at a time.
//! - [`server_time`]: the server's clock, for the times written on
//!   message schedules.
//! - [`relay`]: moves a host's pending jobs into the jobs stream, many
//!   publishes in flight at once.
//! - [`view`], [`dead`], [`health`], [`store`]: what the operator commands
//!   read and do, through `crate::store::Store`.
//! - [`alerts`]: the fleet's alert state (a bucket of its own) and alert
//!   jobs published to their lanes.

pub mod alerts;
pub mod circuits;
pub mod client;
pub mod dead;
pub mod fifo;
pub mod health;
pub mod lanes;
pub mod layout;
pub mod queue;
pub mod relay;
pub mod server_time;
pub mod store;
pub mod view;

pub use client::Nats;
