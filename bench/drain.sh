#!/usr/bin/env bash
# Drain throughput (issue 3): 10,000 spooled jobs delivered to a local nginx
# answering 204, at concurrency 1 and 4, beside two baselines measured in the
# same run against the same receiver:
#   - what users do today: a bash loop of curl + `openssl dgst -sha256 -hmac`
#   - the loopback ceiling: wrk at the same concurrency
# Usage: bench/drain.sh [JOBS]    (results also in bench/out/drain/results.txt)
#   BASELINE=/path/to/older/spec-notify bench/drain.sh
#     also drains with that binary, alternating with this one ROUNDS times
#     (default 3) per concurrency, and reports both medians and their ratio.
#   SPOOL_FS=/dev/shm bench/drain.sh   puts the spools there (tmpfs: CPU only).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${1:-10000}
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  echo "installing nginx-light and wrk (Debian)..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null
fi
cargo build --release -q
BIN=$PWD/target/release/spec-notify
OUT=$PWD/bench/out/drain
rm -rf "$OUT" && mkdir -p "$OUT/tmp"
source bench/nginx.sh
start_nginx "$OUT"
trap 'kill $NGINX_PID 2>/dev/null || true; rm -rf "${SPOOL_FS:-$OUT}/spec-notify-bench-drain"' EXIT

export BENCH_SECRET=bench-secret-not-real
now() { date +%s.%N; }
rate() { python3 -c "import sys; print(f'{$1/($3-$2):.0f}')"; }

# One workspace per run: spool the jobs, then time one drain run by $2
# (default: this build); the workspace is removed unless $3 is "keep".
WS_ROOT=${SPOOL_FS:-$OUT}/spec-notify-bench-drain
drain_rate() {
  local c=$1 bin=${2:-$BIN} ws
  mkdir -p "$WS_ROOT"
  ws=$(mktemp -d "$WS_ROOT/ws-c$c-XXXX")
  cat > "$ws/config.toml" <<TOML
[spec_ops.webhooks]
enabled = true
auto_drain = false
max_concurrency = $c
max_spool_jobs = 1000000
max_evidence_bytes = 1073741824
[[spec_ops.webhooks.subscriptions]]
id = "nginx"
url = "$URL"
secret_env = "BENCH_SECRET"
TOML
  python3 -c "
import json
for i in range($JOBS):
    print(json.dumps({'event': {'type': 'spec-auto.stage.completed', 'stage': 'Plan', 'status': 'success'}, 'spec': {'id': 'SPEC-BENCH'}, 'pipeline': {'attempt': 1}}))
" | "$BIN" --config "$ws/config.toml" emit --input - > /dev/null
  sync
  local t0 t1
  t0=$(now)
  "$bin" --config "$ws/config.toml" drain --once 2> "$ws/drain.err"
  t1=$(now)
  grep -q "delivered $JOBS," "$ws/drain.err" || { echo "drain at c=$c did not deliver all jobs:" >&2; cat "$ws/drain.err" >&2; exit 1; }
  rate "$JOBS" "$t0" "$t1"
  [ "${3:-}" = keep ] && echo "$ws" > "$WS_ROOT/kept" || rm -rf "$ws"
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# This binary and the baseline, alternating, ROUNDS times: "new-median old-median".
ab_rate() {
  local c=$1 news=() olds=()
  for _ in $(seq "${ROUNDS:-3}"); do
    olds+=("$(drain_rate "$c" "$BASELINE")")
    news+=("$(drain_rate "$c")")
  done
  echo "$(median "${news[@]}") $(median "${olds[@]}") (runs: new ${news[*]}; baseline ${olds[*]})"
}

# The same envelope bytes spec-notify sends, signed and posted by curl (BODY is set below).
curl_rate() {
  local n=200 t0 t1 sig
  t0=$(now)
  for i in $(seq $n); do
    sig=$(printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$BENCH_SECRET" | sed 's/^.* //')
    curl -s -o /dev/null -X POST -H "Content-Type: application/json" -H "X-SpecKit-Signature: sha256=$sig" --data-binary "$BODY" "$URL"
  done
  t1=$(now)
  rate $n "$t0" "$t1"
}

wrk_rate() {
  local c=$1
  printf 'wrk.method = "POST"\nwrk.body = [==[%s]==]\nwrk.headers["Content-Type"] = "application/json"\n' "$BODY" > "$OUT/post.lua"
  wrk -t "$c" -c "$c" -d 5s -s "$OUT/post.lua" "$URL" | awk '/Requests\/sec/ {printf "%.0f\n", $2}'
}

echo "spool + drain $JOBS jobs at concurrency 1..." >&2
D1=$(drain_rate 1 "$BIN" keep)
BODY=$(sed -n 2p "$(find "$(cat "$WS_ROOT/kept")" -path '*delivered/*.job' | head -1)")
rm -rf "$WS_ROOT"
echo "spool + drain $JOBS jobs at concurrency 4..." >&2
D4=$(drain_rate 4)
if [ -n "${BASELINE:-}" ]; then
  echo "this binary vs $BASELINE, alternating, ${ROUNDS:-3} rounds..." >&2
  AB1=$(ab_rate 1)
  AB4=$(ab_rate 4)
fi
echo "baseline: 200 x (openssl + curl)..." >&2
C=$(curl_rate)
echo "ceiling: wrk at concurrency 1 and 4..." >&2
W1=$(wrk_rate 1)
W4=$(wrk_rate 4)

{
  echo "spec-notify drain, concurrency 1: $D1 deliveries/s"
  echo "spec-notify drain, concurrency 4: $D4 deliveries/s"
  echo "baseline bash loop curl+openssl:  $C deliveries/s"
  echo "loopback ceiling wrk, c=1:        $W1 requests/s"
  echo "loopback ceiling wrk, c=4:        $W4 requests/s"
  python3 -c "print(f'ratio vs curl loop: c=1 {$D1/$C:.0f}x, c=4 {$D4/$C:.0f}x (target >= 50x)')"
  python3 -c "print(f'share of wrk ceiling: c=1 {100*$D1/$W1:.0f}%, c=4 {100*$D4/$W4:.0f}% (target >= 30%)')"
  if [ -n "${BASELINE:-}" ]; then
    for pair in "1 $AB1" "4 $AB4"; do
      set -- $pair
      python3 -c "print(f'vs baseline, c=$1: {$2:.0f} vs {$3:.0f} deliveries/s, median of ${ROUNDS:-3} = {$2/$3:.2f}x')"
      shift 3; echo "  $*"
    done
  fi
} | tee "$OUT/results.txt"
