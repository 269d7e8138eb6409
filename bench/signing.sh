#!/usr/bin/env bash
# What ed25519 signatures and trace context cost a drain (issue 21): the same
# JOBS spooled jobs drained to a local nginx answering 204 at concurrency C,
# once per variant, alternating ROUNDS times, medians reported side by side:
#   hmac         signature = "speckit" (HMAC-SHA256): the baseline
#   v1           standard-webhooks with a whsec_ secret (HMAC)
#   v1a          standard-webhooks with a whsk_ signing key (ed25519)
#   v1a+trace    the same, every envelope emitted under a TRACEPARENT, so
#                each attempt also parses the trace and sends traceparent
# Each run reports deliveries/s (wall clock) and the drain's CPU time per
# delivery (user + system, from /usr/bin/time): on a machine shared with
# other work the CPU time is the steadier of the two.
# Usage: bench/signing.sh [JOBS]   (C=4 ROUNDS=3 by default; SPOOL_FS=/dev/shm
# for CPU only). Results in bench/out/signing/results.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${1:-5000}
C=${C:-4}
ROUNDS=${ROUNDS:-3}
if ! command -v nginx >/dev/null; then
  echo "installing nginx-light (Debian)..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
fi
cargo build --release -q
BIN=$PWD/target/release/spec-notify
OUT=$PWD/bench/out/signing
rm -rf "$OUT" && mkdir -p "$OUT/tmp"
source bench/nginx.sh
start_nginx "$OUT"
WS_ROOT=${SPOOL_FS:-$OUT}/spec-notify-bench-signing
trap 'kill $NGINX_PID 2>/dev/null || true; rm -rf "$WS_ROOT"' EXIT

export BENCH_SECRET=whsec_YmVuY2gtc2VjcmV0LW5vdC1yZWFsLTAxMjM0NTY3
BENCH_KEY=$("$BIN" keys generate --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret_key"])')
export BENCH_KEY
now() { date +%s.%N; }

# One workspace per run: spool JOBS jobs for variant $1, time one drain.
drain_rate() {
  local variant=$1 ws keys trace=""
  mkdir -p "$WS_ROOT"
  ws=$(mktemp -d "$WS_ROOT/ws-XXXX")
  case $variant in
    hmac) keys='secret_env = "BENCH_SECRET"' ;;
    v1) keys=$'signature = "standard-webhooks"\nsecret_env = "BENCH_SECRET"' ;;
    v1a|v1a+trace) keys=$'signature = "standard-webhooks"\nsigning_key_env = "BENCH_KEY"' ;;
  esac
  [ "$variant" = v1a+trace ] && trace=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
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
max_in_flight = $C
$keys
TOML
  python3 -c "
import json
for i in range($JOBS):
    print(json.dumps({'event': {'type': 'spec-auto.stage.completed', 'stage': 'Plan', 'status': 'success'}, 'spec': {'id': 'SPEC-BENCH'}, 'pipeline': {'attempt': 1}}))
" | TRACEPARENT=$trace "$BIN" --config "$ws/config.toml" emit --input - > /dev/null
  sync
  local t0 t1
  t0=$(now)
  /usr/bin/time -f "%U %S" -o "$ws/cpu" "$BIN" --config "$ws/config.toml" drain --once 2> "$ws/drain.err"
  t1=$(now)
  grep -q "delivered $JOBS," "$ws/drain.err" || { echo "$variant: not every job delivered:" >&2; cat "$ws/drain.err" >&2; exit 1; }
  python3 -c "
u, s = map(float, open('$ws/cpu').read().split()[-2:])
print(f'{$JOBS/($t1-$t0):.0f}:{1e6*(u+s)/$JOBS:.1f}')"
  rm -rf "$ws"
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

VARIANTS=(hmac v1 v1a v1a+trace)
declare -A RATES CPUS
for round in $(seq "$ROUNDS"); do
  for v in "${VARIANTS[@]}"; do
    echo "round $round: $v ($JOBS jobs, concurrency $C)..." >&2
    r=$(drain_rate "$v")
    RATES[$v]="${RATES[$v]:-} ${r%%:*}"
    CPUS[$v]="${CPUS[$v]:-} ${r##*:}"
  done
done
BASE_RATE=$(median ${RATES[hmac]})
BASE_CPU=$(median ${CPUS[hmac]})
{
  echo "drain of $JOBS jobs at concurrency $C, median of $ROUNDS alternating rounds:"
  for v in "${VARIANTS[@]}"; do
    R=$(median ${RATES[$v]})
    U=$(median ${CPUS[$v]})
    python3 -c "print(f'  {\"$v\":<10} {$R:>6} deliveries/s ({$R/$BASE_RATE:.2f}x)   {$U:>6.1f} us CPU/delivery ({$U/$BASE_CPU:.2f}x)   runs/s:${RATES[$v]}  us:${CPUS[$v]}')"
  done
} | tee "$OUT/results.txt"
