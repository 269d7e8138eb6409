#!/usr/bin/env bash
# Times `spec-notify list SPEC --json` (and the table) over a spool of 100,000
# pending jobs. Target: <= 1 s for `list SPEC --json > /dev/null` (release).
#
# The jobs are spooled by the real `emit --input -` from JSON Lines batches, so
# the files are exactly what production writes. The filled workspace is kept
# in bench/out/list and reused by later runs (delete it to refill).
#
# Usage: bench/list.sh [JOBS]        (default 100000; run from the repo root)
set -euo pipefail

jobs=${1:-100000}
batch=10000
spec=SPEC-BENCH-LIST
root=$(cd "$(dirname "$0")/.." && pwd)
work="$root/bench/out/list"
bin="$root/target/release/spec-notify"

cargo build --release --quiet --manifest-path "$root/Cargo.toml"

mkdir -p "$work"
cat > "$work/config.toml" <<EOF
[spec_ops.webhooks]
enabled = true
auto_drain = false
max_spool_jobs = $((jobs * 2))

[[spec_ops.webhooks.subscriptions]]
id = "bench"
url = "https://bench.example/hook"
secret_env = "BENCH_SECRET"
EOF
export BENCH_SECRET=bench-secret NO_COLOR=1
run() { "$bin" --config "$work/config.toml" "$@"; }

pending="$work/docs/SPEC-OPS-004-integrated-coder-hooks/evidence/webhooks/$spec/pending"
have=0; [ -d "$pending" ] && have=$(find "$pending" -name "*.job" | wc -l)
if [ "$have" -ne "$jobs" ]; then
  rm -rf "$work/docs"
  echo "spooling $jobs jobs in batches of $batch ..."
  start=1
  while [ "$start" -le "$jobs" ]; do
    end=$((start + batch - 1)); [ "$end" -gt "$jobs" ] && end=$jobs
    awk -v s="$start" -v e="$end" -v spec="$spec" 'BEGIN {
      for (i = s; i <= e; i++)
        printf "{\"spec\":{\"id\":\"%s\"},\"event\":{\"type\":\"spec-kit.task.completed\",\"status\":\"success\"},\"task\":{\"id\":\"T%d\",\"title\":\"bench task %d\"}}\n", spec, i, i
    }' | run emit --input - > /dev/null
    start=$((end + 1))
  done
fi
echo "jobs in pending/: $(find "$pending" -name '*.job' | wc -l)"

# Best of five wall-clock runs, in milliseconds.
best_ms() {
  local best=999999 t0 t1 ms
  for _ in 1 2 3 4 5; do
    t0=$(date +%s%N)
    "$@" > /dev/null
    t1=$(date +%s%N)
    ms=$(( (t1 - t0) / 1000000 ))
    [ "$ms" -lt "$best" ] && best=$ms
  done
  echo "$best"
}

json_ms=$(best_ms run list "$spec" --json)
table_ms=$(best_ms run list "$spec")
count=$(run list "$spec" --json | grep -c '"delivery_id"')
echo "list $spec --json : ${json_ms} ms (best of 5, $count objects)"
echo "list $spec (table): ${table_ms} ms (best of 5)"
if [ "$json_ms" -gt 1000 ]; then
  echo "SLOW: list --json took ${json_ms} ms > 1000 ms target" >&2
  exit 1
fi
