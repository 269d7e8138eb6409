//! End-to-end tests: the real binary, real temp folders, real loopback HTTP.
//! One test binary with a module per area keeps link time down.

mod support;

mod config;
mod emit;
