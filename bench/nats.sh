#!/usr/bin/env bash
# Scale-out on NATS JetStream vs the local drain and JetStream itself, in the
# same run: events/s (JOBS spooled, then drained locally / relayed alone /
# relayed to 1, 2 and 4 workers; JetStream's own pull+ack rate with the same
# client as the ceiling), an idle worker's API requests/s, and emit -> first
# attempt p50/p95 (PACED events). See bench/nats.py.
# Usage: bench/nats.sh [JOBS] [PACED]    (results also in bench/out/nats/results.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null; }
bash tests/nats/install.sh
NATS_SERVER=$(command -v nats-server)
export PATH="$PATH:/usr/sbin"
cargo build --release -q --features nats
cargo build --release -q --features nats --example jetstream
python3 bench/nats.py "$PWD/target/release/spec-notify" "$NATS_SERVER" "$PWD/bench/out/nats" \
    "$PWD/target/release/examples/jetstream" "${1:-10000}" "${2:-200}"
