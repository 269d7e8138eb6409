#!/usr/bin/env bash
# Many SPECs on one host (issue 23), this build beside a baseline in the
# same run:
#   1. idle: SPECS folders (one delivered job each, nothing pending):
#      `drain --watch` CPU over IDLE_SECS (target < 1% of a core), open
#      descriptors (target: a constant), RSS;
#   2. throughput: SPECS SPECs x JOBS jobs against 1 SPEC x SPECS*JOBS jobs,
#      one `drain` each, to a local nginx answering 204: deliveries/s and
#      peak RSS (target: >= 0.8x the single-SPEC rate; RSS bounded by the
#      active set, max_active_jobs);
#   3. emit of one SPECS-SPEC batch with auto_drain = true: wall time and
#      drain processes started.
# Usage: bench/many-specs.sh        (results also in bench/out/many-specs/results.txt)
#   SPECS=10000 JOBS=10 IDLE_SECS=30            the sizes (defaults shown)
#   BASELINE=/path/to/older/spec-notify         the baseline binary; by default
#       main's 4f2ab72 is built in a git worktree under /tmp
#   BASELINE_EMIT_SPECS=200                     the baseline's emit batch: it
#       starts one drain per SPEC, and 10,000 of them would stall the machine
#   SPOOL_FS=/dev/shm                           where the spools go (default:
#       bench/out; tmpfs measures CPU, not the disk)
set -euo pipefail
cd "$(dirname "$0")/.."
SPECS=${SPECS:-10000}
JOBS=${JOBS:-10}
IDLE_SECS=${IDLE_SECS:-30}
BASELINE_EMIT_SPECS=${BASELINE_EMIT_SPECS:-200}
SINGLE=$((SPECS * JOBS))
if ! command -v nginx >/dev/null || [ ! -x /usr/bin/time ]; then
  echo "installing nginx-light and time (Debian)..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light time >/dev/null
fi
cargo build --release -q
BIN=$PWD/target/release/spec-notify
if [ -z "${BASELINE:-}" ]; then
  BASE_SRC=/tmp/spec-notify-baseline-4f2ab72
  [ -d "$BASE_SRC" ] || git worktree add -q "$BASE_SRC" 4f2ab72
  echo "building the baseline (4f2ab72)..." >&2
  (cd "$BASE_SRC" && CARGO_TARGET_DIR=/tmp/spec-notify-baseline-target cargo build --release -q)
  BASELINE=/tmp/spec-notify-baseline-target/release/spec-notify
fi
OUT=$PWD/bench/out/many-specs
rm -rf "$OUT" && mkdir -p "$OUT/tmp"
WS_ROOT=${SPOOL_FS:-$OUT}/spec-notify-bench-many
rm -rf "$WS_ROOT" && mkdir -p "$WS_ROOT"
source bench/nginx.sh
start_nginx "$OUT"
WATCH_PID=
# Sends SIGTERM, by pid, to every process whose command line names
# workspace $1 (the background drains emit started there), then waits up to
# 30 s for them to exit.
stop_ws() {
  python3 - "$1" <<'PY'
import os, signal, sys, time
me = {os.getpid(), os.getppid()}
def running():
    out = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit() or int(pid) in me:
            continue
        try:
            cmd = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\0', b' ').decode()
        except OSError:
            continue
        if sys.argv[1] in cmd:
            out.append(int(pid))
    return out
for pid in running():
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        pass
deadline = time.time() + 30
while running() and time.time() < deadline:
    time.sleep(0.1)
PY
}
# Stops what runs in workspace $1, waits for it to exit, removes it.
drop_ws() {
  stop_ws "$1"
  rm -rf "$1" 2>/dev/null || rm -rf "$1" || true
}
cleanup() {
  [ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null || true
  kill "$NGINX_PID" 2>/dev/null || true
  drop_ws "$WS_ROOT"
}
trap cleanup EXIT
export BENCH_SECRET=bench-secret-not-real
now() { date +%s.%N; }

# A workspace with a config: $1 name, $2 auto_drain, $3 "dry" for a dry-run
# subscription (no network).
workspace() {
  local ws=$WS_ROOT/$1
  mkdir -p "$ws"
  local sub="url = \"$URL\""
  [ "${3:-}" = dry ] && sub="url = \"https://example.invalid/hook\"
dry_run = true"
  cat > "$ws/config.toml" <<TOML
[spec_ops.webhooks]
enabled = true
auto_drain = $2
max_spool_jobs = 1000000
max_evidence_bytes = 1073741824
[[spec_ops.webhooks.subscriptions]]
id = "hook"
$sub
secret_env = "BENCH_SECRET"
TOML
  echo "$ws"
}

# JSON lines: $1 SPECs x $2 jobs each, SPEC names prefixed $3.
lines() {
  python3 -c "
import json, sys
for s in range($1):
    for j in range($2):
        print(json.dumps({'event': {'type': 'spec-auto.stage.completed', 'stage': 'Plan', 'status': 'success'}, 'spec': {'id': '$3-%05d' % s}}))
"
}

# Spools $1 SPECs x $2 jobs into workspace $3 with this build, 1,000 SPECs
# per emit (auto_drain is off in the workspace).
spool() {
  local per=$(( $1 < 1000 ? $1 : 1000 )) done=0
  while [ "$done" -lt "$1" ]; do
    python3 -c "
import json
for s in range($done, $done + $per):
    for j in range($2):
        print(json.dumps({'event': {'type': 'spec-auto.stage.completed', 'stage': 'Plan', 'status': 'success'}, 'spec': {'id': 'SPEC-%05d' % s}}))
" | "$BIN" --config "$3/config.toml" emit --input - > /dev/null
    done=$((done + per))
  done
}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }

# 1. Idle: a watch over SPECS folders with nothing pending.
echo "idle: spooling and delivering $SPECS SPECs (dry run)..." >&2
IDLE_WS=$(workspace idle false dry)
spool "$SPECS" 1 "$IDLE_WS"
"$BIN" --config "$IDLE_WS/config.toml" drain --max-time 3600s 2> "$OUT/idle-setup.err"
idle() {
  local bin=$1 label=$2 t0 t1 c0 c1 f0 f1
  "$bin" --config "$IDLE_WS/config.toml" drain --watch 2> "$OUT/idle-$label.err" &
  WATCH_PID=$!
  sleep 10 # its first look at every folder
  f0=$(fds "$WATCH_PID" 2>/dev/null || echo gone)
  c0=$(ticks "$WATCH_PID"); t0=$(now)
  sleep "$IDLE_SECS"
  c1=$(ticks "$WATCH_PID" 2>/dev/null || echo "$c0"); t1=$(now)
  f1=$(fds "$WATCH_PID" 2>/dev/null || echo gone)
  local rss; rss=$(rss_kb "$WATCH_PID" 2>/dev/null || echo 0)
  kill "$WATCH_PID" 2>/dev/null || true; wait "$WATCH_PID" 2>/dev/null || true; WATCH_PID=
  python3 -c "print(f'$label: {100*($c1-$c0)/100/($t1-$t0):.2f}% of a core over {$t1-$t0:.0f} s, fds {\"$f0\"} then {\"$f1\"}, RSS {$rss/1024:.1f} MB')"
}
echo "idle: this build..." >&2
IDLE_NEW=$(idle "$BIN" new)
echo "idle: baseline..." >&2
IDLE_OLD=$(idle "$BASELINE" baseline)
echo "idle: $IDLE_NEW / $IDLE_OLD" >> "$OUT/progress.txt"
drop_ws "$IDLE_WS"

# 2. Throughput: many SPECs against one, same number of jobs.
drain_rate() { # $1 binary, $2 label, $3 SPECs, $4 jobs each
  local ws t0 t1 code=0
  ws=$(workspace "rate-$2-$3" false)
  spool "$3" "$4" "$ws"
  sync
  t0=$(now)
  /usr/bin/time -f "%M" -o "$OUT/rss-$2-$3" "$1" --config "$ws/config.toml" drain --max-time 3600s 2> "$OUT/rate-$2-$3.err" || code=$?
  t1=$(now)
  local total=$(( $3 * $4 ))
  grep -q "delivered $total," "$OUT/rate-$2-$3.err" || echo "  ($2, $3 SPECs: exit $code, not all delivered: $(grep -o 'delivered [0-9]*' "$OUT/rate-$2-$3.err" | tail -1))" >&2
  python3 -c "print(f'{$total/($t1-$t0):.0f} {$(tail -1 "$OUT/rss-$2-$3")/1024:.0f}')"
  drop_ws "$ws"
}
echo "throughput: this build, $SPECS SPECs x $JOBS jobs..." >&2
read -r MANY_NEW MANY_NEW_RSS < <(drain_rate "$BIN" new "$SPECS" "$JOBS")
echo "throughput: this build, 1 SPEC x $SINGLE jobs..." >&2
read -r ONE_NEW ONE_NEW_RSS < <(drain_rate "$BIN" new 1 "$SINGLE")
echo "throughput: baseline, $SPECS SPECs x $JOBS jobs..." >&2
read -r MANY_OLD MANY_OLD_RSS < <(drain_rate "$BASELINE" baseline "$SPECS" "$JOBS")
echo "throughput: baseline, 1 SPEC x $SINGLE jobs..." >&2
read -r ONE_OLD ONE_OLD_RSS < <(drain_rate "$BASELINE" baseline 1 "$SINGLE")
echo "rates: $MANY_NEW $MANY_NEW_RSS $ONE_NEW $ONE_NEW_RSS / $MANY_OLD $MANY_OLD_RSS $ONE_OLD $ONE_OLD_RSS" >> "$OUT/progress.txt"

# 3. One emit batch naming many SPECs, auto_drain on.
drains_seen() { # counts distinct drain pids of workspace $1 until file $2 exists
  python3 - "$1" "$2" <<'PY'
import os, sys, time
marker, stop = sys.argv[1], sys.argv[2]
seen = set()
while not os.path.exists(stop):
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\0', b' ').decode()
        except OSError:
            continue
        if marker in cmd and ' drain ' in cmd:
            seen.add(pid)
    time.sleep(0.005)
print(len(seen))
PY
}
emit_batch() { # $1 binary, $2 label, $3 SPECs
  local ws t0 t1 n
  ws=$(workspace "emit-$2" true dry)
  lines "$3" 1 SPEC > "$OUT/emit-$2.jsonl"
  rm -f "$OUT/stop-$2"
  drains_seen "$ws/config.toml" "$OUT/stop-$2" > "$OUT/drains-$2" &
  local sampler=$!
  sleep 0.2
  t0=$(now)
  "$1" --config "$ws/config.toml" emit --input - < "$OUT/emit-$2.jsonl" > /dev/null
  t1=$(now)
  sleep 10 # the drains it started are running by now
  touch "$OUT/stop-$2"
  wait "$sampler"
  n=$(cat "$OUT/drains-$2")
  python3 -c "print(f'{$t1-$t0:.2f} s, {$n} drain processes started')"
  drop_ws "$ws"
}
echo "emit: this build, one batch of $SPECS SPECs..." >&2
EMIT_NEW=$(emit_batch "$BIN" new "$SPECS")
echo "emit: baseline, one batch of $BASELINE_EMIT_SPECS SPECs..." >&2
EMIT_OLD=$(emit_batch "$BASELINE" baseline "$BASELINE_EMIT_SPECS")

{
  echo "many SPECs on one host ($SPECS SPECs; baseline $BASELINE)"
  echo "1. idle drain --watch over $SPECS SPEC folders, nothing pending:"
  echo "   $IDLE_NEW"
  echo "   $IDLE_OLD"
  echo "2. one drain, deliveries/s and peak RSS:"
  echo "   new:      $SPECS SPECs x $JOBS: $MANY_NEW/s, $MANY_NEW_RSS MB; 1 SPEC x $SINGLE: $ONE_NEW/s, $ONE_NEW_RSS MB"
  python3 -c "print(f'             many/one = {$MANY_NEW/$ONE_NEW:.2f} (target >= 0.8)')"
  echo "   baseline: $SPECS SPECs x $JOBS: $MANY_OLD/s, $MANY_OLD_RSS MB; 1 SPEC x $SINGLE: $ONE_OLD/s, $ONE_OLD_RSS MB"
  python3 -c "print(f'             many/one = {$MANY_OLD/$ONE_OLD:.2f}')"
  echo "3. emit of one batch, auto_drain on (dry-run subscription):"
  echo "   new:      $SPECS SPECs: $EMIT_NEW"
  echo "   baseline: $BASELINE_EMIT_SPECS SPECs: $EMIT_OLD"
} | tee "$OUT/results.txt"
