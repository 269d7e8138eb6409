#!/usr/bin/env bash
# Emit -> first-attempt latency with auto_drain and with `drain --watch`, and
# emit's own cost with auto_drain on vs off (issue 6). Usage: bench/latency.sh [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
mkdir -p bench/out/latency
python3 bench/latency.py "$PWD/target/release/spec-notify" "$PWD/bench/out/latency" "${1:-200}"
