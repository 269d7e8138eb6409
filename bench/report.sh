#!/usr/bin/env bash
# Times `spec-notify report` and `spec-notify metrics` over a spool of 10,000
# jobs (pending, delivered, dead; 5 subscriptions, 4 SPECs) and 100,000
# attempt records spread over the last 7 days (rotated logs of 10,000 lines,
# 1 in 8 attempts failed, some with a receiver's answer). Prints wall time
# and peak RSS (/usr/bin/time -v) of each, best of 3. Target: <= 1 s each.
#
# The jobs are spooled by the real `emit --input -`, then moved to
# delivered/ and dead/ in the documented job format; the attempt records
# are written as the drain writes them. The workspace is kept in
# bench/out/report and reused (delete it to rebuild).
#
# Usage: bench/report.sh [JOBS] [ATTEMPTS]   (run from anywhere)
set -euo pipefail
jobs=${1:-10000}
attempts=${2:-100000}
root=$(cd "$(dirname "$0")/.." && pwd)
work="$root/bench/out/report"
bin="$root/target/release/spec-notify"
subs=(chatops-slack task-tracker audit-log pager ci-bot)
specs=(SPEC-BENCH-A SPEC-BENCH-B SPEC-BENCH-C SPEC-BENCH-D)

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
mkdir -p "$work"
{
  cat <<EOF2
[spec_ops.webhooks]
enabled = true
auto_drain = false
max_spool_jobs = $((jobs * 2))
max_evidence_bytes = 1073741824
EOF2
  for s in "${subs[@]}"; do
    printf '\n[[spec_ops.webhooks.subscriptions]]\nid = "%s"\nurl = "https://%s.example/hook"\nsecret_env = "BENCH_SECRET"\n' "$s" "$s"
  done
} > "$work/config.toml"
export BENCH_SECRET=bench-secret NO_COLOR=1
run() { "$bin" --config "$work/config.toml" "$@"; }
spool="$work/docs/SPEC-OPS-004-integrated-coder-hooks/evidence/webhooks"
evidence="$work/docs/SPEC-OPS-004-integrated-coder-hooks/evidence/commands"

have=$( (find "$spool" -name '*.job' 2>/dev/null || true) | wc -l)
if [ "$have" -ne "$jobs" ]; then
  rm -rf "$work/docs"
  events=$((jobs / ${#subs[@]}))
  echo "spooling $jobs jobs ($events events x ${#subs[@]} subscriptions) ..."
  per_spec=$((events / ${#specs[@]}))
  for spec in "${specs[@]}"; do
    awk -v n="$per_spec" -v spec="$spec" 'BEGIN {
      for (i = 1; i <= n; i++)
        printf "{\"spec\":{\"id\":\"%s\"},\"event\":{\"type\":\"spec-kit.task.completed\",\"status\":\"success\"},\"task\":{\"id\":\"T%d\",\"title\":\"bench task %d\"}}\n", spec, i, i
    }' | run emit --input - > /dev/null
  done
  echo "moving 80% to delivered/, 5% to dead/; writing $attempts attempt records ..."
  python3 - "$spool" "$evidence" "$attempts" <<'PY'
import json, os, random, sys, time
spool, evidence, attempts = sys.argv[1], sys.argv[2], int(sys.argv[3])
random.seed(7)
now = int(time.time() * 1000)
week = 7 * 86_400_000
jobs = []
for spec in sorted(os.listdir(spool)):
    pending = os.path.join(spool, spec, "pending")
    if not os.path.isdir(pending):
        continue
    for name in sorted(os.listdir(pending)):
        if name.endswith(".job"):
            jobs.append((spec, name))
for i, (spec, name) in enumerate(jobs):
    src = os.path.join(spool, spec, "pending", name)
    with open(src) as f:
        meta_line, body = f.read().split("\n", 1)
    meta = json.loads(meta_line)
    r = i % 20
    if r == 0:
        state = "dead"
        meta.update(attempts=8, last_status=503, last_error="HTTP 503",
                    dead_reason="exhausted", finished_at_ms=now - random.randrange(week),
                    hint="endpoint kept failing (503) for 8 attempts: check the receiver's health, then run `spec-notify replay %s --delivery-id %s`" % (spec, meta["delivery_id"]))
    elif r < 17:
        state = "delivered"
        meta.update(attempts=1, last_status=204, finished_at_ms=now - random.randrange(week))
    else:
        continue
    meta["state"] = state
    with open(os.path.join(spool, spec, state, name), "w") as f:
        f.write(json.dumps(meta, separators=(",", ":")) + "\n" + body)
    os.remove(src)
subs = ["chatops-slack", "task-tracker", "audit-log", "pager", "ci-bot"]
per_spec = attempts // len({s for s, _ in jobs})
for spec in sorted({s for s, _ in jobs}):
    out = os.path.join(evidence, spec, "webhooks")
    os.makedirs(out, exist_ok=True)
    ts = sorted(now - random.randrange(week) for _ in range(per_spec))
    lines = []
    for n, t in enumerate(ts):
        sub = subs[n % len(subs)]
        failed = random.random() < 0.125
        status = random.choice([503, 500, 401]) if failed else 204
        outcome = ("dead" if status == 401 else "retry") if failed else "delivered"
        rec = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t / 1000)) + ".%03dZ" % (t % 1000),
               "ts_ms": t, "delivery_id": "00000000-0000-4000-8000-%012d" % n, "spec": spec,
               "subscription": sub, "event_type": "spec-kit.task.completed", "attempt": 1,
               "url": "https://%s.example/hook" % sub, "status": status, "error": None,
               "latency_ms": int(random.lognormvariate(4.0, 0.6)), "outcome": outcome}
        if failed:
            rec["response_body"] = "upstream unavailable" if status != 401 else "bad signature"
        lines.append(json.dumps(rec, separators=(",", ":")))
    chunks = [lines[i:i + 10000] for i in range(0, len(lines), 10000)]
    for k, chunk in enumerate(chunks):
        n = len(chunks) - 1 - k
        name = "attempts.jsonl" if n == 0 else "attempts.jsonl.%d" % n
        with open(os.path.join(out, name), "w") as f:
            f.write("\n".join(chunk) + "\n")
PY
fi
echo "jobs: $(find "$spool" -name '*.job' | wc -l) ($(find "$spool" -path '*/pending/*.job' | wc -l) pending, $(find "$spool" -path '*/delivered/*.job' | wc -l) delivered, $(find "$spool" -path '*/dead/*.job' | wc -l) dead)"
echo "attempt records: $(cat "$evidence"/*/webhooks/attempts.jsonl* | wc -l)"

# Best of three: wall seconds and peak RSS in KiB, from /usr/bin/time -v.
measure() {
  local best_wall=999 best_rss=0 out wall rss log
  log=$(mktemp)
  for _ in 1 2 3; do
    /usr/bin/time -v -o "$log" "$@" > /dev/null 2>&1
    out=$(cat "$log")
    wall=$(printf '%s\n' "$out" | awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }')
    rss=$(printf '%s\n' "$out" | awk -F': ' '/Maximum resident set size/ { print $2 }')
    if awk -v a="$wall" -v b="$best_wall" 'BEGIN { exit !(a < b) }'; then best_wall=$wall; best_rss=$rss; fi
  done
  rm -f "$log"
  echo "$best_wall $best_rss"
}
read -r report_s report_kb < <(measure "$bin" --config "$work/config.toml" report --output "$work/report.html")
read -r metrics_s metrics_kb < <(measure "$bin" --config "$work/config.toml" metrics --output "$work/spec_notify.prom")
printf 'report : %ss wall, %s MiB peak RSS (%s KiB of HTML)\n' "$report_s" "$((report_kb / 1024))" "$(( $(stat -c %s "$work/report.html") / 1024 ))"
printf 'metrics: %ss wall, %s MiB peak RSS (%s series)\n' "$metrics_s" "$((metrics_kb / 1024))" "$(grep -vc '^#' "$work/spec_notify.prom")"
slow=0
for t in "$report_s" "$metrics_s"; do
  awk -v t="$t" 'BEGIN { exit !(t > 1.0) }' && slow=1
done
if [ "$slow" -eq 1 ]; then
  echo "SLOW: a command took more than the 1 s target" >&2
  exit 1
fi
