//! End-to-end tests: the real binary, real temp folders, real loopback HTTP.
//! One test binary with a module per area keeps link time down.

mod support;

mod alerts;
mod clock;
mod completions;
mod config;
mod demo;
mod discard;
mod drain;
mod emit;
mod emit_batch;
mod evidence;
mod evidence_files;
mod fifo;
mod fleet;
mod fleet_faults;
mod fleet_fifo;
mod formats;
mod handover;
mod hardening;
mod history;
mod hostile;
mod isolation;
mod list;
mod many_specs;
mod metrics;
mod nats;
mod overrides;
mod pause;
mod per_call;
mod realtime;
mod receive;
mod receiver;
mod replay;
mod report;
mod signing;
mod spool_trust;
mod status;
mod subscriptions;
mod test_cmd;
mod trace;
mod tui;
mod verifiers;
mod verify;
