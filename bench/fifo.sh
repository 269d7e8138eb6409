#!/usr/bin/env bash
# FIFO delivery (issue 21): what `ordering = "fifo"` costs. 10 SPECs x 1,000
# jobs each, one drain at concurrency 4, to a local nginx answering 204:
# `ordering = "fifo"` against `"none"`, alternating ROUNDS times in the same
# run, beside the loopback ceiling (wrk at the same concurrency).
# Target: FIFO across 10 lines keeps >= 0.5x of the unordered rate.
# Usage: bench/fifo.sh        (results also in bench/out/fifo/results.txt)
#   SPECS=10 JOBS=1000 CONCURRENCY=4 ROUNDS=3   the sizes (defaults shown)
#   SPOOL_FS=/dev/shm   puts the spools there (tmpfs: CPU only)
set -euo pipefail
cd "$(dirname "$0")/.."
SPECS=${SPECS:-10}
JOBS=${JOBS:-1000}
C=${CONCURRENCY:-4}
ROUNDS=${ROUNDS:-3}
TOTAL=$((SPECS * JOBS))
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  echo "installing nginx-light and wrk (Debian)..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null
fi
cargo build --release -q
BIN=$PWD/target/release/spec-notify
OUT=$PWD/bench/out/fifo
rm -rf "$OUT" && mkdir -p "$OUT/tmp"
source bench/nginx.sh
start_nginx "$OUT"
WS_ROOT=${SPOOL_FS:-$OUT}/spec-notify-bench-fifo
trap 'kill $NGINX_PID 2>/dev/null || true; rm -rf "$WS_ROOT"' EXIT
export BENCH_SECRET=bench-secret-not-real
now() { date +%s.%N; }

# Spools SPECS x JOBS jobs with ordering $1, times one drain: deliveries/s.
drain_rate() {
  local ordering=$1 ws t0 t1
  mkdir -p "$WS_ROOT"
  ws=$(mktemp -d "$WS_ROOT/ws-$ordering-XXXX")
  cat > "$ws/config.toml" <<TOML
[spec_ops.webhooks]
enabled = true
auto_drain = false
max_concurrency = $C
max_spool_jobs = 1000000
max_evidence_bytes = 1073741824
[[spec_ops.webhooks.subscriptions]]
id = "nginx"
url = "$URL"
secret_env = "BENCH_SECRET"
ordering = "$ordering"
TOML
  python3 -c "
import json
for i in range($JOBS):
    for s in range($SPECS):
        print(json.dumps({'event': {'type': 'spec-auto.stage.completed', 'stage': 'Plan', 'status': 'success'}, 'spec': {'id': f'SPEC-{s}'}}))
" | "$BIN" --config "$ws/config.toml" emit --input - > /dev/null
  sync
  t0=$(now)
  "$BIN" --config "$ws/config.toml" drain --once 2> "$ws/drain.err"
  t1=$(now)
  grep -q "delivered $TOTAL," "$ws/drain.err" || { echo "the $ordering drain did not deliver all jobs:" >&2; cat "$ws/drain.err" >&2; exit 1; }
  python3 -c "print(f'{$TOTAL/($t1-$t0):.0f}')"
  rm -rf "$ws"
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

NONE=(); FIFO=()
for round in $(seq "$ROUNDS"); do
  echo "round $round of $ROUNDS: $SPECS SPECs x $JOBS jobs, none then fifo..." >&2
  NONE+=("$(drain_rate none)")
  FIFO+=("$(drain_rate fifo)")
done
printf 'wrk.method = "POST"\nwrk.body = "{}"\nwrk.headers["Content-Type"] = "application/json"\n' > "$OUT/post.lua"
W=$(wrk -t "$C" -c "$C" -d 5s -s "$OUT/post.lua" "$URL" | awk '/Requests\/sec/ {printf "%.0f\n", $2}')
N=$(median "${NONE[@]}"); F=$(median "${FIFO[@]}")
{
  echo "$SPECS SPECs x $JOBS jobs, concurrency $C, median of $ROUNDS alternating rounds"
  echo "ordering = \"none\": $N deliveries/s (runs: ${NONE[*]})"
  echo "ordering = \"fifo\": $F deliveries/s (runs: ${FIFO[*]})"
  echo "loopback ceiling wrk, c=$C: $W requests/s"
  python3 -c "print(f'fifo / none: {$F/$N:.2f}x (target >= 0.5x)')"
} | tee "$OUT/results.txt"
