#!/usr/bin/env bash
# Scale-out on NATS JetStream vs the local drain in the same run (issue 15):
# events/s (JOBS spooled, then drained locally / relayed to 2 workers) and
# emit -> first attempt p50/p95 (PACED events, auto_drain on). See bench/nats.py.
# Usage: bench/nats.sh [JOBS] [PACED]    (results also in bench/out/nats/results.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null; }
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || bash tests/nats/install.sh
NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)
export PATH="$PATH:/usr/sbin"
cargo build --release -q
python3 bench/nats.py "$PWD/target/release/spec-notify" "$NATS_SERVER" "$PWD/bench/out/nats" "${1:-10000}" "${2:-200}"
