#!/usr/bin/env bash
# Healthy-endpoint first-attempt latency p50/p95/p99 with and without a
# blackholed sibling subscription, in the same run, under `drain --watch` and
# auto_drain; and the requests that reached the blackhole (issue 10).
# Usage: bench/isolation.sh [EVENTS]    (results also in bench/out/isolation/results.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
mkdir -p bench/out/isolation
python3 bench/isolation.py "$PWD/target/release/spec-notify" "$PWD/bench/out/isolation" "${1:-200}"
